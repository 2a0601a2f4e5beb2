//! Build facts for `atlas --version`, `--json` and `atlas.runs.version`:
//! the commit (`git rev-parse --short=12 HEAD`) and the build date
//! (`SOURCE_DATE_EPOCH` when set, else the commit's date), as
//! `ATLAS_COMMIT` and `ATLAS_BUILD_DATE`; `unknown` when there is no git or
//! no repository of this package (a source tarball). Never the time of the
//! build, so two builds of one commit are the same binary. Dependency-free.
//!
//! Reruns only when the commit can have changed (HEAD, the branch's ref,
//! packed refs) or `SOURCE_DATE_EPOCH` did: not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let repo = Repo::of(&dir);
    let commit = repo
        .as_ref()
        .and_then(|r| r.git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| {
            repo.as_ref()
                .and_then(|r| r.git(&["show", "-s", "--format=%ct", "HEAD"]))
                .and_then(|s| s.parse().ok())
        });
    let date = epoch.map(utc_day).unwrap_or_else(|| "unknown".into());
    if let Some(r) = &repo {
        for f in r.watched() {
            println!("cargo:rerun-if-changed={}", f.display());
        }
    }
    println!("cargo:rustc-env=ATLAS_COMMIT={commit}");
    println!("cargo:rustc-env=ATLAS_BUILD_DATE={date}");
}

/// The git repository whose top is this package's directory (not one it
/// merely sits inside, as an unpacked tarball under another checkout).
struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn of(dir: &Path) -> Option<Repo> {
        let repo = Repo {
            dir: dir.to_path_buf(),
        };
        let top = PathBuf::from(repo.git(&["rev-parse", "--show-toplevel"])?);
        let same = match (top.canonicalize(), dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        same.then_some(repo)
    }

    /// `git ARGS` in the package's directory: its trimmed stdout, if it succeeded.
    fn git(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    /// The files a new commit or checkout changes: HEAD and its reflog,
    /// the branch's ref and packed-refs (a worktree's HEAD is in its own git
    /// dir, refs in the common one; a commit on a packed branch writes a
    /// loose ref that did not exist, and is seen by the reflog). Only files
    /// that exist: cargo reruns a build script on every build while a
    /// watched file is missing.
    fn watched(&self) -> Vec<PathBuf> {
        let path = |args: &[&str]| self.git(args).map(|p| self.dir.join(p));
        let mut files = Vec::new();
        if let Some(git_dir) = path(&["rev-parse", "--git-dir"]) {
            files.push(git_dir.join("HEAD"));
            files.push(git_dir.join("logs").join("HEAD"));
        }
        if let Some(common) = path(&["rev-parse", "--git-common-dir"]) {
            files.push(common.join("packed-refs"));
            if let Some(r) = self.git(&["symbolic-ref", "-q", "HEAD"]) {
                files.push(common.join(r));
            }
        }
        files.retain(|f| f.is_file());
        files
    }
}

/// `YYYY-MM-DD` of a Unix time, in UTC (days to civil date, after Howard
/// Hinnant's `civil_from_days`).
fn utc_day(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
