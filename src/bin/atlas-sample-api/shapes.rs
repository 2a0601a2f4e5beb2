//! Pagination shapes of `/{kind}/{route}`: page numbers, offset/limit, opaque cursors,
//! next-URL bodies, `Link` headers, one unpaged body and wrapped records, plus the
//! `--misbehave` modes that test a client's loop guards.

use serde::Serialize;

use crate::cli::{cli_enum, Args};
use crate::data::Records;
use crate::http::{bad, param, query_with, Query, Reply};
use crate::range::{parse_param, resolve_range, Span};
use crate::state::State;

pub const MAX_PAGE_SIZE: u64 = 10_000;
/// `none` answers the whole range in one body; beyond this it would eat the machine.
const MAX_UNPAGED: u64 = 1_000_000;
const CURSOR_KEY: u64 = 0x5EED_A71A_5C0F_FEE5;

// The pagination shape is the first path segment; `none` is one unpaged body.
cli_enum!(Kind {
    Page = "page",
    Offset = "offset",
    Cursor = "cursor",
    NextUrl = "next_url",
    LinkHeader = "link_header",
    Unpaged = "none",
    Wrapped = "wrapped",
});

cli_enum!(Misbehave {
    RepeatCursor = "repeat_cursor",
    RepeatPage = "repeat_page",
    Endless = "endless",
    LyingTotal = "lying_total",
});

/// Everything a data endpoint needs: the request path, its data query (auth param removed)
/// and the `http://host:port` the client used, for absolute links.
pub struct Ctx<'a> {
    pub state: &'a State,
    pub path: &'a str,
    pub query: &'a Query,
    pub origin: String,
}

/// Every JSON envelope; kinds fill only their fields and `None` ones are skipped. A struct
/// rather than `json!` keeps the records' declared (non-alphabetical) field order.
#[derive(Serialize)]
struct Envelope<'a> {
    data: Records<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagina: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_paginas: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_registros: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    /// `Some(None)` is written as `null`: the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Links>,
}

#[derive(Serialize)]
struct Links {
    next: Option<String>,
}

#[derive(Serialize)]
struct WrappedBody<'a> {
    retorno: Retorno<'a>,
}

#[derive(Serialize)]
struct Retorno<'a> {
    pagina: u64,
    total_paginas: u64,
    pedidos: Records<'a>,
}

impl<'a> Envelope<'a> {
    fn new(data: Records<'a>) -> Self {
        Self {
            data,
            pagina: None,
            total_paginas: None,
            total_registros: None,
            total: None,
            next_cursor: None,
            links: None,
        }
    }
}

