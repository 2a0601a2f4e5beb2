//! Test harness: a throwaway database per test, the sample API on loopback,
//! and the real `atlas` binary run with a config written per test.

#![allow(dead_code)]

use postgres::{Client, NoTls};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The server the suite runs against (scripts/test.sh exports DATABASE_URL).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_db(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL is a URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// A database URL nobody answers at (port 1): the "database unreachable" case.
pub const DEAD_DB: &str = "postgres://postgres@127.0.0.1:1/x";

/// A database created for one test and dropped when it ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        let name = format!(
            "atlas_t_{}_{}_{}",
            tag,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = Client::connect(&server_url(), NoTls).expect("test PostgreSQL reachable");
        // Two statements, two implicit transactions: DROP/CREATE DATABASE refuse a block.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop old test database");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        TestDb {
            url: with_db(&server_url(), &name),
            name,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect to test database")
    }

    pub fn i64(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).expect(sql).get(0)
    }

    pub fn strings(&self, sql: &str) -> Vec<String> {
        self.client()
            .query(sql, &[])
            .expect(sql)
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&server_url(), NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// What a test server started with port 0 says first: `listening on ADDR`.
pub fn listen_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read listen line");
    line.trim()
        .strip_prefix("listening on ")
        .expect("listen line")
        .to_string()
}

/// `atlas-sample-api` on a free loopback port, killed on drop.
pub struct Api {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Api {
    pub fn start(args: &[&str]) -> Api {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atlas-sample-api"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start atlas-sample-api");
        let url = listen_line(&mut child);
        Api { child, url }
    }

    /// 10 records a day in pages of 5, served only with `Authorization:
    /// Bearer {token}`.
    pub fn bearer(token: &str) -> Api {
        let auth = format!("bearer:{token}");
        Api::start(&["--per-day", "10", "--page-size", "5", "--auth", &auth])
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let mut r = ureq::get(&format!("{}{path}", self.url))
            .call()
            .expect("GET");
        serde_json::from_slice(&r.body_mut().read_to_vec().expect("body")).expect("json")
    }

    /// Records the API holds for an inclusive day range.
    pub fn expected(&self, from: &str, to: &str) -> i64 {
        self.get(&format!("/_expected?data_inicial={from}&data_final={to}"))["count"]
            .as_i64()
            .expect("count")
    }

