//! The worker child: the task whose faults a scenario measures.
//!
//! The parent `fork`s it at setup. The child never allocates and never panics on purpose: it
//! may be the fork of a multi-threaded process, so it only makes raw system calls and runs
//! allocation-free code (`touch_offsets` included). It talks to the parent with fixed-size
//! little-endian records of `u64` words ([`Req`], [`Resp`]), one message each on a
//! `SOCK_SEQPACKET` socket (one socket per worker; a fork request passes the new worker's end
//! of a fresh socket pair with `SCM_RIGHTS`). EOF on the socket (the parent died) ends it.
//!
//! **fork.** A [`K_FORK`] request makes the worker `clone(CLONE_PARENT | SIGCHLD)` itself, so
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

use crate::sys::{self, GIB, PAGE};
use thpsim_scenario::ast::{Pattern, Subset, SubsetCount};
use thpsim_scenario::pattern::touch_offsets;

pub const REQ_WORDS: usize = 12;
pub const RESP_WORDS: usize = 4;

pub const K_MMAP: u64 = 1;
pub const K_MUNMAP: u64 = 2;
pub const K_MPROTECT: u64 = 3;
pub const K_MADVISE: u64 = 4;
pub const K_ACCESS: u64 = 5;
pub const K_EXIT: u64 = 6;
pub const K_PRCTL: u64 = 7;
/// fork(2) of this worker; the request carries the new worker's channel (`SCM_RIGHTS`). The
/// response is `[0, child pid, 0, 0]` (or `[1, errno, 0, 0]`); the child then sends its own
/// ready message `[0, arena base, 0, 0]` on the new channel.
pub const K_FORK: u64 = 8;
/// userfaultfd(2) + `UFFDIO_API` with the `UFFD_FEATURE_*` bits in `a`. The response
/// `[0, 0, minflt, majflt]` carries the uffd (`SCM_RIGHTS`); the worker then closes its copy,
/// so the thpsim process holds the only reference (and a later fork does not inherit it).
pub const K_UFFD_OPEN: u64 = 9;
/// mlock(2) (`a` = 1) or munlock(2) (`a` = 0) of `[addr, addr+len)`. mlock populates the
/// range (`__mm_populate`): its faults are the task's and are measured like an access's.
pub const K_MLOCK: u64 = 10;
/// `mremap(addr, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, base + a)`; the value is the new
/// address as an arena offset. Takes no fault (page tables move, nothing is touched).
pub const K_MREMAP: u64 = 11;

/// Response status of an access op stopped by SIGBUS (a userfault with
/// `UFFD_FEATURE_SIGBUS`); the value is the number of accesses completed before it.
pub const ST_SIGBUS: u64 = 2;

pub const P_READ: u64 = 0;
pub const P_WRITE: u64 = 1;
pub const P_RW: u64 = 2;

/// A request: `[kind, addr (arena offset), len, a, b, subset_kind, subset_count, subset_seed,
/// limit, extra_read, 0, 0]`. For mmap `a` = prot, `b` = flags; mprotect `a` = prot; madvise
/// `a` = advice; access `a` = stride, `b` = pattern.
pub type Req = [u64; REQ_WORDS];
/// A response: `[status (0 ok, 1 errno, 2 SIGBUS), value or errno, minflt delta, majflt
/// delta]`.
pub type Resp = [u64; RESP_WORDS];

pub fn encode_subset(s: Option<Subset>) -> (u64, u64, u64) {
    match s {
        None => (0, 0, 0),
        Some(Subset {
            count: SubsetCount::Pages(k),
            seed,
        }) => (1, k, seed),
        Some(Subset {
            count: SubsetCount::Percent(p),
            seed,
        }) => (2, p as u64, seed),
    }
}

pub fn decode_subset(kind: u64, count: u64, seed: u64) -> Option<Subset> {
    match kind {
        1 => Some(Subset {
            count: SubsetCount::Pages(count),
            seed,
        }),
        2 => Some(Subset {
            count: SubsetCount::Percent(count as u32),
            seed,
        }),
        _ => None,
    }
}

pub fn pattern_code(p: Pattern) -> u64 {
    match p {
        Pattern::Read => P_READ,
        Pattern::Write => P_WRITE,
        Pattern::ReadWrite => P_RW,
    }
}

fn to_bytes<const N: usize>(w: &[u64; N], out: &mut [u8]) {
    for (i, x) in w.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&x.to_le_bytes());
    }
}

fn from_bytes<const N: usize>(b: &[u8]) -> [u64; N] {
    let mut w = [0u64; N];
    for (i, x) in w.iter_mut().enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i * 8..i * 8 + 8]);
        *x = u64::from_le_bytes(a);
    }
    w
}

