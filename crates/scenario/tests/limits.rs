//! Issue 9: failures are visible, resources are bounded, nothing panics. Each test states the
//! finding it covers; every one failed (or panicked, or overflowed the stack) before the fix.

use thpsim_kernel::errno::{OpError, Signal};
use thpsim_scenario::backend::{Backend, BackendError, BackendOp, OpOutcome, Setup, Snapshot};
use thpsim_scenario::engine::{self, run, RunResult, Variant, MAX_EXPECT_RECORDS, MAX_OP_RECORDS};
use thpsim_scenario::parse::{MAX_ERRORS, MAX_NESTING};
use thpsim_scenario::sim::SimBackend;

fn parse(src: &str) -> thpsim_scenario::Scenario {
    thpsim_scenario::parse("t.thps", src)
        .unwrap_or_else(|d| panic!("{}", thpsim_scenario::diag::render_all(&d, src)))
}

fn run_model(src: &str) -> Result<RunResult, BackendError> {
    run(&parse(src), &mut SimBackend::checked(), &Variant::default())
}

/// The model backend, recording every op the engine sends it.
#[derive(Default)]
struct Recording {
    inner: SimBackend,
    ops: Vec<BackendOp>,
}

impl Backend for Recording {
    fn name(&self) -> String {
        "recording".into()
    }
    fn setup(&mut self, setup: &Setup) -> Result<(), BackendError> {
        self.inner.setup(setup)
    }
    fn exec(&mut self, op: &BackendOp) -> Result<OpOutcome, BackendError> {
        self.ops.push(op.clone());
        self.inner.exec(op)
    }
    fn snapshot(&mut self, ranges: &[(u64, u64)]) -> Result<Snapshot, BackendError> {
        self.inner.snapshot(ranges)
    }
}

// -------------------------------------------------------------------------------------------
// `as`/`exit` of a process whose fork failed (thpsim run exited 101: index out of bounds).

/// 4 MiB of memory, faulted in at order 0 down to the min watermark (64 pages: an order-0
/// allocation must leave more than that): the fork finds no page for the child's page table
/// and fails with ENOMEM.
const FORK_FAILS: &str = "memory 4M
sysfs enabled=never
mmap buf 4M anon private rw
write buf+0 3828K
fork child
expect errno == ENOMEM
";

#[test]
fn as_a_process_whose_fork_failed_is_a_scenario_error() {
    let e = run_model(&format!("{FORK_FAILS}as child\n")).unwrap_err();
    assert!(!e.is_not_runnable());
    assert_eq!(
        e.message(),
        "t.thps:7:1: error: process `child` does not exist: its `fork` at line 5 failed (ENOMEM)"
    );
}

#[test]
fn exit_of_a_process_whose_fork_failed_is_a_scenario_error() {
    let e = run_model(&format!("{FORK_FAILS}exit child\n")).unwrap_err();
    assert!(e
        .message()
        .starts_with("t.thps:7:1: error: process `child` does not exist"));
}

#[test]
fn a_failed_fork_does_not_shift_later_process_ids() {
    // The second fork succeeds once memory is freed; its process must be the one `as` finds.
    let src = format!(
        "{FORK_FAILS}madvise buf DONTNEED\nfork other\nexpect errno == ok\nas other\ncheckpoint forked\nwrite buf+0\nexpect minflt == 1\n"
    );
    let r = run_model(&src).unwrap();
    assert!(r.failed_expects().next().is_none(), "{:?}", r.expects);
}

#[test]
fn the_model_backend_refuses_unknown_process_ids_instead_of_panicking() {
    let mut be = SimBackend::new();
    let plan = engine::plan(&parse("mmap buf 2M anon private"), &Variant::default()).unwrap();
    be.setup(&plan.setup).unwrap();
    assert!(be.exec(&BackendOp::Switch { proc: 7 }).is_err());
    assert!(be.exec(&BackendOp::Exit { proc: 7 }).is_err());
    assert!(be.exec(&BackendOp::Exit { proc: 0 }).is_err());
    assert!(be
        .exec(&BackendOp::Fork {
            parent: 3,
            child: 4
        })
        .is_err());
}

// -------------------------------------------------------------------------------------------
// A process killed by a signal runs nothing after it (the ops ran before the fix).

const SEGV: &str = "mmap buf 2M anon private rw
mprotect buf+0 4K none
read buf+0
write buf+4K
write buf+8K
";

