//! Values: sizes, counts, mapping names, ranges and protections, and the typo suggestions
//! every "did you mean" hint comes from.

use thpsim_kernel::types::Prot;
use thpsim_kernel::util::closest;

use crate::ast::RangeRef;

use super::lexer::{join, LineCtx, Tok};

/// `NAME+OFF` split: the name, the mapping's size (`None`: not a mapping) and the offset
/// with its token.
type NameOffset<'s> = (Tok<'s>, Option<u64>, Option<(u64, Tok<'s>)>);

pub(super) const SIZE_HINT: &str =
    "a size is bytes, or a number with K, M, G or T (also KiB, MiB, GiB, TiB; kB = KiB), e.g. `4096`, `2M`, `0x1000`";

/// Why a word is not a size (each variant carries the word).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{0}` is not a size; {SIZE_HINT}")]
    NotANumber(String),
    #[error("unknown unit `{unit}` in `{text}`; {SIZE_HINT}")]
    BadUnit { text: String, unit: String },
    #[error("size `{0}` overflows 64 bits")]
    Overflow(String),
}

/// Parses a size as the language writes it: decimal or `0x` hex, optional binary unit suffix
/// (`K`, `M`, `G`, `T`, `KiB`…`TiB`, `kB` = 1024).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let (digits, rest, radix) =
        if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            let n = h.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(h.len());
            (h.get(..n).unwrap_or(""), h.get(n..).unwrap_or(""), 16)
        } else {
            let n = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            (s.get(..n).unwrap_or(""), s.get(n..).unwrap_or(""), 10)
        };
    if digits.is_empty() {
        return Err(SizeError::NotANumber(s.to_string()));
    }
    let mult: u64 = match rest {
        "" => 1,
        "K" | "KiB" | "kB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        u => {
            return Err(SizeError::BadUnit {
                text: s.to_string(),
                unit: u.to_string(),
            })
        }
    };
    let overflow = || SizeError::Overflow(s.to_string());
    let v = u64::from_str_radix(digits, radix).map_err(|_| overflow())?;
    v.checked_mul(mult).ok_or_else(overflow)
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
pub(super) fn suggest<'a>(
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

/// `label: a, b, c`, the hint that lists every accepted word.
pub(super) fn listing<'a>(label: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    format!(
        "{label}: {}",
        names.into_iter().collect::<Vec<_>>().join(", ")
    )
}

impl<'s> LineCtx<'s, '_> {
    /// Reports ``unknown {what} `WORD` `` at `t` (just after it when it is empty). The hint is
    /// "did you mean `PREFIX…`?" for the closest of `names` (or the one that differs only in
    /// case), else what `otherwise` says.
    pub(super) fn unknown<'a>(
        &mut self,
        t: Tok<'s>,
        what: &str,
        names: impl IntoIterator<Item = &'a str> + Clone,
        prefix: &str,
        otherwise: impl FnOnce() -> String,
    ) {
        let hint = suggest(t.text, names.clone())
            .or_else(|| names.into_iter().find(|n| n.eq_ignore_ascii_case(t.text)))
            .map(|s| format!("did you mean `{prefix}{s}`?"))
            .unwrap_or_else(otherwise);
        let span = if t.text.is_empty() {
            t.after()
        } else {
            t.span()
        };
        self.err(span, format!("unknown {what} `{}`", t.text), Some(hint));
    }
}

