//! A route's keys validated: path, dates, pagination, request templates,
//! response rules and the numbers' ranges.

use super::{nonempty, pointer, FieldError, DEFAULT_MAX_PAGES, DEFAULT_MAX_PAUSE_SECS};
use crate::config::ranges;
use crate::config::raw::{RawPagination, RawRoute};
use crate::config::template;
use crate::config::{BodyFormat, DateParams, Method, Pagination, Paging, Route, Undated};
use crate::dates::{self, EndStyle, Zone};
use serde_json::Value;
use std::collections::BTreeMap;

pub(super) fn route(name: &str, r: RawRoute) -> std::result::Result<Route, FieldError> {
    if !(r.path.is_empty() || r.path.starts_with('/')) {
        return Err(("path".into(), format!("'{}' must start with '/'", r.path)));
    }
    ranges::check("slice_days", ranges::SLICE_DAYS, Some(r.slice_days))
        .and_then(|()| ranges::check("settle_hours", ranges::SETTLE_HOURS, r.settle_hours))
        .and_then(|()| {
            ranges::check_count("max_pause_secs", ranges::MAX_PAUSE_SECS, r.max_pause_secs)
        })
        .map_err(|(k, m)| (k.to_string(), m))?;
    let format = r.date_params.format.unwrap_or_else(|| "%Y-%m-%d".into());
    let end_style = r.date_params.end_style.unwrap_or(EndStyle::Inclusive);
    dates::check_format(&format, end_style).map_err(|m| ("date_params.format".to_string(), m))?;
    let date_params = DateParams {
        start: r
            .date_params
            .start
            .as_deref()
            .map(|s| nonempty("date_params.start", s))
            .transpose()?,
        end: r
            .date_params
            .end
            .as_deref()
            .map(|s| nonempty("date_params.end", s))
            .transpose()?,
        format,
        end_style,
    };
    let timezone = match &r.timezone {
        None => None,
        Some(z) => Some(Zone::parse(z).map_err(|m| ("timezone".to_string(), m))?),
    };
    let start_date = match &r.start_date {
        None => None,
        Some(d) => Some(dates::parse_day(d).ok_or_else(|| {
            (
                "start_date".to_string(),
                format!("'{d}' is not a date YYYY-MM-DD"),
            )
        })?),
    };
    let charset = match &r.charset {
        None => None,
        Some(c) => Some(crate::charset::Charset::from_label(c).ok_or_else(|| {
            (
                "charset".to_string(),
                format!("'{c}' is not a charset atlas decodes (utf-8, iso-8859-1, windows-1252)"),
            )
        })?),
    };
    let paging = pagination(r.pagination)?;
    let method = match r.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some(_) => return Err(("method".into(), "must be GET or POST".into())),
    };
    let body_format = r.body_format.unwrap_or_default();
    request_templates(
        &r.query,
        &r.headers,
        r.body.as_ref(),
        body_format,
        method,
        &paging,
    )?;
    for (k, d) in [("start", &date_params.start), ("end", &date_params.end)] {
        if d.is_none()
            && !r.body.as_ref().is_some_and(|b| uses(b, k))
            && !r
                .query
                .values()
                .chain(r.headers.values())
                .any(|v| uses_str(v, k))
        {
            return Err((
                format!("date_params.{k}"),
                format!("missing: name the query parameter, or put {{{k}}} in the route's query, headers or body"),
            ));
        }
    }
    for (i, rule) in r.response_rules.iter().enumerate() {
        rule.check().map_err(|(k, m)| {
            (
                "response_rules".to_string(),
                format!("rule {}, '{k}': {m}", i + 1),
            )
        })?;
    }
    Ok(Route {
        name: name.to_string(),
        path: r.path,
        records: pointer("records", &r.records)?,
        records_unwrap: r
            .records_unwrap
            .map(|p| pointer("records_unwrap", &p))
            .transpose()?,
        date_params,
        slice_days: r.slice_days,
        pagination: paging,
        date_field: r
            .date_field
            .map(|p| pointer("date_field", &p))
            .transpose()?,
        timezone,
        query: r.query.into_iter().collect(),
        headers: r.headers.into_iter().collect(),
        undated: r.undated.unwrap_or(Undated::SliceStart),
        start_date,
        charset,
        method,
        body: r.body,
        body_format,
        response_rules: r.response_rules,
        parallel_pages: r.parallel_pages.unwrap_or(true),
        speculative_pages: r.speculative_pages.unwrap_or(true),
        max_pause: std::time::Duration::from_secs(
            r.max_pause_secs.unwrap_or(DEFAULT_MAX_PAUSE_SECS),
        ),
        settle_hours: r.settle_hours.unwrap_or(0),
    })
}

/// True when a template of the body uses `{name}`.
fn uses(body: &Value, name: &str) -> bool {
    template::strings(body)
        .into_iter()
        .any(|s| uses_str(s, name))
}

fn uses_str(s: &str, name: &str) -> bool {
    let want = match name {
        "start" => template::Var::Start,
        _ => template::Var::End,
    };
    template::vars(s).contains(&want)
}

