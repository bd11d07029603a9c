//! Kernel behaviour profiles (a kernel version's choices) and the switches that override them.
//! A profile is a named set of switch values; `set key=value` in a scenario or `--set` on the
//! command line overrides single switches, so proposals from the mailing list are one switch.

/// What a write fault on a huge-zero PMD does (`do_huge_pmd_wp_page`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HzpWpFault {
    /// ≤ 6.12: split the PMD into zero-page PTEs and COW the faulting 4 KiB page.
    Split,
    /// ≥ 6.13 (`do_huge_zero_wp_pmd`): allocate a PMD THP; split only if that fails.
    Thp,
}

/// How khugepaged/MADV_COLLAPSE rebuild a PMD from a PTE-mapped PMD-sized folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Collapse {
    /// Linux (6.18): always allocate a new THP and copy 512 pages.
    Copy,
    /// Proposal: remap an existing, naturally aligned PTE-mapped THP by a PMD in place.
    Inplace,
    /// Proposal (the in-place collapse thread's follow-up): as `Inplace`, and also when parts
    /// of the THP were subreleased (MADV_DONTNEED/FREE) and then refaulted: the small pages
    /// that replaced them are migrated back into the THP's own pages, the holes zeroed, so
    /// no order-9 allocation is needed.
    InplaceMigrate,
}

/// How a PMD THP fault zeroes its folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ThpZeroing {
    /// Linux (6.18): `folio_zero_user` zeroes all 512 pages, then one PMD maps the folio.
    Eager,
    /// Proposal (the in-place collapse thread): allocate the PMD-sized folio, zero and map by
    /// PTE only the faulting page; each other page is zeroed and mapped on its first touch
    /// (one fault each); when all 512 are mapped the folio is remapped by a PMD in place.
    Lazy,
}

/// What a guest_memfd huge-folio allocation does when the huge order cannot be had (the
/// guest_memfd huge-folio proposals; 6.18 allocates order-0 folios only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GmemFallback {
    /// Take an order-0 folio instead.
    Small,
    /// Fail the allocation: fallocate and the fault see ENOMEM.
    None,
}

/// What a punch hole that covers part of a huge guest_memfd folio does (the proposals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GmemPunch {
    /// Split the folio to order 0, then free the pages of the hole.
    Split,
    /// Keep the folio whole and zero (and unmap) the pages of the hole.
    Zero,
    /// Refuse the punch with EINVAL.
    Einval,
}

/// What `MADV_POPULATE_READ` and `MADV_POPULATE_WRITE` do: the pair Linux merged (5.14,
/// commit 4ca9b3859dac), or the single `MADV_POPULATE` of the RFC that preceded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MadvPopulate {
    /// Each advice does what it says: read faults for `_READ`, write faults for `_WRITE`.
    Split,
    /// Both act as the single `MADV_POPULATE` proposal: write faults in writable VMAs (a
    /// shared file page is dirtied), read faults in the others.
    Single,
}

