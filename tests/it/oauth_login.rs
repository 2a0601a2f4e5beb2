//! OAuth2 client authentication and `atlas auth login` (src/oauth/): the
//! sample API's token endpoint made Basic-only or body-only, and its
//! authorization endpoint redirecting to the loopback listener of a real
//! `atlas auth login` (the test plays the browser), or the redirected URL
//! pasted on stdin. Each login then loads a scrap exactly; refused logins
//! exit 3 and store nothing; URLs with credentials are refused at load; no
//! secret in any output or in the database.

use crate::oauth::{
    api, assert_no_reuse, assert_secrets_hidden, atlas_with, token_log, CLIENT_SECRET,
    FIRST_REFRESH, KEY,
};
use crate::util::{assert_exact, database_text, Api, Atlas, Run, TestDb};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Client 2151 set up for `auth login` against `api`: no configured refresh
/// token (the login gives the first), its authorization endpoint, a
/// loopback redirect_uri, and `extra` keys.
fn login_client(db: &TestDb, api: &Api, extra: Value) -> Atlas {
    let authorize = format!("{}/oauth/authorize", api.url);
    let redirect = format!("http://127.0.0.1:{}/callback", free_port());
    let a = atlas_with(db, api, "refresh_token", |auth| {
        let o = auth.as_object_mut().expect("auth object");
        o.remove("refresh_token_env");
        o.insert("authorize_url".into(), authorize.into());
        o.insert("redirect_uri".into(), redirect.into());
        for (k, v) in extra.as_object().expect("extra keys") {
            o.insert(k.clone(), v.clone());
        }
    });
    a.ok(&["init"]);
    a
}

/// `atlas auth login` running, its first stdout line (the URL to open) read.
struct Login {
    child: Child,
    stdout: BufReader<ChildStdout>,
    url: String,
}

impl Login {
    fn start(a: &Atlas, extra: &[&str]) -> Login {
        let mut args = vec!["auth", "login", "--client", "2151"];
        args.extend(extra);
        let mut child = a
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn atlas auth login");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut url = String::new();
        stdout.read_line(&mut url).expect("the URL line");
        let login = Login {
            child,
            stdout,
            url: url.trim().to_string(),
        };
        if login.url.is_empty() {
            let out = login.finish();
            panic!("no URL printed (exit {}):\n{}", out.code, out.stderr);
        }
        login
    }

    fn param(&self, name: &str) -> Option<String> {
        url::Url::parse(&self.url)
            .unwrap_or_else(|e| panic!("not a URL ({e}): {:?}", self.url))
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn paste(&mut self, text: &str) {
        let mut stdin = self.child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("paste");
    }

    /// Waits for the end (with a deadline); stdout holds the URL line too.
    fn finish(mut self) -> Run {
        let end = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("atlas auth login did not finish");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("stdout");
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .expect("stderr");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: format!("{}\n{rest}", self.url),
            stderr,
        }
    }
}

/// The browser: opens `url` at the authorization server, which answers a
/// redirect; returns where to.
fn authorize(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .build()
        .into();
    let r = agent.get(url).call().expect("GET the authorization URL");
    assert_eq!(
        r.status().as_u16(),
        302,
        "the authorization server redirects"
    );
    r.headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_string()
}

/// The browser follows the redirect to atlas' listener: (status, page).
fn follow(location: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(location).call().expect("GET the redirect_uri");
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().expect("page"))
}

