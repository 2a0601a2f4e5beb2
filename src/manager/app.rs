//! The manager's state and what each key does to it. Pure: a key turns the
//! state into the next one and may ask the loop for an [`Action`] (create,
//! run, sync, load details, quit); nothing here touches the terminal or the
//! database, so every screen can be set up in a test.

use super::query::{DaySpan, Details};
use crate::ledger::ScrapStatus;
use crate::report::{Kind, Snapshot, Style, Watch};
use chrono::NaiveDate;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::VecDeque;

/// How many of a run's last progress lines, and of its last warnings and
/// errors, the live view keeps.
pub const LAST_LINES: usize = 6;

/// A configured client and its routes, for the new-scrap form.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientChoice {
    pub id: String,
    pub name: String,
    pub routes: Vec<String>,
}

/// A scrap the form created.
#[derive(Debug, Clone, PartialEq)]
pub struct NewScrap {
    pub id: i64,
    pub table: String,
    pub slices: usize,
}

/// What the loop is asked to do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    /// Create a scrap as `scrap create` does.
    Create {
        client: String,
        route: String,
        from: NaiveDate,
        to: NaiveDate,
    },
    /// Load the details of a scrap.
    Details(i64),
    /// Run a scrap, as `scrap run` does.
    Run(i64),
    /// Sync a scrap's (client, route), as `atlas sync` does.
    Sync(i64),
    /// Leave now (nothing is running).
    Quit,
    /// Stop the run in progress like Ctrl-C, then leave.
    StopAndQuit,
}

/// The screen on show.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    Scraps,
    Form(Form),
    Details,
    Run,
}

/// Which field of the new-scrap form has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Client,
    Route,
    From,
    To,
}

/// The new-scrap form.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub step: Step,
    /// Index into the clients.
    pub client: usize,
    /// Index into the chosen client's routes.
    pub route: usize,
    pub from: String,
    pub to: String,
    /// Why the last Enter was refused; nothing was created.
    pub error: Option<String>,
}

/// How a run or a sync ended, as the live view shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// The run's summary (the seed's statistics block) and its exit code.
    Summary { exit: u8, text: String },
    /// A sync that ran nothing: why.
    Nothing(String),
    /// The run could not start or broke off: the error.
    Error(String),
}

/// A run or sync started from the manager: its live figures, its last
/// lines (progress apart from warnings and errors, so retries do not push
/// the progress out) and, once over, how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `Scrap 3 · 2151 / pedidos` or `Sincronização 2151 / pedidos`.
    pub title: String,
    pub scrap: Option<i64>,
    pub snapshot: Option<Snapshot>,
    /// The last progress lines.
    pub progress: VecDeque<String>,
    /// The last warnings and errors, each with its kind.
    pub trouble: VecDeque<(Kind, String)>,
    /// Warnings and errors in all, kept or not.
    pub troubles: u64,
    pub finished: Option<Finished>,
}

impl Job {
    pub fn new(title: String, scrap: Option<i64>) -> Job {
        Job {
            title,
            scrap,
            snapshot: None,
            progress: VecDeque::new(),
            trouble: VecDeque::new(),
            troubles: 0,
            finished: None,
        }
    }

    pub fn running(&self) -> bool {
        self.finished.is_none()
    }

