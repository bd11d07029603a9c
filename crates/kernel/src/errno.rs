//! Linux errno values (x86-64 numbering, `include/uapi/asm-generic/errno-base.h` and
//! `errno.h`) and the signals an access can raise. Only the values the model can return
//! are listed; names print exactly as glibc's `strerrorname_np` does.

use std::fmt;

/// An errno value as Linux returns it (positive number).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $val:expr),* $(,)?) => {
        impl Errno {
            $(pub const $name: Errno = Errno($val);)*
            /// Every errno the model knows, by name.
            pub const ALL: &'static [(&'static str, Errno)] = &[$((stringify!($name), Errno($val))),*];
        }
    };
}

errnos! {
    EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, E2BIG = 7, EBADF = 9,
    EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17,
    ENODEV = 19, EINVAL = 22, ENOSPC = 28, ESPIPE = 29, EOVERFLOW = 75,
    EFBIG = 27, EOPNOTSUPP = 95, EHWPOISON = 133,
}

impl Errno {
    pub fn name(self) -> Option<&'static str> {
        Self::ALL.iter().find(|(_, e)| *e == self).map(|(n, _)| *n)
    }
    pub fn from_name(name: &str) -> Option<Errno> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// A signal delivered to the task by an access (the access did not complete).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Signal {
    /// Access to an address with no VMA, or against the VMA's protection.
    Sigsegv,
    /// The fault handler returned `VM_FAULT_SIGBUS`.
    Sigbus,
    /// The fault handler returned `VM_FAULT_OOM` and the task was OOM-killed (the model does
    /// not pick another victim: the faulting task is the one reported).
    Sigkill,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Sigsegv => "SIGSEGV",
            Signal::Sigbus => "SIGBUS",
            Signal::Sigkill => "SIGKILL",
        }
    }
    pub fn from_name(name: &str) -> Option<Signal> {
        match name {
            "SIGSEGV" => Some(Signal::Sigsegv),
            "SIGBUS" => Some(Signal::Sigbus),
            "SIGKILL" => Some(Signal::Sigkill),
            _ => None,
        }
    }
}

/// How an operation failed: a syscall's errno or a signal raised by a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum OpError {
    Errno(Errno),
    Signal(Signal),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Errno(e) => e.fmt(f),
            OpError::Signal(s) => f.write_str(s.name()),
        }
    }
}

impl From<Errno> for OpError {
    fn from(e: Errno) -> Self {
        OpError::Errno(e)
    }
}
