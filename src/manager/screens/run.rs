//! The run's screen: while it works, its gauge, figures and last lines;
//! once over, its summary over its last lines.

use super::super::app::{App, Finished, Job};
use super::{bare, tagged};
use crate::report::{self, decimal, short_duration, thousands, Kind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style as Look};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Wrap};
use ratatui::Frame;

pub(super) fn run(f: &mut Frame<'_>, area: Rect, app: &App, job: &Job) {
    let st = app.style;
    let title = match &job.finished {
        None if app.stopping => tagged(st, "⏹️", &format!("Parando: {}", job.title)),
        None => tagged(st, "▶️", &format!("Executando: {}", job.title)),
        Some(Finished::Summary { exit: 0, .. }) => {
            tagged(st, "✅", &format!("Concluído: {}", job.title))
        }
        Some(_) => tagged(st, "⏹️", &format!("Terminado: {}", job.title)),
    };
    let block = Block::bordered().title(format!(" {title} "));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if let Some(end) = &job.finished {
        let text = match end {
            Finished::Summary { exit, text } => {
                let mut t: Vec<String> = text.lines().map(bare).collect();
                t.push(String::new());
                t.push(format!("código de saída: {exit}"));
                t
            }
            Finished::Nothing(line) => vec![bare(line)],
            Finished::Error(e) => vec![tagged(st, "❌", &format!("Erro: {e}"))],
        };
        let [top, rest] =
            Layout::vertical([Constraint::Length(text.len() as u16), Constraint::Min(0)])
                .areas(inner);
        f.render_widget(
            Paragraph::new(text.into_iter().map(Line::from).collect::<Vec<_>>())
                .wrap(Wrap { trim: false }),
            top,
        );
        last_lines(f, rest, app, job);
        return;
    }
    let [gauge, figures, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(5),
        Constraint::Min(0),
    ])
    .areas(inner);
    let s = job.snapshot.unwrap_or_default();
    let ratio = if s.slices_total > 0 {
        (s.slices_done as f64 / s.slices_total as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    f.render_widget(
        Gauge::default()
            .gauge_style(Look::default().fg(Color::Green))
            .ratio(ratio)
            .label(format!(
                "{}/{} fatias ({:.0}%)",
                s.slices_done,
                s.slices_total,
                ratio * 100.0
            )),
        gauge,
    );
    let eta = s.eta().map(short_duration).unwrap_or_else(|| "?".into());
    let lines = vec![
        Line::from(format!(
            "{}   {}   {}",
            tagged(st, "📄", &format!("Páginas: {}", thousands(s.pages))),
            tagged(st, "📊", &format!("Registros: {}", thousands(s.records))),
            tagged(st, "⏱️", &format!("Tempo: {}s", s.elapsed.as_secs())),
        )),
        Line::from(format!(
            "{}   {}",
            tagged(
                st,
                "🚀",
                &format!(
                    "Taxa: {} reg/s",
                    decimal(report::rate(s.records, s.elapsed))
                )
            ),
            tagged(st, "⏳", &format!("ETA: ~{eta}")),
        )),
        Line::from(format!(
            "{}   {}",
            tagged(st, "💾", &format!("Inseridos: {}", thousands(s.inserted))),
            tagged(
                st,
                "♻️",
                &format!("Duplicados: {}", thousands(s.duplicates))
            ),
        )),
        Line::from(format!(
            "{}   {}",
            tagged(
                st,
                "🧩",
                &format!(
                    "Fatias: {} de {} | com falha: {}",
                    s.slices_done, s.slices_total, s.slices_failed
                )
            ),
            tagged(st, "🔁", &format!("Retentativas: {}", s.retries)),
        )),
    ];
    f.render_widget(Paragraph::new(lines), figures);
    last_lines(f, rest, app, job);
}

/// The run's last lines: its progress, then its warnings and errors apart
/// (so retries do not push the progress out), each headed by what it is.
fn last_lines(f: &mut Frame<'_>, area: Rect, app: &App, job: &Job) {
    if area.height < 2 {
        return;
    }
    let st = app.style;
    // Each panel is a title line over its lines (at least one); the
    // progress gets what it needs up to half, the trouble the rest; short
    // of room (under a summary), the trouble only.
    let progress_height = if area.height < 4 {
        0
    } else {
        (job.progress.len().max(1) as u16 + 1).min(area.height / 2)
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Length(progress_height), Constraint::Min(0)]).areas(area);
    let progress = job.progress.iter().map(|l| Line::from(bare(l))).collect();
    panel(f, top, tagged(st, "📋", "Andamento"), progress, "-");
    let trouble = job
        .trouble
        .iter()
        .map(|(kind, l)| {
            let (word, colour) = match kind {
                Kind::Error => ("erro ", Color::Red),
                Kind::Warning | Kind::Progress => ("aviso", Color::Yellow),
            };
            Line::from(vec![
                Span::styled(format!("{word}  "), Look::default().fg(colour)),
                Span::raw(bare(l)),
            ])
        })
        .collect();
    let title = format!("Avisos e erros ({})", job.troubles);
    panel(f, bottom, tagged(st, "⚠️", &title), trouble, "nenhum");
}

/// A titled panel of one line per message, the newest last: the last
/// ones that fit are shown, each cut at the edge (a message is short;
/// `erros_scraps.log` and Details have errors in full).
fn panel(f: &mut Frame<'_>, area: Rect, title: String, lines: Vec<Line<'_>>, empty: &str) {
    if area.height < 2 {
        return;
    }
    let room = usize::from(area.height - 1);
    let lines = if lines.is_empty() {
        vec![Line::from(empty.to_string())]
    } else {
        let skip = lines.len().saturating_sub(room);
        lines.into_iter().skip(skip).collect()
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::TOP).title(title)),
        area,
    );
}
