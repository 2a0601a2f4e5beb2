//! A run's `--json` summary (SPEC §6) and the statistics block it is shown
//! as; the object of a command that ended in an error.

use super::{decimal, thousands, Style};
use crate::config::Settings;
use chrono::NaiveDate;
use serde::Serialize;

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

/// `Sincronizando C / R: scrap N`, then `how` (joined, resumed, days
/// skipped): a sync, or a fleet's pair, starts loading its scrap.
pub fn syncing_line(client: &str, route: &str, scrap: i64, how: &str) -> String {
    format!("Sincronizando {client} / {route}: scrap {scrap}{how}")
}

/// A sync with nothing new to load: up to which day the pair is loaded.
pub fn up_to_date_line(client: &str, route: &str, last: Option<NaiveDate>) -> String {
    format!(
        "Nada novo para {client} / {route}: carregado até {}",
        last.map(|d| d.to_string())
            .unwrap_or_else(|| "(nada)".into())
    )
}

/// A sync that finds another one holding the pair.
pub fn busy_line(client: &str, route: &str) -> String {
    format!("Outra sincronização de {client} / {route} está em andamento: nada a fazer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syncs_lines_name_the_pair() {
        let d = NaiveDate::from_ymd_opt(2025, 1, 31);
        assert_eq!(
            syncing_line("c", "r", 7, " (retomado)"),
            "Sincronizando c / r: scrap 7 (retomado)"
        );
        assert_eq!(
            up_to_date_line("c", "r", d),
            "Nada novo para c / r: carregado até 2025-01-31"
        );
        assert_eq!(
            up_to_date_line("c", "r", None),
            "Nada novo para c / r: carregado até (nada)"
        );
        assert_eq!(
            busy_line("c", "r"),
            "Outra sincronização de c / r está em andamento: nada a fazer"
        );
    }
}
