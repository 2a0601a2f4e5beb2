//! The command layer: `run` builds one `Context` from flags, environment
//! and config file, then hands it to the command's module. Nothing below
//! this layer reads an environment variable or parses a flag, and no module
//! below it imports from here.
//!
//! Input is checked before anything is written, so bad input changes
//! nothing. Each command meets its problems in a fixed order (its own flags,
//! then the config, then settings, then the database): a value that some
//! commands can do without keeps its error until a command asks for it.

mod alert;
mod auth;
mod check;
mod clients;
mod fleet;
mod init;
mod login;
mod manager;
mod pair;
mod scrap;
mod scrap_run;
mod status;
mod sync;
mod verify;

use crate::cli::{Args, AuthCommand, Command, ScrapCommand};
use crate::config::settings::{config_path, database_url};
use crate::config::template::{self, Secrets};
use crate::config::{self, Auth, Client, Config, Layer, Route, Settings};
use crate::dates;
use crate::db::Db;
use crate::exit::{usage, Exit, UsageError};
use crate::http::{self, ResolvedAuth};
use crate::ledger;
use crate::oauth;
use crate::report::Style;
use crate::seal::TokenKey;
use anyhow::Result;
use chrono::NaiveDate;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Runs the command `args` asks for. `env` looks up environment variables;
/// `quit` is raised by Ctrl-C or a fatal error, `interrupted` by Ctrl-C only.
pub fn run(
    args: &Args,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    quit: &AtomicBool,
    interrupted: &AtomicBool,
) -> Result<Exit> {
    let context = || Context::build(args, env, quit, interrupted);
    let fetches = match &args.command {
        Command::Check(_) | Command::Sync(_) | Command::Manager(_) => true,
        Command::Scrap(s) => matches!(s.command, ScrapCommand::Run(_)),
        _ => false,
    };
    if fetches {
        http::read_trust_early();
    }
    match &args.command {
        Command::Init(_) => init::run(&context()?),
        Command::Clients(_) => clients::run(&context()?),
        Command::Check(a) => check::run(&context()?, a),
        Command::Sync(a) => {
            let ctx = context()?;
            told_if_failed(&ctx, sync::run(&ctx, a))
        }
        Command::Manager(a) => manager::run(&context()?, a.plain),
        Command::Verify(a) => verify::run(&context()?, a),
        Command::Status(a) => {
            status::check_flags(a)?;
            status::run(&context()?, a)
        }
        Command::Auth(a) => match &a.command {
            AuthCommand::Seed(s) => auth::seed(&context()?, s),
            AuthCommand::Login(l) => {
                login::check_flags(l)?;
                login::run(&context()?, l)
            }
        },
        // Flags that stand alone are checked before the context is built.
        Command::Scrap(s) => match &s.command {
            ScrapCommand::Create(a) => scrap::create(&context()?, a),
            ScrapCommand::List(a) => {
                scrap::check_status(a.status.as_deref())?;
                scrap::list(&context()?, a)
            }
            ScrapCommand::Show(a) => {
                let id = ledger::parse_id(&a.id)?;
                scrap::show(&context()?, id)
            }
            ScrapCommand::Run(a) => {
                let id = ledger::parse_id(&a.id)?;
                let ctx = context()?;
                told_if_failed(&ctx, scrap_run::run(&ctx, id, a.json, false))
            }
        },
    }
}

/// A run command's result, its error first told to the notifiers.
fn told_if_failed(ctx: &Context<'_>, result: Result<Exit>) -> Result<Exit> {
    if let Err(e) = &result {
        alert::after_error(ctx, e);
    }
    result
}

/// Everything a command needs, resolved once from flags, environment and
/// config file.
pub struct Context<'a> {
    /// The validated config; `None` when there is no file and none was named.
    config: Option<Config>,
    /// Where the config was looked for (named when a command needs it).
    config_path: PathBuf,
    /// Run settings (flag > environment > file > default), or why not.
    settings: Result<Settings, UsageError>,
    /// The database (flag > environment > file), or why not.
    database: Result<Db, UsageError>,
    /// This machine's name, for worker ids.
    pub host: String,
    /// Line style: with emoji, or plain.
    pub style: Style,
    /// Raised by Ctrl-C or a fatal error: stop fetching, flush, release.
    pub quit: &'a AtomicBool,
    /// Raised by Ctrl-C only.
    pub interrupted: &'a AtomicBool,
    /// The environment, for secret references only (`token_env`): a
    /// client's secret is read when a command uses that client.
    env: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