fn query_value(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .expect("URL")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// No token, code or refresh token of the sample API (`at-N-…`, `rt-N-…`,
/// `ac-N-…`) in `text`.
fn assert_no_api_token(text: &str, what: &str) {
    for prefix in ["at-", "rt-", "ac-"] {
        for (i, _) in text.match_indices(prefix) {
            let next = text[i + prefix.len()..].chars().next();
            assert!(
                !next.is_some_and(|c| c.is_ascii_digit()),
                "a token {prefix}… in {what}:\n{text}"
            );
        }
    }
}

fn tokens_stored(db: &TestDb) -> i64 {
    db.i64(
        "SELECT count(*) FROM atlas.oauth_tokens \
         WHERE access_token IS NOT NULL OR refresh_token IS NOT NULL",
    )
}

fn create(a: &Atlas, from: &str, to: &str) -> String {
    let r = a.ok(&[
        "scrap", "create", "--client", "2151", "--route", "pedidos", "--from", from, "--to", to,
    ]);
    r.stdout.trim().to_string()
}

/// Everything atlas printed or logged, and the database, free of secrets.
fn assert_all_hidden(db: &TestDb, a: &Atlas, runs: &[&Run], secrets: &[&str]) {
    let errlog = std::fs::read_to_string(a.path("erros_scraps.log")).unwrap_or_default();
    let mut texts: Vec<&str> = runs
        .iter()
        .flat_map(|r| [r.stdout.as_str(), r.stderr.as_str()])
        .collect();
    texts.push(&errlog);
    let dump = database_text(db);
    texts.push(&dump);
    let mut all = secrets.to_vec();
    all.extend([CLIENT_SECRET, KEY]);
    assert_secrets_hidden(db, &texts, &all);
    for t in &texts {
        assert_no_api_token(t, "output, error log or database");
    }
}

#[test]
fn basic_and_body_client_auth_each_load_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A Basic-only token endpoint (as Bling v3's) and the default client_auth.
    let log = dir.path().join("basic.log");
    let basic = api(&log, "3600", &["--oauth-client-auth", "basic"]);
    let db = TestDb::new("oauth_basic");
    let a = atlas_with(&db, &basic, "client_credentials", |_| {});
    let id = a.create("pedidos", "2025-02-01", "2025-02-03");
    let r = a.ok(&["scrap", "run", &id, "--json"]);
    assert_exact(
        &db,
        basic.expected("2025-02-01", "2025-02-03"),
        "client_auth basic (the default)",
    );
    assert_eq!(
        token_log(&log),
        [("client_credentials".into(), "-".into(), "ok".into())]
    );
    assert_all_hidden(&db, &a, &[&r], &[]);

    // The body against it: refused before anything is loaded, saying why.
    let db2 = TestDb::new("oauth_basic_body");
    let a2 = atlas_with(&db2, &basic, "client_credentials", |auth| {
        auth["client_auth"] = "body".into();
    });
    let id2 = a2.create("pedidos", "2025-02-01", "2025-02-01");
    let r2 = a2.expect(&["scrap", "run", &id2], 3);
    assert!(
        r2.stderr.contains("invalid_client") && r2.stderr.contains("client_auth"),
        "{}",
        r2.stderr
    );
    assert_all_hidden(&db2, &a2, &[&r2], &[]);

    // A body-only token endpoint and `"client_auth": "body"`, refresh grant.
    let log = dir.path().join("body.log");
    let body = api(&log, "3600", &["--oauth-client-auth", "body"]);
    let db3 = TestDb::new("oauth_body");
    let a3 = atlas_with(&db3, &body, "refresh_token", |auth| {
        auth["client_auth"] = "body".into();
    });
    let id3 = a3.create("pedidos", "2025-02-01", "2025-02-03");
    let r3 = a3.ok(&["scrap", "run", &id3]);
    assert_exact(
        &db3,
        body.expected("2025-02-01", "2025-02-03"),
        "client_auth body",
    );
    assert_no_reuse(&token_log(&log));
    // ... and Basic against it is refused.
    let db4 = TestDb::new("oauth_body_basic");
    let a4 = atlas_with(&db4, &body, "client_credentials", |_| {});
    let id4 = a4.create("pedidos", "2025-02-01", "2025-02-01");
    let r4 = a4.expect(&["scrap", "run", &id4], 3);
    assert!(r4.stderr.contains("invalid_client"), "{}", r4.stderr);
    assert_all_hidden(&db3, &a3, &[&r3], &[FIRST_REFRESH]);
    assert_all_hidden(&db4, &a4, &[&r4], &[]);
}

#[test]
fn login_by_the_loopback_redirect_then_a_run_loads_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tokens.log");
    // Access tokens live 1 s: the run renews with the refresh token the login stored.
    let api = api(
        &log,
        "1",
        &["--oauth-client-auth", "basic", "--latency-ms", "100"],
    );
    let db = TestDb::new("oauth_login");
    let a = login_client(&db, &api, json!({ "pkce": true, "scope": "pedidos.read" }));
    let login = Login::start(&a, &[]);
    assert!(
        login
            .url
            .starts_with(&format!("{}/oauth/authorize?", api.url)),
        "{}",
        login.url
    );
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", "app-2151"),
        ("scope", "pedidos.read"),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(login.param(k).as_deref(), Some(v), "{k} in {}", login.url);
    }
    let redirect = login.param("redirect_uri").expect("redirect_uri");
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    assert!(login.param("state").is_some_and(|s| s.len() >= 16));
    assert!(login.param("code_challenge").is_some());

    let location = authorize(&login.url);
    assert!(location.starts_with(&redirect), "{location}");
    let code = query_value(&location, "code");
    let (status, page) = follow(&location);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Autorização concluída: pode fechar esta janela."),
        "{page}"
    );
    let out = login.finish();
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("gravados"), "{}", out.stdout);
    assert_eq!(tokens_stored(&db), 1);

    let id = create(&a, "2025-02-01", "2025-02-10");
    let run = a.ok(&["scrap", "run", &id, "--threads", "2", "--json"]);
    assert_eq!(run.json()["status"], "done", "{}", run.stdout);
    assert_exact(
        &db,
        api.expected("2025-02-01", "2025-02-10"),
        "after auth login",
    );
    let entries = token_log(&log);
    assert_eq!(
        entries[..2],
        [
            ("authorize".into(), "-".into(), "ok".into()),
            ("authorization_code".into(), "-".into(), "ok".into()),
        ],
        "{entries:?}"
    );
    assert!(
        entries.len() > 2,
        "the run renewed with the stored refresh token: {entries:?}"
    );
    assert_no_reuse(&entries[2..]);
    let used: Vec<&str> = entries[2..].iter().map(|(_, r, _)| r.as_str()).collect();
    let mut secrets = vec![code.as_str()];
    secrets.extend(used);
    assert_all_hidden(&db, &a, &[&out, &run], &secrets);
}

