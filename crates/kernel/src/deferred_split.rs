//! The deferred-split queue (`struct deferred_split` in `mm/huge_memory.c`, Linux 6.18): large
//! anonymous folios waiting for the deferred-split shrinker, FIFO, linked through the folios'
//! side records (`_deferred_list`) so queueing allocates nothing. This type owns only the list;
//! the flags and counters that go with queueing are set by `Kernel::deferred_split_folio`.

use crate::folio::{FolioLink, Folios};
use crate::ids::FolioId;

#[derive(Clone, Debug, Default)]
pub(crate) struct DeferredSplitQueue {
    head: Option<FolioId>,
    tail: Option<FolioId>,
    len: u64,
}

impl DeferredSplitQueue {
    /// `split_queue_len`.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends `id` (which must not be queued).
    pub(crate) fn push_back(&mut self, folios: &mut Folios, id: FolioId) {
        let tail = self.tail;
        {
            let m = folios.meta_mut(id);
            m.ds_prev = tail.into();
            m.ds_next = FolioLink::NONE;
        }
        match tail {
            None => self.head = Some(id),
            Some(t) => folios.meta_mut(t).ds_next = Some(id).into(),
        }
        self.tail = Some(id);
        self.len += 1;
    }

    /// Unlinks `id` (which must be queued).
    pub(crate) fn remove(&mut self, folios: &mut Folios, id: FolioId) {
        let (prev, next) = {
            let m = folios.meta(id);
            (m.ds_prev.get(), m.ds_next.get())
        };
        match prev {
            None => self.head = next,
            Some(p) => folios.meta_mut(p).ds_next = next.into(),
        }
        match next {
            None => self.tail = prev,
            Some(n) => folios.meta_mut(n).ds_prev = prev.into(),
        }
        self.len -= 1;
    }

    /// The queued folios, oldest first.
    pub(crate) fn to_vec(&self, folios: &Folios) -> Vec<FolioId> {
        let mut v = Vec::new();
        let mut cur = self.head;
        while let Some(id) = cur {
            v.push(id);
            cur = folios.meta(id).ds_next.get();
        }
        v
    }
}
