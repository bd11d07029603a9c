//! thpsim-kernel: a pure, deterministic model of Linux anonymous-memory and transparent
//! huge page management, after Linux 6.18 (x86-64, 4 KiB pages) with older behaviour as
//! profiles. No I/O, no wall clock, no unseeded randomness, no `unsafe`.
#![forbid(unsafe_code)]

pub mod errno;
pub mod observe;
pub mod profile;
pub mod sysfs;
pub mod types;
pub mod util;
pub mod vmstat;
