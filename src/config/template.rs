//! Request templates: the placeholders in the string values of a route's
//! `query`, `headers` and `body` (SPEC-style `{start}`, `{page}`,
//! `{env:NAME}`...), checked at config load and filled per request.
//!
//! Syntax: `{name}` or `{name:arg}` where `name` is a word; `{{` and `}}`
//! write a literal brace; a brace not followed by a word and `}` (JSON text
//! such as `{"a":1}`) is kept as written. Secret values (`{env:}`,
//! `{file:}`) are read once per run into [`Secrets`] and never printed.

use super::{Pagination, Paging, SecretValue};
use crate::exit::usage;
use crate::textfile;
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    Start,
    End,
    Page,
    PageSize,
    Offset,
    Cursor,
    /// `{env:NAME}`: a secret from an environment variable.
    Env(String),
    /// `{file:PATH}`: a secret from a file (trailing newline dropped).
    File(String),
}

impl Var {
    /// How it is written, also the key of a secret in [`Secrets`].
    pub fn written(&self) -> String {
        match self {
            Var::Start => "{start}".into(),
            Var::End => "{end}".into(),
            Var::Page => "{page}".into(),
            Var::PageSize => "{page_size}".into(),
            Var::Offset => "{offset}".into(),
            Var::Cursor => "{cursor}".into(),
            Var::Env(n) => format!("{{env:{n}}}"),
            Var::File(p) => format!("{{file:{p}}}"),
        }
    }

    /// Placeholders that are numbers: alone in a body string they become one.
    fn numeric(&self) -> bool {
        matches!(self, Var::Page | Var::PageSize | Var::Offset)
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(Var),
}

const KNOWN: &str =
    "{start}, {end}, {page}, {page_size}, {offset}, {cursor}, {env:NAME}, {file:PATH}";

/// Splits a template into literal text and placeholders; an unknown
/// placeholder is an error naming it.
pub fn parse(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") || rest.starts_with("}}") {
            lit.push(c);
            rest = &rest[2..];
            continue;
        }
        if c == '{' {
            if let Some(close) = rest.find('}') {
                let inner = &rest[1..close];
                let (name, arg) = match inner.split_once(':') {
                    Some((n, a)) => (n, Some(a)),
                    None => (inner, None),
                };
                let word = !name.is_empty()
                    && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if word {
                    let var = match (name, arg) {
                        ("start", None) => Var::Start,
                        ("end", None) => Var::End,
                        ("page", None) => Var::Page,
                        ("page_size", None) => Var::PageSize,
                        ("offset", None) => Var::Offset,
                        ("cursor", None) => Var::Cursor,
                        ("env", Some(a)) if !a.trim().is_empty() => Var::Env(a.to_string()),
                        ("file", Some(a)) if !a.trim().is_empty() => Var::File(a.to_string()),
                        _ => {
                            return Err(format!(
                                "unknown placeholder '{{{inner}}}' (known: {KNOWN}; write '{{{{' for a literal brace)"
                            ))
                        }
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(var));
                    rest = &rest[close + 1..];
                    continue;
                }
            }
        }
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

/// The placeholders of one template (it was checked at load: a bad one
/// yields nothing here).
pub fn vars(s: &str) -> Vec<Var> {
    parse(s)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Lit(_) => None,
        })
        .collect()
}

