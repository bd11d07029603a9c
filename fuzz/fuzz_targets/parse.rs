//! The parser and the diagnostics renderer on arbitrary input: never a panic, at most
//! `MAX_ERRORS` + 1 diagnostics, output bounded by the input. A parsed scenario is planned
//! too (layout arithmetic on user sizes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thpsim_scenario::engine::{plan, Variant};
use thpsim_scenario::parse::MAX_ERRORS;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    match thpsim_scenario::parse("fuzz.thps", &src) {
        Ok(scn) => {
            let _ = plan(&scn, &Variant::default());
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            assert!(diags.len() <= MAX_ERRORS + 1, "{} diagnostics", diags.len());
            let text = thpsim_scenario::diag::render_all(&diags, &src);
            // Each block: a message, the (cut) line, carets, a hint.
            assert!(
                text.len() <= 64 * 1024 + (MAX_ERRORS + 1) * 20_000,
                "{} bytes",
                text.len()
            );
        }
    }
});
