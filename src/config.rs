//! `atlas.json` + flags + environment -> one validated `Config` (SPEC §2, §3).
//!
//! Two stages, as in ripgrep: serde reads the file into raw structs (errors
//! carry file, line, column and the key path), then validation builds the
//! typed config used everywhere else. Nothing downstream re-reads the
//! environment or re-parses strings. Secrets stay references until `resolve`.

use crate::dates::{EndStyle, Zone};
use crate::exit::usage;
use crate::ident;
use anyhow::{Context, Result};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Defaults chosen by benchmark (README, "Performance").
pub const DEFAULT_THREADS: usize = 8;
pub const DEFAULT_WRITERS: usize = 2;
pub const DEFAULT_BATCH_EXPORT: usize = 2000;
pub const DEFAULT_RETRY_MAX: u32 = 5;
pub const DEFAULT_LEASE_SECS: u64 = 60;
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_PROGRESS_SECS: f64 = 2.0;
pub const DEFAULT_MAX_PAGES: u64 = 100_000;
pub const DEFAULT_ERROR_LOG: &str = "erros_scraps.log";

/// The whole validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages).
    pub source: PathBuf,
    /// `database_url` from the file, lowest precedence.
    pub database_url: Option<String>,
    /// Run settings from the file (flags and environment override them).
    pub file_settings: FileSettings,
    /// Clients by id, each with its effective routes (overrides applied).
    pub clients: BTreeMap<String, Client>,
}

/// Settings the file may set; `None` = not set there.
#[derive(Debug, Clone, Default)]
pub struct FileSettings {
    pub retry_max: Option<u32>,
    pub batch_export: Option<usize>,
    pub threads: Option<usize>,
    pub writers: Option<usize>,
    pub lease_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub progress_secs: Option<f64>,
    pub error_log: Option<PathBuf>,
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
    pub auth: Auth,
    /// Requests per second shared by every fetcher thread of this client.
    pub rate_limit_per_sec: Option<f64>,
    /// Routes this client may use, with its overrides applied.
    pub routes: BTreeMap<String, Route>,
}

/// One endpoint shape, as the client sees it.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    /// JSON pointer to the records array (`""` = the body is the array).
    pub records: String,
    /// JSON pointer applied to each element of the records array.
    pub records_unwrap: Option<String>,
    pub date_params: DateParams,
    pub slice_days: u32,
    pub pagination: Paging,
    /// JSON pointer to the record's date; `None` = automatic detection.
    pub date_field: Option<String>,
    /// Zone in which timestamps are dated; `None` = their own offset.
    pub timezone: Option<Zone>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub undated: Undated,
    /// First day `sync` loads when nothing was loaded yet.
    pub start_date: Option<NaiveDate>,
    /// Charset bodies are read in, whatever they declare; `None` = declared, else UTF-8.
    pub charset: Option<crate::http::Charset>,
}

/// How a slice's bounds are sent to the API.
#[derive(Debug, Clone)]
pub struct DateParams {
    pub start: String,
    pub end: String,
    /// chrono format, validated at load.
    pub format: String,
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
    pub kind: Pagination,
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
    /// Reads the secret. Errors name the variable or file, never a value.
    pub fn resolve(&self) -> Result<SecretValue> {
        self.resolve_with(&|k| std::env::var(k).ok())
    }

