//! Thin wrappers over the raw system calls the host backend needs. Everything here is
//! allocation-free so the worker child (a `fork` of a possibly multi-threaded parent) may call
//! it. Every `unsafe` block states why it is sound.

//!
//! Descriptors are [`OwnedFd`] (closed exactly once, when dropped) and [`BorrowedFd`] (used,
//! never closed): a raw number that outlives its descriptor could name a newer, unrelated
//! file once the kernel reuses it. Only [`close_all_except`], which runs in a freshly forked
//! child before it opens anything, works on raw numbers.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub const PAGE: u64 = 4096;
pub const GIB: u64 = 1 << 30;

/// `errno` of the last failed libc call.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: `__errno_location` returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// A descriptor an `open` just returned (`fd`, or -1 with errno set), truncated to `size`;
/// on any failure the errno, and the descriptor is closed.
pub fn truncated_fd(fd: i32, size: u64) -> Result<u64, i32> {
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: ftruncate of a descriptor the caller just opened.
    if unsafe { libc::ftruncate(fd, size as libc::off_t) } < 0 {
        let e = errno();
        // SAFETY: closing the descriptor the caller just opened; nothing else uses it.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd as u64)
}

/// `getrusage(RUSAGE_SELF)` → (minflt, majflt).
#[inline(never)]
pub fn faults() -> (u64, u64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable `rusage`; RUSAGE_SELF cannot fail.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    (ru.ru_minflt as u64, ru.ru_majflt as u64)
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on EOF before the first byte.
pub fn read_exact_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<bool, i32> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[done..].as_mut_ptr().cast(),
                buf.len() - done,
            )
        };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return if done == 0 { Ok(false) } else { Err(libc::EIO) };
        }
        done += n as usize;
    }
    Ok(true)
}

pub fn write_all_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<(), i32> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unwritten tail of `buf`.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                buf[done..].as_ptr().cast(),
                buf.len() - done,
            )
        };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// Takes ownership of a descriptor a system call just returned (`fd` ≥ 0).
///
/// # Safety
/// `fd` must be open and owned by nothing else (a fresh result of `pipe2`, `socketpair`,
/// `userfaultfd` or `SCM_RIGHTS`).
pub unsafe fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `pipe2(O_CLOEXEC)` → (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both are new descriptors nothing else owns.
    Ok(unsafe { (own(fds[0]), own(fds[1])) })
}

/// In a freshly forked child: closes every fd ≥ 3 except `keep` (async-signal-safe). Works on
/// numbers: the descriptors it closes were inherited, and no `OwnedFd` of this process will
/// be dropped for them (the child never returns from its entry point).
pub fn close_all_except(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut lo: u32 = 3;
    for &k in keep.iter() {
        let k = k as u32;
        if k > lo {
            // SAFETY: close_range only closes descriptors; no memory is touched.
            unsafe { libc::syscall(libc::SYS_close_range, lo, k - 1, 0u32) };
        }
        if k + 1 > lo {
            lo = k + 1;
        }
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, lo, u32::MAX, 0u32) };
}

/// In a freshly forked child: default dispositions for the signals the parent may have
/// hooked (the parent's handlers restore sysfs; the child must not).
pub fn reset_signals_in_child() {
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGSEGV,
        libc::SIGBUS,
    ] {
        // SAFETY: setting a default disposition is always valid.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` is a valid sigset_t; unblocking all signals in this single-threaded child.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
    }
}

pub fn kill(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: sending a signal to a child process this crate created.
        unsafe { libc::kill(pid, sig) };
    }
}

/// `waitpid(pid)`, retrying on EINTR; returns the raw status.
pub fn waitpid(pid: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int; `pid` is our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        return None;
    }
}

/// `waitpid(pid, WNOHANG)`: the raw status if the child has ended, `None` while it runs.
pub fn waitpid_nohang(pid: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int; `pid` is our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        return None;
    }
}

