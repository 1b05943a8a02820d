//! Where the token detectors' leads may start, sixteen bytes at a time.
//!
//! Each lead is known by its first four bytes (three for a three-byte lead), its fingerprint.
//! The fingerprints are put in eight buckets, and for each of the four byte positions two
//! tables of sixteen say which buckets take a byte with a given low and a given high nibble.
//! Sixteen positions are tested at once by looking their bytes' nibbles up in the tables (one
//! lane shuffle each) and keeping the buckets that every position of the fingerprint takes:
//! a position left with a bucket may start a lead of that bucket, and every position that
//! starts a lead is left with its bucket. This is the idea of Hyperscan's Teddy, which the
//! `aho-corasick` crate uses natively on x86_64 and aarch64 but has no form of on wasm32,
//! where its search steps a DFA through every byte.
//!
//! The candidates are a superset: the caller checks each against the leads themselves.

use crate::lanes::Lookup;

/// The fingerprint tables.
#[derive(Debug, Clone)]
pub struct Fingerprints {
    /// Per byte position of the fingerprint: for each low nibble, the buckets taking it.
    lo: [[u8; 16]; WIDTH],
    /// The same for high nibbles.
    hi: [[u8; 16]; WIDTH],
}

/// Bytes in a fingerprint.
const WIDTH: usize = 4;
/// Leads shorter than this have no fingerprint.
pub const SHORTEST: usize = 3;
const BUCKETS: usize = 8;

impl Fingerprints {
    /// The tables for `leads` (`None` when one is shorter than [`SHORTEST`] bytes).
    ///
    /// Each fingerprint goes to the bucket it widens least: a bucket takes, at each position,
    /// every byte whose two nibbles it takes, so fingerprints sharing bytes and nibbles are
    /// best kept together, and unlike ones apart.
    pub fn new<'a>(leads: impl IntoIterator<Item = &'a [u8]>) -> Option<Fingerprints> {
        let mut prints: Vec<&[u8]> = Vec::new();
        for l in leads {
            if l.len() < SHORTEST {
                return None;
            }
            prints.push(&l[..l.len().min(WIDTH)]);
        }
        prints.sort_unstable();
        prints.dedup();
        let mut f = Fingerprints {
            lo: [[0; 16]; WIDTH],
            hi: [[0; 16]; WIDTH],
        };
        for p in prints {
            let best = (0..BUCKETS)
                .min_by_key(|&b| f.width(b, Some(p)).saturating_sub(f.width(b, None)))
                .unwrap_or(0);
            f.add(p, best);
        }
        Some(f)
    }

    fn add(&mut self, print: &[u8], bucket: usize) {
        let bit = 1u8 << bucket;
        for k in 0..WIDTH {
            match print.get(k) {
                Some(&b) => {
                    self.lo[k][usize::from(b & 15)] |= bit;
                    self.hi[k][usize::from(b >> 4)] |= bit;
                }
                // A three-byte lead: its bucket takes any fourth byte.
                None => {
                    for n in 0..16 {
                        self.lo[k][n] |= bit;
                        self.hi[k][n] |= bit;
                    }
                }
            }
        }
    }

    /// The buckets that take byte `b` at fingerprint position `k`.
    #[inline]
    fn takes(&self, k: usize, b: u8) -> u8 {
        self.lo[k][usize::from(b & 15)] & self.hi[k][usize::from(b >> 4)]
    }

    /// How often bucket `b` takes four bytes of text, by [`WEIGHTS`] (its share of false
    /// candidates), with fingerprint `print` added to it if given. At each position the
    /// bucket takes the bytes made of a low and a high nibble it takes.
    fn width(&self, b: usize, print: Option<&[u8]>) -> u64 {
        (0..WIDTH)
            .map(|k| {
                let (mut lows, mut highs) = (0u16, 0u16);
                for n in 0..16 {
                    lows |= u16::from(self.lo[k][n] >> b & 1) << n;
                    highs |= u16::from(self.hi[k][n] >> b & 1) << n;
                }
                match print.map(|p| p.get(k)) {
                    Some(Some(&c)) => {
                        lows |= 1 << (c & 15);
                        highs |= 1 << (c >> 4);
                    }
                    Some(None) => (lows, highs) = (!0, !0),
                    None => {}
                }
                let mut sum = 0;
                let mut hs = highs;
                while hs != 0 {
                    let h = hs.trailing_zeros() as usize;
                    let mut ls = lows;
                    while ls != 0 {
                        sum += WEIGHTS[h << 4 | ls.trailing_zeros() as usize];
                        ls &= ls - 1;
                    }
                    hs &= hs - 1;
                }
                sum
            })
            .product()
    }

    /// Calls `found(p)` for positions `p >= from` of `bytes` in increasing order: every one
    /// where a lead starts (all of it inside `bytes`), and some others.
    #[inline]
    pub fn candidates<L: Lookup>(&self, bytes: &[u8], from: usize, mut found: impl FnMut(usize)) {
        let lo = self.lo.map(|t| L::load(&t));
        let hi = self.hi.map(|t| L::load(&t));
        let nib = L::splat(15);
        let zero = L::splat(0);
        let mut p = from;
        // Sixteen positions at a time while their fingerprints lie inside `bytes`.
        while let Some(block) = bytes.get(p..p + 16 + WIDTH - 1) {
            let mut all = L::splat(0xff);
            for k in 0..WIDTH {
                let x = L::load(&block[k..]);
                let t = lo[k].lookup(x.and(nib)).and(hi[k].lookup(x.shr4()));
                all = all.and(t);
            }
            let mut m = !all.eq(zero).mask() & 0xffff;
            while m != 0 {
                found(p + m.trailing_zeros() as usize);
                m &= m - 1;
            }
            p += 16;
        }
        // The last positions one by one: a fingerprint's bytes past the end are not looked at
        // (no lead that needs them starts there).
        while p + SHORTEST <= bytes.len() {
            let tail = &bytes[p..bytes.len().min(p + WIDTH)];
            let b = tail
                .iter()
                .enumerate()
                .fold(0xff, |m, (k, &c)| m & self.takes(k, c));
            if b != 0 {
                found(p);
            }
            p += 1;
        }
    }
}

