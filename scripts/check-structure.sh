#!/usr/bin/env bash
# Checks the shape of the repository, not its behaviour (issue 30):
#   size    no file of src/ (outside src/bin/) has more than 600 lines before its
#           first `#[cfg(test)]` line
#   cycles  no file-level import cycle among the modules of src/ (outside src/bin/)
#   readme  README.md has at most 400 lines
#   spec    every `SPEC §N` in src/, tests/, README.md and docs/ names a `## §N`
#           heading of docs/spec.md
#   links   no Markdown link or path in README.md, CHANGELOG.md or docs/*.md points
#           outside the repository (`../` past its root, /work, /home, ...), and
#           every relative link names a file that exists
#   map     docs/architecture.md names every file of src/ (outside src/bin/),
#           and every `*.rs` it names under src/ exists
# Usage: scripts/check-structure.sh [all|code|docs|size|cycles|readme|spec|links|map]...
#   (no argument: all; `code` = size + cycles; `docs` = readme + spec + links)
# Prints each violation and exits 1 if there is any, 0 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v python3 >/dev/null 2>&1 || {
    echo "check-structure.sh: python3 is needed" >&2
    exit 2
}
[[ $# -gt 0 ]] || set -- all
exec python3 - "$ROOT" "$@" <<'PY'
import os
import re
import sys
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve()
GROUPS = {
    "all": ["size", "cycles", "readme", "spec", "links", "map"],
    "code": ["size", "cycles"],
    "docs": ["readme", "spec", "links", "map"],
}
wanted = []
for arg in sys.argv[2:]:
    for name in GROUPS.get(arg, [arg]):
        if name not in GROUPS["all"]:
            print(f"check-structure.sh: unknown check '{arg}' "
                  "(all, code, docs, size, cycles, readme, spec, links, map)", file=sys.stderr)
            sys.exit(2)
        if name not in wanted:
            wanted.append(name)

MAX_LINES_BEFORE_TESTS = 600
MAX_README_LINES = 400
problems = []


def rel(p):
    return p.relative_to(ROOT).as_posix()


def src_files():
    """The .rs files of src/ outside src/bin/."""
    return sorted(p for p in (ROOT / "src").rglob("*.rs")
                  if "bin" not in p.relative_to(ROOT / "src").parts[:1])


# ---------------------------------------------------------------- size
def check_size():
    for path in src_files():
        lines = path.read_text(errors="replace").split("\n")
        n = next((i for i, l in enumerate(lines) if l.strip().startswith("#[cfg(test)]")), None)
        count = len(lines) if n is None else n
        if lines and lines[-1] == "" and n is None:
            count -= 1
        if count > MAX_LINES_BEFORE_TESTS:
            problems.append(f"size: {rel(path)} has {count} lines before its tests "
                            f"(at most {MAX_LINES_BEFORE_TESTS})")


# ---------------------------------------------------------------- cycles
def strip_rust(text):
    """The code with comments, strings and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif re.match(r'b?r#*"', text[i:i + 40]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])'", text[i:])
            if m:  # a char literal; otherwise a lifetime or a label
                out.append(" " * m.end())
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching(code, i):
    """Index just past the brace group opening at code[i] == '{'."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def drop_test_items(code):
    """The code without the items under `#[cfg(test)]` (a test module, a helper)."""
    out, pos = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", code):
        if m.start() < pos:
            continue
        out.append(code[pos:m.start()])
        # the item: up to its `;` or the end of its brace group, whichever comes first
        j = m.end()
        while j < len(code) and code[j] not in "{;":
            j += 1
        end = matching(code, j) if j < len(code) and code[j] == "{" else j + 1
        out.append(re.sub(r"[^\n]", " ", code[m.start():end]))
        pos = end
    out.append(code[pos:])
    return "".join(out)


def module_of(path):
    """Module path (list of names) of a file under src/."""
    parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
    if parts in (["main"], ["lib"]):
        return []
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def check_cycles():
    files = src_files()
    by_module = {tuple(module_of(p)): p for p in files}
    test_files = set()
    texts = {}
    for p in files:
        code = strip_rust(p.read_text(errors="replace"))
        # child modules declared under #[cfg(test)] are test files
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code):
            test_files.add(tuple(module_of(p)) + (m.group(1),))
        texts[p] = drop_test_items(code)

    def resolve(segments):
        """The file of the longest module prefix of an absolute path."""
        for k in range(len(segments), 0, -1):
            f = by_module.get(tuple(segments[:k]))
            if f is not None:
                return f
        return None

    def expand_use(tree):
        """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
        tree = re.sub(r"\s+", "", tree)
        m = re.match(r"^(.*?)\{(.*)\}$", tree)
        if not m:
            return [tree]
        prefix, inner = m.group(1), m.group(2)
        items, depth, cur = [], 0, ""
        for ch in inner:
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        items.append(cur)
        out = []
        for it in items:
            if it:
                out.extend(prefix + x for x in expand_use(it))
        return out

    edges = {}
    crate_edges = {}  # top-level module -> the top-level modules it uses
    for p in files:
        me = module_of(p)
        tops = set()
        if tuple(me) in test_files:
            continue
        code = texts[p]
        children = set(re.findall(r"(?:^|[;{}\s])(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code))
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            paths.extend(expand_use(m.group(1)))
        body = re.sub(r"\buse\s+[^;]+;", " ", code)
        paths.extend(m.group(0) for m in re.finditer(r"(?<![\w:])(?:crate|self|super)(?:::\w+)+", body))
        if children:
            alt = "|".join(sorted(children))
            paths.extend(m.group(0) for m in re.finditer(rf"(?<![\w:])(?:{alt})(?:::\w+)+", body))
        targets = set()
        for path in paths:
            path = re.sub(r"\bas\s*\w+$", "", path).rstrip(":*")
            segs = [s for s in path.split("::") if s]
            if not segs:
                continue
            if segs[0] == "crate":
                absolute = segs[1:]
            elif segs[0] in ("self", "super"):
                base = list(me)
                while segs and segs[0] in ("self", "super"):
                    if segs[0] == "super":
                        base = base[:-1]
                    segs = segs[1:]
                absolute = base + segs
            elif segs[0] in children:
                absolute = list(me) + segs
            else:
                continue  # an external crate or a name in scope
            f = resolve(absolute)
            if f is None or f == p or tuple(module_of(f)) in test_files:
                continue
            there = module_of(f)
            if there and me and there[0] != me[0]:
                tops.add(there[0])
            if me[:len(there)] == there:
                # A child using what its parent module holds is no cycle with
                # it (the parent declares the child, it does not import it);
                # between top-level modules every use counts (below).
                continue
            targets.add(f)
        edges[p] = targets
        if me:
            crate_edges.setdefault(me[0], set()).update(tops)

    # strongly connected components (Tarjan, iterative)
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in edges:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    sccs.append(sorted(comp))
    def shortest_cycle(members, cross):
        """A shortest cycle inside `members`; with `cross`, one leaving its first file's folder."""
        best = None
        for start in sorted(members):
            prev, queue = {start: None}, [start]
            while queue:
                v = queue.pop(0)
                for w in sorted(edges[v]):
                    if w not in members:
                        continue
                    if w == start:
                        path, x = [start], v
                        while x != start:
                            path.insert(1, x)
                            x = prev[x]
                        if cross and all(q.parent == start.parent for q in path):
                            continue
                        if best is None or len(path) < len(best):
                            best = path
                    elif w not in prev:
                        prev[w] = v
                        queue.append(w)
        return best

    for comp in sorted(sccs):
        members = set(comp)
        pairs = [f"{rel(a)} -> {rel(b)}" for a in comp for b in sorted(edges[a]) if b in members]
        shown = []
        for cross in (False, True):
            c = shortest_cycle(members, cross)
            if c and c not in shown:
                shown.append(c)
        eg = "; ".join(" -> ".join(rel(x) for x in c + [c[0]]) for c in shown)
        problems.append(f"cycles: import cycle among {len(comp)} files, e.g. {eg} "
                        "(every import inside it: " + "; ".join(pairs) + ")")


    # between top-level modules (a folder and its files as one), no cycle at all
    def reaches(a, b, seen):
        for n in crate_edges.get(a, ()):
            if n == b:
                return [n]
            if n not in seen:
                seen.add(n)
                rest = reaches(n, b, seen)
                if rest:
                    return [n] + rest
        return None

    reported = set()
    for top in sorted(crate_edges):
        loop = reaches(top, top, set())
        if loop and not set(loop) & reported:
            reported.update(loop)
            problems.append("cycles: top-level modules use each other: "
                            + " -> ".join([top] + loop))


# ---------------------------------------------------------------- readme
def check_readme():
    readme = ROOT / "README.md"
    if not readme.exists():
        problems.append("readme: README.md is missing")
        return
    n = len(readme.read_text(errors="replace").splitlines())
    if n > MAX_README_LINES:
        problems.append(f"readme: README.md has {n} lines (at most {MAX_README_LINES})")


# ---------------------------------------------------------------- spec
def doc_files():
    out = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    out += sorted((ROOT / "docs").glob("*.md"))
    return [p for p in out if p.exists()]


def check_spec():
    spec = ROOT / "docs" / "spec.md"
    headings = set()
    if spec.exists():
        headings = set(re.findall(r"^## §(\d+)\b", spec.read_text(errors="replace"), re.M))
    else:
        problems.append("spec: docs/spec.md is missing")
    sources = [p for d in ("src", "tests") for p in sorted((ROOT / d).rglob("*"))
               if p.is_file() and p.suffix in (".rs", ".sql", ".md", ".json", ".sh")]
    sources += [p for p in doc_files() if p != spec]
    for p in sources:
        for no, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            for m in re.finditer(r"SPEC\s+§\s*\d+(?:\s*(?:,|and|&|-|–)\s*§\s*\d+)*", line):
                for n in re.findall(r"§\s*(\d+)", m.group(0)):
                    if n not in headings:
                        problems.append(f"spec: {rel(p)}:{no}: SPEC §{n} has no '## §{n}' heading in docs/spec.md")


# ---------------------------------------------------------------- links
OUTSIDE = re.compile(r"(?<![\w.~/-])(?:/work|/home|/root|/Users|/mnt|/tmp/[\w.-]*/)(?=/|\b)")


def anchors(path, cache={}):
    """The anchors GitHub gives a Markdown file's headings."""
    if path not in cache:
        seen, out = {}, set()
        text = re.sub(r"```.*?```", "", path.read_text(errors="replace"), flags=re.S)
        for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M):
            title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
            slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
        cache[path] = out
    return cache[path]


