//! The request log (`--request-log FILE`): one line per data request, appended and written
//! through at once, so a test can count what the server saw (429s, attempts per URL) while
//! the server still runs.
//!
//! A line is `<unix_ms> <status> <url>`: the wall-clock time the request was read, in
//! milliseconds since the Unix epoch; the status sent; and the request's URL key, the same
//! one `--fail-first` counts by (path, then `?` and the query re-encoded without the auth
//! parameter, so no credential is written). Lines appear in the order the replies were
//! decided.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::state::lock;

pub struct RequestLog {
    file: Mutex<File>,
}

impl RequestLog {
    /// Opens `path` for appending, creating it if needed; the error names the path.
    pub fn open(path: &Path) -> io::Result<RequestLog> {
        let opened = OpenOptions::new().create(true).append(true).open(path);
        let file =
            opened.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(RequestLog {
            file: Mutex::new(file),
        })
    }

    /// Appends one line with a single unbuffered write, so lines never interleave and each is
    /// in the file when this returns. A failed write is logged and otherwise ignored.
    pub fn write(&self, started: SystemTime, status: u16, url_key: &str) {
        let line = line(started, status, url_key);
        if let Err(e) = lock(&self.file).write_all(line.as_bytes()) {
            log::warn!("cannot write the request log: {e}");
        }
    }
}

fn line(started: SystemTime, status: u16, url_key: &str) -> String {
    let unix_ms = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{unix_ms} {status} {url_key}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn line_format() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_733_040_000_123);
        let got = line(at, 429, "/page/pedidos?page=2");
        assert_eq!(got, "1733040000123 429 /page/pedidos?page=2\n");
    }
}
