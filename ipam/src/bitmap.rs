//! A fixed-size bitmap with a one-bit-per-word summary, so searches skip full words.
//!
//! Bit `i` set means "slot `i` is taken". The bitmap is padded to whole 64-bit words and the
//! padding bits are kept set, so a search never has to special-case the tail. The summary holds
//! one bit per word, set when that word is completely full; a search for a free slot scans the
//! summary (one bit per 64 slots) and then a single word, which keeps allocation cheap on a nearly
//! full /8 (4,096 summary words instead of 262,144 data words).
//!
//! Memory: `n / 8` bytes for the data plus `n / 512` for the summary, 1.6 % over the
//! one-bit-per-address limit.

use bitvec::prelude::{BitVec, Lsb0};

const WORD: usize = u64::BITS as usize;

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Bitmap {
    /// Number of real slots; bits at `len..` are padding and always set.
    len: usize,
    bits: BitVec<u64, Lsb0>,
    /// Bit `w` set when `bits` word `w` is `u64::MAX`.
    full: BitVec<u64, Lsb0>,
}

impl Bitmap {
    /// A bitmap of `len` free slots.
    pub(crate) fn new(len: usize) -> Self {
        let words = len.div_ceil(WORD).max(1);
        let mut bits = BitVec::repeat(false, words * WORD);
        bits[len..].fill(true);
        let mut full = BitVec::repeat(false, words.div_ceil(WORD) * WORD);
        // Summary padding: words that do not exist count as full.
        full[words..].fill(true);
        let mut map = Self { len, bits, full };
        for w in 0..words {
            map.refresh_summary(w);
        }
        map
    }

    pub(crate) fn get(&self, i: usize) -> bool {
        debug_assert!(i < self.len);
        self.bits[i]
    }

    /// Sets slot `i`; returns whether it was free before.
    pub(crate) fn set(&mut self, i: usize) -> bool {
        debug_assert!(i < self.len);
        let was = self.bits.replace(i, true);
        if !was {
            self.refresh_summary(i / WORD);
        }
        !was
    }

    /// Clears slot `i`; returns whether it was taken before.
    pub(crate) fn clear(&mut self, i: usize) -> bool {
        debug_assert!(i < self.len);
        let was = self.bits.replace(i, false);
        if was {
            self.full.set(i / WORD, false);
        }
        was
    }

    fn refresh_summary(&mut self, w: usize) {
        let is_full = self.bits.as_raw_slice()[w] == u64::MAX;
        self.full.set(w, is_full);
    }

    /// The lowest free slot at or after `from`, if any (no wrap-around).
    pub(crate) fn first_free_from(&self, from: usize) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        let words = self.bits.as_raw_slice();
        let w0 = from / WORD;
        // Partial first word: pretend the bits below `from` are taken.
        let below = (1u64 << (from % WORD)) - 1;
        let first = words[w0] | below;
        if first != u64::MAX {
            return self.in_range(w0 * WORD + first.trailing_ones() as usize);
        }
        let w = self.first_non_full_word_from(w0 + 1)?;
        self.in_range(w * WORD + words[w].trailing_ones() as usize)
    }

    fn in_range(&self, i: usize) -> Option<usize> {
        (i < self.len).then_some(i)
    }

    /// Index of the first data word at or after `w` that has a free bit.
    fn first_non_full_word_from(&self, w: usize) -> Option<usize> {
        let summary = self.full.as_raw_slice();
        let mut s = w / WORD;
        if s >= summary.len() {
            return None;
        }
        let below = (1u64 << (w % WORD)) - 1;
        let mut word = summary[s] | below;
        loop {
            if word != u64::MAX {
                return Some(s * WORD + word.trailing_ones() as usize);
            }
            s += 1;
            word = *summary.get(s)?;
        }
    }

    /// Set slots in ascending order.
    pub(crate) fn iter_set(&self) -> impl Iterator<Item = usize> + '_ {
        let len = self.len;
        self.bits
            .as_raw_slice()
            .iter()
            .enumerate()
            .flat_map(|(w, &word)| SetBits {
                word,
                base: w * WORD,
            })
            .take_while(move |&i| i < len)
    }

    /// Maximal runs of free slots, ascending, as inclusive `(first, last)` pairs.
    pub(crate) fn free_runs(&self) -> FreeRuns<'_> {
        FreeRuns { map: self, at: 0 }
    }

    /// The first taken slot at or after `from`, or `len`.
    fn first_set_from(&self, from: usize) -> usize {
        let words = self.bits.as_raw_slice();
        let mut w = from / WORD;
        let mut word = words[w] & !((1u64 << (from % WORD)) - 1);
        loop {
            if word != 0 {
                return (w * WORD + word.trailing_zeros() as usize).min(self.len);
            }
            w += 1;
            match words.get(w) {
                Some(&next) => word = next,
                None => return self.len,
            }
        }
    }

    /// Heap bytes held by the bitmap.
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.bits.capacity() + self.full.capacity()) / 8
    }
}

struct SetBits {
    word: u64,
    base: usize,
}

impl Iterator for SetBits {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.word == 0 {
            return None;
        }
        let bit = self.word.trailing_zeros() as usize;
        self.word &= self.word - 1;
        Some(self.base + bit)
    }
}

pub(crate) struct FreeRuns<'a> {
    map: &'a Bitmap,
    at: usize,
}

impl Iterator for FreeRuns<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let first = self.map.first_free_from(self.at)?;
        let end = self.map.first_set_from(first);
        self.at = end;
        Some((first, end - 1))
    }
}

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitmap")
            .field("len", &self.len)
            .field("set", &self.iter_set().count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_never_free() {
        for len in [1, 2, 63, 64, 65, 127, 128, 129, 4096, 4097] {
            let mut m = Bitmap::new(len);
            for i in 0..len {
                assert_eq!(m.first_free_from(0), Some(i), "len {len}");
                assert!(m.set(i));
            }
            assert_eq!(m.first_free_from(0), None, "len {len}");
            assert_eq!(m.iter_set().count(), len);
            assert_eq!(m.free_runs().count(), 0);
        }
    }

    #[test]
    fn summary_tracks_full_words_across_summary_boundaries() {
        // 64 * 64 + 1 words worth of slots: the summary spans two words.
        let len = WORD * WORD + 10;
        let mut m = Bitmap::new(len);
        for i in 0..len - 1 {
            m.set(i);
        }
        assert_eq!(m.first_free_from(0), Some(len - 1));
        m.clear(5);
        assert_eq!(m.first_free_from(0), Some(5));
        assert_eq!(m.first_free_from(6), Some(len - 1));
        assert_eq!(
            m.free_runs().collect::<Vec<_>>(),
            vec![(5, 5), (len - 1, len - 1)]
        );
    }

    #[test]
    fn first_free_from_respects_start() {
        let mut m = Bitmap::new(200);
        m.set(70);
        assert_eq!(m.first_free_from(70), Some(71));
        assert_eq!(m.first_free_from(199), Some(199));
        assert_eq!(m.first_free_from(200), None);
    }

    #[test]
    fn free_runs_split_on_taken_slots() {
        let mut m = Bitmap::new(130);
        for i in [0, 1, 64, 65, 66, 129] {
            m.set(i);
        }
        assert_eq!(m.free_runs().collect::<Vec<_>>(), vec![(2, 63), (67, 128)]);
        assert_eq!(
            m.iter_set().collect::<Vec<_>>(),
            vec![0, 1, 64, 65, 66, 129]
        );
    }
}
