//! The Workers shell: the `fetch` entry point. It reads the request, calls the core
//! ([`crate::gateway`]) for every decision, and moves bytes between the client, KV, the limiter
//! object and the origin. Nothing here decides policy; each step below names the core function
//! that does.
//!
//! - [`keys_kv`]: key records from KV;
//! - [`limiter_do`]: the limiter Durable Object and the calls to it;
//! - [`origin`]: requests to and responses from the origin;
//! - [`stream`]: streamed answers, their log line and settlement;
//! - [`audit`]: the audit event producer and the queue consumer that stores batches.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use worker::{
    console_error, console_log, event, AbortSignal, Context, Date, Delay, Env, Headers, Request,
    Response,
};

mod audit;
mod keys_kv;
mod limiter_do;
mod origin;
mod stream;

use crate::api_error::ApiError;
use crate::audit::RequestLog;
use crate::config::Config;
use crate::gateway::{self, LimitAsk, OriginAnswer, Plan, Reservation};
use crate::input::injection::InjectionScanner;
use crate::network::keys;
use crate::network::limits::Decision;
use crate::network::throttle::{
    self, AfterFailure, AuthFailAnswer, AuthFailBody, Blocklist, NegativeCache,
};
use crate::output::{catalog, Scanner};
use crate::protocol::{self, Route};

pub struct Loaded {
    config: Config,
    scanner: Scanner,
    injection: InjectionScanner,
}

thread_local! {
    /// The configuration, parsed once per isolate. Leaked on purpose: it lives as long as the
    /// isolate, and streams borrow its scanner.
    static LOADED: OnceCell<Result<&'static Loaded, String>> = const { OnceCell::new() };
    /// Client addresses refused for failed authentication (per isolate).
    static AUTH_BLOCKED: RefCell<Blocklist> = RefCell::new(Blocklist::default());
    /// Keys the store recently did not hold (per isolate).
    static UNKNOWN_KEYS: RefCell<NegativeCache> = RefCell::new(NegativeCache::default());
}

fn load(env: &Env) -> Result<&'static Loaded, String> {
    LOADED.with(|cell| {
        cell.get_or_init(|| {
            let get = |name: &str| env.var(name).ok().map(|v| v.to_string());
            let config = Config::from_lookup(&get).map_err(|e| e.to_string())?;
            audit::check_bindings(env, &config)?;
            let detectors = catalog(&config.detectors)?;
            let scanner = Scanner::new(detectors, config.output_holdback)
                .with_fingerprint_key(config.audit.as_ref().map(|a| a.hmac_key.clone()));
            let injection = if config.injection_model {
                InjectionScanner::new()
            } else {
                InjectionScanner::rules_only()
            }
            .map_err(|e| e.to_string())?;
            Ok(&*Box::leak(Box::new(Loaded {
                config,
                scanner,
                injection,
            })))
        })
        .clone()
    })
}

fn loaded(env: &Env) -> Result<&'static Loaded, ApiError> {
    load(env).map_err(|problem| {
        console_error!("edgeguard configuration error: {problem}");
        ApiError::internal()
    })
}

pub(crate) fn now_ms() -> u64 {
    Date::now().as_millis()
}

fn request_id() -> String {
    let a = (worker::js_sys::Math::random() * 4294967296.0) as u64;
    let b = (worker::js_sys::Math::random() * 4294967296.0) as u64;
    format!("eg-{a:08x}{b:08x}")
}

/// The client's address as the edge reports it.
fn client_address(req: &Request) -> String {
    req.headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown".into())
}

fn set_all<K: AsRef<str>, V: AsRef<str>>(h: &Headers, pairs: impl IntoIterator<Item = (K, V)>) {
    for (k, v) in pairs {
        let _ = h.set(k.as_ref(), v.as_ref());
    }
}

fn error_response(e: &ApiError, request_id: &str) -> worker::Result<Response> {
    let headers = Headers::new();
    set_all(
        &headers,
        [
            ("content-type", "application/json"),
            ("x-request-id", request_id),
        ],
    );
    set_all(&headers, e.headers());
    Ok(Response::from_bytes(e.to_json().into_bytes())?
        .with_status(e.status)
        .with_headers(headers))
}

/// One request's identity, log line and the headers added to whatever response it ends with.
struct Exchange {
    rid: String,
    started: u64,
    log: Rc<RefCell<RequestLog>>,
    extra: RefCell<Vec<(String, String)>>,
}

