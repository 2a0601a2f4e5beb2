//! Routing of one request to its reply: method check, `/_stats`, `/_expected`, and the data
//! endpoints with auth, fault decision and `--hostile` around the pagination shapes.

use std::time::{Duration, Instant, SystemTime};

use chrono::{NaiveDate, NaiveTime};
use serde_json::json;
use url::form_urlencoded;

use crate::auth::Auth;
use crate::cli::LimitHeaders;
use crate::faults::FaultKind;
use crate::hostile::GoodSource;
use crate::http::{bad, encode_query, param, Query, Reply};
use crate::limit::QuotaAnswer;
use crate::oauth::OAuthServer;
use crate::range::{resolve_range, EndStyle};
use crate::server::Request;
use crate::shapes::{Ctx, Kind};
use crate::state::{lock, State};

enum Route {
    Token,
    Authorize,
    Revoke,
    Stats,
    Expected,
    Data(Kind),
    /// `/erp/{shape}/{route}` (see `erp`).
    Erp(String),
    NotFound,
}

/// `/_stats`, `/_expected`, `/erp/{shape}/{path...}` or `/{kind}/{route}` (any route name).
fn route_of(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["oauth", "token"] => Route::Token,
        ["oauth", "authorize"] => Route::Authorize,
        ["_oauth", "revoke"] => Route::Revoke,
        ["_stats"] => Route::Stats,
        ["_expected"] => Route::Expected,
        ["erp", shape, rest @ ..] if rest.iter().any(|r| !r.is_empty()) => {
            Route::Erp(shape.to_string())
        }
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
            "hostile": state.hostile.as_ref().map(|h| h.served()),
        }),
    )
}

/// A GET or HEAD of `/{kind}/{route}`, its credential checked and taken out of the query.
struct DataRequest<'a> {
    kind: Kind,
    path: &'a str,
    authorized: bool,
    /// The query without the auth parameter: not in links, not in the URL key.
    query: Query,
    /// `path?query`: what makes two requests the same URL, for `--fail-first` and the
    /// request log.
    key: String,
}

impl<'a> DataRequest<'a> {
    fn new(
        auth: &Auth,
        state_oauth: Option<&OAuthServer>,
        request: &Request,
        kind: Kind,
        path: &'a str,
        mut query: Query,
    ) -> Self {
        let authorized =
            auth.allows(request, &query) && state_oauth.is_none_or(|o| o.allows(request));
        if let Auth::Query { param: p, .. } = auth {
            query.retain(|(k, _)| k != p);
        }
        let pairs = query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let key = format!("{path}?{}", encode_query(pairs));
        Self {
            kind,
            path,
            authorized,
            query,
            key,
        }
    }
}

/// `--rate-limit` and `--quota` for one data request: `Err` is the 429 that refuses it; `Ok`
/// the quota's answer, whose headers go on the reply.
fn gate(state: &State) -> Result<Option<QuotaAnswer>, Reply> {
    if let Some(limiter) = &state.limiter {
        // The clock is read under the lock, so the window sees starts in order.
        let mut window = lock(limiter);
        if !window.admit(Instant::now()) {
            return Err(Reply::too_many(state.args.retry_after));
        }
    }
    let Some(quota) = &state.quota else {
        return Ok(None);
    };
    let mut quota = lock(quota);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let answer = quota.take(now);
    if answer.admitted {
        Ok(Some(answer))
    } else {
        let mut reply = Reply::error(429, "cota de requisições esgotada");
        limit_headers(state, &mut reply, &answer);
        Err(reply)
    }
}

/// The `--limit-headers` of a quota answer.
fn limit_headers(state: &State, reply: &mut Reply, a: &QuotaAnswer) {
    let (names, reset) = match state.args.limit_headers {
        LimitHeaders::X => (
            [
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
            a.reset_at,
        ),
        LimitHeaders::Ietf => (
            ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"],
            a.reset_in,
        ),
    };
    reply.headers.push((names[0], a.limit.to_string()));
    reply.headers.push((names[1], a.remaining.to_string()));
    reply.headers.push((names[2], reset.to_string()));
}

/// Rate limit, quota, latency, fault decision and the answer of `/erp/{shape}/{route}`.
fn serve_erp(
    state: &State,
    request: &Request,
    shape: &str,
    query: &Query,
) -> (Reply, Option<FaultKind>, String) {
    let quota = match gate(state) {
        Ok(q) => q,
        Err(reply) => return (reply, None, request.target.clone()),
    };
    if state.args.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(state.args.latency_ms));
    }
    let (mut reply, key) = crate::erp::serve(state, request, shape, query);
    if let Some(q) = &quota {
        limit_headers(state, &mut reply, q);
    }
    let fault = state.faults.decide(&key);
    if fault.is_some() {
        lock(&state.stats).faults += 1;
    }
    (reply, fault, key)
}

