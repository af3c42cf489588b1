//! `--shard I/N`: one of N disjoint parts of a suite, so a CI system's job
//! matrix can spread a suite over machines (each job runs `jetsam suite DIR
//! --shard I/N --out OUT_I`, then `jetsam merge OUT_1 ... OUT_N` joins them).
//!
//! The split is by position in name order: the k-th scenario file (0-based,
//! sorted by file name) belongs to shard `k mod N + 1`. Every job of a matrix
//! runs the same commit, so they all see the same files in the same order:
//! the shards are disjoint, together cover the suite, and their sizes differ
//! by at most one (a hash of the name would be as stable but can leave one
//! shard with most of a small suite). jetsam needs no coordinator: the CI
//! system is the distributed engine.

use std::fmt;
use std::str::FromStr;

/// Shards at most (a bound on the matrix, not on the machine).
pub const SHARDS_MAX: u32 = 1024;

/// Shard `index` of `count`, 1-based: `1/1` is the whole suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole suite.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether the item at `position` (0-based, in name order) is this shard's.
    pub fn holds(&self, position: usize) -> bool {
        position % self.count as usize == (self.index - 1) as usize
    }

    /// This shard's items of `items` (already in name order).
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items.iter().enumerate().filter(|(k, _)| self.holds(*k)).map(|(_, t)| t.clone()).collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("failed to read shard {s:?}: expected I/N with 1 <= I <= N <= {SHARDS_MAX}, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count || count > SHARDS_MAX {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_i_of_n() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("1/1".parse::<Shard>().unwrap().to_string(), "1/1");
        for bad in ["0/4", "5/4", "4", "a/b", "1/0", "", "1/2/3", "-1/2", "1/1025"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("expected I/N"), "{bad}: {e}");
        }
    }

    /// For every suite size and shard count: the shards are disjoint, cover
    /// every item, and their sizes differ by at most one.
    #[test]
    fn shards_are_disjoint_cover_the_suite_and_are_balanced() {
        for items in 0..40usize {
            let suite: Vec<usize> = (0..items).collect();
            for count in 1..=12u32 {
                let shards: Vec<Vec<usize>> = (1..=count).map(|index| Shard { index, count }.select(&suite)).collect();
                let mut all: Vec<usize> = shards.iter().flatten().copied().collect();
                all.sort();
                assert_eq!(all, suite, "{items} items, {count} shards: each item exactly once");
                let sizes: Vec<usize> = shards.iter().map(Vec::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{items} items, {count} shards: sizes {sizes:?}");
            }
        }
    }
}
