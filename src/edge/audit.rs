//! The audit layer's two shell pieces. The producer sends each request's event (and any
//! anomaly warning it raises) to the `AUDIT_QUEUE` from `ctx.wait_until`, after the response;
//! the consumer (`#[event(queue)]`) writes each batch to the `AUDIT_BUCKET` and delivers it to
//! the webhook. The event, the batch, the signatures and the anomaly arithmetic are in
//! [`crate::audit`].

use std::cell::Cell;
use std::time::Duration;

use futures_util::future::{select, Either};
use worker::wasm_bindgen::JsValue;
use worker::{
    console_error, console_log, console_warn, event, Context, Delay, Env, Headers, HttpMetadata,
    MessageBatch, MessageExt, Method, QueueContentType, QueueRetryOptionsBuilder, RawMessage,
    RawMessageBuilder, Request, RequestInit,
};

use super::{limiter_do, load, now_ms};
use crate::audit::anomaly::{self, SignalAnswer, SignalBody, Subject};
use crate::audit::event::{AuditEvent, Context as EventContext};
use crate::audit::sign::webhook_signature;
use crate::audit::store;
use crate::audit::RequestLog;
use crate::config::{AuditConfig, Config};
use crate::gateway;

pub const QUEUE: &str = "AUDIT_QUEUE";
pub const BUCKET: &str = "AUDIT_BUCKET";
/// Seconds before a failed webhook delivery is tried again (`AUDIT_WEBHOOK_RETRY_SECONDS`).
const WEBHOOK_RETRY_DEFAULT: u32 = 30;
const WEBHOOK_TIMEOUT_MS: u64 = 10_000;

thread_local! {
    /// Events this isolate could not hand to the queue.
    static SEND_FAILURES: Cell<u64> = const { Cell::new(0) };
}

/// Checks, when the configuration is loaded, that an audit layer that is on has its queue.
pub fn check_bindings(env: &Env, cfg: &Config) -> Result<(), String> {
    if cfg.audit.is_some() && env.queue(QUEUE).is_err() {
        return Err(format!(
            "AUDIT is on but the {QUEUE} queue binding is missing (add it to wrangler.toml or set AUDIT = \"off\")"
        ));
    }
    Ok(())
}

