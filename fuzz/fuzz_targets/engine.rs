//! The engine on the model: the fuzzer's bytes steer the program generator
//! (`thpsim_scenario::progen`), the program runs with the invariant checker after every op.
//! A broken invariant or a panic is a crash; run errors a user's program could hit are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thpsim_scenario::engine::{run, Variant};
use thpsim_scenario::progen::{generate, ByteSource, Weights};
use thpsim_scenario::sim::SimBackend;

fuzz_target!(|data: &[u8]| {
    let src = generate(&mut ByteSource::new(data), &Weights::model());
    let scn = match thpsim_scenario::parse("fuzz.thps", &src) {
        Ok(s) => s,
        Err(d) => panic!(
            "generated program does not parse:\n{src}\n{}",
            thpsim_scenario::diag::render_all(&d, &src)
        ),
    };
    let mut be = SimBackend::checked();
    be.memory_budget = Some(1 << 30);
    if let Err(e) = run(&scn, &mut be, &Variant::default()) {
        assert!(
            !e.message.contains("invariant") && !e.message.contains("engine bug"),
            "{e}\n{src}"
        );
    }
});
