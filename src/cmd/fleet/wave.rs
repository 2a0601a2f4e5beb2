//! A wave's pairs decided and their runs started together: the pairs'
//! locks taken, their states read, their new scraps made and recorded,
//! the locks released and the runs started in one statement each for the
//! whole wave (`ledger::wave`), rather than five per pair. A pair whose
//! lock another process holds, whose unfinished scrap is to be joined, or
//! that the wave's statements could not decide is left to its own
//! decision (`decide::start_pair`), as before.

use super::super::pair::{self, Judged};
use super::super::{scrap_run, Context};
use super::board::in_parallel;
use super::decide::{pair_checks, Plan};
use super::turn::{Start, Turn};
use crate::config::{Client, Route};
use crate::exit::classify;
use crate::ledger::{self, wave::NewScrap};
use crate::report::{self, Watch};
use crossbeam::channel::Sender;

/// How a pair of the wave begins.
pub(super) enum Pre<'c> {
    /// Decided with the wave: its run ready, or its turn over.
    Decided(Start<'c>),
    /// Left to its own decision.
    Alone,
}

/// What a pair's check and judgement came to, before its scrap is made.
enum Judging {
    Over(Start<'static>),
    Alone,
    /// A new scrap of these days; whether its raw table exists.
    New(crate::coverage::Need, bool),
}

/// What a pair's judgement (`pair::judge`) comes to in the wave; its raw
/// table is judged (`verdict`) only when there is something to load. A
/// scrap to join is left to the pair's own decision.
fn judging(
    judged: anyhow::Result<Judged>,
    verdict: impl FnOnce() -> anyhow::Result<bool>,
) -> Judging {
    let refused = |e: anyhow::Error| {
        Judging::Over(Start::Over(Turn::NotStarted(
            format!("{e:#}"),
            classify(&e),
        )))
    };
    match judged {
        Ok(Judged::Step(pair::Step::Run { .. })) => Judging::Alone,
        Ok(Judged::Step(pair::Step::UpToDate(last))) => {
            Judging::Over(Start::Over(Turn::UpToDate(last)))
        }
        Ok(Judged::New(need)) => match verdict() {
            Ok(exists) => Judging::New(need, exists),
            Err(e) => refused(e),
        },
        Err(e) => refused(e),
    }
}

/// The pairs `pairs` of a wave (each with its index among the fleet's
/// pairs) decided together on `conn`; `deciders` threads judge them (an
/// HTTPS API's certificate is asked for). Lines go to `news` as each
/// pair's own decision sends them.
pub(super) fn decide<'c>(
    ctx: &'c Context<'_>,
    conn: &mut postgres::Client,
    worker: &str,
    pairs: &[(&'c Client, &'c Route)],
    plan: &Plan,
    deciders: usize,
    news: &Sender<Watch>,
) -> Vec<Pre<'c>> {
    let mut out: Vec<Pre<'c>> = pairs.iter().map(|_| Pre::Alone).collect();
    // Everything that can refuse a pair before anything of it is written.
    let mut checked = Vec::new();
    for (k, (client, route)) in pairs.iter().enumerate() {
        match pair_checks(ctx, client, route, plan) {
            Ok(p) => checked.push((k, p)),
            Err(start) => out[k] = Pre::Decided(start),
        }
    }
    let names: Vec<(&str, &str)> = checked
        .iter()
        .map(|(k, _)| (pairs[*k].0.id.as_str(), pairs[*k].1.name.as_str()))
        .collect();
    let taken = match ledger::wave::take_pairs(conn, &names) {
        Ok(t) => t,
        Err(e) => {
            log::debug!("the wave's pairs are decided one by one: {e:#}");
            return out;
        }
    };
    // Held from here: released on every way out.
    let mut locks = Locks {
        conn,
        ids: Vec::new(),
    };
    let mut mine = Vec::new();
    for ((k, p), t) in checked.into_iter().zip(taken) {
        if let Some((id, true)) = t {
            locks.ids.push(id);
            mine.push((k, p, id));
        }
    }
    let tables: Vec<Option<String>> = mine
        .iter()
        .map(|(k, _, _)| pair::raw_table(pairs[*k].0, pairs[*k].1).ok())
        .collect();
    let asked: Vec<(&str, &str, &str)> = mine
        .iter()
        .zip(&tables)
        .map(|((k, _, _), t)| {
            let (c, r) = pairs[*k];
            (c.id.as_str(), r.name.as_str(), t.as_deref().unwrap_or(""))
        })
        .collect();
    let states = match ledger::wave::pair_states(locks.conn, &asked) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("the wave's pairs are decided one by one: {e:#}");
            return out;
        }
    };
    let idx: Vec<usize> = (0..mine.len()).collect();
    let judged = in_parallel(deciders, &idx, |m| {
        let (k, p, _) = &mine[m];
        let (client, route) = pairs[*k];
        let Some(table) = &tables[m] else {
            return Judging::Alone;
        };
        judging(pair::judge(ctx, client, route, p, &states[m]), || {
            states[m].table.verdict(table)
        })
    });
    let mut new = Vec::new();
    for (m, j) in judged.into_iter().enumerate() {
        let k = mine[m].0;
        match j {
            Judging::Over(start) => out[k] = Pre::Decided(start),
            Judging::Alone => {}
            Judging::New(need, exists) => new.push((m, need, exists)),
        }
    }
    let asked: Vec<NewScrap<'_>> = new
        .iter()
        .map(|(m, need, _)| {
            let (k, _, id) = &mine[*m];
            let (client, route) = pairs[*k];
            NewScrap {
                pair: *id,
                client: &client.id,
                route: &route.name,
                table: tables[*m].as_deref().unwrap_or(""),
                period: (need.from, need.to),
                slice_days: route.slice_days,
                slices: &need.slices,
                known: states[*m].known(),
            }
        })
        .collect();
    let scraps = ledger::wave::create_sync_scraps(locks.conn, &asked);
    drop(asked);
    locks.unlock();
    let conn = &mut *locks.conn;
    let scraps = match scraps {
        Ok(s) => s,
        Err(e) => {
            log::debug!("the wave's pairs are decided one by one: {e:#}");
            return out;
        }
    };
    // Each new scrap's run, ready but for its row.
    let mut readies = Vec::new();
    for ((m, need, exists), scrap) in new.into_iter().zip(scraps) {
        let k = mine[m].0;
        let (client, route) = pairs[k];
        drop(news.send(Watch::note(
            ctx.style,
            "🔄",
            &report::syncing_line(&client.id, &route.name, scrap.id, ""),
        )));
        let n = need.slices.len() as u64;
        match scrap_run::unstarted_fresh(ctx, conn, scrap, n, Some(news), worker) {
            Ok(mut r) => {
                r.refetching(need.refetch);
                readies.push((k, r, exists, need.skipped));
            }
            Err(e) => {
                let why = format!("{e:#}");
                out[k] = Pre::Decided(Start::Over(Turn::NotStarted(why, classify(&e))));
            }
        }
    }
    let started = ctx.settings().and_then(|s| {
        let ids: Vec<i64> = readies.iter().map(|(_, r, _, _)| r.scrap_id()).collect();
        ledger::wave::start_runs(conn, &ids, worker, &serde_json::to_value(s)?, s.lease)
    });
    match started {
        Ok(runs) => {
            for ((k, mut r, exists, skipped), run) in readies.into_iter().zip(runs) {
                r.started(run.run, run.pages_hint);
                r.claimed(run.claims);
                out[k] = Pre::Decided(Start::Ready(r, false, exists, Some(skipped)));
            }
        }
        Err(e) => {
            let why = format!("{e:#}");
            for (k, ..) in readies {
                out[k] = Pre::Decided(Start::Over(Turn::NotStarted(why.clone(), classify(&e))));
            }
        }
    }
    out
}

