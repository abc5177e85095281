//! `lfm-edge serve` on the demo model, on 127.0.0.1 at a port the system picks: driven
//! by the official `openai` Python client (tests/serve/openai_driver.py, from the venv
//! scripts/openai/install.sh makes; .ci/run calls it), by raw HTTP for what a client
//! library would not send (garbage, 10 MB bodies, slow clients, a client that leaves,
//! SIGTERM mid-stream), and in-process with a KV cache too small for two conversations
//! (eviction, 503). Every loop here is bounded in count and time.

#![cfg(feature = "server")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use lfm_edge::server::{Limits, Server, ServerOptions};
use lfm_edge::{LoadOptions, Model, SessionOptions};
use serde_json::{json, Value};

const KEY: &str = "test-key-0123";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `lfm-edge serve` process; killed when dropped.
struct Served {
    child: Child,
    address: String,
    /// What it wrote to stderr (its request log).
    log: Arc<Mutex<String>>,
}

fn serve(args: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lfm-edge"))
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lfm-edge serve starts");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_default();
    let address = line
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}; log:\n{}", log.lock().unwrap()))
        .to_owned();
    Served {
        child,
        address,
        log,
    }
}

impl Served {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv's python with the openai client.
fn python() -> PathBuf {
    let script = repo_root().join("scripts/openai/install.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", script.display()));
    assert!(
        output.status.success(),
        "{}(.ci/run installs it)",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Runs a scenario of the driver; returns its JSON lines.
fn drive(served: &Served, scenario: &str) -> Vec<Value> {
    let driver = repo_root().join("runtime/tests/serve/openai_driver.py");
    let output = Command::new(python())
        .arg(driver)
        .arg(format!("http://{}/v1", served.address))
        .args([KEY, scenario])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the {scenario} scenario failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        served.log()
    );
    eprintln!("{stdout}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_openai_client_gets_answers_streams_json_and_tool_calls() {
    let served = serve(&["--api-key", KEY]);
    let checks = drive(&served, "api");
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    let all = [
        "chat",
        "stream",
        "completion",
        "seed",
        "stop",
        "json_schema",
        "tool_call",
        "errors",
        "api_key",
    ];
    assert_eq!(names, all);
    // One log line per request, with its tokens.
    let log = served.log();
    assert!(log.contains("POST /v1/chat/completions 200 14 prompt (0 cached) + "));
    assert!(log.contains("GET /v1/models 401"));
}

#[test]
fn a_conversation_that_goes_on_feeds_only_its_new_turn() {
    let served = serve(&[]);
    let cache = &drive(&served, "cache")[0];
    let fed = cache["fed_with_reuse"].as_array().unwrap();
    assert!(fed.iter().all(|n| n.as_u64().unwrap() < 20), "{cache}");
}

#[test]
fn eight_clients_at_once_one_leaving_mid_stream() {
    let served = serve(&["--vram-budget", "64MiB"]);
    let load = &drive(&served, "load")[0];
    assert_eq!(load["answers"], 31);
    assert!(served.log().contains("the client left"), "{}", served.log());
}

/// An HTTP/1.1 exchange on a connection of its own: the status and the body.
fn exchange(address: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn post(address: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(address, request.as_bytes())
}

fn get(address: &str, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    exchange(address, request.as_bytes())
}

/// The error object of a response, checked to be OpenAI's shape.
fn error(body: &str) -> Value {
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: not JSON: {body:?}"));
    let error = value["error"].clone();
    assert!(
        error["message"].is_string() && error["type"].is_string(),
        "{body}"
    );
    error
}

fn chat(messages: &str, rest: &str) -> String {
    format!(r#"{{"messages": {messages}{rest}}}"#)
}

const HELLO: &str = r#"[{"role": "user", "content": "Enter the King."}]"#;
const BAD_SCHEMA: &str =
    r#"{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}"#;
const TOOLS: &str = r#"[{"type": "function", "function": {"name": "f", "parameters": {}}}]"#;

#[test]
fn bad_requests_get_openais_error_objects() {
    let served = serve(&["--api-key", KEY]);
    let at = served.address.as_str();
    let path = "/v1/chat/completions";
    let ok = chat(HELLO, r#", "max_tokens": 4"#);

    let (status, body) = post(at, path, None, &ok);
    assert_eq!(
        (status, error(&body)["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (status, _) = post(at, path, Some("not-the-key"), &ok);
    assert_eq!(status, 401);
    assert_eq!(get(at, "/health").0, 200, "health needs no key");

    let refused = [
        ("{\"messages\": [", None),
        ("\u{1}garbage", None),
        ("[1, 2]", None),
        (r#"{"model": "x"}"#, Some("messages")),
        (r#"{"messages": "hi"}"#, Some("messages")),
        (r#"{"messages": []}"#, Some("messages")),
        (
            r#"{"messages": [{"content": "hi"}]}"#,
            Some("messages[0].role"),
        ),
        (
            &chat(HELLO, r#", "temperature": "hot""#),
            Some("temperature"),
        ),
        (&chat(HELLO, r#", "temperature": 9"#), Some("temperature")),
        (&chat(HELLO, r#", "max_tokens": 0"#), Some("max_tokens")),
        (&chat(HELLO, r#", "max_tokens": -3"#), Some("max_tokens")),
        (&chat(HELLO, r#", "stop": 5"#), Some("stop")),
        (&chat(HELLO, r#", "n": 2"#), Some("n")),
        (&chat(HELLO, r#", "stream": "yes""#), Some("stream")),
        (&chat(HELLO, r#", "logprobs": true"#), Some("logprobs")),
        (
            &chat(r#"[{"role": "robot", "content": "hi"}]"#, ""),
            Some("messages[0].role"),
        ),
        (
            &chat(HELLO, r#", "response_format": {"type": "xml"}"#),
            Some("response_format.type"),
        ),
        (
            &chat(HELLO, &format!(r#", "response_format": {BAD_SCHEMA}"#)),
            Some("response_format"),
        ),
        (
            &chat(
                HELLO,
                r#", "tools": [{"type": "function", "function": {"name": "3x"}}]"#,
            ),
            Some("tools"),
        ),
        (
            &chat(
                HELLO,
                &format!(r#", "tools": {TOOLS}, "tool_choice": "sometimes""#),
            ),
            Some("tool_choice"),
        ),
    ];
    for (body, param) in refused {
        let (status, response) = post(at, path, Some(KEY), body);
        assert_eq!(status, 400, "{body} got {response}");
        assert_eq!(error(&response)["param"].as_str(), param, "{body}");
    }
    let long = format!(
        r#"[{{"role": "user", "content": "{}"}}]"#,
        "Ay, ".repeat(600)
    );
    let (status, body) = post(at, path, Some(KEY), &chat(&long, ""));
    assert_eq!(status, 400);
    assert_eq!(error(&body)["code"], "context_length_exceeded");
    let (status, body) = post(at, "/v1/completions", Some(KEY), r#"{"prompt": [5000000]}"#);
    assert_eq!(
        (status, error(&body)["param"].as_str()),
        (400, Some("prompt"))
    );

    let (status, body) = get(at, "/nowhere");
    assert_eq!(
        (status, error(&body)["code"].as_str()),
        (404, Some("unknown_url"))
    );
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(exchange(at, request.as_bytes()).0, 405);

    // 10 MB, declared: refused on its headers. 10 MB chunked: refused at the limit.
    let mut stream = TcpStream::connect(at).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Length: 10000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(&vec![b' '; 1 << 16]);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let (status, body) = parse_response(&response);
    assert_eq!(
        (status, error(&body)["code"].as_str()),
        (413, Some("request_too_large"))
    );
    let mut stream = TcpStream::connect(at).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = [
        format!("{:x}\r\n", 1 << 16).into_bytes(),
        vec![b' '; 1 << 16],
        b"\r\n".to_vec(),
    ];
    for _ in 0..160 {
        if stream.write_all(&chunk.concat()).is_err() {
            break;
        }
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    assert_eq!(parse_response(&response).0, 413);

    // Still answering.
    let (status, body) = post(at, path, Some(KEY), &ok);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["object"], "chat.completion");
}

#[test]
fn slow_and_garbage_clients_do_not_keep_others_waiting() {
    let served = serve(&["--parallel", "2"]);
    let at = served.address.as_str();
    // Slow lorises: headers begun and never finished, a body promised and not sent.
    let mut slow: Vec<TcpStream> = (0..16)
        .map(|i| {
            let mut stream = TcpStream::connect(at).unwrap();
            let head = match i % 2 {
                0 => "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_owned(),
                _ => {
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
                        .to_owned()
                }
            };
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    for garbage in [
        &b"\x00\xff\xfe GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"\r\n\r\n\r\n",
    ] {
        let (status, _) = exchange(at, garbage);
        assert!(status == 0 || status == 400, "garbage got {status}");
    }
    let started = Instant::now();
    let (status, body) = post(
        at,
        "/v1/chat/completions",
        None,
        &chat(HELLO, r#", "max_tokens": 8"#),
    );
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // A loris that never finishes its headers is let go after 10 s.
    let loris = &mut slow[0];
    loris
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = loris.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(25));
}

/// Reads a streamed response until `data:` events have come `n` times.
fn read_events(stream: &mut TcpStream, n: usize) -> String {
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while seen.matches("data: ").count() < n {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    seen
}

fn stream_request(at: &str, max_tokens: usize) -> TcpStream {
    let body = format!(
        r#"{{"prompt": "Enter Hamlet.", "max_tokens": {max_tokens}, "temperature": 0.8, "seed": 1, "stream": true}}"#
    );
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(at).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

#[test]
fn a_client_that_leaves_gives_its_session_back_at_once() {
    let served = serve(&["--parallel", "1"]);
    let at = served.address.as_str();
    let mut leaving = stream_request(at, 500);
    read_events(&mut leaving, 2);
    drop(leaving);
    // The only session is free again long before 500 tokens could be written.
    let started = Instant::now();
    let (status, body) = post(
        at,
        "/v1/chat/completions",
        None,
        &chat(HELLO, r#", "max_tokens": 4"#),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let log = served.log();
    assert!(log.contains("POST /v1/completions 200"), "{log}");
    assert!(log.contains("the client left"), "{log}");
}

#[test]
fn sigterm_ends_streams_properly_and_the_server() {
    let mut served = serve(&[]);
    let at = served.address.clone();
    let mut stream = stream_request(&at, 500);
    read_events(&mut stream, 2);
    let pid = served.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains(r#""finish_reason":"length""#), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(served.log().contains("shutting down"));
}

/// The demo model in this process, with `parallel` sessions in a KV pool of `tokens`.
fn in_process(parallel: usize, tokens: usize, queue: usize) -> lfm_edge::server::Running {
    let demo = repo_root().join("models/lfm2-demo-Q8_0.gguf");
    let model = Model::open(demo.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let options = ServerOptions {
        model_id: "demo".into(),
        parallel,
        session: SessionOptions::default(),
        kv_pool_tokens: Some(tokens),
        api_key: None,
        limits: Limits {
            queue,
            ..Limits::default()
        },
    };
    let server = Server::new(model, options).unwrap();
    assert_eq!(
        (server.context(), server.kv_pool_tokens()),
        (tokens, tokens)
    );
    server
        .spawn(TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap()
}

/// A conversation of about 200 tokens, different for each `name`.
fn long_chat(name: &str, rest: &str) -> String {
    let scene = "Enter the ghost, armed, and the watch falls back in fear. ".repeat(14);
    let messages = json!([
        {"role": "system", "content": format!("{name}. {scene}")},
        {"role": "user", "content": "Who's there?"}
    ]);
    chat(&messages.to_string(), rest)
}

fn usage(body: &str) -> (u64, u64) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
    let u = &v["usage"];
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    (u["prompt_tokens"].as_u64().unwrap(), cached)
}

#[test]
fn a_full_cache_evicts_idle_sessions_and_then_answers_503() {
    // Room for one conversation of ~220 tokens, not two.
    let running = in_process(2, 320, 64);
    let at = running.address().to_string();
    let path = "/v1/chat/completions";
    let few = r#", "max_tokens": 4, "temperature": 0"#;
    let (status, body) = post(&at, path, None, &long_chat("Bernardo", few));
    assert_eq!(status, 200, "{body}");
    let (prompt, _) = usage(&body);
    assert!((180..300).contains(&prompt), "{prompt}");
    // Again: the same session, its cache reused.
    let (_, body) = post(&at, path, None, &long_chat("Bernardo", few));
    assert!(usage(&body).1 >= 128, "{body}");
    // Another conversation takes the other session, and the first's blocks.
    let (status, body) = post(&at, path, None, &long_chat("Francisco", few));
    assert_eq!((status, usage(&body).1), (200, 0), "{body}");
    let (_, body) = post(&at, path, None, &long_chat("Bernardo", few));
    assert_eq!(usage(&body).1, 0, "evicted: {body}");

    // A conversation busy holding the blocks: nothing to evict for another.
    let busy = long_chat("Marcellus", r#", "max_tokens": 100, "stream": true"#);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{busy}",
        busy.len()
    );
    let mut stream = TcpStream::connect(&at).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    read_events(&mut stream, 2);
    let request = long_chat("Horatio", few);
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{request}",
        request.len()
    );
    let mut refused = TcpStream::connect(&at).unwrap();
    refused.write_all(raw.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = refused.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    assert_eq!(error(&parse_response(&response).1)["code"], "server_busy");
    drop(stream);
    running.stop().unwrap();
}

#[test]
fn requests_wait_for_a_session_until_the_queue_is_full() {
    let running = in_process(1, 512, 1);
    let at = running.address().to_string();
    let mut first = stream_request(&at, 300);
    read_events(&mut first, 2);
    // One may wait; the next is refused at once.
    let waiting = {
        let at = at.clone();
        std::thread::spawn(move || {
            post(
                &at,
                "/v1/completions",
                None,
                r#"{"prompt": "Enter.", "max_tokens": 2}"#,
            )
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = post(
        &at,
        "/v1/completions",
        None,
        r#"{"prompt": "Exit.", "max_tokens": 2}"#,
    );
    assert_eq!(status, 503, "{body}");
    assert!(error(&body)["message"].as_str().unwrap().contains("busy"));
    drop(first);
    let (status, body) = waiting.join().unwrap();
    assert_eq!(status, 200, "{body}");
    running.stop().unwrap();
}
