//! The THP sysfs knobs under `/sys/kernel/mm/transparent_hugepage/` (Linux 6.18,
//! `mm/huge_memory.c` and `mm/khugepaged.c` sysfs handlers). Names are spelled as the scenario
//! language writes them: top-level files by their name (`enabled`), per-size files as
//! `hugepages-64kB.enabled`, khugepaged files as `khugepaged.max_ptes_none`.
//! Defaults are those of the reference host as booted (mainline 6.18 defaults; `thpsim probe` lists
//! the knobs whose host value differs).
//! `anon_beside_full` is not mainline: it exists only on this project's host kernel build
//! (6.18.44-fc); its default 0 is what a mainline kernel does (no such knob). Its effect on the
//! anonymous fault path is in `memory::block_beside_full` (measured: docs/anon-beside-full.md).

use crate::types::HPAGE_PMD_ORDER;

/// Top-level `enabled` and per-size `hugepages-*/enabled` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ThpEnabled {
    Always,
    Inherit,
    Madvise,
    Never,
}

impl ThpEnabled {
    fn parse(s: &str, allow_inherit: bool) -> Option<Self> {
        Some(match s {
            "always" => ThpEnabled::Always,
            "inherit" if allow_inherit => ThpEnabled::Inherit,
            "madvise" => ThpEnabled::Madvise,
            "never" => ThpEnabled::Never,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ThpEnabled::Always => "always",
            ThpEnabled::Inherit => "inherit",
            ThpEnabled::Madvise => "madvise",
            ThpEnabled::Never => "never",
        }
    }
}

/// `defrag` values (`vma_thp_gfp_mask`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Defrag {
    Always,
    Defer,
    DeferMadvise,
    Madvise,
    Never,
}

impl Defrag {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "always" => Defrag::Always,
            "defer" => Defrag::Defer,
            "defer+madvise" => Defrag::DeferMadvise,
            "madvise" => Defrag::Madvise,
            "never" => Defrag::Never,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Defrag::Always => "always",
            Defrag::Defer => "defer",
            Defrag::DeferMadvise => "defer+madvise",
            Defrag::Madvise => "madvise",
            Defrag::Never => "never",
        }
    }
}

/// `shmem_enabled` (the internal shmem mount's `huge=` policy plus the global overrides
/// `deny` and `force`, `mm/shmem.c` `shmem_huge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ShmemHuge {
    Always,
    WithinSize,
    Advise,
    Never,
    Deny,
    Force,
}

impl ShmemHuge {
    pub(crate) const VALUES: &'static str = "always|within_size|advise|never|deny|force";
    /// A global value (`shmem_enabled`) or, with `mount`, a tmpfs `huge=` mount option
    /// (which has no `deny`/`force`).
    pub fn parse(s: &str, mount: bool) -> Option<Self> {
        Some(match s {
            "always" => ShmemHuge::Always,
            "within_size" => ShmemHuge::WithinSize,
            "advise" => ShmemHuge::Advise,
            "never" => ShmemHuge::Never,
            "deny" if !mount => ShmemHuge::Deny,
            "force" if !mount => ShmemHuge::Force,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ShmemHuge::Always => "always",
            ShmemHuge::WithinSize => "within_size",
            ShmemHuge::Advise => "advise",
            ShmemHuge::Never => "never",
            ShmemHuge::Deny => "deny",
            ShmemHuge::Force => "force",
        }
    }
}

/// Per-size `hugepages-<N>kB/shmem_enabled` (`huge_shmem_orders_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ShmemSizeEnabled {
    Always,
    Inherit,
    WithinSize,
    Advise,
    Never,
}

impl ShmemSizeEnabled {
    const VALUES: &'static str = "always|inherit|within_size|advise|never";
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "always" => ShmemSizeEnabled::Always,
            "inherit" => ShmemSizeEnabled::Inherit,
            "within_size" => ShmemSizeEnabled::WithinSize,
            "advise" => ShmemSizeEnabled::Advise,
            "never" => ShmemSizeEnabled::Never,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ShmemSizeEnabled::Always => "always",
            ShmemSizeEnabled::Inherit => "inherit",
            ShmemSizeEnabled::WithinSize => "within_size",
            ShmemSizeEnabled::Advise => "advise",
            ShmemSizeEnabled::Never => "never",
        }
    }
}

