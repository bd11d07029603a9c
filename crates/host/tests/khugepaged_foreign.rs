//! Other processes' mms on khugepaged's list. A process that faulted memory while PMD-sized
//! THP was `always` system-wide stays on the list until it exits (mm/khugepaged.c 6.18,
//! `collect_mm_slot` frees only exited mms), and every pass visits it, taking
//! `pages_to_scan` budget before the scenario's mm. The host backend measures such mms
//! (`khugepaged::foreign_mms`) and the model mirrors them; this test makes one (a python3
//! child that writes 8 MiB while `enabled=always`) and checks that a scenario whose budget
//! depends on it gives the host's collapses and full scans in the model — and would not
//! without the mirror.

mod common;
use common::*;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thpsim_host::sysfs::{KnobLock, Session};
use thpsim_host::{HostBackend, HostOptions};
use thpsim_scenario::engine::{self, RunResult, Variant};
use thpsim_scenario::sim::SimBackend;

/// Restores `enabled` (a journaled session, so a killed test leaves it for recovery) and
/// ends the child on drop (also when an assertion fails).
struct Foreign {
    child: Child,
    knobs: Session,
}

impl Foreign {
    fn restore(&mut self) {
        let errs = self.knobs.restore();
        assert!(errs.is_empty(), "restore enabled: {errs:?}");
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        self.restore();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn anon_huge_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A python3 process whose huge faults under `enabled=always` registered its mm; it waits
/// on its stdin.
fn start_foreign() -> Foreign {
    let mut knobs = Session::new();
    knobs.set("enabled", "always").expect("enabled=always");
    let child = Command::new("python3")
        .args([
            "-c",
            "import sys\nx = bytearray(8 << 20)\nx[::4096] = b'x' * 2048\nsys.stdout.write('ok\\n')\nsys.stdout.flush()\nsys.stdin.read()\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("python3");
    let mut f = Foreign { child, knobs };
    let pid = f.child.id();
    let t0 = Instant::now();
    while anon_huge_kb(pid) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the python3 child got no PMD THP under enabled=always"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    f.restore();
    f
}

fn host_run(scn: &thpsim_scenario::Scenario) -> (RunResult, Vec<u64>) {
    let mut hb = HostBackend::new(HostOptions {
        allow_sysfs: true,
        ..Default::default()
    });
    let r = engine::run(scn, &mut hb, &Variant::default()).expect("host run");
    (r, hb.khugepaged_foreign().to_vec())
}

fn model_run(scn: &thpsim_scenario::Scenario, foreign: &[u64]) -> RunResult {
    let mut sim = SimBackend::checked();
    sim.khugepaged_sentinel = true;
    sim.khugepaged_foreign = foreign.to_vec();
    engine::run(scn, &mut sim, &Variant::default()).expect("model run")
}

/// Per checkpoint: khugepaged's counters and the buffer's page map.
fn khugepaged_view(r: &RunResult) -> Vec<String> {
    r.checkpoints
        .iter()
        .map(|c| {
            let k = |n: &str| c.counters.get(n).copied().unwrap_or(i64::MIN);
            format!(
                "{}: pages_collapsed {} full_scans {} pages {:?}",
                c.label,
                k("khugepaged.pages_collapsed"),
                k("khugepaged.full_scans"),
                c.mappings.iter().map(|m| &m.pages).collect::<Vec<_>>()
            )
        })
        .collect()
}

#[test]
fn other_processes_mms_on_khugepaged_list_are_mirrored() {
    if !host_ready() {
        return;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipping: no python3 to make a foreign mm");
        return;
    }
    let _l = lock();
    // Product runs in other processes wait while this test changes `enabled`.
    let _k = KnobLock::acquire(true).expect("THP sysfs lock");
    let mut foreign = start_foreign();
    let probe = thpsim_scenario::parse(
        "probe.thps",
        "kernel 6.18\nsysfs enabled=madvise\nmmap a 2M anon private\n",
    )
    .expect("parses");
    let (_, costs) = host_run(&probe);
    assert!(
        !costs.is_empty(),
        "the python3 child's mm is not ahead of the sentinel on khugepaged's list"
    );
    let cf: u64 = costs.iter().sum();
    // The budget runs out right after the first 2 MiB range on the host (cf for the foreign
    // mms, 1 for the sentinel, 1 for the worker's mm, 512 for the range); without the
    // foreign mms the model would have budget left for the second range in the same pass.
    let text = format!(
        "kernel 6.18
sysfs enabled=madvise khugepaged.max_ptes_none=511 khugepaged.pages_to_scan={}
mmap buf 4M anon private rw align=2M
write buf stride=64K
madvise buf HUGEPAGE
khugepaged scan
checkpoint one
khugepaged scan
checkpoint two
khugepaged scan
checkpoint three
",
        cf + 514
    );
    let scn = thpsim_scenario::parse("foreign.thps", &text).expect("parses");
    let (host, costs_then) = host_run(&scn);
    assert_eq!(costs_then, costs, "the foreign mms changed between runs");
    let mirrored = model_run(&scn, &costs);
    let unmirrored = model_run(&scn, &[]);
    assert_eq!(khugepaged_view(&mirrored), khugepaged_view(&host));
    assert_eq!(
        mirrored.checkpoints[0]
            .counters
            .get("khugepaged.pages_collapsed"),
        Some(&1)
    );
    assert_eq!(
        unmirrored.checkpoints[0]
            .counters
            .get("khugepaged.pages_collapsed"),
        Some(&2),
        "without the foreign mms the first pass collapses both ranges"
    );
    let _ = foreign.child.stdin.take().map(|mut s| s.write_all(b""));
}
