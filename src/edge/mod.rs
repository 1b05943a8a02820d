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

use crate::api_error::ApiError;
use crate::auth::{self, KeyRecord};
use crate::config::{Config, OriginAuth, UnparseablePolicy};
use crate::output::filter::{filter_json, FilterError, Outcome, StreamFilter};
use crate::output::{catalog, Scanner};
use crate::proxy::{self, Protocol, Route};
use crate::telemetry::RequestLog;

/// Largest non-streamed origin response the gateway buffers for inspection.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

struct Loaded {
    config: Config,
    scanner: Scanner,
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
            Ok(&*Box::leak(Box::new(Loaded { config, scanner })))
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
    let result = handle(req, &env, &ctx, &rid, &log, started).await;
    let response = match result {
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
    Ok(response)
}

enum Handled {
    Done(Response),
    Streaming(Response),
}

async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    rid: &str,
    log: &Rc<RefCell<RequestLog>>,
    started: u64,
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
    let record = lookup_key(env, &key).await?;
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

    let upstream_body = serde_json::to_string(&Value::Object(parsed)).map_err(|_| {
        ApiError::bad_request("invalid_json", "The request body cannot be forwarded.")
    })?;
    let url = format!("{}{}", cfg.origin_url, path);
    let upstream = origin_request(&req, cfg, &url, Some(upstream_body))?;
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
            .map(|r| Handled::Done(r.with_status(status).with_headers(out_headers)))
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
        )
        .map(Handled::Streaming);
    }

    let bytes = read_capped(&mut resp, MAX_RESPONSE_BYTES).await?;
    let t0 = now_ms();
    let filtered = match filter_json(&loaded.scanner, protocol, &bytes) {
        Ok(f) => {
            log.borrow_mut().output.add(&f.findings);
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
        .map(|r| Handled::Done(r.with_status(status).with_headers(out_headers)))
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
) -> Result<Response, ApiError> {
    let shared = Rc::new(Shared {
        log,
        finished: Cell::new(false),
        last_activity: Cell::new(now_ms()),
    });
    let state = StreamState {
        upstream,
        filter: StreamFilter::new(&loaded.scanner, protocol),
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
                st.shared.finished.set(true);
            }
            if !out.is_empty() || ended {
                return Some((Ok::<Vec<u8>, worker::Error>(out), st));
            }
        }
    });

    // The log line is written when the stream ends, or when it has been idle too long (the
    // client went away and nobody pulls the stream any more).
    let idle = loaded.config.stream_idle_timeout_ms;
    ctx.wait_until(async move {
        loop {
            Delay::from(Duration::from_millis(250)).await;
            let idle_for = now_ms().saturating_sub(shared.last_activity.get());
            if shared.finished.get() || idle_for > idle + 1000 {
                let mut l = shared.log.borrow_mut();
                if !shared.finished.get() {
                    l.outcome = Some("abandoned".into());
                }
                l.status = status;
                l.total_ms = now_ms().saturating_sub(started);
                console_log!("{}", l.to_json());
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
