//! Sets of ASCII bytes with fast searches, shared by the layers that scan text byte by byte
//! (the output detectors' runs, the input decoders' runs).

/// A set of ASCII bytes, as a 256-bit map, with up to four inclusive ranges kept for a fast
/// word-at-a-time skip in [`ByteSet::find`]. Bytes >= 0x80 are never members, so run
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

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

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

    /// The members among the 8 bytes of `w` (little-endian), as the top bit of each member
    /// byte: exact, since the ranges are ASCII and bytes >= 0x80 are never members.
    #[inline]
    fn word_members(&self, w: u64) -> u64 {
        let low7 = w & !HI;
        let mut hit = 0;
        for &(lo, hi) in &self.ranges[..usize::from(self.nranges)] {
            // Bytes b with lo <= b <= hi, for b < 0x80 (the classic "has between" test).
            // Per byte: b + (0x80 - lo) has its top bit set iff b >= lo, and
            // (0x80 + hi) - b has it set iff b <= hi; neither carries into the next byte.
            let above = low7.wrapping_add(LO * (0x80 - u64::from(lo)));
            let below = (LO * (0x80 + u64::from(hi))).wrapping_sub(low7);
            hit |= above & below;
        }
        hit & !w & HI
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
        if self.nranges > 0 {
            // Eight bytes at a time; the first member byte of a word is its lowest marked one.
            let mut words = hay.chunks_exact(8);
            for word in &mut words {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                let m = self.word_members(u64::from_le_bytes(w));
                if m != 0 {
                    return Some(from + i + (m.trailing_zeros() / 8) as usize);
                }
                i += 8;
            }
        }
        hay[i..]
            .iter()
            .position(|&b| self.has(b))
            .map(|p| p + from + i)
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
