//! Small helpers with no kernel counterpart.

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .map(|(_, c)| c)
}

/// A count as the signed value counters and reports carry (saturating: counts in the model
/// stay far below 2^63).
#[inline]
pub fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The same 64 bits read as signed: a kernel counter that is unsigned but may wrap below
/// zero (`HugePages_Rsvd`) is -1, not 2^64 - 1.
#[inline]
#[must_use]
pub fn wrapping_to_i64(n: u64) -> i64 {
    i64::from_ne_bytes(n.to_ne_bytes())
}

/// An index or count that the page-table geometry bounds (below 2^32) as `u32`.
#[inline]
pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a page-table-bounded count fits in u32")
}

/// A page index inside a folio (below 2^32 by construction), as `u32`.
pub(crate) fn page_u32(n: u64) -> u32 {
    u32::try_from(n).expect("a page index inside a folio fits in u32")
}

/// The highest order set in an order bitmask (`highest_order`); `orders` is not 0.
#[inline]
pub(crate) fn highest_order(orders: u16) -> u8 {
    debug_assert!(orders != 0);
    // At most 15: the conversion cannot fail.
    u8::try_from(orders.ilog2()).unwrap_or(0)
}
