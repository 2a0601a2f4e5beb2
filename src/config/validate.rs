//! Raw file -> validated `Config`: every check that serde cannot make
//! (pointers, formats, ranges, URLs, secret references, route lists and
//! overrides, table names), each error naming its key with line and column.

use super::position::{key_position, Key};
use super::ranges;
use super::raw::{RawAuth, RawClient, RawFile, RawOAuth2, RawPagination, RawRoute};
use super::settings::Layer;
use super::template;
use super::{
    Auth, BodyFormat, Client, Config, DateParams, Grant, Login, Method, OAuth2, Pagination, Paging,
    Route, Secret, Undated,
};
use crate::dates::{self, EndStyle, Zone};
use crate::exit::usage;
use crate::http::userinfo;
use crate::ident;
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a URL with `user:password@` is refused: the file would hold a
/// secret, and every line that shows the URL would too.
const NO_USERINFO: &str = "must not hold credentials (user:password@ is written in the file and \
    travels with the URL): put credentials in client_id_env/client_secret_env";

/// The same for `base_url`, whose credentials belong to `auth`.
const NO_USERINFO_BASE: &str = "must not hold credentials (user:password@ is written in the file \
    and travels with the URL): put credentials in auth (type basic with user and password_env, \
    or oauth2 with client_id_env/client_secret_env)";

/// Pages a slice may take when the route sets no `max_pages`.
pub const DEFAULT_MAX_PAGES: u64 = 100_000;

/// Longest wait an API may ask for before the page's slice fails instead.
pub const DEFAULT_MAX_PAUSE_SECS: u64 = 900;

/// Validates the parsed file. `tree` is the same file as a value tree (to
/// merge route overrides), `text` its source (to point at keys).
pub fn build(raw: RawFile, tree: &Value, source: &Path, text: &str) -> Result<Config> {
    let v = Validator {
        src: source.display().to_string(),
        text,
    };
    let settings = Layer {
        retry_max: raw.retry_max,
        batch_export: raw.batch_export,
        threads: raw.threads,
        writers: raw.writers,
        lease_secs: raw.lease_secs,
        timeout_secs: raw.timeout_secs,
        progress_secs: raw.progress_secs,
        error_log: raw.error_log,
        memory_mb: raw.memory_mb,
        max_body_mb: raw.max_body_mb,
        metrics_file: raw.metrics_file,
    };
    settings.check().map_err(|(k, m)| v.bad(&Key::top(k), m))?;
    let notify = raw
        .notify
        .map(super::notify::validate)
        .transpose()
        .map_err(|(k, m)| v.bad(&Key::top("notify").dotted(&k), m))?;

    // Routes as written, validated once each so errors point at `routes.X`.
    let mut routes = BTreeMap::new();
    for (name, r) in &raw.routes {
        if name.is_empty() {
            return Err(v.bad(&Key::top("routes"), "a route name is empty".into()));
        }
        let key = Key::top("routes").named(name);
        let r = route(name, r.clone()).map_err(|(k, m)| v.bad(&key.dotted(&k), m))?;
        routes.insert(name.clone(), r);
    }

    let mut clients = BTreeMap::new();
    let mut tables = BTreeMap::new();
    for (id, c) in raw.clients {
        let client = v.client(&id, c, &routes, &tree["routes"], &mut tables)?;
        clients.insert(id, client);
    }
    Ok(Config {
        source: source.to_path_buf(),
        database_url: raw.database_url,
        settings,
        clients,
        notify,
    })
}

/// Where errors point: the file's name and text.
struct Validator<'a> {
    src: String,
    text: &'a str,
}

