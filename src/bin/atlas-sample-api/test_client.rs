//! A raw HTTP/1.1 client for the unit tests, on one connection so keep-alive reuse is certain,
//! and the server started on a free loopback port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::cli::test_args as args;
use crate::server::{bind, serve};
use crate::state::State;

/// A small range of three days.
pub const RANGE: &str = "data_inicial=2025-01-01&data_final=2025-01-03";

/// The server on a free loopback port, serving from a background thread.
pub fn start(extra: &[&str]) -> SocketAddr {
    let a = args(&[&["--port", "0"], extra].concat());
    let (listener, local) = bind(&a.host, a.port).expect("bind a free port");
    let state = State::new(a, local).expect("server state");
    std::thread::spawn(move || serve(&listener, &state));
    local
}

/// One response as read off the wire.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was shorter than `Content-Length` when the connection ended.
    pub cut: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }
}

/// A raw keep-alive client on one connection, so reuse is certain.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        let timeout = Some(Duration::from_secs(5));
        stream.set_read_timeout(timeout).expect("read timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk).expect("read a response");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write a request");
    }

    pub fn response(&mut self, head_only: bool) -> Response {
        let (len, status, headers) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(len) = parsed.parse(&self.buf).expect("head") {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.into(), String::from_utf8_lossy(h.value).into()))
                    .collect();
                break (len, parsed.code.expect("status"), headers);
            }
            assert!(self.fill() > 0, "connection closed before a response head");
        };
        self.buf.drain(..len);
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
            cut: false,
        };
        let length = match head_only {
            true => 0,
            false => response
                .header("Content-Length")
                .and_then(|v| v.parse().ok())
                .expect("Content-Length"),
        };
        while self.buf.len() < length {
            if self.fill() == 0 {
                response.cut = true;
                break;
            }
        }
        response.body = self.buf.drain(..length.min(self.buf.len())).collect();
        response
    }

    pub fn get(&mut self, target: &str) -> Response {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.response(false)
    }

    /// True once the server has closed its side.
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }
}
