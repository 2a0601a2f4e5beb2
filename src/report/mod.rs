//! What the user sees (SPEC §6): the seed's Portuguese lines with emoji
//! (dropped by `--plain`), the `--json` summary, and `erros_scraps.log`.

pub mod fleet;

use crate::config::Settings;
use chrono::NaiveDate;
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Writes to stdout; a reader that went away (`atlas scrap list | head -1`)
/// ends the output quietly instead of a panic. Other write errors are logged.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            log::warn!("cannot write to stdout: {e}");
        }
    }
}

/// `println!` through `out`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::report::out("\n")
    };
    ($($arg:tt)*) => {
        $crate::report::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through `out`.
#[macro_export]
macro_rules! outp {
    ($($arg:tt)*) => {
        $crate::report::out(&format!($($arg)*))
    };
}

/// Line style: with emoji, or plain for consoles that cannot show them.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub plain: bool,
}

impl Style {
    /// The style for this process's console: plain with `--plain`, and on a
    /// Windows console that cannot show emoji.
    pub fn for_console(plain_flag: bool) -> Style {
        Style {
            plain: plain_flag || crate::console::cannot_show_emoji(),
        }
    }

    /// `emoji text`, or just `text` when plain.
    pub fn line(&self, emoji: &str, text: &str) -> String {
        if self.plain {
            text.to_string()
        } else {
            format!("{emoji} {text}")
        }
    }

    /// `line` on stdout, as a result (`atlas check`, `atlas init`).
    pub fn say(&self, emoji: &str, text: &str) {
        out(&(self.line(emoji, text) + "\n"));
    }

    /// `line` on stderr: notices for the person watching (stdout carries
    /// results: ids, tables, the summary).
    pub fn note(&self, emoji: &str, text: &str) {
        eprintln!("{}", self.line(emoji, text));
    }

    fn tag(&self, emoji: &str) -> String {
        if self.plain {
            String::new()
        } else {
            format!("{emoji} ")
        }
    }

    /// `📄 Página 12 | ⏱️ 4s | 📊 6,000 registros | 🚀 1,500.0 reg/s | 🧩 3/15 fatias | ⏳ ~16s`
    pub fn progress(&self, s: &Snapshot) -> String {
        format!(
            "{}Página {} | {}{}s | {}{} registros | {}{} reg/s | {}{}/{} fatias | {}~{}",
            self.tag("📄"),
            thousands(s.pages),
            self.tag("⏱️"),
            s.elapsed.as_secs(),
            self.tag("📊"),
            thousands(s.records),
            self.tag("🚀"),
            decimal(rate(s.records, s.elapsed)),
            self.tag("🧩"),
            s.slices_done,
            s.slices_total,
            self.tag("⏳"),
            s.eta().map(short_duration).unwrap_or_else(|| "?".into()),
        )
    }

    /// `📄 Páginas 120 | ⏱️ 4s | 📊 6,000 registros | 🚀 1,500.0 reg/s`: the
    /// figures of a whole fleet (`sync --all`), after its pair count.
    pub fn fleet_progress(&self, pages: u64, records: u64, elapsed: Duration) -> String {
        format!(
            "{}Páginas {} | {}{}s | {}{} registros | {}{} reg/s",
            self.tag("📄"),
            thousands(pages),
            self.tag("⏱️"),
            elapsed.as_secs(),
            self.tag("📊"),
            thousands(records),
            self.tag("🚀"),
            decimal(rate(records, elapsed))
        )
    }

    /// The line a worker's notice is shown as.
    pub fn notice(&self, n: &Notice) -> String {
        match n {
            Notice::Waiting { slices, lease } => self.line(
                "⏳",
                &format!(
                    "Aguardando {slices} fatia(s) em uso por outro processo (lease de {}s)",
                    lease.as_secs()
                ),
            ),
            Notice::Retrying {
                attempt,
                attempts,
                wait,
                of,
            } => self.line(
                "⚠️",
                &format!(
                    "Tentativa {attempt}/{attempts} falhou{}, aguardando {:.1}s...",
                    match of {
                        Retried::Page => "",
                        Retried::Batch => " (banco de dados)",
                    },
                    wait.as_secs_f64()
                ),
            ),
            Notice::SliceFailed { from, to, error } => {
                self.line("❌", &format!("Fatia {from} até {to} falhou: {error}"))
            }
            Notice::TookOver { slices } => self.line(
                "♻️",
                &format!("{slices} fatia(s) de um processo encerrado retomada(s)"),
            ),
        }
    }
}