impl Validator<'_> {
    /// A bad-input error naming the key, with its line and column when found.
    fn bad(&self, key: &Key, msg: String) -> anyhow::Error {
        let src = &self.src;
        match key_position(self.text, key) {
            Some((line, col)) => usage(format!(
                "{src}: line {line}, column {col}, key '{key}': {msg}"
            )),
            None => usage(format!("{src}: key '{key}': {msg}")),
        }
    }

    /// One client with its effective routes. `tables` holds the raw table of
    /// every (client, route) seen so far: two may not share one.
    fn client(
        &self,
        id: &str,
        c: RawClient,
        routes: &BTreeMap<String, Route>,
        raw_routes: &Value,
        tables: &mut BTreeMap<String, (String, String)>,
    ) -> Result<Client> {
        let key = Key::top("clients").named(id);
        let client_ident = ident::sanitize(id).map_err(|m| self.bad(&key, m))?;
        let base_url = url::Url::parse(&c.base_url)
            .map_err(|e| self.bad(&key.dotted("base_url"), format!("not a URL ({e})")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(self.bad(
                &key.dotted("base_url"),
                "must be http:// or https://".into(),
            ));
        }
        if userinfo::has(&base_url) {
            return Err(self.bad(&key.dotted("base_url"), NO_USERINFO_BASE.into()));
        }
        ranges::check(
            "rate_limit_per_sec",
            ranges::RATE_LIMIT_PER_SEC,
            c.rate_limit_per_sec,
        )
        .and_then(|()| {
            ranges::check_count("max_pause_secs", ranges::MAX_PAUSE_SECS, c.max_pause_secs)
        })
        .map_err(|(k, m)| self.bad(&key.dotted(k), m))?;
        let ca_certs = match &c.ca_file {
            None => Vec::new(),
            Some(path) => ca_certs(path).map_err(|m| self.bad(&key.dotted("ca_file"), m))?,
        };
        let auth_key = key.dotted("auth");
        let auth = auth(c.auth, &auth_key).map_err(|(k, m)| self.bad(&auth_key.dotted(&k), m))?;
        for name in c.route_overrides.keys() {
            if !routes.contains_key(name) {
                return Err(self.bad(
                    &key.dotted("route_overrides").named(name),
                    "no such route in 'routes'".into(),
                ));
            }
        }
        let names: Vec<String> = match c.routes {
            Some(list) => {
                if let Some(n) = list.iter().find(|n| !routes.contains_key(*n)) {
                    return Err(self.bad(
                        &key.dotted("routes"),
                        format!("route '{n}' is not defined in 'routes'"),
                    ));
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
                    let okey = key.dotted("route_overrides").named(&n);
                    let mut merged = raw_routes[&n].clone();
                    merge(&mut merged, ov);
                    let raw_r: RawRoute =
                        serde_path_to_error::deserialize(merged).map_err(|e| {
                            let p = e.path().to_string();
                            self.bad(&okey.dotted(&p), e.into_inner().to_string())
                        })?;
                    route(&n, raw_r).map_err(|(k, m)| self.bad(&okey.dotted(&k), m))?
                }
            };
            for (what, map) in [("headers", &c.headers), ("query", &c.query)] {
                for (k, t) in map {
                    template::check(t, &r.pagination).map_err(|m| {
                        self.bad(&key.dotted(what).named(k), format!("{m} (route '{n}')"))
                    })?;
                }
            }
            // The client's max_pause_secs for the routes that set none.
            let route_sets =
                |v: Option<&Value>| v.is_some_and(|r| r.get("max_pause_secs").is_some());
            if let Some(secs) = c.max_pause_secs {
                if !route_sets(c.route_overrides.get(&n)) && !route_sets(raw_routes.get(&n)) {
                    r.max_pause = std::time::Duration::from_secs(secs);
                }
            }
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
            let route_ident =
                ident::sanitize(&n).map_err(|m| self.bad(&Key::top("routes").named(&n), m))?;
            let table =
                ident::raw_table(&client_ident, &route_ident).map_err(|m| self.bad(&key, m))?;
            if let Some((other_c, other_r)) =
                tables.insert(table.clone(), (id.to_string(), n.clone()))
            {
                return Err(self.bad(
                    &key,
                    format!("client '{id}' route '{n}' and client '{other_c}' route '{other_r}' would share the table {table}"),
                ));
            }
            effective.insert(n, r);
        }
        Ok(Client {
            id: id.to_string(),
            name: c.name.unwrap_or_else(|| id.to_string()),
            base_url,
            auth,
            rate_limit_per_sec: c.rate_limit_per_sec,
            routes: effective,
            ca_certs,
        })
    }
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
    ranges::check("slice_days", ranges::SLICE_DAYS, Some(r.slice_days))
        .and_then(|()| ranges::check("settle_hours", ranges::SETTLE_HOURS, r.settle_hours))
        .and_then(|()| {
            ranges::check_count("max_pause_secs", ranges::MAX_PAUSE_SECS, r.max_pause_secs)
        })
        .map_err(|(k, m)| (k.to_string(), m))?;
    let format = r.date_params.format.unwrap_or_else(|| "%Y-%m-%d".into());
    let end_style = r.date_params.end_style.unwrap_or(EndStyle::Inclusive);
    dates::check_format(&format, end_style).map_err(|m| ("date_params.format".to_string(), m))?;
    let date_params = DateParams {
        start: r
            .date_params
            .start
            .as_deref()
            .map(|s| nonempty("date_params.start", s))
            .transpose()?,
        end: r
            .date_params
            .end
            .as_deref()
            .map(|s| nonempty("date_params.end", s))
            .transpose()?,
        format,
        end_style,
    };
    let timezone = match &r.timezone {
        None => None,
        Some(z) => Some(Zone::parse(z).map_err(|m| ("timezone".to_string(), m))?),
    };
    let start_date = match &r.start_date {
        None => None,
        Some(d) => Some(dates::parse_day(d).ok_or_else(|| {
            (
                "start_date".to_string(),
                format!("'{d}' is not a date YYYY-MM-DD"),
            )
        })?),
    };
    let charset = match &r.charset {
        None => None,
        Some(c) => Some(crate::charset::Charset::from_label(c).ok_or_else(|| {
            (
                "charset".to_string(),
                format!("'{c}' is not a charset atlas decodes (utf-8, iso-8859-1, windows-1252)"),
            )
        })?),
    };
    let paging = pagination(r.pagination)?;
    let method = match r.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some(_) => return Err(("method".into(), "must be GET or POST".into())),
    };
    let body_format = r.body_format.unwrap_or_default();
    request_templates(
        &r.query,
        &r.headers,
        r.body.as_ref(),
        body_format,
        method,
        &paging,
    )?;
    for (k, d) in [("start", &date_params.start), ("end", &date_params.end)] {
        if d.is_none()
            && !r.body.as_ref().is_some_and(|b| uses(b, k))
            && !r
                .query
                .values()
                .chain(r.headers.values())
                .any(|v| uses_str(v, k))
        {
            return Err((
                format!("date_params.{k}"),
                format!("missing: name the query parameter, or put {{{k}}} in the route's query, headers or body"),
            ));
        }
    }
    for (i, rule) in r.response_rules.iter().enumerate() {
        rule.check().map_err(|(k, m)| {
            (
                "response_rules".to_string(),
                format!("rule {}, '{k}': {m}", i + 1),
            )
        })?;
    }
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
        pagination: paging,
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
        method,
        body: r.body,
        body_format,
        response_rules: r.response_rules,
        parallel_pages: r.parallel_pages.unwrap_or(true),
        speculative_pages: r.speculative_pages.unwrap_or(true),
        max_pause: std::time::Duration::from_secs(
            r.max_pause_secs.unwrap_or(DEFAULT_MAX_PAUSE_SECS),
        ),
        settle_hours: r.settle_hours.unwrap_or(0),
    })
}

