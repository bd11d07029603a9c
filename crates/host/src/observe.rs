//! Host observations in the shared schema: counters from /proc/vmstat and sysfs, smaps of the
//! worker's VMAs, and the backing of every 4 KiB page.
//!
//! Page classification (verified on 6.18, see the crate README):
//! 1. `PAGEMAP_SCAN` (`/proc/PID/pagemap` ioctl, Linux 6.7+) gives per-run categories:
//!    `PAGE_IS_PRESENT`, `PAGE_IS_SWAPPED`, `PAGE_IS_PFNZERO` (4 KiB zero page *and* a PMD
//!    mapping of the huge zero page), `PAGE_IS_HUGE` (PMD mapping).
//!    present+pfnzero+huge → `HugeZero`; present+pfnzero → `Zero`; present+huge → `ThpPmd`;
//!    swapped → `Swap`, or `Marker` when the pagemap entry has the uffd-wp bit (57) and its
//!    swap type is not an active swap area (uffd-wp PTE markers are swap-format entries).
//! 2. Other present pages: the PFN from `/proc/PID/pagemap` (bits 0–54, root only) and
//!    `/proc/kpageflags`: not compound → `Anon`; compound → the folio's order, found by
//!    walking back to the `KPF_COMPOUND_HEAD` and counting the following `KPF_COMPOUND_TAIL`
//!    pages (a folio is naturally aligned in PFN space, so at most 512 flags are read),
//!    → `ThpPte { order }`. Pages without `KPF_ANON` are shmem page-cache pages: `Shmem`,
//!    `ShmemPte { order }`, and `ShmemPmd` for a PMD mapping (whose PFN is read too); an
//!    order-0 one without `KPF_SWAPBACKED` is a guest_memfd page: `Gmem`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use thpsim_kernel::observe::{pagemap_push, Backing, PageMap, Smaps};
use thpsim_kernel::vmstat::VmStat;

use crate::sys::PAGE;
use crate::sysfs::THP_DIR;

// include/uapi/linux/fs.h (6.7+)
pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
pub const PAGE_IS_HUGE: u64 = 1 << 6;
/// `_IOWR('f', 16, struct pm_scan_arg)` with `sizeof(struct pm_scan_arg) == 96`.
pub const PAGEMAP_SCAN: u64 = 0xC060_6610;

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

// include/uapi/linux/kernel-page-flags.h
pub const KPF_ANON: u64 = 1 << 12;
pub const KPF_SWAPBACKED: u64 = 1 << 14;
/// `KPF_HUGE`: a page of a hugetlb folio.
pub const KPF_HUGE: u64 = 1 << 17;
pub const KPF_COMPOUND_HEAD: u64 = 1 << 15;
pub const KPF_COMPOUND_TAIL: u64 = 1 << 16;
pub const KPF_THP: u64 = 1 << 22;
pub const KPF_ZERO_PAGE: u64 = 1 << 24;

// Documentation/admin-guide/mm/pagemap.rst
pub const PM_PRESENT: u64 = 1 << 63;
pub const PM_SWAP: u64 = 1 << 62;
pub const PM_UFFD_WP: u64 = 1 << 57;
pub const PM_EXCLUSIVE: u64 = 1 << 56;
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;

/// Runs `PAGEMAP_SCAN` over `[start, end)` of the process behind `pagemap`, returning
/// `(start, end, categories)` runs of pages with at least one category bit or inside a VMA.
pub fn pagemap_scan(pagemap: &File, start: u64, end: u64) -> std::io::Result<Vec<(u64, u64, u64)>> {
    let mut out = Vec::new();
    let mut vec = vec![PageRegion::default(); 1024];
    let mut cur = start;
    while cur < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            start: cur,
            end,
            vec: vec.as_mut_ptr() as u64,
            vec_len: vec.len() as u64,
            return_mask: PAGE_IS_PRESENT
                | PAGE_IS_SWAPPED
                | PAGE_IS_PFNZERO
                | PAGE_IS_HUGE
                | PAGE_IS_WPALLOWED,
            ..Default::default()
        };
        // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points to `vec.len()` writable
        // page_region entries that outlive the call; the ioctl writes at most that many.
        let n = unsafe {
            libc::ioctl(
                pagemap.as_raw_fd(),
                PAGEMAP_SCAN as _,
                &mut arg as *mut PmScanArg,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for r in &vec[..n as usize] {
            out.push((r.start, r.end, r.categories));
        }
        if arg.walk_end <= cur {
            break;
        }
        cur = arg.walk_end;
    }
    Ok(out)
}

