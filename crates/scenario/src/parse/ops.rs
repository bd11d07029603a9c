//! The grammars of the ops, dispatched from [`crate::table::OPS`].

use thpsim_kernel::errno::Signal;
use thpsim_kernel::hugetlb::HugePageSize;
use thpsim_kernel::profile::{self, Switches};
use thpsim_kernel::sysfs::{KnobError, ShmemHuge, Sysfs};
use thpsim_kernel::types::{Advice, Prot, PAGE_SIZE};

use crate::ast::*;

use super::lexer::{join, LineCtx, Tok};
use super::options::{OptValue, Opts};
use super::values::{is_ident, listing, parse_duration, suggest};
use super::{
    MapInfo, Parsed, DEFAULT_STRIDE, MAX_MAPPING, MAX_MEMORY, MEMORY_GRANULE, UNKNOWN_SIZE,
};

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

/// The size of a setup line that may appear once (`memory`, `swap`): `line` is where the
/// state keeps the line that gave it. Reports a second one and a malformed size.
fn once_size<'s>(
    c: &mut LineCtx<'s, '_>,
    what: &str,
    line: fn(&mut super::State) -> &mut Option<u32>,
) -> Option<(Tok<'s>, u64)> {
    let t = c.need(what)?;
    if let Some(first) = *line(c.st) {
        c.err(
            c.kw.span(),
            format!("{what} given twice"),
            Some(format!("it was already given at line {first}")),
        );
        return None;
    }
    *line(c.st) = Some(t.line);
    let bytes = c.size(t, what)?;
    Some((t, bytes))
}

pub(crate) fn op_memory(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let (t, bytes) = once_size(c, "memory size", |st| &mut st.memory_line)?;
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

/// The largest swap device: the model's swap map is one byte per slot.
const MAX_SWAP: u64 = 64 << 30;

pub(crate) fn op_swap(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let (t, bytes) = once_size(c, "swap size", |st| &mut st.swap_line)?;
    if bytes < 2 * 4096 || bytes % 4096 != 0 || bytes > MAX_SWAP {
        c.err(
            t.span(),
            format!("swap {} is not a multiple of 4K between 8K and 64G", t.text),
            Some("the first page holds the swap header; e.g. `swap 1G`".into()),
        );
        return None;
    }
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "swap", None);
    if !opts.ok {
        return None;
    }
    let device = match opts.get("type") {
        Some(OptValue::Choice("disk")) => thpsim_kernel::SwapDevice::Disk,
        Some(OptValue::Choice("file")) => thpsim_kernel::SwapDevice::File,
        _ => thpsim_kernel::SwapDevice::Zram,
    };
    Some(Parsed::Op(Op::Swap { bytes, device }))
}

pub(crate) fn op_memcg(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    if let Some(first) = c.st.memcg_line {
        c.err(
            c.kw.span(),
            "memcg given twice".to_string(),
            Some(format!("it was already given at line {first}")),
        );
        return None;
    }
    c.st.memcg_line = Some(c.kw.line);
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "memcg", None);
    if !opts.ok {
        return None;
    }
    let limit = opts.size("limit")?;
    let swappiness = match opts.size("swappiness") {
        None => 60,
        Some(v) if v <= 200 => v as u32,
        Some(v) => {
            let span = opts.tok("swappiness").map_or(c.kw.span(), |t| t.span());
            c.err(
                span,
                format!("swappiness {v} is above 200"),
                Some("memory.swappiness takes 0 to 200".into()),
            );
            return None;
        }
    };
    Some(Parsed::Op(Op::Memcg(
        thpsim_kernel::memcontrol::MemcgConfig { limit, swappiness },
    )))
}

/// Splits `key=value` arguments, reporting malformed ones. `what` names the key kind.
pub(super) fn settings<'s>(c: &mut LineCtx<'s, '_>, what: &str) -> Option<Vec<(Tok<'s>, Tok<'s>)>> {
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

