//! The grammar of the disk-file ops: `file NAME SIZE on=disk`, `msync RANGE [sync] [async]
//! [invalidate]`, `fsync OBJ`.

use crate::ast::Op;

use super::lexer::LineCtx;
use super::ops::{known_object, new_object_name, object_bytes};
use super::Parsed;

/// `file NAME SIZE on=disk`: a regular file on the disk filesystem.
pub(crate) fn op_file(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let name = new_object_name(c)?;
    let size = object_bytes(c, "file size")?;
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "file", None);
    if !opts.ok {
        return None;
    }
    // `on` is required and `disk` its only value so far (the option parser checked both).
    Some(Parsed::Op(Op::DiskFile { name, size }))
}

/// `msync RANGE [sync] [async] [invalidate]`.
pub(crate) fn op_msync(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let range = c.range()?;
    let toks = c.rest();
    let opts = c.options(toks, c.spec.opts, "msync", None);
    if !opts.ok {
        return None;
    }
    use thpsim_kernel::readahead::{MS_ASYNC, MS_INVALIDATE, MS_SYNC};
    let flags = [
        ("async", MS_ASYNC),
        ("invalidate", MS_INVALIDATE),
        ("sync", MS_SYNC),
    ]
    .iter()
    .filter(|(k, _)| opts.flag(k))
    .fold(0, |f, (_, bit)| f | bit);
    Some(Parsed::Op(Op::Msync { range, flags }))
}

/// `fsync OBJ`.
pub(crate) fn op_fsync(c: &mut LineCtx<'_, '_>) -> Option<Parsed> {
    let obj = known_object(c)?;
    let toks = c.rest();
    if !c.options(toks, c.spec.opts, "fsync", None).ok {
        return None;
    }
    Some(Parsed::Op(Op::Fsync { obj }))
}