/// True if this kernel implements PAGEMAP_SCAN.
pub fn pagemap_scan_available() -> Result<(), String> {
    let f = File::open("/proc/self/pagemap").map_err(|e| format!("/proc/self/pagemap: {e}"))?;
    let probe = 0u64;
    let a = &probe as *const u64 as u64 & !(PAGE - 1);
    pagemap_scan(&f, a, a + PAGE)
        .map(|_| ())
        .map_err(|e| format!("PAGEMAP_SCAN ioctl (Linux 6.7+): {e}"))
}

/// Readers for one worker process.
pub struct Observer {
    pagemap: File,
    kpageflags: File,
    pid: i32,
    /// Number of active swap areas (swap types below it are real swap entries).
    swap_areas: u64,
}

impl Observer {
    pub fn new(pid: i32) -> std::io::Result<Self> {
        let swap_areas = std::fs::read_to_string("/proc/swaps")
            .map(|s| s.lines().skip(1).filter(|l| !l.trim().is_empty()).count() as u64)
            .unwrap_or(0);
        Ok(Observer {
            pagemap: File::open(format!("/proc/{pid}/pagemap"))?,
            kpageflags: File::open("/proc/kpageflags")?,
            pid,
            swap_areas,
        })
    }

    fn read_u64s(f: &File, index: u64, n: usize) -> std::io::Result<Vec<u64>> {
        let mut buf = vec![0u8; n * 8];
        f.read_exact_at(&mut buf, index * 8)?;
        Ok(buf
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    /// Calls `f` with each of the `n` u64 entries of `file` from `index` on, reading 512 at a
    /// time into a stack buffer: the observer must not grow this process's heap by the size of
    /// the range (an 8 MiB pagemap read would stay in the heap and show in the global
    /// `nr_anon_pages` of the next checkpoint).
    fn each_u64(
        file: &File,
        index: u64,
        n: u64,
        mut f: impl FnMut(u64) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        let mut done = 0;
        while done < n {
            let k = (n - done).min(512);
            let b = &mut buf[..k as usize * 8];
            file.read_exact_at(b, (index + done) * 8)?;
            for c in b.chunks_exact(8) {
                f(u64::from_le_bytes(c.try_into().unwrap()))?;
            }
            done += k;
        }
        Ok(())
    }

    /// Whether the page at `pfn` belongs to a hugetlb folio (`KPF_HUGE`).
    fn page_is_hugetlb(
        &self,
        pfn: u64,
        cache: &mut HashMap<u64, Vec<u64>>,
    ) -> std::io::Result<bool> {
        Ok(self.page_flags(pfn, cache)? & KPF_HUGE != 0)
    }

    /// Whether the page at `pfn` is anonymous (`KPF_ANON`; a shmem page-cache page is not).
    fn page_is_anon(&self, pfn: u64, cache: &mut HashMap<u64, Vec<u64>>) -> std::io::Result<bool> {
        Ok(self.page_flags(pfn, cache)? & KPF_ANON != 0)
    }

    /// Whether a page-cache page at `pfn` is neither anonymous nor swap-backed: a disk
    /// file's or a guest_memfd's (every shmem page is swap-backed, like anonymous ones).
    fn page_is_file(&self, pfn: u64, cache: &mut HashMap<u64, Vec<u64>>) -> std::io::Result<bool> {
        Ok(self.page_flags(pfn, cache)? & (KPF_ANON | KPF_SWAPBACKED) == 0)
    }

    /// The kpageflags word of `pfn` (cached per 512-PFN block).
    fn page_flags(&self, pfn: u64, cache: &mut HashMap<u64, Vec<u64>>) -> std::io::Result<u64> {
        let block = pfn & !511;
        let fl = match cache.entry(block) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Self::read_u64s(&self.kpageflags, block, 512)?)
            }
        };
        Ok(fl[(pfn - block) as usize])
    }

    /// The order of the folio containing `pfn`, from kpageflags (cached per 512-PFN block).
    fn folio_order(&self, pfn: u64, cache: &mut HashMap<u64, Vec<u64>>) -> std::io::Result<u8> {
        let block = pfn & !511;
        let fl = match cache.entry(block) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Self::read_u64s(&self.kpageflags, block, 512)?)
            }
        };
        let i = (pfn - block) as usize;
        if fl[i] & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL) == 0 {
            return Ok(0);
        }
        let mut h = i;
        while fl[h] & KPF_COMPOUND_HEAD == 0 {
            if h == 0 {
                return Ok(9); // head outside the block: larger than PMD order; report 9
            }
            h -= 1;
        }
        let mut n = 1;
        while h + n < 512
            && fl[h + n] & KPF_COMPOUND_TAIL != 0
            && fl[h + n] & KPF_COMPOUND_HEAD == 0
        {
            n += 1;
        }
        Ok(n.next_power_of_two().trailing_zeros() as u8)
    }

    /// The backing of every page of `[start, end)` (absolute addresses, page aligned).
    pub fn pages(&self, start: u64, end: u64) -> std::io::Result<PageMap> {
        let mut map = PageMap::new();
        if end <= start {
            return Ok(map);
        }
        let runs = pagemap_scan(&self.pagemap, start, end)?;
        let disk_vmas = disk_file_vmas(self.pid, start, end)?;
        let mut cache = HashMap::new();
        let mut cur = start;
        for (rs, re, cat) in runs {
            let (rs, re) = (rs.max(cur), re.min(end));
            if re <= rs {
                continue;
            }
            pagemap_push(&mut map, Backing::None, (rs - cur) / PAGE);
            let n = (re - rs) / PAGE;
            if cat & PAGE_IS_PRESENT != 0 {
                if cat & PAGE_IS_PFNZERO != 0 {
                    let b = if cat & PAGE_IS_HUGE != 0 {
                        Backing::HugeZero
                    } else {
                        Backing::Zero
                    };
                    pagemap_push(&mut map, b, n);
                } else if cat & PAGE_IS_HUGE != 0 {
                    // A PMD mapping of an anonymous THP or of a shmem folio (KPF_ANON).
                    Self::each_u64(&self.pagemap, rs / PAGE, n, |e| {
                        let b = if e & PM_PRESENT == 0 {
                            Backing::None
                        } else if self.page_is_hugetlb(e & PM_PFN_MASK, &mut cache)? {
                            Backing::Hugetlb
                        } else if self.page_is_anon(e & PM_PFN_MASK, &mut cache)? {
                            Backing::ThpPmd
                        } else if self.page_is_file(e & PM_PFN_MASK, &mut cache)? {
                            Backing::FilePmd
                        } else {
                            Backing::ShmemPmd
                        };
                        pagemap_push(&mut map, b, 1);
                        Ok(())
                    })?;
                } else {
                    let mut addr = rs - PAGE;
                    Self::each_u64(&self.pagemap, rs / PAGE, n, |e| {
                        addr += PAGE;
                        let b = if e & PM_PRESENT == 0 {
                            Backing::None // raced; cannot happen while the worker is idle
                        } else {
                            let pfn = e & PM_PFN_MASK;
                            let anon = self.page_is_anon(pfn, &mut cache)?;
                            if self.page_is_hugetlb(pfn, &mut cache)? {
                                pagemap_push(&mut map, Backing::Hugetlb, 1);
                                return Ok(());
                            }
                            // Not swap-backed: a disk file's page where a VMA of a block
                            // device maps it, else a guest_memfd's.
                            let file = !anon && self.page_is_file(pfn, &mut cache)?;
                            let disk =
                                file && disk_vmas.iter().any(|&(s, e)| (s..e).contains(&addr));
                            match (anon, self.folio_order(pfn, &mut cache)?) {
                                (true, 0) => Backing::Anon,
                                (true, o) => Backing::ThpPte { order: o },
                                (false, 0) if disk => Backing::File,
                                (false, o) if disk => Backing::FilePte { order: o },
                                (false, 0) if file => Backing::Gmem,
                                (false, 0) => Backing::Shmem,
                                (false, o) => Backing::ShmemPte { order: o },
                            }
                        };
                        pagemap_push(&mut map, b, 1);
                        Ok(())
                    })?;
                }
            } else if cat & PAGE_IS_SWAPPED != 0 {
                Self::each_u64(&self.pagemap, rs / PAGE, n, |e| {
                    let swap_type = e & 0x1f;
                    let b = if e & PM_UFFD_WP != 0 && swap_type >= self.swap_areas {
                        Backing::Marker
                    } else {
                        Backing::Swap
                    };
                    pagemap_push(&mut map, b, 1);
                    Ok(())
                })?;
            } else {
                pagemap_push(&mut map, Backing::None, n);
            }
            cur = re;
        }
        pagemap_push(&mut map, Backing::None, (end - cur) / PAGE);
        Ok(map)
    }

    /// smaps of the worker, summed over the VMAs overlapping `[start, end)`.
    pub fn smaps(&self, text: &str, start: u64, end: u64) -> Smaps {
        smaps_sum(text, start, end)
    }

    pub fn smaps_text(&self) -> std::io::Result<String> {
        std::fs::read_to_string(format!("/proc/{}/smaps", self.pid))
    }
}

