//! Run settings: the one place where flags, environment and file meet, by
//! precedence flag > environment > file > default (`Settings::resolve`).
//! The config path and the database URL are found here the same way.
//!
//! Every source is read into a `Layer` (argh and serde need their own
//! structs to read flags and file; each converts to a layer once). The
//! environment is an injected lookup, so tests need not touch the process's.

use super::ranges;
use crate::exit::usage;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Defaults chosen by benchmark (docs/performance.md, "Why the defaults").
pub const DEFAULT_THREADS: usize = 8;
pub const DEFAULT_WRITERS: usize = 2;
pub const DEFAULT_BATCH_EXPORT: usize = 2000;
pub const DEFAULT_RETRY_MAX: u32 = 5;
pub const DEFAULT_LEASE_SECS: u64 = 60;
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_PROGRESS_SECS: f64 = 2.0;
pub const DEFAULT_ERROR_LOG: &str = "erros_scraps.log";
/// First retry wait and its cap (full jitter below them).
pub const DEFAULT_BACKOFF_MS: u64 = 1000;
/// MiB of pages in flight (`memory_mb`).
pub const DEFAULT_MEMORY_MB: u64 = 64;
pub const DEFAULT_BACKOFF_CAP_MS: u64 = 60_000;
/// MiB a body may have after decompression (`max_body_mb`), at most `memory_mb`.
pub const DEFAULT_MAX_BODY_MB: u64 = 256;
/// PostgreSQL connections a process opens at most (its pool's cap).
pub const DEFAULT_MAX_DB_CONNECTIONS: u32 = 16;

/// Every run setting, declared once: its file key (also the field of
/// `Layer`), type, environment variable and range (`None`: not a number).
/// `Layer` and its reading, precedence and checks, and the settings keys of
/// `raw::RawFile`, are all made from this list: `each_run_setting!(m)`
/// hands it to the macro `m`. Flags are in `cli::run_knobs!`; the typed,
/// defaulted values in `Settings`.
macro_rules! each_run_setting {
    ($then:ident) => {
        $then! {
            /// Attempts per request or batch (`--retry-max`).
            retry_max: u32 = "ATLAS_RETRY_MAX", Some(ranges::RETRY_MAX);
            /// Rows per insert batch (`--batch-export`).
            batch_export: usize = "ATLAS_BATCH_EXPORT", Some(ranges::BATCH_EXPORT);
            /// Fetcher threads (`--threads`).
            threads: usize = "ATLAS_THREADS", Some(ranges::THREADS);
            /// Writer threads (`--writers`).
            writers: usize = "ATLAS_WRITERS", Some(ranges::WRITERS);
            /// Seconds a claimed slice stays ours without a heartbeat.
            lease_secs: u64 = "ATLAS_LEASE_SECS", Some(ranges::LEASE_SECS);
            /// Whole-request HTTP timeout in seconds.
            timeout_secs: u64 = "ATLAS_TIMEOUT_SECS", Some(ranges::TIMEOUT_SECS);
            /// Seconds between progress lines.
            progress_secs: f64 = "ATLAS_PROGRESS_SECS", Some(ranges::PROGRESS_SECS);
            /// The error log (`--error-log`).
            error_log: PathBuf = "ATLAS_ERROR_LOG", None;
            /// MiB of pages in flight.
            memory_mb: u64 = "ATLAS_MEMORY_MB", Some(ranges::MEMORY_MB);
            /// MiB a body may have after decompression.
            max_body_mb: u64 = "ATLAS_MAX_BODY_MB", Some(ranges::MAX_BODY_MB);
            /// The Prometheus textfile (`--metrics-file`).
            metrics_file: PathBuf = "ATLAS_METRICS_FILE", None;
            /// PostgreSQL connections a process opens at most (`--max-db-connections`).
            max_db_connections: u32 = "ATLAS_MAX_DB_CONNECTIONS", Some(ranges::MAX_DB_CONNECTIONS);
        }
    };
}
pub(crate) use each_run_setting;