/// A run's figures at one tick of its ticker: the plain CLI prints them as a
/// progress line, the manager draws them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// The run these figures are of.
    pub run_id: i64,
    pub pages: u64,
    pub records: u64,
    pub inserted: u64,
    pub duplicates: u64,
    pub retries: u64,
    pub elapsed: Duration,
    /// The scrap's slices done: before this run and by it.
    pub slices_done: u64,
    /// Slices this run has failed.
    pub slices_failed: u64,
    /// The scrap's slices in all.
    pub slices_total: u64,
    /// Slices not done when the run began: what it has to work.
    pub slices_todo: u64,
}

impl Snapshot {
    /// Slices this run has finished, done or failed.
    fn finished(&self) -> u64 {
        let done_by_run = self
            .slices_done
            .saturating_sub(self.slices_total - self.slices_todo.min(self.slices_total));
        done_by_run + self.slices_failed
    }

    /// Time left at the pace of the slices this run has finished so far;
    /// `None` until it has finished one.
    pub fn eta(&self) -> Option<Duration> {
        let finished = self.finished();
        let left = self.slices_todo.saturating_sub(finished);
        if left == 0 {
            return Some(Duration::ZERO);
        }
        (finished > 0).then(|| self.elapsed.mul_f64(left as f64 / finished as f64))
    }
}

/// `45s`, `2m05s`, `1h02m`: an ETA, rounded to what a person reads.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// What a run tells whoever watches it: the manager receives these instead
/// of the CLI's stderr lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    /// The ticker's figures.
    Progress(Snapshot),
    /// A worker's notice (a retry, a failed slice).
    Notice(Notice),
    /// One of the run's own lines (`🚀 Iniciando ETL…`), already styled.
    Note(Kind, String),
}

impl Watch {
    /// The line `emoji text` in `style`, of the kind its emoji says.
    pub fn note(style: Style, emoji: &str, text: &str) -> Watch {
        Watch::Note(Kind::of_emoji(emoji), style.line(emoji, text))
    }
}

/// What a run's line is, for a screen that shows progress and trouble
/// apart (the manager).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// How the run goes: starting, the period, a sync's pair.
    Progress,
    /// Something went wrong and was or will be recovered: a retry, failed
    /// slices left for a rerun.
    Warning,
    /// Something failed: a slice, the run.
    Error,
}

impl Kind {
    /// The kind the seed's emoji marks: `❌` an error, `⚠️` a warning,
    /// anything else progress. Lines pick their emoji by what they say, so
    /// the emoji (given even under `--plain`, which only hides it) is the
    /// one place the kind is chosen.
    pub fn of_emoji(emoji: &str) -> Kind {
        match emoji.trim_end_matches('\u{fe0f}') {
            "❌" => Kind::Error,
            "⚠" => Kind::Warning,
            _ => Kind::Progress,
        }
    }
}

impl Notice {
    /// What the notice is: a retry is a warning, a slice given up an error.
    pub fn kind(&self) -> Kind {
        match self {
            Notice::Waiting { .. } | Notice::TookOver { .. } => Kind::Progress,
            Notice::Retrying { .. } => Kind::Warning,
            Notice::SliceFailed { .. } => Kind::Error,
        }
    }
}

/// Where a run's lines go: stderr for the CLI, or a watcher's channel.
#[derive(Clone, Copy)]
pub struct Feed<'a> {
    pub style: Style,
    pub sink: Option<&'a crossbeam::channel::Sender<Watch>>,
}

impl Feed<'_> {
    /// `Style::note`, or the same line sent to the watcher.
    pub fn note(&self, emoji: &str, text: &str) {
        match self.sink {
            // A watcher that went away has nobody left to tell.
            Some(tx) => drop(tx.send(Watch::note(self.style, emoji, text))),
            None => self.style.note(emoji, text),
        }
    }
}

/// What a worker thread has to tell the user. Workers never print: they
/// send notices, and the main thread shows them between progress lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Every free slice is taken; other processes hold `slices` more.
    Waiting { slices: i64, lease: Duration },
    /// An attempt failed and will be made again after `wait`.
    Retrying {
        attempt: u32,
        attempts: u32,
        wait: Duration,
        of: Retried,
    },
    /// Slices of a dead process of this machine were taken over.
    TookOver { slices: u64 },
    /// A slice gave up; the run goes on with the others.
    SliceFailed {
        from: NaiveDate,
        to: NaiveDate,
        error: String,
    },
}