enum Handled {
    Done(Response),
    /// Logged when the stream ends.
    Streaming(Response),
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let ex = Exchange {
        rid: request_id(),
        started: now_ms(),
        log: Rc::new(RefCell::new(RequestLog {
            method: req.method().to_string(),
            route: req.path(),
            ..RequestLog::default()
        })),
        extra: RefCell::new(Vec::new()),
    };
    ex.log.borrow_mut().request_id = ex.rid.clone();
    let client = client_address(&req);
    let result = handle(req, &env, &ctx, &ex).await;
    let finish = |status: u16, error: Option<&str>| {
        let mut l = ex.log.borrow_mut();
        l.status = status;
        l.error = error.map(str::to_string);
        l.total_ms = now_ms().saturating_sub(ex.started);
        console_log!("{}", l.to_json());
        // Health checks are probes of the gateway itself, not requests to audit.
        if let (Ok(loaded), false) = (load(&env), l.route == "/healthz") {
            audit::emit(&env, &ctx, &loaded.config, &l, &client);
        }
    };
    let mut response = match result {
        Ok(Handled::Done(r)) => {
            finish(r.status_code(), None);
            r
        }
        Ok(Handled::Streaming(r)) => r,
        Err(e) => {
            finish(e.status, Some(e.code));
            error_response(&e, &ex.rid)?
        }
    };
    let h = response.headers_mut();
    for (k, v) in ex.extra.borrow().iter() {
        let _ = h.set(k, v);
    }
    Ok(response)
}