#[test]
fn an_uncaught_sigsegv_kills_the_process_and_its_later_ops_are_not_run() {
    let scn = parse(SEGV);
    let mut be = Recording::default();
    let r = run(&scn, &mut be, &Variant::default()).unwrap();
    assert_eq!(r.killed.len(), 1);
    let k = &r.killed[0];
    assert_eq!(
        (k.process.as_str(), k.line, k.signal.as_str()),
        ("main", 3, "SIGSEGV")
    );
    assert_eq!(k.ops_not_run, 2);
    // The backend never saw the two writes.
    assert_eq!(
        be.ops
            .iter()
            .filter(|o| matches!(o, BackendOp::Access { .. }))
            .count(),
        1
    );
    let last = r.ops.last().unwrap();
    assert!(
        last.failed
            && last
                .result
                .starts_with("not run: process `main` was killed by SIGSEGV at line 3")
    );
    assert_eq!(r.checkpoints[0].minflt, 0, "no write ran");
}

#[test]
fn a_caught_signal_lets_the_process_go_on() {
    let r = run_model(&format!("catch SIGSEGV\n{SEGV}expect minflt == 2\n")).unwrap();
    assert!(r.killed.is_empty());
    assert!(r.failed_expects().next().is_none(), "{:?}", r.expects);
}

#[test]
fn a_killed_child_runs_nothing_but_the_parent_goes_on_and_can_reap_it() {
    let src = "mmap buf 2M anon private rw
mprotect buf+0 4K none
fork child
as child
read buf+0
write buf+4K
as main
write buf+8K
expect minflt == 1
exit child
";
    let scn = parse(src);
    let mut be = Recording::default();
    let r = run(&scn, &mut be, &Variant::default()).unwrap();
    assert_eq!(r.killed.len(), 1);
    assert_eq!(
        (r.killed[0].process.as_str(), r.killed[0].ops_not_run),
        ("child", 1)
    );
    assert!(r.failed_expects().next().is_none(), "{:?}", r.expects);
    assert!(be
        .ops
        .iter()
        .any(|o| matches!(o, BackendOp::Exit { proc: 1 })));
}

#[test]
fn a_killed_parent_does_not_fork() {
    let src = "mmap buf 2M anon private rw
mprotect buf+0 4K none
read buf+0
fork child
as child
";
    let scn = parse(src);
    let mut be = Recording::default();
    let e = run(&scn, &mut be, &Variant::default()).unwrap_err();
    assert!(
        e.message().starts_with(
            "t.thps:5:1: error: process `child` does not exist: its parent was killed"
        ),
        "{e}"
    );
    assert!(!be.ops.iter().any(|o| matches!(o, BackendOp::Fork { .. })));
}

#[test]
fn an_oom_kill_cannot_be_caught() {
    let src = "memory 4M
catch SIGSEGV SIGBUS
sysfs enabled=never
mmap buf 8M anon private rw
write buf
expect errno == SIGKILL
write buf+0
";
    let r = run_model(src).unwrap();
    assert_eq!(r.killed.len(), 1);
    assert_eq!(
        (r.killed[0].signal.as_str(), r.killed[0].ops_not_run),
        ("SIGKILL", 1)
    );
    assert!(r.failed_expects().next().is_none(), "{:?}", r.expects);
    let d = thpsim_scenario::parse("t.thps", "catch SIGKILL\n").unwrap_err();
    assert_eq!(d[0].message, "SIGKILL cannot be caught");
    let d =
        thpsim_scenario::parse("t.thps", "mmap b 2M anon private\ncatch SIGSEGV\n").unwrap_err();
    assert!(
        d[0].message
            .contains("must come before the first operation"),
        "{d:?}"
    );
}

// -------------------------------------------------------------------------------------------
// `repeat N` runs in memory independent of N (150 B per iteration were kept before).

#[test]
fn repeat_keeps_a_bounded_record() {
    let n = 3 * MAX_OP_RECORDS as u64;
    let src = format!(
        "mmap buf 2M anon private rw\nrepeat {n}\n  read buf+0\n  expect errno == ok\nend\n"
    );
    let r = run(&parse(&src), &mut SimBackend::new(), &Variant::default()).unwrap();
    assert_eq!(r.ops.len(), MAX_OP_RECORDS);
    assert_eq!(r.ops_omitted, n + 1 - MAX_OP_RECORDS as u64);
    assert_eq!(r.expects.len(), MAX_EXPECT_RECORDS);
    assert_eq!(r.expects_omitted.pass, n - MAX_EXPECT_RECORDS as u64);
    assert!(!r.any_failed());
}

#[test]
fn failures_past_the_record_limit_still_count() {
    let n = MAX_EXPECT_RECORDS as u64 + 5;
    let src = format!(
        "mmap buf 2M anon private rw\nrepeat {n}\n  expect errno == ok\nend\nexpect minflt == 7\n"
    );
    let r = run(&parse(&src), &mut SimBackend::new(), &Variant::default()).unwrap();
    assert!(r.failed_expects().next().is_none());
    assert_eq!(r.expects_omitted.fail, 1);
    assert!(r.any_failed());
}

