//! The loopback listener of `atlas auth login`: binds exactly the
//! `redirect_uri`'s address and port, waits for the browser's one request
//! to its path, and answers it with a short Portuguese page once the login
//! is through. Other requests (a favicon, a preconnect that never speaks)
//! get their own thread and a 404, so they cannot hold up the redirect.

use crate::exit::env_error;
use anyhow::Result;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use url::Url;

/// How long a browser's connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read (a redirect's URL is far shorter).
const MAX_HEAD: usize = 16 * 1024;

/// How often a wait looks at the stop flag.
const TICK: Duration = Duration::from_millis(200);

/// The redirect that came, and the browser waiting for its page.
pub struct Callback {
    /// The query of the redirect, decoded.
    pub pairs: Vec<(String, String)>,
    stream: TcpStream,
}

/// Listening on the redirect_uri.
pub struct Loopback {
    rx: Receiver<Callback>,
}

/// How a wait ended.
pub enum Waited<T> {
    Got(T),
    TimedOut,
    /// A stop signal (Ctrl-C) came.
    Stopped,
}

/// The addresses `redirect` names: its IP, or both loopbacks for `localhost`.
fn addresses(redirect: &Url) -> Vec<SocketAddr> {
    let port = redirect.port().unwrap_or(0);
    let ips: Vec<IpAddr> = match redirect.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        _ => vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
    };
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// Binds the redirect_uri's address and port (exit 3 when taken). For
/// `localhost` the IPv6 loopback is bound too when the machine has one.
pub fn listen(redirect: &Url) -> Result<Loopback> {
    let (tx, rx) = channel();
    let path = redirect.path().to_string();
    let mut bound = 0;
    for (i, addr) in addresses(redirect).into_iter().enumerate() {
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            // `localhost` on a machine without IPv6: 127.0.0.1 is enough.
            Err(_) if i > 0 => continue,
            Err(e) => {
                return Err(env_error(format!(
                    "cannot listen on {addr} for the redirect_uri {redirect}: {e} (another \
                     program or login holds the port? use --paste, or free it)"
                )))
            }
        };
        bound += 1;
        let (tx, path) = (tx.clone(), path.clone());
        std::thread::spawn(move || accept(&listener, &path, &tx));
    }
    debug_assert!(bound > 0);
    Ok(Loopback { rx })
}

fn accept(listener: &TcpListener, path: &str, tx: &Sender<Callback>) {
    for stream in listener.incoming().flatten() {
        let (tx, path) = (tx.clone(), path.to_string());
        std::thread::spawn(move || serve(stream, &path, &tx));
    }
}

/// Reads one request: the redirect goes to the waiting login, anything
/// else is answered here.
fn serve(mut stream: TcpStream, path: &str, tx: &Sender<Callback>) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let Some(target) = read_target(&mut stream) else {
        reply(&mut stream, 400, "Pedido inválido.");
        return;
    };
    let (p, query) = target.split_once('?').unwrap_or((&target, ""));
    if p != path {
        reply(&mut stream, 404, "Endereço desconhecido.");
        return;
    }
    let pairs = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if let Err(late) = tx.send(Callback { pairs, stream }) {
        let mut stream = late.0.stream;
        reply(
            &mut stream,
            409,
            "Esta autorização já foi recebida: volte ao terminal.",
        );
    }
}

/// The target of a `GET` request, or `None` for anything else.
fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return (req.method == Some("GET"))
                    .then(|| req.path.map(str::to_string))
                    .flatten()
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            _ => return None,
        }
    }
}

/// A short HTML page in Portuguese.
fn reply(stream: &mut TcpStream, status: u16, message: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><html lang=\"pt-BR\"><head><meta charset=\"utf-8\">\
         <title>atlas</title></head><body><p>{}</p></body></html>\n",
        escape(message)
    );
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Callback {
    /// Tells the browser the login is done.
    pub fn done(mut self) {
        reply(
            &mut self.stream,
            200,
            "Autorização concluída: pode fechar esta janela.",
        );
    }

    /// Tells the browser the login failed, and why (in Portuguese).
    pub fn failed(mut self, why: &str) {
        reply(
            &mut self.stream,
            400,
            &format!("Autorização não concluída: {why}. Veja o terminal do atlas."),
        );
    }
}

impl Loopback {
    /// The first redirect before `deadline`.
    pub fn wait(&self, deadline: Instant, quit: &AtomicBool) -> Waited<Callback> {
        wait(&self.rx, deadline, quit)
    }
}

/// The first value on `rx` before `deadline`, unless a stop signal comes.
pub fn wait<T>(rx: &Receiver<T>, deadline: Instant, quit: &AtomicBool) -> Waited<T> {
    loop {
        if quit.load(Ordering::SeqCst) {
            return Waited::Stopped;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Waited::TimedOut;
        }
        match rx.recv_timeout(left.min(TICK)) {
            Ok(v) => return Waited::Got(v),
            Err(RecvTimeoutError::Timeout) => {}
            // Every sender gone: nothing can come any more.
            Err(RecvTimeoutError::Disconnected) => return Waited::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn get(addr: SocketAddr, target: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        (status, rest)
    }

    #[test]
    fn the_redirect_is_caught_and_answered_other_paths_are_not() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let redirect = Url::parse(&format!("http://127.0.0.1:{port}/cb")).unwrap();
        let lb = listen(&redirect).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // An idle connection (a browser's preconnect) holds up nothing.
        let _idle = TcpStream::connect(addr).unwrap();
        let (status, _) = get(addr, "/favicon.ico");
        assert!(status.contains("404"), "{status}");
        let browser = std::thread::spawn(move || get(addr, "/cb?code=c%2B1&state=s"));
        let quit = AtomicBool::new(false);
        let Waited::Got(cb) = lb.wait(Instant::now() + Duration::from_secs(10), &quit) else {
            panic!("no redirect")
        };
        assert!(cb.pairs.contains(&("code".into(), "c+1".into())));
        cb.done();
        let (status, page) = browser.join().unwrap();
        assert!(status.contains("200"), "{status}");
        assert!(page.contains("Autorização concluída"), "{page}");
        assert!(
            listen(&redirect).is_err(),
            "the port is taken while listening"
        );
        let t = Instant::now();
        assert!(matches!(
            lb.wait(Instant::now() + Duration::from_millis(300), &quit),
            Waited::TimedOut
        ));
        assert!(t.elapsed() >= Duration::from_millis(300));
        quit.store(true, Ordering::SeqCst);
        assert!(matches!(
            lb.wait(Instant::now() + Duration::from_secs(10), &quit),
            Waited::Stopped
        ));
    }
}