async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    ex: &Exchange,
) -> Result<Handled, ApiError> {
    let path = req.path();
    let method = req.method();
    if path == "/healthz" {
        protocol::route(method.as_ref(), &path, &[])?;
        loaded(env)?;
        return json_response(200, br#"{"status":"ok"}"#.to_vec(), &ex.rid).map(Handled::Done);
    }

    // Authentication comes before anything else the client can influence.
    let header = |n: &str| req.headers().get(n).ok().flatten();
    let key = keys::extract_key(
        header("authorization").as_deref(),
        header("x-api-key").as_deref(),
    )?;
    let loaded = loaded(env)?;
    let cfg = &loaded.config;
    let client = client_address(&req);
    // A valid key is always looked up and served, whatever its address did; only unknown keys
    // are throttled. A key found unknown a moment ago is not looked up again.
    let store_key = keys::kv_key(&key);
    let known_bad = UNKNOWN_KEYS.with(|n| n.borrow_mut().known_bad(&store_key, now_ms()));
    let found = if known_bad {
        None
    } else {
        keys_kv::lookup(env, &key).await?
    };
    let absent = found.is_none();
    let record = match gateway::authorize(found) {
        Ok(r) => r,
        Err(e) => {
            if absent && !known_bad {
                UNKNOWN_KEYS.with(|n| n.borrow_mut().remember(&store_key, now_ms()));
            }
            let now = now_ms();
            if let Some(until) = AUTH_BLOCKED.with(|b| b.borrow_mut().until(&client, now)) {
                let wait = until.saturating_sub(now);
                ex.extra
                    .borrow_mut()
                    .extend(throttle::headers(cfg.auth_failures_per_minute, wait));
                return Err(throttle::too_many_failures(wait));
            }
            return Err(auth_failed(env, cfg, &client, e, ex).await);
        }
    };
    {
        let mut l = ex.log.borrow_mut();
        l.key_id = Some(record.key_id.clone());
        l.tenant = Some(record.tenant.clone());
    }

    let protocol = match protocol::route(method.as_ref(), &path, &cfg.pass_through_paths)? {
        Route::Health => return Err(ApiError::not_found()),
        Route::PassThrough => return pass_through(req, cfg, ex).await.map(Handled::Done),
        Route::Inspect(p) => p,
    };
    let client_signal = AbortSignal::from(req.inner().signal());
    let body = origin::read_body(&mut req, cfg.max_body_bytes).await?;
    let plan = {
        let mut l = ex.log.borrow_mut();
        let t0 = now_ms();
        let plan = gateway::plan(protocol, &body, &record, cfg, &loaded.injection, &mut l);
        l.inspect_ms += now_ms().saturating_sub(t0);
        plan?
    };
    ex.extra.borrow_mut().extend(plan.headers.iter().cloned());
    let reservation = match &plan.limits {
        None => {
            ex.log.borrow_mut().limiter = Some("unlimited".into());
            None
        }
        Some(ask) => acquire(env, cfg, &record.key_id, ask, ex).await?,
    };
    let result = forward(
        req,
        &path,
        &plan,
        (env, ctx, ex),
        loaded,
        reservation.clone(),
        client_signal,
    )
    .await;
    if let Some(res) = reservation {
        // A stream settles when it ends; everything else settles now.
        let used = match &result {
            Ok((Handled::Streaming(_), _)) => None,
            Ok((Handled::Done(_), used)) => Some(*used),
            Err(_) => Some(0),
        };
        if let Some(used) = used {
            ex.log.borrow_mut().tokens_used = Some(used);
            let env = env.clone();
            let timeout = cfg.limiter_timeout_ms;
            ctx.wait_until(async move { release(&env, &res, used, timeout).await });
        }
    }
    result.map(|(h, _)| h)
}

/// Asks the key's limiter for a decision; [`gateway::admit`] reads the answer.
async fn acquire(
    env: &Env,
    cfg: &Config,
    key_id: &str,
    ask: &LimitAsk,
    ex: &Exchange,
) -> Result<Option<Reservation>, ApiError> {
    let body = gateway::acquire_body(ask, &ex.rid, cfg);
    let answer: Result<Decision, String> = limiter_do::call(
        env,
        &gateway::key_limiter(key_id),
        "/acquire",
        &body,
        cfg.limiter_timeout_ms,
    )
    .await;
    let admission = gateway::admit(key_id, ask, &ex.rid, answer, cfg.limiter_failure);
    if let Some(line) = &admission.alert {
        console_error!("{line}");
    }
    ex.extra.borrow_mut().extend(admission.headers);
    {
        let mut l = ex.log.borrow_mut();
        l.limiter = Some(
            match &admission.result {
                Ok(Some(_)) => "admitted",
                Ok(None) => "unavailable_open",
                Err(e) if e.status == 429 => "refused",
                Err(_) => "unavailable_closed",
            }
            .into(),
        );
        if let Ok(Some(res)) = &admission.result {
            l.tokens_reserved = Some(res.reserved);
        }
    }
    admission.result
}

/// Returns a reservation to the key's limiter, settled with the tokens used.
pub(crate) async fn release(env: &Env, res: &Reservation, used: u32, timeout_ms: u64) {
    let body = gateway::settle(res, used);
    let r = limiter_do::call_text(
        env,
        &gateway::key_limiter(&res.key_id),
        "/release",
        &body,
        timeout_ms,
    )
    .await;
    if let Err(e) = r {
        console_error!("limiter release failed for key {}: {e}", res.key_id);
    }
}

/// An unknown key: report it against the client address; [`throttle::after_failure`] says
/// whether to slow the 401 or refuse the address.
async fn auth_failed(
    env: &Env,
    cfg: &Config,
    client: &str,
    e: ApiError,
    ex: &Exchange,
) -> ApiError {
    let answer: Result<AuthFailAnswer, String> = limiter_do::call(
        env,
        &gateway::auth_limiter(client),
        "/authfail",
        &AuthFailBody::new(cfg.auth_failures_per_minute),
        cfg.limiter_timeout_ms,
    )
    .await;
    if let Err(err) = &answer {
        console_error!("auth-failure limiter unavailable: {err}");
    }
    match throttle::after_failure(answer.as_ref().ok(), now_ms()) {
        AfterFailure::Block { until_ms } => {
            AUTH_BLOCKED.with(|b| b.borrow_mut().block(client, until_ms));
            let wait = until_ms.saturating_sub(now_ms());
            ex.extra
                .borrow_mut()
                .extend(throttle::headers(cfg.auth_failures_per_minute, wait));
            throttle::too_many_failures(wait)
        }
        AfterFailure::Slow(ms) => {
            if ms > 0 {
                Delay::from(Duration::from_millis(ms)).await;
            }
            e
        }
    }
}

/// Forwards a planned request and filters the answer. Returns what to send and the tokens the
/// origin reported using (0 when unknown).
async fn forward(
    req: Request,
    path: &str,
    plan: &Plan,
    (env, ctx, ex): (&Env, &Context, &Exchange),
    loaded: &'static Loaded,
    reservation: Option<Reservation>,
    client: AbortSignal,
) -> Result<(Handled, u32), ApiError> {
    let cfg = &loaded.config;
    let client_address_str = client_address(&req);
    let client_header = |n: &str| req.headers().get(n).ok().flatten();
    let query = req.url().ok().and_then(|u| u.query().map(str::to_string));
    let o = gateway::origin_request(
        cfg,
        Some(plan.protocol),
        path,
        query.as_deref(),
        &client_header,
        true,
    );
    let upstream = origin::build(req.method(), &o, Some(plan.upstream_body.clone()))?;
    drop(req);
    let mut resp = origin::send(upstream, cfg.upstream_timeout_ms).await?;
    let status = resp.status_code();
    {
        let mut l = ex.log.borrow_mut();
        l.upstream_ttfb_ms = Some(now_ms().saturating_sub(ex.started));
        l.upstream_status = Some(status);
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let out_headers = origin::response_headers(resp.headers(), &ex.rid);
    match gateway::origin_answer(status, &content_type) {
        OriginAnswer::Failed(e) => {
            console_error!("origin answered {status} for request {}", ex.rid);
            Err(e)
        }
        OriginAnswer::OriginError => {
            let bytes = origin::read_capped(&mut resp, origin::MAX_RESPONSE_BYTES).await?;
            ex.log.borrow_mut().response_bytes = bytes.len();
            respond(bytes, status, out_headers).map(|r| (Handled::Done(r), 0))
        }
        OriginAnswer::Stream => {
            set_all(
                &out_headers,
                protocol::sse::RESPONSE_HEADERS.iter().copied(),
            );
            let upstream = resp
                .stream()
                .map_err(|_| ApiError::bad_gateway("The AI origin sent no body."))?;
            let ctx = stream::StreamCtx {
                loaded,
                plan,
                status,
                headers: out_headers,
                ctx,
                env: env.clone(),
                log: ex.log.clone(),
                started: ex.started,
                reservation,
                client,
                client_address: client_address_str,
            };
            stream::respond(upstream, ctx).map(|r| (Handled::Streaming(r), 0))
        }
        OriginAnswer::Whole => {
            let bytes = origin::read_capped(&mut resp, origin::MAX_RESPONSE_BYTES).await?;
            let t0 = now_ms();
            let (body, used) = {
                let mut l = ex.log.borrow_mut();
                let r = gateway::filter_whole(
                    &loaded.scanner,
                    plan.protocol,
                    (cfg.unparseable, cfg.unknown_fields),
                    &bytes,
                    plan.allowed_tools.as_deref(),
                    &mut l,
                );
                l.inspect_ms += now_ms().saturating_sub(t0);
                r?
            };
            respond(body, status, out_headers).map(|r| (Handled::Done(r), used))
        }
    }
}

fn respond(body: Vec<u8>, status: u16, headers: Headers) -> Result<Response, ApiError> {
    Response::from_bytes(body)
        .map(|r| r.with_status(status).with_headers(headers))
        .map_err(|_| ApiError::internal())
}

fn json_response(status: u16, body: Vec<u8>, rid: &str) -> Result<Response, ApiError> {
    let h = Headers::new();
    set_all(
        &h,
        [("content-type", "application/json"), ("x-request-id", rid)],
    );
    respond(body, status, h)
}

/// A path the policy forwards uninspected (after authentication).
async fn pass_through(mut req: Request, cfg: &Config, ex: &Exchange) -> Result<Response, ApiError> {
    let body = origin::read_body(&mut req, cfg.max_body_bytes).await?;
    let body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    let client_header = |n: &str| req.headers().get(n).ok().flatten();
    let query = req.url().ok().and_then(|u| u.query().map(str::to_string));
    let o = gateway::origin_request(
        cfg,
        None,
        &req.path(),
        query.as_deref(),
        &client_header,
        body.is_some(),
    );
    let upstream = origin::build(req.method(), &o, body)?;
    let mut resp = origin::send(upstream, cfg.upstream_timeout_ms).await?;
    let status = resp.status_code();
    ex.log.borrow_mut().upstream_status = Some(status);
    if let OriginAnswer::Failed(e) = gateway::origin_answer(status, "") {
        return Err(e);
    }
    let headers = origin::response_headers(resp.headers(), &ex.rid);
    let bytes = origin::read_capped(&mut resp, origin::MAX_RESPONSE_BYTES).await?;
    {
        let mut l = ex.log.borrow_mut();
        l.response_bytes = bytes.len();
        l.outcome = Some("pass_through".into());
    }
    respond(bytes, status, headers)
}
