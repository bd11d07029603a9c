//! The expectation language: `expect OBSERVABLE CMP VALUE [when COND…]`.

use thpsim_kernel::errno::{Errno, OpError, Signal};
use thpsim_kernel::observe::{Backing, Smaps};
use thpsim_kernel::sysfs;
use thpsim_kernel::vmstat::{MthpStat, VmItem, KHUGEPAGED_STATS};

use crate::ast::*;

use super::lexer::{join, lex, LineCtx, Tok};
use super::ops::check_switch;
use super::values::{listing, parse_size, suggest};
use super::Parsed;

pub(super) fn parse_cmp(s: &str) -> Option<Cmp> {
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
    "meminfo.HugePages_{Total,Free,Rsvd,Surp}",
    "meminfo.Hugetlb",
    "memcg.<field>",
    "hugepages-1048576kB.{nr,free,resv,surplus}_hugepages",
    "smaps(NAME).<Field>",
    "pages(RANGE).<class>",
    "obj(NAME).blocks|size",
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ObsKind {
    Count,
    Errno,
    Smaps,
    Addr,
    /// A byte count (`obj(NAME).size`): a plain number or a size with a unit.
    Bytes,
}

impl<'s> LineCtx<'s, '_> {
    pub(super) fn observable(&mut self, t: Tok<'s>) -> Option<(Observable, ObsKind)> {
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
                "obj" => self.object_obs(inner, field),
                h => {
                    let hint = suggest(h, ["smaps", "pages", "obj"])
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
                self.unknown(
                    n,
                    "vmstat counter",
                    VmItem::ALL.iter().map(|i| i.name()),
                    "vmstat.",
                    || "see the vmstat counters in the language reference".into(),
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
                let names = KHUGEPAGED_STATS.iter().copied();
                self.unknown(n, "khugepaged stat", names.clone(), "khugepaged.", || {
                    listing("khugepaged stats", names)
                });
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
                let names = UFFD_STATS
                    .iter()
                    .copied()
                    .chain(["last_flags", "last_addr"]);
                self.unknown(n, "uffd stat", names.clone(), "uffd.", || {
                    listing("uffd stats", names)
                });
                None
            }
            ("mthp", Some(r)) => self.mthp_obs(r),
            ("memcg", Some(n)) => {
                const MEMCG: &[&str] = thpsim_kernel::memcontrol::MEMCG_FIELDS;
                if MEMCG.contains(&n.text) {
                    // The memory.stat and usage fields are bytes (a value may have a unit).
                    let kind = if matches!(n.text, "failcnt" | "oom_kill") {
                        ObsKind::Count
                    } else {
                        ObsKind::Bytes
                    };
                    return Some((Observable::Counter(format!("memcg.{}", n.text)), kind));
                }
                let names = MEMCG.iter().copied();
                self.unknown(n, "memcg field", names.clone(), "memcg.", || {
                    listing("memcg fields", names)
                });
                None
            }
            (thpsim_kernel::observe::HSTATE_1G_PREFIX, Some(n)) => {
                // The 1 GiB hstate's sysfs counters, as deltas.
                const FIELDS: [&str; 4] = thpsim_kernel::observe::HSTATE_1G_FIELDS;
                if FIELDS.contains(&n.text) {
                    return Some((
                        Observable::Counter(format!(
                            "{}.{}",
                            thpsim_kernel::observe::HSTATE_1G_PREFIX,
                            n.text
                        )),
                        ObsKind::Count,
                    ));
                }
                let names = FIELDS.iter().copied();
                self.unknown(
                    n,
                    "1 GiB hstate counter",
                    names.clone(),
                    "hugepages-1048576kB.",
                    || listing("1 GiB hstate counters", names),
                );
                None
            }
            ("meminfo", Some(n)) => {
                // /proc/meminfo's hugetlb and swap lines, as deltas.
                const MEMINFO: [&str; 8] = thpsim_kernel::observe::MEMINFO_FIELDS;
                if MEMINFO.contains(&n.text) {
                    return Some((
                        Observable::Counter(format!("meminfo.{}", n.text)),
                        ObsKind::Count,
                    ));
                }
                let names = MEMINFO.iter().copied();
                self.unknown(n, "meminfo field", names.clone(), "meminfo.", || {
                    listing("meminfo fields", names)
                });
                None
            }
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

    pub(super) fn mthp_obs(&mut self, r: Tok<'s>) -> Option<(Observable, ObsKind)> {
        let sizes: Vec<String> = sysfs::MTHP_STAT_ORDERS
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
        let kb = parse_size(size_t.text)
            .ok()
            .filter(|b| size_t.text.ends_with(|c: char| c.is_ascii_alphabetic()) && b % 1024 == 0)
            .map(|b| b / 1024);
        let order = kb
            .and_then(sysfs::size_kb_to_order)
            .filter(|o| sysfs::MTHP_STAT_ORDERS.contains(o));
        let Some(order) = order else {
            self.err(
                size_t.span(),
                format!("`{}` is not an mTHP size", size_t.text),
                Some(format!("mTHP sizes: {}", sizes.join(", "))),
            );
            return None;
        };
        if MthpStat::from_name(stat_t.text).is_none() {
            let names = MthpStat::ALL.iter().map(|s| s.name());
            self.unknown(stat_t, "mTHP stat", names.clone(), "", || {
                listing("mTHP stats", names)
            });
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

    /// `obj(NAME).blocks` / `obj(NAME).size`: fstat of a shmem object.
    pub(super) fn object_obs(
        &mut self,
        inner: Tok<'s>,
        field: Tok<'s>,
    ) -> Option<(Observable, ObsKind)> {
        if !self.st.objects.contains_key(inner.text) {
            let names: Vec<String> = self.st.objects.keys().cloned().collect();
            self.unknown(
                inner,
                "object",
                names.iter().map(String::as_str),
                "",
                || "objects are made by `memfd` or `file` earlier in the file".into(),
            );
            return None;
        }
        let kind = match field.text {
            "blocks" => ObsKind::Count,
            "size" => ObsKind::Bytes,
            _ => {
                let names = crate::backend::OBJECT_FIELDS.iter().copied();
                self.unknown(field, "object field", names.clone(), "", || {
                    listing("object fields", names)
                });
                return None;
            }
        };
        Some((
            Observable::Object {
                object: inner.text.to_string(),
                field: field.text.to_string(),
            },
            kind,
        ))
    }

    pub(super) fn smaps_obs(
        &mut self,
        inner: Tok<'s>,
        field: Tok<'s>,
    ) -> Option<(Observable, ObsKind)> {
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
            let names = Smaps::FIELDS.iter().copied();
            self.unknown(field, "smaps field", names.clone(), "", || {
                listing("smaps fields", names)
            });
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

    pub(super) fn pages_obs(
        &mut self,
        inner: Tok<'s>,
        class: Tok<'s>,
    ) -> Option<(Observable, ObsKind)> {
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
            let names = Backing::CLASSES.iter().copied();
            self.unknown(class, "page class", names.clone(), "", || {
                listing("page classes", names)
            });
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

    pub(super) fn expect_value(&mut self, t: Tok<'s>, kind: ObsKind) -> Option<ExpectValue> {
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
            ObsKind::Bytes => {
                let b = self.size(t, "size value")?;
                match i64::try_from(b) {
                    Ok(v) => Some(ExpectValue::Int(v)),
                    Err(_) => {
                        self.err(t.span(), format!("size {} is too large", t.text), None);
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
                let hint = if parse_size(digits).is_ok() {
                    "size units are only meaningful for smaps(NAME).<Field>; counters and pages() are plain counts".to_string()
                } else {
                    "expected an integer (counters are deltas and may be negative)".to_string()
                };
                self.err(t.span(), format!("bad value `{}`", t.text), Some(hint));
                None
            }
        }
    }

    pub(super) fn condition(&mut self, t: Tok<'s>) -> Option<Condition> {
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