pub(super) fn setting(k: Tok<'_>, v: Tok<'_>) -> Setting {
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

pub(super) fn scratch_switches() -> Option<Switches> {
    profile::profile(profile::DEFAULT_PROFILE)
        .or_else(|| profile::profiles().into_iter().next())
        .map(|p| p.switches)
}

/// Validates one `switch=value`; reports at the key or the value.
pub(super) fn check_switch<'s>(c: &mut LineCtx<'s, '_>, k: Tok<'s>, v: Tok<'s>) -> bool {
    let Some(info) = profile::SWITCHES.iter().find(|s| s.0 == k.text) else {
        let names = profile::SWITCHES.iter().map(|s| s.0);
        c.unknown(k, "switch", names.clone(), "", || {
            listing("switches", names)
        });
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
        c.err(span, "missing signal name", Some(c.usage()));
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
                let names = ["SIGSEGV", "SIGBUS"];
                c.unknown(t, "signal", names, "", || {
                    listing("the signals an access raises", names)
                });
                ok = false;
            }
        }
    }
    ok.then_some(Parsed::Op(Op::Catch { signals }))
}

pub(super) const UNMODELLED_BACKINGS: &[&str] = &["file", "shmem", "guest_memfd"];

/// The page size a `hugetlb[=2M|1G]` option names.
fn hugetlb_size(opts: &Opts<'_>) -> Option<HugePageSize> {
    match opts.get("hugetlb")? {
        OptValue::Choice(w) => HugePageSize::from_name(w),
        _ => None,
    }
}

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

    let backing_tok = c.need("backing (anon, zero or a shmem object)")?;
    let mut object = None;
    let mut dev_zero = false;
    match backing_tok.text {
        "anon" => {}
        "zero" => dev_zero = true,
        o if c.st.objects.contains_key(o) => object = Some(o.to_string()),
        "memfd" => {
            c.err(
                backing_tok.span(),
                "a memfd mapping names its object".to_string(),
                Some("create one with `memfd NAME SIZE` and write its NAME as the backing".into()),
            );
            return None;
        }
        b if UNMODELLED_BACKINGS.contains(&b) => {
            c.err(
                backing_tok.span(),
                format!("`{b}` mappings are not modelled yet"),
                Some("only `anon` is".into()),
            );
            return None;
        }
        _ => {
            let objects: Vec<String> = c.st.objects.keys().cloned().collect();
            let names = ["anon", "zero"]
                .into_iter()
                .chain(UNMODELLED_BACKINGS.iter().copied())
                .chain(objects.iter().map(String::as_str));
            c.unknown(backing_tok, "backing", names, "", || {
                "the backing is `anon`, `zero` (/dev/zero) or an object made by `memfd` or `file` earlier".into()
            });
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
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "mmap", None);
    if !opts.ok {
        return None;
    }
    if object.is_none() && opts.flag("foff") {
        if let Some(t) = opts.tok("foff") {
            c.err(
                t.span(),
                "`foff` is the offset into a memfd object".to_string(),
                Some("an `anon` mapping has no file".into()),
            );
        }
        return None;
    }
    let prot = match opts.get("prot") {
        Some(OptValue::Prot(p)) => p,
        _ => Prot::RW,
    };
    let hugetlb = hugetlb_size(&opts);
    if hugetlb.is_some() && object.is_some() {
        if let Some(t) = opts.tok("hugetlb") {
            c.err(
                t.span(),
                "`hugetlb` is MAP_HUGETLB, for `anon` mappings".to_string(),
                Some(
                    "a memfd made with `memfd NAME SIZE hugetlb` maps as hugetlb by itself".into(),
                ),
            );
        }
        return None;
    }
    if let Some(h) = hugetlb.filter(|h| size % h.size() != 0) {
        c.err(
            size_tok.span(),
            format!(
                "hugetlb mapping size {} is not a multiple of {}",
                size_tok.text,
                h.name()
            ),
            Some(
                "the kernel rounds MAP_HUGETLB lengths up to the huge page size; write it rounded"
                    .into(),
            ),
        );
        return None;
    }
    let m_name = name.text;
    let at = match (opts.get("at"), opts.tok("at")) {
        (Some(OptValue::MapAddr(offset)), Some(t)) => {
            let v = t.kv().map_or(t, |(_, v)| v);
            for k in ["align", "offset"] {
                if let Some(o) = opts.tok(k) {
                    c.err(
                        o.span(),
                        format!("`{k}` places a mapping in a free part of the arena; `at` names its address"),
                        Some("drop one of them: an `at=NAME+OFF` mapping goes exactly there".into()),
                    );
                    return None;
                }
            }
            let name = v.text.split('+').next().unwrap_or(v.text);
            if name == m_name {
                c.err(
                    v.span(),
                    format!("`at` names `{name}`, the mapping this line makes"),
                    Some("name a mapping made earlier in the file".into()),
                );
                return None;
            }
            Some(crate::ast::MapAt {
                mapping: name.to_string(),
                offset,
                span: v.span(),
            })
        }
        _ => None,
    };
    Some(Parsed::Op(Op::Mmap(MmapOp {
        name: name.text.to_string(),
        name_span: name.span(),
        size,
        backing: if object.is_some() {
            MapBacking::Memfd
        } else if dev_zero {
            MapBacking::DevZero
        } else {
            MapBacking::Anon
        },
        shared,
        prot,
        align: opts.size("align"),
        offset: opts.size("offset").unwrap_or(0),
        populate: opts.flag("populate"),
        object,
        foff: opts.size("foff").unwrap_or(0),
        hugetlb,
        noreserve: opts.flag("noreserve"),
        at,
    })))
}

