//! The protocol between the thpsim process and a worker child ([`crate::child`]): typed
//! requests and responses, each sent as one `SOCK_SEQPACKET` message of a fixed size.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | field |
//! |-------|-------|
//! | 0–1   | magic `TP` |
//! | 2     | [`VERSION`] |
//! | 3     | kind: the request ([`Request`]) or the response status ([`Status`]) |
//! | 4–5   | payload words the kind uses |
//! | 6–7   | 0 |
//! | 8–    | payload: [`REQ_WORDS`] (request) or [`RESP_WORDS`] (response) `u64` words, unused ones 0 |
//!
//! The receiver checks the magic, the version, the kind, that the word count is the kind's
//! and that unused words are 0, so that a worker and a parent built from different layouts
//! refuse each other's messages instead of misreading them. Encoding and decoding are
//! allocation-free (the worker may be the fork of a multi-threaded process).

use std::os::fd::{BorrowedFd, OwnedFd};

use thpsim_scenario::ast::{Pattern, Subset, SubsetCount};

use crate::sys;

/// Bumped whenever a layout below changes.
pub const VERSION: u8 = 2;
const MAGIC: [u8; 2] = *b"TP";
const HEADER: usize = 8;
/// Payload words of a request (the largest, `Access`, uses them all).
pub const REQ_WORDS: usize = 9;
/// Payload words of a response.
pub const RESP_WORDS: usize = 3;
pub const REQ_BYTES: usize = HEADER + REQ_WORDS * 8;
pub const RESP_BYTES: usize = HEADER + RESP_WORDS * 8;

