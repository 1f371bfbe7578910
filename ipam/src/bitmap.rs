//! A fixed-size bitmap with summary levels, so searches skip full words at every scale.
//!
//! Bit `i` set means "slot `i` is taken". Each level is padded to whole 64-bit words and the
//! padding bits are kept set, so a search never special-cases a tail. Above the data level,
//! level `k + 1` holds one bit per word of level `k`, set when that word is full; the top level
//! is a single word. Finding a free slot walks up until a level has a non-full word after the
//! start point, then straight down: at most two word reads per level, four levels for a /8,
//! whatever the fill pattern.
//!
//! Memory: `n / 8` bytes for the data plus 1/64 of that for each summary level, about 1.6 %
//! over the one-bit-per-address limit.

use bitvec::prelude::{BitVec, Lsb0};

const WORD: usize = u64::BITS as usize;

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Bitmap {
    /// Number of real slots; bits at `len..` are padding and always set.
    len: usize,
    /// `levels[0]` is the data; `levels[k + 1]` bit `w` is set when `levels[k]` word `w` is
    /// `u64::MAX`. The last level has exactly one word.
    levels: Vec<BitVec<u64, Lsb0>>,
}

/// A level of `bits` real bits, padded with set bits to whole words.
fn padded(bits: usize) -> BitVec<u64, Lsb0> {
    let words = bits.div_ceil(WORD).max(1);
    let mut v = BitVec::repeat(false, words * WORD);
    v[bits..].fill(true);
    v
}

fn words(level: &BitVec<u64, Lsb0>) -> &[u64] {
    level.as_raw_slice()
}

impl Bitmap {
    /// A bitmap of `len` free slots.
    pub(crate) fn new(len: usize) -> Self {
        let mut levels = vec![padded(len)];
        while words(levels.last().expect("at least the data level")).len() > 1 {
            let below = levels.last().expect("at least the data level");
            let mut level = padded(words(below).len());
            for (w, &word) in words(below).iter().enumerate() {
                level.set(w, word == u64::MAX);
            }
            levels.push(level);
        }
        Self { len, levels }
    }

    pub(crate) fn get(&self, i: usize) -> bool {
        debug_assert!(i < self.len);
        self.levels[0][i]
    }

    /// Sets slot `i`; returns whether it was free before.
    pub(crate) fn set(&mut self, i: usize) -> bool {
        debug_assert!(i < self.len);
        if self.levels[0].replace(i, true) {
            return false;
        }
        // Propagate "this word is now full" upwards as far as it goes.
        let mut bit = i;
        for k in 0..self.levels.len() - 1 {
            let w = bit / WORD;
            if words(&self.levels[k])[w] != u64::MAX {
                break;
            }
            self.levels[k + 1].set(w, true);
            bit = w;
        }
        true
    }

    /// Clears slot `i`; returns whether it was taken before.
    pub(crate) fn clear(&mut self, i: usize) -> bool {
        debug_assert!(i < self.len);
        if !self.levels[0].replace(i, false) {
            return false;
        }
        // The word holding `i` is no longer full, nor is any summary word above it.
        let mut bit = i;
        for k in 1..self.levels.len() {
            bit /= WORD;
            if !self.levels[k].replace(bit, false) {
                break;
            }
        }
        true
    }

    /// The lowest free slot at or after `from`, if any (no wrap-around).
    pub(crate) fn first_free_from(&self, from: usize) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        self.first_zero(0, from).filter(|&i| i < self.len)
    }

    /// The first clear bit at or after `from` in level `k`.
    fn first_zero(&self, k: usize, from: usize) -> Option<usize> {
        let level = words(&self.levels[k]);
        let w = from / WORD;
        let word = *level.get(w)? | ((1u64 << (from % WORD)) - 1);
        if word != u64::MAX {
            return Some(w * WORD + word.trailing_ones() as usize);
        }
        if k + 1 == self.levels.len() {
            return None; // the top level is one word
        }
        let next = self.first_zero(k + 1, w + 1)?;
        Some(next * WORD + level[next].trailing_ones() as usize)
    }

    /// Set slots in ascending order.
    pub(crate) fn iter_set(&self) -> impl Iterator<Item = usize> + '_ {
        let len = self.len;
        words(&self.levels[0])
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
        let data = words(&self.levels[0]);
        let mut w = from / WORD;
        let mut word = data[w] & !((1u64 << (from % WORD)) - 1);
        loop {
            if word != 0 {
                return (w * WORD + word.trailing_zeros() as usize).min(self.len);
            }
            w += 1;
            match data.get(w) {
                Some(&next) => word = next,
                None => return self.len,
            }
        }
    }

    /// Heap bytes held by the bitmap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.levels.iter().map(BitVec::capacity).sum::<usize>() / 8
            + self.levels.capacity() * std::mem::size_of::<BitVec<u64, Lsb0>>()
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
    fn summaries_track_full_words_across_levels() {
        // Three levels: the first summary spans more than one word.
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

    /// Every summary bit must say exactly whether the word below it is full.
    fn assert_consistent(m: &Bitmap) {
        for k in 0..m.levels.len() - 1 {
            for (w, &word) in words(&m.levels[k]).iter().enumerate() {
                assert_eq!(
                    m.levels[k + 1][w],
                    word == u64::MAX,
                    "level {} word {w}",
                    k + 1
                );
            }
        }
        assert_eq!(words(m.levels.last().unwrap()).len(), 1);
    }

    #[test]
    fn four_levels_find_a_single_hole_anywhere() {
        let len = WORD * WORD * WORD + 5; // data, three summaries
        let mut m = Bitmap::new(len);
        assert_eq!(m.levels.len(), 4);
        for i in 0..len {
            m.set(i);
        }
        assert_consistent(&m);
        assert_eq!(m.first_free_from(0), None);
        for hole in [0, 63, 64, 4095, 4096, 262_143, len - 1, 100_000] {
            assert!(m.clear(hole));
            assert_consistent(&m);
            assert_eq!(m.first_free_from(0), Some(hole), "hole {hole}");
            assert_eq!(m.first_free_from(hole), Some(hole));
            assert_eq!(m.first_free_from(hole + 1), None);
            assert!(m.set(hole));
            assert_consistent(&m);
        }
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
