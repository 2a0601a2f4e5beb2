//! TLS to PostgreSQL (src/tls.rs): libpq's `sslmode` meanings over rustls,
//! against a private cluster with `ssl = on`, a certificate from a throwaway
//! CA, and a `pg_hba.conf` that admits TCP connections only over TLS.
//! Everything goes through the real binary: `atlas --database-url URL init`.

use crate::util::{make_ca, make_key, make_server_cert, Run, OPENSSL_CNF};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

// ---------------------------------------------------------------- cluster

/// Runs a command to completion, panicking with its output when it fails
/// (and with `missing` when the program cannot be started at all).
fn must(cmd: &mut Command, missing: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{missing}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The directory holding `initdb` and `pg_ctl`: PATH first, then the
/// highest `/usr/lib/postgresql/*/bin`.
fn pg_bindir() -> PathBuf {
    let both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| both(d))
    {
        return d;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            both(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d).unwrap_or_else(|| {
        panic!(
            "the TLS tests need PostgreSQL's server programs: no initdb and pg_ctl in PATH \
             or /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        )
    })
}

/// A PostgreSQL cluster of its own in a tempdir, stopped (and the directory
/// removed) on drop.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run as root: the server programs run as `postgres` through runuser.
    as_postgres: bool,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = pg_bindir();
        let uid = must(Command::new("id").arg("-u"), "`id` is missing");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        // Under /tmp and 0755: the postgres user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("atlas-tls-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let c = Cluster {
            dir,
            bin,
            as_postgres,
            port,
        };
        c.make_certificates();
        if as_postgres {
            let id = |flag: &str| -> u32 {
                let out = must(
                    Command::new("id").args([flag, "postgres"]),
                    "running as root needs the `postgres` system user",
                );
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("numeric id")
            };
            let (uid, gid) = (id("-u"), id("-g"));
            for p in [c.dir.path(), &c.path("server.key"), &c.path("server.pem")] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        c.pg(
            "initdb",
            &["-D", "data", "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        let d = c.dir.path().display().to_string();
        let conf = format!(
            "\n# atlas TLS test\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{d}'\nssl = on\n\
             ssl_cert_file = '{d}/server.pem'\nssl_key_file = '{d}/server.key'\n\
             log_connections = on\nfsync = off\n"
        );
        append(&c.path("data/postgresql.conf"), &conf);
        // TCP only over TLS: a plaintext connection finds no entry.
        std::fs::write(
            c.path("data/pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        let start = c
            .pg_command(
                "pg_ctl",
                &["-D", "data", "-l", "log", "-w", "-t", "30", "start"],
            )
            .output()
            .expect("run pg_ctl start");
        assert!(
            start.status.success(),
            "pg_ctl start failed\n{}{}\nserver log:\n{}",
            String::from_utf8_lossy(&start.stdout),
            String::from_utf8_lossy(&start.stderr),
            c.log()
        );
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("log")).unwrap_or_default()
    }

    fn pg_command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        must(
            &mut self.pg_command(tool, args),
            "PostgreSQL server programs",
        );
    }

    /// `ca.pem` signs the server's `server.pem` (localhost, 127.0.0.1);
    /// `wrong.pem` is an unrelated root; `impostor.pem` is another root
    /// with the very name of `ca.pem` but its own key.
    fn make_certificates(&self) {
        let dir = self.dir.path();
        std::fs::write(self.path("openssl.cnf"), OPENSSL_CNF).expect("write openssl.cnf");
        make_ca(dir, "ca", "atlas test CA");
        make_ca(dir, "wrong", "unrelated test CA");
        make_ca(dir, "impostor", "atlas test CA");
        make_key(dir, "server.key");
        std::fs::set_permissions(
            self.path("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod server.key");
        make_server_cert(dir);
    }

    /// A root file's path, for `sslrootcert`.
    fn root(&self, name: &str) -> String {
        self.path(&format!("{name}.pem")).display().to_string()
    }

    /// `postgres://postgres@HOST:PORT/postgres?QUERY`
    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .pg_command("pg_ctl", &["-D", "data", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

// ---------------------------------------------------------------- atlas

/// `atlas --database-url URL init` in an empty directory (no config file).
fn init(url: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_atlas"))
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("ATLAS_DATABASE_URL")
        .env_remove("ATLAS_CONFIG")
        .args(["--database-url", url, "init"])
        .stdin(Stdio::null())
        .output()
        .expect("run atlas");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `init` with `url` exits `code`, and its stderr holds every one of `says`.
fn expect(url: &str, code: i32, says: &[&str]) -> Run {
    let r = init(url);
    assert_eq!(
        r.code, code,
        "atlas --database-url {url} init\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    for s in says {
        assert!(
            r.stderr.contains(s),
            "atlas --database-url {url} init: stderr lacks '{s}':\n{}",
            r.stderr
        );
    }
    r
}

// ---------------------------------------------------------------- tests

#[test]
fn sslmodes_against_a_tls_only_server() {
    let pg = Cluster::start();
    let ca = pg.root("ca");

    // verify-full with the right root, by name: connected, and over TLS
    // (pg_hba admits TCP only as hostssl; the server logs the session's TLS).
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    let r = expect(&pg.url("localhost", &full), 0, &[]);
    assert!(r.stdout.contains("Esquema atlas"), "{}", r.stdout);
    let log = pg.log();
    assert!(
        log.contains("application_name=atlas SSL enabled"),
        "the server log shows no TLS session of atlas:\n{log}"
    );
    // By address: the certificate's IP subjectAltName matches.
    expect(&pg.url("127.0.0.1", &full), 0, &[]);
    // The key=value form carries the same settings.
    expect(
        &format!(
            "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={ca}",
            pg.port
        ),
        0,
        &[],
    );

    // Plaintext is refused by this server: what succeeds above was TLS.
    expect(
        &pg.url("localhost", "sslmode=disable"),
        3,
        &["cannot connect to PostgreSQL", "no encryption"],
    );

    // require, prefer and no sslmode at all (libpq's default, prefer):
    // encrypted, the certificate (from a CA nobody trusts) not checked.
    expect(&pg.url("localhost", "sslmode=require"), 0, &[]);
    expect(&pg.url("localhost", "sslmode=prefer"), 0, &[]);
    expect(
        &format!("postgres://postgres@localhost:{}/postgres", pg.port),
        0,
        &[],
    );

    // A root that did not sign the server's certificate: refused, and the
    // message says it is about the certificate.
    for mode in ["verify-full", "verify-ca"] {
        for root in ["wrong", "impostor"] {
            let q = format!("sslmode={mode}&sslrootcert={}", pg.root(root));
            let r = expect(
                &pg.url("localhost", &q),
                3,
                &["cannot connect to PostgreSQL"],
            );
            assert!(
                r.stderr.contains("certificate"),
                "{mode} with the {root} root: stderr does not name the certificate:\n{}",
                r.stderr
            );
        }
    }
    // verify-full with no sslrootcert trusts the public (Mozilla) roots only.
    let r = expect(&pg.url("localhost", "sslmode=verify-full"), 3, &[]);
    assert!(r.stderr.contains("certificate"), "{}", r.stderr);

    // A name the certificate does not hold (hostaddr reaches the server, the
    // name is what TLS checks): verify-ca checks the chain only and connects,
    // verify-full checks the name too and refuses.
    let other = "not-in-the-cert.invalid";
    expect(
        &pg.url(
            other,
            &format!("hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={ca}"),
        ),
        0,
        &[],
    );
    let r = expect(
        &pg.url(
            other,
            &format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"),
        ),
        3,
        &["cannot connect to PostgreSQL"],
    );
    assert!(
        r.stderr.contains("NotValidForName") || r.stderr.contains("not valid for"),
        "verify-full with a foreign name: {}",
        r.stderr
    );

    // A root file that cannot be used is bad input (exit 2), named.
    expect(
        &pg.url(
            "localhost",
            "sslmode=verify-full&sslrootcert=/nonexistent.pem",
        ),
        2,
        &["/nonexistent.pem"],
    );
    let not_pem = pg.path("data/postgresql.conf").display().to_string();
    expect(
        &pg.url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={not_pem}"),
        ),
        2,
        &[&not_pem, "no certificate"],
    );
    // An unknown sslmode too.
    expect(&pg.url("localhost", "sslmode=sometimes"), 2, &["sometimes"]);
}
