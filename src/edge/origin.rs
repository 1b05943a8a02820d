//! Bytes to and from the origin: request bodies read within a cap, the origin request built
//! from the core's [`OriginRequest`], the fetch with its timeout, and capped response reads.

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::{
    console_error, AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, Response,
};

use crate::api_error::ApiError;
use crate::gateway::OriginRequest;
use crate::protocol;

/// Largest non-streamed origin response the gateway buffers for inspection.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Reads the request body, refusing more than `cap` bytes without reading further.
pub async fn read_body(req: &mut Request, cap: usize) -> Result<Vec<u8>, ApiError> {
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

/// Reads a response body, failing past `cap` bytes.
pub async fn read_capped(resp: &mut Response, cap: usize) -> Result<Vec<u8>, ApiError> {
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

/// The Workers request for an [`OriginRequest`].
pub fn build(
    method: Method,
    plan: &OriginRequest,
    body: Option<String>,
) -> Result<Request, ApiError> {
    let headers = Headers::new();
    for (k, v) in &plan.headers {
        headers.set(k, v).map_err(|_| ApiError::internal())?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(b) = body {
        init.with_body(Some(worker::wasm_bindgen::JsValue::from_str(&b)));
    }
    Request::new_with_init(&plan.url, &init).map_err(|e| {
        console_error!("cannot build origin request: {e}");
        ApiError::internal()
    })
}

/// Sends a request to the origin; no response headers within `timeout_ms` is a 504.
pub async fn send(upstream: Request, timeout_ms: u64) -> Result<Response, ApiError> {
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

/// The origin's response headers that cross to the client, plus the request id.
pub fn response_headers(upstream: &Headers, rid: &str) -> Headers {
    let h = Headers::new();
    for (name, value) in upstream.entries() {
        if protocol::forward_response_header(&name) {
            let _ = h.set(&name, &value);
        }
    }
    let _ = h.set("x-request-id", rid);
    h
}
