//! Which build this is: the release, the commit and the build date (from
//! `build.rs`), as `atlas --version` prints them and as `--json` and
//! `atlas.runs.version` record them.

/// The release (`Cargo.toml`).
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// The commit built (12 hex digits), or `unknown` (built outside git).
pub const COMMIT: &str = env!("ATLAS_COMMIT");

/// The build date (`YYYY-MM-DD`: `SOURCE_DATE_EPOCH`, else the commit's
/// date), or `unknown`.
pub const BUILD_DATE: &str = env!("ATLAS_BUILD_DATE");

/// The version as `--json` and `atlas.runs.version` give it: the release
/// with the commit as SemVer build metadata (`0.1.0+1a2b3c4d5e6f`), or the
/// release alone when the commit is unknown.
pub fn version() -> String {
    tagged(RELEASE, COMMIT)
}

/// `atlas 0.1.0 (1a2b3c4d5e6f, 2025-06-01)`: the line of `atlas --version`.
pub fn line() -> String {
    format!("atlas {RELEASE} ({COMMIT}, {BUILD_DATE})")
}

fn tagged(release: &str, commit: &str) -> String {
    if commit == "unknown" {
        release.to_string()
    } else {
        format!("{release}+{commit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_carries_the_commit_as_build_metadata() {
        assert_eq!(tagged("0.1.0", "1a2b3c4d5e6f"), "0.1.0+1a2b3c4d5e6f");
        assert_eq!(tagged("0.1.0", "unknown"), "0.1.0");
        assert!(
            line().starts_with(&format!("atlas {RELEASE} (")),
            "{}",
            line()
        );
        assert!(version().starts_with(RELEASE));
        // Built from this repository: a commit, and a real day.
        assert!(COMMIT == "unknown" || COMMIT.len() == 12, "{COMMIT}");
        assert!(
            BUILD_DATE == "unknown"
                || chrono::NaiveDate::parse_from_str(BUILD_DATE, "%Y-%m-%d").is_ok(),
            "{BUILD_DATE}"
        );
    }
}