/// The value of one run setting as a source gives it.
pub trait SettingValue: Sized + Clone {
    /// From the environment variable `var` holding `text` (not empty).
    fn from_env(var: &str, text: &str) -> Result<Self>;
    /// The value to hold to a range; `None` for a path.
    fn number(&self) -> Option<f64>;
}

macro_rules! numeric_setting {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn from_env(var: &str, text: &str) -> Result<Self> {
                text.trim().parse().map_err(|_| {
                    usage(format!("environment variable {var}='{text}' is not a valid number"))
                })
            }
            fn number(&self) -> Option<f64> {
                Some(*self as f64)
            }
        }
    )*};
}
numeric_setting!(u32, u64, usize, f64);

impl SettingValue for PathBuf {
    fn from_env(_: &str, text: &str) -> Result<Self> {
        Ok(PathBuf::from(text))
    }
    fn number(&self) -> Option<f64> {
        None
    }
}

macro_rules! layer {
    ($($(#[$doc:meta])* $key:ident: $t:ty = $env:literal, $range:expr;)*) => {
        /// Settings as one source gives them (flags, environment or file);
        /// `None` = not given there.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Layer {
            $($(#[$doc])* pub $key: Option<$t>,)*
        }

        impl Layer {
            /// The environment's layer: `ATLAS_THREADS`, `ATLAS_WRITERS`, ...
            /// (empty = not set). A value that is not a number is an error.
            fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Layer> {
                Ok(Layer {
                    $($key: match env($env).filter(|v| !v.trim().is_empty()) {
                        Some(text) => Some(<$t>::from_env($env, &text)?),
                        None => None,
                    },)*
                })
            }

            /// This layer's values, and `lower`'s where this one gives none.
            fn over(self, lower: Layer) -> Layer {
                Layer {
                    $($key: self.$key.or(lower.$key),)*
                }
            }

            /// The first value out of range, as (key, why).
            pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
                $(
                    let range: Option<ranges::Range> = $range;
                    if let (Some(range), Some(v)) = (range, self.$key.as_ref().and_then(SettingValue::number)) {
                        range.check(v).map_err(|why| (stringify!($key), why))?;
                    }
                )*
                Ok(())
            }
        }
    };
}
each_run_setting!(layer);

/// The settings of a run, resolved once. Serialised, it is the `--json`
/// summary's `settings` object (SPEC §6): the first four fields only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Attempts per request or batch before giving up.
    pub retry_max: u32,
    /// Rows per insert batch.
    pub batch_export: usize,
    /// Fetcher threads.
    pub threads: usize,
    /// Writer threads.
    pub writers: usize,
    /// How long a claimed slice stays ours without a heartbeat.
    #[serde(skip)]
    pub lease: Duration,
    /// Whole-request HTTP timeout.
    #[serde(skip)]
    pub timeout: Duration,
    /// Interval of the progress line.
    #[serde(skip)]
    pub progress: Duration,
    /// Chunks (pages) queued between fetchers and writers; `None` = 2 x threads.
    #[serde(skip)]
    pub channel_capacity: Option<usize>,
    /// Bytes of pages in flight (fetched, parsed, queued, being written),
    /// in MiB (`ATLAS_MEMORY_MB`, default 64).
    #[serde(skip)]
    pub memory_mb: u64,
    /// MiB a body may have after decompression (`max_body_mb`; see `max_body`).
    #[serde(skip)]
    pub max_body_mb: u64,
    /// First retry wait (full jitter below it, doubling per attempt).
    #[serde(skip)]
    pub backoff_base: Duration,
    /// Largest retry wait.
    #[serde(skip)]
    pub backoff_cap: Duration,
    /// `erros_scraps.log`: one block per error.
    #[serde(skip)]
    pub error_log: PathBuf,
    /// The Prometheus textfile written at the end of every run, if any.
    #[serde(skip)]
    pub metrics_file: Option<PathBuf>,
    /// The pool's cap: PostgreSQL connections this process opens at most.
    #[serde(skip)]
    pub max_db_connections: u32,
    /// Bytes of payload a writer batch holds at most, besides its
    /// `batch_export` rows; `None` = no limit but the rows (set by
    /// `pipeline::tune` for a database across the network).
    #[serde(skip)]
    pub batch_bytes: Option<usize>,
    /// The database's measured round trip when it is across the network
    /// (`pipeline::tune`): writers then size their batches by their
    /// commit times. `None`: near, the settings stand as given.
    #[serde(skip)]
    pub db_round_trip: Option<Duration>,
}

impl Settings {
    /// Bytes a body may have after decompression: `max_body_mb`, but never
    /// more than the memory budget (`memory_mb`) holds.
    pub fn max_body(&self) -> usize {
        let mb = self.max_body_mb.min(self.memory_mb);
        usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// Flags over environment over file over defaults. The file's layer was
    /// checked at load (its errors name a line); flags and environment are
    /// checked here. The backoff and channel capacity come from the
    /// environment only.
    pub fn resolve(
        flags: Layer,
        env: &dyn Fn(&str) -> Option<String>,
        file: &Layer,
    ) -> Result<Settings> {
        let given = flags.over(Layer::from_env(env)?).over(file.clone());
        given
            .check()
            .map_err(|(key, why)| usage(format!("{key}: {why}")))?;
        let channel_capacity: Option<usize> = env_num(env, "ATLAS_CHANNEL_CAPACITY")?;
        let backoff_ms: Option<u64> = env_num(env, "ATLAS_BACKOFF_MS")?;
        let backoff_cap_ms: Option<u64> = env_num(env, "ATLAS_BACKOFF_CAP_MS")?;
        {
            use super::ranges::{self, check_count};
            check_count(
                "ATLAS_CHANNEL_CAPACITY",
                ranges::CHANNEL_CAPACITY,
                channel_capacity,
            )
            .and_then(|()| check_count("ATLAS_BACKOFF_MS", ranges::BACKOFF_MS, backoff_ms))
            .and_then(|()| check_count("ATLAS_BACKOFF_CAP_MS", ranges::BACKOFF_MS, backoff_cap_ms))
            .map_err(|(key, why)| usage(format!("{key}: {why}")))?;
        }
        let backoff_ms = backoff_ms.unwrap_or(DEFAULT_BACKOFF_MS);
        let backoff_cap_ms = backoff_cap_ms.unwrap_or(DEFAULT_BACKOFF_CAP_MS);
        Ok(Settings {
            retry_max: given.retry_max.unwrap_or(DEFAULT_RETRY_MAX),
            batch_export: given.batch_export.unwrap_or(DEFAULT_BATCH_EXPORT),
            threads: given.threads.unwrap_or(DEFAULT_THREADS),
            writers: given.writers.unwrap_or(DEFAULT_WRITERS),
            lease: Duration::from_secs(given.lease_secs.unwrap_or(DEFAULT_LEASE_SECS)),
            timeout: Duration::from_secs(given.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            progress: Duration::from_secs_f64(given.progress_secs.unwrap_or(DEFAULT_PROGRESS_SECS)),
            channel_capacity,
            memory_mb: given.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
            max_body_mb: given.max_body_mb.unwrap_or(DEFAULT_MAX_BODY_MB),
            backoff_base: Duration::from_millis(backoff_ms),
            backoff_cap: Duration::from_millis(backoff_cap_ms.max(backoff_ms)),
            error_log: given
                .error_log
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ERROR_LOG)),
            metrics_file: given.metrics_file,
            max_db_connections: given
                .max_db_connections
                .unwrap_or(DEFAULT_MAX_DB_CONNECTIONS),
            batch_bytes: None,
            db_round_trip: None,
        })
    }
}

fn env_num<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Option<T>> {
    match env(var).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            usage(format!(
                "environment variable {var}='{v}' is not a valid number"
            ))
        }),
    }
}

