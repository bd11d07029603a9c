//! What this host's kernel exports under `/sys/kernel/mm/transparent_hugepage` and in
//! `/proc/vmstat`, set against what the model knows, so that a patched or newer kernel's
//! extra knobs and stats are noticed at the start of a `check` or `probe` instead of showing up
//! later as an unexplained difference.

use std::collections::BTreeSet;
use std::path::Path;

use thpsim_kernel::sysfs::knobs;
use thpsim_kernel::vmstat::{MthpStat, VmItem, KHUGEPAGED_STATS};

use crate::sysfs::{parse_knob_value, THP_DIR};

/// Files the model knows but does not treat as knobs: read-only facts, and shmem policies
/// (shmem is not modelled yet; anonymous scenarios do not depend on them).
const KNOWN_OTHER: &[&str] = &["hpage_pmd_size"];

/// One file the model does not know, with its current value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unknown {
    /// Path relative to the THP directory (`anon_beside_full`, `hugepages-64kB/stats/x`), or
    /// `/proc/vmstat:NAME`.
    pub what: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Inventory {
    /// Writable-looking files under the THP directory that are not model knobs.
    pub unknown_knobs: Vec<Unknown>,
    /// Files under `hugepages-*/stats/` and `khugepaged/` that the model has no counter for.
    pub unknown_stats: Vec<Unknown>,
    /// THP-related `/proc/vmstat` names the model has no counter for.
    pub unknown_vmstat: Vec<Unknown>,
    /// `shmem_enabled` files: known to exist, not modelled (shmem is not modelled yet).
    pub unmodelled_knobs: Vec<Unknown>,
}

impl Inventory {
    pub fn is_empty(&self) -> bool {
        self.unknown_knobs.is_empty()
            && self.unknown_stats.is_empty()
            && self.unknown_vmstat.is_empty()
    }

    /// One line per entry, prefixed with its kind.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![];
        for (kind, list) in [
            ("unknown knob", &self.unknown_knobs),
            ("unknown stat", &self.unknown_stats),
            ("unknown vmstat", &self.unknown_vmstat),
        ] {
            for u in list {
                v.push(format!("{kind}: {} = {}", u.what, u.value));
            }
        }
        if !self.unmodelled_knobs.is_empty() {
            let all: Vec<String> = self
                .unmodelled_knobs
                .iter()
                .map(|u| format!("{}={}", u.what, u.value))
                .collect();
            v.push(format!("not modelled (shmem): {}", all.join(" ")));
        }
        v
    }
}

/// A `/proc/vmstat` name that belongs to the huge-page machinery this project models.
pub fn vmstat_name_is_thp_related(name: &str) -> bool {
    name.starts_with("thp_")
        || name.starts_with("compact_")
        || name.contains("hugepage")
        || name.contains("pmdmapped")
        || name.starts_with("swpin_zero")
        || name.starts_with("swpout_zero")
}

fn read_trimmed(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| parse_knob_value(&s))
        .unwrap_or_else(|e| format!("(unreadable: {e})"))
}

/// Compares the host's THP directory and `/proc/vmstat` with the model's names.
pub fn take() -> Inventory {
    take_from(Path::new(THP_DIR), "/proc/vmstat")
}

