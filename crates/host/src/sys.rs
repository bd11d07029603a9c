//! Thin wrappers over the raw system calls the host backend needs. Everything here is
//! allocation-free so the worker child (a `fork` of a possibly multi-threaded parent) may call
//! it. Every `unsafe` block states why it is sound.

use std::io;

pub const PAGE: u64 = 4096;
pub const GIB: u64 = 1 << 30;

/// `errno` of the last failed libc call.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: `__errno_location` returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
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
pub fn read_exact_fd(fd: i32, buf: &mut [u8]) -> Result<bool, i32> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
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

pub fn write_all_fd(fd: i32, buf: &[u8]) -> Result<(), i32> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unwritten tail of `buf`.
        let n = unsafe { libc::write(fd, buf[done..].as_ptr().cast(), buf.len() - done) };
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

/// `pipe2(O_CLOEXEC)` → (read end, write end).
pub fn pipe() -> io::Result<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

pub fn close(fd: i32) {
    if fd >= 0 {
        // SAFETY: closing an fd this module owns; a stale fd only yields EBADF.
        unsafe { libc::close(fd) };
    }
}

/// In a freshly forked child: closes every fd ≥ 3 except `keep` (async-signal-safe).
pub fn close_all_except(keep: &mut [i32]) {
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

pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid > 0 && (unsafe { libc::kill(pid, 0) } == 0 || errno() == libc::EPERM)
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