/// A byte count of a shmem object (`memfd` size, `ftruncate`, `fallocate`): at most 64T.
pub(super) fn object_bytes(c: &mut LineCtx<'_, '_>, what: &str) -> Option<u64> {
    let t = c.need(what)?;
    let v = c.size(t, what)?;
    if v > MAX_MAPPING {
        c.err(
            t.span(),
            format!("{what} {} is larger than 64T", t.text),
            None,
        );
        return None;
    }
    Some(v)
}

/// A reference to an object made by `memfd` earlier in the file.
pub(super) fn known_object(c: &mut LineCtx<'_, '_>) -> Option<String> {
    let t = c.need("object name")?;
    if !c.st.objects.contains_key(t.text) {
        if c.st.full() {
            c.st.more_errors += 1;
            return None;
        }
        let names: Vec<String> = c.st.objects.keys().cloned().collect();
        c.unknown(t, "object", names.iter().map(String::as_str), "", || {
            "objects are made by `memfd NAME SIZE`, `gmem NAME SIZE` or `file NAME SIZE on=TMPFS|disk` earlier in the file"
                .into()
        });
        return None;
    }
    Some(t.text.to_string())
}

/// The name of a new object (`memfd`, `gmem`, `file`): an identifier not used by another
/// object and not `anon` or `zero`; known from here on.
fn new_object_name<'s>(c: &mut LineCtx<'s, '_>) -> Option<Tok<'s>> {
    let name = c.need("object name")?;
    if !is_ident(name.text) {
        c.err(
            name.span(),
            format!("bad object name `{}`", name.text),
            Some("object names are identifiers: [A-Za-z_][A-Za-z0-9_]*".into()),
        );
        return None;
    }
    if matches!(name.text, "anon" | "zero") || c.st.objects.contains_key(name.text) {
        c.err(
            name.span(),
            format!("object `{}` is already defined", name.text),
            Some(
                "object names are unique; `anon` and `zero` are the anonymous and /dev/zero backings"
                    .into(),
            ),
        );
        return None;
    }
    c.st.objects.insert(name.text.to_string(), name.line);
    Some(name)
}

