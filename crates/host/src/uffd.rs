//! userfaultfd on the host: the uapi constants (`include/uapi/linux/userfaultfd.h`, Linux
//! 6.18), the worker's `userfaultfd(2)` + `UFFDIO_API`, the range ioctls the thpsim process
//! issues on a worker's uffd, and the **monitor**: the policy that resolves a fault message
//! the way the model's modelled monitor does (`thpsim_kernel::userfaultfd`).
//!
//! The worker creates the uffd and passes it to the thpsim process (`SCM_RIGHTS`), then closes
//! its own copy; every ioctl after `UFFDIO_API` is issued by the thpsim process (they act on the
//! uffd's mm, not the caller's — CRIU's lazy-pages daemon works the same way). While it waits
//! for a worker's response it polls the worker's socket *and* its uffd (see
//! `HostBackend::call`), so a worker blocked in `handle_userfault` is resolved exactly like a
//! monitor thread would: `UFFDIO_WRITEPROTECT` mode 0 for a write-protect fault, `UFFDIO_COPY` /
//! `UFFDIO_ZEROPAGE` of the still-missing pages of the aligned block for a missing fault,
//! `UFFDIO_CONTINUE` of the block's unmapped pages for a minor fault. The
//! fills use `DONTWAKE` and one `UFFDIO_WAKE` follows, so the task retries only once the whole
//! block is filled (as the model's monitor does). On a hugetlb VMA (a message at a 2 MiB
//! boundary whose VMA's `KernelPageSize` is 2 MiB) every ioctl covers whole huge pages, and a
//! zero-fill is a copy of zeros (hugetlb has no `UFFDIO_ZEROPAGE`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use thpsim_kernel::userfaultfd::{MinorPolicy, MissingPolicy, WpPolicy};

use crate::sys::{self, PAGE};

/// The default huge page size (`HPAGE_PMD_SIZE` on x86-64).
const HPAGE: u64 = 2 << 20;

pub const UFFD_API: u64 = 0xAA;
pub const UFFD_USER_MODE_ONLY: i32 = 1;

pub const UFFDIO_API: u64 = 0xC018_AA3F;
pub const UFFDIO_REGISTER: u64 = 0xC020_AA00;
pub const UFFDIO_UNREGISTER: u64 = 0x8010_AA01;
pub const UFFDIO_WAKE: u64 = 0x8010_AA02;
pub const UFFDIO_COPY: u64 = 0xC028_AA03;
pub const UFFDIO_ZEROPAGE: u64 = 0xC020_AA04;
pub const UFFDIO_WRITEPROTECT: u64 = 0xC018_AA06;
pub const UFFDIO_CONTINUE: u64 = 0xC020_AA07;

pub const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_SIGBUS: u64 = 1 << 7;
pub const UFFD_FEATURE_THREAD_ID: u64 = 1 << 8;
pub const UFFD_FEATURE_MINOR_SHMEM: u64 = 1 << 10;
pub const UFFD_FEATURE_EXACT_ADDRESS: u64 = 1 << 11;
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;

pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
pub const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_REGISTER_MODE_MINOR: u64 = 1 << 2;
pub const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_COPY_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_ZEROPAGE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
pub const UFFDIO_CONTINUE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_CONTINUE_MODE_WP: u64 = 1 << 1;

pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const FLAG_WRITE: u64 = 1 << 0;
pub const FLAG_WP: u64 = 1 << 1;
pub const FLAG_MINOR: u64 = 1 << 2;