/// What a retried attempt was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// Fetching a page from the API.
    Page,
    /// Committing a batch to the database.
    Batch,
}

pub fn rate(n: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// `1234567` -> `1,234,567` (the seed's format).
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1500.04` -> `1,500.0`.
pub fn decimal(x: f64) -> String {
    let x = if x.is_finite() && x >= 0.0 { x } else { 0.0 };
    let tenths = (x * 10.0).round() as u64;
    format!("{}.{}", thousands(tenths / 10), tenths % 10)
}

/// Left-aligned columns separated by two spaces, widths by character count;
/// each line ends with its last cell (no trailing blanks).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = table_line(header.iter().copied(), &widths);
    for row in rows {
        out.push_str(&table_line(row.iter().map(String::as_str), &widths));
    }
    out
}

fn table_line<'a>(cells: impl Iterator<Item = &'a str>, widths: &[usize]) -> String {
    let mut s = String::new();
    for (cell, w) in cells.zip(widths) {
        s.push_str(cell);
        s.push_str(&" ".repeat(w - cell.chars().count() + 2));
    }
    s.truncate(s.trim_end().len());
    s + "\n"
}

/// The start of a text for a message: one line (line breaks become spaces)
/// of at most `max` characters; a longer text is cut to fit and ends in
/// `mark` (`"..."`, or `""` for a plain cut). Bytes are read as lossy UTF-8.
pub fn snippet(text: impl AsRef<[u8]>, max: usize, mark: &str) -> String {
    let bytes = text.as_ref();
    // A character is at most 4 bytes: this prefix holds more than `max` of
    // them whenever the whole text does.
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min((max + 1) * 4)]);
    let one = head.replace(['\n', '\r'], " ");
    if one.chars().count() <= max {
        return one;
    }
    let keep = max.saturating_sub(mark.chars().count());
    one.chars().take(keep).collect::<String>() + mark
}

/// The `--json` object of a command that ended in an error instead of its
/// result (usage, config, database, a grant refused before the run): the
/// error's text (already masked where it was built) and the exit code.
pub fn error_object(error: &str, exit_code: u8) -> serde_json::Value {
    serde_json::json!({
        "status": "error",
        "error": error,
        "exit_code": exit_code,
        "version": crate::version::version(),
    })
}

/// The `status` of a run's summary when the API refused the credentials.
pub const AUTH_REFUSED: &str = "auth_refused";

/// The `--json` object (SPEC §6). New keys may be added; these keep their meaning.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scrap_id: i64,
    pub run_id: Option<i64>,
    pub client: String,
    pub route: String,
    pub table: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub status: String,
    pub records_fetched: i64,
    pub inserted: i64,
    pub duplicates: i64,
    pub out_of_period: i64,
    pub undated: i64,
    /// Records stored with U+0000 replaced by U+FFFD.
    pub sanitised: i64,
    pub pages: i64,
    pub slices_done: i32,
    pub slices_failed: i32,
    pub slices_total: i64,
    /// Of `slices_done`, those holding a day that had not ended (or
    /// settled) when loaded: recorded `open`, fetched again by the next sync.
    pub slices_open: i32,
    /// Slices this run loaded.
    pub slices_done_by_run: i32,
    /// Slices other processes loaded while this run worked the scrap
    /// (some perhaps after this run gave up on them).
    pub slices_done_elsewhere: i32,
    pub retries: i64,
    /// Requests this run sent, by the class of their answer's status.
    pub http_requests: crate::requests::Requests,
    /// Of those, the answers 429 (Too Many Requests).
    pub http_429: i64,
    pub elapsed_secs: f64,
    pub records_per_sec: f64,
    pub exit_code: u8,
    /// The build that ran (`crate::version::version`).
    pub version: String,
    /// The settings the run used (four of them shown).
    pub settings: Settings,
    /// `sync` only: the last day fully loaded for (client, route) after the
    /// run (`null` when none is); absent from `scrap run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_until: Option<Option<NaiveDate>>,
    /// `sync` only: days of its range not fetched because a scrap of the
    /// pair had loaded them already; absent from `scrap run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_skipped: Option<i64>,
}

impl Summary {
    /// Adds the counters of an earlier run of the same sync (a resumed
    /// scrap) to this one's: the sync's summary is of both.
    pub fn absorb(&mut self, earlier: &Summary) {
        self.records_fetched += earlier.records_fetched;
        self.inserted += earlier.inserted;
        self.duplicates += earlier.duplicates;
        self.out_of_period += earlier.out_of_period;
        self.undated += earlier.undated;
        self.sanitised += earlier.sanitised;
        self.pages += earlier.pages;
        self.retries += earlier.retries;
        self.slices_done_by_run += earlier.slices_done_by_run;
        self.slices_done_elsewhere += earlier.slices_done_elsewhere;
        self.elapsed_secs += earlier.elapsed_secs;
    }

