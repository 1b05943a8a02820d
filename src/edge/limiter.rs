//! The limiter Durable Object (one per API key id, or per client address for failed
//! authentication) and the worker's calls to it. The object keeps its state in SQLite and
//! decides with no `.await` between reading and writing it, so concurrent requests for one key
//! are serialized and can never overshoot.

use std::time::Duration;

use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use worker::{
    console_error, durable_object, Date, Delay, DurableObject, Env, Method, Request, RequestInit,
    Response, Result, SqlStorage, State,
};

use crate::limits::{self, Ask, KeyState, Tier};

#[durable_object]
pub struct Limiter {
    state: State,
    sql: SqlStorage,
}

#[derive(Deserialize)]
struct Row {
    json: String,
}

#[derive(Serialize, Deserialize)]
pub struct AcquireBody {
    pub tier: Tier,
    pub reserve_tokens: u32,
    pub lease_id: String,
    pub lease_ttl_ms: f64,
}

#[derive(Serialize, Deserialize)]
pub struct ReleaseBody {
    pub tier: Tier,
    pub lease_id: String,
    pub reserved: u32,
    pub used: u32,
}

#[derive(Serialize, Deserialize)]
pub struct AuthFailBody {
    pub per_minute: u32,
    pub burst: u32,
}

/// Answer to a failed-authentication report: wait this long, or refuse.
#[derive(Serialize, Deserialize)]
pub struct AuthFailAnswer {
    pub refused: bool,
    pub delay_ms: f64,
}

#[derive(Serialize, Deserialize, Default)]
struct AuthState {
    tat: f64,
}

fn now() -> f64 {
    Date::now().as_millis() as f64
}

impl Limiter {
    fn load<T: for<'de> Deserialize<'de> + Default>(&self, key: &str) -> Result<T> {
        let rows: Vec<Row> = self
            .sql
            .exec("SELECT json FROM state WHERE k = ?", vec![key.into()])?
            .to_array()?;
        Ok(match rows.first() {
            Some(r) => serde_json::from_str(&r.json).unwrap_or_default(),
            None => T::default(),
        })
    }

    fn save<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let json =
            serde_json::to_string(value).map_err(|e| worker::Error::RustError(e.to_string()))?;
        self.sql.exec(
            "INSERT INTO state (k, json) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET json = excluded.json",
            vec![key.into(), json.into()],
        )?;
        Ok(())
    }

    async fn arm(&self, s: &KeyState) -> Result<()> {
        if let Some(exp) = s.next_expiry() {
            let offset = (exp - now()).max(0.0) as u64 + 50;
            self.state
                .storage()
                .set_alarm(Duration::from_millis(offset))
                .await?;
        }
        Ok(())
    }
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
        match path.as_str() {
            "/acquire" => {
                let body: AcquireBody = req.json().await?;
                // Read, decide, write: synchronous, so atomic for this key.
                let mut s: KeyState = self.load("key")?;
                let d = s.acquire(&Ask {
                    now: now(),
                    tier: body.tier,
                    reserve_tokens: body.reserve_tokens,
                    lease_id: body.lease_id,
                    lease_ttl_ms: body.lease_ttl_ms,
                });
                self.save("key", &s)?;
                if d.allowed {
                    self.arm(&s).await?;
                }
                Response::from_json(&d)
            }
            "/release" => {
                let body: ReleaseBody = req.json().await?;
                let mut s: KeyState = self.load("key")?;
                s.release(now(), &body.tier, &body.lease_id, body.reserved, body.used);
                self.save("key", &s)?;
                Response::ok("released")
            }
            "/authfail" => {
                let body: AuthFailBody = req.json().await?;
                let mut a: AuthState = self.load("auth")?;
                let verdict = limits::auth_failure(&mut a.tat, now(), body.per_minute, body.burst);
                self.save("auth", &a)?;
                Response::from_json(&AuthFailAnswer {
                    refused: verdict.is_none(),
                    delay_ms: verdict.unwrap_or(0.0),
                })
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let mut s: KeyState = self.load("key")?;
        let reclaimed = s.reclaim(now());
        self.save("key", &s)?;
        self.arm(&s).await?;
        Response::ok(format!("reclaimed {reclaimed}"))
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
