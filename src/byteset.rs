//! Sets of ASCII bytes with fast searches, shared by the layers that scan text byte by byte
//! (the output detectors' runs, the input decoders' runs).

use crate::lanes::{Lanes, V};

/// A set of ASCII bytes, as a 256-bit map, with up to four inclusive ranges kept for a fast
/// sixteen-byte skip in [`ByteSet::find`]. Bytes >= 0x80 are never members, so run
/// boundaries always fall on UTF-8 character boundaries.
#[derive(Clone, Copy)]
pub struct ByteSet {
    map: [u64; 4],
    ranges: [(u8, u8); 4],
    /// Number of ranges in `ranges`, or 0 when the set has more than four.
    nranges: u8,
    /// The members when there are at most three, for a vectorized search ([`memchr`]).
    few: [u8; 3],
    /// Number of members in `few`, or 0 when the set has more than three.
    nfew: u8,
}

impl ByteSet {
    pub const fn empty() -> Self {
        ByteSet {
            map: [0; 4],
            ranges: [(0, 0); 4],
            nranges: 0,
            few: [0; 3],
            nfew: 0,
        }
    }

    /// Recomputes `few` from the map.
    const fn with_few(mut self) -> Self {
        let mut few = [0u8; 3];
        let mut n = 0usize;
        let mut c = 0u8;
        while c < 0x80 {
            if self.map[(c >> 6) as usize] & (1 << (c & 63)) != 0 {
                if n < 3 {
                    few[n] = c;
                }
                n += 1;
            }
            c += 1;
        }
        self.few = few;
        self.nfew = if n <= 3 { n as u8 } else { 0 };
        self
    }

    pub(crate) const fn with_range(mut self, lo: u8, hi: u8) -> Self {
        let mut c = lo;
        while c <= hi && c < 0x80 {
            self.map[(c >> 6) as usize] |= 1 << (c & 63);
            if c == hi {
                break;
            }
            c += 1;
        }
        self.with_few()
    }

    /// Builds a set from a compact description: single bytes and `a-z` style ranges.
    pub const fn from_spec(spec: &[u8]) -> Self {
        let mut set = ByteSet::empty();
        let mut ranges = [(0u8, 0u8); 4];
        let mut n = 0usize;
        let mut i = 0;
        while i < spec.len() {
            let (lo, hi) = if i + 2 < spec.len() && spec[i + 1] == b'-' {
                i += 3;
                (spec[i - 3], spec[i - 1])
            } else {
                i += 1;
                (spec[i - 1], spec[i - 1])
            };
            set = set.with_range(lo, hi);
            if n < 4 {
                ranges[n] = (lo, hi);
            }
            n += 1;
        }
        set.ranges = ranges;
        set.nranges = if n <= 4 { n as u8 } else { 0 };
        set
    }

    /// Every printable ASCII byte except the given ones.
    pub const fn printable_except(excluded: &[u8]) -> Self {
        let mut set = ByteSet::empty().with_range(b'!', b'~');
        let mut i = 0;
        while i < excluded.len() {
            let b = excluded[i];
            set.map[(b >> 6) as usize] &= !(1 << (b & 63));
            i += 1;
        }
        set.with_few()
    }

    /// Whether both sets have the same members.
    pub fn same(&self, other: &ByteSet) -> bool {
        self.map == other.map
    }

    /// The set as a 256-entry lookup table (one load per byte in a tight loop).
    pub const fn table(&self) -> [bool; 256] {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 0x80 {
            t[b] = self.map[b >> 6] & (1 << (b & 63)) != 0;
            b += 1;
        }
        t
    }

