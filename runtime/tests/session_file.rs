//! A saved session on disk: a save that fails (a full disk, a crash) leaves the old
//! file whole, a load reads only a regular file and no more than its header says, and
//! a damaged state (any byte flipped, cut anywhere, ids outside the vocabulary, an older
//! format) is refused, never loaded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{load, tokens, FIXTURES};
use lfm_edge::{KvDtype, Session, SessionOptions};

fn options() -> SessionOptions {
    SessionOptions {
        kv_dtype: KvDtype::F32,
        batch: 16,
        snapshot_interval: 8,
        max_context: 64,
        ..SessionOptions::default()
    }
}

/// A session of the smallest fixture holding `n` tokens.
fn session_with(n: usize, seed: u64) -> Session {
    let mut session = Session::new(load(FIXTURES[0]), &options()).unwrap();
    session.feed(&tokens(n, seed)).unwrap();
    session
}

/// FNV-1a, 64-bit, as the format documents its checksum: written here independently.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every position of a small file, else 2,000 spread by a fixed seed.
/// Writes the checksum that matches the edited bytes, so that what is checked past it
/// is what refuses them.
fn reseal(bytes: &mut [u8]) {
    let body = bytes.len() - 8;
    let sum = fnv1a(&bytes[..body]);
    bytes[body..].copy_from_slice(&sum.to_le_bytes());
}

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

/// `bytes` with one bit of byte `i` flipped (a different bit for each position).
fn flipped(bytes: &[u8], i: usize) -> Vec<u8> {
    let mut damaged = bytes.to_vec();
    damaged[i] ^= 1 << (i % 8);
    damaged
}

/// Runs `load` on a thread and fails the test if it takes more than half a minute: a
/// load that blocks (on a FIFO) must not hang the test binary.
fn within_a_while<T: Send + 'static>(load: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(load()));
    receive
        .recv_timeout(Duration::from_secs(30))
        .expect("the load hung")
}

const SAVE_TO: &str = "LFM_EDGE_TEST_SAVE_TO";
const CHILD: &str = "child_saves_under_a_file_size_limit";

/// Not a test on its own: the child process of `a_failed_save_leaves_the_old_file`,
/// saving a longer session under a file size limit.
#[test]
fn child_saves_under_a_file_size_limit() {
    let Ok(path) = std::env::var(SAVE_TO) else {
        return;
    };
    let session = session_with(40, 2);
    println!("saving");
    match session.save_file(Path::new(&path)) {
        Ok(()) => println!("saved"),
        Err(e) => println!("save failed: {e}"),
    }
}

#[test]
fn a_failed_save_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.lfmsession");
    let saved = session_with(10, 1);
    saved.save_file(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let listing = || -> Vec<PathBuf> {
        let entries = std::fs::read_dir(dir.path()).unwrap();
        entries.map(|e| e.unwrap().path()).collect()
    };

    // `ulimit -f 2` allows 1 or 2 KiB (by shell); the write fails with EFBIG when the
    // signal is ignored, and kills the process mid-write when it is not.
    for (trap, dies) in [("trap '' XFSZ;", false), ("", true)] {
        let script = format!("ulimit -f 2; {trap} exec \"$0\" --exact {CHILD} --nocapture");
        let out = Command::new("sh")
            .args(["-c", &script])
            .arg(std::env::current_exe().unwrap())
            .env(SAVE_TO, &path)
            .env("MESA_SHADER_CACHE_DISABLE", "true")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("saving"), "{report}");
        if dies {
            assert!(!out.status.success(), "{report}");
        } else {
            assert!(out.status.success(), "{report}");
            assert!(stdout.contains("save failed"), "{report}");
            assert_eq!(
                listing(),
                std::slice::from_ref(&path),
                "the temporary file is left"
            );
        }
        assert!(std::fs::read(&path).unwrap() == good, "changed: {report}");
        let mut restored = Session::new(load(FIXTURES[0]), &options()).unwrap();
        restored.restore_file(&path).unwrap();
        assert_eq!(restored.tokens(), saved.tokens());
    }
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
        let err = within_a_while(move || {
            let mut session = Session::new(load(FIXTURES[0]), &options()).unwrap();
            session.restore_file(&path).map_err(|e| e.to_string())
        })
        .expect_err(&shown);
        assert!(err.contains("not a regular file"), "{shown}: {err}");
        assert!(err.contains(&shown), "{err}");
    }
}