/// Anonymous mTHP orders that have a `hugepages-<size>kB` directory on x86-64 (orders 2..=9;
/// order 1 is never used for anonymous memory).
pub const ANON_ORDERS: [u8; 8] = [2, 3, 4, 5, 6, 7, 8, 9];

/// Page-cache folio orders on x86-64 (`THP_ORDERS_ALL_FILE_DEFAULT`: orders 1 up to
/// `MAX_PAGECACHE_ORDER`, which is the PMD order). Order 1 (8 KiB) exists only for files and
/// shmem, so its `hugepages-8kB` directory has `shmem_enabled` and stats but no `enabled`.
pub const FILE_ORDERS: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

/// The orders with a `hugepages-<size>kB/stats` directory (`THP_ORDERS_ALL`: anonymous and
/// file orders).
pub const MTHP_STAT_ORDERS: [u8; 9] = FILE_ORDERS;

/// `hugepages-<size>kB` for an order.
pub fn order_to_size_kb(order: u8) -> u64 {
    4u64 << order
}
pub fn size_kb_to_order(kb: u64) -> Option<u8> {
    if kb < 4 || !kb.is_power_of_two() {
        return None;
    }
    let order = u8::try_from((kb / 4).trailing_zeros()).expect("at most 32");
    (order <= HPAGE_PMD_ORDER).then_some(order)
}

/// All knob values of the model.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sysfs {
    pub enabled: ThpEnabled,
    pub defrag: Defrag,
    pub use_zero_page: bool,
    pub shrink_underused: bool,
    /// Per-size `enabled`, indexed by order (only `ANON_ORDERS` are meaningful).
    pub size_enabled: [ThpEnabled; 10],
    pub khugepaged_defrag: bool,
    pub pages_to_scan: u32,
    pub scan_sleep_millisecs: u32,
    pub alloc_sleep_millisecs: u32,
    pub max_ptes_none: u32,
    pub max_ptes_swap: u32,
    pub max_ptes_shared: u32,
    /// `shmem_enabled`: the internal shmem mount's huge policy, or a global override.
    pub shmem_enabled: ShmemHuge,
    /// Per-size `shmem_enabled`, indexed by order (only `ANON_ORDERS` are modelled; the
    /// host's `hugepages-8kB` (order 1, shmem only) stays at its boot value `never`).
    pub size_shmem_enabled: [ShmemSizeEnabled; 10],
    /// Host build only (not mainline): decline an mTHP order on an anonymous fault unless a
    /// block of that size beside it is full. 0 or 1.
    pub anon_beside_full: u32,
    /// The 2 MiB hugetlb pool (`hugepages-2048kB/nr_hugepages`): the persistent pages asked
    /// for; the pool may get fewer (`hugetlb.rs`, `set_max_huge_pages`).
    pub nr_hugepages: u64,
    /// `hugepages-2048kB/nr_overcommit_hugepages`.
    pub nr_overcommit_hugepages: u64,
    /// `/proc/sys/vm/page-cluster`: swap readahead reads up to `1 << page_cluster` pages
    /// (`mm/swap_state.c`; 0 turns readahead off). Kernel default 3.
    pub page_cluster: u32,
    /// `/sys/kernel/mm/swap/vma_ra_enabled` (`enable_vma_readahead`): readahead by virtual
    /// address around the fault, else by swap offset. Kernel default true.
    pub vma_ra_enabled: bool,
    /// The 1 GiB hugetlb pool (`hugepages-1048576kB/nr_hugepages`). The 1 GiB
    /// `nr_overcommit_hugepages` is no knob: the kernel refuses every write to it (EINVAL,
    /// no surplus gigantic pages; measured, FINDINGS §34).
    pub nr_hugepages_1g: u64,
}

impl Default for Sysfs {
    fn default() -> Self {
        let mut size_enabled = [ThpEnabled::Never; 10];
        size_enabled[HPAGE_PMD_ORDER as usize] = ThpEnabled::Inherit;
        let mut size_shmem_enabled = [ShmemSizeEnabled::Never; 10];
        size_shmem_enabled[HPAGE_PMD_ORDER as usize] = ShmemSizeEnabled::Inherit;
        Sysfs {
            enabled: ThpEnabled::Madvise,
            defrag: Defrag::Madvise,
            use_zero_page: true,
            shrink_underused: true,
            size_enabled,
            khugepaged_defrag: true,
            pages_to_scan: 4096,
            scan_sleep_millisecs: 10000,
            alloc_sleep_millisecs: 60000,
            max_ptes_none: 511,
            max_ptes_swap: 64,
            max_ptes_shared: 256,
            shmem_enabled: ShmemHuge::Never,
            size_shmem_enabled,
            anon_beside_full: 0,
            nr_hugepages: 0,
            nr_overcommit_hugepages: 0,
            page_cluster: 3,
            vma_ra_enabled: true,
            nr_hugepages_1g: 0,
        }
    }
}

