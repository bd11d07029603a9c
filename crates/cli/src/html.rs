//! Self-contained HTML reports (`--html FILE`).

use crate::sweep::{JsonHeader, VariantOut};

pub fn sweep_page(_h: &JsonHeader, _vs: &[VariantOut]) -> String {
    String::new()
}