/// Every behaviour switch of the model. Field names are the `set` keys.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Switches {
    /// `hzp_wp_fault=split|thp` — "Do not shatter hugezeropage on wp-fault" (6.13).
    pub hzp_wp_fault: HzpWpFault,
    /// `hzp_wp_deferred_split=0|1` — THPs made by the huge-zero wp fault are queued for the
    /// underused shrinker ("add pmd folio to ds_queue in do_huge_zero_wp_pmd()", 6.18).
    pub hzp_wp_deferred_split: bool,
    /// `large_folio_cow_reuse=0|1` — a write fault on a PTE-mapped large folio exclusive to
    /// the mm reuses the page instead of copying (MM owner tracking, 6.15).
    pub large_folio_cow_reuse: bool,
    /// `prctl_thp_except_advised=0|1` — `PR_THP_DISABLE_EXCEPT_ADVISED` exists (6.18).
    pub prctl_thp_except_advised: bool,
    /// `collapse=copy|inplace` — the in-place collapse proposal for PTE-mapped THPs.
    pub collapse: Collapse,
    /// `thp_zeroing=eager|lazy` — the lazily zeroed THP proposal.
    pub thp_zeroing: ThpZeroing,
    /// `mremap_multi_vma=0|1` — a same-size MREMAP_FIXED move may span several VMAs, each
    /// part moved with the gaps kept (`remap_move()`, 6.17).
    pub mremap_multi_vma: bool,
    /// `pt_reclaim=0|1` — `CONFIG_PT_RECLAIM` (6.14, default y on x86-64): MADV_DONTNEED of a
    /// whole 2 MiB PMD range frees the emptied PTE table (`zap_pte_range` with
    /// `zap_details.reclaim_pt`, `mm/pt_reclaim.c`), so a later fault there can map a PMD.
    pub pt_reclaim: bool,
    /// `anon_vma_dup_merge=0|1` — a VMA with an anon_vma may merge into a neighbour that has
    /// none, which takes a copy of it (`dup_anon_vma`), unless it is a fork child's
    /// (`vma_is_fork_child`): "mm/vma: fix incorrectly disallowed anonymous VMA merges"
    /// (commit 879bca0a2c4f, 6.16). Before it, `is_mergeable_anon_vma` wanted the
    /// neighbour's anon_vma chain singular, so such a merge was always refused.
    pub anon_vma_dup_merge: bool,
    /// `gmem_huge_order=0..9` — the folio order guest_memfd allocates (the huge-folio
    /// proposals; 0 = Linux 6.18, `kvm_gmem_get_folio` takes order-0 folios only). Model-only.
    pub gmem_huge_order: u8,
    /// `gmem_fallback=small|none` — a huge guest_memfd allocation that fails falls back to
    /// order 0 or fails (ENOMEM). Model-only.
    pub gmem_fallback: GmemFallback,
    /// `gmem_punch=split|zero|einval` — a punch hole covering part of a huge guest_memfd folio.
    /// Model-only.
    pub gmem_punch: GmemPunch,
    /// `madv_populate=split|single` — the populate advices as Linux has them, or both
    /// acting as the single `MADV_POPULATE` proposal (David Hildenbrand's RFC, February
    /// 2021: prefault writable where the VMA is writable). Model-only.
    pub madv_populate: MadvPopulate,
}

/// One kernel version profile.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub name: &'static str,
    pub version: (u32, u32),
    pub switches: Switches,
}

/// The profiles the model ships, oldest first. `6.18` is the reference host's kernel.
pub fn profiles() -> Vec<Profile> {
    vec![
        Profile {
            name: "6.12",
            version: (6, 12),
            switches: Switches {
                hzp_wp_fault: HzpWpFault::Split,
                hzp_wp_deferred_split: false,
                large_folio_cow_reuse: false,
                prctl_thp_except_advised: false,
                collapse: Collapse::Copy,
                thp_zeroing: ThpZeroing::Eager,
                mremap_multi_vma: false,
                pt_reclaim: false,
                anon_vma_dup_merge: false,
                gmem_huge_order: 0,
                gmem_fallback: GmemFallback::Small,
                gmem_punch: GmemPunch::Split,
                madv_populate: MadvPopulate::Split,
            },
        },
        Profile {
            name: "6.18",
            version: (6, 18),
            switches: Switches {
                hzp_wp_fault: HzpWpFault::Thp,
                hzp_wp_deferred_split: true,
                large_folio_cow_reuse: true,
                prctl_thp_except_advised: true,
                collapse: Collapse::Copy,
                thp_zeroing: ThpZeroing::Eager,
                mremap_multi_vma: true,
                pt_reclaim: true,
                anon_vma_dup_merge: true,
                gmem_huge_order: 0,
                gmem_fallback: GmemFallback::Small,
                gmem_punch: GmemPunch::Split,
                madv_populate: MadvPopulate::Split,
            },
        },
    ]
}

pub const DEFAULT_PROFILE: &str = "6.18";