fn vma_header(line: &str) -> Option<(u64, u64)> {
    let range = line.split_whitespace().next()?;
    let (a, b) = range.split_once('-')?;
    if a.is_empty() || !a.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// Sums smaps fields of the VMAs overlapping `[start, end)`.
pub fn smaps_sum(text: &str, start: u64, end: u64) -> Smaps {
    let mut total = Smaps::default();
    let mut cur: Option<Smaps> = None;
    for line in text.lines() {
        if let Some((a, b)) = vma_header(line) {
            if let Some(s) = cur.take() {
                total.accumulate(&s);
            }
            if a < end && b > start {
                cur = Some(Smaps::default());
            }
            continue;
        }
        let Some(s) = cur.as_mut() else { continue };
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if let Some(f) = s.field_mut(name) {
            let v = rest
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
            *f = v;
        }
    }
    if let Some(s) = cur.take() {
        total.accumulate(&s);
    }
    total
}

/// One line of /proc/PID/maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

/// The VMAs of `pid` overlapping `[start, end)` that map a file of a block device (the
/// `dev` field of /proc/PID/maps with a major number: a disk file; shmem, guest_memfd and
/// anonymous memory live on pseudo filesystems, major 0).
fn disk_file_vmas(pid: i32, start: u64, end: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut v = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(dev)) = (it.next(), it.nth(2)) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let major = dev
            .split_once(':')
            .and_then(|(m, _)| u32::from_str_radix(m, 16).ok());
        if b > start && a < end && major.is_some_and(|m| m != 0) {
            v.push((a, b));
        }
    }
    Ok(v)
}