impl<'a> Context<'a> {
    fn build(
        args: &Args,
        env: &'a (dyn Fn(&str) -> Option<String> + Sync),
        quit: &'a AtomicBool,
        interrupted: &'a AtomicBool,
    ) -> Result<Context<'a>> {
        let (config_path, named) = config_path(args.config.as_deref(), env);
        let config = if named || config_path.exists() {
            Some(config::load(&config_path)?)
        } else {
            None
        };
        let file = config.as_ref().map(|c| &c.settings);
        let settings =
            Settings::resolve(flags(args), env, file.unwrap_or(&Layer::default())).map_err(kept);
        let database = database_url(
            args.database_url.as_deref(),
            env,
            config.as_ref().and_then(|c| c.database_url.as_deref()),
        )
        .and_then(|url| Db::parse(&url))
        .map(|db| match &settings {
            Ok(s) => db.with_max_connections(s.max_db_connections),
            Err(_) => db,
        })
        .map_err(kept);
        Ok(Context {
            config,
            config_path,
            settings,
            database,
            host: ledger::host_name(env),
            style: Style::for_console(args.plain),
            quit,
            interrupted,
            env,
        })
    }

    /// The config file, for a command that cannot do without one.
    pub fn config(&self) -> Result<&Config> {
        self.config.as_ref().ok_or_else(|| {
            usage(format!(
                "no config file: {} does not exist (give --config FILE or set ATLAS_CONFIG)",
                self.config_path.display()
            ))
        })
    }

    /// The run settings, for a command that runs or probes.
    pub fn settings(&self) -> Result<&Settings> {
        self.settings.as_ref().map_err(raised)
    }

    /// The database, for a command that needs one.
    pub fn database(&self) -> Result<&Db> {
        self.database.as_ref().map_err(raised)
    }

    /// The client's auth with its secret read. An OAuth2 client also needs
    /// the token key and the database (its tokens live there, sealed).
    pub fn auth(&self, client: &Client) -> Result<ResolvedAuth> {
        let Auth::OAuth2(cfg) = &client.auth else {
            return ResolvedAuth::resolve(&client.auth, self.env);
        };
        Ok(ResolvedAuth::OAuth2(Arc::new(
            self.oauth_session(client, cfg)?,
        )))
    }

    /// An OAuth2 client's session: its secrets read, the token key and the
    /// database at hand (no request yet).
    pub fn oauth_session(&self, client: &Client, cfg: &config::OAuth2) -> Result<oauth::Session> {
        let key = self.token_key()?;
        let timeout = self
            .settings
            .as_ref()
            .map(|s| s.timeout)
            .unwrap_or(std::time::Duration::from_secs(30));
        oauth::Session::new(
            client,
            cfg,
            self.env,
            key,
            self.database()?.clone(),
            crate::http::agent_trusting(timeout, &client.ca_certs),
            format!("{}:{}", self.host, std::process::id()),
        )
    }

    /// The key OAuth2 tokens are sealed with (`ATLAS_TOKEN_KEY` or `ATLAS_TOKEN_KEY_FILE`).
    pub fn token_key(&self) -> Result<TokenKey> {
        TokenKey::from_env(self.env)
    }

    /// The secrets a route's query, headers and body name (`{env:}`, `{file:}`), read.
    pub fn secrets(&self, route: &config::Route) -> Result<Secrets> {
        let mut templates: Vec<(&str, String)> = Vec::new();
        for (what, list) in [("query", &route.query), ("headers", &route.headers)] {
            for (k, v) in list {
                templates.push((v, format!("routes.{}.{what}.{k}", route.name)));
            }
        }
        if let Some(b) = &route.body {
            for s in template::strings(b) {
                templates.push((s, format!("routes.{}.body", route.name)));
            }
        }
        Secrets::resolve(templates, self.env)
    }
}

