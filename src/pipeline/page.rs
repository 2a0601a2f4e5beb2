//! One page of a slice: asked for under the client's rate limit with
//! retries, its body parsed once into rows that go to the writers as a
//! chunk, and what a page that cannot be had means for its slice (failed,
//! released, or not wanted after all); also the slice's requests, the
//! masking of its secrets and the record of why a slice failed.
//!
//! Invariant: a page's rows are on their way before a pagination guard
//! stops the slice.

use super::budget::{PageRoom, Reserved};
use super::track::SliceTrack;
use super::{Abort, Chunk, Shared};
use crate::http::{self, Failure};
use crate::json::Json;
use crate::ledger::Claim;
use crate::record::{self, PageRows, Row};
use crate::report::{Notice, Retried};
use crate::retry::{GaveUp, Policy, Stop, Verdict};
use crossbeam::channel::{SendError, Sender};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Why one attempt at a page gave no rows.
enum PageError {
    /// The request failed, or its 2xx body could not be used.
    Http(Failure),
    /// The data itself fails the slice (a guard, an undated record under `fail`).
    Data(String),
    /// `quit` rose while waiting for a request slot.
    Quit,
    /// A page asked for with page 1 lies past the pages page 1 declared
    /// (or page 1 wants none): dropped unseen.
    Beyond,
}

impl PageError {
    /// A 2xx body that cannot be used (not JSON, cut short, without the
    /// records): asked for again like a 5xx.
    fn unusable(body: &[u8], message: String) -> PageError {
        PageError::Http(Failure::Retry {
            status: Some(200),
            wait: None,
            message,
            body: http::snippet(body, 300),
        })
    }

    fn verdict(&self) -> Verdict {
        match self {
            PageError::Http(f) => http::classify(f),
            PageError::Data(_) | PageError::Quit | PageError::Beyond => Verdict::Fail,
        }
    }
}

/// How a fetcher's slice ended early.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SliceStop {
    /// The slice cannot succeed in this run; the reason is recorded.
    Failed(String),
    /// The run stops: the slice goes back to pending, unfinished.
    Released,
    /// The page was not wanted after all (`PageError::Beyond`): nothing of it counts.
    Beyond,
}

/// A digest of a page's stored rows (their hashes, in order), for the repeat
/// guard across pages: a page serving another page's records again means
/// the API ignores the page. Hashing the row hashes costs a tenth of
/// hashing the body. `None` for a page without rows.
pub(super) fn rows_key(rows: &[Row]) -> Option<[u8; 32]> {
    if rows.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    for r in rows {
        h.update(r.hash.as_bytes());
    }
    Some(h.finalize().into())
}

/// What the end of a page's retries (`g`) means for its slice, and for
/// the run when no slice can get past it; `auth_refused` words a refusal of
/// the credentials.
fn gave_up(
    g: GaveUp<PageError>,
    page_no: u64,
    auth_refused: impl FnOnce(u16) -> String,
) -> (SliceStop, Option<Abort>) {
    let failed = |m: String| SliceStop::Failed(format!("page {page_no}: {m}"));
    match (g.error, g.stop) {
        (_, Stop::Quit) | (PageError::Quit, _) => (SliceStop::Released, None),
        (PageError::Beyond, _) => (SliceStop::Beyond, None),
        (PageError::Http(Failure::Auth { status, .. }), _) => {
            // The slice that met the refusal fails (the summary counts
            // it); the others stop unworked and stay pending.
            let why = auth_refused(status);
            (failed(why.clone()), Some(Abort::Auth(why)))
        }
        (PageError::Http(Failure::Tls { message }), _) => {
            // Untrusted certificate: every request of the client would fail the same.
            (failed(message.clone()), Some(Abort::Environment(message)))
        }
        (PageError::Http(Failure::Refused { message, body, .. }), _) if body.is_empty() => {
            (failed(message), None)
        }
        (PageError::Http(Failure::Refused { message, body, .. }), _) => {
            (failed(format!("{message}: {body}")), None)
        }
        (PageError::Http(Failure::Retry { message, .. }), _) => (
            failed(format!("{message} (after {} attempts)", g.attempt)),
            None,
        ),
        (PageError::Data(m), _) => (SliceStop::Failed(m), None),
    }
}

