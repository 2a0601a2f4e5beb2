//! Raw command-line flags (argh). Nothing here is validated: the command
//! layer (`cmd`) turns these, the environment and `atlas.json` into one
//! checked context (config, settings, database) once.

use crate::config::Layer;
use argh::FromArgs;
use std::path::PathBuf;

/// Atlas Data Flow: load paginated JSON APIs into idempotent PostgreSQL raw tables.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// config file (default: $ATLAS_CONFIG, then ./atlas.json)
    #[argh(option)]
    pub config: Option<PathBuf>,

    /// postgres URL (default: $ATLAS_DATABASE_URL, $DATABASE_URL, then the config)
    #[argh(option)]
    pub database_url: Option<String>,

    /// print without emoji, for consoles that cannot show them
    #[argh(switch)]
    pub plain: bool,

    /// error log file (default: $ATLAS_ERROR_LOG, then ./erros_scraps.log)
    #[argh(option)]
    pub error_log: Option<PathBuf>,

    /// prometheus textfile written at the end of every scrap run and sync
    /// (default: $ATLAS_METRICS_FILE, then the config's metrics_file; none)
    #[argh(option)]
    pub metrics_file: Option<PathBuf>,

    /// print the version, commit and build date (atlas X.Y.Z (commit, date)) and exit
    #[argh(switch, short = 'V')]
    pub version: bool,

    #[argh(subcommand)]
    pub command: Command,
}

impl Args {
    /// The command prints its result as one JSON object (`--json`).
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Scrap(s) => matches!(&s.command, ScrapCommand::Run(a) if a.json),
            Command::Sync(a) => a.json,
            Command::Verify(a) => a.json,
            Command::Status(a) => a.json,
            _ => false,
        }
    }
}

/// The global options that take a value: what follows each is not a switch.
const VALUED: [&str; 4] = [
    "--config",
    "--database-url",
    "--error-log",
    "--metrics-file",
];

/// `--json` is among the arguments (looked at before they are parsed, so a
/// usage error can still answer in JSON).
pub fn wants_json(args: &[String]) -> bool {
    args.iter().any(|a| a == "--json")
}

/// `--version` (or `-V`) is given among the global options, before any
/// command: it is answered without one (argh would ask for a command).
/// `--json` may go with it.
pub fn wants_version(args: &[String]) -> bool {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--version" | "-V" => return true,
            "--plain" | "--json" => {}
            v if VALUED.contains(&v) => {
                it.next();
            }
            _ => return false,
        }
    }
    false
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Init(InitArgs),
    Check(CheckArgs),
    Clients(ClientsArgs),
    Scrap(ScrapArgs),
    Sync(SyncArgs),
    Manager(ManagerArgs),
    Verify(VerifyArgs),
    Auth(AuthArgs),
    Status(StatusArgs),
}

/// Create or upgrade the control schema (idempotent, safe to run concurrently).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "init")]
pub struct InitArgs {}

/// Validate the config, reach PostgreSQL and probe each route once.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct CheckArgs {
    /// skip the one-request probe of each route
    #[argh(switch)]
    pub no_probe: bool,

    /// probe this day (YYYY-MM-DD) instead of yesterday in each route's time zone
    #[argh(option)]
    pub date: Option<String>,

    /// only send a test notification to the notify block's command and webhook
    /// (exit 0 delivered, 3 not)
    #[argh(switch)]
    pub notify_test: bool,
}

/// List the configured clients and their routes.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "clients")]
pub struct ClientsArgs {}

/// Create, list, show and run scraps (one client, route and period each).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "scrap")]
pub struct ScrapArgs {
    #[argh(subcommand)]
    pub command: ScrapCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ScrapCommand {
    Create(CreateArgs),
    List(ListArgs),
    Show(ShowArgs),
    Run(RunArgs),
}

/// Create a scrap and its raw table; print the new id alone on stdout.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
pub struct CreateArgs {
    /// client id, as in the config
    #[argh(option)]
    pub client: String,
    /// route name, as in the config
    #[argh(option)]
    pub route: String,
    /// first day of the period (YYYY-MM-DD)
    #[argh(option)]
    pub from: String,
    /// last day of the period, inclusive (YYYY-MM-DD)
    #[argh(option)]
    pub to: String,
}

/// List scraps with their status, rows and last run.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct ListArgs {
    /// only this client
    #[argh(option)]
    pub client: Option<String>,
    /// only this status: pending, running, done, failed, open
    #[argh(option)]
    pub status: Option<String>,
}

