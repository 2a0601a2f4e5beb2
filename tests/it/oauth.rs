//! OAuth2 (src/oauth.rs, src/seal.rs): the sample API's token endpoint with
//! rotating refresh tokens and access tokens that expire within a second or
//! two. Several real `atlas` processes share one client's tokens through the
//! control schema: exact tables, no refresh token used twice, tokens stored
//! sealed, a revoked refresh token stops the run (exit 3) saying how to seed
//! a new one, and no key is exit 2 naming `ATLAS_TOKEN_KEY`.

use crate::util::{assert_exact, create_args, Api, Atlas, TestDb};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

pub(crate) const KEY: &str = "4f1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff0";
pub(crate) const CLIENT_SECRET: &str = "segredo-do-cliente-8841";
pub(crate) const FIRST_REFRESH: &str = "rt-inicial-5150";

/// The sample API in OAuth2 mode, logging token requests to `log`.
pub(crate) fn api(log: &Path, ttl_secs: &str, extra: &[&str]) -> Api {
    let mut args = vec![
        "--per-day",
        "30",
        "--page-size",
        "10",
        "--oauth",
        "app-2151:segredo-do-cliente-8841",
        "--oauth-refresh-token",
        FIRST_REFRESH,
        "--oauth-ttl-secs",
        ttl_secs,
        "--oauth-log",
        log.to_str().expect("utf-8 path"),
    ];
    args.extend(extra);
    Api::start(&args)
}

/// Client 2151 from `tests/fixtures/configs/oauth2.json` pointed at `api`,
/// with `grant` (the fixture's is `refresh_token`), its secrets in the
/// environment and the token key set.
fn atlas(db: &TestDb, api: &Api, grant: &str) -> Atlas {
    atlas_with(db, api, grant, |_| {})
}

/// As `atlas`, the client's `auth` object edited by `edit` first.
pub(crate) fn atlas_with(
    db: &TestDb,
    api: &Api,
    grant: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Atlas {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/configs/oauth2.json"
    ))
    .expect("oauth2 fixture")
    .replace("http://127.0.0.1:8080", &api.url);
    let mut cfg: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    let auth = &mut cfg["clients"]["2151"]["auth"];
    if grant != "refresh_token" {
        auth["grant"] = grant.into();
        auth.as_object_mut()
            .expect("auth object")
            .remove("refresh_token_env");
    }
    edit(auth);
    let mut a = Atlas::new(db, &cfg);
    a.env.extend([
        ("ATLAS_OAUTH_ID_2151".into(), "app-2151".into()),
        ("ATLAS_OAUTH_SECRET_2151".into(), CLIENT_SECRET.into()),
        ("ATLAS_OAUTH_RT_2151".into(), FIRST_REFRESH.into()),
        ("ATLAS_TOKEN_KEY".into(), KEY.into()),
    ]);
    a
}

/// The token log's lines as (grant, refresh token used, outcome).
pub(crate) fn token_log(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 4, "token log line {l:?}");
            (f[1].to_string(), f[2].to_string(), f[3].to_string())
        })
        .collect()
}

/// No refresh token was used twice, and every request was granted.
pub(crate) fn assert_no_reuse(log: &[(String, String, String)]) {
    let used: Vec<&str> = log
        .iter()
        .filter(|(g, _, _)| g == "refresh_token")
        .map(|(_, r, _)| r.as_str())
        .collect();
    let distinct: HashSet<&str> = used.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        used.len(),
        "a refresh token was used twice: {log:?}"
    );
    assert!(log.iter().all(|(_, _, o)| o == "ok"), "{log:?}");
}

/// No secret in clear in `texts` or in the control schema's token row.
pub(crate) fn assert_secrets_hidden(db: &TestDb, texts: &[&str], secrets: &[&str]) {
    for s in secrets {
        for t in texts {
            assert!(!t.contains(s), "secret {s} in output:\n{t}");
        }
        let in_db = db.i64(&format!(
            "SELECT count(*) FROM atlas.oauth_tokens WHERE \
             position(convert_to('{s}', 'UTF8') IN coalesce(access_token, ''::bytea) || coalesce(refresh_token, ''::bytea)) > 0 \
             OR coalesce(updated_by, '') LIKE '%{s}%'"
        ));
        assert_eq!(in_db, 0, "secret {s} in clear in atlas.oauth_tokens");
    }
}

