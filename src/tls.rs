//! TLS to PostgreSQL without OpenSSL: libpq's `sslmode` meanings over
//! rustls, so the binary stays self-contained (Windows included).
//!
//! tokio-postgres knows `disable`, `prefer` and `require` only; `verify-ca`,
//! `verify-full` and `sslrootcert` are taken out of the URL here and turned
//! into the certificate verifier. As in libpq, `prefer` and `require`
//! encrypt without checking the certificate; `verify-ca` checks the chain;
//! `verify-full` checks the chain and the host name.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// TLS settings taken out of a database URL.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

fn mode_of(v: &str) -> Result<SslMode, String> {
    Ok(match v {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(format!(
                "sslmode '{other}' is not one of disable, prefer, require, verify-ca, verify-full"
            ))
        }
    })
}

/// What tokio-postgres is told for a mode (it verifies nothing itself).
fn pg_mode(m: SslMode) -> &'static str {
    match m {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    }
}

/// Splits a database URL (`postgres://…?sslmode=…`) or key=value string into
/// what tokio-postgres accepts and our TLS settings.
pub fn split(url: &str) -> Result<(String, TlsSettings), String> {
    let mut s = TlsSettings {
        mode: SslMode::Prefer,
        root_cert: None,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The query is filtered as raw text, so every other param keeps its
        // exact encoding (re-encoding would turn `%20` into `+`).
        let (head, query) = match url.split_once('?') {
            Some((h, q)) => (h, q),
            None => (url, ""),
        };
        let mut rest = Vec::new();
        for seg in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = url::form_urlencoded::parse(seg.as_bytes())
                .next()
                .unwrap_or_default();
            match k.as_ref() {
                "sslmode" => s.mode = mode_of(&v)?,
                "sslrootcert" => s.root_cert = Some(PathBuf::from(v.as_ref())),
                _ => rest.push(seg.to_string()),
            }
        }
        s.mode = libpq_mode(s.mode, &s.root_cert);
        rest.push(format!("sslmode={}", pg_mode(s.mode)));
        return Ok((format!("{head}?{}", rest.join("&")), s));
    }
    let mut out = Vec::new();
    for tok in kv_tokens(url) {
        match tok.split_once('=') {
            Some(("sslmode", v)) => s.mode = mode_of(unquote(v))?,
            Some(("sslrootcert", v)) => s.root_cert = Some(PathBuf::from(unquote(v))),
            _ => out.push(tok),
        }
    }
    s.mode = libpq_mode(s.mode, &s.root_cert);
    out.push(format!("sslmode={}", pg_mode(s.mode)));
    Ok((out.join(" "), s))
}

/// libpq: `require` with a root certificate file behaves as `verify-ca`.
fn libpq_mode(mode: SslMode, root: &Option<PathBuf>) -> SslMode {
    if mode == SslMode::Require && root.is_some() {
        SslMode::VerifyCa
    } else {
        mode
    }
}

/// `key=value` tokens of a connection string, single quotes protecting spaces.
fn kv_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v)
}

/// The connector for these settings.
pub fn connector(s: &TlsSettings) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match s.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Lenient {
            provider: provider.clone(),
            chain: None,
        }),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = roots(s)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("TLS roots: {e}"))?;
            if s.mode == SslMode::VerifyCa {
                Arc::new(Lenient {
                    provider: provider.clone(),
                    chain: Some(webpki),
                })
            } else {
                webpki
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `sslrootcert` when given, else the bundled Mozilla roots.
fn roots(s: &TlsSettings) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match &s.root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                store
                    .add(c)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                ));
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// libpq's lenient modes: `prefer`/`require` (`chain: None`) encrypt and
/// check no certificate; `verify-ca` checks the chain to a trusted root but
/// not the name. Handshake signatures are verified in every mode, with the
/// provider's algorithms (as `WebPkiServerVerifier` does).
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_params_are_split_out() {
        let (u, s) = split(
            "postgres://u@h:5/db?sslmode=verify-full&sslrootcert=/tmp/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            s,
            TlsSettings {
                mode: SslMode::VerifyFull,
                root_cert: Some("/tmp/ca.pem".into())
            }
        );
        assert!(
            u.contains("sslmode=require")
                && u.contains("application_name=x")
                && !u.contains("sslrootcert"),
            "{u}"
        );
        let (u, s) = split("postgres://u@h/db").unwrap();
        assert_eq!(s.mode, SslMode::Prefer);
        assert_eq!(u, "postgres://u@h/db?sslmode=prefer");
        let (u, s) = split("host=h user=u sslmode=verify-ca sslrootcert=/c.pem").unwrap();
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(u, "host=h user=u sslmode=require");
        assert!(split("postgres://h/db?sslmode=sometimes")
            .unwrap_err()
            .contains("sometimes"));
        assert_eq!(
            split("postgres://h/db?sslmode=disable").unwrap().1.mode,
            SslMode::Disable
        );
    }

    #[test]
    fn a_missing_root_file_is_a_clear_error() {
        let s = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        let e = connector(&s).err().unwrap();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(connector(&TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: None
        })
        .is_ok());
        assert!(connector(&TlsSettings {
            mode: SslMode::Require,
            root_cert: None
        })
        .is_ok());
    }
}
