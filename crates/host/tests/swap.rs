//! The run's own swap (`--allow-swap`, `thpsim_host::swap`): set up for a scenario with a
//! `swap` line, used by its workers, torn down at the end and after a SIGKILL (by the next
//! run's journal recovery); refused without the option and when zram0 is in use. Every test
//! ends with no swap, zram0 reset and vm.page-cluster as it was. Child processes are this
//! test binary re-run on `child_entry`.

mod common;
use common::*;

use std::time::Duration;

use thpsim_host::swap::{ZRAM_DISKSIZE, ZRAM_RESET};
use thpsim_host::sysfs::journal_path;
use thpsim_host::{HostBackend, HostOptions};
use thpsim_kernel::types::Advice;
use thpsim_kernel::SwapDevice;
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, Setup};

const PAGE_CLUSTER: &str = "/proc/sys/vm/page-cluster";

fn opts(allow_swap: bool) -> HostOptions {
    HostOptions {
        allow_sysfs: true,
        no_wait: false,
        allow_swap,
        allow_memcg: false,
    }
}

fn swap_setup(bytes: u64) -> Setup {
    swap_setup_on(bytes, SwapDevice::Zram)
}

fn swap_setup_on(bytes: u64, swap_device: SwapDevice) -> Setup {
    Setup {
        swap: bytes,
        swap_device,
        ..setup_with(default_knobs())
    }
}

/// Disk and file areas this crate made that are still there: directories under /var/tmp,
/// loop devices backed by a file in one.
fn areas_left() -> Vec<String> {
    let mut left = Vec::new();
    for e in std::fs::read_dir(thpsim_host::swap::AREA_PARENT)
        .unwrap()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with("thpsim-swap.") {
            left.push(n);
        }
    }
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let b = read(&format!("{}/loop/backing_file", e.path().display()));
        if b.contains("/thpsim-swap.") {
            left.push(format!("{}: {b}", e.file_name().to_string_lossy()));
        }
    }
    left
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The machine has no swap and zram0 is unused: the state every test starts and ends in.
fn swap_free() -> bool {
    read("/proc/swaps").lines().count() <= 1 && read(ZRAM_DISKSIZE) == "0"
}

fn ready() -> bool {
    host_ready() && std::path::Path::new(ZRAM_DISKSIZE).exists() && swap_free()
}

