//! `thpsim import --pid PID [--out FILE]`: the command around `thpsim_host::import`, which
//! reads the live process and writes the scenario (docs/import.md).

use thpsim_host::import::{read_live, scenario};

/// `thpsim import --pid PID [--out FILE]`.
pub fn main(pid: i32, out: Option<&std::path::Path>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let live = match read_live(pid) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("thpsim import: {e}");
            return ExitCode::from(crate::EXIT_CANNOT_RUN);
        }
    };
    let text = scenario(&live);
    match out {
        None => out!("{text}"),
        Some(p) => {
            if let Err(e) = std::fs::write(p, &text) {
                eprintln!("thpsim import: cannot write {}: {e}", p.display());
                return ExitCode::from(1);
            }
            let n = live
                .vmas
                .iter()
                .filter(|v| v.skip_reason().is_none())
                .count();
            eprintln!(
                "thpsim import: {} anonymous private VMAs of pid {pid} ({}) written to {}",
                n,
                live.comm,
                p.display()
            );
        }
    }
    ExitCode::SUCCESS
}
