//! Packed per-op arrays of the streaming checker: 2 bits per op (an
//! outcome, or how often a view holds the op) and 1 bit per op, on the heap
//! (tests, small arrays) or in a mapped temporary file ([`super::mapped`]).

use super::mapped::MappedWords;

/// Where an array's words are.
pub enum Words {
    Heap(Vec<u64>),
    Mapped(MappedWords),
}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Words::Heap(v) => write!(f, "Heap({} words)", v.len()),
            Words::Mapped(m) => write!(f, "Mapped({} words)", m.len()),
        }
    }
}

impl Default for Words {
    fn default() -> Self {
        Words::Heap(Vec::new())
    }
}

impl std::ops::Deref for Words {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        match self {
            Words::Heap(v) => v,
            Words::Mapped(m) => m,
        }
    }
}

impl std::ops::DerefMut for Words {
    fn deref_mut(&mut self) -> &mut [u64] {
        match self {
            Words::Heap(v) => v,
            Words::Mapped(m) => m,
        }
    }
}

/// 2-bit values by index, 32 to a word.
#[derive(Debug, Default)]
pub struct Bits2 {
    words: Words,
    len: usize,
}

impl Bits2 {
    /// Words for `len` values.
    pub fn words_for(len: usize) -> usize {
        len.div_ceil(32)
    }

    /// `len` values over `words` (as many as [`Bits2::words_for`] says).
    pub fn over(words: Words, len: usize) -> Bits2 {
        assert_eq!(words.len(), Self::words_for(len));
        Bits2 { words, len }
    }

    /// Every value set to `v`, a word at a time.
    pub fn fill(&mut self, v: u32) {
        assert!(v < 4);
        let word = (0..32).fold(0u64, |w, i| w | u64::from(v) << (2 * i));
        self.words.fill(word);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends a value (heap arrays only).
    #[cfg(test)]
    pub fn push(&mut self, v: u32) {
        if self.len.is_multiple_of(32) {
            let Words::Heap(words) = &mut self.words else { panic!("only a heap array grows") };
            words.push(0);
        }
        self.len += 1;
        self.set(self.len - 1, v);
    }

    pub fn get(&self, i: usize) -> u32 {
        assert!(i < self.len, "index {i} within {}", self.len);
        ((self.words[i / 32] >> (i % 32 * 2)) & 3) as u32
    }

    pub fn set(&mut self, i: usize, v: u32) {
        assert!(i < self.len && v < 4);
        let shift = i % 32 * 2;
        let w = &mut self.words[i / 32];
        *w = *w & !(3 << shift) | u64::from(v) << shift;
    }

    /// Raises the value at `i` by one, stopping at 2 ("two or more");
    /// returns the new value.
    pub fn bump(&mut self, i: usize) -> u32 {
        let v = (self.get(i) + 1).min(2);
        self.set(i, v);
        v
    }

    /// Indices whose value is not 0, in order, a word at a time.
    pub fn for_each_nonzero(&self, mut f: impl FnMut(usize, u32)) {
        for (w, word) in self.words.iter().enumerate() {
            let mut bits = (word | word >> 1) & 0x5555_5555_5555_5555;
            while bits != 0 {
                let j = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                f(w * 32 + j / 2, ((word >> j) & 3) as u32);
            }
        }
    }
}

/// One bit by index.
#[derive(Debug, Default)]
pub struct Bits1 {
    words: Words,
    len: usize,
}

impl Bits1 {
    /// Words for `len` bits.
    pub fn words_for(len: usize) -> usize {
        len.div_ceil(64)
    }

    /// `len` zeros on the heap.
    #[cfg(test)]
    pub fn with_len(len: usize) -> Bits1 {
        Bits1 { words: Words::Heap(vec![0; Self::words_for(len)]), len }
    }

    /// `len` bits over `words` (as many as [`Bits1::words_for`] says).
    pub fn over(words: Words, len: usize) -> Bits1 {
        assert_eq!(words.len(), Self::words_for(len));
        Bits1 { words, len }
    }

    pub fn get(&self, i: usize) -> bool {
        assert!(i < self.len);
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    pub fn set(&mut self, i: usize) {
        assert!(i < self.len);
        self.words[i / 64] |= 1 << (i % 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_bit_values_round_trip_and_scan() {
        let mut b = Bits2::default();
        for i in 0..100u32 {
            b.push(i % 3);
        }
        assert_eq!((0..100).map(|i| b.get(i)).collect::<Vec<_>>(), (0..100).map(|i| i as u32 % 3).collect::<Vec<_>>());
        assert_eq!(b.bump(0), 1);
        assert_eq!(b.bump(0), 2);
        assert_eq!(b.bump(0), 2);
        let mut seen = Vec::new();
        b.for_each_nonzero(|i, v| seen.push((i, v)));
        let want: Vec<(usize, u32)> = (0..100).map(|i| (i, b.get(i))).filter(|(_, v)| *v != 0).collect();
        assert_eq!(seen, want);
        let mut one = Bits1::with_len(130);
        one.set(129);
        one.set(0);
        assert!(one.get(0) && one.get(129) && !one.get(64));
    }
}