#[test]
fn a_header_claiming_more_than_the_file_holds_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.lfmsession");
    let mut bytes = session_with(5, 3).save_state().unwrap();
    // The length field follows the magic and the version.
    bytes[12..20].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let mut session = Session::new(load(FIXTURES[0]), &options()).unwrap();
    let err = session.restore_file(&path).unwrap_err().to_string();
    assert!(err.contains(&(1u64 << 40).to_string()), "{err}");
}

#[test]
fn token_ids_outside_the_vocabulary_are_refused() {
    let ids = tokens(9, 4);
    let mut bytes = session_with(9, 4).save_state().unwrap();
    let held: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
    let at = bytes
        .windows(held.len())
        .position(|w| w == held)
        .expect("the tokens, stored as they are");
    let vocab = load(FIXTURES[0]).config.vocab_size as u32;
    bytes[at + 8..at + 12].copy_from_slice(&(vocab + 5).to_le_bytes());
    // A checksum that matches: the ids themselves must be checked.
    reseal(&mut bytes);
    let mut session = Session::new(load(FIXTURES[0]), &options()).unwrap();
    let err = session.restore_state(&bytes).unwrap_err().to_string();
    assert!(
        err.contains(&format!("token id {}", vocab + 5)) && err.contains(&vocab.to_string()),
        "{err}"
    );
}

#[test]
fn another_format_version_is_named() {
    let saved = session_with(5, 5).save_state().unwrap();
    let mut session = Session::new(load(FIXTURES[0]), &options()).unwrap();
    for old in [1u32, 99] {
        let mut bytes = saved.clone();
        bytes[8..12].copy_from_slice(&old.to_le_bytes());
        let err = session.restore_state(&bytes).unwrap_err().to_string();
        assert!(
            err.contains(&format!("version {old}")) && err.contains("reads version 2"),
            "{err}"
        );
    }
}

#[test]
fn a_damaged_state_is_refused() {
    let saved = session_with(10, 6);
    let bytes = saved.save_state().unwrap();
    let before = tokens(4, 7);
    let mut session = session_with(before.len(), 7);
    let refused = |session: &mut Session, damaged: &[u8], what: &str| {
        if session.restore_state(damaged).is_ok() {
            panic!("{what}: loaded");
        }
    };
    for i in positions(bytes.len()) {
        refused(
            &mut session,
            &flipped(&bytes, i),
            &format!("byte {i} flipped"),
        );
    }
    for len in 0..bytes.len() {
        refused(&mut session, &bytes[..len], &format!("cut at {len}"));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    refused(&mut session, &longer, "a byte added");
    assert_eq!(
        session.tokens(),
        before,
        "a refused load changed the session"
    );

    // Through a file too, for a sample.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.lfmsession");
    for i in positions(bytes.len()).into_iter().step_by(61) {
        std::fs::write(&path, flipped(&bytes, i)).unwrap();
        assert!(session.restore_file(&path).is_err(), "byte {i} flipped");
        std::fs::write(&path, &bytes[..i]).unwrap();
        assert!(session.restore_file(&path).is_err(), "cut at {i}");
    }
    assert_eq!(session.tokens(), before);

    std::fs::write(&path, &bytes).unwrap();
    session.restore_file(&path).unwrap();
    assert_eq!(session.tokens(), saved.tokens());
}

#[test]
fn a_rewind_floor_past_the_tokens_is_named_as_such() {
    let mut bytes = session_with(6, 7).save_state().unwrap();
    // Magic 8, version 4, length 8, fingerprint 8, kv dtype 4, interval 4: then
    // position and floor.
    bytes[40..44].copy_from_slice(&7u32.to_le_bytes());
    reseal(&mut bytes);
    let mut session = Session::new(load(FIXTURES[0]), &options()).unwrap();
    let err = session.restore_state(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("rewind floor 7 is past the 6 tokens it holds"),
        "{err}"
    );
}
