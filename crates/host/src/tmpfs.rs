//! tmpfs instances, files on them and `/dev/zero` for the worker child (allocation-free, raw
//! system calls only, like the rest of the worker).
//!
//! A scenario's `tmpfs` is a *detached* mount: `fsopen("tmpfs")`, `fsconfig` with the
//! `huge=` and `size=` options, `FSCONFIG_CMD_CREATE`, then `fsmount` (the new mount API,
//! `fs/fsopen.c`, `fs/namespace.c`). The mount is attached to no directory of any mount
//! namespace: the worker holds it by the descriptor `fsmount` returns and creates files with
//! `openat` relative to it. So nothing appears in the system's mount table, no directory is
//! created, and when the last descriptor goes (every worker gone, SIGKILL included: workers
//! die with the thpsim process) the kernel tears the instance and its page cache down. Forked
//! workers inherit the descriptors, so they share the files. Needs CAP_SYS_ADMIN, as any
//! tmpfs mount does.
//!
//! The runner observes a file's `st_blocks`/`st_size` with `stat` of the worker's
//! `/proc/PID/fd/N` link, which reaches the open file whatever mount it lives on
//! ([`object_stat`]).

use crate::proto::Status;
use crate::sys;

/// `include/uapi/linux/mount.h` (not in the `libc` crate).
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// The `huge=` values, in the wire order of [`crate::proto::Request::TmpfsMount`].
pub const HUGE_OPTIONS: [&std::ffi::CStr; 4] = [c"never", c"always", c"within_size", c"advise"];

/// The wire code of a `huge=` value (`None` for `deny`/`force`, which are not mount options).
pub fn huge_code(h: thpsim_kernel::sysfs::ShmemHuge) -> Option<u64> {
    use thpsim_kernel::sysfs::ShmemHuge as H;
    Some(match h {
        H::Never => 0,
        H::Always => 1,
        H::WithinSize => 2,
        H::Advise => 3,
        H::Deny | H::Force => return None,
    })
}

/// `size` as a NUL-terminated decimal string in `buf` (no allocation).
fn decimal(mut v: u64, buf: &mut [u8; 24]) -> &std::ffi::CStr {
    let mut i = buf.len() - 1;
    buf[i] = 0;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::ffi::CStr::from_bytes_with_nul(&buf[i..]).expect("one NUL at the end")
}

/// A detached tmpfs mount with `huge=HUGE_OPTIONS[huge]` and, unless `size` is 0, `size=`
/// in bytes. The value is the mount's descriptor (kept open for the run).
pub fn mount(huge: u64, size: u64) -> Result<u64, Status> {
    let Some(huge) = HUGE_OPTIONS.get(huge as usize) else {
        return Err(Status::Errno(libc::EINVAL));
    };
    // SAFETY: fsopen with a NUL-terminated filesystem name and integer flags.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return Err(Status::Errno(sys::errno()));
    }
    // SAFETY: fsopen succeeded: a new descriptor nothing else owns (closed on drop).
    let fs = unsafe { sys::own(fs as i32) };
    let set = |key: &std::ffi::CStr, value: &std::ffi::CStr| {
        // SAFETY: fsconfig on the fs context with NUL-terminated key and value strings.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                std::os::fd::AsRawFd::as_raw_fd(&fs),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        if r < 0 {
            Err(Status::Errno(sys::errno()))
        } else {
            Ok(())
        }
    };
    set(c"huge", huge)?;
    if size != 0 {
        let mut buf = [0u8; 24];
        set(c"size", decimal(size, &mut buf))?;
    }
    // SAFETY: fsconfig(FSCONFIG_CMD_CREATE) on the fs context: null key and value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            std::os::fd::AsRawFd::as_raw_fd(&fs),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Err(Status::Errno(sys::errno()));
    }
    // SAFETY: fsmount of the created context with integer flags and attributes.
    let m = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            std::os::fd::AsRawFd::as_raw_fd(&fs),
            FSMOUNT_CLOEXEC,
            0,
        )
    };
    if m < 0 {
        return Err(Status::Errno(sys::errno()));
    }
    Ok(m as u64)
}

/// `openat(mnt, "objN", O_RDWR|O_CREAT|O_EXCL)` + `ftruncate(size)`: a new file on the tmpfs
/// whose mount descriptor is `mnt`. The value is the file's descriptor (kept open).
pub fn create_file(mnt: i32, obj: u64, size: u64) -> Result<u64, Status> {
    // "obj" + the object id: unique in the run, since ids are.
    let mut name = [0u8; 32];
    name[..3].copy_from_slice(b"obj");
    let mut digits = [0u8; 24];
    let d = decimal(obj, &mut digits).to_bytes_with_nul();
    name[3..3 + d.len()].copy_from_slice(d);
    // SAFETY: openat with a mount descriptor, a NUL-terminated name and integer flags.
    let fd = unsafe {
        libc::openat(
            mnt,
            name.as_ptr().cast(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600,
        )
    };
    sys::truncated_fd(fd, size).map_err(Status::Errno)
}

/// `open("/dev/zero", O_RDWR)`; the value is the descriptor (kept open).
pub fn open_dev_zero() -> Result<u64, Status> {
    // SAFETY: open with a NUL-terminated path and integer flags.
    let fd = unsafe { libc::open(c"/dev/zero".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(Status::Errno(sys::errno()))
    } else {
        Ok(fd as u64)
    }
}

/// `st_blocks` and `st_size` of descriptor `fd` of process `pid` (runner side: `stat` of
/// `/proc/PID/fd/FD`, which follows the link to the open file).
pub fn object_stat(pid: i32, fd: i32) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))?;
    Ok((m.blocks(), m.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings() {
        let mut b = [0u8; 24];
        assert_eq!(decimal(0, &mut b).to_bytes(), b"0");
        assert_eq!(decimal(8 << 20, &mut b).to_bytes(), b"8388608");
        assert_eq!(
            decimal(u64::MAX, &mut b).to_bytes(),
            b"18446744073709551615"
        );
    }
}
