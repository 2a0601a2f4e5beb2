//! `atlas-latency-proxy`: a TCP proxy that puts a server "N ms away" for
//! tests and benchmarks (a database across the network).
//!
//! Usage: `atlas-latency-proxy <listen addr> <upstream addr> <delay ms>`.
//! Prints `listening on <addr>` once bound (port 0 picks a free one), then
//! forwards every connection's bytes both ways, each chunk delivered `delay`
//! after it was read. It is a delay line, not a stop-and-wait: reading goes
//! on while earlier chunks wait, so throughput is not limited, only latency
//! added (a round trip costs twice the delay).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, delay) = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("atlas-latency-proxy: {e}");
            eprintln!("usage: atlas-latency-proxy <listen addr> <upstream addr> <delay ms>");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(&listen).unwrap_or_else(|e| {
        eprintln!("atlas-latency-proxy: cannot listen on {listen}: {e}");
        std::process::exit(2);
    });
    let addr = listener.local_addr().expect("bound address");
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
    for client in listener.incoming().flatten() {
        let upstream = upstream.clone();
        thread::spawn(move || {
            if let Err(e) = serve(client, &upstream, delay) {
                eprintln!("atlas-latency-proxy: {upstream}: {e}");
            }
        });
    }
}

/// The listen address, the upstream address and the delay each way.
fn parse(args: &[String]) -> Result<(String, String, Duration), String> {
    let [listen, upstream, ms] = args else {
        return Err(format!("expected 3 arguments, got {}", args.len()));
    };
    let ms: u64 = ms
        .parse()
        .map_err(|_| format!("delay '{ms}' is not a whole number of milliseconds"))?;
    Ok((listen.clone(), upstream.clone(), Duration::from_millis(ms)))
}

/// One connection: a delay line each way until both sides are done.
fn serve(client: TcpStream, upstream: &str, delay: Duration) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let up = delay_line(client.try_clone()?, server.try_clone()?, delay)?;
    let down = delay_line(server, client, delay)?;
    let _ = up.join();
    let _ = down.join();
    Ok(())
}

/// Copies `from` to `to`, each chunk sent `delay` after it was read: a
/// reader thread stamps chunks into a queue, this direction's sender
/// thread waits each one's due time. An end or error on either side
/// closes both ends of this direction.
fn delay_line(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
) -> std::io::Result<thread::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader_end = from.try_clone()?;
    let sender = thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                let _ = reader_end.shutdown(Shutdown::Read);
                break;
            }
        }
        // The reader is done (end of stream): pass the end on, delayed too.
        let _ = to.shutdown(Shutdown::Write);
    });
    Ok(thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // The end of stream travels as the closing of the queue, after
        // the chunks before it; the end marker is sent at its due time.
        let end = Instant::now() + delay;
        drop(tx);
        let _ = sender.join();
        let now = Instant::now();
        if end > now {
            thread::sleep(end - now);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_are_checked() {
        let (l, u, d) = parse(&args(&["127.0.0.1:0", "127.0.0.1:5432", "10"])).unwrap();
        assert_eq!((l.as_str(), u.as_str()), ("127.0.0.1:0", "127.0.0.1:5432"));
        assert_eq!(d, Duration::from_millis(10));
        assert!(parse(&args(&["a", "b"])).is_err());
        assert!(parse(&args(&["a", "b", "ten"]))
            .unwrap_err()
            .contains("ten"));
    }

    #[test]
    fn bytes_cross_both_ways_delayed() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = echo.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = front.local_addr().unwrap();
        thread::spawn(move || {
            let (c, _) = front.accept().unwrap();
            serve(c, &upstream, Duration::from_millis(30)).unwrap();
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        c.write_all(b"hello").unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"hello");
        assert!(
            t0.elapsed() >= Duration::from_millis(60),
            "{:?}",
            t0.elapsed()
        );
    }
}
