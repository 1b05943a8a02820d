//! A few words searched in any ASCII letter case, for the leftmost start of one of them: the
//! context words of the output detectors (`pass`, `token`, `key`, ... before an assigned
//! secret).
//!
//! Such words begin with common letters. An automaton's prefilter then has no rare byte to skip
//! by and walks every byte through its states (about 2 ns a byte natively), and on code and
//! prose the secret-assignment detector spent most of its time there. Words that begin with
//! three letters are found here by those letters instead, 16 positions at a time: a position is
//! a candidate when its three bytes, with case folded, are among the words' first, second and
//! third letters (vector compares on [`crate::lanes`]); each candidate is checked against the
//! exact trigrams, then compared whole. `b | 0x20` is a lower-case letter only when `b` is a
//! letter of either case, so the folding lets nothing else through. A single such word is found
//! the same way by its three letters alone: the automaton's prefilter looked for its rarest
//! byte, the `w` of `aws`, which in English is not rare. Any other word list keeps the
//! automaton.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::lanes::{Lanes, V};

/// At most this many distinct letters per position take the vector path.
const MAX_LETTERS: usize = 8;

pub enum Words {
    Automaton(AhoCorasick),
    Letters(Box<Trigrams>),
    Single(Single),
}

/// One word that begins with three letters (`aws`): its first three letters, compared in all
/// lanes at once. An automaton's prefilter would look for its rarest byte, and in English a
/// `w` is not rare.
pub struct Single {
    /// The lower-case word.
    word: Vec<u8>,
    letters: [V; 3],
}

pub struct Trigrams {
    /// Lower-case words.
    words: Vec<Vec<u8>>,
    /// The distinct lower-case letters at positions 0, 1 and 2 of the words, each in all
    /// lanes, built once. Unused slots hold 0, which no folded byte (`| 0x20`) equals: the
    /// search's loops have a fixed length and unroll.
    letters: [[V; MAX_LETTERS]; 3],
    /// Bit [`trigram`] of each word's first three letters.
    table: [u64; 512],
}

/// Five bits per lower-case letter.
#[inline]
fn trigram(a: u8, b: u8, c: u8) -> usize {
    usize::from(a & 0x1f) << 10 | usize::from(b & 0x1f) << 5 | usize::from(c & 0x1f)
}

impl Words {
    /// `None` when there is no word, or the automaton does not build.
    pub fn new(words: &[&str]) -> Option<Words> {
        if words.is_empty() {
            return None;
        }
        let lettered = words
            .iter()
            .all(|w| w.len() >= 3 && w.bytes().take(3).all(|b| b.is_ascii_alphabetic()));
        if let ([w], true) = (words, lettered) {
            let word = w.to_ascii_lowercase().into_bytes();
            let letters = [V::splat(word[0]), V::splat(word[1]), V::splat(word[2])];
            return Some(Words::Single(Single { word, letters }));
        }
        if words.len() > 1 && lettered {
            let words: Vec<Vec<u8>> = words
                .iter()
                .map(|w| w.to_ascii_lowercase().into_bytes())
                .collect();
            let mut distinct: [Vec<u8>; 3] = Default::default();
            let mut table = [0u64; 512];
            for w in &words {
                for (k, set) in distinct.iter_mut().enumerate() {
                    if !set.contains(&w[k]) {
                        set.push(w[k]);
                    }
                }
                let t = trigram(w[0], w[1], w[2]);
                table[t >> 6] |= 1 << (t & 63);
            }
            if distinct.iter().all(|s| s.len() <= MAX_LETTERS) {
                let letters = distinct.each_ref().map(|s| {
                    let mut v = [V::splat(0); MAX_LETTERS];
                    for (x, &b) in v.iter_mut().zip(s) {
                        *x = V::splat(b);
                    }
                    v
                });
                return Some(Words::Letters(Box::new(Trigrams {
                    words,
                    letters,
                    table,
                })));
            }
        }
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(words)
            .ok()
            .map(Words::Automaton)
    }

    /// Start of the leftmost occurrence of a word in `hay`.
    pub fn find(&self, hay: &[u8]) -> Option<usize> {
        match self {
            Words::Automaton(ac) => ac.find(hay).map(|m| m.start()),
            Words::Letters(t) => t.find(hay),
            Words::Single(w) => w.find(hay),
        }
    }

    pub fn is_match(&self, hay: &[u8]) -> bool {
        self.find(hay).is_some()
    }
}

impl Trigrams {
    /// Whether a word starts at `i` (`i + 2 < hay.len()`), given nothing about the bytes.
    #[inline]
    fn at(&self, hay: &[u8], i: usize) -> bool {
        let (a, b, c) = (hay[i] | 0x20, hay[i + 1] | 0x20, hay[i + 2] | 0x20);
        let t = trigram(a, b, c);
        a.is_ascii_lowercase()
            && b.is_ascii_lowercase()
            && c.is_ascii_lowercase()
            && self.table[t >> 6] & (1 << (t & 63)) != 0
            && self.words.iter().any(|w| {
                hay.get(i..i + w.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(w))
            })
    }

    fn find(&self, hay: &[u8]) -> Option<usize> {
        match vector::find(self, hay) {
            Scan::Found(p) => Some(p),
            Scan::From(from) => self.find_from(hay, from),
        }
    }

    /// Every position from `from` on in turn: the tail after the vector blocks, and the
    /// reference the tests hold the vector search to.
    fn find_from(&self, hay: &[u8], from: usize) -> Option<usize> {
        (from..hay.len().saturating_sub(2)).find(|&i| self.at(hay, i))
    }
}

