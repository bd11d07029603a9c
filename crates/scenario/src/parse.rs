//! Scenario parser and static checker.
//!
//! The language is line-oriented: one statement per line, `#` starts a comment, tokens are
//! separated by whitespace (except inside parentheses, so `pages(buf+2M 2M).thp_pmd` is one
//! token). The first token names the op; the op's entry in [`crate::table::OPS`] parses the
//! rest of the line. Every error of the file is collected (parsing resumes at the next line)
//! and reported with file:line:col. Nothing here panics on any input.

use std::collections::BTreeMap;

use thpsim_kernel::errno::{Errno, OpError, Signal};
use thpsim_kernel::observe::{Backing, Smaps};
use thpsim_kernel::profile::{self, Switches};
use thpsim_kernel::sysfs::{self, KnobError, Sysfs};
use thpsim_kernel::types::{Advice, Prot, PAGE_SIZE};
use thpsim_kernel::util::closest;
use thpsim_kernel::vmstat::{MthpStat, VmItem, KHUGEPAGED_STATS};

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::table::{Placement, OPS};

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
        kernel_line: None,
        memory_line: None,
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
                if !frames.is_empty() {
                    st.err(
                        kw.span(),
                        format!("`{}` cannot be inside `repeat`", kw.text),
                        Some(
                            "setup statements (kernel, memory, set) come first, at top level"
                                .into(),
                        ),
                    );
                    continue;
                }
                if st.body_started {
                    st.err(
                        kw.span(),
                        format!("`{}` must come before the first operation", kw.text),
                        Some("setup statements (kernel, memory, set) come first; `sysfs` may appear anywhere".into()),
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
        };
        let parsed = (spec.parse)(&mut ctx);
        if parsed.is_some() {
            if let Some(extra) = ctx.args.get(ctx.pos).copied() {
                ctx.st.err(
                    extra.span(),
                    format!("unexpected `{}` after `{}` statement", extra.text, kw.text),
                    Some(format!("usage: {}", spec.synopsis)),
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

struct Frame {
    span: Span,
    count: u32,
    body: Vec<Stmt>,
    /// Nested past `MAX_NESTING`: its statements are dropped.
    discard: bool,
}

/// The size recorded for a mapping whose `mmap` line had a bad size.
const UNKNOWN_SIZE: u64 = u64::MAX;

struct MapInfo {
    size: u64,
    line: u32,
}

#[doc(hidden)]
pub struct State {
    file: String,
    diags: Vec<Diagnostic>,
    mappings: BTreeMap<String, MapInfo>,
    labels: BTreeMap<String, u32>,
    /// Process names (`main` plus every `fork`), with the line that created them.
    procs: BTreeMap<String, u32>,
    kernel_line: Option<u32>,
    memory_line: Option<u32>,
    body_started: bool,
    /// Errors past `MAX_ERRORS`, counted only.
    more_errors: u64,
}

impl State {
    /// Whether further errors are only counted (so hints need not be computed).
    fn full(&self) -> bool {
        self.diags.len() >= MAX_ERRORS
    }
    fn err(&mut self, span: Span, message: String, hint: Option<String>) {
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

/// One whitespace-separated token: a slice of its line and where it starts.
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub struct Tok<'s> {
    text: &'s str,
    line: u32,
    col: u32,
}

impl<'s> Tok<'s> {
    fn chars(&self) -> u32 {
        u32::try_from(self.text.chars().count()).unwrap_or(u32::MAX)
    }
    fn span(&self) -> Span {
        Span {
            line: self.line,
            col: self.col,
            len: self.chars(),
        }
    }
    /// The part `[a, b)` (byte offsets, char boundaries) of this token.
    fn sub(&self, a: usize, b: usize) -> Tok<'s> {
        let prefix = self.text.get(..a).map(|p| p.chars().count()).unwrap_or(0);
        Tok {
            text: self.text.get(a..b).unwrap_or(""),
            line: self.line,
            col: self
                .col
                .saturating_add(u32::try_from(prefix).unwrap_or(u32::MAX)),
        }
    }
    fn from(&self, a: usize) -> Tok<'s> {
        self.sub(a, self.text.len())
    }
    /// Zero-width position just after the token.
    fn after(&self) -> Span {
        Span {
            line: self.line,
            col: self.col.saturating_add(self.chars()),
            len: 1,
        }
    }
    /// `key=value` split (key and value as sub-tokens).
    fn kv(&self) -> Option<(Tok<'s>, Tok<'s>)> {
        let i = self.text.find('=')?;
        Some((self.sub(0, i), self.from(i + 1)))
    }
}

/// A span from the start of `a` to the end of `b` (same line).
fn join(a: Span, b: Span) -> Span {
    let end = b.col.saturating_add(b.len);
    Span {
        line: a.line,
        col: a.col,
        len: end.saturating_sub(a.col),
    }
}

/// Splits `code` into whitespace-separated tokens; whitespace inside parentheses does not split.
fn lex(code: &str, line: u32, first_col: u32) -> Vec<Tok<'_>> {
    let mut toks = Vec::new();
    let mut start: Option<(usize, u32)> = None;
    let mut depth = 0u32;
    let mut col = first_col;
    for (i, c) in code.char_indices() {
        if c.is_whitespace() && depth == 0 {
            if let Some((s, sc)) = start.take() {
                toks.push(Tok {
                    text: code.get(s..i).unwrap_or(""),
                    line,
                    col: sc,
                });
            }
        } else {
            if start.is_none() {
                start = Some((i, col));
            }
            match c {
                '(' => depth = depth.saturating_add(1),
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        col = col.saturating_add(1);
    }
    if let Some((s, sc)) = start {
        toks.push(Tok {
            text: code.get(s..).unwrap_or("").trim_end(),
            line,
            col: sc,
        });
    }
    toks
}

/// The state an op's parse function works with: the current line's tokens and the file's
/// symbol tables.
#[doc(hidden)]
pub struct LineCtx<'s, 'a> {
    st: &'a mut State,
    kw: Tok<'s>,
    args: Vec<Tok<'s>>,
    pos: usize,
    /// The statement without its comment, trimmed.
    text: &'s str,
}

impl<'s> LineCtx<'s, '_> {
    fn err(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        self.st.err(span, message.into(), hint);
    }
    fn peek(&self) -> Option<Tok<'s>> {
        self.args.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<Tok<'s>> {
        let t = self.peek()?;
        self.pos += 1;
        Some(t)
    }
    /// Where a missing argument would go.
    fn end_span(&self) -> Span {
        self.args.last().copied().unwrap_or(self.kw).after()
    }
    /// The next token, or an error naming what was expected.
    fn need(&mut self, what: &str) -> Option<Tok<'s>> {
        match self.next() {
            Some(t) => Some(t),
            None => {
                let span = self.end_span();
                let usage = OPS
                    .iter()
                    .find(|s| s.name == self.kw.text)
                    .map(|s| format!("usage: {}", s.synopsis));
                self.err(span, format!("missing {what}"), usage);
                None
            }
        }
    }
    fn rest(&mut self) -> Vec<Tok<'s>> {
        let r = self
            .args
            .get(self.pos..)
            .map(|r| r.to_vec())
            .unwrap_or_default();
        self.pos = self.args.len();
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Values

#[derive(Debug, PartialEq, Eq)]
enum SizeError {
    NotANumber,
    BadUnit(String),
    Overflow,
}

const SIZE_HINT: &str =
    "a size is bytes, or a number with K, M, G or T (also KiB, MiB, GiB, TiB; kB = KiB), e.g. `4096`, `2M`, `0x1000`";

/// Parses a size as the language writes it: decimal or `0x` hex, optional binary unit suffix
/// (`K`, `M`, `G`, `T`, `KiB`…`TiB`, `kB` = 1024). The error is a message for the user.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size_inner(s).map_err(|e| match e {
        SizeError::NotANumber => format!("`{s}` is not a size; {SIZE_HINT}"),
        SizeError::BadUnit(u) => format!("unknown unit `{u}` in `{s}`; {SIZE_HINT}"),
        SizeError::Overflow => format!("size `{s}` overflows 64 bits"),
    })
}

fn parse_size_inner(s: &str) -> Result<u64, SizeError> {
    let (digits, rest, radix) =
        if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            let n = h.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(h.len());
            (h.get(..n).unwrap_or(""), h.get(n..).unwrap_or(""), 16)
        } else {
            let n = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            (s.get(..n).unwrap_or(""), s.get(n..).unwrap_or(""), 10)
        };
    if digits.is_empty() {
        return Err(SizeError::NotANumber);
    }
    let mult: u64 = match rest {
        "" => 1,
        "K" | "KiB" | "kB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        u => return Err(SizeError::BadUnit(u.to_string())),
    };
    let v = u64::from_str_radix(digits, radix).map_err(|_| SizeError::Overflow)?;
    v.checked_mul(mult).ok_or(SizeError::Overflow)
}