    pub fn requests(&self) -> i64 {
        self.get("/_stats")["requests"].as_i64().expect("requests")
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The standard route of the tests: page pagination over `/page/pedidos`.
pub fn page_route() -> serde_json::Value {
    serde_json::json!({
        "path": "/pedidos",
        "records": "/data",
        "date_params": { "start": "data_inicial", "end": "data_final", "format": "%Y-%m-%d" },
        "slice_days": 1,
        "pagination": { "type": "page", "param": "page", "start": 1, "size_param": "por_pagina", "size": 50, "total_pages": "/total_paginas" },
        "date_field": "/data_pedido"
    })
}

/// `page_route()` with `size` records a page.
pub fn sized_route(size: u64) -> serde_json::Value {
    let mut r = page_route();
    r["pagination"]["size"] = serde_json::json!(size);
    r
}

/// `page_route()` at `path` with 5 records a page: one of several routes of
/// one sample API.
pub fn route_at(path: &str) -> serde_json::Value {
    let mut r = sized_route(5);
    r["path"] = serde_json::json!(path);
    r
}

/// `page_route()` paged by `pagination` instead.
pub fn paged_route(pagination: serde_json::Value) -> serde_json::Value {
    let mut r = page_route();
    r["pagination"] = pagination;
    r
}

/// One sample API, one database and one atlas working directory whose
/// config has the route `pedidos` at `{api}/{kind}` (the sample API's
/// `page`, `offset`... endpoints). Test modules add their own methods in an
/// `impl Case` of their own.
pub struct Case {
    pub api: Api,
    pub db: TestDb,
    pub atlas: Atlas,
}

impl Case {
    pub fn new(tag: &str, api_args: &[&str], kind: &str, route: serde_json::Value) -> Case {
        Case::with(tag, api_args, kind, route, |_| {})
    }

    /// `edit` may change the config (auth, headers, more clients) before it is written.
    pub fn with(
        tag: &str,
        api_args: &[&str],
        kind: &str,
        route: serde_json::Value,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Case {
        let api = Api::start(api_args);
        let db = TestDb::new(tag);
        let routes = serde_json::json!({ "pedidos": route });
        let mut cfg = Atlas::config(&format!("{}/{kind}", api.url), routes);
        edit(&mut cfg);
        let atlas = Atlas::new(&db, &cfg);
        Case { api, db, atlas }
    }

    /// A scrap of client 2151's `pedidos` (after `init`); its id.
    pub fn create(&self, from: &str, to: &str) -> String {
        self.atlas.create("pedidos", from, to)
    }
}

/// A working directory with an `atlas.json`, bound to one database.
pub struct Atlas {
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl Atlas {
    pub fn new(db: &TestDb, config: &serde_json::Value) -> Atlas {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("atlas.json"),
            serde_json::to_vec_pretty(config).expect("json"),
        )
        .expect("write config");
        Atlas {
            dir,
            db_url: db.url.clone(),
            // Fast retries and short leases keep fault tests quick.
            env: vec![
                ("ATLAS_BACKOFF_MS".into(), "20".into()),
                ("ATLAS_BACKOFF_CAP_MS".into(), "200".into()),
                ("ATLAS_PROGRESS_SECS".into(), "0.5".into()),
            ],
        }
    }

    /// One client `2151` at `api.url + prefix` with the given routes.
    pub fn config(api_base: &str, routes: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "clients": { "2151": { "name": "Loja Teste", "base_url": api_base } },
            "routes": routes
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_atlas"));
        c.current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("ATLAS_DATABASE_URL")
            .env_remove("ATLAS_CONFIG")
            .env("ATLAS_DATABASE_URL", &self.db_url)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.command(args).output().expect("run atlas");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts the exit code, showing the output when it differs.
    pub fn ok(&self, args: &[&str]) -> Run {
        self.expect(args, 0)
    }

    pub fn expect(&self, args: &[&str], code: i32) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, code,
            "atlas {args:?}\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r
    }

    /// `init` + `scrap create`; returns the scrap id.
    pub fn create(&self, route: &str, from: &str, to: &str) -> String {
        self.ok(&["init"]);
        let r = self.ok(&create_args("2151", route, from, to));
        let id = r.stdout.trim().to_string();
        assert!(
            id.parse::<i64>().is_ok(),
            "scrap create printed '{}'",
            r.stdout
        );
        id
    }
}

/// The standard raw table holds exactly `expected` rows: no duplicate hash,
/// and every row dated by its record's own `data_pedido`.
pub fn assert_exact(db: &TestDb, expected: i64, what: &str) {
    let table = "dados_raw_cliente_2151_pedidos";
    assert_eq!(
        db.i64(&format!("SELECT count(*) FROM {table}")),
        expected,
        "{what}: row count"
    );
    assert_eq!(
        db.i64(&format!(
            "SELECT count(DISTINCT hash_conteudo) FROM {table}"
        )),
        expected,
        "{what}: distinct hashes"
    );
    assert_eq!(
        db.i64(&format!(
            "SELECT count(*) FROM {table} WHERE data_referencia::text IS DISTINCT FROM payload->>'data_pedido'"
        )),
        0,
        "{what}: data_referencia must equal the record's own date"
    );
}

/// Waits for a condition with a deadline (never a fixed sleep).
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// `scrap create` of `client`'s `route` from `from` to `to`.
pub fn create_args<'a>(
    client: &'a str,
    route: &'a str,
    from: &'a str,
    to: &'a str,
) -> Vec<&'a str> {
    vec![
        "scrap", "create", "--client", client, "--route", route, "--from", from, "--to", to,
    ]
}

/// `sync --client 2151 --route pedidos` plus `extra`: a sync of the one
/// pair of `Atlas::config`.
pub fn sync_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["sync", "--client", "2151", "--route", "pedidos"];
    v.extend_from_slice(extra);
    v
}

/// `sync_args(["--json"])` plus `extra`.
pub fn sync_json<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = sync_args(&["--json"]);
    v.extend_from_slice(extra);
    v
}

/// The days the API was asked for on URLs containing `path` (`data_inicial`
/// of each data request), sorted, each once.
pub fn asked_days(log: &Path, path: &str) -> Vec<String> {
    let mut days: Vec<String> = request_log(log)
        .iter()
        .filter(|s| s.url.contains(path))
        .filter_map(|s| {
            s.url
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("data_inicial="))
                .map(str::to_string)
        })
        .collect();
    days.sort();
    days.dedup();
    days
}

/// `args` against `DEAD_DB` (`--database-url` goes before the command).
pub fn dead_db_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["--database-url", DEAD_DB][..], args].concat()
}

/// Runs `atlas args` in the background until `until` holds, then kills it
/// with SIGKILL: a run cut mid-way, as a crash or `kill -9` would cut it.
pub fn kill9_when(
    atlas: &Atlas,
    args: &[&str],
    what: &str,
    timeout: Duration,
    until: impl FnMut() -> bool,
) {
    let mut bg = Bg::spawn(atlas, args, "killed");
    wait_for(what, timeout, until);
    bg.kill9();
}

