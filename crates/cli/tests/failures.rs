//! Issue 9, through the binary: failures show in text output, exit codes say what happened,
//! long page maps are summarised. Host cases run only where the host backend can (root,
//! Linux); run them under `flock /tmp/thpsim-host.lock`.

mod common;
use common::thpsim;

fn scenario(name: &str, src: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("thpsim-cli-failures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, src).unwrap();
    p
}

/// `thpsim compare FILE --kernel 6.12 --kernel 6.18`.
fn compare_both(f: &std::path::Path) -> (i32, String, String) {
    thpsim(&[
        "compare",
        f.to_str().unwrap(),
        "--kernel",
        "6.12",
        "--kernel",
        "6.18",
    ])
}

const SEGV: &str = "mmap buf 2M anon private rw
mprotect buf+0 4K none
read buf+0
write buf+4K
write buf+8K
";

/// `command` (run or host) prints the kill of SEGV's main process and its failed op.
fn assert_kill_shown(command: &str, file: &str) {
    let f = scenario(file, SEGV);
    let (code, out, err) = thpsim(&[command, f.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("KILLED: process `main` by SIGSEGV at ")
            && out.contains(":3; its 2 later ops were not run"),
        "{out}"
    );
    assert!(
        out.contains("line 3: ") && out.contains("→ SIGSEGV"),
        "{out}"
    );
}

#[test]
fn run_text_shows_a_killed_process_and_its_ops_not_run() {
    assert_kill_shown("run", "segv.thps");
}

#[test]
fn compare_text_shows_a_killed_process() {
    let f = scenario("segv-compare.thps", SEGV);
    let (_, out, _) = compare_both(&f);
    assert!(out.contains("[6.12]:") && out.contains("[6.18]:"), "{out}");
    assert_eq!(
        out.matches("KILLED: process `main` by SIGSEGV").count(),
        2,
        "{out}"
    );
}

#[test]
fn compare_exits_1_when_an_expectation_fails_in_a_variant() {
    // 6.12 splits the huge zero PMD on a write (513 faults); 6.18 allocates a THP (2).
    let f = scenario(
        "hzp.thps",
        "sysfs enabled=madvise use_zero_page=1
mmap buf 2M anon private rw align=2M
madvise buf HUGEPAGE
read buf+0
write buf stride=4K
expect minflt == 2
",
    );
    let (code, out, _) = compare_both(&f);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[6.12] line 6: expect minflt == 2"), "{out}");
    let (code, _, _) = thpsim(&["compare", f.to_str().unwrap(), "--kernel", "6.18"]);
    assert_eq!(code, 0);
}

#[test]
fn as_after_a_failed_fork_is_a_scenario_error_not_a_panic() {
    let f = scenario(
        "fork-enomem.thps",
        "memory 4M
sysfs enabled=never
mmap buf 4M anon private rw
write buf+0 3828K
fork child
as child
",
    );
    let (code, _, err) = thpsim(&["run", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            ":6:1: error: process `child` does not exist: its `fork` at line 5 failed (ENOMEM)"
        ),
        "{err}"
    );
}

#[test]
fn long_page_maps_are_summarised_unless_pages_full() {
    let f = scenario(
        "pages.thps",
        "sysfs enabled=never
mmap buf 64M anon private rw
write buf random=50% seed=3
",
    );
    let (code, out, _) = thpsim(&["run", f.to_str().unwrap()]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.contains("pages:")).unwrap();
    assert!(line.len() < 200, "{line}");
    assert!(
        line.contains(" runs: ") && line.contains("anon 8192") && line.contains("none 8192"),
        "{line}"
    );
    let (_, full, _) = thpsim(&["run", f.to_str().unwrap(), "--pages-full"]);
    let line = full.lines().find(|l| l.contains("pages:")).unwrap();
    assert!(
        line.len() > 10_000 && line.contains("anon×"),
        "{} chars",
        line.len()
    );
    let (_, cmp, _) = compare_both(&f);
    assert!(cmp.lines().all(|l| l.chars().count() < 400), "{cmp}");
    assert!(cmp.contains("--pages-full prints them"), "{cmp}");
    // JSON keeps the full map.
    let (_, json, _) = thpsim(&["run", f.to_str().unwrap(), "--json"]);
    assert!(json.len() > 100_000);
}

#[test]
fn the_model_refuses_a_scenario_that_would_not_fit_in_memory() {
    let f = scenario(
        "huge.thps",
        "memory 8T\nsysfs enabled=never\nmmap buf 64T anon private rw\nwrite buf\n",
    );
    let t = std::time::Instant::now();
    let (code, _, err) = thpsim(&["run", f.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("not runnable: the model may need 208.6 GiB"),
        "{err}"
    );
    assert!(t.elapsed().as_secs() < 5);
}

/// Whether the host backend can run here; prints why not (and fails under CI=true).
fn host_ok() -> bool {
    let (code, _, err) = thpsim(&["host", "/nonexistent.thps"]);
    // A missing file is exit 2 before preflight; preflight needs root.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let ok = cfg!(target_os = "linux") && root && code == 2;
    if !ok {
        eprintln!("skipping host case: needs Linux and root ({err})");
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "host case cannot run under CI"
        );
    }
    ok
}

#[test]
fn host_text_shows_a_killed_process_and_a_refused_mmap() {
    if !host_ok() {
        return;
    }
    let _lock = common::host_lock();
    assert_kill_shown("host", "host-segv.thps");
    // A private writable mapping larger than RAM + swap: the overcommit heuristic refuses it.
    let f = scenario("host-enomem.thps", "mmap buf 60T anon private rw\n");
    let (_, out, err) = thpsim(&["host", f.to_str().unwrap()]);
    if out.is_empty() {
        eprintln!("host could not run the 60T layout: {err}");
        return;
    }
    let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if overcommit.trim() != "1" {
        assert!(
            out.contains("line 1: mmap") && out.contains("→ ENOMEM"),
            "{out}"
        );
    }
}

/// A scenario with `gmem` on a host whose KVM has no guest_memfd is skipped by `check` with
/// the reason (not reported as a disagreement), and `host` refuses it with the "cannot run
/// on this host" exit code; where the host has guest_memfd, the same scenario agrees.
#[test]
fn gmem_scenarios_are_skipped_on_a_host_without_guest_memfd() {
    if !host_ok() {
        return;
    }
    let _lock = common::host_lock();
    let f = scenario(
        "gmem-create.thps",
        "gmem g 2M mmap init_shared\nmmap m 2M g shared\nwrite m+0 4K\ncheckpoint end\n",
    );
    let f = f.to_str().unwrap();
    let (code, out, err) = thpsim(&["check", f]);
    match thpsim_host::guest_memfd::host_support() {
        Ok(()) => assert_eq!(code, 0, "{out}{err}"),
        Err(why) => {
            assert_eq!(code, 0, "{out}{err}");
            assert!(out.contains("1 skipped"), "{out}");
            assert!(out.contains(&why), "{out}");
            let (code, _, err) = thpsim(&["host", f]);
            assert_eq!(code, 3, "{err}");
            assert!(err.contains("KVM_CAP_GUEST_MEMFD"), "{err}");
        }
    }
}

/// A `memcg` scenario: the model reports the memcg OOM kill of a forked child; where limit
/// reclaim would swap, the model refuses the run (exit 3) with the reason; an OOM kill of
/// `main` is refused too.
#[test]
fn memcg_oom_kill_and_the_refusals() {
    let f = scenario(
        "memcg-oom.thps",
        "memcg limit=8M\nsysfs enabled=never\nmmap a 16M anon private rw\nfork c\nas c\nwrite a\nas main\nexpect memcg.oom_kill == 1\ncheckpoint end\n",
    );
    let (code, out, err) = thpsim(&["run", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("KILLED: process `c` by SIGKILL"), "{out}");
    let f = scenario(
        "memcg-swap.thps",
        "swap 64M\nmemcg limit=8M swappiness=60\nsysfs enabled=never\nmmap a 16M anon private rw\nfork c\nas c\nwrite a\n",
    );
    let (code, _, err) = thpsim(&["run", f.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("memcg limit reclaim is not modelled (anonymous pages could be swapped out"),
        "{err}"
    );
    let f = scenario(
        "memcg-main.thps",
        "memcg limit=8M\nsysfs enabled=never\nmmap a 16M anon private rw\nwrite a\n",
    );
    let (code, _, err) = thpsim(&["run", f.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("killed `main`"), "{err}");
}

/// `check` skips a `memcg` scenario without `--allow-memcg`, with the reason, and `host`
/// refuses it (exit 3).
#[test]
fn memcg_scenarios_need_the_opt_in() {
    if !host_ok() {
        return;
    }
    let _lock = common::host_lock();
    let f = scenario(
        "memcg-optin.thps",
        "memcg limit=64M\nmmap a 1M anon private rw\nwrite a\ncheckpoint end\n",
    );
    let f = f.to_str().unwrap();
    let (code, out, err) = thpsim(&["check", "--allow-sysfs", f]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 skipped") && out.contains("--allow-memcg"),
        "{out}"
    );
    let (code, _, err) = thpsim(&["host", "--allow-sysfs", f]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--allow-memcg"), "{err}");
}