/// True when a template of the body uses `{name}`.
fn uses(body: &Value, name: &str) -> bool {
    template::strings(body)
        .into_iter()
        .any(|s| uses_str(s, name))
}

fn uses_str(s: &str, name: &str) -> bool {
    let want = match name {
        "start" => template::Var::Start,
        _ => template::Var::End,
    };
    template::vars(s).contains(&want)
}

/// The placeholders of a route's query, headers and body, and its body's
/// shape and pagination pointers.
fn request_templates(
    query: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
    body: Option<&Value>,
    format: BodyFormat,
    method: Method,
    paging: &Paging,
) -> std::result::Result<(), FieldError> {
    for (what, map) in [("query", query), ("headers", headers)] {
        for (k, v) in map {
            template::check(v, paging).map_err(|m| (format!("{what}.{k}"), m))?;
        }
    }
    if let Some(b) = body {
        if method != Method::Post {
            return Err((
                "body".into(),
                "a body is sent only with \"method\": \"POST\"".into(),
            ));
        }
        for s in template::strings(b) {
            template::check(s, paging).map_err(|m| ("body".to_string(), m))?;
        }
        if format == BodyFormat::Form
            && !b
                .as_object()
                .is_some_and(|o| o.values().all(|v| !v.is_object() && !v.is_array()))
        {
            return Err((
                "body_format".into(),
                "form needs the body to be a flat object (no nested objects or arrays)".into(),
            ));
        }
    }
    let params: Vec<(&str, &str)> = match &paging.kind {
        Pagination::Page {
            param, size_param, ..
        } => {
            let mut v = vec![("param", param.as_str())];
            if let Some(s) = size_param {
                v.push(("size_param", s));
            }
            v
        }
        Pagination::Offset {
            offset_param,
            limit_param,
            ..
        } => vec![("offset_param", offset_param), ("limit_param", limit_param)],
        Pagination::Cursor { param, .. } => vec![("param", param)],
        _ => vec![],
    };
    for (k, p) in params.into_iter().filter(|(_, p)| p.starts_with('/')) {
        let key = format!("pagination.{k}");
        let Some(b) = body else {
            return Err((key, format!("'{p}' is a JSON pointer into the body, but the route has no body (give \"method\": \"POST\" and a \"body\")")));
        };
        let mut probe = b.clone();
        if !template::set_pointer(&mut probe, p, Value::Null) {
            return Err((
                key,
                format!("'{p}' does not point into the body: its parent is missing"),
            ));
        }
    }
    Ok(())
}

