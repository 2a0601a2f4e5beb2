//! `atlas.json` -> one validated `Config` (SPEC §2, §3).
//!
//! Two stages, as in ripgrep: serde reads the file into the structs of
//! `raw` (errors carry file, line, column and the key path), then `validate`
//! builds the typed config used everywhere else; `position` finds a key's
//! line and column for its errors. `settings` resolves the run settings
//! (flag > environment > file > default). Nothing downstream re-reads the
//! environment or re-parses strings. Secrets stay references until
//! `Secret::resolve`.

pub mod notify;
mod position;
pub mod ranges;
mod raw;
pub mod settings;
pub mod template;
mod validate;

pub use settings::{Layer, Settings};

use crate::dates::{EndStyle, Zone};
use crate::exit::usage;
use crate::textfile;
use anyhow::{Context, Result};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages).
    pub source: PathBuf,
    /// `database_url` from the file, lowest precedence.
    pub database_url: Option<String>,
    /// Run settings the file sets (flags and environment override them).
    pub settings: Layer,
    /// Clients by id, each with its effective routes (overrides applied).
    pub clients: BTreeMap<String, Client>,
    /// Who is told at the end of a run (`notify`), if anyone.
    pub notify: Option<notify::Notify>,
}

/// One client (tenant) of one API.
#[derive(Debug, Clone)]
pub struct Client {
    /// Id as written in the config (`"2151"`).
    pub id: String,
    /// Human name, for listings.
    pub name: String,
    /// API base; a route's path is appended to it.
    pub base_url: url::Url,
    /// How its requests authenticate.
    pub auth: Auth,
    /// Requests per second shared by every fetcher thread of this client.
    pub rate_limit_per_sec: Option<f64>,
    /// Routes this client may use, with its overrides applied.
    pub routes: BTreeMap<String, Route>,
    /// `ca_file`: extra trusted roots (PEM, read at load) for this client's HTTPS.
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// One endpoint shape, as the client sees it.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its key under `routes`.
    pub name: String,
    /// Appended to the client's `base_url`.
    pub path: String,
    /// JSON pointer to the records array (`""` = the body is the array).
    pub records: String,
    /// JSON pointer applied to each element of the records array.
    pub records_unwrap: Option<String>,
    /// How a slice's first and last day are sent.
    pub date_params: DateParams,
    /// Days per slice (1 to 366).
    pub slice_days: u32,
    /// How pages follow one another, and how many a slice may take.
    pub pagination: Paging,
    /// JSON pointer to the record's date; `None` = automatic detection.
    pub date_field: Option<String>,
    /// Zone in which timestamps are dated; `None` = their own offset.
    pub timezone: Option<Zone>,
    /// Fixed query parameters (the client's under the route's own).
    pub query: Vec<(String, String)>,
    /// Fixed request headers (the client's under the route's own).
    pub headers: Vec<(String, String)>,
    /// What to do with a record in which no date is found.
    pub undated: Undated,
    /// First day `sync` loads when nothing was loaded yet.
    pub start_date: Option<NaiveDate>,
    /// Charset bodies are read in, whatever they declare; `None` = declared, else UTF-8.
    pub charset: Option<crate::charset::Charset>,
    /// `GET` (default) or `POST`.
    pub method: Method,
    /// JSON sent as the body (POST only), placeholders filled per request.
    pub body: Option<Value>,
    /// How `body` is encoded.
    pub body_format: BodyFormat,
    /// Answers that do not mean what their status says, first match wins.
    pub response_rules: Vec<crate::rules::Rule>,
    /// `page`/`offset` pages of one slice fetched by the whole pool once
    /// page 1 declares how many there are (default true).
    pub parallel_pages: bool,
    /// With `parallel_pages`: page 1's likely followers (as many as the
    /// slices before said, at most one per fetcher) asked for with it
    /// (default true).
    pub speculative_pages: bool,
    /// Longest wait the API may ask for (`Retry-After`, rate-limit headers)
    /// before the page's slice fails instead (`max_pause_secs`: the route's,
    /// else the client's, else 900 s).
    pub max_pause: std::time::Duration,
    /// Hours after a day's end (in `timezone`) before it counts as complete
    /// (`settle_hours`, default 0): until then its slices are loaded as
    /// `open` and fetched again by the next sync.
    pub settle_hours: u32,
}

impl Route {
    /// The first day of this route that is still open now (see
    /// `dates::first_open_day`).
    pub fn first_open_day(&self) -> NaiveDate {
        crate::dates::first_open_day(self.timezone.as_ref(), self.settle_hours)
    }
}

