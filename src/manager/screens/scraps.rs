//! The Scraps screen: the scraps table, newest first, over the selected
//! scrap's day strip.

use super::super::app::App;
use super::super::query::DaySpan;
use super::bold;
use super::look::{cell, look_of, status_look, LEGEND};
use crate::scrap_rows;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style as Look};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};
use ratatui::Frame;

/// The Scraps table's status column, coloured.
const STATUS_COLUMN: usize = 4;

pub(super) fn scraps(f: &mut Frame<'_>, area: Rect, app: &App) {
    let strip_height = strip_lines(app, area.width.saturating_sub(2)) + 2;
    let [table_area, strip_area] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(strip_height)]).areas(area);
    let cells: Vec<Vec<String>> = app
        .scraps
        .iter()
        .map(|s| scrap_rows::scrap_cells(s, scrap_rows::Listing::Manager))
        .collect();
    // Each column as wide as its widest cell (ids, clients and routes vary
    // in length); the last takes what is left.
    let widths = scrap_rows::SCRAP_HEADERS_PT
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == scrap_rows::SCRAP_HEADERS_PT.len() - 1 {
                return Constraint::Min(10);
            }
            let head = h.lines().map(|l| l.chars().count()).max().unwrap_or(0);
            let widest = cells
                .iter()
                .map(|c| c[i].chars().count())
                .fold(head, usize::max);
            Constraint::Length(widest as u16)
        });
    let header = Row::new(scrap_rows::SCRAP_HEADERS_PT)
        .height(2)
        .style(bold());
    let rows = app.scraps.iter().zip(cells.iter()).map(|(s, c)| {
        Row::new(c.iter().enumerate().map(|(i, text)| {
            if i == STATUS_COLUMN {
                Span::styled(text.clone(), status_look(s.status))
            } else {
                Span::raw(text.clone())
            }
        }))
    });
    let title = format!(" Scraps ({}) ", app.scraps.len());
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(title))
        .row_highlight_style(Look::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol(">");
    let mut state = TableState::default().with_selected(app.selected_index());
    f.render_stateful_widget(table, table_area, &mut state);
    strip(f, strip_area, app);
}

/// Lines the strip needs for the selected scrap at `width` cells a line
/// (the range line, the cells, the legend), at most 6 of cells.
fn strip_lines(app: &App, width: u16) -> u16 {
    let days = day_count(&app.days) as u16;
    let width = width.max(1);
    2 + days.div_ceil(width).clamp(1, 6)
}

fn day_count(days: &[DaySpan]) -> usize {
    days.iter()
        .map(|d| (d.to - d.from).num_days().max(0) as usize + 1)
        .sum()
}

/// The selected scrap's days, one cell each.
fn strip(f: &mut Frame<'_>, area: Rect, app: &App) {
    let inner_width = area.width.saturating_sub(2).max(1) as usize;
    let title = match app.selected_row() {
        Some(s) => format!(" Dias do scrap {} ", s.scrap.id),
        None => " Dias ".to_string(),
    };
    let mut lines = Vec::new();
    let total = day_count(&app.days);
    if let (Some(first), Some(last)) = (app.days.first(), app.days.last()) {
        lines.push(Line::from(format!(
            "{} até {} ({total} dia(s))",
            first.from, last.to
        )));
    } else {
        lines.push(Line::from("nenhum scrap selecionado"));
    }
    let room = inner_width * 6;
    let mut cells: Vec<Span<'static>> = Vec::new();
    for d in &app.days {
        let n = (d.to - d.from).num_days().max(0) as usize + 1;
        cells.extend(std::iter::repeat_n(cell(app.style, d.status), n));
    }
    let hidden = cells.len().saturating_sub(room);
    if hidden > 0 {
        // The last cell says how many did not fit.
        cells.truncate(room.saturating_sub(12));
        cells.push(Span::raw(format!(" +{hidden} dias")));
    }
    for chunk in cells.chunks(inner_width) {
        lines.push(Line::from(chunk.to_vec()));
    }
    let mut spans = Vec::new();
    for s in LEGEND {
        spans.push(cell(app.style, s));
        spans.push(Span::raw(format!(" {}   ", look_of(s).word)));
    }
    lines.push(Line::from(spans));
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}