/// The placeholders of a route's query, headers and body, and its body's
/// shape and pagination pointers.
fn request_templates(
    query: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
    body: Option<&Value>,
    format: BodyFormat,
    method: Method,
    paging: &Paging,
) -> std::result::Result<(), FieldError> {
    for (what, map) in [("query", query), ("headers", headers)] {
        for (k, v) in map {
            template::check(v, paging).map_err(|m| (format!("{what}.{k}"), m))?;
        }
    }
    if let Some(b) = body {
        if method != Method::Post {
            return Err((
                "body".into(),
                "a body is sent only with \"method\": \"POST\"".into(),
            ));
        }
        for s in template::strings(b) {
            template::check(s, paging).map_err(|m| ("body".to_string(), m))?;
        }
        if format == BodyFormat::Form
            && !b
                .as_object()
                .is_some_and(|o| o.values().all(|v| !v.is_object() && !v.is_array()))
        {
            return Err((
                "body_format".into(),
                "form needs the body to be a flat object (no nested objects or arrays)".into(),
            ));
        }
    }
    let params: Vec<(&str, &str)> = match &paging.kind {
        Pagination::Page {
            param, size_param, ..
        } => {
            let mut v = vec![("param", param.as_str())];
            if let Some(s) = size_param {
                v.push(("size_param", s));
            }
            v
        }
        Pagination::Offset {
            offset_param,
            limit_param,
            ..
        } => vec![("offset_param", offset_param), ("limit_param", limit_param)],
        Pagination::Cursor { param, .. } => vec![("param", param)],
        _ => vec![],
    };
    for (k, p) in params.into_iter().filter(|(_, p)| p.starts_with('/')) {
        let key = format!("pagination.{k}");
        let Some(b) = body else {
            return Err((key, format!("'{p}' is a JSON pointer into the body, but the route has no body (give \"method\": \"POST\" and a \"body\")")));
        };
        let mut probe = b.clone();
        if !template::set_pointer(&mut probe, p, Value::Null) {
            return Err((
                key,
                format!("'{p}' does not point into the body: its parent is missing"),
            ));
        }
    }
    Ok(())
}

fn pagination(p: Option<RawPagination>) -> std::result::Result<Paging, FieldError> {
    let k = "pagination";
    let positive = |key: &str, v: Option<u64>| -> std::result::Result<Option<u64>, FieldError> {
        let range = match key {
            "max_pages" => ranges::MAX_PAGES,
            _ => ranges::PAGE_SIZE,
        };
        ranges::check_count("", range, v).map_err(|(_, m)| (format!("{k}.{key}"), m))?;
        Ok(v)
    };
    let mp = |m: Option<u64>| -> std::result::Result<u64, FieldError> {
        Ok(positive("max_pages", m)?.unwrap_or(DEFAULT_MAX_PAGES))
    };
    let name =
        |key: &str, v: Option<String>, default: &str| -> std::result::Result<String, FieldError> {
            nonempty(
                &format!("{k}.{key}"),
                &v.unwrap_or_else(|| default.to_string()),
            )
        };
    let ptr = |key: &str, v: Option<String>| -> std::result::Result<Option<String>, FieldError> {
        v.map(|p| pointer(&format!("{k}.{key}"), &p)).transpose()
    };
    Ok(match p.unwrap_or(RawPagination::None { max_pages: None }) {
        RawPagination::None { max_pages } => Paging {
            kind: Pagination::None,
            max_pages: mp(max_pages)?,
        },
        RawPagination::Page {
            param,
            start,
            size_param,
            size,
            total_pages,
            stop_on_short_page,
            max_pages,
        } => {
            positive("size", size)?;
            ranges::check("", ranges::PAGE_START, start.map(|n| n as f64))
                .map_err(|(_, m)| (format!("{k}.start"), m))?;
            if stop_on_short_page && size.is_none() {
                return Err((
                    format!("{k}.stop_on_short_page"),
                    "needs 'size' to know what a short page is".into(),
                ));
            }
            Paging {
                kind: Pagination::Page {
                    param: name("param", param, "page")?,
                    start: start.unwrap_or(1),
                    size_param: size_param
                        .map(|s| nonempty(&format!("{k}.size_param"), &s))
                        .transpose()?,
                    size,
                    total_pages: ptr("total_pages", total_pages)?,
                    stop_on_short_page,
                },
                max_pages: mp(max_pages)?,
            }
        }
        RawPagination::Offset {
            offset_param,
            limit_param,
            limit,
            total,
            max_pages,
        } => {
            positive("limit", limit)?;
            Paging {
                kind: Pagination::Offset {
                    offset_param: name("offset_param", offset_param, "offset")?,
                    limit_param: name("limit_param", limit_param, "limit")?,
                    limit: limit.unwrap_or(100),
                    total: ptr("total", total)?,
                },
                max_pages: mp(max_pages)?,
            }
        }
        RawPagination::Cursor {
            param,
            cursor_path,
            max_pages,
        } => Paging {
            kind: Pagination::Cursor {
                param: name("param", param, "cursor")?,
                cursor_path: pointer(&format!("{k}.cursor_path"), &cursor_path)?,
            },
            max_pages: mp(max_pages)?,
        },
        RawPagination::NextUrl {
            next_path,
            max_pages,
        } => Paging {
            kind: Pagination::NextUrl {
                next_path: pointer(&format!("{k}.next_path"), &next_path)?,
            },
            max_pages: mp(max_pages)?,
        },
        RawPagination::LinkHeader { max_pages } => Paging {
            kind: Pagination::LinkHeader,
            max_pages: mp(max_pages)?,
        },
    })
}