    /// The seed's statistics block plus the idempotence counters.
    /// The first line: how the run ended, from its exit code and status.
    fn headline(&self, s: Style) -> Option<String> {
        let id = self.scrap_id;
        match self.exit_code {
            0 => None,
            130 => Some(s.line(
                "⏹️",
                &format!("Interrompido: scrap {id} incompleto; rode de novo para retomar"),
            )),
            3 if self.status == AUTH_REFUSED => Some(s.line(
                "⛔",
                &format!("Credenciais recusadas pela API: scrap {id} incompleto"),
            )),
            3 => Some(s.line(
                "⛔",
                &format!("Scrap {id} parou: banco de dados ou ambiente indisponível"),
            )),
            _ => Some(s.line("❌", &format!("Scrap {id} terminou com falhas"))),
        }
    }

    /// The statistics block; its first line says how the run ended.
    pub fn render(&self, s: Style) -> String {
        let n = |x: i64| thousands(x.max(0) as u64);
        let total = format!("Total de registros coletados: {}", n(self.records_fetched));
        let headline = self.headline(s);
        let lines = [
            match &headline {
                None => s.line("✅", &total),
                Some(h) => format!("{h}\n{}", s.line("📥", &total)),
            },
            s.line("📊", &format!("Tabela: {}", self.table)),
            s.line("📅", &format!("Período: {} até {}", self.from, self.to)),
            s.line(
                "⏱️",
                &format!("Tempo total: {}s", self.elapsed_secs.round() as u64),
            ),
            s.line(
                "🚀",
                &format!(
                    "Taxa média: {} registros/segundo",
                    decimal(self.records_per_sec)
                ),
            ),
            s.line("📄", &format!("Páginas processadas: {}", n(self.pages))),
            s.line(
                "🧵",
                &format!(
                    "Multithreading: {}",
                    if self.settings.threads > 1 {
                        "Ativo"
                    } else {
                        "Inativo"
                    }
                ),
            ),
            s.line(
                "⚙️",
                &format!(
                    "Configurações aplicadas: Retry={}, Batch={}",
                    self.settings.retry_max, self.settings.batch_export
                ),
            ),
            s.line("💾", &format!("Inseridos: {}", n(self.inserted))),
            s.line(
                "♻️",
                &format!("Duplicados ignorados: {}", n(self.duplicates)),
            ),
            s.line("📆", &format!("Fora do período: {}", n(self.out_of_period))),
            s.line("❔", &format!("Sem data: {}", n(self.undated))),
            s.line(
                "🧼",
                &format!("Saneados (U+0000 → U+FFFD): {}", n(self.sanitised)),
            ),
            s.line(
                "🧩",
                &format!(
                    "Fatias concluídas: {} de {} | com falha: {}",
                    self.slices_done, self.slices_total, self.slices_failed
                ),
            ),
        ];
        let mut out = lines.join("\n");
        if self.slices_open > 0 {
            out.push('\n');
            out.push_str(&s.line(
                "🌗",
                &format!(
                    "Fatias com dia em aberto: {} (buscadas de novo na próxima sincronização)",
                    self.slices_open
                ),
            ));
        }
        out.push('\n');
        out
    }
}

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
    fn numbers_like_the_seed() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_250), "1,250");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(decimal(1500.04), "1,500.0");
        assert_eq!(decimal(27.77), "27.8");
        assert_eq!(decimal(f64::NAN), "0.0");
    }

    #[test]
    fn table_aligns_by_characters() {
        let t = table(
            &["a", "bb"],
            &[
                vec!["ção".into(), "x".into()],
                vec!["1".into(), "yy".into()],
            ],
        );
        assert_eq!(t, "a    bb\nção  x\n1    yy\n");
        // An empty last cell leaves no trailing blanks.
        assert_eq!(
            table(&["a", "b"], &[vec!["x".into(), "".into()]]),
            "a  b\nx\n"
        );
    }

    #[test]
    fn snippet_is_one_line_and_bounded() {
        assert_eq!(snippet(b"a\nb\r\nc", 10, ""), "a b  c");
        assert_eq!(snippet("ção".repeat(100), 4, ""), "ção\u{e7}");
        // Cut to `max` characters in all, the mark included.
        assert_eq!(snippet("x".repeat(120), 120, "..."), "x".repeat(120));
        assert_eq!(
            snippet("x".repeat(121), 120, "..."),
            "x".repeat(117) + "..."
        );
        // Four-byte characters: the cut is still by characters.
        assert_eq!(snippet("😀".repeat(6), 5, "..."), "😀😀...");
        assert_eq!(snippet(b"ok\xff", 10, "..."), "ok\u{fffd}");
    }

    #[test]
    fn progress_line_with_and_without_emoji() {
        let snap = Snapshot {
            run_id: 1,
            pages: 12,
            records: 6000,
            elapsed: Duration::from_secs(4),
            slices_done: 8,
            slices_total: 15,
            slices_todo: 10,
            ..Default::default()
        };
        let s = Style { plain: false }.progress(&snap);
        assert_eq!(
            s,
            "📄 Página 12 | ⏱️ 4s | 📊 6,000 registros | 🚀 1,500.0 reg/s | 🧩 8/15 fatias | ⏳ ~9s"
        );
        let p = Style { plain: true }.progress(&snap);
        assert_eq!(
            p,
            "Página 12 | 4s | 6,000 registros | 1,500.0 reg/s | 8/15 fatias | ~9s"
        );
    }

    #[test]
    fn eta_follows_the_pace_of_finished_slices() {
        let at = |secs, done, failed| Snapshot {
            run_id: 1,
            elapsed: Duration::from_secs(secs),
            slices_done: done,
            slices_failed: failed,
            slices_total: 20,
            slices_todo: 12,
            ..Default::default()
        };
        // 8 were done before the run: nothing finished yet, no pace.
        assert_eq!(at(3, 8, 0).eta(), None);
        // 3 of 12 finished in 6s: 9 left take 18s.
        assert_eq!(at(6, 10, 1).eta(), Some(Duration::from_secs(18)));
        assert_eq!(at(9, 20, 0).eta(), Some(Duration::ZERO));
        assert_eq!(
            Style { plain: true }
                .progress(&at(3, 8, 0))
                .rsplit(" | ")
                .next(),
            Some("~?")
        );
        assert_eq!(short_duration(Duration::from_secs(45)), "45s");
        assert_eq!(short_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn notices_read_like_the_seed() {
        let s = Style { plain: false };
        let wait = Duration::from_millis(1040);
        let retry = |of| Notice::Retrying {
            attempt: 3,
            attempts: 10,
            wait,
            of,
        };
        assert_eq!(
            s.notice(&retry(Retried::Page)),
            "⚠️ Tentativa 3/10 falhou, aguardando 1.0s..."
        );
        assert_eq!(
            s.notice(&retry(Retried::Batch)),
            "⚠️ Tentativa 3/10 falhou (banco de dados), aguardando 1.0s..."
        );
        let waiting = Notice::Waiting {
            slices: 2,
            lease: Duration::from_secs(30),
        };
        assert_eq!(
            Style { plain: true }.notice(&waiting),
            "Aguardando 2 fatia(s) em uso por outro processo (lease de 30s)"
        );
        assert_eq!(
            Style { plain: true }.notice(&Notice::TookOver { slices: 3 }),
            "3 fatia(s) de um processo encerrado retomada(s)"
        );
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let failed = Notice::SliceFailed {
            from: d("2025-01-01"),
            to: d("2025-01-07"),
            error: "page 2: HTTP 404".into(),
        };
        assert_eq!(
            s.notice(&failed),
            "❌ Fatia 2025-01-01 até 2025-01-07 falhou: page 2: HTTP 404"
        );
    }

    #[test]
    fn a_line_is_of_the_kind_its_emoji_says_even_plain() {
        let plain = Style { plain: true };
        for (emoji, kind) in [
            ("❌", Kind::Error),
            ("⚠️", Kind::Warning),
            ("⚠", Kind::Warning),
            ("🚀", Kind::Progress),
            ("♻️", Kind::Progress),
        ] {
            assert_eq!(
                Watch::note(plain, emoji, "x"),
                Watch::Note(kind, "x".into())
            );
        }
        let retry = Notice::Retrying {
            attempt: 1,
            attempts: 2,
            wait: Duration::ZERO,
            of: Retried::Page,
        };
        assert_eq!(retry.kind(), Kind::Warning);
        assert_eq!(Notice::TookOver { slices: 1 }.kind(), Kind::Progress);
    }

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
