//! What a pair's turn in the fleet comes to, and the decisions taken on
//! it between rounds and at the end: whether the pair goes another round
//! (it joined another process's scrap, now over), how its runs add up, how
//! it is told in the report, and the fleet's exit. Pure but for `end_of`'s
//! clock.

use super::super::pair::idle_summary;
use super::super::scrap_run;
use crate::config::{Client, Route, Settings};
use crate::exit::Exit;
use crate::ident;
use crate::report;
use crate::report::fleet::FleetReport;
use chrono::NaiveDate;
use serde_json::{json, Value};

/// What a pair's turn came to.
pub(super) enum Turn {
    /// Loaded (or tried to): the summary of its run.
    Ran(Value, Exit),
    /// Nothing new: loaded up to the day given.
    UpToDate(Option<NaiveDate>),
    /// Another sync holds the pair and has no scrap to join.
    Busy,
    /// Could not start: why.
    NotStarted(String, Exit),
    /// Not reached: the fleet was stopped first (by a signal, or by the
    /// database lost), with that exit.
    Skipped(Exit),
}

/// How a pair's round begins.
pub(super) enum Start<'c> {
    /// Its turn is over without a run (or before one): up to date, busy,
    /// not started, skipped.
    Over(Turn),
    /// Its scrap had nothing left to run: the summary, and whether it was
    /// another process's scrap (joined).
    Nothing(Value, Exit, bool),
    /// A run ready for the crew, whether it joins another process's scrap,
    /// and whether its raw table is known to exist (else it is made sure
    /// of once the run is handed over).
    Ready(Box<scrap_run::Ready<'c>>, bool, bool, Option<i64>),
    /// Such a run, handed over to the crew.
    Handed(bool),
}

/// Whether a pair whose run ended with `exit` goes another round: it
/// joined another process's scrap (`joined`), that scrap is over without
/// trouble, and the fleet is not stopping: its own period is next.
pub(super) fn goes_again(joined: bool, exit: Exit, quit: bool) -> bool {
    joined && exit == Exit::Ok && !quit
}

/// A pair's turn over without a run of this round, after the runs of
/// earlier rounds (`ran`, joined scraps): with none, the turn as it is;
/// with some, they stand unless the pair failed to start.
pub(super) fn after_rounds(turn: Turn, ran: Vec<(Value, Exit)>) -> Turn {
    if ran.is_empty() {
        return turn;
    }
    match turn {
        Turn::UpToDate(_) | Turn::Busy | Turn::Skipped(_) => merged(ran),
        other => other,
    }
}

/// A pair's runs as one turn: the last one's summary, with the counters of
/// an earlier (joined) run added.
pub(super) fn merged(mut runs: Vec<(Value, Exit)>) -> Turn {
    let Some((mut last, mut exit)) = runs.pop() else {
        return Turn::Skipped(Exit::Interrupted);
    };
    for (v, e) in runs {
        exit = exit.merge(e);
        for k in [
            "records_fetched",
            "inserted",
            "duplicates",
            "out_of_period",
            "undated",
            "sanitised",
            "pages",
            "retries",
        ] {
            let sum = last[k].as_i64().unwrap_or(0) + v[k].as_i64().unwrap_or(0);
            last[k] = json!(sum);
        }
    }
    Turn::Ran(last, exit)
}

/// The line that says how a pair's turn ended without a run, if it did.
pub(super) fn told(turn: &Turn, client: &str, route: &str) -> Option<(&'static str, String)> {
    match turn {
        Turn::NotStarted(why, _) => {
            Some(("❌", report::fleet::not_started_line(client, route, why)))
        }
        Turn::UpToDate(last) => Some(("✅", report::up_to_date_line(client, route, *last))),
        Turn::Busy => Some(("⏳", report::busy_line(client, route))),
        _ => None,
    }
}

/// What a pair came to, for the fleet's exit code.
pub(super) struct End {
    pub(super) exit: Exit,
    /// The pair met trouble with the environment that may be the database
    /// itself (not the API's credentials): the fleet checks whether it stopped.
    pub(super) env_trouble: bool,
}

/// A pair's turn told in the report; what the fleet's exit needs of it.
pub(super) fn end_of(
    turn: Turn,
    client: &Client,
    route: &Route,
    settings: &Settings,
    report: &mut FleetReport,
) -> End {
    let table = ident::raw_table(&client.id, &route.name).unwrap_or_default();
    let pair = (client.id.as_str(), route.name.as_str());
    let (object, end) = ended(turn, |fields| idle_summary(pair, &table, settings, fields));
    report.push(&object, unix_now());
    end
}

/// A pair's `--json` object (a run's summary, or `idle` of the fields that
/// say why nothing ran) and its end.
fn ended(turn: Turn, idle: impl Fn(Value) -> Value) -> (Value, End) {
    let (object, exit, env_trouble) = match turn {
        Turn::Ran(v, e) => {
            let trouble = e == Exit::Environment && v["status"] != report::AUTH_REFUSED;
            (v, e, trouble)
        }
        Turn::UpToDate(last) => (
            idle(json!({"status": "up_to_date", "loaded_until": last, "error": null})),
            Exit::Ok,
            false,
        ),
        Turn::Busy => (
            idle(json!({"status": "busy", "error": null})),
            Exit::Ok,
            false,
        ),
        Turn::NotStarted(why, e) => (
            idle(json!({"status": "not_started", "error": why, "exit_code": e.code()})),
            e,
            e == Exit::Environment,
        ),
        Turn::Skipped(why) => (
            idle(
                json!({"status": "skipped", "error": "a sincronização parou antes deste par", "exit_code": why.code()}),
            ),
            why,
            false,
        ),
    };
    (object, End { exit, env_trouble })
}