impl<'j, 'a> Shared<'j, 'a> {
    /// The requests of a slice: the route's method, query, headers and body
    /// with the slice's bounds (each page's position filled in per call).
    pub(super) fn slice_request(&self, claim: &Claim) -> anyhow::Result<http::SliceRequest<'_>> {
        let job = self.job;
        http::SliceRequest::new(
            job.client,
            job.route,
            &job.auth,
            &job.secrets,
            claim.from,
            claim.to,
        )
    }

    /// Masks the client's secrets in anything shown or recorded.
    fn masker(&self) -> http::Masker {
        let job = self.job;
        http::Masker::new(&job.auth, &job.route.headers, &job.route.query)
            .with_secrets(&job.secrets)
    }

    /// Records why the slice failed; `page` is the page that failed it.
    pub(super) fn slice_failed(&self, track: &SliceTrack, page: u64, msg: String) {
        // Shown on stderr, written to the error log and to the ledger.
        let msg = self.masker().text(&msg);
        let claim = track.claim;
        let mut ctx = self.ctx(Some(&claim));
        ctx.page = Some(page);
        self.job.errlog.write("fatia falhou", &ctx, &msg);
        self.notify(Notice::SliceFailed {
            from: claim.from,
            to: claim.to,
            error: msg.clone(),
        });
        track.fetch_failed(msg);
    }

    /// Fetches one page: its body parsed once, its records turned into rows
    /// and sent to the writers, counted in the slice; `check` sees the body
    /// inside the retry loop and says what the page means for the slice.
    /// `room` is the page's room in the memory budget if taken already;
    /// `keep` says whether the page is still wanted (see `Spread::wanted`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fetch_page<T>(
        &self,
        track: &Arc<SliceTrack>,
        call: &http::Call<'_>,
        page_no: u64,
        tx: &Sender<Chunk>,
        room: Option<Reserved>,
        keep: Option<&dyn Fn(bool) -> bool>,
        mut check: impl FnMut(&[u8], &Json<'_>, Option<&str>, usize, &PageRows) -> Result<T, String>,
    ) -> Result<T, SliceStop> {
        let job = self.job;
        let claim = track.claim;
        // Room for the page in the memory budget, before it is asked for.
        let Some(mut held) = room.or_else(|| self.budget.for_page(job.quit, self.limiter.paced()))
        else {
            return Err(SliceStop::Released);
        };
        // What the page is charged: body, tree and rows. The rows mostly
        // reuse the room of records dropped as they are built; the overlap is
        // the margin for what the allocator keeps (docs/performance.md).
        let mut cost = 0;
        // The body is parsed once, borrowed, inside the retry loop: a body
        // that is not JSON or lacks the records is retried like a 5xx; one
        // nested past json::MAX_DEPTH fails the slice at once.
        let got = self.get_page(call, &claim, page_no, &mut held, keep, |raw, link| {
            let not_json = |e: crate::json::Error| {
                if e.is_too_deep() {
                    PageError::Data(format!("page {page_no}: {e}"))
                } else {
                    PageError::unusable(raw, format!("the body is not valid JSON ({e})"))
                }
            };
            let period = (job.scrap.from, job.scrap.to);
            // Records become rows as the body is parsed, written as
            // canonical text without a tree (json/text.rs) or, where that
            // path gives a record up, from a tree freed before the next
            // record is read. Where the pagination reads inside
            // the records the whole tree is built first; where a repeated
            // key put several arrays at the records' path, the body is
            // parsed again whole (the pointer names the last array).
            let mut streamed = None;
            let (mut body, tree) = if record::streams(job.route) {
                let mut rows = record::Rows::new(job.route, period, claim.from, 0);
                let (body, tree, found) =
                    Json::parse_records(raw, &job.route.records, &mut |i, el| rows.take(i, el))
                        .map_err(not_json)?;
                match found {
                    0 => (body, tree),
                    1 => {
                        streamed = Some(rows);
                        (body, tree)
                    }
                    _ => {
                        drop(body);
                        Json::parse_sized(raw).map_err(not_json)?
                    }
                }
            } else {
                Json::parse_sized(raw).map_err(not_json)?
            };
            let records = record::records_of_mut(&mut body, &job.route.records)
                .map_err(|m| PageError::unusable(raw, m))?;
            let n = records.len();
            let rows = match streamed {
                Some(rows) => rows.finish(n),
                None => record::page_rows(records, job.route, period, claim.from),
            }
            .map_err(|m| PageError::Data(format!("page {page_no}: {m}")))?;
            cost = raw.len() + tree + rows.bytes();
            let checked = check(raw, &body, link, n, &rows);
            Ok((rows, checked))
        });
        let (rows, checked) = got?;
        if let Some(why) = &rows.undated_reason {
            if track.first_undated() {
                let mut ctx = self.ctx(Some(&claim));
                ctx.page = Some(page_no);
                job.errlog.write("registro sem data", &ctx, why);
            }
        }
        for note in &rows.sanitised {
            let mut ctx = self.ctx(Some(&claim));
            ctx.page = Some(page_no);
            job.errlog.write("registro saneado", &ctx, note);
        }
        track.count_page(&rows);
        self.counters.count_page(&rows);
        // The body and its tree are gone: the page holds what its rows take.
        self.budget.saw_page(cost);
        held.resize(rows.bytes());
        if !rows.rows.is_empty() {
            track.hold();
            // Blocks while the channel is full: backpressure, never a drop.
            if let Err(SendError(chunk)) = tx.send(Chunk {
                lane: self.lane,
                slice: Arc::clone(track),
                rows: rows.rows,
                _held: Some(held),
            }) {
                // Every writer is gone (the run aborted): the slice stays unfinished.
                chunk.slice.release();
                self.let_go(&chunk.slice);
                return Err(SliceStop::Released);
            }
        }
        // A guard stops the slice only after the page's rows are on their way.
        checked.map_err(|m| SliceStop::Failed(format!("page {page_no}: {m}")))
    }

    /// One page with retries; `on_body` turns a 2xx body into `T`, or says
    /// why the body cannot be used.
    fn get_page<T>(
        &self,
        call: &http::Call<'_>,
        claim: &Claim,
        page_no: u64,
        held: &mut Reserved,
        keep: Option<&dyn Fn(bool) -> bool>,
        mut on_body: impl FnMut(&[u8], Option<&str>) -> Result<T, PageError>,
    ) -> Result<T, SliceStop> {
        let job = self.job;
        let policy = Policy {
            quit: Some(job.quit),
            ..self.policy()
        };
        let fetched = policy.run(
            |attempt| {
                // A page found unwanted is neither asked for again nor looked at.
                if keep.is_some_and(|k| !k(false)) {
                    return Err(PageError::Beyond);
                }
                // The pause and the rate are checked in one step, right before sending.
                let Some(permit) = self.limiter.acquire_as(job.quit, attempt > 1) else {
                    return Err(PageError::Quit);
                };
                let mut room = PageRoom {
                    held: &mut *held,
                    quit: job.quit,
                    limit: job.settings.max_body(),
                };
                let got = http::send(&self.agent, call, &job.auth, job.route, &mut room);
                self.counters.count_request(&got);
                // Rate-limit headers at 0, or a Retry-After on a 503: every
                // fetcher of the client waits, the rate stays.
                if let Some(wait) = http::pause_of(&got) {
                    self.limiter.pause(wait);
                }
                let got = match got {
                    // The server throttles the client, not this thread: every
                    // fetcher pauses for its Retry-After, else the backoff
                    // delay, and this one retries after the same wait.
                    Err(Failure::Retry {
                        status: Some(429),
                        wait,
                        message,
                        body,
                    }) => {
                        let wait =
                            wait.unwrap_or_else(|| policy.backoff.delay(attempt, fastrand::f64()));
                        permit.finish(Some(wait));
                        Err(Failure::Retry {
                            status: Some(429),
                            wait: Some(wait),
                            message,
                            body,
                        })
                    }
                    other => {
                        permit.finish(None);
                        other
                    }
                };
                // A page asked for with page 1 waits for its word before
                // anything of it (rows, errors) counts.
                if keep.is_some_and(|k| !k(true)) {
                    return Err(PageError::Beyond);
                }
                let page = got
                    .map_err(PageError::Http)
                    .and_then(|f| on_body(&f.body, f.link.as_deref()));
                if page.is_err() {
                    // No size learnt: a first page that fails does not keep
                    // the whole budget through its backoff and retries.
                    held.gave_no_body(job.settings.threads);
                }
                if let Err(PageError::Http(f)) = &page {
                    self.log_request_failure(
                        f,
                        &call.url,
                        claim,
                        page_no,
                        (attempt, policy.attempts),
                    );
                }
                page
            },
            PageError::verdict,
            |_, r| self.retrying(r, Retried::Page),
        );
        fetched.map_err(|g| self.page_gave_up(g, page_no))
    }

    /// Writes a failed request to the error log, under the heading its kind calls for.
    fn log_request_failure(
        &self,
        f: &Failure,
        url: &url::Url,
        claim: &Claim,
        page_no: u64,
        attempt: (u32, u32),
    ) {
        let mut ctx = self.ctx(Some(claim));
        ctx.page = Some(page_no);
        // Masked only when something is logged: not on the success path.
        let masker = self.masker();
        ctx.url = Some(masker.url(url));
        ctx.attempt = Some(attempt);
        ctx.status = f.status();
        let (what, message, body) = match f {
            Failure::Auth { status, body } => {
                ("autenticação recusada", self.auth_refused(*status), body)
            }
            Failure::Refused { message, body, .. } => {
                ("requisição recusada", message.clone(), body)
            }
            Failure::Retry { message, body, .. } => ("tentativa falhou", message.clone(), body),
            Failure::Tls { message } => ("certificado recusado", message.clone(), &String::new()),
        };
        ctx.body = Some(masker.text(body));
        self.job.errlog.write(what, &ctx, &masker.text(&message));
    }

    fn auth_refused(&self, status: u16) -> String {
        format!(
            "the API refused the credentials of client {} on route {} (HTTP {status})",
            self.job.client.id, self.job.route.name
        )
    }

    /// What the end of a page's retries means for its slice; a refusal of
    /// the credentials or of the server's certificate stops the run.
    fn page_gave_up(&self, g: GaveUp<PageError>, page_no: u64) -> SliceStop {
        let (stop, abort) = gave_up(g, page_no, |status| self.auth_refused(status));
        if let Some(why) = abort {
            self.abort(why);
        }
        stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(error: PageError, stop: Stop) -> (SliceStop, Option<Abort>) {
        let g = GaveUp {
            error,
            attempt: 3,
            stop,
        };
        gave_up(g, 7, |status| {
            format!("credentials refused (HTTP {status})")
        })
    }

    fn failed(m: &str) -> SliceStop {
        SliceStop::Failed(m.into())
    }

    #[test]
    fn a_stop_releases_the_slice_whatever_the_last_error() {
        let retry = Failure::Retry {
            status: Some(503),
            wait: None,
            message: "HTTP 503".into(),
            body: String::new(),
        };
        assert_eq!(
            after(PageError::Http(retry), Stop::Quit),
            (SliceStop::Released, None)
        );
        assert_eq!(
            after(PageError::Quit, Stop::Fail),
            (SliceStop::Released, None)
        );
        assert_eq!(
            after(PageError::Beyond, Stop::Fail),
            (SliceStop::Beyond, None)
        );
    }

    #[test]
    fn refused_credentials_fail_the_slice_and_stop_the_run() {
        let auth = Failure::Auth {
            status: 401,
            body: "no".into(),
        };
        assert_eq!(
            after(PageError::Http(auth), Stop::Auth),
            (
                failed("page 7: credentials refused (HTTP 401)"),
                Some(Abort::Auth("credentials refused (HTTP 401)".into()))
            )
        );
        let tls = Failure::Tls {
            message: "certificate not trusted".into(),
        };
        assert_eq!(
            after(PageError::Http(tls), Stop::Fail),
            (
                failed("page 7: certificate not trusted"),
                Some(Abort::Environment("certificate not trusted".into()))
            )
        );
    }

    #[test]
    fn other_failures_fail_the_slice_alone_naming_the_page() {
        let refused = |body: &str| Failure::Refused {
            status: Some(404),
            message: "HTTP 404".into(),
            body: body.into(),
        };
        assert_eq!(
            after(PageError::Http(refused("")), Stop::Fail),
            (failed("page 7: HTTP 404"), None)
        );
        assert_eq!(
            after(PageError::Http(refused("not found")), Stop::Fail),
            (failed("page 7: HTTP 404: not found"), None)
        );
        let retry = Failure::Retry {
            status: Some(500),
            wait: None,
            message: "HTTP 500".into(),
            body: "oops".into(),
        };
        assert_eq!(
            after(PageError::Http(retry), Stop::Exhausted),
            (failed("page 7: HTTP 500 (after 3 attempts)"), None)
        );
        assert_eq!(
            after(
                PageError::Data("page 7: guard: no records".into()),
                Stop::Fail
            ),
            (failed("page 7: guard: no records"), None),
            "the data names its page already"
        );
    }
}
