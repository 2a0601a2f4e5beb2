//! A run's end: the scrap's slices read back, the run row closed, the
//! summary and exit code decided from what the ledger says; for a fleet,
//! many runs' ends in two statements (`finish_many`).

use super::{backoff_of, loaded, Ready};
use crate::cmd::Context;
use crate::db;
use crate::exit::Exit;
use crate::ledger::{self, wave::RunEnd, RunStatus, SliceInfo, SliceStatus};
use crate::pipeline::Outcome;
use crate::report::{self, Feed, Summary, Watch};
use chrono::NaiveDate;
use crossbeam::channel::Sender;
use std::time::Duration;

/// After a run: the scrap's slices read back, the run row closed, the
/// summary and exit code; lines go to `sink` or stderr. `conn` is replaced
/// by a fresh connection if it was lost meanwhile.
pub fn finish(
    ctx: &Context<'_>,
    conn: &mut postgres::Client,
    ready: &Ready<'_>,
    outcome: &Outcome,
    elapsed: Duration,
    sync: bool,
    sink: Option<&Sender<Watch>>,
) -> (Exit, Summary) {
    let feed = Feed {
        style: ctx.style,
        sink,
    };
    let (scrap, run_id) = (&ready.scrap, ready.run_id);
    let settings = &ready.summary.settings;
    let backoff = backoff_of(settings);
    let Ok(db) = ctx.database() else {
        return (Exit::Environment, ready.summary.clone());
    };
    // A slice this run gave up on may be taken by a later run still
    // working the scrap: its end says what the scrap came to.
    if outcome.exit == Exit::Failed {
        wait_for_later_runs(ctx, db, conn, ready, &feed);
    }
    // The scrap as a whole (other workers may have worked some slices). The
    // run's connection may have been lost meanwhile: retried on a fresh one.
    // A sync reads what the pair has loaded with them (the run's close
    // changes no slice).
    let pair = sync.then_some((scrap.client.as_str(), scrap.route.as_str()));
    let read = db::with_fresh_connection(db, conn, settings.retry_max, backoff, |c| {
        ledger::scrap_end(c, scrap.id, pair)
    });
    let end = Ending::of(outcome, read, &feed);
    if let Err(e) = db::with_fresh_connection(db, conn, settings.retry_max, backoff, |c| {
        ledger::finish_run(
            c,
            run_id,
            end.status,
            &outcome.totals,
            outcome.error.as_deref(),
        )
    }) {
        log::warn!("cannot record the end of run {run_id}: {e:#}");
    }
    end.summary(ready, outcome, elapsed, sync, &feed)
}