/// The config path: flag, then `ATLAS_CONFIG`, then `./atlas.json`.
/// The bool says whether it was asked for explicitly (then it must exist).
pub fn config_path(flag: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> (PathBuf, bool) {
    if let Some(p) = flag {
        return (p.to_path_buf(), true);
    }
    if let Some(p) = env("ATLAS_CONFIG").filter(|s| !s.is_empty()) {
        return (PathBuf::from(p), true);
    }
    (PathBuf::from("atlas.json"), false)
}

/// The database URL: flag, `ATLAS_DATABASE_URL`, `DATABASE_URL`, then the file.
pub fn database_url(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<&str>,
) -> Result<String> {
    flag.map(str::to_string)
        .or_else(|| env("ATLAS_DATABASE_URL").filter(|s| !s.is_empty()))
        .or_else(|| env("DATABASE_URL").filter(|s| !s.is_empty()))
        .or_else(|| file.map(str::to_string))
        .ok_or_else(|| {
            usage("no database URL: give --database-url, set ATLAS_DATABASE_URL or DATABASE_URL, or put database_url in atlas.json")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let file = Layer {
            threads: Some(3),
            writers: Some(3),
            batch_export: Some(300),
            error_log: Some("file.log".into()),
            ..Default::default()
        };
        let env = vars(&[
            ("ATLAS_WRITERS", "5"),
            ("ATLAS_BATCH_EXPORT", "700"),
            ("ATLAS_ERROR_LOG", "env.log"),
        ]);
        let flags = Layer {
            batch_export: Some(900),
            ..Default::default()
        };
        let s = Settings::resolve(flags, &env, &file).unwrap();
        assert_eq!(s.batch_export, 900, "flag wins");
        assert_eq!(s.writers, 5, "env over file");
        assert_eq!(s.threads, 3, "file over default");
        assert_eq!(s.retry_max, DEFAULT_RETRY_MAX);
        assert_eq!(s.error_log, PathBuf::from("env.log"));
        assert_eq!(s.lease, Duration::from_secs(DEFAULT_LEASE_SECS));
        let flags = Layer {
            error_log: Some("flag.log".into()),
            ..Default::default()
        };
        let s = Settings::resolve(flags, &|_| None, &file).unwrap();
        assert_eq!(s.error_log, PathBuf::from("flag.log"));
        let s = Settings::resolve(Layer::default(), &|_| None, &Layer::default()).unwrap();
        assert_eq!(s.error_log, PathBuf::from(DEFAULT_ERROR_LOG));
        assert_eq!(s.threads, DEFAULT_THREADS);
    }

    #[test]
    fn bad_values_are_refused_even_when_overridden() {
        let file = Layer::default();
        let bad = vars(&[("ATLAS_THREADS", "muitos")]);
        let flags = Layer {
            threads: Some(4),
            ..Default::default()
        };
        let e = Settings::resolve(flags, &bad, &file).unwrap_err();
        assert!(format!("{e}").contains("ATLAS_THREADS"), "{e}");
        let zero = Layer {
            threads: Some(0),
            ..Default::default()
        };
        let e = Settings::resolve(zero, &|_| None, &file).unwrap_err();
        assert_eq!(format!("{e}"), "threads: must be between 1 and 512");
        let e = Settings::resolve(
            Layer::default(),
            &vars(&[("ATLAS_CHANNEL_CAPACITY", "0")]),
            &file,
        )
        .unwrap_err();
        assert!(format!("{e}").contains("ATLAS_CHANNEL_CAPACITY"), "{e}");
    }

    #[test]
    fn ranges_name_the_first_bad_key() {
        let check = |l: Layer| l.check().map_err(|(k, why)| format!("{k}: {why}"));
        assert_eq!(check(Layer::default()), Ok(()));
        let l = Layer {
            writers: Some(65),
            lease_secs: Some(0),
            ..Default::default()
        };
        assert_eq!(check(l), Err("writers: must be between 1 and 64".into()));
        let l = Layer {
            lease_secs: Some(0),
            ..Default::default()
        };
        assert_eq!(
            check(l),
            Err("lease_secs: must be between 1 and 86400".into())
        );
        let l = Layer {
            threads: Some(512),
            progress_secs: Some(f64::NAN),
            ..Default::default()
        };
        assert_eq!(
            check(l),
            Err("progress_secs: must be between 0.1 and 3600".into())
        );
        let l = Layer {
            progress_secs: Some(1e300),
            ..Default::default()
        };
        assert_eq!(
            check(l),
            Err("progress_secs: must be between 0.1 and 3600".into())
        );
        let l = Layer {
            max_body_mb: Some(0),
            ..Default::default()
        };
        assert_eq!(
            check(l),
            Err("max_body_mb: must be between 1 and 65536".into())
        );
    }

    #[test]
    fn a_body_may_take_no_more_than_the_memory_budget() {
        let s = Settings::resolve(Layer::default(), &|_| None, &Layer::default()).unwrap();
        assert_eq!(s.max_body(), 64 << 20, "256 MiB asked, 64 MiB budget");
        let l = Layer {
            memory_mb: Some(512),
            ..Default::default()
        };
        let s = Settings::resolve(l, &|_| None, &Layer::default()).unwrap();
        assert_eq!(s.max_body(), 256 << 20);
        let env = vars(&[("ATLAS_MAX_BODY_MB", "8")]);
        let s = Settings::resolve(Layer::default(), &env, &Layer::default()).unwrap();
        assert_eq!(s.max_body(), 8 << 20);
        let env = vars(&[("ATLAS_BACKOFF_MS", "1e9")]);
        assert!(Settings::resolve(Layer::default(), &env, &Layer::default()).is_err());
        let env = vars(&[("ATLAS_BACKOFF_CAP_MS", "3600001")]);
        let e = Settings::resolve(Layer::default(), &env, &Layer::default()).unwrap_err();
        assert_eq!(
            format!("{e}"),
            "ATLAS_BACKOFF_CAP_MS: must be between 1 and 3600000"
        );
    }

    #[test]
    fn environment_only_knobs() {
        let env = vars(&[
            ("ATLAS_BACKOFF_MS", "50"),
            ("ATLAS_BACKOFF_CAP_MS", "20"),
            ("ATLAS_CHANNEL_CAPACITY", " 3 "),
            ("ATLAS_PROGRESS_SECS", "0.5"),
            ("ATLAS_LEASE_SECS", ""),
        ]);
        let s = Settings::resolve(Layer::default(), &env, &Layer::default()).unwrap();
        assert_eq!(s.backoff_base, Duration::from_millis(50));
        assert_eq!(
            s.backoff_cap,
            Duration::from_millis(50),
            "cap at least the base"
        );
        assert_eq!(s.channel_capacity, Some(3));
        assert_eq!(s.progress, Duration::from_millis(500));
        assert_eq!(
            s.lease,
            Duration::from_secs(DEFAULT_LEASE_SECS),
            "empty = unset"
        );
    }

    #[test]
    fn json_shows_the_four_run_knobs_in_order() {
        let s = Settings::resolve(Layer::default(), &|_| None, &Layer::default()).unwrap();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"retry_max":5,"batch_export":2000,"threads":8,"writers":2}"#
        );
    }

    #[test]
    fn config_path_and_database_url_precedence() {
        let env = vars(&[("DATABASE_URL", "postgres://env/db"), ("ATLAS_CONFIG", "")]);
        let file = Some("postgres://atlas@db/atlas");
        assert_eq!(
            database_url(Some("postgres://flag/db"), &env, file).unwrap(),
            "postgres://flag/db"
        );
        assert_eq!(database_url(None, &env, file).unwrap(), "postgres://env/db");
        let both = vars(&[
            ("DATABASE_URL", "postgres://env/db"),
            ("ATLAS_DATABASE_URL", "postgres://atlas/db"),
        ]);
        assert_eq!(
            database_url(None, &both, file).unwrap(),
            "postgres://atlas/db"
        );
        assert_eq!(
            database_url(None, &|_| None, file).unwrap(),
            "postgres://atlas@db/atlas"
        );
        assert!(database_url(None, &|_| None, None).is_err());
        assert_eq!(
            config_path(None, &env),
            (PathBuf::from("atlas.json"), false)
        );
        let env = vars(&[("ATLAS_CONFIG", "/etc/atlas.json")]);
        assert_eq!(
            config_path(None, &env),
            (PathBuf::from("/etc/atlas.json"), true)
        );
        assert_eq!(
            config_path(Some(Path::new("x.json")), &env),
            (PathBuf::from("x.json"), true)
        );
    }
}