/// Sends one event to the queue; a failure is logged and counted, never raised.
async fn send(env: &Env, event: &AuditEvent) {
    let json = event.to_json();
    let result = match env.queue(QUEUE) {
        Ok(q) => {
            q.send_raw(
                RawMessageBuilder::new(JsValue::from_str(&json))
                    .build_with_content_type(QueueContentType::Text),
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        let n = SEND_FAILURES.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        console_error!(
            "audit: event {} not queued ({n} failures in this isolate): {e}",
            event.event_id
        );
    }
}

/// Queues a request's audit event and counts its anomaly signals, after the response: from
/// `ctx.wait_until` when the caller has nothing else to wait for.
pub fn emit(env: &Env, ctx: &Context, cfg: &'static Config, log: &RequestLog, client: &str) {
    if cfg.audit.is_none() {
        return;
    }
    let env = env.clone();
    let (log, client) = (log.clone(), client.to_string());
    ctx.wait_until(async move { record(&env, cfg, &log, &client).await });
}

/// Queues a request's event and any anomaly warning it raises (awaited by the caller's own
/// `wait_until` task).
pub async fn record(env: &Env, cfg: &Config, log: &RequestLog, client: &str) {
    let Some(audit) = &cfg.audit else {
        return;
    };
    let now = now_ms();
    let cx = EventContext {
        event_id: &log.request_id,
        now_ms: now,
        client,
        address_policy: audit.address,
    };
    let event = AuditEvent::from_request(log, &cx);
    send(env, &event).await;
    signal(env, cfg, audit, &event, client).await;
}

/// Counts the event's anomaly signals in its subject's limiter object and queues a warning for
/// each threshold crossed.
async fn signal(env: &Env, cfg: &Config, audit: &AuditConfig, event: &AuditEvent, client: &str) {
    let signals: Vec<String> = anomaly::signals(event)
        .into_iter()
        .filter(|s| audit.anomaly.limits.contains_key(*s))
        .map(str::to_string)
        .collect();
    if signals.is_empty() {
        return;
    }
    let (object, subject) = match &event.key_id {
        Some(k) => (
            gateway::key_limiter(k),
            Subject::Key {
                key_id: k.clone(),
                tenant: event.tenant.clone(),
            },
        ),
        None => (gateway::auth_limiter(client), Subject::Address),
    };
    let body = SignalBody {
        signals,
        thresholds: audit.anomaly.clone(),
    };
    let answer: Result<SignalAnswer, String> =
        limiter_do::call(env, &object, "/signal", &body, cfg.limiter_timeout_ms).await;
    let warnings = match answer {
        Ok(a) => a.warnings,
        Err(e) => {
            console_error!("audit: anomaly counters unavailable for {object}: {e}");
            return;
        }
    };
    for w in warnings {
        let id = format!("{}-anomaly-{}", event.event_id, w.signal);
        let warning = AuditEvent::warning(
            &EventContext {
                event_id: &id,
                now_ms: now_ms(),
                client,
                address_policy: audit.address,
            },
            &subject,
            &w,
        );
        console_warn!(
            "ANOMALY: {} crossed {} {} events in {} s (key {}, address {}); audit event {}",
            w.signal,
            w.threshold,
            w.signal,
            w.window_ms / 1000,
            warning.key_id.as_deref().unwrap_or("-"),
            warning.client_address.as_deref().unwrap_or("-"),
            id
        );
        send(env, &warning).await;
    }
}

/// A queue message: an event, or a stored batch still to be delivered to the webhook.
enum Item {
    Event(String),
    Deliver(String),
}

fn item(m: &RawMessage) -> Option<Item> {
    let text = m.body().as_string()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    match v.get("deliver").and_then(|d| d.as_str()) {
        Some(object) => Some(Item::Deliver(object.to_string())),
        None => Some(Item::Event(text)),
    }
}

fn retry_after(m: &RawMessage, seconds: u32) {
    m.retry_with_options(
        &QueueRetryOptionsBuilder::new()
            .with_delay_seconds(seconds)
            .build(),
    );
}

fn webhook_retry_seconds(env: &Env) -> u32 {
    env.var("AUDIT_WEBHOOK_RETRY_SECONDS")
        .ok()
        .and_then(|v| v.to_string().trim().parse().ok())
        .unwrap_or(WEBHOOK_RETRY_DEFAULT)
}

/// The consumer: never returns an error (that would retry the whole batch and reset the
/// isolate); each message is acked or retried on its own.
#[event(queue)]
async fn consume(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    let cfg = match load(&env) {
        Ok(l) => &l.config,
        Err(problem) => {
            console_error!("audit consumer: configuration error, retrying: {problem}");
            messages.iter().for_each(|m| retry_after(m, 30));
            return Ok(());
        }
    };
    let Some(audit) = &cfg.audit else {
        console_warn!(
            "audit consumer: AUDIT is off; dropping {} messages",
            messages.len()
        );
        messages.iter().for_each(MessageExt::ack);
        return Ok(());
    };
    let retry_s = webhook_retry_seconds(&env);
    // A message that is not an event can never be stored: left to the retries and then the
    // dead-letter queue.
    let reject = |m: &RawMessage| {
        console_error!("audit consumer: message {} is not an audit event", m.id());
        m.retry();
    };
    let (mut idx, mut lines) = (Vec::new(), Vec::new());
    for (i, m) in messages.iter().enumerate() {
        match item(m) {
            Some(Item::Event(line)) => {
                idx.push(i);
                lines.push(line);
            }
            Some(Item::Deliver(object)) => match deliver_stored(&env, audit, &object).await {
                Ok(()) => m.ack(),
                Err(e) => {
                    console_error!("audit webhook: {object} not delivered, retrying: {e}");
                    retry_after(m, retry_s);
                }
            },
            None => reject(m),
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    let Some(b) = store::build(&lines, &audit.hmac_key) else {
        idx.iter().for_each(|&i| reject(&messages[i]));
        return Ok(());
    };
    let mut good = Vec::with_capacity(idx.len());
    for (j, &i) in idx.iter().enumerate() {
        if b.invalid.contains(&j) {
            reject(&messages[i]);
        } else {
            good.push(i);
        }
    }
    if let Err(e) = put(&env, &b).await {
        console_error!(
            "audit consumer: writing {} failed, retrying the batch: {e}",
            b.object
        );
        good.iter().for_each(|&i| retry_after(&messages[i], 5));
        return Ok(());
    }
    console_log!(
        "audit: stored {} events in {} ({} bytes)",
        b.manifest.events,
        b.object,
        b.gzip.len()
    );
    if let Some(w) = &audit.webhook {
        if let Err(e) = post(w, &b.manifest.batch_id, &b.object, &b.ndjson).await {
            console_error!(
                "audit webhook: {} not delivered, queued again: {e}",
                b.object
            );
            if let Err(e) = queue_delivery(&env, &b.object, retry_s).await {
                console_error!(
                    "audit webhook: cannot queue the delivery of {}: {e}",
                    b.object
                );
            }
        }
    }
    good.iter().for_each(|&i| messages[i].ack());
    Ok(())
}

async fn put(env: &Env, b: &store::Batch) -> worker::Result<()> {
    let bucket = env.bucket(BUCKET)?;
    let meta: std::collections::HashMap<String, String> = [
        ("events", b.manifest.events.to_string()),
        ("sha256", b.manifest.sha256.clone()),
        ("signature", b.manifest.signature.clone()),
        ("schema_version", b.manifest.schema_version.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    bucket
        .put(b.object.clone(), b.gzip.clone())
        .http_metadata(HttpMetadata {
            content_type: Some("application/x-ndjson".into()),
            ..HttpMetadata::default()
        })
        .custom_metadata(meta)
        .execute()
        .await?;
    Ok(())
}

async fn queue_delivery(env: &Env, object: &str, delay: u32) -> worker::Result<()> {
    let body = serde_json::json!({ "deliver": object }).to_string();
    env.queue(QUEUE)?
        .send_raw(
            RawMessageBuilder::new(JsValue::from_str(&body))
                .delay_seconds(delay)
                .build_with_content_type(QueueContentType::Text),
        )
        .await
}

/// Delivers a stored batch (a retried webhook delivery).
async fn deliver_stored(env: &Env, audit: &AuditConfig, object: &str) -> Result<(), String> {
    let Some(w) = &audit.webhook else {
        return Ok(());
    };
    let bucket = env.bucket(BUCKET).map_err(|e| e.to_string())?;
    let Some(obj) = bucket
        .get(object.to_string())
        .execute()
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("the object is not in the bucket".into());
    };
    let gz = match obj.body() {
        Some(b) => b.bytes().await.map_err(|e| e.to_string())?,
        None => return Err("the object has no body".into()),
    };
    let ndjson = store::gunzip(&gz, 256 << 20)?;
    let batch_id = object
        .rsplit('/')
        .next()
        .and_then(|n| n.strip_suffix(".ndjson.gz"))
        .unwrap_or("");
    post(w, batch_id, object, &ndjson).await
}

/// POSTs a batch to the webhook, signed; anything but a 2xx within the timeout is a failure.
async fn post(
    w: &crate::config::Webhook,
    batch_id: &str,
    object: &str,
    ndjson: &[u8],
) -> Result<(), String> {
    let headers = Headers::new();
    let sig = webhook_signature(&w.secret, now_ms(), ndjson);
    for (k, v) in [
        ("content-type", "application/x-ndjson"),
        ("x-edgeguard-signature", sig.as_str()),
        ("x-edgeguard-batch", batch_id),
        ("x-edgeguard-object", object),
    ] {
        headers.set(k, v).map_err(|e| e.to_string())?;
    }
    let mut init = RequestInit::new();
    let body = worker::js_sys::Uint8Array::from(ndjson);
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let req = Request::new_with_init(&w.url, &init).map_err(|e| e.to_string())?;
    let fetch = worker::Fetch::Request(req);
    let send = fetch.send();
    let timer = Delay::from(Duration::from_millis(WEBHOOK_TIMEOUT_MS));
    let outcome = select(Box::pin(send), Box::pin(timer)).await;
    let result = match outcome {
        Either::Left((Ok(resp), _)) if (200..300).contains(&resp.status_code()) => Ok(()),
        Either::Left((Ok(resp), _)) => Err(format!("the webhook answered {}", resp.status_code())),
        Either::Left((Err(e), _)) => Err(e.to_string()),
        Either::Right(_) => Err(format!("no answer within {WEBHOOK_TIMEOUT_MS} ms")),
    };
    result
}