pub(super) fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An unsigned integer in decimal or `0x` hex (the language's number syntax).
pub fn parse_uint(s: &str) -> Option<u64> {
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
    pub(super) fn size(&mut self, t: Tok<'s>, what: &str) -> Option<u64> {
        match parse_size(t.text) {
            Ok(v) => Some(v),
            Err(SizeError::NotANumber(_)) => {
                let msg = if t.text.is_empty() {
                    format!("missing {what}")
                } else {
                    format!("bad {what} `{}`: not a size", t.text)
                };
                self.err(t.span(), msg, Some(SIZE_HINT.into()));
                None
            }
            Err(SizeError::BadUnit { unit: u, .. }) => {
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
            Err(SizeError::Overflow(_)) => {
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
    pub(super) fn uint(&mut self, t: Tok<'s>, what: &str) -> Option<u64> {
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
    pub(super) fn mapping(&mut self, t: Tok<'s>) -> Option<u64> {
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

    /// Splits `NAME` or `NAME+OFF` into the name, the mapping's size (`None` when NAME is not
    /// a mapping: reported) and the offset with its token; `None` when the offset is missing
    /// or not a size (reported, `hint` says how to write it).
    fn name_offset(&mut self, t: Tok<'s>, hint: &str) -> Option<NameOffset<'s>> {
        let (name, off_tok) = match t.text.find('+') {
            Some(i) => (t.sub(0, i), Some(t.from(i + 1))),
            None => (t, None),
        };
        let size = self.mapping(name);
        let offset = match off_tok {
            Some(o) if o.text.is_empty() => {
                self.err(t.after(), "missing offset after `+`", Some(hint.into()));
                return None;
            }
            Some(o) => Some((self.size(o, "offset")?, o)),
            None => None,
        };
        Some((name, size, offset))
    }

    /// Resolves `NAME`, `NAME+OFF` or `NAME+OFF` + `LEN` tokens into a checked range.
    pub(super) fn resolve_range(
        &mut self,
        t: Tok<'s>,
        len_tok: Option<Tok<'s>>,
    ) -> Option<RangeRef> {
        let span = match len_tok {
            Some(l) => join(t.span(), l.span()),
            None => t.span(),
        };
        let (name, size, offset) = self.name_offset(t, "write NAME+OFF, e.g. `buf+4K`")?;
        let offset = offset.map(|(o, _)| o);
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

    /// An `at=NAME+OFF` address: NAME must be a mapping made earlier; OFF (default 0) a
    /// multiple of 4K of at most 64T, which may lie past NAME's end (MAP_FIXED takes any
    /// address; the engine knows it from NAME's place). Returns OFF.
    pub(super) fn map_addr(&mut self, t: Tok<'s>) -> Option<u64> {
        let (_, size, offset) = self.name_offset(t, "write at=NAME+OFF, e.g. `at=buf+1M`")?;
        let (offset, o) = offset.unwrap_or((0, t));
        size?;
        if offset % thpsim_kernel::types::PAGE_SIZE != 0 || offset > super::MAX_MAPPING {
            self.err(
                o.span(),
                format!(
                    "offset {} is not a multiple of the 4K page size (at most 64T)",
                    o.text
                ),
                Some("MAP_FIXED needs a page-aligned address".into()),
            );
            return None;
        }
        Some(offset)
    }

    /// Takes a RANGE from the argument list (one or two tokens).
    pub(super) fn range(&mut self) -> Option<RangeRef> {
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

    pub(super) fn prot(&mut self, t: Tok<'s>) -> Option<Prot> {
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

/// Why a word is not a duration (each variant carries the word).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration")]
    NotANumber(String),
    #[error("`{0}`: a duration needs a unit: ms, s, m or h")]
    NoUnit(String),
    #[error("`{0}` is too long")]
    TooLong(String),
}

/// `10s`, `500ms`, `2m`, `1h` → milliseconds.
pub fn parse_duration(s: &str) -> Result<u64, DurationError> {
    let split = s.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber(s.to_string()))?;
    let mul = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::NoUnit(s.to_string())),
    };
    n.checked_mul(mul)
        .ok_or_else(|| DurationError::TooLong(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("2048kB"), Ok(2 << 20));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("0x2M"), Ok(2 << 20));
        assert_eq!(parse_size("16T"), Ok(16 << 40));
        assert_eq!(
            parse_size("2Q"),
            Err(SizeError::BadUnit {
                text: "2Q".into(),
                unit: "Q".into()
            })
        );
        assert_eq!(parse_size("M"), Err(SizeError::NotANumber("M".into())));
        assert_eq!(parse_size("0x"), Err(SizeError::NotANumber("0x".into())));
        assert_eq!(
            parse_size("16777216T"),
            Err(SizeError::Overflow("16777216T".into()))
        );
        assert_eq!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow("99999999999999999999".into()))
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_size(2 << 20), "2M");
        assert_eq!(fmt_size(4096), "4K");
        assert_eq!(fmt_size(4097), "4097");
        assert_eq!(fmt_size(0), "0");
    }
}
