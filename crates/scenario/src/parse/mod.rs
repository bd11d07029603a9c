//! Scenario parser and static checker.
//!
//! The language is line-oriented: one statement per line, `#` starts a comment, tokens are
//! separated by whitespace (except inside parentheses, so `pages(buf+2M 2M).thp_pmd` is one
//! token). The first token names the op; the op's entry in [`crate::table::OPS`] parses the
//! rest of the line. Every error of the file is collected (parsing resumes at the next line)
//! and reported with file:line:col. Nothing here panics on any input.
//!
//! The parser is split by concern: [`lexer`] (tokens with their positions, the per-line
//! context), [`values`] (sizes, counts, names, ranges), [`ops`] (the grammar of each op, as
//! driven by the option specs in [`crate::table`]) and [`expect`] (the expectation language).

mod diskfile;
mod expect;
mod lexer;
mod ops;
mod options;
mod values;

use std::collections::BTreeMap;

use thpsim_kernel::types::PAGE_SIZE;

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::table::{setup_ops, Placement, OPS};

pub(crate) use diskfile::{op_fsync, op_msync};
pub(crate) use expect::op_expect;
pub use expect::UFFD_STATS;
use lexer::lex;
pub use lexer::{LineCtx, Tok};
pub(crate) use ops::*;
pub use values::parse_uint;
use values::suggest;
pub use values::{fmt_size, parse_duration, parse_size, DurationError, SizeError};

/// Largest `memory`: the model's limit (8 TiB).
pub const MAX_MEMORY: u64 = thpsim_kernel::MAX_MEMORY;
/// Granule of `memory`: 4 MiB, the largest buddy block (`MAX_PAGE_ORDER` 10).
pub const MEMORY_GRANULE: u64 = 4 << 20;
/// Largest mapping size, alignment or placement offset: 64 TiB (half the 47-bit user space).
pub const MAX_MAPPING: u64 = 64 << 40;
/// Default stride of access ops.
pub const DEFAULT_STRIDE: u64 = PAGE_SIZE;
/// Deepest `repeat` nesting accepted.
pub const MAX_NESTING: usize = 64;
/// Errors reported per file; past this many, the rest are only counted.
pub const MAX_ERRORS: usize = 100;

