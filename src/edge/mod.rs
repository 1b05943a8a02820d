//! The Workers shell: receives requests, calls the core, moves bytes to and from the origin.
//! Nothing here decides anything a native test could check; it only wires bindings to the core.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use serde_json::Value;
use worker::{
    console_error, console_log, event, AbortController, ByteStream, Context, Date, Delay, Env,
    Fetch, Headers, Method, Request, RequestInit, Response,
};

mod limiter;

use crate::api_error::ApiError;
use crate::auth::{self, KeyRecord};
use crate::config::{Config, OriginAuth, UnparseablePolicy};
use crate::config::{InjectionAction, LimiterFailure};
use crate::input::{self, injection::InjectionScanner};
use crate::limits::{self, Decision, Tier};
use crate::output::filter::{filter_json, FilterError, Outcome, StreamFilter};
use crate::output::{catalog, Scanner};
use crate::proxy::{self, Protocol, Route};
use crate::telemetry::{InputLog, RequestLog};

/// Largest non-streamed origin response the gateway buffers for inspection.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

struct Loaded {
    config: Config,
    scanner: Scanner,
    injection: InjectionScanner,
}

thread_local! {
    /// The configuration, parsed once per isolate. Leaked on purpose: it lives as long as the
    /// isolate, and streams borrow its scanner.
    static LOADED: OnceCell<Result<&'static Loaded, String>> = const { OnceCell::new() };
}

fn load(env: &Env) -> Result<&'static Loaded, String> {
    LOADED.with(|cell| {
        cell.get_or_init(|| {
            let get = |name: &str| env.var(name).ok().map(|v| v.to_string());
            let config = Config::from_lookup(&get).map_err(|e| e.to_string())?;
            let detectors = catalog(&config.detectors)?;
            let scanner = Scanner::new(detectors, config.output_holdback);
            let injection = InjectionScanner::new().ok_or("injection rules do not compile")?;
            Ok(&*Box::leak(Box::new(Loaded {
                config,
                scanner,
                injection,
            })))
        })
        .clone()
    })
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

fn request_id() -> String {
    let a = (worker::js_sys::Math::random() * 4294967296.0) as u64;
    let b = (worker::js_sys::Math::random() * 4294967296.0) as u64;
    format!("eg-{a:08x}{b:08x}")
}

fn error_response(e: &ApiError, request_id: &str) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("x-request-id", request_id)?;
    if e.status == 405 {
        headers.set("allow", "GET, POST")?;
    }
    Ok(Response::from_bytes(e.to_json().into_bytes())?
        .with_status(e.status)
        .with_headers(headers))
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let started = now_ms();
    let rid = request_id();
    let log = Rc::new(RefCell::new(RequestLog {
        request_id: rid.clone(),
        method: req.method().to_string(),
        route: req.path(),
        ..RequestLog::default()
    }));
    let extra: Extra = Rc::new(RefCell::new(Vec::new()));
    let result = handle(req, &env, &ctx, &rid, &log, started, &extra).await;
    let mut response = match result {
        Ok(Handled::Done(r)) => {
            let mut l = log.borrow_mut();
            l.status = r.status_code();
            l.total_ms = now_ms().saturating_sub(started);
            console_log!("{}", l.to_json());
            r
        }
        Ok(Handled::Streaming(r)) => r, // logged when the stream ends
        Err(e) => {
            let mut l = log.borrow_mut();
            l.status = e.status;
            l.error = Some(e.code.to_string());
            l.total_ms = now_ms().saturating_sub(started);
            console_log!("{}", l.to_json());
            error_response(&e, &rid)?
        }
    };
    // Rate-limit headers go on every response the limiter had a say in.
    let h = response.headers_mut();
    for (k, v) in extra.borrow().iter() {
        let _ = h.set(k, v);
    }
    Ok(response)
}

/// Headers added to whatever response the request ends with.
type Extra = Rc<RefCell<Vec<(String, String)>>>;

/// Tokens and a concurrency lease held for one request, returned when it ends.
#[derive(Clone)]
struct Reservation {
    key_id: String,
    tier: Tier,
    lease_id: String,
    reserved: u32,
}

/// Returns a reservation after the response (survives a client that went away).
fn release_later(ctx: &Context, env: &Env, res: Reservation, used: u32, timeout_ms: u64) {
    let env = env.clone();
    ctx.wait_until(async move {
        release(&env, res, used, timeout_ms).await;
    });
}

