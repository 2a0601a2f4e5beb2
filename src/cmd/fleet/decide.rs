//! Which pairs a fleet works (the configured ones, narrowed by the
//! filters), and how each one's round begins: its scrap in progress joined,
//! or its period decided under its lock and a scrap created, then its run
//! started in the ledger.

use super::super::pair::{self, SyncLock};
use super::super::{scrap_run, Context};
use super::turn::{Start, Turn};
use crate::config::{Client, Config, Route};
use crate::exit::{classify, usage, Exit};
use crate::ledger::{self, NewTable};
use crate::report::{self, Watch};
use anyhow::Result;
use chrono::NaiveDate;
use crossbeam::channel::Sender;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a process waits for another one deciding a pair's period (it
/// holds the lock for a moment) before it calls the pair busy.
const DECIDING_WAIT: Duration = Duration::from_secs(30);

/// The configured pairs, in config order, narrowed by the filters. A
/// filter that names nothing configured is refused (exit 2).
pub(in super::super) fn select<'c>(
    cfg: &'c Config,
    clients: &[String],
    routes: &[String],
) -> Result<Vec<(&'c Client, &'c Route)>> {
    for c in clients {
        cfg.client(c)?;
    }
    let chosen: Vec<&Client> = cfg
        .clients
        .values()
        .filter(|c| clients.is_empty() || clients.contains(&c.id))
        .collect();
    for r in routes {
        if !chosen.iter().any(|c| c.routes.contains_key(r)) {
            return Err(usage(format!(
                "--route '{r}' is not a route of any selected client"
            )));
        }
    }
    let pairs: Vec<(&Client, &Route)> = chosen
        .into_iter()
        .flat_map(|c| c.routes.values().map(move |r| (c, r)))
        .filter(|(_, r)| routes.is_empty() || routes.contains(&r.name))
        .collect();
    if pairs.is_empty() {
        return Err(usage(
            "no (client, route) pair to sync: the config has no routes",
        ));
    }
    Ok(pairs)
}

/// The period rules of the fleet's flags, the same for every pair.
pub(super) struct Plan {
    pub(super) from: Option<NaiveDate>,
    pub(super) until: Option<NaiveDate>,
    pub(super) lookback: u32,
}

/// A pair's scrap in progress joined, or its period decided and a scrap
/// created; then its run started in the ledger.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_pair<'c>(
    ctx: &'c Context<'_>,
    conn: &mut postgres::Client,
    worker: &str,
    client: &Client,
    route: &Route,
    plan: &Plan,
    news: &Sender<Watch>,
) -> Start<'c> {
    let not_started =
        |e: anyhow::Error| Start::Over(Turn::NotStarted(format!("{e:#}"), classify(&e)));
    let pair_plan = match pair_checks(ctx, client, route, plan) {
        Ok(p) => p,
        Err(start) => return start,
    };
    let (id, joined, table_exists, days, (fresh, refetch)) =
        match decide(ctx, conn, client, route, &pair_plan) {
            Ok(Decided::Step(pair::Step::Run {
                id,
                joined,
                table_exists,
                skipped,
                fresh,
                refetch,
            })) => (id, joined, table_exists, skipped, (fresh, refetch)),
            Ok(Decided::Step(pair::Step::UpToDate(last))) => {
                return Start::Over(Turn::UpToDate(last))
            }
            Ok(Decided::Busy) => return Start::Over(Turn::Busy),
            Err(e) => return not_started(e),
        };
    let how = if joined { " (em andamento, junto)" } else { "" };
    drop(news.send(Watch::note(
        ctx.style,
        "🔄",
        &report::syncing_line(&client.id, &route.name, id, how),
    )));
    let prepared = match fresh {
        Some((scrap, slices)) => {
            scrap_run::prepare_fresh(ctx, conn, scrap, slices, Some(news), worker)
        }
        None => scrap_run::prepare(ctx, conn, id, true, Some(news), worker),
    };
    match prepared {
        Ok(scrap_run::Prepared::Ready(mut r)) => {
            r.refetching(refetch);
            Start::Ready(r, joined, table_exists, days)
        }
        Ok(scrap_run::Prepared::Nothing(e, summary)) => {
            let mut v = serde_json::to_value(&*summary).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("error".into(), Value::Null);
            }
            Start::Nothing(v, e, joined)
        }
        Err(e) => not_started(e),
    }
}

