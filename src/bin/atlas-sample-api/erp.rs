//! `/erp/{shape}/{route}`: the same deterministic records answered the way real ERP APIs
//! answer (issue 13): `omie`, a POST with a JSON body carrying the call, the keys, the page
//! and the dates, whose empty result is an HTTP 500 fault; `tiny`, errors inside HTTP 200
//! (`codigo_erro` 20 = nothing found, 6 = blocked, see `--blocked-first`), parameters in the
//! query or a form body; `vtex`, both dates in one parameter and key/token headers.
//! Credentials are `--erp-key` / `--erp-secret`.

use chrono::NaiveDateTime;
use serde_json::{json, Value};
use url::form_urlencoded;

use crate::data::Records;
use crate::http::{Query, Reply};
use crate::range::{parse_param, resolve_range, EndStyle, Span};
use crate::server::Request;
use crate::shapes::MAX_PAGE_SIZE;
use crate::state::{lock, State};

/// Largest page the `omie` shape serves, as the real one.
const OMIE_MAX_PAGE: u64 = 500;

/// The reply of `/erp/{shape}/...`, and the key it is logged and counted under (no secret).
pub fn serve(state: &State, request: &Request, shape: &str, query: &Query) -> (Reply, String) {
    let path = request.target.split('?').next().unwrap_or("");
    match shape {
        "omie" => omie(state, request, path),
        "tiny" => tiny(state, request, path, query),
        "vtex" => vtex(state, request, path, query),
        _ => (Reply::error(404, "rota não encontrada"), path.to_string()),
    }
}

fn records(state: &State, span: Span, from: u64, to: u64, wrapped: bool) -> Records<'_> {
    Records {
        args: &state.args,
        first: span.first,
        from,
        to,
        wrapped,
    }
}

/// An Omie-style SOAP fault, always HTTP 500.
fn fault(code: &str, text: String) -> Reply {
    Reply::json(
        500,
        &json!({ "faultstring": text, "faultcode": format!("SOAP-ENV:Client-{code}") }),
    )
}

fn day(raw: Option<&Value>, fmt: &str) -> Option<NaiveDateTime> {
    parse_param(raw?.as_str()?, fmt)
}

fn omie(state: &State, request: &Request, path: &str) -> (Reply, String) {
    let key = path.to_string();
    if request.method != "POST" {
        let mut reply = Reply::error(405, "método não permitido");
        reply.headers.push(("Allow", "POST".to_string()));
        return (reply, key);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return (fault("8", "ERROR: JSON inválido".into()), key);
    };
    let param = body.pointer("/param/0").cloned().unwrap_or(Value::Null);
    let key = format!("{path}#{param}");
    let args = &state.args;
    if body["app_key"].as_str() != Some(&args.erp_key) {
        return (
            fault("101", "ERROR: app_key não informada ou inválida".into()),
            key,
        );
    }
    if body["app_secret"].as_str() != Some(&args.erp_secret) {
        // Echoes what it was given, as some ERPs do: a client must mask it.
        let given = body["app_secret"].as_str().unwrap_or("");
        let text = format!("ERROR: app_secret '{given}' inválido para a app_key informada");
        return (fault("101", text), key);
    }
    let page = param["pagina"].as_u64().filter(|p| *p > 0);
    let size = param["registros_por_pagina"]
        .as_u64()
        .filter(|s| (1..=OMIE_MAX_PAGE).contains(s));
    let start = day(param.get("filtrar_por_data_de"), "%d/%m/%Y");
    let end = day(param.get("filtrar_por_data_ate"), "%d/%m/%Y");
    let (Some(page), Some(size), Some(start), Some(end)) = (page, size, start, end) else {
        let text = "ERROR: pagina, registros_por_pagina (1 a 500), filtrar_por_data_de e \
                    filtrar_por_data_ate (dd/mm/aaaa) são obrigatórios";
        return (fault("8", text.into()), key);
    };
    let span = match resolve_range(start, end, EndStyle::Inclusive, false) {
        Ok(s) => s,
        Err(e) => return (fault("8", format!("ERROR: {e}")), key),
    };
    let total = span.total(args.per_day);
    let from = (page - 1).saturating_mul(size);
    if from >= total {
        let text = format!("ERROR: Não existem registros para a página [{page}]!");
        return (fault("5113", text), key);
    }
    let to = from.saturating_add(size).min(total);
    let reply = Reply::json(
        200,
        &json!({
            "pagina": page,
            "total_de_paginas": total.div_ceil(size),
            "registros": to - from,
            "total_de_registros": total,
            "pedido_venda_produto": records(state, span, from, to, false),
        }),
    );
    (reply, key)
}

