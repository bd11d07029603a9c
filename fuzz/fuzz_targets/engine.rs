//! The engine on the model: the bytes steer the program generator, the program runs with the
//! invariant checker after every op; the checks are `thpsim_scenario::fuzzing::engine_input`
//! (built and run by the stable test suite too).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| thpsim_scenario::fuzzing::engine_input(data));
