//! Which offsets an access op touches, in which order. Both backends call this one function,
//! so the model and the host touch exactly the same bytes. Random subsets use a seeded
//! bijection on the offset indices (no memory proportional to the range), so a 64 GiB guest
//! with a random 30 % write set costs nothing to describe.

use crate::ast::{Subset, SubsetCount};

/// Number of offsets `0, stride, 2*stride, … < len`.
pub fn offset_count(len: u64, stride: u64) -> u64 {
    if len == 0 {
        0
    } else {
        (len - 1) / stride.max(1) + 1
    }
}

/// The touched offsets, relative to the start of the range.
pub fn touch_offsets(len: u64, stride: u64, subset: Option<Subset>) -> TouchIter {
    let stride = stride.max(1);
    let n = offset_count(len, stride);
    match subset {
        None => TouchIter {
            stride,
            n,
            taken: 0,
            limit: n,
            perm: None,
        },
        Some(s) => {
            let limit = match s.count {
                SubsetCount::Pages(k) => k.min(n),
                SubsetCount::Percent(p) => ((n as u128 * p.min(100) as u128) / 100) as u64,
            };
            TouchIter {
                stride,
                n,
                taken: 0,
                limit,
                perm: Some(Permutation::new(n, s.seed)),
            }
        }
    }
}

pub struct TouchIter {
    stride: u64,
    n: u64,
    taken: u64,
    limit: u64,
    perm: Option<Permutation>,
}

impl Iterator for TouchIter {
    type Item = u64;
    #[inline]
    fn next(&mut self) -> Option<u64> {
        if self.taken >= self.limit {
            return None;
        }
        let i = self.taken;
        self.taken += 1;
        let idx = match &self.perm {
            None => i,
            Some(p) => p.at(i),
        };
        debug_assert!(idx < self.n);
        Some(idx * self.stride)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let r = (self.limit - self.taken) as usize;
        (r, Some(r))
    }
}

/// A seeded permutation of `0..n`: a 4-round Feistel network on the next power of four,
/// with cycle walking to stay below `n`.
struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; 4],
}

/// SplitMix64: a small seeded generator, the same on every machine (also `sweep --sample`).
pub fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Permutation {
    fn new(n: u64, seed: u64) -> Self {
        let bits = 64 - n.max(2).saturating_sub(1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        let mut s = seed;
        let keys = [
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
        ];
        Permutation { n, half_bits, keys }
    }

    fn encrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for k in self.keys {
            let mut f = r ^ k;
            f = splitmix64(&mut f) & mask;
            let nl = r;
            r = l ^ f;
            l = nl;
        }
        (l << self.half_bits) | r
    }

    fn at(&self, i: u64) -> u64 {
        let mut x = self.encrypt(i);
        while x >= self.n {
            x = self.encrypt(x);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential() {
        let v: Vec<u64> = touch_offsets(5 * 4096, 4096, None).collect();
        assert_eq!(v, vec![0, 4096, 8192, 12288, 16384]);
        assert_eq!(touch_offsets(4097, 4096, None).count(), 2);
        assert_eq!(touch_offsets(1, 4096, None).collect::<Vec<_>>(), vec![0]);
        assert_eq!(touch_offsets(0, 4096, None).count(), 0);
    }

    #[test]
    fn subset_is_a_seeded_sample_without_repeats() {
        for n in [1u64, 2, 3, 7, 100, 513, 4096] {
            let all: Vec<u64> = touch_offsets(
                n * 4096,
                4096,
                Some(Subset {
                    count: SubsetCount::Percent(100),
                    seed: 9,
                }),
            )
            .collect();
            let mut sorted = all.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len() as u64, n, "permutation of {n}");
            assert!(sorted.iter().all(|o| o % 4096 == 0 && *o < n * 4096));
        }
        let a: Vec<u64> = touch_offsets(
            1 << 30,
            4096,
            Some(Subset {
                count: SubsetCount::Pages(10),
                seed: 1,
            }),
        )
        .collect();
        let b: Vec<u64> = touch_offsets(
            1 << 30,
            4096,
            Some(Subset {
                count: SubsetCount::Pages(10),
                seed: 1,
            }),
        )
        .collect();
        let c: Vec<u64> = touch_offsets(
            1 << 30,
            4096,
            Some(Subset {
                count: SubsetCount::Pages(10),
                seed: 2,
            }),
        )
        .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            touch_offsets(
                100 * 4096,
                4096,
                Some(Subset {
                    count: SubsetCount::Percent(25),
                    seed: 0
                })
            )
            .count(),
            25
        );
    }
}