pub fn send_req(fd: i32, r: &Req) -> Result<(), i32> {
    send_req_fd(fd, r, None)
}

/// Sends a request with a file descriptor attached (`SCM_RIGHTS`).
pub fn send_req_fd(fd: i32, r: &Req, pass: Option<i32>) -> Result<(), i32> {
    let mut b = [0u8; REQ_WORDS * 8];
    to_bytes(r, &mut b);
    sys::send_msg(fd, &b, pass)
}

pub fn recv_resp(fd: i32) -> Result<Option<Resp>, i32> {
    let mut b = [0u8; RESP_WORDS * 8];
    Ok(match sys::recv_msg(fd, &mut b)? {
        Some(passed) => {
            if let Some(f) = passed {
                sys::close(f);
            }
            Some(from_bytes(&b))
        }
        None => None,
    })
}

/// Receives a response and the descriptor passed with it (the uffd of `K_UFFD_OPEN`).
pub fn recv_resp_fd(fd: i32) -> Result<Option<(Resp, Option<i32>)>, i32> {
    let mut b = [0u8; RESP_WORDS * 8];
    Ok(sys::recv_msg(fd, &mut b)?.map(|passed| (from_bytes(&b), passed)))
}

fn send_resp(fd: i32, r: &Resp) {
    send_resp_fd(fd, r, None)
}

fn send_resp_fd(fd: i32, r: &Resp, pass: Option<i32>) {
    let mut b = [0u8; RESP_WORDS * 8];
    to_bytes(r, &mut b);
    let _ = sys::send_msg(fd, &b, pass);
}

