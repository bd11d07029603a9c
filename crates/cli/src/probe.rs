//! `thpsim probe`: which behaviour this host's kernel shows. Each behaviour switch has a
//! micro-scenario in `scenarios/probe/` whose observables differ between the switch's values;
//! the probe runs it once on the host and on the model under every value, and the value(s)
//! whose model run agrees with the host on every observable (as `check` compares them) are
//! what this kernel does. The host build's `anon_beside_full` knob is probed the same way
//! against the model's semantics. It also lists the host's knobs and stats the model does not
//! know, and the knobs whose boot values differ from the model's defaults.
//!
//! The probe writes THP sysfs knobs (as `check --allow-sysfs` does) and restores them.

use std::fmt::Write as _;
use std::process::ExitCode;

use thpsim_kernel::profile::{self, SWITCHES};
use thpsim_kernel::sysfs::{knobs, Sysfs};
use thpsim_scenario::engine::{self, RunResult, Variant};
use thpsim_scenario::sim::SimBackend;

/// (what is probed, file name, scenario text). A switch's name is its `--set` key.
const PROBES: &[(&str, &str, &str)] = &[
    (
        "hzp_wp_fault",
        "scenarios/probe/hzp_wp_fault.thps",
        include_str!("../../../scenarios/probe/hzp_wp_fault.thps"),
    ),
    (
        "hzp_wp_deferred_split",
        "scenarios/probe/hzp_wp_deferred_split.thps",
        include_str!("../../../scenarios/probe/hzp_wp_deferred_split.thps"),
    ),
    (
        "large_folio_cow_reuse",
        "scenarios/probe/large_folio_cow_reuse.thps",
        include_str!("../../../scenarios/probe/large_folio_cow_reuse.thps"),
    ),
    (
        "prctl_thp_except_advised",
        "scenarios/probe/prctl_thp_except_advised.thps",
        include_str!("../../../scenarios/probe/prctl_thp_except_advised.thps"),
    ),
    (
        "mremap_multi_vma",
        "scenarios/probe/mremap_multi_vma.thps",
        include_str!("../../../scenarios/probe/mremap_multi_vma.thps"),
    ),
    (
        "collapse",
        "scenarios/probe/collapse.thps",
        include_str!("../../../scenarios/probe/collapse.thps"),
    ),
    (
        "anon_beside_full",
        "scenarios/probe/anon_beside_full.thps",
        include_str!("../../../scenarios/probe/anon_beside_full.thps"),
    ),
];

#[derive(Debug, serde::Serialize)]
struct Finding {
    name: String,
    kind: &'static str,
    /// The values under which the model agrees with the host on every observable.
    agreeing: Vec<String>,
    /// Differences per candidate value, in the switch's value order.
    differences: Vec<(String, usize)>,
    observables: usize,
    profile_value: Option<String>,
    error: Option<String>,
}

impl Finding {
    fn verdict(&self) -> String {
        if let Some(e) = &self.error {
            return format!("not probed: {e}");
        }
        match self.agreeing.as_slice() {
            [] => "no model value agrees (a model bug: run `thpsim check` on the probe)".into(),
            [one] => one.clone(),
            _ => format!("any of {} (no difference here)", self.agreeing.join("|")),
        }
    }
}

/// `switch` for a behaviour switch, `knob` for a sysfs knob probed against the model.
fn kind_of(name: &str) -> &'static str {
    if SWITCHES.iter().any(|s| s.0 == name) {
        "switch"
    } else {
        "knob"
    }
}

fn run_model(scn: &thpsim_scenario::Scenario, variant: &Variant) -> Result<RunResult, String> {
    engine::run(scn, &mut SimBackend::new(), variant).map_err(|e| e.message())
}

fn probe_one(name: &str, file: &str, text: &str, host_profile: &str) -> Result<Finding, String> {
    let scn = thpsim_scenario::parse(file, text).map_err(|_| format!("{file} does not parse"))?;
    let base = Variant {
        profile: Some(host_profile.to_string()),
        sets: vec![],
    };
    let plan = engine::plan(&scn, &base).map_err(|e| e.to_string())?;
    let switch = SWITCHES.iter().find(|s| s.0 == name);
    let candidates: Vec<String> = match switch {
        Some((_, values, _)) => values.split('|').map(str::to_string).collect(),
        None => vec![String::new()],
    };
    let mut hb = thpsim_host::HostBackend::new(thpsim_host::HostOptions {
        allow_sysfs: true,
        no_wait: false,
        allow_swap: false,
        allow_memcg: false,
    });
    let host = engine::run(&scn, &mut hb, &base).map_err(|e| e.message())?;
    let mut f = Finding {
        name: name.to_string(),
        kind: kind_of(name),
        agreeing: vec![],
        differences: vec![],
        observables: 0,
        profile_value: profile::profile(host_profile).and_then(|p| p.switches.get(name)),
        error: None,
    };
    for value in candidates {
        let variant = Variant {
            profile: Some(host_profile.to_string()),
            sets: if value.is_empty() {
                vec![]
            } else {
                vec![(name.to_string(), value.clone())]
            },
        };
        let model = run_model(&scn, &variant)?;
        let mut diffs = vec![];
        f.observables = crate::check::compare(
            &model,
            &host,
            &plan,
            &crate::check::HostBefore::default(),
            true,
            &mut diffs,
        );
        let label = if value.is_empty() {
            "model semantics".to_string()
        } else {
            value
        };
        if diffs.is_empty() {
            f.agreeing.push(label.clone());
        }
        f.differences.push((label, diffs.len()));
    }
    Ok(f)
}

