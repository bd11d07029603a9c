//! Progress bars for long commands (`sweep`, `check` over many files): drawn on a terminal
//! only, never when stderr is redirected or with `--quiet`, so logs and pipes stay clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps on stderr, hidden unless stderr is a terminal and not `quiet`.
pub fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() || len < 2 {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} {{elapsed}} (eta {{eta}}) {{wide_msg}}"
        ))
        .expect("progress template")
        .progress_chars("=> "),
    );
    b
}

/// Ops a scenario runs (a `repeat` body counted its number of times), for a run's bar.
pub fn op_count(stmts: &[thpsim_scenario::ast::Stmt]) -> u64 {
    use thpsim_scenario::ast::Op;
    stmts
        .iter()
        .map(|st| match &st.op {
            Op::Repeat { count, body } => (*count as u64).saturating_mul(op_count(body)),
            Op::Sysfs { settings } => settings.len() as u64,
            _ => 1,
        })
        .fold(0u64, u64::saturating_add)
}

/// A backend that advances a progress bar by one per op it forwards (`run` on a terminal).
pub struct Counting<B: Backend> {
    pub inner: B,
    pub bar: ProgressBar,
}

use thpsim_scenario::backend::{Backend, BackendError, BackendOp, OpOutcome, Setup, Snapshot};

impl<B: Backend> Backend for Counting<B> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn check_plan(&mut self, plan: &thpsim_scenario::engine::Plan) -> Result<(), BackendError> {
        self.inner.check_plan(plan)
    }
    fn setup(&mut self, setup: &Setup) -> Result<(), BackendError> {
        self.inner.setup(setup)
    }
    fn exec(&mut self, op: &BackendOp) -> Result<OpOutcome, BackendError> {
        let r = self.inner.exec(op);
        self.bar.inc(1);
        r
    }
    fn snapshot(&mut self, ranges: &[(u64, u64)]) -> Result<Snapshot, BackendError> {
        self.inner.snapshot(ranges)
    }
    fn finish(&mut self) -> Result<(), BackendError> {
        self.bar.finish_and_clear();
        self.inner.finish()
    }
}
