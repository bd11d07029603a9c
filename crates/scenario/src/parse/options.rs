//! Options (`key=value` words and bare flags) parsed from the op table's [`OptSpec`] lists:
//! one place decides what an option accepts, how a bad one is reported and what "did you
//! mean" offers.

use thpsim_kernel::types::{Prot, PAGE_SIZE};

use crate::ast::SubsetCount;
use crate::table::{OptSpec, ValueKind};

use super::lexer::{LineCtx, Tok};
use super::values::{parse_size, suggest};

/// A parsed option value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OptValue {
    Flag,
    Size(u64),
    Uint(u64),
    Count(SubsetCount),
    Choice(&'static str),
    /// An identifier; the word itself is `Opts::tok`'s value part.
    Name,
    Prot(Prot),
    /// A policy's action and its size (`None`: `vma`).
    Policy(&'static str, Option<u64>),
    /// `NAME+OFF`: the offset; the name is the part of `Opts::tok`'s value before `+`.
    MapAddr(u64),
}

/// The options of one line, in the order written.
pub(super) struct Opts<'s> {
    vals: Vec<(&'static str, OptValue, Tok<'s>)>,
    /// Every option parsed and checked without error.
    pub(super) ok: bool,
}

impl<'s> Opts<'s> {
    pub(super) fn get(&self, key: &str) -> Option<OptValue> {
        self.vals.iter().find(|v| v.0 == key).map(|v| v.1)
    }
    /// The word the option was written as.
    pub(super) fn tok(&self, key: &str) -> Option<Tok<'s>> {
        self.vals.iter().find(|v| v.0 == key).map(|v| v.2)
    }
    pub(super) fn flag(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    pub(super) fn size(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            OptValue::Size(v) | OptValue::Uint(v) => Some(v),
            _ => None,
        }
    }
}