/// Scenario feature name → `UFFD_FEATURE_*` bit (names of `Features::NAMES`).
pub fn feature_bit(name: &str) -> Option<u64> {
    Some(match name {
        "wp_unpopulated" => UFFD_FEATURE_WP_UNPOPULATED,
        "wp_async" => UFFD_FEATURE_WP_ASYNC,
        "sigbus" => UFFD_FEATURE_SIGBUS,
        "exact_address" => UFFD_FEATURE_EXACT_ADDRESS,
        "thread_id" => UFFD_FEATURE_THREAD_ID,
        "event_fork" => UFFD_FEATURE_EVENT_FORK,
        "minor_shmem" => UFFD_FEATURE_MINOR_SHMEM,
        _ => return None,
    })
}

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// `struct uffdio_zeropage` and `struct uffdio_continue` (same layout: the last field is
/// `zeropage` / `mapped`, the bytes done or an errno).
#[repr(C)]
struct UffdioRangeOp {
    range: UffdioRange,
    mode: u64,
    done: i64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// `ioctl(fd, req, arg)` → `Ok(())` or errno.
fn ioctl<T>(fd: BorrowedFd<'_>, req: u64, arg: &mut T) -> Result<(), i32> {
    // SAFETY: `arg` is a valid, writable, `repr(C)` struct of the size encoded in `req` (the
    // uapi layouts above); the kernel reads and writes only that struct.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg as *mut T) };
    if r < 0 {
        Err(sys::errno())
    } else {
        Ok(())
    }
}

/// In the worker: `userfaultfd(O_CLOEXEC | O_NONBLOCK)` (with `UFFD_USER_MODE_ONLY` if the
/// plain call is refused) and `UFFDIO_API` with `features` plus `PAGEFAULT_FLAG_WP` (dropped
/// again if this kernel refuses it). Returns the fd or errno. Allocation-free.
pub fn open(features: u64) -> Result<OwnedFd, i32> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: userfaultfd(2) takes only integer flags and returns a new fd or -1.
    let mut fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) } as i32;
    if fd < 0 && sys::errno() == libc::EPERM {
        // SAFETY: as above.
        fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY) } as i32;
    }
    if fd < 0 {
        return Err(sys::errno());
    }
    // SAFETY: userfaultfd(2) succeeded: a new descriptor nothing else owns. From here on it
    // is closed when `fd` is dropped, on every path.
    let fd = unsafe { sys::own(fd) };
    let mut r = Err(libc::EINVAL);
    for extra in [UFFD_FEATURE_PAGEFAULT_FLAG_WP, 0] {
        let mut api = UffdioApi {
            api: UFFD_API,
            features: features | extra,
            ioctls: 0,
        };
        r = ioctl(fd.as_fd(), UFFDIO_API, &mut api);
        if r != Err(libc::EINVAL) || features & extra != 0 {
            break;
        }
    }
    r.map(|()| fd)
}

pub fn register(fd: BorrowedFd<'_>, start: u64, len: u64, mode: u64) -> Result<(), i32> {
    let mut a = UffdioRegister {
        range: UffdioRange { start, len },
        mode,
        ioctls: 0,
    };
    ioctl(fd, UFFDIO_REGISTER, &mut a)
}

pub fn unregister(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), i32> {
    let mut a = UffdioRange { start, len };
    ioctl(fd, UFFDIO_UNREGISTER, &mut a)
}

pub fn wake(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), i32> {
    let mut a = UffdioRange { start, len };
    ioctl(fd, UFFDIO_WAKE, &mut a)
}

pub fn writeprotect(fd: BorrowedFd<'_>, start: u64, len: u64, mode: u64) -> Result<(), i32> {
    let mut a = UffdioWriteprotect {
        range: UffdioRange { start, len },
        mode,
    };
    ioctl(fd, UFFDIO_WRITEPROTECT, &mut a)
}

/// Source of `UFFDIO_COPY`: 2 MiB of bytes `1` (the model's copies are non-zero pages).
fn ones() -> &'static [u8] {
    static ONES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ONES.get_or_init(|| vec![1u8; 2 << 20])
}

