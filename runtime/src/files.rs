//! Files written and read back whole (saved sessions): replaced atomically, so a full
//! disk or a crash leaves the old file or the new one and never a part of one; read
//! only when regular and never past what their header says; checked by a checksum.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// FNV-1a, 64-bit: stable across platforms and releases, unlike `std`'s hasher, and it
/// tells apart any two inputs that differ in one byte.
pub struct Fnv64(u64);

impl Fnv64 {
    pub fn new() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64::new()
    }
}

/// The FNV-1a checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    h.bytes(bytes);
    h.finish()
}

/// Replaces `path` with `bytes`: written to a new file beside it, flushed to the disk,
/// then renamed over it. On failure the new file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let (temp, mut file) = create_beside(path)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&temp, path)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::io(path, e));
    }
    sync_parent(path);
    Ok(())
}

/// A new file in `path`'s folder, named after it, this process and a counter, so that
/// saves running at once (threads or processes) never share one.
fn create_beside(path: &Path) -> Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "not a file name");
        Error::io(path, e)
    })?;
    loop {
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        temp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let temp = path.with_file_name(temp_name);
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            // Left by a process that had this id and crashed mid-save.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&temp, e)),
        }
    }
}

/// Makes the rename itself durable where a folder can be opened and synced (not on
/// Windows); the file is in place either way, so a failure here is not reported.
fn sync_parent(path: &Path) {
    if cfg!(unix) {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Ok(dir) = File::open(parent.unwrap_or(Path::new("."))) {
            let _ = dir.sync_all();
        }
    }
}

/// `path` opened to read, and its length, if it is a regular file: a FIFO would block
/// and a device (`/dev/zero`) never end.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let not_regular = || {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        Error::io(path, e)
    };
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !metadata.is_file() {
        return Err(not_regular());
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // Again on what was opened: the path may have changed in between.
    let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
    if !metadata.is_file() {
        return Err(not_regular());
    }
    Ok((file, metadata.len()))
}

/// Appends the next `len` bytes of `file` to `bytes`, reading no further: an error if
/// the file ends before (it shrank since its length was read).
pub fn read_exactly(file: &mut File, path: &Path, len: u64, bytes: &mut Vec<u8>) -> Result<()> {
    let fail = |kind, message: String| Error::io(path, io::Error::new(kind, message));
    let wanted = usize::try_from(len)
        .map_err(|_| fail(io::ErrorKind::OutOfMemory, format!("{len} bytes to read")))?;
    bytes.reserve_exact(wanted);
    let start = bytes.len();
    file.take(len)
        .read_to_end(bytes)
        .map_err(|e| Error::io(path, e))?;
    let got = bytes.len() - start;
    if got < wanted {
        return Err(fail(
            io::ErrorKind::UnexpectedEof,
            format!("ended after {got} of the {len} bytes expected"),
        ));
    }
    Ok(())
}
