//! Routing of one request to its reply: method check, `/_stats`, `/_expected`, and the data
//! endpoints with auth and fault decision around the pagination shapes.

use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use serde_json::json;
use url::form_urlencoded;

use crate::auth::Auth;
use crate::faults::FaultKind;
use crate::http::{bad, encode_query, param, Query, Reply};
use crate::range::{resolve_range, EndStyle};
use crate::server::Request;
use crate::shapes::{Ctx, Kind};
use crate::state::{lock, State};

enum Route {
    Stats,
    Expected,
    Data(Kind),
    NotFound,
}

/// `/_stats`, `/_expected` or `/{kind}/{route}` (any route name).
fn route_of(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["_stats"] => Route::Stats,
        ["_expected"] => Route::Expected,
        [kind, route] if !route.is_empty() => kind.parse().map_or(Route::NotFound, Route::Data),
        _ => Route::NotFound,
    }
}

fn serve_expected(state: &State, query: &Query) -> Reply {
    let get = |name: &str| {
        param(query, name)
            .and_then(|raw| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
            .map(|d| d.and_time(NaiveTime::MIN))
            .ok_or_else(|| bad(format!("parâmetro {name} ausente ou inválido (AAAA-MM-DD)")))
    };
    let span = get("data_inicial").and_then(|start| {
        let end = get("data_final")?;
        resolve_range(start, end, EndStyle::Inclusive, false).map_err(bad)
    });
    match span {
        Ok(span) => Reply::json(200, &json!({ "count": span.total(state.args.per_day) })),
        Err(reply) => reply,
    }
}

fn serve_stats(state: &State) -> Reply {
    let stats = lock(&state.stats);
    Reply::json(
        200,
        &json!({
            "requests": stats.requests,
            "faults": stats.faults,
            "by_status": stats.by_status,
        }),
    )
}

/// Auth, fault decision and the data answer of `/{kind}/{route}`.
fn serve_data(
    state: &State,
    request: &Request,
    kind: Kind,
    path: &str,
    mut query: Query,
) -> (Reply, Option<FaultKind>) {
    if state.args.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(state.args.latency_ms));
    }
    let authorized = state.args.auth.allows(request, &query);
    // The auth parameter is not part of the data query: not in links, not in --fail-first keys.
    if let Auth::Query { param: p, .. } = &state.args.auth {
        query.retain(|(k, _)| k != p);
    }
    if !authorized {
        return (Reply::error(401, "não autorizado"), None);
    }
    let pairs = query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let fault = state
        .faults
        .decide(&format!("{path}?{}", encode_query(pairs)));
    if fault.is_some() {
        lock(&state.stats).faults += 1;
    }
    let origin = request
        .header("Host")
        .map_or_else(|| state.local.to_string(), str::to_string);
    let ctx = Ctx {
        state,
        path,
        query,
        origin: format!("http://{origin}"),
    };
    (ctx.serve(kind).unwrap_or_else(|e| e), fault)
}

/// The reply to one request and the fault it carries; `slow` and `drop` are acted out by the
/// connection when sending.
pub fn handle(state: &State, request: &Request) -> (Reply, Option<FaultKind>) {
    let started = Instant::now();
    let url = request.target.as_str();
    let (path, raw_query) = url.split_once('?').unwrap_or((url, ""));
    let query: Query = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let route = route_of(path);
    if matches!(route, Route::Stats) {
        return (serve_stats(state), None);
    }
    lock(&state.stats).requests += 1;

    let (reply, fault) = match route {
        _ if !matches!(request.method.as_str(), "GET" | "HEAD") => {
            let mut reply = Reply::error(405, "método não permitido");
            reply.headers.push(("Allow", "GET, HEAD".to_string()));
            (reply, None)
        }
        Route::Stats | Route::NotFound => (Reply::error(404, "rota não encontrada"), None),
        Route::Expected => (serve_expected(state, &query), None),
        Route::Data(kind) => serve_data(state, request, kind, path, query),
    };
    let reply = match fault {
        Some(kind) => state.faults.reply(kind, reply),
        None => reply,
    };
    // Counted before any slow/drop action so /_stats is current while the client waits.
    state.record_status(reply.status);
    let elapsed = started.elapsed();
    log::debug!(
        "{} {url} -> {} {fault:?} in {elapsed:?}",
        request.method,
        reply.status
    );
    (reply, fault)
}
