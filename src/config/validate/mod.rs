//! Raw file -> validated `Config`: every check that serde cannot make
//! (pointers, formats, ranges, URLs, secret references, route lists and
//! overrides, table names), each error naming its key with line and column.

use super::position::{key_position, Key};
use super::ranges;
use super::raw::{RawClient, RawFile, RawRoute};
use super::template;
use super::{Client, Config, Route};
use crate::exit::usage;
use crate::ident;
use crate::userinfo;
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

mod auth;
mod route;

use auth::{auth, ca_certs};
use route::route;

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
    let settings = raw.settings();
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
