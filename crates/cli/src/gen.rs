//! `thpsim gen`: scenario generators for the VMM workloads of docs/workloads.md,
//! parameterised so that users can sweep guest size, thread count, zero-page
//! share, write share, seed and kernel profile. Each generator prints a complete `.thps` file
//! whose header names the workload, the program's code path and every parameter; the body has
//! checkpoints at the phase boundaries and no expectations beyond `errno` (the numbers are what
//! the user wants to see). Offsets that depend on the seed are chosen here with a small
//! deterministic generator, so the same command line always prints the same file.

use std::fmt::Write as _;

use thpsim_scenario::parse::{fmt_size, parse_size};

const K4: u64 = 4 << 10;
const M2: u64 = 2 << 20;
const PAGES_PER_PMD: u64 = 512;

/// The workloads `thpsim gen` knows: name, one-line description, the source it follows.
pub const WORKLOADS: &[(&str, &str, &str)] = &[
    (
        "prealloc-populate",
        "QEMU prealloc=on: probe, then MADV_POPULATE_WRITE in thread chunks",
        "QEMU util/oslib-posix.c qemu_prealloc_mem/touch_all_pages, v8.0-master",
    ),
    (
        "prealloc-touch",
        "QEMU prealloc=on fallback (kernels < 5.14): read + write back one byte per 4 KiB",
        "QEMU util/oslib-posix.c do_touch_pages, v8.0-master",
    ),
    (
        "precopy",
        "QEMU precopy destination: data pages written, ZERO records read (per --qemu/--multifd)",
        "QEMU migration/ram.c ram_load_precopy/ram_handle_zero, multifd.c \
         multifd_recv_zero_page_process, v8.0-master",
    ),
    (
        "mapped-ram",
        "QEMU restore from a mapped-ram migration file (-incoming): only the pages the file's bitmap marks as data are read into RAM",
        "QEMU migration/ram.c parse_ramblock_mapped_ram/read_ramblock_mapped_ram (mapped-ram \
         capability, 9.0+), handle_zero_mapped_ram (0ecd285824), save_zero_page",
    ),
    (
        "postcopy",
        "QEMU postcopy destination: discard, NOHUGEPAGE, uffd MISSING, 4 KiB COPY/ZEROPAGE",
        "QEMU migration/postcopy-ram.c postcopy_ram_incoming_init/_setup/_cleanup, \
         postcopy_place_page(_zero), v8.0-master",
    ),
    (
        "background-snapshot",
        "QEMU background snapshot: read-prefault, uffd-wp, every page unprotected after saving",
        "QEMU migration/ram.c ram_write_tracking_prepare/_start, ram_save_release_protection, \
         v8.0-master",
    ),
    (
        "balloon",
        "virtio-balloon 4 KiB inflate vs 2 MiB free-page reporting",
        "QEMU hw/virtio/virtio-balloon.c balloon_inflate_page, virtio_balloon_handle_report",
    ),
    (
        "virtio-mem",
        "QEMU virtio-mem: plug with prealloc, unplug of 2 MiB blocks, re-plug",
        "QEMU hw/virtio/virtio-mem.c virtio_mem_set_block_state, ram_block_discard_range",
    ),
    (
        "cloud-hypervisor",
        "Cloud Hypervisor prefault=on: POPULATE_WRITE, then MADV_HUGEPAGE",
        "cloud-hypervisor vmm/src/memory_manager.rs create_ram_region_raw, HEAD ae44c2971c",
    ),
    (
        "ch-restore",
        "Cloud Hypervisor on-demand restore: uffd MISSING (also for shared memfd RAM, --backend memfd), 4 KiB UFFDIO_COPY, address-order prefault",
        "cloud-hypervisor vmm/src/memory_manager.rs restore_by_uffd/uffd_handler_loop, \
         HEAD ae44c2971c",
    ),
    (
        "ch-postcopy-shared",
        "Cloud Hypervisor postcopy on shared memfd RAM: uffd MISSING+MINOR, 4 KiB UFFDIO_CONTINUE, address-order prefault",
        "cloud-hypervisor vmm/src/uffd.rs SocketUffdMemorySource::resolve, vmm/src/memory_manager.rs \
         prepare_uffd/uffd_handler_loop, commit 435a65bb2, HEAD ae44c2971c",
    ),
    (
        "firecracker",
        "Firecracker boot, huge_pages=Transparent: aligned mmap, one MADV_HUGEPAGE per region",
        "firecracker src/vmm/src/vstate/memory.rs allocate_protected/create, PR #6003 535c62675; \
         --balloon: vstate/memory.rs discard_range, devices/virtio/balloon/device.rs, HEAD 81b38b9dad",
    ),
    (
        "firecracker-file-restore",
        "Firecracker snapshot restore, File backend: MAP_PRIVATE of the memory file, guest reads map the page cache, writes COW; --balloon: MAP_FIXED anonymous remaps",
        "firecracker src/vmm/src/persist.rs restore_from_snapshot/guest_memory_from_file, \
         src/vmm/src/vstate/memory.rs snapshot_file/create/discard_range, \
         devices/virtio/balloon/device.rs process_inflate/process_free_page_reporting_queue, \
         HEAD 81b38b9dad",
    ),
    (
        "firecracker-memfd",
        "Firecracker with a vhost-user-blk device: guest RAM one sealed memfd mapped MAP_SHARED per region; balloon inflate as MADV_DONTNEED",
        "firecracker src/vmm/src/resources.rs allocate_memory_regions, src/vmm/src/vstate/memory.rs \
         memfd_backed/create_memfd/create/discard_range, devices/virtio/balloon/device.rs \
         process_inflate, HEAD 81b38b9dad",
    ),
    (
        "qemu-file-ram",
        "QEMU memory-backend-file guest RAM (or a fake NVDIMM) on a disk file: prealloc MADV_POPULATE_WRITE vs POPULATE_READ, dirty pages and writeback",
        "QEMU backends/hostmem-file.c file_backend_memory_alloc, softmmu/physmem.c (system/ \
         from 8.2) file_ram_alloc/ram_block_add, util/mmap-alloc.c qemu_ram_mmap, \
         util/oslib-posix.c qemu_prealloc_mem, v8.0-master",
    ),
    (
        "kubevirt-thp",
        "KubeVirt THP backing: prealloc 4 threads, mlock, one MADV_COLLAPSE pass, 95% policy",
        "kubevirt/enhancements VEP 383 (PR #384 fe9b0a9) + QEMU backends/hostmem.c",
    ),
    (
        "criu-lazy",
        "CRIU lazy restore: THP disabled while filling, uffd MISSING, growing UFFDIO_COPY chunks",
        "criu criu/uffd.c handle_page_fault/xfer_pages, criu/mem.c maybe_disable_thp, HEAD 2cf8f13",
    ),
    (
        "jemalloc-hpa",
        "hugepage-aware malloc: 2 MiB pageslabs, hugify (HUGEPAGE+COLLAPSE), purge (NOHUGEPAGE+DONTNEED)",
        "jemalloc src/hpa.c hpa_try_hugify/hpa_try_purge, src/hpa_hooks.c 04adb149",
    ),
    (
        "tcmalloc-hpaa",
        "TCMalloc hugepage-aware allocator: PROT_NONE 1 GiB regions, mprotect per hugepage, subrelease (DONTNEED), usermode MADV_COLLAPSE",
        "tcmalloc internal/system_allocator.h MmapRegion::Alloc/ReleasePages/Collapse, huge_page_treatment.h, HEAD fce3f55d",
    ),
];

/// The `--help` text listing every workload and its source.
pub fn help_text() -> String {
    let mut s = String::from("Workloads (the source each follows):\n");
    for (n, what, src) in WORKLOADS {
        let _ = writeln!(s, "  {n:<20} {what}\n  {:<20} [{src}]", "");
    }
    s
}

/// Generator parameters: the options of `thpsim gen` (and of `sweep --gen`), sizes parsed.
#[derive(Clone, Debug, clap::Args)]
pub struct GenParams {
    pub workload: String,
    /// Guest RAM size (a multiple of 2M).
    #[arg(long, default_value = "4G", value_parser = parse_guest)]
    pub guest: u64,
    /// Prealloc/prefault threads.
    #[arg(long, default_value_t = 12)]
    pub threads: u32,
    /// Percentage of zero pages (precopy, postcopy), never-touched RAM (background-snapshot),
    /// RAM given back (balloon) or a slab's/hugepage's freed share (jemalloc-hpa,
    /// tcmalloc-hpaa).
    #[arg(long, default_value_t = 30)]
    pub zero_share: u32,
    /// Percentage of pages (background-snapshot) or 2 MiB blocks (postcopy, ch-restore,
    /// criu-lazy, jemalloc-hpa, tcmalloc-hpaa) the guest writes or frees from.
    #[arg(long, default_value_t = 1)]
    pub write_share: u32,
    /// Percentage of RAM the guest used before a precopy migration (the rest never touched).
    #[arg(long, default_value_t = 100)]
    pub used: u32,
    /// QEMU memory backend of guest RAM: `anon` (memory-backend-ram) or `memfd`
    /// (memory-backend-memfd, share=on: a shmem object, huge pages by `shmem_enabled`);
    /// prealloc-populate, prealloc-touch, precopy, balloon and ch-restore (`shared=on` RAM,
    /// restored by MISSING + UFFDIO_COPY).
    #[arg(long, default_value = "anon", value_parser = ["anon", "memfd"])]
    pub backend: String,
    /// Precopy: migration iterations; 1 is the bulk stage only, each later one resends the
    /// pages the guest dirtied meanwhile (`--dirty-share`).
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    /// Precopy: percentage of guest pages the guest dirties (writes data to) between two
    /// iterations, anywhere in its RAM.
    #[arg(long, default_value_t = 1)]
    pub dirty_share: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Kernel profile of the generated `kernel` line.
    #[arg(long, default_value = "6.18")]
    pub kernel: String,
    /// QEMU version (8.0 … 10.2, master): the multifd zero-page handling of precopy and
    /// postcopy.
    #[arg(long, default_value = "10.2")]
    pub qemu: String,
    /// Multifd migration (precopy, postcopy).
    #[arg(long)]
    pub multifd: bool,
    /// The postcopy-ram capability is on during precopy (QEMU 10.1+ multifd: zero pages
    /// are written).
    #[arg(long)]
    pub postcopy_ram: bool,
    /// qemu-file-ram: memory-backend-file `share=` (on: MAP_SHARED, the guest writes the
    /// file's page cache; off: MAP_PRIVATE, writes copy to anonymous memory).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub share: String,
    /// qemu-file-ram: how the RAM is prefaulted before the guest runs: `write`
    /// (prealloc=on: qemu_prealloc_mem's MADV_POPULATE_WRITE), `read` (MADV_POPULATE_READ,
    /// what the populate thread proposes for a read-mostly file such as a fake NVDIMM; QEMU
    /// itself only issues _WRITE) or `none`.
    #[arg(long, default_value = "write", value_parser = ["write", "read", "none"])]
    pub populate: String,
    /// qemu-file-ram: memory-backend-file `align=` (default: the file's page size, 4K, so
    /// the mapping is only page-aligned); a power of two.
    #[arg(long, default_value = "4K", value_parser = parse_align)]
    pub align: u64,
    /// qemu-file-ram: the backend is a fake NVDIMM (`-device nvdimm,memdev=…`): an existing
    /// file the guest reads through and writes little.
    #[arg(long)]
    pub nvdimm: bool,
    /// firecracker-file-restore, firecracker-memfd: machine-config `huge_pages` (`none`,
    /// `transparent`: MADV_HUGEPAGE per region, `2M`: hugetlbfs, a hugetlb memfd; the File
    /// restore backend refuses it).
    #[arg(long, default_value = "none", value_parser = ["none", "transparent", "2M"])]
    pub huge_pages: String,
    /// firecracker, firecracker-file-restore: the balloon after the guest's writes, as a
    /// percentage: one
    /// run of that share of the pages of every 2 MiB block of the first half of each region
    /// inflated (4 KiB PFNs compacted into ranges), and that share of the 2 MiB blocks of the
    /// second half reported whole (free page reporting); each range is remapped anonymous
    /// (discard_range's MAP_FIXED) on a file restore, MADV_DONTNEED'd on anonymous memory,
    /// then the guest reuses it. 0: no balloon.
    #[arg(long, default_value_t = 0)]
    pub balloon: u32,
    /// firecracker-file-restore with --balloon: madvise(MADV_HUGEPAGE) each remapped range
    /// again (NOT what Firecracker does at 81b38b9dad: the what-if of a fix).
    #[arg(long)]
    pub balloon_readvise: bool,
    /// Host-sized form: no `memory` line, no khugepaged or shrinker steps.
    #[arg(long)]
    pub host: bool,
    /// End with a khugepaged full scan at the default pace where the workload has none
    /// (precopy, prealloc, …), for `khugepaged.max_ptes_*` sweeps.
    #[arg(long)]
    pub khugepaged: bool,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            workload: "precopy".into(),
            guest: 4 << 30,
            threads: 12,
            zero_share: 30,
            write_share: 1,
            used: 100,
            backend: "anon".into(),
            iterations: 1,
            dirty_share: 1,
            seed: 1,
            kernel: "6.18".into(),
            qemu: "10.2".into(),
            multifd: false,
            postcopy_ram: false,
            share: "on".into(),
            populate: "write".into(),
            align: K4,
            nvdimm: false,
            huge_pages: "none".into(),
            balloon: 0,
            balloon_readvise: false,
            host: false,
            khugepaged: false,
        }
    }
}

