//! The observables of a checkpoint as typed, grouped values: one list that `compare`
//! (text, Markdown, JSON), `sweep` (CSV, JSON lines, Parquet) and the HTML report share, so
//! every output names and groups an observable the same way.

use thpsim_kernel::observe::{Backing, Smaps};
use thpsim_scenario::engine::{Checkpoint, MappingState};

/// Observable groups, in the order reports show them.
pub const GROUPS: &[&str] = &[
    "faults",
    "thp",
    "mthp",
    "khugepaged",
    "vmstat",
    "smaps",
    "pages",
];

/// A typed value: counters and sizes are numbers; a page map is text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Val {
    Int(i64),
    Text(String),
}

impl Val {
    pub fn is_zero(&self) -> bool {
        match self {
            Val::Int(v) => *v == 0,
            Val::Text(t) => t.is_empty(),
        }
    }
    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(v) => Some(*v),
            Val::Text(_) => None,
        }
    }
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Int(v) => write!(f, "{v}"),
            Val::Text(t) => f.write_str(t),
        }
    }
}

/// One observable at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obs {
    pub group: &'static str,
    pub name: String,
    pub value: Val,
}

/// The group of a counter key (`vmstat.thp_fault_alloc`, `mthp.64kB.split`, …).
pub fn counter_group(key: &str) -> &'static str {
    let name = key.strip_prefix("vmstat.").unwrap_or(key);
    if key.starts_with("mthp.") {
        "mthp"
    } else if key.starts_with("khugepaged.") {
        "khugepaged"
    } else if key.starts_with("memcg.") {
        // The run's memory cgroup (`memcg` line).
        "memcg"
    } else if key.starts_with("obj.") {
        // fstat of the shmem objects: `obj.<id>.blocks`, `obj.<id>.size`.
        "objects"
    } else if ["buddyinfo.", "pagetypeinfo.", "sim."]
        .iter()
        .any(|p| key.starts_with(p))
    {
        "buddy"
    } else if matches!(name, "pgfault" | "pgmajfault" | "pgreuse" | "cow_ksm") {
        "faults"
    } else if name.starts_with("thp_") || name.ends_with("hugepages") {
        "thp"
    } else {
        "vmstat"
    }
}

/// Page-map totals per backing class (every class, so rows are stable), then per mTHP order
/// where present (`thp_pte:o4`).
pub fn page_totals(m: &MappingState) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = Backing::CLASSES
        .iter()
        .map(|c| (c.to_string(), 0))
        .collect();
    let mut orders: Vec<(String, u64)> = Vec::new();
    for (label, n) in &m.pages {
        let class = label.split(':').next().unwrap_or(label);
        if let Some(t) = v.iter_mut().find(|(c, _)| c == class) {
            t.1 += n;
        }
        if label.contains(':') {
            match orders.iter_mut().find(|(c, _)| c == label) {
                Some(t) => t.1 += n,
                None => orders.push((label.clone(), *n)),
            }
        }
    }
    orders.sort();
    v.extend(orders);
    v
}

/// The page map as text: `thp_pmd×512 none×512`.
pub fn pages_text(pages: &[(String, u64)]) -> String {
    pages
        .iter()
        .map(|(b, n)| format!("{b}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every observable of a checkpoint, in group order; `with_map` adds each mapping's page
/// map as text (`pages(NAME)`), which tables show and numeric outputs leave out.
pub fn checkpoint_obs(c: &Checkpoint, with_map: bool) -> Vec<Obs> {
    let mut v = vec![
        Obs {
            group: "faults",
            name: "minflt".into(),
            value: Val::Int(c.minflt as i64),
        },
        Obs {
            group: "faults",
            name: "majflt".into(),
            value: Val::Int(c.majflt as i64),
        },
    ];
    for (k, val) in &c.counters {
        v.push(Obs {
            group: counter_group(k),
            name: k.clone(),
            value: Val::Int(*val),
        });
    }
    for m in &c.mappings {
        for f in Smaps::FIELDS {
            v.push(Obs {
                group: "smaps",
                name: format!("smaps({}).{f}", m.name),
                value: Val::Int(m.smaps.field(f).unwrap_or(0) as i64),
            });
        }
    }
    for m in &c.mappings {
        if with_map {
            v.push(Obs {
                group: "pages",
                name: format!("pages({})", m.name),
                value: Val::Text(pages_text(&m.pages)),
            });
        }
        for (class, n) in page_totals(m) {
            v.push(Obs {
                group: "pages",
                name: format!("pages({}).{class}", m.name),
                value: Val::Int(n as i64),
            });
        }
    }
    // Stable sort: group order, each group in its natural order.
    v.sort_by_key(|o| {
        GROUPS
            .iter()
            .position(|g| *g == o.group)
            .unwrap_or(GROUPS.len())
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fall_into_their_groups() {
        assert_eq!(counter_group("vmstat.pgfault"), "faults");
        assert_eq!(counter_group("vmstat.thp_fault_alloc"), "thp");
        assert_eq!(counter_group("vmstat.nr_anon_transparent_hugepages"), "thp");
        assert_eq!(counter_group("mthp.64kB.anon_fault_alloc"), "mthp");
        assert_eq!(counter_group("khugepaged.pages_collapsed"), "khugepaged");
        assert_eq!(counter_group("memcg.failcnt"), "memcg");
        assert_eq!(counter_group("vmstat.compact_stall"), "vmstat");
    }

    #[test]
    fn page_totals_count_every_class_and_each_order() {
        let m = MappingState {
            name: "buf".into(),
            smaps: Smaps::default(),
            pages: vec![
                ("thp_pte:o4".into(), 16),
                ("none".into(), 8),
                ("thp_pte:o2".into(), 4),
                ("thp_pte:o4".into(), 16),
            ],
        };
        let t = page_totals(&m);
        let get = |k: &str| t.iter().find(|(c, _)| c == k).map(|x| x.1);
        assert_eq!(get("thp_pte"), Some(36));
        assert_eq!(get("none"), Some(8));
        assert_eq!(get("anon"), Some(0));
        assert_eq!(get("thp_pte:o4"), Some(32));
        assert_eq!(get("thp_pte:o2"), Some(4));
        assert_eq!(t.len(), Backing::CLASSES.len() + 2);
    }
}
