//! An app's saved session (lfm_session_save / lfm_session_load, and JNI): a save that
//! fails leaves the old file, a load reads only a regular file, and a damaged file (any
//! byte flipped, cut anywhere, an older version) is refused and the session left as it
//! was.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::fixture;
use lfm_edge::{GenerateOptions, Gpu, GpuOptions, KvDtype, Model, Session, SessionOptions};
use lfm_edge_ffi::chat_session::{ChatSession, Stream};

fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let gpu = Gpu::new(&GpuOptions::default()).expect("a wgpu adapter");
            Arc::new(Model::load(&fixture(), gpu).unwrap())
        })
        .clone()
}

/// A session that has had one chat turn of `content`.
fn chatted(content: &str) -> ChatSession {
    let options = SessionOptions {
        kv_dtype: KvDtype::F32,
        batch: 16,
        snapshot_interval: 8,
        max_context: 64,
        ..SessionOptions::default()
    };
    let mut chat = ChatSession::new(Session::new(model(), &options).unwrap());
    let generate = GenerateOptions {
        max_tokens: 4,
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    let stream = Stream {
        cancelled: &|| false,
        on_token: &mut |_, _| true,
    };
    chat.chat("user", content, &generate, stream).unwrap();
    chat
}

/// Every position of a small file, else 2,000 spread by a fixed seed.
fn positions(len: usize) -> Vec<usize> {
    if len < 64 * 1024 {
        return (0..len).collect();
    }
    let mut state = 7u64;
    (0..2000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % len
        })
        .collect()
}

const SAVE_TO: &str = "LFM_EDGE_TEST_SAVE_TO";
const CHILD: &str = "child_saves_under_a_file_size_limit";

/// Not a test on its own: the child process of `a_failed_save_leaves_the_old_file`.
#[test]
fn child_saves_under_a_file_size_limit() {
    let Ok(path) = std::env::var(SAVE_TO) else {
        return;
    };
    let chat = chatted("A longer message, so that the file is longer too");
    println!("saving");
    match chat.save(Path::new(&path)) {
        Ok(()) => println!("saved"),
        Err(e) => println!("save failed: {e}"),
    }
}

#[test]
fn a_failed_save_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.lfm");
    let saved = chatted("Hi");
    saved.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();

    // A write past `ulimit -f` fails with EFBIG while the signal is ignored.
    let script = format!("ulimit -f 2; trap '' XFSZ; exec \"$0\" --exact {CHILD} --nocapture");
    let out = Command::new("sh")
        .args(["-c", &script])
        .arg(std::env::current_exe().unwrap())
        .env(SAVE_TO, &path)
        .env("MESA_SHADER_CACHE_DISABLE", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("save failed"), "{report}");
    assert!(std::fs::read(&path).unwrap() == good, "changed: {report}");
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        left,
        std::slice::from_ref(&path),
        "the temporary file is left"
    );
    let mut restored = chatted("Other");
    restored.load(&path).unwrap();
    assert_eq!(restored.tokens_held(), saved.tokens_held());
}

#[cfg(unix)]
#[test]
fn only_a_regular_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for path in [PathBuf::from("/dev/zero"), fifo, dir.path().to_path_buf()] {
        let shown = path.display().to_string();
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || send.send(chatted("Hi").load(&path).map_err(|e| e.to_string())));
        let err = receive
            .recv_timeout(Duration::from_secs(30))
            .expect("the load hung")
            .expect_err(&shown);
        assert!(
            err.contains("not a regular file") && err.contains(&shown),
            "{err}"
        );
    }
}

#[test]
fn an_older_version_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.lfm");
    chatted("Hi").save(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let err = chatted("Hi").load(&path).unwrap_err().to_string();
    assert!(err.contains("version 1, this library reads 2"), "{err}");
}

#[test]
fn a_damaged_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, damaged) = (dir.path().join("chat.lfm"), dir.path().join("damaged"));
    let saved = chatted("Hi");
    saved.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let mut session = chatted("Something else entirely");
    let held = session.tokens_held();
    let mut refused = |contents: &[u8], what: &str| {
        std::fs::write(&damaged, contents).unwrap();
        assert!(session.load(&damaged).is_err(), "{what}: loaded");
    };
    for i in positions(bytes.len()) {
        let mut flipped = bytes.clone();
        flipped[i] ^= 1 << (i % 8);
        refused(&flipped, &format!("byte {i} flipped"));
    }
    for len in 0..bytes.len() {
        refused(&bytes[..len], &format!("cut at {len}"));
    }
    refused(&[&bytes[..], &[0]].concat(), "a byte added");
    assert_eq!(
        session.tokens_held(),
        held,
        "a refused load changed the session"
    );

    session.load(&path).unwrap();
    assert_eq!(session.tokens_held(), saved.tokens_held());
}
