//! The worker child: the task whose faults a scenario measures.
//!
//! The parent `fork`s it at setup. The child never allocates and never panics on purpose: it
//! may be the fork of a multi-threaded process, so it only makes raw system calls and runs
//! allocation-free code (`touch_offsets` included). It talks to the parent with the typed
//! messages of [`crate::proto`] ([`Request`], [`Response`]), one message each on a
//! `SOCK_SEQPACKET` socket (one socket per worker; a fork request passes the new worker's end
//! of a fresh socket pair with `SCM_RIGHTS`). EOF on the socket (the parent died) ends it; a
//! message it cannot decode is answered with `EPROTO`.
//!
//! **fork.** A [`Request::Fork`] makes the worker `clone(CLONE_PARENT | SIGCHLD)` itself, so
//! the new worker inherits the address space exactly as fork(2) copies it and is a child of
//! the thpsim process (which reaps it). Both processes then redo the warm-up before answering:
//! fork write-protected every private page of the worker's own stack, TLS/errno and warm-up
//! buffer in *both* processes (the next write to each would take a COW fault), and the child
//! starts with no page tables for file-backed text (its first call of each handler would
//! take text faults). None of that may land in a measured window. The fork op itself is
//! reported with 0 faults: fork takes none (`dup_mmap` does not fault), and the worker
//! cannot measure around the clone without writing its own, now write-protected, stack.
//!
//! Before it reports ready it (1) reserves `arena_len + 2 GiB` of PROT_NONE address space,
//! picks the first 1 GiB-aligned address inside as the arena base, (2) maps a small warm-up
//! buffer, (3) unmaps the reservation again, so the arena is a real hole (scenario mappings
//! are placed with MAP_FIXED_NOREPLACE and never merge with a reservation; there is at least
//! one unmapped page below and 1 GiB above the arena), and (4) runs every request handler
//! once on the warm-up buffer and pre-faults 256 KiB of stack, so that text pages, errno/TLS
//! and stack COW faults are taken now and the measured windows contain only the scenario's
//! own faults.
//!
//! Accesses never actually fault with a signal: the parent computes from the child's
//! `/proc/PID/maps` how many accesses are safe (`limit`) and whether the failing one starts
//! with a read that succeeds (`extra_read`, for read-then-write on a read-only mapping).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::proto::{self, RecvError, Request, Response, Status};
use crate::sys::{self, GIB, PAGE};
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::pattern::touch_offsets;

// The accesses are two tiny functions with known instruction boundaries, so that a SIGBUS
// raised by an access (a userfault with UFFD_FEATURE_SIGBUS) can be caught: the handler moves
// the saved RIP from the faulting instruction to the `ret` after it and sets `SIGBUS_HIT`.
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.thpsim_touch,\"ax\",@progbits",
    ".globl thpsim_touch_read",
    ".globl thpsim_touch_read_ret",
    ".globl thpsim_touch_write",
    ".globl thpsim_touch_write_ret",
    ".type thpsim_touch_read,@function",
    "thpsim_touch_read:",
    "movzx eax, byte ptr [rdi]",
    "thpsim_touch_read_ret:",
    "ret",
    ".size thpsim_touch_read, .-thpsim_touch_read",
    ".type thpsim_touch_write,@function",
    "thpsim_touch_write:",
    "mov byte ptr [rdi], 1",
    "thpsim_touch_write_ret:",
    "ret",
    ".size thpsim_touch_write, .-thpsim_touch_write",
    ".popsection",
);

#[cfg(target_arch = "x86_64")]
extern "C" {
    fn thpsim_touch_read(p: *const u8);
    fn thpsim_touch_write(p: *mut u8);
    static thpsim_touch_read_ret: u8;
    static thpsim_touch_write_ret: u8;
}