/// The next request and the descriptor passed with it; `None` at EOF or on error.
fn recv_req(fd: i32) -> Option<(Req, Option<i32>)> {
    let mut b = [0u8; REQ_WORDS * 8];
    match sys::recv_msg(fd, &mut b) {
        Ok(Some(passed)) => Some((from_bytes(&b), passed)),
        _ => None,
    }
}

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
fn touch(p: *mut u8, pattern: u64) -> bool {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the parent checked against the child's VMAs (from /proc/PID/maps) that this
    // address is mapped with the needed protection, so the access cannot raise SIGSEGV; a
    // SIGBUS (userfault with UFFD_FEATURE_SIGBUS) is caught by `on_sigbus`, which skips the
    // instruction. The memory is scenario memory no Rust reference points to.
    unsafe {
        match pattern {
            P_READ => thpsim_touch_read(p),
            P_WRITE => thpsim_touch_write(p),
            _ => {
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
            P_READ => {
                std::ptr::read_volatile(p);
            }
            P_WRITE => std::ptr::write_volatile(p, 1),
            _ => {
                std::ptr::read_volatile(p);
                std::ptr::write_volatile(p, 1);
            }
        }
    }
    !SIGBUS_HIT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs one request with `base` as the arena start (absolute address). Returns the response.
#[inline(never)]
fn handle(base: u64, r: &Req) -> Resp {
    let addr = base.wrapping_add(r[1]);
    let len = r[2];
    let (m0, j0) = sys::faults();
    // The syscalls below act on scenario addresses inside the arena (or the warm-up buffer);
    // they cannot affect Rust-owned memory because the arena was a hole reserved for the
    // scenario and the parent keeps every range inside it.
    let ret: Result<u64, i32> = match r[0] {
        K_MMAP => {
            // SAFETY: MAP_FIXED_NOREPLACE inside the arena never replaces an existing mapping.
            let p = unsafe {
                libc::mmap(
                    addr as *mut _,
                    len as usize,
                    r[3] as i32,
                    r[4] as i32,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(sys::errno())
            } else if p as u64 != addr {
                // Kernel without MAP_FIXED_NOREPLACE semantics: never keep a misplaced mapping.
                // SAFETY: unmapping the mapping this call just created.
                unsafe { libc::munmap(p, len as usize) };
                Err(libc::EEXIST)
            } else {
                Ok(addr.wrapping_sub(base))
            }
        }
        K_MUNMAP => {
            // SAFETY: the range is scenario memory in the arena; no Rust object lives there.
            let x = unsafe { libc::munmap(addr as *mut _, len as usize) };
            if x < 0 {
                Err(sys::errno())
            } else {
                Ok(0)
            }
        }
        K_MPROTECT => {
            // SAFETY: as for munmap; protections of scenario memory only.
            let x = unsafe { libc::mprotect(addr as *mut _, len as usize, r[3] as i32) };
            if x < 0 {
                Err(sys::errno())
            } else {
                Ok(0)
            }
        }
        K_MADVISE => {
            // SAFETY: as for munmap; advice on scenario memory only (DONTNEED/FREE discard
            // scenario data, which no Rust object refers to).
            let x = unsafe { libc::madvise(addr as *mut _, len as usize, r[3] as i32) };
            if x < 0 {
                Err(sys::errno())
            } else {
                Ok(0)
            }
        }
        K_PRCTL => {
            // SAFETY: PR_SET_THP_DISABLE only changes this process's THP policy; the
            // arguments are plain integers.
            let x = unsafe {
                libc::prctl(
                    libc::PR_SET_THP_DISABLE,
                    r[3] as libc::c_ulong,
                    r[4] as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                )
            };
            if x < 0 {
                Err(sys::errno())
            } else {
                Ok(0)
            }
        }
        K_ACCESS => {
            let pattern = r[4];
            let limit = r[8];
            let mut it = touch_offsets(len, r[3], decode_subset(r[5], r[6], r[7]));
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
            if ok && r[9] != 0 {
                if let Some(off) = it.next() {
                    ok = touch(addr.wrapping_add(off) as *mut u8, P_READ);
                }
            }
            if ok {
                Ok(done)
            } else {
                Err(-1)
            }
        }
        K_MLOCK => {
            // SAFETY: as for munmap; mlock/munlock only change VM_LOCKED on scenario memory
            // and populate it (root has CAP_IPC_LOCK, so RLIMIT_MEMLOCK does not apply).
            let x = unsafe {
                if r[3] != 0 {
                    libc::mlock(addr as *const _, len as usize)
                } else {
                    libc::munlock(addr as *const _, len as usize)
                }
            };
            if x < 0 {
                Err(sys::errno())
            } else {
                Ok(0)
            }
        }
        K_MREMAP => {
            let new = base.wrapping_add(r[3]);
            // SAFETY: raw mremap(2) moving scenario memory to another scenario address (the
            // parent keeps both ranges inside the arena, or in the warm-up buffer during the
            // warm-up); MREMAP_FIXED unmaps only what is at the destination, which is scenario
            // memory too. No Rust object lives in either range.
            let p = unsafe {
                libc::syscall(
                    libc::SYS_mremap,
                    addr,
                    len,
                    len,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    new,
                )
            };
            if p < 0 {
                Err(sys::errno())
            } else {
                Ok((p as u64).wrapping_sub(base))
            }
        }
        K_UFFD_OPEN => crate::uffd::open(r[3]).map(|fd| fd as u64),
        _ => Err(libc::ENOSYS),
    };
    let (m1, j1) = sys::faults();
    let (st, v) = match ret {
        Ok(v) => (0, v),
        Err(-1) => (ST_SIGBUS, 0),
        Err(e) => (1, e as u64),
    };
    [st, v, m1.wrapping_sub(m0), j1.wrapping_sub(j0)]
}

const WARM_LEN: u64 = 64 * 1024;

/// Exercises every handler path once on a private buffer (see the module doc).
fn warm_up(warm: u64) {
    sys::prefault_stack(256);
    let w = |kind, addr, len, a, b, sk, sc| -> Resp {
        handle(0, &[kind, addr, len, a, b, sk, sc, 7, u64::MAX, 0, 0, 0])
    };
    for p in [P_READ, P_WRITE, P_RW] {
        w(K_ACCESS, warm, WARM_LEN, 4096, p, 0, 0);
        w(K_ACCESS, warm, WARM_LEN, 4096, p, 1, 3);
        w(K_ACCESS, warm, WARM_LEN, 4096, p, 2, 50);
    }
    handle(
        0,
        &[K_ACCESS, warm, WARM_LEN, 4096, P_RW, 0, 0, 0, 2, 1, 0, 0],
    );
    w(K_MADVISE, warm, 4096, libc::MADV_NORMAL as u64, 0, 0, 0);
    w(K_MADVISE, warm + 1, 4096, libc::MADV_NORMAL as u64, 0, 0, 0); // EINVAL path
    w(
        K_MPROTECT,
        warm,
        WARM_LEN,
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
        0,
        0,
        0,
    );
    let fl = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    w(
        K_MMAP,
        warm,
        4096,
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
        fl,
        0,
        0,
    ); // EEXIST
    w(K_MUNMAP, warm + WARM_LEN - 4096, 4096, 0, 0, 0, 0);
    w(
        K_MMAP,
        warm + WARM_LEN - 4096,
        4096,
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
        fl,
        0,
        0,
    );
    // mlock (populates: the pages are present already) and munlock of one page, and the
    // ENOMEM path; the VMA splits and merges back.
    w(K_MLOCK, warm, 4096, 1, 0, 0, 0);
    w(K_MLOCK, warm, 4096, 0, 0, 0, 0);
    // ENOMEM: below mmap_min_addr, never mapped.
    w(K_MLOCK, PAGE, PAGE, 1, 0, 0, 0);
    // mremap: the EINVAL path (overlap), then a move of the last page onto the one before it
    // (with base 0 the destination is absolute) and a fresh mapping in the hole it leaves.
    w(K_MREMAP, warm, 4096, warm, 0, 0, 0);
    w(
        K_MREMAP,
        warm + WARM_LEN - 4096,
        4096,
        warm + WARM_LEN - 8192,
        0,
        0,
        0,
    );
    w(
        K_MMAP,
        warm + WARM_LEN - 4096,
        4096,
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
        fl,
        0,
        0,
    );
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
        w(
            K_PRCTL,
            0,
            0,
            cur & 1,
            if cur & 1 != 0 { cur & !1 } else { 0 },
            0,
            0,
        );
    }
    // userfaultfd(2) + UFFDIO_API (the fd is closed again: nothing is registered).
    let r = w(K_UFFD_OPEN, 0, 0, 0, 0, 0, 0);
    if r[0] == 0 {
        sys::close(r[1] as i32);
    }
    warm_sigbus();
    w(99, 0, 0, 0, 0, 0, 0);
    sys::faults();
}

/// Takes the SIGBUS path of an access once (read, write, read-then-write) on a page of an
/// empty memfd (beyond EOF), so the handler's text and the signal frame are not first
/// touched in a measured window.
fn warm_sigbus() {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is closed below.
    let fd = unsafe { libc::memfd_create(c"thpsim-warm".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // SAFETY: a fresh shared mapping of the (empty) memfd, chosen by the kernel.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p != libc::MAP_FAILED {
        let p = p as u64;
        for pat in [P_READ, P_WRITE, P_RW] {
            handle(
                0,
                &[K_ACCESS, p, PAGE, PAGE, pat, 0, 0, 0, u64::MAX, 0, 0, 0],
            );
        }
        // SAFETY: unmapping the mapping created above.
        unsafe { libc::munmap(p as *mut _, PAGE as usize) };
    }
    sys::close(fd);
}

/// Entry point of the forked child. Never returns.
pub fn child_main(chan: i32, arena_len: u64, parent: i32) -> ! {
    // An orphaned worker must not go on (it may be in a long access loop and would not see
    // the socket close): SIGKILL when the thpsim process dies.
    sys::die_with_parent(parent);
    sys::reset_signals_in_child();
    install_sigbus_handler();
    sys::close_all_except(&mut [chan]);
    let mut chan = chan;
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
        send_resp(chan, &[1, sys::errno() as u64, 0, 0]);
        // SAFETY: _exit is always safe in a forked child.
        unsafe { libc::_exit(1) };
    }
    let res = res as u64;
    let base = (res + 1).div_ceil(GIB) * GIB;
    // SAFETY: a fresh private mapping chosen by the kernel (outside the reservation).
    let warm = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            WARM_LEN as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if warm == libc::MAP_FAILED {
        send_resp(chan, &[1, sys::errno() as u64, 0, 0]);
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: releasing our own reservation; the arena becomes a hole.
    unsafe { libc::munmap(res as *mut _, reserve as usize) };
    let warm = warm as u64;
    warm_up(warm);
    send_resp(chan, &[0, base, 0, 0]);
    while let Some((r, passed)) = recv_req(chan) {
        match r[0] {
            K_EXIT => break,
            K_FORK => {
                let Some(new_chan) = passed else {
                    send_resp(chan, &[1, libc::EINVAL as u64, 0, 0]);
                    continue;
                };
                let pid = sys::clone_parent();
                if pid == 0 {
                    // The new worker (a child of the thpsim process, which fork does not
                    // give a death signal): its own channel, then the warm-up (see the
                    // module doc).
                    sys::die_with_parent(parent);
                    sys::close(chan);
                    chan = new_chan;
                    warm_up(warm);
                    send_resp(chan, &[0, base, 0, 0]);
                    continue;
                }
                sys::close(new_chan);
                if pid < 0 {
                    send_resp(chan, &[1, (-pid) as u64, 0, 0]);
                    continue;
                }
                warm_up(warm);
                send_resp(chan, &[0, pid as u64, 0, 0]);
            }
            K_UFFD_OPEN => {
                if let Some(f) = passed {
                    sys::close(f);
                }
                let mut resp = handle(base, &r);
                if resp[0] == 0 {
                    let fd = resp[1] as i32;
                    resp[1] = 0;
                    send_resp_fd(chan, &resp, Some(fd));
                    sys::close(fd);
                } else {
                    send_resp(chan, &resp);
                }
            }
            _ => {
                if let Some(f) = passed {
                    sys::close(f);
                }
                let resp = handle(base, &r);
                send_resp(chan, &resp);
            }
        }
    }
    // SAFETY: _exit skips atexit handlers and destructors, which belong to the parent.
    unsafe { libc::_exit(0) }
}
