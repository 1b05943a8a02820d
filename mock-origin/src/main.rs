//! A mock AI origin for local runs and tests. It speaks the real wire protocols: OpenAI chat
//! completions (`/v1/chat/completions`) and Anthropic Messages (`/v1/messages`), streamed as SSE
//! one small token per event, or whole.
//!
//! Scripted mode: when a message (typically the system message) is a JSON object with a `mock`
//! field, the mock does what it says:
//! `{"mock": {"say": "text", "delay_ms": 20, "fail": "500|hang|disconnect|malformed",
//!            "tool_call": {"name": "...", "arguments": "..."},
//!            "field": "content|refusal|reasoning_content|reasoning (OpenAI), text|thinking"}}`;
//! or, to send exact wire shapes, `{"mock": {"chunks": [...]}}` (each streamed as one event:
//! an OpenAI chunk object, or an Anthropic `[event name, object]` pair) and
//! `{"mock": {"body": {...}}}` (a whole response). A request with `logprobs: true` gets a
//! log-probability entry for every content token.
//! Every request is recorded; `GET /__mock/requests` returns them (headers and body).
//!
//! Usage: `mock-origin [--port N] [--delay-ms N]`. Prints `listening on <port>` when ready.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

struct Recorded {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

struct Server {
    default_delay: u64,
    requests: Mutex<Vec<Recorded>>,
}

fn main() {
    let mut port = 8788u16;
    let mut delay = 25u64;
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--port" => {
                port = args.get(i + 1).and_then(|p| p.parse().ok()).unwrap_or(port);
                i += 1;
            }
            "--delay-ms" => {
                delay = args
                    .get(i + 1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(delay);
                i += 1;
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1);
    });
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    println!("listening on {port}");
    let _ = std::io::stdout().flush();
    let server = Arc::new(Server {
        default_delay: delay,
        requests: Mutex::new(Vec::new()),
    });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let server = server.clone();
        thread::spawn(move || {
            let _ = handle(&server, conn);
        });
    }
}

struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Req> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end)?;
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    }
    Ok(Req {
        method,
        path,
        headers,
        body,
    })
}

fn respond(mut s: &TcpStream, status: u16, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-request-id: mock-req\r\nset-cookie: origin=secret\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    s.flush()
}

