//! `atlas manager` driven as a person would: the real binary in a tmux
//! session of fixed size (its own tmux server per test), keys sent with
//! `send-keys`, the screen read with `capture-pane` until what is awaited
//! shows up. Also the plain CLI's progress line (slices and ETA).

use crate::util::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// Long enough for a debug build on a busy 2-core machine: a wait ends as
/// soon as the screen shows what it waits for.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(120);

/// A tmux server of its own (socket in the test's directory) running `atlas manager` in one 120x40 pane;
/// killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `atlas <args>` in `atlas`'s directory and environment; when it
    /// ends, the pane shows `ATLAS_EXIT=<code>`.
    fn start(atlas: &Atlas, args: &str) -> Tmux {
        let found = Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "tmux is not installed: the manager tests drive the real binary in tmux \
             (scripts/test.sh installs it; or `apt-get install tmux`)"
        );
        // The socket lives in the test's directory, removed with it.
        let socket = atlas
            .path(&format!(
                "tmux-{}.sock",
                SESSIONS.fetch_add(1, Ordering::SeqCst)
            ))
            .display()
            .to_string();
        let mut env = format!("ATLAS_DATABASE_URL='{}' LC_ALL=C.UTF-8", atlas.db_url);
        for (k, v) in &atlas.env {
            env.push_str(&format!(" {k}='{v}'"));
        }
        let script = format!(
            "cd '{}' && env -u DATABASE_URL -u ATLAS_CONFIG {env} '{}' {args}; echo ATLAS_EXIT=$?; sleep 600",
            atlas.dir.path().display(),
            env!("CARGO_BIN_EXE_atlas"),
        );
        let t = Tmux { socket };
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "m",
            "-x",
            "120",
            "-y",
            "40",
            &script,
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-u", "-S", &self.socket])
            .args(args)
            // CI may run without a terminal type; tmux wants one.
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "m"])
    }

    /// Keys by tmux name (`Enter`, `Escape`, `Down`) or one character.
    fn key(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "m", key]);
    }

    /// Text typed as it is.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "m", "-l", text]);
    }

    /// Waits until the screen shows every one of `texts`; returns it.
    fn wait(&self, texts: &[&str]) -> String {
        self.wait_until(&format!("{texts:?}"), |s| {
            texts.iter().all(|t| s.contains(t))
        })
    }

    fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + SCREEN_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < end {
            last = self.screen();
            if ok(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the screen never showed {what}; last screen:\n{last}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// The line of the Scraps table for scrap `id`.
fn row<'a>(screen: &'a str, id: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        l.trim_start_matches(['│', ' ', '>'])
            .split_whitespace()
            .next()
            == Some(id)
    })
}

fn setup(tag: &str, api_args: &[&str]) -> (TestDb, Api, Atlas) {
    let db = TestDb::new(tag);
    let api = Api::start(api_args);
    let atlas = Atlas::new(
        &db,
        &Atlas::config(
            &format!("{}/page", api.url),
            json!({ "pedidos": page_route() }),
        ),
    );
    atlas.ok(&["init"]);
    (db, api, atlas)
}

#[test]
fn manager_creates_and_runs_a_scrap_to_the_summary() {
    let (db, api, atlas) = setup("mgr_run", &["--per-day", "37"]);
    let tmux = Tmux::start(&atlas, "manager");
    tmux.wait(&["Scraps de ETL", "Scraps (0)", "n novo scrap"]);

    tmux.key("n");
    tmux.wait(&["Novo scrap", ">2151 - Loja Teste"]);
    tmux.key("Enter");
    tmux.wait(&[">pedidos"]);
    tmux.key("Enter");
    // A day that does not exist is refused in the form; nothing is created.
    tmux.type_text("2025-06-31");
    tmux.key("Enter");
    tmux.wait(&["'2025-06-31' não é uma data real no formato YYYY-MM-DD"]);
    assert_eq!(db.i64("SELECT count(*) FROM atlas.scraps"), 0);
    tmux.key("BSpace");
    tmux.key("BSpace");
    tmux.type_text("01");
    tmux.key("Enter");
    // `/` is taken for `-`.
    tmux.type_text("2025/06/05");
    tmux.wait(&["[2025-06-05]"]);
    tmux.key("Enter");
    let s = tmux.wait(&[
        "Scrap 1 criado: 5 fatia(s), tabela dados_raw_cliente_2151_pedidos",
        "Scraps (1)",
    ]);
    let line = row(&s, "1").unwrap_or_else(|| panic!("no row of scrap 1:\n{s}"));
    assert!(line.contains('>'), "the new scrap is selected: {line}");
    assert!(
        line.contains("2025-06-01 até 2025-06-05") && line.contains("pending"),
        "{line}"
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM pg_tables WHERE tablename = 'dados_raw_cliente_2151_pedidos'"),
        1,
        "the raw table is created with the scrap"
    );

    tmux.key("r");
    let s = tmux.wait(&["Total de registros coletados", "código de saída"]);
    let expected = api.expected("2025-06-01", "2025-06-05");
    assert_eq!(expected, 5 * 37);
    for line in [
        format!("Total de registros coletados: {expected}"),
        "Tabela: dados_raw_cliente_2151_pedidos".into(),
        format!("Inseridos: {expected}"),
        "Fatias concluídas: 5 de 5 | com falha: 0".into(),
        "código de saída: 0".into(),
    ] {
        assert!(s.contains(&line), "summary lacks '{line}':\n{s}");
    }

    tmux.key("Escape");
    // The days pane is filled by the next refresh after the list's.
    tmux.wait_until("scrap 1 done in the table, its days below", |s| {
        row(s, "1").is_some_and(|l| l.contains("done") && l.contains("5/0/5"))
            && s.contains("Dias do scrap 1")
    });
    tmux.key("q");
    tmux.wait(&["ATLAS_EXIT=0"]);

    assert_exact(&db, expected, "manager run");
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'done'"),
        5
    );
    assert_eq!(
        db.i64(&format!(
            "SELECT count(*) FROM atlas.runs WHERE status = 'done' AND inserted = {expected}"
        )),
        1
    );
}

