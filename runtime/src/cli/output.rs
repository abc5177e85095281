//! Standard output for the commands. Every write can fail (a reader that went away, a
//! full disk) and a failure is an error, not a panic: a closed pipe (`| head`) ends
//! the command quietly, as Unix tools do; any other failure is one line and status 1.

use std::io::{ErrorKind, Write};
use std::path::Path;

use lfm_edge::{Error, Result};

/// How errors name standard output.
const STDOUT: &str = "standard output";

/// Writes `text` to standard output now (flushed: streamed text shows as it comes).
pub fn write(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io(STDOUT, e))
}

/// Whether `error` is standard output's reader having gone away.
pub fn is_closed_pipe(error: &Error) -> bool {
    matches!(error, Error::Io { path, source }
        if path == Path::new(STDOUT) && source.kind() == ErrorKind::BrokenPipe)
}

/// `println!` that returns the error instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::output::write("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(&format!("{}\n", format_args!($($arg)*)))
    };
}
