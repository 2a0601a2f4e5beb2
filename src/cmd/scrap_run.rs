//! A scrap's run: `scrap run` and the runs of `sync`, `fleet` and the
//! manager. The run is prepared (its credentials resolved, its run row
//! started), loaded through the pipeline, and finished (its final state read
//! from the ledger, the summary and exit code decided from it).

mod end;

pub use end::{finish, finish_many};

use super::Context;
use crate::config::{Client, Route, Settings};
use crate::db;
use crate::exit::Exit;
use crate::ledger::{self, Scrap, SliceStatus};
use crate::pipeline::gate::{NoTable, TableGate};
use crate::pipeline::{self, tune, Job, ProgressFeed};
use crate::report::{ErrorLog, Feed, Style, Summary, Watch};
use crate::retry::Backoff;
use anyhow::Result;
use crossbeam::channel::Sender;
use std::time::Instant;

/// `scrap run` (and the run of `sync`): loads the scrap's pending slices,
/// records the run, prints the summary. `sync` asks for `loaded_until`.
pub fn run(ctx: &Context<'_>, id: i64, json: bool, sync: bool) -> Result<Exit> {
    let (exit, summary) = execute(ctx, id, sync, None, None)?;
    emit(&summary, ctx.style, json);
    let object = serde_json::to_value(&summary)?;
    super::alert::after_run(ctx, &object, std::slice::from_ref(&object));
    Ok(exit)
}

/// The run itself: its lines on stderr, or to `sink` with its progress and
/// notices (the manager); the summary is returned, not printed. `refetch`:
/// the days a sync fetches again (`Ready::refetching`).
pub fn execute(
    ctx: &Context<'_>,
    id: i64,
    sync: bool,
    sink: Option<&Sender<Watch>>,
    refetch: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
) -> Result<(Exit, Summary)> {
    // Bad settings are refused before the database is asked anything.
    ctx.config()?;
    let settings = ctx.settings()?;
    let db = ctx.database()?;
    // Room for the most writers a far database may get (opened lazily,
    // capped by `max_db_connections`), the first ones opened while the run
    // gets ready on a connection of its own (which says why a refusing
    // server refuses); the writers fit the measured link.
    let pool = db.pool(
        (settings.threads + tune::MAX_WRITERS + 2) as u32,
        settings.writers,
    );
    let mut conn = db.connect()?;
    let t = Instant::now();
    db::require_schema(&mut conn)?;
    let seen = t.elapsed();
    let worker = ledger::worker_id(&ctx.host, &ledger::Locality::current(), std::process::id());
    let mut ready = match prepare(ctx, &mut conn, id, sync, sink, &worker)? {
        Prepared::Nothing(exit, summary) => return Ok((exit, *summary)),
        Prepared::Ready(r) => r,
    };
    ready.refetching(refetch);
    ready.make_table_sure(&mut conn);
    let round_trip = db::round_trip(&mut conn, tune::NEAR, seen)?;
    ready.summary.settings = tune::plan(&ready.summary.settings, round_trip, pool.max_size());
    let job = ready.job(ctx, pool, ctx.quit, sink);
    let started = Instant::now();
    let outcome = pipeline::run(job);
    let elapsed = started.elapsed();
    Ok(finish(
        ctx, &mut conn, &ready, &outcome, elapsed, sync, sink,
    ))
}

/// A scrap about to run, or what it came to without running.
pub enum Prepared<'c> {
    /// Every slice was done already: the summary says so.
    Nothing(Exit, Box<Summary>),
    Ready(Box<Ready<'c>>),
}

/// A run started in the ledger, with what its job needs.
pub struct Ready<'c> {
    scrap: Scrap,
    client: &'c Client,
    route: &'c Route,
    auth: crate::http::ResolvedAuth,
    secrets: crate::config::template::Secrets,
    errlog: ErrorLog,
    worker: String,
    run_id: i64,
    summary: Summary,
    slices_total: u64,
    slices_done_before: u64,
    /// Some slice was running (held by a worker) when the run was prepared.
    held_at_start: bool,
    /// Pages of the pair's last slice done (0: none known).
    pages_hint: u64,
    /// Open once the raw table is made sure of (`make_table_sure`).
    table: TableGate,
    /// Slices claimed with the run's start (`claimed`), for its crew.
    claims: Vec<ledger::Claim>,
    /// The days a sync fetches again (`refetching`).
    refetch: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
}