fn handle(server: &Server, stream: TcpStream) -> std::io::Result<()> {
    let req = read_request(&stream)?;
    let body_text = String::from_utf8_lossy(&req.body).into_owned();
    if req.path == "/__mock/requests" {
        let list = server.requests.lock().map(|r| {
            r.iter()
                .map(|x| json!({"path": x.path, "headers": x.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(), "body": x.body}))
                .collect::<Vec<_>>()
        });
        let list = list.unwrap_or_default();
        return respond(
            &stream,
            200,
            "application/json",
            Value::Array(list).to_string().as_bytes(),
        );
    }
    if let Ok(mut r) = server.requests.lock() {
        r.push(Recorded {
            path: req.path.clone(),
            headers: req.headers.clone(),
            body: body_text.clone(),
        });
    }
    let route = req.path.split('?').next().unwrap_or("").to_string();
    match (req.method.as_str(), route.as_str()) {
        ("GET", "/v1/models") => respond(
            &stream,
            200,
            "application/json",
            br#"{"object":"list","data":[{"id":"mock-1","object":"model","owned_by":"mock"}]}"#,
        ),
        ("POST", "/v1/chat/completions") => chat(server, &stream, &body_text, Proto::OpenAi),
        ("POST", "/v1/messages") => chat(server, &stream, &body_text, Proto::Anthropic),
        ("POST", "/v1/responses") => chat(server, &stream, &body_text, Proto::Responses),
        _ => respond(
            &stream,
            404,
            "application/json",
            br#"{"error":{"message":"not found","type":"invalid_request_error"}}"#,
        ),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    OpenAi,
    Anthropic,
    Responses,
}

struct Script {
    say: String,
    delay_ms: u64,
    fail: Option<String>,
    tool_call: Option<(String, String)>,
    /// The field the text streams in.
    field: Option<String>,
    chunks: Option<Vec<Value>>,
    body: Option<Value>,
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn script(req: &Value, default_delay: u64) -> Script {
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default();
    // The directive may sit in any message (tests put it in the system message) or in an
    // Anthropic-style top-level `system`.
    let directive = messages
        .iter()
        .rev()
        .map(|m| text_of(&m["content"]))
        .chain(std::iter::once(text_of(&req["system"])))
        .chain(std::iter::once(text_of(&req["instructions"])))
        .chain(std::iter::once(text_of(&req["input"])))
        .chain(
            req["input"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| text_of(&m["content"]))
                .collect::<Vec<_>>(),
        )
        .find_map(|t| {
            serde_json::from_str::<Value>(&t)
                .ok()
                .and_then(|v| v.get("mock").cloned())
        });
    match directive {
        Some(d) => Script {
            say: d["say"].as_str().unwrap_or("").to_string(),
            delay_ms: d["delay_ms"].as_u64().unwrap_or(default_delay),
            fail: d["fail"].as_str().map(str::to_string),
            tool_call: d.get("tool_call").map(|t| {
                (
                    t["name"].as_str().unwrap_or("tool").to_string(),
                    t["arguments"].as_str().unwrap_or("{}").to_string(),
                )
            }),
            field: d["field"].as_str().map(str::to_string),
            chunks: d["chunks"].as_array().cloned(),
            body: d.get("body").cloned(),
        },
        None => Script {
            say: format!(
                "Hello from the mock origin. You said: {}",
                last_user.chars().take(200).collect::<String>()
            ),
            delay_ms: default_delay,
            fail: None,
            tool_call: None,
            field: None,
            chunks: None,
            body: None,
        },
    }
}

/// Splits text into small tokens the way a model streams them: words with their leading space,
/// long words in pieces of up to four bytes (on character boundaries).
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        let boundary = (ch == ' ' || ch == '\n') && !cur.trim().is_empty();
        if boundary || cur.len() >= 4 && !cur.trim().is_empty() && cur.trim_start().len() >= 4 {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A log-probability entry for one token, with itself as the only alternative.
fn logprob(t: &str) -> Value {
    json!({"token": t, "logprob": -0.25, "bytes": t.as_bytes(),
           "top_logprobs": [{"token": t, "logprob": -0.25, "bytes": t.as_bytes()}]})
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn chat(server: &Server, stream: &TcpStream, body: &str, proto: Proto) -> std::io::Result<()> {
    let Ok(req) = serde_json::from_str::<Value>(body) else {
        return respond(
            stream,
            400,
            "application/json",
            br#"{"error":{"message":"bad json","type":"invalid_request_error"}}"#,
        );
    };
    let sc = script(&req, server.default_delay);
    let model = req["model"].as_str().unwrap_or("mock-1").to_string();
    match sc.fail.as_deref() {
        Some("500") => {
            return respond(stream, 500, "application/json", br#"{"error":{"message":"origin exploded: internal trace at 10.0.0.7","type":"server_error"}}"#)
        }
        Some("hang") => {
            thread::sleep(Duration::from_secs(120));
            return Ok(());
        }
        _ => {}
    }
    let streaming = req["stream"].as_bool().unwrap_or(false);
    let logprobs = req["logprobs"].as_bool().unwrap_or(false);
    if let (false, Some(b)) = (streaming, &sc.body) {
        return respond(stream, 200, "application/json", b.to_string().as_bytes());
    }
    let usage_wanted = req["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let prompt_tokens = (body.len() / 4) as u64;
    let toks = tokens(&sc.say);
    let completion_tokens = toks.len() as u64;
    if !streaming {
        let body = match proto {
            Proto::OpenAi => {
                let field = sc.field.as_deref().unwrap_or("content");
                let mut message = json!({"role": "assistant", "content": null});
                message[field] = json!(sc.say);
                if let Some((name, args)) = &sc.tool_call {
                    message["tool_calls"] = json!([{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}]);
                }
                let lp = logprobs.then(
                    || json!({"content": toks.iter().map(|t| logprob(t)).collect::<Vec<_>>()}),
                );
                json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": now(), "model": model,
                   "choices": [{"index": 0, "message": message, "logprobs": lp, "finish_reason": if sc.tool_call.is_some() {"tool_calls"} else {"stop"}}],
                   "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}})
            }
            Proto::Responses => {
                let mut output = Vec::new();
                match sc.field.as_deref() {
                    Some("reasoning") => output.push(json!({"type": "reasoning", "id": "rs_mock",
                        "summary": [{"type": "summary_text", "text": sc.say}]})),
                    Some("refusal") => output.push(json!({"type": "message", "id": "msg_mock",
                        "status": "completed", "role": "assistant",
                        "content": [{"type": "refusal", "refusal": sc.say}]})),
                    _ => output.push(json!({"type": "message", "id": "msg_mock", "status": "completed",
                        "role": "assistant", "content": [{"type": "output_text", "text": sc.say, "annotations": []}]})),
                }
                if let Some((name, args)) = &sc.tool_call {
                    output.push(
                        json!({"type": "function_call", "id": "fc_mock", "call_id": "call_1",
                        "name": name, "arguments": args, "status": "completed"}),
                    );
                }
                json!({"id": "resp_mock", "object": "response", "created_at": now(), "status": "completed",
                    "model": model, "output": output, "error": null, "incomplete_details": null,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}})
            }
            Proto::Anthropic => {
                let block = if sc.field.as_deref() == Some("thinking") {
                    json!({"type": "thinking", "thinking": sc.say, "signature": "bW9jay1zaWduYXR1cmU="})
                } else {
                    json!({"type": "text", "text": sc.say})
                };
                json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [block], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}})
            }
        };
        return respond(stream, 200, "application/json", body.to_string().as_bytes());
    }

    let mut s = stream;
    write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )?;
    let send = |s: &mut &TcpStream, data: &str| -> std::io::Result<()> {
        write!(s, "{:x}\r\n{data}\r\n", data.len())?;
        s.flush()
    };
    let pause = || thread::sleep(Duration::from_millis(sc.delay_ms));
    if let Some(chunks) = &sc.chunks {
        for c in chunks {
            pause();
            match (proto, c) {
                (Proto::Responses, Value::Object(o)) => {
                    let name = o.get("type").and_then(Value::as_str).unwrap_or("message");
                    send(&mut s, &format!("event: {name}\ndata: {c}\n\n"))?;
                }
                (Proto::Anthropic, Value::Array(pair)) => {
                    let name = pair.first().and_then(Value::as_str).unwrap_or("message");
                    let v = pair.get(1).cloned().unwrap_or(Value::Null);
                    send(&mut s, &format!("event: {name}\ndata: {v}\n\n"))?;
                }
                _ => send(&mut s, &format!("data: {c}\n\n"))?,
            }
        }
        if proto == Proto::OpenAi {
            send(&mut s, "data: [DONE]\n\n")?;
        }
        return send(&mut s, "");
    }
    let disconnect_after = (sc.fail.as_deref() == Some("disconnect")).then_some(toks.len() / 2);
    match proto {
        Proto::OpenAi => {
            let base = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": now(), "model": model});
            let chunk = |delta: Value, finish: Value| {
                let mut c = base.clone();
                c["choices"] = json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
                format!("data: {c}\n\n")
            };
            send(
                &mut s,
                &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            )?;
            if sc.fail.as_deref() == Some("malformed") {
                pause();
                send(&mut s, "data: {\"choices\": [not json\n\n")?;
                pause();
                send(&mut s, &chunk(json!({"content": "after"}), Value::Null))?;
                return send(&mut s, "");
            }
            let field = sc.field.as_deref().unwrap_or("content");
            for (i, t) in toks.iter().enumerate() {
                if disconnect_after == Some(i) {
                    return Ok(()); // drop the connection mid-stream, no terminating chunk
                }
                pause();
                let mut c = base.clone();
                let mut choice = json!({"index": 0, "delta": {field: t}, "finish_reason": null});
                if logprobs && field == "content" {
                    choice["logprobs"] = json!({"content": [logprob(t)]});
                }
                c["choices"] = json!([choice]);
                send(&mut s, &format!("data: {c}\n\n"))?;
            }
            if let Some((name, args)) = &sc.tool_call {
                pause();
                send(
                    &mut s,
                    &chunk(
                        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                        Value::Null,
                    ),
                )?;
                for piece in tokens(args) {
                    pause();
                    send(
                        &mut s,
                        &chunk(
                            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                            Value::Null,
                        ),
                    )?;
                }
            }
            pause();
            let finish = if sc.tool_call.is_some() {
                "tool_calls"
            } else {
                "stop"
            };
            send(&mut s, &chunk(json!({}), json!(finish)))?;
            if usage_wanted {
                let mut c = base.clone();
                c["choices"] = json!([]);
                c["usage"] = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
                send(&mut s, &format!("data: {c}\n\n"))?;
            }
            send(&mut s, "data: [DONE]\n\n")?;
        }
        Proto::Responses => {
            let mut seq = 0u64;
            let mut ev = |mut v: Value| {
                v["sequence_number"] = json!(seq);
                seq += 1;
                let name = v["type"].as_str().unwrap_or("message").to_string();
                format!("event: {name}\ndata: {v}\n\n")
            };
            let usage = json!({"input_tokens": prompt_tokens, "output_tokens": completion_tokens,
                               "total_tokens": prompt_tokens + completion_tokens});
            let resp = |status: &str, output: Value, usage: Value| {
                json!({"id": "resp_mock",
                "object": "response", "created_at": now(), "status": status, "model": model,
                "output": output, "usage": usage, "error": null, "incomplete_details": null})
            };
            send(
                &mut s,
                &ev(
                    json!({"type": "response.created", "response": resp("in_progress", json!([]), Value::Null)}),
                ),
            )?;
            let reasoning = sc.field.as_deref() == Some("reasoning");
            let refusal = sc.field.as_deref() == Some("refusal");
            let (item, part_type, key, delta_type, done_type) = if reasoning {
                (
                    json!({"type": "reasoning", "id": "rs_mock", "summary": []}),
                    "summary_text",
                    "text",
                    "response.reasoning_summary_text.delta",
                    "response.reasoning_summary_text.done",
                )
            } else if refusal {
                (
                    json!({"type": "message", "id": "msg_mock", "status": "in_progress", "role": "assistant", "content": []}),
                    "refusal",
                    "refusal",
                    "response.refusal.delta",
                    "response.refusal.done",
                )
            } else {
                (
                    json!({"type": "message", "id": "msg_mock", "status": "in_progress", "role": "assistant", "content": []}),
                    "output_text",
                    "text",
                    "response.output_text.delta",
                    "response.output_text.done",
                )
            };
            let item_id = item["id"].as_str().unwrap_or("msg_mock").to_string();
            send(
                &mut s,
                &ev(json!({"type": "response.output_item.added", "output_index": 0, "item": item})),
            )?;
            let idx_key = if reasoning {
                "summary_index"
            } else {
                "content_index"
            };
            let added = if reasoning {
                "response.reasoning_summary_part.added"
            } else {
                "response.content_part.added"
            };
            let mut empty_part = json!({"type": part_type});
            empty_part[key] = json!("");
            if part_type == "output_text" {
                empty_part["annotations"] = json!([]);
            }
            send(
                &mut s,
                &ev(
                    json!({"type": added, "item_id": item_id, "output_index": 0, idx_key: 0, "part": empty_part}),
                ),
            )?;
            for (i, t) in toks.iter().enumerate() {
                if disconnect_after == Some(i) {
                    return Ok(());
                }
                pause();
                let mut d = json!({"type": delta_type, "item_id": item_id, "output_index": 0, idx_key: 0, "delta": t});
                if logprobs && part_type == "output_text" {
                    d["logprobs"] = json!([logprob(t)]);
                }
                send(&mut s, &ev(d))?;
            }
            let mut done =
                json!({"type": done_type, "item_id": item_id, "output_index": 0, idx_key: 0});
            done[key] = json!(sc.say);
            send(&mut s, &ev(done))?;
            let mut full_part = json!({"type": part_type});
            full_part[key] = json!(sc.say);
            if part_type == "output_text" {
                full_part["annotations"] = json!([]);
            }
            let part_done = if reasoning {
                "response.reasoning_summary_part.done"
            } else {
                "response.content_part.done"
            };
            send(
                &mut s,
                &ev(
                    json!({"type": part_done, "item_id": item_id, "output_index": 0, idx_key: 0, "part": full_part.clone()}),
                ),
            )?;
            let full_item = if reasoning {
                json!({"type": "reasoning", "id": "rs_mock", "summary": [full_part]})
            } else {
                json!({"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant", "content": [full_part]})
            };
            send(
                &mut s,
                &ev(
                    json!({"type": "response.output_item.done", "output_index": 0, "item": full_item.clone()}),
                ),
            )?;
            let mut output = vec![full_item];
            if let Some((name, args)) = &sc.tool_call {
                let fc = json!({"type": "function_call", "id": "fc_mock", "call_id": "call_1", "name": name, "arguments": "", "status": "in_progress"});
                send(
                    &mut s,
                    &ev(
                        json!({"type": "response.output_item.added", "output_index": 1, "item": fc}),
                    ),
                )?;
                for piece in tokens(args) {
                    pause();
                    send(
                        &mut s,
                        &ev(
                            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_mock", "output_index": 1, "delta": piece}),
                        ),
                    )?;
                }
                send(
                    &mut s,
                    &ev(
                        json!({"type": "response.function_call_arguments.done", "item_id": "fc_mock", "output_index": 1, "arguments": args}),
                    ),
                )?;
                let fc = json!({"type": "function_call", "id": "fc_mock", "call_id": "call_1", "name": name, "arguments": args, "status": "completed"});
                send(
                    &mut s,
                    &ev(
                        json!({"type": "response.output_item.done", "output_index": 1, "item": fc.clone()}),
                    ),
                )?;
                output.push(fc);
            }
            send(
                &mut s,
                &ev(
                    json!({"type": "response.completed", "response": resp("completed", Value::Array(output), usage)}),
                ),
            )?;
        }
        Proto::Anthropic => {
            let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
            send(
                &mut s,
                &ev(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}}),
                ),
            )?;
            let thinking = sc.field.as_deref() == Some("thinking");
            let (block, delta_type, key) = if thinking {
                (
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                    "thinking_delta",
                    "thinking",
                )
            } else {
                (json!({"type": "text", "text": ""}), "text_delta", "text")
            };
            send(
                &mut s,
                &ev(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": block}),
                ),
            )?;
            for (i, t) in toks.iter().enumerate() {
                if disconnect_after == Some(i) {
                    return Ok(());
                }
                pause();
                send(
                    &mut s,
                    &ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": delta_type, key: t}}),
                    ),
                )?;
            }
            if thinking {
                send(
                    &mut s,
                    &ev(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "bW9jay1zaWduYXR1cmU="}}),
                    ),
                )?;
            }
            send(
                &mut s,
                &ev(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ),
            )?;
            send(
                &mut s,
                &ev(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": completion_tokens}}),
                ),
            )?;
            send(&mut s, &ev("message_stop", json!({"type": "message_stop"})))?;
        }
    }
    send(&mut s, "")
}
