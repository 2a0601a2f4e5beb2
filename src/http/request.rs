//! What a slice's requests are: the route's method, query, headers and
//! body with the slice's bounds and secrets filled in, and per page the
//! pager's position.

use super::auth::ResolvedAuth;
use crate::config::template::{self, Secrets, Var, Vars};
use crate::config::{BodyFormat, Client, Method, Route};
use crate::paginate::Position;
use crate::userinfo;
use anyhow::Result;
use chrono::NaiveDate;
use url::Url;

/// One slice's requests: the route's templates filled with the slice's
/// bounds and secrets, and per page with the pager's position.
pub struct SliceRequest<'a> {
    route: &'a Route,
    secrets: &'a Secrets,
    start: String,
    end: String,
    first: Url,
}

/// What one request sends.
pub struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    /// The encoded body and its content type.
    pub body: Option<(Vec<u8>, &'static str)>,
    pub(super) secrets: &'a Secrets,
}

impl<'a> SliceRequest<'a> {
    /// Page one: base + path, fixed query (placeholders filled), date
    /// params, auth param.
    pub fn new(
        client: &Client,
        route: &'a Route,
        auth: &ResolvedAuth,
        secrets: &'a Secrets,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<SliceRequest<'a>> {
        let mut url = route_url(client, &route.path)?;
        let p = &route.date_params;
        let (start, end) =
            crate::dates::bounds(from, to, &p.format, p.end_style, route.timezone.as_ref());
        let mut req = SliceRequest {
            route,
            secrets,
            start,
            end,
            first: url.clone(),
        };
        let at = Position::first(&route.pagination);
        {
            let vars = req.vars(&at);
            let mut q = url.query_pairs_mut();
            for (k, v) in &route.query {
                q.append_pair(k, &vars.render(v));
            }
            if let Some(name) = &p.start {
                q.append_pair(name, &req.start);
            }
            if let Some(name) = &p.end {
                q.append_pair(name, &req.end);
            }
            if let ResolvedAuth::Query { param, value } = auth {
                q.append_pair(param, value.expose());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        req.first = url;
        Ok(req)
    }

    /// The URL of page one, where the pager starts.
    pub fn first_url(&self) -> Url {
        self.first.clone()
    }

    fn vars<'v>(&'v self, at: &'v Position) -> Vars<'v> {
        Vars {
            start: &self.start,
            end: &self.end,
            page: at.page,
            page_size: at.page_size,
            offset: at.offset,
            cursor: at.cursor.as_deref(),
            secrets: self.secrets,
        }
    }

    /// The request for the pager's `url` at position `at`: query values that
    /// follow the page re-filled, headers and body filled, pagination
    /// params that are JSON pointers set in the body.
    pub fn call(&self, url: &Url, at: &Position) -> Call<'a> {
        let vars = self.vars(at);
        let route = self.route;
        let mut url = url.clone();
        let paged: Vec<(&String, String)> = route
            .query
            .iter()
            .filter(|(_, t)| {
                template::vars(t)
                    .iter()
                    .any(|v| matches!(v, Var::Page | Var::PageSize | Var::Offset | Var::Cursor))
            })
            .map(|(k, t)| (k, vars.render(t)))
            .collect();
        if !paged.is_empty() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = match paged.iter().find(|(p, _)| **p == k) {
                        Some((_, filled)) => filled.clone(),
                        None => v.into_owned(),
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let headers = route
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), vars.render(v)))
            .collect();
        let body = route.body.as_ref().map(|b| {
            let mut b = vars.render_value(b);
            for (ptr, value) in at.body_params(&route.pagination) {
                template::set_pointer(&mut b, ptr, value);
            }
            encode_body(&b, route.body_format)
        });
        Call {
            method: route.method,
            url,
            headers,
            body,
            secrets: self.secrets,
        }
    }
}

/// A body as bytes with its content type; a form body is a flat object.
fn encode_body(b: &serde_json::Value, format: BodyFormat) -> (Vec<u8>, &'static str) {
    match format {
        BodyFormat::Json => (b.to_string().into_bytes(), "application/json"),
        BodyFormat::Form => {
            let mut f = url::form_urlencoded::Serializer::new(String::new());
            if let Some(o) = b.as_object() {
                for (k, v) in o {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    f.append_pair(k, &v);
                }
            }
            (f.finish().into_bytes(), "application/x-www-form-urlencoded")
        }
    }
}

/// The first request URL of a route for a client: base + path.
pub fn route_url(client: &Client, path: &str) -> Result<Url> {
    let base = client.base_url.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}{path}")).map_err(|e| {
        let shown = userinfo::text(&format!("{base}{path}")).into_owned();
        crate::exit::usage(format!("bad URL {shown}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_body_gets_its_placeholders_and_the_page_pointer() {
        let cfg = crate::config::parse(
            r#"{"clients": {"1": {"base_url": "http://api.test/x", "query": {"t": "{env:TOK}"}}},
                "routes": {"r": {"path": "/p", "records": "", "method": "POST",
                  "query": {"n": "{page}"},
                  "body": {"k": "{env:TOK}", "param": [{"pagina": 1, "de": "{start}", "ate": "{end}"}]},
                  "date_params": {"format": "%d/%m/%Y"},
                  "pagination": {"type": "page", "param": "/param/0/pagina"}}}}"#,
            std::path::Path::new("atlas.json"),
        )
        .unwrap();
        let (client, route) = cfg.route("1", "r").unwrap();
        let secrets =
            Secrets::resolve([("{env:TOK}", "k".to_string())], &|_| Some("tk".into())).unwrap();
        let day = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let req =
            SliceRequest::new(client, route, &ResolvedAuth::None, &secrets, day, day).unwrap();
        let pager = crate::paginate::Pager::new(&route.pagination, req.first_url());
        let mut pos = pager.position();
        assert_eq!(pos.page, Some(1));
        pos.page = Some(2);
        let call = req.call(pager.current(), &pos);
        assert_eq!(call.url.as_str(), "http://api.test/x/p?t=tk&n=2");
        let (body, kind) = call.body.as_ref().unwrap();
        assert_eq!(*kind, "application/json");
        let body: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"k": "tk", "param": [{"pagina": 2, "de": "01/03/2025", "ate": "01/03/2025"}]})
        );
        assert_eq!(call.masker(&ResolvedAuth::None).text("eco tk"), "eco ***");
    }
}