def check_links():
    for p in doc_files():
        text = p.read_text(errors="replace")
        here = p.parent
        for no, line in enumerate(text.splitlines(), 1):
            where = f"{rel(p)}:{no}"
            # Markdown links and images: [text](target) and <target> autolinks
            for m in re.finditer(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
                target = m.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                    continue  # a URL (http:, mailto:, file:)
                path, _, anchor = target.partition("#")
                dest = (here / path).resolve() if path else p
                if anchor and dest.suffix == ".md" and dest.exists() and anchor not in anchors(dest):
                    problems.append(f"links: {where}: link '{target}' names no heading of {rel(dest)}")
                if not path:
                    continue
                if path.startswith("/"):
                    problems.append(f"links: {where}: link to an absolute path '{target}'")
                    continue
                full = (here / path).resolve()
                if full != ROOT and ROOT not in full.parents:
                    problems.append(f"links: {where}: link '{target}' points outside the repository")
                elif not full.exists():
                    problems.append(f"links: {where}: link '{target}' names a file that does not exist")
            # path mentions in the text and in code (link targets aside): a `../` path
            # that leaves the repository or names nothing in it, a developer's machine
            text_only = re.sub(r"\]\([^)]*\)", "]", line)
            for m in re.finditer(r"(?<![\w.])((?:\.\./)+)([\w.-]*)", text_only):
                full = (here / m.group(1) / m.group(2)).resolve()
                if (full != ROOT and ROOT not in full.parents) or not full.exists():
                    problems.append(f"links: {where}: path '{m.group(0)}' points outside the repository")
            for m in OUTSIDE.finditer(text_only):
                word = text_only[m.start():].split()[0].rstrip(".,;:)`'\"")
                problems.append(f"links: {where}: path '{word}' is outside the repository")


def check_map():
    doc = ROOT / "docs" / "architecture.md"
    if not doc.exists():
        problems.append("map: docs/architecture.md is missing")
        return
    named = set(re.findall(r"`([\w./-]+\.rs)`", doc.read_text(errors="replace")))
    files = {p.relative_to(ROOT / "src").as_posix() for p in src_files()}
    for f in sorted(files - named):
        problems.append(f"map: docs/architecture.md does not name src/{f}")
    for f in sorted(named - files):
        if not (ROOT / f).exists() and not (ROOT / "src" / f).exists():
            problems.append(f"map: docs/architecture.md names {f}, which does not exist")


CHECKS = {"size": check_size, "cycles": check_cycles, "readme": check_readme,
          "spec": check_spec, "links": check_links, "map": check_map}
for name in wanted:
    before = len(problems)
    CHECKS[name]()
    for line in problems[before:]:
        print(line)
    print(f"{name}: {'ok' if len(problems) == before else f'{len(problems) - before} problem(s)'}",
          file=sys.stderr)
sys.exit(1 if problems else 0)
PY
