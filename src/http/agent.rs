//! The HTTP agent: one per set of trusted roots (the bundled Mozilla roots,
//! the operating system's store, a client's `ca_file`), its timeouts, and
//! what a TLS failure says.

use std::time::Duration;

/// One agent for the whole run: its pool keeps connections alive across
/// threads. Status codes are data (we classify them), not errors. HTTPS
/// trusts the bundled Mozilla roots, the operating system's store and
/// `extra` (a client's `ca_file`); verification is never turned off.
pub fn agent_trusting(
    timeout: Duration,
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let roots: Vec<Certificate<'static>> = trusted_roots()
        .iter()
        .chain(extra)
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&roots))
                .build(),
        )
        .http_status_as_error(false)
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .timeout_global(Some(timeout))
        .max_idle_connections(256)
        .max_idle_connections_per_host(128)
        .user_agent(concat!("atlas/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Reads the trusted roots on a thread of their own, so the first agent
/// does not wait for them (reading the system store takes tens of ms) while
/// the database work that comes first runs.
pub fn read_trust_early() {
    let spawned = std::thread::Builder::new().name("trust".into()).spawn(|| {
        trusted_roots();
    });
    if let Err(e) = spawned {
        log::debug!("roots read on first use instead: {e}");
    }
}

/// The bundled Mozilla roots plus the operating system's store (Windows
/// certificate store, macOS keychain, the Linux bundle or `SSL_CERT_FILE` /
/// `SSL_CERT_DIR`), read once per process. A store that cannot be read
/// leaves the bundled roots.
fn trusted_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            log::debug!("system certificate store: {e}");
        }
        roots.extend(native.certs);
        roots
    })
}

/// The certificate problem behind a transport error, if that is what it is
/// (ureq's error has no `source`: its rustls and I/O variants are opened here).
pub fn certificate_error(e: &ureq::Error) -> Option<String> {
    let rustls_error = match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match rustls_error {
        Some(r @ rustls::Error::InvalidCertificate(_)) => Some(r.to_string()),
        _ => None,
    }
}