/// SPEC §4 hash recomputed independently of the binary: keys sorted, compact.
/// Numbers go through serde_json, so only for payloads whose numbers it
/// writes back as the API wrote them (the sample API's); `data.rs` pins
/// numbers as written with literal canonical texts.
pub fn spec_hash(payload_text: &str) -> String {
    use sha2::{Digest, Sha256};
    let v: serde_json::Value = serde_json::from_str(payload_text).expect("payload JSON");
    let canon = serde_json::to_string(&v).expect("serialise");
    Sha256::digest(canon.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// `atlas` running in the background, its output in files of the working
/// dir (no pipe can fill up); killed on drop if still running.
pub struct Bg {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// Two processes running `args` at once, each expected to end with exit
/// 0 within `timeout`: their runs, in order.
pub fn two_at_once(atlas: &Atlas, args: &[&str], timeout: Duration) -> (Run, Run) {
    let mut a = Bg::spawn(atlas, args, "a");
    let mut b = Bg::spawn(atlas, args, "b");
    let (ra, rb) = (a.finish(timeout), b.finish(timeout));
    assert_eq!(ra.code, 0, "a: {}", ra.stderr);
    assert_eq!(rb.code, 0, "b: {}", rb.stderr);
    (ra, rb)
}

impl Bg {
    pub fn spawn(atlas: &Atlas, args: &[&str], tag: &str) -> Bg {
        let out = atlas.path(&format!("{tag}.stdout"));
        let err = atlas.path(&format!("{tag}.stderr"));
        let child = atlas
            .command(args)
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn atlas");
        Bg { child, out, err }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Panics (showing stderr) if the run already ended: the fault must hit a live run.
    pub fn assert_running(&mut self, what: &str) {
        if !self.running() {
            panic!(
                "{what}: the run already ended, too early to inject the fault\nstderr:\n{}",
                self.stderr()
            );
        }
    }

    /// SIGKILL, like `kill -9`.
    pub fn kill9(&mut self) {
        self.assert_running("kill -9");
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    pub fn signal(&mut self, sig: &str) {
        assert!(
            self.running(),
            "{sig}: the run already ended\n{}",
            self.stderr()
        );
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{sig}");
    }

    pub fn finish(&mut self, timeout: Duration) -> Run {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "atlas did not finish within {timeout:?}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// OpenSSL settings for test certificates (a CA and a server certificate
/// for localhost and 127.0.0.1): v3 extensions as webpki wants them.
pub const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// One data request as the sample API logged it (`--request-log`).
pub struct Seen {
    pub ms: u64,
    pub status: u16,
    /// Path and query (the auth parameter left out), or a POST's body.
    pub url: String,
}

/// The sample API's request log: `<unix_ms> <status> <path>?<query>` lines.
pub fn request_log(path: &Path) -> Vec<Seen> {
    let text = std::fs::read_to_string(path).expect("request log");
    text.lines()
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            let ms = f.next().and_then(|v| v.parse().ok()).expect("unix_ms");
            let status = f.next().and_then(|v| v.parse().ok()).expect("status");
            let url = f.next().unwrap_or("").to_string();
            Seen { ms, status, url }
        })
        .collect()
}

/// The requests of `seen` inside the 1 s Retry-After that `refused` was
/// answered with (50 ms of slack either side for the server's clock).
pub fn inside_retry_after<'a>(seen: &'a [Seen], refused: &Seen) -> Vec<&'a Seen> {
    let (start, end) = (refused.ms + 50, refused.ms + 950);
    seen.iter().filter(|s| s.ms > start && s.ms < end).collect()
}

/// Every text of every table of the database, one row a line (for tests
/// that grep it for a secret).
pub fn database_text(db: &TestDb) -> String {
    let tables = db.strings(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'",
    );
    tables
        .iter()
        .map(|t| {
            db.strings(&format!(
                "SELECT coalesce(string_agg(x::text, E'\\n'), '') FROM {t} x"
            ))
            .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `openssl` in `dir`; a missing command says how to get it.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the TLS tests need the `openssl` command to make certificates (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key in `dir/file`.
pub fn make_key(dir: &Path, file: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            file,
        ],
    );
}

/// `name.key` and a self-signed `name.pem` for a root CA called `cn`, in
/// `dir` (which holds `openssl.cnf` from `OPENSSL_CNF`).
pub fn make_ca(dir: &Path, name: &str, cn: &str) {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={cn}"),
    );
    make_key(dir, &key);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca",
            "-key",
            &key,
            "-subj",
            &subj,
            "-days",
            "2",
            "-out",
            &pem,
        ],
    );
}

/// `server.pem` for localhost and 127.0.0.1, signed by `ca.pem`, from the
/// key already in `server.key`.
pub fn make_server_cert(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-key",
            "server.key",
            "-subj",
            "/CN=localhost",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "server",
            "-out",
            "server.pem",
        ],
    );
}
