//! The observation schema shared by the model and the host backend (ARCHITECTURE.md, "Observation schema"):
//! what backs each 4 KiB page, and the smaps fields of a mapping. Both backends produce
//! exactly these types, so `check` compares like with like.

/// What backs one 4 KiB virtual page.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Backing {
    /// Nothing mapped (no PTE, or no page table).
    None,
    /// The shared 4 KiB zero page, read-only.
    Zero,
    /// Part of a PMD mapping of the huge zero page.
    HugeZero,
    /// Part of a PMD-mapped anonymous THP (order 9).
    ThpPmd,
    /// A PTE mapping of a page of a large anonymous folio of this order (2..=9).
    ThpPte { order: u8 },
    /// An order-0 anonymous page.
    Anon,
    /// A uffd-wp PTE marker (non-present).
    Marker,
    /// A swap entry.
    Swap,
    /// An order-0 shmem page-cache page.
    Shmem,
    /// A PTE mapping of a page of a large shmem folio of this order (1..=9).
    ShmemPte { order: u8 },
    /// Part of a PMD-mapped shmem folio (order 9).
    ShmemPmd,
    /// A PTE mapping of a guest_memfd page (order 0 in 6.18; any order under the
    /// huge-folio switches).
    Gmem,
    /// Part of a 2 MiB hugetlb page (`hugetlb.rs`; the host sees `KPF_HUGE`).
    Hugetlb,
    /// An order-0 page-cache page of a disk file (neither `KPF_ANON` nor `KPF_SWAPBACKED`).
    File,
    /// A PTE mapping of a page of a large disk-file folio of this order (1..=9).
    FilePte { order: u8 },
    /// Part of a PMD-mapped disk-file folio (order 9).
    FilePmd,
}

impl Backing {
    /// The class names `pages(RANGE).<class>` accepts.
    pub const CLASSES: &'static [&'static str] = &[
        "none",
        "zero",
        "huge_zero",
        "thp_pmd",
        "thp_pte",
        "anon",
        "marker",
        "swap",
        "shmem",
        "shmem_pte",
        "shmem_pmd",
        "gmem",
        "hugetlb",
        "file",
        "file_pte",
        "file_pmd",
    ];

    pub fn class(self) -> &'static str {
        match self {
            Backing::None => "none",
            Backing::Zero => "zero",
            Backing::HugeZero => "huge_zero",
            Backing::ThpPmd => "thp_pmd",
            Backing::ThpPte { .. } => "thp_pte",
            Backing::Anon => "anon",
            Backing::Marker => "marker",
            Backing::Swap => "swap",
            Backing::Shmem => "shmem",
            Backing::ShmemPte { .. } => "shmem_pte",
            Backing::ShmemPmd => "shmem_pmd",
            Backing::Gmem => "gmem",
            Backing::Hugetlb => "hugetlb",
            Backing::File => "file",
            Backing::FilePte { .. } => "file_pte",
            Backing::FilePmd => "file_pmd",
        }
    }

    /// Long form used in page maps: `thp_pte:o4` carries the folio order.
    pub fn label(self) -> String {
        match self {
            Backing::ThpPte { order } => format!("thp_pte:o{order}"),
            Backing::ShmemPte { order } => format!("shmem_pte:o{order}"),
            Backing::FilePte { order } => format!("file_pte:o{order}"),
            b => b.class().to_string(),
        }
    }
}

/// The `/proc/meminfo` lines both backends report as `meminfo.<name>`: the hugetlb pool
/// (pages; `Hugetlb` in kB, `Kernel::hugetlb_meminfo`) and swap (kB, `Kernel::swap_meminfo`).
pub const MEMINFO_FIELDS: [&str; 8] = [
    "HugePages_Total",
    "HugePages_Free",
    "HugePages_Rsvd",
    "HugePages_Surp",
    "Hugetlb",
    "SwapTotal",
    "SwapFree",
    "SwapCached",
];