/// `UFFDIO_COPY` of `[start, start+len)` from pages of 1s, in chunks of at most 2 MiB. Stops
/// at the first error (EEXIST at the first populated page: the pages before it stay).
/// A range the kernel refuses before it reads the source (`validate_unaligned_range` /
/// `validate_range`: a length or destination that is not page aligned, or 0) goes in one
/// ioctl with the whole length, so the answer is the one a single UFFDIO_COPY gets (EINVAL),
/// not a chunk's.
pub fn copy(fd: BorrowedFd<'_>, start: u64, len: u64, mode: u64) -> Result<(), i32> {
    let page = 4096u64;
    if len == 0 || len % page != 0 || start % page != 0 {
        let mut a = UffdioCopy {
            dst: start,
            src: ones().as_ptr() as u64,
            len,
            mode,
            copy: 0,
        };
        return ioctl(fd, UFFDIO_COPY, &mut a);
    }
    if len > HPAGE && (start % HPAGE != 0 || len % HPAGE != 0) {
        // Chunks of 2 MiB would be a different request on hugetlb, where the kernel checks
        // the whole range's huge-page alignment before copying anything: one ioctl from a
        // source as long as the range (only such rare scenario-level copies pay for it).
        let src = vec![1u8; usize::try_from(len).map_err(|_| libc::EINVAL)?];
        let mut a = UffdioCopy {
            dst: start,
            src: src.as_ptr() as u64,
            len,
            mode,
            copy: 0,
        };
        return match ioctl(fd, UFFDIO_COPY, &mut a) {
            Err(libc::EAGAIN) if a.copy > 0 => {
                let done = a.copy as u64;
                copy(fd, start + done, len - done, mode)
            }
            r => r,
        };
    }
    copy_from(fd, start, len, mode, ones())
}

/// 2 MiB of zero bytes: the source of a monitor's zero-fill of a hugetlb page.
fn zeros() -> &'static [u8] {
    static ZEROS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ZEROS.get_or_init(|| vec![0u8; 2 << 20])
}

/// The chunked copy of a page-aligned range from `src` (2 MiB at a time).
fn copy_from(
    fd: BorrowedFd<'_>,
    start: u64,
    len: u64,
    mode: u64,
    src: &'static [u8],
) -> Result<(), i32> {
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(src.len() as u64);
        let mut a = UffdioCopy {
            dst: start + done,
            src: src.as_ptr() as u64,
            len: n,
            mode,
            copy: 0,
        };
        match ioctl(fd, UFFDIO_COPY, &mut a) {
            Ok(()) => done += n,
            // A partial copy interrupted by an mm change: continue after what was copied.
            Err(libc::EAGAIN) if a.copy > 0 => done += a.copy as u64,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn zeropage(fd: BorrowedFd<'_>, start: u64, len: u64, mode: u64) -> Result<(), i32> {
    range_ioctl(fd, UFFDIO_ZEROPAGE, start, len, mode)
}

/// `UFFDIO_CONTINUE` of `[start, start+len)`. A partial success is EAGAIN with the bytes
/// mapped (the errno of the page that stopped it is not reported): retried after them, so
/// the result is that page's errno (EEXIST, EFAULT), as the model reports.
pub fn continue_range(fd: BorrowedFd<'_>, start: u64, len: u64, mode: u64) -> Result<(), i32> {
    range_ioctl(fd, UFFDIO_CONTINUE, start, len, mode)
}

/// A range ioctl whose argument is `{range, mode, s64 done}` (`struct uffdio_zeropage`,
/// `struct uffdio_continue`): on EAGAIN after part of the range, go on after that part.
fn range_ioctl(fd: BorrowedFd<'_>, req: u64, start: u64, len: u64, mode: u64) -> Result<(), i32> {
    let mut a = UffdioRangeOp {
        range: UffdioRange { start, len },
        mode,
        done: 0,
    };
    loop {
        match ioctl(fd, req, &mut a) {
            Err(libc::EAGAIN) if a.done > 0 => {
                a.range.start += a.done as u64;
                a.range.len -= a.done as u64;
                a.done = 0;
            }
            r => return r,
        }
    }
}

/// One `struct uffd_msg` (32 bytes): the event and, for a page fault, flags and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub event: u8,
    pub flags: u64,
    pub address: u64,
    pub ptid: u32,
}

/// Reads every queued message (the fd is non-blocking).
pub fn read_msgs(fd: BorrowedFd<'_>, out: &mut Vec<Msg>) -> Result<(), i32> {
    let mut buf = [0u8; 32 * 64];
    loop {
        // SAFETY: reading into a writable buffer of exactly `buf.len()` bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return match sys::errno() {
                libc::EAGAIN => Ok(()),
                libc::EINTR => continue,
                e => Err(e),
            };
        }
        if n == 0 {
            return Ok(());
        }
        for m in buf[..n as usize].chunks_exact(32) {
            let u = |o: usize| u64::from_le_bytes(m[o..o + 8].try_into().unwrap());
            out.push(Msg {
                event: m[0],
                flags: u(8),
                address: u(16),
                ptid: u32::from_le_bytes(m[24..28].try_into().unwrap()),
            });
        }
    }
}