async fn release(env: &Env, res: Reservation, used: u32, timeout_ms: u64) {
    let body = limiter::ReleaseBody {
        tier: res.tier,
        lease_id: res.lease_id,
        reserved: res.reserved,
        used: used.min(res.reserved),
    };
    let r: Result<String, String> = limiter::call_text(
        env,
        &format!("key:{}", res.key_id),
        "/release",
        &body,
        timeout_ms,
    )
    .await;
    if let Err(e) = r {
        console_error!("limiter release failed for key {}: {e}", res.key_id);
    }
}

/// Tokens a usage object reports (OpenAI `total_tokens`, or prompt + completion; Anthropic
/// input + output).
fn usage_tokens(u: &Value) -> Option<u32> {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let total = n("total_tokens")
        .or_else(|| Some(n("prompt_tokens")? + n("completion_tokens")?))
        .or_else(|| Some(n("input_tokens").unwrap_or(0) + n("output_tokens")?))?;
    u32::try_from(total).ok()
}

/// Estimated prompt tokens of a chat request: every string in its messages and system fields.
fn prompt_tokens(body: &serde_json::Map<String, Value>) -> u32 {
    fn walk(v: &Value, bytes: &mut usize, words: &mut usize) {
        match v {
            Value::String(s) => {
                *bytes += s.len();
                *words += s.split_whitespace().count();
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, bytes, words)),
            Value::Object(o) => o.values().for_each(|x| walk(x, bytes, words)),
            _ => {}
        }
    }
    let (mut bytes, mut words) = (0, 0);
    for k in ["messages", "system", "instructions", "tools"] {
        if let Some(v) = body.get(k) {
            walk(v, &mut bytes, &mut words);
        }
    }
    limits::estimate_tokens(bytes, words)
}

