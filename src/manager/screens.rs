//! Drawing: one function per screen (Scraps with its day strip, the
//! new-scrap form, details, the run's live view and summary), the quit
//! question, and the too-small notice. Reads the [`App`], changes nothing.
//!
//! Emoji only through `Style` (none with `--plain`), and never with the
//! variation selector U+FE0F: terminals disagree on its width, so a line
//! holding one would push the border out of place.

use super::app::{App, Finished, Form, Job, Screen, Step};
use super::query::{DaySpan, Details};
use crate::ledger::{ScrapStatus, SliceStatus};
use crate::report::{self, decimal, short_duration, thousands, Kind, Style};
use crate::scrap_rows;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style as Look};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Clear, Gauge, List, ListItem, ListState, Paragraph, Row, Table, TableState,
    Wrap,
};
use ratatui::Frame;

/// The smallest terminal every screen fits in.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 20;

/// Draws the screen on show.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(f, area);
        return;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(2),
    ])
    .areas(area);
    header(f, head, app);
    match &app.screen {
        Screen::Scraps => scraps(f, body, app),
        Screen::Form(form) => new_scrap(f, body, app, form),
        Screen::Details => details(f, body, app),
        Screen::Run => match &app.job {
            Some(job) => run(f, body, app, job),
            None => scraps(f, body, app),
        },
    }
    footer(f, foot, app);
    if app.confirm_quit {
        confirm(f, area);
    }
}

/// Drops U+FE0F (see the module doc).
fn bare(s: &str) -> String {
    s.replace('\u{fe0f}', "")
}

/// `emoji text` with the style's emoji, made safe to draw.
fn tagged(style: Style, emoji: &str, text: &str) -> String {
    bare(&style.line(emoji, text))
}

fn bold() -> Look {
    Look::default().add_modifier(Modifier::BOLD)
}