/// The ends of a fleet's runs (each a sync's), as [`finish`] closes one:
/// their slices read back and their rows closed in one statement each.
/// A run that failed slices (it waits for later runs of its scrap), or
/// any run when a statement for all cannot be sent, is closed alone.
pub fn finish_many(
    ctx: &Context<'_>,
    conn: &mut postgres::Client,
    runs: &[(&Ready<'_>, &Outcome)],
    elapsed: Duration,
    sink: Option<&Sender<Watch>>,
) -> Vec<(Exit, Summary)> {
    let feed = Feed {
        style: ctx.style,
        sink,
    };
    let alone = |conn: &mut postgres::Client, (r, o): (&Ready<'_>, &Outcome)| {
        finish(ctx, conn, r, o, elapsed, true, sink)
    };
    let together: Vec<usize> = (0..runs.len())
        .filter(|&k| runs[k].1.exit != Exit::Failed)
        .collect();
    let asked: Vec<(i64, &str, &str)> = together
        .iter()
        .map(|&k| {
            let s = &runs[k].0.scrap;
            (s.id, s.client.as_str(), s.route.as_str())
        })
        .collect();
    let read = if together.len() > 1 {
        ledger::wave::scrap_ends(conn, &asked).ok()
    } else {
        None
    };
    let Some(read) = read else {
        return runs.iter().map(|&run| alone(conn, run)).collect();
    };
    let mut ends: Vec<Option<Ending>> = runs.iter().map(|_| None).collect();
    for (&k, (slices, loaded_until)) in together.iter().zip(read) {
        ends[k] = Some(Ending::of(
            runs[k].1,
            Ok((slices, Some(loaded_until))),
            &feed,
        ));
    }
    let closing: Vec<RunEnd<'_>> = together
        .iter()
        .filter_map(|&k| {
            let (r, o) = runs[k];
            ends[k].as_ref().map(|e| RunEnd {
                run: r.run_id,
                status: e.status,
                totals: &o.totals,
                error: o.error.as_deref(),
            })
        })
        .collect();
    if let Err(e) = ledger::wave::finish_runs(conn, &closing) {
        log::warn!(
            "cannot record the ends of {} runs at once: {e:#}",
            closing.len()
        );
        // One by one, each on a fresh connection if need be.
        if let Ok(db) = ctx.database() {
            for (&k, c) in together.iter().zip(&closing) {
                let s = &runs[k].0.summary.settings;
                let (run, status, o) = (c.run, c.status, runs[k].1);
                if let Err(e) =
                    db::with_fresh_connection(db, conn, s.retry_max, backoff_of(s), |c| {
                        ledger::finish_run(c, run, status, &o.totals, o.error.as_deref())
                    })
                {
                    log::warn!("cannot record the end of run {run}: {e:#}");
                }
            }
        }
    }
    runs.iter()
        .zip(ends)
        .map(|(&(r, o), end)| match end {
            Some(end) => end.summary(r, o, elapsed, true, &feed),
            None => alone(conn, (r, o)),
        })
        .collect()
}

/// What a run came to, from its outcome and the scrap as read back.
struct Ending {
    exit: Exit,
    status: RunStatus,
    after: Vec<SliceInfo>,
    /// What the pair has loaded, when read (a sync).
    loaded_until: Option<Option<NaiveDate>>,
}

impl Ending {
    /// The run's exit and status: its outcome's, settled by the scrap's
    /// slices as read back (`read`; a read that failed is trouble with the
    /// environment, told on `feed`).
    fn of(
        outcome: &Outcome,
        read: anyhow::Result<(Vec<SliceInfo>, Option<Option<NaiveDate>>)>,
        feed: &Feed<'_>,
    ) -> Ending {
        let mut exit = outcome.exit;
        let (after, loaded_until) = match read {
            Ok(a) => a,
            Err(e) => {
                feed.note("❌", &format!("Erro: {e:#}"));
                exit = exit.merge(Exit::Environment);
                (Vec::new(), None)
            }
        };
        let all_done = !after.is_empty() && after.iter().all(|s| loaded(s.status));
        match exit {
            Exit::Ok if !all_done => exit = Exit::Failed,
            // What this run gave up on, another finished: the scrap is loaded.
            Exit::Failed if all_done => exit = Exit::Ok,
            _ => {}
        }
        let status = match exit {
            Exit::Ok => RunStatus::Done,
            Exit::Interrupted => RunStatus::Interrupted,
            Exit::Environment => RunStatus::Aborted,
            _ => RunStatus::Failed,
        };
        Ending {
            exit,
            status,
            after,
            loaded_until,
        }
    }

    /// The run's summary, and its lines on `feed`.
    fn summary(
        self,
        ready: &Ready<'_>,
        outcome: &Outcome,
        elapsed: Duration,
        sync: bool,
        feed: &Feed<'_>,
    ) -> (Exit, Summary) {
        let Ending {
            exit,
            status,
            after,
            loaded_until,
        } = self;
        let (id, run_id) = (ready.scrap.id, ready.run_id);
        let mut summary = ready.summary.clone();
        summary.status = if outcome.auth_refused && exit == Exit::Environment {
            report::AUTH_REFUSED.to_string()
        } else {
            status.to_string()
        };
        summary.exit_code = exit.code();
        count_run(&mut summary, outcome, &after, elapsed);
        summary.slices_done_elsewhere = (i64::from(summary.slices_done)
            - ready.slices_done_before as i64
            - i64::from(outcome.totals.slices_done))
        .max(0) as i32;
        if summary.slices_done_elsewhere > 0 {
            feed.note(
                "🤝",
                &format!(
                    "{} fatia(s) do scrap {id} concluída(s) por outro processo durante esta execução",
                    summary.slices_done_elsewhere
                ),
            );
        }
        if let Some(e) = &outcome.error {
            feed.note("❌", e);
        }
        if summary.slices_failed > 0 {
            feed.note(
                "⚠️",
                &format!(
                    "{} fatia(s) com falha: veja `atlas scrap show {id}` e {}; rode de novo para retomar",
                    summary.slices_failed,
                    ready.errlog.path().display()
                ),
            );
        }
        if outcome.totals.pages > 0 && !after.is_empty() && after.iter().all(|s| s.records == 0) {
            feed.note(
                "⚠️",
                &format!(
                    "Nenhum registro em nenhuma fatia do scrap {id}: confira date_params e end_style da rota \
                     (a API pode ler o fim como exclusivo) e teste um dia com `atlas check --date YYYY-MM-DD`"
                ),
            );
        }
        if sync {
            if loaded_until.is_none() {
                log::warn!("cannot read what is loaded after run {run_id}");
            }
            summary.loaded_until = Some(loaded_until.flatten());
        }
        (exit, summary)
    }
}

/// How often a run that failed slices looks whether a later run took them.
const LATER_RUN_POLL: Duration = Duration::from_secs(1);

/// Waits while a later run of the scrap, still live, may take slices this
/// run failed (`ledger::retried_elsewhere`); a stop signal ends the wait.
/// The run's lease is renewed meanwhile, so it is not taken for dead.
fn wait_for_later_runs(
    ctx: &Context<'_>,
    db: &db::Db,
    conn: &mut postgres::Client,
    ready: &Ready<'_>,
    feed: &Feed<'_>,
) {
    let (scrap, run) = (ready.scrap.id, ready.run_id);
    let lease = ready.summary.settings.lease;
    let mut told = false;
    while !ctx.quit.load(std::sync::atomic::Ordering::SeqCst) {
        let left =
            db::with_fresh_connection(db, conn, 1, backoff_of(&ready.summary.settings), |c| {
                ledger::renew_run(c, run, lease)?;
                ledger::retried_elsewhere(c, scrap, run)
            });
        match left {
            Ok(0) => return,
            Ok(n) if !told => {
                told = true;
                feed.note(
                    "⏳",
                    &format!(
                        "Aguardando outro processo que trabalha o scrap {scrap} retomar {n} fatia(s) com falha desta execução"
                    ),
                );
            }
            Ok(_) => {}
            Err(e) => {
                log::warn!(
                    "cannot see whether a later run takes the failed slices of run {run}: {e:#}"
                );
                return;
            }
        }
        std::thread::sleep(LATER_RUN_POLL);
    }
}

/// The run's counters, and the scrap's slices as they stand after it.
fn count_run(summary: &mut Summary, outcome: &Outcome, after: &[SliceInfo], elapsed: Duration) {
    let t = &outcome.totals;
    summary.records_fetched = t.records;
    summary.inserted = t.inserted;
    summary.duplicates = t.duplicates;
    summary.out_of_period = t.out_of_period;
    summary.undated = t.undated;
    summary.sanitised = t.sanitised;
    summary.pages = t.pages;
    summary.slices_done = after.iter().filter(|s| loaded(s.status)).count() as i32;
    summary.slices_open = after
        .iter()
        .filter(|s| s.status == SliceStatus::Open)
        .count() as i32;
    summary.slices_failed = after
        .iter()
        .filter(|s| s.status == SliceStatus::Failed)
        .count() as i32;
    summary.slices_done_by_run = t.slices_done;
    summary.retries = t.retries;
    summary.http_requests = t.http;
    summary.http_429 = t.http.too_many;
    summary.elapsed_secs = (elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
    summary.records_per_sec =
        (report::rate(t.records.max(0) as u64, elapsed) * 10.0).round() / 10.0;
}
