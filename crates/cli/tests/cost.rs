//! The cost model against the host: `thpsim calibrate --validate` runs eight workloads
//! (256 MiB prealloc with and without THP, a huge-zero read-then-write, fork + COW of 4 KiB
//! pages and of THPs, MADV_COLD folio splits, a userfaultfd postcopy and a write-protect
//! snapshot) on the host, timing the worker's CPU time per op (wall time for the uffd ones),
//! and estimates them with the built-in profile.
//! The bound is set from measurement: over repeated runs on the reference machine (2 vCPUs,
//! shared with other jobs) the error of undisturbed runs stayed within ±22%
//! (docs/cost-model.md) and of the four added later within ±39% (the folio-split workload
//! is a THP prealloc with 4 splits: its drift); 40% is the bound.

mod common;
use common::{host_lock, host_ready, thpsim};

const BOUND_PCT: f64 = 40.0;

/// Ignored in the suite: on this VM the host's CPU time for a first touch depends on the
/// hypervisor re-backing freed guest memory (a THP prealloc measured 188 ms against ~35 ms
/// undisturbed in a CI run, -82 %), which the kernel cannot report as reclaim or compaction.
/// Run it on a quiet host with `cargo nextest run -p thpsim --test cost --run-ignored all`.
#[test]
#[ignore = "host CPU time on a VM depends on the hypervisor's backing of freed memory"]
fn builtin_profile_estimates_host_time_within_bound() {
    let _lock = host_lock();
    if !host_ready() {
        return;
    }
    // A host run during which the kernel reclaimed or compacted memory (another job on the
    // machine) is left out by `--validate`; a workload with no clean run is measured again.
    let mut last = String::new();
    for _attempt in 0..3 {
        let (rc, out, err) = thpsim(&["calibrate", "--validate", "--repeats", "3", "--json"]);
        assert_eq!(rc, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let rows = v.as_array().unwrap();
        assert_eq!(rows.len(), 8);
        if rows.iter().any(|r| r["disturbed_runs"] == r["runs"]) {
            last = out;
            continue;
        }
        for r in rows {
            let e = r["error_pct"].as_f64().unwrap();
            assert!(
                e.abs() <= BOUND_PCT,
                "{}: host {} ms, model {} ms, error {e:.1}%",
                r["workload"],
                r["host_ms"],
                r["model_ms"]
            );
        }
        return;
    }
    panic!(
        "every host run of a workload was disturbed by reclaim or compaction, three times:\n{last}"
    );
}

/// The cost model on the `thp_zeroing=lazy` proposal (model only): the first touch of a
/// lazily zeroed THP pays one page of zeroing, not 512 (the latency argument), and touching
/// the rest costs one fault each without an allocation, so the whole block costs more than
/// an eager THP fault.
#[test]
fn lazy_thp_zeroing_first_touch_is_cheap_and_the_block_dearer() {
    let f = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/examples/thp-lazy-zeroing.thps"
    );
    let cost = |z: &str| -> Vec<f64> {
        let set = format!("thp_zeroing={z}");
        let (rc, out, err) = thpsim(&["run", f, "--set", &set, "--cost", "builtin", "--json"]);
        assert_eq!(rc, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["run"]["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .take(2)
            .map(|c| {
                c["counters"]["vmstat.sim_kernel_time_ns"]
                    .as_f64()
                    .unwrap_or(0.0)
            })
            .collect()
    };
    let (eager, lazy) = (cost("eager"), cost("lazy"));
    // first-touch, then all-touched (the other 511 pages of the block).
    assert!(
        lazy[0] > 0.0 && lazy[0] * 50.0 < eager[0],
        "{lazy:?} {eager:?}"
    );
    assert_eq!(eager[1], 0.0);
    assert!(lazy[0] + lazy[1] > eager[0], "{lazy:?} {eager:?}");
}
