//! Exit codes and `--json` told from what the scrap came to: a slice one
//! process gave up on and a later process loaded is not a failure of the
//! first, and `status`, `slices_failed` and `exit_code` never contradict
//! each other.

use crate::util::{self, Api, Atlas, Bg, TestDb};
use serde_json::json;
use std::time::Duration;

#[test]
fn slices_one_process_failed_and_a_later_one_loaded_end_both_with_exit_0() {
    // The first request of every URL fails: a run allowed one attempt
    // fails each slice it tries; a run allowed three loads it.
    let api = Api::start(&[
        "--per-day",
        "5",
        "--latency-ms",
        "150",
        "--fault-kinds",
        "500",
        "--fail-first",
        "1",
    ]);
    let db = TestDb::new("exits_elsewhere");
    let mut route = util::page_route();
    route["pagination"]["size"] = json!(50);
    let cfg = Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route }));
    let mut atlas = Atlas::new(&db, &cfg);
    let id = atlas.create("pedidos", "2025-02-01", "2025-02-20");
    atlas.env.push(("ATLAS_RETRY_MAX".into(), "1".into()));
    atlas.env.push(("ATLAS_THREADS".into(), "1".into()));
    let mut first = Bg::spawn(&atlas, &["scrap", "run", &id, "--json"], "first");
    util::wait_for(
        "the first run to fail a slice",
        Duration::from_secs(30),
        || db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'failed'") > 0,
    );
    first.assert_running("the second run starts while the first works");
    atlas
        .env
        .retain(|(k, _)| k != "ATLAS_RETRY_MAX" && k != "ATLAS_THREADS");
    atlas.env.push(("ATLAS_RETRY_MAX".into(), "3".into()));
    atlas.env.push(("ATLAS_THREADS".into(), "4".into()));
    let mut second = Bg::spawn(&atlas, &["scrap", "run", &id, "--json"], "second");
    let (a, b) = (
        first.finish(Duration::from_secs(90)),
        second.finish(Duration::from_secs(90)),
    );
    util::assert_exact(&db, api.expected("2025-02-01", "2025-02-20"), "both runs");
    for (name, run) in [("first", &a), ("second", &b)] {
        assert_eq!(run.code, 0, "{name}: {}\n{}", run.stdout, run.stderr);
        let j = run.json();
        assert_eq!(j["status"], "done", "{name}: {j}");
        assert_eq!(j["exit_code"], 0, "{name}: {j}");
        assert_eq!(j["slices_failed"], 0, "{name}: {j}");
        assert_eq!(j["slices_done"], 20, "{name}: {j}");
    }
    let (ja, jb) = (a.json(), b.json());
    assert_eq!(
        ja["slices_done_by_run"], 0,
        "the first run loaded nothing itself: {ja}"
    );
    assert_eq!(ja["slices_done_elsewhere"], 20, "{ja}");
    assert_eq!(jb["slices_done_by_run"], 20, "{jb}");
    assert!(
        a.stderr
            .contains("fatia(s) do scrap 1 concluída(s) por outro processo"),
        "{}",
        a.stderr
    );
}
