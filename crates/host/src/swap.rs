//! Swap on the host for a scenario's `swap SIZE` line (`--allow-swap`): a zram device used as
//! the only swap area of the machine for the run, set up and torn down by the run itself.
//!
//! * **Refusal.** A run never shares swap: it refuses when `/proc/swaps` lists any area or
//!   when `zram0` is already configured (`disksize` is not 0), and never touches another
//!   device.
//! * **Setup** ([`sysfs::Session::swap_setup`]): the journal says "swap on zram0" before the
//!   first change; then `disksize`, a version-1 swap header written here (what mkswap
//!   writes, without a label or UUID), and `swapon(2)` with priority 32767. Swap readahead
//!   (`vm.page-cluster`) is pinned to 0 (one page: `swap_vma_ra_win` returns 1, so a
//!   swap-cache read never brings neighbours in), journaled like the THP knobs. zswap must
//!   be off and is never written (a write of any value marks it "ever enabled" until reboot,
//!   which turns large-folio swap-in off: FINDINGS §23).
//! * **Teardown** on every exit path (the normal end, the signal handlers, the panic hook,
//!   and the next run's journal recovery): the workers are killed first (their swap entries
//!   go with their mms), then `swapoff(2)` and `echo 1 > /sys/block/zram0/reset`.

use std::io::Write;
use std::os::unix::fs::FileExt;

/// The zram device a swap run uses.
pub const ZRAM_DEV: &str = "/dev/zram0";
pub const ZRAM_DISKSIZE: &str = "/sys/block/zram0/disksize";
pub const ZRAM_RESET: &str = "/sys/block/zram0/reset";
/// zswap's switch: read, never written.
pub const ZSWAP_ENABLED: &str = "/sys/module/zswap/parameters/enabled";
/// The priority of the run's swap area (the highest: `SWAP_FLAG_PRIO_MASK`).
pub const SWAP_PRIO: i32 = 0x7fff;
const SWAP_FLAG_PREFER: i32 = 0x8000;
const PAGE: u64 = 4096;

/// Why swap cannot be set up here, if it cannot: another swap area, or zram0 in use.
pub fn preflight() -> Result<(), String> {
    let swaps = std::fs::read_to_string("/proc/swaps")
        .map_err(|e| format!("cannot read /proc/swaps: {e}"))?;
    if let Some(l) = swaps.lines().nth(1) {
        return Err(format!(
            "the machine already has swap ({}): refusing to set up the run's own",
            l.split_whitespace().next().unwrap_or("?")
        ));
    }
    if std::fs::read_to_string(ZSWAP_ENABLED).is_ok_and(|v| v.trim() != "N") {
        return Err("zswap is enabled: refusing to swap (the model has no zswap)".into());
    }
    let ds = std::fs::read_to_string(ZRAM_DISKSIZE)
        .map_err(|e| format!("no zram0 device ({ZRAM_DISKSIZE}: {e})"))?;
    if ds.trim() != "0" {
        return Err(format!(
            "zram0 is in use (disksize {}): refusing to touch it",
            ds.trim()
        ));
    }
    Ok(())
}