/// Set by the SIGBUS handler when an access was skipped.
static SIGBUS_HIT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(target_arch = "x86_64")]
extern "C" fn on_sigbus(_sig: i32, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let (r0, r1, w0, w1) = (
        thpsim_touch_read as *const () as usize as i64,
        &raw const thpsim_touch_read_ret as usize as i64,
        thpsim_touch_write as *const () as usize as i64,
        &raw const thpsim_touch_write_ret as usize as i64,
    );
    // SAFETY: the kernel passes a valid ucontext_t for an SA_SIGINFO handler; we only read
    // and write the saved RIP of the interrupted context.
    unsafe {
        let rip = &mut (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RIP as usize];
        if *rip == r0 {
            *rip = r1;
        } else if *rip == w0 {
            *rip = w1;
        } else {
            // Not one of our accesses: die of it like without a handler (the instruction is
            // re-executed with the default disposition).
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
            return;
        }
    }
    SIGBUS_HIT.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Installs the SIGBUS handler `on_sigbus` (in the worker, after the signal reset).
pub fn install_sigbus_handler() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a zeroed sigaction with an SA_SIGINFO handler that is async-signal-safe (it
    // touches only the ucontext and an atomic).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// One access at `p`. Returns false if it raised SIGBUS (then a read-then-write stops after
/// the read).
#[inline(always)]
fn touch(p: *mut u8, pattern: Pattern) -> bool {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the parent checked against the child's VMAs (from /proc/PID/maps) that this
    // address is mapped with the needed protection, so the access cannot raise SIGSEGV; a
    // SIGBUS (userfault with UFFD_FEATURE_SIGBUS) is caught by `on_sigbus`, which skips the
    // instruction. The memory is scenario memory no Rust reference points to.
    unsafe {
        match pattern {
            Pattern::Read => thpsim_touch_read(p),
            Pattern::Write => thpsim_touch_write(p),
            Pattern::ReadWrite => {
                thpsim_touch_read(p);
                if !SIGBUS_HIT.load(std::sync::atomic::Ordering::Relaxed) {
                    thpsim_touch_write(p);
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above (no SIGBUS recovery on other architectures).
    unsafe {
        match pattern {
            Pattern::Read => {
                std::ptr::read_volatile(p);
            }
            Pattern::Write => std::ptr::write_volatile(p, 1),
            Pattern::ReadWrite => {
                std::ptr::read_volatile(p);
                std::ptr::write_volatile(p, 1);
            }
        }
    }
    !SIGBUS_HIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs one request with `base` as the arena start (absolute address). Returns the response
/// and, for `UffdOpen`, the new uffd (to pass to the parent).
#[inline(never)]
fn handle(base: u64, req: &Request) -> (Response, Option<OwnedFd>) {
    if let Request::GmemCreate { .. } = req {
        // The worker's VM and the create path's first run stay out of the measured window.
        let _ = crate::guest_memfd::vm_fd();
    }
    let (m0, j0) = sys::faults();
    let mut passed = None;
    // The syscalls below act on scenario addresses inside the arena (or the warm-up buffer);
    // they cannot affect Rust-owned memory because the arena was a hole reserved for the
    // scenario and the parent keeps every range inside it.
    let ret: Result<u64, Status> = match *req {
        Request::Mmap {
            addr,
            len,
            prot,
            flags,
        } => mmap_at(base, addr, len, prot, flags, -1, 0),
        Request::Munmap { addr, len } => {
            let addr = base.wrapping_add(addr);
            // SAFETY: the range is scenario memory in the arena; no Rust object lives there.
            let x = unsafe { libc::munmap(addr as *mut _, len as usize) };
            errno_of(x)
        }
        Request::Mprotect { addr, len, prot } => {
            let addr = base.wrapping_add(addr);
            // SAFETY: as for munmap; protections of scenario memory only.
            let x = unsafe { libc::mprotect(addr as *mut _, len as usize, prot) };
            errno_of(x)
        }
        Request::Madvise { addr, len, advice } => {
            let addr = base.wrapping_add(addr);
            // SAFETY: as for munmap; advice on scenario memory only (DONTNEED/FREE discard
            // scenario data, which no Rust object refers to).
            let x = unsafe { libc::madvise(addr as *mut _, len as usize, advice) };
            errno_of(x)
        }
        Request::Prctl { disable, flags } => {
            // SAFETY: PR_SET_THP_DISABLE only changes this process's THP policy; the
            // arguments are plain integers.
            let x = unsafe {
                libc::prctl(
                    libc::PR_SET_THP_DISABLE,
                    libc::c_ulong::from(disable),
                    flags as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                )
            };
            errno_of(x)
        }
        Request::Access {
            addr,
            len,
            stride,
            pattern,
            subset,
            limit,
            extra_read,
        } => {
            let addr = base.wrapping_add(addr);
            let mut it = touch_offsets(len, stride, subset);
            let mut done = 0u64;
            SIGBUS_HIT.store(false, std::sync::atomic::Ordering::SeqCst);
            let mut ok = true;
            while done < limit {
                match it.next() {
                    Some(off) => {
                        if !touch(addr.wrapping_add(off) as *mut u8, pattern) {
                            ok = false;
                            break;
                        }
                    }
                    None => break,
                }
                done += 1;
            }
            if ok && extra_read {
                if let Some(off) = it.next() {
                    ok = touch(addr.wrapping_add(off) as *mut u8, Pattern::Read);
                }
            }
            if ok {
                Ok(done)
            } else {
                Err(Status::Sigbus)
            }
        }
        Request::Mlock { addr, len, lock } => {
            let addr = base.wrapping_add(addr);
            // SAFETY: as for munmap; mlock/munlock only change VM_LOCKED on scenario memory
            // and populate it (root has CAP_IPC_LOCK, so RLIMIT_MEMLOCK does not apply).
            let x = unsafe {
                if lock {
                    libc::mlock(addr as *const _, len as usize)
                } else {
                    libc::munlock(addr as *const _, len as usize)
                }
            };
            errno_of(x)
        }
        Request::Mremap {
            addr,
            len,
            new_len,
            fixed,
            new,
        } => {
            let old = base.wrapping_add(addr);
            let (flags, new) = if fixed {
                (
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    base.wrapping_add(new),
                )
            } else {
                (0, 0)
            };
            // SAFETY: raw mremap(2) of scenario memory: moving it to another scenario address,
            // or resizing it in place (the parent keeps the old range and the result inside
            // the arena, or in the warm-up buffer during the warm-up); MREMAP_FIXED unmaps
            // only what is at the destination, a shrink only the old range's tail, a grow in
            // place takes only unmapped space: all scenario memory. No Rust object lives in
            // any of these ranges.
            let p = unsafe { libc::syscall(libc::SYS_mremap, old, len, new_len, flags, new) };
            if p < 0 {
                Err(Status::Errno(sys::errno()))
            } else {
                Ok((p as u64).wrapping_sub(base))
            }
        }
        Request::MemfdCreate { size } => memfd_sized(libc::MFD_CLOEXEC, size),
        Request::MemfdHugetlb { size, shift } => match shift {
            21 | 30 => memfd_sized(
                libc::MFD_CLOEXEC | libc::MFD_HUGETLB | huge_size_flag(shift as u32),
                size,
            ),
            _ => Err(Status::Errno(libc::EINVAL)),
        },
        Request::MmapFd {
            addr,
            len,
            prot,
            flags,
            fd,
            offset,
        } => mmap_at(base, addr, len, prot, flags, fd, offset),
        Request::Ftruncate { fd, size } => {
            // SAFETY: ftruncate of a scenario object's descriptor.
            errno_of(unsafe { libc::ftruncate(fd, size as libc::off_t) })
        }
        Request::Fallocate {
            fd,
            mode,
            offset,
            len,
        } => {
            // SAFETY: fallocate of a scenario object's descriptor.
            errno_of(unsafe {
                libc::fallocate(fd, mode, offset as libc::off_t, len as libc::off_t)
            })
        }
        Request::GmemCreate { size, flags } => crate::guest_memfd::create(size, flags)
            .map(|fd| fd as u64)
            .map_err(Status::Errno),
        Request::TmpfsMount { huge, size } => crate::tmpfs::mount(huge, size),
        Request::FileCreate { mnt, obj, size } => crate::tmpfs::create_file(mnt, obj, size),
        Request::OpenDevZero => crate::tmpfs::open_dev_zero(),
        Request::DiskFileCreate { size, dir } => crate::diskfile::create(size, dir),
        Request::Msync { addr, len, flags } => {
            let addr = base.wrapping_add(addr);
            // SAFETY: msync of scenario memory (or a range the kernel checks and refuses);
            // it only writes dirty file pages back.
            errno_of(unsafe { libc::msync(addr as *mut _, len as usize, flags) })
        }
        Request::Fsync { fd } => {
            // SAFETY: fsync of a scenario object's descriptor.
            errno_of(unsafe { libc::fsync(fd) })
        }
        Request::UffdOpen { features } => match crate::uffd::open(features) {
            Ok(fd) => {
                passed = Some(fd);
                Ok(0)
            }
            Err(e) => Err(Status::Errno(e)),
        },
        // Handled by the request loop; here only when the warm-up exercises this path.
        Request::Exit | Request::Fork => Err(Status::Errno(libc::EINVAL)),
    };
    let (m1, j1) = sys::faults();
    let status = match ret {
        Ok(v) => Status::Ok(v),
        Err(s) => s,
    };
    (
        Response {
            status,
            minflt: m1.wrapping_sub(m0),
            majflt: j1.wrapping_sub(j0),
        },
        passed,
    )
}

/// mmap(2) at arena offset `addr` (anonymous with `fd` -1, else of a scenario object at
/// `offset`); the result is the arena offset.
/// `MFD_HUGE_2MB`/`MFD_HUGE_1GB` (and the same `MAP_HUGE_*` values): log2 of the page size
/// in the flag bits (`MFD_HUGE_SHIFT` = `MAP_HUGE_SHIFT` = 26).
pub(crate) const fn huge_size_flag(shift: u32) -> libc::c_uint {
    shift << 26
}

/// `memfd_create(flags)` + `ftruncate(size)`: the descriptor, which stays open in this
/// worker (and its forks) until it exits, the scenario's object.
fn memfd_sized(flags: libc::c_uint, size: u64) -> Result<u64, Status> {
    // SAFETY: memfd_create with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"thpsim-obj".as_ptr(), flags) };
    if fd < 0 {
        return Err(Status::Errno(sys::errno()));
    }
    // SAFETY: ftruncate of the descriptor just created.
    let x = unsafe { libc::ftruncate(fd, size as libc::off_t) };
    if x < 0 {
        let e = sys::errno();
        // SAFETY: closing the descriptor just created; nothing else uses it.
        unsafe { libc::close(fd) };
        Err(Status::Errno(e))
    } else {
        Ok(fd as u64)
    }
}

fn mmap_at(
    base: u64,
    addr: u64,
    len: u64,
    prot: i32,
    flags: i32,
    fd: i32,
    offset: u64,
) -> Result<u64, Status> {
    let addr = base.wrapping_add(addr);
    // SAFETY: the range is inside the arena (the parent checks every range against it), which
    // holds only scenario mappings: MAP_FIXED_NOREPLACE never replaces one, and MAP_FIXED (a
    // scenario's `at=`) replaces only scenario memory, where no Rust object lives; `fd` is -1
    // or a scenario object of this worker.
    let p = unsafe {
        libc::mmap(
            addr as *mut _,
            len as usize,
            prot,
            flags,
            fd,
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(Status::Errno(sys::errno()))
    } else if p as u64 != addr {
        // Kernel without MAP_FIXED_NOREPLACE semantics: never keep a misplaced mapping.
        // SAFETY: unmapping the mapping this call just created.
        unsafe { libc::munmap(p, len as usize) };
        Err(Status::Errno(libc::EEXIST))
    } else {
        Ok(addr.wrapping_sub(base))
    }
}

/// A libc return value (0 or -1 with errno) as a result.
#[inline(always)]
fn errno_of(x: i32) -> Result<u64, Status> {
    if x < 0 {
        Err(Status::Errno(sys::errno()))
    } else {
        Ok(0)
    }
}

const WARM_LEN: u64 = 64 * 1024;

/// Runs a request of the warm-up (base 0: addresses are absolute) through the same encode and
/// decode steps as a real one, so that their text is mapped too.
fn warm(req: Request) -> Response {
    let bytes = req.encode();
    let req = Request::decode(&bytes).unwrap_or(Request::Exit);
    let (resp, _uffd) = handle(0, &req);
    let _ = Response::decode(&resp.encode());
    resp
}

/// Exercises every handler path once on a private buffer (see the module doc).
fn warm_up(warm_buf: u64) {
    sys::prefault_stack(256);
    let page = 4096;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let access = |pattern, subset, limit, extra_read| Request::Access {
        addr: warm_buf,
        len: WARM_LEN,
        stride: page,
        pattern,
        subset,
        limit,
        extra_read,
    };
    for p in [Pattern::Read, Pattern::Write, Pattern::ReadWrite] {
        use thpsim_scenario::ast::{Subset, SubsetCount};
        for subset in [
            None,
            Some(Subset {
                count: SubsetCount::Pages(3),
                seed: 7,
            }),
            Some(Subset {
                count: SubsetCount::Percent(50),
                seed: 7,
            }),
        ] {
            warm(access(p, subset, u64::MAX, false));
        }
    }
    warm(access(Pattern::ReadWrite, None, 2, true));
    let madvise = |addr| Request::Madvise {
        addr,
        len: page,
        advice: libc::MADV_NORMAL,
    };
    warm(madvise(warm_buf));
    warm(madvise(warm_buf + 1)); // EINVAL path
    warm(Request::Mprotect {
        addr: warm_buf,
        len: WARM_LEN,
        prot: rw,
    });
    let mmap = |addr| Request::Mmap {
        addr,
        len: page,
        prot: rw,
        flags: libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
    };
    let last = warm_buf + WARM_LEN - page;
    warm(mmap(warm_buf)); // EEXIST
    warm(Request::Munmap {
        addr: last,
        len: page,
    });
    warm(mmap(last));
    // mlock (populates: the pages are present already) and munlock of one page, and the
    // ENOMEM path; the VMA splits and merges back.
    let mlock = |addr, len, lock| Request::Mlock { addr, len, lock };
    warm(mlock(warm_buf, page, true));
    warm(mlock(warm_buf, page, false));
    // ENOMEM: below mmap_min_addr, never mapped.
    warm(mlock(PAGE, PAGE, true));
    // mremap: the EINVAL path (overlap), then a move of the last page onto the one before it
    // (with base 0 the destination is absolute) and a fresh mapping in the hole it leaves.
    warm(Request::Mremap {
        addr: warm_buf,
        len: page,
        new_len: page,
        fixed: true,
        new: warm_buf,
    });
    warm(Request::Mremap {
        addr: last,
        len: page,
        new_len: page,
        fixed: true,
        new: last - page,
    });
    warm(mmap(last));
    // prctl: re-set the current PR_SET_THP_DISABLE state (PR_GET_THP_DISABLE returns 1, or
    // 3 with PR_THP_DISABLE_EXCEPT_ADVISED), so the libc wrapper's text is mapped.
    // SAFETY: prctl with integer arguments only.
    let cur = unsafe {
        libc::prctl(
            libc::PR_GET_THP_DISABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if cur >= 0 {
        let cur = cur as u64;
        warm(Request::Prctl {
            disable: cur & 1 != 0,
            flags: if cur & 1 != 0 { cur & !1 } else { 0 },
        });
    }
    // userfaultfd(2) + UFFDIO_API (the fd is closed again when `warm` drops it: nothing is
    // registered).
    warm(Request::UffdOpen { features: 0 });
    warm_sigbus();
    // The refusal of a message that does not decode.
    let _ = Request::decode(&[0u8; proto::REQ_BYTES]);
    warm(Request::Fork);
    sys::faults();
}

/// Takes the SIGBUS path of an access once (read, write, read-then-write) on a page of an
/// empty memfd (beyond EOF), so the handler's text and the signal frame are not first
/// touched in a measured window.
fn warm_sigbus() {
    // SAFETY: memfd_create with a NUL-terminated name; the result is owned below.
    let fd = unsafe { libc::memfd_create(c"thpsim-warm".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // SAFETY: memfd_create succeeded: a new descriptor nothing else owns (closed on drop).
    let fd = unsafe { sys::own(fd) };
    // SAFETY: a fresh shared mapping of the (empty) memfd, chosen by the kernel.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p != libc::MAP_FAILED {
        for pattern in [Pattern::Read, Pattern::Write, Pattern::ReadWrite] {
            warm(Request::Access {
                addr: p as u64,
                len: PAGE,
                stride: PAGE,
                pattern,
                subset: None,
                limit: u64::MAX,
                extra_read: false,
            });
        }
        // SAFETY: unmapping the mapping created above.
        unsafe { libc::munmap(p, PAGE as usize) };
    }
    warm_objects();
    warm_tmpfs();
    warm_disk_files();
}

/// Takes the object requests' paths once (memfd, ftruncate, fallocate, a fd mapping), on
/// an object closed afterwards, so their text is not first touched in a measured window.
/// The object never gets a large folio, whatever the shmem knobs say: its only page is
/// faulted through a one-page mapping (order 0 is all that fits) before fallocate runs over
/// it, since fallocate itself may allocate any page-cache order, even 2 MiB for 4 KiB
/// (`shmem_enabled=always`; FINDINGS.md §15), which the scenario's counters would see.
fn warm_objects() {
    let r = warm(Request::MemfdCreate { size: PAGE });
    let Status::Ok(fd) = r.status else {
        return;
    };
    let fd = fd as i32;
    warm(Request::Ftruncate { fd, size: 2 * PAGE });
    // A kernel-chosen address outside the arena: `mmap_at` wants the mapping exactly where it
    // asks (MAP_FIXED_NOREPLACE), so take a free page first and ask for that one.
    // SAFETY: a new private anonymous page at an address the kernel picks; unmapped at once.
    let hole = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if hole == libc::MAP_FAILED {
        // SAFETY: closing the warm-up object created above; nothing else refers to it.
        unsafe { libc::close(fd) };
        return;
    }
    // SAFETY: unmapping the page mapped just above, which nothing uses.
    unsafe { libc::munmap(hole, PAGE as usize) };
    let m = warm(Request::MmapFd {
        addr: hole as u64,
        len: PAGE,
        prot: libc::PROT_READ | libc::PROT_WRITE,
        flags: libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
        fd,
        offset: 0,
    });
    let Status::Ok(p) = m.status else {
        // SAFETY: closing the warm-up object created above; nothing else refers to it.
        unsafe { libc::close(fd) };
        return;
    };
    warm(Request::Access {
        addr: p,
        len: PAGE,
        stride: PAGE,
        pattern: Pattern::Write,
        subset: None,
        limit: u64::MAX,
        extra_read: false,
    });
    warm(Request::Fallocate {
        fd,
        mode: libc::FALLOC_FL_KEEP_SIZE,
        offset: 0,
        len: PAGE,
    });
    warm(Request::Munmap { addr: p, len: PAGE });
    warm(Request::Fallocate {
        fd,
        mode: libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE,
        offset: 0,
        len: PAGE,
    });
    // SAFETY: closing the warm-up object created above; nothing else refers to it.
    unsafe { libc::close(fd) };
}

/// Takes the tmpfs, file and /dev/zero requests once: a small detached tmpfs (no huge
/// pages: `huge=never`, 1 page allowed) with one empty file, all closed again, which frees
/// the instance.
fn warm_tmpfs() {
    for r in [
        warm(Request::TmpfsMount {
            huge: 0,
            size: PAGE,
        }),
        warm(Request::OpenDevZero),
    ] {
        let Status::Ok(fd) = r.status else {
            continue;
        };
        let fd = fd as i32;
        if let Status::Ok(f) = warm(Request::FileCreate {
            mnt: fd,
            obj: 0,
            size: PAGE,
        })
        .status
        {
            // SAFETY: closing the warm-up file created above; nothing else refers to it.
            unsafe { libc::close(f as i32) };
        }
        // SAFETY: closing the warm-up descriptor opened above; nothing else refers to it.
        unsafe { libc::close(fd) };
    }
}

/// The disk-file requests once: an unnamed file in /var/tmp (gone with its descriptor),
/// the path of a run directory that does not exist (ENOENT, for the name formatting), fsync
/// of the file, and msync of an address nothing maps (ENOMEM, the handler's text only).
fn warm_disk_files() {
    warm(Request::DiskFileCreate {
        size: PAGE,
        dir: u64::MAX,
    });
    let r = warm(Request::DiskFileCreate { size: PAGE, dir: 0 });
    if let Status::Ok(fd) = r.status {
        warm(Request::Fsync { fd: fd as i32 });
        // SAFETY: closing the warm-up file created above; nothing else refers to it.
        unsafe { libc::close(fd as i32) };
    }
    warm(Request::Msync {
        addr: 0,
        len: PAGE,
        flags: libc::MS_SYNC,
    });
}

/// Sends a response; a parent that is gone is noticed at the next receive (EOF).
fn reply(chan: &OwnedFd, resp: Response, pass: Option<&OwnedFd>) {
    let _ = proto::send_response(chan.as_fd(), &resp, pass.map(|f| f.as_fd()));
}

/// Keeps the worker (and the workers it forks, which inherit the mask) on the lowest CPU it
/// may run on. Per-CPU state then follows the scenario alone: a folio just faulted in sits
/// in the CPU's LRU batch until that CPU drains it, and MADV_PAGEOUT / MADV_COLD drain only
/// their own CPU's (`lru_add_drain`), so a worker that woke up on the other CPU found its
/// pages not yet on the LRU and reclaimed nothing (FINDINGS §23); swap slots come from a
/// per-CPU cluster. Best effort: a failure leaves the mask as it was.
fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity/sched_setaffinity
    // read and write only the set passed, for this thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return;
        }
        let Some(cpu) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)) else {
            return;
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}

/// Entry point of the forked child. Never returns.
pub fn child_main(chan: OwnedFd, arena_len: u64, parent: i32) -> ! {
    // An orphaned worker must not go on (it may be in a long access loop and would not see
    // the socket close): SIGKILL when the thpsim process dies.
    sys::die_with_parent(parent);
    sys::reset_signals_in_child();
    install_sigbus_handler();
    sys::close_all_except(&mut [chan.as_raw_fd()]);
    let mut chan = chan;
    pin_to_one_cpu();
    // A scenario starts with the default per-process THP policy, whatever the parent's.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    let reserve = arena_len.saturating_add(2 * GIB);
    // SAFETY: a fresh PROT_NONE reservation; nothing else refers to it.
    let res = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if res == libc::MAP_FAILED {
        reply(&chan, Response::plain(Status::Errno(sys::errno())), None);
        // SAFETY: _exit is always safe in a forked child.
        unsafe { libc::_exit(1) };
    }
    let res = res as u64;
    let base = (res + 1).div_ceil(GIB) * GIB;
    // SAFETY: a fresh private mapping chosen by the kernel (outside the reservation).
    let warm_buf = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            WARM_LEN as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if warm_buf == libc::MAP_FAILED {
        reply(&chan, Response::plain(Status::Errno(sys::errno())), None);
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: releasing our own reservation; the arena becomes a hole.
    unsafe { libc::munmap(res as *mut _, reserve as usize) };
    let warm_buf = warm_buf as u64;
    warm_up(warm_buf);
    reply(&chan, Response::plain(Status::Ok(base)), None);
    loop {
        let (req, passed) = match proto::recv_request(chan.as_fd()) {
            Ok(m) => m,
            Err(RecvError::Proto(_)) => {
                reply(&chan, Response::plain(Status::Errno(libc::EPROTO)), None);
                continue;
            }
            Err(RecvError::Eof | RecvError::Io(_)) => break,
        };
        match req {
            Request::Exit => break,
            Request::Fork => {
                let Some(new_chan) = passed else {
                    reply(&chan, Response::plain(Status::Errno(libc::EINVAL)), None);
                    continue;
                };
                let pid = sys::clone_parent();
                if pid == 0 {
                    // The new worker (a child of the thpsim process, which fork does not
                    // give a death signal): its own channel (the old one is closed by the
                    // assignment), then the warm-up (see the module doc).
                    sys::die_with_parent(parent);
                    chan = new_chan;
                    warm_up(warm_buf);
                    reply(&chan, Response::plain(Status::Ok(base)), None);
                    continue;
                }
                drop(new_chan);
                if pid < 0 {
                    reply(&chan, Response::plain(Status::Errno(-pid)), None);
                    continue;
                }
                warm_up(warm_buf);
                reply(&chan, Response::plain(Status::Ok(pid as u64)), None);
            }
            _ => {
                // A descriptor sent with any other request is not wanted: dropped (closed).
                drop(passed);
                // For UffdOpen the uffd goes to the parent, then our copy is closed when
                // `uffd` is dropped.
                let (resp, uffd) = handle(base, &req);
                reply(&chan, resp, uffd.as_ref());
            }
        }
    }
    // SAFETY: _exit skips atexit handlers and destructors, which belong to the parent.
    unsafe { libc::_exit(0) }
}