/// VMAs of a process from /proc/PID/maps.
pub fn read_maps(pid: i32) -> std::io::Result<Vec<Vma>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut v = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let p = perms.as_bytes();
        if p.len() < 3 {
            continue;
        }
        v.push(Vma {
            start: a,
            end: b,
            read: p[0] == b'r',
            write: p[1] == b'w',
            exec: p[2] == b'x',
        });
    }
    Ok(v)
}

/// `vma_kernel_pagesize` of the VMA of `pid` containing `addr`: `KernelPageSize` of its
/// /proc/PID/smaps entry in bytes (2 MiB for a hugetlb VMA of the default size).
pub fn vma_kernel_pagesize(pid: i32, addr: u64) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut inside = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("KernelPageSize:") {
            if inside {
                let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                return Some(kb << 10);
            }
            continue;
        }
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        if let Some((a, b)) = range.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                inside = a <= addr && addr < b;
            }
        }
    }
    None
}

/// Absolute counter values under the `VmStat::named` keys; keys the host lacks are omitted.
/// The sysfs counter files `counters` reads, opened once per process (a failed open is kept
/// too). A sysfs attribute produces its current value on every read at offset 0 (kernfs'
/// seq_file starts over), so a snapshot costs one pread per counter instead of an
/// open/statx/read/close each: ~160 mTHP stat files, taken at every checkpoint.
static SYSFS_COUNTERS: std::sync::Mutex<Option<HashMap<String, Option<File>>>> =
    std::sync::Mutex::new(None);

