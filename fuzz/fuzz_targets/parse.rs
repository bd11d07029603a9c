//! The parser and the diagnostics renderer on arbitrary input; the checks are
//! `thpsim_scenario::fuzzing::parse_input` (built and run by the stable test suite too).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| thpsim_scenario::fuzzing::parse_input(data));