#[test]
fn login_with_the_redirect_pasted_then_a_run_loads_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tokens.log");
    let api = api(&log, "3600", &["--oauth-client-auth", "basic"]);
    let db = TestDb::new("oauth_paste");
    let a = login_client(&db, &api, json!({}));
    let mut login = Login::start(&a, &["--paste"]);
    assert_eq!(
        login.param("code_challenge"),
        None,
        "pkce is off by default"
    );
    let location = authorize(&login.url);
    let code = query_value(&location, "code");
    // As pasted in a Windows console.
    login.paste(&format!("{location}\r\n"));
    let out = login.finish();
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(tokens_stored(&db), 1);

    let id = create(&a, "2025-02-01", "2025-02-03");
    let run = a.ok(&["scrap", "run", &id, "--json"]);
    assert_exact(
        &db,
        api.expected("2025-02-01", "2025-02-03"),
        "after a pasted login",
    );
    // The access token from the login served the whole run.
    assert_eq!(token_log(&log).len(), 2, "{:?}", token_log(&log));
    assert_all_hidden(&db, &a, &[&out, &run], &[&code]);
}

/// An `error=` redirect, a state that is not ours and no redirect at all
/// each end the login with exit 3, and nothing is stored.
#[test]
fn refused_logins_exit_3_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let case = |consent: &str, paste: bool| -> (Run, Option<(u16, String)>, Vec<String>) {
        let log = dir.path().join(format!("{consent}-{paste}.log"));
        let api = api(&log, "3600", &["--oauth-consent", consent]);
        let db = TestDb::new("oauth_refused");
        let a = login_client(&db, &api, json!({ "pkce": true }));
        let flags: &[&str] = if paste { &["--paste"] } else { &[] };
        let mut login = Login::start(&a, flags);
        let location = authorize(&login.url);
        let page = if paste {
            login.paste(&format!("{location}\n"));
            None
        } else {
            Some(follow(&location))
        };
        let out = login.finish();
        assert_eq!(tokens_stored(&db), 0, "{consent}: nothing stored");
        assert_all_hidden(&db, &a, &[&out], &[]);
        let grants = token_log(&log).into_iter().map(|e| e.0).collect();
        (out, page, grants)
    };
    for paste in [false, true] {
        let (out, page, grants) = case("deny", paste);
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert!(out.stderr.contains("error=access_denied"), "{}", out.stderr);
        if let Some((status, page)) = page {
            assert_eq!(status, 400);
            assert!(page.contains("Autorização não concluída"), "{page}");
        }
        assert_eq!(grants, ["authorize"], "no code was traded");

        let (out, _, grants) = case("wrong_state", paste);
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert!(out.stderr.contains("state"), "{}", out.stderr);
        assert_eq!(grants, ["authorize"], "the code was not traded");
    }

    // Nobody comes back.
    let log = dir.path().join("timeout.log");
    let api = api(&log, "3600", &[]);
    let db = TestDb::new("oauth_timeout");
    let a = login_client(&db, &api, json!({}));
    let started = Instant::now();
    let out = Login::start(&a, &["--timeout-secs", "1"]).finish();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("no redirect within 1 s"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(tokens_stored(&db), 0);

    // Usage: a client with no authorization endpoint, a bad timeout.
    let plain = atlas_with(&db, &api, "refresh_token", |_| {});
    let r = plain.expect(&["auth", "login", "--client", "2151"], 2);
    assert!(r.stderr.contains("authorize_url"), "{}", r.stderr);
    let r = a.expect(
        &["auth", "login", "--client", "2151", "--timeout-secs", "0"],
        2,
    );
    assert!(r.stderr.contains("--timeout-secs"), "{}", r.stderr);
    let help = a.ok(&["auth", "login", "--help"]);
    assert!(
        help.stdout.contains("--paste") && help.stdout.contains("--timeout-secs"),
        "{}",
        help.stdout
    );
}

