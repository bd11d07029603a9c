//! Swap on the host for a scenario's `swap SIZE` line (`--allow-swap`): a zram device used as
//! the only swap area of the machine for the run, set up and torn down by the run itself.
//!
//! * **Refusal.** A run never shares swap: it refuses when `/proc/swaps` lists any area or
//!   when `zram0` is already configured (`disksize` is not 0), and never touches another
//!   device.
//! * **Setup** ([`sysfs::Session::swap_setup`]): the journal says "swap on zram0" before the
//!   first change; then `disksize`, a version-1 swap header written here (what mkswap
//!   writes, without a label or UUID), and `swapon(2)` with priority 32767. Swap readahead
//!   (`vm.page-cluster`, `swap/vma_ra_enabled`) is a model knob, pinned to the scenario's
//!   value (default 3, the kernel's) and journaled like the THP knobs. zswap must
//!   be off and is never written (a write of any value marks it "ever enabled" until reboot,
//!   which turns large-folio swap-in off: FINDINGS §23).
//! * **Teardown** on every exit path (the normal end, the signal handlers, the panic hook,
//!   and the next run's journal recovery): the workers are killed first (their swap entries
//!   go with their mms), then `swapoff(2)` and `echo 1 > /sys/block/zram0/reset`.
//! * **Disk and file devices** (`swap SIZE type=disk|file`, [`SwapArea`]): the run makes a
//!   private directory `/var/tmp/thpsim-swap.<pid>` (mode 0700, on the ext4 root: `/run` is
//!   tmpfs, which cannot hold swap), a file in it fully allocated with `fallocate` (a swap
//!   file must have no holes) with the header written here, and turns on either the file
//!   itself (`type=file`: `S_ISREG`, no `SWP_BLKDEV`) or a loop device over it
//!   (`type=disk`: a block device whose I/O completes asynchronously, attached with
//!   `LOOP_CONFIGURE` and `LO_FLAGS_AUTOCLEAR`, so it detaches itself when swapoff closes
//!   it, or when the run dies before swapon). The journal names the directory and, before
//!   it is attached, the loop device. Teardown: `swapoff`, `LOOP_CLR_FD` (a no-op once
//!   autoclear did it), unlink, rmdir; a later run's recovery touches a loop device only
//!   if its backing file is the journaled one.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

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

/// Why swap cannot be set up here, if it cannot: another swap area, zswap on, or (for zram)
/// zram0 in use.
pub fn preflight() -> Result<(), String> {
    preflight_common()?;
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

/// No swap area on the machine and zswap off.
fn preflight_common() -> Result<(), String> {
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
    check_size(bytes)?;
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
    swapon(ZRAM_DEV)
}

/// Where the directories of disk and file swap areas go (on the root filesystem).
pub const AREA_PARENT: &str = "/var/tmp";
const AREA_PREFIX: &str = "thpsim-swap.";
const LOOP_CONTROL: &str = "/dev/loop-control";
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
pub(crate) const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const EXT4_SUPER_MAGIC: i64 = 0xEF53;

/// `struct loop_info64` (uapi/linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A disk or file swap area of a run: its private directory and, for `type=disk`, the loop
/// device over its file. Journaled (`crate::sysfs`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwapArea {
    /// `disk` or `file`.
    pub kind: String,
    /// `/var/tmp/thpsim-swap.<pid>`.
    pub dir: String,
    /// `/dev/loopN` once chosen (`type=disk`).
    #[serde(default)]
    pub loop_dev: Option<String>,
}

impl SwapArea {
    /// The area this process would make for `device` (None for zram).
    pub fn for_run(device: thpsim_kernel::SwapDevice) -> Option<SwapArea> {
        let kind = match device {
            thpsim_kernel::SwapDevice::Zram => return None,
            d => d.name().to_string(),
        };
        Some(SwapArea {
            kind,
            dir: format!("{AREA_PARENT}/{AREA_PREFIX}{}", std::process::id()),
            loop_dev: None,
        })
    }

    /// The swap file inside the directory.
    pub fn file(&self) -> String {
        format!("{}/swapfile", self.dir)
    }

    /// What `swapon` was given: the loop device or the file.
    pub fn target(&self) -> String {
        self.loop_dev.clone().unwrap_or_else(|| self.file())
    }

    /// Only what this crate writes: `disk`/`file`, a directory `/var/tmp/thpsim-swap.<digits>`
    /// and `/dev/loop<digits>` (a journal naming anything else is not trusted).
    pub fn valid(&self) -> bool {
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
        let dir_ok = self
            .dir
            .strip_prefix(&format!("{AREA_PARENT}/{AREA_PREFIX}"))
            .is_some_and(digits);
        let loop_ok = match (&self.loop_dev, self.kind.as_str()) {
            (None, "disk" | "file") => true,
            (Some(l), "disk") => l.strip_prefix("/dev/loop").is_some_and(digits),
            _ => false,
        };
        dir_ok && loop_ok
    }

