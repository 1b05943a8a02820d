//! A streamed answer: origin bytes through the core's [`StreamFilter`] to the client, and the
//! log line, limiter settlement and audit event when the stream ends or its client goes away.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::{console_log, AbortSignal, ByteStream, Context, Delay, Env, Headers, Response};

use super::{now_ms, release, Loaded};
use crate::api_error::ApiError;
use crate::audit::RequestLog;
use crate::gateway::{self, Plan, Reservation, StreamEnd};
use crate::output::filter::{Outcome, StreamFilter};

/// State shared by the response stream and the task that writes the log line when it ends.
struct StreamState {
    upstream: ByteStream,
    filter: StreamFilter<'static>,
    idle_ms: u64,
    done: bool,
    shared: Rc<Shared>,
}

struct Shared {
    log: Rc<RefCell<RequestLog>>,
    finished: Cell<bool>,
    last_activity: Cell<u64>,
    used_tokens: Cell<u32>,
}

/// Everything a stream needs besides its bytes.
pub struct StreamCtx<'a> {
    pub loaded: &'static Loaded,
    pub plan: &'a Plan,
    pub status: u16,
    pub headers: Headers,
    pub ctx: &'a Context,
    pub env: Env,
    pub log: Rc<RefCell<RequestLog>>,
    pub started: u64,
    pub reservation: Option<Reservation>,
    /// Aborted when the client goes away (the `enable_request_signal` flag).
    pub client: AbortSignal,
    /// The client's address, for the audit event.
    pub client_address: String,
}

pub fn respond(upstream: ByteStream, s: StreamCtx<'_>) -> Result<Response, ApiError> {
    let shared = Rc::new(Shared {
        log: s.log,
        finished: Cell::new(false),
        last_activity: Cell::new(now_ms()),
        used_tokens: Cell::new(0),
    });
    let mut filter = StreamFilter::new(&s.loaded.scanner, s.plan.protocol);
    if s.plan.hide_usage {
        filter.hide_usage_chunks();
    }
    filter.allow_tools(s.plan.allowed_tools.clone());
    filter.unknown_fields(s.loaded.config.unknown_fields);
    let protocol = s.plan.protocol;
    let state = StreamState {
        upstream,
        filter,
        idle_ms: s.loaded.config.stream_idle_timeout_ms,
        done: false,
        shared: shared.clone(),
    };
    let body = futures_util::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            st.shared.last_activity.set(now_ms());
            let next = Box::pin(st.upstream.next());
            let timer = Box::pin(Delay::from(Duration::from_millis(st.idle_ms)));
            let item = match select(next, timer).await {
                Either::Left((item, _)) => item,
                Either::Right(((), _)) => None, // idle: treated as an unfinished stream
            };
            let mut out = Vec::new();
            let t0 = now_ms();
            match item {
                Some(Ok(bytes)) => st.filter.feed(&bytes, &mut out),
                Some(Err(_)) | None => st.filter.end(&mut out),
            }
            let ended = st.filter.outcome() != Outcome::Open;
            let mut l = st.shared.log.borrow_mut();
            l.inspect_ms += now_ms().saturating_sub(t0);
            l.response_bytes += out.len();
            if ended {
                st.done = true;
                l.output.add(st.filter.findings());
                l.output.add_dropped(st.filter.dropped());
                let reported = st
                    .filter
                    .usage()
                    .and_then(|u| protocol.wire().usage_tokens(u));
                let end = StreamEnd::Filter(st.filter.outcome());
                let used = gateway::end_stream(&mut l, end, reported);
                st.shared.used_tokens.set(used);
                st.shared.finished.set(true);
            }
            drop(l);
            if !out.is_empty() || ended {
                return Some((Ok::<Vec<u8>, worker::Error>(out), st));
            }
        }
    });

    // The log line is written when the stream ends, when the client goes away (its request
    // is cancelled), or when nobody has pulled the stream for longer than the idle timeout.
    // The reservation and the concurrency lease are settled at the same moment.
    let idle = s.loaded.config.stream_idle_timeout_ms;
    let timeout = s.loaded.config.limiter_timeout_ms;
    let (status, started, env, reservation) = (s.status, s.started, s.env, s.reservation);
    let client = s.client;
    let (loaded, client_address) = (s.loaded, s.client_address);
    s.ctx.wait_until(async move {
        loop {
            Delay::from(Duration::from_millis(250)).await;
            let idle_for = now_ms().saturating_sub(shared.last_activity.get());
            let gone = client.aborted();
            if shared.finished.get() || gone || idle_for > idle + 1000 {
                let log = {
                    let mut l = shared.log.borrow_mut();
                    if !shared.finished.get() {
                        let end = if gone {
                            StreamEnd::ClientGone
                        } else {
                            StreamEnd::Abandoned
                        };
                        shared
                            .used_tokens
                            .set(gateway::end_stream(&mut l, end, None));
                    }
                    l.status = status;
                    l.total_ms = now_ms().saturating_sub(started);
                    l.tokens_used = Some(shared.used_tokens.get());
                    console_log!("{}", l.to_json());
                    l.clone()
                };
                if let Some(res) = reservation {
                    release(&env, &res, shared.used_tokens.get(), timeout).await;
                }
                super::audit::record(&env, &loaded.config, &log, &client_address).await;
                break;
            }
        }
    });

    Response::from_stream(body)
        .map(|r| r.with_status(status).with_headers(s.headers))
        .map_err(|_| ApiError::internal())
}