impl Single {
    /// Whether the word starts at `i`.
    #[inline]
    fn at(&self, hay: &[u8], i: usize) -> bool {
        hay.get(i..i + self.word.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(&self.word))
    }

    fn find(&self, hay: &[u8]) -> Option<usize> {
        let fold = V::splat(0x20);
        let mut i = 0;
        // Positions i..i + 16 read bytes up to i + 18. `b | 0x20` equals a lower-case letter
        // only when `b` is that letter in either case.
        while let Some(block) = hay.get(i..i + 18) {
            let m = V::load(block)
                .or(fold)
                .eq(self.letters[0])
                .and(V::load(&block[1..]).or(fold).eq(self.letters[1]))
                .and(V::load(&block[2..]).or(fold).eq(self.letters[2]));
            let mut m = m.mask();
            while m != 0 {
                let p = i + m.trailing_zeros() as usize;
                if self.at(hay, p) {
                    return Some(p);
                }
                m &= m - 1;
            }
            i += 16;
        }
        (i..hay.len()).find(|&p| self.at(hay, p))
    }
}

/// What the vector search leaves to the scalar loop.
enum Scan {
    /// A word starts here.
    Found(usize),
    /// No word starts before this position.
    From(usize),
}

/// The vector search over whole blocks of 16 positions.
mod vector {
    use super::{Scan, Trigrams, MAX_LETTERS};
    use crate::lanes::{Lanes, V};

    pub fn find(t: &Trigrams, hay: &[u8]) -> Scan {
        let sets = &t.letters;
        let fold = V::splat(0x20);
        let member = |x: V, set: &[V; MAX_LETTERS]| {
            let x = x.or(fold);
            set.iter().fold(V::splat(0), |m, &l| m.or(x.eq(l)))
        };
        let mut i = 0;
        // Positions i..i + 16 read bytes up to i + 18.
        while let Some(block) = hay.get(i..i + 18) {
            let m = member(V::load(block), &sets[0])
                .and(member(V::load(&block[1..]), &sets[1]))
                .and(member(V::load(&block[2..]), &sets[2]));
            let mut m = m.mask();
            while m != 0 {
                let p = i + m.trailing_zeros() as usize;
                if t.at(hay, p) {
                    return Scan::Found(p);
                }
                m &= m - 1;
            }
            i += 16;
        }
        Scan::From(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The secret-assignment detectors' words.
    const NAMES: &[&str] = crate::output::rules::secrets::SECRET_NAME_WORDS;

    fn naive(words: &[&str], hay: &[u8]) -> Option<usize> {
        (0..hay.len()).find(|&i| {
            words.iter().any(|w| {
                hay.get(i..i + w.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(w.as_bytes()))
            })
        })
    }

    #[test]
    fn lists_take_the_letter_search_or_the_automaton() {
        assert!(matches!(Words::new(NAMES), Some(Words::Letters(_))));
        assert!(matches!(Words::new(&["aws"]), Some(Words::Single(_))));
        assert!(matches!(Words::new(&["://"]), Some(Words::Automaton(_))));
        assert!(matches!(
            Words::new(&["ss", "social"]),
            Some(Words::Automaton(_))
        ));
        assert!(Words::new(&[]).is_none());
    }

    /// Every word at every offset of the first blocks, after near misses, in both cases: each
    /// lane of the vector search and the scalar tail after it.
    #[test]
    fn finds_a_word_at_every_offset() {
        let words = Words::new(NAMES).unwrap();
        let filler = b"pa-sEc tok_Ke aU cRe pw 0=";
        for word in NAMES {
            for upper in [false, true] {
                let w = if upper {
                    word.to_ascii_uppercase()
                } else {
                    word.to_string()
                };
                for off in 0..70 {
                    for tail in [0, 1, 17] {
                        let mut hay: Vec<u8> = filler.iter().cycle().take(off).copied().collect();
                        hay.extend_from_slice(w.as_bytes());
                        hay.extend(filler.iter().cycle().take(tail));
                        assert_eq!(words.find(&hay), naive(NAMES, &hay), "{hay:?}");
                        assert_eq!(words.find(&hay), Some(off), "{hay:?}");
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn finds_the_leftmost_word_in_any_case(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "pass", "PaSs", "pas", "pwd", "PWD", "secre", "SECRET", "token", "tok",
                    "key", "kEy", "ke", "auth", "AUT", "credential", "Credentia", "a", "k",
                    "aws", "AwS", "aW", "w", "tOKEN",
                    "s", " ", "=", "x", "0", "\u{e9}", "\u{c0}", "@", "[", "`", "{",
                ]),
                0..60,
            ),
            list in 0usize..4,
        ) {
            let hay = parts.concat();
            let lists: [&[&str]; 4] = [NAMES, &["aws"], &["ss", "social"], &["token"]];
            let words = Words::new(lists[list]).unwrap();
            prop_assert_eq!(words.find(hay.as_bytes()), naive(lists[list], hay.as_bytes()));
            if let Words::Letters(t) = &words {
                prop_assert_eq!(t.find_from(hay.as_bytes(), 0), t.find(hay.as_bytes()));
            }
        }

        #[test]
        fn every_byte_folds_exactly(hay in prop::collection::vec(any::<u8>(), 0..80)) {
            let words = Words::new(NAMES).unwrap();
            prop_assert_eq!(words.find(&hay), naive(NAMES, &hay));
        }
    }
}