/// Why a knob write was refused. `Unknown` and `BadValue` carry a hint for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KnobError {
    /// No such knob; `hint` says what is close or what exists.
    #[error("unknown knob: {hint}")]
    Unknown { hint: String },
    /// The knob exists but not with this value.
    #[error("bad value: expected {expected}")]
    BadValue { expected: String },
}

/// One knob: its scenario name, its file relative to `/sys/kernel/mm/transparent_hugepage/`,
/// and the values it accepts (for documentation and error hints).
#[derive(Clone, Debug)]
pub struct KnobInfo {
    pub name: String,
    pub path: String,
    pub values: &'static str,
}

const TOP: &[(&str, &str)] = &[
    ("enabled", "always|madvise|never"),
    ("defrag", "always|defer|defer+madvise|madvise|never"),
    ("use_zero_page", "0|1"),
    ("shrink_underused", "0|1"),
    ("shmem_enabled", ShmemHuge::VALUES),
    (
        "anon_beside_full",
        "0|1 (host build 6.18.44-fc only, not mainline)",
    ),
];
const KHUGEPAGED: &[(&str, &str)] = &[
    ("defrag", "0|1"),
    ("pages_to_scan", "1..=4294967295"),
    ("scan_sleep_millisecs", "milliseconds"),
    ("alloc_sleep_millisecs", "milliseconds"),
    ("max_ptes_none", "0..=511"),
    ("max_ptes_swap", "0..=511"),
    ("max_ptes_shared", "0..=511"),
];

/// The hugetlb pool knobs of the 2 MiB and 1 GiB sizes (`hugetlb.rs`), by absolute path:
/// they live under `/sys/kernel/mm/hugepages/`, not in the THP directory. The first is the
/// 2 MiB pool size and the third the 1 GiB one (the host checks what each write got).
pub const HUGETLB_KNOBS: &[(&str, &str)] = &[
    (
        "hugetlb.nr_hugepages",
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
    ),
    (
        "hugetlb.nr_overcommit_hugepages",
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_overcommit_hugepages",
    ),
    (
        "hugetlb.1G.nr_hugepages",
        "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
    ),
];

/// The swap readahead knobs (`mm/swap_state.c`), by absolute path: a sysctl and a file
/// under `/sys/kernel/mm/swap/`. Name, path, accepted values.
pub const SWAP_RA_KNOBS: &[(&str, &str, &str)] = &[
    ("vm.page-cluster", "/proc/sys/vm/page-cluster", "0..=31"),
    (
        "swap.vma_ra_enabled",
        "/sys/kernel/mm/swap/vma_ra_enabled",
        "true|false|1|0|y|n|on|off",
    ),
];

/// Every knob the model knows, in a stable order.
pub fn knobs() -> Vec<KnobInfo> {
    let mut v = Vec::new();
    for (n, vals) in TOP {
        v.push(KnobInfo {
            name: n.to_string(),
            path: n.to_string(),
            values: vals,
        });
    }
    for o in ANON_ORDERS {
        let kb = order_to_size_kb(o);
        v.push(KnobInfo {
            name: format!("hugepages-{kb}kB.enabled"),
            path: format!("hugepages-{kb}kB/enabled"),
            values: "always|inherit|madvise|never",
        });
        v.push(KnobInfo {
            name: format!("hugepages-{kb}kB.shmem_enabled"),
            path: format!("hugepages-{kb}kB/shmem_enabled"),
            values: ShmemSizeEnabled::VALUES,
        });
    }
    for (n, vals) in KHUGEPAGED {
        v.push(KnobInfo {
            name: format!("khugepaged.{n}"),
            path: format!("khugepaged/{n}"),
            values: vals,
        });
    }
    for (n, path) in HUGETLB_KNOBS {
        v.push(KnobInfo {
            name: (*n).to_string(),
            path: (*path).to_string(),
            values: "pages (0..=1000000)",
        });
    }
    for (n, path, vals) in SWAP_RA_KNOBS {
        v.push(KnobInfo {
            name: (*n).to_string(),
            path: (*path).to_string(),
            values: vals,
        });
    }
    v
}

