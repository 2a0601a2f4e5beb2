//! The command line: every flag with its default and meaning, the `cli_enum!` helper for
//! flags that take one of a fixed set of words, and the checks run before binding.

use std::path::PathBuf;

use argh::FromArgs;

use crate::auth::Auth;
use crate::charset::Charset;
use crate::data::{RecordDate, MAX_PER_DAY};
use crate::faults::FaultKinds;
use crate::hostile::{HostileKinds, MAX_BOMB_MB};
use crate::range::EndStyle;
use crate::shapes::{Misbehave, MAX_PAGE_SIZE};

/// Deterministic sample "pedidos" API for testing and benchmarking the Atlas ETL.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// address to bind (default 127.0.0.1)
    #[argh(option, default = "String::from(\"127.0.0.1\")")]
    pub host: String,
    /// port to bind, 0 picks a free one (default 8080)
    #[argh(option, default = "8080")]
    pub port: u16,
    /// accepted for compatibility and ignored: every connection gets its own thread, with no
    /// limit (default 8)
    #[argh(option, default = "8")]
    pub threads: usize,
    /// records per calendar day (default 50, max 100000)
    #[argh(option, default = "50")]
    pub per_day: u64,
    /// default page size (default 100, max 10000)
    #[argh(option, default = "100")]
    pub page_size: u64,
    /// data seed (default 1)
    #[argh(option, default = "1")]
    pub seed: u64,
    /// fixed delay before answering each data request, in ms (default 0)
    #[argh(option, default = "0")]
    pub latency_ms: u64,
    /// name of the range start parameter (default data_inicial)
    #[argh(option, default = "String::from(\"data_inicial\")")]
    pub start_param: String,
    /// name of the range end parameter (default data_final)
    #[argh(option, default = "String::from(\"data_final\")")]
    pub end_param: String,
    /// chrono format of both range parameters (default %Y-%m-%d)
    #[argh(option, default = "String::from(\"%Y-%m-%d\")")]
    pub param_format: String,
    /// how the end parameter is read: inclusive, exclusive or end_of_day (default inclusive)
    #[argh(option, default = "EndStyle::Inclusive")]
    pub end_style: EndStyle,
    /// format of data_pedido: iso, br, rfc3339, naive, epoch or epoch_ms (default iso)
    #[argh(option, default = "RecordDate::Iso")]
    pub record_date: RecordDate,
    /// widen every requested range by one day on each side
    #[argh(switch)]
    pub neighbours: bool,
    /// none, bearer:TOKEN, header:NAME:VALUE, query:PARAM:VALUE or basic:USER:PASS (default none)
    #[argh(option, default = "Auth::None")]
    pub auth: Auth,
    /// probability (0.0-1.0) that a data request fails (default 0)
    #[argh(option, default = "0.0")]
    pub fault_rate: f64,
    /// seed of the fault PRNG (default 7)
    #[argh(option, default = "7")]
    pub fault_seed: u64,
    /// the first K requests of every distinct URL fail (default 0)
    #[argh(option, default = "0")]
    pub fail_first: u64,
    /// comma list of 500,503,429,slow,drop,truncate,html (default all)
    #[argh(option, default = "FaultKinds::all()")]
    pub fault_kinds: FaultKinds,
    /// seconds in the Retry-After header of 429 faults and of --rate-limit refusals (default 1)
    #[argh(option, default = "1")]
    pub retry_after: u64,
    /// delay of the `slow` fault, in ms (default 3000)
    #[argh(option, default = "3000")]
    pub slow_ms: u64,
    /// loop-guard misbehaviour: repeat_cursor, repeat_page, endless or lying_total
    #[argh(option)]
    pub misbehave: Option<Misbehave>,
    /// next_url links are absolute (http://host:port/...) instead of path-relative
    #[argh(switch)]
    pub absolute_next: bool,
    /// at most N data requests (GET or HEAD of /KIND/ROUTE) start in any rolling second: one
    /// that would be the N+1th is answered 429 with Retry-After (the --retry-after value)
    /// before latency, auth and faults, and does not count itself (default: no limit)
    #[argh(option)]
    pub rate_limit: Option<usize>,
    /// append one line per data request to FILE, written through at once:
    /// "<unix_ms> <status> <path>?<query>", the time the request was read, the status sent
    /// and the query re-encoded without the auth parameter, as --fail-first counts URLs
    #[argh(option)]
    pub request_log: Option<PathBuf>,
    /// charset of JSON bodies: utf8, or latin1 for ISO-8859-1 labelled
    /// "application/json; charset=ISO-8859-1", characters beyond Latin-1 written as \uXXXX
    /// escapes (default utf8)
    #[argh(option, default = "Charset::Utf8")]
    pub charset: Charset,
    /// serve HTTPS with this PEM certificate chain (needs --tls-key); the listen line then
    /// says https://
    #[argh(option)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[argh(option)]
    pub tls_key: Option<PathBuf>,
    /// OAuth2 mode: POST /oauth/token accepts this CLIENT_ID:CLIENT_SECRET (grants
    /// client_credentials and refresh_token, refresh tokens rotate on every use) and data
    /// requests need "Authorization: Bearer <live access token>"
    #[argh(option)]
    pub oauth: Option<String>,
    /// the refresh token valid at start (OAuth2 mode)
    #[argh(option)]
    pub oauth_refresh_token: Option<String>,
    /// seconds an access token lives (default 3600)
    #[argh(option, default = "3600")]
    pub oauth_ttl_secs: u64,
    /// append one line per token request to FILE: "<unix_ms> <grant_type> <refresh token
    /// used or -> <ok|reused|unknown|invalid_client|unsupported>"
    #[argh(option)]
    pub oauth_log: Option<PathBuf>,
    /// how POST /oauth/token lets the client authenticate: basic (HTTP Basic only), body
    /// (client_id and client_secret in the form only) or any (default any)
    #[argh(option, default = "ClientAuth::Any")]
    pub oauth_client_auth: ClientAuth,
    /// what GET /oauth/authorize answers: allow (a code), deny (error=access_denied) or
    /// wrong_state (a code with a state that is not the one sent) (default allow)
    #[argh(option, default = "Consent::Allow")]
    pub oauth_consent: Consent,
    /// the app key the /erp/ shapes expect: omie's "app_key", vtex's X-VTEX-API-AppKey
    /// (default chave-app)
    #[argh(option, default = "String::from(\"chave-app\")")]
    pub erp_key: String,
    /// the secret the /erp/ shapes expect: omie's "app_secret", tiny's "token", vtex's
    /// X-VTEX-API-AppToken (default segredo-app)
    #[argh(option, default = "String::from(\"segredo-app\")")]
    pub erp_secret: String,
    /// the first K requests of every distinct /erp/tiny request answer HTTP 200 with
    /// codigo_erro 6, "API Bloqueada" (default 0)
    #[argh(option, default = "0")]
    pub blocked_first: u64,
    /// at most N data requests per wall-clock second (a fixed window): every data answer
    /// carries the rate-limit headers of --limit-headers, the N+1th is answered 429 with them
    /// and no Retry-After (default: no quota)
    #[argh(option)]
    pub quota: Option<u64>,
    /// rate-limit headers of --quota: x (X-RateLimit-Remaining/-Reset, the reset a Unix time)
    /// or ietf (RateLimit-Remaining/-Reset, the reset in seconds) (default x)
    #[argh(option, default = "LimitHeaders::X")]
    pub limit_headers: LimitHeaders,
    /// seconds in a Retry-After header on 503 faults (default: none)
    #[argh(option)]
    pub unavailable_retry_after: Option<u64>,
    /// hostile mode: data answers that would be 200 are drawn, per (SEED, URL, attempt),
    /// from a catalogue of bad answers (--hostile-list prints it)
    #[argh(option)]
    pub hostile: Option<u64>,
    /// share (0.0-1.0) of bad answers in hostile mode (default 0.5)
    #[argh(option, default = "0.5")]
    pub hostile_rate: f64,
    /// comma list of hostile kinds, each a name or a prefix such as retry_after, length or
    /// redirect (default all)
    #[argh(option, default = "HostileKinds::all()")]
    pub hostile_kinds: HostileKinds,
    /// mebibytes of spaces a gzip_bomb inflates to before the page's body (default 1024)
    #[argh(option, default = "1024")]
    pub hostile_bomb_mb: u64,
    /// print the catalogue of hostile kinds and exit
    #[argh(switch)]
    pub hostile_list: bool,
}