#[test]
fn three_processes_share_rotating_refresh_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tokens.log");
    // Access tokens live 1 s (renewed 0.25 s ahead): a run of several
    // seconds renews many times, from whichever process needs it first.
    let api = api(&log, "1", &["--latency-ms", "150"]);
    let db = TestDb::new("oauth_three");
    let a = atlas(&db, &api, "refresh_token");
    let id = a.create("pedidos", "2025-02-01", "2025-02-14");
    let children: Vec<_> = (0..3)
        .map(|i| {
            // One of them prints the --json summary (checked for secrets too).
            let mut args = vec!["scrap", "run", id.as_str(), "--threads", "2"];
            if i == 0 {
                args.push("--json");
            }
            a.command(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn atlas")
        })
        .collect();
    let mut outputs = Vec::new();
    for c in children {
        let out = c.wait_with_output().expect("wait atlas");
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(out.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{se}");
        outputs.push(so);
        outputs.push(se);
    }
    assert_exact(
        &db,
        api.expected("2025-02-01", "2025-02-14"),
        "three processes",
    );
    let entries = token_log(&log);
    assert_no_reuse(&entries);
    assert_eq!(
        entries[0].1, FIRST_REFRESH,
        "the configured token is the first used"
    );
    assert!(
        entries.len() >= 2,
        "the refresh token rotated during the run: {entries:?}"
    );
    assert_eq!(
        db.i64("SELECT generation FROM atlas.oauth_tokens WHERE client = '2151'"),
        entries.len() as i64,
        "one stored renewal per token request"
    );
    let errlog = std::fs::read_to_string(a.path("erros_scraps.log")).unwrap_or_default();
    let mut texts: Vec<&str> = outputs.iter().map(String::as_str).collect();
    texts.push(&errlog);
    let used: Vec<&str> = entries.iter().map(|(_, r, _)| r.as_str()).collect();
    let mut secrets = vec![CLIENT_SECRET, FIRST_REFRESH];
    secrets.extend(used);
    assert_secrets_hidden(&db, &texts, &secrets);
    // No token of any kind in clear in the store (the server's all start so).
    assert_secrets_hidden(&db, &[], &["rt-", "at-"]);
}

#[test]
fn a_revoked_refresh_token_stops_with_how_to_seed_a_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tokens.log");
    let api = api(&log, "3600", &[]);
    let db = TestDb::new("oauth_revoked");
    let a = atlas(&db, &api, "refresh_token");
    let id = a.create("pedidos", "2025-02-01", "2025-02-01");
    a.ok(&["scrap", "run", &id]);

    // The first refresh token was used and rotated: seeding it again is
    // seeding a revoked one.
    let mut seed = a
        .command(&["auth", "seed", "--client", "2151"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn seed");
    seed.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{FIRST_REFRESH}\n").as_bytes())
        .expect("write token");
    let out = seed.wait_with_output().expect("seed");
    let seed_out = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{seed_out}");
    assert!(seed_out.contains("2151"), "{seed_out}");

    let id2 = a.ok(&create_args("2151", "pedidos", "2025-02-02", "2025-02-02"));
    let r = a.expect(&["scrap", "run", id2.stdout.trim()], 3);
    assert!(
        r.stderr.contains("invalid_grant") && r.stderr.contains("atlas auth seed --client 2151"),
        "{}",
        r.stderr
    );
    let entries = token_log(&log);
    assert_eq!(
        entries.last().map(|e| (e.1.as_str(), e.2.as_str())),
        Some((FIRST_REFRESH, "reused")),
        "{entries:?}"
    );
    // Refused before the run started: no run row, no request for data.
    assert_eq!(db.i64("SELECT count(*) FROM atlas.runs"), 1);
    assert_secrets_hidden(
        &db,
        &[&r.stdout, &r.stderr, &seed_out],
        &[CLIENT_SECRET, FIRST_REFRESH],
    );
    // The seed from argv is not even possible: only stdin.
    let r = a.expect(&["auth", "seed", "--client", "2151", FIRST_REFRESH], 2);
    assert!(!r.stderr.is_empty());
}

#[test]
fn client_credentials_load_exactly_and_a_401_renews_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tokens.log");
    let api = api(&log, "3600", &[]);
    let db = TestDb::new("oauth_cc");
    let a = atlas(&db, &api, "client_credentials");
    let id = a.create("pedidos", "2025-02-01", "2025-02-05");
    let r = a.ok(&["scrap", "run", &id, "--threads", "4"]);
    assert_exact(
        &db,
        api.expected("2025-02-01", "2025-02-05"),
        "client_credentials",
    );
    assert_eq!(
        token_log(&log),
        vec![("client_credentials".into(), "-".into(), "ok".into())],
        "one token for the whole run"
    );

    // The provider revokes every access token: the stored one is still
    // live by its expiry, so the next run meets a 401, renews once, goes on.
    let revoked = ureq::post(&format!("{}/_oauth/revoke", api.url))
        .send_empty()
        .expect("revoke");
    assert_eq!(revoked.status().as_u16(), 200);
    let id2 = a.ok(&create_args("2151", "pedidos", "2025-02-06", "2025-02-06"));
    let r2 = a.ok(&["scrap", "run", id2.stdout.trim(), "--threads", "1"]);
    assert_exact(
        &db,
        api.expected("2025-02-01", "2025-02-06"),
        "after the 401",
    );
    let entries = token_log(&log);
    assert_eq!(entries.len(), 2, "one renewal after the 401: {entries:?}");
    assert_no_reuse(&entries);
    assert_secrets_hidden(
        &db,
        &[&r.stdout, &r.stderr, &r2.stdout, &r2.stderr],
        &[CLIENT_SECRET],
    );
    assert_secrets_hidden(&db, &[], &["at-"]);
}

#[test]
fn no_token_key_is_exit_2_naming_it_and_a_wrong_key_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tokens.log");
    let api = api(&log, "3600", &[]);
    let db = TestDb::new("oauth_nokey");
    let mut a = atlas(&db, &api, "refresh_token");
    let id = a.create("pedidos", "2025-02-01", "2025-02-01");
    a.env.retain(|(k, _)| k != "ATLAS_TOKEN_KEY");
    let r = a.expect(&["scrap", "run", &id], 2);
    assert!(r.stderr.contains("ATLAS_TOKEN_KEY"), "{}", r.stderr);
    let r = a.expect(&["auth", "seed", "--client", "2151"], 2);
    assert!(r.stderr.contains("ATLAS_TOKEN_KEY"), "{}", r.stderr);
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.runs"),
        0,
        "nothing started"
    );
    assert!(token_log(&log).is_empty(), "no token requested");

    // Tokens stored under one key cannot be read with another: exit 2.
    a.env.push(("ATLAS_TOKEN_KEY".into(), KEY.into()));
    a.ok(&["scrap", "run", &id]);
    a.env.retain(|(k, _)| k != "ATLAS_TOKEN_KEY");
    a.env.push(("ATLAS_TOKEN_KEY".into(), "ab".repeat(32)));
    let id2 = a.ok(&create_args("2151", "pedidos", "2025-02-02", "2025-02-02"));
    let r = a.expect(&["scrap", "run", id2.stdout.trim()], 2);
    assert!(
        r.stderr.contains("cannot be decrypted") && r.stderr.contains("ATLAS_TOKEN_KEY"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&"ab".repeat(32)), "{}", r.stderr);
}

