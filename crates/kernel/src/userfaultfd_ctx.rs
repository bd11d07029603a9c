//! The userfaultfd context and its uapi vocabulary (`struct userfaultfd_ctx` of
//! `fs/userfaultfd.c`, `include/uapi/linux/userfaultfd.h`, Linux 6.18), apart from the code
//! that acts on them (`userfaultfd.rs`) so that `mm.rs` can own an mm's context without
//! depending on the feature module. A leaf module: it imports nothing from the crate.

/// `UFFD_PAGEFAULT_FLAG_*`.
pub const FLAG_WRITE: u32 = 1 << 0;
pub const FLAG_WP: u32 = 1 << 1;
pub const FLAG_MINOR: u32 = 1 << 2;

/// `UFFDIO_API` features the model understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub wp_unpopulated: bool,
    pub wp_async: bool,
    pub sigbus: bool,
    pub event_fork: bool,
    pub exact_address: bool,
    pub thread_id: bool,
    /// `UFFD_FEATURE_MINOR_SHMEM`: advertised to userspace; 6.18 does not require it to
    /// register MINOR mode on shmem (measured, FINDINGS.md §21), so it changes nothing.
    pub minor_shmem: bool,
}

impl Features {
    pub const NAMES: &'static [&'static str] = &[
        "wp_unpopulated",
        "wp_async",
        "sigbus",
        "event_fork",
        "exact_address",
        "thread_id",
        "minor_shmem",
    ];

    /// Sets a feature by its scenario name (`UFFD_FEATURE_<NAME>` lower-cased).
    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "wp_unpopulated" => self.wp_unpopulated = true,
            "wp_async" => self.wp_async = true,
            "sigbus" => self.sigbus = true,
            "event_fork" => self.event_fork = true,
            "exact_address" => self.exact_address = true,
            "thread_id" => self.thread_id = true,
            "minor_shmem" => self.minor_shmem = true,
            _ => return false,
        }
        true
    }

    /// `userfaultfd_wp_use_markers`: WP_UNPOPULATED, implied by WP_ASYNC.
    pub fn use_markers(&self) -> bool {
        self.wp_unpopulated || self.wp_async
    }
}

/// What `UFFDIO_COPY` / `UFFDIO_ZEROPAGE` installs (`enum mfill_atomic_mode` with the
/// `MFILL_ATOMIC_WP` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mfill {
    /// `UFFDIO_COPY`: a new page with the copied (non-zero) data; `wp` is
    /// `UFFDIO_COPY_MODE_WP` (the page is installed write-protected).
    Copy { wp: bool },
    /// `UFFDIO_ZEROPAGE`: the shared zero page.
    ZeroPage,
}

/// What the modelled monitor does with a write-protect fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum WpPolicy {
    /// `UFFDIO_WRITEPROTECT` mode 0 on the naturally aligned block of this size around the
    /// address (4 KiB: QEMU's background snapshot).
    Unprotect(u64),
    /// Unprotect the whole VMA.
    UnprotectVma,
}

/// What the modelled monitor does with a missing fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MissingPolicy {
    /// `UFFDIO_COPY` of the aligned block of this size (QEMU postcopy: 4 KiB).
    Copy(u64),
    /// `UFFDIO_ZEROPAGE` of the aligned block of this size.
    Zeropage(u64),
}

/// What the modelled monitor does with a minor fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MinorPolicy {
    /// `UFFDIO_CONTINUE` of the pages of the aligned block of this size that the page cache
    /// holds and the page table does not map (a postcopy or restore monitor that found the
    /// contents already in the shared file: 4 KiB).
    Continue(u64),
}

/// Message counts (`struct uffd_msg` of `UFFD_EVENT_PAGEFAULT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsgStats {
    /// The last message delivered (any process).
    pub last: Option<Msg>,
    pub events: u64,
    pub missing: u64,
    pub wp: u64,
    pub minor: u64,
    pub write: u64,
}

/// One delivered message: flags and address (4 KiB-rounded unless EXACT_ADDRESS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub flags: u32,
    pub address: u64,
}

#[derive(Clone, Debug)]
pub struct Uffd {
    pub features: Features,
    pub wp_policy: WpPolicy,
    pub missing_policy: MissingPolicy,
    pub minor_policy: MinorPolicy,
    /// Every message, in order (the scenario engine reports them).
    pub msgs: Vec<Msg>,
}