/// Rate limit, latency, auth, fault decision and the data answer of `/{kind}/{route}`.
fn serve_data(state: &State, request: &Request, data: &DataRequest) -> (Reply, Option<FaultKind>) {
    let quota = match gate(state) {
        Ok(q) => q,
        Err(reply) => return (reply, None),
    };
    let (mut reply, fault) = serve_data_admitted(state, request, data);
    if let Some(q) = &quota {
        limit_headers(state, &mut reply, q);
    }
    (reply, fault)
}

fn serve_data_admitted(
    state: &State,
    request: &Request,
    data: &DataRequest,
) -> (Reply, Option<FaultKind>) {
    if state.args.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(state.args.latency_ms));
    }
    if !data.authorized {
        return (Reply::error(401, "não autorizado"), None);
    }
    let fault = state.faults.decide(&data.key);
    if fault.is_some() {
        lock(&state.stats).faults += 1;
    }
    let origin = request
        .header("Host")
        .map_or_else(|| state.local.to_string(), str::to_string);
    let ctx = Ctx {
        state,
        path: data.path,
        query: &data.query,
        origin: format!("http://{origin}"),
    };
    (ctx.serve(data.kind).unwrap_or_else(|e| e), fault)
}

/// The scalar members of a POST's JSON object body, as parameters after the query's (an
/// empty body has none).
fn body_params(request: &Request) -> Result<Query, Reply> {
    if request.body.is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value = serde_json::from_slice(&request.body)
        .map_err(|e| bad(format!("corpo JSON inválido: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(bad("o corpo deve ser um objeto JSON"));
    };
    Ok(object
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), v))
        })
        .collect())
}

