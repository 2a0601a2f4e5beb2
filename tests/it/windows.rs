//! What Windows tools hand atlas (issue 32): `atlas.json` saved by
//! PowerShell 5.1 or Notepad (UTF-8 with a BOM, UTF-16 LE or BE with one,
//! CRLF line ends) loads as the plain file does; a Latin-1 file is exit 2
//! naming the byte; secret files with a BOM and CRLF (`*_file`, `{file:}`)
//! give the secret without the `\r`. The exe itself runs under Wine in
//! `scripts/test-windows.sh`; the task definition is checked in `task_xml`.

use crate::util::{assert_exact, create_args, page_route, Api, Atlas, Run, TestDb};
use serde_json::{json, Value};

const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Two clients, one with accents in its name, as a person would write them.
fn config(base_url: &str) -> Value {
    let mut cfg = Atlas::config(base_url, json!({ "pedidos": page_route() }));
    cfg["clients"]["2151"]["name"] = json!("Loja São João");
    cfg["clients"]["88"] = json!({ "name": "Açaí & Cia", "base_url": base_url });
    cfg
}

/// Pretty JSON with CRLF line ends.
fn crlf(v: &Value) -> String {
    serde_json::to_string_pretty(v)
        .expect("json")
        .replace('\n', "\r\n")
        + "\r\n"
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut b: Vec<u8> = if big_endian {
        vec![0xFE, 0xFF]
    } else {
        vec![0xFF, 0xFE]
    };
    for u in text.encode_utf16() {
        b.extend(if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    b
}

fn with_bom(text: &str) -> Vec<u8> {
    [BOM, text.as_bytes()].concat()
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    )
}

#[test]
fn configs_in_windows_encodings_load_like_the_plain_one() {
    let api = Api::start(&["--per-day", "12", "--page-size", "5"]);
    let db = TestDb::new("win_enc");
    let cfg = config(&format!("{}/page", api.url));
    let atlas = Atlas::new(&db, &cfg);
    let plain = atlas.ok(&["clients"]);
    assert!(
        plain.stdout.contains("Loja São João") && plain.stdout.contains("Açaí & Cia"),
        "{}",
        show(&plain)
    );
    let text = crlf(&cfg);
    let files: [(&str, Vec<u8>); 5] = [
        ("crlf.json", text.clone().into_bytes()),
        ("utf8-bom.json", with_bom(&text)),
        ("utf16le.json", utf16(&text, false)),
        ("utf16be.json", utf16(&text, true)),
        // PowerShell's `ConvertTo-Json > atlas.json` on one line, no CRLF.
        (
            "utf16le-lf.json",
            utf16(&serde_json::to_string(&cfg).expect("json"), false),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(atlas.path(name), bytes).expect("write config");
        let r = atlas.run(&["--config", name, "clients"]);
        assert_eq!(r.code, 0, "{name}: {}", show(&r));
        assert_eq!(
            r.stdout, plain.stdout,
            "{name} lists what the plain file does"
        );
    }

    // A whole load from the UTF-16 LE file, the table exact.
    let run = |args: &[&str]| {
        let mut all = vec!["--config", "utf16le.json"];
        all.extend(args);
        atlas.ok(&all)
    };
    run(&["init"]);
    let id = run(&create_args("2151", "pedidos", "2025-03-01", "2025-03-02"));
    run(&["scrap", "run", id.stdout.trim()]);
    assert_exact(
        &db,
        api.expected("2025-03-01", "2025-03-02"),
        "UTF-16 LE config",
    );
}

/// A mistake in a file with a BOM and CRLF is placed on its own line.
#[test]
fn errors_in_a_bom_crlf_config_name_the_right_line() {
    let db = TestDb::new("win_line");
    let atlas = Atlas::new(&db, &config("http://127.0.0.1:9/x"));
    let text = "{\r\n  \"clients\": {},\r\n  \"routes\": { , }\r\n}\r\n";
    for (name, bytes) in [
        ("bom.json", with_bom(text)),
        ("utf16.json", utf16(text, false)),
    ] {
        std::fs::write(atlas.path(name), bytes).expect("write config");
        let r = atlas.expect(&["--config", name, "clients"], 2);
        assert!(
            r.stderr.contains(name) && r.stderr.contains("line 3, column 15"),
            "{name}: {}",
            show(&r)
        );
    }
}

#[test]
fn a_latin1_config_is_exit_2_naming_the_offset() {
    let db = TestDb::new("win_latin1");
    let cfg = config("http://127.0.0.1:9/x");
    let atlas = Atlas::new(&db, &cfg);
    // What "ANSI" Notepad or Set-Content -Encoding Default writes.
    let text = crlf(&cfg);
    let latin1: Vec<u8> = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("Latin-1 text"))
        .collect();
    let offset = latin1.iter().position(|&b| b >= 0x80).expect("an accent");
    let first = text.find(|c: char| !c.is_ascii()).expect("an accent");
    let line = 1 + text[..first].matches('\n').count();
    std::fs::write(atlas.path("latin1.json"), &latin1).expect("write config");
    let r = atlas.expect(&["--config", "latin1.json", "init"], 2);
    for needle in [
        "latin1.json",
        &format!("byte {offset} (line {line},"),
        "not UTF-8",
        "save it as UTF-8",
    ] {
        assert!(
            r.stderr.contains(needle),
            "missing {needle:?}: {}",
            show(&r)
        );
    }
    // Nothing was changed: `init` never reached the database.
    assert_eq!(
        db.i64("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'atlas'"),
        0
    );

    // UTF-16 saved without its BOM is named as such, not as a JSON error.
    let bare: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    std::fs::write(atlas.path("bare16.json"), bare).expect("write config");
    let r = atlas.expect(&["--config", "bare16.json", "clients"], 2);
    assert!(
        r.stderr.contains("byte 1 (line 1, column 2)") && r.stderr.contains("UTF-16"),
        "{}",
        show(&r)
    );
}

/// `token_file` and `{file:}` secrets saved by Notepad (BOM, CRLF): the
/// API gets the secret without the `\r`, a wrong one would be a 401/error.
#[test]
fn secret_files_with_bom_and_crlf_work() {
    const TOKEN: &str = "tok-janela-4412";
    let api = Api::bearer(TOKEN);
    let db = TestDb::new("win_secret");
    let mut cfg = config(&format!("{}/page", api.url));
    cfg["clients"]["2151"]["auth"] = json!({ "type": "bearer", "token_file": "token.txt" });
    let atlas = Atlas::new(&db, &cfg);
    std::fs::write(atlas.path("token.txt"), with_bom(&format!("{TOKEN}\r\n"))).expect("token");
    let id = atlas.create("pedidos", "2025-03-01", "2025-03-02");
    let r = atlas.ok(&["scrap", "run", &id]);
    assert!(!r.stderr.contains(TOKEN) && !r.stdout.contains(TOKEN));
    assert_exact(&db, api.expected("2025-03-01", "2025-03-02"), "token_file");

    // The same secret as a UTF-16 file through a `{file:}` header.
    let mut cfg = config(&format!("{}/page", api.url));
    cfg["clients"]["2151"]["headers"] = json!({ "Authorization": "Bearer {file:token16.txt}" });
    std::fs::write(
        atlas.path("atlas.json"),
        serde_json::to_vec_pretty(&cfg).expect("json"),
    )
    .expect("config");
    std::fs::write(
        atlas.path("token16.txt"),
        utf16(&format!("{TOKEN}\r\n"), false),
    )
    .expect("token");
    let id = atlas.ok(&create_args("2151", "pedidos", "2025-03-03", "2025-03-03"));
    atlas.ok(&["scrap", "run", id.stdout.trim()]);
    assert_exact(&db, api.expected("2025-03-01", "2025-03-03"), "{file:}");

    // A Latin-1 secret file is refused naming the byte, never the secret.
    std::fs::write(atlas.path("token16.txt"), b"tok-\xE7\r\n").expect("token");
    let id = atlas.ok(&create_args("2151", "pedidos", "2025-03-04", "2025-03-04"));
    let r = atlas.expect(&["scrap", "run", id.stdout.trim()], 2);
    assert!(
        r.stderr.contains("token16.txt") && r.stderr.contains("byte 4 (line 1, column 5)"),
        "{}",
        show(&r)
    );
    assert!(!r.stderr.contains("tok-"), "{}", show(&r));
}
