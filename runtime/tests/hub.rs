//! `--model hf:OWNER/REPO[:FILE]` against a stand-in for the Hugging Face hub on
//! 127.0.0.1: the first run downloads (resuming a partial file) and runs, the next runs
//! from the cache with the server gone, and a missing repo, file or server is named. A
//! name that would leave the cache (from the user or a shard index) is refused before
//! it is fetched, and `HF_HUB_OFFLINE` makes no request at all.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::{fixture, reference, FIXTURES};

/// The commit every served repository is at.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A hub holding repositories (`OWNER/REPO` → a folder of files), answering the
/// requests hf-hub makes: the file list (`/api/models/{repo}/revision/main`) and
/// ranged file GETs (`/{repo}/resolve/main/{file}`) with the etag and commit headers.
struct FakeHub {
    url: String,
    stop: Arc<AtomicBool>,
    /// Request lines and their Range headers, in order.
    log: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    fn start(repos: &[(&str, PathBuf)]) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let repos: HashMap<String, PathBuf> = repos
            .iter()
            .map(|(name, dir)| (name.to_string(), dir.clone()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop_flag, request_log) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                serve(stream.unwrap(), &repos, &request_log);
            }
        });
        FakeHub {
            url,
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeHub {
    /// Stops accepting and closes the port, so later requests are refused.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// One request per connection (`Connection: close`, which ureq honours).
fn serve(stream: TcpStream, repos: &HashMap<String, PathBuf>, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut range = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = value.trim().trim_start_matches("bytes=").to_string();
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    log.lock().unwrap().push(format!("{path} range={range}"));
    respond(stream, route(path, &range, repos));
}

struct Response {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn not_found(error_code: &str) -> Response {
    Response {
        status: "404 Not Found",
        headers: vec![("X-Error-Code", error_code.to_string())],
        body: Vec::new(),
    }
}

/// `range` is the Range header without `bytes=`: `START-` or `START-END`.
fn route(path: &str, range: &str, repos: &HashMap<String, PathBuf>) -> Response {
    if let Some(repo) = path
        .strip_prefix("/api/models/")
        .and_then(|p| p.strip_suffix("/revision/main"))
    {
        return match repos.get(repo) {
            Some(dir) => Response {
                status: "200 OK",
                headers: vec![("Content-Type", "application/json".into())],
                body: listing(dir).into_bytes(),
            },
            None => not_found("RepoNotFound"),
        };
    }
    let (dir, file) = match path.trim_start_matches('/').split_once("/resolve/main/") {
        Some((repo, file)) => match repos.get(repo) {
            Some(dir) => (Some(dir), file),
            None => return not_found("RepoNotFound"),
        },
        None => (None, path),
    };
    let in_repo = dir
        .filter(|_| Path::new(file).is_relative())
        .and_then(|dir| std::fs::read(dir.join(file)).ok());
    let Some(bytes) = in_repo.or_else(|| stray(file, repos)) else {
        return not_found("EntryNotFound");
    };
    let (start, end) = range.split_once('-').unwrap_or(("0", ""));
    let start: usize = start.parse().unwrap_or(0);
    let end: usize = end.parse().map_or(bytes.len(), |last: usize| last + 1);
    Response {
        status: "206 Partial Content",
        headers: vec![
            ("ETag", format!("\"{}\"", etag(&bytes))),
            ("X-Repo-Commit", COMMIT.to_string()),
            (
                "Content-Range",
                format!("bytes {start}-{}/{}", end - 1, bytes.len()),
            ),
        ],
        body: bytes[start..end].to_vec(),
    }
}

/// What a hostile hub answers for a name that leaves its repository (an absolute one,
/// or one with `..`, which the URL lost on the way): a file of the same last part.
fn stray(file: &str, repos: &HashMap<String, PathBuf>) -> Option<Vec<u8>> {
    let name = Path::new(file).file_name()?;
    repos
        .values()
        .find_map(|dir| std::fs::read(dir.join(name)).ok())
}

/// The hub's answer to a repository's info request: its commit and its files.
fn listing(dir: &Path) -> String {
    let files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            format!(
                r#"{{"rfilename": "{}"}}"#,
                file_name(&entry.unwrap().path())
            )
        })
        .collect();
    format!(
        r#"{{"sha": "{COMMIT}", "siblings": [{}]}}"#,
        files.join(", ")
    )
}

/// Any stable content hash does: hf-hub names the cached blob after the etag.
fn etag(bytes: &[u8]) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn respond(mut stream: TcpStream, response: Response) {
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // The client may hang up early; it will say so itself.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&response.body));
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// `lfm-edge ARGS` with the hub at `endpoint` and its cache under `hf_home`, online.
fn command(args: &[&str], hf_home: &Path, endpoint: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lfm-edge"));
    command
        .args(args)
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE");
    command
}

fn lfm_edge(args: &[&str], hf_home: &Path, endpoint: &str) -> Output {
    command(args, hf_home, endpoint)
        .output()
        .expect("run lfm-edge")
}

fn stdout(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn expect_failure(out: Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "should fail cleanly: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The greedy ids `generate --print-ids` ends with, for the fixture's reference prompt.
fn greedy_ids(model: &str, hf_home: &Path, endpoint: &str) -> String {
    let prompt = join(&reference(FIXTURES[0]).prompt_ids);
    let args = [
        "generate",
        "--model",
        model,
        "--tokens",
        &prompt,
        "--max-tokens",
        "8",
        "--ignore-eos",
        "--print-ids",
    ];
    let out = stdout(lfm_edge(&args, hf_home, endpoint));
    out.lines().last().unwrap_or_default().to_string()
}

#[test]
fn downloads_once_then_runs_offline() {
    let home = tempfile::tempdir().unwrap();
    let (tiny, sharded) = (fixture(FIXTURES[0]), fixture(FIXTURES[1]));
    let hub = FakeHub::start(&[
        ("test/tiny", tiny.clone()),
        ("test/sharded", sharded.clone()),
        ("test/gguf", tiny.with_file_name("gguf")),
    ]);
    let endpoint = hub.url.clone();

    // Half a download left by an interrupted run, where hf-hub keeps it.
    let weights = std::fs::read(tiny.join("model.safetensors")).unwrap();
    let half = weights.len() / 2;
    let blobs = home.path().join("hub/models--test--tiny/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        blobs.join(format!("{}.part", etag(&weights))),
        &weights[..half],
    )
    .unwrap();

    // A checkpoint generates, a sharded one and a GGUF file tokenize: online, then offline.
    let expected = join(&reference(FIXTURES[0]).greedy_ids[..8]);
    let text = &reference(FIXTURES[0]).tokenizations[0];
    let gguf = "hf:test/gguf:lfm2-tiny-conv-first-Q8_0.gguf";
    let run_all = || {
        assert_eq!(greedy_ids("hf:test/tiny", home.path(), &endpoint), expected);
        for model in ["hf:test/sharded", gguf] {
            let args = ["tokenize", "--model", model, "--text", &text.text];
            let out = stdout(lfm_edge(&args, home.path(), &endpoint));
            assert_eq!(out.trim(), join(&text.ids), "{model}");
        }
    };
    run_all();

    let requests = hub.requests();
    let resumed = format!("/test/tiny/resolve/main/model.safetensors range={half}-");
    assert!(
        requests.contains(&resumed),
        "no resumed download in {requests:#?}"
    );
    for shard in std::fs::read_dir(&sharded).unwrap() {
        let name = file_name(&shard.unwrap().path());
        if name.starts_with("model-") {
            let fetched = format!("/test/sharded/resolve/main/{name} range=0-");
            assert!(
                requests.contains(&fetched),
                "{name} not fetched: {requests:#?}"
            );
        }
    }

    drop(hub);
    run_all();
    let uncached = "hf:test/tiny:LFM2-1.2B-Q4_K_M.gguf";
    expect_failure(
        lfm_edge(
            &["tokenize", "--model", uncached, "--text", "hi"],
            home.path(),
            &endpoint,
        ),
        &[
            uncached,
            "cannot reach",
            &endpoint,
            "does not hold LFM2-1.2B-Q4_K_M.gguf",
        ],
    );
}

#[test]
fn a_missing_repo_or_file_is_named() {
    let home = tempfile::tempdir().unwrap();
    let gguf_only = tempfile::tempdir().unwrap();
    std::fs::write(gguf_only.path().join("demo-Q8_0.gguf"), b"GGUF").unwrap();
    let hub = FakeHub::start(&[
        ("test/tiny", fixture(FIXTURES[0])),
        ("test/gguf", gguf_only.path().to_path_buf()),
    ]);
    let tokenize = |model: &str| {
        lfm_edge(
            &["tokenize", "--model", model, "--text", "hi"],
            home.path(),
            &hub.url,
        )
    };
    expect_failure(
        tokenize("hf:test/missing"),
        &["hf:test/missing", "repository not found", &hub.url],
    );
    expect_failure(
        tokenize("hf:test/tiny:missing.gguf"),
        &["hf:test/tiny:missing.gguf", "missing.gguf not found"],
    );
    expect_failure(
        tokenize("hf:test/gguf"),
        &["hf:test/gguf", "hf:test/gguf:FILE", "demo-Q8_0.gguf"],
    );
}

/// A checkpoint whose shard index names `shard`, with an `x.safetensors` and an
/// `x.gguf` for a hostile hub to answer with.
fn hostile_checkpoint(shard: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture(FIXTURES[0]).join(name), dir.path().join(name)).unwrap();
    }
    let index = serde_json::json!({ "weight_map": { "model.embed_tokens.weight": shard } });
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("x.safetensors"), b"not weights").unwrap();
    std::fs::write(dir.path().join("x.gguf"), b"GGUF").unwrap();
    dir
}

#[test]
fn names_that_leave_the_cache_are_refused_before_they_are_fetched() {
    let outer = tempfile::tempdir().unwrap();
    let home = outer.path().join("home");
    // From HF_HOME/hub/models--OWNER--REPO/snapshots/COMMIT up to `outer`.
    let up = "../../../../..";
    let absolute = outer.path().join("abs/x");
    let (up_shard, abs_shard) = (
        format!("{up}/x.safetensors"),
        format!("{}.safetensors", absolute.display()),
    );
    let (up_repo, abs_repo) = (
        hostile_checkpoint(&up_shard),
        hostile_checkpoint(&abs_shard),
    );
    let hub = FakeHub::start(&[
        ("test/up", up_repo.path().to_path_buf()),
        ("test/abs", abs_repo.path().to_path_buf()),
    ]);
    let tokenize = |model: &str| {
        lfm_edge(
            &["tokenize", "--model", model, "--text", "hi"],
            &home,
            &hub.url,
        )
    };

    let files = [
        ("hf:test/up:../../x.gguf".to_string(), "`..`"),
        (format!("hf:test/up:{up}/x.gguf"), "`..`"),
        ("hf:test/up:/etc/passwd".to_string(), "absolute"),
        (
            format!("hf:test/up:{}.gguf", absolute.display()),
            "absolute",
        ),
    ];
    for (spec, why) in &files {
        expect_failure(tokenize(spec), &[spec, why]);
    }
    assert_eq!(hub.requests(), Vec::<String>::new());

    for (spec, shard, why) in [
        ("hf:test/up", &up_shard, "`..`"),
        ("hf:test/abs", &abs_shard, "absolute"),
    ] {
        expect_failure(tokenize(spec), &[spec, shard, why]);
    }
    let requests = hub.requests();
    assert!(
        requests.iter().any(|r| r.contains("index.json")),
        "{requests:#?}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("/x.")),
        "a stray name was requested: {requests:#?}"
    );

    let outside: Vec<String> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|entry| file_name(&entry.unwrap().path()))
        .collect();
    assert_eq!(outside, ["home"], "written outside HF_HOME");
    assert!(!home.join("hub/models--test--up/x.gguf").exists());
}

