//! Runs every scenario under `scenarios/` on the model, under every kernel profile, with the
//! invariant checker after every op. Under the scenario's own `kernel` profile every
//! expectation must hold; under the other profiles the expectations that state their
//! applicability with `when` must hold too (so a file that gives both kernels' answers is
//! checked on both).

use std::path::{Path, PathBuf};
use thpsim_scenario::engine::{run, ExpectStatus, Variant};
use thpsim_scenario::sim::SimBackend;

fn scenario_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            scenario_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "thps") {
            out.push(p);
        }
    }
}

#[test]
fn every_scenario_passes_its_expectations_in_every_profile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files = vec![];
    scenario_files(&root, &mut files);
    files.sort();
    assert!(files.len() >= 4, "scenarios found: {files:?}");
    let mut failures = vec![];
    let mut checked = 0;
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        if src.contains("# thpsim: model-skip") {
            continue;
        }
        let name = f.strip_prefix(&root).unwrap().display().to_string();
        let scn = match thpsim_scenario::parse(&name, &src) {
            Ok(s) => s,
            Err(d) => {
                failures.push(thpsim_scenario::diag::render_all(&d, &src));
                continue;
            }
        };
        let declared = thpsim_scenario::engine::plan(&scn, &Variant::default())
            .unwrap()
            .setup
            .profile;
        for p in thpsim_kernel::profile::profiles() {
            let mut be = SimBackend::checked();
            let res = match run(
                &scn,
                &mut be,
                &Variant {
                    profile: Some(p.name.into()),
                    sets: vec![],
                },
            ) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{name} [{}]: {e}", p.name));
                    continue;
                }
            };
            for e in &res.expects {
                let applies = p.name == declared || e.text.contains(" when ");
                if e.status == ExpectStatus::Fail && applies {
                    failures.push(format!(
                        "{name}:{} [{}]: {} (actual {})",
                        e.line, p.name, e.text, e.actual
                    ));
                }
                checked += (e.status == ExpectStatus::Pass) as usize;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 20, "only {checked} expectations checked");
}

/// The cargo-fuzz targets' bodies (`thpsim_scenario::fuzzing`) on the inputs
/// `fuzz/seed-corpus.sh` seeds them with (scenario text, as text and as generator entropy;
/// every 7th file) and on a few degenerate ones.
#[test]
fn fuzz_bodies_accept_the_seed_corpus() {
    use thpsim_scenario::fuzzing::{engine_input, parse_input};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files = vec![];
    scenario_files(&root, &mut files);
    files.sort();
    assert!(files.len() > 100, "{} scenarios", files.len());
    for f in files.iter().step_by(7) {
        let bytes = std::fs::read(f).unwrap();
        parse_input(&bytes);
        engine_input(&bytes);
    }
    for d in [
        &b""[..],
        b"\0",
        &[0xff; 64],
        b"repeat 3 {\n",
        b"process a\nas a\n",
    ] {
        parse_input(d);
        engine_input(d);
    }
}