enum Handled {
    Done(Response),
    Streaming(Response),
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    rid: &str,
    log: &Rc<RefCell<RequestLog>>,
    started: u64,
    extra: &Extra,
) -> Result<Handled, ApiError> {
    let path = req.path();
    let method = req.method();
    if path == "/healthz" {
        if method != Method::Get {
            return Err(ApiError::method_not_allowed());
        }
        return match load(env) {
            Ok(_) => json_response(200, br#"{"status":"ok"}"#.to_vec(), rid).map(Handled::Done),
            Err(problem) => {
                console_error!("edgeguard configuration error: {problem}");
                Err(ApiError::internal())
            }
        };
    }

    // Authentication comes before anything else the client can influence.
    let header = |n: &str| req.headers().get(n).ok().flatten();
    let key = auth::extract_key(
        header("authorization").as_deref(),
        header("x-api-key").as_deref(),
    )?;
    let loaded = load(env).map_err(|problem| {
        console_error!("edgeguard configuration error: {problem}");
        ApiError::internal()
    })?;
    let cfg = &loaded.config;
    let client = header("cf-connecting-ip").unwrap_or_else(|| "unknown".into());
    if auth_blocked(&client) {
        return Err(too_many_auth_failures());
    }
    let record = match lookup_key(env, &key).await {
        Ok(r) => r,
        Err(e) if e.status == 401 => return Err(auth_failed(env, cfg, &client, e).await),
        Err(e) => return Err(e),
    };
    {
        let mut l = log.borrow_mut();
        l.key_id = Some(record.key_id.clone());
        l.tenant = Some(record.tenant.clone());
    }

    let route = proxy::route(method.as_ref(), &path, &cfg.pass_through_paths)?;
    let protocol = match route {
        Route::Health => return Err(ApiError::not_found()),
        Route::PassThrough => return pass_through(req, cfg, rid, log).await.map(Handled::Done),
        Route::Inspect(p) => p,
    };

    let body = read_body(&mut req, cfg.max_body_bytes).await?;
    log.borrow_mut().request_bytes = body.len();
    let parsed = proxy::parse_body(&body, cfg.max_body_bytes, cfg.max_json_depth)?;
    let meta = proxy::check_chat_request(protocol, &parsed)?;
    if !record.models.is_empty()
        && !record
            .models
            .iter()
            .any(|g| auth::glob_match(g, &meta.model))
    {
        return Err(ApiError::forbidden(
            "model_not_allowed",
            "This API key may not use the requested model.",
        ));
    }
    {
        let mut l = log.borrow_mut();
        l.model = Some(meta.model.clone());
        l.stream = meta.stream;
    }

    // The input layer: sanitize in place, enforce tools and caps, score the conversation.
    let mut parsed = parsed;
    let t0 = now_ms();
    let report = input::inspect(
        protocol,
        &mut parsed,
        &cfg.input,
        record.tools.as_deref(),
        &loaded.injection,
    )?;
    let flagged = report.verdict.score >= cfg.injection_threshold
        && cfg.injection_action != InjectionAction::Off;
    let enforce = flagged && cfg.injection_action == InjectionAction::Block && !record.monitor_only;
    {
        let mut l = log.borrow_mut();
        l.inspect_ms += now_ms().saturating_sub(t0);
        l.input = InputLog {
            score: (report.verdict.score * 1000.0).round() / 1000.0,
            rules: report.verdict.rules.iter().map(|r| r.to_string()).collect(),
            action: if enforce {
                "blocked"
            } else if flagged {
                "monitored"
            } else {
                "passed"
            },
            removed_invisible: report.removed,
            hidden_payload: report.hidden_payload,
            stripped_tools: report.stripped_tools.clone(),
        };
    }
    if enforce {
        // Never tell the client which rule fired.
        return Err(ApiError::bad_request(
            "prompt_injection_detected",
            "The request was refused by the gateway's input policy.",
        ));
    }
    let tier = cfg
        .limits_for(&record.tier, record.limits.as_ref())
        .ok_or_else(|| {
            console_error!(
                "key {} names an unknown tier {:?}",
                record.key_id,
                record.tier
            );
            ApiError::internal()
        })?;
    if let (Some(cap), Some(asked)) = (
        tier.max_tokens,
        parsed
            .get("max_completion_tokens")
            .or_else(|| parsed.get("max_tokens"))
            .and_then(Value::as_u64),
    ) {
        if asked > u64::from(cap) {
            return Err(ApiError::bad_request(
                "max_tokens_too_large",
                format!("This API key may ask for at most {cap} completion tokens."),
            ));
        }
    }
    let client_wants_usage = parsed
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reservation = if tier.is_unlimited() {
        None
    } else {
        let requested = parsed
            .get("max_completion_tokens")
            .or_else(|| parsed.get("max_tokens"))
            .and_then(Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let completion = requested.or(tier.max_tokens).unwrap_or(1024);
        let reserve = if tier.tokens_per_minute.is_some() {
            prompt_tokens(&parsed).saturating_add(completion)
        } else {
            0
        };
        if tier.tokens_per_minute.is_some() && protocol == Protocol::OpenAiChat && meta.stream {
            // Ask the origin for the real usage so the reservation can be settled exactly.
            let opts = parsed
                .entry("stream_options")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Value::Object(o) = opts {
                o.insert("include_usage".into(), Value::Bool(true));
            }
        }
        acquire(env, cfg, &record, tier, reserve, rid, extra).await?
    };
    let result = forward(
        req,
        parsed,
        ForwardCtx {
            env,
            ctx,
            rid,
            log,
            started,
            loaded,
            protocol,
            path: &path,
            hide_usage: !client_wants_usage,
            reservation: reservation.clone(),
            allowed_tools: record.tools.clone(),
        },
    )
    .await;
    if let Some(res) = reservation {
        match &result {
            Ok((Handled::Streaming(_), _)) => {} // released when the stream ends
            Ok((Handled::Done(_), used)) => {
                release_later(ctx, env, res, *used, cfg.limiter_timeout_ms)
            }
            Err(_) => release_later(ctx, env, res, 0, cfg.limiter_timeout_ms),
        }
    }
    result.map(|(h, _)| h)
}

struct ForwardCtx<'a> {
    env: &'a Env,
    ctx: &'a Context,
    rid: &'a str,
    log: &'a Rc<RefCell<RequestLog>>,
    started: u64,
    loaded: &'static Loaded,
    protocol: Protocol,
    path: &'a str,
    hide_usage: bool,
    reservation: Option<Reservation>,
    allowed_tools: Option<Vec<String>>,
}

/// Asks the key's limiter for a decision and applies the failure policy.
async fn acquire(
    env: &Env,
    cfg: &Config,
    record: &KeyRecord,
    tier: Tier,
    reserve: u32,
    rid: &str,
    extra: &Extra,
) -> Result<Option<Reservation>, ApiError> {
    let body = limiter::AcquireBody {
        tier,
        reserve_tokens: reserve,
        lease_id: rid.to_string(),
        lease_ttl_ms: cfg.lease_ttl_ms as f64,
    };
    let name = format!("key:{}", record.key_id);
    let d: Decision = match limiter::call(env, &name, "/acquire", &body, cfg.limiter_timeout_ms)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            return match cfg.limiter_failure {
                LimiterFailure::Closed => {
                    console_error!(
                        "limiter unavailable for key {} (failing closed): {e}",
                        record.key_id
                    );
                    Err(ApiError::new(
                        503,
                        "server_error",
                        "limiter_unavailable",
                        "The gateway cannot check this key's limits right now.",
                    ))
                }
                LimiterFailure::Open => {
                    console_error!(
                        "LIMITER UNAVAILABLE for key {}: forwarding WITHOUT limits (LIMITER_FAILURE=open): {e}",
                        record.key_id
                    );
                    extra
                        .borrow_mut()
                        .push(("x-edgeguard-limits".into(), "unavailable".into()));
                    Ok(None)
                }
            };
        }
    };
    extra.borrow_mut().extend(limits::headers(&d));
    if !d.allowed {
        let refusal = d.refusal.unwrap_or(limits::Refusal::Requests);
        let message = match refusal {
            limits::Refusal::Requests => {
                "Too many requests for this API key; retry after the time in Retry-After."
            }
            limits::Refusal::Concurrency => "Too many requests in flight for this API key.",
            limits::Refusal::Tokens => "This API key's token budget is used up for now.",
            limits::Refusal::TokensTooLarge => {
                "This request asks for more tokens than the key's budget allows."
            }
        };
        return Err(ApiError::new(
            429,
            "rate_limit_exceeded",
            refusal.code(),
            message,
        ));
    }
    Ok(Some(Reservation {
        key_id: record.key_id.clone(),
        tier,
        lease_id: rid.to_string(),
        reserved: reserve,
    }))
}

