//! The Swift package in ios/ builds and passes its tests (swift test) on Linux, linked
//! to this build's static library. Swift needs a newer glibc than the host may have, so
//! it runs in the Debian trixie root that scripts/swift/root.sh makes; without that root
//! (or without root privileges to chroot) the test says so and passes.
//!
//! The repository and the target folder are bind-mounted into the root at their own
//! paths, read-only, in a mount namespace of the test's own (`unshare --mount`): the
//! mounts exist only for the processes in it and vanish with them, whatever way they end
//! (the test killed included), so deleting the root can never reach the repository.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{gguf_fixture, library_dir, reference, repo_root, GGUF_FIXTURES};

/// Written by scripts/swift/root.sh once the root is complete.
const STAMP: &str = ".lfm-edge-swift-root";

/// A first build of the package and its tests takes a few minutes on two cores.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn swift_root() -> PathBuf {
    match std::env::var_os("LFM_SWIFT_ROOT") {
        Some(root) => PathBuf::from(root),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/lfm-edge/swift-trixie"),
    }
}

/// One line on the terminal, past the test harness's capture.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0")
}

/// Mount points at or under `dir`, as this process sees them.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .filter(|target| *target == dir || target.starts_with(&format!("{dir}/")))
        .collect()
}

/// Kills the run if the test ends before it does (a timeout, a panic).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `swift test` in the root: binds the repository (and the target folder when it is
/// elsewhere) read-only, mounts /proc, chroots, and execs `env -i <env...> <command...>`.
const ENTER: &str = r#"
set -e
root=$1 repo=$2 target=$3
shift 3
bind() {
    mkdir -p "$root$1"
    mount --bind "$1" "$root$1"
    mount -o remount,bind,ro "$root$1"
}
bind "$repo"
case "$target/" in
    "$repo"/*) ;;
    *) bind "$target" ;;
esac
mount -t proc proc "$root/proc"
exec chroot "$root" /usr/bin/env -i "$@"
"#;

#[test]
fn swift_package_tests_pass() {
    let root = swift_root();
    if !root.join(STAMP).is_file() {
        say(&format!(
            "swift test skipped: no Swift root at {} (make it with scripts/swift/root.sh)",
            root.display()
        ));
        return;
    }
    if !is_root() {
        say("swift test skipped: entering the Swift root (chroot, mount) needs root");
        return;
    }
    let root = root.canonicalize().unwrap();
    let repo = repo_root().canonicalize().unwrap();
    let deps = library_dir().canonicalize().unwrap();
    let target = deps.parent().unwrap().parent().unwrap().to_path_buf();
    let archive = deps.join("liblfm_edge_ffi.a");
    assert!(archive.exists(), "{} was not built", archive.display());

    // The static library alone in a folder, so that the linker cannot take the cdylib
    // beside it instead.
    let lib_dir = deps.parent().unwrap().join("swift-lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    let link = lib_dir.join("liblfm_edge_ffi.a");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&archive, &link).unwrap();

    // Swift's build folder lives in the root, kept between runs (one for every checkout:
    // another checkout's run rebuilds the few Swift files). Its test binary is removed
    // first: SwiftPM does not track the static library and would not link it again.
    let scratch = "/var/cache/lfm-edge-swift/build";
    let product = root
        .join(scratch.trim_start_matches('/'))
        .join("debug/LfmEdgePackageTests.xctest");
    if let Err(e) = std::fs::remove_file(&product) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::NotFound,
            "{}: {e}",
            product.display()
        );
    }

    let gguf = gguf_fixture(GGUF_FIXTURES[0]);
    let gguf_reference = gguf.path.with_extension("json");
    let ios = repo.join("ios");
    let script = format!(
        "cd '{}' && exec swift test --disable-swift-testing --scratch-path '{scratch}'",
        ios.display()
    );
    let log_path = target.join("swift-test.log");
    let log = File::create(&log_path).unwrap();
    let started = Instant::now();
    // The run dies with this test: setpriv has the kernel kill unshare when the test's
    // thread ends, and unshare then kills its child, the PID namespace's first process,
    // which takes every process in the namespace with it.
    let child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", "unshare"])
        .args(["--mount", "--pid", "--fork", "--kill-child"])
        .args(["--propagation", "private", "--"])
        .args(["/bin/sh", "-c", ENTER, "sh"])
        .arg(&root)
        .arg(&repo)
        .arg(&target)
        .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("HOME=/root")
        .arg("LANG=C.UTF-8")
        // Mesa's window-system probing complains without it; nothing opens a window.
        .arg("XDG_RUNTIME_DIR=/tmp")
        .arg(format!("LFM_EDGE_LIB_DIR={}", lib_dir.display()))
        // The Q4_0 GGUF, as apps ship; its prompt is the safetensors reference's text.
        .arg(format!(
            "LFM_EDGE_MODEL={}",
            gguf.path.canonicalize().unwrap().display()
        ))
        .arg(format!(
            "LFM_EDGE_REFERENCE={}",
            gguf_reference.canonicalize().unwrap().display()
        ))
        .arg(format!("LFM_EDGE_PROMPT_TEXT={}", reference().prompt_text))
        .args(["/bin/sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run setpriv ({e}); util-linux has it"));
    let mut running = Running(child);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "swift test ran past {TIMEOUT:?}; its output so far is in {}",
            log_path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(running);

    // The mounts were the namespace's own: none is left here.
    assert_eq!(mounts_under(&root), Vec::<String>::new());

    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "swift test failed ({status}); output (also in {}):\n{output}",
        log_path.display()
    );
    say(&format!(
        "swift test passed in {:.0?}: {}",
        started.elapsed(),
        output
            .lines()
            .rev()
            .find(|line| line.contains("Executed"))
            .unwrap_or("")
            .trim()
    ));
}
