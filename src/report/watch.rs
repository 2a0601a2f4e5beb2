//! What a run tells whoever watches it (the CLI's stderr, or the manager):
//! its figures at each tick, its notices and its own lines, and how the
//! progress and notice lines read.

use super::{decimal, rate, short_duration, thousands, Style};
use chrono::NaiveDate;
use std::time::Duration;

impl Style {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