/// About how often each byte occurs in text, per mille: lower-case letters as in English,
/// the space, and a little for every other byte.
const WEIGHTS: [u64; 256] = {
    const LOWER: [u64; 26] = [
        82, 15, 28, 43, 127, 22, 20, 61, 70, 2, 8, 40, 24, 67, 75, 19, 1, 60, 63, 91, 28, 10, 24,
        2, 20, 1,
    ];
    let mut w = [2u64; 256];
    let mut c = 0;
    while c < 256 {
        w[c] = match c as u8 {
            b'a'..=b'z' => LOWER[c - b'a' as usize],
            b' ' => 150,
            b'A'..=b'Z' | b'0'..=b'9' => 8,
            b'_' | b'-' | b'.' | b':' | b'/' | b'(' | b')' | b'\n' => 10,
            _ => 2,
        };
        c += 1;
    }
    w
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lanes::{LookupLanes, Plain};
    use proptest::prelude::*;

    const LEADS: &[&str] = &[
        "AKIA",
        "A3T",
        "ghp_",
        "github_pat_",
        "xoxb-",
        "sk-",
        "sk-ant-",
        "eyJ",
        "https://hooks",
        "hf_",
        "SG.",
        "key-",
        "dapi",
    ];

    fn starts(bytes: &[u8], from: usize) -> Vec<usize> {
        (from..bytes.len())
            .filter(|&p| LEADS.iter().any(|l| bytes[p..].starts_with(l.as_bytes())))
            .collect()
    }

    fn candidates<V: Lookup>(f: &Fingerprints, bytes: &[u8], from: usize) -> Vec<usize> {
        let mut v = Vec::new();
        f.candidates::<V>(bytes, from, |p| v.push(p));
        v
    }

    /// Text made of pieces of leads, their neighbours in the nibble tables, and other bytes.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            3 => prop::sample::select(LEADS).prop_flat_map(|l| {
                (0..=l.len()).prop_map(move |n| l.as_bytes()[..n].to_vec())
            }),
            2 => prop::collection::vec(prop::sample::select(b"AKghsk-eyJ_3TtpxoHh.:/ ".to_vec()), 1..6),
            1 => prop::collection::vec(any::<u8>(), 1..4),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        /// Every lead start is a candidate, in increasing order and from `from` on, with the
        /// target's lanes and the plain ones alike.
        #[test]
        fn every_lead_start_is_a_candidate(t in text(), from in 0usize..50) {
            let f = Fingerprints::new(LEADS.iter().map(|l| l.as_bytes())).unwrap();
            let from = from.min(t.len());
            let want = starts(&t, from);
            let got = candidates::<LookupLanes>(&f, &t, from);
            prop_assert_eq!(&got, &candidates::<Plain>(&f, &t, from));
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(got.iter().all(|&p| p >= from));
            prop_assert!(want.iter().all(|p| got.contains(p)), "{:?} not in {:?}", want, got);
        }
    }

    #[test]
    fn leads_too_short_have_no_fingerprints() {
        assert!(Fingerprints::new([b"SK".as_slice()]).is_none());
        assert!(Fingerprints::new([b"SKx".as_slice()]).is_some());
    }

    /// Few false candidates on text without leads: the buckets keep unlike fingerprints apart.
    #[test]
    fn plain_text_gives_few_candidates() {
        let f = Fingerprints::new(LEADS.iter().map(|l| l.as_bytes())).unwrap();
        let t =
            "The quick brown fox jumps over the lazy dog; fn main() { let x = 42; } ".repeat(50);
        assert!(starts(t.as_bytes(), 0).is_empty());
        let n = candidates::<LookupLanes>(&f, t.as_bytes(), 0).len();
        assert!(n * 50 < t.len(), "{n} candidates in {} bytes", t.len());
    }
}