pub fn main(json: bool) -> ExitCode {
    if let Err(e) = thpsim_host::preflight() {
        eprintln!("thpsim probe: cannot run on this host: {e}");
        return ExitCode::from(crate::EXIT_CANNOT_RUN);
    }
    crate::check::remember_host_knobs();
    let release = thpsim_host::sys::uname_release();
    let mut host_profile = thpsim_host::host_kernel_profile();
    let mut notes = vec![];
    if profile::profile(&host_profile).is_none() {
        notes.push(format!(
            "no model profile for kernel {host_profile}; probing against {}",
            profile::DEFAULT_PROFILE
        ));
        host_profile = profile::DEFAULT_PROFILE.to_string();
    }
    let mut findings = vec![];
    for (name, file, text) in PROBES {
        let f = probe_one(name, file, text, &host_profile).unwrap_or_else(|e| Finding {
            name: name.to_string(),
            kind: kind_of(name),
            agreeing: vec![],
            differences: vec![],
            observables: 0,
            profile_value: None,
            error: Some(e),
        });
        findings.push(f);
    }
    // Knob values as the host has them now (this is its boot state unless someone changed
    // them), where they differ from the model's defaults.
    let defaults = Sysfs::default();
    let mut boot = vec![];
    for k in knobs() {
        match thpsim_host::sysfs::read_knob(&k.path) {
            Ok(v) if defaults.get(&k.name).as_deref() != Some(v.as_str()) => {
                boot.push((k.name.clone(), v, defaults.get(&k.name).unwrap_or_default()))
            }
            Ok(_) => {}
            Err(_) => boot.push((k.name.clone(), "(absent)".into(), "-".into())),
        }
    }
    let inv = thpsim_host::inventory::take();
    let failed = findings
        .iter()
        .any(|f| f.error.is_none() && f.agreeing.is_empty());
    let sets: Vec<String> = findings
        .iter()
        .filter(|f| f.kind == "switch" && f.agreeing.len() == 1)
        .map(|f| format!("--set {}={}", f.name, f.agreeing[0]))
        .collect();
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            schema: u32,
            release: &'a str,
            profile: &'a str,
            notes: &'a [String],
            findings: &'a [Finding],
            set_line: String,
            knobs_differing_from_model_defaults: &'a [(String, String, String)],
            inventory: &'a thpsim_host::inventory::Inventory,
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&Out {
                schema: engine::SCHEMA_VERSION,
                release: &release,
                profile: &host_profile,
                notes: &notes,
                findings: &findings,
                set_line: sets.join(" "),
                knobs_differing_from_model_defaults: &boot,
                inventory: &inv,
            })
            .expect("json")
        );
    } else {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "probe: host kernel {release} (model profile {host_profile})"
        );
        for n in &notes {
            let _ = writeln!(o, "note: {n}");
        }
        let _ = writeln!(
            o,
            "\n{:<26} {:<8} {:<28} {:<10} evidence (differences per value)",
            "behaviour", "kind", "this host", "profile"
        );
        for f in &findings {
            let ev: Vec<String> = f
                .differences
                .iter()
                .map(|(v, n)| format!("{v}: {n}"))
                .collect();
            let _ = writeln!(
                o,
                "{:<26} {:<8} {:<34} {:<8} {} of {} observables",
                f.name,
                f.kind,
                f.verdict(),
                f.profile_value.as_deref().unwrap_or("-"),
                ev.join(", "),
                f.observables
            );
        }
        let _ = writeln!(
            o,
            "\nas switches: thpsim run FILE --kernel {host_profile} {}",
            sets.join(" ")
        );
        if !boot.is_empty() {
            let _ = writeln!(
                o,
                "\nknobs whose current value differs from the model's default:"
            );
            for (k, v, d) in &boot {
                let _ = writeln!(o, "    {k} = {v} (model default {d})");
            }
        }
        o.push_str(&crate::check::inventory_text(&inv));
        out!("{o}");
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