/// The first page of a swap area as `mkswap` lays it out (`union swap_header`, version 1):
/// `last_page` at 1028, `nr_badpages` 0, the magic `SWAPSPACE2` in the last 10 bytes.
pub fn swap_header(pages: u64) -> Vec<u8> {
    let mut h = vec![0u8; PAGE as usize];
    h[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    let last = u32::try_from(pages.saturating_sub(1)).unwrap_or(u32::MAX);
    h[1028..1032].copy_from_slice(&last.to_le_bytes());
    h[PAGE as usize - 10..].copy_from_slice(b"SWAPSPACE2");
    h
}

/// Sizes zram0, writes the header and turns it on as swap. The caller has journaled it.
pub fn swap_on(bytes: u64) -> Result<(), String> {
    if bytes < 2 * PAGE || bytes % PAGE != 0 {
        return Err(format!(
            "swap size {bytes} is not a multiple of 4 KiB of at least 8 KiB"
        ));
    }
    std::fs::write(ZRAM_DISKSIZE, bytes.to_string())
        .map_err(|e| format!("cannot size zram0 ({ZRAM_DISKSIZE}): {e}"))?;
    let mut dev = std::fs::OpenOptions::new()
        .write(true)
        .open(ZRAM_DEV)
        .map_err(|e| format!("cannot open {ZRAM_DEV}: {e}"))?;
    dev.write_all_at(&swap_header(bytes / PAGE), 0)
        .and_then(|()| dev.flush())
        .and_then(|()| dev.sync_all())
        .map_err(|e| format!("cannot write the swap header to {ZRAM_DEV}: {e}"))?;
    drop(dev);
    let path = std::ffi::CString::new(ZRAM_DEV).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path and integer flags; swapon has no memory preconditions.
    let r = unsafe { libc::swapon(path.as_ptr(), SWAP_FLAG_PREFER | SWAP_PRIO) };
    if r != 0 {
        return Err(format!(
            "swapon {ZRAM_DEV}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Whether zram0 is still swap or still sized (a teardown left something behind).
pub fn leftover() -> Option<String> {
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().skip(1).any(|l| l.starts_with(ZRAM_DEV)) {
        return Some(format!("{ZRAM_DEV} is still swap"));
    }
    let ds = std::fs::read_to_string(ZRAM_DISKSIZE).unwrap_or_default();
    (ds.trim() != "0" && !ds.is_empty()).then(|| format!("zram0 still has disksize {}", ds.trim()))
}

/// The answer of [`large_swapin_works`] once measured in this process. zswap's "ever
/// enabled" only ever turns on; a write to its switch during a long campaign would go
/// unnoticed until the next process.
pub static LARGE_SWAPIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Whether large folios come back whole from this host's swap: `alloc_swap_folio` returns
/// order 0 for every fault once zswap was *ever* enabled since boot (`zswap_never_enabled`),
/// which a write of any value to its `enabled` parameter does, and no file shows. Measured
/// in this process with swap on: `hugepages-16kB` is set to `always` through `session` for
/// the measurement (and set back), one 16 KiB folio is faulted in, paged out and read back;
/// `mthp.16kB.swpin` says how it came back. `None` when the folio could not be made or
/// swapped whole (nothing to conclude).
pub fn large_swapin_works(session: &mut crate::sysfs::Session) -> Result<Option<bool>, String> {
    const KNOB: &str = "hugepages-16kB/enabled";
    let stat = |s: &str| -> Option<u64> {
        std::fs::read_to_string(format!(
            "{}/hugepages-16kB/stats/{s}",
            crate::sysfs::THP_DIR
        ))
        .ok()?
        .trim()
        .parse()
        .ok()
    };
    let Ok(prev) = crate::sysfs::read_knob(KNOB) else {
        return Ok(None);
    };
    session.set(KNOB, "always")?;
    // SAFETY: prctl with integer arguments only; this process's THP policy, put back below.
    let thp_off = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) };
    let len = 64 << 10;
    // SAFETY: a fresh private anonymous mapping at an address the kernel picks.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    let mut result = Ok(None);
    if p != libc::MAP_FAILED {
        let base = (p as usize).next_multiple_of(16 << 10) as *mut u8;
        let out0 = stat("swpout");
        let in0 = stat("swpin");
        // SAFETY: `base .. base + 16K` lies inside the 64 KiB mapping made above (aligned up
        // by less than 16 KiB); the writes and the read are plain byte accesses to it, and
        // madvise only advises that range.
        unsafe {
            for i in 0..4 {
                std::ptr::write_volatile(base.add(i * 4096), 1);
            }
            libc::madvise(base.cast(), 16 << 10, libc::MADV_PAGEOUT);
            let out1 = stat("swpout");
            std::ptr::read_volatile(base);
            let in1 = stat("swpin");
            if let (Some(o0), Some(o1), Some(i0), Some(i1)) = (out0, out1, in0, in1) {
                if o1 == o0 + 1 {
                    result = Ok(Some(i1 > i0));
                }
            }
            libc::munmap(p, len);
        }
    }
    if thp_off >= 0 {
        // SAFETY: prctl with integer arguments only: the policy read above.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, thp_off as libc::c_ulong, 0, 0, 0) };
    }
    session.set(KNOB, &prev)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn header_layout() {
        let h = swap_header(262144);
        assert_eq!(h.len(), 4096);
        assert_eq!(u32::from_le_bytes(h[1024..1028].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(h[1028..1032].try_into().unwrap()),
            262143
        );
        assert_eq!(&h[4086..], b"SWAPSPACE2");
        assert!(h[..1024].iter().all(|&b| b == 0));
    }
}