/// What the parent asks a worker to do. Addresses are arena offsets (the worker adds its
/// arena base), except during the worker's own warm-up, where the base is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `mmap(addr, len, prot, flags, -1, 0)`; the value is the address as an arena offset.
    Mmap {
        addr: u64,
        len: u64,
        prot: i32,
        flags: i32,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Mprotect {
        addr: u64,
        len: u64,
        prot: i32,
    },
    Madvise {
        addr: u64,
        len: u64,
        advice: i32,
    },
    /// Touch the offsets `touch_offsets(len, stride, subset)` of `addr` with `pattern`, at
    /// most `limit` of them, then (`extra_read`) the read of the next one (read-then-write on
    /// a mapping that allows only the read). The value is the number of accesses done.
    Access {
        addr: u64,
        len: u64,
        stride: u64,
        pattern: Pattern,
        subset: Option<Subset>,
        limit: u64,
        extra_read: bool,
    },
    /// Leave the request loop and `_exit(0)`.
    Exit,
    /// `prctl(PR_SET_THP_DISABLE, disable, flags)`.
    Prctl {
        disable: bool,
        flags: u64,
    },
    /// fork(2) of this worker; the message carries the new worker's channel (`SCM_RIGHTS`).
    /// The value is the child's pid; the child then sends its own ready response (the arena
    /// base) on the new channel.
    Fork,
    /// userfaultfd(2) + `UFFDIO_API` with these `UFFD_FEATURE_*` bits. The response carries
    /// the uffd (`SCM_RIGHTS`); the worker then closes its copy, so the thpsim process holds
    /// the only reference (and a later fork does not inherit it).
    UffdOpen {
        features: u64,
    },
    /// mlock(2) (`lock`) or munlock(2). mlock populates the range (`__mm_populate`): its
    /// faults are the task's and are measured like an access's.
    Mlock {
        addr: u64,
        len: u64,
        lock: bool,
    },
    /// `mremap(addr, len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED, new)` (`fixed`), else
    /// `mremap(addr, len, new_len, 0, 0)`; the value is the resulting address as an arena
    /// offset. Takes no fault (page tables move, nothing is touched), except where an
    /// mlocked VMA grows: its new part is populated.
    Mremap {
        addr: u64,
        len: u64,
        new_len: u64,
        fixed: bool,
        new: u64,
    },
    /// `memfd_create("thpsim-obj", 0)` + `ftruncate(size)`; the value is the descriptor,
    /// kept open in the worker (and inherited by its forks) for the rest of the run.
    MemfdCreate {
        size: u64,
    },
    /// `memfd_create(MFD_HUGETLB | shift << MFD_HUGE_SHIFT)` + `ftruncate(size)`, `shift`
    /// the log2 of the page size (21: `MFD_HUGE_2MB`, 30: `MFD_HUGE_1GB`; the value: the
    /// descriptor, as `MemfdCreate`).
    MemfdHugetlb {
        size: u64,
        shift: u64,
    },
    /// `mmap(addr, len, prot, flags, fd, offset)` of a descriptor `MemfdCreate` returned.
    MmapFd {
        addr: u64,
        len: u64,
        prot: i32,
        flags: i32,
        fd: i32,
        offset: u64,
    },
    /// `ftruncate(fd, size)`.
    Ftruncate {
        fd: i32,
        size: u64,
    },
    /// `fallocate(fd, mode, offset, len)`.
    Fallocate {
        fd: i32,
        mode: i32,
        offset: u64,
        len: u64,
    },
    /// `KVM_CREATE_GUEST_MEMFD` (size, flags) on the worker's VM (`guest_memfd.rs`); the
    /// value is the descriptor, kept like a `MemfdCreate` one.
    GmemCreate {
        size: u64,
        flags: u64,
    },
    /// A detached tmpfs mount (`crate::tmpfs::mount`): `huge` indexes
    /// `crate::tmpfs::HUGE_OPTIONS`, `size` in bytes (0: no `size=`). The value is the
    /// mount's descriptor, kept open in the worker (and its forks) for the rest of the run.
    TmpfsMount {
        huge: u64,
        size: u64,
    },
    /// A new file `objN` (N = `obj`) on the tmpfs of mount descriptor `mnt`, truncated to
    /// `size`; the value is its descriptor, kept open like a memfd's.
    FileCreate {
        mnt: i32,
        obj: u64,
        size: u64,
    },
    /// `open("/dev/zero", O_RDWR)`; the value is the descriptor, kept open.
    OpenDevZero,
    /// A regular file on the disk filesystem: `open(DIR, O_TMPFILE | O_RDWR)` (an unnamed
    /// inode in the run's directory, `diskfile::dir_path(dir)`; `dir` 0: `/var/tmp`, for the
    /// warm-up) + `ftruncate(size)`; the value is the descriptor, kept like a memfd's.
    DiskFileCreate {
        size: u64,
        dir: u64,
    },
    /// `msync(addr, len, flags)`.
    Msync {
        addr: u64,
        len: u64,
        flags: i32,
    },
    /// `fsync(fd)`.
    Fsync {
        fd: i32,
    },
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Success, with the request's value (0 for most).
    Ok(u64),
    /// The system call failed with this errno.
    Errno(i32),
    /// An access was stopped by SIGBUS (a userfault with `UFFD_FEATURE_SIGBUS`).
    Sigbus,
}

/// A worker's answer: the status and the task's fault deltas over exactly the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub minflt: u64,
    pub majflt: u64,
}

impl Response {
    /// A response that took no fault (start-up, fork, protocol errors).
    pub fn plain(status: Status) -> Self {
        Response {
            status,
            minflt: 0,
            majflt: 0,
        }
    }
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// The message has this many bytes, not the fixed size.
    Size(usize),
    Magic,
    Version(u8),
    Kind(u8),
    /// The header's word count is not the kind's.
    Length {
        kind: u8,
        got: u16,
        want: u16,
    },
    /// A word holds a value its field cannot take (or an unused word is not 0).
    Value {
        kind: u8,
        word: usize,
    },
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ProtoError::Size(n) => write!(f, "a message of {n} bytes"),
            ProtoError::Magic => f.write_str("not a thpsim worker message (bad magic)"),
            ProtoError::Version(v) => {
                write!(f, "protocol version {v}, this build speaks {VERSION}")
            }
            ProtoError::Kind(k) => write!(f, "unknown message kind {k}"),
            ProtoError::Length { kind, got, want } => {
                write!(f, "kind {kind} with {got} payload words, expected {want}")
            }
            ProtoError::Value { kind, word } => {
                write!(f, "kind {kind}: bad value in payload word {word}")
            }
        }
    }
}