pub(crate) fn op_memfd(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let name = new_object_name(c)?;
    let size = object_bytes(c, "object size")?;
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "memfd", None);
    if !opts.ok {
        return None;
    }
    let hugetlb = hugetlb_size(&opts);
    if let Some(h) = hugetlb.filter(|h| size % h.size() != 0) {
        c.err(
            name.span(),
            format!("a hugetlb memfd's size must be a multiple of {}", h.name()),
            Some("ftruncate of a hugetlbfs file to a partial huge page is EINVAL".into()),
        );
        return None;
    }
    Some(Parsed::Op(Op::Memfd {
        name: name.text.to_string(),
        size,
        hugetlb,
    }))
}

pub(crate) fn op_tmpfs(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let name = c.need("tmpfs name")?;
    if !is_ident(name.text) {
        c.err(
            name.span(),
            format!("bad tmpfs name `{}`", name.text),
            Some("tmpfs names are identifiers: [A-Za-z_][A-Za-z0-9_]*".into()),
        );
        return None;
    }
    if name.text == "disk" {
        c.err(
            name.span(),
            "`disk` cannot name a tmpfs".to_string(),
            Some("`file NAME SIZE on=disk` means the disk filesystem".into()),
        );
        return None;
    }
    if c.st.tmpfs.contains_key(name.text) {
        c.err(
            name.span(),
            format!("tmpfs `{}` is already defined", name.text),
            Some("each `tmpfs` line mounts a new instance under a new name".into()),
        );
        return None;
    }
    c.st.tmpfs.insert(name.text.to_string(), name.line);
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "tmpfs", None);
    if !opts.ok {
        return None;
    }
    let huge = match opts.get("huge") {
        Some(OptValue::Choice(v)) => ShmemHuge::parse(v, true)?,
        _ => ShmemHuge::Never,
    };
    Some(Parsed::Op(Op::Tmpfs {
        name: name.text.to_string(),
        huge,
        size: opts.size("size"),
    }))
}

pub(crate) fn op_file(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let name = new_object_name(c)?;
    let size = object_bytes(c, "file size")?;
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "file", None);
    if !opts.ok {
        return None;
    }
    let Some(on) = opts.tok("on") else {
        let span = c.end_span();
        c.err(
            span,
            "missing `on=TMPFS` or `on=disk`".to_string(),
            Some(
                "a file lives on a tmpfs instance made by `tmpfs NAME huge=…`, or on the disk (`on=disk`)"
                    .into(),
            ),
        );
        return None;
    };
    let on = on.kv().map_or(on, |(_, v)| v);
    let mnt = on.text;
    if mnt == "disk" {
        return Some(Parsed::Op(Op::DiskFile {
            name: name.text.to_string(),
            size,
        }));
    }
    if !c.st.tmpfs.contains_key(mnt) {
        let names: Vec<String> = c.st.tmpfs.keys().cloned().collect();
        c.err(
            on.span(),
            format!("unknown tmpfs `{mnt}`"),
            Some(
                suggest(mnt, names.iter().map(String::as_str))
                    .map(|s| format!("did you mean `on={s}`?"))
                    .unwrap_or_else(|| {
                        "mount one with `tmpfs NAME huge=…` earlier in the file, or use `on=disk`"
                            .into()
                    }),
            ),
        );
        return None;
    }
    Some(Parsed::Op(Op::File {
        name: name.text.to_string(),
        size,
        on: mnt.to_string(),
    }))
}