/// Everything that can refuse the pair before anything of it is written
/// (its last day, its secrets and credentials): its plan, else its turn over.
pub(super) fn pair_checks(
    ctx: &Context<'_>,
    client: &Client,
    route: &Route,
    plan: &Plan,
) -> Result<pair::Plan, Start<'static>> {
    let not_started =
        |e: anyhow::Error| Start::Over(Turn::NotStarted(format!("{e:#}"), classify(&e)));
    let until = pair::until_of(plan.until, route).map_err(not_started)?;
    if let Some(f) = plan.from.filter(|f| *f > until) {
        return Err(Start::Over(Turn::NotStarted(
            format!("--from {f} is after --until {until}"),
            Exit::Usage,
        )));
    }
    ctx.secrets(route)
        .and_then(|_| pair::check_before_writes(ctx, client))
        .map_err(not_started)?;
    Ok(pair::Plan {
        from: plan.from,
        until,
        lookback: plan.lookback,
    })
}

/// What deciding a pair came to: a step under its lock, or busy (another
/// sync held the lock all along without a scrap to join).
enum Decided {
    Step(pair::Step),
    Busy,
}

/// The pair's scrap in progress if there is one, else the days it needs
/// decided under the pair's lock and a scrap created and recorded for them.
fn decide(
    ctx: &Context<'_>,
    conn: &mut postgres::Client,
    client: &Client,
    route: &Route,
    plan: &pair::Plan,
) -> Result<Decided> {
    let waited = Instant::now();
    loop {
        if let Some(mut lock) = SyncLock::try_take(&mut *conn, &client.id, &route.name)? {
            // A missing table is created after the run is handed over.
            return pair::decide_locked(ctx, &mut lock, client, route, plan, NewTable::Later)
                .map(Decided::Step);
        }
        // Another sync holds the pair: join its scrap once recorded.
        if let Some(id) = ledger::decide::in_progress(conn, &client.id, &route.name)? {
            return Ok(Decided::Step(pair::Step::Run {
                id,
                joined: true,
                table_exists: false,
                skipped: None,
                fresh: None,
                refetch: None,
            }));
        }
        if waited.elapsed() > DECIDING_WAIT || ctx.quit.load(Ordering::SeqCst) {
            return Ok(Decided::Busy);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::classify;
    use std::path::Path;

    const CONFIG: &str = r#"{
  "clients": {
    "a": { "base_url": "http://localhost:1/a", "routes": ["pedidos", "notas"] },
    "b": { "base_url": "http://localhost:1/b", "routes": ["notas"] }
  },
  "routes": {
    "pedidos": { "path": "/p", "records": "", "date_params": { "start": "de", "end": "ate" },
                 "pagination": { "type": "page", "param": "page" } },
    "notas": { "path": "/n", "records": "", "date_params": { "start": "de", "end": "ate" },
               "pagination": { "type": "page", "param": "page" } }
  }
}"#;

    fn names(cfg: &Config, clients: &[&str], routes: &[&str]) -> Result<Vec<String>> {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Ok(select(cfg, &own(clients), &own(routes))?
            .into_iter()
            .map(|(c, r)| format!("{}/{}", c.id, r.name))
            .collect())
    }

    #[test]
    fn filters_narrow_the_pairs_in_config_order() {
        let cfg = crate::config::parse(CONFIG, Path::new("atlas.json")).unwrap();
        let all = names(&cfg, &[], &[]).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.contains(&"a/pedidos".to_string()) && all.contains(&"b/notas".to_string()));
        assert_eq!(names(&cfg, &["b"], &[]).unwrap(), ["b/notas"]);
        assert_eq!(names(&cfg, &[], &["pedidos"]).unwrap(), ["a/pedidos"]);
        assert_eq!(names(&cfg, &["a", "b"], &["notas"]).unwrap().len(), 2);
    }

    #[test]
    fn a_filter_naming_nothing_configured_is_refused() {
        let cfg = crate::config::parse(CONFIG, Path::new("atlas.json")).unwrap();
        let e = names(&cfg, &["zz"], &[]).unwrap_err();
        assert_eq!(classify(&e), Exit::Usage, "{e:#}");
        let e = names(&cfg, &["b"], &["pedidos"]).unwrap_err();
        assert_eq!(classify(&e), Exit::Usage);
        assert!(
            format!("{e:#}").contains("--route 'pedidos' is not a route"),
            "{e:#}"
        );
    }
}