fn too_small(f: &mut Frame<'_>, area: Rect) {
    let text = format!(
        "Terminal pequeno demais ({}x{}): o manager precisa de pelo menos {MIN_WIDTH}x{MIN_HEIGHT}. \
         Aumente a janela, ou q para sair.",
        area.width, area.height
    );
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

fn header(f: &mut Frame<'_>, area: Rect, app: &App) {
    let mut spans = vec![Span::styled(
        tagged(app.style, "⚡", "Atlas Data Flow Manager - Scraps de ETL"),
        bold(),
    )];
    if let Some(e) = &app.db_error {
        spans.push(Span::styled(
            format!("  banco indisponível: {}", report::snippet(e, 60, "...")),
            Look::default().fg(Color::Red),
        ));
    } else if let Some(job) = app.job.as_ref().filter(|j| j.running()) {
        spans.push(Span::styled(
            format!("  em execução: {}", job.title),
            Look::default().fg(Color::Yellow),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn footer(f: &mut Frame<'_>, area: Rect, app: &App) {
    let keys = match &app.screen {
        Screen::Scraps => {
            "↑/↓ selecionar  Enter detalhes  n novo scrap  r executar  s sincronizar  v execução  q sair"
        }
        Screen::Form(_) => "↑/↓ escolher  Enter confirmar  Backspace apagar  Esc cancelar",
        Screen::Details => "↑/↓/←/→ PgUp/PgDn rolar  r executar  Esc voltar  q sair",
        Screen::Run if app.job_running() => "Esc voltar à lista (a execução continua)  q sair",
        Screen::Run => "Esc voltar à lista  q sair",
    };
    let message = app.message.clone().unwrap_or_default();
    let lines = vec![
        Line::from(Span::styled(message, Look::default().fg(Color::Cyan))),
        Line::from(Span::styled(keys, Look::default().fg(Color::DarkGray))),
    ];
    f.render_widget(Paragraph::new(lines), area);
}

/// How a status is drawn: a day's cell (fancy and `--plain`), its colour
/// (also of the status word in tables) and its word in the legend. One arm
/// per status: a new status is one more arm and one more legend entry.
struct DayLook {
    fancy: &'static str,
    plain: &'static str,
    colour: Color,
    word: &'static str,
}

fn look_of(s: SliceStatus) -> DayLook {
    let (fancy, plain, colour, word) = match s {
        SliceStatus::Done => ("█", "#", Color::Green, "concluído"),
        SliceStatus::Failed => ("✗", "x", Color::Red, "falhou"),
        SliceStatus::Running => ("▶", ">", Color::Yellow, "em execução"),
        SliceStatus::Pending => ("·", ".", Color::Gray, "pendente"),
        SliceStatus::Open => ("◐", "o", Color::Cyan, "dia em aberto"),
    };
    DayLook {
        fancy,
        plain,
        colour,
        word,
    }
}

/// The day strip's legend, in this order.
const LEGEND: [SliceStatus; 5] = [
    SliceStatus::Done,
    SliceStatus::Open,
    SliceStatus::Failed,
    SliceStatus::Running,
    SliceStatus::Pending,
];

/// The status word of a scrap or slice, coloured.
fn status_look(s: SliceStatus) -> Look {
    Look::default().fg(look_of(s).colour)
}

/// The Scraps table's columns; the status is coloured.
const STATUS_COLUMN: usize = 4;
const SCRAP_HEADERS: [&str; 9] = [
    "id",
    "cliente",
    "rota",
    "período",
    "status",
    "fatias\nok/falha/total",
    "inseridos",
    "duplicados",
    "última execução",
];

/// One scrap's cells in the Scraps table.
fn scrap_cells(s: &ScrapStatus) -> [String; 9] {
    let count = |n: i64| thousands(n.max(0) as u64);
    [
        s.scrap.id.to_string(),
        s.scrap.client.clone(),
        s.scrap.route.clone(),
        format!("{} até {}", s.scrap.from, s.scrap.to),
        s.status.to_string(),
        format!("{}/{}/{}", s.done, s.failed, s.slices),
        count(s.inserted),
        count(s.duplicates),
        s.last_run
            .as_ref()
            .map(|(t, st)| format!("{} ({st})", t.format("%Y-%m-%d %H:%M")))
            .unwrap_or_else(|| "-".into()),
    ]
}

fn scraps(f: &mut Frame<'_>, area: Rect, app: &App) {
    let strip_height = strip_lines(app, area.width.saturating_sub(2)) + 2;
    let [table_area, strip_area] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(strip_height)]).areas(area);
    let cells: Vec<[String; 9]> = app.scraps.iter().map(scrap_cells).collect();
    // Each column as wide as its widest cell (ids, clients and routes vary
    // in length); the last takes what is left.
    let widths = SCRAP_HEADERS.iter().enumerate().map(|(i, h)| {
        if i == SCRAP_HEADERS.len() - 1 {
            return Constraint::Min(10);
        }
        let head = h.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        let widest = cells
            .iter()
            .map(|c| c[i].chars().count())
            .fold(head, usize::max);
        Constraint::Length(widest as u16)
    });
    let header = Row::new(SCRAP_HEADERS).height(2).style(bold());
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

/// The cell of one day: a symbol and a colour per status.
fn cell(style: Style, s: SliceStatus) -> Span<'static> {
    let look = look_of(s);
    Span::styled(
        if style.plain { look.plain } else { look.fancy },
        Look::default().fg(look.colour),
    )
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

fn new_scrap(f: &mut Frame<'_>, area: Rect, app: &App, form: &Form) {
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
    let focus = |on: bool| {
        if on {
            Look::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Look::default()
        }
    };
    let clients: Vec<ListItem> = app
        .clients
        .iter()
        .map(|c| ListItem::new(format!("{} - {}", c.id, c.name)))
        .collect();
    let mut state = ListState::default().with_selected(Some(form.client));
    f.render_stateful_widget(
        List::new(clients)
            .block(
                Block::bordered()
                    .title(" 1. Cliente ")
                    .border_style(focus(form.step == Step::Client)),
            )
            .highlight_style(Look::default().add_modifier(Modifier::REVERSED))
            .highlight_symbol(">"),
        left,
        &mut state,
    );
    // The highlighted client's routes, picked once the client is.
    let routes: Vec<ListItem> = app
        .clients
        .get(form.client)
        .map(|c| c.routes.iter().map(|r| ListItem::new(r.clone())).collect())
        .unwrap_or_default();
    let mut state =
        ListState::default().with_selected((form.step != Step::Client).then_some(form.route));
    f.render_stateful_widget(
        List::new(routes)
            .block(
                Block::bordered()
                    .title(" 2. Rota ")
                    .border_style(focus(form.step == Step::Route)),
            )
            .highlight_style(Look::default().add_modifier(Modifier::REVERSED))
            .highlight_symbol(">"),
        right,
        &mut state,
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

/// The facts `scrap show` prints, as lines, in Portuguese.
pub fn details_text(d: &Details) -> Vec<String> {
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

fn details(f: &mut Frame<'_>, area: Rect, app: &App) {
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

fn run(f: &mut Frame<'_>, area: Rect, app: &App, job: &Job) {
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

fn confirm(f: &mut Frame<'_>, area: Rect) {
    let w = 60.min(area.width);
    let h = 5.min(area.height);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(vec![
            Line::from("Uma execução está em andamento."),
            Line::from("Parar (como Ctrl-C) e sair? y = sim, n = não"),
        ])
        .block(
            Block::bordered()
                .title(" Sair ")
                .border_style(Look::default().fg(Color::Yellow)),
        ),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::super::app::{ClientChoice, Form, Job, Screen, Step};
    use super::super::query::{DaySpan, Details};
    use super::*;
    use crate::config::{Layer, Settings};
    use crate::ledger::{RunInfo, RunStatus, Scrap, SliceInfo};
    use crate::report::{Notice, Retried, Snapshot, Summary, Watch};
    use chrono::{NaiveDate, TimeZone, Utc};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::time::Duration;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// The screen as text lines, drawn at `w` x `h`.
    fn render(app: &App, w: u16, h: u16) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
            .collect()
    }

    fn screen_has(lines: &[String], text: &str) {
        assert!(
            lines.iter().any(|l| l.contains(text)),
            "'{text}' not on screen:\n{}",
            lines.join("\n")
        );
    }

    fn app(plain: bool) -> App {
        let mut a = App::new(
            Style { plain },
            vec![
                ClientChoice {
                    id: "2151".into(),
                    name: "Loja Teste".into(),
                    routes: vec!["itens".into(), "pedidos".into()],
                },
                ClientChoice {
                    id: "3300".into(),
                    name: "Outra Loja".into(),
                    routes: vec!["notas".into()],
                },
            ],
        );
        let row = |id, status, done, failed, (inserted, duplicates)| ScrapStatus {
            scrap: Scrap {
                id,
                client: "2151".into(),
                route: "pedidos".into(),
                raw_table: "dados_raw_cliente_2151_pedidos".into(),
                from: d("2025-06-01"),
                to: d("2025-06-06"),
                slice_days: 1,
                created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            },
            status,
            slices: 6,
            done,
            failed,
            inserted,
            duplicates,
            last_run: Some((
                Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
                RunStatus::Failed,
            )),
        };
        a.set_scraps(vec![
            row(8, SliceStatus::Running, 2, 1, (1500, 20)),
            // Every record already loaded: nothing inserted.
            row(7, SliceStatus::Done, 6, 0, (0, 3000)),
        ]);
        let span = |f: &str, t: &str, status| DaySpan {
            from: d(f),
            to: d(t),
            status,
        };
        a.days = vec![
            span("2025-06-01", "2025-06-02", SliceStatus::Done),
            span("2025-06-03", "2025-06-03", SliceStatus::Failed),
            span("2025-06-04", "2025-06-04", SliceStatus::Running),
            span("2025-06-05", "2025-06-06", SliceStatus::Pending),
        ];
        a
    }

    #[test]
    fn the_scraps_screen_lists_newest_first_with_the_day_strip() {
        let mut a = app(true);
        a.message = Some("Scrap 8 criado: 6 fatia(s), tabela t".into());
        let s = render(&a, 120, 30);
        screen_has(&s, "Atlas Data Flow Manager - Scraps de ETL");
        screen_has(&s, "Scraps (2)");
        screen_has(
            &s,
            "status  fatias         inseridos duplicados última execução",
        );
        screen_has(&s, "ok/falha/total");
        let first = s
            .iter()
            .position(|l| l.contains(">8 "))
            .expect("8 selected");
        let second = s.iter().position(|l| l.contains(" 7 ")).expect("7 listed");
        assert!(first < second, "newest first:\n{}", s.join("\n"));
        for cell in [
            "2151",
            "pedidos",
            "2025-06-01 até 2025-06-06",
            "running",
            "running 2/1/6          1,500     20         2026",
            "2026-01-02 03:04 (failed)",
        ] {
            assert!(s[first].contains(cell), "'{cell}' not in '{}'", s[first]);
        }
        assert!(
            s[second].contains("done    6/0/6          0         3,000      2026"),
            "{}",
            s[second]
        );
        screen_has(&s, "Dias do scrap 8");
        screen_has(&s, "2025-06-01 até 2025-06-06 (6 dia(s))");
        screen_has(&s, "##x>..");
        screen_has(
            &s,
            "# concluído   o dia em aberto   x falhou   > em execução   . pendente",
        );
        screen_has(&s, "Scrap 8 criado");
        screen_has(&s, "n novo scrap  r executar  s sincronizar");
        assert!(!s.concat().contains('⚡'), "--plain draws no emoji");
        let fancy = render(&app(false), 120, 30);
        screen_has(&fancy, "⚡");
        screen_has(&fancy, "██✗▶··");
    }

    #[test]
    fn the_form_shows_its_error() {
        let mut a = app(true);
        a.screen = Screen::Form(Form {
            step: Step::From,
            client: 0,
            route: 1,
            from: "2025-02-30".into(),
            to: String::new(),
            error: Some("De: '2025-02-30' não é uma data real no formato YYYY-MM-DD".into()),
        });
        let s = render(&a, 100, 30);
        screen_has(&s, "Novo scrap");
        screen_has(&s, "1. Cliente");
        screen_has(&s, ">2151 - Loja Teste");
        screen_has(&s, ">pedidos");
        screen_has(&s, "3. De (YYYY-MM-DD):   [2025-02-30] <");
        screen_has(
            &s,
            "De: '2025-02-30' não é uma data real no formato YYYY-MM-DD",
        );
        screen_has(&s, "Datas como 2025-06-01 ou 2025/06/01.");
        screen_has(&s, "Esc cancelar");
    }

    #[test]
    fn the_route_list_shows_the_highlighted_clients_routes() {
        let mut a = app(true);
        let form = |client| Form {
            step: Step::Client,
            client,
            route: 0,
            from: String::new(),
            to: String::new(),
            error: None,
        };
        a.screen = Screen::Form(form(0));
        let s = render(&a, 100, 30);
        screen_has(&s, ">2151 - Loja Teste");
        screen_has(&s, "│itens");
        screen_has(&s, "│pedidos");
        assert!(!s.concat().contains(">itens"), "no route picked yet");
        a.screen = Screen::Form(form(1));
        let s = render(&a, 100, 30);
        screen_has(&s, ">3300 - Outra Loja");
        screen_has(&s, "│notas");
        assert!(!s.concat().contains("pedidos │"), "{}", s.join("\n"));
    }

    #[test]
    fn the_details_screen_has_the_facts_of_scrap_show() {
        let mut a = app(true);
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        a.details = Some(Details {
            scrap: Scrap {
                id: 7,
                client: "2151".into(),
                route: "pedidos".into(),
                raw_table: "dados_raw_cliente_2151_pedidos".into(),
                from: d("2025-06-01"),
                to: d("2025-06-02"),
                slice_days: 1,
                created_at: t,
            },
            status: SliceStatus::Failed,
            runs: vec![RunInfo {
                id: 3,
                worker: "host:b:p:1:ab12".into(),
                started_at: t,
                finished_at: Some(t),
                status: RunStatus::Failed,
                records: 50,
                inserted: 50,
                duplicates: 0,
                slices_done: 1,
                slices_failed: 1,
            }],
            slices: vec![
                SliceInfo {
                    from: d("2025-06-01"),
                    to: d("2025-06-01"),
                    status: SliceStatus::Done,
                    pages: 5,
                    records: 50,
                    inserted: 50,
                    duplicates: 0,
                    out_of_period: 0,
                    undated: 0,
                    attempts: 1,
                    last_error: None,
                    worker: None,
                },
                SliceInfo {
                    from: d("2025-06-02"),
                    to: d("2025-06-02"),
                    status: SliceStatus::Failed,
                    pages: 0,
                    records: 0,
                    inserted: 0,
                    duplicates: 0,
                    out_of_period: 0,
                    undated: 0,
                    attempts: 5,
                    last_error: Some("page 1: HTTP 404".into()),
                    worker: None,
                },
            ],
        });
        a.screen = Screen::Details;
        let s = render(&a, 130, 30);
        screen_has(&s, "Detalhes do scrap 7");
        screen_has(&s, "scrap 7: cliente 2151, rota pedidos");
        screen_has(
            &s,
            "período: 2025-06-01 até 2025-06-02 (fatias de 1 dia(s))",
        );
        screen_has(&s, "tabela: dados_raw_cliente_2151_pedidos");
        screen_has(&s, "status: failed");
        screen_has(&s, "criado em: 2026-01-02 03:04:05 UTC");
        screen_has(&s, "execuções:");
        screen_has(
            &s,
            "execução  início               fim       status  registros  inseridos  duplicados  fatias ok/falha  processo",
        );
        screen_has(
            &s,
            "3         2026-01-02 03:04:05  03:04:05  failed  50         50         0           1/1              host:b:p:1:ab12",
        );
        screen_has(&s, "fatias:");
        screen_has(
            &s,
            "fatia       status  páginas  registros  inseridos  duplicados  fora do período  sem data  tentativas  processo  último erro",
        );
        screen_has(&s, "2025-06-02  failed  0        0          0          0           0                0         5           -         page 1: HTTP 404");
        screen_has(&s, "r executar  Esc voltar");
        for english in [
            "client ",
            "route ",
            "period:",
            "table:",
            "created:",
            "runs:",
            "slices:",
            "started",
            "worker",
            "last_error",
        ] {
            assert!(
                !s.concat().contains(english),
                "'{english}' on screen:\n{}",
                s.join("\n")
            );
        }
    }

    #[test]
    fn the_run_view_shows_progress_eta_and_warnings() {
        let mut a = app(true);
        a.started(Job::new("Scrap 8 · 2151 / pedidos".into(), Some(8)));
        a.watch(Watch::note(
            a.style,
            "🚀",
            "Iniciando ETL do cliente 2151 - Rota: pedidos",
        ));
        a.watch(Watch::Notice(Notice::SliceFailed {
            from: d("2025-06-03"),
            to: d("2025-06-03"),
            error: "page 1: HTTP 404".into(),
        }));
        a.watch(Watch::Notice(Notice::Retrying {
            attempt: 1,
            attempts: 5,
            wait: Duration::from_millis(2500),
            of: Retried::Page,
        }));
        a.watch(Watch::Progress(Snapshot {
            run_id: 1,
            pages: 12,
            records: 6000,
            inserted: 5900,
            duplicates: 100,
            retries: 1,
            elapsed: Duration::from_secs(4),
            slices_done: 3,
            slices_failed: 0,
            slices_total: 10,
            slices_todo: 9,
        }));
        let s = render(&a, 100, 30);
        screen_has(&s, "Executando: Scrap 8 · 2151 / pedidos");
        screen_has(&s, "3/10 fatias (30%)");
        screen_has(&s, "Páginas: 12   Registros: 6,000   Tempo: 4s");
        screen_has(&s, "Taxa: 1,500.0 reg/s   ETA: ~14s");
        screen_has(&s, "Inseridos: 5,900   Duplicados: 100");
        screen_has(&s, "Fatias: 3 de 10 | com falha: 0   Retentativas: 1");
        let at = |text: &str| {
            s.iter()
                .position(|l| l.contains(text))
                .unwrap_or_else(|| panic!("'{text}' not on screen:\n{}", s.join("\n")))
        };
        let progress = at("Andamento");
        let trouble = at("Avisos e erros (2)");
        assert!(progress < at("Iniciando ETL do cliente 2151 - Rota: pedidos"));
        assert!(
            trouble > at("Iniciando ETL do cliente 2151"),
            "progress first"
        );
        assert!(s[at("Tentativa 1/5")].contains("aviso  Tentativa 1/5 falhou, aguardando 2.5s..."));
        assert!(s[at("Fatia 2025-06-03")]
            .contains("erro   Fatia 2025-06-03 até 2025-06-03 falhou: page 1: HTTP 404"));
        assert!(trouble < at("Tentativa 1/5"));
        assert!(!s.concat().contains("Últimas mensagens"));
        screen_has(&s, "a execução continua");
        screen_has(&s, "em execução: Scrap 8");
    }

    #[test]
    fn the_run_view_ends_with_the_seed_summary() {
        let mut a = app(false);
        a.started(Job::new("Scrap 8 · 2151 / pedidos".into(), Some(8)));
        let settings = Settings::resolve(Layer::default(), &|_| None, &Layer::default()).unwrap();
        let summary = Summary {
            scrap_id: 8,
            run_id: Some(3),
            client: "2151".into(),
            route: "pedidos".into(),
            table: "dados_raw_cliente_2151_pedidos".into(),
            from: d("2025-06-01"),
            to: d("2025-06-06"),
            status: "done".into(),
            records_fetched: 300,
            inserted: 300,
            duplicates: 0,
            out_of_period: 0,
            undated: 0,
            sanitised: 0,
            pages: 30,
            slices_done: 6,
            slices_failed: 0,
            slices_total: 6,
            slices_open: 0,
            slices_done_by_run: 3,
            slices_done_elsewhere: 0,
            retries: 0,
            http_requests: Default::default(),
            http_429: 0,
            elapsed_secs: 2.0,
            records_per_sec: 150.0,
            exit_code: 0,
            version: "0.1.0".into(),
            settings,
            loaded_until: None,
            days_skipped: None,
        };
        a.watch(Watch::note(a.style, "🚀", "Iniciando ETL do cliente 2151"));
        for _ in 0..3 {
            a.watch(Watch::note(a.style, "⚠️", "Tentativa 1/5 falhou"));
        }
        a.watch(Watch::note(a.style, "⚠️", "1 fatia(s) com falha: veja"));
        a.finished(Finished::Summary {
            exit: 0,
            text: summary.render(a.style),
        });
        // Short of room under the summary: the trouble only, its newest.
        let s = render(&a, 100, 24);
        screen_has(&s, "Avisos e erros (4)");
        screen_has(&s, "aviso  ⚠ 1 fatia(s) com falha: veja");
        let retries = s.iter().filter(|l| l.contains("Tentativa 1/5")).count();
        assert_eq!(retries, 1, "room for two:\n{}", s.join("\n"));
        assert!(!s.concat().contains("Andamento"), "{}", s.join("\n"));
        let tall = render(&a, 100, 40);
        screen_has(&tall, "Andamento");
        screen_has(&tall, "Iniciando ETL do cliente 2151");
        let s = render(&a, 100, 30);
        screen_has(&s, "Concluído: Scrap 8 · 2151 / pedidos");
        screen_has(&s, "Total de registros coletados: 300");
        screen_has(&s, "Tabela: dados_raw_cliente_2151_pedidos");
        screen_has(&s, "Taxa média: 150.0 registros/segundo");
        screen_has(&s, "Páginas processadas: 30");
        screen_has(&s, "Fatias concluídas: 6 de 6 | com falha: 0");
        screen_has(&s, "código de saída: 0");
        assert!(
            !s.concat().contains('\u{fe0f}'),
            "no variation selector reaches the screen"
        );
        assert!(!s.concat().contains("a execução continua"));
    }

    #[test]
    fn quitting_during_a_run_asks_first() {
        let mut a = app(true);
        a.started(Job::new("Scrap 8".into(), Some(8)));
        a.confirm_quit = true;
        let s = render(&a, 100, 30);
        screen_has(&s, "Uma execução está em andamento.");
        screen_has(&s, "Parar (como Ctrl-C) e sair? y = sim, n = não");
    }

    #[test]
    fn a_terminal_too_small_says_so() {
        let s = render(&app(true), 60, 15);
        screen_has(&s, "Terminal pequeno demais (60x15): o manager precisa");
        screen_has(&s, "80x20");
        assert!(!s.concat().contains("Scraps ("), "nothing else is drawn");
        // The smallest size draws every screen.
        screen_has(&render(&app(true), MIN_WIDTH, MIN_HEIGHT), "Scraps (2)");
    }
}