/// The 1 GiB hstate's counters (`/sys/kernel/mm/hugepages/hugepages-1048576kB/<file>`,
/// pages; `/proc/meminfo`'s `HugePages_*` lines show the default 2 MiB size only), observed
/// as `hugepages-1048576kB.<file>`.
pub const HSTATE_1G_PREFIX: &str = "hugepages-1048576kB";
pub const HSTATE_1G_FIELDS: [&str; 4] = [
    "nr_hugepages",
    "free_hugepages",
    "resv_hugepages",
    "surplus_hugepages",
];

/// A run-length map of backings: `(backing, number of 4 KiB pages)`, adjacent runs differ.
pub type PageMap = Vec<(Backing, u64)>;

/// Appends `n` pages of `b` to a run-length map, merging with the last run.
pub fn pagemap_push(map: &mut PageMap, b: Backing, n: u64) {
    if n == 0 {
        return;
    }
    match map.last_mut() {
        Some((lb, ln)) if *lb == b => *ln += n,
        _ => map.push((b, n)),
    }
}

/// Counts the pages of a given class in a page map.
pub fn pagemap_count(map: &PageMap, class: &str) -> u64 {
    map.iter()
        .filter(|(b, _)| b.class() == class)
        .map(|(_, n)| n)
        .sum()
}

macro_rules! smaps_fields {
    ($($field:ident => $name:literal;)*) => {
        /// `/proc/PID/smaps` fields of one mapping (summed over the VMAs that make it up), in kB.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct Smaps { $(pub $field: u64,)* }
        impl Smaps {
            /// Field names exactly as smaps prints them.
            pub const FIELDS: &'static [&'static str] = &[$($name,)*];
            pub fn field(&self, name: &str) -> Option<u64> {
                match name { $($name => Some(self.$field),)* _ => None }
            }
            pub fn field_mut(&mut self, name: &str) -> Option<&mut u64> {
                match name { $($name => Some(&mut self.$field),)* _ => None }
            }
            /// Adds another VMA's fields (`THPeligible` is a flag: any VMA eligible → 1;
            /// `KernelPageSize` is the largest of the VMAs').
            pub fn accumulate(&mut self, o: &Smaps) {
                let page_size = self.kernel_page_size.max(o.kernel_page_size);
                $(self.$field += o.$field;)*
                self.thp_eligible = self.thp_eligible.min(1);
                self.kernel_page_size = page_size;
            }
        }
    };
}

smaps_fields! {
    size => "Size";
    rss => "Rss";
    pss => "Pss";
    shared_clean => "Shared_Clean";
    shared_dirty => "Shared_Dirty";
    private_clean => "Private_Clean";
    private_dirty => "Private_Dirty";
    anonymous => "Anonymous";
    anon_huge_pages => "AnonHugePages";
    shmem_pmd_mapped => "ShmemPmdMapped";
    file_pmd_mapped => "FilePmdMapped";
    swap => "Swap";
    swap_pss => "SwapPss";
    locked => "Locked";
    thp_eligible => "THPeligible";
    shared_hugetlb => "Shared_Hugetlb";
    private_hugetlb => "Private_Hugetlb";
    kernel_page_size => "KernelPageSize";
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pagemap_merges_runs() {
        let mut m = PageMap::new();
        pagemap_push(&mut m, Backing::Zero, 3);
        pagemap_push(&mut m, Backing::Zero, 2);
        pagemap_push(&mut m, Backing::ThpPte { order: 4 }, 16);
        pagemap_push(&mut m, Backing::ThpPte { order: 2 }, 4);
        assert_eq!(m.len(), 3);
        assert_eq!(pagemap_count(&m, "zero"), 5);
        assert_eq!(pagemap_count(&m, "thp_pte"), 20);
    }
    #[test]
    fn smaps_names() {
        let mut s = Smaps::default();
        *s.field_mut("AnonHugePages").unwrap() = 2048;
        assert_eq!(s.field("AnonHugePages"), Some(2048));
        assert_eq!(s.field("Bogus"), None);
    }
}
