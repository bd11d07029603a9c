//! One exit code (3) for "cannot run on this host" in every command that runs on the host,
//! and the memory estimate's refusal (issue 9). Needs root (to drop to `nobody` and to pass
//! the preflight); elsewhere it prints why it skips, and fails under `CI=true`.

use std::os::unix::process::CommandExt;
use std::process::Command;

fn root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective uid.
    let r = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !r {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true needs root"
        );
        eprintln!("skipping: needs root");
    }
    r
}

fn scenario(name: &str, src: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("thpsim-exit-{}-{name}.thps", std::process::id()));
    std::fs::write(&p, src).unwrap();
    p
}

fn thpsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_thpsim"))
}

#[test]
fn cannot_run_on_this_host_is_exit_3_everywhere() {
    if !root() {
        return;
    }
    // `host` and `check` recover a dead run's journal first: one host test at a time.
    let _lock = thpsim_host::host_tests_lock();
    let f = scenario("small", "mmap a 2M anon private\nwrite a\n");
    for cmd in ["host", "check"] {
        let o = thpsim()
            .args([cmd, f.to_str().unwrap()])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{cmd} as nobody: {err}");
        assert!(err.contains("cannot run on this host"), "{cmd}: {err}");
    }
    // The model needs nothing of the host.
    let o = thpsim()
        .args(["run", f.to_str().unwrap()])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_file(&f).unwrap();
}

#[test]
fn fault_in_beyond_mem_available_is_refused_with_the_numbers() {
    if !root() {
        return;
    }
    // `host` and `check` recover a dead run's journal first: one host test at a time.
    let _lock = thpsim_host::host_tests_lock();
    // 64 TiB written: far beyond any host's memory. Refused before anything runs.
    let f = scenario("huge", "mmap a 64T anon private\nwrite a\n");
    for cmd in ["host", "check"] {
        let o = thpsim().args([cmd, f.to_str().unwrap()]).output().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(
            out.contains("MemAvailable") || err.contains("MemAvailable"),
            "{cmd}: {out}{err}"
        );
        // 64 TiB plus 8 bytes of page table per page.
        assert!(
            out.contains("67239936 MiB") || err.contains("67239936 MiB"),
            "{cmd}: {out}{err}"
        );
        assert!(
            out.contains("--force") || err.contains("--force"),
            "{cmd}: {out}{err}"
        );
        let want = if cmd == "host" { 3 } else { 1 };
        assert_eq!(o.status.code(), Some(want), "{cmd}: {out}{err}");
    }
    std::fs::remove_file(&f).unwrap();
}

/// `run`, `compare` and `knobs` restore a killed host run's journal and say what they
/// restored (issue 9). Runs under the host tests' lock (it writes a knob).
#[test]
fn model_commands_recover_a_dead_runs_journal() {
    if !root() {
        return;
    }
    // The planted journal lives in a private directory (THPSIM_SYSFS_JOURNAL), so no other
    // thpsim process of the test suite (any `run`, `compare` or `host` recovers a dead run's
    // journal) can recover it before this test's `knobs` does.
    let journal = "$THPSIM_SYSFS_JOURNAL";
    if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled").exists()
        || !std::path::Path::new("/run/thpsim").is_dir()
    {
        eprintln!("skipping: no 64K knob or no /run/thpsim");
        return;
    }
    // A dead owner: a reaped child's pid.
    let mut c = Command::new("true").spawn().unwrap();
    let dead = c.id();
    c.wait().unwrap();
    let script = format!(
        r#"set -e
k=/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled
d=$(mktemp -d)
export THPSIM_SYSFS_JOURNAL=$d/sysfs-restore.json
orig=$(sed 's/.*\[\(.*\)\].*/\1/' $k)
# Wait for a live host run of another process (it holds the run lock and owns the journal)
# to end; released before `knobs`, which recovers only under that lock.
if [ -e /run/thpsim/sysfs.lock ]; then exec 9</run/thpsim/sysfs.lock; flock 9; fi
[ -e {journal} ] && {{ echo "journal exists"; exit 1; }}
if [ "$orig" = always ]; then other=never; else other=always; fi
echo $other > $k
umask 077
printf '{{"pid": {dead}, "knobs": [["hugepages-64kB/enabled", "%s"]]}}' "$orig" > {journal}
exec 9<&-
"$0" knobs > /dev/null 2> /tmp/thpsim-recover-err.$$ || true
now=$(sed 's/.*\[\(.*\)\].*/\1/' $k)
echo $orig > $k
rm -f {journal}
rmdir "$d"
echo "orig=$orig now=$now"
cat /tmp/thpsim-recover-err.$$
rm -f /tmp/thpsim-recover-err.$$
"#
    );
    let o = Command::new("flock")
        .args(["/tmp/thpsim-host-tests.lock", "sh", "-c", &script])
        .arg(env!("CARGO_BIN_EXE_thpsim"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines = out.lines();
    let first = lines.next().unwrap();
    let (orig, now) = first
        .strip_prefix("orig=")
        .and_then(|r| r.split_once(" now="))
        .unwrap();
    assert_eq!(orig, now, "{out}");
    assert!(
        out.contains(&format!(
            "restored THP sysfs knobs left changed by dead run pid {dead}"
        )) && out.contains(&format!("hugepages-64kB/enabled={orig}")),
        "{out}"
    );
}