/// Every string value of a JSON body, depth first.
pub fn strings(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    fn walk<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// Checks a template for a route paged by `paging`: every placeholder
/// known, and the paging ones supplied by its pagination.
pub fn check(s: &str, paging: &Paging) -> Result<(), String> {
    for v in parse(s)?.into_iter().filter_map(|p| match p {
        Part::Var(v) => Some(v),
        Part::Lit(_) => None,
    }) {
        let ok = match (&v, &paging.kind) {
            (Var::Page, Pagination::Page { .. }) => true,
            (Var::PageSize, Pagination::Page { size, .. }) => size.is_some(),
            (Var::PageSize | Var::Offset, Pagination::Offset { .. }) => true,
            (Var::Cursor, Pagination::Cursor { .. }) => true,
            (Var::Page | Var::PageSize | Var::Offset | Var::Cursor, _) => false,
            _ => true,
        };
        if !ok {
            return Err(format!(
                "placeholder {} has no value under this route's pagination ({{page}}: page; {{page_size}}: page with size, offset; {{offset}}: offset; {{cursor}}: cursor)",
                v.written()
            ));
        }
    }
    Ok(())
}

/// The secret values a route's templates name, read once per run.
#[derive(Default, Clone)]
pub struct Secrets(BTreeMap<String, SecretValue>);

impl Secrets {
    /// Reads every `{env:}` / `{file:}` of `templates`; `env` looks up
    /// environment variables. Errors name the variable or file, never a value.
    pub fn resolve<'t>(
        templates: impl IntoIterator<Item = (&'t str, String)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secrets> {
        let mut out = BTreeMap::new();
        for (t, key) in templates {
            for v in vars(t) {
                let k = v.written();
                if out.contains_key(&k) {
                    continue;
                }
                let value = match &v {
                    Var::Env(name) => match env(name) {
                        Some(x) if !x.is_empty() => x,
                        _ => {
                            return Err(usage(format!(
                            "environment variable {name} (from {k} in {key}) is not set or empty"
                        )))
                        }
                    },
                    Var::File(path) => {
                        let text = textfile::read(Path::new(path)).map_err(|e| {
                            usage(format!(
                                "cannot read secret file {path} (from {k} in {key}): {e}"
                            ))
                        })?;
                        let x = textfile::trim_line_ends(&text).to_string();
                        if x.is_empty() {
                            return Err(usage(format!(
                                "secret file {path} (from {k} in {key}) is empty"
                            )));
                        }
                        x
                    }
                    _ => continue,
                };
                out.insert(k, SecretValue::new(value));
            }
        }
        Ok(Secrets(out))
    }

    /// The values, for the masker.
    pub fn values(&self) -> impl Iterator<Item = &SecretValue> {
        self.0.values()
    }
}

/// What the placeholders of one request stand for.
pub struct Vars<'a> {
    pub start: &'a str,
    pub end: &'a str,
    pub page: Option<i64>,
    pub page_size: Option<u64>,
    pub offset: Option<u64>,
    pub cursor: Option<&'a str>,
    pub secrets: &'a Secrets,
}