/// The run settings given as flags: the global `--error-log`, and the
/// knobs of `scrap run` and `sync`.
fn flags(args: &Args) -> Layer {
    let knobs = match &args.command {
        Command::Scrap(s) => match &s.command {
            ScrapCommand::Run(a) => a.knobs(),
            _ => Layer::default(),
        },
        Command::Sync(a) => a.knobs(),
        _ => Layer::default(),
    };
    Layer {
        error_log: args.error_log.clone(),
        metrics_file: args.metrics_file.clone(),
        ..knobs
    }
}

/// An error kept in the context until a command needs the value (every
/// such error is bad input).
fn kept(e: anyhow::Error) -> UsageError {
    UsageError(format!("{e:#}"))
}

/// A kept error, raised for the command that needs the value.
fn raised(e: &UsageError) -> anyhow::Error {
    usage(e.0.clone())
}

/// A last day that has not begun yet in the route's time zone is refused:
/// its slices would be recorded loaded before the API had its records.
fn not_after_today(day: NaiveDate, route: &Route, flag: &str) -> Result<()> {
    let today = dates::today_in(route.timezone.as_ref());
    if day > today {
        return Err(usage(format!(
            "{flag} {day} is after today ({today} in {} for route {}): a day can be loaded once it has begun (today's is loaded as open and fetched again by the next sync)",
            dates::zone_name(route.timezone.as_ref()),
            route.name
        )));
    }
    Ok(())
}

/// A day given on the command line (`--from`, `--to`, `--until`).
/// Written in full only: `2025-3-1` is refused, as help says YYYY-MM-DD.
fn day_flag(s: &str, flag: &str) -> Result<NaiveDate> {
    let t = s.trim();
    let full = t.len() == 10
        && t.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    full.then(|| dates::parse_day(t)).flatten().ok_or_else(|| {
        usage(format!(
            "{flag} '{s}' is not a real date in the form YYYY-MM-DD"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::classify;
    use argh::FromArgs;

    fn args(line: &[&str]) -> Args {
        Args::from_args(&["atlas"], line).unwrap()
    }

    #[test]
    fn run_knobs_come_from_the_command_that_has_them() {
        let a = args(&[
            "--error-log",
            "e.log",
            "scrap",
            "run",
            "1",
            "--threads",
            "3",
        ]);
        let l = flags(&a);
        assert_eq!(l.threads, Some(3));
        assert_eq!(l.error_log, Some(PathBuf::from("e.log")));
        let a = args(&[
            "sync",
            "--client",
            "c",
            "--route",
            "r",
            "--batch-export",
            "9",
        ]);
        assert_eq!(flags(&a).batch_export, Some(9));
        assert_eq!(flags(&args(&["clients"])), Layer::default());
    }

    #[test]
    fn day_flags_are_real_days() {
        assert!(day_flag(" 2025-02-28", "--from").is_ok());
        for short in ["2025-3-1", "2025-03-1", "25-03-01", "2025/03/01"] {
            let e = day_flag(short, "--from").unwrap_err();
            assert!(format!("{e}").contains("YYYY-MM-DD"), "{short}: {e}");
        }
        let e = day_flag("2025-02-30", "--to").unwrap_err();
        assert_eq!(
            format!("{e}"),
            "--to '2025-02-30' is not a real date in the form YYYY-MM-DD"
        );
    }

    #[test]
    fn a_bad_value_waits_for_the_command_that_needs_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("atlas.json");
        std::fs::write(&path, r#"{"clients": {}}"#).unwrap();
        let env = |k: &str| (k == "ATLAS_THREADS").then(|| "muitos".to_string());
        let (q, i) = (AtomicBool::new(false), AtomicBool::new(false));
        let a = args(&["--config", path.to_str().unwrap(), "init"]);
        let ctx = Context::build(&a, &env, &q, &i).unwrap();
        assert!(ctx.config().is_ok());
        let e = ctx.settings().unwrap_err();
        assert_eq!(classify(&e), Exit::Usage);
        assert!(format!("{e}").contains("ATLAS_THREADS"), "{e}");
        let e = ctx.database().err().expect("no URL given");
        assert_eq!(classify(&e), Exit::Usage);
        assert!(format!("{e}").starts_with("no database URL"), "{e}");
        // A config named but missing stops every command at once.
        let none = dir.path().join("none.json");
        let a = args(&["--config", none.to_str().unwrap(), "init"]);
        assert!(Context::build(&a, &|_| None, &q, &i).is_err());
    }
}
