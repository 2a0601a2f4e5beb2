//! Exit codes (SPEC §2) and the error kinds that choose them.
//!
//! Errors travel as `anyhow::Error`; the two kinds a caller must tell apart
//! (bad input, broken environment) are marker types found anywhere in the chain.

use std::fmt;

/// What the process reports to its scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every slice loaded.
    Ok,
    /// Some slices failed; what was committed stays, a rerun resumes.
    Failed,
    /// Bad usage, config or input; nothing was changed.
    Usage,
    /// Database unreachable or credentials refused by the API.
    Environment,
    /// Stopped by Ctrl-C after flushing what was in flight.
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Environment => 3,
            Exit::Interrupted => 130,
        }
    }

    fn severity(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Environment => 3,
            Exit::Interrupted => 4,
        }
    }

    /// Combines the outcomes of several workers: the most severe wins.
    pub fn merge(self, other: Exit) -> Exit {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

/// Bad usage, config or input: exit 2, and nothing was changed.
#[derive(Debug)]
pub struct UsageError(pub String);

/// The environment failed (database, credentials): exit 3.
#[derive(Debug)]
pub struct EnvError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for EnvError {}

/// Shorthand for a bad-input error.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// Shorthand for an environment error.
pub fn env_error(msg: impl Into<String>) -> anyhow::Error {
    EnvError(msg.into()).into()
}

/// The exit code an error that ended the command maps to.
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return Exit::Usage;
        }
        if cause.is::<EnvError>()
            || cause.is::<postgres::Error>()
            || cause.is::<r2d2::Error>()
            || cause.is::<std::io::Error>()
        {
            return Exit::Environment;
        }
    }
    Exit::Failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn merge_keeps_the_most_severe() {
        assert_eq!(Exit::Ok.merge(Exit::Failed), Exit::Failed);
        assert_eq!(Exit::Failed.merge(Exit::Ok), Exit::Failed);
        assert_eq!(Exit::Failed.merge(Exit::Environment), Exit::Environment);
        assert_eq!(
            Exit::Environment.merge(Exit::Interrupted),
            Exit::Interrupted
        );
        assert_eq!(Exit::Interrupted.merge(Exit::Failed), Exit::Interrupted);
        assert_eq!(Exit::Ok.merge(Exit::Ok), Exit::Ok);
    }

    #[test]
    fn classify_finds_markers_under_context() {
        let e = Err::<(), _>(usage("bad date"))
            .context("scrap create")
            .unwrap_err();
        assert_eq!(classify(&e), Exit::Usage);
        let e = Err::<(), _>(env_error("db down"))
            .context("run")
            .unwrap_err();
        assert_eq!(classify(&e), Exit::Environment);
        assert_eq!(classify(&anyhow::anyhow!("other")), Exit::Failed);
        assert_eq!(Exit::Interrupted.code(), 130);
    }
}