    pub fn resolve_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<SecretValue> {
        match self {
            Secret::Env { var, key } => match env(var) {
                Some(v) if !v.is_empty() => Ok(SecretValue(v)),
                _ => Err(usage(format!(
                    "environment variable {var} (from {key}) is not set or empty"
                ))),
            },
            Secret::File { path, key } => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    usage(format!(
                        "cannot read secret file {} (from {key}): {e}",
                        path.display()
                    ))
                })?;
                let v = text.trim_end_matches(['\r', '\n']).to_string();
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

// ---------------------------------------------------------------- raw file

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    database_url: Option<String>,
    retry_max: Option<u32>,
    batch_export: Option<usize>,
    threads: Option<usize>,
    writers: Option<usize>,
    lease_secs: Option<u64>,
    timeout_secs: Option<u64>,
    progress_secs: Option<f64>,
    error_log: Option<PathBuf>,
    #[serde(default)]
    clients: BTreeMap<String, RawClient>,
    #[serde(default)]
    routes: BTreeMap<String, RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Option<String>,
    base_url: String,
    #[serde(default)]
    auth: Option<RawAuth>,
    rate_limit_per_sec: Option<f64>,
    routes: Option<Vec<String>>,
    #[serde(default)]
    route_overrides: BTreeMap<String, Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawAuth {
    None,
    Bearer {
        token_env: Option<String>,
        token_file: Option<PathBuf>,
        token: Option<Value>,
    },
    Header {
        name: String,
        value_env: Option<String>,
        value_file: Option<PathBuf>,
        value: Option<Value>,
    },
    Query {
        param: String,
        value_env: Option<String>,
        value_file: Option<PathBuf>,
        value: Option<Value>,
    },
    Basic {
        user: String,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        password: Option<Value>,
    },
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    records: String,
    records_unwrap: Option<String>,
    date_params: RawDateParams,
    #[serde(default = "one")]
    slice_days: u32,
    pagination: Option<RawPagination>,
    date_field: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    undated: Option<Undated>,
    start_date: Option<String>,
    charset: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawDateParams {
    start: String,
    end: String,
    format: Option<String>,
    end_style: Option<EndStyle>,
}

#[derive(Deserialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawPagination {
    None {
        max_pages: Option<u64>,
    },
    Page {
        param: Option<String>,
        start: Option<i64>,
        size_param: Option<String>,
        size: Option<u64>,
        total_pages: Option<String>,
        #[serde(default)]
        stop_on_short_page: bool,
        max_pages: Option<u64>,
    },
    Offset {
        offset_param: Option<String>,
        limit_param: Option<String>,
        limit: Option<u64>,
        total: Option<String>,
        max_pages: Option<u64>,
    },
    Cursor {
        param: Option<String>,
        cursor_path: String,
        max_pages: Option<u64>,
    },
    NextUrl {
        next_path: String,
        max_pages: Option<u64>,
    },
    LinkHeader {
        max_pages: Option<u64>,
    },
}

// ---------------------------------------------------------------- loading

/// The config path: flag, then `ATLAS_CONFIG`, then `./atlas.json`.
/// The bool says whether it was asked for explicitly (then it must exist).
pub fn config_path(flag: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> (PathBuf, bool) {
    if let Some(p) = flag {
        return (p.to_path_buf(), true);
    }
    if let Some(p) = env("ATLAS_CONFIG").filter(|s| !s.is_empty()) {
        return (PathBuf::from(p), true);
    }
    (PathBuf::from("atlas.json"), false)
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read config {}: {e}", path.display())))?;
    parse(&text, path)
}

/// Parses and validates config text; `source` names it in errors.
pub fn parse(text: &str, source: &Path) -> Result<Config> {
    let src = source.display().to_string();
    let de = &mut serde_json::Deserializer::from_str(text);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
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
    build(raw, &tree, source, text)
}

// serde_json appends " at line L column C" to its messages; we print our own.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

fn build(raw: RawFile, tree: &Value, source: &Path, text: &str) -> Result<Config> {
    let src = source.display().to_string();
    let bad = |key: &str, msg: String| match key_position(text, key) {
        Some((line, col)) => usage(format!(
            "{src}: line {line}, column {col}, key '{key}': {msg}"
        )),
        None => usage(format!("{src}: key '{key}': {msg}")),
    };
    let file_settings = FileSettings {
        retry_max: raw.retry_max,
        batch_export: raw.batch_export,
        threads: raw.threads,
        writers: raw.writers,
        lease_secs: raw.lease_secs,
        timeout_secs: raw.timeout_secs,
        progress_secs: raw.progress_secs,
        error_log: raw.error_log,
    };
    check_settings(&file_settings).map_err(|(k, m)| bad(k, m))?;

    // Routes as written, validated once each so errors point at `routes.X`.
    let mut routes = BTreeMap::new();
    let mut tables = BTreeMap::new();
    for (name, r) in &raw.routes {
        let key = format!("routes.{name}");
        if name.is_empty() {
            return Err(bad("routes", "a route name is empty".into()));
        }
        routes.insert(
            name.clone(),
            route(name, r.clone()).map_err(|(k, m)| bad(&format!("{key}.{k}"), m))?,
        );
    }

    let mut clients = BTreeMap::new();
    for (id, c) in raw.clients {
        let key = format!("clients.{id}");
        let client_ident = ident::sanitize(&id).map_err(|m| bad(&key, m))?;
        let base_url = url::Url::parse(&c.base_url)
            .map_err(|e| bad(&format!("{key}.base_url"), format!("not a URL ({e})")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(bad(
                &format!("{key}.base_url"),
                "must be http:// or https://".into(),
            ));
        }
        if let Some(r) = c.rate_limit_per_sec {
            if !(r > 0.0 && r.is_finite()) {
                return Err(bad(
                    &format!("{key}.rate_limit_per_sec"),
                    "must be a positive number".into(),
                ));
            }
        }
        let auth = auth(c.auth, &format!("{key}.auth")).map_err(|(k, m)| bad(&k, m))?;
        for name in c.route_overrides.keys() {
            if !routes.contains_key(name) {
                return Err(bad(
                    &format!("{key}.route_overrides.{name}"),
                    "no such route in 'routes'".into(),
                ));
            }
        }
        let names: Vec<String> = match c.routes {
            Some(list) => {
                for n in &list {
                    if !routes.contains_key(n) {
                        return Err(bad(
                            &format!("{key}.routes"),
                            format!("route '{n}' is not defined in 'routes'"),
                        ));
                    }
                }
                list
            }
            None => routes.keys().cloned().collect(),
        };
        let mut effective = BTreeMap::new();
        for n in names {
            let mut r: Route = match c.route_overrides.get(&n) {
                None => routes[&n].clone(),
                Some(ov) => {
                    let okey = format!("{key}.route_overrides.{n}");
                    let mut merged = tree["routes"][&n].clone();
                    merge(&mut merged, ov);
                    let raw_r: RawRoute =
                        serde_path_to_error::deserialize(merged).map_err(|e| {
                            let p = e.path().to_string();
                            bad(&format!("{okey}.{p}"), e.into_inner().to_string())
                        })?;
                    route(&n, raw_r).map_err(|(k, m)| bad(&format!("{okey}.{k}"), m))?
                }
            };
            // Client-wide headers and query apply to every route, under the route's own.
            for (k, v) in c.headers.iter().rev() {
                if !r.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
                    r.headers.insert(0, (k.clone(), v.clone()));
                }
            }
            for (k, v) in c.query.iter().rev() {
                if !r.query.iter().any(|(q, _)| q == k) {
                    r.query.insert(0, (k.clone(), v.clone()));
                }
            }
            let table = ident::raw_table(
                &client_ident,
                &ident::sanitize(&n).map_err(|m| bad(&format!("routes.{n}"), m))?,
            )
            .map_err(|m| bad(&key, m))?;
            if let Some((other_c, other_r)) = tables.insert(table.clone(), (id.clone(), n.clone()))
            {
                return Err(bad(
                    &key,
                    format!("client '{id}' route '{n}' and client '{other_c}' route '{other_r}' would share the table {table}"),
                ));
            }
            effective.insert(n, r);
        }
        clients.insert(
            id.clone(),
            Client {
                name: c.name.unwrap_or_else(|| id.clone()),
                id,
                base_url,
                auth,
                rate_limit_per_sec: c.rate_limit_per_sec,
                routes: effective,
            },
        );
    }
    Ok(Config {
        source: source.to_path_buf(),
        database_url: raw.database_url,
        file_settings,
        clients,
    })
}

/// Line and column (1-based) of the key at a dotted path (`routes.pedidos.
/// slice_days`), for validation errors found after parsing. The text already
/// parsed as JSON, so a structural walk (strings, nesting, keys) is enough.
fn key_position(text: &str, path: &str) -> Option<(usize, usize)> {
    let want: Vec<&str> = path.split('.').collect();
    // One entry per open object: the key being read or last read there.
    let mut stack: Vec<Option<String>> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut pending: Option<(String, usize)> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                pending = Some((text.get(start + 1..i.min(text.len()))?.to_string(), start));
            }
            b':' => {
                if let (Some((key, at)), Some(top)) = (pending.take(), stack.last_mut()) {
                    *top = Some(key);
                    let here: Vec<&str> =
                        stack.iter().map(|k| k.as_deref().unwrap_or("")).collect();
                    if here == want {
                        let line = text[..at].matches('\n').count() + 1;
                        let col = text[..at].rfind('\n').map(|n| at - n).unwrap_or(at + 1);
                        return Some((line, col));
                    }
                }
            }
            b'{' => stack.push(None),
            // Arrays are not keyed: their elements hide keys from the path.
            b'[' => stack.push(Some("[]".into())),
            b'}' | b']' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Deep merge: objects merge key by key, anything else replaces. An object
/// carrying `type` (pagination, auth) replaces whole, since its fields depend on it.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if v.is_object() && v.get("type").is_none() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

type FieldError = (String, String);

fn check_settings(s: &FileSettings) -> std::result::Result<(), (&'static str, String)> {
    if s.retry_max == Some(0) {
        return Err(("retry_max", "must be at least 1".into()));
    }
    if s.batch_export == Some(0) {
        return Err(("batch_export", "must be at least 1".into()));
    }
    if matches!(s.threads, Some(0)) || s.threads.is_some_and(|t| t > 512) {
        return Err(("threads", "must be between 1 and 512".into()));
    }
    if matches!(s.writers, Some(0)) || s.writers.is_some_and(|t| t > 64) {
        return Err(("writers", "must be between 1 and 64".into()));
    }
    if s.lease_secs == Some(0) {
        return Err(("lease_secs", "must be at least 1".into()));
    }
    if s.timeout_secs == Some(0) {
        return Err(("timeout_secs", "must be at least 1".into()));
    }
    if s.progress_secs.is_some_and(|p| !(p > 0.0 && p.is_finite())) {
        return Err(("progress_secs", "must be a positive number".into()));
    }
    Ok(())
}

fn pointer(key: &str, p: &str) -> std::result::Result<String, FieldError> {
    if p.is_empty() || p.starts_with('/') {
        Ok(p.to_string())
    } else {
        Err((
            key.into(),
            format!("'{p}' is not a JSON pointer (use \"\" or start with '/')"),
        ))
    }
}

fn nonempty(key: &str, v: &str) -> std::result::Result<String, FieldError> {
    if v.trim().is_empty() {
        Err((key.into(), "must not be empty".into()))
    } else {
        Ok(v.to_string())
    }
}

fn route(name: &str, r: RawRoute) -> std::result::Result<Route, FieldError> {
    if !(r.path.is_empty() || r.path.starts_with('/')) {
        return Err(("path".into(), format!("'{}' must start with '/'", r.path)));
    }
    if r.slice_days == 0 || r.slice_days > 366 {
        return Err(("slice_days".into(), "must be between 1 and 366".into()));
    }
    let format = r.date_params.format.unwrap_or_else(|| "%Y-%m-%d".into());
    let end_style = r.date_params.end_style.unwrap_or(EndStyle::Inclusive);
    crate::dates::check_format(&format, end_style)
        .map_err(|m| ("date_params.format".to_string(), m))?;
    let date_params = DateParams {
        start: nonempty("date_params.start", &r.date_params.start)?,
        end: nonempty("date_params.end", &r.date_params.end)?,
        format,
        end_style,
    };
    let timezone = match &r.timezone {
        None => None,
        Some(z) => Some(Zone::parse(z).map_err(|m| ("timezone".to_string(), m))?),
    };
    let start_date = match &r.start_date {
        None => None,
        Some(d) => Some(NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
            (
                "start_date".to_string(),
                format!("'{d}' is not a date YYYY-MM-DD"),
            )
        })?),
    };
    let charset = match &r.charset {
        None => None,
        Some(c) => Some(crate::http::Charset::from_label(c).ok_or_else(|| {
            (
                "charset".to_string(),
                format!("'{c}' is not a charset atlas decodes (utf-8, iso-8859-1, windows-1252)"),
            )
        })?),
    };
    Ok(Route {
        name: name.to_string(),
        path: r.path,
        records: pointer("records", &r.records)?,
        records_unwrap: r
            .records_unwrap
            .map(|p| pointer("records_unwrap", &p))
            .transpose()?,
        date_params,
        slice_days: r.slice_days,
        pagination: pagination(r.pagination)?,
        date_field: r
            .date_field
            .map(|p| pointer("date_field", &p))
            .transpose()?,
        timezone,
        query: r.query.into_iter().collect(),
        headers: r.headers.into_iter().collect(),
        undated: r.undated.unwrap_or(Undated::SliceStart),
        start_date,
        charset,
    })
}