fn take_from(dir: &Path, vmstat: &str) -> Inventory {
    let known_knobs: BTreeSet<String> = knobs().into_iter().map(|k| k.path).collect();
    let known_stats: BTreeSet<&str> = MthpStat::ALL.iter().map(|s| s.name()).collect();
    let mut inv = Inventory::default();
    let mut files = vec![];
    collect_files(dir, dir, &mut files);
    files.sort();
    for rel in files {
        let full = dir.join(&rel);
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel.as_str()),
        };
        let entry = || Unknown {
            what: rel.clone(),
            value: read_trimmed(&full),
        };
        if parent.ends_with("/stats") {
            if !known_stats.contains(name) {
                inv.unknown_stats.push(entry());
            }
        } else if parent == "khugepaged" && KHUGEPAGED_STATS.contains(&name) {
            // pages_collapsed, full_scans: counters the model keeps.
        } else if known_knobs.contains(&rel) || KNOWN_OTHER.contains(&rel.as_str()) {
            // A model knob, or a read-only fact the model agrees with.
        } else if name == "shmem_enabled" {
            inv.unmodelled_knobs.push(entry());
        } else {
            inv.unknown_knobs.push(entry());
        }
    }
    let known_vm: BTreeSet<&str> = VmItem::ALL.iter().map(|i| i.name()).collect();
    if let Ok(t) = std::fs::read_to_string(vmstat) {
        for l in t.lines() {
            if let Some((k, v)) = l.split_once(' ') {
                if vmstat_name_is_thp_related(k) && !known_vm.contains(k) {
                    inv.unknown_vmstat.push(Unknown {
                        what: format!("/proc/vmstat:{k}"),
                        value: v.trim().to_string(),
                    });
                }
            }
        }
    }
    inv
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            collect_files(root, &p, out);
        } else if ft.is_file() {
            if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake THP directory: one known knob, one unknown knob, a known and an unknown stat, a
    /// modelled shmem policy (64K) and one the model has no size for (8K, order 1: shmem
    /// only); a fake vmstat with a known, an unknown THP and an unrelated name.
    #[test]
    fn classifies_a_fake_tree() {
        let root = std::env::temp_dir().join(format!("thpsim-inv-{}", std::process::id()));
        let thp = root.join("thp");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(thp.join("hugepages-64kB/stats")).unwrap();
        std::fs::create_dir_all(thp.join("khugepaged")).unwrap();
        std::fs::write(thp.join("enabled"), "always [madvise] never\n").unwrap();
        std::fs::write(thp.join("new_knob"), "[on] off\n").unwrap();
        std::fs::write(thp.join("hpage_pmd_size"), "2097152\n").unwrap();
        std::fs::write(thp.join("hugepages-64kB/enabled"), "[never]\n").unwrap();
        std::fs::write(thp.join("hugepages-64kB/shmem_enabled"), "[never]\n").unwrap();
        std::fs::create_dir_all(thp.join("hugepages-8kB")).unwrap();
        std::fs::write(thp.join("hugepages-8kB/shmem_enabled"), "[never]\n").unwrap();
        std::fs::write(thp.join("hugepages-64kB/stats/anon_fault_alloc"), "3\n").unwrap();
        std::fs::write(thp.join("hugepages-64kB/stats/brand_new"), "7\n").unwrap();
        std::fs::write(thp.join("khugepaged/full_scans"), "1\n").unwrap();
        std::fs::write(thp.join("khugepaged/new_tunable"), "5\n").unwrap();
        let vm = root.join("vmstat");
        std::fs::write(&vm, "thp_fault_alloc 1\nthp_new_event 2\npgpgin 3\n").unwrap();
        let inv = take_from(&thp, vm.to_str().unwrap());
        std::fs::remove_dir_all(&root).unwrap();
        let whats = |l: &[Unknown]| l.iter().map(|u| u.what.clone()).collect::<Vec<_>>();
        assert_eq!(
            whats(&inv.unknown_knobs),
            ["khugepaged/new_tunable", "new_knob"]
        );
        assert_eq!(inv.unknown_knobs[1].value, "on");
        assert_eq!(
            whats(&inv.unknown_stats),
            ["hugepages-64kB/stats/brand_new"]
        );
        assert_eq!(inv.unknown_stats[0].value, "7");
        assert_eq!(whats(&inv.unknown_vmstat), ["/proc/vmstat:thp_new_event"]);
        assert_eq!(
            whats(&inv.unmodelled_knobs),
            ["hugepages-8kB/shmem_enabled"]
        );
        assert!(!inv.is_empty());
    }
}
