//! Python bindings (pyo3, abi3): `run` and `compare` of scenario text on the model, returning
//! the JSON the `thpsim` CLI prints (`--json`), which the `thpsim` Python package turns into
//! dicts and DataFrames (its `sweep` is a grid of `compare` variants), and `import_pid`, the
//! scenario `thpsim import --pid` writes (docs/python.md).

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use thpsim_scenario::engine::{self, Variant};
use thpsim_scenario::sim::SimBackend;

fn parse(name: &str, src: &str) -> PyResult<thpsim_scenario::Scenario> {
    thpsim_scenario::parse(name, src)
        .map_err(|d| PyValueError::new_err(thpsim_scenario::diag::render_all(&d, src)))
}

fn variant(kernel: Option<String>, sets: Vec<(String, String)>) -> PyResult<Variant> {
    let items: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let sets = thpsim_scenario::settings::parse_items(&items)
        .map_err(|e| PyValueError::new_err(e.to_string()))?
        .into_iter()
        .map(|s| (s.key, s.value))
        .collect();
    Ok(Variant {
        profile: kernel,
        sets,
    })
}

fn run_one(scn: &thpsim_scenario::Scenario, v: &Variant) -> PyResult<String> {
    let res = engine::run(scn, &mut SimBackend::new(), v)
        .map_err(|e| PyRuntimeError::new_err(e.message()))?;
    serde_json::to_string(&res).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// Runs scenario text on the model; the run as JSON (the CLI's `run --json`).
#[pyfunction]
#[pyo3(signature = (source, name="<python>", kernel=None, sets=vec![]))]
fn run_json(
    source: &str,
    name: &str,
    kernel: Option<String>,
    sets: Vec<(String, String)>,
) -> PyResult<String> {
    let scn = parse(name, source)?;
    run_one(&scn, &variant(kernel, sets)?)
}

/// A variant from Python: an optional kernel profile and `(key, value)` settings.
type PyVariant = (Option<String>, Vec<(String, String)>);

/// Runs scenario text under each variant `(kernel, [(key, value)…])`; a JSON list of runs.
#[pyfunction]
#[pyo3(signature = (source, variants, name="<python>"))]
fn compare_json(source: &str, variants: Vec<PyVariant>, name: &str) -> PyResult<String> {
    let scn = parse(name, source)?;
    let mut out = Vec::new();
    for (k, s) in variants {
        out.push(run_one(&scn, &variant(k, s)?)?);
    }
    Ok(format!("[{}]", out.join(",")))
}

/// A live process's anonymous private memory as scenario text (`thpsim import --pid`;
/// Linux, root). A process that cannot be read raises `OSError`.
#[pyfunction]
fn import_pid(pid: i32) -> PyResult<String> {
    #[cfg(target_os = "linux")]
    {
        thpsim_host::import::import_pid(pid).map_err(pyo3::exceptions::PyOSError::new_err)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Err(pyo3::exceptions::PyOSError::new_err(
            "import needs Linux (/proc/PID/pagemap)",
        ))
    }
}

#[pymodule]
fn _thpsim(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_json, m)?)?;
    m.add_function(wrap_pyfunction!(compare_json, m)?)?;
    m.add_function(wrap_pyfunction!(import_pid, m)?)?;
    Ok(())
}