/// Parses a `--guest` value: a size (`4G`, `512M`, …), a positive multiple of 2 MiB.
pub fn parse_guest(s: &str) -> Result<u64, String> {
    let v = parse_size(s).map_err(|e| e.to_string())?;
    if v == 0 || v % M2 != 0 {
        return Err(format!(
            "guest size `{s}` must be a positive multiple of 2M"
        ));
    }
    if v > 4 << 40 {
        return Err(format!("guest size `{s}` is larger than 4T"));
    }
    Ok(v)
}

/// Parses an `--align` value: a power of two from 4K to 1G (QEMU's file_ram_alloc wants a
/// power of two and a multiple of the file's page size).
pub fn parse_align(s: &str) -> Result<u64, String> {
    let v = parse_size(s).map_err(|e| e.to_string())?;
    if !v.is_power_of_two() || !(K4..=1 << 30).contains(&v) {
        return Err(format!(
            "alignment `{s}` must be a power of two from 4K to 1G"
        ));
    }
    Ok(v)
}

/// Parses a `--qemu` version `MAJOR.MINOR[.PATCH]` (or `master`, taken as 10.2).
pub fn parse_qemu(s: &str) -> Result<(u32, u32), String> {
    if s == "master" {
        return Ok((10, 2));
    }
    let mut it = s.split('.');
    let bad = || format!("QEMU version `{s}`: expected MAJOR.MINOR (e.g. 9.1, 10.1) or master");
    let major: u32 = it.next().and_then(|m| m.parse().ok()).ok_or_else(bad)?;
    let minor: u32 = it.next().and_then(|m| m.parse().ok()).ok_or_else(bad)?;
    if let Some(patch) = it.next() {
        patch.parse::<u32>().map_err(|_| bad())?;
    }
    if it.next().is_some() {
        return Err(bad());
    }
    if (major, minor) < (8, 0) {
        return Err(format!(
            "QEMU version `{s}`: the recipes follow 8.0 and later"
        ));
    }
    Ok((major, minor))
}

/// How a precopy destination handles the pages the source found zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroMode {
    /// No multifd (any version) or zero-page-detection=legacy: RAM_SAVE_FLAG_ZERO records on
    /// the main stream, in address order; ram_handle_zero reads the page (buffer_is_zero).
    Legacy,
    /// 8.x multifd: zero records on the main channel, data pages on the multifd channels;
    /// which comes first in a block depends on timing.
    Multifd8,
    /// 9.0 multifd: each 128-page packet's zero pages are read before its data pages are
    /// written; a block's 4 packets may run on different channels.
    Multifd90,
    /// 9.1+ multifd: a zero page seen for the first time is not touched.
    Multifd91,
    /// 10.1+ multifd with postcopy-ram: every zero page is memset.
    Multifd101Memset,
}

impl ZeroMode {
    pub fn of(p: &GenParams) -> Result<ZeroMode, String> {
        let v = parse_qemu(&p.qemu)?;
        Ok(if !p.multifd {
            ZeroMode::Legacy
        } else if v < (9, 0) {
            ZeroMode::Multifd8
        } else if v < (9, 1) {
            ZeroMode::Multifd90
        } else if v >= (10, 1) && p.postcopy_ram {
            ZeroMode::Multifd101Memset
        } else {
            ZeroMode::Multifd91
        })
    }
    fn describe(self) -> &'static str {
        match self {
            ZeroMode::Legacy => "no multifd: RAM_SAVE_FLAG_PAGE -> qemu_get_buffer (memcpy, a write only); \
                RAM_SAVE_FLAG_ZERO -> ram_handle_zero: buffer_is_zero (a read), memset only if not zero; \
                one stream in address order (ram_load_precopy)",
            ZeroMode::Multifd8 => "multifd 8.x: zero pages found by save_zero_page on the migration thread go \
                out on the main channel (ram_handle_zero: a read), data pages in 128-page packets on the \
                multifd channels (nocomp_recv_pages: readv, a write); the order inside a block is \
                timing-dependent: seeded here (a coin per mixed block)",
            ZeroMode::Multifd90 => "multifd 9.0 (303e6f54f9): the send thread sorts each 128-page packet; \
                multifd_recv_zero_page_process reads (buffer_is_zero) the packet's zero pages before the \
                readv of its data pages; the 4 packets of a block may run on different channels: the \
                first one handled is seeded here",
            ZeroMode::Multifd91 => "multifd 9.1+ (5ef7e26bdb): multifd_recv_zero_page_process only sets \
                receivedmap for a zero page seen for the first time (no access); data pages: readv",
            ZeroMode::Multifd101Memset => "multifd 10.1+ with the postcopy-ram capability (249543d0c0): every \
                zero page is memset (a write of zeros); data pages: readv",
        }
    }
}

/// splitmix64 (`progen::SeedRng`): the offsets only need to be reproducible.
struct Rng(thpsim_scenario::progen::SeedRng);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(thpsim_scenario::progen::SeedRng::new(seed))
    }
    fn next(&mut self) -> u64 {
        use thpsim_scenario::progen::Entropy;
        self.0.next_u64()
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u32) -> bool {
        self.below(100) < pct as u64
    }
}

/// `ram+OFF LEN` with the offset and length in the largest exact unit.
fn range(off: u64, len: u64) -> String {
    format!("ram+{} {}", fmt_size(off), fmt_size(len))
}

/// `NAME+OFF LEN`.
fn nrange(name: &str, off: u64, len: u64) -> String {
    format!("{name}+{} {}", fmt_size(off), fmt_size(len))
}

/// QEMU's thread chunks (`qemu_prealloc_mem`/`touch_all_pages`): `numpages / threads` host
/// pages each, the first `numpages % threads` threads one page more. Cloud Hypervisor splits
/// the same way. Returns (offset, length) per thread.
fn chunks(size: u64, threads: u64) -> Vec<(u64, u64)> {
    let pages = size / K4;
    let (base, rem) = (pages / threads, pages % threads);
    let mut off = 0;
    (0..threads)
        .map(|i| {
            let len = (base + u64::from(i < rem)) * K4;
            let c = (off, len);
            off += len;
            c
        })
        .collect()
}

/// QEMU's thread count (get_memset_num_threads): min(prealloc-threads, 16
/// (MAX_MEM_PREALLOC_THREAD_COUNT)), at most one thread per 64 MiB. (QEMU also caps it at
/// the host's online CPUs; prealloc-threads defaults to the vCPU count.)
fn qemu_threads(guest: u64, want: u32) -> u64 {
    (want.max(1) as u64)
        .min(16)
        .min((guest / (64 << 20)).max(1))
}

/// Cloud Hypervisor's prefault thread count: min(threads, 16 (MAX_PREFAULT_THREAD_COUNT),
/// pages, max(1, size / 4 GiB)) (the divisor is 64 << 26 = 4 GiB).
fn ch_threads(guest: u64, want: u32) -> u64 {
    (want.max(1) as u64)
        .min(16)
        .min(guest / K4)
        .min((guest / (4 << 30)).max(1))
}

/// khugepaged at the default pace (pages_to_scan 4096 = 8 ranges per pass, a pass every
/// 10 s): seconds for one full scan of `guest`, plus one pass.
fn khugepaged_full_scan_secs(guest: u64) -> u64 {
    (guest / M2).div_ceil(8) * 10 + 10
}

fn memory_for(guest: u64) -> u64 {
    // Twice the guest, rounded up to 1 GiB, plus 1 GiB (a multiple of 4M, as `memory`
    // requires). The model has no compaction: the order-0 pages a collapse frees need not
    // merge back into 2 MiB blocks, so a collapse of all RAM needs as much free memory again.
    (2 * guest).div_ceil(1 << 30) * (1 << 30) + (1 << 30)
}

