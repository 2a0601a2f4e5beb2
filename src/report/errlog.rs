//! `erros_scraps.log`: one block per error, appended by every thread.

use chrono::NaiveDate;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Context of one error block.
#[derive(Debug, Default, Clone)]
pub struct ErrorContext {
    pub scrap: Option<i64>,
    pub client: String,
    pub route: String,
    pub slice: Option<(NaiveDate, NaiveDate)>,
    pub page: Option<u64>,
    pub attempt: Option<(u32, u32)>,
    /// Already redacted.
    pub url: Option<String>,
    pub status: Option<u16>,
    pub body: Option<String>,
}

/// Line ending of the error log: the platform's, so Notepad shows it right.
const NL: &str = if cfg!(windows) { "\r\n" } else { "\n" };

/// `erros_scraps.log`: one block per error, appended, shared by all threads.
pub struct ErrorLog {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl ErrorLog {
    pub fn new(path: &Path) -> ErrorLog {
        ErrorLog {
            path: path.to_path_buf(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a block; a log that cannot be written is reported once on
    /// stderr and never stops the run.
    pub fn write(&self, what: &str, ctx: &ErrorContext, error: &str) {
        let mut block = String::new();
        block.push_str(&format!(
            "==== {} | {what}{NL}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
        if let Some(id) = ctx.scrap {
            block.push_str(&format!("scrap: {id}{NL}"));
        }
        block.push_str(&format!(
            "cliente: {} | rota: {}{NL}",
            ctx.client, ctx.route
        ));
        if let Some((f, t)) = ctx.slice {
            block.push_str(&format!("fatia: {f} até {t}{NL}"));
        }
        if let Some(p) = ctx.page {
            block.push_str(&format!("página: {p}{NL}"));
        }
        if let Some((a, m)) = ctx.attempt {
            block.push_str(&format!("tentativa: {a}/{m}{NL}"));
        }
        if let Some(u) = &ctx.url {
            block.push_str(&format!("url: {u}{NL}"));
        }
        if let Some(s) = ctx.status {
            block.push_str(&format!("http: {s}{NL}"));
        }
        if let Some(b) = ctx.body.as_deref().filter(|b| !b.is_empty()) {
            block.push_str(&format!("corpo: {b}{NL}"));
        }
        block.push_str(&format!("erro: {error}{NL}{NL}"));
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) => *guard = Some(f),
                Err(e) => {
                    log::warn!("cannot open error log {}: {e}", self.path.display());
                    return;
                }
            }
        }
        if let Some(f) = guard.as_mut() {
            if let Err(e) = f.write_all(block.as_bytes()) {
                log::warn!("cannot write error log {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_log_appends_blocks() {
        let path = std::env::temp_dir().join(format!("atlas-errlog-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = ErrorLog::new(&path);
        let ctx = ErrorContext {
            client: "2151".into(),
            route: "pedidos".into(),
            page: Some(3),
            status: Some(503),
            ..Default::default()
        };
        log.write("tentativa falhou", &ctx, "HTTP 503");
        log.write("fatia falhou", &ctx, "desistiu");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("==== ").count(), 2);
        assert!(text.contains("página: 3") && text.contains("http: 503"));
        std::fs::remove_file(&path).unwrap();
    }
}