/// A Tiny-style answer: HTTP 200 whatever happened.
fn tiny_error(code: &str, text: &str) -> Reply {
    Reply::json(
        200,
        &json!({ "retorno": {
            "status_processamento": 2,
            "status": "Erro",
            "codigo_erro": code,
            "erros": [{ "erro": text }],
        }}),
    )
}

fn tiny(state: &State, request: &Request, path: &str, query: &Query) -> (Reply, String) {
    // Parameters from the query and, for a POST, a form body.
    let mut params: Query = query.clone();
    if request.method == "POST" {
        params.extend(form_urlencoded::parse(&request.body).into_owned());
    }
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let visible: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let key = format!("{path}?{}", crate::http::encode_query(visible));
    let args = &state.args;
    if get("token") != Some(args.erp_secret.as_str()) {
        return (tiny_error("2", "token inválido"), key);
    }
    if args.blocked_first > 0 {
        let mut seen = lock(&state.erp_seen);
        let n = seen.entry(key.clone()).or_default();
        if *n < args.blocked_first {
            *n += 1;
            let text = "API Bloqueada - Excedido o número de acessos a API";
            return (tiny_error("6", text), key);
        }
    }
    let start = get("dataInicial").and_then(|d| parse_param(d, "%d/%m/%Y"));
    let end = get("dataFinal").and_then(|d| parse_param(d, "%d/%m/%Y"));
    let page = get("pagina").map_or(Some(1), |p| p.trim().parse::<u64>().ok().filter(|p| *p > 0));
    let (Some(start), Some(end), Some(page)) = (start, end, page) else {
        return (
            tiny_error(
                "31",
                "dataInicial, dataFinal (dd/mm/aaaa) ou pagina inválidos",
            ),
            key,
        );
    };
    let span = match resolve_range(start, end, EndStyle::Inclusive, false) {
        Ok(s) => s,
        Err(e) => return (tiny_error("31", &e), key),
    };
    let size = args.page_size;
    let total = span.total(args.per_day);
    let from = (page - 1).saturating_mul(size);
    if from >= total {
        return (tiny_error("20", "A consulta não retornou registros"), key);
    }
    let to = from.saturating_add(size).min(total);
    let reply = Reply::json(
        200,
        &json!({ "retorno": {
            "status_processamento": 3,
            "status": "OK",
            "pagina": page,
            "numero_paginas": total.div_ceil(size),
            "pedidos": records(state, span, from, to, true),
        }}),
    );
    (reply, key)
}

fn vtex(state: &State, request: &Request, path: &str, query: &Query) -> (Reply, String) {
    let key = format!(
        "{path}?{}",
        crate::http::encode_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    );
    let args = &state.args;
    if request.header("X-VTEX-API-AppKey") != Some(args.erp_key.as_str())
        || request.header("X-VTEX-API-AppToken") != Some(args.erp_secret.as_str())
    {
        return (Reply::error(401, "AppKey ou AppToken inválidos"), key);
    }
    let get = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    // creationDate:[2025-03-01T00:00:00.000Z TO 2025-03-01T23:59:59.999Z]
    let range = get("f_creationDate").and_then(|f| {
        let inner = f.strip_prefix("creationDate:[")?.strip_suffix(']')?;
        let (a, b) = inner.split_once(" TO ")?;
        let fmt = "%Y-%m-%dT%H:%M:%S%.3fZ";
        Some((parse_param(a, fmt)?, parse_param(b, fmt)?))
    });
    let Some((start, end)) = range else {
        let msg = "f_creationDate deve ser creationDate:[AAAA-MM-DDTHH:MM:SS.sssZ TO ...]";
        return (Reply::error(400, msg), key);
    };
    let number = |n: &str, default: u64| get(n).map_or(Some(default), |v| v.parse::<u64>().ok());
    let (Some(page), Some(per_page)) = (number("page", 1), number("per_page", args.page_size))
    else {
        return (Reply::error(400, "page ou per_page inválidos"), key);
    };
    if page == 0 || per_page == 0 || per_page > MAX_PAGE_SIZE {
        return (Reply::error(400, "page ou per_page fora do intervalo"), key);
    }
    let span = match resolve_range(start, end, EndStyle::EndOfDay, false) {
        Ok(s) => s,
        Err(e) => return (Reply::error(400, &e), key),
    };
    let total = span.total(args.per_day);
    let from = (page - 1).saturating_mul(per_page).min(total);
    let to = from.saturating_add(per_page).min(total);
    let reply = Reply::json(
        200,
        &json!({
            "list": records(state, span, from, to, false),
            "paging": { "total": total, "pages": total.div_ceil(per_page), "currentPage": page, "perPage": per_page },
        }),
    );
    (reply, key)
}