impl Vars<'_> {
    fn value(&self, v: &Var) -> String {
        let num = |n: Option<String>| n.unwrap_or_default();
        match v {
            Var::Start => self.start.to_string(),
            Var::End => self.end.to_string(),
            Var::Page => num(self.page.map(|n| n.to_string())),
            Var::PageSize => num(self.page_size.map(|n| n.to_string())),
            Var::Offset => num(self.offset.map(|n| n.to_string())),
            Var::Cursor => self.cursor.unwrap_or_default().to_string(),
            Var::Env(_) | Var::File(_) => self
                .secrets
                .0
                .get(&v.written())
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
        }
    }

    /// `s` with its placeholders filled.
    pub fn render(&self, s: &str) -> String {
        match parse(s) {
            Ok(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Lit(l) => l.clone(),
                    Part::Var(v) => self.value(v),
                })
                .collect(),
            Err(_) => s.to_string(),
        }
    }

    /// A body with every string value filled; a string that is exactly one
    /// numeric placeholder (`"{page}"`) becomes a JSON number.
    pub fn render_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => {
                if let Ok(parts) = parse(s) {
                    if let [Part::Var(var)] = parts.as_slice() {
                        if var.numeric() {
                            if let Ok(n) = self.value(var).parse::<i64>() {
                                return Value::from(n);
                            }
                        }
                    }
                }
                Value::String(self.render(s))
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.render_value(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), self.render_value(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Sets the value at a JSON pointer whose parent exists (an object key is
/// added if missing); `false` when the parent is not there.
pub fn set_pointer(body: &mut Value, ptr: &str, value: Value) -> bool {
    let Some((parent, last)) = ptr.rsplit_once('/') else {
        return false;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match body.pointer_mut(parent) {
        Some(Value::Object(o)) => {
            o.insert(last, value);
            true
        }
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a[i] = value;
                true
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paging(kind: Pagination) -> Paging {
        Paging {
            kind,
            max_pages: 10,
        }
    }

    #[test]
    fn parses_placeholders_escapes_and_json_text() {
        assert_eq!(
            parse("creationDate:[{start} TO {end}]").unwrap(),
            vec![
                Part::Lit("creationDate:[".into()),
                Part::Var(Var::Start),
                Part::Lit(" TO ".into()),
                Part::Var(Var::End),
                Part::Lit("]".into()),
            ]
        );
        assert_eq!(
            parse("{{page}} {\"a\":1}").unwrap(),
            vec![Part::Lit("{page} {\"a\":1}".into())]
        );
        assert_eq!(
            parse("{env:APP_KEY}").unwrap(),
            vec![Part::Var(Var::Env("APP_KEY".into()))]
        );
        let e = parse("x {pagina} y").unwrap_err();
        assert!(e.contains("unknown placeholder '{pagina}'"), "{e}");
        assert!(parse("{env:}").is_err());
        assert!(parse("{start:x}").is_err());
    }

    #[test]
    fn paging_placeholders_need_their_pagination() {
        let page = paging(Pagination::Page {
            param: "/p".into(),
            start: 1,
            size_param: None,
            size: None,
            total_pages: None,
            stop_on_short_page: false,
        });
        assert!(check("{page}", &page).is_ok());
        assert!(check("{page_size}", &page).is_err(), "no size");
        assert!(check("{cursor}", &page).is_err());
        assert!(check("{start}{env:X}", &paging(Pagination::None)).is_ok());
    }

    #[test]
    fn renders_strings_and_numbers_in_a_body() {
        let secrets = Secrets::resolve([("{env:K}", "body".to_string())], &|n| {
            (n == "K").then(|| "segredo".to_string())
        })
        .unwrap();
        let vars = Vars {
            start: "01/03/2025",
            end: "01/03/2025",
            page: Some(3),
            page_size: Some(500),
            offset: None,
            cursor: None,
            secrets: &secrets,
        };
        let body = json!({"k": "{env:K}", "param": [{"pagina": "{page}", "n": "{page_size}", "de": "{start}", "s": "p{page}"}], "x": 1});
        assert_eq!(
            vars.render_value(&body),
            json!({"k": "segredo", "param": [{"pagina": 3, "n": 500, "de": "01/03/2025", "s": "p3"}], "x": 1})
        );
        let e = Secrets::resolve([("{env:NOPE}", "body".to_string())], &|_| None)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("NOPE"));
    }

    /// Config errors of the request keys: each names its key (exit 2).
    #[test]
    fn config_errors_name_the_request_keys() {
        let base = serde_json::json!({
            "clients": {"1": {"base_url": "http://api.test"}},
            "routes": {"r": {"path": "/p", "records": "", "method": "POST",
                "body": {"param": [{"pagina": 1, "de": "{start}", "ate": "{end}"}]},
                "pagination": {"type": "page", "param": "/param/0/pagina"}}}
        });
        let parse = |v: &Value| {
            crate::config::parse(
                &serde_json::to_string_pretty(v).unwrap(),
                std::path::Path::new("atlas.json"),
            )
        };
        assert!(parse(&base).is_ok());
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/routes/r/method", json!("PUT"), "routes.r.method"),
            (
                "/routes/r/body/x",
                json!("{pagina}"),
                "unknown placeholder '{pagina}'",
            ),
            (
                "/routes/r/pagination/param",
                json!("/param/1/pagina"),
                "routes.r.pagination.param",
            ),
            (
                "/routes/r/body_format",
                json!("form"),
                "routes.r.body_format",
            ),
            (
                "/routes/r/body/param/0/ate",
                json!("x"),
                "routes.r.date_params.end",
            ),
            (
                "/routes/r/query",
                json!({"c": "{cursor}"}),
                "routes.r.query.c",
            ),
            (
                "/routes/r/response_rules",
                json!([{"equals": 1, "then": "empty"}]),
                "key 'routes.r.response_rules': rule 1, 'equals'",
            ),
            (
                "/clients/1/headers",
                json!({"X-K": "{env:}"}),
                "clients.1.headers.X-K",
            ),
        ];
        for (ptr, value, needle) in cases {
            let mut v = base.clone();
            crate::config::template::set_pointer(&mut v, ptr, value);
            let e = parse(&v).expect_err(ptr);
            assert_eq!(crate::exit::classify(&e), crate::exit::Exit::Usage);
            let e = format!("{e:#}");
            assert!(e.contains(needle), "{ptr}: {e}");
            // A key left out has no line of its own.
            assert!(
                e.contains("line ") || needle.ends_with("date_params.end"),
                "{ptr}: {e}"
            );
        }
        let mut get = base.clone();
        get["routes"]["r"]["method"] = json!("GET");
        assert!(format!("{:#}", parse(&get).unwrap_err()).contains("routes.r.body"));
    }

    #[test]
    fn sets_a_pointer_in_place() {
        let mut b = json!({"param": [{"pagina": 1}]});
        assert!(set_pointer(&mut b, "/param/0/pagina", json!(2)));
        assert!(set_pointer(&mut b, "/param/0/novo", json!("x")));
        assert_eq!(b, json!({"param": [{"pagina": 2, "novo": "x"}]}));
        assert!(!set_pointer(&mut b, "/param/1/pagina", json!(2)));
        assert!(!set_pointer(&mut b, "/nada/x", json!(2)));
    }
}