/// Show a scrap, its runs and its slices.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show")]
pub struct ShowArgs {
    /// scrap id
    #[argh(positional)]
    pub id: String,
}

/// The run settings `scrap run` and `sync` take as flags, added to their
/// structs here once; `knobs()` gives them as a settings layer (the rest
/// of each setting is declared in `config::settings::each_run_setting!`).
macro_rules! with_run_knobs {
    ($(#[$attr:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$attr])*
        pub struct $name {
            $($body)*
            /// fetcher threads (default: $ATLAS_THREADS, config, then 8)
            #[argh(option)]
            pub threads: Option<usize>,
            /// writer threads (default: $ATLAS_WRITERS, config, then 2)
            #[argh(option)]
            pub writers: Option<usize>,
            /// rows per insert batch (default: $ATLAS_BATCH_EXPORT, config, then 2000)
            #[argh(option)]
            pub batch_export: Option<usize>,
            /// attempts per request or batch before giving up (default: $ATLAS_RETRY_MAX, config, then 5)
            #[argh(option)]
            pub retry_max: Option<u32>,
            /// connections to PostgreSQL opened at most, 4 to 1000 (default: $ATLAS_MAX_DB_CONNECTIONS, config, then 16)
            #[argh(option)]
            pub max_db_connections: Option<u32>,
        }

        impl $name {
            /// The run settings given as this command's flags.
            pub fn knobs(&self) -> Layer {
                Layer {
                    threads: self.threads,
                    writers: self.writers,
                    batch_export: self.batch_export,
                    retry_max: self.retry_max,
                    max_db_connections: self.max_db_connections,
                    ..Layer::default()
                }
            }
        }
    };
}

with_run_knobs! {
/// Load a scrap's period from the API into its raw table.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct RunArgs {
    /// scrap id
    #[argh(positional)]
    pub id: String,
    /// print the summary as one JSON object
    #[argh(switch)]
    pub json: bool,
}
}

with_run_knobs! {
/// Incremental load: create and run a scrap from the last fully loaded day
/// of one (client, route), or of every configured pair with --all.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "sync")]
pub struct SyncArgs {
    /// client id, as in the config (with --all: only these clients; repeatable)
    #[argh(option)]
    pub client: Vec<String>,
    /// route name, as in the config (with --all: only these routes; repeatable)
    #[argh(option)]
    pub route: Vec<String>,
    /// every configured (client, route) pair (each client's routes), narrowed by --client and --route
    #[argh(switch)]
    pub all: bool,
    /// first day to load when nothing was loaded yet (YYYY-MM-DD)
    #[argh(option)]
    pub from: Option<String>,
    /// last day to load (default: yesterday in the route's time zone)
    #[argh(option)]
    pub until: Option<String>,
    /// days before the last loaded day to load again (default 1)
    #[argh(option)]
    pub lookback_days: Option<u32>,
    /// print the summary as one JSON object
    #[argh(switch)]
    pub json: bool,
}
}

/// Whether last night was good: each configured pair's last run, what is loaded, gaps and lag.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "status",
    example = "atlas status",
    example = "atlas status --client 2151 --max-lag-days 2 --json",
    note = "Reads the control schema (the runs of every machine). One line per configured \
            (client, route) after a first line with the verdict (ATLAS OK, WARNING, \
            CRITICAL or UNKNOWN, as monitoring plugins print it): the last run (when, which machine, \
            how it ended, rows inserted, failed slices), loaded until (the last day with no \
            gap before it), days behind yesterday in the route's time zone, gap days and open \
            days (loaded before they had ended).",
    error_code(
        0,
        "every pair's last run ended well and none lags more than --max-lag-days"
    ),
    error_code(1, "a pair's last run failed, a pair lags or a pair never ran"),
    error_code(2, "usage or config, or a control schema that needs atlas init"),
    error_code(3, "the database cannot be reached")
)]
pub struct StatusArgs {
    /// only this client (repeatable)
    #[argh(option)]
    pub client: Vec<String>,
    /// only this route (repeatable)
    #[argh(option)]
    pub route: Vec<String>,
    /// days a pair may be loaded behind yesterday before it is a problem (default 1)
    #[argh(option)]
    pub max_lag_days: Option<u32>,
    /// print the report as one JSON object
    #[argh(switch)]
    pub json: bool,
}

