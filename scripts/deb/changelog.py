#!/usr/bin/env python3
"""Writes the Debian changelog of the atlas package from CHANGELOG.md.

    changelog.py CHANGELOG.md VERSION "NAME <EMAIL>" > changelog

Each `## <version> (<YYYY-MM-DD>)` section becomes one Debian entry
(distribution `unstable`, urgency `medium`, signed by the maintainer at
midnight UTC of that date); each `- ` item one `  * ` line, rewrapped to 79
columns, Markdown links reduced to their text. Fails (exit 2) when the newest
section is not VERSION, so the package never ships a changelog of another
build.
"""
import datetime
import re
import sys
import textwrap

HEADING = re.compile(r"^## (\S+) \((\d{4}-\d{2}-\d{2})\)\s*$")
LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")


def releases(text):
    """[(version, date, [item, ...])] in file order; an item is one string."""
    out = []
    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            out.append((m.group(1), m.group(2), []))
        elif not out or not line.strip():
            continue
        elif line.startswith("- "):
            out[-1][2].append(line[2:].strip())
        elif line.startswith("  ") and out[-1][2]:
            out[-1][2][-1] += " " + line.strip()
        else:
            raise ValueError(f"not an item of a release: {line!r}")
    return out


def entry(package, version, date, items, maintainer):
    day = datetime.datetime.strptime(date, "%Y-%m-%d")
    stamp = day.strftime("%a, %d %b %Y 00:00:00 +0000")
    lines = [f"{package} ({version}) unstable; urgency=medium", ""]
    for item in items or ["Release " + version + "."]:
        lines += textwrap.wrap(
            LINK.sub(r"\1", item),
            width=79,
            initial_indent="  * ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
    lines += ["", f" -- {maintainer}  {stamp}", ""]
    return "\n".join(lines)


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    path, version, maintainer = argv[1:]
    with open(path, encoding="utf-8") as f:
        found = releases(f.read())
    if not found or found[0][0] != version:
        newest = found[0][0] if found else "none"
        print(
            f"changelog.py: the newest release in {path} is {newest}, not {version}",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write("\n".join(entry("atlas", v, d, i, maintainer) for v, d, i in found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