    fn push_line(&mut self, kind: Kind, line: String) {
        fn keep<T>(lines: &mut VecDeque<T>, line: T) {
            if lines.len() == LAST_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
        match kind {
            Kind::Progress => keep(&mut self.progress, line),
            Kind::Warning | Kind::Error => {
                self.troubles += 1;
                keep(&mut self.trouble, (kind, line));
            }
        }
    }
}

/// Everything the screens draw.
#[derive(Debug, Clone)]
pub struct App {
    pub style: Style,
    pub screen: Screen,
    pub clients: Vec<ClientChoice>,
    /// The scraps, newest first, as last read.
    pub scraps: Vec<ScrapStatus>,
    /// The selected scrap's id: kept across refreshes.
    pub selected: Option<i64>,
    /// The selected scrap's slices, for the day strip.
    pub days: Vec<DaySpan>,
    pub details: Option<Details>,
    /// First line and column of the details shown.
    pub scroll: u16,
    pub hscroll: u16,
    /// The run or sync in progress, or the last one.
    pub job: Option<Job>,
    /// "Stop the run and leave?" is asked.
    pub confirm_quit: bool,
    /// The run is being stopped before leaving.
    pub stopping: bool,
    /// A line for the status bar (a scrap created, a refusal).
    pub message: Option<String>,
    /// Why the last refresh failed (the database went away).
    pub db_error: Option<String>,
}

impl App {
    pub fn new(style: Style, clients: Vec<ClientChoice>) -> App {
        App {
            style,
            screen: Screen::Scraps,
            clients,
            scraps: Vec::new(),
            selected: None,
            days: Vec::new(),
            details: None,
            scroll: 0,
            hscroll: 0,
            job: None,
            confirm_quit: false,
            stopping: false,
            message: None,
            db_error: None,
        }
    }

    /// The index of the selected scrap in the table.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.scraps.iter().position(|s| s.scrap.id == id)
    }

    pub fn selected_row(&self) -> Option<&ScrapStatus> {
        self.selected_index().map(|i| &self.scraps[i])
    }

    /// The scrap `id` as last read, if listed.
    pub fn row(&self, id: i64) -> Option<&ScrapStatus> {
        self.scraps.iter().find(|s| s.scrap.id == id)
    }

    /// A new read of the scraps; the selection follows its id, or the
    /// first (newest) scrap when it is gone.
    pub fn set_scraps(&mut self, scraps: Vec<ScrapStatus>) {
        self.scraps = scraps;
        if self.selected_index().is_none() {
            self.selected = self.scraps.first().map(|s| s.scrap.id);
        }
    }

    pub fn job_running(&self) -> bool {
        self.job.as_ref().is_some_and(Job::running)
    }

    /// A run or sync was started: its live view opens.
    pub fn started(&mut self, job: Job) {
        self.job = Some(job);
        self.screen = Screen::Run;
        self.message = None;
    }

    /// What the run says while it goes on.
    pub fn watch(&mut self, w: Watch) {
        let style = self.style;
        let Some(job) = self.job.as_mut() else { return };
        match w {
            Watch::Progress(s) => job.snapshot = Some(s),
            Watch::Notice(n) => job.push_line(n.kind(), style.notice(&n)),
            Watch::Note(kind, line) => job.push_line(kind, line),
        }
    }

    /// The run or sync is over.
    pub fn finished(&mut self, f: Finished) {
        if let Some(job) = self.job.as_mut() {
            job.finished = Some(f);
        }
    }

    /// The form created a scrap: back to the list, with it selected.
    pub fn created(&mut self, s: &NewScrap) {
        self.screen = Screen::Scraps;
        self.selected = Some(s.id);
        self.message = Some(self.style.line(
            "💾",
            &format!(
                "Scrap {} criado: {} fatia(s), tabela {}",
                s.id, s.slices, s.table
            ),
        ));
    }

    /// The form's Enter was refused: the reason stays in the form.
    pub fn refused(&mut self, error: String) {
        if let Screen::Form(f) = &mut self.screen {
            f.error = Some(error);
        }
    }