/// Parses and statically checks a scenario; returns every error found.
pub fn parse(file: &str, source: &str) -> Result<Scenario, Vec<Diagnostic>> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut st = State {
        file: file.to_string(),
        diags: Vec::new(),
        mappings: BTreeMap::new(),
        labels: BTreeMap::new(),
        procs: BTreeMap::from([("main".to_string(), 0)]),
        objects: BTreeMap::new(),
        tmpfs: BTreeMap::new(),
        kernel_line: None,
        memory_line: None,
        swap_line: None,
        memcg_line: None,
        body_started: false,
        more_errors: 0,
    };
    let mut top: Vec<Stmt> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();

    for (idx, raw) in source.lines().enumerate() {
        let line = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let code = match raw.find('#') {
            Some(i) => raw.get(..i).unwrap_or(""),
            None => raw,
        };
        let toks = lex(code, line, 1);
        let Some((&kw, args)) = toks.split_first() else {
            continue;
        };
        let Some(spec) = OPS.iter().find(|s| s.name == kw.text) else {
            let hint = suggest(kw.text, OPS.iter().map(|s| s.name))
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "statements start with one of: {}",
                        OPS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                    )
                });
            st.err(kw.span(), format!("unknown op `{}`", kw.text), Some(hint));
            continue;
        };
        match spec.placement {
            Placement::Setup => {
                let misplaced = if !frames.is_empty() {
                    Some(("cannot be inside `repeat`", ", at top level".to_string()))
                } else if st.body_started {
                    let anywhere: Vec<String> = OPS
                        .iter()
                        .filter(|s| s.placement == Placement::Anywhere)
                        .map(|s| format!("`{}`", s.name))
                        .collect();
                    Some((
                        "must come before the first operation",
                        format!("; {} may appear anywhere", anywhere.join(", ")),
                    ))
                } else {
                    None
                };
                if let Some((what, rest)) = misplaced {
                    st.err(
                        kw.span(),
                        format!("`{}` {what}", kw.text),
                        Some(format!(
                            "setup statements ({}) come first{rest}",
                            setup_ops().join(", ")
                        )),
                    );
                    continue;
                }
            }
            Placement::Anywhere => {}
            Placement::Body => st.body_started = true,
        }
        let mut ctx = LineCtx {
            st: &mut st,
            kw,
            args: args.to_vec(),
            pos: 0,
            text: code.trim(),
            spec,
            sub: None,
        };
        let parsed = (spec.parse)(&mut ctx);
        if parsed.is_some() {
            if let Some(extra) = ctx.args.get(ctx.pos).copied() {
                ctx.st.err(
                    extra.span(),
                    format!("unexpected `{}` after `{}` statement", extra.text, kw.text),
                    Some(ctx.usage()),
                );
            }
        }
        match parsed {
            None => {}
            Some(Parsed::Op(op)) => {
                let stmt = Stmt {
                    span: kw.span(),
                    op,
                };
                match frames.last_mut() {
                    Some(f) => f.body.push(stmt),
                    None => top.push(stmt),
                }
            }
            Some(Parsed::Repeat(count)) => {
                // Past the limit the block is still tracked (so its `end` matches) but its
                // statements are dropped: nothing nests deeper than MAX_NESTING.
                let discard = frames.len() >= MAX_NESTING;
                if frames.len() == MAX_NESTING {
                    st.err(
                        kw.span(),
                        format!("`repeat` nested deeper than {MAX_NESTING} levels"),
                        Some(
                            "flatten the blocks: `repeat A` around `repeat B` is `repeat A*B`"
                                .into(),
                        ),
                    );
                }
                frames.push(Frame {
                    span: kw.span(),
                    count,
                    body: Vec::new(),
                    discard,
                });
            }
            Some(Parsed::End) => match frames.pop() {
                Some(f) if f.discard => {}
                Some(f) => {
                    let stmt = Stmt {
                        span: f.span,
                        op: Op::Repeat {
                            count: f.count,
                            body: f.body,
                        },
                    };
                    match frames.last_mut() {
                        Some(p) => p.body.push(stmt),
                        None => top.push(stmt),
                    }
                }
                None => st.err(
                    kw.span(),
                    "`end` without a matching `repeat`".to_string(),
                    Some("remove it, or open the block with `repeat N`".into()),
                ),
            },
        }
    }
    for f in frames.iter().filter(|f| !f.discard) {
        st.err(
            f.span,
            "`repeat` without a matching `end`".to_string(),
            Some("close the block with a line `end`".into()),
        );
    }
    // Drop the (possibly deep) frames iteratively.
    while frames.pop().is_some() {}
    if st.diags.is_empty() {
        Ok(Scenario {
            file: file.to_string(),
            stmts: top,
        })
    } else {
        let mut d = st.diags;
        d.sort_by_key(|d| (d.span.line, d.span.col));
        if st.more_errors > 0 {
            let span = d.last().map(|l| l.span).unwrap_or_default();
            d.push(Diagnostic {
                file: file.to_string(),
                span: Span {
                    line: span.line,
                    col: span.col,
                    len: 0,
                },
                message: format!(
                    "{} more error(s) not shown (only the first {MAX_ERRORS} are reported)",
                    st.more_errors
                ),
                hint: None,
            });
        }
        Err(d)
    }
}

pub(super) struct Frame {
    pub(super) span: Span,
    pub(super) count: u32,
    pub(super) body: Vec<Stmt>,
    /// Nested past `MAX_NESTING`: its statements are dropped.
    pub(super) discard: bool,
}

/// The size recorded for a mapping whose `mmap` line had a bad size.
pub(super) const UNKNOWN_SIZE: u64 = u64::MAX;

pub(super) struct MapInfo {
    pub(super) size: u64,
    pub(super) line: u32,
}

#[doc(hidden)]
pub struct State {
    pub(super) file: String,
    pub(super) diags: Vec<Diagnostic>,
    pub(super) mappings: BTreeMap<String, MapInfo>,
    pub(super) labels: BTreeMap<String, u32>,
    /// Process names (`main` plus every `fork`), with the line that created them.
    pub(super) procs: BTreeMap<String, u32>,
    /// Shmem objects (`memfd NAME`), with the line that created them.
    pub(super) objects: BTreeMap<String, u32>,
    /// tmpfs instances (`tmpfs NAME`), with the line that created them.
    pub(super) tmpfs: BTreeMap<String, u32>,
    pub(super) kernel_line: Option<u32>,
    pub(super) memory_line: Option<u32>,
    pub(super) swap_line: Option<u32>,
    pub(super) memcg_line: Option<u32>,
    pub(super) body_started: bool,
    /// Errors past `MAX_ERRORS`, counted only.
    pub(super) more_errors: u64,
}

impl State {
    /// Whether further errors are only counted (so hints need not be computed).
    pub(super) fn full(&self) -> bool {
        self.diags.len() >= MAX_ERRORS
    }
    pub(super) fn err(&mut self, span: Span, message: String, hint: Option<String>) {
        if self.full() {
            self.more_errors += 1;
            return;
        }
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            span,
            message,
            hint,
        });
    }
}

/// What a line produced.
#[doc(hidden)]
#[allow(clippy::large_enum_variant)] // one per parsed line, moved once
pub enum Parsed {
    Op(Op),
    /// Opens a `repeat` block with this count.
    Repeat(u32),
    /// Closes the innermost block.
    End,
}
