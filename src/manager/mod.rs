//! `atlas manager`: the old tool's "⚡ Scraps de ETL" tab as a terminal UI
//! (ratatui on crossterm). The main thread owns the terminal: it reads keys,
//! refreshes the scraps from PostgreSQL about once a second, and draws; a
//! run or sync goes on its own thread (its fetchers and writers on theirs,
//! as in the CLI) and reports through a channel.
//!
//! The work itself (create, run, sync) is the command layer's, reached
//! through [`Backend`], so this module imports nothing from `cmd`.
//!
//! Invariant: the terminal is restored (raw mode off, main screen, cursor
//! shown) on every way out: quit, error (the guard's `Drop`) and panic (the
//! hook).

mod app;
mod query;
mod screens;
mod term;

pub use app::{ClientChoice, Finished, NewScrap};

use crate::exit::Exit;
use crate::report::{Style, Watch};
use anyhow::Result;
use app::{Action, App, Job, Screen};
use chrono::NaiveDate;
use crossbeam::channel::{self, Receiver, Sender};
use crossterm::event::{self, Event as TermEvent, KeyEventKind};
use std::time::{Duration, Instant};

/// How often the scraps are read again: "live" for a person, one short
/// query for the database.
const REFRESH: Duration = Duration::from_secs(1);

/// How long to wait for a key before looking at the run's news again.
const POLL: Duration = Duration::from_millis(100);

/// What the manager asks to be started.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// `scrap run ID`.
    Run(i64),
    /// `atlas sync --client C --route R --from DAY`: DAY is the selected
    /// scrap's first day, used only when nothing was loaded yet.
    Sync {
        client: String,
        route: String,
        from: NaiveDate,
    },
}

/// The work the manager hands to the command layer.
pub trait Backend {
    /// A connection for the screens' queries.
    fn connect(&self) -> Result<postgres::Client>;
    /// This process' worker id, to close dead runs as `scrap show` does.
    fn worker(&self) -> String;
    /// Creates a scrap exactly as `scrap create` does.
    fn create(&self, client: &str, route: &str, from: NaiveDate, to: NaiveDate)
        -> Result<NewScrap>;
    /// Starts a run or sync on a thread of its own; it sends its news to
    /// `watch` and, at its end, how it ended to `done`.
    fn start(&mut self, what: Start, watch: Sender<Watch>, done: Sender<Finished>);
    /// Stops the run in progress as Ctrl-C does (flush, release slices).
    fn stop(&self);
    /// A stop signal (SIGTERM, SIGHUP) came: the manager leaves.
    fn signalled(&self) -> bool;
}

/// Runs the manager until `q` (or a stop signal); the run in progress, if
/// any, is stopped and waited for before it returns.
pub fn run(backend: &mut dyn Backend, style: Style, clients: Vec<ClientChoice>) -> Result<Exit> {
    let mut app = App::new(style, clients);
    let mut terminal = term::enter()?;
    let chans = Channels {
        watch: channel::unbounded(),
        done: channel::unbounded(),
    };
    let outcome = event_loop(&mut terminal, &mut app, backend, &chans);
    if outcome.is_err() && app.job_running() {
        // Leaving on an error: the run is stopped, not left behind.
        backend.stop();
        if let Ok(f) = chans.done.1.recv() {
            app.finished(f);
        }
    }
    drop(terminal);
    outcome
}

/// The run's news (unbounded: a run never waits on the screen) and its end.
struct Channels {
    watch: (Sender<Watch>, Receiver<Watch>),
    done: (Sender<Finished>, Receiver<Finished>),
}

/// The screen's connection and when it last read.
struct Reader {
    conn: Option<postgres::Client>,
    last: Option<Instant>,
}