fn pagination(p: Option<RawPagination>) -> std::result::Result<Paging, FieldError> {
    let k = "pagination";
    let mp = |m: Option<u64>| -> std::result::Result<u64, FieldError> {
        match m {
            Some(0) => Err((format!("{k}.max_pages"), "must be at least 1".into())),
            Some(n) => Ok(n),
            None => Ok(DEFAULT_MAX_PAGES),
        }
    };
    let name =
        |key: &str, v: Option<String>, default: &str| -> std::result::Result<String, FieldError> {
            nonempty(
                &format!("{k}.{key}"),
                &v.unwrap_or_else(|| default.to_string()),
            )
        };
    let ptr = |key: &str, v: Option<String>| -> std::result::Result<Option<String>, FieldError> {
        v.map(|p| pointer(&format!("{k}.{key}"), &p)).transpose()
    };
    Ok(match p.unwrap_or(RawPagination::None { max_pages: None }) {
        RawPagination::None { max_pages } => Paging {
            kind: Pagination::None,
            max_pages: mp(max_pages)?,
        },
        RawPagination::Page {
            param,
            start,
            size_param,
            size,
            total_pages,
            stop_on_short_page,
            max_pages,
        } => {
            if size == Some(0) {
                return Err((format!("{k}.size"), "must be at least 1".into()));
            }
            if stop_on_short_page && size.is_none() {
                return Err((
                    format!("{k}.stop_on_short_page"),
                    "needs 'size' to know what a short page is".into(),
                ));
            }
            Paging {
                kind: Pagination::Page {
                    param: name("param", param, "page")?,
                    start: start.unwrap_or(1),
                    size_param: size_param
                        .map(|s| nonempty(&format!("{k}.size_param"), &s))
                        .transpose()?,
                    size,
                    total_pages: ptr("total_pages", total_pages)?,
                    stop_on_short_page,
                },
                max_pages: mp(max_pages)?,
            }
        }
        RawPagination::Offset {
            offset_param,
            limit_param,
            limit,
            total,
            max_pages,
        } => {
            if limit == Some(0) {
                return Err((format!("{k}.limit"), "must be at least 1".into()));
            }
            Paging {
                kind: Pagination::Offset {
                    offset_param: name("offset_param", offset_param, "offset")?,
                    limit_param: name("limit_param", limit_param, "limit")?,
                    limit: limit.unwrap_or(100),
                    total: ptr("total", total)?,
                },
                max_pages: mp(max_pages)?,
            }
        }
        RawPagination::Cursor {
            param,
            cursor_path,
            max_pages,
        } => Paging {
            kind: Pagination::Cursor {
                param: name("param", param, "cursor")?,
                cursor_path: pointer(&format!("{k}.cursor_path"), &cursor_path)?,
            },
            max_pages: mp(max_pages)?,
        },
        RawPagination::NextUrl {
            next_path,
            max_pages,
        } => Paging {
            kind: Pagination::NextUrl {
                next_path: pointer(&format!("{k}.next_path"), &next_path)?,
            },
            max_pages: mp(max_pages)?,
        },
        RawPagination::LinkHeader { max_pages } => Paging {
            kind: Pagination::LinkHeader,
            max_pages: mp(max_pages)?,
        },
    })
}