impl std::error::Error for ProtoError {}

/// Why no message was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The peer closed its end.
    Eof,
    /// `recvmsg` failed (or the message had the wrong size).
    Io(i32),
    Proto(ProtoError),
}

fn header(kind: u8, words: usize, out: &mut [u8]) {
    out[0..2].copy_from_slice(&MAGIC);
    out[2] = VERSION;
    out[3] = kind;
    out[4..6].copy_from_slice(&(words as u16).to_le_bytes());
    out[6..8].fill(0);
}

/// Checks the header; returns the kind and the payload words (all of them).
fn open<const N: usize>(
    b: &[u8],
    want: impl Fn(u8) -> Option<usize>,
) -> Result<(u8, [u64; N]), ProtoError> {
    if b.len() != HEADER + N * 8 {
        return Err(ProtoError::Size(b.len()));
    }
    if b[0..2] != MAGIC {
        return Err(ProtoError::Magic);
    }
    if b[2] != VERSION {
        return Err(ProtoError::Version(b[2]));
    }
    let kind = b[3];
    let got = u16::from_le_bytes([b[4], b[5]]);
    let Some(n) = want(kind) else {
        return Err(ProtoError::Kind(kind));
    };
    if usize::from(got) != n {
        return Err(ProtoError::Length {
            kind,
            got,
            want: n as u16,
        });
    }
    let mut w = [0u64; N];
    for (i, x) in w.iter_mut().enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[HEADER + i * 8..HEADER + i * 8 + 8]);
        *x = u64::from_le_bytes(a);
        if i >= n && *x != 0 {
            return Err(ProtoError::Value { kind, word: i });
        }
    }
    Ok((kind, w))
}

fn put(words: &[u64], out: &mut [u8]) {
    for (i, x) in words.iter().enumerate() {
        out[HEADER + i * 8..HEADER + i * 8 + 8].copy_from_slice(&x.to_le_bytes());
    }
}

const R_MMAP: u8 = 1;
const R_MUNMAP: u8 = 2;
const R_MPROTECT: u8 = 3;
const R_MADVISE: u8 = 4;
const R_ACCESS: u8 = 5;
const R_EXIT: u8 = 6;
const R_PRCTL: u8 = 7;
const R_FORK: u8 = 8;
const R_UFFD_OPEN: u8 = 9;
const R_MLOCK: u8 = 10;
const R_MREMAP: u8 = 11;
const R_MEMFD: u8 = 12;
const R_MMAP_FD: u8 = 13;
const R_FTRUNCATE: u8 = 14;
const R_FALLOCATE: u8 = 15;
const R_GMEM: u8 = 16;
const R_MEMFD_HUGETLB: u8 = 17;
const R_TMPFS: u8 = 18;
const R_FILE: u8 = 19;
const R_DEV_ZERO: u8 = 20;
const R_DISKFILE: u8 = 21;
const R_MSYNC: u8 = 22;
const R_FSYNC: u8 = 23;

/// Payload words of each request kind.
fn req_words(kind: u8) -> Option<usize> {
    Some(match kind {
        R_EXIT | R_FORK | R_DEV_ZERO => 0,
        R_TMPFS => 2,
        R_FILE => 3,
        R_UFFD_OPEN => 1,
        R_MUNMAP | R_PRCTL => 2,
        R_MPROTECT | R_MADVISE | R_MLOCK => 3,
        R_MREMAP => 5,
        R_MMAP | R_FALLOCATE => 4,
        R_MEMFD | R_FSYNC => 1,
        R_FTRUNCATE | R_GMEM | R_DISKFILE | R_MEMFD_HUGETLB => 2,
        R_MSYNC => 3,
        R_MMAP_FD => 6,
        R_ACCESS => 9,
        _ => return None,
    })
}