/// How the options of a spec list are named in a hint: `stride=SIZE, random=N|P%, seed=S`.
fn listing(specs: &[OptSpec]) -> String {
    specs
        .iter()
        .map(|o| o.usage().trim_matches(['[', ']']).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'s> LineCtx<'s, '_> {
    /// Parses `toks` as options of `specs`. `what` names the op in messages (`mmap`,
    /// `uffd wp`); `stray` is the hint for a word that is neither an option nor a flag.
    pub(super) fn options(
        &mut self,
        toks: Vec<Tok<'s>>,
        specs: &'static [OptSpec],
        what: &str,
        stray: Option<&str>,
    ) -> Opts<'s> {
        let mut opts = Opts {
            vals: Vec::new(),
            ok: true,
        };
        for t in toks {
            let kv = t.kv().filter(|(k, _)| !k.text.is_empty());
            let (spec, value) = match kv {
                Some((k, v)) => match specs.iter().find(|s| s.key == k.text) {
                    Some(s) if matches!(s.kind, ValueKind::Flag) => {
                        self.err(
                            t.span(),
                            format!("`{}` takes no value", k.text),
                            Some(format!("write `{}` alone", k.text)),
                        );
                        opts.ok = false;
                        continue;
                    }
                    Some(s) => (s, Some(v)),
                    None => {
                        let hint = suggest(k.text, specs.iter().map(|s| s.key))
                            .map(|s| format!("did you mean `{s}`?"))
                            .unwrap_or_else(|| self.usage());
                        self.err(
                            k.span(),
                            format!("unknown {what} option `{}`", k.text),
                            Some(hint),
                        );
                        opts.ok = false;
                        continue;
                    }
                },
                None => {
                    let bare = specs.iter().find(|s| match s.kind {
                        ValueKind::Flag | ValueKind::FlagOrChoice(_) => s.key == t.text,
                        ValueKind::Prot => Prot::parse(t.text).is_some(),
                        _ => false,
                    });
                    match bare {
                        Some(s) => (s, None),
                        None => {
                            let flags = specs
                                .iter()
                                .filter(|s| {
                                    matches!(s.kind, ValueKind::Flag | ValueKind::FlagOrChoice(_))
                                })
                                .map(|s| s.key);
                            let hint = match (suggest(t.text, flags), stray) {
                                (Some(s), _) => format!("did you mean `{s}`?"),
                                (None, Some(h))
                                    if t.text.starts_with(|c: char| c.is_ascii_digit()) =>
                                {
                                    h.to_string()
                                }
                                (None, _) if specs.is_empty() => self.usage(),
                                (None, _) => format!("options: {}", listing(specs)),
                            };
                            self.err(t.span(), format!("unexpected `{}`", t.text), Some(hint));
                            opts.ok = false;
                            continue;
                        }
                    }
                }
            };
            if opts.get(spec.key).is_some() {
                // A value that may be written without its key is named by what it is.
                let msg = if matches!(spec.kind, ValueKind::Prot) {
                    format!("{} given twice", spec.what)
                } else {
                    format!("`{}` given twice", spec.key)
                };
                self.err(t.span(), msg, None);
                opts.ok = false;
                continue;
            }
            let bare_default = match (spec.kind, value) {
                (ValueKind::FlagOrChoice(words), None) => {
                    words.first().map(|w| OptValue::Choice(w))
                }
                _ => None,
            };
            match bare_default.or_else(|| self.opt_value(spec, value.unwrap_or(t))) {
                Some(v) => opts.vals.push((spec.key, v, t)),
                None => opts.ok = false,
            }
        }
        opts
    }

    /// The value of one option, checked against its spec (errors reported at the value).
    fn opt_value(&mut self, spec: &OptSpec, v: Tok<'s>) -> Option<OptValue> {
        Some(match spec.kind {
            ValueKind::Flag => OptValue::Flag,
            ValueKind::Size(rule) => {
                let n = self.size(v, spec.what)?;
                if !rule.allows(n) {
                    self.err(v.span(), rule.broken.replace("{}", v.text), None);
                    return None;
                }
                OptValue::Size(n)
            }
            ValueKind::Uint => OptValue::Uint(self.uint(v, spec.what)?),
            ValueKind::CountOrPercent => match v.text.strip_suffix('%') {
                Some(p) => match p.parse::<u32>() {
                    Ok(p) if p <= 100 => OptValue::Count(SubsetCount::Percent(p)),
                    _ => {
                        self.err(
                            v.span(),
                            format!("bad percentage `{}`", v.text),
                            Some(format!(
                                "write {}=N or {}=P% with P in 0..=100",
                                spec.key, spec.key
                            )),
                        );
                        return None;
                    }
                },
                None => OptValue::Count(SubsetCount::Pages(self.uint(v, spec.what)?)),
            },
            ValueKind::Choice(words) | ValueKind::FlagOrChoice(words) => {
                match words.iter().find(|w| **w == v.text) {
                    Some(w) => OptValue::Choice(w),
                    None => {
                        self.err(
                            v.span(),
                            format!("bad {} `{}`", spec.what, v.text),
                            Some(format!("{}s: {}", spec.what, words.join(", "))),
                        );
                        return None;
                    }
                }
            }
            ValueKind::Name => {
                if !super::values::is_ident(v.text) {
                    self.err(
                        v.span(),
                        format!("bad {} `{}`", spec.what, v.text),
                        Some("names are identifiers: [A-Za-z_][A-Za-z0-9_]*".into()),
                    );
                    return None;
                }
                OptValue::Name
            }
            ValueKind::Prot => OptValue::Prot(self.prot(v)?),
            ValueKind::MapAddr => OptValue::MapAddr(self.map_addr(v)?),
            ValueKind::Policy(actions) => {
                let (action, size) = v.text.split_once(':').unwrap_or((v.text, "4K"));
                let forms = || {
                    actions
                        .iter()
                        .flat_map(|(a, vma)| {
                            std::iter::once(format!("{a}:SIZE"))
                                .chain(vma.then(|| format!("{a}:vma")))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let Some(&(action, vma_ok)) = actions.iter().find(|(a, _)| *a == action) else {
                    self.err(
                        v.span(),
                        format!("unknown {} `{}`", spec.what, v.text),
                        Some(format!("`{}` accepts {}", spec.key, forms())),
                    );
                    return None;
                };
                if size == "vma" && vma_ok {
                    return Some(OptValue::Policy(action, None));
                }
                match parse_size(size) {
                    Ok(s) if s >= PAGE_SIZE && s.is_power_of_two() => {
                        OptValue::Policy(action, Some(s))
                    }
                    _ => {
                        self.err(
                            v.span(),
                            format!("`{size}` is not a power-of-two size of at least 4K"),
                            Some(format!("`{}` accepts {}", spec.key, forms())),
                        );
                        return None;
                    }
                }
            }
        })
    }
}