/// Prints the scenario for `p`, or an error message for the user.
pub fn generate(p: &GenParams) -> Result<String, String> {
    let Some((_, what, source)) = WORKLOADS.iter().find(|(n, _, _)| *n == p.workload) else {
        let names: Vec<&str> = WORKLOADS.iter().map(|(n, _, _)| *n).collect();
        return Err(format!(
            "unknown workload `{}`; one of: {}",
            p.workload,
            names.join(", ")
        ));
    };
    if p.zero_share > 100 || p.write_share > 100 || p.used > 100 || p.dirty_share > 100 {
        return Err(
            "--zero-share, --write-share, --used and --dirty-share are percentages (0-100)".into(),
        );
    }
    if p.iterations == 0 {
        return Err("--iterations counts the bulk stage: at least 1".into());
    }
    if p.backend == "memfd"
        && !matches!(
            p.workload.as_str(),
            "prealloc-populate" | "prealloc-touch" | "precopy" | "balloon" | "ch-restore"
        )
    {
        return Err(format!(
            "--backend memfd is generated for prealloc-populate, prealloc-touch, precopy, balloon and ch-restore, not `{}`",
            p.workload
        ));
    }
    let file_ram_opts = p.share != "on" || p.populate != "write" || p.align != K4 || p.nvdimm;
    if file_ram_opts && p.workload != "qemu-file-ram" {
        return Err(format!(
            "--share, --populate, --align and --nvdimm are qemu-file-ram options, not for `{}`",
            p.workload
        ));
    }
    if p.huge_pages != "none"
        && p.workload != "firecracker-file-restore"
        && p.workload != "firecracker-memfd"
    {
        return Err(format!(
            "--huge-pages is a firecracker-file-restore and firecracker-memfd option, not for `{}`",
            p.workload
        ));
    }
    if p.workload == "firecracker-file-restore" && p.huge_pages == "2M" {
        return Err("--huge-pages 2M: Firecracker refuses to restore a hugetlbfs guest from its memory \
            file (persist.rs restore_from_snapshot: GuestMemoryFromFileError::HugetlbfsSnapshot, \
            \"Please use uffd\"); its Uffd backend is anonymous memory filled by 4 KiB UFFDIO_COPY, \
            the shape of ch-restore"
            .into());
    }
    if p.balloon > 0
        && !matches!(
            p.workload.as_str(),
            "firecracker" | "firecracker-file-restore"
        )
    {
        return Err(format!(
            "--balloon is a firecracker and firecracker-file-restore option, not for `{}`",
            p.workload
        ));
    }
    if p.balloon_readvise && p.workload != "firecracker-file-restore" {
        return Err(format!(
            "--balloon-readvise is a firecracker-file-restore option (anonymous memory keeps \
             VM_HUGEPAGE), not for `{}`",
            p.workload
        ));
    }
    if p.balloon > 100 {
        return Err("--balloon is a percentage (0-100)".into());
    }
    if p.balloon_readvise && (p.balloon == 0 || p.huge_pages != "transparent") {
        return Err(
            "--balloon-readvise re-applies huge_pages=Transparent's MADV_HUGEPAGE: it needs \
             --balloon P and --huge-pages transparent"
                .into(),
        );
    }
    if p.iterations > 1 && p.workload != "precopy" {
        return Err(format!(
            "--iterations is a precopy option; `{}` has one pass",
            p.workload
        ));
    }
    if p.guest % M2 != 0 || p.guest == 0 {
        return Err("--guest must be a positive multiple of 2M".into());
    }
    let qemu = parse_qemu(&p.qemu)?;
    let mut s = String::new();
    let g = fmt_size(p.guest);
    let _ = write!(s, "# Generated by: thpsim gen {} --guest {g} --threads {} --zero-share {} --write-share {} --used {} --seed {} --kernel {} --qemu {}",
        p.workload, p.threads, p.zero_share, p.write_share, p.used, p.seed, p.kernel, p.qemu);
    if p.iterations > 1 {
        let _ = write!(
            s,
            " --iterations {} --dirty-share {}",
            p.iterations, p.dirty_share
        );
    }
    if p.backend != "anon" {
        let _ = write!(s, " --backend {}", p.backend);
    }
    if p.share != "on" {
        let _ = write!(s, " --share {}", p.share);
    }
    if p.populate != "write" {
        let _ = write!(s, " --populate {}", p.populate);
    }
    if p.align != K4 {
        let _ = write!(s, " --align {}", fmt_size(p.align));
    }
    if p.huge_pages != "none" {
        let _ = write!(s, " --huge-pages {}", p.huge_pages);
    }
    if p.nvdimm {
        s.push_str(" --nvdimm");
    }
    if p.balloon > 0 {
        let _ = write!(s, " --balloon {}", p.balloon);
    }
    for (on, flag) in [
        (p.multifd, "--multifd"),
        (p.postcopy_ram, "--postcopy-ram"),
        (p.balloon_readvise, "--balloon-readvise"),
        (p.host, "--host"),
        (p.khugepaged, "--khugepaged"),
    ] {
        if on {
            let _ = write!(s, " {flag}");
        }
    }
    s.push('\n');
    let _ = writeln!(s, "# Workload: {what}.");
    let _ = writeln!(
        s,
        "# Source: {}.",
        source.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let (doc, ops) = match p.workload.as_str() {
        "prealloc-populate" => prealloc(p, true),
        "prealloc-touch" => prealloc(p, false),
        "precopy" => precopy(p)?,
        "mapped-ram" => mapped_ram(p, qemu)?,
        "postcopy" => postcopy(p, qemu)?,
        "background-snapshot" => background_snapshot(p),
        "balloon" => balloon(p),
        "virtio-mem" => virtio_mem(p),
        "cloud-hypervisor" => cloud_hypervisor(p),
        "ch-restore" => ch_restore(p),
        "ch-postcopy-shared" => ch_postcopy_shared(p),
        "firecracker" => firecracker(p),
        "firecracker-file-restore" => firecracker_file_restore(p),
        "firecracker-memfd" => firecracker_memfd(p),
        "qemu-file-ram" => qemu_file_ram(p),
        "kubevirt-thp" => kubevirt(p),
        "criu-lazy" => criu_lazy(p),
        "jemalloc-hpa" => jemalloc_hpa(p),
        "tcmalloc-hpaa" => tcmalloc_hpaa(p),
        _ => unreachable!(),
    };
    let mut ops = ops;
    if p.khugepaged && !ops.contains("checkpoint khugepaged-full-scan") {
        khugepaged_step(p, &mut ops, p.guest);
    }
    for line in doc.lines() {
        let _ = writeln!(s, "# {line}");
    }
    let _ = writeln!(s, "kernel {}", p.kernel);
    if !p.host {
        let _ = writeln!(s, "memory {}", fmt_size(memory_for(p.guest)));
    }
    let _ = writeln!(s, "sysfs enabled=madvise defrag=madvise use_zero_page=1");
    s.push_str(&ops);
    Ok(s)
}

/// The khugepaged step at the default pace (left out of host variants).
fn khugepaged_step(p: &GenParams, ops: &mut String, size: u64) {
    if p.host {
        return;
    }
    let secs = khugepaged_full_scan_secs(size);
    let _ = writeln!(
        ops,
        "sleep {secs}s                       # khugepaged, default pace"
    );
    ops.push_str("checkpoint khugepaged-full-scan\n");
}

/// QEMU guest RAM: 2 MiB-aligned private anonymous memory with MADV_HUGEPAGE (ram_block_add).
fn qemu_ram(p: &GenParams, ops: &mut String) {
    // memfd: backends/hostmem-memfd.c memfd_backend_memory_alloc: qemu_memfd_create
    // (memfd_create + ftruncate + seals), share=on by default, then
    // qemu_ram_alloc_from_fd -> qemu_ram_mmap with MAP_SHARED.
    guest_ram(
        ops,
        p.guest,
        (p.backend == "memfd").then_some((
            "ramfd",
            "memfd_backend_memory_alloc: qemu_memfd_create",
            "qemu_ram_mmap(MAP_SHARED): QEMU_VMALLOC_ALIGN",
        )),
        "   # qemu_ram_mmap: QEMU_VMALLOC_ALIGN",
    );
    let _ = writeln!(ops, "madvise ram HUGEPAGE                 # ram_block_add");
}

/// Guest RAM `ram` of `size`, 2 MiB-aligned: a memfd (name, why, why of the mmap) mapped
/// shared, or private anonymous memory (`anon_note` ends the line).
fn guest_ram(ops: &mut String, size: u64, memfd: Option<(&str, &str, &str)>, anon_note: &str) {
    let g = fmt_size(size);
    match memfd {
        Some((fd, why, map_why)) => {
            let _ = writeln!(ops, "memfd {fd} {g}   # {why}");
            let _ = writeln!(ops, "mmap ram {g} {fd} shared rw align=2M   # {map_why}");
        }
        None => {
            let _ = writeln!(ops, "mmap ram {g} anon private rw align=2M{anon_note}");
        }
    }
}

/// `ram_block_discard_range` of `[off, off+len)` of the guest RAM (system/physmem.c, 8.0-master):
/// for memory-backend-ram an MADV_DONTNEED; for a memfd (`rb->fd` set, 4 KiB pages) first
/// `fallocate(PUNCH_HOLE|KEEP_SIZE)` of the file range, then MADV_DONTNEED of the mapping.
fn qemu_discard(p: &GenParams, ops: &mut String, off: u64, len: u64) {
    if p.backend == "memfd" {
        let _ = writeln!(
            ops,
            "fallocate ramfd {} {} punch_hole keep_size",
            fmt_size(off),
            fmt_size(len)
        );
    }
    let _ = writeln!(ops, "madvise {} DONTNEED", range(off, len));
}

/// QEMU's prealloc of `[off, off+len)` of `name` with `t` threads: the MADV_POPULATE_WRITE
/// probe of the first host page (madv_populate_write_possible), then one madvise per thread
/// chunk (a single one over the area for one thread).
fn qemu_populate(ops: &mut String, name: &str, off: u64, len: u64, t: u64) {
    let _ = writeln!(
        ops,
        "madvise {} POPULATE_WRITE   # probe: madv_populate_write_possible",
        nrange(name, off, K4)
    );
    populate_chunks(ops, "POPULATE_WRITE", name, off, len, t);
}

/// One `madvise … ADVICE` per thread chunk of `[off, off+len)` (one over the area for one
/// thread), then the errno check.
fn populate_chunks(ops: &mut String, advice: &str, name: &str, off: u64, len: u64, t: u64) {
    if t == 1 {
        let _ = writeln!(ops, "madvise {} {advice}", nrange(name, off, len));
    } else {
        for (i, (o, l)) in chunks(len, t).into_iter().enumerate() {
            let _ = writeln!(
                ops,
                "madvise {} {advice}   # thread {i}",
                nrange(name, off + o, l)
            );
        }
    }
    ops.push_str("expect errno == ok\n");
}

fn prealloc(p: &GenParams, populate: bool) -> (String, String) {
    let t = qemu_threads(p.guest, p.threads);
    let doc = if populate {
        format!(
            "backends/hostmem.c host_memory_backend_memory_complete -> qemu_prealloc_mem: \
             madv_populate_write_possible\nprobes MADV_POPULATE_WRITE on the first page, then \
             touch_all_pages runs {t} thread(s) (--threads {}, the\nprealloc-threads property, \
             whose default is the vCPU count; capped at 16 and one per 64 MiB), each\n\
             MADV_POPULATE_WRITE on its chunk of numpages/threads 4 KiB pages (edges may cut \
             a PMD).\nParameters used: --guest, --threads, --kernel.",
            p.threads
        )
    } else {
        format!(
            "util/oslib-posix.c do_touch_pages: taken only when the MADV_POPULATE_WRITE probe \
             fails with EINVAL,\ni.e. on kernels before 5.14; the 6.12/6.18 profiles here stand \
             for the fault paths (<= 6.12: split\nhuge zero page; >= 6.13: THP on the huge-zero \
             write fault), not for a QEMU that would take this path.\n{t} thread(s) (--threads \
             {}, capped at 16 and one per 64 MiB) each read one byte and write it back\nat every \
             4 KiB page of its chunk. Parameters used: --guest, --threads, --kernel.",
            p.threads
        )
    };
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("checkpoint mapped\n");
    if populate {
        qemu_populate(&mut ops, "ram", 0, p.guest, t);
    } else {
        for (i, (off, len)) in chunks(p.guest, t).into_iter().enumerate() {
            let _ = writeln!(ops, "access {} pattern=rw   # thread {i}", range(off, len));
        }
    }
    ops.push_str("checkpoint preallocated\n");
    (doc, ops)
}

/// Per 2 MiB block of the used part of RAM: which 4 KiB pages carry data (a bitmap of 512).
struct DataMap {
    blocks: Vec<[u64; 8]>,
}

impl DataMap {
    /// The pages `write ram+0 LEN random=P% seed=S` touches (the same seeded subset).
    fn new(len: u64, pct: u32, seed: u64) -> DataMap {
        use thpsim_scenario::ast::{Subset, SubsetCount};
        let mut blocks = vec![[0u64; 8]; (len / M2) as usize];
        let subset = (pct < 100).then_some(Subset {
            count: SubsetCount::Percent(pct),
            seed,
        });
        for off in thpsim_scenario::pattern::touch_offsets(len, K4, subset) {
            let pg = off / K4;
            let b = &mut blocks[(pg / PAGES_PER_PMD) as usize];
            let i = pg % PAGES_PER_PMD;
            b[(i / 64) as usize] |= 1 << (i % 64);
        }
        DataMap { blocks }
    }
    fn is_data(&self, b: usize, i: u64) -> bool {
        self.blocks[b][(i / 64) as usize] >> (i % 64) & 1 == 1
    }
    fn count(&self, b: usize, from: u64, to: u64) -> u64 {
        (from..to).filter(|&i| self.is_data(b, i)).count() as u64
    }
    /// The first zero page of `[from, to)` in block `b`.
    fn first_zero(&self, b: usize, from: u64, to: u64) -> Option<u64> {
        (from..to).find(|&i| !self.is_data(b, i))
    }
}

/// Emits `read` lines (one byte each) at the given offsets, merging runs 2 MiB apart into one
/// `read … stride=2M`.
fn reads_at(ops: &mut String, offs: &[u64]) {
    let mut i = 0;
    while i < offs.len() {
        let mut j = i + 1;
        while j < offs.len() && offs[j] == offs[j - 1] + M2 {
            j += 1;
        }
        if j - i == 1 {
            let _ = writeln!(ops, "read ram+{}", fmt_size(offs[i]));
        } else {
            let _ = writeln!(
                ops,
                "read {} stride=2M",
                range(offs[i], (offs[j - 1] - offs[i]) + K4)
            );
        }
        i = j;
    }
}

/// The one `write` of the data pages of `[0, used)`: `data_pct` % of its pages, the seeded
/// subset [`DataMap`] describes.
fn data_pages_write(ops: &mut String, used: u64, data_pct: u32, seed: u64, what: &str) {
    if used == 0 || data_pct == 0 {
        return;
    }
    if data_pct == 100 {
        let _ = writeln!(ops, "write {}   # {what}", range(0, used));
    } else {
        let _ = writeln!(
            ops,
            "write {} random={data_pct}% seed={seed}   # {what}",
            range(0, used)
        );
    }
}

fn precopy(p: &GenParams) -> Result<(String, String), String> {
    let mode = ZeroMode::of(p)?;
    let data_pct = 100 - p.zero_share;
    let used = p.guest / M2 * p.used as u64 / 100 * M2;
    let map = DataMap::new(used, data_pct, p.seed);
    let nblocks = (used / M2) as usize;
    let mut rng = Rng::new(p.seed ^ 0x5eed);
    let (mut all_data, mut all_zero, mut mixed, mut forced) = (0u64, 0u64, 0u64, 0u64);
    let mut data_pages = 0u64;
    let mut reads: Vec<u64> = Vec::new(); // the read that comes first in its block
    for b in 0..nblocks {
        let n = map.count(b, 0, PAGES_PER_PMD);
        data_pages += n;
        let base = b as u64 * M2;
        if n == PAGES_PER_PMD {
            all_data += 1;
            continue;
        }
        if n == 0 {
            all_zero += 1;
            if matches!(
                mode,
                ZeroMode::Legacy | ZeroMode::Multifd8 | ZeroMode::Multifd90
            ) {
                reads.push(base);
            }
            continue;
        }
        mixed += 1;
        let first_read = match mode {
            ZeroMode::Legacy => (!map.is_data(b, 0)).then_some(0),
            ZeroMode::Multifd8 => {
                let z = map.first_zero(b, 0, PAGES_PER_PMD);
                if rng.chance(50) {
                    z
                } else {
                    None
                }
            }
            ZeroMode::Multifd90 => {
                let packets: Vec<Option<u64>> = (0..4)
                    .map(|k| map.first_zero(b, k * 128, (k + 1) * 128))
                    .collect();
                if packets.iter().all(Option::is_some) {
                    forced += 1;
                }
                packets[rng.below(4) as usize]
            }
            ZeroMode::Multifd91 | ZeroMode::Multifd101Memset => None,
        };
        if let Some(i) = first_read {
            reads.push(base + i * K4);
        }
    }
    let first_reads_mixed = reads.len() as u64
        - if matches!(mode, ZeroMode::Multifd91 | ZeroMode::Multifd101Memset) {
            0
        } else {
            all_zero
        };
    let untouched = p.guest - used;
    let zero_pages = used / K4 - data_pages;
    let bounds = match mode {
        ZeroMode::Legacy => "deterministic (address order)".to_string(),
        ZeroMode::Multifd8 => {
            format!("timing-dependent: 0 (every mixed block THP on its first write) to {mixed}")
        }
        ZeroMode::Multifd90 => format!(
            "timing-dependent: {forced} (blocks whose 4 packets all hold a zero page) to {mixed}"
        ),
        _ => "none: zero pages are not read".to_string(),
    };
    let (zr, zw) = match mode {
        ZeroMode::Multifd91 => (0, 0),
        ZeroMode::Multifd101Memset => (0, zero_pages + untouched / K4),
        _ => (zero_pages + untouched / K4, 0),
    };
    let doc = format!(
        "Destination of a precopy migration (bulk stage), anonymous guest RAM; {}.\n\
         Guest: {} used ({}% of RAM) with {}% zero pages scattered in it (seed {}), {} never \
         touched (all ZERO records).\n\
         Used 2 MiB blocks: {} all data, {} all zero, {} mixed. A block's first access decides \
         its fate: a write on\nan empty PMD is a THP on every kernel; a read maps the huge zero \
         page and the first data write then\nsplits it (<= 6.12, one fault per data page) or \
         allocates a THP (>= 6.13). In this run the first access\nis a read in {} of the {} \
         mixed blocks; bounds for this variant: {}.\n\
         The ops: the first read of each such block, then one `write` of every data page \
         (the same seeded subset);\nreads of zero pages after a block's first access change no \
         fault, Rss or content and are left out.\n\
         Pages copied (memcpy/readv): {}; zero pages read (buffer_is_zero): {}; zero pages \
         memset: {}.\n\
         Parameters used: --guest, --used, --zero-share, --seed, --qemu, --multifd, \
         --postcopy-ram, --kernel.",
        mode.describe(),
        fmt_size(used),
        p.used,
        p.zero_share,
        p.seed,
        fmt_size(untouched),
        all_data,
        all_zero,
        mixed,
        first_reads_mixed,
        mixed,
        bounds,
        data_pages,
        zr,
        zw
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("checkpoint mapped\n");
    if !reads.is_empty() {
        ops.push_str("# the blocks whose first access is a zero check (buffer_is_zero reads)\n");
        reads_at(&mut ops, &reads);
    }
    if untouched > 0
        && matches!(
            mode,
            ZeroMode::Legacy | ZeroMode::Multifd8 | ZeroMode::Multifd90
        )
    {
        let _ = writeln!(
            ops,
            "read {} stride=2M   # never-touched RAM: ZERO records only",
            range(used, untouched)
        );
    }
    ops.push_str("checkpoint zero-checked\n");
    data_pages_write(&mut ops, used, data_pct, p.seed, "the data pages");
    if mode == ZeroMode::Multifd101Memset {
        ops.push_str(
            "madvise ram POPULATE_WRITE           # memset of every zero page (zeros: no data)\n",
        );
    }
    ops.push_str("checkpoint loaded\n");
    let mut doc = doc;
    if p.iterations > 1 {
        let _ = write!(
            doc,
            "\nIterations 2..{n}: migration_bitmap_sync collects what the guest dirtied and \
             ram_save_iterate resends it;\nthe guest dirties {d}% of its pages (data, seeded, \
             anywhere in RAM) before each. ram_load_precopy writes them\n(RAM_SAVE_FLAG_PAGE): \
             already written pages take no fault, a page under a zero PTE is COWed, and a \
             page in a\nblock the bulk stage left as the huge zero page splits it (<= 6.12) or \
             allocates a THP (>= 6.13) — one\ndirty page can then cost 2 MiB. Pages that became \
             zero again would arrive as ZERO records (not generated).",
            n = p.iterations,
            d = p.dirty_share
        );
        for i in 2..=p.iterations {
            let _ = writeln!(
                ops,
                "write {} random={}% seed={}   # iteration {i}: the pages dirtied since",
                range(0, p.guest),
                p.dirty_share,
                p.seed.wrapping_add(u64::from(i))
            );
            let _ = writeln!(ops, "checkpoint iteration-{i}");
        }
    }
    Ok((doc, ops))
}

/// The destination of `migrate_incoming file:…` with the mapped-ram capability: the file holds
/// each RAMBlock's pages at their own offsets and a bitmap of the pages saved as data.
fn mapped_ram(p: &GenParams, qemu: (u32, u32)) -> Result<(String, String), String> {
    if qemu < (9, 0) {
        return Err(format!(
            "--qemu {}: the mapped-ram capability came with QEMU 9.0",
            p.qemu
        ));
    }
    if p.postcopy_ram {
        return Err(
            "--postcopy-ram: QEMU refuses mapped-ram with postcopy (migration/options.c migrate_caps_check: \"Mapped-ram migration is incompatible with postcopy\")".into(),
        );
    }
    let data_pct = 100 - p.zero_share;
    let used = p.guest / M2 * p.used as u64 / 100 * M2;
    let map = DataMap::new(used, data_pct, p.seed);
    let data_pages: u64 = (0..(used / M2) as usize)
        .map(|b| map.count(b, 0, PAGES_PER_PMD))
        .sum();
    let data_blocks = (0..(used / M2) as usize)
        .filter(|&b| map.count(b, 0, PAGES_PER_PMD) > 0)
        .count();
    let channels = if p.multifd {
        "with multifd each chunk is handed to a recv channel (ram_load_multifd_pages), so \
         chunks land in a timing-dependent order;\nno observable here depends on it: every \
         block's first access is a write, which on an empty PMD is a THP on every kernel"
    } else {
        "one thread, address order (qemu_get_buffer_at: pread)"
    };
    let doc = format!(
        "Destination of a migration to a file with the mapped-ram capability (QEMU 9.0+): \
         `migrate file:…` on the source,\n`-incoming defer` + `migrate_incoming file:…` here. \
         On save, save_zero_page clears a zero page's bit in the\nRAMBlock's file bitmap and \
         stores nothing; a data page is written at its own offset and its bit set.\n\
         On load, parse_ramblock_mapped_ram reads the bitmap and read_ramblock_mapped_ram \
         preads every run of set bits\nstraight into guest RAM in chunks of at most \
         MAPPED_RAM_LOAD_BUF_SIZE; {channels}.\n\
         A pread into RAM is a write fault per page (copy_to_user), as a store would be. Zero \
         pages are never touched\nby an incoming migration: before 0ecd285824 nothing handles \
         them; since, handle_zero_mapped_ram returns at once\nfor RUN_STATE_INMIGRATE and \
         RUN_STATE_PRELAUNCH (only a loadvm into a running VM checks them, not generated).\n\
         The file's own page cache (the reads go through it unless the direct-io parameter \
         is set) is not generated.\n\
         Guest: {} used ({}% of RAM) with {}% zero pages scattered in it (seed {}), {} never \
         touched.\nData pages read from the file: {data_pages} in {data_blocks} of the {} used \
         2 MiB blocks; the other blocks stay unpopulated (no huge\nzero page, unlike a precopy \
         stream's ZERO records before 9.1).\n\
         Parameters used: --guest, --used, --zero-share, --seed, --qemu, --multifd, --kernel.",
        fmt_size(used),
        p.used,
        p.zero_share,
        p.seed,
        fmt_size(p.guest - used),
        used / M2,
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("checkpoint mapped\n");
    data_pages_write(&mut ops, used, data_pct, p.seed, "the data pages (pread)");
    ops.push_str("checkpoint loaded\n");
    Ok((doc, ops))
}

/// Emits `uffd copy`/`uffd zeropage` lines for the pages [from, to) of a block whose source
/// content is zero (`zero`) or data.
fn stream(ops: &mut String, from: u64, to: u64, zero: bool) {
    if to > from {
        let op = if zero { "zeropage" } else { "copy" };
        let _ = writeln!(ops, "uffd {op} {}", range(from, to - from));
    }
}

fn postcopy(p: &GenParams, qemu: (u32, u32)) -> Result<(String, String), String> {
    if p.multifd && qemu < (10, 1) {
        return Err(format!(
            "--multifd with postcopy needs QEMU 10.1 or later (e274188612); got --qemu {}",
            p.qemu
        ));
    }
    // 10.1+ multifd, zero-page-detection=multifd: ram_save_target_page skips save_zero_page
    // in postcopy, so zero pages arrive as RAM_SAVE_FLAG_PAGE and are UFFDIO_COPY'd.
    let zero_copied = p.multifd;
    let blocks = p.guest / M2;
    let secs = khugepaged_full_scan_secs(p.guest);
    let zero_how = if zero_copied {
        "UFFDIO_COPY of 4 KiB as well (10.1+ multifd: zero pages are sent as data)"
    } else {
        "UFFDIO_ZEROPAGE of 4 KiB (postcopy_place_page_zero)"
    };
    let doc = format!(
        "Pure postcopy (switch before any precopy round). postcopy_ram_incoming_init -> \
         init_range -> ram_discard_range\n(MADV_DONTNEED); the first discard command: \
         postcopy_ram_prepare_discard -> MADV_NOHUGEPAGE on every block;\n\
         postcopy_ram_incoming_setup: UFFDIO_REGISTER_MODE_MISSING over all RAM. The guest runs \
         at once: in {}% of\nthe 2 MiB blocks it writes a run of pages before the stream gets \
         there: each a MISSING fault answered\nwith one 4 KiB page (postcopy_request_page; \
         data: UFFDIO_COPY via postcopy_place_page; zero: {zero_how}).\nThe background stream \
         places every other page the same way, in address order; {}% of blocks are zero on\n\
         the source (seed {}). postcopy_ram_incoming_cleanup: MADV_HUGEPAGE, UFFDIO_UNREGISTER; \
         then khugepaged at\nits default pace ({secs} s for a full scan). Parameters used: \
         --guest, --write-share, --zero-share, --seed,\n--qemu, --multifd, --kernel.",
        p.write_share, p.zero_share, p.seed
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("madvise ram DONTNEED                 # ram_discard_range at incoming init\n");
    ops.push_str("madvise ram NOHUGEPAGE               # postcopy_ram_prepare_discard\n");
    ops.push_str("uffd open\nuffd register ram missing\nuffd handler missing=copy:4K\n");
    ops.push_str("checkpoint registered\n");
    let mut rng = Rng::new(p.seed);
    let mut plan = Vec::with_capacity(blocks as usize);
    for _ in 0..blocks {
        let zero = rng.chance(p.zero_share) && !zero_copied;
        let hot = if rng.chance(p.write_share) {
            let len = 1 + rng.below(64);
            let start = rng.below(PAGES_PER_PMD - len + 1);
            Some((start, len))
        } else {
            None
        };
        plan.push((zero, hot));
    }
    ops.push_str("# guest accesses during postcopy: MISSING faults, one 4 KiB page each\n");
    let mut handler_zero = false;
    for (b, (zero, hot)) in plan.iter().enumerate() {
        if let Some((start, len)) = hot {
            if *zero != handler_zero {
                handler_zero = *zero;
                let pol = if *zero { "zeropage:4K" } else { "copy:4K" };
                let _ = writeln!(ops, "uffd handler missing={pol}");
            }
            let _ = writeln!(ops, "write {}", range(b as u64 * M2 + start * K4, len * K4));
        }
    }
    if handler_zero {
        ops.push_str("uffd handler missing=copy:4K\n");
    }
    ops.push_str("checkpoint guest-faults\n");
    ops.push_str("# background stream: every page not yet placed, address order\n");
    let mut run: Option<(u64, bool)> = None; // (start offset, zero)
    for (b, (zero, hot)) in plan.iter().enumerate() {
        let base = b as u64 * M2;
        if hot.is_none() && run.is_some_and(|(_, z)| z == *zero) {
            continue;
        }
        if let Some((st, z)) = run.take() {
            stream(&mut ops, st, base, z);
        }
        match hot {
            None => run = Some((base, *zero)),
            Some((start, len)) => {
                stream(&mut ops, base, base + start * K4, *zero);
                stream(&mut ops, base + (start + len) * K4, base + M2, *zero);
            }
        }
    }
    if let Some((st, z)) = run {
        stream(&mut ops, st, p.guest, z);
    }
    ops.push_str("expect errno == ok\ncheckpoint placed\n");
    ops.push_str("madvise ram HUGEPAGE                 # postcopy_ram_incoming_cleanup\n");
    ops.push_str("uffd unregister ram\ncheckpoint completed\n");
    khugepaged_step(p, &mut ops, p.guest);
    Ok((doc, ops))
}

/// Phases of the background snapshot's interleaving of guest writes and the save scan.
const SNAPSHOT_PHASES: u64 = 8;

fn background_snapshot(p: &GenParams) -> (String, String) {
    let used = p.guest / M2 * (100 - p.zero_share) as u64 / 100 * M2;
    let writes = p.guest / K4 * p.write_share as u64 / 100;
    let per_phase = writes / SNAPSHOT_PHASES;
    let seg = p.guest / SNAPSHOT_PHASES / K4 * K4;
    let doc = format!(
        "The guest has written {} (the first {}% of RAM; the rest was never touched).\n\
         ram_write_tracking_prepare -> ram_block_populate_read: one byte read per 4 KiB page; \
         ram_write_tracking_start:\nuserfaultfd (UFFD_FEATURE_PAGEFAULT_FLAG_WP, non-blocking), \
         UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT over all RAM.\n\
         The snapshot is one pass of ram_find_and_save_block in address order: after saving each \
         4 KiB host page,\nram_save_host_page -> ram_save_release_protection unprotects exactly \
         that page (`uffd unwp … stride=4K`).\nThe guest writes {} pages meanwhile ({}% of RAM, \
         random, seed {}+phase), interleaved as {SNAPSHOT_PHASES} phases: in phase k\nit writes \
         {per_phase} pages, then the scan saves the k-th eighth of RAM. A write to a page not \
         yet saved is a uffd-wp\nfault; poll_fault_page saves that page first and unprotects \
         4 KiB (`handler wp=unprotect:4K`); a write behind the\nscan does not fault. Bounds on \
         uffd-wp messages: 0 (every write behind the scan) to {writes} (all before it).\n\
         ram_write_tracking_stop: UFFDIO_UNREGISTER. Parameters used: --guest, --zero-share \
         (never-touched share of\nRAM), --write-share, --seed, --kernel.",
        fmt_size(used),
        100 - p.zero_share,
        per_phase * SNAPSHOT_PHASES,
        p.write_share,
        p.seed
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    if used > 0 {
        let _ = writeln!(ops, "write {}   # the guest ran", range(0, used));
    }
    ops.push_str("checkpoint guest-ran\n");
    ops.push_str("read ram                             # ram_block_populate_read\n");
    ops.push_str("uffd open\nuffd register ram wp\nuffd wp ram\nuffd handler wp=unprotect:4K\n");
    ops.push_str("expect errno == ok\ncheckpoint protected\n");
    for k in 0..SNAPSHOT_PHASES {
        if per_phase > 0 {
            let _ = writeln!(
                ops,
                "write ram random={per_phase} seed={}   # guest writes, phase {k}",
                p.seed + k
            );
        }
        let off = k * seg;
        let len = if k + 1 == SNAPSHOT_PHASES {
            p.guest - off
        } else {
            seg
        };
        let _ = writeln!(
            ops,
            "uffd unwp {} stride=4K   # saved, unprotected page by page",
            range(off, len)
        );
    }
    ops.push_str("expect errno == ok\ncheckpoint saved\n");
    ops.push_str("uffd unregister ram                  # ram_write_tracking_stop\n");
    ops.push_str("checkpoint stopped\n");
    khugepaged_step(p, &mut ops, p.guest);
    (doc, ops)
}

fn balloon(p: &GenParams) -> (String, String) {
    let half = p.guest / 2 / M2 * M2;
    let doc = format!(
        "THP-backed guest RAM, fully written by the guest. First half: balloon inflate \
         (virtio_balloon_handle_output ->\nballoon_inflate_page), 4 KiB PFNs, each a 4 KiB \
         ram_block_discard_range = MADV_DONTNEED (with --backend memfd:\nfallocate(PUNCH_HOLE|KEEP_SIZE) \
         of the memfd range first); the guest gives back\n{}% of the pages of \
         every 2 MiB block as one run of consecutive PFNs at a random offset (seed {}; a guest\n\
         choice; consecutive 4 KiB discards have the effect of one). Second half: free-page \
         reporting\n(virtio_balloon_handle_report) of {}% of the 2 MiB blocks (random), each an \
         aligned 2 MiB MADV_DONTNEED.\nThen `shrink` (memory pressure). Parameters used: \
         --guest, --backend, --zero-share (share given back), --seed, --kernel.",
        p.zero_share, p.seed, p.zero_share
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("write ram                            # the guest zeroed its RAM at boot\n");
    ops.push_str("checkpoint booted\n");
    let mut rng = Rng::new(p.seed);
    let (inflate, report) = balloon_ranges(p.guest, half, p.zero_share, &mut rng, false);
    ops.push_str("# inflate: 4 KiB discards\n");
    for &(off, len) in &inflate {
        qemu_discard(p, &mut ops, off, len);
    }
    ops.push_str("checkpoint inflated\n");
    ops.push_str("# free-page reporting: aligned 2 MiB discards\n");
    for &(off, len) in &report {
        qemu_discard(p, &mut ops, off, len);
    }
    ops.push_str("checkpoint reported\n");
    if !p.host {
        ops.push_str("shrink                               # memory pressure: deferred split\n");
        ops.push_str("checkpoint shrunk\n");
    }
    (doc, ops)
}

/// (offset, length) ranges of guest memory.
type Ranges = Vec<(u64, u64)>;

/// A balloon's (inflated ranges, reported ranges).
type Balloon = (Ranges, Ranges);

/// The guest's balloon over `[0, size)` as the balloon generators model it (the guest's
/// choice, seeded): below `half`, an inflate of one run of `pct` % of the pages of every
/// 2 MiB block at a random offset (4 KiB PFNs, consecutive ones having the effect of one
/// range); from `half`, free page reporting of `pct` % of the 2 MiB blocks, each whole
/// (the guest reports at `page_reporting_order` = pageblock order, 2 MiB). Returns (inflated
/// ranges, reported ranges) as (offset, length); with `coalesce`, inflated runs that touch
/// are one range, as Firecracker's `compact_page_frame_numbers` makes them.
fn balloon_ranges(size: u64, half: u64, pct: u32, rng: &mut Rng, coalesce: bool) -> Balloon {
    let per_block = PAGES_PER_PMD * u64::from(pct) / 100;
    let mut inflate: Ranges = Vec::new();
    if per_block > 0 {
        for b in 0..half / M2 {
            let start = rng.below(PAGES_PER_PMD - per_block + 1);
            let (off, len) = (b * M2 + start * K4, per_block * K4);
            match inflate.last_mut() {
                Some(last) if coalesce && last.0 + last.1 == off => last.1 += len,
                _ => inflate.push((off, len)),
            }
        }
    }
    let report = (half / M2..size / M2)
        .filter(|_| rng.chance(pct))
        .map(|b| (b * M2, M2))
        .collect();
    (inflate, report)
}

fn virtio_mem(p: &GenParams) -> (String, String) {
    let blocks = p.guest / M2;
    let unplug = blocks * p.zero_share as u64 / 100;
    let doc = format!(
        "A virtio-mem device of {} (its memory-backend-ram: 2 MiB-aligned, MADV_HUGEPAGE in \
         ram_block_add), block size\nMAX(page size, THP size) = 2 MiB (virtio_mem_default_block_size \
         reads hpage_pmd_size). The guest plugs all of it;\nwith prealloc=on \
         virtio_mem_set_block_state -> qemu_prealloc_mem(…, 1 thread): the probe and one \
         MADV_POPULATE_WRITE.\nThen it unplugs {} blocks ({}% of them, the highest first: the \
         guest driver's choice,\nassumed from Linux virtio_mem.c): block-aligned \
         ram_block_discard_range = MADV_DONTNEED of 2 MiB multiples: whole\nTHPs freed, no \
         split. Re-plug: prealloc of the same blocks. Parameters used: --guest, --zero-share \
         (share\nunplugged), --kernel.",
        fmt_size(p.guest),
        unplug,
        p.zero_share,
    );
    let mut ops = String::new();
    let _ = writeln!(
        ops,
        "mmap vmem {} anon private rw align=2M   # memory-backend-ram of the device",
        fmt_size(p.guest)
    );
    ops.push_str("madvise vmem HUGEPAGE                # ram_block_add\n");
    ops.push_str("checkpoint mapped\n");
    qemu_populate(&mut ops, "vmem", 0, p.guest, 1);
    ops.push_str("checkpoint plugged\n");
    // The guest driver unplugs from the top of the device's range down (Linux
    // drivers/virtio/virtio_mem.c walks memory blocks in reverse; guest side, not re-read).
    let chosen: Vec<u64> = (blocks - unplug..blocks).collect();
    let runs = block_runs(&chosen);
    for &(b, n) in &runs {
        let _ = writeln!(
            ops,
            "madvise {} DONTNEED   # unplug",
            nrange("vmem", b * M2, n * M2)
        );
    }
    ops.push_str("expect errno == ok\ncheckpoint unplugged\n");
    for &(b, n) in &runs {
        let _ = writeln!(
            ops,
            "madvise {} POPULATE_WRITE   # re-plug, prealloc",
            nrange("vmem", b * M2, n * M2)
        );
    }
    ops.push_str("expect errno == ok\ncheckpoint replugged\n");
    (doc, ops)
}

/// Runs of consecutive block numbers: (first, count).
fn block_runs(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        match runs.last_mut() {
            Some((s, n)) if *s + *n == b => *n += 1,
            _ => runs.push((b, 1)),
        }
    }
    runs
}

fn cloud_hypervisor(p: &GenParams) -> (String, String) {
    let t = ch_threads(p.guest, p.threads);
    let secs = khugepaged_full_scan_secs(p.guest);
    let doc = format!(
        "create_ram_region_raw with prefault=on: mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE), \
         {t} thread(s)\n(min(--threads {}, 16, pages, max(1, size / 4 GiB))) each \
         MADV_POPULATE_WRITE on a contiguous chunk, and only then\nMADV_HUGEPAGE (thp=on, the \
         default; order since PR #4852 b68add2d0): under enabled=madvise every page is order 0\n\
         until khugepaged collapses it, at the default pace ({secs} s for a full scan). \
         Parameters used: --guest,\n--threads, --kernel.",
        p.threads
    );
    let mut ops = String::new();
    let _ = writeln!(
        ops,
        "mmap ram {} anon private rw align=2M",
        fmt_size(p.guest)
    );
    if t == 1 {
        ops.push_str("madvise ram POPULATE_WRITE           # prefault\n");
    } else {
        for (i, (off, len)) in chunks(p.guest, t).into_iter().enumerate() {
            let _ = writeln!(
                ops,
                "madvise {} POPULATE_WRITE   # prefault thread {i}",
                range(off, len)
            );
        }
    }
    ops.push_str("expect errno == ok\ncheckpoint prefaulted\n");
    ops.push_str("madvise ram HUGEPAGE                 # thp=on, after the prefault\n");
    ops.push_str("checkpoint advised\n");
    khugepaged_step(p, &mut ops, p.guest);
    (doc, ops)
}

/// Hot runs of the guest after a restore: per 2 MiB block with probability `write_share`, a
/// run of 1-64 pages at a random offset. Returns (block, start page, pages).
fn hot_runs(p: &GenParams) -> Vec<(u64, u64, u64)> {
    let mut rng = Rng::new(p.seed);
    let mut v = Vec::new();
    for b in 0..p.guest / M2 {
        if rng.chance(p.write_share) {
            let len = 1 + rng.below(64);
            let start = rng.below(PAGES_PER_PMD - len + 1);
            v.push((b, start, len));
        }
    }
    v
}

/// The gaps of `[0, size)` around the hot runs, in address order: (offset, len).
fn gaps(size: u64, hot: &[(u64, u64, u64)]) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    let mut at = 0;
    for &(b, start, len) in hot {
        let s = b * M2 + start * K4;
        if s > at {
            v.push((at, s - at));
        }
        at = s + len * K4;
    }
    if size > at {
        v.push((at, size - at));
    }
    v
}

fn ch_restore(p: &GenParams) -> (String, String) {
    let hot = hot_runs(p);
    let hot_pages: u64 = hot.iter().map(|h| h.2).sum();
    let shared = p.backend == "memfd";
    let doc = format!(
        "Restore with memory_restore_mode=ondemand: the RAM region is created as for a boot \
         ({},\nprefault off, then MADV_HUGEPAGE with thp=on), restore_by_uffd \
         registers it with UFFDIO_REGISTER_MODE_MISSING:\nits FileUffdMemorySource has \
         requires_uffd_minor_mode() = false, so even shared memfd RAM gets no MINOR mode\n\
         (MINOR + UFFDIO_CONTINUE is postcopy's, ch-postcopy-shared){}. uffd_handler_loop \
         serves each fault with UFFDIO_COPY of\npage_size = 4 KiB (EEXIST -> UFFDIO_WAKE){}. \
         The guest resumes and writes {} pages in {} runs\n({}% of the 2 MiB blocks, 1-64 \
         pages each, seed {}). When idle, the handler's background prefault walks every page \
         in\naddress order, one UFFDIO_COPY per page not yet served (here one `uffd copy` per \
         gap: the same order-0 pages);\nthen the uffd is closed (unregister). Every page is \
         order 0{}. Parameters used: --guest, --backend,\n--write-share, --seed, --kernel.",
        if shared {
            "shared=on: create_anonymous_file, memfd_create \"ch_ram\" + set_len, mapped \
             MAP_SHARED"
        } else {
            "anonymous, MAP_PRIVATE"
        },
        if shared {
            "; required_uffd_features adds\nUFFD_FEATURE_MISSING_SHMEM for a shared zone"
        } else {
            ""
        },
        if shared {
            ": on a shared shmem VMA\neach copy allocates an order-0 page-cache page \
             (shmem_mfill_atomic_pte), whatever shmem_enabled says"
        } else {
            ""
        },
        hot_pages,
        hot.len(),
        p.write_share,
        p.seed,
        if shared {
            " and in the page cache;\nkhugepaged collapses them with collapse_file only if \
             shmem_enabled allows it and the mm is on its list\n(FINDINGS §26)"
        } else {
            "; khugepaged collapses every block (none has a\nhole)"
        },
    );
    let mut ops = String::new();
    guest_ram(
        &mut ops,
        p.guest,
        shared.then_some((
            "ch_ram",
            "create_anonymous_file",
            "create_ram_region_raw: MAP_SHARED",
        )),
        "",
    );
    ops.push_str("madvise ram HUGEPAGE                 # thp=on\n");
    ops.push_str("uffd open\nuffd register ram missing         # restore_by_uffd\n");
    ops.push_str(
        "uffd handler missing=copy:4K         # uffd_handler_loop: UFFDIO_COPY of page_size\n",
    );
    ops.push_str("checkpoint registered\n");
    for &(b, start, len) in &hot {
        let _ = writeln!(ops, "write {}", range(b * M2 + start * K4, len * K4));
    }
    ops.push_str("checkpoint guest-faults\n");
    ops.push_str("# background prefault, address order\n");
    for (off, len) in gaps(p.guest, &hot) {
        let _ = writeln!(ops, "uffd copy {}", range(off, len));
    }
    ops.push_str("expect errno == ok\ncheckpoint prefaulted\n");
    ops.push_str("uffd unregister ram                  # the handler exits, the uffd is closed\n");
    ops.push_str("checkpoint restored\n");
    khugepaged_step(p, &mut ops, p.guest);
    (doc, ops)
}

/// Cloud Hypervisor postcopy with shared guest RAM (`shared=on`: a memfd the source hands to
/// the destination): the destination registers MISSING|MINOR (`prepare_uffd` with
/// `requires_uffd_minor_mode`), and each fault or background-prefault page is one request to
/// the source (which reads the page through its own mapping: a page the guest never used is
/// allocated there) and one 4 KiB `UFFDIO_CONTINUE`.
fn ch_postcopy_shared(p: &GenParams) -> (String, String) {
    let mut rng = Rng::new(p.seed);
    let blocks = p.guest / M2;
    let used: Vec<bool> = (0..blocks).map(|_| rng.chance(p.used)).collect();
    let mut hot = Vec::new();
    for (b, &u) in used.iter().enumerate() {
        if u && rng.chance(p.write_share) {
            let len = 1 + rng.below(64);
            let start = rng.below(PAGES_PER_PMD - len + 1);
            hot.push((b as u64, start, len));
        }
    }
    let hot_pages: u64 = hot.iter().map(|h| h.2).sum();
    let used_blocks = used.iter().filter(|&&u| u).count();
    let doc = format!(
        "Local postcopy migration of a guest whose RAM is shared=on, thp=on: create_anonymous_file \
         (memfd_create\n\"ch_ram\" + set_len) mapped MAP_SHARED by create_ram_region_raw, then \
         MADV_HUGEPAGE (thp && !hugepages). The\nsource hands the memfd to the destination \
         (memory_files: shared_backing), so the page cache holds what the guest\nused on the \
         source ({used_blocks} of {blocks} 2 MiB blocks, --used {}%, seed {}). The destination \
         maps the same memfd and\nstart_postcopy_serving -> prepare_uffd registers it \
         UFFDIO_REGISTER_MODE_MISSING|MINOR (requires_uffd_minor_mode =\nshared_backing). The \
         guest resumes and writes {hot_pages} pages in {} runs inside used blocks \
         (--write-share {}%): each is a\nminor fault that SocketUffdMemorySource::resolve \
         answers with a 4 KiB UFFDIO_CONTINUE after its PageFault request\n(serve_postcopy on the \
         source reads the page through its mapping). When idle, uffd_handler_loop prefaults\n\
         every page not yet served in address order the same way (here: one source read and one \
         `uffd continue` per gap;\nthe source's read allocates the blocks the guest never used). \
         Every page of the destination is mapped by a\nPTE, whatever the folio size: with \
         shmem_enabled=advise the source's PMD folios stay PTE-mapped at the destination\n\
         (ShmemPmdMapped 0). With --khugepaged a full scan follows: khugepaged drops the PTEs \
         of PMD-sized\nfolios (the next access maps a PMD) and collapse_files small ones, but \
         under shmem_enabled=advise the VMM's\nMADV_HUGEPAGE alone does not register the mm \
         (FINDINGS §26). Try: thpsim compare FILE --set shmem_enabled=never\n--set \
         shmem_enabled=advise.\nParameters \
         used: --guest, --used, --write-share, --seed, --kernel.",
        p.used,
        p.seed,
        hot.len(),
        p.write_share,
    );
    let g = fmt_size(p.guest);
    let mut ops = String::new();
    let _ = writeln!(
        ops,
        "memfd ramfd {g}                    # create_anonymous_file"
    );
    let _ = writeln!(
        ops,
        "mmap src {g} ramfd shared rw align=2M   # the source VMM's mapping"
    );
    ops.push_str(
        "madvise src HUGEPAGE                 # thp=on
",
    );
    let mut b = 0;
    while b < blocks as usize {
        if !used[b] {
            b += 1;
            continue;
        }
        let s = b;
        while b < blocks as usize && used[b] {
            b += 1;
        }
        let _ = writeln!(
            ops,
            "write {}",
            nrange("src", s as u64 * M2, (b - s) as u64 * M2)
        );
    }
    ops.push_str(
        "checkpoint source
",
    );
    let _ = writeln!(
        ops,
        "mmap dst {g} ramfd shared rw align=2M   # the destination maps the received memfd"
    );
    ops.push_str(
        "madvise dst HUGEPAGE
",
    );
    ops.push_str(
        "uffd open minor_shmem
",
    );
    ops.push_str(
        "uffd register dst missing+minor       # prepare_uffd: shared_backing
",
    );
    ops.push_str(
        "uffd handler minor=continue:4K       # SocketUffdMemorySource::resolve: UFFDIO_CONTINUE of page_size\n",
    );
    ops.push_str("checkpoint registered\n");
    for &(b, start, len) in &hot {
        let _ = writeln!(
            ops,
            "write {}",
            nrange("dst", b * M2 + start * K4, len * K4)
        );
    }
    let _ = writeln!(ops, "expect uffd.minor == {hot_pages}");
    ops.push_str("expect uffd.missing == 0\ncheckpoint guest-faults\n");
    ops.push_str(
        "# background prefault, address order: the source reads each page, then UFFDIO_CONTINUE\n",
    );
    for (off, len) in gaps(p.guest, &hot) {
        let _ = writeln!(ops, "read {}", nrange("src", off, len));
        let _ = writeln!(ops, "uffd continue {}", nrange("dst", off, len));
    }
    ops.push_str("expect errno == ok\n");
    let _ = writeln!(ops, "expect smaps(dst).Rss == {g}");
    ops.push_str("expect smaps(dst).ShmemPmdMapped == 0\ncheckpoint prefaulted\n");
    ops.push_str("uffd unregister dst                  # the handler exits, the uffd is closed\n");
    ops.push_str("checkpoint restored\n");
    (doc, ops)
}

/// Firecracker's x86_64 guest memory regions: below the 32-bit MMIO gap (from 3.25 GiB,
/// MMIO_MEM_START = 4 GiB - 768 MiB) and, for larger guests, the rest from 4 GiB.
fn firecracker_regions(guest: u64) -> Vec<u64> {
    const GAP_START: u64 = (4 << 30) - (768 << 20);
    if guest <= GAP_START {
        vec![guest]
    } else {
        vec![GAP_START, guest - GAP_START]
    }
}

/// The region sizes, `A + B`.
fn regions_text(regions: &[u64]) -> String {
    regions
        .iter()
        .map(|&r| fmt_size(r))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn firecracker(p: &GenParams) -> (String, String) {
    let regions = firecracker_regions(p.guest);
    let touch = 100 - p.zero_share;
    let doc = format!(
        "Boot with machine-config huge_pages=\"Transparent\" (PR #6003, 535c62675, 2026-07-14). \
         For every region\nGuestRegionMmap::allocate -> allocate_protected (1a6655891): a PROT_NONE \
         mmap of size + 2 MiB - 4 KiB, munmap of\nhead and tail (a 2 MiB-aligned range), the region \
         mapped MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE; then\nmemory::create issues one \
         madvise(MADV_HUGEPAGE) per region right after the mmap. No prefault: the guest\nfaults on \
         first touch; it touches {touch}% of its pages (random, seed {}). Regions: {} (x86_64 \
         layout: RAM\nbelow the MMIO gap at 3.25 GiB, the rest from 4 GiB; layout not re-read at \
         HEAD).{} Parameters used: --guest,\n--zero-share (untouched share), --balloon, --seed, \
         --kernel.",
        p.seed,
        regions_text(&regions),
        if p.balloon == 0 {
            String::new()
        } else {
            format!(
                "\nThen the balloon (--balloon {b}, the ranges of firecracker-file-restore's, seed \
                 {s}): discard_range of an anonymous region is\nMADV_DONTNEED of each range, \
                 which keeps the VMA and its VM_HUGEPAGE; the guest then reuses every page.",
                b = p.balloon,
                s = p.seed + 200
            )
        }
    );
    let mut ops = String::new();
    for (i, &r) in regions.iter().enumerate() {
        let _ = writeln!(
            ops,
            "mmap ram{i} {} anon private rw align=2M   # allocate_protected: 2 MiB-aligned",
            fmt_size(r)
        );
        let _ = writeln!(
            ops,
            "madvise ram{i} HUGEPAGE                # memory::create, per region"
        );
    }
    ops.push_str("checkpoint mapped\n");
    for (i, _) in regions.iter().enumerate() {
        match touch {
            0 => {}
            100 => {
                let _ = writeln!(
                    ops,
                    "write ram{i}                           # guest first touch"
                );
            }
            t => {
                let _ = writeln!(
                    ops,
                    "write ram{i} random={t}% seed={}   # guest first touch",
                    p.seed + i as u64
                );
            }
        }
    }
    ops.push_str("checkpoint booted\n");
    if p.balloon > 0 {
        let balloon = fc_balloon(p, &regions);
        fc_balloon_ops(p, &balloon, &mut ops, false);
    }
    (doc, ops)
}

fn kubevirt(p: &GenParams) -> (String, String) {
    let t = qemu_threads(p.guest, 4);
    let need = p.guest / K4 * 95 / 100 * 4; // KiB
    let doc = format!(
        "KubeVirt VEP 383, THP memory backing (PR #384 head fe9b0a9, 2026-07-08; policy wording \
         from its review,\n2026-09-02). libvirt <source type=\"anonymous\"/>, <locked/>, \
         <allocation mode=\"immediate\" threads=\"4\"/> = QEMU\nmemory-backend-ram prealloc=on \
         prealloc-threads=4 (the libvirt translation is the VEP's claim): ram_block_add\n\
         (MADV_HUGEPAGE), qemu_prealloc_mem ({t} thread(s) after QEMU's one-per-64 MiB cap), then \
         mlockall at the end\nof qemu_init_board (realtime_init, -overcommit mem-lock=on). \
         virt-handler then waits for VmLck to settle, finds the\nlarge anonymous RW mapping in \
         /proc/<pid>/maps and calls process_madvise(MADV_COLLAPSE) once over it. Coverage\n\
         (AnonHugePages / Rss) must reach 95 % for policy=guaranteed ({need} kB here): the \
         `expect` below is that check\n(`thpsim run` exits 1 if the VM would fail). On an \
         unfragmented host the prealloc already gives THPs (the advice\ncomes first) and the \
         collapse is a no-op. Parameters used: --guest, --kernel.",
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("checkpoint mapped\n");
    qemu_populate(&mut ops, "ram", 0, p.guest, t);
    ops.push_str("checkpoint preallocated\n");
    ops.push_str("mlock ram                            # mlockall(MCL_CURRENT|MCL_FUTURE)\n");
    ops.push_str("expect errno == ok\ncheckpoint locked\n");
    ops.push_str(
        "madvise ram COLLAPSE                 # virt-handler: process_madvise, one pass\n",
    );
    ops.push_str("checkpoint collapsed\n");
    let _ = writeln!(
        ops,
        "expect smaps(ram).AnonHugePages >= {need}kB   # policy=guaranteed: 95 % coverage"
    );
    (doc, ops)
}

fn criu_lazy(p: &GenParams) -> (String, String) {
    let hot = hot_runs(p);
    let hot_pages: u64 = hot.iter().map(|h| h.2).sum();
    let doc = format!(
        "Lazy restore (criu restore --lazy-pages) of a process with a {} anonymous MADV_HUGEPAGE \
         heap. criu/mem.c\nmaybe_disable_thp: prctl(PR_SET_THP_DISABLE, 1) while the VMAs are \
         created and filled; the restorer registers\nthe lazy VMAs with UFFDIO_REGISTER_MODE_MISSING \
         and restores the dumped THP_DISABLE value (0). The lazy-pages daemon\n(criu/uffd.c) answers \
         each fault with UFFDIO_COPY of one page (handle_page_fault -> uffd_copy), and in the\n\
         background transfers the rest in address order (xfer_pages) with UFFDIO_COPY chunks of \
         xfer_len: 64 KiB,\ngrowing by 64 KiB per request up to 4 MiB (update_xfer_len; a fault \
         resets it to 64 KiB: all faults come first here). The task writes {} pages in \
         {} runs ({}% of the 2 MiB blocks, seed {}).\nUFFDIO_COPY fills order 0 only; khugepaged \
         then collapses the blocks. (UFFDIO_ZEROPAGE for ranges missing from the\npagemap, the \
         page server and MADV_HUGEPAGE restore are not modelled here: the heap is all data.)\n\
         Parameters used: --guest (heap size), --write-share, --seed, --kernel.",
        fmt_size(p.guest),
        hot_pages,
        hot.len(),
        p.write_share,
        p.seed
    );
    let mut ops = String::new();
    ops.push_str("prctl set_thp_disable 1              # maybe_disable_thp\n");
    let _ = writeln!(
        ops,
        "mmap ram {} anon private rw align=2M",
        fmt_size(p.guest)
    );
    ops.push_str("madvise ram HUGEPAGE                 # the dumped VMA's madvise bits\n");
    ops.push_str("uffd open\nuffd register ram missing\nuffd handler missing=copy:4K\n");
    ops.push_str("prctl set_thp_disable 0              # the restorer restores THP_DISABLE\n");
    ops.push_str("checkpoint registered\n");
    for &(b, start, len) in &hot {
        let _ = writeln!(ops, "write {}", range(b * M2 + start * K4, len * K4));
    }
    ops.push_str("checkpoint task-faults\n");
    ops.push_str(
        "# background transfer, address order, growing chunks (64 KiB steps, at most 4 MiB)\n",
    );
    let mut xfer = 64 << 10;
    for (off, len) in gaps(p.guest, &hot) {
        let mut at = off;
        while at < off + len {
            let n = xfer.min(off + len - at);
            let _ = writeln!(ops, "uffd copy {}", range(at, n));
            at += n;
            xfer = (xfer + (64 << 10)).min(4 << 20);
        }
    }
    ops.push_str("expect errno == ok\ncheckpoint transferred\n");
    ops.push_str("uffd unregister ram\ncheckpoint restored\n");
    khugepaged_step(p, &mut ops, p.guest);
    (doc, ops)
}

fn jemalloc_hpa(p: &GenParams) -> (String, String) {
    let slabs = p.guest / M2;
    let mut rng = Rng::new(p.seed);
    // Slabs the application frees part of: a run of freed pages each (purged as one range).
    let n = (PAGES_PER_PMD * p.zero_share as u64 / 100).max(1);
    let mut freed: Vec<(u64, u64, u64)> = Vec::new();
    for b in 0..slabs {
        if rng.chance(p.write_share) {
            freed.push((b, rng.below(PAGES_PER_PMD - n + 1), n));
        }
    }
    let doc = format!(
        "jemalloc HPA (opt.hpa:true, hpa_hugify_sync:true) with a {} heap: hpa_central_extract maps \
         eden with\npages_map(…, HUGEPAGE alignment) (HPA_EDEN_SIZE 128 hugepages; one mapping \
         here) and carves 2 MiB pageslabs. The\napplication fills every slab (4 KiB faults: no \
         advice yet, enabled=madvise). hpa_try_hugify: a slab with nactive\n>= hugification_threshold \
         (95 % of 2 MiB) is hugified after hugify_delay_ms by hpa_hooks_hugify = pages_huge\n\
         (MADV_HUGEPAGE) + pages_collapse (MADV_COLLAPSE). The application then frees a run of {}% \
         of the pages in {}\nslabs ({}% of them, seed {}); hpa_try_purge dehugifies the slab \
         (pages_nohuge = MADV_NOHUGEPAGE) and purges\nthe dirty run (pages_purge_forced = \
         MADV_DONTNEED): the PMD splits. The application reuses the pages (4 KiB\nfaults), the slab \
         is full again and is re-hugified: MADV_HUGEPAGE + MADV_COLLAPSE (a copy). Parameters used:\n\
         --guest (heap size), --zero-share (freed share of a slab), --write-share (share of slabs \
         freed from), --seed, --kernel.",
        fmt_size(p.guest),
        p.zero_share,
        freed.len(),
        p.write_share,
        p.seed
    );
    let mut ops = String::new();
    let _ = writeln!(
        ops,
        "mmap heap {} anon private rw align=2M   # pages_map, HUGEPAGE-aligned",
        fmt_size(p.guest)
    );
    ops.push_str("write heap                           # the application fills the slabs\n");
    ops.push_str("checkpoint filled\n");
    ops.push_str("madvise heap HUGEPAGE                # hpa_try_hugify: pages_huge, every slab\n");
    ops.push_str("madvise heap COLLAPSE                #   and pages_collapse (hugify_sync)\n");
    ops.push_str("expect errno == ok\ncheckpoint hugified\n");
    for &(b, start, n) in &freed {
        let _ = writeln!(
            ops,
            "madvise {} NOHUGEPAGE   # hpa_try_purge: dehugify",
            nrange("heap", b * M2, M2)
        );
        let _ = writeln!(
            ops,
            "madvise {} DONTNEED   #   purge the dirty run",
            nrange("heap", b * M2 + start * K4, n * K4)
        );
    }
    ops.push_str("expect errno == ok\ncheckpoint purged\n");
    for &(b, start, n) in &freed {
        let _ = writeln!(
            ops,
            "write {}   # reuse",
            nrange("heap", b * M2 + start * K4, n * K4)
        );
    }
    ops.push_str("checkpoint reused\n");
    for &(b, _, _) in &freed {
        let blk = nrange("heap", b * M2, M2);
        let _ = writeln!(ops, "madvise {blk} HUGEPAGE   # re-hugify");
        let _ = writeln!(ops, "madvise {blk} COLLAPSE");
    }
    ops.push_str("expect errno == ok\ncheckpoint rehugified\n");
    (doc, ops)
}

/// TCMalloc's `kMinMmapAlloc` (tcmalloc/common.h, 64-bit): address space is reserved in 1 GiB
/// regions.
const TCMALLOC_REGION: u64 = 1 << 30;
/// `HugePageUnbackedTrackerTreatment` (tcmalloc/huge_page_treatment.h): trackers examined per
/// treatment, and the most unbacked 4 KiB pages a hugepage may have to be collapsed.
const TCMALLOC_TRACKERS_PER_TREATMENT: usize = 64;
const TCMALLOC_MAX_UNBACKED_FOR_COLLAPSE: u64 = 64;

fn tcmalloc_hpaa(p: &GenParams) -> (String, String) {
    let hugepages = p.guest / M2;
    let region = p.guest.div_ceil(TCMALLOC_REGION) * TCMALLOC_REGION;
    let base = region - p.guest; // the heap is carved from the region's top down
    let mut rng = Rng::new(p.seed);
    // Hugepages the application frees a run of pages in (released by the filler), and which of
    // them it fills again before the next treatment.
    let n = (PAGES_PER_PMD * u64::from(p.zero_share) / 100).max(1);
    let mut freed: Vec<(u64, u64, bool)> = Vec::new();
    for h in 0..hugepages {
        if rng.chance(p.write_share) {
            let start = rng.below(PAGES_PER_PMD - n + 1);
            freed.push((h, start, rng.chance(50)));
        }
    }
    let doc = format!(
        "TCMalloc's hugepage-aware allocator (HEAD fce3f55d) with a {heap} heap. \
         SystemAllocator::MmapRegionFactory::Create\nreserves address space in kMinMmapAlloc \
         (1 GiB) regions: mmap(PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE)\nat a \
         hugepage-aligned hint ({region} here). HugeAllocator::AllocateRange hands the filler one \
         hugepage at a\ntime; MmapRegion::Alloc carves it from the region's top down and makes it \
         accessible with mprotect(RW) (no\nMADV_HUGEPAGE: TCMalloc relies on the system's THP \
         mode; enabled=madvise here, `--set enabled=always`\nto compare). The application fills \
         the heap (4 KiB faults). Every hpaa_hugepage_check_period (5 s) the\nbackground thread's \
         TreatHugepageTrackers examines up to {per} trackers that are not hugepage-backed\n\
         (kpageflags) and collapses each with fewer than {maxu} unbacked pages: MADV_COLLAPSE \
         (up to 3 tries on\nEAGAIN), partially released trackers first, then the others (address \
         order here). The application then\nfrees a run of {z}% of the pages in {f} hugepages \
         ({w}% of them, seed {seed}); the background release\n(ReleasePages) tries MADV_REMOVE \
         first, which fails with EINVAL on private memory (not modelled, it\nchanges nothing) and \
         then MADV_DONTNEED (MadvisePreference::kDontNeed, the default): the PMD is split.\nAbout \
         half of those hugepages are filled again; the next treatments collapse those, and those \
         whose\nreleased run is shorter than {maxu} pages. Parameters used: --guest (heap), \
         --zero-share (released share\nof a hugepage), --write-share (share of hugepages \
         released from), --seed, --kernel.",
        heap = fmt_size(p.guest),
        region = fmt_size(region),
        per = TCMALLOC_TRACKERS_PER_TREATMENT,
        maxu = TCMALLOC_MAX_UNBACKED_FOR_COLLAPSE,
        z = p.zero_share,
        f = freed.len(),
        w = p.write_share,
        seed = p.seed,
    );
    let mut ops = String::new();
    let _ = writeln!(
        ops,
        "mmap region {} anon private none align=2M   # MmapRegionFactory::Create: PROT_NONE reservation",
        fmt_size(region)
    );
    for h in (0..hugepages).rev() {
        let _ = writeln!(
            ops,
            "mprotect {} rw   # MmapRegion::Alloc of one hugepage",
            nrange("region", base + h * M2, M2)
        );
    }
    ops.push_str("expect errno == ok\ncheckpoint carved\n");
    let _ = writeln!(
        ops,
        "write {}   # the application fills the heap",
        nrange("region", base, p.guest)
    );
    ops.push_str("checkpoint filled\n");
    // Every hugepage is 4 KiB-backed with nothing unbacked: each pass collapses the next ones.
    let all: Vec<u64> = (0..hugepages).collect();
    tcmalloc_treatments(&mut ops, "treatment", &all, base);
    ops.push_str("expect errno == ok\ncheckpoint collapsed\n");
    for &(h, start, _) in &freed {
        let _ = writeln!(
            ops,
            "madvise {} DONTNEED   # ReleasePages of the freed run",
            nrange("region", base + h * M2 + start * K4, n * K4)
        );
    }
    ops.push_str("expect errno == ok\ncheckpoint released\n");
    for &(h, start, refill) in &freed {
        if refill {
            let _ = writeln!(
                ops,
                "write {}   # filled again",
                nrange("region", base + h * M2 + start * K4, n * K4)
            );
        }
    }
    ops.push_str("checkpoint refilled\n");
    // The partially released trackers come first; a hugepage is collapsed if it has fewer
    // than TCMALLOC_MAX_UNBACKED_FOR_COLLAPSE unbacked pages.
    let candidates: Vec<u64> = freed
        .iter()
        .filter(|&&(_, _, refill)| refill || n < TCMALLOC_MAX_UNBACKED_FOR_COLLAPSE)
        .map(|&(h, _, _)| h)
        .collect();
    tcmalloc_treatments(&mut ops, "re-treatment", &candidates, base);
    ops.push_str("expect errno == ok\ncheckpoint recollapsed\n");
    (doc, ops)
}

/// `TreatHugepageTrackers` passes (one per `hpaa_hugepage_check_period`) over the hugepages
/// `collapse` (indices from the heap's start at `base`): up to 64 trackers each, one
/// MADV_COLLAPSE per hugepage.
fn tcmalloc_treatments(ops: &mut String, what: &str, collapse: &[u64], base: u64) {
    for (i, pass) in collapse.chunks(TCMALLOC_TRACKERS_PER_TREATMENT).enumerate() {
        let _ = writeln!(ops, "# {what} {} (hpaa_hugepage_check_period)", i + 1);
        for &h in pass {
            let _ = writeln!(
                ops,
                "madvise {} COLLAPSE",
                nrange("region", base + h * M2, M2)
            );
        }
    }
}

/// A guest access phase: `OP NAME` over all of it (100 %), a seeded share, or nothing (0 %).
fn touch(ops: &mut String, op: &str, name: &str, pct: u32, seed: u64, why: &str) {
    match pct {
        0 => {}
        100 => {
            let _ = writeln!(ops, "{op} {name}   # {why}");
        }
        t => {
            let _ = writeln!(ops, "{op} {name} random={t}% seed={seed}   # {why}");
        }
    }
}

/// QEMU guest RAM (or a fake NVDIMM) on a file of the disk filesystem:
/// `-object memory-backend-file,mem-path=FILE,share=…,prealloc=…,align=…`.
fn qemu_file_ram(p: &GenParams) -> (String, String) {
    let t = qemu_threads(p.guest, p.threads);
    let g = fmt_size(p.guest);
    let shared = p.share == "on";
    let a = fmt_size(p.align);
    // qemu_ram_mmap reserves size + align and maps at the first `align` boundary in it; the
    // reservation itself is only page-aligned (its length is not a PMD multiple, so the
    // kernel does not THP-align it), so below 2 MiB the address is `align`-aligned and no
    // more: written as the worst case, `align` past a 2 MiB boundary.
    let placement = if p.align >= M2 {
        format!("align={a}")
    } else {
        format!("align=2M offset={a}")
    };
    let what = if p.nvdimm {
        "a fake NVDIMM (-device nvdimm,memdev=mem): an existing image the guest reads through \
         (here: all of it) and writes little"
    } else {
        "guest RAM"
    };
    let populate = match p.populate.as_str() {
        "write" => format!(
            "prealloc=on: host_memory_backend_memory_complete -> qemu_prealloc_mem: the \
             MADV_POPULATE_WRITE probe, then\n{t} thread(s) of MADV_POPULATE_WRITE \
             (--threads {}, capped at 16 and one per 64 MiB): a write fault per folio, which \
             on a\nshared file page is ext4_page_mkwrite: every page dirtied (nr_dirtied, \
             nr_dirty), writeback to follow",
            p.threads
        ),
        "read" => format!(
            "--populate read: MADV_POPULATE_READ in the same {t} chunk(s), the prefault the \
             populate thread wants for a\nread-mostly file (QEMU's prealloc itself only \
             issues MADV_POPULATE_WRITE): read faults with fault-around, nothing dirtied"
        ),
        _ => "--populate none: prealloc=off, the guest faults on first touch".to_string(),
    };
    let doc = format!(
        "memory-backend-file,mem-path=<ext4 file>,share={},align={a}{}: {what}. \
         file_backend_memory_alloc ->\nmemory_region_init_ram_from_file -> \
         qemu_ram_alloc_from_file: file_ram_open (O_RDWR), file_ram_alloc (ftruncate of an \
         empty\nfile only; align = MAX(page size of the file = 4 KiB, align=)) -> \
         qemu_ram_mmap(fd, size, align, {}) ->\nram_block_add: MADV_HUGEPAGE on every RAM \
         block (on a file VMA it selects PMD-sized readahead folios, mapped by\na PMD only \
         where the address and the file offset are 2 MiB-aligned together). Then {populate}.\n\
         The guest writes {}% of its pages (random, seed {}). Then writeback: the flusher \
         writes every dirty page\nafter dirty_expire_centisecs (30 s); the model has no \
         flusher, so `fsync ramfile` stands for it (same\nfolio_clear_dirty_for_io -> \
         folio_mkclean: each written page is write-protected again), and the guest's next\n\
         writes ({}%, seed {}) fault again. Observe nr_dirtied/nr_dirty (vmstat) and \
         Shared_Dirty/Private_Dirty after\neach phase, nr_written at writeback. \
         Parameters used: --guest, --threads, --share, --populate, --align,\n--nvdimm, \
         --write-share, --seed, --kernel. Try: thpsim compare FILE --set \
         madv_populate=split --set madv_populate=single.",
        p.share,
        if p.nvdimm { " + nvdimm" } else { "" },
        if shared { "MAP_SHARED" } else { "MAP_PRIVATE" },
        p.write_share,
        p.seed,
        p.write_share,
        p.seed + 1,
    );
    let mut ops = String::new();
    let _ = writeln!(
        ops,
        "file ramfile {g} on=disk            # {}",
        if p.nvdimm {
            "the NVDIMM image (an existing file: not truncated)"
        } else {
            "file_ram_open + file_ram_alloc's ftruncate"
        }
    );
    let _ = writeln!(
        ops,
        "mmap ram {g} ramfile {} rw {placement}   # qemu_ram_mmap(align={a})",
        if shared { "shared" } else { "private" }
    );
    ops.push_str("madvise ram HUGEPAGE                 # ram_block_add\n");
    ops.push_str("checkpoint mapped\n");
    match p.populate.as_str() {
        "write" => qemu_populate(&mut ops, "ram", 0, p.guest, t),
        "read" => populate_chunks(&mut ops, "POPULATE_READ", "ram", 0, p.guest, t),
        _ => {}
    }
    if p.populate != "none" {
        ops.push_str("checkpoint populated\n");
    }
    if p.nvdimm {
        touch(
            &mut ops,
            "read",
            "ram",
            100,
            p.seed,
            "the guest reads the device",
        );
    }
    touch(
        &mut ops,
        "write",
        "ram",
        p.write_share,
        p.seed,
        "guest writes",
    );
    ops.push_str("checkpoint guest\n");
    ops.push_str("fsync ramfile                        # writeback (the flusher's work)\n");
    ops.push_str("expect errno == ok\ncheckpoint writeback\n");
    touch(
        &mut ops,
        "write",
        "ram",
        p.write_share,
        p.seed + 1,
        "guest writes after writeback",
    );
    ops.push_str("checkpoint guest-after-writeback\n");
    (doc, ops)
}

/// `memory::create` over one file for every region: each mapped (`OBJ VIS`) at its offset in
/// the file, with one MADV_HUGEPAGE per region for `huge_pages: Transparent`.
fn fc_map_regions(ops: &mut String, regions: &[u64], obj_vis: &str, why: &str, thp: bool) {
    let mut foff = 0;
    for (i, &r) in regions.iter().enumerate() {
        let off = if foff == 0 {
            String::new()
        } else {
            format!(" foff={}", fmt_size(foff))
        };
        let _ = writeln!(
            ops,
            "mmap ram{i} {} {obj_vis} rw align=2M{off}   # {why}",
            fmt_size(r)
        );
        if thp {
            let _ = writeln!(
                ops,
                "madvise ram{i} HUGEPAGE                # memory::create, huge_pages=Transparent"
            );
        }
        foff += r;
    }
}

/// Firecracker's boot with a vhost-user-blk device configured: memfd-backed guest RAM, then a
/// balloon inflate.
fn firecracker_memfd(p: &GenParams) -> (String, String) {
    let regions = firecracker_regions(p.guest);
    let hugetlb = p.huge_pages == "2M";
    let thp = p.huge_pages == "transparent";
    let touch_pct = 100 - p.zero_share;
    let per_block = PAGES_PER_PMD * u64::from(p.write_share) / 100;
    let doc = format!(
        "Boot with a vhost-user-blk device: VmResources::allocate_memory_regions sees \
         is_vhost_user() and calls\nmemory::memfd_backed: one memfd \"guest_mem\" for all \
         regions (create_memfd: memfd_create{}, set_len to the\nguest size, sealed against \
         shrink and grow), mapped by memory::create per region at increasing offsets with\n\
         MAP_SHARED|MAP_NORESERVE{} (allocate_protected: 2 MiB-aligned){}. The guest \
         touches {touch_pct}% of its pages\n(random, seed {}). Then the balloon inflates: \
         process_inflate compacts the guest's 4 KiB PFNs into ranges\n\
         (compact_page_frame_numbers) and discard_range falls to its MADV_DONTNEED branch \
         for a shared file mapping\n(the source's own TODO: that frees nothing of a memfd; \
         fallocate(PUNCH_HOLE) would): here one run of {}% of\nthe pages of every 2 MiB \
         block at a random offset (seed {}; the guest's choice){}. Regions: {}.\nTry: thpsim \
         compare FILE --set shmem_enabled=never --set shmem_enabled=advise. Parameters \
         used: --guest,\n--huge-pages, --zero-share (untouched share), --write-share \
         (ballooned share of each block), --seed, --kernel.",
        if hugetlb {
            "(MFD_HUGETLB|MFD_HUGE_2MB)"
        } else {
            ""
        },
        if hugetlb {
            "|MAP_HUGETLB|MAP_HUGE_2MB"
        } else {
            ""
        },
        if thp {
            ", then madvise(MADV_HUGEPAGE) per region\n(huge_pages=Transparent: on shmem it \
             counts only where shmem_enabled allows advised huge pages)"
        } else {
            ""
        },
        p.seed,
        p.write_share,
        p.seed + 100,
        if hugetlb {
            ": on a hugetlb mapping a discard not\naligned to 2 MiB is EINVAL, logged and \
             ignored (\"Error removing memory range\")"
        } else {
            ""
        },
        regions_text(&regions)
    );
    let mut ops = String::new();
    if hugetlb {
        let _ = writeln!(
            ops,
            "sysfs hugetlb.nr_hugepages={}      # the host's pool, sized for the guest",
            p.guest / M2
        );
    }
    let _ = writeln!(
        ops,
        "memfd guest_mem {}{}            # create_memfd",
        fmt_size(p.guest),
        if hugetlb { " hugetlb" } else { "" }
    );
    fc_map_regions(
        &mut ops,
        &regions,
        "guest_mem shared",
        "memory::create: MAP_SHARED|MAP_NORESERVE",
        thp,
    );
    ops.push_str("checkpoint mapped\n");
    for i in 0..regions.len() {
        touch(
            &mut ops,
            "write",
            &format!("ram{i}"),
            touch_pct,
            p.seed + i as u64,
            "guest first touch",
        );
    }
    ops.push_str("checkpoint booted\n");
    let mut rng = Rng::new(p.seed + 100);
    if per_block > 0 {
        ops.push_str(
            "# balloon inflate: discard_range = MADV_DONTNEED of each compacted PFN range\n",
        );
        for (i, &r) in regions.iter().enumerate() {
            for b in 0..r / M2 {
                let start = rng.below(PAGES_PER_PMD - per_block + 1);
                let _ = writeln!(
                    ops,
                    "madvise {} DONTNEED",
                    nrange(&format!("ram{i}"), b * M2 + start * K4, per_block * K4)
                );
            }
        }
    }
    ops.push_str("checkpoint inflated\n");
    (doc, ops)
}

/// Firecracker's snapshot restore with the File memory backend.
fn firecracker_file_restore(p: &GenParams) -> (String, String) {
    let regions = firecracker_regions(p.guest);
    let thp = p.huge_pages == "transparent";
    let read = 100 - p.zero_share;
    let balloon = fc_balloon(p, &regions);
    let balloon_doc = if p.balloon == 0 {
        " Balloon discards (--balloon) are not\ngenerated.".to_string()
    } else {
        let (anon, file): (usize, usize) = balloon
            .iter()
            .zip(&regions)
            .map(|((inf, rep), &r)| vma_pieces(r, inf, rep))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        format!(
            "\nThen the balloon: process_inflate reads the guest's 4 KiB PFNs, \
             compact_page_frame_numbers sorts and coalesces them\ninto ranges, and \
             discard_range of a file-backed MAP_PRIVATE region mmaps \
             MAP_FIXED|MAP_ANONYMOUS|MAP_PRIVATE (PROT_READ|PROT_WRITE) over each range and\n\
             issues no madvise: the range becomes an anonymous VMA without VM_HUGEPAGE \
             (adjacent ones merge), the file VMA\nis split around it, and a PMD-mapped \
             file folio under the range is zapped (the munmap half of MAP_FIXED). Here an\n\
             inflate of one run of {b}% of the pages of every 2 MiB block of the first half \
             of each region (seed {s}; the\nguest's choice) and free page reporting \
             (process_free_page_reporting_queue: discard_range per descriptor) of\n{b}% of \
             the 2 MiB blocks of the second half, whole. Then the guest deflates \
             (process_deflate_queue touches no\nmemory) and writes every ballooned page \
             again: 4 KiB faults even in whole reported blocks, the new VMAs lacking\n\
             VM_HUGEPAGE{ra}. VMAs of guest memory after the balloon: {} ({anon} anonymous, \
             {file} pieces of the file\nmappings).",
            anon + file,
            b = p.balloon,
            s = p.seed + 200,
            ra = if p.balloon_readvise {
                " (--balloon-readvise: each range is advised MADV_HUGEPAGE again, which \
                 Firecracker does not do\nat 81b38b9dad: the what-if of a fix)"
            } else {
                ""
            },
        )
    };
    let doc = format!(
        "PUT /snapshot/load with mem_backend File: restore_from_snapshot -> \
         guest_memory_from_file opens the memory\nfile (File::open) -> memory::snapshot_file \
         (the file must be at least the guest size) -> memory::create:\nper region \
         GuestRegionMmap::allocate (allocate_protected: a 2 MiB-aligned PROT_NONE \
         reservation, then\nMAP_FIXED|MAP_PRIVATE|MAP_NORESERVE of the file at the region's \
         offset){}. The guest resumes: it\nreads {read}% of its pages (random, seed {}: page \
         cache, mapped read-only; the file is cold here, so readahead\nreads it: major faults) \
         and then writes {}% (seed {}): each write copies its page to an anonymous page\n\
         (wp_page_copy on a mapped page, do_cow_fault on an unmapped one; a PMD-mapped file \
         folio is zapped first).\nThe Uffd backend (guest_memory_from_uffd) maps anonymous \
         memory instead (the shape of ch-restore).{} The model's file is opened read-write \
         (Firecracker opens it\nread-only: no difference to the faults). Regions: {}.\n\
         Parameters used: --guest, --huge-pages, --zero-share (unread share), --write-share, \
         --balloon, --seed, --kernel.",
        if thp {
            ", then madvise(MADV_HUGEPAGE) (huge_pages=Transparent, PR #6003 535c62675): \
             PMD-sized readahead\nfolios, PMD-mapped by read faults"
        } else {
            " (huge_pages=None: no madvise)"
        },
        p.seed,
        p.write_share,
        p.seed + 100,
        balloon_doc,
        regions_text(&regions)
    );
    let mut ops = String::new();
    let _ = writeln!(
        ops,
        "file mem {} on=disk              # the snapshot memory file",
        fmt_size(p.guest)
    );
    fc_map_regions(
        &mut ops,
        &regions,
        "mem private",
        "allocate_protected + MAP_FIXED|MAP_PRIVATE",
        thp,
    );
    ops.push_str("checkpoint mapped\n");
    for i in 0..regions.len() {
        touch(
            &mut ops,
            "read",
            &format!("ram{i}"),
            read,
            p.seed + i as u64,
            "guest reads",
        );
    }
    ops.push_str("checkpoint guest-reads\n");
    for i in 0..regions.len() {
        touch(
            &mut ops,
            "write",
            &format!("ram{i}"),
            p.write_share,
            p.seed + 100 + i as u64,
            "guest writes (private COW)",
        );
    }
    ops.push_str("checkpoint guest-writes\n");
    if p.balloon > 0 {
        fc_balloon_ops(p, &balloon, &mut ops, true);
    }
    (doc, ops)
}

/// The balloon of `firecracker[-file-restore] --balloon P`, per region: (inflated ranges,
/// reported ranges), offsets within the region.
type RegionBalloon = Vec<Balloon>;

fn fc_balloon(p: &GenParams, regions: &[u64]) -> RegionBalloon {
    let mut rng = Rng::new(p.seed + 200);
    regions
        .iter()
        .map(|&r| balloon_ranges(r, r / 2 / M2 * M2, p.balloon, &mut rng, true))
        .collect()
}

/// VMAs a region of `size` ends in after MAP_FIXED anonymous mappings over `a` and `b`
/// (sorted within each): (anonymous VMAs, pieces of the file mapping). Ranges that touch
/// merge into one anonymous VMA; the file mapping keeps a piece for every non-empty gap.
fn vma_pieces(size: u64, a: &[(u64, u64)], b: &[(u64, u64)]) -> (usize, usize) {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let (mut anon, mut file, mut end) = (0, 0, 0);
    for (off, len) in all {
        if off > end || (anon == 0 && off > 0) {
            file += 1;
        }
        if off > end || anon == 0 {
            anon += 1;
        }
        end = off + len;
    }
    if end < size {
        file += 1;
    }
    (anon, file)
}

/// The balloon's discards (`discard_range`) and the guest's reuse. `file`: a region mapped
/// MAP_PRIVATE from the snapshot file, where each range is remapped anonymous (MAP_FIXED, one
/// `mmap balN … at=`); otherwise anonymous memory, where it is MADV_DONTNEED.
fn fc_balloon_ops(p: &GenParams, balloon: &RegionBalloon, ops: &mut String, file: bool) {
    let mut done = Vec::new();
    for (phase, why, label) in [
        (
            0,
            "# balloon inflate: process_inflate -> compact_page_frame_numbers -> discard_range",
            "inflated",
        ),
        (
            1,
            "# free page reporting: process_free_page_reporting_queue -> discard_range",
            "reported",
        ),
    ] {
        ops.push_str(why);
        ops.push('\n');
        for (i, (inf, rep)) in balloon.iter().enumerate() {
            for &(off, len) in if phase == 0 { inf } else { rep } {
                let target = if file {
                    let name = format!("bal{}", done.len());
                    let _ = writeln!(
                        ops,
                        "mmap {name} {} anon private rw at=ram{i}+{}   # MAP_FIXED|MAP_ANONYMOUS|MAP_PRIVATE",
                        fmt_size(len),
                        fmt_size(off)
                    );
                    if p.balloon_readvise {
                        let _ = writeln!(
                            ops,
                            "madvise {name} HUGEPAGE   # --balloon-readvise: not in Firecracker (a fix)"
                        );
                    }
                    name
                } else {
                    let r = nrange(&format!("ram{i}"), off, len);
                    let _ = writeln!(ops, "madvise {r} DONTNEED   # anonymous region");
                    r
                };
                done.push(target);
            }
        }
        let _ = writeln!(ops, "checkpoint {label}");
    }
    for target in &done {
        let _ = writeln!(
            ops,
            "write {target}   # deflated: the guest reuses the pages"
        );
    }
    ops.push_str("checkpoint reused\n");
}