fn auth(a: Option<RawAuth>, key: &str) -> std::result::Result<Auth, FieldError> {
    let inline = |field: &str, alt: &str| -> FieldError {
        (
            format!("{key}.{field}"),
            format!("secrets are never written in the config: use {alt}_env or {alt}_file"),
        )
    };
    let secret = |env: Option<String>,
                  file: Option<PathBuf>,
                  field: &str|
     -> std::result::Result<Secret, FieldError> {
        let k = format!("{key}.{field}");
        match (env, file) {
            (Some(var), None) if !var.trim().is_empty() => Ok(Secret::Env {
                var,
                key: format!("{k}_env"),
            }),
            (None, Some(path)) => Ok(Secret::File {
                path,
                key: format!("{k}_file"),
            }),
            (Some(_), Some(_)) => Err((k, format!("give {field}_env or {field}_file, not both"))),
            _ => Err((
                k.clone(),
                format!("missing: give {field}_env (a variable name) or {field}_file (a path)"),
            )),
        }
    };
    Ok(match a {
        None | Some(RawAuth::None) => Auth::None,
        Some(RawAuth::Bearer {
            token_env,
            token_file,
            token,
        }) => {
            if token.is_some() {
                return Err(inline("token", "token"));
            }
            Auth::Bearer(secret(token_env, token_file, "token")?)
        }
        Some(RawAuth::Header {
            name,
            value_env,
            value_file,
            value,
        }) => {
            if value.is_some() {
                return Err(inline("value", "value"));
            }
            Auth::Header {
                name: nonempty(&format!("{key}.name"), &name)?,
                value: secret(value_env, value_file, "value")?,
            }
        }
        Some(RawAuth::Query {
            param,
            value_env,
            value_file,
            value,
        }) => {
            if value.is_some() {
                return Err(inline("value", "value"));
            }
            Auth::Query {
                param: nonempty(&format!("{key}.param"), &param)?,
                value: secret(value_env, value_file, "value")?,
            }
        }
        Some(RawAuth::Basic {
            user,
            password_env,
            password_file,
            password,
        }) => {
            if password.is_some() {
                return Err(inline("password", "password"));
            }
            Auth::Basic {
                user,
                password: secret(password_env, password_file, "password")?,
            }
        }
    })
}

