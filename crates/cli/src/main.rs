//! `thpsim`: run scenarios on the model, compare kernel behaviours side by side, run the same
//! scenario on the real kernel and check that the two agree.

#[macro_use]
mod out;
mod bench;
mod calibrate;
mod check;
mod cost;
mod fuzz;
mod gen;
mod html;
mod import;
mod obs;
mod parquet_out;
mod probe;
mod progress;
mod replay;
mod report;
mod sweep;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use thpsim_scenario::backend::{Backend, BackendError};
use thpsim_scenario::engine::{self, RunResult, Variant};
use thpsim_scenario::sim::SimBackend;
use thpsim_scenario::Scenario;

#[derive(Parser)]
#[command(name = "thpsim", version, about = "A deterministic simulator of Linux transparent huge pages", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario on the model and print its observables; exit 1 if an `expect` fails.
    Run {
        file: PathBuf,
        /// Kernel profile (overrides the scenario's `kernel` line).
        #[arg(long)]
        kernel: Option<String>,
        /// A kernel profile (`kernel=6.12`), behaviour switch (`hzp_wp_fault=split`) or sysfs
        /// knob (`enabled=always`, `hugepages-64kB.enabled=madvise`,
        /// `khugepaged.max_ptes_none=0`); repeatable, applied after the scenario's own lines.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Check the model's invariants after every op (slower).
        #[arg(long)]
        check_invariants: bool,
        /// Print page maps in full (text output summarises long ones).
        #[arg(long)]
        pages_full: bool,
        #[arg(long)]
        json: bool,
        /// Write a timeline of the run (Chrome trace-event JSON; ui.perfetto.dev opens it).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Trace events recorded before the trace samples ops (every 2nd, 4th, …).
        #[arg(long, value_name = "N", default_value_t = trace::DEFAULT_LIMIT)]
        trace_limit: usize,
        /// Also write a self-contained HTML report (counter plots, address-space maps).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// No progress bar (one shows on a terminal for runs of many ops).
        #[arg(long, short)]
        quiet: bool,
        /// Estimate the kernel's time (`sim_kernel_time` per op, checkpoint and run) with a
        /// cost profile: `builtin` (measured on the reference machine) or a file `thpsim
        /// calibrate` wrote. Not with --trace.
        #[arg(long, value_name = "PROFILE", conflicts_with = "trace")]
        cost: Option<String>,
    },
    /// Run a scenario under several kernel behaviours and print one table, a column each.
    /// Each `--kernel P` adds a column; each `--set k=v[,k=v…]` adds a column with those
    /// settings (profiles, switches or sysfs knobs, as `run --set`) over the scenario's
    /// kernel; `--variant "P k=v …"` adds any combination.
    Compare {
        file: PathBuf,
        #[arg(long)]
        kernel: Vec<String>,
        #[arg(long = "set", value_name = "KEY=VALUE[,KEY=VALUE]")]
        sets: Vec<String>,
        #[arg(long)]
        variant: Vec<String>,
        /// Print every observable, not only those that differ or are non-zero.
        #[arg(long)]
        all: bool,
        /// Print page maps in full (text output summarises long ones).
        #[arg(long)]
        pages_full: bool,
        /// Output: a text table, a Markdown table (`md`, to paste) or JSON (typed values).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// The same as `--format json`.
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML report (plots, address-space maps).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Run a scenario on the real kernel of this machine (root, Linux) and print its observables.
    Host {
        file: PathBuf,
        /// Pin every THP sysfs knob to the scenario's starting value (model defaults plus its
        /// `sysfs` lines) and keep khugepaged asleep; every knob is restored afterwards.
        #[arg(long)]
        allow_sysfs: bool,
        /// Let scenarios with a `swap` line set up zram0 as the machine's only swap for
        /// their run (refused if the machine has swap or zram0 is in use; swapoff and reset
        /// afterwards, on every exit path).
        #[arg(long)]
        allow_swap: bool,
        /// Let scenarios with a `memcg` line make a memory cgroup (a child of this process's
        /// own, cgroup v1) for their processes (removed afterwards, on every exit path).
        #[arg(long)]
        allow_memcg: bool,
        /// Fail (exit 3) instead of waiting when another host run holds the run lock.
        #[arg(long)]
        no_wait: bool,
        /// Run even if the estimated fault-in does not fit in MemAvailable.
        #[arg(long)]
        force: bool,
        /// Print page maps in full (text output summarises long ones).
        #[arg(long)]
        pages_full: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run scenarios on the model and on the host and print every observable that differs.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Pin every THP knob per scenario on the host (restored afterwards); without it the
        /// model starts from the host's current knob values.
        #[arg(long)]
        allow_sysfs: bool,
        /// Let scenarios with a `swap` line set up zram0 as the machine's only swap for
        /// their run (refused if the machine has swap or zram0 is in use; swapoff and reset
        /// afterwards, on every exit path).
        #[arg(long)]
        allow_swap: bool,
        /// Let scenarios with a `memcg` line make a memory cgroup (a child of this process's
        /// own, cgroup v1) for their processes (removed afterwards, on every exit path).
        #[arg(long)]
        allow_memcg: bool,
        /// Fail instead of waiting when another host run holds the run lock.
        #[arg(long)]
        no_wait: bool,
        /// Run scenarios whose estimated fault-in does not fit in MemAvailable.
        #[arg(long)]
        force: bool,
        /// Known deviations (default: scenarios/conformance/deviations.txt if present).
        #[arg(long)]
        deviations: Option<PathBuf>,
        /// A sysfs knob both sides start from (`enabled=always`, repeatable): the host is
        /// pinned to it (needs `--allow-sysfs`), as to a scenario's `sysfs` line.
        #[arg(long = "set", value_name = "KNOB=VALUE")]
        sets: Vec<String>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        #[arg(long)]
        json: bool,
    },
    /// Measure the model's speed and memory (release builds give the real figures).
    Bench {
        /// Smaller sizes, for a quick look.
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print a generated VMM workload scenario (.thps) to stdout, for parameter sweeps; each
    /// follows a VMM's source, cited in the scenario header.
    #[command(after_help = gen::help_text())]
    Gen {
        #[command(flatten)]
        params: gen::GenParams,
    },
    /// Probe this host's kernel (root, Linux): which behaviour switches it shows, as a table
    /// and a ready `--set` line, plus knobs and stats the model does not know. Writes THP
    /// sysfs knobs and restores them.
    Probe {
        #[arg(long)]
        json: bool,
    },
    /// Differential fuzzing against this host's kernel (root, Linux): N random programs,
    /// each checked like `check --allow-sysfs`; disagreements are rerun to confirm, classified
    /// and shrunk. Exit 1 on a reproducible disagreement not listed as a deviation.
    Fuzz {
        /// Run the programs against the host (the only mode; the model-only engine fuzzing is
        /// the `fuzz/` cargo-fuzz targets and the progen property test).
        #[arg(
            long = "against-host",
            value_name = "N",
            required_unless_present = "print_program"
        )]
        programs: Option<u32>,
        /// Print the program a campaign runs for this program seed (as reported, e.g.
        /// `0x5dfc85b3a955b021`; with `--abf`/`--weight` as the campaign had) and exit.
        /// Needs no host.
        #[arg(long, value_name = "SEED", value_parser = parse_seed)]
        print_program: Option<u64>,
        /// Campaign seed (program i uses a seed derived from it).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// `anon_beside_full=1` and every mTHP size on in every program.
        #[arg(long)]
        abf: bool,
        /// Op weight override, `op=weight` (repeatable; 0 turns an op off).
        #[arg(long = "weight", value_name = "OP=W")]
        weights: Vec<String>,
        /// Write each kind's minimised reproducer to DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Host runs a shrink may use.
        #[arg(long, default_value_t = 60)]
        shrink_runs: u32,
        /// Programs may declare swap (`swap SIZE`, with the `swap` weight): zram0 is set up
        /// for their runs as `check --allow-swap` does.
        #[arg(long)]
        allow_swap: bool,
        /// One line per program.
        #[arg(long)]
        verbose: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario (a file or `--gen "WORKLOAD [gen options]"`) under the cartesian
    /// product of settings (`--grid KEY=V1,V2,…`, repeatable; `--kernel` adds a profile axis),
    /// a listed set (`--variant "k=v k=v"`, repeatable) or `--sample N` seeded draws of the
    /// grid, on all cores; write CSV, JSON lines or Parquet (by `--out` extension) and an HTML
    /// report. `--shard I/N` runs every N-th variant from I; `sweep merge` joins the shards.
    #[command(args_conflicts_with_subcommands = true)]
    Sweep {
        #[command(subcommand)]
        cmd: Option<SweepCmd>,
        /// Scenario file (or `--gen`).
        #[arg(required_unless_present = "gen")]
        file: Option<PathBuf>,
        /// A generated workload and its `thpsim gen` options, e.g. `--gen "qemu-precopy --guest 1G"`.
        #[arg(long, value_name = "WORKLOAD [OPTIONS]", conflicts_with = "file")]
        gen: Option<String>,
        /// An axis: a setting (profile, switch or sysfs knob, as `--set`) and its values;
        /// integer ranges `A..B` or `A..B:STEP` expand.
        #[arg(long = "grid", value_name = "KEY=V1,V2,…")]
        grid: Vec<String>,
        /// Kernel profiles (an axis before the `--grid` ones).
        #[arg(long)]
        kernel: Vec<String>,
        /// A listed variant instead of a grid (repeatable).
        #[arg(long, value_name = "k=v k=v…", conflicts_with_all = ["grid", "sample"])]
        variant: Vec<String>,
        /// Run N distinct points of the grid drawn with `--seed`, not all of it.
        #[arg(long, value_name = "N")]
        sample: Option<usize>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run shard I (0-based) of N: the variants whose index is I modulo N.
        #[arg(long, value_name = "I/N", value_parser = sweep::parse_shard)]
        shard: Option<(usize, usize)>,
        /// Output file, `.csv`, `.jsonl` or `.parquet` (repeatable).
        #[arg(long, required = true)]
        out: Vec<PathBuf>,
        /// Also write a self-contained HTML report.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Worker threads (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
        /// No progress bar and no summary line.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Shell completions for bash, zsh, fish, elvish or powershell, to stdout.
    Completions { shell: clap_complete::Shell },
    /// The man page (roff), to stdout: `thpsim man > thpsim.1`.
    Man,
    /// Write a scenario that rebuilds a live process's anonymous private memory in the model
    /// (VMAs, madvise state, the backing of every page, the host's knobs); root.
    Import {
        /// The process to read (/proc/PID/smaps, pagemap, /proc/kpageflags).
        #[arg(long)]
        pid: i32,
        /// Write the scenario here (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run a scenario on the model, then replay a trace of accesses and mmap/munmap/madvise/
    /// mprotect events on its state (CSV, thpsim binary, or `perf script` of `perf mem
    /// record`; docs/replay.md): faults, THP coverage over time, khugepaged activity.
    Replay {
        trace: PathBuf,
        /// The scenario whose state the trace starts from (e.g. one `thpsim import` wrote).
        #[arg(long)]
        on: PathBuf,
        #[arg(long)]
        kernel: Option<String>,
        /// A profile, behaviour switch or sysfs knob, as `run --set`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long, value_enum, default_value_t = replay::TraceFormat::Auto)]
        format: replay::TraceFormat,
        /// Sample THP coverage and khugepaged activity every this many ms of trace time
        /// (0: only at the end).
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval: u64,
        /// Also write the trace in the binary format.
        #[arg(long, value_name = "FILE")]
        write_binary: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Measure what each event kind costs this host's kernel (faults per size, COW, PMD
    /// split, collapse, populate, munmap) and write a cost profile for `run --cost`; root.
    Calibrate {
        /// Write the profile here (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The profile's name (default: kernel and machine).
        #[arg(long)]
        name: Option<String>,
        /// Repeats per event kind (median, min and max are written).
        #[arg(long, default_value_t = 5)]
        repeats: u32,
        /// Compare the model's estimate with the host's time for a few workloads (with the
        /// measured profile, --profile FILE, or the built-in one).
        #[arg(long)]
        validate: bool,
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List kernel profiles, behaviour switches and sysfs knobs.
    Knobs,
    /// Print the scenario language reference (Markdown).
    Docs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Md,
    Json,
}

#[derive(Subcommand)]
enum SweepCmd {
    /// Join shard outputs (all `.csv` or all `.jsonl`) into the file an unsharded run writes
    /// (`.csv` inputs can be written as `.parquet` too).
    Merge {
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long, required = true)]
        out: Vec<PathBuf>,
        /// Write what is there when variants are missing.
        #[arg(long)]
        partial: bool,
    },
}

/// `--gen "WORKLOAD [options]"`: the workload scenario `thpsim gen` prints, parsed.
fn gen_scenario(spec: &str) -> Result<Scenario, String> {
    let mut argv = vec!["thpsim".to_string(), "gen".to_string()];
    argv.extend(spec.split_whitespace().map(str::to_string));
    let p = match Cli::try_parse_from(&argv) {
        Ok(Cli {
            cmd: g @ Cmd::Gen { .. },
        }) => gen_params(g).expect("a gen command"),
        Ok(_) => unreachable!("parsed as gen"),
        Err(e) => return Err(format!("--gen `{spec}`: {}", e.render())),
    };
    let src = gen::generate(&p)?;
    let name = format!(
        "gen:{}",
        spec.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    thpsim_scenario::parse(&name, &src).map_err(|d| thpsim_scenario::diag::render_all(&d, &src))
}

fn gen_params(cmd: Cmd) -> Option<gen::GenParams> {
    match cmd {
        Cmd::Gen { params } => Some(params),
        _ => None,
    }
}

/// A seed in decimal or `0x` hex, as `fuzz` reports them.
fn parse_seed(s: &str) -> Result<u64, String> {
    thpsim_scenario::parse::parse_uint(s)
        .ok_or_else(|| format!("`{s}` is not a seed (decimal or 0x hex)"))
}

/// Exit code of every command for "cannot run on this host" (no root/Linux/THP sysfs, a
/// scenario the host cannot run, another run holding the lock with `--no-wait`, not enough
/// memory without `--force`). 1 is a failed `expect` or a difference, 2 a usage or parse
/// error.
pub(crate) const EXIT_CANNOT_RUN: u8 = 3;

/// `run`, `compare`, `knobs`: restore the knobs of a killed host run's journal, or say that
/// one is pending.
fn recover_pending() {
    if let Some(n) = thpsim_host::sysfs::recover_or_report() {
        eprintln!("thpsim: {n}");
    }
}

/// Reads and parses a scenario; on errors prints them all and returns exit code 2.
pub(crate) fn load(path: &PathBuf) -> Result<Scenario, ExitCode> {
    let name = path.display().to_string();
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("thpsim: cannot read {name}: {e}");
            return Err(ExitCode::from(2));
        }
    };
    thpsim_scenario::parse(&name, &src).map_err(|d| {
        eprint!("{}", thpsim_scenario::diag::render_all(&d, &src));
        ExitCode::from(2)
    })
}

/// `--set` items as canonical `(key, value)` pairs; unknown keys and bad values are refused
/// with a hint (`thpsim_scenario::settings`).
pub(crate) fn parse_sets(items: &[String]) -> Result<Vec<(String, String)>, String> {
    Ok(thpsim_scenario::settings::parse_items(items)?
        .into_iter()
        .map(|s| (s.key, s.value))
        .collect())
}

pub(crate) fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("thpsim: {msg}");
    ExitCode::from(2)
}

