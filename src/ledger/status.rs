//! The statuses of slices and runs as enums, each variant next to the TEXT
//! the ledger stores for it: the one place where the two are mapped
//! (`as_str` to bind, `FromStr` to read, `Display` to show).

use anyhow::Result;

/// An enum stored as TEXT, each variant with its text.
macro_rules! sql_text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = anyhow::Error;

            fn from_str(s: &str) -> Result<$name> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| anyhow::anyhow!("unknown {} '{s}'", stringify!($name)))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

sql_text_enum! {
    /// Where a slice stands (`atlas.slices.status`). A scrap's status, in
    /// `scrap list`, is the one its slices add up to, in the same words.
    SliceStatus {
        /// Not worked yet, or given back unfinished.
        Pending = "pending",
        /// Held by a worker under a lease.
        Running = "running",
        /// Every row committed.
        Done = "done",
        /// Gave up in its last attempt; a rerun takes it again.
        Failed = "failed",
        /// Every row committed, but it holds a day that had not ended (in
        /// the route's time zone, plus `settle_hours`) when it was loaded:
        /// the next sync fetches that day again.
        Open = "open",
    }
}

sql_text_enum! {
    /// How a run ended (`atlas.runs.status`).
    RunStatus {
        /// Started and not finished. A run whose process is found dead
        /// (same host, boot and PID namespace) is closed as `aborted`.
        Running = "running",
        /// Every slice of the scrap is done.
        Done = "done",
        /// Some slices failed.
        Failed = "failed",
        /// Stopped by a signal (SIGINT, SIGTERM, SIGHUP).
        Interrupted = "interrupted",
        /// Stopped by the environment (database lost, credentials refused),
        /// or its process died without closing it (kill -9, crash).
        Aborted = "aborted",
    }
}

/// The valid `--status` filters.
pub const STATUSES: &[&str] = &[
    SliceStatus::Pending.as_str(),
    SliceStatus::Running.as_str(),
    SliceStatus::Done.as_str(),
    SliceStatus::Failed.as_str(),
    SliceStatus::Open.as_str(),
];

/// A status read from the database.
pub(super) fn status_of<T: std::str::FromStr<Err = anyhow::Error>>(
    r: &postgres::Row,
    col: usize,
) -> Result<T> {
    r.get::<_, &str>(col).parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_their_sql_text_and_back() {
        for s in SliceStatus::ALL {
            assert_eq!(s.as_str().parse::<SliceStatus>().unwrap(), *s);
            assert_eq!(s.to_string(), s.as_str());
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
        }
        assert_eq!(STATUSES, ["pending", "running", "done", "failed", "open"]);
        assert_eq!(RunStatus::Aborted.as_str(), "aborted");
        assert!("Done".parse::<SliceStatus>().is_err(), "case matters");
        assert!("interrupted".parse::<SliceStatus>().is_err());
    }
}