#[test]
fn a_run_started_by_another_process_shows_up_live() {
    // One slow page per day and one fetcher: the run lasts seconds.
    let (db, api, atlas) = setup("mgr_live", &["--per-day", "20", "--latency-ms", "500"]);
    let id = atlas.create("pedidos", "2025-07-01", "2025-07-20");
    let tmux = Tmux::start(&atlas, "--plain manager");
    let s = tmux.wait(&["Scraps (1)"]);
    assert!(
        row(&s, &id).is_some_and(|l| l.contains("pending") && l.contains("0/0/20")),
        "{s}"
    );

    let other = atlas
        .command(&["scrap", "run", &id, "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scrap run");
    tmux.wait_until("the other process's run as running", |s| {
        row(s, &id).is_some_and(|l| l.contains("running"))
    });
    let out = other.wait_with_output().expect("scrap run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = tmux.wait_until("the run done in the table", |s| {
        row(s, &id).is_some_and(|l| l.contains("done") && l.contains("20/0/20"))
    });
    assert!(s.contains("####################"), "every day done:\n{s}");
    tmux.key("q");
    tmux.wait(&["ATLAS_EXIT=0"]);
    assert_exact(&db, api.expected("2025-07-01", "2025-07-20"), "other run");

    // The plain CLI's progress lines end with the slices and an ETA.
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("📄 Página "))
        .collect();
    assert!(!progress.is_empty(), "no progress line:\n{stderr}");
    for line in &progress {
        let (_, tail) = line
            .rsplit_once(" | 🧩 ")
            .unwrap_or_else(|| panic!("no slices in '{line}'"));
        let (slices, eta) = tail
            .split_once(" fatias | ⏳ ~")
            .unwrap_or_else(|| panic!("no ETA in '{line}'"));
        let (done, total) = slices.split_once('/').expect("x/y");
        assert_eq!(total, "20", "{line}");
        assert!(done.parse::<u32>().is_ok_and(|d| d <= 20), "{line}");
        assert!(
            eta == "?" || eta.ends_with('s') || eta.ends_with('m'),
            "{line}"
        );
    }
}

#[test]
fn quitting_during_a_run_stops_it_like_ctrl_c() {
    let (db, api, mut atlas) = setup("mgr_quit", &["--per-day", "20", "--latency-ms", "500"]);
    atlas.env.push(("ATLAS_THREADS".into(), "1".into()));
    let id = atlas.create("pedidos", "2025-08-01", "2025-08-20");
    let tmux = Tmux::start(&atlas, "manager");
    tmux.wait(&["Scraps (1)"]);
    tmux.key("r");
    tmux.wait_until("a slice done in the live view", |s| {
        s.contains("Executando: Scrap") && !s.contains(" 0/20 fatias") && s.contains("/20 fatias")
    });
    tmux.key("q");
    tmux.wait(&["Parar (como Ctrl-C) e sair? y = sim, n = não"]);
    tmux.key("y");
    tmux.wait(&["ATLAS_EXIT=0"]);

    // Stopped in order: the run is closed as interrupted, no slice is left
    // held, and every committed row is counted by its slice.
    assert_eq!(
        db.strings("SELECT status FROM atlas.runs"),
        vec!["interrupted".to_string()]
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'running'"),
        0
    );
    let done = db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'done'");
    assert!((1..20).contains(&done), "{done} slices done");
    assert_eq!(
        db.i64("SELECT count(*) FROM dados_raw_cliente_2151_pedidos"),
        db.i64("SELECT coalesce(sum(inserted), 0)::bigint FROM atlas.slices")
    );
    // A rerun resumes and ends with exactly the API's records.
    atlas.ok(&["scrap", "run", &id]);
    assert_exact(&db, api.expected("2025-08-01", "2025-08-20"), "resumed");
}

