//! Switchable faults of data requests: which request fails (`--fail-first` per URL, or
//! `--fault-rate` from a seeded PRNG), how (`--fault-kinds`), and the reply that replaces the
//! real one. `slow` and `drop` keep the real reply and are acted out by the server.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use crate::cli::{cli_enum, Args};
use crate::http::{Reply, JSON, TEXT};
use crate::state::lock;

cli_enum!(FaultKind {
    E500 = "500",
    E503 = "503",
    E429 = "429",
    Slow = "slow",
    Drop = "drop",
    Truncate = "truncate",
    Html = "html",
});

#[derive(Clone, Debug)]
pub struct FaultKinds(pub Vec<FaultKind>);

impl FaultKinds {
    pub fn all() -> Self {
        Self(FaultKind::WORDS.iter().map(|w| w.1).collect())
    }
}

impl FromStr for FaultKinds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let kinds = s.split(',').map(|k| k.trim().parse());
        Ok(Self(kinds.collect::<Result<_, _>>()?))
    }
}

/// The fault settings and the state the decisions need, shared by all connections.
pub struct Faults {
    kinds: Vec<FaultKind>,
    fail_first: u64,
    rate: f64,
    retry_after: u64,
    unavailable_retry_after: Option<u64>,
    rng: Mutex<fastrand::Rng>,
    /// Requests seen per distinct URL, for `--fail-first`.
    attempts: Mutex<HashMap<String, u64>>,
}

impl Faults {
    pub fn new(args: &Args) -> Self {
        Self {
            kinds: args.fault_kinds.0.clone(),
            fail_first: args.fail_first,
            rate: args.fault_rate,
            retry_after: args.retry_after,
            unavailable_retry_after: args.unavailable_retry_after,
            rng: Mutex::new(fastrand::Rng::with_seed(args.fault_seed)),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// `--fail-first` wins (kind by attempt number, so it is per-URL deterministic); otherwise
    /// the shared seeded PRNG rolls `--fault-rate` and picks the kind.
    pub fn decide(&self, url_key: &str) -> Option<FaultKind> {
        let kinds = &self.kinds;
        if kinds.is_empty() {
            return None;
        }
        let mut fault = None;
        if self.fail_first > 0 {
            let mut attempts = lock(&self.attempts);
            let n = attempts.entry(url_key.to_string()).or_default();
            if *n < self.fail_first {
                fault = Some(kinds[(*n % kinds.len() as u64) as usize]);
                *n += 1;
            }
        }
        if fault.is_none() && self.rate > 0.0 {
            let mut rng = lock(&self.rng);
            if rng.f64() < self.rate {
                fault = Some(kinds[rng.usize(..kinds.len())]);
            }
        }
        fault
    }

    /// What a faulty request answers instead of `reply`; `slow` and `drop` keep it.
    pub fn reply(&self, kind: FaultKind, reply: Reply) -> Reply {
        match kind {
            FaultKind::E500 => Reply::raw(500, TEXT, b"erro interno".to_vec()),
            FaultKind::E503 => {
                let mut r = Reply::raw(503, TEXT, b"servico indisponivel".to_vec());
                if let Some(secs) = self.unavailable_retry_after {
                    r.headers.push(("Retry-After", secs.to_string()));
                }
                r
            }
            FaultKind::E429 => Reply::too_many(self.retry_after),
            FaultKind::Truncate => {
                let mut body = reply.body;
                body.truncate(body.len() / 2);
                Reply::raw(200, JSON, body)
            }
            FaultKind::Html => {
                let body = b"<html><body>Erro interno</body></html>".to_vec();
                Reply::raw(200, "text/html; charset=utf-8", body)
            }
            FaultKind::Slow | FaultKind::Drop => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client::{start, Client, RANGE};
    use serde_json::Value;

    #[test]
    fn fault_kinds_parse() {
        assert!(FaultKinds::from_str("500,boom").is_err());
        let kinds = FaultKinds::from_str("429, drop").map(|k| k.0);
        assert_eq!(kinds, Ok(vec![FaultKind::E429, FaultKind::Drop]));
    }

    #[test]
    fn drop_fault_cuts_the_body() {
        let addr = start(&[
            "--per-day",
            "10",
            "--fail-first",
            "1",
            "--fault-kinds",
            "drop",
        ]);
        let target = format!("/offset/pedidos?{RANGE}");
        let mut c = Client::connect(addr);
        let dropped = c.get(&target);
        assert_eq!(dropped.status, 200);
        assert!(dropped.cut && !dropped.body.is_empty());
        assert!(c.closed());
        let mut c = Client::connect(addr);
        let whole = c.get(&target);
        assert!(!whole.cut);
        assert_eq!(whole.body.len() / 2, dropped.body.len());
        assert!(serde_json::from_slice::<Value>(&whole.body).is_ok());
    }
}