#[test]
fn child_entry() {
    let Ok(mode) = std::env::var("THPSIM_SWAP_CHILD") else {
        return;
    };
    let device = match mode.as_str() {
        "hold" => SwapDevice::Zram,
        "hold-disk" => SwapDevice::Disk,
        m => panic!("unknown child mode {m}"),
    };
    let mut b = HostBackend::new(opts(true));
    b.setup(&swap_setup_on(64 << 20, device)).expect("setup");
    mmap(&mut b, 0, 64 << 10);
    access(&mut b, 0, 64 << 10, Pattern::Write);
    madvise(&mut b, 0, 64 << 10, Advice::Pageout);
    println!("READY");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_run_swaps_and_tears_down() {
    let _l = lock();
    if !ready() {
        return;
    }
    let pc = read(PAGE_CLUSTER);
    let mut b = HostBackend::new(opts(true));
    // vm.page-cluster is a model knob: the run pins it to the scenario's value.
    let mut setup = swap_setup(64 << 20);
    setup.sysfs.push(("vm.page-cluster".into(), "5".into()));
    b.setup(&setup).expect("setup");
    assert_eq!(
        read(PAGE_CLUSTER),
        "5",
        "readahead pinned to the scenario's page-cluster"
    );
    assert!(read("/proc/swaps").contains("/dev/zram0"));
    mmap(&mut b, 0, 64 << 10);
    access(&mut b, 0, 64 << 10, Pattern::Write);
    let s0 = b.snapshot(&[(0, 64 << 10)]).unwrap();
    madvise(&mut b, 0, 64 << 10, Advice::Pageout);
    let s1 = b.snapshot(&[(0, 64 << 10)]).unwrap();
    assert_eq!(delta(&s0, &s1, "vmstat.pswpout"), 16);
    assert_eq!(delta(&s0, &s1, "meminfo.SwapFree"), -64);
    assert_eq!(counter(&s1, "meminfo.SwapTotal"), (64 << 10) - 4);
    assert_eq!(
        pages(&mut b, 0, 64 << 10),
        one(thpsim_kernel::observe::Backing::Swap, 16)
    );
    b.finish().expect("finish");
    assert!(swap_free(), "swap left after the run");
    assert_eq!(read(PAGE_CLUSTER), pc);
    assert!(!journal_path().exists());
}

#[test]
fn without_allow_swap_or_with_zram_in_use_the_run_is_refused() {
    let _l = lock();
    if !ready() {
        return;
    }
    let mut b = HostBackend::new(opts(false));
    let e = b.setup(&swap_setup(64 << 20)).unwrap_err();
    assert!(
        e.is_not_runnable() && e.message().contains("--allow-swap"),
        "{}",
        e.message()
    );
    drop(b);
    assert!(swap_free());
    // Someone else's zram0: sized but not swap. The run refuses and leaves it alone.
    std::fs::write(ZRAM_DISKSIZE, "4194304").unwrap();
    let mut b = HostBackend::new(opts(true));
    let e = b.setup(&swap_setup(64 << 20)).unwrap_err();
    drop(b);
    let left = read(ZRAM_DISKSIZE);
    std::fs::write(ZRAM_RESET, "1").unwrap();
    assert!(
        e.is_not_runnable() && e.message().contains("zram0 is in use"),
        "{}",
        e.message()
    );
    assert_eq!(
        left, "4194304",
        "the run touched a zram0 that was not its own"
    );
    assert!(swap_free());
}

#[test]
fn a_killed_run_is_torn_down_by_the_next() {
    let _l = lock();
    if !ready() {
        return;
    }
    let pc = read(PAGE_CLUSTER);
    let note = kill_a_swapping_child("hold", "/dev/zram0");
    assert!(note.contains("swapoff and reset of zram0"), "{note}");
    assert!(swap_free(), "swap left after recovery");
    assert_eq!(read(PAGE_CLUSTER), pc);
    assert!(!journal_path().exists());
}

/// Runs `child_entry` in `mode`, waits until its swap (named `swaps_has` in /proc/swaps) holds
/// its pages, SIGKILLs it and returns what the next run's journal recovery says it did.
fn kill_a_swapping_child(mode: &str, swaps_has: &str) -> String {
    kill_child_and_recover(("THPSIM_SWAP_CHILD", mode), |_| {
        assert!(
            read("/proc/swaps").contains(swaps_has),
            "the child's swap is on: {}",
            read("/proc/swaps")
        );
    })
}

#[test]
fn disk_and_file_areas_swap_and_are_removed() {
    let _l = lock();
    if !ready() || !areas_left().is_empty() {
        return;
    }
    for (device, shown) in [
        (SwapDevice::Disk, "/dev/loop"),
        (SwapDevice::File, "/swapfile"),
    ] {
        let mut b = HostBackend::new(opts(true));
        b.setup(&swap_setup_on(64 << 20, device)).expect("setup");
        let swaps = read("/proc/swaps");
        let line = swaps.lines().nth(1).unwrap_or_default().to_string();
        assert!(line.contains(shown), "{device:?}: {swaps}");
        assert!(
            line.contains(if device == SwapDevice::Disk {
                "partition"
            } else {
                "file"
            }),
            "{device:?}: {line}"
        );
        assert_eq!(
            areas_left().len(),
            if device == SwapDevice::Disk { 2 } else { 1 }
        );
        mmap(&mut b, 0, 64 << 10);
        access(&mut b, 0, 64 << 10, Pattern::Write);
        let s0 = b.snapshot(&[(0, 64 << 10)]).unwrap();
        madvise(&mut b, 0, 64 << 10, Advice::Pageout);
        let s1 = b.snapshot(&[(0, 64 << 10)]).unwrap();
        assert_eq!(delta(&s0, &s1, "vmstat.pswpout"), 16, "{device:?}");
        assert_eq!(counter(&s1, "meminfo.SwapTotal"), (64 << 10) - 4);
        // The written pages stay in the swap cache: a refault is a minor fault, no read.
        access(&mut b, 0, 4 << 10, Pattern::Read);
        let s2 = b.snapshot(&[(0, 64 << 10)]).unwrap();
        assert_eq!(delta(&s1, &s2, "vmstat.pswpin"), 0, "{device:?}");
        b.finish().expect("finish");
        assert!(swap_free(), "{device:?}: swap left after the run");
        assert_eq!(areas_left(), Vec::<String>::new(), "{device:?}");
        assert!(!journal_path().exists());
    }
}

#[test]
fn a_killed_runs_disk_area_is_removed_by_the_next() {
    let _l = lock();
    if !ready() || !areas_left().is_empty() {
        return;
    }
    let note = kill_a_swapping_child("hold-disk", "/dev/loop");
    assert!(
        note.contains("swapoff and removal of /var/tmp/thpsim-swap."),
        "{note}"
    );
    assert!(swap_free(), "swap left after recovery");
    assert_eq!(areas_left(), Vec::<String>::new());
    assert!(!journal_path().exists());
}
