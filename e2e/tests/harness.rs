//! Starts the real stack for end-to-end tests: the mock origin and the worker under
//! `wrangler dev` (workerd with local KV), on free loopback ports, and stops every process it
//! started, whatever happens to the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e package sits in the repository")
        .to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process started in its own process group; dropping it kills the whole group.
pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let quiet = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        quiet("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        quiet("-KILL");
        let _ = self.child.wait();
    }
}

pub struct Mock {
    pub port: u16,
    _proc: Proc,
}

/// Builds the mock origin (its own package) once and returns its path.
fn mock_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--quiet",
                    "--release",
                    "-p",
                    "edgeguard-mock-origin",
                ])
                .current_dir(repo())
                .status()
                .expect("run cargo build for the mock origin");
            assert!(status.success(), "mock origin build failed");
            repo().join("target/release/mock-origin")
        })
        .clone()
}

pub fn start_mock() -> Mock {
    let port = free_port();
    let mut cmd = Command::new(mock_binary());
    cmd.args(["--port", &port.to_string(), "--delay-ms", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut p = Proc::spawn("mock-origin", &mut cmd);
    let out = p.child.stdout.take().expect("mock stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("mock ready line");
    assert!(line.starts_with("listening on"), "mock said {line:?}");
    Mock { port, _proc: p }
}

pub struct Gateway {
    pub port: u16,
    pub log: PathBuf,
    _proc: Proc,
}

impl Gateway {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Builds the worker once (scripts/build-worker) unless the caller already did.
pub fn build_worker() {
    let status = Command::new("sh")
        .arg(repo().join("scripts/build-worker"))
        .status()
        .expect("run scripts/build-worker");
    assert!(status.success(), "worker build failed");
}

/// Writes key records into the local KV store under `state`.
pub fn seed_keys(state: &Path, records: &[(String, String)]) {
    let entries: Vec<serde_json::Value> = records
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
        .collect();
    let file = state.join("keys.json");
    std::fs::create_dir_all(state).expect("state dir");
    std::fs::write(&file, serde_json::to_string(&entries).expect("json")).expect("write keys");
    let status = Command::new("npx")
        .current_dir(repo())
        .args([
            "wrangler",
            "kv",
            "bulk",
            "put",
            "--binding",
            "KEYS",
            "--local",
            "--persist-to",
        ])
        .arg(state)
        .arg(&file)
        .env("WRANGLER_SEND_METRICS", "false")
        .stdout(Stdio::null())
        .status()
        .expect("wrangler kv bulk put");
    assert!(status.success(), "seeding keys failed");
}

/// Starts `wrangler dev` with the given vars (name, value) and waits until it serves.
/// Writes a copy of wrangler.toml next to it with `edit` applied (for a stack whose limiter
/// binding points nowhere, say) and returns its path.
pub fn variant_config(name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let base = std::fs::read_to_string(repo().join("wrangler.toml")).expect("wrangler.toml");
    let path = repo().join(format!("wrangler.e2e-{name}.toml"));
    std::fs::write(&path, edit(&base)).expect("write config variant");
    path
}

/// Starts `wrangler dev` with the given vars (name, value) and waits until it serves.
pub fn start_gateway(
    name: &str,
    state: &Path,
    vars: &[(&str, String)],
    expect_healthy: bool,
) -> Gateway {
    start_gateway_with(name, state, vars, expect_healthy, None)
}

/// Like [`start_gateway`], with another configuration file.
pub fn start_gateway_with(
    name: &str,
    state: &Path,
    vars: &[(&str, String)],
    expect_healthy: bool,
    config: Option<&Path>,
) -> Gateway {
    let port = free_port();
    let inspector = free_port();
    let log = state.join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut cmd = Command::new("npx");
    cmd.current_dir(repo())
        .args([
            "wrangler",
            "dev",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--inspector-port", &inspector.to_string()])
        .args(["--show-interactive-dev-session=false", "--log-level", "log"])
        .arg("--persist-to")
        .arg(state);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    for (k, v) in vars {
        cmd.arg("--var").arg(format!("{k}:{v}"));
    }
    cmd.env("EDGEGUARD_PREBUILT", "1")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file);
    let proc = Proc::spawn(name, &mut cmd);
    let gw = Gateway {
        port,
        log,
        _proc: proc,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = request(port, "GET", "/healthz", &[], None) {
            if !expect_healthy || r.status == 200 {
                return gw;
            }
        }
        if Instant::now() > deadline {
            panic!("gateway {name} did not start; log:\n{}", gw.log_text());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A response with the time each body chunk arrived.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// (milliseconds since the request was sent, bytes) per received piece of the body.
    pub pieces: Vec<(u128, Vec<u8>)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `data:` payloads of the SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter_map(|ev| {
                let lines: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                    .collect();
                (!lines.is_empty()).then(|| lines.join("\n"))
            })
            .collect()
    }
}

/// Header lines up to the blank line, names in lower case.
fn read_headers(r: &mut impl BufRead) -> std::io::Result<Vec<(String, String)>> {
    let mut hdrs = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l)?;
        let l = l.trim_end();
        if l.is_empty() {
            return Ok(hdrs);
        }
        if let Some((k, v)) = l.split_once(':') {
            hdrs.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

/// A minimal HTTP/1.1 client over a raw socket, so tests see exactly when bytes arrive.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("content-length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let hdrs = read_headers(&mut r)?;
    let chunked = hdrs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    let mut pieces = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            if r.read_line(&mut size)? == 0 {
                break;
            }
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
            pieces.push((started.elapsed().as_millis(), chunk.clone()));
            body.extend_from_slice(&chunk);
        }
    } else if let Some(len) = hdrs
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        pieces.push((started.elapsed().as_millis(), body.clone()));
    } else {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    pieces.push((started.elapsed().as_millis(), buf[..n].to_vec()));
                    body.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Resp {
        status,
        headers: hdrs,
        body,
        pieces,
    })
}

/// One POST the webhook receiver answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `x-edgeguard-signature` header checked against the body with the shared secret.
    pub signature_ok: bool,
    pub batch: String,
}

#[derive(Default)]
struct WebhookState {
    deliveries: Vec<Delivery>,
    fail_next: usize,
}

/// A local webhook receiver (the SIEM side): records every delivery, answers 503 to the next
/// `fail_next` ones and 200 otherwise.
pub struct Webhook {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<WebhookState>>,
}

impl Webhook {
    pub fn fail_next(&self, n: usize) {
        self.state.lock().expect("webhook state").fail_next = n;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().expect("webhook state").deliveries.clone()
    }
}

pub fn start_webhook(secret: &'static [u8]) -> Webhook {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
    let port = listener.local_addr().expect("addr").port();
    let state = std::sync::Arc::new(std::sync::Mutex::new(WebhookState::default()));
    let shared = state.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = serve_webhook(conn, secret, &shared);
        }
    });
    Webhook { port, state }
}

fn serve_webhook(
    conn: TcpStream,
    secret: &[u8],
    state: &std::sync::Mutex<WebhookState>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let hdrs = read_headers(&mut r)?;
    let header = |name: &str| {
        hdrs.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let len: usize = header("content-length").parse().unwrap_or(0);
    let (sig, batch) = (header("x-edgeguard-signature"), header("x-edgeguard-batch"));
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let status = {
        let mut s = state.lock().expect("webhook state");
        let status = if s.fail_next > 0 {
            s.fail_next -= 1;
            503
        } else {
            200
        };
        s.deliveries.push(Delivery {
            status,
            signature_ok: edgeguard::audit::sign::verify_webhook(secret, &sig, &body),
            body,
            batch,
        });
        status
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    Ok(())
}
