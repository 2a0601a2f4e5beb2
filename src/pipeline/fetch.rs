//! Fetchers: claim a slice (or wait while other processes hold the rest),
//! page through it, turn each page into rows and send them to the writers
//! as a chunk. Each page is retried per `retry`, under the client's rate limit.
//!
//! Invariants: a page's rows are on their way before a pagination guard
//! stops the slice; a slice whose rows cannot all be sent (the run stops) is
//! released, never marked done; the fetcher lets go of its slice last thing.

use super::track::{ReleaseOnPanic, SliceTrack};
use super::{add, Abort, Chunk, Shared};
use crate::http::{self, Failure};
use crate::json::Json;
use crate::ledger::{self, Claim};
use crate::paginate::Pager;
use crate::record;
use crate::report::{Notice, Retried};
use crate::retry::{self, GaveUp, Policy, Stop, Verdict};
use crossbeam::channel::{SendError, Sender};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why one attempt at a page gave no rows.
enum PageError {
    /// The request failed, or its 2xx body could not be used.
    Http(Failure),
    /// The data itself fails the slice (a guard, an undated record under `fail`).
    Data(String),
    /// `quit` rose while waiting for a request slot.
    Quit,
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
            PageError::Data(_) | PageError::Quit => Verdict::Fail,
        }
    }
}

/// How a fetcher's slice ended early.
enum SliceStop {
    /// The slice cannot succeed in this run; the reason is recorded.
    Failed(String),
    /// The run stops: the slice goes back to pending, unfinished.
    Released,
}

impl Shared<'_, '_> {
    /// Works slices until none is left or the run stops.
    pub(super) fn fetcher(&self, tx: &Sender<Chunk>) {
        while let Some(claim) = self.next_claim() {
            let track = SliceTrack::new(claim);
            // A panic while fetching releases the slice instead of leaving it running.
            let mut guard = ReleaseOnPanic {
                held: vec![Arc::clone(&track)],
                let_go: |t: &SliceTrack| self.let_go(t),
            };
            match self.fetch_slice(&track, tx) {
                Ok(()) => {}
                Err(SliceStop::Failed(msg)) => self.slice_failed(&track, msg),
                Err(SliceStop::Released) => track.release(),
            }
            guard.held.clear();
            self.let_go(&track);
        }
    }