pub fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// State letter and start time (clock ticks after boot, field 22) of a task from
/// `/proc/PID/stat`; `None` if there is no such task.
pub fn proc_state(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields 3.. follow the
    // last ')'.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let start = rest.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Start time of a task (see [`proc_state`]).
pub fn start_time(pid: i32) -> Option<u64> {
    proc_state(pid).map(|(_, t)| t)
}

/// In a freshly forked child: ask for SIGKILL when the parent (the thread that forked us)
/// exits, and exit at once if it already has (`getppid` is no longer `parent`).
/// Allocation-free.
pub fn die_with_parent(parent: i32) {
    // SAFETY: prctl with integer arguments; getppid and _exit have no preconditions.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
}

/// Release string of `uname(2)`.
pub fn uname_release() -> String {
    let mut u = std::mem::MaybeUninit::<libc::utsname>::zeroed();
    // SAFETY: `u` is a valid utsname buffer.
    let u = unsafe {
        libc::uname(u.as_mut_ptr());
        u.assume_init()
    };
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Touches `kib` KiB of stack below the caller so later calls in the measured window do not
/// take stack faults.
#[inline(never)]
pub fn prefault_stack(kib: usize) {
    const CHUNK: usize = 16 * 1024;
    #[inline(never)]
    fn rec(left: usize) {
        let mut buf = [0u8; CHUNK];
        let mut i = 0;
        while i < CHUNK {
            // SAFETY: `i` is within `buf`; volatile so the store is not elided.
            unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(i), 1) };
            i += 1024;
        }
        std::hint::black_box(&mut buf);
        if left > CHUNK {
            rec(left - CHUNK);
        }
    }
    rec(kib * 1024);
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`: one bidirectional, message-preserving
/// channel per worker (a request is one message, a response is one message).
pub fn socketpair_seqpacket() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded: both are new descriptors nothing else owns.
    Ok(unsafe { (own(fds[0]), own(fds[1])) })
}

/// Control-message buffer for one fd, aligned like `struct cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Sends `buf` as one message on a socket, with `pass` attached as `SCM_RIGHTS` if given.
/// `MSG_NOSIGNAL`: a dead peer is an `EPIPE`, never a SIGPIPE. Allocation-free.
pub fn send_msg(fd: BorrowedFd<'_>, buf: &[u8], pass: Option<BorrowedFd<'_>>) -> Result<(), i32> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut _,
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(p) = pass {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic; the control buffer is 64 bytes,
        // more than CMSG_SPACE(4) = 24, and 8-aligned, so CMSG_FIRSTHDR points inside it
        // and CMSG_DATA has room for one int.
        unsafe {
            msg.msg_control = cbuf.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), p.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `msg` points to `iov` (describing `buf`) and to `cbuf`, all alive.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        return if n as usize == buf.len() {
            Ok(())
        } else {
            Err(libc::EIO)
        };
    }
}

/// Receives one message of exactly `buf.len()` bytes. `Ok(None)` at EOF; the second value is
/// a file descriptor passed with `SCM_RIGHTS`, if any (more than one: the others are closed).
/// Allocation-free.
pub fn recv_msg(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<Option<OwnedFd>>, i32> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len();
    let n = loop {
        // SAFETY: `msg` describes `buf` and `cbuf`, both writable and alive.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        break n as usize;
    };
    let mut passed: Option<OwnedFd> = None;
    // SAFETY: the kernel filled `msg_control`/`msg_controllen`; the CMSG_* walk stays inside
    // the buffer it describes. Each SCM_RIGHTS entry is a descriptor the kernel just installed
    // in this process for us alone, so owning it is sound.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let nfd = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..nfd {
                    let f = own(std::ptr::read_unaligned(
                        libc::CMSG_DATA(c).cast::<i32>().add(i),
                    ));
                    if passed.is_none() {
                        passed = Some(f);
                    }
                    // Any further one is dropped (closed) here.
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if n == 0 && passed.is_none() {
        return Ok(None);
    }
    if n != buf.len() || msg.msg_flags & libc::MSG_TRUNC != 0 {
        // A passed descriptor is dropped (closed) with `passed`.
        return Err(libc::EIO);
    }
    Ok(Some(passed))
}

/// `clone(CLONE_PARENT | SIGCHLD)`: a fork(2) whose child is a child of the caller's
/// *parent* (so the thpsim process can `waitpid` every worker). The address space is copied
/// exactly as by fork (`dup_mmap`). Returns the child's pid in the caller, 0 in the child,
/// -errno on failure.
///
/// Only for the worker: the raw syscall skips glibc's fork bookkeeping (atfork handlers, the
/// cached TID), which the allocation-free worker code never uses.
pub fn clone_parent() -> i32 {
    // SAFETY: clone without CLONE_VM and with a null stack behaves like fork: the child runs
    // on a copy of the caller's stack and returns 0 from this call. The caller is the
    // single-threaded worker, which uses only raw syscalls afterwards.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        -errno()
    } else {
        r as i32
    }
}
