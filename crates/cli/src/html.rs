//! Self-contained HTML reports (`--html FILE`).

use thpsim_scenario::engine::RunResult;

use crate::sweep::{JsonHeader, VariantOut};

pub fn sweep_page(_h: &JsonHeader, _vs: &[VariantOut]) -> String {
    String::new()
}

pub fn runs_page(_rs: &[RunResult]) -> String {
    String::new()
}
