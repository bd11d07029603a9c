//! A pinned host run (`allow_sysfs`) does not depend on how the host booted: the same scenario
//! gives the same faults, results and page maps with the host's knobs as this image boots them
//! and with `anon_beside_full=1` and `hugepages-16kB/enabled=always` set beforehand (as other
//! images of this project boot), and both equal the model's. Issue: host-kernel-build.

mod common;
use common::*;

use thpsim_host::sysfs::{read_knob, write_knob, KnobLock};
use thpsim_host::{HostBackend, HostOptions};
use thpsim_scenario::engine::{self, RunResult, Variant};
use thpsim_scenario::sim::SimBackend;

/// A scenario that depends on every knob the two boot states differ in: an mTHP size the
/// scenario leaves at its default (16K never), and anon_beside_full left at 0.
const SCENARIO: &str = "\
kernel 6.18
sysfs enabled=madvise hugepages-64kB.enabled=madvise hugepages-2048kB.enabled=never
mmap buf 1M anon private rw align=2M
madvise buf HUGEPAGE
write buf stride=4K
checkpoint written
mmap zero 2M anon private rw align=2M
madvise zero HUGEPAGE
read zero stride=4K
checkpoint read
";

/// What must not depend on the boot state: per-op results and faults, per-checkpoint page maps
/// and smaps (system-wide counters are left to `check`'s noise rules).
fn essence(r: &RunResult) -> Vec<String> {
    let mut v = vec![];
    for o in &r.ops {
        v.push(format!("{} {} {} {}", o.line, o.result, o.minflt, o.majflt));
    }
    for c in &r.checkpoints {
        for m in &c.mappings {
            v.push(format!(
                "{} {} {:?} {:?}",
                c.label, m.name, m.pages, m.smaps
            ));
        }
    }
    v
}

fn run_host(scn: &thpsim_scenario::Scenario) -> RunResult {
    let mut hb = HostBackend::new(HostOptions {
        allow_sysfs: true,
        ..Default::default()
    });
    engine::run(scn, &mut hb, &Variant::default()).expect("host run")
}

#[test]
fn pinned_run_is_independent_of_the_boot_state() {
    if !host_ready() {
        return;
    }
    let _l = lock();
    // Product runs in other processes wait while this test writes knobs behind their back.
    let _k = KnobLock::acquire(true).expect("THP sysfs lock");
    let scn = thpsim_scenario::parse("boot_state.thps", SCENARIO).expect("parses");
    let model = {
        let mut sim = SimBackend::new();
        sim.khugepaged_sentinel = true;
        engine::run(&scn, &mut sim, &Variant::default()).expect("model run")
    };
    let as_booted = run_host(&scn);
    let knobs = ["anon_beside_full", "hugepages-16kB/enabled"];
    let saved: Vec<(&'static str, String)> = knobs
        .iter()
        .map(|k| (*k, read_knob(k).expect("knob")))
        .collect();
    let _restore = KnobGuard::save();
    write_knob("anon_beside_full", "1").expect("anon_beside_full");
    write_knob("hugepages-16kB/enabled", "always").expect("16K");
    let other_boot = run_host(&scn);
    // The run pinned both knobs back to the model's defaults for its duration, then restored
    // the values it found.
    assert_eq!(read_knob("anon_beside_full").unwrap(), "1");
    assert_eq!(read_knob("hugepages-16kB/enabled").unwrap(), "always");
    drop(_restore);
    for (k, v) in &saved {
        assert_eq!(&read_knob(k).unwrap(), v, "{k} restored");
    }
    assert_eq!(essence(&as_booted), essence(&other_boot));
    assert_eq!(essence(&model), essence(&as_booted));
    // And the scenario really is sensitive to the knob: unpinned, anon_beside_full=1 would
    // have declined the first 64K block (see conformance/160).
    assert!(essence(&model)
        .iter()
        .any(|l| l.contains("written buf") && l.contains("thp_pte:o4")));
}
