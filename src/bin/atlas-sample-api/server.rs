//! The HTTP/1.1 server: an accept loop with one thread per connection, keep-alive and
//! pipelining, request heads parsed by httparse, bodies skipped, replies framed by
//! `Content-Length`, and the `slow`/`drop` faults acted out while sending.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::faults::FaultKind;
use crate::http::{bad, reason_phrase, Reply, TEXT};
use crate::routes::handle;
use crate::state::State;

/// Longest request head (request line and headers) accepted; longer is a 431.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted; larger is a 413.
const MAX_BODY: u64 = 1024 * 1024;
/// Most header lines in a head; more is a 431.
const MAX_HEADERS: usize = 100;
/// Read and write timeout of every connection: an idle keep-alive connection is closed after
/// this, and so is one whose client stops reading.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One request: its head and its body (`MAX_BODY` at most: POSTs of the `/erp/` routes and
/// the token endpoint read it).
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Names as sent, values trimmed; non-UTF-8 bytes replaced.
    pub headers: Vec<(String, String)>,
    /// The `Content-Length` body, empty when none was sent.
    pub body: Vec<u8>,
}

impl Request {
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// The declared body length, 0 without `Content-Length`; `None` if it is not a number or
    /// repeated with another value.
    fn content_length(&self) -> Option<u64> {
        let mut lengths = self
            .headers_named("Content-Length")
            .map(|v| v.parse::<u64>().ok());
        let first = lengths.next().unwrap_or(Some(0))?;
        lengths.all(|l| l == Some(first)).then_some(first)
    }

    /// HTTP/1.1 keeps the connection unless the client says `close`; HTTP/1.0 closes it
    /// unless the client asks for `keep-alive`.
    fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers_named("Connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        !has("close") && (self.version >= 1 || has("keep-alive"))
    }
}

/// What the connection reads next.
enum Next {
    Request(Request),
    /// Answer this and close: the head was malformed, too large or unframeable.
    Reject(Reply),
    /// EOF, timeout or an I/O error: just close.
    Close,
}