/// Message counts, cumulative over a run and all processes (the model's `uffd.*` counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The last page-fault message: flags and (absolute) address.
    pub last: Option<(u32, u64)>,
    pub events: u64,
    pub missing: u64,
    pub wp: u64,
    pub minor: u64,
    pub write: u64,
}

impl Stats {
    pub fn named(&self) -> [(&'static str, u64); 5] {
        [
            ("uffd.events", self.events),
            ("uffd.missing", self.missing),
            ("uffd.wp", self.wp),
            ("uffd.minor", self.minor),
            ("uffd.write", self.write),
        ]
    }
}

/// A worker's uffd as the thpsim process holds it.
pub struct Uffd {
    /// Closed when the `Uffd` is dropped.
    pub fd: OwnedFd,
    /// `UFFD_FEATURE_*` bits requested (scenario features only).
    pub features: u64,
    pub wp_policy: WpPolicy,
    pub missing_policy: MissingPolicy,
    pub minor_policy: MinorPolicy,
    /// Every page-fault message, in order.
    pub msgs: Vec<Msg>,
}

impl Uffd {
    pub fn new(fd: OwnedFd, features: u64) -> Self {
        Uffd {
            fd,
            features,
            wp_policy: WpPolicy::Unprotect(PAGE),
            missing_policy: MissingPolicy::Copy(PAGE),
            minor_policy: MinorPolicy::Continue(PAGE),
            msgs: Vec::new(),
        }
    }

