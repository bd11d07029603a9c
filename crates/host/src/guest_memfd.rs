//! guest_memfd on the host: `KVM_CREATE_GUEST_MEMFD` on a VM of the default type that each
//! worker creates on its first `gmem` request (`virt/kvm/guest_memfd.c`, 6.18).
//!
//! A VM belongs to the mm that created it (`kvm_vm_ioctl` answers EIO to any other mm), so a
//! forked worker makes its own VM. Nothing outlives the worker: the VM and guest_memfd
//! descriptors are the worker's and close when it exits, however it ends (a SIGKILLed
//! runner's workers die with their parent socket; the kernel frees the VM and the inodes'
//! page cache with the last reference), so there is nothing to journal.
//!
//! Runs in the worker, which never allocates: raw system calls only.

use std::sync::atomic::{AtomicI32, Ordering};

/// `_IO(KVMIO, 0x01)`.
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
/// `_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)` (64 bytes).
pub const KVM_CREATE_GUEST_MEMFD: libc::c_ulong = 0xC040_AED4;

/// `struct kvm_create_guest_memfd`.
#[repr(C)]
struct KvmCreateGuestMemfd {
    size: u64,
    flags: u64,
    reserved: [u64; 6],
}

/// The worker's VM descriptor and the pid that made it (-1: none yet).
static VM_FD: AtomicI32 = AtomicI32::new(-1);
static VM_PID: AtomicI32 = AtomicI32::new(-1);

/// One `KVM_CREATE_GUEST_MEMFD` on `vm`: the descriptor, or the errno.
fn create_on(vm: i32, size: u64, flags: u64) -> Result<i32, i32> {
    let arg = KvmCreateGuestMemfd {
        size,
        flags,
        reserved: [0; 6],
    };
    // SAFETY: the ioctl reads a `struct kvm_create_guest_memfd` from `arg`, which lives for
    // the call; on an invalid descriptor it fails with EBADF.
    let fd = unsafe { libc::ioctl(vm, KVM_CREATE_GUEST_MEMFD, &raw const arg) };
    if fd < 0 {
        Err(crate::sys::errno())
    } else {
        Ok(fd)
    }
}

/// This worker's VM: made on first use (`/dev/kvm`, `KVM_CREATE_VM` type 0), then the create
/// path is taken once on a one-page guest_memfd closed at once, so that the measured request
/// touches no new text. Err: the errno of the open or the ioctl.
pub fn vm_fd() -> Result<i32, i32> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if VM_PID.load(Ordering::Relaxed) == pid {
        return Ok(VM_FD.load(Ordering::Relaxed));
    }
    // SAFETY: open of a NUL-terminated path; the descriptor is owned below.
    let kvm = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if kvm < 0 {
        return Err(crate::sys::errno());
    }
    // SAFETY: KVM_CREATE_VM takes the VM type as its argument (0: the default type).
    let vm = unsafe { libc::ioctl(kvm, KVM_CREATE_VM, 0 as libc::c_ulong) };
    let e = crate::sys::errno();
    // SAFETY: closing /dev/kvm opened above; the VM keeps its own reference.
    unsafe { libc::close(kvm) };
    if vm < 0 {
        return Err(e);
    }
    VM_FD.store(vm, Ordering::Relaxed);
    VM_PID.store(pid, Ordering::Relaxed);
    if let Ok(fd) = create_on(vm, 4096, 0) {
        // SAFETY: closing the warm-up guest_memfd just created; nothing else refers to it.
        unsafe { libc::close(fd) };
    }
    Ok(vm)
}

/// `KVM_CREATE_GUEST_MEMFD(size, flags)` on this worker's VM.
pub fn create(size: u64, flags: u64) -> Result<i32, i32> {
    create_on(vm_fd()?, size, flags)
}

/// `_IO(KVMIO, 0x03)`.
const KVM_CHECK_EXTENSION: libc::c_ulong = 0xAE03;
/// `KVM_CAP_GUEST_MEMFD` (include/uapi/linux/kvm.h): nonzero on a VM that supports
/// `KVM_CREATE_GUEST_MEMFD`.
const KVM_CAP_GUEST_MEMFD: libc::c_ulong = 234;

/// Whether this host can run `gmem` ops, asked once in the runner (not a worker): a VM of the
/// default type must answer `KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD)` with a nonzero value.
/// Not every KVM has it: a `kvm_pvm` host (KVM in a VM without hardware virtualization)
/// creates VMs but answers ENOTTY to `KVM_CREATE_GUEST_MEMFD`. Err: why not, with the KVM
/// module that is loaded.
pub fn host_support() -> Result<(), String> {
    static SUPPORT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    SUPPORT.get_or_init(probe_support).clone()
}

fn probe_support() -> Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let module = ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .into_iter()
        .find(|m| std::path::Path::new("/sys/module").join(m).exists())
        .unwrap_or("no vendor module");
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("guest_memfd: cannot open /dev/kvm: {e}"))?;
    // SAFETY: KVM_CREATE_VM takes the VM type (0: the default) and returns a new descriptor.
    let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0 as libc::c_ulong) };
    if vm < 0 {
        return Err(format!(
            "guest_memfd: KVM_CREATE_VM failed (errno {}; KVM module: {module})",
            crate::sys::errno()
        ));
    }
    // SAFETY: `vm` was just returned by KVM_CREATE_VM and nothing else owns it.
    let vm = unsafe { OwnedFd::from_raw_fd(vm) };
    // SAFETY: KVM_CHECK_EXTENSION takes the capability number and reads nothing else.
    let cap = unsafe { libc::ioctl(vm.as_raw_fd(), KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD) };
    if cap <= 0 {
        return Err(format!(
            "guest_memfd: this host's KVM ({module}) has no KVM_CAP_GUEST_MEMFD \
             (KVM_CHECK_EXTENSION answers {cap}), so KVM_CREATE_GUEST_MEMFD fails with ENOTTY"
        ));
    }
    Ok(())
}