/// A route's HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// How a route's `body` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// `application/json` (default).
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`, from a flat object.
    Form,
}

/// How a slice's bounds are sent to the API.
#[derive(Debug, Clone)]
pub struct DateParams {
    /// Name of the query parameter that carries the first day (`None`: a
    /// `{start}` placeholder carries it).
    pub start: Option<String>,
    /// Name of the query parameter that carries the last day (`None`: `{end}`).
    pub end: Option<String>,
    /// chrono format, validated at load.
    pub format: String,
    /// Which instant of the last day is sent.
    pub end_style: EndStyle,
}

/// What to do with a record in which no date is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undated {
    /// Store it with the first day of the slice that returned it (default: nothing is lost).
    SliceStart,
    /// Count and report it, do not store it.
    Skip,
    /// Fail the slice.
    Fail,
}

/// Pagination kinds (SPEC §3). Pointers are JSON pointers into the body.
#[derive(Debug, Clone, PartialEq)]
pub enum Pagination {
    None,
    Page {
        param: String,
        start: i64,
        size_param: Option<String>,
        size: Option<u64>,
        total_pages: Option<String>,
        stop_on_short_page: bool,
    },
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u64,
        total: Option<String>,
    },
    Cursor {
        param: String,
        cursor_path: String,
    },
    NextUrl {
        next_path: String,
    },
    LinkHeader,
}

/// A validated pagination plus its page guard.
#[derive(Debug, Clone, PartialEq)]
pub struct Paging {
    /// The pagination kind and its parameters.
    pub kind: Pagination,
    /// Pages a slice may take before it fails (a guard against loops).
    pub max_pages: u64,
}

/// How requests authenticate. Secret values are resolved only at use.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    Bearer(Secret),
    Header { name: String, value: Secret },
    Query { param: String, value: Secret },
    Basic { user: String, password: Secret },
    OAuth2(Box<OAuth2>),
}

/// `auth.type = oauth2`: where tokens come from. Tokens themselves live
/// encrypted in the control schema (`oauth`).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2 {
    pub token_url: url::Url,
    pub grant: Grant,
    pub client_id: Secret,
    pub client_secret: Option<Secret>,
    /// The first refresh token only: once one is stored, the stored one is used.
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
    /// How the client id and secret reach the token endpoint.
    pub client_auth: ClientAuth,
    /// `atlas auth login`: where the user authorizes, and the loopback
    /// address the browser is sent back to (both or neither).
    pub login: Option<Login>,
}

/// The authorization-code grant of `atlas auth login` (RFC 6749 §4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub authorize_url: url::Url,
    /// `http` on 127.0.0.1, localhost or [::1], with an explicit port.
    pub redirect_uri: url::Url,
    /// Send a PKCE S256 challenge (RFC 7636).
    pub pkce: bool,
}

/// How an OAuth2 client authenticates at the token endpoint (RFC 6749
/// §2.3.1): HTTP Basic, which servers must support, or in the form body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Body,
}

/// The OAuth2 grant used to get access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
}

/// Where a secret lives; the config never holds the value itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    Env { var: String, key: String },
    File { path: PathBuf, key: String },
}

/// A resolved secret: prints as `***` everywhere.
#[derive(Clone, PartialEq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(v: String) -> SecretValue {
        SecretValue(v)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Secret {
    /// Reads the secret; `env` looks up environment variables. Errors name
    /// the variable or file, never a value.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<SecretValue> {
        match self {
            Secret::Env { var, key } => match env(var) {
                Some(v) if !v.is_empty() => Ok(SecretValue(v)),
                _ => Err(usage(format!(
                    "environment variable {var} (from {key}) is not set or empty"
                ))),
            },
            Secret::File { path, key } => {
                let text = textfile::read(path).map_err(|e| {
                    usage(format!(
                        "cannot read secret file {} (from {key}): {e}",
                        path.display()
                    ))
                })?;
                let v = textfile::trim_line_ends(&text).to_string();
                if v.is_empty() {
                    return Err(usage(format!(
                        "secret file {} (from {key}) is empty",
                        path.display()
                    )));
                }
                Ok(SecretValue(v))
            }
        }
    }
}

impl Auth {
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Bearer(_) => "bearer",
            Auth::Header { .. } => "header",
            Auth::Query { .. } => "query",
            Auth::Basic { .. } => "basic",
            Auth::OAuth2(_) => "oauth2",
        }
    }
}

impl Config {
    pub fn client(&self, id: &str) -> Result<&Client> {
        self.clients.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.clients.keys().map(String::as_str).collect();
            usage(format!(
                "unknown client '{id}' in {} (configured: {})",
                self.source.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    pub fn route(&self, client: &str, route: &str) -> Result<(&Client, &Route)> {
        let c = self.client(client)?;
        let r = c.routes.get(route).ok_or_else(|| {
            let known: Vec<&str> = c.routes.keys().map(String::as_str).collect();
            usage(format!(
                "client '{client}' has no route '{route}' (its routes: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        Ok((c, r))
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config> {
    let text = textfile::read(path)
        .map_err(|e| usage(format!("cannot read config {}: {e}", path.display())))?;
    parse(&text, path)
}

/// Parses and validates config text; `source` names it in errors.
pub fn parse(text: &str, source: &Path) -> Result<Config> {
    let src = source.display().to_string();
    let de = &mut serde_json::Deserializer::from_str(text);
    let raw: raw::RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!(", key '{path}'")
        };
        usage(format!(
            "{src}: line {}, column {}{key}: {}",
            inner.line(),
            inner.column(),
            strip_position(&inner.to_string())
        ))
    })?;
    // The same text as a value tree, to apply per-client route overrides.
    let tree: Value = serde_json::from_str(text).context("config re-read")?;
    validate::build(raw, &tree, source, text)
}

// serde_json appends " at line L column C" to its messages; we print our own.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{classify, Exit};

    const GOOD: &str = r#"{
  "database_url": "postgres://atlas@db/atlas",
  "retry_max": 7,
  "batch_export": 500,
  "clients": {
    "2151": {
      "name": "Loja Exemplo",
      "base_url": "https://erp.example.com/api/v1",
      "auth": { "type": "bearer", "token_env": "ATLAS_TOKEN_2151" },
      "rate_limit_per_sec": 10,
      "routes": ["pedidos"],
      "route_overrides": { "pedidos": { "slice_days": 7, "query": { "loja": "1" } } }
    },
    "99": { "base_url": "http://localhost:1/x" }
  },
  "routes": {
    "pedidos": {
      "path": "/pedidos",
      "records": "/data",
      "date_params": { "start": "data_inicial", "end": "data_final", "format": "%d/%m/%Y" },
      "slice_days": 1,
      "pagination": { "type": "page", "param": "page", "start": 1, "size_param": "por_pagina", "size": 500 },
      "date_field": "/data_pedido",
      "query": { "situacao": "todas" }
    },
    "notas": {
      "path": "/notas", "records": "",
      "date_params": { "start": "de", "end": "ate" },
      "pagination": { "type": "cursor", "cursor_path": "/next" }
    }
  }
}"#;

    fn parse_str(t: &str) -> Result<Config> {
        parse(t, Path::new("atlas.json"))
    }

    fn err(t: &str) -> String {
        let e = parse_str(t).unwrap_err();
        assert_eq!(classify(&e), Exit::Usage, "{e:#}");
        format!("{e:#}")
    }

    #[test]
    fn parses_the_spec_example_with_overrides() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.settings.retry_max, Some(7));
        let (cl, r) = c.route("2151", "pedidos").unwrap();
        assert_eq!(cl.name, "Loja Exemplo");
        assert_eq!(r.slice_days, 7, "override applied");
        assert_eq!(
            r.query,
            vec![
                ("loja".into(), "1".into()),
                ("situacao".into(), "todas".into())
            ]
        );
        assert_eq!(r.date_params.format, "%d/%m/%Y");
        assert!(matches!(
            r.pagination.kind,
            Pagination::Page {
                size: Some(500),
                ..
            }
        ));
        assert!(
            !cl.routes.contains_key("notas"),
            "client lists only pedidos"
        );
        // A client without a list gets every route, unchanged.
        let (_, r99) = c.route("99", "pedidos").unwrap();
        assert_eq!(r99.slice_days, 1);
        assert!(c.route("99", "notas").is_ok());
        assert!(
            matches!(cl.auth, Auth::Bearer(Secret::Env { ref var, .. }) if var == "ATLAS_TOKEN_2151")
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let e = err("{\n  \"clients\": {,\n}");
        assert!(e.contains("atlas.json: line 2, column"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let t = GOOD.replace("\"slice_days\": 1,", "\"slice_dayz\": 1,");
        let e = err(&t);
        assert!(e.contains("routes.pedidos"), "{e}");
        assert!(e.contains("slice_dayz"), "{e}");
        assert!(e.contains("line "), "{e}");
    }

    #[test]
    fn inline_secret_is_refused() {
        let e = err(&GOOD.replace(
            "\"token_env\": \"ATLAS_TOKEN_2151\"",
            "\"token\": \"abc123\"",
        ));
        assert!(e.contains("clients.2151.auth.token"), "{e}");
        assert!(e.contains("token_env"), "{e}");
        assert!(!e.contains("abc123"), "secret echoed: {e}");
    }

    #[test]
    fn oauth2_auth_is_read_and_checked() {
        let oauth = |auth: &str| {
            GOOD.replace(
                "{ \"type\": \"bearer\", \"token_env\": \"ATLAS_TOKEN_2151\" }",
                auth,
            )
        };
        let ok = oauth(
            r#"{ "type": "oauth2", "token_url": "https://a.example/token", "grant": "refresh_token",
                 "client_id_env": "ID", "client_secret_env": "SECRET", "refresh_token_file": "/rt",
                 "scope": "read" }"#,
        );
        assert_ne!(ok, GOOD, "the bearer auth was replaced");
        let c = parse_str(&ok).unwrap();
        let Auth::OAuth2(o) = &c.client("2151").unwrap().auth else {
            panic!("not oauth2")
        };
        assert_eq!(o.grant, Grant::RefreshToken);
        assert_eq!(o.token_url.as_str(), "https://a.example/token");
        assert!(matches!(o.refresh_token, Some(Secret::File { .. })));
        assert_eq!(o.scope.as_deref(), Some("read"));
        let cases = [
            (
                r#""grant": "password""#,
                "expected `client_credentials` or `refresh_token`",
            ),
            (
                r#""grant": "client_credentials", "client_id_env": "I""#,
                "client_secret",
            ),
            (
                r#""grant": "client_credentials", "client_id_env": "I", "client_secret_env": "S", "refresh_token_env": "R""#,
                "refresh_token",
            ),
            (r#""grant": "refresh_token""#, "client_id"),
            (
                r#""grant": "refresh_token", "client_id_env": "I", "refresh_token": "rt-123""#,
                "refresh_token_env",
            ),
        ];
        for (keys, says) in cases {
            let t = oauth(&format!(
                r#"{{ "type": "oauth2", "token_url": "https://a.example/token", {keys} }}"#
            ));
            let e = err(&t);
            assert!(
                e.contains("clients.2151.auth") && e.contains(says),
                "{keys}: {e}"
            );
            assert!(!e.contains("rt-123"), "secret echoed: {e}");
        }
        let e = err(&oauth(
            r#"{ "type": "oauth2", "token_url": "ftp://x", "grant": "refresh_token", "client_id_env": "I" }"#,
        ));
        assert!(e.contains("token_url"), "{e}");
    }

    #[test]
    fn oauth2_client_auth_and_login_keys() {
        let oauth = |keys: &str| {
            GOOD.replace(
                "{ \"type\": \"bearer\", \"token_env\": \"ATLAS_TOKEN_2151\" }",
                &format!(
                    r#"{{ "type": "oauth2", "token_url": "https://a.example/token",
                          "grant": "refresh_token", "client_id_env": "I" {keys} }}"#
                ),
            )
        };
        let get = |keys: &str| {
            let c = parse_str(&oauth(keys)).unwrap();
            let Auth::OAuth2(o) = c.client("2151").unwrap().auth.clone() else {
                panic!("not oauth2")
            };
            o
        };
        assert_eq!(get("").client_auth, ClientAuth::Basic, "the default");
        assert_eq!(get("").login, None);
        assert_eq!(
            get(r#", "client_auth": "body""#).client_auth,
            ClientAuth::Body
        );
        let o = get(r#", "authorize_url": "https://a.example/authorize",
                 "redirect_uri": "http://127.0.0.1:8765/callback", "pkce": true"#);
        let login = o.login.unwrap();
        assert!(login.pkce);
        assert_eq!(login.redirect_uri.port(), Some(8765));
        for ok in ["http://localhost:9/cb", "http://[::1]:9/"] {
            get(&format!(
                r#", "authorize_url": "https://a.example/a", "redirect_uri": "{ok}""#
            ));
        }
        let auth_url = r#", "authorize_url": "https://a.example/a""#;
        let cases = [
            (
                r#", "client_auth": "header""#.to_string(),
                "expected `basic` or `body`",
            ),
            (auth_url.to_string(), "redirect_uri"),
            (
                r#", "redirect_uri": "http://127.0.0.1:1/cb""#.into(),
                "authorize_url",
            ),
            (r#", "pkce": true"#.into(), "pkce"),
            (
                format!(r#"{auth_url}, "redirect_uri": "https://127.0.0.1:9/cb""#),
                "127.0.0.1, localhost or [::1]",
            ),
            (
                format!(r#"{auth_url}, "redirect_uri": "http://10.0.0.2:9/cb""#),
                "127.0.0.1, localhost or [::1]",
            ),
            (
                format!(r#"{auth_url}, "redirect_uri": "http://127.0.0.1/cb""#),
                "explicit port",
            ),
            (
                format!(r#"{auth_url}, "redirect_uri": "http://127.0.0.1:9/cb#x""#),
                "fragment",
            ),
            (
                r#", "authorize_url": "https://u:pw-4471@a.example/a", "redirect_uri": "http://127.0.0.1:9/""#.into(),
                "client_id_env/client_secret_env",
            ),
        ];
        for (keys, says) in cases {
            let e = err(&oauth(&keys));
            assert!(
                e.contains("clients.2151.auth") && e.contains(says),
                "{keys}: {e}"
            );
        }
        let cc = GOOD.replace(
            "{ \"type\": \"bearer\", \"token_env\": \"ATLAS_TOKEN_2151\" }",
            r#"{ "type": "oauth2", "token_url": "https://a.example/token", "grant": "client_credentials",
                 "client_id_env": "I", "client_secret_env": "S", "authorize_url": "https://a.example/a",
                 "redirect_uri": "http://127.0.0.1:9/" }"#,
        );
        assert!(err(&cc).contains("refresh_token"));
    }

    #[test]
    fn credentials_in_a_url_are_refused_and_never_echoed() {
        let with_token_url = |u: &str| {
            GOOD.replace(
                "{ \"type\": \"bearer\", \"token_env\": \"ATLAS_TOKEN_2151\" }",
                &format!(
                    r#"{{ "type": "oauth2", "token_url": "{u}", "grant": "refresh_token",
                          "client_id_env": "I" }}"#
                ),
            )
        };
        for (text, key) in [
            (
                with_token_url("https://app:pw-4471@a.example/token"),
                "clients.2151.auth.token_url",
            ),
            (
                with_token_url("ftp://app:pw-4471@a.example/token"),
                "clients.2151.auth.token_url",
            ),
            (
                GOOD.replace(
                    "https://erp.example.com/api/v1",
                    "https://app:pw-4471@erp.example.com/api/v1",
                ),
                "clients.2151.base_url",
            ),
        ] {
            let e = err(&text);
            assert!(e.contains(key) && e.contains("line"), "{e}");
            assert!(!e.contains("pw-4471"), "secret echoed: {e}");
        }
        let e = err(&with_token_url("https://app:pw-4471@a.example/token"));
        assert!(e.contains("client_id_env/client_secret_env"), "{e}");
    }

    #[test]
    fn each_validation_error() {
        let cases = [
            ("\"slice_days\": 1,", "\"slice_days\": 0,", "slice_days"),
            ("\"records\": \"/data\"", "\"records\": \"data\"", "records"),
            (
                "\"format\": \"%d/%m/%Y\"",
                "\"format\": \"%Q\"",
                "date_params.format",
            ),
            ("https://erp.example.com/api/v1", "ftp://erp", "base_url"),
            ("https://erp.example.com/api/v1", "not a url", "base_url"),
            (
                "\"routes\": [\"pedidos\"]",
                "\"routes\": [\"boletos\"]",
                "boletos",
            ),
            (
                "\"rate_limit_per_sec\": 10",
                "\"rate_limit_per_sec\": -1",
                "rate_limit_per_sec",
            ),
            ("\"retry_max\": 7", "\"retry_max\": 0", "retry_max"),
            (
                "\"batch_export\": 500",
                "\"batch_export\": 0",
                "batch_export",
            ),
            ("\"type\": \"page\"", "\"type\": \"pages\"", "pagination"),
            (
                "\"cursor_path\": \"/next\"",
                "\"cursor_path\": \"next\"",
                "cursor_path",
            ),
            ("\"path\": \"/pedidos\"", "\"path\": \"pedidos\"", "path"),
            (
                "\"slice_days\": 7,",
                "\"slice_days\": \"x\",",
                "route_overrides.pedidos",
            ),
            ("\"type\": \"bearer\"", "\"type\": \"oauth\"", "auth"),
            // A wrong type is named, and so is a missing secret reference.
            ("\"retry_max\": 7", "\"retry_max\": \"sete\"", "retry_max"),
            ("\"token_env\": \"ATLAS_TOKEN_2151\"", "\"x\": 1", "auth"),
        ];
        for (from, to, needle) in cases {
            assert!(GOOD.contains(from), "bad case {from}");
            let e = err(&GOOD.replacen(from, to, 1));
            assert!(e.contains(needle), "case {to}: {e}");
        }
    }

    #[test]
    fn validation_errors_point_at_the_key() {
        let e = err(&GOOD.replacen("\"slice_days\": 1,", "\"slice_days\": 0,", 1));
        let line = GOOD
            .lines()
            .position(|l| l.contains("\"slice_days\": 1,"))
            .unwrap()
            + 1;
        assert!(e.contains(&format!("line {line}, column")), "{e}");
        assert!(e.contains("routes.pedidos.slice_days"), "{e}");
    }

    #[test]
    fn names_with_dots_are_found_in_the_text() {
        let t = GOOD
            .replace(
                "\"pedidos\": {\n      \"path\"",
                "\"v1.pedidos\": {\n      \"path\"",
            )
            .replace("[\"pedidos\"]", "[\"v1.pedidos\"]")
            .replace(
                "\"route_overrides\": { \"pedidos\"",
                "\"route_overrides\": { \"v1.pedidos\"",
            )
            .replacen("\"slice_days\": 1,", "\"slice_days\": 0,", 1);
        let e = err(&t);
        let line = t
            .lines()
            .position(|l| l.contains("\"slice_days\": 0,"))
            .unwrap()
            + 1;
        assert!(
            e.contains(&format!(
                "line {line}, column 7, key 'routes.v1.pedidos.slice_days'"
            )),
            "{e}"
        );
        // In a client id too, and under a route override.
        let t = GOOD
            .replace("\"2151\": {", "\"21.51\": {")
            .replace("\"slice_days\": 7,", "\"slice_days\": 0,");
        let e = err(&t);
        let line = t
            .lines()
            .position(|l| l.contains("\"slice_days\": 0,"))
            .unwrap()
            + 1;
        assert!(e.contains(&format!("line {line}, column ")), "{e}");
        assert!(
            e.contains("key 'clients.21.51.route_overrides.pedidos.slice_days'"),
            "{e}"
        );
    }

    #[test]
    fn timezone_and_start_date_are_checked() {
        let t = GOOD.replace(
            "\"date_field\": \"/data_pedido\",",
            "\"date_field\": \"/data_pedido\", \"timezone\": \"Marte/Olimpo\",",
        );
        assert!(err(&t).contains("timezone"));
        let t = GOOD.replace("\"date_field\": \"/data_pedido\",", "\"date_field\": \"/data_pedido\", \"timezone\": \"America/Sao_Paulo\", \"start_date\": \"2025-02-30\",");
        assert!(err(&t).contains("start_date"));
    }

    #[test]
    fn secrets_resolve_from_env_or_file_without_echo() {
        let s = Secret::Env {
            var: "T".into(),
            key: "auth.token_env".into(),
        };
        assert_eq!(s.resolve(&|_| Some("v".into())).unwrap().expose(), "v");
        let e = format!("{:#}", s.resolve(&|_| None).unwrap_err());
        assert!(e.contains("T") && e.contains("auth.token_env"), "{e}");
        let dir = std::env::temp_dir().join(format!("atlas-secret-{}", std::process::id()));
        std::fs::write(&dir, "segredo\n").unwrap();
        let f = Secret::File {
            path: dir.clone(),
            key: "k".into(),
        };
        let v = f.resolve(&|_| None).unwrap();
        assert_eq!(v.expose(), "segredo");
        assert_eq!(format!("{v:?}"), "***");
        std::fs::remove_file(&dir).unwrap();
        let e = format!("{:#}", f.resolve(&|_| None).unwrap_err());
        assert!(e.contains("cannot read secret file"), "{e}");
    }

    #[test]
    fn clashing_tables_are_refused() {
        let t = GOOD.replace("\"99\": {", "\"2151 \": {");
        let e = err(&t);
        assert!(
            e.contains("share the table") || e.contains("clients.2151 "),
            "{e}"
        );
    }
}