/// An `i32` (prot, flags, advice) as a word: its 32 bits, zero-extended.
fn int(x: i32) -> u64 {
    u64::from(x as u32)
}

fn pattern_code(p: Pattern) -> u64 {
    match p {
        Pattern::Read => 0,
        Pattern::Write => 1,
        Pattern::ReadWrite => 2,
    }
}

impl Request {
    pub fn encode(&self) -> [u8; REQ_BYTES] {
        let mut w = [0u64; REQ_WORDS];
        let kind = match *self {
            Request::Mmap {
                addr,
                len,
                prot,
                flags,
            } => {
                w[..4].copy_from_slice(&[addr, len, int(prot), int(flags)]);
                R_MMAP
            }
            Request::Munmap { addr, len } => {
                w[..2].copy_from_slice(&[addr, len]);
                R_MUNMAP
            }
            Request::Mprotect { addr, len, prot } => {
                w[..3].copy_from_slice(&[addr, len, int(prot)]);
                R_MPROTECT
            }
            Request::Madvise { addr, len, advice } => {
                w[..3].copy_from_slice(&[addr, len, int(advice)]);
                R_MADVISE
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
                let (sk, sc, ss) = match subset {
                    None => (0, 0, 0),
                    Some(Subset {
                        count: SubsetCount::Pages(k),
                        seed,
                    }) => (1, k, seed),
                    Some(Subset {
                        count: SubsetCount::Percent(p),
                        seed,
                    }) => (2, u64::from(p), seed),
                };
                w = [
                    addr,
                    len,
                    stride,
                    pattern_code(pattern),
                    sk,
                    sc,
                    ss,
                    limit,
                    u64::from(extra_read),
                ];
                R_ACCESS
            }
            Request::Exit => R_EXIT,
            Request::Prctl { disable, flags } => {
                w[..2].copy_from_slice(&[u64::from(disable), flags]);
                R_PRCTL
            }
            Request::Fork => R_FORK,
            Request::UffdOpen { features } => {
                w[0] = features;
                R_UFFD_OPEN
            }
            Request::Mlock { addr, len, lock } => {
                w[..3].copy_from_slice(&[addr, len, u64::from(lock)]);
                R_MLOCK
            }
            Request::Mremap {
                addr,
                len,
                new_len,
                fixed,
                new,
            } => {
                w[..5].copy_from_slice(&[addr, len, new_len, u64::from(fixed), new]);
                R_MREMAP
            }
            Request::MemfdCreate { size } => {
                w[0] = size;
                R_MEMFD
            }
            Request::MemfdHugetlb { size, shift } => {
                w[..2].copy_from_slice(&[size, shift]);
                R_MEMFD_HUGETLB
            }
            Request::MmapFd {
                addr,
                len,
                prot,
                flags,
                fd,
                offset,
            } => {
                w[..6].copy_from_slice(&[addr, len, int(prot), int(flags), int(fd), offset]);
                R_MMAP_FD
            }
            Request::Ftruncate { fd, size } => {
                w[..2].copy_from_slice(&[int(fd), size]);
                R_FTRUNCATE
            }
            Request::Fallocate {
                fd,
                mode,
                offset,
                len,
            } => {
                w[..4].copy_from_slice(&[int(fd), int(mode), offset, len]);
                R_FALLOCATE
            }
            Request::GmemCreate { size, flags } => {
                w[..2].copy_from_slice(&[size, flags]);
                R_GMEM
            }
            Request::TmpfsMount { huge, size } => {
                w[..2].copy_from_slice(&[huge, size]);
                R_TMPFS
            }
            Request::FileCreate { mnt, obj, size } => {
                w[..3].copy_from_slice(&[int(mnt), obj, size]);
                R_FILE
            }
            Request::OpenDevZero => R_DEV_ZERO,
            Request::DiskFileCreate { size, dir } => {
                w[..2].copy_from_slice(&[size, dir]);
                R_DISKFILE
            }
            Request::Msync { addr, len, flags } => {
                w[..3].copy_from_slice(&[addr, len, int(flags)]);
                R_MSYNC
            }
            Request::Fsync { fd } => {
                w[0] = int(fd);
                R_FSYNC
            }
        };
        let mut b = [0u8; REQ_BYTES];
        header(kind, req_words(kind).unwrap_or(0), &mut b);
        put(&w, &mut b);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Request, ProtoError> {
        let (kind, w) = open::<REQ_WORDS>(b, req_words)?;
        let bad = |word| ProtoError::Value { kind, word };
        let i32_at = |i: usize| u32::try_from(w[i]).map(|x| x as i32).map_err(|_| bad(i));
        let bool_at = |i: usize| match w[i] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad(i)),
        };
        Ok(match kind {
            R_MMAP => Request::Mmap {
                addr: w[0],
                len: w[1],
                prot: i32_at(2)?,
                flags: i32_at(3)?,
            },
            R_MUNMAP => Request::Munmap {
                addr: w[0],
                len: w[1],
            },
            R_MPROTECT => Request::Mprotect {
                addr: w[0],
                len: w[1],
                prot: i32_at(2)?,
            },
            R_MADVISE => Request::Madvise {
                addr: w[0],
                len: w[1],
                advice: i32_at(2)?,
            },
            R_ACCESS => Request::Access {
                addr: w[0],
                len: w[1],
                stride: w[2],
                pattern: match w[3] {
                    0 => Pattern::Read,
                    1 => Pattern::Write,
                    2 => Pattern::ReadWrite,
                    _ => return Err(bad(3)),
                },
                subset: match w[4] {
                    0 => None,
                    1 => Some(Subset {
                        count: SubsetCount::Pages(w[5]),
                        seed: w[6],
                    }),
                    2 => Some(Subset {
                        count: SubsetCount::Percent(u32::try_from(w[5]).map_err(|_| bad(5))?),
                        seed: w[6],
                    }),
                    _ => return Err(bad(4)),
                },
                limit: w[7],
                extra_read: bool_at(8)?,
            },
            R_EXIT => Request::Exit,
            R_PRCTL => Request::Prctl {
                disable: bool_at(0)?,
                flags: w[1],
            },
            R_FORK => Request::Fork,
            R_UFFD_OPEN => Request::UffdOpen { features: w[0] },
            R_MLOCK => Request::Mlock {
                addr: w[0],
                len: w[1],
                lock: bool_at(2)?,
            },
            R_MREMAP => Request::Mremap {
                addr: w[0],
                len: w[1],
                new_len: w[2],
                fixed: bool_at(3)?,
                new: w[4],
            },
            R_MEMFD => Request::MemfdCreate { size: w[0] },
            R_MEMFD_HUGETLB => Request::MemfdHugetlb {
                size: w[0],
                shift: w[1],
            },
            R_MMAP_FD => Request::MmapFd {
                addr: w[0],
                len: w[1],
                prot: i32_at(2)?,
                flags: i32_at(3)?,
                fd: i32_at(4)?,
                offset: w[5],
            },
            R_FTRUNCATE => Request::Ftruncate {
                fd: i32_at(0)?,
                size: w[1],
            },
            R_FALLOCATE => Request::Fallocate {
                fd: i32_at(0)?,
                mode: i32_at(1)?,
                offset: w[2],
                len: w[3],
            },
            R_GMEM => Request::GmemCreate {
                size: w[0],
                flags: w[1],
            },
            R_TMPFS => Request::TmpfsMount {
                huge: w[0],
                size: w[1],
            },
            R_FILE => Request::FileCreate {
                mnt: i32_at(0)?,
                obj: w[1],
                size: w[2],
            },
            R_DEV_ZERO => Request::OpenDevZero,
            R_DISKFILE => Request::DiskFileCreate {
                size: w[0],
                dir: w[1],
            },
            R_MSYNC => Request::Msync {
                addr: w[0],
                len: w[1],
                flags: i32_at(2)?,
            },
            R_FSYNC => Request::Fsync { fd: i32_at(0)? },
            k => return Err(ProtoError::Kind(k)),
        })
    }
}

