//! The crew's part in its clients' shared rates (`http::share`,
//! `ledger::rates`): twice a second it renews this process's membership of
//! every client it sends requests to, passes on the pauses servers asked
//! here, and sets each client's limiter to its part of the rate. A process
//! is a member of a client only while its fetchers ask to send there: one
//! that only waits for slices others hold gives its part back, and one
//! that joins waits `JOIN_DELAY` before taking its part. When the crew
//! ends it leaves every client; a process killed gives its parts back when
//! its lease runs out.

use super::Lanes;
use crate::http::Limiter;
use crate::ledger::rates::{self, Mine};
use chrono::Utc;
use crossbeam::channel::{Receiver, RecvTimeoutError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the members are looked at: a joining or leaving process
/// changes the others' parts within this.
const SHARE_POLL: Duration = Duration::from_millis(500);

/// How long a membership lasts without renewal: a dead process's part
/// goes back to the others within this.
const SHARE_LEASE: Duration = Duration::from_secs(2);

/// How long a process that joins a client waits before it takes its part:
/// the members already there have seen it (they poll every `SHARE_POLL`)
/// and what they sent at their old parts has left the server's window.
const JOIN_DELAY: Duration = Duration::from_secs(1);

/// A client no fetcher asked to send to for this long is left.
const IDLE: Duration = Duration::from_secs(1);

/// Polls until `stop` is dropped, then leaves every client.
pub(super) fn share_rates(crew: &Lanes, stop: &Receiver<()>) {
    let mut worker: Option<String> = None;
    // The clients this process is a member of, since when.
    let mut joined: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let lanes = crew.active();
        // One limiter per client, shared by its lanes.
        let mut clients: BTreeMap<&str, Arc<Limiter>> = BTreeMap::new();
        for l in &lanes {
            clients
                .entry(l.job.client.id.as_str())
                .or_insert_with(|| Arc::clone(&l.limiter));
        }
        if let Some(first) = lanes.first() {
            worker.get_or_insert_with(|| first.job.worker.clone());
            let now = Instant::now();
            let mut left = Vec::new();
            for (client, limiter) in &clients {
                match (limiter.wanted(IDLE), joined.contains_key(*client)) {
                    (true, false) => {
                        limiter.hold();
                        joined.insert(client.to_string(), now);
                    }
                    (false, true) => {
                        joined.remove(*client);
                        left.push(client.to_string());
                    }
                    _ => {}
                }
            }
            let mine: Vec<Mine> = clients
                .iter()
                .filter(|(client, _)| joined.contains_key(**client))
                .map(|(client, limiter)| Mine {
                    client: client.to_string(),
                    learnt: limiter.learnt(),
                    pause_until: limiter
                        .take_pause()
                        .map(|until| Utc::now() + until.saturating_duration_since(now)),
                })
                .collect();
            let polled =
                first.db_once(|c| rates::poll(c, &first.job.worker, SHARE_LEASE, &mine, &left));
            match polled {
                Ok(seen) => {
                    for s in seen {
                        let Some(limiter) = clients.get(s.client.as_str()) else {
                            continue;
                        };
                        if joined
                            .get(&s.client)
                            .is_some_and(|t| now.duration_since(*t) >= JOIN_DELAY)
                        {
                            limiter.share(s.members, s.rank, s.others_learnt);
                        }
                        if let Some(wait) =
                            s.paused_until.and_then(|u| (u - Utc::now()).to_std().ok())
                        {
                            limiter.obey(wait);
                        }
                    }
                }
                Err(e) => {
                    // Alone, as before sharing existed: the limit still holds
                    // for this process, and 429s still pace it.
                    log::warn!("cannot share the clients' rates with other processes: {e:#}");
                    for limiter in clients.values() {
                        limiter.share(1, 0, None);
                    }
                }
            }
        }
        match stop.recv_timeout(SHARE_POLL) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    if let (Some(w), Some(first)) = (worker, crew.active().first()) {
        if let Err(e) = first.db_once(|c| rates::leave(c, &w)) {
            log::warn!("cannot give this process's rate parts back: {e:#}");
        }
    }
}
