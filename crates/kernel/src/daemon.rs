//! Simulated time and the kernel threads that run in it. Ops take no simulated time; only
//! `Kernel::sleep_ms` advances the clock. Each daemon says when it next wants to run
//! (`poll_at`, as smoltcp's sockets tell the interface when to poll them again); the scheduler
//! moves the clock to the earliest such time, runs that daemon, and repeats until the sleep
//! ends. The daemons are khugepaged and kcompactd; kswapd has nothing to reclaim in the model
//! and passes its wakeups on to kcompactd.

use crate::Kernel;

/// A kernel thread with a sleep/wake cycle in simulated time.
pub(crate) trait Daemon {
    /// When the thread next wants to run (simulated ms); `None` while it sleeps without a
    /// timer (until something wakes it) or is stopped.
    fn poll_at(&self, k: &Kernel) -> Option<u64>;
    /// Runs the thread once at `k.now_ms` (the scheduler has moved the clock there); it
    /// records its next wakeup itself.
    fn run(&self, k: &mut Kernel);
}

/// `khugepaged`: a pass every `scan_sleep_millisecs` while its mm list is not empty.
struct Khugepaged;

impl Daemon for Khugepaged {
    fn poll_at(&self, k: &Kernel) -> Option<u64> {
        k.khugepaged_poll_at()
    }
    fn run(&self, k: &mut Kernel) {
        k.khugepaged_thread_pass();
    }
}

/// `kcompactd`: woken (through kswapd) by allocations that may wake kswapd, and every
/// 500 ms for proactive compaction (`compaction.rs`).
struct Kcompactd;

impl Daemon for Kcompactd {
    fn poll_at(&self, k: &Kernel) -> Option<u64> {
        k.kcompactd_poll_at()
    }
    fn run(&self, k: &mut Kernel) {
        k.kcompactd_run();
    }
}

/// The daemons, in the order they run when they are due at the same time.
const DAEMONS: [&dyn Daemon; 2] = [&Khugepaged, &Kcompactd];

impl Kernel {
    /// Advances simulated time by `ms`, running every daemon pass that falls due.
    pub fn sleep_ms(&mut self, ms: u64) {
        let end = self.now_ms.saturating_add(ms);
        while let Some((t, d)) = self.next_daemon() {
            if t > end {
                break;
            }
            self.now_ms = t;
            d.run(self);
        }
        self.now_ms = end;
    }

    /// The daemon that wants to run first, and when (ties: `DAEMONS` order).
    fn next_daemon(&self) -> Option<(u64, &'static dyn Daemon)> {
        let mut best: Option<(u64, &'static dyn Daemon)> = None;
        for d in DAEMONS {
            if let Some(t) = d.poll_at(self) {
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, d));
                }
            }
        }
        best
    }
}