// ---------------------------------------------------------------- settings

/// Run settings after precedence: flag > environment > file > default.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    pub threads: usize,
    pub writers: usize,
    pub batch_export: usize,
    pub retry_max: u32,
    pub lease: Duration,
    pub timeout: Duration,
    pub progress: Duration,
    /// Chunks (pages) queued between fetchers and writers; `None` = 2 x threads.
    pub channel_capacity: Option<usize>,
    /// Retry backoff: first wait and cap (full jitter below them).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

/// Flags that override run settings.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    pub threads: Option<usize>,
    pub writers: Option<usize>,
    pub batch_export: Option<usize>,
    pub retry_max: Option<u32>,
}

fn env_num<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Option<T>> {
    match env(var).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            usage(format!(
                "environment variable {var}='{v}' is not a valid number"
            ))
        }),
    }
}

impl RunSettings {
    pub fn resolve(
        flags: &RunFlags,
        env: &dyn Fn(&str) -> Option<String>,
        file: &FileSettings,
    ) -> Result<RunSettings> {
        let threads = flags
            .threads
            .or(env_num(env, "ATLAS_THREADS")?)
            .or(file.threads)
            .unwrap_or(DEFAULT_THREADS);
        let writers = flags
            .writers
            .or(env_num(env, "ATLAS_WRITERS")?)
            .or(file.writers)
            .unwrap_or(DEFAULT_WRITERS);
        let batch_export = flags
            .batch_export
            .or(env_num(env, "ATLAS_BATCH_EXPORT")?)
            .or(file.batch_export)
            .unwrap_or(DEFAULT_BATCH_EXPORT);
        let retry_max = flags
            .retry_max
            .or(env_num(env, "ATLAS_RETRY_MAX")?)
            .or(file.retry_max)
            .unwrap_or(DEFAULT_RETRY_MAX);
        let lease = env_num(env, "ATLAS_LEASE_SECS")?
            .or(file.lease_secs)
            .unwrap_or(DEFAULT_LEASE_SECS);
        let timeout = env_num(env, "ATLAS_TIMEOUT_SECS")?
            .or(file.timeout_secs)
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        let progress: f64 = env_num(env, "ATLAS_PROGRESS_SECS")?
            .or(file.progress_secs)
            .unwrap_or(DEFAULT_PROGRESS_SECS);
        let s = FileSettings {
            retry_max: Some(retry_max),
            batch_export: Some(batch_export),
            threads: Some(threads),
            writers: Some(writers),
            lease_secs: Some(lease),
            timeout_secs: Some(timeout),
            progress_secs: Some(progress),
            error_log: None,
        };
        check_settings(&s).map_err(|(k, m)| usage(format!("{k}: {m}")))?;
        let channel_capacity: Option<usize> = env_num(env, "ATLAS_CHANNEL_CAPACITY")?;
        if channel_capacity == Some(0) {
            return Err(usage("ATLAS_CHANNEL_CAPACITY must be at least 1"));
        }
        let backoff_ms: u64 = env_num(env, "ATLAS_BACKOFF_MS")?.unwrap_or(1000);
        let backoff_cap_ms: u64 = env_num(env, "ATLAS_BACKOFF_CAP_MS")?.unwrap_or(60_000);
        Ok(RunSettings {
            channel_capacity,
            backoff_base: Duration::from_millis(backoff_ms),
            backoff_cap: Duration::from_millis(backoff_cap_ms.max(backoff_ms)),
            threads,
            writers,
            batch_export,
            retry_max,
            lease: Duration::from_secs(lease),
            timeout: Duration::from_secs(timeout),
            progress: Duration::from_secs_f64(progress),
        })
    }
}

