//! The Details screen: what `scrap show` prints, in Portuguese.

use super::super::app::App;
use super::super::query::Details;
use crate::scrap_rows;
use ratatui::layout::Rect;
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// The facts `scrap show` prints, as lines, in Portuguese.
pub(super) fn details_text(d: &Details) -> Vec<String> {
    let s = &d.scrap;
    let mut out = vec![
        format!("scrap {}: cliente {}, rota {}", s.id, s.client, s.route),
        format!(
            "período: {} até {} (fatias de {} dia(s))",
            s.from, s.to, s.slice_days
        ),
        format!("tabela: {}", s.raw_table),
        format!("status: {}", d.status),
        format!(
            "criado em: {}",
            s.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        String::new(),
        "execuções:".into(),
    ];
    let runs: Vec<_> = d.runs.iter().map(scrap_rows::run_cells).collect();
    out.extend(
        scrap_rows::table(&scrap_rows::RUN_HEADERS_PT, &runs)
            .lines()
            .map(String::from),
    );
    out.push(String::new());
    out.push("fatias:".into());
    let slices: Vec<_> = d.slices.iter().map(scrap_rows::slice_cells).collect();
    out.extend(
        scrap_rows::table(&scrap_rows::SLICE_HEADERS_PT, &slices)
            .lines()
            .map(String::from),
    );
    out
}

pub(super) fn details(f: &mut Frame<'_>, area: Rect, app: &App) {
    let (title, lines) = match &app.details {
        Some(d) => (
            format!(" Detalhes do scrap {} ", d.scrap.id),
            details_text(d),
        ),
        None => (" Detalhes ".to_string(), vec!["carregando...".to_string()]),
    };
    let text = Text::from(lines.into_iter().map(Line::from).collect::<Vec<_>>());
    f.render_widget(
        Paragraph::new(text)
            .block(Block::bordered().title(title))
            .scroll((app.scroll, app.hscroll)),
        area,
    );
}