/// Now in Unix seconds (a pair's end, for its metrics).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// The fleet's exit from its pairs' ends: trouble with one API
/// (credentials refused, certificate, token endpoint) fails that pair only
/// (1); a lost database (`stopped`) stopped the fleet and is exit 3; a
/// pair refused before it started (missing secret, no start point) is
/// that pair's failure (1), not bad usage of the fleet; a Ctrl-C is 130.
pub(super) fn fleet_exit(ends: &[End], stopped: bool, interrupted: bool) -> Exit {
    let mut exit = Exit::Ok;
    for e in ends {
        let pair_exit = match e.exit {
            Exit::Environment if !stopped => Exit::Failed,
            Exit::Usage => Exit::Failed,
            other => other,
        };
        exit = exit.merge(pair_exit);
    }
    if interrupted {
        exit = exit.merge(Exit::Interrupted);
    }
    exit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(inserted: i64, exit: Exit) -> (Value, Exit) {
        (
            json!({"inserted": inserted, "pages": 1, "status": "done"}),
            exit,
        )
    }

    fn end(exit: Exit) -> End {
        End {
            exit,
            env_trouble: exit == Exit::Environment,
        }
    }

    #[test]
    fn a_joined_scrap_over_sends_the_pair_round_again_unless_stopping() {
        assert!(goes_again(true, Exit::Ok, false));
        assert!(!goes_again(false, Exit::Ok, false), "its own scrap: done");
        assert!(!goes_again(true, Exit::Failed, false));
        assert!(!goes_again(true, Exit::Ok, true), "the fleet is stopping");
    }

    #[test]
    fn runs_of_joined_scraps_add_up_into_one_turn() {
        let Turn::Ran(v, e) = merged(vec![run(3, Exit::Failed), run(4, Exit::Ok)]) else {
            panic!("a turn that ran");
        };
        assert_eq!(
            (v["inserted"].as_i64(), v["pages"].as_i64()),
            (Some(7), Some(2))
        );
        assert_eq!(e, Exit::Failed);
        assert!(matches!(
            merged(Vec::new()),
            Turn::Skipped(Exit::Interrupted)
        ));
    }

    #[test]
    fn earlier_rounds_stand_unless_the_pair_failed_to_start() {
        assert!(matches!(after_rounds(Turn::Busy, Vec::new()), Turn::Busy));
        for turn in [
            Turn::Busy,
            Turn::UpToDate(None),
            Turn::Skipped(Exit::Interrupted),
        ] {
            assert!(matches!(
                after_rounds(turn, vec![run(1, Exit::Ok)]),
                Turn::Ran(_, Exit::Ok)
            ));
        }
        let refused = Turn::NotStarted("x".into(), Exit::Usage);
        assert!(matches!(
            after_rounds(refused, vec![run(1, Exit::Ok)]),
            Turn::NotStarted(_, Exit::Usage)
        ));
    }

    #[test]
    fn a_turn_without_a_run_is_told_in_one_line() {
        let said = |t: Turn| told(&t, "c", "r").map(|(emoji, text)| format!("{emoji} {text}"));
        assert_eq!(
            said(Turn::NotStarted("sem segredo".into(), Exit::Usage)).as_deref(),
            Some("❌ Par c / r não iniciado: sem segredo")
        );
        assert_eq!(
            said(Turn::Busy).map(|s| s.starts_with("⏳ Outra")),
            Some(true)
        );
        assert_eq!(
            said(Turn::UpToDate(None)).map(|s| s.ends_with("(nada)")),
            Some(true)
        );
        assert_eq!(said(Turn::Skipped(Exit::Interrupted)), None);
        assert_eq!(said(Turn::Ran(json!({}), Exit::Ok)), None);
    }

    #[test]
    fn a_turn_ends_as_its_object_and_exit() {
        let idle =
            |f: Value| json!({"idle": true, "status": f["status"], "exit_code": f["exit_code"]});
        let (o, e) = ended(Turn::Busy, idle);
        assert_eq!(
            (o["status"].as_str(), e.exit, e.env_trouble),
            (Some("busy"), Exit::Ok, false)
        );
        let (o, e) = ended(Turn::NotStarted("db".into(), Exit::Environment), idle);
        assert_eq!(o["exit_code"], 3);
        assert!(e.env_trouble, "may be the database itself");
        let refused = json!({"status": report::AUTH_REFUSED});
        let (_, e) = ended(Turn::Ran(refused, Exit::Environment), idle);
        assert!(!e.env_trouble, "one API refused the credentials");
        let (o, e) = ended(Turn::Skipped(Exit::Interrupted), idle);
        assert_eq!(
            (o["status"].as_str(), e.exit),
            (Some("skipped"), Exit::Interrupted)
        );
    }

    #[test]
    fn the_fleets_exit_is_the_worst_of_its_pairs() {
        assert_eq!(
            fleet_exit(&[end(Exit::Ok), end(Exit::Ok)], false, false),
            Exit::Ok
        );
        assert_eq!(
            fleet_exit(&[end(Exit::Ok), end(Exit::Usage)], false, false),
            Exit::Failed
        );
        let env = [end(Exit::Ok), end(Exit::Environment)];
        assert_eq!(
            fleet_exit(&env, false, false),
            Exit::Failed,
            "one API's trouble"
        );
        assert_eq!(
            fleet_exit(&env, true, false),
            Exit::Environment,
            "the database lost"
        );
        assert_eq!(fleet_exit(&[end(Exit::Ok)], false, true), Exit::Interrupted);
    }
}