/// Open the terminal manager: scraps live from PostgreSQL, create, run, sync.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "manager")]
pub struct ManagerArgs {
    /// draw without emoji (as the global --plain)
    #[argh(switch)]
    pub plain: bool,
}

/// Check a raw table against what atlas would have loaded (hashes, dates, duplicates).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify")]
pub struct VerifyArgs {
    /// client id, as in the config
    #[argh(option)]
    pub client: String,
    /// route name, as in the config
    #[argh(option)]
    pub route: String,
    /// rewrite differing hashes and dates and delete duplicates (oldest data_coleta kept)
    #[argh(switch)]
    pub fix: bool,
    /// threads recomputing hashes (default: one per CPU)
    #[argh(option)]
    pub threads: Option<usize>,
    /// print the report as one JSON object
    #[argh(switch)]
    pub json: bool,
}

/// Manage the OAuth2 tokens of `oauth2` clients (stored encrypted in the database).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "auth")]
pub struct AuthArgs {
    #[argh(subcommand)]
    pub command: AuthCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum AuthCommand {
    Seed(SeedArgs),
    Login(LoginArgs),
}

/// Store a new refresh token for an oauth2 client, read from stdin (never from the command line).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "seed")]
pub struct SeedArgs {
    /// client id, as in the config
    #[argh(option)]
    pub client: String,
}

/// Get an oauth2 client's tokens through the browser (authorization code) and store them encrypted.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "login",
    example = "atlas auth login --client 2151",
    example = "atlas auth login --client 2151 --paste",
    note = "Prints the URL to open (stdout, one line), waits for the browser's redirect on the \
            client's redirect_uri (or the redirected URL pasted on stdin with --paste), checks \
            its state, trades the code at token_url (RFC 6749 §4.1, PKCE S256 when pkce is \
            true) and stores the tokens encrypted. The client needs authorize_url and \
            redirect_uri (http://127.0.0.1:PORT/PATH) in its oauth2 auth, grant refresh_token, \
            and ATLAS_TOKEN_KEY set.",
    error_code(0, "the tokens are stored"),
    error_code(
        2,
        "usage or config: unknown client, not oauth2, no authorize_url/redirect_uri, no token \
         key, schema not initialised, nothing pasted"
    ),
    error_code(
        3,
        "refused or unreachable: an error= redirect, a state that is not ours, no redirect \
         within --timeout-secs, the token endpoint refused the code or gave no refresh token, \
         the port is taken, the database is unreachable; nothing is stored"
    ),
    error_code(130, "interrupted (Ctrl-C) while waiting; nothing is stored")
)]
pub struct LoginArgs {
    /// client id, as in the config
    #[argh(option)]
    pub client: String,
    /// read the redirected URL (or the bare code) from stdin instead of listening on the
    /// redirect_uri, for a browser that runs on another machine
    #[argh(switch)]
    pub paste: bool,
    /// seconds to wait for the redirect (or the pasted line), 1 to 86400 (default 300)
    #[argh(option, default = "300")]
    pub timeout_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(line: &[&str]) -> Vec<String> {
        line.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn version_is_a_global_switch_only() {
        for yes in [
            &["--version"][..],
            &["-V"],
            &["--plain", "--version"],
            &["--config", "x.json", "--json", "--version", "init"],
        ] {
            assert!(wants_version(&strings(yes)), "{yes:?}");
        }
        for no in [
            &[][..],
            &["init"],
            &["sync", "--version"],
            &["--config", "--version"],
            &["--", "--version"],
        ] {
            assert!(!wants_version(&strings(no)), "{no:?}");
        }
    }

    #[test]
    fn json_is_the_commands_flag() {
        let parse = |line: &[&str]| Args::from_args(&["atlas"], line).unwrap();
        assert!(parse(&["scrap", "run", "1", "--json"]).json());
        assert!(parse(&["sync", "--all", "--json"]).json());
        assert!(parse(&["verify", "--client", "c", "--route", "r", "--json"]).json());
        assert!(!parse(&["scrap", "run", "1"]).json());
        assert!(!parse(&["init"]).json());
        assert!(wants_json(&strings(&["sync", "--bogus", "--json"])));
    }
}
