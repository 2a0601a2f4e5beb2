//! Drawing: one function per screen (Scraps with its day strip, the
//! new-scrap form, details, the run's live view and summary), the quit
//! question, and the too-small notice. Reads the [`App`], changes nothing.
//!
//! Emoji only through `Style` (none with `--plain`), and never with the
//! variation selector U+FE0F: terminals disagree on its width, so a line
//! holding one would push the border out of place.
//!
//! One file a screen: `scraps` (the table and the day strip, drawn in the
//! colours of `look`), `form`, `details`, `run` (the live view and the
//! summary); here the frame around them.

mod details;
mod form;
mod look;
mod run;
mod scraps;

use super::app::{App, Screen};
use crate::report::{self, Style};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style as Look};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
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
        Screen::Scraps => scraps::scraps(f, body, app),
        Screen::Form(form) => form::new_scrap(f, body, app, form),
        Screen::Details => details::details(f, body, app),
        Screen::Run => match &app.job {
            Some(job) => run::run(f, body, app, job),
            None => scraps::scraps(f, body, app),
        },
    }
    footer(f, foot, app);
    if app.confirm_quit {
        confirm(f, area);
    }
}

/// Drops U+FE0F (see the module doc).
pub(super) fn bare(s: &str) -> String {
    s.replace('\u{fe0f}', "")
}

/// `emoji text` with the style's emoji, made safe to draw.
pub(super) fn tagged(style: Style, emoji: &str, text: &str) -> String {
    bare(&style.line(emoji, text))
}

pub(super) fn bold() -> Look {
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
    use super::super::app::{ClientChoice, Finished, Form, Job, Screen, Step};
    use super::super::query::{DaySpan, Details};
    use super::*;
    use crate::config::{Layer, Settings};
    use crate::ledger::{RunInfo, RunStatus, Scrap, ScrapStatus, SliceInfo, SliceStatus};
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

    /// A form at `step`, its client and route picked by index, empty.
    fn form(step: Step, client: usize, route: usize) -> Form {
        Form {
            step,
            client,
            route,
            from: String::new(),
            to: String::new(),
            error: None,
        }
    }

    /// A one-day slice: its pages and records (all inserted), attempts and
    /// last error.
    fn slice(
        day: &str,
        status: SliceStatus,
        (pages, records): (i64, i64),
        attempts: i32,
        last_error: Option<&str>,
    ) -> SliceInfo {
        SliceInfo {
            from: d(day),
            to: d(day),
            status,
            pages,
            records,
            inserted: records,
            duplicates: 0,
            out_of_period: 0,
            undated: 0,
            attempts,
            last_error: last_error.map(String::from),
            worker: None,
        }
    }

    fn screen_has_all(lines: &[String], texts: &[&str]) {
        for text in texts {
            screen_has(lines, text);
        }
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
        screen_has_all(
            &s,
            &[
                "Atlas Data Flow Manager - Scraps de ETL",
                "Scraps (2)",
                "status  fatias         inseridos duplicados última execução",
                "ok/falha/total",
            ],
        );
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
        screen_has_all(
            &s,
            &[
                "Dias do scrap 8",
                "2025-06-01 até 2025-06-06 (6 dia(s))",
                "##x>..",
                "# concluído   o dia em aberto   x falhou   > em execução   . pendente",
                "Scrap 8 criado",
                "n novo scrap  r executar  s sincronizar",
            ],
        );
        assert!(!s.concat().contains('⚡'), "--plain draws no emoji");
        let fancy = render(&app(false), 120, 30);
        screen_has(&fancy, "⚡");
        screen_has(&fancy, "██✗▶··");
    }

    #[test]
    fn the_form_shows_its_error() {
        let mut a = app(true);
        a.screen = Screen::Form(Form {
            from: "2025-02-30".into(),
            error: Some("De: '2025-02-30' não é uma data real no formato YYYY-MM-DD".into()),
            ..form(Step::From, 0, 1)
        });
        let s = render(&a, 100, 30);
        screen_has_all(
            &s,
            &[
                "Novo scrap",
                "1. Cliente",
                ">2151 - Loja Teste",
                ">pedidos",
                "3. De (YYYY-MM-DD):   [2025-02-30] <",
                "De: '2025-02-30' não é uma data real no formato YYYY-MM-DD",
                "Datas como 2025-06-01 ou 2025/06/01.",
                "Esc cancelar",
            ],
        );
    }

    #[test]
    fn the_route_list_shows_the_highlighted_clients_routes() {
        let mut a = app(true);
        a.screen = Screen::Form(form(Step::Client, 0, 0));
        let s = render(&a, 100, 30);
        screen_has_all(&s, &[">2151 - Loja Teste", "│itens", "│pedidos"]);
        assert!(!s.concat().contains(">itens"), "no route picked yet");
        a.screen = Screen::Form(form(Step::Client, 1, 0));
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
                slice("2025-06-01", SliceStatus::Done, (5, 50), 1, None),
                slice(
                    "2025-06-02",
                    SliceStatus::Failed,
                    (0, 0),
                    5,
                    Some("page 1: HTTP 404"),
                ),
            ],
        });
        a.screen = Screen::Details;
        let s = render(&a, 130, 30);
        screen_has_all(
            &s,
            &[
                "Detalhes do scrap 7",
                "scrap 7: cliente 2151, rota pedidos",
                "período: 2025-06-01 até 2025-06-02 (fatias de 1 dia(s))",
                "tabela: dados_raw_cliente_2151_pedidos",
                "status: failed",
                "criado em: 2026-01-02 03:04:05 UTC",
                "execuções:",
                "execução  início               fim       status  registros  inseridos  duplicados  fatias ok/falha  processo",
                "3         2026-01-02 03:04:05  03:04:05  failed  50         50         0           1/1              host:b:p:1:ab12",
                "fatias:",
                "fatia       status  páginas  registros  inseridos  duplicados  fora do período  sem data  tentativas  processo  último erro",
                "2025-06-02  failed  0        0          0          0           0                0         5           -         page 1: HTTP 404",
                "r executar  Esc voltar",
            ],
        );
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
        screen_has_all(
            &s,
            &[
                "Executando: Scrap 8 · 2151 / pedidos",
                "3/10 fatias (30%)",
                "Páginas: 12   Registros: 6,000   Tempo: 4s",
                "Taxa: 1,500.0 reg/s   ETA: ~14s",
                "Inseridos: 5,900   Duplicados: 100",
                "Fatias: 3 de 10 | com falha: 0   Retentativas: 1",
            ],
        );
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
        screen_has_all(
            &s,
            &[
                "Concluído: Scrap 8 · 2151 / pedidos",
                "Total de registros coletados: 300",
                "Tabela: dados_raw_cliente_2151_pedidos",
                "Taxa média: 150.0 registros/segundo",
                "Páginas processadas: 30",
                "Fatias concluídas: 6 de 6 | com falha: 0",
                "código de saída: 0",
            ],
        );
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
