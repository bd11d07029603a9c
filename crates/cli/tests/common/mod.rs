//! Helpers the binary's integration tests share.

use std::process::Command;

/// Runs the `thpsim` binary: exit code, stdout, stderr.
pub fn thpsim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_thpsim"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The host tests' lock (`/tmp/thpsim-host-tests.lock`, as crates/host/tests/common takes
/// it): tests that use the real kernel never overlap. `None` when a parent test holds it.
#[allow(dead_code)]
pub fn host_lock() -> Option<std::fs::File> {
    if std::env::var("THPSIM_TEST_LOCK_HELD").is_ok() {
        return None;
    }
    Some(thpsim_host::host_tests_lock())
}

/// True if the host backend can run here; otherwise says why and returns false, except
/// under `CI=true`, where it fails the test.
#[allow(dead_code)]
pub fn host_ready() -> bool {
    match thpsim_host::preflight() {
        Ok(()) => true,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and the host backend cannot run: {e}"
            );
            eprintln!("skipping host test: {e}");
            false
        }
    }
}