/// `gmem NAME SIZE [mmap] [init_shared] [flags=N]`: an object like `memfd`'s, whose size
/// may be 0 or unaligned (the kernel's EINVAL is part of what a scenario checks).
pub(crate) fn op_gmem(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let name = new_object_name(c)?;
    let size = object_bytes(c, "object size")?;
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "gmem", None);
    if !opts.ok {
        return None;
    }
    let mut flags = opts.size("flags").unwrap_or(0);
    if opts.flag("mmap") {
        flags |= thpsim_kernel::guest_memfd::GUEST_MEMFD_FLAG_MMAP;
    }
    if opts.flag("init_shared") {
        flags |= thpsim_kernel::guest_memfd::GUEST_MEMFD_FLAG_INIT_SHARED;
    }
    Some(Parsed::Op(Op::Gmem {
        name: name.text.to_string(),
        size,
        flags,
    }))
}

pub(crate) fn op_ftruncate(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let obj = known_object(c)?;
    let size = object_bytes(c, "size")?;
    let toks = c.rest();
    if !c.options(toks, c.spec.opts, "ftruncate", None).ok {
        return None;
    }
    Some(Parsed::Op(Op::Ftruncate { obj, size }))
}

pub(crate) fn op_fallocate(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let obj = known_object(c)?;
    let offset = object_bytes(c, "offset")?;
    let len = object_bytes(c, "length")?;
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "fallocate", None);
    if !opts.ok {
        return None;
    }
    Some(Parsed::Op(Op::Fallocate {
        obj,
        offset,
        len,
        keep_size: opts.flag("keep_size"),
        punch_hole: opts.flag("punch_hole"),
    }))
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