/// The wave's pair locks this session holds, released on every way out.
struct Locks<'c> {
    conn: &'c mut postgres::Client,
    ids: Vec<i32>,
}

impl Locks<'_> {
    fn unlock(&mut self) {
        let ids = std::mem::take(&mut self.ids);
        if let Err(e) = ledger::wave::unlock_pairs(self.conn, &ids) {
            log::warn!(
                "cannot release the sync locks of {} pairs: {e:#}",
                ids.len()
            );
        }
    }
}

impl Drop for Locks<'_> {
    fn drop(&mut self) {
        self.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::Need;
    use crate::exit::{usage, Exit};
    use chrono::NaiveDate;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, d).unwrap()
    }

    fn need() -> Need {
        Need {
            from: day(1),
            to: day(2),
            slices: vec![(day(1), day(1)), (day(2), day(2))],
            skipped: 0,
            refetch: None,
        }
    }

    fn not_started(j: &Judging) -> Option<Exit> {
        match j {
            Judging::Over(Start::Over(Turn::NotStarted(_, e))) => Some(*e),
            _ => None,
        }
    }

    #[test]
    fn a_pair_to_join_is_left_to_its_own_decision() {
        let join = Judged::Step(pair::Step::Run {
            id: 7,
            joined: true,
            table_exists: false,
            skipped: None,
            fresh: None,
            refetch: None,
        });
        let j = judging(Ok(join), || panic!("no table judged for a join"));
        assert!(matches!(j, Judging::Alone));
    }

    #[test]
    fn a_pair_up_to_date_is_over_without_its_table_judged() {
        let j = judging(Ok(Judged::Step(pair::Step::UpToDate(Some(day(2))))), || {
            panic!("nothing to load: no table judged")
        });
        assert!(matches!(
            j,
            Judging::Over(Start::Over(Turn::UpToDate(Some(d)))) if d == day(2)
        ));
    }

    #[test]
    fn days_to_load_make_a_scrap_once_the_table_is_judged() {
        match judging(Ok(Judged::New(need())), || Ok(true)) {
            Judging::New(n, exists) => assert!(exists && n.slices.len() == 2),
            _ => panic!("a new scrap"),
        }
        match judging(Ok(Judged::New(need())), || Ok(false)) {
            Judging::New(_, exists) => assert!(!exists, "made once handed over"),
            _ => panic!("a new scrap"),
        }
    }

    #[test]
    fn a_refused_table_or_judgement_does_not_start_the_pair() {
        let bad_table = judging(Ok(Judged::New(need())), || Err(usage("not a raw table")));
        assert_eq!(not_started(&bad_table), Some(Exit::Usage));
        let refused = judging(Err(crate::exit::env_error("TLS: not trusted")), || Ok(true));
        assert_eq!(not_started(&refused), Some(Exit::Environment));
    }
}