/// The reply to one request and the fault it carries; `slow` and `drop` are acted out by the
/// connection when sending. JSON bodies leave here in the `--charset` asked for.
pub fn handle(state: &State, request: &Request) -> (Reply, Option<FaultKind>) {
    let started = Instant::now();
    let read_at = SystemTime::now();
    let charset = state.args.charset;
    let url = request.target.as_str();
    let (path, raw_query) = url.split_once('?').unwrap_or((url, ""));
    let query: Query = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let route = route_of(path);
    if matches!(route, Route::Stats) {
        return (charset.encode(serve_stats(state)), None);
    }
    lock(&state.stats).requests += 1;

    let mut url_key = None;
    let (reply, fault) = match route {
        Route::Token => match &state.oauth {
            Some(oauth) if request.method == "POST" => (oauth.token(request), None),
            Some(_) => {
                let mut reply = Reply::error(405, "método não permitido");
                reply.headers.push(("Allow", "POST".to_string()));
                (reply, None)
            }
            None => (Reply::error(404, "rota não encontrada (sem --oauth)"), None),
        },
        Route::Authorize => match &state.oauth {
            Some(oauth) if request.method == "GET" => (oauth.authorize(&query), None),
            Some(_) => {
                let mut reply = Reply::error(405, "método não permitido");
                reply.headers.push(("Allow", "GET".to_string()));
                (reply, None)
            }
            None => (Reply::error(404, "rota não encontrada (sem --oauth)"), None),
        },
        Route::Revoke => match &state.oauth {
            Some(oauth) if request.method == "POST" => (oauth.revoke_access(), None),
            _ => (Reply::error(404, "rota não encontrada"), None),
        },
        Route::Data(kind) if request.method == "POST" => {
            // A POST carries its parameters in a JSON object body as well.
            let data = match body_params(request) {
                Ok(extra) => {
                    let mut query = query;
                    query.extend(extra);
                    DataRequest::new(
                        &state.args.auth,
                        state.oauth.as_ref(),
                        request,
                        kind,
                        path,
                        query,
                    )
                }
                Err(reply) => return (charset.encode(reply), None),
            };
            let served = serve_data(state, request, &data);
            url_key = Some(data.key);
            served
        }
        Route::Erp(ref shape) if request.method == "POST" => {
            let (reply, fault, key) = serve_erp(state, request, shape, &query);
            url_key = Some(key);
            (reply, fault)
        }
        _ if !matches!(request.method.as_str(), "GET" | "HEAD") => {
            let mut reply = Reply::error(405, "método não permitido");
            let allow = match route {
                Route::Data(_) | Route::Erp(_) => "GET, HEAD, POST",
                _ => "GET, HEAD",
            };
            reply.headers.push(("Allow", allow.to_string()));
            (reply, None)
        }
        Route::Stats | Route::NotFound => (Reply::error(404, "rota não encontrada"), None),
        Route::Expected => (serve_expected(state, &query), None),
        Route::Erp(ref shape) => {
            let (reply, fault, key) = serve_erp(state, request, shape, &query);
            url_key = Some(key);
            (reply, fault)
        }
        Route::Data(kind) => {
            let oauth = state.oauth.as_ref();
            let data = DataRequest::new(&state.args.auth, oauth, request, kind, path, query);
            let served = serve_data(state, request, &data);
            url_key = Some(data.key);
            served
        }
    };
    let reply = match fault {
        Some(kind) => state.faults.reply(kind, reply),
        None => reply,
    };
    let reply = charset.encode(reply);
    // `--hostile` turns a data route's good answer bad (after the charset: it is made from
    // the bytes that would have gone out); faults and HEAD are left alone.
    let reply = match (&state.hostile, &url_key) {
        (Some(hostile), Some(key))
            if matches!(route, Route::Data(_)) && fault.is_none() && request.method != "HEAD" =>
        {
            let source = GoodSource {
                target: &request.target,
                host: request.header("Host").unwrap_or(""),
                port: state.local.port(),
            };
            hostile.apply(reply, key, source)
        }
        _ => reply,
    };
    // Counted and logged before any slow/drop action so both are current while the client
    // waits.
    state.record_status(reply.status);
    if let (Some(log), Some(key)) = (&state.request_log, &url_key) {
        log.write(read_at, reply.status, key);
    }
    let elapsed = started.elapsed();
    log::debug!(
        "{} {url} -> {} {fault:?} in {elapsed:?}",
        request.method,
        reply.status
    );
    (reply, fault)
}

#[cfg(test)]
mod tests {
    use crate::charset::JSON_LATIN1;
    use crate::test_client::{start, Client, RANGE};

    /// Three quick data requests against `--rate-limit 2`: the third is refused, and the log
    /// has one line per data request, keyed without the credential.
    #[test]
    fn rate_limit_and_request_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("requests.log");
        let log_arg = log.to_str().expect("utf-8 path");
        let addr = start(&[
            "--per-day",
            "2",
            "--rate-limit",
            "2",
            "--retry-after",
            "3",
            "--request-log",
            log_arg,
            "--auth",
            "query:api_key:s3cr3t",
            "--charset",
            "latin1",
        ]);
        let mut c = Client::connect(addr);
        let target = format!("/page/pedidos?api_key=s3cr3t&{RANGE}");
        let statuses: Vec<u16> = (0..3).map(|_| c.get(&target).status).collect();
        assert_eq!(statuses, [200, 200, 429]);
        let refused = c.get(&target);
        assert_eq!(refused.header("Retry-After"), Some("3"));
        assert_eq!(refused.header("Content-Type"), Some(JSON_LATIN1));
        assert_eq!(refused.body, b"{\"erro\":\"muitas requisi\xe7\xf5es\"}");
        assert_eq!(c.get("/_stats").status, 200);
        assert_eq!(
            c.get("/_expected?data_inicial=2025-01-01&data_final=2025-01-01")
                .status,
            200
        );

        let text = std::fs::read_to_string(&log).expect("request log");
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
        let key = format!("/page/pedidos?{RANGE}");
        let shape: Vec<(&str, &str)> = lines.iter().map(|f| (f[1], f[2])).collect();
        let want = [
            ("200", &key[..]),
            ("200", &key),
            ("429", &key),
            ("429", &key),
        ];
        assert_eq!(shape, want);
        let times: Vec<u64> = lines.iter().map(|f| f[0].parse().expect("ms")).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(times[0] > 1_700_000_000_000, "unix ms: {}", times[0]);
    }
}
