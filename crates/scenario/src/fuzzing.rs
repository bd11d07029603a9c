//! The bodies of the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs` are one-line wrappers), so
//! the stable test suite compiles and runs the very code the fuzzers run: a target that no
//! longer builds is a test failure, not a surprise on the next fuzzing day.
//!
//! Each function panics on what the fuzzer must report (a broken invariant, an engine bug,
//! unbounded diagnostics, a program the generator made that does not parse) and returns
//! normally on everything a user's input may legitimately cause.

use crate::engine::{plan, run, Variant};
use crate::parse::MAX_ERRORS;
use crate::progen::{generate, ByteSource, Weights};
use crate::sim::SimBackend;

/// Model memory a fuzzed program may use: programs that ask for more fail with the model's
/// own "needs N bytes" error instead of exhausting the fuzzer's RSS limit.
pub const ENGINE_MEMORY_BUDGET: u64 = 1 << 30;

/// The `parse` target: arbitrary bytes as scenario text. The parser and the diagnostics
/// renderer never panic, give at most `MAX_ERRORS` + 1 diagnostics with output bounded by the
/// input, and a parsed scenario plans without panicking (layout arithmetic on user sizes).
pub fn parse_input(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    match crate::parse("fuzz.thps", &src) {
        Ok(scn) => {
            let _ = plan(&scn, &Variant::default());
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "a failed parse without a diagnostic");
            assert!(diags.len() <= MAX_ERRORS + 1, "{} diagnostics", diags.len());
            let text = crate::diag::render_all(&diags, &src);
            // Each block is a message, the (cut) line, carets and a hint.
            assert!(
                text.len() <= 64 * 1024 + (MAX_ERRORS + 1) * 20_000,
                "{} bytes of diagnostics",
                text.len()
            );
        }
    }
}

/// The `engine` target: the bytes steer the program generator ([`Weights::fuzz`]), the
/// program runs on the model with the invariant checker after every op. Run errors a user's
/// program could hit are fine.
pub fn engine_input(data: &[u8]) {
    run_checked(&generate(&mut ByteSource::new(data), &Weights::fuzz()));
}

/// A generated program, parsed; panics (with the program and the diagnostics) if it does not
/// parse: the generator only makes valid programs.
pub fn parse_generated(src: &str) -> crate::Scenario {
    crate::parse("gen.thps", src).unwrap_or_else(|d| {
        panic!(
            "generated program does not parse:\n{src}\n{}",
            crate::diag::render_all(&d, src)
        )
    })
}

/// Runs a program on the model with invariants checked after every op; panics on a program
/// that does not parse, a broken invariant or an engine bug.
pub fn run_checked(src: &str) {
    let scn = parse_generated(src);
    let mut be = SimBackend::checked();
    be.memory_budget = Some(ENGINE_MEMORY_BUDGET);
    if let Err(e) = run(&scn, &mut be, &Variant::default()) {
        let m = e.message();
        assert!(
            !m.contains("invariant") && !m.contains("engine bug"),
            "{e}\n{src}"
        );
    }
}