pub(super) fn access(c: &mut LineCtx<'_, '_>, fixed: Option<Pattern>) -> Option<Parsed> {
    let range = c.range();
    let mut toks = c.rest();
    let mut ok = true;
    if fixed.is_some() {
        // `read`/`write` have no `pattern` option: say why instead of "unknown option".
        toks.retain(|t| match t.kv() {
            Some((k, _)) if k.text == "pattern" => {
                c.err(
                    k.span(),
                    format!("`{}` has a fixed pattern", c.kw.text),
                    Some("use `access RANGE pattern=r|w|rw` to choose the pattern".into()),
                );
                ok = false;
                false
            }
            _ => true,
        });
    }
    let what = c.kw.text;
    let opts = c.options(
        toks,
        c.spec.opts,
        what,
        Some("a length needs an explicit offset: write NAME+0 LEN"),
    );
    ok &= opts.ok;
    if let (Some(st), None) = (opts.tok("seed"), opts.get("random")) {
        if opts.ok {
            c.err(
                st.span(),
                "`seed` without `random`",
                Some("the seed chooses the random subset: add random=N or random=P%".into()),
            );
            ok = false;
        }
    }
    let pattern = match (fixed, opts.get("pattern")) {
        (Some(p), _) => p,
        (None, Some(OptValue::Choice("r"))) => Pattern::Read,
        (None, Some(OptValue::Choice("w"))) => Pattern::Write,
        (None, Some(OptValue::Choice(_))) => Pattern::ReadWrite,
        (None, _) => {
            // A bad or repeated `pattern=` was reported already.
            if opts.ok {
                let span = c.end_span();
                c.err(span, "missing pattern=r|w|rw", Some(c.usage()));
            }
            return None;
        }
    };
    let range = range?;
    if !ok {
        return None;
    }
    let count = match opts.get("random") {
        Some(OptValue::Count(n)) => Some(n),
        _ => None,
    };
    Some(Parsed::Op(Op::Access(AccessOp {
        range,
        pattern,
        stride: opts.size("stride").unwrap_or(DEFAULT_STRIDE),
        subset: count.map(|count| Subset {
            count,
            seed: opts.size("seed").unwrap_or(0),
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

pub(super) fn proc_name<'s>(c: &mut LineCtx<'s, '_>) -> Option<Tok<'s>> {
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
    Some(t)
}

pub(super) fn known_proc<'s>(c: &mut LineCtx<'s, '_>) -> Option<Tok<'s>> {
    let t = proc_name(c)?;
    if !c.st.procs.contains_key(t.text) {
        if c.st.full() {
            c.st.more_errors += 1;
            return None;
        }
        let names: Vec<String> = c.st.procs.keys().cloned().collect();
        c.unknown(t, "process", names.iter().map(String::as_str), "", || {
            "processes are `main` and those created by `fork NAME` earlier in the file".into()
        });
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
            Some(c.usage()),
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
    Some(Parsed::Op(Op::KhugepagedScan { passes }))
}

pub(crate) fn op_sleep(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = c.need("duration")?;
    match parse_duration(t.text) {
        Ok(ms) => Some(Parsed::Op(Op::Sleep { ms })),
        Err(m) => {
            c.err(
                t.span(),
                m.to_string(),
                Some("e.g. `sleep 10s`, `sleep 500ms`, `sleep 2m`".into()),
            );
            None
        }
    }
}

pub(crate) fn op_shrink(_c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    Some(Parsed::Op(Op::Shrink))
}

pub(crate) fn op_kalloc(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let t = c.need("size")?;
    let size = c.size(t, "size")?;
    if size == 0 || size % 4096 != 0 {
        c.err(
            t.span(),
            "the size must be a positive multiple of 4K",
            Some(c.usage()),
        );
        return None;
    }
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "kalloc", None);
    if !opts.ok {
        return None;
    }
    let order = opts.size("order").unwrap_or(0);
    if order > 10 {
        let span = opts.tok("order").map_or_else(|| c.end_span(), |t| t.span());
        c.err(
            span,
            format!("order {order} is above MAX_PAGE_ORDER (10)"),
            Some(c.usage()),
        );
        return None;
    }
    let scatter = opts.size("scatter").unwrap_or(0);
    if opts.tok("scatter").is_some() && scatter == 0 {
        let span = opts
            .tok("scatter")
            .map_or_else(|| c.end_span(), |t| t.span());
        c.err(span, "the pageblock stride is at least 1", Some(c.usage()));
        return None;
    }
    Some(Parsed::Op(Op::Kalloc {
        size,
        order: u8::try_from(order).expect("checked"),
        reclaimable: matches!(opts.get("type"), Some(OptValue::Choice("reclaimable"))),
        scatter,
    }))
}

pub(crate) fn op_compact(_c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    Some(Parsed::Op(Op::Compact))
}

pub(crate) fn op_mremap(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let range = c.range()?;
    let dst = match c.peek() {
        Some(t) if t.kv().is_none() => {
            let dst = c.range()?;
            if dst.len.is_some() {
                c.err(
                    dst.span,
                    "the destination is `NAME` or `NAME+OFF`: a new length is `size=SIZE`",
                    Some(c.usage()),
                );
                return None;
            }
            Some(dst)
        }
        _ => None,
    };
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "mremap", None);
    if !opts.ok {
        return None;
    }
    let size = opts.size("size");
    if dst.is_none() && size.is_none() {
        let span = c.end_span();
        c.err(
            span,
            "missing destination or new size",
            Some(format!(
                "{}: `mremap RANGE DST` moves, `mremap RANGE size=SIZE` resizes in place",
                c.usage()
            )),
        );
        return None;
    }
    if size.is_some() && range.len == Some(0) {
        c.err(
            range.span,
            "a zero-length source with a new size duplicates a shared mapping in the kernel, which the model does not do",
            Some("give the source a length".into()),
        );
        return None;
    }
    Some(Parsed::Op(Op::Mremap { range, dst, size }))
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
    use thpsim_kernel::userfaultfd::{Features, MinorPolicy, MissingPolicy, WpPolicy};
    let a = c.need("uffd action")?;
    c.sub = c.spec.sub(a.text);
    let op = match a.text {
        "open" => {
            let mut features = vec![];
            for t in c.rest() {
                if !Features::default().set(t.text) {
                    let names = Features::NAMES.iter().copied();
                    c.unknown(t, "userfaultfd feature", names.clone(), "", || {
                        listing("features", names)
                    });
                    return None;
                }
                features.push(t.text.to_string());
            }
            UffdOp::Open { features }
        }
        "register" => {
            let range = c.range()?;
            let m = c.need("mode (missing, wp, minor, or a `+` of them)")?;
            let (mut missing, mut wp, mut minor) = (false, false, false);
            for part in m.text.split('+') {
                let seen = match part {
                    "missing" => std::mem::replace(&mut missing, true),
                    "wp" => std::mem::replace(&mut wp, true),
                    "minor" => std::mem::replace(&mut minor, true),
                    _ => {
                        c.err(
                            m.span(),
                            format!("unknown register mode `{}`", m.text),
                            Some("modes: missing, wp, minor, joined with `+` (missing+wp)".into()),
                        );
                        return None;
                    }
                };
                if seen {
                    c.err(
                        m.span(),
                        format!("register mode `{part}` given twice"),
                        None,
                    );
                    return None;
                }
            }
            UffdOp::Register {
                range,
                missing,
                wp,
                minor,
            }
        }
        "unregister" => UffdOp::Unregister { range: c.range()? },
        "wp" | "unwp" => {
            let range = c.range()?;
            let opts = c.sub_options();
            if !opts.ok {
                return None;
            }
            UffdOp::Writeprotect {
                range,
                wp: a.text == "wp",
                stride: opts.size("stride").unwrap_or(0),
            }
        }
        "copy" => {
            let range = c.range()?;
            let opts = c.sub_options();
            if !opts.ok {
                return None;
            }
            UffdOp::Copy {
                range,
                wp: opts.flag("wp"),
            }
        }
        "zeropage" => UffdOp::Zeropage { range: c.range()? },
        "continue" => {
            let range = c.range()?;
            let opts = c.sub_options();
            if !opts.ok {
                return None;
            }
            UffdOp::Continue {
                range,
                wp: opts.flag("wp"),
            }
        }
        "handler" => {
            let opts = c.sub_options();
            if !opts.ok {
                return None;
            }
            let wp = match opts.get("wp") {
                Some(OptValue::Policy(_, Some(s))) => Some(WpPolicy::Unprotect(s)),
                Some(OptValue::Policy(_, None)) => Some(WpPolicy::UnprotectVma),
                _ => None,
            };
            let missing = match opts.get("missing") {
                Some(OptValue::Policy("zeropage", Some(s))) => Some(MissingPolicy::Zeropage(s)),
                Some(OptValue::Policy(_, Some(s))) => Some(MissingPolicy::Copy(s)),
                _ => None,
            };
            let minor = match opts.get("minor") {
                Some(OptValue::Policy(_, Some(s))) => Some(MinorPolicy::Continue(s)),
                _ => None,
            };
            UffdOp::Handler { wp, missing, minor }
        }
        _ => {
            let names = c.spec.subs.iter().map(|s| s.name);
            c.unknown(a, "uffd action", names.clone(), "", || {
                listing("actions", names)
            });
            return None;
        }
    };
    Some(Parsed::Op(Op::Uffd(op)))
}

pub(crate) fn op_prctl(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
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
                Some(c.usage()),
            );
            return None;
        }
    };
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "prctl", None);
    if !opts.ok {
        return None;
    }
    Some(Parsed::Op(Op::PrctlSetThpDisable {
        disable,
        except_advised: opts.flag("except_advised"),
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

impl<'s> LineCtx<'s, '_> {
    /// The rest of the line as the options of the current sub-command (`uffd wp`).
    fn sub_options(&mut self) -> Opts<'s> {
        let toks = self.rest();
        let (specs, name) = match self.sub {
            Some(s) => (s.opts, s.name),
            None => (&[][..], ""),
        };
        let what = format!("{} {name}", self.spec.name);
        self.options(toks, specs, &what, None)
    }
}