pub fn profile(name: &str) -> Option<Profile> {
    profiles().into_iter().find(|p| p.name == name)
}

/// (key, accepted values, doc) for every switch, for parsing, hints and generated docs.
pub const SWITCHES: &[(&str, &str, &str)] = &[
    ("hzp_wp_fault", "split|thp", "write fault on a huge-zero PMD: split and COW 4 KiB (<=6.12) or allocate a PMD THP (>=6.13)"),
    ("hzp_wp_deferred_split", "0|1", "queue THPs made by the huge-zero wp fault for the underused shrinker (6.18 fix)"),
    ("large_folio_cow_reuse", "0|1", "reuse exclusive PTE-mapped large folios on write faults instead of copying (6.15)"),
    ("prctl_thp_except_advised", "0|1", "PR_THP_DISABLE_EXCEPT_ADVISED is accepted by prctl (6.18)"),
    ("mremap_multi_vma", "0|1", "a same-size MREMAP_FIXED move may span several VMAs, gaps kept (6.17)"),
    ("pt_reclaim", "0|1", "MADV_DONTNEED of a whole 2 MiB range frees the emptied PTE table (CONFIG_PT_RECLAIM, 6.14)"),
    ("anon_vma_dup_merge", "0|1", "a VMA with an anon_vma may merge into a neighbour without one, which gets a copy (dup_anon_vma), unless forked (6.16)"),
    ("thp_zeroing", "eager|lazy", "a PMD THP fault zeroes all 512 pages at once (Linux) or only the faulting page, the others on first touch, remapping the folio by a PMD once all are mapped (proposal)"),
    ("collapse", "copy|inplace|inplace_migrate", "khugepaged/MADV_COLLAPSE on a PTE-mapped THP: allocate and copy (Linux), remap it by a PMD in place (proposal), or also migrate back the small pages that replaced subreleased parts and zero the holes (proposal)"),
    ("gmem_huge_order", "0|1|2|3|4|5|6|7|8|9", "guest_memfd folio order (huge-folio proposals; 0 = 6.18, order-0 folios only); model-only"),
    ("gmem_fallback", "small|none", "a failed huge guest_memfd allocation takes order 0 or fails with ENOMEM (proposals); model-only"),
    ("gmem_punch", "split|zero|einval", "a punch over part of a huge guest_memfd folio splits it, zeroes the hole keeping it whole, or is EINVAL (proposals); model-only"),
    ("madv_populate", "split|single", "MADV_POPULATE_READ/_WRITE do what they say (5.14), or both act as the single MADV_POPULATE proposal: write faults in writable VMAs, read faults elsewhere (RFC, 2021); model-only"),
];

/// Why `Switches::set` refused a switch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error("unknown switch `{switch}`{}", .suggestion.map(|c| format!("; did you mean `{c}`?")).unwrap_or_default())]
    Unknown {
        switch: String,
        suggestion: Option<&'static str>,
    },
    #[error("`{switch}` takes {accepts}, not `{value}`")]
    BadValue {
        switch: String,
        accepts: &'static str,
        value: String,
    },
}

/// The message, for callers that collect diagnostics as text.
impl From<SwitchError> for String {
    fn from(e: SwitchError) -> String {
        e.to_string()
    }
}

