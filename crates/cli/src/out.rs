//! Standard output that survives a closed pipe (`thpsim run … --json | head`): Rust ignores
//! SIGPIPE, so a write to a closed stdout is an `EPIPE` error, which `println!` turns into a
//! panic (exit 101). Output goes through [`write_out`] instead: after the first failed write
//! further output is dropped and the command carries on to its normal end, so a host run still
//! restores what it changed (exiting at once would skip that).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout unless it was found closed; any write error closes it for the rest of the
/// run (a broken pipe silently, anything else with one message on stderr).
pub fn write_out(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("thpsim: writing to stdout: {e}");
        }
    }
}

/// `println!` to stdout through [`write_out`].
macro_rules! outln {
    () => {
        $crate::out::write_out(format_args!("\n"))
    };
    ($($t:tt)*) => {
        $crate::out::write_out(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` to stdout through [`write_out`].
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out::write_out(format_args!($($t)*))
    };
}