/// `token_url` or `base_url` with `user:password@` is a config error (exit
/// 2) that never echoes it; a token endpoint that is down shows no secret.
#[test]
fn credentials_in_urls_are_refused_and_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("tokens.log");
    let api = api(&log, "3600", &[]);
    let db = TestDb::new("oauth_userinfo");
    let host = api.url.trim_start_matches("http://").to_string();
    let in_token_url = atlas_with(&db, &api, "refresh_token", |auth| {
        auth["token_url"] = format!("http://app-2151:{CLIENT_SECRET}@{host}/oauth/token").into();
    });
    let r = in_token_url.expect(&["clients"], 2);
    assert!(
        r.stderr.contains("clients.2151.auth.token_url")
            && r.stderr.contains("line")
            && r.stderr.contains("client_id_env/client_secret_env"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(CLIENT_SECRET) && !r.stdout.contains(CLIENT_SECRET));

    let in_base_url = Atlas::new(
        &db,
        &json!({
            "clients": { "2151": {
                "base_url": format!("http://app:{CLIENT_SECRET}@{host}/page") } },
            "routes": { "pedidos": crate::util::page_route() }
        }),
    );
    let r = in_base_url.expect(&["check", "--no-probe"], 2);
    assert!(
        r.stderr.contains("clients.2151.base_url") && r.stderr.contains("client_id_env"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(CLIENT_SECRET), "{}", r.stderr);

    // The token endpoint down: WARN lines and the error, no secret.
    let down = free_port();
    let a = atlas_with(&db, &api, "refresh_token", |auth| {
        auth["token_url"] = format!("http://127.0.0.1:{down}/oauth/token").into();
    });
    let id = a.create("pedidos", "2025-02-01", "2025-02-01");
    let r = a.expect(&["scrap", "run", &id, "--json"], 3);
    assert!(r.stderr.contains("token endpoint"), "{}", r.stderr);
    assert_all_hidden(&db, &a, &[&r], &[FIRST_REFRESH]);
    assert!(token_log(Path::new(&log)).is_empty());
}