/// One accepted connection and the bytes read from it but not consumed yet (pipelining).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads until the blank line that ends a head (CRLF CRLF, or a bare LF LF, which
    /// httparse also accepts), parses it and skips any `Content-Length` body.
    fn next_request(&mut self) -> Next {
        let mut scanned = 0usize;
        loop {
            // Search only bytes not searched before, backing up over a split terminator.
            let tail = &self.buf[scanned.saturating_sub(2)..];
            let ended =
                tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
            scanned = self.buf.len();
            if ended {
                match self.parse_head() {
                    Ok(Some(request)) => return self.skip_body(request),
                    Ok(None) => {} // only empty lines so far: keep reading
                    Err(reply) => return Next::Reject(reply),
                }
            }
            if self.buf.len() >= MAX_HEAD {
                return Next::Reject(Reply::error(431, "cabeçalho grande demais"));
            }
            let mut chunk = [0u8; 8192];
            let room = (MAX_HEAD - self.buf.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => return Next::Close,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("read failed: {e}");
                    return Next::Close;
                }
            }
        }
    }

    /// Parses the head at the start of `buf` and removes it from there; `None` while it is
    /// still incomplete.
    fn parse_head(&mut self) -> Result<Option<Request>, Reply> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Reply::error(431, "cabeçalhos demais"))
            }
            Err(e) => return Err(bad(format!("requisição malformada: {e}"))),
        };
        let (Some(method), Some(target), Some(version)) =
            (parsed.method, parsed.path, parsed.version)
        else {
            return Err(bad("requisição malformada"));
        };
        let request = Request {
            method: method.to_string(),
            target: target.to_string(),
            version,
            headers: parsed
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value);
                    (h.name.to_string(), value.trim().to_string())
                })
                .collect(),
            body: Vec::new(),
        };
        self.buf.drain(..len);
        Ok(Some(request))
    }

    /// Reads a `Content-Length` body into the request (a larger one than `MAX_BODY` was
    /// refused with a 413 already).
    fn skip_body(&mut self, mut request: Request) -> Next {
        if request.header("Transfer-Encoding").is_some() {
            // Only chunked could be framed, and no client of this API sends a body at all.
            return Next::Reject(Reply::error(501, "Transfer-Encoding não suportado"));
        }
        let Some(len) = request.content_length() else {
            return Next::Reject(bad("Content-Length inválido"));
        };
        if len == 0 {
            return Next::Request(request);
        }
        if len > MAX_BODY {
            return Next::Reject(Reply::error(413, "corpo grande demais"));
        }
        let expects = request.header("Expect");
        if expects.is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) && request.version >= 1 {
            let line = b"HTTP/1.1 100 Continue\r\n\r\n";
            if self.stream.write_all(line).is_err() {
                return Next::Close;
            }
        }
        let buffered = usize::try_from(len).map_or(self.buf.len(), |l| l.min(self.buf.len()));
        request.body = self.buf.drain(..buffered).collect();
        let rest = len - buffered as u64;
        match io::copy(&mut (&self.stream).take(rest), &mut request.body) {
            Ok(n) if n == rest => Next::Request(request),
            _ => Next::Close,
        }
    }

    /// Status line, headers announcing the whole body, then `body_len` bytes of the body (all
    /// of it except for the `drop` fault); HEAD gets the headers only.
    fn write_reply(
        &mut self,
        reply: &Reply,
        head_only: bool,
        keep_alive: bool,
        body_len: usize,
    ) -> io::Result<()> {
        use std::fmt::Write as _;
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            reply.status,
            reason_phrase(reply.status),
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
            reply.content_type,
            reply.body.len(),
        );
        for (name, value) in &reply.headers {
            if value.contains(['\r', '\n']) {
                log::warn!("dropping invalid header {name}: {value:?}");
            } else {
                let _ = write!(head, "{name}: {value}\r\n");
            }
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let _ = write!(head, "Connection: {connection}\r\n\r\n");
        let body = match head_only {
            true => &[][..],
            false => &reply.body[..body_len.min(reply.body.len())],
        };
        // One write, so a small reply goes out as one segment.
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
        self.stream.write_all(&out)?;
        self.stream.flush()
    }

    /// Sends FIN, then drains what the client still sends for a moment, so that unread
    /// request bytes do not turn the close into a reset that could destroy the reply.
    fn close_gracefully(self) {
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)));
        let _ = io::copy(&mut (&self.stream).take(1 << 20), &mut io::sink());
    }
}

/// Answers requests on one connection until either side closes it, a timeout expires or a
/// fault ends it.
fn serve_connection(state: &State, stream: TcpStream) {
    let timeouts = stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .and_then(|()| stream.set_nodelay(true));
    if let Err(e) = timeouts {
        log::warn!("cannot set up connection: {e}");
        return;
    }
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let request = match conn.next_request() {
            Next::Request(request) => request,
            Next::Reject(reply) => {
                let len = reply.body.len();
                if conn.write_reply(&reply, false, false, len).is_ok() {
                    conn.close_gracefully();
                }
                return;
            }
            Next::Close => return,
        };
        let head_only = request.method == "HEAD";
        let mut keep_alive = request.keep_alive();
        let run = std::panic::AssertUnwindSafe(|| handle(state, &request));
        let (reply, fault) = std::panic::catch_unwind(run).unwrap_or_else(|_| {
            log::error!("handler panicked");
            keep_alive = false;
            (Reply::raw(500, TEXT, b"erro interno".to_vec()), None)
        });
        if let Some(wire) = &reply.wire {
            match crate::hostile::send(&mut conn.stream, wire, head_only) {
                Ok(true) if keep_alive => continue,
                Ok(_) => conn.close_gracefully(),
                Err(e) => log::debug!("hostile {} write failed: {e}", wire.kind.word()),
            }
            return;
        }
        let len = reply.body.len();
        let sent = match fault {
            Some(FaultKind::Drop) => {
                // Headers announce the whole body, half of it goes out, then the connection
                // is shut down: the client sees a genuine mid-body transfer error.
                if let Err(e) = conn.write_reply(&reply, head_only, keep_alive, len / 2) {
                    log::debug!("drop fault write failed: {e}");
                }
                let _ = conn.stream.shutdown(Shutdown::Both);
                return;
            }
            Some(FaultKind::Slow) => {
                std::thread::sleep(Duration::from_millis(state.args.slow_ms));
                conn.write_reply(&reply, head_only, keep_alive, len)
            }
            _ => conn.write_reply(&reply, head_only, keep_alive, len),
        };
        match sent {
            Err(e) => {
                log::debug!("write failed: {e}");
                return;
            }
            Ok(()) if !keep_alive => {
                conn.close_gracefully();
                return;
            }
            Ok(()) => {}
        }
    }
}