#[test]
fn details_in_portuguese_where_r_runs_the_scrap_and_its_duplicates_show() {
    let db = TestDb::new("mgr_details");
    let api = Api::start(&["--per-day", "10"]);
    let config = json!({
        "clients": {
            "2151": { "name": "Loja Teste", "base_url": format!("{}/page", api.url), "routes": ["itens", "pedidos"] },
            "3300": { "name": "Outra Loja", "base_url": format!("{}/page", api.url), "routes": ["notas"] }
        },
        "routes": { "pedidos": page_route(), "itens": page_route(), "notas": page_route() }
    });
    let atlas = Atlas::new(&db, &config);
    // Scrap 1 loads three days; scrap 2, over the same days, finds every
    // record already in the table.
    let first = atlas.create("pedidos", "2025-06-01", "2025-06-03");
    atlas.ok(&["scrap", "run", &first]);
    let id = atlas.create("pedidos", "2025-06-01", "2025-06-03");
    let expected = api.expected("2025-06-01", "2025-06-03");
    assert_eq!(expected, 30);

    let tmux = Tmux::start(&atlas, "--plain manager");
    let s = tmux.wait(&["Scraps (2)", "inseridos", "duplicados"]);
    let words = |s: &str, id: &str| -> Vec<String> {
        row(s, id)
            .unwrap_or_else(|| panic!("no row of scrap {id}:\n{s}"))
            .split(['│', ' ', '>'])
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    // id client route from até to status slices inserted duplicates ...
    assert_eq!(
        words(&s, &first)[6..10],
        ["done", "3/0/3", "30", "0"],
        "{s}"
    );

    // The route list follows the highlighted client, before Enter.
    tmux.key("n");
    let s = tmux.wait(&[">2151 - Loja Teste"]);
    assert!(
        s.contains("│itens") && s.contains("│pedidos") && !s.contains("│notas"),
        "{s}"
    );
    tmux.key("Down");
    let s = tmux.wait(&[">3300 - Outra Loja", "│notas"]);
    assert!(!s.contains("│pedidos"), "{s}");
    tmux.key("Escape");
    tmux.wait(&["Criação cancelada"]);

    // Details of the selected (newest) scrap, in Portuguese; r runs it.
    tmux.key("Enter");
    let s = tmux.wait(&[
        &format!("Detalhes do scrap {id}"),
        &format!("scrap {id}: cliente 2151, rota pedidos"),
        "período: 2025-06-01 até 2025-06-03 (fatias de 1 dia(s))",
        "tabela: dados_raw_cliente_2151_pedidos",
        "status: pending",
        "execuções:",
        "fatia       status   páginas  registros  inseridos  duplicados  fora do período",
        "r executar",
    ]);
    for english in ["route ", "period:", "table:", "runs:", "slices:", "worker"] {
        assert!(!s.contains(english), "'{english}' in Details:\n{s}");
    }
    tmux.key("r");
    let s = tmux.wait(&["Total de registros coletados", "código de saída"]);
    for line in [
        format!("Total de registros coletados: {expected}"),
        "Inseridos: 0".into(),
        format!("Duplicados ignorados: {expected}"),
        "código de saída: 0".into(),
        "Andamento".into(),
        "Iniciando ETL do cliente 2151 - Rota: pedidos".into(),
        "Avisos e erros (0)".into(),
    ] {
        assert!(s.contains(&line), "the run view lacks '{line}':\n{s}");
    }

    tmux.key("Escape");
    let s = tmux.wait_until("scrap 2 done, all duplicates", |s| {
        row(s, &id).is_some_and(|l| l.contains("done"))
    });
    assert_eq!(
        words(&s, &id)[6..10],
        ["done", "3/0/3", "0", &expected.to_string()],
        "{s}"
    );
    tmux.key("q");
    tmux.wait(&["ATLAS_EXIT=0"]);
    assert_exact(&db, expected, "all duplicates");
    assert_eq!(
        db.i64(&format!(
            "SELECT duplicates FROM atlas.runs WHERE scrap_id = {id} AND status = 'done'"
        )),
        expected
    );
}