    /// What `key` does on the screen on show.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if self.confirm_quit {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Char('s') => {
                    self.confirm_quit = false;
                    self.stopping = true;
                    Action::StopAndQuit
                }
                _ if ctrl_c => Action::None,
                _ => {
                    self.confirm_quit = false;
                    Action::None
                }
            };
        }
        if self.stopping {
            return Action::None;
        }
        let typing = matches!(&self.screen, Screen::Form(_));
        if ctrl_c || (key.code == KeyCode::Char('q') && !typing) {
            return self.quit();
        }
        match self.screen.clone() {
            Screen::Scraps => self.on_list_key(key.code),
            Screen::Form(f) => self.on_form_key(f, key.code),
            Screen::Details => {
                match key.code {
                    KeyCode::Char('r') => {
                        if let Some(id) = self.details.as_ref().map(|d| d.scrap.id) {
                            return self.start(Action::Run(id));
                        }
                    }
                    KeyCode::Esc => {
                        self.screen = Screen::Scraps;
                        self.details = None;
                    }
                    KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        self.scroll = self.scroll.saturating_add(1)
                    }
                    KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(10),
                    KeyCode::PageDown => self.scroll = self.scroll.saturating_add(10),
                    KeyCode::Left => self.hscroll = self.hscroll.saturating_sub(8),
                    KeyCode::Right => self.hscroll = self.hscroll.saturating_add(8),
                    _ => {}
                }
                Action::None
            }
            Screen::Run => {
                if key.code == KeyCode::Esc {
                    self.screen = Screen::Scraps;
                }
                Action::None
            }
        }
    }

    /// `q`: leave, or ask first while a run goes on.
    fn quit(&mut self) -> Action {
        if self.job_running() {
            self.confirm_quit = true;
            Action::None
        } else {
            Action::Quit
        }
    }

    /// `start` (a run or a sync), unless one is going on: one at a time
    /// from the manager.
    fn start(&mut self, start: Action) -> Action {
        if self.job_running() {
            self.message =
                Some("Já há uma execução em andamento: v mostra, espere ela terminar".into());
            return Action::None;
        }
        start
    }

    fn on_list_key(&mut self, code: KeyCode) -> Action {
        let at = self.selected_index();
        let last = self.scraps.len().saturating_sub(1);
        let pick = |i: usize| self.scraps.get(i).map(|s| s.scrap.id);
        match code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = pick(at.map_or(0, |i| i.saturating_sub(1))).or(self.selected)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = pick(at.map_or(0, |i| (i + 1).min(last))).or(self.selected)
            }
            KeyCode::PageUp => {
                self.selected = pick(at.map_or(0, |i| i.saturating_sub(10))).or(self.selected)
            }
            KeyCode::PageDown => {
                self.selected = pick(at.map_or(0, |i| (i + 10).min(last))).or(self.selected)
            }
            KeyCode::Home => self.selected = pick(0).or(self.selected),
            KeyCode::End => self.selected = pick(last).or(self.selected),
            KeyCode::Char('n') => {
                if self.clients.is_empty() {
                    self.message = Some("Nenhum cliente no arquivo de configuração".into());
                } else {
                    self.message = None;
                    self.screen = Screen::Form(Form {
                        step: Step::Client,
                        client: 0,
                        route: 0,
                        from: String::new(),
                        to: String::new(),
                        error: None,
                    });
                }
            }
            KeyCode::Enter => {
                if let Some(id) = self.selected_row().map(|s| s.scrap.id) {
                    (self.scroll, self.hscroll) = (0, 0);
                    return Action::Details(id);
                }
            }
            KeyCode::Char('r') | KeyCode::Char('s') => {
                let Some(id) = self.selected_row().map(|s| s.scrap.id) else {
                    self.message = Some("Nenhum scrap selecionado".into());
                    return Action::None;
                };
                return self.start(if code == KeyCode::Char('r') {
                    Action::Run(id)
                } else {
                    Action::Sync(id)
                });
            }
            KeyCode::Char('v') if self.job.is_some() => self.screen = Screen::Run,
            _ => {}
        }
        Action::None
    }

    fn on_form_key(&mut self, mut f: Form, code: KeyCode) -> Action {
        if code == KeyCode::Esc {
            self.screen = Screen::Scraps;
            self.message = Some("Criação cancelada".into());
            return Action::None;
        }
        let routes = self
            .clients
            .get(f.client)
            .map(|c| c.routes.len())
            .unwrap_or(0);
        let mut action = Action::None;
        match (f.step, code) {
            // The route list shows the highlighted client's routes.
            (Step::Client, KeyCode::Up) => {
                f.client = f.client.saturating_sub(1);
                f.route = 0;
            }
            (Step::Client, KeyCode::Down) => {
                f.client = (f.client + 1).min(self.clients.len().saturating_sub(1));
                f.route = 0;
            }
            (Step::Client, KeyCode::Enter) => {
                if routes == 0 {
                    f.error = Some("Este cliente não tem rotas".into());
                } else {
                    f.error = None;
                    f.route = 0;
                    f.step = Step::Route;
                }
            }
            (Step::Route, KeyCode::Up) => f.route = f.route.saturating_sub(1),
            (Step::Route, KeyCode::Down) => f.route = (f.route + 1).min(routes.saturating_sub(1)),
            (Step::Route, KeyCode::Enter) => {
                f.error = None;
                f.step = Step::From;
            }
            (Step::Route, KeyCode::BackTab) => f.step = Step::Client,
            (Step::From | Step::To, KeyCode::Char(c)) => {
                let (field, name) = if f.step == Step::From {
                    (&mut f.from, "De")
                } else {
                    (&mut f.to, "Até")
                };
                // `/` is written `-`: one form, YYYY-MM-DD, on screen and
                // in the scrap.
                match c {
                    '0'..='9' | '-' | '/' => {
                        if field.chars().count() < 10 {
                            field.push(if c == '/' { '-' } else { c });
                        }
                        f.error = None;
                    }
                    _ => {
                        f.error = Some(format!(
                            "{name}: '{c}' não cabe numa data: digite YYYY-MM-DD (ou YYYY/MM/DD)"
                        ))
                    }
                }
            }
            (Step::From | Step::To, KeyCode::Backspace) => {
                let field = if f.step == Step::From {
                    &mut f.from
                } else {
                    &mut f.to
                };
                if field.pop().is_none() && f.step == Step::To {
                    f.step = Step::From;
                }
            }
            (Step::From, KeyCode::Enter) => match day(&f.from, "De") {
                Ok(_) => {
                    f.error = None;
                    f.step = Step::To;
                }
                Err(e) => f.error = Some(e),
            },
            (Step::To, KeyCode::Enter) => match (day(&f.from, "De"), day(&f.to, "Até")) {
                (Err(e), _) => {
                    f.error = Some(e);
                    f.step = Step::From;
                }
                (_, Err(e)) => f.error = Some(e),
                (Ok(from), Ok(to)) if from > to => {
                    f.error = Some(format!("De {from} é depois de Até {to}"))
                }
                (Ok(from), Ok(to)) => {
                    let c = &self.clients[f.client];
                    f.error = None;
                    action = Action::Create {
                        client: c.id.clone(),
                        route: c.routes[f.route].clone(),
                        from,
                        to,
                    };
                }
            },
            (Step::From | Step::To, KeyCode::BackTab | KeyCode::Up) => {
                f.step = if f.step == Step::To {
                    Step::From
                } else {
                    Step::Route
                }
            }
            _ => {}
        }
        self.screen = Screen::Form(f);
        action
    }
}