/// The database URL: flag, `ATLAS_DATABASE_URL`, `DATABASE_URL`, then the file.
pub fn database_url(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    cfg: Option<&Config>,
) -> Result<String> {
    flag.map(str::to_string)
        .or_else(|| env("ATLAS_DATABASE_URL").filter(|s| !s.is_empty()))
        .or_else(|| env("DATABASE_URL").filter(|s| !s.is_empty()))
        .or_else(|| cfg.and_then(|c| c.database_url.clone()))
        .ok_or_else(|| {
            usage("no database URL: give --database-url, set ATLAS_DATABASE_URL or DATABASE_URL, or put database_url in atlas.json")
        })
}

/// The error log path: flag, `ATLAS_ERROR_LOG`, the file, then `erros_scraps.log`.
pub fn error_log(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    cfg: Option<&Config>,
) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            env("ATLAS_ERROR_LOG")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| cfg.and_then(|c| c.file_settings.error_log.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ERROR_LOG))
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
        assert_eq!(c.file_settings.retry_max, Some(7));
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
    fn wrong_type_is_named() {
        let e = err(&GOOD.replace("\"retry_max\": 7", "\"retry_max\": \"sete\""));
        assert!(e.contains("retry_max"), "{e}");
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
    fn missing_secret_reference_is_refused() {
        let e = err(&GOOD.replace("\"token_env\": \"ATLAS_TOKEN_2151\"", "\"x\": 1"));
        assert!(e.contains("auth"), "{e}");
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
        assert_eq!(key_position("{\n  \"a\": {\"b\": 1}}", "a.b"), Some((2, 9)));
        assert_eq!(key_position("{\"a\": 1}", "x"), None);
        // A key of the same name elsewhere (in an array, in another object) is not it.
        assert_eq!(
            key_position("{\"c\": {\"b\": [{\"a\": 1}]}, \"a\": 2}", "a"),
            Some((1, 26))
        );
        assert_eq!(
            key_position("{\"x\": \"a:\\\"\", \"a\": 2}", "a"),
            Some((1, 15))
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
        assert_eq!(s.resolve_with(&|_| Some("v".into())).unwrap().expose(), "v");
        let e = format!("{:#}", s.resolve_with(&|_| None).unwrap_err());
        assert!(e.contains("T") && e.contains("auth.token_env"), "{e}");
        let dir = std::env::temp_dir().join(format!("atlas-secret-{}", std::process::id()));
        std::fs::write(&dir, "segredo\n").unwrap();
        let f = Secret::File {
            path: dir.clone(),
            key: "k".into(),
        };
        let v = f.resolve().unwrap();
        assert_eq!(v.expose(), "segredo");
        assert_eq!(format!("{v:?}"), "***");
        std::fs::remove_file(&dir).unwrap();
        let e = format!("{:#}", f.resolve().unwrap_err());
        assert!(e.contains("cannot read secret file"), "{e}");
    }

    #[test]
    fn settings_precedence_flag_env_file_default() {
        let file = FileSettings {
            threads: Some(3),
            writers: Some(3),
            batch_export: Some(300),
            ..Default::default()
        };
        let env = |k: &str| match k {
            "ATLAS_WRITERS" => Some("5".to_string()),
            "ATLAS_BATCH_EXPORT" => Some("700".to_string()),
            _ => None,
        };
        let flags = RunFlags {
            batch_export: Some(900),
            ..Default::default()
        };
        let s = RunSettings::resolve(&flags, &env, &file).unwrap();
        assert_eq!(s.batch_export, 900, "flag wins");
        assert_eq!(s.writers, 5, "env over file");
        assert_eq!(s.threads, 3, "file over default");
        assert_eq!(s.retry_max, DEFAULT_RETRY_MAX);
        let bad = |k: &str| (k == "ATLAS_THREADS").then(|| "muitos".to_string());
        let e = RunSettings::resolve(&RunFlags::default(), &bad, &file).unwrap_err();
        assert!(format!("{e}").contains("ATLAS_THREADS"));
        let zero = RunFlags {
            threads: Some(0),
            ..Default::default()
        };
        assert!(RunSettings::resolve(&zero, &|_| None, &file).is_err());
    }

    #[test]
    fn database_url_precedence() {
        let c = parse_str(GOOD).unwrap();
        let env = |k: &str| (k == "DATABASE_URL").then(|| "postgres://env/db".to_string());
        assert_eq!(
            database_url(Some("postgres://flag/db"), &env, Some(&c)).unwrap(),
            "postgres://flag/db"
        );
        assert_eq!(
            database_url(None, &env, Some(&c)).unwrap(),
            "postgres://env/db"
        );
        assert_eq!(
            database_url(None, &|_| None, Some(&c)).unwrap(),
            "postgres://atlas@db/atlas"
        );
        assert!(database_url(None, &|_| None, None).is_err());
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
