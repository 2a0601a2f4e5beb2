//! TLS trust for APIs (src/http.rs): the sample API over HTTPS with a
//! certificate from a CA made in the test. Without trust in that CA the
//! run stops (exit 3) naming the certificate error; a client `ca_file` or
//! the CA in the system store (`SSL_CERT_FILE` of the atlas process) loads
//! the period exactly.

use crate::util::{
    assert_exact, make_ca, make_key, make_server_cert, page_route, Api, Atlas, Run, TestDb,
    OPENSSL_CNF,
};
use std::path::{Path, PathBuf};

/// A throwaway CA (`ca.pem`) and a server certificate it signed
/// (`server.pem`, `server.key`) for localhost and 127.0.0.1.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let dir = pki.dir.path();
        std::fs::write(pki.path("openssl.cnf"), OPENSSL_CNF).expect("write openssl.cnf");
        make_ca(dir, "ca", "atlas API test CA");
        make_key(dir, "server.key");
        make_server_cert(dir);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Args of both sample APIs: the HTTPS one under test and a plain twin
/// (same data) that answers `/_expected`.
const DATA: [&str; 4] = ["--per-day", "40", "--page-size", "15"];

struct Setup {
    pki: Pki,
    api: Api,
    twin: Api,
}

fn setup() -> Setup {
    let pki = Pki::new();
    let mut args = DATA.to_vec();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    args.extend(["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let api = Api::start(&args);
    assert!(api.url.starts_with("https://127.0.0.1:"), "{}", api.url);
    Setup {
        pki,
        api,
        twin: Api::start(&DATA),
    }
}

/// Runs a scrap of 3 days with the config of
/// `tests/fixtures/configs/api_tls.json` (its `ca_file` the test CA when
/// `with_ca_file`, else removed) and `SSL_CERT_FILE` (or none) for atlas.
fn load(db: &TestDb, st: &Setup, with_ca_file: bool, cert_file: Option<&Path>) -> Run {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/configs/api_tls.json"
    ))
    .expect("api_tls fixture")
    .replace("https://127.0.0.1:8080", &st.api.url);
    let mut cfg: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    if !with_ca_file {
        cfg["clients"]["2151"]
            .as_object_mut()
            .expect("client")
            .remove("ca_file");
    }
    let atlas = Atlas::new(db, &cfg);
    // The fixture names `erp-ca.pem`, relative to the working directory.
    std::fs::copy(st.pki.path("ca.pem"), atlas.path("erp-ca.pem")).expect("copy CA");
    let id = atlas.create("pedidos", "2025-03-01", "2025-03-03");
    let mut cmd = atlas.command(&["scrap", "run", &id]);
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    if let Some(bundle) = cert_file {
        cmd.env("SSL_CERT_FILE", bundle);
    }
    let out = cmd.output().expect("run atlas");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn an_untrusted_api_certificate_stops_the_run_naming_the_error() {
    let st = setup();
    let db = TestDb::new("apitls_refused");
    let r = load(&db, &st, false, None);
    assert_eq!(r.code, 3, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("certificate is not trusted") && all.contains("UnknownIssuer"),
        "{all}"
    );
    assert!(
        all.contains("ca_file"),
        "the message says how to fix it: {all}"
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM dados_raw_cliente_2151_pedidos"),
        0
    );
    // Refused before the run is written: no run row, every slice pending.
    assert_eq!(db.i64("SELECT count(*) FROM atlas.runs"), 0);
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE status <> 'pending'"),
        0
    );
}

#[test]
fn a_client_ca_file_is_trusted() {
    let st = setup();
    let db = TestDb::new("apitls_cafile");
    let r = load(&db, &st, true, None);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_exact(&db, st.twin.expected("2025-03-01", "2025-03-03"), "ca_file");
}

#[test]
fn a_ca_in_the_system_store_is_trusted() {
    let st = setup();
    let db = TestDb::new("apitls_system");
    // A private system bundle: the Debian one (when present) plus the test CA.
    let bundle = st.pki.path("system-bundle.pem");
    let mut text =
        std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    text.push_str(&std::fs::read_to_string(st.pki.path("ca.pem")).expect("ca.pem"));
    std::fs::write(&bundle, text).expect("write bundle");
    let r = load(&db, &st, false, Some(&bundle));
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_exact(
        &db,
        st.twin.expected("2025-03-01", "2025-03-03"),
        "system store",
    );
}

#[test]
fn a_bad_ca_file_is_a_config_error() {
    let db = TestDb::new("apitls_badca");
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    for (path, says) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (not_pem, "holds no PEM certificate"),
    ] {
        let mut cfg = Atlas::config(
            "https://127.0.0.1:9/page",
            serde_json::json!({ "pedidos": page_route() }),
        );
        cfg["clients"]["2151"]["ca_file"] = s(&path).into();
        let atlas = Atlas::new(&db, &cfg);
        let r = atlas.expect(&["check", "--no-probe"], 2);
        assert!(
            r.stderr.contains("clients.2151.ca_file") && r.stderr.contains(says),
            "{}",
            r.stderr
        );
    }
}