thread_local! {
    /// Client addresses refused for failed authentication, until a time (per isolate).
    static AUTH_BLOCKED: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
}

fn auth_blocked(client: &str) -> bool {
    let now = now_ms();
    AUTH_BLOCKED.with(|b| {
        let mut b = b.borrow_mut();
        b.retain(|(_, until)| *until > now);
        b.iter().any(|(c, _)| c == client)
    })
}

fn too_many_auth_failures() -> ApiError {
    ApiError::new(
        429,
        "rate_limit_exceeded",
        "too_many_auth_failures",
        "Too many requests with invalid API keys from this address.",
    )
}

/// An unknown key: count it against the client address, slow the answer, or refuse outright.
async fn auth_failed(env: &Env, cfg: &Config, client: &str, e: ApiError) -> ApiError {
    let body = limiter::AuthFailBody {
        per_minute: cfg.auth_failures_per_minute,
        burst: cfg.auth_failures_per_minute,
    };
    let name = format!("auth:{client}");
    match limiter::call::<_, limiter::AuthFailAnswer>(
        env,
        &name,
        "/authfail",
        &body,
        cfg.limiter_timeout_ms,
    )
    .await
    {
        Ok(a) if a.refused => {
            AUTH_BLOCKED.with(|b| {
                let mut b = b.borrow_mut();
                if b.len() >= 1024 {
                    b.remove(0);
                }
                b.push((client.to_string(), now_ms() + 60_000));
            });
            too_many_auth_failures()
        }
        Ok(a) => {
            if a.delay_ms > 0.0 {
                Delay::from(Duration::from_millis(a.delay_ms as u64)).await;
            }
            e
        }
        Err(err) => {
            console_error!("auth-failure limiter unavailable: {err}");
            e
        }
    }
}