impl Ready<'_> {
    /// Its run row started: the run's id and its first guess of a slice's pages.
    pub fn started(&mut self, run_id: i64, pages_hint: u64) {
        self.run_id = run_id;
        self.pages_hint = pages_hint;
        self.summary.run_id = Some(run_id);
    }

    /// Slices claimed for the run as it started: its crew works them first.
    pub fn claimed(&mut self, claims: Vec<ledger::Claim>) {
        self.claims = claims;
    }

    /// The days its sync fetches again, loaded already (the lookback): the
    /// writers insert their rows skipping stored hashes at once.
    pub fn refetching(&mut self, days: Option<(chrono::NaiveDate, chrono::NaiveDate)>) {
        self.refetch = days;
    }

    /// The scrap it runs.
    pub fn scrap_id(&self) -> i64 {
        self.scrap.id
    }

    /// The run's job, on `pool`, stopped by `quit`.
    pub fn job<'r>(
        &'r self,
        ctx: &'r Context<'_>,
        pool: db::Pool,
        quit: &'r std::sync::atomic::AtomicBool,
        sink: Option<&Sender<Watch>>,
    ) -> Job<'r> {
        let settings = &self.summary.settings;
        Job {
            scrap: &self.scrap,
            client: self.client,
            route: self.route,
            settings,
            pool,
            worker: self.worker.clone(),
            run_id: self.run_id,
            auth: self.auth.clone(),
            secrets: self.secrets.clone(),
            backoff: backoff_of(settings),
            errlog: &self.errlog,
            style: ctx.style,
            quit,
            interrupted: ctx.interrupted,
            progress: ProgressFeed {
                sink: sink.cloned(),
                slices_total: self.slices_total,
                slices_done_before: self.slices_done_before,
            },
            held_at_start: self.held_at_start,
            claimed: self.claims.clone(),
            pages_hint: self.pages_hint,
            table: &self.table,
            open_from: self.route.first_open_day(),
            refetch: self.refetch,
        }
    }

    /// The raw table's gate, to settle when it is known to exist.
    pub fn table_gate(&self) -> &TableGate {
        &self.table
    }

    /// Creates the raw table if it is missing (its scrap was created with
    /// `NewTable::Later`, perhaps by a process stopped before it created
    /// it), and opens or shuts the gate the run's writers wait at.
    pub fn make_table_sure(&self, conn: &mut postgres::Client) {
        self.settle_table(db::create_raw_table_if_missing(conn, &self.scrap.raw_table));
    }

    /// The run's raw table.
    pub fn raw_table(&self) -> &str {
        &self.scrap.raw_table
    }

    /// Opens or shuts the gate the run's writers wait at, by whether its
    /// table could be made sure of.
    pub fn settle_table(&self, made: anyhow::Result<()>) {
        let table = &self.scrap.raw_table;
        self.table.settle(made.map_err(|e| NoTable {
            message: format!("cannot create the raw table {table}: {e:#}"),
            database_lost: db::retryable(&e),
        }));
    }
}

fn backoff_of(settings: &Settings) -> Backoff {
    Backoff {
        base: settings.backoff_base,
        cap: settings.backoff_cap,
    }
}

/// Before a run: the scrap read, its client's credentials resolved (an
/// OAuth2 token fetched), dead local runs closed, the run row started; or
/// nothing to run when every slice is done. Lines go to `sink` or stderr.
pub fn prepare<'c>(
    ctx: &'c Context<'_>,
    conn: &mut postgres::Client,
    id: i64,
    sync: bool,
    sink: Option<&Sender<Watch>>,
    worker: &str,
) -> Result<Prepared<'c>> {
    let scrap = ledger::get_scrap(conn, id)?;
    // Runs of dead processes of this machine are closed before anything else.
    ledger::abort_dead_runs(conn, Some(id), worker)?;
    let slices = ledger::slices(conn, id)?;
    let known = Known {
        total: slices.len() as u64,
        loaded: slices.iter().filter(|s| loaded(s.status)).count() as u64,
        held: slices.iter().any(|s| s.status == SliceStatus::Running),
    };
    start(ctx, conn, scrap, known, sync, sink, worker, false)
}

/// `prepare` for a scrap a sync has just created with `slices` slices, all
/// pending: nothing of it is read back.
pub fn prepare_fresh<'c>(
    ctx: &'c Context<'_>,
    conn: &mut postgres::Client,
    scrap: Scrap,
    slices: u64,
    sink: Option<&Sender<Watch>>,
    worker: &str,
) -> Result<Prepared<'c>> {
    let known = Known {
        total: slices,
        loaded: 0,
        held: false,
    };
    start(ctx, conn, scrap, known, true, sink, worker, false)
}

/// A scrap's slices as a run begins.
struct Known {
    total: u64,
    /// Done or open already.
    loaded: u64,
    /// Some slice is held by a worker (perhaps a dead one of this machine).
    held: bool,
}