fn pagination(p: Option<RawPagination>) -> std::result::Result<Paging, FieldError> {
    let k = "pagination";
    let positive = |key: &str, v: Option<u64>| -> std::result::Result<Option<u64>, FieldError> {
        let range = match key {
            "max_pages" => ranges::MAX_PAGES,
            _ => ranges::PAGE_SIZE,
        };
        ranges::check_count("", range, v).map_err(|(_, m)| (format!("{k}.{key}"), m))?;
        Ok(v)
    };
    let mp = |m: Option<u64>| -> std::result::Result<u64, FieldError> {
        Ok(positive("max_pages", m)?.unwrap_or(DEFAULT_MAX_PAGES))
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
            positive("size", size)?;
            ranges::check("", ranges::PAGE_START, start.map(|n| n as f64))
                .map_err(|(_, m)| (format!("{k}.start"), m))?;
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
            positive("limit", limit)?;
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

/// The certificates of a client's `ca_file` (PEM): at least one, all parsed.
fn ca_certs(
    path: &Path,
) -> std::result::Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A client's `auth`. `key` (where it was written) names each secret
/// reference in later messages; error keys are relative to it.
fn auth(a: Option<RawAuth>, key: &Key) -> std::result::Result<Auth, FieldError> {
    // A secret written inline is refused, its value never echoed.
    let refuse = |inline: Option<Value>, field: &str| match inline {
        Some(_) => Err((
            field.to_string(),
            format!("secrets are never written in the config: use {field}_env or {field}_file"),
        )),
        None => Ok(()),
    };
    let secret = |env: Option<String>,
                  file: Option<PathBuf>,
                  field: &str|
     -> std::result::Result<Secret, FieldError> {
        match (env, file) {
            (Some(var), None) if !var.trim().is_empty() => Ok(Secret::Env {
                var,
                key: format!("{key}.{field}_env"),
            }),
            (None, Some(path)) => Ok(Secret::File {
                path,
                key: format!("{key}.{field}_file"),
            }),
            (Some(_), Some(_)) => Err((
                field.to_string(),
                format!("give {field}_env or {field}_file, not both"),
            )),
            _ => Err((
                field.to_string(),
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
            refuse(token, "token")?;
            Auth::Bearer(secret(token_env, token_file, "token")?)
        }
        Some(RawAuth::Header {
            name,
            value_env,
            value_file,
            value,
        }) => {
            refuse(value, "value")?;
            Auth::Header {
                name: nonempty("name", &name)?,
                value: secret(value_env, value_file, "value")?,
            }
        }
        Some(RawAuth::Query {
            param,
            value_env,
            value_file,
            value,
        }) => {
            refuse(value, "value")?;
            Auth::Query {
                param: nonempty("param", &param)?,
                value: secret(value_env, value_file, "value")?,
            }
        }
        Some(RawAuth::Basic {
            user,
            password_env,
            password_file,
            password,
        }) => {
            refuse(password, "password")?;
            Auth::Basic {
                user,
                password: secret(password_env, password_file, "password")?,
            }
        }
        Some(RawAuth::Oauth2(o)) => {
            let RawOAuth2 {
                token_url,
                grant,
                client_id_env,
                client_id_file,
                client_secret_env,
                client_secret_file,
                client_secret,
                refresh_token_env,
                refresh_token_file,
                refresh_token,
                scope,
                client_auth,
                authorize_url,
                redirect_uri,
                pkce,
            } = *o;
            refuse(client_secret, "client_secret")?;
            refuse(refresh_token, "refresh_token")?;
            let token_url = web_url("token_url", &token_url)?;
            let client_secret = match (&client_secret_env, &client_secret_file) {
                (None, None) => None,
                _ => Some(secret(
                    client_secret_env,
                    client_secret_file,
                    "client_secret",
                )?),
            };
            let refresh_token = match (grant, &refresh_token_env, &refresh_token_file) {
                (Grant::ClientCredentials, None, None) => None,
                (Grant::ClientCredentials, _, _) => {
                    return Err((
                        "refresh_token_env".to_string(),
                        "a refresh token is for grant \"refresh_token\" only".into(),
                    ))
                }
                // Optional: `atlas auth seed` may store the first one instead.
                (Grant::RefreshToken, None, None) => None,
                (Grant::RefreshToken, _, _) => Some(secret(
                    refresh_token_env,
                    refresh_token_file,
                    "refresh_token",
                )?),
            };
            if client_secret.is_none() && grant == Grant::ClientCredentials {
                return Err((
                    "client_secret".to_string(),
                    "missing: grant \"client_credentials\" needs client_secret_env or client_secret_file".into(),
                ));
            }
            let login = login(authorize_url, redirect_uri, pkce)?;
            if login.is_some() && grant != Grant::RefreshToken {
                return Err((
                    "authorize_url".to_string(),
                    "atlas auth login stores a refresh token: it needs grant \"refresh_token\""
                        .into(),
                ));
            }
            Auth::OAuth2(Box::new(OAuth2 {
                token_url,
                grant,
                client_id: secret(client_id_env, client_id_file, "client_id")?,
                client_secret,
                refresh_token,
                scope: scope.filter(|s| !s.trim().is_empty()),
                client_auth: client_auth.unwrap_or_default(),
                login,
            }))
        }
    })
}

/// An `http://` or `https://` URL without user info. The text is never
/// echoed: it may hold the very credentials refused.
fn web_url(key: &str, text: &str) -> std::result::Result<url::Url, FieldError> {
    let u = url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            (
                key.to_string(),
                "not an http:// or https:// URL".to_string(),
            )
        })?;
    if userinfo::has(&u) {
        return Err((key.to_string(), NO_USERINFO.into()));
    }
    Ok(u)
}

/// The keys of `atlas auth login`: `authorize_url` and `redirect_uri`
/// together, the redirect on the loopback where atlas can listen for it.
fn login(
    authorize_url: Option<String>,
    redirect_uri: Option<String>,
    pkce: Option<bool>,
) -> std::result::Result<Option<Login>, FieldError> {
    let (authorize_url, redirect_uri) = match (authorize_url, redirect_uri) {
        (None, None) => {
            return match pkce {
                Some(true) => Err((
                    "pkce".into(),
                    "is for atlas auth login: give authorize_url and redirect_uri too".into(),
                )),
                _ => Ok(None),
            }
        }
        (Some(a), Some(r)) => (a, r),
        (Some(_), None) => {
            return Err((
                "redirect_uri".into(),
                "missing: authorize_url needs a redirect_uri (http://127.0.0.1:PORT/callback)"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                "authorize_url".into(),
                "missing: redirect_uri needs the authorization endpoint's authorize_url".into(),
            ))
        }
    };
    let authorize_url = web_url("authorize_url", &authorize_url)?;
    let bad = |m: &str| Err(("redirect_uri".to_string(), m.to_string()));
    let Ok(redirect) = url::Url::parse(&redirect_uri) else {
        return bad("not a URL: give http://127.0.0.1:PORT/callback");
    };
    if userinfo::has(&redirect) {
        return Err(("redirect_uri".into(), NO_USERINFO.into()));
    }
    let loopback = match redirect.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    };
    if redirect.scheme() != "http" || !loopback {
        return bad(
            "must be http:// on 127.0.0.1, localhost or [::1] (atlas listens there for the \
             browser's redirect): http://127.0.0.1:PORT/callback",
        );
    }
    if !matches!(redirect.port(), Some(p) if p != 0) {
        return bad(
            "needs an explicit port other than 0 and 80, as registered with the provider: \
             http://127.0.0.1:PORT/callback",
        );
    }
    if redirect.fragment().is_some() {
        return bad("must not have a #fragment (RFC 6749 §3.1.2)");
    }
    Ok(Some(Login {
        authorize_url,
        redirect_uri: redirect,
        pkce: pkce.unwrap_or(false),
    }))
}
