//! The grammar of the writeback ops: `msync RANGE [sync] [async] [invalidate]`, `fsync OBJ`
//! (`file NAME SIZE on=disk` is parsed with the tmpfs files, in `ops.rs`).

use crate::ast::Op;

use super::lexer::LineCtx;
use super::ops::known_object;
use super::Parsed;

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