#[test]
fn offline_uses_only_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let tiny = fixture(FIXTURES[0]);
    let hub = FakeHub::start(&[
        ("test/tiny", tiny.clone()),
        ("test/gguf", tiny.with_file_name("gguf")),
    ]);
    let text = &reference(FIXTURES[0]).tokenizations[0];
    let tokenize = |model: &str, offline: Option<&str>| {
        let mut command = command(
            &["tokenize", "--model", model, "--text", &text.text],
            home.path(),
            &hub.url,
        );
        if let Some(value) = offline {
            command.env("HF_HUB_OFFLINE", value);
        }
        command.output().expect("run lfm-edge")
    };
    let models = [
        "hf:test/tiny",
        "hf:test/gguf:lfm2-tiny-conv-first-Q8_0.gguf",
    ];

    let cache = home.path().join("hub").display().to_string();
    for model in models {
        expect_failure(
            tokenize(model, Some("1")),
            &[model, "HF_HUB_OFFLINE is set", &cache, "does not hold"],
        );
    }
    assert_eq!(hub.requests(), Vec::<String>::new());

    for model in models {
        let out = stdout(tokenize(model, Some("0")));
        assert_eq!(out.trim(), join(&text.ids), "{model}");
    }
    let fetched = hub.requests().len();
    assert!(fetched > 0);
    for value in ["1", "true", "YES", "on"] {
        for model in models {
            let out = stdout(tokenize(model, Some(value)));
            assert_eq!(out.trim(), join(&text.ids), "{model}");
        }
    }
    assert_eq!(hub.requests().len(), fetched, "offline runs asked the hub");
}