/// Forwards an inspected request and filters the answer. Returns what to send and the tokens
/// the origin reported using (0 when unknown).
async fn forward(
    req: Request,
    parsed: serde_json::Map<String, Value>,
    f: ForwardCtx<'_>,
) -> Result<(Handled, u32), ApiError> {
    let ForwardCtx {
        env,
        ctx,
        rid,
        log,
        started,
        loaded,
        protocol,
        path,
        hide_usage,
        reservation,
        allowed_tools,
    } = f;
    let cfg = &loaded.config;
    let upstream_body = serde_json::to_string(&Value::Object(parsed)).map_err(|_| {
        ApiError::bad_request("invalid_json", "The request body cannot be forwarded.")
    })?;
    let url = format!("{}{}", cfg.origin_url, path);
    let upstream = origin_request(&req, cfg, &url, Some(upstream_body))?;
    drop(req);
    let mut resp = send_with_timeout(upstream, cfg.upstream_timeout_ms).await?;
    log.borrow_mut().upstream_ttfb_ms = Some(now_ms().saturating_sub(started));

    let status = resp.status_code();
    let content_type = resp
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
    if status >= 500 {
        console_error!("origin answered {status} for request {rid}");
        return Err(ApiError::bad_gateway(format!(
            "The AI origin failed (status {status})."
        )));
    }
    let out_headers = response_headers(resp.headers(), rid);
    if status >= 400 {
        // Origin errors (bad model, bad request) go back as they are: JSON written by the origin.
        let bytes = read_capped(&mut resp, MAX_RESPONSE_BYTES).await?;
        log.borrow_mut().response_bytes = bytes.len();
        return Response::from_bytes(bytes)
            .map(|r| {
                (
                    Handled::Done(r.with_status(status).with_headers(out_headers)),
                    0,
                )
            })
            .map_err(|_| ApiError::internal());
    }

    if content_type.starts_with("text/event-stream") {
        let _ = out_headers.set("content-type", "text/event-stream; charset=utf-8");
        let _ = out_headers.set("cache-control", "no-cache");
        let stream = resp
            .stream()
            .map_err(|_| ApiError::bad_gateway("The AI origin sent no body."))?;
        return stream_response(
            stream,
            loaded,
            protocol,
            status,
            out_headers,
            ctx,
            log.clone(),
            started,
            StreamLimits {
                env: env.clone(),
                reservation,
                hide_usage,
                allowed_tools,
            },
        )
        .map(|r| (Handled::Streaming(r), 0));
    }

    let bytes = read_capped(&mut resp, MAX_RESPONSE_BYTES).await?;
    let t0 = now_ms();
    let mut used = 0;
    let filtered = match filter_json(&loaded.scanner, protocol, &bytes, allowed_tools.as_deref()) {
        Ok(f) => {
            log.borrow_mut().output.add(&f.findings);
            used = f.usage.as_ref().and_then(usage_tokens).unwrap_or(0);
            f.body
        }
        Err(FilterError::Unparseable) if cfg.unparseable == UnparseablePolicy::RawScan => {
            let text = String::from_utf8_lossy(&bytes);
            let r = loaded.scanner.redact(&text);
            log.borrow_mut().output.add(&r.findings);
            if r.blocked {
                return Err(ApiError::content_filtered());
            }
            r.text.into_bytes()
        }
        Err(e) => {
            if let FilterError::Blocked(f) = &e {
                log.borrow_mut().output.add(f);
            }
            log.borrow_mut().outcome = Some("blocked".into());
            return Err(e.api_error());
        }
    };
    {
        let mut l = log.borrow_mut();
        l.inspect_ms += now_ms().saturating_sub(t0);
        l.response_bytes = filtered.len();
        l.outcome = Some("complete".into());
    }
    Response::from_bytes(filtered)
        .map(|r| {
            (
                Handled::Done(r.with_status(status).with_headers(out_headers)),
                used,
            )
        })
        .map_err(|_| ApiError::internal())
}

fn json_response(status: u16, body: Vec<u8>, rid: &str) -> Result<Response, ApiError> {
    let h = Headers::new();
    let _ = h.set("content-type", "application/json");
    let _ = h.set("x-request-id", rid);
    Response::from_bytes(body)
        .map(|r| r.with_status(status).with_headers(h))
        .map_err(|_| ApiError::internal())
}