pub(crate) fn run_on(
    scn: &Scenario,
    backend: &mut dyn Backend,
    variant: &Variant,
) -> Result<RunResult, ExitCode> {
    engine::run(scn, backend, variant).map_err(|e| run_error(scn, &e))
}

/// Reports a failed run; the exit code for it.
fn run_error(scn: &Scenario, e: &BackendError) -> ExitCode {
    eprintln!(
        "thpsim: {}: {}{}",
        scn.file,
        if e.is_not_runnable() {
            "not runnable: "
        } else {
            ""
        },
        e.message()
    );
    ExitCode::from(if e.is_not_runnable() {
        EXIT_CANNOT_RUN
    } else {
        1
    })
}

/// Runs every variant on the model, on all cores; results in variant order, so the output
/// does not depend on the number of threads. The first failing variant (in order) is
/// reported, as a serial loop would.
pub(crate) fn run_variants(
    scn: &Scenario,
    variants: &[Variant],
) -> Result<Vec<RunResult>, ExitCode> {
    use rayon::prelude::*;
    let runs: Vec<Result<RunResult, BackendError>> = variants
        .par_iter()
        .map(|v| engine::run(scn, &mut model_backend(), v))
        .collect();
    runs.into_iter()
        .map(|r| r.map_err(|e| run_error(scn, &e)))
        .collect()
}