fn read_sysfs_num(open: &mut HashMap<String, Option<File>>, path: String) -> Option<i64> {
    let f = open
        .entry(path)
        .or_insert_with_key(|p| File::open(p).ok())
        .as_ref()?;
    let mut buf = [0u8; 32];
    let n = f.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// The hugetlb and swap lines of `/proc/meminfo` as `meminfo.<name>` (hugetlb in pages,
/// `Hugetlb` and the swap lines in kB), the names `Kernel::hugetlb_meminfo` and
/// `Kernel::swap_meminfo` give the model's.
pub fn parse_meminfo(t: &str) -> Vec<(String, i64)> {
    const NAMES: [&str; 8] = thpsim_kernel::observe::MEMINFO_FIELDS;
    let mut v = Vec::new();
    for l in t.lines() {
        let Some((k, rest)) = l.split_once(':') else {
            continue;
        };
        if NAMES.contains(&k) {
            // Unsigned in the kernel (HugePages_Rsvd can wrap below zero): the same 64 bits.
            let n = rest
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .map(thpsim_kernel::util::wrapping_to_i64);
            if let Some(n) = n {
                v.push((format!("meminfo.{k}"), n));
            }
        }
    }
    v
}

/// The 1 GiB hstate's sysfs counters as `hugepages-1048576kB.<file>` (pages; unsigned in
/// the kernel, read back as the same 64 bits like `HugePages_Rsvd`).
pub fn hstate_1g_counters() -> Vec<(String, i64)> {
    use thpsim_kernel::observe::{HSTATE_1G_FIELDS, HSTATE_1G_PREFIX};
    HSTATE_1G_FIELDS
        .iter()
        .filter_map(|f| {
            let t =
                std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/{HSTATE_1G_PREFIX}/{f}"))
                    .ok()?;
            let n = t.trim().parse::<u64>().ok()?;
            Some((
                format!("{HSTATE_1G_PREFIX}.{f}"),
                thpsim_kernel::util::wrapping_to_i64(n),
            ))
        })
        .collect()
}

pub fn counters() -> BTreeMap<String, i64> {
    let mut vm: HashMap<String, i64> = HashMap::new();
    if let Ok(t) = std::fs::read_to_string("/proc/vmstat") {
        for l in t.lines() {
            if let Some((k, v)) = l.split_once(' ') {
                if let Ok(v) = v.trim().parse::<i64>() {
                    vm.insert(k.to_string(), v);
                }
            }
        }
    }
    let mut open = SYSFS_COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    let open = open.get_or_insert_with(HashMap::new);
    let mut read_num = |p: String| read_sysfs_num(open, p);
    let mut out = BTreeMap::new();
    for (key, _) in VmStat::default().named() {
        let val = if let Some(n) = key.strip_prefix("vmstat.") {
            vm.get(n).copied()
        } else if let Some(rest) = key.strip_prefix("mthp.") {
            // mthp.<size>kB.<stat>
            rest.split_once("kB.").and_then(|(size, stat)| {
                read_num(format!("{THP_DIR}/hugepages-{size}kB/stats/{stat}"))
            })
        } else if let Some(n) = key.strip_prefix("khugepaged.") {
            read_num(format!("{THP_DIR}/khugepaged/{n}"))
        } else {
            None
        };
        if let Some(v) = val {
            out.insert(key, v);
        }
    }
    if let Ok(t) = std::fs::read_to_string("/proc/meminfo") {
        out.extend(parse_meminfo(&t));
    }
    out.extend(hstate_1g_counters());
    if let Ok(t) = std::fs::read_to_string("/proc/buddyinfo") {
        out.extend(parse_buddyinfo(&t));
    }
    if let Ok(t) = std::fs::read_to_string("/proc/pagetypeinfo") {
        out.extend(parse_pageblock_counts(&t));
    }
    out
}

/// `/proc/buddyinfo` as `buddyinfo.<zone>.<order>` (the model's keys). System-wide and
/// moved by every process: observed, never compared (`check` skips them).
pub fn parse_buddyinfo(t: &str) -> Vec<(String, i64)> {
    let mut v = vec![];
    for l in t.lines() {
        let mut w = l.split_whitespace();
        // "Node 0, zone   Normal   1522 1042 ..."
        if w.next() != Some("Node") {
            continue;
        }
        let (_, Some("zone"), Some(zone)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        for (o, n) in w.enumerate() {
            if let Ok(n) = n.parse::<i64>() {
                v.push((format!("buddyinfo.{zone}.{o}"), n));
            }
        }
    }
    v
}

/// The "Number of blocks type" table of `/proc/pagetypeinfo` as
/// `pagetypeinfo.<zone>.<type>` (observe-only, like buddyinfo).
pub fn parse_pageblock_counts(t: &str) -> Vec<(String, i64)> {
    let mut v = vec![];
    let mut types: Vec<&str> = vec![];
    for l in t.lines() {
        if let Some(rest) = l.strip_prefix("Number of blocks type") {
            types = rest.split_whitespace().collect();
            continue;
        }
        if types.is_empty() {
            continue;
        }
        let mut w = l.split_whitespace();
        if w.next() != Some("Node") {
            continue;
        }
        let (_, Some("zone"), Some(zone)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        for (ty, n) in types.iter().zip(w) {
            if let Ok(n) = n.parse::<i64>() {
                v.push((format!("pagetypeinfo.{zone}.{ty}"), n));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buddyinfo_and_pageblock_counts_parse() {
        let b = "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 \n\
                 Node 0, zone   Normal   1522   1042    414     77    323    277     87     11      4      1      7 \n";
        let v = parse_buddyinfo(b);
        assert_eq!(v.len(), 22);
        assert!(v.contains(&("buddyinfo.DMA.10".into(), 3)));
        assert!(v.contains(&("buddyinfo.Normal.0".into(), 1522)));
        let p = "Page block order: 9\n\nNumber of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate \n\
                 Node 0, zone      DMA            1            7            0            0            0 \n\
                 Node 0, zone   Normal           41          960           23            0            0 \n";
        let v = parse_pageblock_counts(p);
        assert_eq!(v.len(), 10);
        assert!(v.contains(&("pagetypeinfo.Normal.Movable".into(), 960)));
        assert!(v.contains(&("pagetypeinfo.DMA.Unmovable".into(), 1)));
    }
    #[test]
    fn smaps_parsing() {
        let t = "\
7f0000000000-7f0000200000 rw-p 00000000 00:00 0 
Size:               2048 kB
Rss:                2048 kB
AnonHugePages:      2048 kB
THPeligible:        1
VmFlags: rd wr mr mw me ac hg
7f0000200000-7f0000400000 rw-p 00000000 00:00 0 
Size:               2048 kB
Rss:                   4 kB
THPeligible:        1
7f0000600000-7f0000800000 rw-p 00000000 00:00 0 
Size:               2048 kB
";
        let s = smaps_sum(t, 0x7f0000000000, 0x7f0000400000);
        assert_eq!(s.size, 4096);
        assert_eq!(s.rss, 2052);
        assert_eq!(s.anon_huge_pages, 2048);
        assert_eq!(s.thp_eligible, 1);
    }
    #[test]
    fn knob_values() {
        assert_eq!(
            crate::sysfs::parse_knob_value("always [madvise] never\n"),
            "madvise"
        );
        assert_eq!(crate::sysfs::parse_knob_value("10000\n"), "10000");
    }
}