/// As Windows tools write them: the refresh token piped into `auth seed`
/// as UTF-16 with a BOM and CRLF (`type token.txt |` of a file PowerShell
/// 5.1 wrote with `>`), the key in `ATLAS_TOKEN_KEY_FILE` with a UTF-8 BOM
/// and CRLF. The API accepts the seeded token only if it arrived exact.
#[test]
fn a_seed_and_a_key_file_as_windows_writes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tokens.log");
    let api = api(&log, "3600", &[]);
    let db = TestDb::new("oauth_windows");
    let mut a = atlas(&db, &api, "refresh_token");
    // Only the seeded token is right: the configured one would be refused.
    a.env
        .retain(|(k, _)| k != "ATLAS_TOKEN_KEY" && k != "ATLAS_OAUTH_RT_2151");
    a.env
        .push(("ATLAS_OAUTH_RT_2151".into(), "rt-errado-0000".into()));
    let key_file = dir.path().join("token.key");
    std::fs::write(
        &key_file,
        [&[0xEF, 0xBB, 0xBF], format!("{KEY}\r\n").as_bytes()].concat(),
    )
    .expect("key file");
    a.env.push((
        "ATLAS_TOKEN_KEY_FILE".into(),
        key_file.to_str().expect("utf-8 path").into(),
    ));
    a.ok(&["init"]);

    let mut piped = vec![0xFF, 0xFE];
    piped.extend(
        format!("{FIRST_REFRESH}\r\n")
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    let mut seed = a
        .command(&["auth", "seed", "--client", "2151"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn seed");
    seed.stdin
        .take()
        .expect("stdin")
        .write_all(&piped)
        .expect("write token");
    let out = seed.wait_with_output().expect("seed");
    let seed_out = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{seed_out}");

    let id = a.create("pedidos", "2025-02-01", "2025-02-02");
    let r = a.ok(&["scrap", "run", &id]);
    assert_exact(&db, api.expected("2025-02-01", "2025-02-02"), "seeded");
    let entries = token_log(&log);
    assert_eq!(
        entries.first().map(|e| (e.1.as_str(), e.2.as_str())),
        Some((FIRST_REFRESH, "ok")),
        "the seeded token, without its \\r, was the one used: {entries:?}"
    );
    assert_secrets_hidden(
        &db,
        &[&r.stdout, &r.stderr, &seed_out],
        &[CLIENT_SECRET, FIRST_REFRESH],
    );
}
