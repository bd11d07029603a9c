//! How much memory a host run may fault in, estimated from the scenario before it runs, and
//! the check against `MemAvailable` (a run that does not fit is refused unless forced: the
//! worker would be OOM-killed, or push the host into reclaim and swap, midway).
//!
//! The estimate is an upper bound of what the worker processes can make resident: per
//! mapping, the bytes of the ops that can fault pages in (accesses, `populate`, `mlock`,
//! `MADV_POPULATE_*`, userfaultfd `copy`/`zeropage`), each range rounded out to 2 MiB (a
//! THP), capped at the mapping's size; private mappings count once per process that can
//! exist (forks, counted with their `repeat` multiplicity), shared ones once. Page tables
//! are added (8 bytes per 4 KiB page).

use std::collections::BTreeMap;

use thpsim_kernel::types::Advice;
use thpsim_scenario::ast::{Op, RangeRef, Scenario, Stmt, UffdOp};

const PMD: u64 = 2 << 20;
/// Headroom left to the rest of the host.
const MARGIN: u64 = 256 << 20;

struct Acc {
    sizes: BTreeMap<String, (u64, bool)>,
    touched: BTreeMap<String, u64>,
    forks: u64,
}

fn touch(acc: &mut Acc, r: &RangeRef, mult: u64) {
    let Some(&(size, _)) = acc.sizes.get(&r.mapping) else {
        return;
    };
    let len = match (r.offset, r.len) {
        (_, Some(l)) => l,
        (None, None) => size,
        (Some(_), None) => 1,
    };
    let len = len.div_ceil(PMD).saturating_mul(PMD).saturating_add(PMD);
    let t = acc.touched.entry(r.mapping.clone()).or_default();
    *t = t.saturating_add(len.saturating_mul(mult)).min(size);
}

fn walk(stmts: &[Stmt], mult: u64, acc: &mut Acc) {
    for st in stmts {
        match &st.op {
            Op::Mmap(m) => {
                acc.sizes
                    .entry(m.name.clone())
                    .or_insert((m.size, m.shared));
                if m.populate {
                    acc.touched.insert(m.name.clone(), m.size);
                }
            }
            Op::Access(a) => touch(acc, &a.range, mult),
            Op::Mlock { range, lock: true } => touch(acc, range, mult),
            Op::Madvise { range, advice } => {
                if matches!(advice, Advice::PopulateRead | Advice::PopulateWrite) {
                    touch(acc, range, mult)
                }
            }
            Op::Uffd(
                UffdOp::Copy { range, .. }
                | UffdOp::Zeropage { range }
                | UffdOp::Continue { range, .. },
            ) => touch(acc, range, mult),
            Op::Fork { .. } => acc.forks = acc.forks.saturating_add(mult),
            Op::Repeat { count, body } => walk(body, mult.saturating_mul(*count as u64), acc),
            _ => {}
        }
    }
}

/// Upper bound of the bytes a host run of `scn` faults in (see the module doc).
pub fn fault_in_estimate(scn: &Scenario) -> u64 {
    let mut acc = Acc {
        sizes: BTreeMap::new(),
        touched: BTreeMap::new(),
        forks: 0,
    };
    walk(&scn.stmts, 1, &mut acc);
    let procs = acc.forks.saturating_add(1);
    let mut total = 0u64;
    for (name, t) in &acc.touched {
        let shared = acc.sizes.get(name).is_some_and(|s| s.1);
        let bytes = if shared { *t } else { t.saturating_mul(procs) };
        total = total.saturating_add(bytes).saturating_add(bytes / 512);
    }
    total
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn mem_available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(b: u64) -> String {
    format!("{} MiB", b.div_ceil(1 << 20))
}

/// `Err` (with the numbers) when the estimate plus a margin does not fit in `MemAvailable`,
/// unless `force`. `Ok(Some(note))` when forced past it.
pub fn check_memory(scn: &Scenario, force: bool) -> Result<Option<String>, String> {
    let need = fault_in_estimate(scn);
    let Some(avail) = mem_available() else {
        return Ok(None);
    };
    if need.saturating_add(MARGIN) <= avail {
        return Ok(None);
    }
    let msg = format!(
        "{}: the host run may fault in up to {} (estimate from the scenario's mappings, \
         accesses and forks), but MemAvailable is {} (less a {} margin)",
        scn.file,
        mib(need),
        mib(avail),
        mib(MARGIN)
    );
    if force {
        Ok(Some(format!("{msg}; running anyway (--force)")))
    } else {
        Err(format!("{msg}; rerun with --force to run anyway"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(src: &str) -> u64 {
        fault_in_estimate(&thpsim_scenario::parse("t.thps", src).unwrap())
    }

    #[test]
    fn estimates() {
        // Nothing touched: nothing faulted in, however large the mapping.
        assert_eq!(est("mmap a 4T anon private\n"), 0);
        let g = 1u64 << 30;
        let one = est("mmap a 1G anon private\nwrite a\n");
        assert_eq!(one, g + g / 512);
        // A fork doubles what private mappings can hold; repeated writes do not add.
        assert_eq!(
            est("mmap a 1G anon private\nrepeat 3\nwrite a\nend\nfork c\nas c\nwrite a\n"),
            2 * one
        );
        // One byte touches at most a THP (rounded out).
        assert_eq!(
            est("mmap a 1G anon private\nwrite a+4096\n"),
            2 * PMD + 2 * PMD / 512
        );
        assert_eq!(
            est("mmap a 8M anon private populate\n"),
            (8 << 20) + (8 << 20) / 512
        );
    }
}