const S_OK: u8 = 0;
const S_ERRNO: u8 = 1;
const S_SIGBUS: u8 = 2;

impl Response {
    pub fn encode(&self) -> [u8; RESP_BYTES] {
        let (kind, v) = match self.status {
            Status::Ok(v) => (S_OK, v),
            Status::Errno(e) => (S_ERRNO, int(e)),
            Status::Sigbus => (S_SIGBUS, 0),
        };
        let mut b = [0u8; RESP_BYTES];
        header(kind, RESP_WORDS, &mut b);
        put(&[v, self.minflt, self.majflt], &mut b);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Response, ProtoError> {
        let known = |k| matches!(k, S_OK | S_ERRNO | S_SIGBUS).then_some(RESP_WORDS);
        let (kind, w) = open::<RESP_WORDS>(b, known)?;
        let status = match kind {
            S_OK => Status::Ok(w[0]),
            S_ERRNO => Status::Errno(
                u32::try_from(w[0])
                    .map(|x| x as i32)
                    .map_err(|_| ProtoError::Value { kind, word: 0 })?,
            ),
            _ if w[0] != 0 => return Err(ProtoError::Value { kind, word: 0 }),
            _ => Status::Sigbus,
        };
        Ok(Response {
            status,
            minflt: w[1],
            majflt: w[2],
        })
    }
}

/// Sends a request, with `pass` attached (`SCM_RIGHTS`) if given.
pub fn send_request(
    chan: BorrowedFd<'_>,
    req: &Request,
    pass: Option<BorrowedFd<'_>>,
) -> Result<(), i32> {
    sys::send_msg(chan, &req.encode(), pass)
}

/// Sends a response, with `pass` attached (`SCM_RIGHTS`) if given.
pub fn send_response(
    chan: BorrowedFd<'_>,
    resp: &Response,
    pass: Option<BorrowedFd<'_>>,
) -> Result<(), i32> {
    sys::send_msg(chan, &resp.encode(), pass)
}

/// The next request and the descriptor passed with it.
pub fn recv_request(chan: BorrowedFd<'_>) -> Result<(Request, Option<OwnedFd>), RecvError> {
    let mut b = [0u8; REQ_BYTES];
    let passed = sys::recv_msg(chan, &mut b)
        .map_err(RecvError::Io)?
        .ok_or(RecvError::Eof)?;
    Ok((Request::decode(&b).map_err(RecvError::Proto)?, passed))
}

/// The next response and the descriptor passed with it.
pub fn recv_response(chan: BorrowedFd<'_>) -> Result<(Response, Option<OwnedFd>), RecvError> {
    let mut b = [0u8; RESP_BYTES];
    let passed = sys::recv_msg(chan, &mut b)
        .map_err(RecvError::Io)?
        .ok_or(RecvError::Eof)?;
    Ok((Response::decode(&b).map_err(RecvError::Proto)?, passed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request> {
        let sub = |count| Some(Subset { count, seed: 7 });
        vec![
            Request::Mmap {
                addr: 1 << 30,
                len: 2 << 20,
                prot: 3,
                flags: 0x100022,
            },
            Request::Munmap {
                addr: 4096,
                len: 8192,
            },
            Request::Mprotect {
                addr: 0,
                len: 4096,
                prot: 0,
            },
            Request::Madvise {
                addr: 0,
                len: 4096,
                advice: 14,
            },
            Request::Access {
                addr: 1,
                len: 2,
                stride: 3,
                pattern: Pattern::ReadWrite,
                subset: sub(SubsetCount::Percent(30)),
                limit: u64::MAX,
                extra_read: true,
            },
            Request::Access {
                addr: 1,
                len: 2,
                stride: 3,
                pattern: Pattern::Write,
                subset: sub(SubsetCount::Pages(u64::MAX)),
                limit: 0,
                extra_read: false,
            },
            Request::Access {
                addr: 0,
                len: 0,
                stride: 0,
                pattern: Pattern::Read,
                subset: None,
                limit: 5,
                extra_read: false,
            },
            Request::Exit,
            Request::Prctl {
                disable: true,
                flags: 2,
            },
            Request::Fork,
            Request::UffdOpen { features: 0x40 },
            Request::Mlock {
                addr: 0,
                len: 4096,
                lock: true,
            },
            Request::Mremap {
                addr: 0,
                len: 4096,
                new_len: 4096,
                fixed: true,
                new: 8192,
            },
            Request::Mremap {
                addr: 0,
                len: 8192,
                new_len: 4096,
                fixed: false,
                new: 0,
            },
            Request::MemfdCreate { size: 1 << 21 },
            Request::MmapFd {
                addr: 0,
                len: 4096,
                prot: 3,
                flags: 1,
                fd: 7,
                offset: 8192,
            },
            Request::Ftruncate { fd: 7, size: 0 },
            Request::Fallocate {
                fd: 7,
                mode: 3,
                offset: 4096,
                len: 4096,
            },
            Request::GmemCreate {
                size: 1 << 21,
                flags: 3,
            },
            Request::TmpfsMount {
                huge: 2,
                size: 8 << 20,
            },
            Request::FileCreate {
                mnt: 9,
                obj: 3,
                size: 1 << 21,
            },
            Request::OpenDevZero,
            Request::DiskFileCreate {
                size: 1 << 24,
                dir: (1234 << 32) | 1,
            },
            Request::Msync {
                addr: 4096,
                len: 8192,
                flags: 4,
            },
            Request::Fsync { fd: 7 },
        ]
    }

    #[test]
    fn requests_round_trip() {
        for r in all_requests() {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn responses_round_trip() {
        for status in [
            Status::Ok(u64::MAX),
            Status::Errno(libc::EEXIST),
            Status::Sigbus,
        ] {
            let r = Response {
                status,
                minflt: 513,
                majflt: 1,
            };
            assert_eq!(Response::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let good = Request::Munmap { addr: 1, len: 2 }.encode();
        let mut b = good;
        b[0] = b'X';
        assert_eq!(Request::decode(&b), Err(ProtoError::Magic));
        let mut b = good;
        b[2] = VERSION + 1;
        assert_eq!(Request::decode(&b), Err(ProtoError::Version(VERSION + 1)));
        let mut b = good;
        b[3] = 99;
        assert_eq!(Request::decode(&b), Err(ProtoError::Kind(99)));
        let mut b = good;
        b[4] = 3;
        assert_eq!(
            Request::decode(&b),
            Err(ProtoError::Length {
                kind: R_MUNMAP,
                got: 3,
                want: 2
            })
        );
        // An unused word that is not 0.
        let mut b = good;
        b[HEADER + 2 * 8] = 1;
        assert_eq!(
            Request::decode(&b),
            Err(ProtoError::Value {
                kind: R_MUNMAP,
                word: 2
            })
        );
        // A field out of range: pattern 3.
        let mut b = Request::Access {
            addr: 0,
            len: 0,
            stride: 0,
            pattern: Pattern::Read,
            subset: None,
            limit: 0,
            extra_read: false,
        }
        .encode();
        b[HEADER + 3 * 8] = 3;
        assert_eq!(
            Request::decode(&b),
            Err(ProtoError::Value {
                kind: R_ACCESS,
                word: 3
            })
        );
        // A short message.
        assert_eq!(
            Request::decode(&good[..REQ_BYTES - 1]),
            Err(ProtoError::Size(REQ_BYTES - 1))
        );
        // A response is not a request.
        let resp = Response::plain(Status::Ok(0)).encode();
        assert_eq!(Request::decode(&resp), Err(ProtoError::Size(RESP_BYTES)));
    }
}