/// A day typed in the form: `YYYY-MM-DD` in full (`/` taken for `-`), a
/// real day.
pub fn day(text: &str, field: &str) -> Result<NaiveDate, String> {
    let text = &text.replace('/', "-");
    let full = text.len() == 10
        && text.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    full.then(|| crate::dates::parse_day(text))
        .flatten()
        .ok_or_else(|| format!("{field}: '{text}' não é uma data real no formato YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Scrap, SliceStatus};
    use crate::report::Notice;
    use chrono::Utc;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
    }

    fn app() -> App {
        App::new(
            Style { plain: true },
            vec![
                ClientChoice {
                    id: "2151".into(),
                    name: "Loja".into(),
                    routes: vec!["itens".into(), "pedidos".into()],
                },
                ClientChoice {
                    id: "77".into(),
                    name: "Outra".into(),
                    routes: vec![],
                },
            ],
        )
    }

    fn scrap(id: i64) -> Scrap {
        let d = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        Scrap {
            id,
            client: "2151".into(),
            route: "pedidos".into(),
            raw_table: "dados_raw_cliente_2151_pedidos".into(),
            from: d,
            to: d,
            slice_days: 1,
            created_at: Utc::now(),
        }
    }

    fn row(id: i64) -> ScrapStatus {
        ScrapStatus {
            scrap: scrap(id),
            status: SliceStatus::Pending,
            slices: 1,
            done: 0,
            failed: 0,
            inserted: 0,
            duplicates: 0,
            last_run: None,
        }
    }

    fn form(a: &App) -> &Form {
        match &a.screen {
            Screen::Form(f) => f,
            other => panic!("not the form: {other:?}"),
        }
    }

    #[test]
    fn the_form_creates_only_from_a_valid_period() {
        let mut a = app();
        a.on_key(key(KeyCode::Char('n')));
        a.on_key(key(KeyCode::Enter)); // client 2151
        a.on_key(key(KeyCode::Down));
        a.on_key(key(KeyCode::Enter)); // route pedidos
        typed(&mut a, "2025-02-30");
        assert_eq!(a.on_key(key(KeyCode::Enter)), Action::None);
        let Screen::Form(f) = &a.screen else { panic!() };
        assert_eq!(f.step, Step::From);
        assert!(f.error.as_deref().unwrap().contains("'2025-02-30'"));
        for _ in 0..2 {
            a.on_key(key(KeyCode::Backspace));
        }
        typed(&mut a, "01");
        a.on_key(key(KeyCode::Enter));
        typed(&mut a, "2025-01-31");
        assert_eq!(
            a.on_key(key(KeyCode::Enter)),
            Action::None,
            "to before from"
        );
        for _ in 0..10 {
            a.on_key(key(KeyCode::Backspace));
        }
        typed(&mut a, "2025-02-03");
        let d = |m, d| NaiveDate::from_ymd_opt(2025, m, d).unwrap();
        assert_eq!(
            a.on_key(key(KeyCode::Enter)),
            Action::Create {
                client: "2151".into(),
                route: "pedidos".into(),
                from: d(2, 1),
                to: d(2, 3)
            }
        );
        a.created(&NewScrap {
            id: 9,
            table: "t".into(),
            slices: 3,
        });
        assert_eq!((a.screen.clone(), a.selected), (Screen::Scraps, Some(9)));
    }

    #[test]
    fn the_route_list_follows_the_highlighted_client() {
        let mut a = app();
        a.on_key(key(KeyCode::Char('n')));
        a.on_key(key(KeyCode::Enter));
        a.on_key(key(KeyCode::Down));
        assert_eq!(form(&a).route, 1, "pedidos");
        a.on_key(key(KeyCode::BackTab));
        a.on_key(key(KeyCode::Down));
        assert_eq!(
            (form(&a).step, form(&a).client, form(&a).route),
            (Step::Client, 1, 0),
            "another client starts at its first route"
        );
    }

    #[test]
    fn a_slash_in_a_date_is_a_dash_and_a_letter_is_refused_aloud() {
        let mut a = app();
        a.on_key(key(KeyCode::Char('n')));
        a.on_key(key(KeyCode::Enter));
        a.on_key(key(KeyCode::Enter));
        typed(&mut a, "2025/06/01");
        assert_eq!(form(&a).from, "2025-06-01");
        assert_eq!(form(&a).error, None);
        a.on_key(key(KeyCode::Enter));
        assert_eq!(form(&a).step, Step::To);
        typed(&mut a, "2025/6");
        a.on_key(key(KeyCode::Char('x')));
        assert_eq!(form(&a).to, "2025-6", "the letter is not typed");
        assert_eq!(
            form(&a).error.as_deref(),
            Some("Até: 'x' não cabe numa data: digite YYYY-MM-DD (ou YYYY/MM/DD)")
        );
        a.on_key(key(KeyCode::Enter));
        assert!(form(&a).error.as_deref().unwrap().contains("'2025-6'"));
        for _ in 0.."2025-6".len() {
            a.on_key(key(KeyCode::Backspace));
        }
        typed(&mut a, "2025/06/02");
        let d = |m, d| NaiveDate::from_ymd_opt(2025, m, d).unwrap();
        assert_eq!(
            a.on_key(key(KeyCode::Enter)),
            Action::Create {
                client: "2151".into(),
                route: "itens".into(),
                from: d(6, 1),
                to: d(6, 2)
            }
        );
        assert_eq!(day("2025/06/01", "De"), Ok(d(6, 1)));
    }

    #[test]
    fn r_in_details_runs_that_scrap_one_at_a_time() {
        let mut a = app();
        a.set_scraps(vec![row(2), row(1)]);
        a.on_key(key(KeyCode::Down));
        assert_eq!(a.on_key(key(KeyCode::Enter)), Action::Details(1));
        a.details = Some(Details {
            scrap: scrap(1),
            status: SliceStatus::Pending,
            runs: vec![],
            slices: vec![],
        });
        a.screen = Screen::Details;
        assert_eq!(a.on_key(key(KeyCode::Char('r'))), Action::Run(1));
        a.started(Job::new("Scrap 1".into(), Some(1)));
        a.screen = Screen::Details;
        assert_eq!(a.on_key(key(KeyCode::Char('r'))), Action::None);
        assert!(a.message.as_deref().unwrap().contains("Já há uma execução"));
    }

    #[test]
    fn progress_and_trouble_are_kept_apart() {
        let mut a = app();
        a.started(Job::new("Scrap 1".into(), Some(1)));
        a.watch(Watch::note(a.style, "🚀", "Iniciando"));
        for attempt in 1..=8 {
            a.watch(Watch::Notice(Notice::Retrying {
                attempt,
                attempts: 9,
                wait: std::time::Duration::ZERO,
                of: crate::report::Retried::Page,
            }));
        }
        a.watch(Watch::note(a.style, "❌", "Erro: x"));
        let job = a.job.as_ref().unwrap();
        assert_eq!(job.progress, ["Iniciando"], "retries do not push it out");
        assert_eq!(job.troubles, 9);
        assert_eq!(job.trouble.len(), LAST_LINES);
        assert_eq!(job.trouble.back(), Some(&(Kind::Error, "Erro: x".into())));
        assert_eq!(job.trouble.front().unwrap().0, Kind::Warning);
    }

    #[test]
    fn esc_cancels_the_form_and_a_client_without_routes_is_refused() {
        let mut a = app();
        a.on_key(key(KeyCode::Char('n')));
        a.on_key(key(KeyCode::Down));
        a.on_key(key(KeyCode::Enter));
        let Screen::Form(f) = &a.screen else { panic!() };
        assert_eq!((f.step, f.error.is_some()), (Step::Client, true));
        a.on_key(key(KeyCode::Esc));
        assert_eq!(a.screen, Screen::Scraps);
    }

    #[test]
    fn quitting_asks_first_while_a_run_goes_on() {
        let mut a = app();
        assert_eq!(a.on_key(key(KeyCode::Char('q'))), Action::Quit);
        a.set_scraps(vec![row(2), row(1)]);
        assert_eq!(a.selected, Some(2), "the newest is selected");
        a.on_key(key(KeyCode::Down));
        assert_eq!(a.on_key(key(KeyCode::Char('r'))), Action::Run(1));
        a.started(Job::new("Scrap 1".into(), Some(1)));
        assert_eq!(a.on_key(key(KeyCode::Esc)), Action::None);
        assert_eq!(a.screen, Screen::Scraps);
        assert_eq!(
            a.on_key(key(KeyCode::Char('r'))),
            Action::None,
            "one at a time"
        );
        assert_eq!(a.on_key(key(KeyCode::Char('q'))), Action::None);
        assert!(a.confirm_quit);
        assert_eq!(a.on_key(key(KeyCode::Char('n'))), Action::None);
        assert!(!a.confirm_quit);
        a.on_key(key(KeyCode::Char('q')));
        assert_eq!(a.on_key(key(KeyCode::Char('y'))), Action::StopAndQuit);
        a.finished(Finished::Error("x".into()));
        assert!(!a.job_running());
    }

    #[test]
    fn the_selection_follows_its_scrap_across_refreshes() {
        let mut a = app();
        a.set_scraps(vec![row(2), row(1)]);
        a.on_key(key(KeyCode::Down));
        a.set_scraps(vec![row(3), row(2), row(1)]);
        assert_eq!(a.selected, Some(1));
        assert_eq!(a.on_key(key(KeyCode::Enter)), Action::Details(1));
    }
}