/// The sysfs file (relative to the THP directory) of a scenario knob name.
pub fn knob_path(name: &str) -> Option<String> {
    knobs().into_iter().find(|k| k.name == name).map(|k| k.path)
}

fn parse_bool01(v: &str) -> Option<bool> {
    match v {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// `kstrtobool`: the first character decides (`y`/`Y`/`t`/`T`/`1` true, `n`/`N`/`f`/`F`/`0`
/// false), and `on`/`off` in any case.
fn parse_kstrtobool(v: &str) -> Option<bool> {
    let b = v.as_bytes();
    match b.first()? {
        b'y' | b'Y' | b't' | b'T' | b'1' => Some(true),
        b'n' | b'N' | b'f' | b'F' | b'0' => Some(false),
        b'o' | b'O' => match b.get(1)? {
            b'n' | b'N' => Some(true),
            b'f' | b'F' => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn parse_u32_max(v: &str, max: u32) -> Option<u32> {
    v.parse::<u32>().ok().filter(|x| *x <= max)
}

impl Sysfs {
    /// The anonymous half of `hugepage_pmd_enabled`: the PMD size is enabled for anonymous
    /// memory in some way (`always` or `madvise`, `inherit` resolved).
    pub fn pmd_thp_enabled(&self) -> bool {
        match self.size_enabled[HPAGE_PMD_ORDER as usize] {
            ThpEnabled::Always | ThpEnabled::Madvise => true,
            ThpEnabled::Inherit => matches!(self.enabled, ThpEnabled::Always | ThpEnabled::Madvise),
            ThpEnabled::Never => false,
        }
    }

    /// `shmem_hpage_pmd_enabled` (mm/shmem.c): some shmem object may get a PMD-sized folio.
    /// `deny` turns it off whatever the PMD size says; `inherit` follows `shmem_enabled`
    /// unless that is `never`.
    pub fn shmem_hpage_pmd_enabled(&self) -> bool {
        match self.shmem_enabled {
            ShmemHuge::Deny => false,
            g => match self.size_shmem_enabled[HPAGE_PMD_ORDER as usize] {
                ShmemSizeEnabled::Always
                | ShmemSizeEnabled::Advise
                | ShmemSizeEnabled::WithinSize => true,
                ShmemSizeEnabled::Inherit => g != ShmemHuge::Never,
                ShmemSizeEnabled::Never => false,
            },
        }
    }

    /// `hugepage_pmd_enabled` (mm/khugepaged.c, 6.18; no `CONFIG_READ_ONLY_THP_FOR_FS`):
    /// whether the khugepaged thread runs, the rule `start_stop_khugepaged` applies after
    /// every knob store. The host backend applies it to the host's knobs too.
    pub fn hugepage_pmd_enabled(&self) -> bool {
        self.pmd_thp_enabled() || self.shmem_hpage_pmd_enabled()
    }

    /// Writes a knob as `echo value > file` would; refuses what the kernel refuses (EINVAL).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), KnobError> {
        let bad = |expected: &str| KnobError::BadValue {
            expected: expected.to_string(),
        };
        if let Some(rest) = name.strip_prefix("hugepages-") {
            let Some((size, file)) = rest.split_once("kB.") else {
                return Err(Self::unknown(name));
            };
            let order = size.parse::<u64>().ok().and_then(size_kb_to_order);
            let Some(order) = order.filter(|o| ANON_ORDERS.contains(o)) else {
                return Err(Self::unknown(name));
            };
            match file {
                "enabled" => {
                    self.size_enabled[order as usize] = ThpEnabled::parse(value, true)
                        .ok_or_else(|| bad("always|inherit|madvise|never"))?;
                }
                "shmem_enabled" => {
                    let v = ShmemSizeEnabled::parse(value)
                        .ok_or_else(|| bad(ShmemSizeEnabled::VALUES))?;
                    // thpsize_shmem_enabled_store(): under `force` only the PMD size may
                    // inherit.
                    if v == ShmemSizeEnabled::Inherit
                        && order != HPAGE_PMD_ORDER
                        && self.shmem_enabled == ShmemHuge::Force
                    {
                        return Err(bad("not `inherit` while shmem_enabled is `force`"));
                    }
                    self.size_shmem_enabled[order as usize] = v;
                }
                _ => return Err(Self::unknown(name)),
            }
            return Ok(());
        }
        match name {
            "enabled" => {
                self.enabled =
                    ThpEnabled::parse(value, false).ok_or_else(|| bad("always|madvise|never"))?;
            }
            "defrag" => {
                self.defrag = Defrag::parse(value)
                    .ok_or_else(|| bad("always|defer|defer+madvise|madvise|never"))?;
            }
            "shmem_enabled" => {
                let v = ShmemHuge::parse(value, false).ok_or_else(|| bad(ShmemHuge::VALUES))?;
                // shmem_enabled_store(): `force` only while no size but the PMD one inherits.
                if v == ShmemHuge::Force
                    && ANON_ORDERS.iter().any(|&o| {
                        o != HPAGE_PMD_ORDER
                            && self.size_shmem_enabled[o as usize] == ShmemSizeEnabled::Inherit
                    })
                {
                    return Err(bad(
                        "not `force` while a non-PMD size's shmem_enabled is `inherit`",
                    ));
                }
                self.shmem_enabled = v;
            }
            "use_zero_page" => {
                self.use_zero_page = parse_bool01(value).ok_or_else(|| bad("0|1"))?;
            }
            "shrink_underused" => {
                self.shrink_underused = parse_bool01(value).ok_or_else(|| bad("0|1"))?;
            }
            "anon_beside_full" => {
                // kstrtouint in base 10, then a range check: "01" is 1, "2" is EINVAL.
                self.anon_beside_full = parse_u32_max(value, 1).ok_or_else(|| bad("0|1"))?;
            }
            "hugetlb.nr_hugepages"
            | "hugetlb.nr_overcommit_hugepages"
            | "hugetlb.1G.nr_hugepages" => {
                // kstrtoul in base 10; the model caps pools at a million pages.
                let n = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= 1_000_000)
                    .ok_or_else(|| bad("a page count"))?;
                match name {
                    "hugetlb.nr_hugepages" => self.nr_hugepages = n,
                    "hugetlb.1G.nr_hugepages" => self.nr_hugepages_1g = n,
                    _ => self.nr_overcommit_hugepages = n,
                }
            }
            "vm.page-cluster" => {
                // proc_dointvec_minmax between 0 and page_cluster_max (31).
                self.page_cluster = parse_u32_max(value, 31).ok_or_else(|| bad("0..=31"))?;
            }
            "swap.vma_ra_enabled" => {
                self.vma_ra_enabled = parse_kstrtobool(value).ok_or_else(|| bad("true|false"))?;
            }
            "khugepaged.defrag" => {
                self.khugepaged_defrag = parse_bool01(value).ok_or_else(|| bad("0|1"))?;
            }
            "khugepaged.pages_to_scan" => {
                self.pages_to_scan = value
                    .parse::<u32>()
                    .ok()
                    .filter(|x| *x > 0)
                    .ok_or_else(|| bad("1..=4294967295"))?;
            }
            "khugepaged.scan_sleep_millisecs" => {
                self.scan_sleep_millisecs = value.parse().map_err(|_| bad("milliseconds"))?;
            }
            "khugepaged.alloc_sleep_millisecs" => {
                self.alloc_sleep_millisecs = value.parse().map_err(|_| bad("milliseconds"))?;
            }
            "khugepaged.max_ptes_none" => {
                self.max_ptes_none = parse_u32_max(value, 511).ok_or_else(|| bad("0..=511"))?;
            }
            "khugepaged.max_ptes_swap" => {
                self.max_ptes_swap = parse_u32_max(value, 511).ok_or_else(|| bad("0..=511"))?;
            }
            "khugepaged.max_ptes_shared" => {
                self.max_ptes_shared = parse_u32_max(value, 511).ok_or_else(|| bad("0..=511"))?;
            }
            _ => return Err(Self::unknown(name)),
        }
        Ok(())
    }

    /// The value as the sysfs file would show the selected entry (no brackets).
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(rest) = name.strip_prefix("hugepages-") {
            let (size, file) = rest.split_once("kB.")?;
            let order = size.parse::<u64>().ok().and_then(size_kb_to_order)?;
            if !ANON_ORDERS.contains(&order) {
                return None;
            }
            return match file {
                "enabled" => Some(self.size_enabled[order as usize].name().to_string()),
                "shmem_enabled" => Some(self.size_shmem_enabled[order as usize].name().to_string()),
                _ => None,
            };
        }
        let b = |x: bool| if x { "1" } else { "0" }.to_string();
        Some(match name {
            "enabled" => self.enabled.name().to_string(),
            "defrag" => self.defrag.name().to_string(),
            "shmem_enabled" => self.shmem_enabled.name().to_string(),
            "use_zero_page" => b(self.use_zero_page),
            "shrink_underused" => b(self.shrink_underused),
            "anon_beside_full" => self.anon_beside_full.to_string(),
            "khugepaged.defrag" => b(self.khugepaged_defrag),
            "khugepaged.pages_to_scan" => self.pages_to_scan.to_string(),
            "khugepaged.scan_sleep_millisecs" => self.scan_sleep_millisecs.to_string(),
            "khugepaged.alloc_sleep_millisecs" => self.alloc_sleep_millisecs.to_string(),
            "khugepaged.max_ptes_none" => self.max_ptes_none.to_string(),
            "khugepaged.max_ptes_swap" => self.max_ptes_swap.to_string(),
            "khugepaged.max_ptes_shared" => self.max_ptes_shared.to_string(),
            "hugetlb.nr_hugepages" => self.nr_hugepages.to_string(),
            "hugetlb.nr_overcommit_hugepages" => self.nr_overcommit_hugepages.to_string(),
            "vm.page-cluster" => self.page_cluster.to_string(),
            "swap.vma_ra_enabled" => if self.vma_ra_enabled { "true" } else { "false" }.to_string(),
            "hugetlb.1G.nr_hugepages" => self.nr_hugepages_1g.to_string(),
            _ => return None,
        })
    }

    fn unknown(name: &str) -> KnobError {
        let names: Vec<String> = knobs().into_iter().map(|k| k.name).collect();
        let best = crate::util::closest(name, names.iter().map(std::string::String::as_str));
        KnobError::Unknown {
            hint: match best {
                Some(b) => format!("did you mean `{b}`?"),
                None => "see `thpsim knobs` for the list".to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_readahead_knobs_parse_as_the_kernel() {
        let mut s = Sysfs::default();
        assert_eq!(s.get("vm.page-cluster").unwrap(), "3");
        assert_eq!(s.get("swap.vma_ra_enabled").unwrap(), "true");
        s.set("vm.page-cluster", "31").unwrap();
        assert!(s.set("vm.page-cluster", "32").is_err());
        assert!(s.set("vm.page-cluster", "-1").is_err());
        for (v, want) in [
            ("0", false),
            ("on", true),
            ("N", false),
            ("true", true),
            ("off", false),
        ] {
            s.set("swap.vma_ra_enabled", v).unwrap();
            assert_eq!(s.vma_ra_enabled, want, "{v}");
        }
        assert_eq!(s.get("swap.vma_ra_enabled").unwrap(), "false");
        assert!(s.set("swap.vma_ra_enabled", "maybe").is_err());
        assert!(s.set("swap.vma_ra_enabled", "o").is_err());
        assert_eq!(
            knob_path("vm.page-cluster").as_deref(),
            Some("/proc/sys/vm/page-cluster")
        );
    }

    #[test]
    fn defaults_match_host() {
        let s = Sysfs::default();
        assert_eq!(s.get("enabled").unwrap(), "madvise");
        assert_eq!(s.get("hugepages-2048kB.enabled").unwrap(), "inherit");
        assert_eq!(s.get("hugepages-64kB.enabled").unwrap(), "never");
        assert_eq!(s.get("khugepaged.max_ptes_none").unwrap(), "511");
    }

    #[test]
    fn set_and_refuse() {
        let mut s = Sysfs::default();
        s.set("hugepages-64kB.enabled", "always").unwrap();
        assert_eq!(s.size_enabled[4], ThpEnabled::Always);
        assert!(matches!(
            s.set("enabled", "inherit"),
            Err(KnobError::BadValue { .. })
        ));
        assert!(matches!(
            s.set("khugepaged.max_ptes_none", "512"),
            Err(KnobError::BadValue { .. })
        ));
        assert!(matches!(
            s.set("hugepages-8kB.enabled", "always"),
            Err(KnobError::Unknown { .. })
        ));
        match s.set("enabeld", "always") {
            Err(KnobError::Unknown { hint }) => assert!(hint.contains("`enabled`"), "{hint}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            knob_path("hugepages-64kB.enabled").unwrap(),
            "hugepages-64kB/enabled"
        );
        assert_eq!(
            knob_path("khugepaged.max_ptes_none").unwrap(),
            "khugepaged/max_ptes_none"
        );
        assert_eq!(knob_path("enabled").unwrap(), "enabled");
    }
}
