//! Tokens and the per-line context: a line is split into whitespace-separated words (not
//! inside parentheses), each remembering its line and column for diagnostics.

use crate::ast::Span;
use crate::table::{OpSpec, SubSpec};

use super::State;

/// One whitespace-separated token: a slice of its line and where it starts.
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub struct Tok<'s> {
    pub(super) text: &'s str,
    pub(super) line: u32,
    pub(super) col: u32,
}

impl<'s> Tok<'s> {
    pub(super) fn chars(&self) -> u32 {
        u32::try_from(self.text.chars().count()).unwrap_or(u32::MAX)
    }
    pub(super) fn span(&self) -> Span {
        Span {
            line: self.line,
            col: self.col,
            len: self.chars(),
        }
    }
    /// The part `[a, b)` (byte offsets, char boundaries) of this token.
    pub(super) fn sub(&self, a: usize, b: usize) -> Tok<'s> {
        let prefix = self.text.get(..a).map(|p| p.chars().count()).unwrap_or(0);
        Tok {
            text: self.text.get(a..b).unwrap_or(""),
            line: self.line,
            col: self
                .col
                .saturating_add(u32::try_from(prefix).unwrap_or(u32::MAX)),
        }
    }
    pub(super) fn from(&self, a: usize) -> Tok<'s> {
        self.sub(a, self.text.len())
    }
    /// Zero-width position just after the token.
    pub(super) fn after(&self) -> Span {
        Span {
            line: self.line,
            col: self.col.saturating_add(self.chars()),
            len: 1,
        }
    }
    /// `key=value` split (key and value as sub-tokens).
    pub(super) fn kv(&self) -> Option<(Tok<'s>, Tok<'s>)> {
        let i = self.text.find('=')?;
        Some((self.sub(0, i), self.from(i + 1)))
    }
}

/// A span from the start of `a` to the end of `b` (same line).
pub(super) fn join(a: Span, b: Span) -> Span {
    let end = b.col.saturating_add(b.len);
    Span {
        line: a.line,
        col: a.col,
        len: end.saturating_sub(a.col),
    }
}

/// Splits `code` into whitespace-separated tokens; whitespace inside parentheses does not split.
pub(super) fn lex(code: &str, line: u32, first_col: u32) -> Vec<Tok<'_>> {
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
    pub(super) st: &'a mut State,
    pub(super) kw: Tok<'s>,
    pub(super) args: Vec<Tok<'s>>,
    pub(super) pos: usize,
    /// The statement without its comment, trimmed.
    pub(super) text: &'s str,
    /// The op's entry in the table.
    pub(super) spec: &'static OpSpec,
    /// The sub-command, once the op's parser has read it (`uffd wp`).
    pub(super) sub: Option<&'static SubSpec>,
}

impl<'s> LineCtx<'s, '_> {
    /// `usage: …` with the synopsis of the op, or of its sub-command once known.
    pub(super) fn usage(&self) -> String {
        match self.sub {
            Some(sub) => format!("usage: {}", sub.synopsis(self.spec.name)),
            None => format!("usage: {}", self.spec.synopsis()),
        }
    }
    pub(super) fn err(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        self.st.err(span, message.into(), hint);
    }
    pub(super) fn peek(&self) -> Option<Tok<'s>> {
        self.args.get(self.pos).copied()
    }
    pub(super) fn next(&mut self) -> Option<Tok<'s>> {
        let t = self.peek()?;
        self.pos += 1;
        Some(t)
    }
    /// Where a missing argument would go.
    pub(super) fn end_span(&self) -> Span {
        self.args.last().copied().unwrap_or(self.kw).after()
    }
    /// The next token, or an error naming what was expected.
    pub(super) fn need(&mut self, what: &str) -> Option<Tok<'s>> {
        match self.next() {
            Some(t) => Some(t),
            None => {
                let span = self.end_span();
                let usage = self.usage();
                self.err(span, format!("missing {what}"), Some(usage));
                None
            }
        }
    }
    pub(super) fn rest(&mut self) -> Vec<Tok<'s>> {
        let r = self
            .args
            .get(self.pos..)
            .map(|r| r.to_vec())
            .unwrap_or_default();
        self.pos = self.args.len();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