    /// Counts and resolves one page-fault message like the model's monitor. `vma` finds the
    /// `[start, end)` of the VMA containing an address (read from /proc/PID/maps; only asked
    /// for blocks larger than a page) and `pagesize` its page size (`KernelPageSize`, asked
    /// only where a hugetlb fault can be). Returns a note if an ioctl failed (the task is
    /// woken anyway, so it retries).
    pub fn resolve(
        &mut self,
        m: Msg,
        stats: &mut Stats,
        vma: &mut dyn FnMut(u64) -> Option<(u64, u64)>,
        pagesize: &mut dyn FnMut(u64) -> Option<u64>,
    ) -> Option<String> {
        self.msgs.push(m);
        if m.event != UFFD_EVENT_PAGEFAULT {
            return Some(format!("unexpected uffd event {:#x}", m.event));
        }
        stats.events += 1;
        stats.last = Some((m.flags as u32, m.address));
        if m.flags & FLAG_WRITE != 0 {
            stats.write += 1;
        }
        // A hugetlb fault reports the huge page's address (hugetlb_fault's vmf->address)
        // unless EXACT_ADDRESS is on: only such a message can come from a hugetlb VMA, whose
        // page size the monitor then uses as its unit (every ioctl on hugetlb works on
        // whole huge pages, as QEMU's postcopy uses its RAM block's page size).
        let unit = if self.features & UFFD_FEATURE_EXACT_ADDRESS != 0 || m.address % HPAGE == 0 {
            pagesize(m.address).unwrap_or(PAGE).max(PAGE)
        } else {
            PAGE
        };
        let addr = m.address & !(unit - 1);
        // The naturally aligned block of `size` (at least the unit) around the page (`None`:
        // the whole VMA), clipped to the VMA.
        let mut block = |size: Option<u64>| -> (u64, u64) {
            let size = size.map(|s| s.max(unit));
            if size.is_some_and(|s| s <= PAGE) {
                return (addr, addr + PAGE);
            }
            let (s, e) = match size {
                Some(size) => {
                    let a = addr & !(size - 1);
                    (a, a.saturating_add(size))
                }
                None => (0, u64::MAX),
            };
            match vma(addr) {
                Some((vs, ve)) => (s.max(vs), e.min(ve)),
                None => (addr, addr + PAGE),
            }
        };
        let fd = self.fd.as_fd();
        if m.flags & FLAG_WP != 0 {
            stats.wp += 1;
            let (s, e) = match self.wp_policy {
                WpPolicy::Unprotect(size) => block(Some(size)),
                WpPolicy::UnprotectVma => block(None),
            };
            // Mode 0: resolve and wake the range.
            if let Err(errno) = writeprotect(fd, s, e - s, 0) {
                let _ = wake(fd, addr, PAGE);
                return Some(format!(
                    "monitor: UFFDIO_WRITEPROTECT {s:#x}+{:#x} mode 0: {}",
                    e - s,
                    thpsim_kernel::errno::Errno(errno)
                ));
            }
            None
        } else if m.flags & FLAG_MINOR != 0 {
            stats.minor += 1;
            let MinorPolicy::Continue(size) = self.minor_policy;
            let (s, e) = block(Some(size));
            let mut note = None;
            let mut a = s;
            while a < e {
                // Map what the page table lacks: a mapped page is EEXIST, a page the cache
                // lacks EFAULT, one beyond i_size EINVAL (all left alone, as the model's
                // monitor does).
                match continue_range(fd, a, unit, UFFDIO_CONTINUE_MODE_DONTWAKE) {
                    Ok(()) | Err(libc::EEXIST | libc::EFAULT | libc::EINVAL) => {}
                    Err(err) => {
                        note.get_or_insert_with(|| {
                            format!(
                                "monitor: UFFDIO_CONTINUE at {a:#x}: {}",
                                thpsim_kernel::errno::Errno(err)
                            )
                        });
                    }
                }
                a += unit;
            }
            let _ = wake(fd, s, e - s);
            note
        } else {
            stats.missing += 1;
            let (size, zero) = match self.missing_policy {
                MissingPolicy::Copy(s) => (s, false),
                MissingPolicy::Zeropage(s) => (s, true),
            };
            let (s, e) = block(Some(size));
            let mut note = None;
            let mut a = s;
            while a < e {
                // Fill what is still missing: a populated page (or a huge PMD) is EEXIST.
                // hugetlb has no UFFDIO_ZEROPAGE (EINVAL): a zero-fill there is a copy of
                // zeros (QEMU's postcopy_place_page_zero does the same).
                let r = if zero && unit == PAGE {
                    zeropage(fd, a, PAGE, UFFDIO_ZEROPAGE_MODE_DONTWAKE)
                } else if zero {
                    copy_from(fd, a, unit, UFFDIO_COPY_MODE_DONTWAKE, zeros())
                } else {
                    copy(fd, a, unit, UFFDIO_COPY_MODE_DONTWAKE)
                };
                match r {
                    Ok(()) | Err(libc::EEXIST) => {}
                    Err(err) => {
                        note.get_or_insert_with(|| {
                            format!(
                                "monitor: UFFDIO_{} at {a:#x}: {}",
                                if zero { "ZEROPAGE" } else { "COPY" },
                                thpsim_kernel::errno::Errno(err)
                            )
                        });
                    }
                }
                a += unit;
            }
            let _ = wake(fd, s, e - s);
            note
        }
    }
}