/// Formats a byte count with the largest unit that divides it exactly (`2M`, `4K`, `4097`).
pub fn fmt_size(b: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if b != 0 && b % (1u64 << shift) == 0 {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// The closest candidate (typo distance), else the only candidate that extends `word`.
fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    if word.len() > 64 {
        return None;
    }
    closest(word, candidates.clone()).or_else(|| {
        let mut it = candidates
            .into_iter()
            .filter(|c| !word.is_empty() && c.starts_with(word));
        match (it.next(), it.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    })
}

fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_uint(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        return u64::from_str_radix(h, 16).ok();
    }
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl<'s> LineCtx<'s, '_> {
    /// A size token (`what` names it in messages).
    fn size(&mut self, t: Tok<'s>, what: &str) -> Option<u64> {
        match parse_size_inner(t.text) {
            Ok(v) => Some(v),
            Err(SizeError::NotANumber) => {
                let msg = if t.text.is_empty() {
                    format!("missing {what}")
                } else {
                    format!("bad {what} `{}`: not a size", t.text)
                };
                self.err(t.span(), msg, Some(SIZE_HINT.into()));
                None
            }
            Err(SizeError::BadUnit(u)) => {
                let hint = match u.as_str() {
                    "k" | "m" | "g" | "t" => {
                        format!("units are upper case: write `{}`", u.to_ascii_uppercase())
                    }
                    "KB" | "Kb" | "kb" => "write `K` or `kB` (both mean 1024 bytes)".to_string(),
                    _ => SIZE_HINT.to_string(),
                };
                self.err(
                    t.span(),
                    format!("bad {what} `{}`: unknown unit `{u}`", t.text),
                    Some(hint),
                );
                None
            }
            Err(SizeError::Overflow) => {
                self.err(
                    t.span(),
                    format!("{what} `{}` overflows 64 bits", t.text),
                    Some("sizes must be below 16 EiB (2^64 bytes)".into()),
                );
                None
            }
        }
    }

    /// An unsigned count or seed (decimal or `0x` hex).
    fn uint(&mut self, t: Tok<'s>, what: &str) -> Option<u64> {
        match parse_uint(t.text) {
            Some(v) => Some(v),
            None => {
                let msg = if !t.text.is_empty() && t.text.chars().all(|c| c.is_ascii_digit()) {
                    format!("{what} `{}` overflows 64 bits", t.text)
                } else if t.text.is_empty() {
                    format!("missing {what}")
                } else {
                    format!("bad {what} `{}`: expected a non-negative integer", t.text)
                };
                self.err(t.span(), msg, None);
                None
            }
        }
    }

    /// A mapping name that must already exist; returns its size.
    fn mapping(&mut self, t: Tok<'s>) -> Option<u64> {
        if !is_ident(t.text) {
            let msg = if t.text.is_empty() {
                "missing mapping name".to_string()
            } else {
                format!("bad mapping name `{}`", t.text)
            };
            self.err(
                t.span(),
                msg,
                Some("mapping names are identifiers: [A-Za-z_][A-Za-z0-9_]*".into()),
            );
            return None;
        }
        if let Some(m) = self.st.mappings.get(t.text) {
            return Some(m.size);
        }
        if self.st.full() {
            self.st.more_errors += 1;
            return None;
        }
        let hint = match suggest(t.text, self.st.mappings.keys().map(|k| k.as_str())) {
            Some(c) => format!("did you mean `{c}`?"),
            None if self.st.mappings.is_empty() => {
                "map it first, e.g. `mmap buf 2M anon private`".to_string()
            }
            None => {
                let n = self.st.mappings.len();
                let mut names = self
                    .st
                    .mappings
                    .keys()
                    .take(10)
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                if n > 10 {
                    names.push_str(&format!(", … ({n} in all)"));
                }
                format!("mappings defined so far: {names}")
            }
        };
        self.err(
            t.span(),
            format!("unknown mapping `{}`", t.text),
            Some(hint),
        );
        None
    }

    /// Resolves `NAME`, `NAME+OFF` or `NAME+OFF` + `LEN` tokens into a checked range.
    fn resolve_range(&mut self, t: Tok<'s>, len_tok: Option<Tok<'s>>) -> Option<RangeRef> {
        let span = match len_tok {
            Some(l) => join(t.span(), l.span()),
            None => t.span(),
        };
        let (name, off_tok) = match t.text.find('+') {
            Some(i) => (t.sub(0, i), Some(t.from(i + 1))),
            None => (t, None),
        };
        let size = self.mapping(name);
        let offset = match off_tok {
            Some(o) if o.text.is_empty() => {
                self.err(
                    t.after(),
                    "missing offset after `+`",
                    Some("write NAME+OFF, e.g. `buf+4K`".into()),
                );
                return None;
            }
            Some(o) => Some(self.size(o, "offset")?),
            None => None,
        };
        let len = match len_tok {
            Some(l) => Some(self.size(l, "length")?),
            None => None,
        };
        let size = size?;
        if let Some(off) = offset {
            let end = off.checked_add(len.unwrap_or(1));
            let ok = end.is_some_and(|e| e <= size);
            if !ok {
                let msg = match (len, end) {
                    (None, _) => format!(
                        "out of range: {} is {}, offset {} is past its end",
                        name.text,
                        fmt_size(size),
                        fmt_size(off)
                    ),
                    (Some(_), Some(e)) => format!(
                        "out of range: {} is {}, range ends at {}",
                        name.text,
                        fmt_size(size),
                        fmt_size(e)
                    ),
                    (Some(_), None) => format!(
                        "out of range: {} is {}, range end overflows 64 bits",
                        name.text,
                        fmt_size(size)
                    ),
                };
                self.err(span, msg, None);
                return None;
            }
        }
        Some(RangeRef {
            mapping: name.text.to_string(),
            offset,
            len,
            span,
        })
    }

    /// Takes a RANGE from the argument list (one or two tokens).
    fn range(&mut self) -> Option<RangeRef> {
        let t = self.need("range (NAME, NAME+OFF or NAME+OFF LEN)")?;
        let next_is_size = self
            .peek()
            .is_some_and(|n| n.text.starts_with(|c: char| c.is_ascii_digit()));
        if t.text.contains('+') {
            let len = if next_is_size { self.next() } else { None };
            self.resolve_range(t, len)
        } else {
            if next_is_size {
                let l = self.next().unwrap_or(t);
                self.err(
                    join(t.span(), l.span()),
                    format!("ambiguous range `{} {}`", t.text, l.text),
                    Some(format!(
                        "a length needs an explicit offset: write `{}+0 {}` (a bare `{}` is the whole mapping)",
                        t.text, l.text, t.text
                    )),
                );
                return None;
            }
            self.resolve_range(t, None)
        }
    }

    fn prot(&mut self, t: Tok<'s>) -> Option<Prot> {
        match Prot::parse(t.text) {
            Some(p) => Some(p),
            None => {
                self.err(
                    t.span(),
                    format!("bad protection `{}`", t.text),
                    Some("protections are `none` or letters from `rwx`, each at most once: r, rw, rx, rwx, …".into()),
                );
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ops (dispatched from `table::OPS`)

pub(crate) fn op_kernel(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = c.need("profile name")?;
    if let Some(first) = c.st.kernel_line {
        c.err(
            c.kw.span(),
            "kernel profile chosen twice",
            Some(format!("the profile was already chosen at line {first}")),
        );
        return None;
    }
    c.st.kernel_line = Some(t.line);
    if profile::profile(t.text).is_none() {
        let names: Vec<&str> = profile::profiles().iter().map(|p| p.name).collect();
        c.err(
            t.span(),
            format!("unknown kernel profile `{}`", t.text),
            Some(format!("known profiles: {}", names.join(", "))),
        );
        return None;
    }
    Some(Parsed::Op(Op::Kernel {
        profile: t.text.to_string(),
    }))
}

pub(crate) fn op_memory(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = c.need("memory size")?;
    if let Some(first) = c.st.memory_line {
        c.err(
            c.kw.span(),
            "memory size given twice",
            Some(format!("it was already given at line {first}")),
        );
        return None;
    }
    c.st.memory_line = Some(t.line);
    let bytes = c.size(t, "memory size")?;
    if bytes < MEMORY_GRANULE || bytes % MEMORY_GRANULE != 0 {
        c.err(
            t.span(),
            format!("memory {} is not a positive multiple of 4M", t.text),
            Some("physical memory is made of 4 MiB buddy blocks (MAX_PAGE_ORDER 10); e.g. `memory 16G`".into()),
        );
        return None;
    }
    if bytes > MAX_MEMORY {
        c.err(
            t.span(),
            format!("memory {} is more than the 8T the model supports", t.text),
            Some("use at most `memory 8T`".into()),
        );
        return None;
    }
    Some(Parsed::Op(Op::Memory { bytes }))
}

/// Splits `key=value` arguments, reporting malformed ones. `what` names the key kind.
fn settings<'s>(c: &mut LineCtx<'s, '_>, what: &str) -> Option<Vec<(Tok<'s>, Tok<'s>)>> {
    let toks = c.rest();
    if toks.is_empty() {
        let span = c.end_span();
        c.err(span, format!("missing {what}=value"), None);
        return None;
    }
    let mut out: Vec<(Tok<'s>, Tok<'s>)> = Vec::new();
    let mut ok = true;
    for t in toks {
        match t.kv() {
            Some((k, v)) if !k.text.is_empty() => {
                if out.iter().any(|(pk, _)| pk.text == k.text) {
                    c.err(
                        k.span(),
                        format!("`{}` is set twice on this line", k.text),
                        None,
                    );
                    ok = false;
                }
                out.push((k, v));
            }
            _ => {
                c.err(
                    t.span(),
                    format!("expected {what}=value, found `{}`", t.text),
                    Some("write key=value with no spaces around `=`".into()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn setting(k: Tok<'_>, v: Tok<'_>) -> Setting {
    Setting {
        key: k.text.to_string(),
        value: v.text.to_string(),
        span: join(k.span(), v.span()),
    }
}

pub(crate) fn op_sysfs(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let kvs = settings(c, "knob")?;
    let mut scratch = Sysfs::default();
    let mut ok = true;
    for (k, v) in &kvs {
        match scratch.set(k.text, v.text) {
            Ok(()) => {}
            Err(KnobError::Unknown { hint }) => {
                c.err(
                    k.span(),
                    format!("unknown sysfs knob `{}`", k.text),
                    Some(hint),
                );
                ok = false;
            }
            Err(KnobError::BadValue { expected }) => {
                let span = if v.text.is_empty() {
                    k.after()
                } else {
                    v.span()
                };
                c.err(
                    span,
                    format!("bad value `{}` for sysfs knob `{}`", v.text, k.text),
                    Some(format!("`{}` accepts {expected}", k.text)),
                );
                ok = false;
            }
        }
    }
    ok.then(|| {
        Parsed::Op(Op::Sysfs {
            settings: kvs.iter().map(|(k, v)| setting(*k, *v)).collect(),
        })
    })
}

fn scratch_switches() -> Option<Switches> {
    profile::profile(profile::DEFAULT_PROFILE)
        .or_else(|| profile::profiles().into_iter().next())
        .map(|p| p.switches)
}

/// Validates one `switch=value`; reports at the key or the value.
fn check_switch(c: &mut LineCtx<'_, '_>, k: Tok<'_>, v: Tok<'_>) -> bool {
    let Some(info) = profile::SWITCHES.iter().find(|s| s.0 == k.text) else {
        let hint = suggest(k.text, profile::SWITCHES.iter().map(|s| s.0))
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| {
                format!(
                    "switches: {}",
                    profile::SWITCHES
                        .iter()
                        .map(|s| s.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        c.err(k.span(), format!("unknown switch `{}`", k.text), Some(hint));
        return false;
    };
    let Some(mut sw) = scratch_switches() else {
        return true;
    };
    match sw.set(k.text, v.text) {
        Ok(()) => true,
        Err(msg) => {
            let span = if v.text.is_empty() {
                k.after()
            } else {
                v.span()
            };
            c.err(span, msg, Some(format!("`{}` accepts {}", k.text, info.1)));
            false
        }
    }
}

pub(crate) fn op_set(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let kvs = settings(c, "switch")?;
    let mut ok = true;
    for (k, v) in &kvs {
        ok &= check_switch(c, *k, *v);
    }
    ok.then(|| {
        Parsed::Op(Op::Set {
            settings: kvs.iter().map(|(k, v)| setting(*k, *v)).collect(),
        })
    })
}

pub(crate) fn op_catch(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let toks = c.rest();
    if toks.is_empty() {
        let span = c.end_span();
        c.err(
            span,
            "missing signal name",
            Some("usage: catch SIGSEGV|SIGBUS …".into()),
        );
        return None;
    }
    let mut signals = Vec::new();
    let mut ok = true;
    for t in toks {
        match Signal::from_name(t.text) {
            Some(Signal::Sigkill) => {
                c.err(
                    t.span(),
                    "SIGKILL cannot be caught",
                    Some("an OOM kill always ends the process".into()),
                );
                ok = false;
            }
            Some(s) if signals.contains(&s) => {
                c.err(t.span(), format!("`{}` given twice", t.text), None);
                ok = false;
            }
            Some(s) => signals.push(s),
            None => {
                let hint = suggest(t.text, ["SIGSEGV", "SIGBUS"])
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "the signals an access raises: SIGSEGV, SIGBUS".into());
                c.err(t.span(), format!("unknown signal `{}`", t.text), Some(hint));
                ok = false;
            }
        }
    }
    ok.then_some(Parsed::Op(Op::Catch { signals }))
}

const UNMODELLED_BACKINGS: &[&str] = &["file", "memfd", "shmem", "guest_memfd"];

pub(crate) fn op_mmap(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let name = c.need("mapping name")?;
    if !is_ident(name.text) {
        c.err(
            name.span(),
            format!("bad mapping name `{}`", name.text),
            Some("mapping names are identifiers: [A-Za-z_][A-Za-z0-9_]*".into()),
        );
        return None;
    }
    if let Some(first) = c.st.mappings.get(name.text) {
        let first = first.line;
        c.err(
            name.span(),
            format!("mapping `{}` is already defined", name.text),
            Some(format!(
                "`{}` was first mapped at line {first}; choose another name",
                name.text
            )),
        );
        return None;
    }
    // Known from here on; if the size is bad, later ranges are not checked against it
    // (so one bad line does not cascade into errors on every use of the name).
    c.st.mappings.insert(
        name.text.to_string(),
        MapInfo {
            size: UNKNOWN_SIZE,
            line: name.line,
        },
    );
    let size_tok = c.need("mapping size")?;
    let size = c.size(size_tok, "mapping size")?;
    if size == 0 || size % PAGE_SIZE != 0 {
        c.err(
            size_tok.span(),
            format!(
                "mapping size {} is not a positive multiple of the 4K page size",
                size_tok.text
            ),
            None,
        );
        return None;
    }
    if size > MAX_MAPPING {
        c.err(
            size_tok.span(),
            format!("mapping size {} is larger than 64T", size_tok.text),
            None,
        );
        return None;
    }
    if let Some(m) = c.st.mappings.get_mut(name.text) {
        m.size = size;
    }

    let backing_tok = c.need("backing (anon)")?;
    match backing_tok.text {
        "anon" => {}
        b if UNMODELLED_BACKINGS.contains(&b) => {
            c.err(
                backing_tok.span(),
                format!("`{b}` mappings are not modelled yet"),
                Some("only `anon` is".into()),
            );
            return None;
        }
        b => {
            let hint = suggest(
                b,
                std::iter::once("anon").chain(UNMODELLED_BACKINGS.iter().copied()),
            )
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| "the backing is `anon`".to_string());
            c.err(
                backing_tok.span(),
                format!("unknown backing `{b}`"),
                Some(hint),
            );
            return None;
        }
    }
    let vis = c.need("`private` or `shared`")?;
    let shared = match vis.text {
        "private" => false,
        "shared" => true,
        v => {
            c.err(
                vis.span(),
                format!("expected `private` or `shared`, found `{v}`"),
                None,
            );
            return None;
        }
    };
    let mut prot: Option<(Prot, Span)> = None;
    let mut align: Option<u64> = None;
    let mut offset: Option<u64> = None;
    let mut populate = false;
    let mut ok = true;
    for t in c.rest() {
        let dup = |c: &mut LineCtx<'_, '_>, what: &str| {
            c.err(t.span(), format!("{what} given twice"), None);
        };
        if t.text == "populate" {
            if populate {
                dup(c, "`populate`");
                ok = false;
            }
            populate = true;
            continue;
        }
        if let Some((k, v)) = t.kv() {
            match k.text {
                "prot" => {
                    if prot.is_some() {
                        dup(c, "protection");
                        ok = false;
                    } else if let Some(p) = c.prot(v) {
                        prot = Some((p, t.span()));
                    } else {
                        ok = false;
                    }
                }
                "align" => {
                    if align.is_some() {
                        dup(c, "`align`");
                        ok = false;
                        continue;
                    }
                    match c.size(v, "alignment") {
                        Some(a) if a >= PAGE_SIZE && a.is_power_of_two() && a <= MAX_MAPPING => {
                            align = Some(a)
                        }
                        Some(_) => {
                            c.err(
                                v.span(),
                                format!(
                                    "alignment {} is not a power of two between 4K and 64T",
                                    v.text
                                ),
                                None,
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                "offset" => {
                    if offset.is_some() {
                        dup(c, "`offset`");
                        ok = false;
                        continue;
                    }
                    match c.size(v, "placement offset") {
                        Some(o) if o % PAGE_SIZE == 0 && o <= MAX_MAPPING => offset = Some(o),
                        Some(_) => {
                            c.err(
                                v.span(),
                                format!("placement offset {} is not a multiple of the 4K page size (at most 64T)", v.text),
                                None,
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                other => {
                    let hint = suggest(other, ["prot", "align", "offset"])
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            "mmap options: prot=P, align=SIZE, offset=SIZE, populate".into()
                        });
                    c.err(
                        k.span(),
                        format!("unknown mmap option `{other}`"),
                        Some(hint),
                    );
                    ok = false;
                }
            }
            continue;
        }
        if let Some(p) = Prot::parse(t.text) {
            if prot.is_some() {
                dup(c, "protection");
                ok = false;
            }
            prot = Some((p, t.span()));
            continue;
        }
        let hint = suggest(t.text, ["populate", "private", "shared"])
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| "after the backing come a protection (rw, r, none, …), align=SIZE, offset=SIZE, populate".into());
        c.err(
            t.span(),
            format!("unexpected `{}` in mmap", t.text),
            Some(hint),
        );
        ok = false;
    }
    if shared {
        c.err(
            vis.span(),
            "shared anonymous (shmem) mappings are not modelled yet",
            Some("use `private`".into()),
        );
        return None;
    }
    if !ok {
        return None;
    }
    Some(Parsed::Op(Op::Mmap(MmapOp {
        name: name.text.to_string(),
        name_span: name.span(),
        size,
        backing: MapBacking::Anon,
        shared,
        prot: prot.map(|p| p.0).unwrap_or(Prot::RW),
        align,
        offset: offset.unwrap_or(0),
        populate,
    })))
}

pub(crate) fn op_munmap(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let range = c.range()?;
    Some(Parsed::Op(Op::Munmap { range }))
}

pub(crate) fn op_mprotect(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let range = c.range()?;
    let t = c.need("protection (none, r, rw, rwx, …)")?;
    let v = match t.kv() {
        Some((k, v)) if k.text == "prot" => v,
        _ => t,
    };
    let prot = c.prot(v)?;
    Some(Parsed::Op(Op::Mprotect { range, prot }))
}

pub(crate) fn op_madvise(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let range = c.range();
    let t = c.need("advice (e.g. HUGEPAGE)")?;
    let Some(advice) = Advice::parse(t.text) else {
        let up = t.text.to_ascii_uppercase();
        let key = up.strip_prefix("MADV_").unwrap_or(&up);
        let hint = suggest(key, Advice::ALL.iter().map(|a| a.0))
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| "see the list of advice values in the language reference".into());
        c.err(
            t.span(),
            format!("unknown madvise advice `{}`", t.text),
            Some(hint),
        );
        return None;
    };
    if !advice.is_modelled() {
        let modelled: Vec<&str> = Advice::ALL
            .iter()
            .filter(|a| a.1.is_modelled())
            .map(|a| a.0)
            .collect();
        c.err(
            t.span(),
            format!("MADV_{} is not modelled yet", advice.name()),
            Some(format!("modelled advice: {}", modelled.join(", "))),
        );
        return None;
    }
    let range = range?;
    Some(Parsed::Op(Op::Madvise { range, advice }))
}

fn access(c: &mut LineCtx<'_, '_>, fixed: Option<Pattern>) -> Option<Parsed> {
    let range = c.range();
    let mut pattern = fixed;
    let mut pattern_seen = false;
    let mut stride: Option<u64> = None;
    let mut random: Option<(SubsetCount, Tok<'_>)> = None;
    let mut seed: Option<(u64, Tok<'_>)> = None;
    let mut ok = true;
    let keys: &[&str] = if fixed.is_some() {
        &["stride", "random", "seed"]
    } else {
        &["pattern", "stride", "random", "seed"]
    };
    for t in c.rest() {
        let Some((k, v)) = t.kv() else {
            let hint = if t.text.starts_with(|ch: char| ch.is_ascii_digit()) {
                "a length needs an explicit offset: write NAME+0 LEN".to_string()
            } else {
                format!(
                    "options: {}",
                    keys.iter()
                        .map(|k| format!("{k}=…"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            c.err(t.span(), format!("unexpected `{}`", t.text), Some(hint));
            ok = false;
            continue;
        };
        let seen = match k.text {
            "pattern" if fixed.is_none() => {
                let seen = pattern_seen;
                pattern_seen = true;
                pattern = match v.text {
                    "r" => Some(Pattern::Read),
                    "w" => Some(Pattern::Write),
                    "rw" => Some(Pattern::ReadWrite),
                    _ => {
                        c.err(
                            v.span(),
                            format!("bad pattern `{}`", v.text),
                            Some("patterns: r, w, rw (read then write)".into()),
                        );
                        ok = false;
                        None
                    }
                };
                seen
            }
            "stride" => {
                let seen = stride.is_some();
                match c.size(v, "stride") {
                    Some(0) => {
                        c.err(v.span(), "stride must be greater than 0", None);
                        ok = false;
                        stride = Some(0);
                    }
                    Some(s) => stride = Some(s),
                    None => {
                        ok = false;
                        stride = Some(0);
                    }
                }
                seen
            }
            "random" => {
                let seen = random.is_some();
                let count = if let Some(p) = v.text.strip_suffix('%') {
                    match p.parse::<u32>() {
                        Ok(p) if p <= 100 => Some(SubsetCount::Percent(p)),
                        _ => {
                            c.err(
                                v.span(),
                                format!("bad percentage `{}`", v.text),
                                Some(
                                    "write random=N (pages) or random=P% with P in 0..=100".into(),
                                ),
                            );
                            None
                        }
                    }
                } else {
                    c.uint(v, "random count").map(SubsetCount::Pages)
                };
                match count {
                    Some(n) => random = Some((n, t)),
                    None => {
                        ok = false;
                        random = Some((SubsetCount::Pages(0), t));
                    }
                }
                seen
            }
            "seed" => {
                let seen = seed.is_some();
                match c.uint(v, "seed") {
                    Some(s) => seed = Some((s, t)),
                    None => {
                        ok = false;
                        seed = Some((0, t));
                    }
                }
                seen
            }
            "pattern" => {
                c.err(
                    k.span(),
                    format!("`{}` has a fixed pattern", c.kw.text),
                    Some("use `access RANGE pattern=r|w|rw` to choose the pattern".into()),
                );
                ok = false;
                false
            }
            other => {
                let hint = suggest(other, keys.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("options: {}", keys.join(", ")));
                c.err(k.span(), format!("unknown option `{other}`"), Some(hint));
                ok = false;
                false
            }
        };
        if seen {
            c.err(t.span(), format!("`{}` given twice", k.text), None);
            ok = false;
        }
    }
    if let (Some((_, st)), None) = (seed, random) {
        c.err(
            st.span(),
            "`seed` without `random`",
            Some("the seed chooses the random subset: add random=N or random=P%".into()),
        );
        ok = false;
    }
    let Some(pattern) = pattern else {
        if !pattern_seen {
            let span = c.end_span();
            c.err(
                span,
                "missing pattern=r|w|rw",
                Some(format!("usage: {}", crate::table::synopsis("access"))),
            );
        }
        return None;
    };
    let range = range?;
    if !ok {
        return None;
    }
    Some(Parsed::Op(Op::Access(AccessOp {
        range,
        pattern,
        stride: stride.unwrap_or(DEFAULT_STRIDE),
        subset: random.map(|(count, _)| Subset {
            count,
            seed: seed.map(|s| s.0).unwrap_or(0),
        }),
    })))
}

pub(crate) fn op_read(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    access(c, Some(Pattern::Read))
}
pub(crate) fn op_write(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    access(c, Some(Pattern::Write))
}
pub(crate) fn op_access(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    access(c, None)
}

pub(crate) fn op_repeat(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let Some(t) = c.need("repeat count") else {
        // Still open a block so the matching `end` is not reported as stray.
        return Some(Parsed::Repeat(1));
    };
    let n = match t.text.parse::<u32>() {
        Ok(n) if n >= 1 => n,
        _ => {
            c.err(
                t.span(),
                format!("bad repeat count `{}`", t.text),
                Some("the count is an integer from 1 to 4294967295".into()),
            );
            1
        }
    };
    if let Some(b) = c.peek().filter(|b| b.text == "{") {
        c.next();
        c.err(
            b.span(),
            "blocks are closed with `end`, not braces",
            Some(format!(
                "write `repeat {}` on its own line and close the block with `end`",
                t.text
            )),
        );
    }
    Some(Parsed::Repeat(n))
}

pub(crate) fn op_end(_c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    Some(Parsed::End)
}

fn proc_name<'s>(c: &mut LineCtx<'s, '_>) -> Option<Tok<'s>> {
    let t = c.need("process name")?;
    let ok = t
        .text
        .chars()
        .next()
        .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && t.text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if !ok {
        c.err(
            t.span(),
            format!("bad process name `{}`", t.text),
            Some("process names are identifiers, e.g. `child`".into()),
        );
        return None;
    }
    if let Some(extra) = c.next() {
        c.err(extra.span(), format!("unexpected `{}`", extra.text), None);
        return None;
    }
    Some(t)
}

fn known_proc<'s>(c: &mut LineCtx<'s, '_>) -> Option<Tok<'s>> {
    let t = proc_name(c)?;
    if !c.st.procs.contains_key(t.text) {
        if c.st.full() {
            c.st.more_errors += 1;
            return None;
        }
        let names: Vec<String> = c.st.procs.keys().cloned().collect();
        let hint = thpsim_kernel::util::closest(t.text, names.iter().map(|s| s.as_str()))
            .map(|b| format!("did you mean `{b}`?"))
            .unwrap_or_else(|| {
                "processes are `main` and those created by `fork NAME` earlier in the file".into()
            });
        c.err(
            t.span(),
            format!("unknown process `{}`", t.text),
            Some(hint),
        );
        return None;
    }
    Some(t)
}

pub(crate) fn op_fork(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = proc_name(c)?;
    if let Some(first) = c.st.procs.get(t.text).copied() {
        let where_ = if first == 0 {
            "`main` is the first process".to_string()
        } else {
            format!("first created at line {first}")
        };
        c.err(
            t.span(),
            format!("process `{}` already exists", t.text),
            Some(format!("{where_}; process names are unique")),
        );
        return None;
    }
    c.st.procs.insert(t.text.to_string(), t.line);
    Some(Parsed::Op(Op::Fork {
        child: t.text.to_string(),
    }))
}

pub(crate) fn op_as(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = known_proc(c)?;
    Some(Parsed::Op(Op::As {
        proc: t.text.to_string(),
    }))
}

pub(crate) fn op_exit(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = known_proc(c)?;
    if t.text == "main" {
        c.err(
            t.span(),
            "`main` cannot exit",
            Some("observations are taken in `main` after other processes exit".into()),
        );
        return None;
    }
    Some(Parsed::Op(Op::Exit {
        proc: t.text.to_string(),
    }))
}

pub(crate) fn op_khugepaged(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = c.need("`scan`")?;
    if t.text != "scan" {
        c.err(
            t.span(),
            format!("unknown khugepaged action `{}`", t.text),
            Some("usage: khugepaged scan [N]".into()),
        );
        return None;
    }
    let mut passes = 1;
    if let Some(n) = c.next() {
        match n.text.parse::<u32>() {
            Ok(v) if v >= 1 => passes = v,
            _ => {
                c.err(
                    n.span(),
                    format!("`{}` is not a pass count", n.text),
                    Some("N is a whole number ≥ 1".into()),
                );
                return None;
            }
        }
    }
    if let Some(extra) = c.next() {
        c.err(
            extra.span(),
            format!("unexpected `{}`", extra.text),
            Some("usage: khugepaged scan [N]".into()),
        );
        return None;
    }
    Some(Parsed::Op(Op::KhugepagedScan { passes }))
}

/// `10s`, `500ms`, `2m`, `1h` → milliseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let split = s.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration"))?;
    let mul = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{s}`: a duration needs a unit: ms, s, m or h")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("`{s}` is too long"))
}

pub(crate) fn op_sleep(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = c.need("duration")?;
    match parse_duration(t.text) {
        Ok(ms) => {
            if let Some(extra) = c.next() {
                c.err(
                    extra.span(),
                    format!("unexpected `{}`", extra.text),
                    Some("usage: sleep DURATION".into()),
                );
                return None;
            }
            Some(Parsed::Op(Op::Sleep { ms }))
        }
        Err(m) => {
            c.err(
                t.span(),
                m,
                Some("e.g. `sleep 10s`, `sleep 500ms`, `sleep 2m`".into()),
            );
            None
        }
    }
}

pub(crate) fn op_shrink(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    if let Some(extra) = c.next() {
        c.err(
            extra.span(),
            format!("unexpected `{}`", extra.text),
            Some("usage: shrink".into()),
        );
        return None;
    }
    Some(Parsed::Op(Op::Shrink))
}

pub(crate) fn op_mremap(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let range = c.range()?;
    let dst = c.range()?;
    if dst.len.is_some() {
        c.err(
            dst.span,
            "the destination is `NAME` or `NAME+OFF`: the size is the source's",
            Some("usage: mremap RANGE DST[+OFF]".into()),
        );
        return None;
    }
    if let Some(extra) = c.next() {
        c.err(
            extra.span(),
            format!("unexpected `{}`", extra.text),
            Some("usage: mremap RANGE DST[+OFF]".into()),
        );
        return None;
    }
    Some(Parsed::Op(Op::Mremap { range, dst }))
}

pub(crate) fn op_mlock(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let range = c.range()?;
    Some(Parsed::Op(Op::Mlock { range, lock: true }))
}

pub(crate) fn op_munlock(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let range = c.range()?;
    Some(Parsed::Op(Op::Mlock { range, lock: false }))
}

pub(crate) fn op_uffd(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    use crate::ast::UffdOp;
    use thpsim_kernel::userfaultfd::{Features, MissingPolicy, WpPolicy};
    const ACTIONS: &[&str] = &[
        "open",
        "register",
        "unregister",
        "wp",
        "unwp",
        "copy",
        "zeropage",
        "handler",
    ];
    let a = c.need("uffd action")?;
    let op = match a.text {
        "open" => {
            let mut features = vec![];
            for t in c.rest() {
                if !Features::default().set(t.text) {
                    c.err(
                        t.span(),
                        format!("unknown userfaultfd feature `{}`", t.text),
                        Some(format!("features: {}", Features::NAMES.join(", "))),
                    );
                    return None;
                }
                features.push(t.text.to_string());
            }
            UffdOp::Open { features }
        }
        "register" => {
            let range = c.range()?;
            let m = c.need("mode (missing, wp or missing+wp)")?;
            let (mut missing, mut wp) = (false, false);
            for part in m.text.split('+') {
                match part {
                    "missing" => missing = true,
                    "wp" => wp = true,
                    "minor" => {
                        c.err(
                            m.span(),
                            "MINOR mode needs shmem or hugetlb, which are not modelled",
                            None,
                        );
                        return None;
                    }
                    _ => {
                        c.err(
                            m.span(),
                            format!("unknown register mode `{}`", m.text),
                            Some("modes: missing, wp, missing+wp".into()),
                        );
                        return None;
                    }
                }
            }
            UffdOp::Register { range, missing, wp }
        }
        "unregister" => UffdOp::Unregister { range: c.range()? },
        "wp" | "unwp" => {
            let range = c.range()?;
            let mut stride = 0;
            if let Some(t) = c.next() {
                let usage = format!("usage: uffd {} RANGE [stride=SIZE]", a.text);
                let Some((_, v)) = t.kv().filter(|(k, _)| k.text == "stride") else {
                    c.err(t.span(), format!("unexpected `{}`", t.text), Some(usage));
                    return None;
                };
                stride = c.size(v, "stride")?;
                if stride == 0 || stride % PAGE_SIZE != 0 {
                    c.err(
                        v.span(),
                        format!("stride `{}` must be a positive multiple of 4K", v.text),
                        None,
                    );
                    return None;
                }
            }
            UffdOp::Writeprotect {
                range,
                wp: a.text == "wp",
                stride,
            }
        }
        "copy" => {
            let range = c.range()?;
            let wp = match c.next() {
                None => false,
                Some(t) if t.text == "wp" => true,
                Some(t) => {
                    c.err(
                        t.span(),
                        format!("unexpected `{}`", t.text),
                        Some("usage: uffd copy RANGE [wp]".into()),
                    );
                    return None;
                }
            };
            UffdOp::Copy { range, wp }
        }
        "zeropage" => UffdOp::Zeropage { range: c.range()? },
        "handler" => {
            let (mut wp, mut missing) = (None, None);
            for t in c.rest() {
                let Some((k, v)) = t.text.split_once('=') else {
                    c.err(t.span(), format!("expected KEY=VALUE, not `{}`", t.text), Some("usage: uffd handler [wp=unprotect:SIZE|unprotect:vma] [missing=copy:SIZE|zeropage:SIZE]".into()));
                    return None;
                };
                let (what, size) = v.split_once(':').unwrap_or((v, "4K"));
                let sz = if size == "vma" {
                    None
                } else {
                    match parse_size(size) {
                        Ok(s) if s >= PAGE_SIZE && s.is_power_of_two() => Some(s),
                        _ => {
                            c.err(
                                t.span(),
                                format!("`{size}` is not a power-of-two size of at least 4K"),
                                None,
                            );
                            return None;
                        }
                    }
                };
                match (k, what, sz) {
                    ("wp", "unprotect", Some(s)) => wp = Some(WpPolicy::Unprotect(s)),
                    ("wp", "unprotect", None) => wp = Some(WpPolicy::UnprotectVma),
                    ("missing", "copy", Some(s)) => missing = Some(MissingPolicy::Copy(s)),
                    ("missing", "zeropage", Some(s)) => missing = Some(MissingPolicy::Zeropage(s)),
                    _ => {
                        c.err(t.span(), format!("unknown handler policy `{}`", t.text), Some("wp=unprotect:4K|unprotect:2M|unprotect:vma, missing=copy:4K|zeropage:4K".into()));
                        return None;
                    }
                }
            }
            UffdOp::Handler { wp, missing }
        }
        other => {
            let hint = thpsim_kernel::util::closest(other, ACTIONS.iter().copied())
                .map(|b| format!("did you mean `{b}`?"))
                .unwrap_or_else(|| format!("actions: {}", ACTIONS.join(", ")));
            c.err(
                a.span(),
                format!("unknown uffd action `{other}`"),
                Some(hint),
            );
            return None;
        }
    };
    if let Some(extra) = c.next() {
        c.err(extra.span(), format!("unexpected `{}`", extra.text), None);
        return None;
    }
    Some(Parsed::Op(Op::Uffd(op)))
}

pub(crate) fn op_prctl(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    const USAGE: &str = "usage: prctl set_thp_disable 0|1 [except_advised]";
    let opt = c.need("prctl option")?;
    if opt.text != "set_thp_disable" {
        c.err(
            opt.span(),
            format!("unknown prctl option `{}`", opt.text),
            Some("the modelled prctl option is `set_thp_disable`".into()),
        );
        return None;
    }
    let v = c.need("0 or 1")?;
    let disable = match v.text {
        "0" => false,
        "1" => true,
        _ => {
            c.err(
                v.span(),
                format!("`{}` is not 0 or 1", v.text),
                Some(USAGE.into()),
            );
            return None;
        }
    };
    let mut except_advised = false;
    if let Some(f) = c.next() {
        if f.text != "except_advised" {
            c.err(
                f.span(),
                format!("unknown prctl flag `{}`", f.text),
                Some("the only flag is `except_advised`".into()),
            );
            return None;
        }
        except_advised = true;
    }
    if let Some(extra) = c.next() {
        c.err(
            extra.span(),
            format!("unexpected `{}`", extra.text),
            Some(USAGE.into()),
        );
        return None;
    }
    Some(Parsed::Op(Op::PrctlSetThpDisable {
        disable,
        except_advised,
    }))
}

pub(crate) fn op_checkpoint(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = c.need("checkpoint label")?;
    if !t
        .text
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
    {
        c.err(
            t.span(),
            format!("bad checkpoint label `{}`", t.text),
            Some("labels use letters, digits, `_`, `.` and `-`".into()),
        );
        return None;
    }
    if let Some(first) = c.st.labels.get(t.text) {
        let first = *first;
        c.err(
            t.span(),
            format!("checkpoint `{}` is already defined", t.text),
            Some(format!(
                "`{}` was first used at line {first}; labels must be unique",
                t.text
            )),
        );
        return None;
    }
    c.st.labels.insert(t.text.to_string(), t.line);
    Some(Parsed::Op(Op::Checkpoint {
        label: t.text.to_string(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Expectations

fn parse_cmp(s: &str) -> Option<Cmp> {
    Some(match s {
        "==" => Cmp::Eq,
        "!=" => Cmp::Ne,
        "<" => Cmp::Lt,
        "<=" => Cmp::Le,
        ">" => Cmp::Gt,
        ">=" => Cmp::Ge,
        _ => return None,
    })
}

/// userfaultfd message counters (all processes): messages, MISSING, WP, MINOR, with WRITE.
pub const UFFD_STATS: &[&str] = &["events", "missing", "wp", "minor", "write"];

/// The kinds of observable, for hints and docs.
pub(crate) const OBSERVABLE_FORMS: &[&str] = &[
    "minflt",
    "majflt",
    "pgfault",
    "errno",
    "vmstat.<name>",
    "mthp.<size>.<stat>",
    "khugepaged.<stat>",
    "uffd.<stat>",
    "uffd.last_flags",
    "uffd.last_addr",
    "smaps(NAME).<Field>",
    "pages(RANGE).<class>",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum ObsKind {
    Count,
    Errno,
    Smaps,
    Addr,
}

impl<'s> LineCtx<'s, '_> {
    fn observable(&mut self, t: Tok<'s>) -> Option<(Observable, ObsKind)> {
        match t.text {
            "minflt" => return Some((Observable::Minflt, ObsKind::Count)),
            "majflt" => return Some((Observable::Majflt, ObsKind::Count)),
            "errno" => return Some((Observable::Errno, ObsKind::Errno)),
            "pgfault" => {
                return Some((Observable::Counter("vmstat.pgfault".into()), ObsKind::Count))
            }
            _ => {}
        }
        let unclosed = t
            .text
            .find('(')
            .is_some_and(|open| !t.text.get(open..).is_some_and(|r| r.contains(')')));
        if unclosed {
            self.err(t.span(), format!("missing `)` in `{}`", t.text), None);
            return None;
        }
        if let Some(op) = ["<=", ">=", "==", "!=", "<", ">"]
            .iter()
            .find(|op| t.text.contains(**op))
        {
            self.err(
                t.span(),
                format!("bad observable `{}`", t.text),
                Some(format!(
                    "separate the comparison with spaces: `OBS {op} VALUE`"
                )),
            );
            return None;
        }
        if let Some(open) = t.text.find('(') {
            let head = t.sub(0, open);
            let Some(close_rel) = t.text.get(open + 1..).and_then(|r| r.find(')')) else {
                self.err(t.span(), format!("missing `)` in `{}`", t.text), None);
                return None;
            };
            let close = open + 1 + close_rel;
            let inner = t.sub(open + 1, close);
            let after = t.from(close + 1);
            let field = match after.text.strip_prefix('.') {
                Some(_) => after.from(1),
                None => {
                    let what = if head.text == "pages" {
                        "page class"
                    } else {
                        "field"
                    };
                    self.err(
                        if after.text.is_empty() {
                            t.after()
                        } else {
                            after.span()
                        },
                        format!("missing `.{what}` after `{}`", t.sub(0, close + 1).text),
                        Some(format!(
                            "e.g. `{}).{}`",
                            t.sub(0, close).text,
                            if head.text == "pages" {
                                "thp_pmd"
                            } else {
                                "AnonHugePages"
                            }
                        )),
                    );
                    return None;
                }
            };
            return match head.text {
                "smaps" => self.smaps_obs(inner, field),
                "pages" => self.pages_obs(inner, field),
                h => {
                    let hint = suggest(h, ["smaps", "pages"])
                        .map(|s| format!("did you mean `{s}(…)`?"))
                        .unwrap_or_else(|| format!("observables: {}", OBSERVABLE_FORMS.join(", ")));
                    self.err(
                        head.span(),
                        format!("unknown observable `{h}(…)`"),
                        Some(hint),
                    );
                    None
                }
            };
        }
        let (head, rest) = match t.text.find('.') {
            Some(i) => (t.sub(0, i), Some(t.from(i + 1))),
            None => (t, None),
        };
        match (head.text, rest) {
            ("vmstat", Some(n)) => {
                if VmItem::from_name(n.text).is_some() {
                    return Some((
                        Observable::Counter(format!("vmstat.{}", n.text)),
                        ObsKind::Count,
                    ));
                }
                let hint = suggest(n.text, VmItem::ALL.iter().map(|i| i.name()))
                    .map(|s| format!("did you mean `vmstat.{s}`?"))
                    .unwrap_or_else(|| "see the vmstat counters in the language reference".into());
                self.err(
                    n.span(),
                    format!("unknown vmstat counter `{}`", n.text),
                    Some(hint),
                );
                None
            }
            ("khugepaged", Some(n)) => {
                if KHUGEPAGED_STATS.contains(&n.text) {
                    return Some((
                        Observable::Counter(format!("khugepaged.{}", n.text)),
                        ObsKind::Count,
                    ));
                }
                let hint = suggest(n.text, KHUGEPAGED_STATS.iter().copied())
                    .map(|s| format!("did you mean `khugepaged.{s}`?"))
                    .unwrap_or_else(|| {
                        format!("khugepaged stats: {}", KHUGEPAGED_STATS.join(", "))
                    });
                self.err(
                    n.span(),
                    format!("unknown khugepaged stat `{}`", n.text),
                    Some(hint),
                );
                None
            }
            ("uffd", Some(n)) if n.text == "last_flags" => {
                Some((Observable::UffdLastFlags, ObsKind::Count))
            }
            ("uffd", Some(n)) if n.text == "last_addr" => {
                Some((Observable::UffdLastAddr, ObsKind::Addr))
            }
            ("uffd", Some(n)) => {
                if UFFD_STATS.contains(&n.text) {
                    return Some((
                        Observable::Counter(format!("uffd.{}", n.text)),
                        ObsKind::Count,
                    ));
                }
                self.err(
                    n.span(),
                    format!("unknown uffd stat `{}`", n.text),
                    Some(format!("uffd stats: {}", UFFD_STATS.join(", "))),
                );
                None
            }
            ("mthp", Some(r)) => self.mthp_obs(r),
            _ => {
                let hint = if VmItem::from_name(t.text).is_some() {
                    format!("vmstat counters are written `vmstat.{}`", t.text)
                } else if KHUGEPAGED_STATS.contains(&t.text) {
                    format!("write `khugepaged.{}`", t.text)
                } else if Smaps::FIELDS.contains(&t.text) {
                    format!("write `smaps(NAME).{}`", t.text)
                } else {
                    match suggest(
                        head.text,
                        [
                            "minflt",
                            "majflt",
                            "pgfault",
                            "errno",
                            "vmstat",
                            "mthp",
                            "khugepaged",
                            "smaps",
                            "pages",
                        ],
                    ) {
                        Some(s) if s != head.text => format!("did you mean `{s}`?"),
                        _ => format!("observables: {}", OBSERVABLE_FORMS.join(", ")),
                    }
                };
                self.err(
                    t.span(),
                    format!("unknown observable `{}`", t.text),
                    Some(hint),
                );
                None
            }
        }
    }

    fn mthp_obs(&mut self, r: Tok<'s>) -> Option<(Observable, ObsKind)> {
        let sizes: Vec<String> = sysfs::ANON_ORDERS
            .iter()
            .map(|o| format!("{}kB", sysfs::order_to_size_kb(*o)))
            .collect();
        let Some(dot) = r.text.find('.') else {
            self.err(
                r.after(),
                format!("missing stat in `mthp.{}`", r.text),
                Some("write mthp.<size>.<stat>, e.g. `mthp.64kB.anon_fault_alloc`".into()),
            );
            return None;
        };
        let size_t = r.sub(0, dot);
        let stat_t = r.from(dot + 1);
        let kb = parse_size_inner(size_t.text)
            .ok()
            .filter(|b| size_t.text.ends_with(|c: char| c.is_ascii_alphabetic()) && b % 1024 == 0)
            .map(|b| b / 1024);
        let order = kb
            .and_then(sysfs::size_kb_to_order)
            .filter(|o| sysfs::ANON_ORDERS.contains(o));
        let Some(order) = order else {
            self.err(
                size_t.span(),
                format!("`{}` is not an mTHP size", size_t.text),
                Some(format!("anonymous mTHP sizes: {}", sizes.join(", "))),
            );
            return None;
        };
        if MthpStat::from_name(stat_t.text).is_none() {
            let hint = suggest(stat_t.text, MthpStat::ALL.iter().map(|s| s.name()))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    let all: Vec<&str> = MthpStat::ALL.iter().map(|s| s.name()).collect();
                    format!("mTHP stats: {}", all.join(", "))
                });
            self.err(
                stat_t.span(),
                format!("unknown mTHP stat `{}`", stat_t.text),
                Some(hint),
            );
            return None;
        }
        Some((
            Observable::Counter(format!(
                "mthp.{}kB.{}",
                sysfs::order_to_size_kb(order),
                stat_t.text
            )),
            ObsKind::Count,
        ))
    }

    fn smaps_obs(&mut self, inner: Tok<'s>, field: Tok<'s>) -> Option<(Observable, ObsKind)> {
        let parts = lex(inner.text, inner.line, inner.col);
        let name = match parts.as_slice() {
            [n] if !n.text.contains('+') => *n,
            [] => {
                self.err(
                    inner.after(),
                    "missing mapping name in `smaps()`",
                    Some("write `smaps(NAME).Field`".into()),
                );
                return None;
            }
            _ => {
                self.err(
                    inner.span(),
                    "smaps() takes a mapping name, not a range",
                    Some("smaps fields are per mapping; use `pages(RANGE).class` for part of a mapping".into()),
                );
                return None;
            }
        };
        let known = self.mapping(name).is_some();
        if !Smaps::FIELDS.contains(&field.text) {
            let hint = suggest(field.text, Smaps::FIELDS.iter().copied())
                .or_else(|| {
                    Smaps::FIELDS
                        .iter()
                        .copied()
                        .find(|f| f.eq_ignore_ascii_case(field.text))
                })
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("smaps fields: {}", Smaps::FIELDS.join(", ")));
            self.err(
                if field.text.is_empty() {
                    field.after()
                } else {
                    field.span()
                },
                format!("unknown smaps field `{}`", field.text),
                Some(hint),
            );
            return None;
        }
        known.then(|| {
            (
                Observable::Smaps {
                    mapping: name.text.to_string(),
                    mapping_span: name.span(),
                    field: field.text.to_string(),
                },
                ObsKind::Smaps,
            )
        })
    }

    fn pages_obs(&mut self, inner: Tok<'s>, class: Tok<'s>) -> Option<(Observable, ObsKind)> {
        let parts = lex(inner.text, inner.line, inner.col);
        let range = match parts.as_slice() {
            [] => {
                self.err(
                    inner.after(),
                    "missing range in `pages()`",
                    Some("write `pages(NAME+OFF LEN).class`".into()),
                );
                None
            }
            [r] => self.resolve_range(*r, None),
            [r, l] if r.text.contains('+') => self.resolve_range(*r, Some(*l)),
            [r, l] => {
                self.err(
                    join(r.span(), l.span()),
                    format!("ambiguous range `{} {}`", r.text, l.text),
                    Some(format!(
                        "a length needs an explicit offset: write `{}+0 {}`",
                        r.text, l.text
                    )),
                );
                None
            }
            [_, _, x, ..] => {
                self.err(
                    x.span(),
                    format!("unexpected `{}` in range", x.text),
                    Some("a range is NAME, NAME+OFF or NAME+OFF LEN".into()),
                );
                None
            }
        };
        if !Backing::CLASSES.contains(&class.text) {
            let hint = suggest(class.text, Backing::CLASSES.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("page classes: {}", Backing::CLASSES.join(", ")));
            self.err(
                if class.text.is_empty() {
                    class.after()
                } else {
                    class.span()
                },
                format!("unknown page class `{}`", class.text),
                Some(hint),
            );
            return None;
        }
        let range = range?;
        Some((
            Observable::Pages {
                range,
                class: class.text.to_string(),
            },
            ObsKind::Count,
        ))
    }

    fn expect_value(&mut self, t: Tok<'s>, kind: ObsKind) -> Option<ExpectValue> {
        match kind {
            ObsKind::Addr => {
                if !t.text.contains('+') {
                    self.err(
                        t.span(),
                        format!("`{}` is not an address", t.text),
                        Some("write NAME+OFF, e.g. `buf+4K`".into()),
                    );
                    return None;
                }
                self.resolve_range(t, None).map(ExpectValue::Addr)
            }
            ObsKind::Errno => {
                if t.text == "ok" || t.text == "0" {
                    return Some(ExpectValue::Ok);
                }
                if let Some(e) = Errno::from_name(t.text) {
                    return Some(ExpectValue::Err(OpError::Errno(e)));
                }
                if let Some(s) = Signal::from_name(t.text) {
                    return Some(ExpectValue::Err(OpError::Signal(s)));
                }
                let up = t.text.to_ascii_uppercase();
                let names = || {
                    Errno::ALL
                        .iter()
                        .map(|e| e.0)
                        .chain(["SIGSEGV", "SIGBUS", "ok"])
                };
                let hint = if Errno::from_name(&up).is_some() || Signal::from_name(&up).is_some() {
                    format!("names are upper case: `{up}`")
                } else {
                    suggest(t.text, names())
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            format!(
                                "expected ok, 0, an errno name or a signal: {}",
                                names().collect::<Vec<_>>().join(", ")
                            )
                        })
                };
                self.err(
                    t.span(),
                    format!("unknown errno value `{}`", t.text),
                    Some(hint),
                );
                None
            }
            ObsKind::Smaps => {
                if t.text.starts_with('-') {
                    self.err(
                        t.span(),
                        format!(
                            "bad smaps value `{}`: smaps values are not negative",
                            t.text
                        ),
                        None,
                    );
                    return None;
                }
                let bare = !t.text.is_empty() && t.text.chars().all(|c| c.is_ascii_digit());
                let kb = if bare {
                    self.size(t, "smaps value")?
                } else {
                    let b = self.size(t, "smaps value")?;
                    if b % 1024 != 0 {
                        self.err(
                            t.span(),
                            format!("smaps value {} is not a whole number of kB", t.text),
                            Some("smaps reports kB: write e.g. `2048kB`, `2M` or `4K`".into()),
                        );
                        return None;
                    }
                    b / 1024
                };
                match i64::try_from(kb) {
                    Ok(v) => Some(ExpectValue::Int(v)),
                    Err(_) => {
                        self.err(
                            t.span(),
                            format!("smaps value {} is too large", t.text),
                            None,
                        );
                        None
                    }
                }
            }
            ObsKind::Count => {
                let digits = t.text.strip_prefix(['-', '+']).unwrap_or(t.text);
                if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                    return match t.text.parse::<i64>() {
                        Ok(v) => Some(ExpectValue::Int(v)),
                        Err(_) => {
                            self.err(
                                t.span(),
                                format!("value `{}` does not fit in 64 bits", t.text),
                                None,
                            );
                            None
                        }
                    };
                }
                let hint = if parse_size_inner(digits).is_ok() {
                    "size units are only meaningful for smaps(NAME).<Field>; counters and pages() are plain counts".to_string()
                } else {
                    "expected an integer (counters are deltas and may be negative)".to_string()
                };
                self.err(t.span(), format!("bad value `{}`", t.text), Some(hint));
                None
            }
        }
    }

    fn condition(&mut self, t: Tok<'s>) -> Option<Condition> {
        if let Some(rest) = t.text.strip_prefix("kernel") {
            let (cmp, n) = if let Some(c) = ["==", "!=", "<=", ">="]
                .iter()
                .find(|c| rest.starts_with(**c))
            {
                (parse_cmp(c), 2)
            } else if rest.starts_with('=') {
                (Some(Cmp::Eq), 1)
            } else if rest.starts_with('<') {
                (Some(Cmp::Lt), 1)
            } else if rest.starts_with('>') {
                (Some(Cmp::Gt), 1)
            } else {
                (None, 0)
            };
            let Some(cmp) = cmp else {
                self.err(
                    t.span(),
                    format!("bad kernel condition `{}`", t.text),
                    Some(
                        "write e.g. `kernel>=6.13`, `kernel=6.12` or `kernel<6.13` (no spaces)"
                            .into(),
                    ),
                );
                return None;
            };
            let v = t.from("kernel".len() + n);
            let version = v.text.split_once('.').and_then(|(a, b)| {
                let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
                if ok(a) && ok(b) {
                    Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
                } else {
                    None
                }
            });
            let Some(version) = version else {
                self.err(
                    if v.text.is_empty() {
                        t.after()
                    } else {
                        v.span()
                    },
                    format!("bad kernel version `{}`", v.text),
                    Some("versions are MAJOR.MINOR, e.g. `6.13`".into()),
                );
                return None;
            };
            return Some(Condition::Kernel { cmp, version });
        }
        let Some((k, v)) = t.kv().filter(|(k, _)| !k.text.is_empty()) else {
            self.err(
                t.span(),
                format!("bad condition `{}`", t.text),
                Some("conditions are `kernel<cmp>MAJOR.MINOR` or `switch=value`, e.g. `kernel>=6.13`, `hzp_wp_fault=thp`".into()),
            );
            return None;
        };
        check_switch(self, k, v).then(|| Condition::Switch {
            key: k.text.to_string(),
            value: v.text.to_string(),
        })
    }
}

pub(crate) fn op_expect(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let obs_t = c.need("observable (e.g. `minflt`, `vmstat.thp_fault_alloc`)")?;
    let (obs, kind) = c.observable(obs_t)?;
    let cmp_t = c.need("comparison (== != < <= > >=)")?;
    let cmp = match parse_cmp(cmp_t.text) {
        Some(cmp) => cmp,
        None => {
            let hint = if cmp_t.text == "=" {
                "write `==`"
            } else {
                "comparisons: == != < <= > >="
            };
            c.err(
                cmp_t.span(),
                format!("bad comparison `{}`", cmp_t.text),
                Some(hint.into()),
            );
            return None;
        }
    };
    let val_t = c.need("expected value")?;
    if kind == ObsKind::Errno && !matches!(cmp, Cmp::Eq | Cmp::Ne) {
        c.err(
            cmp_t.span(),
            "errno can only be compared with == or !=",
            None,
        );
        return None;
    }
    let value = c.expect_value(val_t, kind);
    let mut when = Vec::new();
    let mut ok = true;
    if let Some(w) = c.next() {
        if w.text != "when" {
            c.err(
                w.span(),
                format!("unexpected `{}` after the expected value", w.text),
                Some("conditions follow `when`, e.g. `when kernel>=6.13`".into()),
            );
            return None;
        }
        let conds = c.rest();
        if conds.is_empty() {
            c.err(
                w.after(),
                "missing condition after `when`",
                Some("e.g. `when kernel>=6.13` or `when hzp_wp_fault=thp`".into()),
            );
            return None;
        }
        for t in conds {
            match c.condition(t) {
                Some(cond) => when.push(cond),
                None => ok = false,
            }
        }
    }
    let value = value?;
    if !ok {
        return None;
    }
    Some(Parsed::Op(Op::Expect(Expect {
        obs,
        cmp,
        value,
        when,
        text: c.text.to_string(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_inner("4096"), Ok(4096));
        assert_eq!(parse_size_inner("2M"), Ok(2 << 20));
        assert_eq!(parse_size_inner("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size_inner("2048kB"), Ok(2 << 20));
        assert_eq!(parse_size_inner("0x1000"), Ok(4096));
        assert_eq!(parse_size_inner("0x2M"), Ok(2 << 20));
        assert_eq!(parse_size_inner("16T"), Ok(16 << 40));
        assert_eq!(parse_size_inner("2Q"), Err(SizeError::BadUnit("Q".into())));
        assert_eq!(parse_size_inner("M"), Err(SizeError::NotANumber));
        assert_eq!(parse_size_inner("0x"), Err(SizeError::NotANumber));
        assert_eq!(parse_size_inner("16777216T"), Err(SizeError::Overflow));
        assert_eq!(
            parse_size_inner("99999999999999999999"),
            Err(SizeError::Overflow)
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_size(2 << 20), "2M");
        assert_eq!(fmt_size(4096), "4K");
        assert_eq!(fmt_size(4097), "4097");
        assert_eq!(fmt_size(0), "0");
    }

    #[test]
    fn lexing_keeps_parens_together() {
        let t = lex("expect pages(buf+2M 2M).thp_pmd == 512", 3, 1);
        let v: Vec<(&str, u32)> = t.iter().map(|t| (t.text, t.col)).collect();
        assert_eq!(
            v,
            vec![
                ("expect", 1),
                ("pages(buf+2M 2M).thp_pmd", 8),
                ("==", 33),
                ("512", 36)
            ]
        );
        let t = lex("  é x", 1, 1);
        assert_eq!(t[1].col, 5);
    }
}