impl Switches {
    /// Applies `key=value`; the error is a message with the accepted values.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SwitchError> {
        let bad = |accepts: &'static str| SwitchError::BadValue {
            switch: key.to_string(),
            accepts,
            value: value.to_string(),
        };
        let b = |v: &str| match v {
            "0" | "off" | "false" => Ok(false),
            "1" | "on" | "true" => Ok(true),
            _ => Err(bad("0 or 1")),
        };
        match key {
            "hzp_wp_fault" => {
                self.hzp_wp_fault = match value {
                    "split" => HzpWpFault::Split,
                    "thp" => HzpWpFault::Thp,
                    _ => return Err(bad("split or thp")),
                }
            }
            "hzp_wp_deferred_split" => self.hzp_wp_deferred_split = b(value)?,
            "large_folio_cow_reuse" => self.large_folio_cow_reuse = b(value)?,
            "prctl_thp_except_advised" => self.prctl_thp_except_advised = b(value)?,
            "mremap_multi_vma" => self.mremap_multi_vma = b(value)?,
            "pt_reclaim" => self.pt_reclaim = b(value)?,
            "anon_vma_dup_merge" => self.anon_vma_dup_merge = b(value)?,
            "collapse" => {
                self.collapse = match value {
                    "copy" => Collapse::Copy,
                    "inplace" => Collapse::Inplace,
                    "inplace_migrate" => Collapse::InplaceMigrate,
                    _ => return Err(bad("copy, inplace or inplace_migrate")),
                }
            }
            "thp_zeroing" => {
                self.thp_zeroing = match value {
                    "eager" => ThpZeroing::Eager,
                    "lazy" => ThpZeroing::Lazy,
                    _ => return Err(bad("eager or lazy")),
                }
            }
            "gmem_huge_order" => {
                self.gmem_huge_order = match value.parse::<u8>() {
                    Ok(o) if o <= crate::types::HPAGE_PMD_ORDER => o,
                    _ => return Err(bad("an order from 0 to 9")),
                }
            }
            "gmem_fallback" => {
                self.gmem_fallback = match value {
                    "small" => GmemFallback::Small,
                    "none" => GmemFallback::None,
                    _ => return Err(bad("small or none")),
                }
            }
            "gmem_punch" => {
                self.gmem_punch = match value {
                    "split" => GmemPunch::Split,
                    "zero" => GmemPunch::Zero,
                    "einval" => GmemPunch::Einval,
                    _ => return Err(bad("split, zero or einval")),
                }
            }
            "madv_populate" => {
                self.madv_populate = match value {
                    "split" => MadvPopulate::Split,
                    "single" => MadvPopulate::Single,
                    _ => return Err(bad("split or single")),
                }
            }
            _ => {
                return Err(SwitchError::Unknown {
                    switch: key.to_string(),
                    suggestion: crate::util::closest(key, SWITCHES.iter().map(|s| s.0)),
                });
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let b = |x: bool| if x { "1" } else { "0" }.to_string();
        Some(match key {
            "hzp_wp_fault" => match self.hzp_wp_fault {
                HzpWpFault::Split => "split".into(),
                HzpWpFault::Thp => "thp".into(),
            },
            "hzp_wp_deferred_split" => b(self.hzp_wp_deferred_split),
            "large_folio_cow_reuse" => b(self.large_folio_cow_reuse),
            "prctl_thp_except_advised" => b(self.prctl_thp_except_advised),
            "mremap_multi_vma" => b(self.mremap_multi_vma),
            "pt_reclaim" => b(self.pt_reclaim),
            "anon_vma_dup_merge" => b(self.anon_vma_dup_merge),
            "collapse" => match self.collapse {
                Collapse::Copy => "copy".into(),
                Collapse::Inplace => "inplace".into(),
                Collapse::InplaceMigrate => "inplace_migrate".into(),
            },
            "thp_zeroing" => match self.thp_zeroing {
                ThpZeroing::Eager => "eager".into(),
                ThpZeroing::Lazy => "lazy".into(),
            },
            "gmem_huge_order" => self.gmem_huge_order.to_string(),
            "gmem_fallback" => match self.gmem_fallback {
                GmemFallback::Small => "small".into(),
                GmemFallback::None => "none".into(),
            },
            "gmem_punch" => match self.gmem_punch {
                GmemPunch::Split => "split".into(),
                GmemPunch::Zero => "zero".into(),
                GmemPunch::Einval => "einval".into(),
            },
            "madv_populate" => match self.madv_populate {
                MadvPopulate::Split => "split".into(),
                MadvPopulate::Single => "single".into(),
            },
            _ => return None,
        })
    }
}