pub fn bind(host: &str, port: u16) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((host, port))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Accept loop: every connection gets its own named thread for its whole life, so no
/// connection ever waits for another one to close.
pub fn serve(listener: &TcpListener, state: &Arc<State>) {
    let mut accepted: u64 = 0;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                accepted += 1;
                let state = Arc::clone(state);
                let spawned = std::thread::Builder::new()
                    .name(format!("conn-{accepted}-{peer}"))
                    .spawn(move || serve_connection(&state, stream));
                if let Err(e) = spawned {
                    log::error!("cannot start a thread for {peer}: {e}");
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use crate::test_client::{start, Client, RANGE};

    /// tiny_http's pool left some of a burst of keep-alive connections unread until another
    /// one closed. Here all 16 must get their first answer while every connection is still
    /// open (the old server failed this about two runs in three), then finish 20 requests.
    #[test]
    fn burst_of_keep_alive_connections() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let addr = start(&["--per-day", "50", "--threads", "2"]);
        let clients = 16;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let barrier = Arc::new(std::sync::Barrier::new(clients));
        let answered = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (barrier, answered) = (Arc::clone(&barrier), Arc::clone(&answered));
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut client = Client::connect(addr);
                    for page in 1..=20 {
                        let r = client.get(&format!("/page/pedidos?{RANGE}&page={page}"));
                        assert_eq!(r.status, 200);
                        assert_eq!(r.header("Connection"), Some("keep-alive"));
                        let body: Value = serde_json::from_slice(&r.body).expect("json");
                        assert_eq!(body["pagina"], page);
                        if page == 1 {
                            answered.fetch_add(1, Ordering::SeqCst);
                            while answered.load(Ordering::SeqCst) < clients {
                                assert!(Instant::now() < deadline, "a connection was starved");
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("client thread");
        }
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        let stats = Client::connect(addr).get("/_stats");
        let stats: Value = serde_json::from_slice(&stats.body).expect("json");
        assert_eq!(stats["requests"], 16 * 20);
    }

    #[test]
    fn framing_and_connection_handling() {
        let addr = start(&["--per-day", "10"]);
        let mut c = Client::connect(addr);
        // HEAD: the GET headers, no body, connection kept.
        c.send(b"HEAD /_stats HTTP/1.1\r\nHost: x\r\n\r\n");
        let head = c.response(true);
        assert_eq!(head.status, 200);
        assert!(head.header("Content-Length").is_some_and(|l| l != "0"));
        // A body is skipped; pipelined requests are answered in order.
        c.send(b"PUT /page/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /x HTTP/1.1\r\n\r\n");
        let put = c.response(false);
        assert_eq!(
            (put.status, put.header("Allow")),
            (405, Some("GET, HEAD, POST"))
        );
        assert_eq!(c.response(false).status, 404);
        // `Connection: close` is honoured.
        c.send(b"GET /_stats HTTP/1.1\r\nConnection: close\r\n\r\n");
        let last = c.response(false);
        assert_eq!(
            (last.status, last.header("Connection")),
            (200, Some("close"))
        );
        assert!(c.closed());
        // HTTP/1.0 closes unless asked to keep alive.
        let mut c = Client::connect(addr);
        c.send(b"GET /_stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response(false).header("Connection"), Some("keep-alive"));
        c.send(b"GET /_stats HTTP/1.0\r\n\r\n");
        assert_eq!(c.response(false).header("Connection"), Some("close"));
        assert!(c.closed());
        // A malformed head is a 400, an oversized one a 431; both close.
        let mut c = Client::connect(addr);
        c.send(b"GET\x01 / HTTP/1.1\r\n\r\n");
        assert_eq!(c.response(false).status, 400);
        assert!(c.closed());
        let mut c = Client::connect(addr);
        c.send(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70_000)).as_bytes());
        assert_eq!(c.response(false).status, 431);
        assert!(c.closed());
    }
}