/// The run of `scrap` started in the ledger (unless `unstarted`), or
/// nothing to run.
#[allow(clippy::too_many_arguments)]
fn start<'c>(
    ctx: &'c Context<'_>,
    conn: &mut postgres::Client,
    scrap: Scrap,
    known: Known,
    sync: bool,
    sink: Option<&Sender<Watch>>,
    worker: &str,
    unstarted: bool,
) -> Result<Prepared<'c>> {
    let feed = Feed {
        style: ctx.style,
        sink,
    };
    let id = scrap.id;
    let cfg = ctx.config()?;
    let settings = ctx.settings()?;
    let (client, route) = cfg.route(&scrap.client, &scrap.route)?;
    let auth = ctx.auth(client)?;
    let secrets = ctx.secrets(route)?;
    let errlog = ErrorLog::new(&settings.error_log);
    let mut summary = summary_of(&scrap, known.total as i64, settings);
    if known.loaded == known.total {
        summary.slices_done = summary.slices_total as i32;
        feed.note("✅", &format!("Scrap {id} já concluído: nada a fazer"));
        if sync {
            summary.loaded_until =
                Some(ledger::last_loaded_day(conn, &scrap.client, &scrap.route)?);
        }
        return Ok(Prepared::Nothing(Exit::Ok, Box::new(summary)));
    }

    // An OAuth2 client gets its token before the run starts (exit 2 or 3 if
    // it cannot); a run of its own (a sync checked these before deciding)
    // is refused before its run row if the API's certificate is not trusted
    // or its table is not a raw table.
    auth.prepare()?;
    if !sync {
        super::pair::trusted(ctx, client)?;
        db::check_raw_table_if_present(conn, &scrap.raw_table)?;
    }
    feed.note(
        "🚀",
        &format!(
            "Iniciando ETL do cliente {} - Rota: {}",
            scrap.client, scrap.route
        ),
    );
    feed.note("📅", &format!("Período: {} até {}", scrap.from, scrap.to));
    feed.note(
        "⚙️",
        &format!(
            "Configurações: Retry={}, Batch={}",
            settings.retry_max, settings.batch_export
        ),
    );
    let mut ready = Box::new(Ready {
        scrap,
        client,
        route,
        auth,
        secrets,
        errlog,
        worker: worker.to_string(),
        run_id: 0,
        summary,
        slices_total: known.total,
        slices_done_before: known.loaded,
        held_at_start: known.held,
        pages_hint: 0,
        table: TableGate::pending(),
        claims: Vec::new(),
        refetch: None,
    });
    if !unstarted {
        let (run_id, pages_hint) = ledger::start_run(
            conn,
            id,
            worker,
            &serde_json::to_value(settings)?,
            settings.lease,
        )?;
        ready.started(run_id, pages_hint);
    }
    Ok(Prepared::Ready(ready))
}

/// A fresh scrap's run as `prepare_fresh` makes it, but for its run row:
/// started with others (`ledger::wave::start_runs`), then given its id
/// with [`Ready::started`].
pub fn unstarted_fresh<'c>(
    ctx: &'c Context<'_>,
    conn: &mut postgres::Client,
    scrap: Scrap,
    slices: u64,
    sink: Option<&Sender<Watch>>,
    worker: &str,
) -> Result<Box<Ready<'c>>> {
    let known = Known {
        total: slices,
        loaded: 0,
        held: false,
    };
    match start(ctx, conn, scrap, known, true, sink, worker, true)? {
        Prepared::Ready(r) => Ok(r),
        Prepared::Nothing(..) => anyhow::bail!("a fresh scrap without slices"),
    }
}

/// A slice whose every row is committed: `done`, or `open` (a day that had
/// not ended when it was loaded).
fn loaded(s: SliceStatus) -> bool {
    matches!(s, SliceStatus::Done | SliceStatus::Open)
}

/// The summary of a run that has done nothing yet.
fn summary_of(scrap: &Scrap, slices_total: i64, settings: &Settings) -> Summary {
    Summary {
        scrap_id: scrap.id,
        run_id: None,
        client: scrap.client.clone(),
        route: scrap.route.clone(),
        table: scrap.raw_table.clone(),
        from: scrap.from,
        to: scrap.to,
        status: "done".into(),
        records_fetched: 0,
        inserted: 0,
        duplicates: 0,
        out_of_period: 0,
        undated: 0,
        sanitised: 0,
        pages: 0,
        slices_done: 0,
        slices_failed: 0,
        slices_total,
        slices_open: 0,
        slices_done_by_run: 0,
        slices_done_elsewhere: 0,
        retries: 0,
        http_requests: Default::default(),
        http_429: 0,
        elapsed_secs: 0.0,
        records_per_sec: 0.0,
        exit_code: 0,
        version: crate::version::version(),
        settings: settings.clone(),
        loaded_until: None,
        days_skipped: None,
    }
}

/// The summary on stdout: the statistics block, or one JSON object.
pub(super) fn emit(summary: &Summary, style: Style, json: bool) {
    if json {
        match serde_json::to_string(summary) {
            Ok(s) => crate::outln!("{s}"),
            Err(e) => log::error!("cannot serialise the summary: {e}"),
        }
    } else {
        crate::outp!("{}", summary.render(style));
    }
}