    /// The loop device's backing file as sysfs shows it (None when it has none).
    pub fn loop_backing(&self) -> Option<String> {
        let name = self.loop_dev.as_deref()?.strip_prefix("/dev/")?;
        std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

/// Why a disk or file area cannot be set up: other swap, zswap on, the directory exists, the
/// parent is not ext4, or (disk) there is no loop driver.
pub fn preflight_area(area: &SwapArea) -> Result<(), String> {
    preflight_common()?;
    let parent = std::ffi::CString::new(AREA_PARENT).map_err(|e| e.to_string())?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: a NUL-terminated path and a buffer of the right type that statfs fills.
    let r = unsafe { libc::statfs(parent.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(format!(
            "statfs {AREA_PARENT}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // `f_type` is `__fsword_t`, whose width differs by architecture.
    #[allow(clippy::useless_conversion)]
    // SAFETY: statfs returned 0, so it filled the buffer.
    let magic = i64::from(unsafe { st.assume_init() }.f_type);
    if magic != EXT4_SUPER_MAGIC {
        return Err(format!(
            "{AREA_PARENT} is not on ext4 (f_type {magic:#x}): a swap {} needs a filesystem that can hold swap files",
            area.kind
        ));
    }
    if std::fs::symlink_metadata(&area.dir).is_ok() {
        return Err(format!("{} exists: refusing to reuse it", area.dir));
    }
    if area.kind == "disk" && !Path::new(LOOP_CONTROL).exists() {
        return Err(format!("no loop driver ({LOOP_CONTROL})"));
    }
    Ok(())
}

/// Makes the area's directory and its file of `bytes` (fully allocated, header written).
/// The caller has journaled the area.
pub fn area_create(area: &SwapArea, bytes: u64) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    check_size(bytes)?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&area.dir)
        .map_err(|e| format!("cannot create {}: {e}", area.dir))?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(area.file())
        .map_err(|e| format!("cannot create {}: {e}", area.file()))?;
    let len = libc::off_t::try_from(bytes).map_err(|e| e.to_string())?;
    // SAFETY: a valid open file descriptor and integer arguments.
    if unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, len) } != 0 {
        return Err(format!(
            "fallocate {}: {}",
            area.file(),
            std::io::Error::last_os_error()
        ));
    }
    f.write_all_at(&swap_header(bytes / PAGE), 0)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write the swap header to {}: {e}", area.file()))
}

/// `LOOP_CTL_GET_FREE`: the number of a free loop device.
pub fn loop_get_free() -> Result<String, String> {
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(LOOP_CONTROL)
        .map_err(|e| format!("cannot open {LOOP_CONTROL}: {e}"))?;
    // SAFETY: a valid descriptor of the loop control device; the request takes no argument.
    let n = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&ctl), LOOP_CTL_GET_FREE) };
    if n < 0 {
        return Err(format!(
            "LOOP_CTL_GET_FREE: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(format!("/dev/loop{n}"))
}

/// Attaches the area's file to its (journaled) loop device with autoclear, and turns the
/// device (`type=disk`) or the file (`type=file`) on as swap.
pub fn area_on(area: &SwapArea) -> Result<(), String> {
    let Some(dev) = &area.loop_dev else {
        return swapon(&area.file());
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(area.file())
        .map_err(|e| format!("cannot open {}: {e}", area.file()))?;
    let ld = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| format!("cannot open {dev}: {e}"))?;
    let fd = u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&file)).map_err(|e| e.to_string())?;
    let cfg = LoopConfig {
        fd,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_AUTOCLEAR,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: a valid loop device descriptor and a pointer to a properly laid out
    // `struct loop_config` that lives across the call.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&ld),
            LOOP_CONFIGURE,
            &cfg as *const LoopConfig,
        )
    };
    if r != 0 {
        return Err(format!(
            "LOOP_CONFIGURE {dev}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // swapon holds the device open; ours closes after it, so autoclear detaches the device
    // at swapoff (or now, if swapon failed).
    let on = swapon(dev);
    drop(ld);
    on
}

fn check_size(bytes: u64) -> Result<(), String> {
    if bytes < 2 * PAGE || bytes % PAGE != 0 {
        return Err(format!(
            "swap size {bytes} is not a multiple of 4 KiB of at least 8 KiB"
        ));
    }
    Ok(())
}

/// `swapon(2)` of `path` with the run's priority.
fn swapon(path: &str) -> Result<(), String> {
    let c = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path and integer flags; swapon has no memory preconditions.
    let r = unsafe { libc::swapon(c.as_ptr(), SWAP_FLAG_PREFER | SWAP_PRIO) };
    if r != 0 {
        return Err(format!(
            "swapon {path}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// What of a disk or file area is left (still swap, the loop device still backed by its
/// file, the file or the directory still there).
pub fn area_leftover(area: &SwapArea) -> Option<String> {
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let target = area.target();
    if swaps
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().next() == Some(target.as_str()))
    {
        return Some(format!("{target} is still swap"));
    }
    if area
        .loop_backing()
        .is_some_and(|b| b.starts_with(&area.dir))
    {
        return Some(format!(
            "{} is still attached to {}",
            area.loop_dev.as_deref().unwrap_or("?"),
            area.file()
        ));
    }
    std::fs::symlink_metadata(&area.dir)
        .is_ok()
        .then(|| format!("{} is still there", area.dir))
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