impl Ctx<'_> {
    fn args(&self) -> &Args {
        &self.state.args
    }

    fn span(&self) -> Result<Span, Reply> {
        let args = self.args();
        let get = |name: &str| {
            let raw =
                param(self.query, name).ok_or_else(|| bad(format!("parâmetro {name} ausente")))?;
            parse_param(raw, &args.param_format)
                .ok_or_else(|| bad(format!("parâmetro {name} inválido: {raw:?}")))
        };
        let start = get(&args.start_param)?;
        let end = get(&args.end_param)?;
        resolve_range(start, end, args.end_style, args.neighbours).map_err(bad)
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, Reply> {
        match param(self.query, name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("parâmetro {name} inválido: {raw:?}"))),
        }
    }

    /// 1-based page number; 0, negative or garbage is a 400.
    fn page(&self, name: &str) -> Result<u64, Reply> {
        match self.number(name, 1)? {
            0 => Err(bad(format!("parâmetro {name} deve ser maior que zero"))),
            n => Ok(n),
        }
    }

    fn size(&self, name: &str) -> Result<u64, Reply> {
        match self.number(name, self.args().page_size)? {
            0 => Err(bad(format!("parâmetro {name} deve ser maior que zero"))),
            n => Ok(n.min(MAX_PAGE_SIZE)),
        }
    }

    fn records(&self, span: Span, from: u64, to: u64) -> Records<'_> {
        Records {
            args: self.args(),
            first: span.first,
            from,
            to,
            wrapped: false,
        }
    }

    /// Clamped window of a 1-based page, plus the total and the page count.
    fn window(&self, span: Span, page: u64, size: u64) -> (u64, u64, u64, u64) {
        let total = span.total(self.args().per_day);
        let from = (page - 1).saturating_mul(size).min(total);
        let to = from.saturating_add(size).min(total);
        (from, to, total, total.div_ceil(size))
    }

    fn link(&self, page: u64, page_param: &str) -> String {
        format!(
            "{}?{}",
            self.path,
            query_with(self.query, page_param, &page.to_string())
        )
    }

    /// The answer of a data request of this `kind`; `Err` is an error reply such as a 400.
    pub fn serve(&self, kind: Kind) -> Result<Reply, Reply> {
        let span = self.span()?;
        let total = span.total(self.args().per_day);
        let body = match kind {
            Kind::Page => return self.serve_page(span),
            Kind::Cursor => return self.serve_cursor(span),
            Kind::LinkHeader => return self.serve_link_header(span),
            Kind::Offset => {
                let offset = self.number("offset", 0)?;
                let to = offset.saturating_add(self.size("limit")?).min(total);
                Envelope {
                    total: Some(total),
                    ..Envelope::new(self.records(span, offset.min(total), to))
                }
            }
            Kind::NextUrl => {
                let page = self.page("page")?;
                let (from, to, _, pages) = self.window(span, page, self.size("por_pagina")?);
                let next = (page < pages).then(|| {
                    let link = self.link(page + 1, "page");
                    match self.args().absolute_next {
                        true => format!("{}{link}", self.origin),
                        false => link,
                    }
                });
                Envelope {
                    links: Some(Links { next }),
                    ..Envelope::new(self.records(span, from, to))
                }
            }
            Kind::Unpaged if total > MAX_UNPAGED => {
                return Err(bad(format!("intervalo grande demais: {total} registros")));
            }
            Kind::Unpaged => Envelope::new(self.records(span, 0, total)),
            Kind::Wrapped => {
                let page = self.page("pagina")?;
                let (from, to, _, pages) = self.window(span, page, self.size("por_pagina")?);
                let pedidos = Records {
                    wrapped: true,
                    ..self.records(span, from, to)
                };
                let retorno = Retorno {
                    pagina: page,
                    total_paginas: pages,
                    pedidos,
                };
                return Ok(Reply::json(200, &WrappedBody { retorno }));
            }
        };
        Ok(Reply::json(200, &body))
    }

    fn serve_page(&self, span: Span) -> Result<Reply, Reply> {
        let page = self.page("page")?;
        let size = self.size("por_pagina")?;
        let misbehave = self.args().misbehave;
        // repeat_page: every page is page 1's exact body, with no totals to stop on.
        let served = match misbehave {
            Some(Misbehave::RepeatPage) => 1,
            _ => page,
        };
        let (from, to, total, pages) = self.window(span, served, size);
        let mut body = Envelope {
            pagina: Some(served),
            total_paginas: Some(pages),
            total_registros: Some(total),
            ..Envelope::new(self.records(span, from, to))
        };
        match misbehave {
            Some(Misbehave::RepeatPage) => {
                (body.total_paginas, body.total_registros) = (None, None)
            }
            Some(Misbehave::Endless) => {
                // Positions past the range run on into later days: fresh, never empty.
                let from = (page - 1).saturating_mul(size);
                body.data = self.records(span, from, from.saturating_add(size));
                (body.total_paginas, body.total_registros) = (None, None);
            }
            // Claims one page more than exists; that page is naturally empty.
            Some(Misbehave::LyingTotal) => body.total_paginas = Some(pages.saturating_add(1)),
            _ => {}
        }
        Ok(Reply::json(200, &body))
    }

    fn serve_cursor(&self, span: Span) -> Result<Reply, Reply> {
        let offset = match param(self.query, "cursor") {
            None | Some("") => 0,
            Some(raw) => u64::from_str_radix(raw, 16)
                .map(|c| c ^ CURSOR_KEY)
                .map_err(|_| bad(format!("cursor inválido: {raw:?}")))?,
        };
        let size = self.size("limit")?;
        let total = span.total(self.args().per_day);
        let to = offset.saturating_add(size).min(total);
        let encode = |pos: u64| format!("{:016x}", pos ^ CURSOR_KEY);
        let next = if self.args().misbehave == Some(Misbehave::RepeatCursor) && offset >= size {
            // From page 2 on the cursor is stuck on page 3, even past the end.
            Some(encode(size.saturating_mul(2)))
        } else {
            (to < total).then(|| encode(to))
        };
        let body = Envelope {
            next_cursor: Some(next),
            ..Envelope::new(self.records(span, offset.min(total), to))
        };
        Ok(Reply::json(200, &body))
    }

    fn serve_link_header(&self, span: Span) -> Result<Reply, Reply> {
        let page = self.page("page")?;
        let (from, to, _, pages) = self.window(span, page, self.size("per_page")?);
        // A deliberate mix of reference forms: path-absolute, query-only and full URL, and an
        // unquoted rel, as real servers send.
        let mut links = Vec::new();
        if page < pages {
            links.push(format!("<{}>; rel=\"next\"", self.link(page + 1, "page")));
        }
        let last = query_with(self.query, "page", &pages.max(1).to_string());
        links.push(format!("<?{last}>; rel=last"));
        links.push(format!(
            "<{}{}>; rel=\"first\"",
            self.origin,
            self.link(1, "page")
        ));
        let mut reply = Reply::json(200, &self.records(span, from, to));
        reply.headers.push(("Link", links.join(", ")));
        Ok(reply)
    }
}
