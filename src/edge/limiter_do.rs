//! The limiter Durable Object (one per API key id, or per client address for failed
//! authentication) and the worker's calls to it. The object keeps its state in SQLite and
//! decides with no `.await` between reading and writing it, so concurrent requests for one key
//! are serialized and can never overshoot. What each call does is
//! [`crate::network::limiter::handle`]; this file reads and writes the row around it.

use std::time::Duration;

use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use worker::{
    console_error, durable_object, Date, Delay, DurableObject, Env, Method, Request, RequestInit,
    Response, Result, SqlStorage, State,
};

use crate::network::limiter::{self, LimiterError};

#[durable_object]
pub struct Limiter {
    state: State,
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct Row {
    json: String,
}

fn now() -> f64 {
    Date::now().as_millis() as f64
}

impl Limiter {
    fn load(&self, key: &str) -> Result<Option<String>> {
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT json FROM state WHERE k = ?", vec![key.into()])?
            .to_array()?;
        Ok(rows.into_iter().next().map(|r| r.json))
    }

    fn save(&self, key: &str, json: String) -> Result<()> {
        self.sql.exec(
            "INSERT INTO state (k, json) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET json = excluded.json",
            vec![key.into(), json.into()],
        )?;
        Ok(())
    }

    async fn arm(&self, at: Option<f64>) -> Result<()> {
        if let Some(exp) = at {
            let offset = (exp - now()).max(0.0) as u64 + 50;
            self.state
                .storage()
                .set_alarm(Duration::from_millis(offset))
                .await?;
        }
        Ok(())
    }
}

/// A refusal the worker reads as "the limiter cannot answer" (its failure policy applies).
fn refuse(e: &LimiterError) -> Result<Response> {
    console_error!("limiter: {e}");
    Response::error(e.to_string(), 500)
}

impl DurableObject for Limiter {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        if let Err(e) = sql.exec(
            "CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY, json TEXT NOT NULL)",
            None,
        ) {
            console_error!("limiter: cannot create its table: {e}");
        }
        Limiter { state, sql }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let Some(row) = limiter::row_for(&path) else {
            return Response::error("not found", 404);
        };
        let body = req.bytes().await?;
        // Read, decide, write: synchronous, so atomic for this key.
        let stored = self.load(row)?;
        let handled = match limiter::handle(&path, &body, stored.as_deref(), now()) {
            Ok(h) => h,
            Err(e) => return refuse(&e),
        };
        self.save(handled.row, handled.state)?;
        self.arm(handled.alarm_at).await?;
        let mut resp = Response::from_bytes(handled.answer.into_bytes())?;
        let _ = resp.headers_mut().set("content-type", "application/json");
        Ok(resp)
    }

    async fn alarm(&self) -> Result<Response> {
        let stored = self.load(limiter::KEY_ROW)?;
        match limiter::alarm(stored.as_deref(), now()) {
            Ok((state, reclaimed, next)) => {
                self.save(limiter::KEY_ROW, state)?;
                self.arm(next).await?;
                Response::ok(format!("reclaimed {reclaimed}"))
            }
            Err(e) => refuse(&e),
        }
    }
}

/// Posts a JSON body to the limiter object `name` and returns its response, within
/// `timeout_ms`; anything but a 200 is an error.
async fn post(
    env: &Env,
    name: &str,
    path: &str,
    json: String,
    timeout_ms: u64,
) -> std::result::Result<Response, String> {
    let run = async {
        let ns = env.durable_object("LIMITER").map_err(|e| e.to_string())?;
        let stub = ns.get_by_name(name).map_err(|e| e.to_string())?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(worker::wasm_bindgen::JsValue::from_str(&json)));
        let req = Request::new_with_init(&format!("https://limiter{path}"), &init)
            .map_err(|e| e.to_string())?;
        let resp = stub
            .fetch_with_request(req)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status_code() != 200 {
            return Err(format!("limiter answered {}", resp.status_code()));
        }
        Ok(resp)
    };
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    match select(Box::pin(run), Box::pin(timer)).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(format!("limiter did not answer within {timeout_ms} ms")),
    }
}

/// Calls the limiter object `name` with a JSON body and reads a JSON answer.
pub async fn call<B: Serialize, T: for<'de> Deserialize<'de>>(
    env: &Env,
    name: &str,
    path: &str,
    body: &B,
    timeout_ms: u64,
) -> std::result::Result<T, String> {
    let json = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let mut resp = post(env, name, path, json, timeout_ms).await?;
    resp.json::<T>().await.map_err(|e| e.to_string())
}

/// Like [`call`], for endpoints that answer with text.
pub async fn call_text<B: Serialize>(
    env: &Env,
    name: &str,
    path: &str,
    body: &B,
    timeout_ms: u64,
) -> std::result::Result<String, String> {
    let json = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let mut resp = post(env, name, path, json, timeout_ms).await?;
    resp.text().await.map_err(|e| e.to_string())
}
