//! `--tls-cert`/`--tls-key`: HTTPS in front of the plain server. Each TLS connection is
//! decrypted by rustls and piped to the plain listener on a private loopback port, so the
//! HTTP server itself stays plain TCP.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// The server config for a PEM certificate chain and its PEM private key.
pub fn config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map(Arc::new)
        .map_err(|e| format!("TLS: {e}"))
}

/// Accepts TLS connections on `public` forever, each piped to `upstream` on its own threads.
pub fn front(public: &TcpListener, upstream: SocketAddr, config: &Arc<ServerConfig>) {
    for stream in public.incoming() {
        let Ok(stream) = stream else { continue };
        let config = Arc::clone(config);
        std::thread::spawn(move || {
            if let Err(e) = pipe(stream, upstream, config) {
                log::debug!("TLS connection ended: {e}");
            }
        });
    }
}

/// One connection: client -> upstream on this thread, upstream -> client on another; the
/// rustls state is shared under a lock that is never held across a blocking read.
fn pipe(client: TcpStream, upstream: SocketAddr, config: Arc<ServerConfig>) -> io::Result<()> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let conn = Arc::new(Mutex::new(conn));
    let plain = TcpStream::connect(upstream)?;
    let (mut plain_in, mut plain_out) = (plain.try_clone()?, plain);
    let (mut client_in, client_out) = (client.try_clone()?, client);
    let back = {
        let conn = Arc::clone(&conn);
        let mut client_out = client_out.try_clone()?;
        std::thread::spawn(move || -> io::Result<()> {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = plain_in.read(&mut buf)?;
                let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    c.send_close_notify();
                } else {
                    c.writer().write_all(&buf[..n])?;
                }
                while c.wants_write() {
                    c.write_tls(&mut client_out)?;
                }
                if n == 0 {
                    let _ = client_out.shutdown(Shutdown::Write);
                    return Ok(());
                }
            }
        })
    };
    let mut buf = vec![0u8; 16 * 1024];
    let result = (|| -> io::Result<()> {
        loop {
            let n = client_in.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let mut plaintext = Vec::new();
            {
                let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    c.read_tls(&mut rest)?;
                    let state = c.process_new_packets();
                    // Alerts (a client refusing our certificate) go out before closing.
                    while c.wants_write() {
                        c.write_tls(&mut &client_out)?;
                    }
                    let state = state.map_err(io::Error::other)?;
                    if state.plaintext_bytes_to_read() > 0 {
                        let mut chunk = vec![0u8; state.plaintext_bytes_to_read()];
                        c.reader().read_exact(&mut chunk)?;
                        plaintext.extend_from_slice(&chunk);
                    }
                    if state.peer_has_closed() {
                        plain_out.write_all(&plaintext)?;
                        return Ok(());
                    }
                }
            }
            plain_out.write_all(&plaintext)?;
        }
    })();
    let _ = plain_out.shutdown(Shutdown::Write);
    let _ = back.join();
    result
}
