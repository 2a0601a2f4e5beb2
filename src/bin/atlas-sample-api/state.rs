//! What all connections share: the flags, the bound address, the counters behind `/_stats`
//! and the fault and hostile machinery. Locks are never held across I/O.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cli::Args;
use crate::faults::Faults;
use crate::hostile::Hostile;
use crate::limit::{Quota, RollingWindow, WINDOW};
use crate::oauth::OAuthServer;
use crate::request_log::RequestLog;

/// The counters `/_stats` reports.
#[derive(Default)]
pub struct Stats {
    /// Every request except `/_stats` itself.
    pub requests: u64,
    pub faults: u64,
    pub by_status: BTreeMap<String, u64>,
}

pub struct State {
    pub args: Args,
    /// The address bound, for absolute links when a request has no `Host`.
    pub local: SocketAddr,
    pub stats: Mutex<Stats>,
    pub faults: Faults,
    /// `--hostile`.
    pub hostile: Option<Hostile>,
    /// `--rate-limit`: start times of the data requests admitted in the last second.
    pub limiter: Option<Mutex<RollingWindow>>,
    /// `--request-log`.
    pub request_log: Option<RequestLog>,
    /// `--oauth`: the token endpoint and its tokens.
    pub oauth: Option<OAuthServer>,
    /// `--quota`: the requests of the current wall-clock second.
    pub quota: Option<Mutex<Quota>>,
    /// Requests seen per distinct `/erp/tiny` request, for `--blocked-first`.
    pub erp_seen: Mutex<std::collections::HashMap<String, u64>>,
}

/// A panicking worker must not wedge the others, so poisoned locks are simply reused.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    /// Fails only if the request log or the oauth log cannot be opened.
    pub fn new(args: Args, local: SocketAddr) -> io::Result<Arc<State>> {
        let request_log = args.request_log.as_deref().map(RequestLog::open);
        let oauth = match &args.oauth {
            None => None,
            Some(spec) => Some(
                OAuthServer::new(
                    spec,
                    args.oauth_refresh_token.as_deref(),
                    args.oauth_ttl_secs,
                    args.oauth_log.as_deref(),
                    (args.oauth_client_auth, args.oauth_consent),
                )
                .map_err(io::Error::other)?,
            ),
        };
        let limiter = args.rate_limit.map(|n| RollingWindow::new(n, WINDOW));
        Ok(Arc::new(State {
            faults: Faults::new(&args),
            hostile: Hostile::new(&args),
            limiter: limiter.map(Mutex::new),
            quota: args.quota.map(|n| Mutex::new(Quota::new(n))),
            erp_seen: Mutex::new(std::collections::HashMap::new()),
            request_log: request_log.transpose()?,
            oauth,
            args,
            local,
            stats: Mutex::new(Stats::default()),
        }))
    }

    pub fn record_status(&self, status: u16) {
        *lock(&self.stats)
            .by_status
            .entry(status.to_string())
            .or_default() += 1;
    }
}
