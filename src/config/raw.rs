//! The config file as written: serde structs that mirror `atlas.json` key
//! for key (unknown keys are refused), before any check. `validate` turns
//! them into the typed `Config`.

use super::settings::{each_run_setting, Layer};
use super::Undated;
use crate::dates::EndStyle;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

macro_rules! raw_file {
    ($($(#[$doc:meta])* $key:ident: $t:ty = $env:literal, $range:expr;)*) => {
        /// The whole file; run settings sit at the top level.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawFile {
            pub database_url: Option<String>,
            $($(#[$doc])* pub $key: Option<$t>,)*
            pub notify: Option<super::notify::RawNotify>,
            #[serde(default)]
            pub clients: BTreeMap<String, RawClient>,
            #[serde(default)]
            pub routes: BTreeMap<String, RawRoute>,
        }

        impl RawFile {
            /// The run settings the file gives.
            pub fn settings(&self) -> Layer {
                Layer {
                    $($key: self.$key.clone(),)*
                }
            }
        }
    };
}
each_run_setting!(raw_file);

/// One entry of `clients`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: Option<String>,
    pub base_url: String,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    pub rate_limit_per_sec: Option<f64>,
    pub routes: Option<Vec<String>>,
    #[serde(default)]
    pub route_overrides: BTreeMap<String, Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    pub ca_file: Option<PathBuf>,
    pub max_pause_secs: Option<u64>,
}

/// A client's `auth`, by `type`. Inline secrets (`token`, `value`,
/// `password`) are read only to be refused with a clear message.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawAuth {
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
    Oauth2(Box<RawOAuth2>),
}

/// An `oauth2` auth (boxed: the largest kind by far).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    pub token_url: String,
    pub grant: super::Grant,
    pub client_id_env: Option<String>,
    pub client_id_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret: Option<Value>,
    pub refresh_token_env: Option<String>,
    pub refresh_token_file: Option<PathBuf>,
    pub refresh_token: Option<Value>,
    pub scope: Option<String>,
    pub client_auth: Option<super::ClientAuth>,
    pub authorize_url: Option<String>,
    pub redirect_uri: Option<String>,
    pub pkce: Option<bool>,
}

/// One entry of `routes`, or a route with a client's overrides merged in.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: String,
    pub records: String,
    pub records_unwrap: Option<String>,
    #[serde(default)]
    pub date_params: RawDateParams,
    #[serde(default = "one")]
    pub slice_days: u32,
    pub pagination: Option<RawPagination>,
    pub date_field: Option<String>,
    pub timezone: Option<String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub undated: Option<Undated>,
    pub start_date: Option<String>,
    pub charset: Option<String>,
    pub method: Option<String>,
    pub body: Option<Value>,
    pub body_format: Option<super::BodyFormat>,
    #[serde(default)]
    pub response_rules: Vec<crate::rules::Rule>,
    pub parallel_pages: Option<bool>,
    pub speculative_pages: Option<bool>,
    pub max_pause_secs: Option<u64>,
    pub settle_hours: Option<u32>,
}

/// `slice_days` when the file leaves it out.
fn one() -> u32 {
    1
}

/// A route's `date_params` (`start`/`end` may be left out when
/// placeholders carry the dates).
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDateParams {
    pub start: Option<String>,
    pub end: Option<String>,
    pub format: Option<String>,
    pub end_style: Option<EndStyle>,
}

/// A route's `pagination`, by `type`.
#[derive(Deserialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawPagination {
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