fn print_json<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).expect("json"));
}

/// Prints one run (JSON or text); exit code 1 if an expectation failed.
fn report_run(res: RunResult, json: bool, opts: report::TextOpts) -> ExitCode {
    if json {
        print_json(&res);
    } else {
        out!("{}", report::run_text(&res, opts));
    }
    expect_code(&[res])
}

fn expect_code(results: &[RunResult]) -> ExitCode {
    if results.iter().any(|r| r.any_failed()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Host bytes the model may use: `MemAvailable` (Linux), else no limit.
fn model_memory_budget() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// The model backend the CLI runs: refuses scenarios that may not fit in host memory.
pub(crate) fn model_backend() -> SimBackend {
    let mut be = SimBackend::new();
    be.memory_budget = model_memory_budget();
    be
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            file,
            kernel,
            sets,
            check_invariants,
            pages_full,
            json,
            trace,
            trace_limit,
            html,
            quiet,
            cost,
        } => {
            recover_pending();
            let scn = match load(&file) {
                Ok(s) => s,
                Err(c) => return c,
            };
            let sets = match parse_sets(&sets) {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            let variant = Variant {
                profile: kernel,
                sets,
            };
            if let Err(e) = engine::plan(&scn, &variant) {
                return usage_error(e);
            }
            let mut sim = model_backend();
            sim.check_invariants = check_invariants;
            if let Some(c) = cost {
                let profile = match c.as_str() {
                    "builtin" => Ok(cost::CostProfile::builtin()),
                    f => std::fs::read_to_string(f)
                        .map_err(|e| format!("cannot read {f}: {e}"))
                        .and_then(|t| cost::CostProfile::parse(f, &t)),
                };
                let profile = match profile {
                    Ok(p) => p,
                    Err(e) => return usage_error(e),
                };
                let mut be = cost::Costed::new(sim, profile);
                let res = match run_on(&scn, &mut be, &variant) {
                    Ok(r) => r,
                    Err(c) => return c,
                };
                let code = expect_code(std::slice::from_ref(&res));
                if json {
                    print_json(&serde_json::json!({
                        "run": res,
                        "sim_kernel_time_ns": be.total_ns,
                        "cost_profile": be.profile.name,
                        "ops": be.ops,
                    }));
                } else {
                    out!(
                        "{}",
                        report::run_text(&res, report::TextOpts { pages_full })
                    );
                    out!("{}", cost::summary(&be));
                }
                return code;
            }
            // A bar only for runs long enough to wait for.
            let ops = progress::op_count(&scn.stmts);
            let bar = progress::bar(ops, "run", quiet || ops < 10_000);
            let mut be = progress::Counting { inner: sim, bar };
            let res = match &trace {
                None => run_on(&scn, &mut be, &variant),
                Some(path) => {
                    let mut t = trace::Tracer::new(be, trace_limit, &scn.file);
                    let r = run_on(&scn, &mut t, &variant);
                    let (text, _) = t.finish_json();
                    if let Err(e) = std::fs::write(path, text) {
                        eprintln!("thpsim: cannot write {}: {e}", path.display());
                        return ExitCode::from(1);
                    }
                    r
                }
            };
            match res {
                Ok(res) => {
                    if let Some(h) = &html {
                        if let Err(e) =
                            std::fs::write(h, html::runs_page(std::slice::from_ref(&res)))
                        {
                            eprintln!("thpsim: cannot write {}: {e}", h.display());
                            return ExitCode::from(1);
                        }
                    }
                    report_run(res, json, report::TextOpts { pages_full })
                }
                Err(c) => c,
            }
        }
        Cmd::Compare {
            file,
            kernel,
            sets,
            variant,
            all,
            pages_full,
            format,
            json,
            html,
        } => {
            recover_pending();
            let scn = match load(&file) {
                Ok(s) => s,
                Err(c) => return c,
            };
            let mut variants: Vec<Variant> = kernel
                .into_iter()
                .map(|k| Variant {
                    profile: Some(k),
                    sets: vec![],
                })
                .collect();
            for s in &sets {
                match parse_sets(std::slice::from_ref(s)) {
                    Ok(kv) => variants.push(Variant {
                        profile: None,
                        sets: kv,
                    }),
                    Err(e) => return usage_error(e),
                }
            }
            for v in &variant {
                let mut words = v.split_whitespace();
                let profile = words.next().map(str::to_string);
                let rest: Vec<String> = words.map(str::to_string).collect();
                match parse_sets(&rest) {
                    Ok(kv) => variants.push(Variant { profile, sets: kv }),
                    Err(e) => return usage_error(e),
                }
            }
            if variants.is_empty() {
                return usage_error("compare needs at least one --kernel, --set or --variant");
            }
            for v in &variants {
                if let Err(e) = engine::plan(&scn, v) {
                    return usage_error(e);
                }
            }
            let results = match run_variants(&scn, &variants) {
                Ok(r) => r,
                Err(c) => return c,
            };
            let opts = report::TextOpts { pages_full };
            match if json { Format::Json } else { format } {
                Format::Json => print_json(&report::CompareJson::new(&results)),
                Format::Md => out!("{}", report::compare_md(&results, all, opts)),
                Format::Text => out!("{}", report::compare_text(&results, all, opts)),
            }
            if let Some(h) = &html {
                if let Err(e) = std::fs::write(h, html::runs_page(&results)) {
                    eprintln!("thpsim: cannot write {}: {e}", h.display());
                    return ExitCode::from(1);
                }
            }
            expect_code(&results)
        }
        Cmd::Host {
            file,
            allow_sysfs,
            allow_swap,
            allow_memcg,
            no_wait,
            force,
            pages_full,
            json,
        } => {
            let scn = match load(&file) {
                Ok(s) => s,
                Err(c) => return c,
            };
            if let Err(e) = thpsim_host::preflight() {
                eprintln!("thpsim: cannot run on this host: {e}");
                return ExitCode::from(EXIT_CANNOT_RUN);
            }
            let mem_note = match thpsim_host::estimate::check_memory(&scn, force) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("thpsim: cannot run on this host: {e}");
                    return ExitCode::from(EXIT_CANNOT_RUN);
                }
            };
            let variant = Variant {
                profile: Some(thpsim_host::host_kernel_profile()),
                sets: vec![],
            };
            let mut be = thpsim_host::HostBackend::new(thpsim_host::HostOptions {
                allow_sysfs,
                no_wait,
                allow_swap,
                allow_memcg,
            });
            match run_on(&scn, &mut be, &variant) {
                Ok(mut res) => {
                    res.warnings.extend(mem_note);
                    res.warnings.extend(be.warnings().iter().cloned());
                    report_run(res, json, report::TextOpts { pages_full })
                }
                Err(c) => c,
            }
        }
        Cmd::Check {
            files,
            allow_sysfs,
            allow_swap,
            allow_memcg,
            no_wait,
            force,
            deviations,
            sets,
            quiet,
            json,
        } => {
            let settings = match thpsim_scenario::settings::parse_items(&sets) {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            if let Some(s) = settings
                .iter()
                .find(|s| s.kind != thpsim_scenario::settings::SettingKind::Knob)
            {
                return usage_error(format!(
                    "check --set takes sysfs knobs only: `{}` is a {} the host kernel cannot change (use compare or run)",
                    s.key,
                    if s.kind == thpsim_scenario::settings::SettingKind::Profile {
                        "kernel profile"
                    } else {
                        "behaviour switch"
                    }
                ));
            }
            let sets: Vec<(String, String)> =
                settings.into_iter().map(|s| (s.key, s.value)).collect();
            check::main(
                &files,
                thpsim_host::HostOptions {
                    allow_sysfs,
                    no_wait,
                    allow_swap,
                    allow_memcg,
                },
                force,
                deviations,
                json,
                &sets,
                quiet,
            )
        }
        Cmd::Bench { quick, json } => bench::main(quick, json),
        g @ Cmd::Gen { .. } => match gen::generate(&gen_params(g).expect("a gen command")) {
            Ok(s) => {
                out!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(e),
        },
        Cmd::Sweep {
            cmd:
                Some(SweepCmd::Merge {
                    inputs,
                    out,
                    partial,
                }),
            ..
        } => match sweep::merge(&inputs, &out, partial) {
            Ok(msg) => {
                eprintln!("thpsim sweep merge: {msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("thpsim sweep merge: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Sweep {
            cmd: None,
            file,
            gen,
            grid,
            kernel,
            variant,
            sample,
            seed,
            shard,
            out,
            html,
            jobs,
            quiet,
        } => {
            let scenario = match (&file, &gen) {
                (Some(f), _) => match load(f) {
                    Ok(s) => s,
                    Err(c) => return c,
                },
                (None, Some(g)) => match gen_scenario(g) {
                    Ok(s) => s,
                    Err(e) => return usage_error(e),
                },
                (None, None) => return usage_error("sweep needs a scenario FILE or --gen"),
            };
            let design = if !variant.is_empty() {
                sweep::Design::listed(&variant)
            } else {
                let mut axes = vec![];
                if !kernel.is_empty() {
                    axes.push(format!("kernel={}", kernel.join(",")));
                }
                axes.extend(grid);
                axes.iter()
                    .map(|a| sweep::parse_axis(a))
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|axes| {
                        let mut keys: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
                        keys.sort();
                        match keys.windows(2).find(|w| w[0] == w[1]) {
                            Some(w) => Err(format!("`{}` is swept twice", w[0])),
                            None => sweep::Design::grid(axes, sample, seed),
                        }
                    })
            };
            let design = match design {
                Ok(d) => d,
                Err(e) => return usage_error(e),
            };
            sweep::main(sweep::SweepOpts {
                scenario,
                design,
                shard,
                out,
                html,
                quiet,
                jobs,
            })
        }
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "thpsim", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            ExitCode::SUCCESS
        }
        Cmd::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            match clap_mangen::Man::new(cmd).render(&mut buf) {
                Ok(()) => {
                    out!("{}", String::from_utf8_lossy(&buf));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("thpsim man: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Probe { json } => probe::main(json),
        Cmd::Fuzz {
            programs,
            print_program,
            seed,
            abf,
            weights,
            out,
            shrink_runs,
            allow_swap,
            verbose,
            json,
        } => {
            let mut ws = vec![];
            for item in &weights {
                match item.split_once('=').map(|(k, v)| (k, v.parse::<u32>())) {
                    Some((k, Ok(v))) => ws.push((k.to_string(), v)),
                    _ => {
                        eprintln!("thpsim fuzz: --weight takes OP=WEIGHT, not `{item}`");
                        return ExitCode::from(2);
                    }
                }
            }
            if let Some(ps) = print_program {
                return match fuzz::weights(&ws) {
                    Ok(w) => {
                        out!("{}", fuzz::program(ps, &w, abf));
                        ExitCode::SUCCESS
                    }
                    Err(e) => usage_error(e),
                };
            }
            fuzz::main(fuzz::FuzzOpts {
                programs: programs.unwrap_or(0),
                seed,
                abf,
                weights: ws,
                out,
                shrink_runs,
                allow_swap,
                json,
                verbose,
            })
        }
        Cmd::Import { pid, out } => import::main(pid, out.as_deref()),
        Cmd::Calibrate {
            out,
            name,
            repeats,
            validate,
            profile,
            json,
        } => calibrate::main(calibrate::CalibrateOpts {
            out: out.as_deref(),
            name,
            repeats: repeats.max(1),
            validate,
            profile: profile.as_deref(),
            json,
        }),
        Cmd::Replay {
            trace,
            on,
            kernel,
            sets,
            format,
            interval,
            write_binary,
            json,
        } => {
            let sets = match parse_sets(&sets) {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            replay::main(replay::ReplayOpts {
                trace: &trace,
                on: &on,
                variant: Variant {
                    profile: kernel,
                    sets,
                },
                format,
                interval_ms: interval,
                write_binary: write_binary.as_deref(),
                json,
            })
        }
        Cmd::Knobs => {
            recover_pending();
            out!("{}", report::knobs_text());
            ExitCode::SUCCESS
        }
        Cmd::Docs => {
            out!("{}", thpsim_scenario::docs::language_reference());
            ExitCode::SUCCESS
        }
    }
}