impl Reader {
    /// Reads the scraps (and the selected scrap's days, and the details on
    /// show) when a second has passed or `now` asks; a database that went
    /// away is shown and tried again at the next second.
    fn refresh(&mut self, app: &mut App, backend: &dyn Backend, now: bool) {
        if !now && self.last.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        self.last = Some(Instant::now());
        match self.read(app, backend) {
            Ok(()) => app.db_error = None,
            Err(e) => {
                app.db_error = Some(format!("{e:#}"));
                self.conn = None;
            }
        }
    }

    fn read(&mut self, app: &mut App, backend: &dyn Backend) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(backend.connect()?);
        }
        let Some(c) = self.conn.as_mut() else {
            return Ok(());
        };
        app.set_scraps(query::scraps(c, &backend.worker())?);
        app.days = match app.selected {
            Some(id) => query::days(c, id)?,
            None => Vec::new(),
        };
        if app.screen == Screen::Details {
            if let Some(id) = app.details.as_ref().map(|d| d.scrap.id) {
                app.details = Some(query::details(c, id, &backend.worker())?);
            }
        }
        Ok(())
    }
}

fn event_loop(
    terminal: &mut term::Tui,
    app: &mut App,
    backend: &mut dyn Backend,
    chans: &Channels,
) -> Result<Exit> {
    let mut reader = Reader {
        conn: None,
        last: None,
    };
    let mut signalled = false;
    loop {
        reader.refresh(app, backend, false);
        for w in chans.watch.1.try_iter() {
            app.watch(w);
        }
        for f in chans.done.1.try_iter() {
            app.finished(f);
            reader.refresh(app, backend, true);
        }
        if backend.signalled() && !signalled {
            // SIGTERM or SIGHUP: the run (which saw the same flags) stops
            // in order, then the manager leaves.
            signalled = true;
            app.stopping = app.job_running();
        }
        if (app.stopping || signalled) && !app.job_running() {
            return Ok(if signalled {
                Exit::Interrupted
            } else {
                Exit::Ok
            });
        }
        terminal.draw(|f| screens::draw(f, app))?;
        if !event::poll(POLL)? {
            continue;
        }
        let TermEvent::Key(key) = event::read()? else {
            // A resize is drawn at the next turn.
            continue;
        };
        // Windows reports releases too; one action per press.
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match app.on_key(key) {
            Action::None => {}
            Action::Quit => return Ok(Exit::Ok),
            Action::StopAndQuit => backend.stop(),
            Action::Create {
                client,
                route,
                from,
                to,
            } => match backend.create(&client, &route, from, to) {
                Ok(s) => {
                    app.created(&s);
                    reader.refresh(app, backend, true);
                }
                Err(e) => app.refused(format!("{e:#}")),
            },
            Action::Details(id) => {
                match reader
                    .conn
                    .as_mut()
                    .ok_or_else(|| anyhow::anyhow!("sem conexão com o banco"))
                    .and_then(|c| query::details(c, id, &backend.worker()))
                {
                    Ok(d) => {
                        app.details = Some(d);
                        app.screen = Screen::Details;
                        app.message = None;
                    }
                    Err(e) => app.message = Some(format!("{e:#}")),
                }
            }
            Action::Run(id) => {
                let title = match app.row(id) {
                    Some(s) => format!("Scrap {id} · {} / {}", s.scrap.client, s.scrap.route),
                    None => format!("Scrap {id}"),
                };
                app.started(Job::new(title, Some(id)));
                backend.start(Start::Run(id), chans.watch.0.clone(), chans.done.0.clone());
            }
            Action::Sync(id) => {
                if let Some(s) = app.row(id).map(|s| s.scrap.clone()) {
                    app.started(Job::new(
                        format!("Sincronização {} / {}", s.client, s.route),
                        None,
                    ));
                    backend.start(
                        Start::Sync {
                            client: s.client,
                            route: s.route,
                            from: s.from,
                        },
                        chans.watch.0.clone(),
                        chans.done.0.clone(),
                    );
                } else {
                    app.message = Some(format!("Scrap {id} não está na lista"));
                }
            }
        }
    }
}