    #[inline]
    pub fn has(&self, b: u8) -> bool {
        self.map[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    /// Position of the first member in `bytes[from..]`.
    #[inline]
    pub fn find(&self, bytes: &[u8], from: usize) -> Option<usize> {
        let hay = bytes.get(from..)?;
        let [a, b, c] = self.few;
        let found = match self.nfew {
            1 => Some(memchr::memchr(a, hay)),
            2 => Some(memchr::memchr2(a, b, hay)),
            3 => Some(memchr::memchr3(a, b, c, hay)),
            _ => None,
        };
        if let Some(f) = found {
            return f.map(|p| p + from);
        }
        let mut i = 0;
        let ranges = self.ranges();
        if !ranges.is_empty() {
            // Sixteen bytes at a time; the first member of a block is its lowest marked lane.
            while let Some(block) = hay.get(i..i + 16) {
                let m = in_ranges(ranges, block);
                if m != 0 {
                    return Some(from + i + m.trailing_zeros() as usize);
                }
                i += 16;
            }
        }
        hay[i..]
            .iter()
            .position(|&b| self.has(b))
            .map(|p| p + from + i)
    }

    /// The set's ranges for the vector searches (none when it has more than four).
    fn ranges(&self) -> &[(u8, u8)] {
        &self.ranges[..usize::from(self.nranges)]
    }

    /// Where the members of this set stand in `bytes`, one bit a byte.
    pub fn bitmap(&self, bytes: &[u8]) -> Bitmap {
        let mut words = vec![0u64; bytes.len().div_ceil(64)];
        let mut i = 0;
        let ranges = self.ranges();
        if !ranges.is_empty() {
            for (word, block) in words.iter_mut().zip(bytes.chunks_exact(64)) {
                *word = (0..4).fold(0u64, |w, k| {
                    w | u64::from(in_ranges(ranges, &block[16 * k..])) << (16 * k)
                });
                i += 64;
            }
        }
        for (p, &b) in bytes.iter().enumerate().skip(i) {
            if self.has(b) {
                words[p / 64] |= 1 << (p % 64);
            }
        }
        Bitmap(words)
    }

    /// Whether every member of this set is a member of `other`.
    pub fn within(&self, other: &ByteSet) -> bool {
        self.map.iter().zip(&other.map).all(|(a, b)| a & !b == 0)
    }
}

/// The lanes of the first sixteen bytes of `bytes` holding a byte of one of `ranges`.
/// Always inlined: as a call, [`ByteSet::find`]'s loop ran 6% more instructions on a stream
/// of 16-byte pieces.
#[inline(always)]
fn in_ranges(ranges: &[(u8, u8)], bytes: &[u8]) -> u32 {
    let block = V::load(bytes);
    ranges
        .iter()
        .fold(V::splat(0), |m, &(lo, hi)| m.or(block.in_range(lo, hi)))
        .mask()
}

/// Positions in a text, one bit each: built once, it answers "the next member at or after a
/// point" with a few word tests however many detectors ask, where each asking would otherwise
/// search the bytes again.
pub struct Bitmap(Vec<u64>);

impl Bitmap {
    /// No position marked, for a text of `len` bytes.
    pub fn empty(len: usize) -> Bitmap {
        Bitmap(vec![0; len.div_ceil(64)])
    }

    /// How many positions of `from..to` are marked.
    pub fn count(&self, from: usize, to: usize) -> usize {
        self.words(from, to)
            .map(|(_, w)| w.count_ones() as usize)
            .sum()
    }

    /// Marks the positions of `from..to` that `other` marks.
    pub fn copy_from(&mut self, other: &Bitmap, from: usize, to: usize) {
        for (k, w) in other.words(from, to) {
            if let Some(x) = self.0.get_mut(k) {
                *x |= w;
            }
        }
    }

    /// The words holding `from..to`, by index, with the positions outside it cleared.
    fn words(&self, from: usize, to: usize) -> impl Iterator<Item = (usize, u64)> + '_ {
        let to = to.min(self.0.len() * 64);
        let first = from / 64;
        let last = to.div_ceil(64);
        (first..last.max(first)).filter_map(move |k| {
            let mut w = *self.0.get(k)?;
            if k == from / 64 {
                w &= !0u64 << (from % 64);
            }
            if k + 1 == last && !to.is_multiple_of(64) {
                w &= !(!0u64 << (to % 64));
            }
            Some((k, w))
        })
    }

    /// The first position at or after `from` that begins `n` marked positions in a row
    /// (`n` from 1 to 64; more reads as 64).
    pub fn next_row(&self, from: usize, n: usize) -> Option<usize> {
        let mut k = from / 64;
        let mut mask = !0u64 << (from % 64);
        loop {
            let w = *self.0.get(k)?;
            let next = self.0.get(k + 1).copied().unwrap_or(0);
            // Bit p stays set while positions p..p+s are all marked.
            let mut m = w & mask;
            for s in 1..n.min(64) {
                if m == 0 {
                    break;
                }
                m &= (w >> s) | (next << (64 - s));
            }
            if m != 0 {
                return Some(k * 64 + m.trailing_zeros() as usize);
            }
            k += 1;
            mask = !0;
        }
    }

    /// The first marked position at or after `from`.
    #[inline]
    pub fn next(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut bits = *self.0.get(w)? & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                return Some(w * 64 + bits.trailing_zeros() as usize);
            }
            w += 1;
            bits = *self.0.get(w)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fast_find_equals_naive(hay in prop::collection::vec(any::<u8>(), 0..200), from in 0usize..210, pick in 0usize..7) {
            let sets = [
                ByteSet::from_spec(b"0-9"),
                ByteSet::from_spec(b"@"),
                ByteSet::from_spec(b"=:>"),
                ByteSet::from_spec(b"=:"),
                ByteSet::from_spec(b"A-Z0-9 "),
                ByteSet::from_spec(b"A-Za-z0-9._%+@-"),
                ByteSet::printable_except(b"\"'"),
            ];
            let set = &sets[pick];
            let naive = hay.get(from..).and_then(|h| h.iter().position(|&b| set.has(b)).map(|p| p + from));
            prop_assert_eq!(set.find(&hay, from), naive);
        }

        #[test]
        fn bitmap_next_equals_find(hay in prop::collection::vec(prop::sample::select(b"0123456789 ax.-AZ\xc3()+/".to_vec()), 0..300), pick in 0usize..5) {
            let sets = [
                ByteSet::from_spec(b"0-9"),
                ByteSet::from_spec(b"A-Z0-9 "),
                ByteSet::from_spec(b"-"),
                ByteSet::from_spec(b"0-9 ()+.-"),
                ByteSet::printable_except(b"\"'"),
            ];
            let set = &sets[pick];
            let map = set.bitmap(&hay);
            for from in 0..hay.len() + 70 {
                prop_assert_eq!(map.next(from), set.find(&hay, from), "from {}", from);
            }
        }

        /// Counting and copying a range of a map, and finding rows of `n` marked positions,
        /// agree with doing it position by position. Texts are mostly marked, so that rows
        /// cross word boundaries.
        #[test]
        fn bitmap_ranges_equal_naive(
            hay in prop::collection::vec(prop::sample::select(b"000a".to_vec()), 0..300),
            from in 0usize..320,
            to in 0usize..320,
            n in 1usize..70,
        ) {
            let map = ByteSet::from_spec(b"0-9").bitmap(&hay);
            let marked = |p: usize| hay.get(p) == Some(&b'0');
            prop_assert_eq!(map.count(from, to), (from..to).filter(|&p| marked(p)).count());
            // Copies add to what is marked already.
            let mut copy = Bitmap::empty(hay.len());
            copy.copy_from(&map, 0, 1);
            copy.copy_from(&map, from, to);
            for p in 0..hay.len() {
                let want = (p == 0 || (from..to).contains(&p)) && marked(p);
                prop_assert_eq!(copy.next(p) == Some(p), want, "at {}", p);
            }
            let row = |p: usize| (p..p + n.min(64)).all(marked);
            prop_assert_eq!(map.next_row(from, n), (from..hay.len()).find(|&p| row(p)));
        }
    }

    #[test]
    fn specs() {
        let email = ByteSet::from_spec(b"A-Za-z0-9._%+@-");
        for b in b"az09._%+@-AZ".iter() {
            assert!(email.has(*b));
        }
        assert!(!email.has(b' ') && !email.has(b'/') && !email.has(0xc3));
        assert_eq!(ByteSet::from_spec(b"0-9").nranges, 1);
        let t = email.table();
        assert!((0..=255u8).all(|b| t[usize::from(b)] == email.has(b)));
    }
}
