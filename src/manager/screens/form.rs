//! The new-scrap form: the client, its route, then the period.

use super::super::app::{App, Form, Step};
use super::tagged;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style as Look};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;

pub(super) fn new_scrap(f: &mut Frame<'_>, area: Rect, app: &App, form: &Form) {
    let block = Block::bordered().title(format!(" {} ", tagged(app.style, "💾", "Novo scrap")));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [lists, fields, error] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(5),
        Constraint::Length(2),
    ])
    .areas(inner);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(lists);
    let clients: Vec<ListItem> = app
        .clients
        .iter()
        .map(|c| ListItem::new(format!("{} - {}", c.id, c.name)))
        .collect();
    let picked = Some(form.client);
    choices(
        f,
        left,
        clients,
        (" 1. Cliente ", form.step == Step::Client),
        picked,
    );
    // The highlighted client's routes, picked once the client is.
    let routes: Vec<ListItem> = app
        .clients
        .get(form.client)
        .map(|c| c.routes.iter().map(|r| ListItem::new(r.clone())).collect())
        .unwrap_or_default();
    let picked = (form.step != Step::Client).then_some(form.route);
    choices(
        f,
        right,
        routes,
        (" 2. Rota ", form.step == Step::Route),
        picked,
    );
    let field = |label: &str, value: &str, on: bool| {
        Line::from(vec![
            Span::styled(format!("{label:<22}"), focus(on)),
            Span::raw(format!("[{value:<10}]")),
            Span::raw(if on { " <" } else { "" }),
        ])
    };
    let lines = vec![
        field("3. De (YYYY-MM-DD):", &form.from, form.step == Step::From),
        field("4. Até (YYYY-MM-DD):", &form.to, form.step == Step::To),
        Line::from(""),
        Line::from("Datas como 2025-06-01 ou 2025/06/01."),
        Line::from("Enter no último campo cria o scrap e sua tabela raw."),
    ];
    f.render_widget(Paragraph::new(lines), fields);
    if let Some(e) = &form.error {
        f.render_widget(
            Paragraph::new(tagged(app.style, "❌", e))
                .style(Look::default().fg(Color::Red))
                .wrap(Wrap { trim: true }),
            error,
        );
    }
}

/// The look of a step: highlighted while it has the focus.
fn focus(on: bool) -> Look {
    if on {
        Look::default()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD)
    } else {
        Look::default()
    }
}

/// A titled list to pick from, its border highlighted while it has the
/// focus (`on`), `picked` marked.
fn choices(
    f: &mut Frame<'_>,
    area: Rect,
    items: Vec<ListItem<'_>>,
    (title, on): (&str, bool),
    picked: Option<usize>,
) {
    let mut state = ListState::default().with_selected(picked);
    f.render_stateful_widget(
        List::new(items)
            .block(Block::bordered().title(title).border_style(focus(on)))
            .highlight_style(Look::default().add_modifier(Modifier::REVERSED))
            .highlight_symbol(">"),
        area,
        &mut state,
    );
}