cli_enum!(LimitHeaders { X = "x", Ietf = "ietf" });
cli_enum!(ClientAuth { Any = "any", Basic = "basic", Body = "body" });
cli_enum!(Consent { Allow = "allow", Deny = "deny", WrongState = "wrong_state" });

/// A plain enum read from fixed CLI words; `WORDS` also serves as the list of all variants.
macro_rules! cli_enum {
    ($name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum $name {
            $($variant),+
        }
        impl $name {
            pub const WORDS: &'static [(&'static str, $name)] = &[$(($word, $name::$variant)),+];
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let found = Self::WORDS.iter().find(|(word, _)| *word == s).map(|w| w.1);
                let words: Vec<&str> = Self::WORDS.iter().map(|w| w.0).collect();
                found.ok_or_else(|| format!("unknown {s:?}, expected one of {}", words.join(", ")))
            }
        }
    };
}
pub(crate) use cli_enum;

/// Refuses flag values the server cannot honour (exit 2 in `main`).
pub fn validate(args: &Args) -> Result<(), String> {
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if args.page_size == 0 || args.page_size > MAX_PAGE_SIZE {
        return Err(format!("--page-size must be 1..={MAX_PAGE_SIZE}"));
    }
    if args.per_day > MAX_PER_DAY {
        return Err(format!("--per-day must be at most {MAX_PER_DAY}"));
    }
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err("--fault-rate must be between 0.0 and 1.0".into());
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if args.oauth.is_none() && (args.oauth_refresh_token.is_some() || args.oauth_log.is_some()) {
        return Err("--oauth-refresh-token and --oauth-log need --oauth".into());
    }
    if args.oauth_ttl_secs == 0 {
        return Err("--oauth-ttl-secs must be at least 1".into());
    }
    if args.quota == Some(0) {
        return Err("--quota must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.hostile_rate) {
        return Err("--hostile-rate must be between 0.0 and 1.0".into());
    }
    if args.hostile_bomb_mb == 0 || args.hostile_bomb_mb > MAX_BOMB_MB {
        return Err(format!("--hostile-bomb-mb must be 1..={MAX_BOMB_MB}"));
    }
    if args.rate_limit == Some(0) {
        return Err("--rate-limit must be at least 1".into());
    }
    Ok(())
}

/// `Args` as if given `extra` on the command line.
#[cfg(test)]
pub fn test_args(extra: &[&str]) -> Args {
    Args::from_args(&["atlas-sample-api"], extra).expect("valid test args")
}
