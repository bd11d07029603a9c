//! Issue 13, through the binary: `--set` takes every knob, switch and profile (and refuses
//! unknown ones with a hint), `compare --format md|json` give pasteable and typed output,
//! `sweep --shard` outputs merge into the unsharded file, completions and the man page come
//! from the command definitions. Model only: no host needed.

use std::path::PathBuf;
mod common;
use common::thpsim;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("thpsim-cli-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scenario() -> PathBuf {
    let p = dir().join("hzp.thps");
    std::fs::write(
        &p,
        "kernel 6.18\nmemory 64M\nmmap buf 2M anon private rw align=2M\nmadvise buf HUGEPAGE\nread buf\nwrite buf\nexpect minflt == 2 when hzp_wp_fault=thp\n",
    )
    .unwrap();
    p
}

#[test]
fn set_takes_sysfs_knobs_switches_and_profiles() {
    let f = scenario();
    let f = f.to_str().unwrap();
    let json = |args: &[&str]| {
        let mut a = vec!["run", f, "--json"];
        a.extend_from_slice(args);
        let (code, out, err) = thpsim(&a);
        assert!(code == 0 || code == 1, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let minflt = |v: &serde_json::Value| v["checkpoints"][0]["minflt"].as_u64().unwrap();
    // Default 6.18: huge zero page, then a PMD THP on the write: 2 faults.
    assert_eq!(minflt(&json(&[])), 2);
    // enabled=never (a sysfs knob): 512 read faults of the zero page, 512 COW faults.
    let never = json(&["--set", "enabled=never"]);
    assert_eq!(minflt(&never), 1024);
    assert_eq!(never["sysfs"]["enabled"], "never");
    // The file form names the same knob; a switch and a profile in one item.
    let v = json(&["--set", "transparent_hugepage/enabled=never"]);
    assert_eq!(minflt(&v), 1024);
    let v = json(&["--set", "kernel=6.12,use_zero_page=1"]);
    assert_eq!(v["profile"], "6.12");
    assert_eq!(v["switches"]["hzp_wp_fault"], "split");
    assert_eq!(minflt(&v), 513);
    // Unknown keys and bad values: exit 2 with a hint.
    let (code, _, err) = thpsim(&["run", f, "--set", "khugepaged.max_pte_none=0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("did you mean `khugepaged.max_ptes_none`?"),
        "{err}"
    );
    let (code, _, err) = thpsim(&["compare", f, "--set", "hugepages-64kB.enabled=sometimes"]);
    assert_eq!(code, 2);
    assert!(err.contains("always|inherit|madvise|never"), "{err}");
    // check refuses switches (the host kernel cannot change them) before touching the host.
    let (code, _, err) = thpsim(&["check", f, "--set", "hzp_wp_fault=split"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("takes sysfs knobs only"), "{err}");
}

#[test]
fn compare_gives_markdown_and_typed_json_with_verdicts() {
    let f = scenario();
    let f = f.to_str().unwrap();
    let (code, md, err) = thpsim(&[
        "compare", f, "--kernel", "6.12", "--kernel", "6.18", "--format", "md",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        md.contains("| checkpoint | group | observable | `6.12` | `6.18` |"),
        "{md}"
    );
    assert!(
        md.contains("| end | faults | minflt | **513** | **2** |"),
        "{md}"
    );
    assert!(md.contains("- `6.12`: baseline; expectations hold"), "{md}");
    assert!(
        md.contains("- `6.18`: ") && md.contains("minflt 513 → 2"),
        "{md}"
    );
    let (_, js, _) = thpsim(&[
        "compare", f, "--kernel", "6.12", "--kernel", "6.18", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let row = |name: &str| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["observable"] == name)
            .cloned()
            .unwrap()
    };
    let split = row("vmstat.thp_split_pmd");
    assert_eq!(split["values"], serde_json::json!([1, 0]));
    assert_eq!(split["group"], "thp");
    assert_eq!(
        row("smaps(buf).AnonHugePages")["values"],
        serde_json::json!([0, 2048])
    );
    assert_eq!(
        row("pages(buf).thp_pmd")["values"],
        serde_json::json!([0, 512])
    );
    assert!(row("pages(buf)")["values"][1].is_string());
    // Differences come first.
    let differs: Vec<bool> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["differs"].as_bool().unwrap())
        .collect();
    assert!(differs.windows(2).all(|w| w[0] >= w[1]));
    assert!(v["verdicts"][1]["differences"].as_u64().unwrap() > 0);
}

#[test]
fn sweep_shards_merge_into_the_unsharded_csv_and_parquet() {
    let f = scenario();
    let f = f.to_str().unwrap();
    let d = dir();
    let p = |n: &str| d.join(n).to_str().unwrap().to_string();
    let grid = [
        "--kernel",
        "6.12",
        "--kernel",
        "6.18",
        "--grid",
        "use_zero_page=0,1",
        "--grid",
        "khugepaged.max_ptes_none=0..511:170",
        "--quiet",
    ];
    let run = |extra: &[&str]| {
        let mut a = vec!["sweep", f];
        a.extend_from_slice(&grid);
        a.extend_from_slice(extra);
        let (code, _, err) = thpsim(&a);
        assert_eq!(code, 0, "{err}");
    };
    let (full_csv, full_pq) = (p("full.csv"), p("full.parquet"));
    run(&["--out", &full_csv, "--out", &full_pq]);
    let shards: Vec<String> = (0..3).map(|i| p(&format!("shard{i}.csv"))).collect();
    for (i, s) in shards.iter().enumerate() {
        run(&["--shard", &format!("{i}/3"), "--out", s]);
    }
    let (m_csv, m_pq) = (p("merged.csv"), p("merged.parquet"));
    let (code, _, err) = thpsim(&[
        "sweep", "merge", &shards[2], &shards[0], &shards[1], "--out", &m_csv, "--out", &m_pq,
    ]);
    assert_eq!(code, 0, "{err}");
    let full = std::fs::read_to_string(&full_csv).unwrap();
    assert_eq!(std::fs::read_to_string(&m_csv).unwrap(), full);
    assert_eq!(
        std::fs::read(&m_pq).unwrap(),
        std::fs::read(&full_pq).unwrap()
    );
    // 2 kernels × 2 × 4 values = 16 variants; Parquet's magic at both ends.
    assert!(full
        .lines()
        .nth(1)
        .unwrap()
        .contains(",0,16,kernel=6.12 use_zero_page=0 khugepaged.max_ptes_none=0,"));
    let pq = std::fs::read(&full_pq).unwrap();
    assert!(pq.starts_with(b"PAR1") && pq.ends_with(b"PAR1"));
    // A missing shard is an error.
    let (code, _, err) = thpsim(&["sweep", "merge", &shards[0], "--out", &m_csv]);
    assert_eq!(code, 1);
    assert!(err.contains("variants are missing"), "{err}");
}

#[test]
fn completions_and_man_page_come_from_the_commands() {
    let (code, bash, _) = thpsim(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(
        bash.contains("sweep") && bash.contains("--grid"),
        "bash completion"
    );
    let (_, fish, _) = thpsim(&["completions", "fish"]);
    assert!(fish.contains("complete -c thpsim"));
    let (code, man, _) = thpsim(&["man"]);
    assert_eq!(code, 0);
    assert!(man.contains(".TH thpsim 1") && man.contains("sweep"));
}

#[test]
fn compare_output_does_not_depend_on_the_thread_count() {
    // Variants run in parallel; the report must be the same on one thread and on many.
    let p = dir().join("threads.thps");
    std::fs::write(
        &p,
        "memory 256M\nmmap buf 8M anon private rw align=2M\nmadvise buf HUGEPAGE\nread buf stride=2M\ncheckpoint read\nwrite buf random=50% seed=3\nfork child\nwrite buf+2M 2M\ncheckpoint written\n",
    )
    .unwrap();
    let run = |threads: &str, json: bool| {
        let mut args = vec!["compare".to_string(), p.to_str().unwrap().to_string()];
        for k in ["6.12", "6.18", "6.12"] {
            args.extend(["--kernel".to_string(), k.to_string()]);
        }
        args.extend(["--set".to_string(), "use_zero_page=0".to_string()]);
        if json {
            args.push("--json".into());
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_thpsim"))
            .args(&args)
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for json in [false, true] {
        let one = run("1", json);
        assert!(one.contains("6.12") && one.contains("6.18"), "{one}");
        assert_eq!(one, run("4", json));
        assert_eq!(one, run("3", json));
    }
}

/// `thpsim run … --json | head -c 1`: stdout closed after the first byte. That was a panic
/// (exit 101, "failed printing to stdout"); now the rest is dropped and the command ends as
/// it would have.
#[test]
fn closed_stdout_is_no_panic() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // More output than a pipe holds (64 KiB), so a write meets the closed pipe.
    let big = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/workloads/cloud-hypervisor-restore.thps"
    );
    for args in [
        vec!["run", big, "--json"],
        vec![
            "compare", big, "--kernel", "6.12", "--kernel", "6.18", "--format", "json",
        ],
    ] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_thpsim"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 1];
        c.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is closed here (dropped): later writes get EPIPE.
        let o = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// The seed's swap case as a user runs it (README, FINDINGS §29): the compare of Linux's
/// collapse by copy with the in-place proposal on a THP refaulted from the swap cache.
#[test]
fn swap_refault_seed_compares_copy_with_inplace_collapse() {
    let f = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/seeds/swap-refault-pte-mapped-collapse.thps"
    );
    let (code, js, err) = thpsim(&[
        "compare",
        f,
        "--set",
        "collapse=copy",
        "--set",
        "collapse=inplace",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let at = |checkpoint: &str, name: &str| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["checkpoint"] == checkpoint && r["observable"] == name)
            .map(|r| r["values"].clone())
            .unwrap_or_else(|| panic!("no row {checkpoint} {name}"))
    };
    use serde_json::json;
    // Both refault the THP as 512 PTEs in one minor fault from the swap cache.
    assert_eq!(at("refaulted", "pages(buf).thp_pte"), json!([512, 512]));
    assert_eq!(at("refaulted", "minflt"), json!([1, 1]));
    // Linux allocates and copies; the proposal remaps the same folio.
    assert_eq!(at("collapsed", "vmstat.thp_collapse_alloc"), json!([1, 0]));
    assert_eq!(
        at("collapsed", "vmstat.sim_collapse_copied_pages"),
        json!([512, 0])
    );
    assert_eq!(
        at("collapsed", "vmstat.sim_collapse_inplace"),
        json!([0, 1])
    );
    assert_eq!(at("collapsed", "pages(buf).thp_pmd"), json!([512, 512]));
    assert_eq!(at("collapsed", "meminfo.SwapFree"), json!([2048, 2048]));
    for verdict in v["verdicts"].as_array().unwrap() {
        assert_eq!(verdict["expects_failed"], json!(0), "{verdict}");
    }
}
