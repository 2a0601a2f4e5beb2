//! Issue 29 points 5 and 6: `atlas --version`, and `--json` answering with
//! exactly one object on stdout whatever happens (usage, config, schema,
//! database, a grant refused before the run), every object carrying the
//! build's `version`, which `atlas.runs.version` records too.

use crate::oauth;
use crate::util::{page_route, sync_args, Api, Atlas, Run, TestDb};
use serde_json::{json, Value};

/// An unreachable PostgreSQL (nothing listens on port 1), with a password
/// that must never be shown.
const DEAD_DB: &str = "postgres://atlas:pw-nunca-mostrada@127.0.0.1:1/x";

/// The build's version as `--json` gives it: `X.Y.Z` or `X.Y.Z+<commit>`.
fn is_version(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let (release, commit) = s.split_once('+').unwrap_or((s, ""));
    let parts: Vec<&str> = release.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && (commit.is_empty()
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// Exit `code`, and stdout exactly one JSON error object with that
/// `exit_code`, the build's version and an error naming `needle`.
fn json_error(r: &Run, code: i32, needle: &str, what: &str) -> Value {
    assert_eq!(
        r.code, code,
        "{what}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    assert_eq!(
        r.stdout.trim().lines().count(),
        1,
        "{what}: one line:\n{}",
        r.stdout
    );
    let j = r.json();
    assert_eq!(j["exit_code"], code, "{what}: {j}");
    assert_eq!(j["status"], "error", "{what}: {j}");
    assert!(is_version(&j["version"]), "{what}: {j}");
    let error = j["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error text: {j}"));
    assert!(
        error.contains(needle),
        "{what}: error should name {needle:?}: {j}"
    );
    // The text on stderr is kept as without --json.
    assert!(r.stderr.contains(needle), "{what}: stderr:\n{}", r.stderr);
    j
}

fn config(api_base: &str) -> Value {
    Atlas::config(api_base, json!({ "pedidos": page_route() }))
}

#[test]
fn version_prints_the_release_commit_and_build_date_and_help_lists_it() {
    let db = TestDb::new("version");
    let atlas = Atlas::new(&db, &config("http://127.0.0.1:9/x"));
    for flag in ["--version", "-V"] {
        let r = atlas.ok(&[flag]);
        let line = r.stdout.trim();
        let inner = line
            .strip_prefix(&format!("atlas {} (", env!("CARGO_PKG_VERSION")))
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{flag}: {line}"));
        let (commit, date) = inner.split_once(", ").expect("commit, date");
        assert!(
            commit == "unknown"
                || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
            "{line}"
        );
        assert!(
            date == "unknown" || chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
            "{line}"
        );
    }
    // Among global options, and as JSON.
    let j = atlas.ok(&["--plain", "--version", "--json"]).json();
    assert!(is_version(&j["version"]), "{j}");
    assert_eq!(j["release"], env!("CARGO_PKG_VERSION"), "{j}");
    let help = atlas.ok(&["--help"]).stdout;
    assert!(help.contains("--version"), "{help}");
    // Not a switch of a command: a usage error.
    atlas.expect(&["init", "--version"], 2);
}

#[test]
fn json_answers_usage_config_and_schema_errors_with_one_object() {
    let db = TestDb::new("json_usage");
    let atlas = Atlas::new(&db, &config("http://127.0.0.1:9/x"));
    // argh's own usage errors.
    let r = atlas.run(&["scrap", "run", "1", "--json", "--bogus"]);
    json_error(&r, 2, "--bogus", "unknown flag");
    let r = atlas.run(&["sync", "--json", "--lookback-days", "muitos"]);
    json_error(&r, 2, "lookback", "bad number");
    // A positional that is a URL with a password is masked in the object.
    let r = atlas.run(&["scrap", "run", "1", "--json", DEAD_DB]);
    let j = json_error(&r, 2, "***@127.0.0.1", "extra positional");
    assert!(
        !r.stdout.contains("pw-nunca") && !r.stderr.contains("pw-nunca"),
        "{j}"
    );
    // atlas's own usage errors.
    let r = atlas.run(&["sync", "--json"]);
    json_error(&r, 2, "--client", "sync without a pair");
    let r = atlas.run(&["scrap", "run", "abc", "--json"]);
    json_error(&r, 2, "abc", "bad scrap id");
    // Schema not initialised.
    let r = atlas.run(&["scrap", "run", "1", "--json"]);
    json_error(&r, 2, "atlas init", "no schema");
    let r = atlas.run(&["sync", "--all", "--json"]);
    json_error(&r, 2, "atlas init", "no schema, fleet");
    let r = atlas.run(&["verify", "--client", "2151", "--route", "pedidos", "--json"]);
    json_error(&r, 2, "does not exist", "verify without a table");
    // A config error.
    std::fs::write(atlas.path("bad.json"), r#"{"clients": {}, "rotas": {}}"#).expect("write");
    let r = atlas.run(&["--config", "bad.json", "sync", "--all", "--json"]);
    json_error(&r, 2, "rotas", "config error");
}

#[test]
fn json_answers_a_database_refused_with_one_object_and_no_password() {
    let db = TestDb::new("json_dbdown");
    let atlas = Atlas::new(&db, &config("http://127.0.0.1:9/x"));
    for args in [
        &["scrap", "run", "1", "--json"][..],
        &sync_args(&["--from", "2025-01-01", "--json"]),
        &["verify", "--client", "2151", "--route", "pedidos", "--json"],
    ] {
        let mut full = vec!["--database-url", DEAD_DB];
        full.extend_from_slice(args);
        let r = atlas.run(&full);
        json_error(&r, 3, "127.0.0.1:1", &format!("{args:?}"));
        assert!(
            !r.stdout.contains("pw-nunca") && !r.stderr.contains("pw-nunca"),
            "{args:?}: password shown:\n{}\n{}",
            r.stdout,
            r.stderr
        );
    }
}

#[test]
fn json_answers_a_grant_refused_before_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = oauth::api(&dir.path().join("tokens.log"), "3600", &[]);
    let db = TestDb::new("json_grant");
    let mut a = oauth::atlas_with(&db, &api, "refresh_token", |_| {});
    let wrong = "rt-que-o-servidor-nao-conhece-77";
    a.env.retain(|(k, _)| k != "ATLAS_OAUTH_RT_2151");
    a.env.push(("ATLAS_OAUTH_RT_2151".into(), wrong.into()));
    let id = a.create("pedidos", "2025-02-01", "2025-02-01");
    let r = a.run(&["scrap", "run", &id, "--json"]);
    json_error(&r, 3, "invalid_grant", "refused grant");
    let r2 = a.run(&sync_args(&["--from", "2025-02-01", "--json"]));
    json_error(&r2, 3, "invalid_grant", "refused grant, sync");
    for text in [&r.stdout, &r.stderr, &r2.stdout, &r2.stderr] {
        for secret in [wrong, oauth::CLIENT_SECRET] {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
    }
}

#[test]
fn every_json_object_and_the_runs_carry_the_version() {
    let api = Api::start(&["--per-day", "3"]);
    let db = TestDb::new("json_version");
    let atlas = Atlas::new(&db, &config(&format!("{}/page", api.url)));
    let id = atlas.create("pedidos", "2025-03-01", "2025-03-02");
    let run = atlas.ok(&["scrap", "run", &id, "--json"]).json();
    assert!(is_version(&run["version"]), "{run}");
    assert_eq!(
        db.strings("SELECT coalesce(version, '(null)') FROM atlas.runs"),
        vec![run["version"].as_str().unwrap_or_default().to_string()]
    );
    let sync = atlas
        .ok(&sync_args(&["--until", "2025-03-03", "--json"]))
        .json();
    assert_eq!(sync["version"], run["version"], "{sync}");
    let idle = atlas
        .ok(&sync_args(&["--until", "2025-03-03", "--json"]))
        .json();
    assert_eq!(idle["status"], "up_to_date", "{idle}");
    assert_eq!(idle["version"], run["version"], "{idle}");
    let fleet = atlas
        .ok(&["sync", "--all", "--until", "2025-03-03", "--json"])
        .json();
    assert_eq!(fleet["version"], run["version"], "{fleet}");
    let verify = atlas
        .ok(&["verify", "--client", "2151", "--route", "pedidos", "--json"])
        .json();
    assert_eq!(verify["version"], run["version"], "{verify}");
}