async fn lookup_key(env: &Env, key: &str) -> Result<KeyRecord, ApiError> {
    let kv = env.kv("KEYS").map_err(|_| {
        console_error!("edgeguard configuration error: binding KEYS: missing KV namespace");
        ApiError::internal()
    })?;
    let stored = kv.get(&auth::kv_key(key)).text().await.map_err(|e| {
        console_error!("key store unavailable: {e}");
        ApiError::new(
            503,
            "server_error",
            "key_store_unavailable",
            "The gateway cannot check keys right now.",
        )
    })?;
    let Some(stored) = stored else {
        return Err(ApiError::unauthorized("Invalid API key."));
    };
    let record: KeyRecord = serde_json::from_str(&stored).map_err(|e| {
        console_error!("key record under {} is invalid: {e}", auth::KV_PREFIX);
        ApiError::internal()
    })?;
    if record.disabled {
        return Err(ApiError::unauthorized("Invalid API key."));
    }
    Ok(record)
}

/// Reads the request body, refusing more than `cap` bytes without reading further.
async fn read_body(req: &mut Request, cap: usize) -> Result<Vec<u8>, ApiError> {
    if let Some(len) = req.headers().get("content-length").ok().flatten() {
        if len.trim().parse::<usize>().map_or(true, |l| l > cap) {
            return Err(ApiError::too_large(cap));
        }
    }
    let mut stream = match req.stream() {
        Ok(s) => s,
        Err(_) => return Ok(Vec::new()),
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request("body_read_failed", "The request body could not be read.")
        })?;
        if body.len() + chunk.len() > cap {
            return Err(ApiError::too_large(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn read_capped(resp: &mut Response, cap: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = resp
        .stream()
        .map_err(|_| ApiError::bad_gateway("The AI origin sent no body."))?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_gateway("The AI origin's response broke off."))?;
        if body.len() + chunk.len() > cap {
            return Err(ApiError::bad_gateway(
                "The AI origin's response is too large to inspect.",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The request to the origin: allow-listed headers, the origin credential, no client identity.
fn origin_request(
    req: &Request,
    cfg: &Config,
    url: &str,
    body: Option<String>,
) -> Result<Request, ApiError> {
    let headers = Headers::new();
    for name in proxy::FORWARDED_REQUEST_HEADERS {
        if let Ok(Some(v)) = req.headers().get(name) {
            let _ = headers.set(name, &v);
        }
    }
    let _ = headers.set("accept-encoding", "identity");
    let _ = headers.set(
        "user-agent",
        concat!("edgeguard/", env!("CARGO_PKG_VERSION")),
    );
    match cfg.origin_auth {
        OriginAuth::Bearer => {
            headers.set("authorization", &format!("Bearer {}", cfg.origin_api_key))
        }
        OriginAuth::XApiKey => headers.set("x-api-key", &cfg.origin_api_key),
    }
    .map_err(|_| ApiError::internal())?;
    if body.is_some() {
        let _ = headers.set("content-type", "application/json");
    }
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if let Some(b) = body {
        init.with_body(Some(worker::wasm_bindgen::JsValue::from_str(&b)));
    }
    Request::new_with_init(url, &init).map_err(|e| {
        console_error!("cannot build origin request: {e}");
        ApiError::internal()
    })
}

async fn send_with_timeout(upstream: Request, timeout_ms: u64) -> Result<Response, ApiError> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Box::pin(async move { Fetch::Request(upstream).send_with_signal(&signal).await });
    let timer = Box::pin(Delay::from(Duration::from_millis(timeout_ms)));
    match select(fetch, timer).await {
        Either::Left((Ok(r), _)) => Ok(r),
        Either::Left((Err(e), _)) => {
            console_error!("origin unreachable: {e}");
            Err(ApiError::bad_gateway("The AI origin could not be reached."))
        }
        Either::Right(((), _)) => {
            controller.abort();
            Err(ApiError::gateway_timeout())
        }
    }
}

fn response_headers(upstream: &Headers, rid: &str) -> Headers {
    let h = Headers::new();
    for (name, value) in upstream.entries() {
        if proxy::forward_response_header(&name) {
            let _ = h.set(&name, &value);
        }
    }
    let _ = h.set("x-request-id", rid);
    h
}

async fn pass_through(
    mut req: Request,
    cfg: &Config,
    rid: &str,
    log: &Rc<RefCell<RequestLog>>,
) -> Result<Response, ApiError> {
    let body = read_body(&mut req, cfg.max_body_bytes).await?;
    let body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    let url = format!("{}{}", cfg.origin_url, req.path());
    let upstream = origin_request(&req, cfg, &url, body)?;
    let mut resp = send_with_timeout(upstream, cfg.upstream_timeout_ms).await?;
    let status = resp.status_code();
    if status >= 500 {
        return Err(ApiError::bad_gateway(format!(
            "The AI origin failed (status {status})."
        )));
    }
    let headers = response_headers(resp.headers(), rid);
    let bytes = read_capped(&mut resp, MAX_RESPONSE_BYTES).await?;
    log.borrow_mut().response_bytes = bytes.len();
    log.borrow_mut().outcome = Some("pass_through".into());
    Response::from_bytes(bytes)
        .map(|r| r.with_status(status).with_headers(headers))
        .map_err(|_| ApiError::internal())
}

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
    /// Tokens the origin reported, or an estimate from the bytes sent.
    used_tokens: Cell<u32>,
}

/// What a stream must settle with the limiter when it ends, and how it is filtered.
struct StreamLimits {
    env: Env,
    reservation: Option<Reservation>,
    hide_usage: bool,
    allowed_tools: Option<Vec<String>>,
}

#[allow(clippy::too_many_arguments)]
fn stream_response(
    upstream: ByteStream,
    loaded: &'static Loaded,
    protocol: Protocol,
    status: u16,
    headers: Headers,
    ctx: &Context,
    log: Rc<RefCell<RequestLog>>,
    started: u64,
    limits: StreamLimits,
) -> Result<Response, ApiError> {
    let shared = Rc::new(Shared {
        log,
        finished: Cell::new(false),
        last_activity: Cell::new(now_ms()),
        used_tokens: Cell::new(0),
    });
    let mut filter = StreamFilter::new(&loaded.scanner, protocol);
    if limits.hide_usage {
        filter.hide_usage_chunks();
    }
    filter.allow_tools(limits.allowed_tools.clone());
    let state = StreamState {
        upstream,
        filter,
        idle_ms: loaded.config.stream_idle_timeout_ms,
        done: false,
        shared: shared.clone(),
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
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
            {
                let mut l = st.shared.log.borrow_mut();
                l.inspect_ms += now_ms().saturating_sub(t0);
                l.response_bytes += out.len();
            }
            if ended {
                st.done = true;
                let mut l = st.shared.log.borrow_mut();
                l.output.add(st.filter.findings());
                l.outcome = Some(outcome_name(st.filter.outcome()).into());
                let reported = st.filter.usage().and_then(usage_tokens);
                let estimate = u32::try_from(l.response_bytes / 16).unwrap_or(u32::MAX);
                st.shared.used_tokens.set(reported.unwrap_or(estimate));
                st.shared.finished.set(true);
            }
            if !out.is_empty() || ended {
                return Some((Ok::<Vec<u8>, worker::Error>(out), st));
            }
        }
    });

    // The log line is written when the stream ends, or when it has been idle too long (the
    // client went away and nobody pulls the stream any more).
    // The reservation is settled at the same moment.
    let idle = loaded.config.stream_idle_timeout_ms;
    let timeout = loaded.config.limiter_timeout_ms;
    ctx.wait_until(async move {
        loop {
            Delay::from(Duration::from_millis(250)).await;
            let idle_for = now_ms().saturating_sub(shared.last_activity.get());
            if shared.finished.get() || idle_for > idle + 1000 {
                {
                    let mut l = shared.log.borrow_mut();
                    if !shared.finished.get() {
                        l.outcome = Some("abandoned".into());
                        let estimate = u32::try_from(l.response_bytes / 16).unwrap_or(u32::MAX);
                        shared.used_tokens.set(estimate);
                    }
                    l.status = status;
                    l.total_ms = now_ms().saturating_sub(started);
                    console_log!("{}", l.to_json());
                }
                if let Some(res) = limits.reservation {
                    release(&limits.env, res, shared.used_tokens.get(), timeout).await;
                }
                break;
            }
        }
    });

    Response::from_stream(body)
        .map(|r| r.with_status(status).with_headers(headers))
        .map_err(|_| ApiError::internal())
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Open => "open",
        Outcome::Complete => "complete",
        Outcome::Blocked => "blocked",
        Outcome::Malformed => "malformed",
        Outcome::Truncated => "truncated",
    }
}