    /// The next slice to work, waiting while other workers hold the rest
    /// (they may die); `None` when nothing is left or the run stops.
    fn next_claim(&self) -> Option<Claim> {
        let job = self.job;
        let poll =
            (job.settings.lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
        while !job.quit.load(Ordering::SeqCst) {
            let free = self.with_db("claiming a slice", |c| {
                ledger::claim(c, job.scrap.id, job.run_id, &job.worker, job.settings.lease)
            });
            let held = match free {
                Ok(Some(claim)) => return Some(claim),
                // Dead workers' slices are taken over before anything is waited for.
                Ok(None) if self.take_over_dead_local_workers() > 0 => continue,
                Ok(None) => self.with_db("checking other workers", |c| {
                    ledger::held_by_others(c, job.scrap.id, &job.worker)
                }),
                Err(e) => Err(e),
            };
            match held {
                Ok(0) => return None,
                Ok(slices) => {
                    self.notify(Notice::Waiting {
                        slices,
                        lease: job.settings.lease,
                    });
                    retry::sleep_until(Instant::now() + poll, job.quit);
                }
                Err(e) => {
                    self.abort(Abort::Database(format!("{e:#}")));
                    return None;
                }
            }
        }
        None
    }

    /// Masks the client's secrets in anything shown or recorded.
    fn masker(&self) -> http::Masker {
        let job = self.job;
        http::Masker::new(&job.auth, &job.route.headers, &job.route.query)
            .with_secrets(&job.secrets)
    }

    fn slice_failed(&self, track: &SliceTrack, msg: String) {
        // Shown on stderr, written to the error log and to the ledger.
        let msg = self.masker().text(&msg);
        let claim = track.claim;
        let mut ctx = self.ctx(Some(&claim));
        ctx.page = Some(track.pages() as u64 + 1);
        self.job.errlog.write("fatia falhou", &ctx, &msg);
        self.notify(Notice::SliceFailed {
            from: claim.from,
            to: claim.to,
            error: msg.clone(),
        });
        track.fetch_failed(msg);
    }

    fn fetch_slice(&self, track: &Arc<SliceTrack>, tx: &Sender<Chunk>) -> Result<(), SliceStop> {
        let job = self.job;
        let claim = track.claim;
        let request = http::SliceRequest::new(
            job.client,
            job.route,
            &job.auth,
            &job.secrets,
            claim.from,
            claim.to,
        )
        .map_err(|e| SliceStop::Failed(format!("{e:#}")))?;
        let mut pager = Pager::new(&job.route.pagination, request.first_url());
        let mut undated_logged = false;
        loop {
            if job.quit.load(Ordering::SeqCst) {
                return Err(SliceStop::Released);
            }
            let page_no = pager.page_number();
            let call = request.call(pager.current(), &pager.position());
            // The body is parsed once, borrowed, inside the retry loop: a body
            // that is not JSON or lacks the records is retried like a 5xx; one
            // nested past json::MAX_DEPTH fails the slice at once.
            let (rows, more) = self.get_page(&call, &claim, page_no, |raw, link| {
                let body = Json::parse(raw).map_err(|e| {
                    if e.is_too_deep() {
                        PageError::Data(format!("page {page_no}: {e}"))
                    } else {
                        PageError::unusable(raw, format!("the body is not valid JSON ({e})"))
                    }
                })?;
                let records = record::records_of(&body, &job.route.records)
                    .map_err(|m| PageError::unusable(raw, m))?;
                let n = records.len();
                let rows = record::page_rows(
                    records,
                    job.route,
                    (job.scrap.from, job.scrap.to),
                    claim.from,
                )
                .map_err(|m| PageError::Data(format!("page {page_no}: {m}")))?;
                let more = pager
                    .advance(raw, &body, link, n)
                    .map_err(|guard| format!("page {page_no}: {guard}"));
                Ok((rows, more))
            })?;
            if let (Some(why), false) = (&rows.undated_reason, undated_logged) {
                undated_logged = true;
                let mut ctx = self.ctx(Some(&claim));
                ctx.page = Some(page_no);
                job.errlog.write("registro sem data", &ctx, why);
            }
            for note in &rows.sanitised {
                let mut ctx = self.ctx(Some(&claim));
                ctx.page = Some(page_no);
                job.errlog.write("registro saneado", &ctx, note);
            }
            track.count_page(&rows);
            self.counters.count_page(&rows);
            if !rows.rows.is_empty() {
                track.hold();
                // Blocks while the channel is full: backpressure, never a drop.
                if let Err(SendError(chunk)) = tx.send(Chunk {
                    slice: Arc::clone(track),
                    rows: rows.rows,
                }) {
                    // Every writer is gone (the run aborted): the slice stays unfinished.
                    chunk.slice.release();
                    self.let_go(&chunk.slice);
                    return Err(SliceStop::Released);
                }
            }
            // A guard stops the slice only after the page's rows are on their way.
            if !more.map_err(SliceStop::Failed)? {
                return Ok(());
            }
        }
    }

    /// One page with retries; `on_body` turns a 2xx body into `T`, or says
    /// why the body cannot be used.
    fn get_page<T>(
        &self,
        call: &http::Call<'_>,
        claim: &Claim,
        page_no: u64,
        mut on_body: impl FnMut(&[u8], Option<&str>) -> Result<T, PageError>,
    ) -> Result<T, SliceStop> {
        let job = self.job;
        let policy = Policy {
            quit: Some(job.quit),
            ..self.policy()
        };
        let fetched = policy.run(
            |attempt| {
                // The pause and the rate are checked in one step, right before sending.
                let Some(permit) = self.limiter.acquire_as(job.quit, attempt > 1) else {
                    return Err(PageError::Quit);
                };
                let got = http::send(&self.agent, call, &job.auth, job.route);
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
                let page = got
                    .map_err(PageError::Http)
                    .and_then(|f| on_body(&f.body, f.link.as_deref()));
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
            |_, r| {
                add(&self.counters.retries, 1);
                self.notify(Notice::Retrying {
                    attempt: r.attempt,
                    attempts: r.attempts,
                    wait: r.wait,
                    of: Retried::Page,
                });
            },
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

    /// What the end of a page's retries means for its slice.
    fn page_gave_up(&self, g: GaveUp<PageError>, page_no: u64) -> SliceStop {
        match (g.error, g.stop) {
            (_, Stop::Quit) | (PageError::Quit, _) => SliceStop::Released,
            (PageError::Http(Failure::Auth { status, .. }), _) => {
                // The slice that met the refusal fails (the summary counts
                // it); the others stop unworked and stay pending.
                let why = self.auth_refused(status);
                self.abort(Abort::Auth(why.clone()));
                SliceStop::Failed(format!("page {page_no}: {why}"))
            }
            (PageError::Http(Failure::Tls { message }), _) => {
                // Untrusted certificate: every request of the client would fail the same.
                self.abort(Abort::Environment(message.clone()));
                SliceStop::Failed(format!("page {page_no}: {message}"))
            }
            (PageError::Http(Failure::Refused { message, body, .. }), _) => {
                SliceStop::Failed(format!("page {page_no}: {message}: {body}"))
            }
            (PageError::Http(Failure::Retry { message, .. }), _) => SliceStop::Failed(format!(
                "page {page_no}: {message} (after {} attempts)",
                g.attempt
            )),
            (PageError::Data(m), _) => SliceStop::Failed(m),
        }
    }
}