// -------------------------------------------------------------------------------------------
// Nesting depth is bounded (30,000 nested `repeat 1` overflowed the stack).

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 30_000;
    let mut src = String::new();
    for _ in 0..depth {
        src.push_str("repeat 1\n");
    }
    src.push_str("shrink\n");
    for _ in 0..depth {
        src.push_str("end\n");
    }
    let d = thpsim_scenario::parse("t.thps", &src).unwrap_err();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].span.line, d[0].span.col), (MAX_NESTING as u32 + 1, 1));
    assert_eq!(
        d[0].message,
        format!("`repeat` nested deeper than {MAX_NESTING} levels")
    );
    // Unclosed: one error per open block up to the limit, still no overflow.
    let d = thpsim_scenario::parse("t.thps", &"repeat 2\n".repeat(depth)).unwrap_err();
    assert!(d.len() <= MAX_ERRORS + 1);
    // At the limit, it parses and runs.
    let ok = format!(
        "{}shrink\n{}",
        "repeat 1\n".repeat(MAX_NESTING),
        "end\n".repeat(MAX_NESTING)
    );
    run_model(&ok).unwrap();
}

// -------------------------------------------------------------------------------------------
// Errors are capped and collected in linear time (10 MB of random lines: 8 min, 67 MB).

#[test]
fn errors_are_capped_and_rendered_in_linear_time() {
    // Many mappings, then many references to unknown ones: each hint listed every mapping.
    let mut src = String::new();
    for i in 0..20_000 {
        src.push_str(&format!("mmap m{i} 4K anon private\n"));
    }
    for i in 0..200_000 {
        src.push_str(&format!("read zz{i}\nbogus line {i}\n"));
    }
    let t = std::time::Instant::now();
    let d = thpsim_scenario::parse("t.thps", &src).unwrap_err();
    let text = thpsim_scenario::diag::render_all(&d, &src);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(d.len(), MAX_ERRORS + 1);
    assert_eq!(
        d[MAX_ERRORS].message,
        format!(
            "{} more error(s) not shown (only the first {MAX_ERRORS} are reported)",
            400_000 - MAX_ERRORS
        )
    );
    assert!(text.len() < 100_000, "{} bytes of errors", text.len());
    assert!(secs < 20.0, "{secs:.1}s");
}

// -------------------------------------------------------------------------------------------
// The model estimates its memory need (memory 8T + writing 64T at order 0 aborted).

#[test]
fn the_model_refuses_what_does_not_fit_its_memory_budget() {
    let scn = parse("memory 8T\nsysfs enabled=never\nmmap buf 64T anon private rw\nwrite buf\n");
    let mut be = SimBackend::new();
    be.memory_budget = Some(16 << 30);
    let e = run(&scn, &mut be, &Variant::default()).unwrap_err();
    assert!(e.is_not_runnable());
    assert!(
        e.message().starts_with("the model may need 208.6 GiB"),
        "{e}"
    );
    // A sparse touch of a huge mapping fits.
    let scn = parse("memory 8T\nmmap buf 64T anon private rw\nwrite buf+1T 4M\n");
    let mut be = SimBackend::new();
    be.memory_budget = Some(1 << 30);
    run(&scn, &mut be, &Variant::default()).unwrap();
}

#[test]
fn the_touch_bound_counts_every_op_that_faults_in() {
    let scn = parse(
        "memory 1G
mmap a 64M anon private rw populate
mmap b 64M anon private rw
mmap c 64M anon private rw
mmap d 64M anon private rw
madvise b POPULATE_WRITE
mlock c+0 2M
repeat 100
  write d+0 4K
end
fork child
",
    );
    let p = engine::plan(&scn, &Variant::default()).unwrap();
    let pages = (64 + 64 + 2) * 256 + 1;
    assert_eq!(p.touch.pages, pages * 2);
    assert_eq!(p.touch.memory_pages, 1 << 18);
    let _ = OpError::Signal(Signal::Sigkill);
}

// -------------------------------------------------------------------------------------------
// Found by the engine fuzzer: `sleep` with khugepaged.scan_sleep_millisecs=0 never returned
// (each pass was scheduled at the same instant).

#[test]
fn sleep_with_a_zero_scan_interval_terminates() {
    let r = run_model(
        "sysfs enabled=always khugepaged.scan_sleep_millisecs=0
mmap buf 4M anon private rw
write buf+0 1M
sleep 10s
expect khugepaged.full_scans > 0
",
    )
    .unwrap();
    assert!(r.failed_expects().next().is_none(), "{:?}", r.expects);
}
