//! The matching machinery behind the output detectors.
//!
//! Every detector answers one question: "starting at `from`, where is the first value of mine,
//! and can that already be decided from the text seen so far?" The answer is a [`Step`]. The
//! same code serves the one-shot scan (`eof = true`) and the streaming redactor (`eof = false`
//! until the stream ends), which is what makes the two agree for every way of splitting the text.
//!
//! Values are found inside *runs*: maximal stretches of bytes of a detector's character class
//! (for example `[A-Za-z0-9._%+@-]` for e-mail addresses). A run is complete once a byte outside
//! the class follows it, so a detector's verdict on a complete run never changes when more text
//! arrives. Runs longer than the chop length are cut into pieces counted from the run's start, so
//! that the text held back waiting for a run to end stays bounded. Token detectors (API keys,
//! JWTs) are not chopped: once a token's prefix proves it is a secret, the rest of its run is
//! suppressed as it arrives, however long it is.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::{dfa::DFA, AhoCorasick, AhoCorasickBuilder, Anchored, MatchKind, StartKind};
use regex_lite::Regex;

use super::shapes::{finder, Finder};
use super::words::Words;
pub use crate::byteset::{Bitmap, ByteSet};

/// What a detector knows about the text from a position on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A value at `start..end`; final.
    Match { start: usize, end: usize },
    /// A value starts at `start` (final) and ends where `end` says, looking from `scan`;
    /// the end is not known yet.
    Open {
        start: usize,
        end: OpenEnd,
        scan: usize,
    },
    /// No value starts before `safe`. Scanning resumes at `resume` (a run start, `<= safe`);
    /// `skip` means `resume` lies inside a run already known to hold no value.
    Wait {
        resume: usize,
        safe: usize,
        skip: bool,
    },
}

/// How the end of an open value is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenEnd {
    /// At the first byte outside the detector's class.
    RunEnd,
    /// After a PEM `-----END ...-----` line.
    PemEnd,
}

/// Three-way answer for a token prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    Yes,
    No,
    NeedMore,
}

/// A pattern the text right before a value must (or must not) end with.
///
/// A look-back pattern ends in `$`. Searched forward, the regex engine starts a thread at every
/// byte of the look-back, and with a large pattern (secret names under three kinds of
/// assignment) that costs tens of microseconds per value. Given reversed, the pattern is
/// matched anchored at the start of the reversed look-back: only threads that fit the text's
/// end are followed, and most die within a few bytes. Each reversed pattern in the rules has a
/// property test against its forward form.
pub struct Lookback {
    regex: Regex,
    reversed: bool,
}

impl Lookback {
    /// A pattern ending in `$`, searched forward.
    pub fn forward(regex: Regex) -> Self {
        Lookback {
            regex,
            reversed: false,
        }
    }

    /// The reverse of a pattern ending in `$`: it begins with `^` and reads the look-back from
    /// its last character back.
    pub fn reversed(regex: Regex) -> Self {
        Lookback {
            regex,
            reversed: true,
        }
    }

    /// Whether `before` ends with the pattern.
    pub fn is_match(&self, before: &str) -> bool {
        if self.reversed {
            let back: String = before.chars().rev().collect();
            self.regex.is_match(&back)
        } else {
            self.regex.is_match(before)
        }
    }
}

/// A detector over runs whose value is confirmed by a regex and an optional validator.
pub struct RegexRun {
    pub class: ByteSet,
    /// Runs begin at the first byte of this set within a class stretch.
    pub start: ByteSet,
    /// A run is only examined if it contains one of these bytes.
    pub trigger: Option<ByteSet>,
    /// Finds values in a run piece; `None`: the whole piece is the only candidate value.
    pub regex: Option<Regex>,
    /// The hand-written equivalent of `regex` ([`super::shapes`]), used for whole matches.
    finder: Option<Finder>,
    /// Capture group that is the value (0 = whole match).
    pub group: usize,
    pub validate: fn(&str) -> bool,
    /// Optional look-back: the value only counts if the text before the run matches this.
    pub context: Option<Lookback>,
    /// Words (any ASCII case) one of which every match of `context` contains: a look-back
    /// without any of them is rejected before any regex runs.
    pub context_words: Option<Words>,
    /// A value of this detector stays open after its match, e.g. a PEM header.
    pub open_end: Option<OpenEnd>,
    /// If set, a run piece is only examined if it holds one of these words (any ASCII case): a
    /// cheap filter before the regex (built-in rules' name words, custom detectors' keywords).
    pub keywords: Option<Words>,
    /// The value may not touch an ASCII letter or digit on either side in the text.
    pub bounded: bool,
    /// Run pieces shorter than this cannot hold a value and are skipped.
    pub min_len: usize,
    /// Run pieces with fewer ASCII digits than this cannot hold a value and are skipped.
    pub min_digits: usize,
    /// How every value begins, when that is rarer than digits: runs then begin at heads
    /// and reach no further than a value can ([`Head`]).
    pub head: Option<Head>,
    /// With a look-back context: the last byte before the run (past blanks and quotes) must
    /// be one of these. A cheap test that spares the context regex on most runs.
    pub context_gate: Option<ByteSet>,
    /// The value does not count if the text right before it (look-back and run) matches this.
    pub context_deny: Option<Lookback>,
    /// When a match fails validation, try it again without trailing groups (cut at a space,
    /// dash or dot): "4111 1111 1111 1111 2023" still holds a card number.
    pub shrink: bool,
}

/// The beginning every value of a number detector has: `letters` bytes of `before`, then
/// `digits` ASCII digits in a row (an IBAN's country code and check digits). Such heads are
/// found from the digit map's rows of digits, far fewer in code than stretches with digits.
/// `before` holds no digit, and the head's digits are all the value needs
/// ([`RegexRun::min_digits`]).
#[derive(Clone, Copy)]
pub struct Head {
    pub before: ByteSet,
    pub letters: usize,
    /// From 1 to 64.
    pub digits: usize,
    /// How far a value reaches from the start of its head, at most. A run begins at a head
    /// and ends at its reach, at its class stretch's end or at the detector's `chop`,
    /// whichever comes first.
    pub reach: usize,
}

/// Whether position `p` of `bytes` begins a word: no letter or digit stands before it (as
/// far as the text shows).
fn begins_word(bytes: &[u8], p: usize) -> bool {
    p == 0 || !bytes[p - 1].is_ascii_alphanumeric()
}

impl Head {
    /// Where a head that is not whole yet may begin at the end of `bytes`: the first tail
    /// that reads as the beginning of one (with `word`, at the start of a word), or the end.
    fn tail(&self, bytes: &[u8], word: bool) -> usize {
        let len = bytes.len();
        ((len + 1).saturating_sub(self.letters + self.digits)..len)
            .find(|&q| {
                (!word || begins_word(bytes, q))
                    && bytes[q..].iter().enumerate().all(|(k, &b)| {
                        if k < self.letters {
                            self.before.has(b)
                        } else {
                            b.is_ascii_digit()
                        }
                    })
            })
            .unwrap_or(len)
    }

    /// The first position at or after `from` where a head begins, reading the digit map
    /// `map` of `bytes` when there is one. With `word`, only heads that begin a word count:
    /// the byte before them, when the text shows it, is not alphanumeric.
    fn find(&self, bytes: &[u8], map: Option<&Bitmap>, from: usize, word: bool) -> Option<usize> {
        let heads_at = |row: usize| {
            let h = row - self.letters;
            (bytes[h..row].iter().all(|&b| self.before.has(b)) && (!word || begins_word(bytes, h)))
                .then_some(h)
        };
        // Only the first row of a stretch of digits can follow letters: the rows after it
        // follow digits, which `before` does not hold.
        let mut d = from + self.letters;
        loop {
            let row = match map {
                Some(map) => map.next_row(d, self.digits)?,
                None => loop {
                    let t = DIGIT.find(bytes, d)?;
                    let e = run_end(bytes, &DIGIT, t);
                    if e - t >= self.digits {
                        break t;
                    }
                    d = e + 1;
                },
            };
            if let Some(h) = heads_at(row) {
                return Some(h);
            }
            d = run_end(bytes, &DIGIT, row) + self.letters;
        }
    }
}

impl RegexRun {
    /// A detector whose runs are stretches of `class` beginning at a byte of `start`.
    pub fn new(class: ByteSet, start: ByteSet, regex: Regex) -> Self {
        Self::with_regex(class, start, Some(regex))
    }

    /// A detector whose candidate value is a whole run piece, judged by the validator alone
    /// (for shapes a few byte tests decide, which a regex would decide many times slower).
    pub fn whole(class: ByteSet, start: ByteSet) -> Self {
        Self::with_regex(class, start, None)
    }

    fn with_regex(class: ByteSet, start: ByteSet, regex: Option<Regex>) -> Self {
        RegexRun {
            class,
            start,
            trigger: None,
            finder: regex.as_ref().and_then(|r| finder(r.as_str())),
            regex,
            group: 0,
            validate: |_| true,
            context: None,
            context_words: None,
            open_end: None,
            keywords: None,
            bounded: false,
            min_len: 1,
            min_digits: 0,
            head: None,
            context_gate: None,
            context_deny: None,
            shrink: false,
        }
    }

    pub fn context_deny(mut self, d: Lookback) -> Self {
        self.context_deny = Some(d);
        self
    }

    pub fn shrink(mut self) -> Self {
        self.shrink = true;
        self
    }

    pub fn min_len(mut self, n: usize) -> Self {
        self.min_len = n;
        self
    }

    pub fn min_digits(mut self, n: usize) -> Self {
        self.min_digits = n;
        self
    }

    /// Every value begins with `head` (`head.digits` from 1 to 64).
    pub fn head(mut self, head: Head) -> Self {
        self.head = Some(head);
        self
    }

    pub fn context_gate(mut self, g: ByteSet) -> Self {
        self.context_gate = Some(g);
        self
    }

    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    pub fn trigger(mut self, t: ByteSet) -> Self {
        self.trigger = Some(t);
        self
    }

    pub fn validate(mut self, f: fn(&str) -> bool) -> Self {
        self.validate = f;
        self
    }

    pub fn group(mut self, g: usize) -> Self {
        self.group = g;
        self
    }

    pub fn context(mut self, c: Lookback) -> Self {
        self.context = Some(c);
        self
    }

    /// The look-back context needs one of `words` (ASCII case ignored); see `context_words`.
    pub fn context_words(mut self, words: &[&str]) -> Self {
        self.context_words = Words::new(words);
        self
    }

    pub fn open_end(mut self, e: OpenEnd) -> Self {
        self.open_end = Some(e);
        self
    }

    /// Examines only run pieces holding one of `words` (ASCII case ignored).
    pub fn keywords(mut self, words: &[&str]) -> Self {
        self.keywords = Words::new(words);
        self
    }
}

/// A token detector: a run that begins with one of `leads` and is judged by `judge` from its
/// prefix; once judged a secret, the whole run is.
pub struct TokenRun {
    pub class: ByteSet,
    pub leads: Vec<&'static str>,
    pub judge: fn(&str, bool) -> Tri,
    /// Finds lead occurrences; only those at a run start are candidates, unless `glued`.
    finder: AhoCorasick,
    /// The leads are distinctive enough to be candidates inside a run too (`xAKIA...`: a
    /// letter glued in front of a key does not hide it).
    glued: bool,
    /// First bytes of the leads.
    lead_start: ByteSet,
}

impl TokenRun {
    pub fn new(
        class: ByteSet,
        leads: Vec<&'static str>,
        judge: fn(&str, bool) -> Tri,
    ) -> Option<Self> {
        let finder = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(&leads)
            .ok()?;
        let lead_start = first_bytes(leads.iter().map(|l| l.as_bytes()), false);
        Some(TokenRun {
            class,
            leads,
            judge,
            finder,
            glued: false,
            lead_start,
        })
    }

    /// Lets leads inside a run be candidates.
    pub fn glued(mut self, glued: bool) -> Self {
        self.glued = glued;
        self
    }
}

/// The first bytes of `words` (with `either_case`, in both ASCII cases): the bytes that must
/// arrive before any of them, or the beginning of one, can.
fn first_bytes<'w>(words: impl IntoIterator<Item = &'w [u8]>, either_case: bool) -> ByteSet {
    let mut set = ByteSet::empty();
    for &b in words.into_iter().filter_map(<[u8]>::first) {
        set = set.with_range(b, b);
        if either_case {
            let (l, u) = (b.to_ascii_lowercase(), b.to_ascii_uppercase());
            set = set.with_range(l, l).with_range(u, u);
        }
    }
    set
}

/// A set of literal strings (canaries, system-prompt fingerprints, custom literals).
pub struct Literals {
    ac: AhoCorasick,
    patterns: Vec<Vec<u8>>,
    case_insensitive: bool,
    /// The patterns' first bytes (in both cases when case is ignored).
    first: ByteSet,
}

impl Literals {
    pub fn new(patterns: &[String], case_insensitive: bool) -> Option<Self> {
        let patterns: Vec<Vec<u8>> = patterns
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.as_bytes().to_vec())
            .collect();
        if patterns.is_empty() {
            return None;
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(case_insensitive)
            .build(&patterns)
            .ok()?;
        let first = first_bytes(patterns.iter().map(Vec::as_slice), case_insensitive);
        Some(Literals {
            ac,
            patterns,
            case_insensitive,
            first,
        })
    }

    fn is_proper_prefix_of_pattern(&self, tail: &[u8]) -> bool {
        self.patterns.iter().any(|p| {
            p.len() > tail.len()
                && if self.case_insensitive {
                    p[..tail.len()].eq_ignore_ascii_case(tail)
                } else {
                    &p[..tail.len()] == tail
                }
        })
    }

    fn max_len(&self) -> usize {
        self.patterns.iter().map(Vec::len).max().unwrap_or(0)
    }
}

pub enum Matcher {
    Regex(Box<RegexRun>),
    Token(TokenRun),
    Literals(Literals),
}

/// Everything a detector needs to look at the text.
pub struct View<'a> {
    pub text: &'a str,
    /// Whether the text is complete.
    pub eof: bool,
    /// Maximum length of a run piece for chopped detectors.
    pub chop: usize,
    /// Earliest position the look-back context may read (the retained text's start).
    pub floor: usize,
    /// For a token detector: every occurrence of its leads in `text`, found by the shared
    /// pass ([`Leads`]), as sorted absolute starts and the absolute offset of `text`. `None`:
    /// the detector searches the text itself.
    pub leads: Option<(&'a [usize], usize)>,
    /// Where the ASCII digits of `text` stand, when the caller has mapped them once for all
    /// detectors (a whole text, or a long piece of a stream); `None`: a detector searches for
    /// digits itself.
    pub digits: Option<&'a Digits>,
}

/// The bytes of a number: a phone number's class, which holds those of cards and SSNs.
const NUMBER: ByteSet = ByteSet::from_spec(b"0-9 ()+.-");
/// The fewest digits a value of a number detector has (a phone number's).
const DENSE_MIN: usize = 7;

/// The digits of a text, mapped once for every detector that skips digit-poor stretches
/// ([`RegexRun::min_digits`]).
pub struct Digits {
    all: Bitmap,
    /// Only the digits in stretches of [`NUMBER`] bytes holding at least [`DENSE_MIN`] of
    /// them. A detector whose class lies within `NUMBER` and that needs as many digits finds
    /// every stretch it could match in one of those, so it looks at these digits alone.
    dense: Bitmap,
    /// Per class that several detectors walk ([`SharedWalks`]), its stretches with digits
    /// long enough for any of them, walked once for all.
    walked: Vec<(ByteSet, Vec<Stretch>)>,
}

/// A class stretch `start..end` (its digits are counted on the digit map when needed).
#[derive(Clone, Copy)]
struct Stretch {
    start: usize,
    end: usize,
}

/// The classes whose digit stretches two or more detectors walk ([`RegexRun::past_sparse`]),
/// each with the shortest `min_len` among them: the scanner's texts have those stretches
/// listed once ([`Digits::of`]) instead of walked once per detector.
#[derive(Default)]
pub struct SharedWalks(Vec<(ByteSet, usize)>);

impl SharedWalks {
    pub fn of<'m>(matchers: impl IntoIterator<Item = &'m Matcher>) -> SharedWalks {
        let mut classes: Vec<(ByteSet, usize, usize)> = Vec::new();
        for m in matchers {
            let Matcher::Regex(r) = m else { continue };
            if !r.walks_digits() {
                continue;
            }
            match classes.iter_mut().find(|c| c.0.same(&r.class)) {
                Some(c) => {
                    c.1 = c.1.min(r.min_len);
                    c.2 += 1;
                }
                None => classes.push((r.class, r.min_len, 1)),
            }
        }
        SharedWalks(
            classes
                .into_iter()
                .filter(|c| c.2 >= 2)
                .map(|c| (c.0, c.1))
                .collect(),
        )
    }
}

impl Digits {
    pub fn of(bytes: &[u8], shared: &SharedWalks) -> Digits {
        let all = DIGIT.bitmap(bytes);
        let mut dense = Bitmap::empty(bytes.len());
        let mut i = 0;
        // The stretch holding the next digit `t` begins after the previous stretch's end
        // `i`, so its digits are those from `t` on.
        while let Some(t) = all.next(i) {
            let e = run_end(bytes, &NUMBER, t);
            if all.count(t, e) >= DENSE_MIN {
                dense.copy_from(&all, t, e);
            }
            i = e;
        }
        let walked = shared
            .0
            .iter()
            .map(|&(class, min_len)| (class, stretches(bytes, &all, &class, min_len)))
            .collect();
        Digits { all, dense, walked }
    }

    /// The listed stretches of `class`, when it is walked once for all its detectors.
    fn walked(&self, class: &ByteSet) -> Option<&[Stretch]> {
        self.walked
            .iter()
            .find(|w| w.0.same(class))
            .map(|w| w.1.as_slice())
    }

    /// The map a detector with `class` and `min_digits` may read.
    fn for_run(&self, class: &ByteSet, min_digits: usize) -> &Bitmap {
        if reads_dense(class, min_digits) {
            &self.dense
        } else {
            &self.all
        }
    }
}

/// Whether a detector with `class` and `min_digits` reads only the dense digits: every
/// stretch it could match lies in a stretch of [`NUMBER`] bytes holding as many digits.
fn reads_dense(class: &ByteSet, min_digits: usize) -> bool {
    min_digits >= DENSE_MIN && class.within(&NUMBER)
}

/// The stretches of `class` in `bytes` that hold a digit and are at least `min_len` long
/// (the last one also when shorter: a stream's text may still grow), in order.
fn stretches(bytes: &[u8], digits: &Bitmap, class: &ByteSet, min_len: usize) -> Vec<Stretch> {
    let len = bytes.len();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(t) = digits.next(i) {
        let end = run_end(bytes, class, t);
        let start = stretch_start(bytes, class, t, i);
        // (A digit outside the class, none is for the classes walked, holds no stretch.)
        if end > t && (end - start >= min_len || end == len) {
            out.push(Stretch { start, end });
        }
        i = end.max(t + 1);
    }
    out
}

impl<'a> View<'a> {
    /// The view as the detector `det` sees it, with its share of `hits`.
    pub fn for_detector(&self, hits: Option<&'a LeadHits>, det: usize, base: usize) -> View<'a> {
        View {
            leads: hits
                .and_then(|h| h.per.get(det))
                .and_then(|v| v.as_deref())
                .map(|v| (v, base)),
            ..*self
        }
    }
}

/// All token detectors' leads in one automaton, so that one pass over the text finds the
/// candidates of all of them instead of one pass each.
pub struct Leads {
    /// Where leads may start.
    starts: LeadStarts,
    /// Every lead, with the detector (by index in the scanner) it belongs to.
    pats: Vec<(&'static str, usize)>,
    /// Per detector, whether its leads are in the shared pass.
    shared: Vec<bool>,
    longest: usize,
    /// Indices into `pats` by the lead's first byte.
    by_first: Vec<Vec<usize>>,
    /// The same leads as a DFA reporting every occurrence where it ends, stepped byte by byte
    /// over a stream's short pieces (its state carries over from piece to piece), and its
    /// unanchored start state.
    dfa: DFA,
    start: StateID,
    /// Per DFA state, the lead beginnings that end any text the DFA has read into it.
    ends: LeadEnds,
}

/// The shortest lead the shared pass takes. Its prefilters know a lead by its first few
/// bytes (aho-corasick's by as many as the shortest lead has): a two-byte lead (`SK`) would
/// make common pairs of letters candidates. A detector with a shorter lead searches on its own.
const SHARED_LEAD_MIN: usize = super::fingerprints::SHORTEST;

/// ASCII digits: the bytes the number detectors count and the digit map marks.
pub(crate) const DIGIT: ByteSet = ByteSet::from_spec(b"0-9");

impl Leads {
    /// The shared automaton over the token detectors among `matchers` (`None` when there are
    /// none, or it does not build: each detector then searches on its own).
    pub fn new<'m>(matchers: impl IntoIterator<Item = &'m Matcher>) -> Option<Leads> {
        let mut pats: Vec<(&'static str, usize)> = Vec::new();
        let mut shared = Vec::new();
        for (i, m) in matchers.into_iter().enumerate() {
            let take = match m {
                Matcher::Token(t) if t.leads.iter().all(|l| l.len() >= SHARED_LEAD_MIN) => {
                    pats.extend(t.leads.iter().map(|l| (*l, i)));
                    true
                }
                _ => false,
            };
            shared.push(take);
        }
        if pats.is_empty() {
            return None;
        }
        let longest = pats.iter().map(|p| p.0.len()).max().unwrap_or(1);
        let starts = LeadStarts::new(&pats)?;
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            .build(pats.iter().map(|p| p.0))
            .ok()?;
        let start = dfa.start_state(Anchored::No).ok()?;
        let mut by_first = vec![Vec::new(); 256];
        for (k, (lead, _)) in pats.iter().enumerate() {
            if let Some(&b) = lead.as_bytes().first() {
                by_first[usize::from(b)].push(k);
            }
        }
        let ends = LeadEnds::new(&pats, &dfa, start);
        Some(Leads {
            starts,
            pats,
            shared,
            longest,
            by_first,
            dfa,
            start,
            ends,
        })
    }
}

/// The state `dfa` is in after reading `bytes` from `start`.
fn state_after(dfa: &DFA, start: StateID, bytes: &[u8]) -> StateID {
    bytes
        .iter()
        .fold(start, |sid, &b| dfa.next_state(Anchored::No, sid, b))
}

/// Lead beginnings in a text, as `(start, detector)`.
#[cfg(any(test, debug_assertions))]
type Beginnings = Vec<(usize, usize)>;

/// A DFA state's id and the lead beginnings it stands for, as `(length, detector)`.
type StateEnds = (usize, Box<[(usize, usize)]>);

/// Per state of the leads' DFA, the lead beginnings that end any text the DFA has read into
/// it, as `(length, detector)` by increasing length. A state stands for the longest tail of
/// the text that begins a lead, so every shorter such tail is one of its own tails.
struct LeadEnds {
    /// By state id shifted right by `shift` (the ids are multiples of a power of two), with
    /// the id itself to tell a state outside the table (the start state) from a listed one.
    table: Vec<StateEnds>,
    shift: u32,
}

impl LeadEnds {
    /// The state after a lead's first `n` bytes (from the start state) stands for those
    /// bytes. Its list holds their own detectors, then the list of the state that their
    /// longest proper tail beginning a lead stands for (built before it, being shorter).
    fn new(pats: &[(&'static str, usize)], dfa: &DFA, start: StateID) -> LeadEnds {
        let run = |bytes: &[u8]| state_after(dfa, start, bytes);
        // Every lead beginning with its detector, shortest first, and the states of each and
        // of its tail.
        let mut begins: Vec<(&[u8], usize)> = pats
            .iter()
            .flat_map(|&(lead, det)| (1..=lead.len()).map(move |n| (&lead.as_bytes()[..n], det)))
            .collect();
        begins.sort_unstable_by(|a, b| (a.0.len(), a).cmp(&(b.0.len(), b)));
        begins.dedup();
        let ids: Vec<(usize, usize)> = begins
            .iter()
            .map(|(begin, _)| (run(begin).as_usize(), run(&begin[1..]).as_usize()))
            .collect();
        let all = || ids.iter().map(|&(id, _)| id).chain([start.as_usize()]);
        let shift = all()
            .map(usize::trailing_zeros)
            .min()
            .unwrap_or(0)
            .min(usize::BITS - 1);
        let size = all().map(|id| (id >> shift) + 1).max().unwrap_or(0);
        let mut lists: Vec<Vec<(usize, usize)>> = vec![Vec::new(); size];
        let mut listed = vec![false; size];
        for (&(begin, det), &(id, tail)) in begins.iter().zip(&ids) {
            let k = id >> shift;
            if !listed[k] {
                listed[k] = true;
                let tail = (tail != start.as_usize()).then(|| lists[tail >> shift].clone());
                lists[k] = tail.unwrap_or_default();
            }
            lists[k].push((begin.len(), det));
        }
        let table = lists
            .into_iter()
            .enumerate()
            .map(|(k, mut list)| {
                list.sort_unstable();
                list.dedup();
                let id = if listed[k] { k << shift } else { usize::MAX };
                (id, list.into_boxed_slice())
            })
            .collect();
        LeadEnds { table, shift }
    }

    fn of(&self, sid: StateID) -> &[(usize, usize)] {
        let id = sid.as_usize();
        match self.table.get(id >> self.shift) {
            Some((at, list)) if *at == id => list,
            _ => &[],
        }
    }
}

/// Where the shared pass's leads may start. Natively the leads' automaton, whose vector
/// prefilter skips most of the text; as wasm the fingerprints, searched sixteen positions at
/// a time, since the automaton has no vector prefilter on wasm32 and its search would step
/// through every byte.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
struct LeadStarts(AhoCorasick);
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
struct LeadStarts(super::fingerprints::Fingerprints);

impl LeadStarts {
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    fn new(pats: &[(&'static str, usize)]) -> Option<Self> {
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostFirst)
            .build(pats.iter().map(|p| p.0))
            .ok()?;
        Some(LeadStarts(ac))
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn new(pats: &[(&'static str, usize)]) -> Option<Self> {
        super::fingerprints::Fingerprints::new(pats.iter().map(|p| p.0.as_bytes())).map(LeadStarts)
    }

    /// Calls `found(p)` for positions `p >= from` of `bytes` in increasing order: every one
    /// where a lead starts, and possibly others.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline]
    fn each(&self, bytes: &[u8], from: usize, mut found: impl FnMut(usize)) {
        // The leftmost lead from a position on, then on from the next byte (leads may
        // overlap).
        let mut at = from;
        while let Some(m) = self
            .0
            .find(aho_corasick::Input::new(bytes).span(at..bytes.len()))
        {
            found(m.start());
            at = m.start() + 1;
        }
    }

    /// Calls `found(p)` for positions `p >= from` of `bytes` in increasing order: every one
    /// where a lead starts, and possibly others.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline]
    fn each(&self, bytes: &[u8], from: usize, found: impl FnMut(usize)) {
        self.0
            .candidates::<crate::lanes::LookupLanes>(bytes, from, found);
    }
}

impl Leads {
    /// Calls `found(start, detector)` for every tail of `bytes` from `from` on that begins one
    /// of the leads: a token that may still be arriving.
    /// `hits` is the shared pass over `bytes`: its DFA state after them names those tails
    /// (each pair once, in another order than a walk of the tails would give).
    pub fn pending(
        &self,
        hits: &LeadHits,
        bytes: &[u8],
        from: usize,
        mut found: impl FnMut(usize, usize),
    ) {
        let Some(sid) = hits.state else {
            return self.pending_by_bytes(bytes, from, found);
        };
        #[cfg(debug_assertions)]
        {
            let (listed, walked) = self.pending_both_ways(sid, bytes, from);
            debug_assert_eq!(listed, walked, "lead beginnings in DFA state {sid:?}");
        }
        for (a, det) in self.ends_in(sid, bytes.len(), from) {
            found(a, det);
        }
    }

    /// The lead beginnings of state `sid` that start at or after `from` in a text `len` long,
    /// as `(start, detector)`. A state outside the table (the start state) has none.
    fn ends_in(
        &self,
        sid: StateID,
        len: usize,
        from: usize,
    ) -> impl Iterator<Item = (usize, usize)> + '_ {
        // (By increasing length: the first too long ends the list.)
        self.ends
            .of(sid)
            .iter()
            .take_while(move |&&(n, _)| n <= len - from)
            .map(move |&(n, det)| (len - n, det))
    }

    /// The lead beginnings from `from` on as state `sid` lists them, and as the walk of the
    /// tails of `bytes` finds them, each sorted and once (they must agree).
    #[cfg(any(test, debug_assertions))]
    fn pending_both_ways(
        &self,
        sid: StateID,
        bytes: &[u8],
        from: usize,
    ) -> (Beginnings, Beginnings) {
        let mut walked = Vec::new();
        self.pending_by_bytes(bytes, from, |a, det| walked.push((a, det)));
        walked.sort_unstable();
        walked.dedup();
        let mut listed: Vec<_> = self.ends_in(sid, bytes.len(), from).collect();
        listed.sort_unstable();
        (listed, walked)
    }

    /// [`Leads::pending`] by walking the tails.
    fn pending_by_bytes(&self, bytes: &[u8], from: usize, mut found: impl FnMut(usize, usize)) {
        let lo = bytes.len().saturating_sub(self.longest).max(from);
        for a in lo..bytes.len() {
            let tail = &bytes[a..];
            for &p in &self.by_first[usize::from(tail[0])] {
                let (lead, det) = self.pats[p];
                // Byte by byte: most leads differ within a byte or two.
                let lead = lead.as_bytes();
                if lead.len() >= tail.len() && lead.iter().zip(tail).all(|(x, y)| x == y) {
                    found(a, det);
                }
            }
        }
    }

    /// Whether detector `det`'s leads are in the shared pass.
    pub fn shares(&self, det: usize) -> bool {
        self.shared.get(det).copied().unwrap_or(false)
    }
}

/// Lead occurrences found so far in a text that grows at the end and is dropped from the
/// front (a stream's retained text), per detector, as sorted absolute starts (`None` for a
/// detector outside the shared pass).
#[derive(Debug, Clone)]
pub struct LeadHits {
    per: Vec<Option<Vec<usize>>>,
    /// Every occurrence ending at or before this absolute offset is recorded.
    indexed_to: usize,
    /// The leads' DFA state after the text up to `indexed_to`, when known.
    state: Option<StateID>,
    /// No recorded occurrence starts before this (`usize::MAX` when none is recorded).
    earliest: usize,
}

impl Default for LeadHits {
    fn default() -> Self {
        LeadHits {
            per: Vec::new(),
            indexed_to: 0,
            state: None,
            earliest: usize::MAX,
        }
    }
}

/// New text up to this long is stepped through the leads' DFA byte by byte; longer text is
/// searched by the automaton, whose prefilter skips most of it.
const DFA_STEP_MAX: usize = 256;

impl LeadHits {
    /// Records the occurrences that `text` (starting at absolute offset `base`) completes,
    /// calling `found(detector)` for each.
    pub fn extend(&mut self, leads: &Leads, text: &str, base: usize, mut found: impl FnMut(usize)) {
        if self.per.len() < leads.shared.len() {
            self.per = leads.shared.iter().map(|&s| s.then(Vec::new)).collect();
        }
        let end = base + text.len();
        if end <= self.indexed_to {
            return;
        }
        let mut touched = false;
        let bytes = text.as_bytes();
        let new_from = self.indexed_to.max(base) - base;
        match self.state {
            // A short piece after a known state: every occurrence ends at one of its bytes.
            Some(mut sid) if self.indexed_to >= base && bytes.len() - new_from <= DFA_STEP_MAX => {
                for (p, &b) in bytes.iter().enumerate().skip(new_from) {
                    sid = leads.dfa.next_state(Anchored::No, sid, b);
                    if !leads.dfa.is_match(sid) {
                        continue;
                    }
                    for k in 0..leads.dfa.match_len(sid) {
                        let pid = leads.dfa.match_pattern(sid, k);
                        let Some(&(lead, det)) = leads.pats.get(pid.as_usize()) else {
                            continue;
                        };
                        // (An occurrence starting before the retained text is forgotten.)
                        if let Some(s) = (p + 1).checked_sub(lead.len()) {
                            touched |= self.record(det, base + s, &mut found);
                        }
                    }
                }
                self.state = Some(sid);
            }
            _ => {
                // An occurrence not yet recorded ends past `indexed_to`, so it starts at most
                // `longest - 1` bytes before it.
                let from = self.indexed_to.saturating_sub(leads.longest - 1).max(base);
                // Every lead at every position where one may start.
                leads.starts.each(bytes, from - base, |s| {
                    for &p in &leads.by_first[usize::from(bytes[s])] {
                        let (lead, det) = leads.pats[p];
                        if bytes[s..].starts_with(lead.as_bytes())
                            && base + s + lead.len() > self.indexed_to
                        {
                            touched |= self.record(det, base + s, &mut found);
                        }
                    }
                });
                // The DFA's state after the text is the one after its last `longest` bytes:
                // no lead's beginning is longer.
                let tail = &bytes[bytes.len().saturating_sub(leads.longest)..];
                self.state = Some(state_after(&leads.dfa, leads.start, tail));
            }
        }
        if touched {
            // Starts come in order within one pass, but a new occurrence (ending past the old
            // `indexed_to`) may start before one recorded earlier, and two leads of one
            // detector can share a start across passes.
            for v in self.per.iter_mut().flatten() {
                if !v.is_sorted() {
                    v.sort_unstable();
                }
                v.dedup();
            }
        }
        self.indexed_to = end;
    }

    /// Records an occurrence of detector `det`'s leads at absolute offset `start`, if the
    /// detector is in the shared pass.
    fn record(&mut self, det: usize, start: usize, found: &mut impl FnMut(usize)) -> bool {
        let Some(Some(v)) = self.per.get_mut(det) else {
            return false;
        };
        v.push(start);
        self.earliest = self.earliest.min(start);
        found(det);
        true
    }

    /// Forgets occurrences that start before absolute offset `base`.
    pub fn trim(&mut self, base: usize) {
        // (Most stream pieces of most texts hold no lead at all.)
        if self.earliest >= base {
            return;
        }
        self.earliest = usize::MAX;
        for v in self.per.iter_mut().flatten() {
            let n = v.partition_point(|&h| h < base);
            v.drain(..n);
            if let Some(&h) = v.first() {
                self.earliest = self.earliest.min(h);
            }
        }
    }
}

impl Matcher {
    /// The first value at or after `from`, or how far the text is known to be free of values.
    pub fn step(&self, v: &View<'_>, from: usize, skip: bool) -> Step {
        match self {
            Matcher::Regex(r) => r.step(v, from, skip),
            Matcher::Token(t) => t.step(v, from, skip),
            Matcher::Literals(l) => l.step(v, from),
        }
    }

    /// Whether this detector passes over stretches with too few digits or without a head,
    /// and so reads [`View::digits`].
    pub fn seeks_digits(&self) -> bool {
        matches!(self, Matcher::Regex(r) if r.min_digits > 0 || r.head.is_some())
    }

    /// Whether truncating the scan at `p` leaves this detector's runs from `p` on unchanged,
    /// so that an earlier verdict about text after `p` still holds.
    pub fn unsplit_at(&self, bytes: &[u8], p: usize) -> bool {
        match self.class() {
            None => true,
            // With nothing after `p` yet, only a non-class byte before it proves no run is cut.
            Some(c) => {
                p == 0
                    || bytes.get(p - 1).is_none_or(|&b| !c.has(b))
                    || bytes.get(p).is_some_and(|&b| !c.has(b))
            }
        }
    }

    pub fn class(&self) -> Option<&ByteSet> {
        match self {
            Matcher::Regex(r) => Some(&r.class),
            Matcher::Token(t) => Some(&t.class),
            Matcher::Literals(_) => None,
        }
    }

    /// The bytes that can wake this detector, and how many bytes before its resume point they
    /// still matter: while none of them stands in the text from `resume - margin` on, a step
    /// is [`Matcher::quiet_step`], told without scanning.
    ///
    /// A token detector watches its leads' first bytes (a token in the shared lead pass may
    /// instead be asked whether the pass found a lead or a lead's beginning in the new text,
    /// which is sharper), and a literal set its patterns' first bytes. A run detector watches
    /// its context gate (nine bytes back: the gate may stand before the run's blanks), else its
    /// trigger, else the bytes that start a run.
    pub fn watch(&self) -> (ByteSet, usize) {
        match self {
            Matcher::Regex(r) => match (&r.context_gate, &r.trigger) {
                (Some(g), _) => (*g, 9),
                (None, Some(t)) => (*t, 0),
                (None, None) => (r.start, 0),
            },
            Matcher::Token(t) => (t.lead_start, 0),
            Matcher::Literals(l) => (l.first, 0),
        }
    }

    /// For a token detector in the shared lead pass, stepping from `from` over a text that
    /// is not complete: whether a lead beginning at `a` (a tail of the text) is one the step
    /// waits for. A lead inside a run counts only for a glued token, or at `from` itself.
    pub fn waits_for_tail(&self, bytes: &[u8], a: usize, from: usize) -> bool {
        match self {
            Matcher::Token(t) => a >= from && (t.glued || a == from || !t.class.has(bytes[a - 1])),
            _ => true,
        }
    }

    /// For a token detector or a literal set, whose wait sits at the end of the text when
    /// nothing is pending: the `skip` of that wait at `end` (for a token, whether `end` falls
    /// inside a run that cannot hold one; a literal set never skips). `None` for run
    /// detectors, whose waits depend on more than the end.
    pub fn idle_skip(&self, bytes: &[u8], end: usize) -> Option<bool> {
        match self {
            Matcher::Token(t) => Some(
                !t.glued
                    && end
                        .checked_sub(1)
                        .and_then(|e| bytes.get(e))
                        .is_some_and(|&b| t.class.has(b)),
            ),
            Matcher::Literals(_) => Some(false),
            Matcher::Regex(_) => None,
        }
    }

    /// Whether every quiet step of this detector leaves the whole text safe: a run detector
    /// that awaits no trigger at the end. Such a detector may skip its quiet steps while no
    /// byte it watches arrives; the text it resumes at is then only kept longer.
    pub fn lags(&self) -> bool {
        match self {
            Matcher::Regex(r) => !r.awaits_trigger(),
            _ => false,
        }
    }

    /// What [`Matcher::step`] answers on a text that is not complete and goes on past `from`,
    /// when no watched byte ([`Matcher::watch`]) stands in `v.text[from - margin..]`: no value
    /// starts, and only the end of the text is held. Undefined otherwise (the caller checks; debug builds compare
    /// with the scanning step).
    pub fn quiet_step(&self, v: &View<'_>, from: usize, skip: bool) -> Step {
        let bytes = v.text.as_bytes();
        let len = bytes.len();
        match self {
            Matcher::Regex(r) => {
                let mut i = from;
                if skip {
                    i = run_end(bytes, &r.class, i);
                    if i == len {
                        return Step::Wait {
                            resume: len,
                            safe: len,
                            skip: true,
                        };
                    }
                }
                // No candidate run: resume at the stretch touching the end (for a head
                // detector, where a head may still begin).
                if r.awaits_trigger() {
                    // A run at the end may still receive its trigger: its last piece waits.
                    let lo = r.end_lo(bytes, i);
                    let (a, first) = stretch_start_first(bytes, &r.class, &r.start, lo);
                    if let Some(s) = first {
                        let p = s + (len - s - 1) / v.chop.max(1) * v.chop.max(1);
                        return Step::Wait {
                            resume: p,
                            safe: p,
                            skip: false,
                        };
                    }
                    return Step::Wait {
                        resume: a,
                        safe: len,
                        skip: false,
                    };
                }
                let a = r.end_resume(bytes, i);
                Step::Wait {
                    resume: a,
                    safe: len,
                    skip: false,
                }
            }
            Matcher::Token(_) => Step::Wait {
                resume: len,
                safe: len,
                skip: len > from && self.idle_skip(bytes, len) == Some(true),
            },
            // Neither a pattern nor the beginning of one starts without its first byte.
            Matcher::Literals(_) => Step::Wait {
                resume: len,
                safe: len,
                skip: false,
            },
        }
    }
}

enum Candidate {
    Run(usize),
    /// Nothing decided from this position on; scan again from it.
    Wait(usize),
    None,
}

/// Whether the last byte before `q`, past up to eight blanks and quotes, is in `gate`.
fn gate_before(gate: &ByteSet, bytes: &[u8], q: usize) -> bool {
    bytes[..q]
        .iter()
        .rev()
        .take(8)
        .find(|&&b| !matches!(b, b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'`'))
        .is_some_and(|&b| gate.has(b))
}

/// Start of the class stretch that ends at `end`, not before `lo`.
fn stretch_start(bytes: &[u8], class: &ByteSet, end: usize, lo: usize) -> usize {
    let mut a = end;
    while a > lo && class.has(bytes[a - 1]) {
        a -= 1;
    }
    a
}

/// The start of the class stretch that ends `bytes`, not before `lo` (as [`stretch_start`]
/// finds it), and the first position in that stretch holding a byte of `first`: one walk
/// back instead of a walk and a search.
#[inline(always)]
fn stretch_start_first(
    bytes: &[u8],
    class: &ByteSet,
    first: &ByteSet,
    lo: usize,
) -> (usize, Option<usize>) {
    let mut a = bytes.len();
    let mut at = None;
    while a > lo && class.has(bytes[a - 1]) {
        a -= 1;
        if first.has(bytes[a]) {
            at = Some(a);
        }
    }
    (a, at)
}

/// End of the class stretch that starts at `at`.
fn run_end(bytes: &[u8], class: &ByteSet, at: usize) -> usize {
    bytes[at..]
        .iter()
        .position(|&b| !class.has(b))
        .map_or(bytes.len(), |p| p + at)
}

impl RegexRun {
    fn step(&self, v: &View<'_>, from: usize, skip: bool) -> Step {
        let bytes = v.text.as_bytes();
        let len = bytes.len();
        let mut i = from;
        if skip {
            i = run_end(bytes, &self.class, i);
            if i == len && !v.eof {
                return Step::Wait {
                    resume: len,
                    safe: len,
                    skip: true,
                };
            }
        }
        loop {
            i = self.past_sparse(v, i);
            // Next candidate run. Runs without a trigger byte, or not preceded by the context
            // gate, are skipped without being looked at.
            let run_start = match self.next_run_start(bytes, i, from) {
                Candidate::Run(s) => s,
                Candidate::Wait(resume) => {
                    return Step::Wait {
                        resume,
                        safe: len,
                        skip: false,
                    }
                }
                Candidate::None => {
                    // Resume where the trailing stretch begins, so the next scan does not cut
                    // a run in two.
                    let a = stretch_start(bytes, &self.class, len, i);
                    return Step::Wait {
                        resume: a,
                        safe: len,
                        skip: false,
                    };
                }
            };
            let run_limit = self.run_limit(bytes, run_start);
            // Pieces of at most `chop` bytes, counted from the run start.
            let mut piece = run_start;
            loop {
                let piece_end = (piece + v.chop).min(run_limit);
                // A piece is complete once a byte follows it (validators look one byte past a value).
                let complete = piece_end < len || v.eof;
                if !complete {
                    return Step::Wait {
                        resume: piece,
                        safe: piece,
                        skip: false,
                    };
                }
                let text = &v.text[piece..piece_end];
                if self.trigger.is_none_or(|t| text.bytes().any(|b| t.has(b))) {
                    if let Some((s, e)) = self.confirm(v, piece, text) {
                        let (start, end) = (piece + s, piece + e);
                        if let Some(open) = self.open_end {
                            return Step::Open {
                                start,
                                end: open,
                                scan: end,
                            };
                        }
                        return Step::Match { start, end };
                    }
                }
                if piece_end >= run_limit {
                    break;
                }
                piece = piece_end;
            }
            // (The next head may stand inside this run.)
            i = if self.head.is_some() {
                run_start + 1
            } else {
                run_limit
            };
        }
    }

    /// With `min_digits`, the first position >= `i` not inside a complete class stretch with
    /// fewer digits than that, or shorter than `min_len`, or (with a context gate) not right
    /// after a gate byte: no piece of such a stretch can hold a value, so its runs need not be
    /// looked at. A stretch touching the end of an unfinished text may still grow and is
    /// kept.
    fn past_sparse(&self, v: &View<'_>, mut i: usize) -> usize {
        if let Some(head) = &self.head {
            return self.past_headless(v, head, i);
        }
        if self.min_digits == 0 {
            return i;
        }
        if let Some((d, list)) = v.digits.and_then(|d| Some((d, d.walked(&self.class)?))) {
            return self.past_sparse_listed(v, &d.all, list, i);
        }
        let bytes = v.text.as_bytes();
        let len = bytes.len();
        let map = v.digits.map(|d| d.for_run(&self.class, self.min_digits));
        let next_digit = |i: usize| match map {
            Some(map) => map.next(i),
            None => DIGIT.find(bytes, i),
        };
        while let Some(t) = next_digit(i) {
            let mut e = t;
            let mut digits = 0;
            while e < len && self.class.has(bytes[e]) {
                digits += usize::from(bytes[e].is_ascii_digit());
                e += 1;
            }
            if e == len && !v.eof {
                return stretch_start(bytes, &self.class, t, i);
            }
            if digits >= self.min_digits {
                let a = stretch_start(bytes, &self.class, t, i);
                // (The length first: most stretches are short, and the gate test reads back.)
                if e - a >= self.min_len && self.gated(bytes, a) {
                    return a;
                }
            }
            i = e;
        }
        // No digit ahead: only the stretch touching the end is left to look at.
        stretch_start(bytes, &self.class, len, i)
    }

    /// Whether a run at `a` passes the context gate, if any.
    fn gated(&self, bytes: &[u8], a: usize) -> bool {
        self.context_gate
            .as_ref()
            .is_none_or(|g| gate_before(g, bytes, a))
    }

    /// Whether [`Self::past_sparse`] walks this detector's digit stretches one by one (with
    /// the digit map: not for heads, nor for classes within [`NUMBER`] read from the dense
    /// map).
    fn walks_digits(&self) -> bool {
        self.head.is_none() && self.min_digits > 0 && !reads_dense(&self.class, self.min_digits)
    }

    /// [`Self::past_sparse`] over the listed stretches of the detector's class ([`Digits`]):
    /// each has a digit and is at least as long as the shortest value of any detector
    /// listing it. A stretch that begins before `i` counts from `i`.
    fn past_sparse_listed(
        &self,
        v: &View<'_>,
        map: &Bitmap,
        list: &[Stretch],
        mut i: usize,
    ) -> usize {
        let bytes = v.text.as_bytes();
        let len = bytes.len();
        let first = list.partition_point(|s| s.end <= i);
        for s in &list[first..] {
            let a = s.start.max(i);
            if s.end == len && !v.eof {
                return a;
            }
            let digits = map.count(a, s.end);
            // (A stretch that begins before `i` may have no digit left: the walk never sees it.)
            if digits == 0 {
                continue;
            }
            if digits >= self.min_digits && s.end - a >= self.min_len && self.gated(bytes, a) {
                return a;
            }
            i = s.end;
        }
        stretch_start(bytes, &self.class, len, i)
    }

    /// [`Self::past_sparse`] for a detector whose values begin with `head`: its runs begin at
    /// heads, so the next one begins at the first head ahead with room for a value in its
    /// stretch. With no head ahead, one can still begin only in the last bytes of an
    /// unfinished text, where they begin one ([`Head::tail`]).
    fn past_headless(&self, v: &View<'_>, head: &Head, mut i: usize) -> usize {
        let bytes = v.text.as_bytes();
        let len = bytes.len();
        let map = v.digits.map(|d| &d.all);
        while let Some(h) = head.find(bytes, map, i, self.bounded) {
            let e = self.run_limit(bytes, h);
            if (e == len && !v.eof) || e - h >= self.min_len {
                return h;
            }
            // (A later head in the stretch has even less room.)
            i = e;
        }
        self.end_resume(bytes, i)
    }

    /// The end of the run that begins at `start`: its class stretch's end or, for a head
    /// detector, the head's reach if that comes first.
    #[inline]
    fn run_limit(&self, bytes: &[u8], start: usize) -> usize {
        let reach = match &self.head {
            Some(h) => bytes.len().min(start + h.reach),
            None => bytes.len(),
        };
        run_end(&bytes[..reach], &self.class, start)
    }

    /// With no candidate run from `i` on, where the scan resumes: the start of the class
    /// stretch that ends the text, not before `i` nor, for a head detector, before the last
    /// bytes that may still begin a head ([`Head::tail`]).
    #[inline(always)]
    fn end_resume(&self, bytes: &[u8], i: usize) -> usize {
        stretch_start(bytes, &self.class, bytes.len(), self.end_lo(bytes, i))
    }

    /// Whether a run at the end of an unfinished text may still receive its trigger, so that
    /// a quiet step holds it back: a detector with a trigger and no context gate.
    fn awaits_trigger(&self) -> bool {
        self.context_gate.is_none() && self.trigger.is_some()
    }

    /// How far back [`RegexRun::end_resume`] may walk: to `i`, and for a head detector no
    /// further than the last bytes that may still begin a head.
    #[inline(always)]
    fn end_lo(&self, bytes: &[u8], i: usize) -> usize {
        match &self.head {
            Some(h) => i.max(h.tail(bytes, self.bounded)),
            None => i,
        }
    }

    /// Next position >= `i` where a run of this detector begins. With a trigger, runs lacking
    /// one are skipped: the search jumps to the next trigger byte and walks back to its run.
    /// With a context gate, only runs right after a gate byte are candidates. `from` is the
    /// truncation point of this scan.
    fn next_run_start(&self, bytes: &[u8], i: usize, from: usize) -> Candidate {
        let len = bytes.len();
        if let Some(gate) = &self.context_gate {
            return self.next_gated_run(gate, bytes, i, from);
        }
        let mut i = i;
        loop {
            if i >= len {
                return Candidate::None;
            }
            if let Some(trigger) = &self.trigger {
                // A run whose trigger is yet to come may be open at the end of the text.
                match trigger.find(bytes, i) {
                    Some(t) => {
                        let a = stretch_start(bytes, &self.class, t, i);
                        match self.start.find(&bytes[..t + 1], a) {
                            Some(s) => return Candidate::Run(s),
                            None => {
                                i = t + 1;
                                continue;
                            }
                        }
                    }
                    None => {
                        // No trigger ahead: only the run touching the end can still matter.
                        let a = stretch_start(bytes, &self.class, len, i);
                        return self
                            .start
                            .find(bytes, a)
                            .map_or(Candidate::None, Candidate::Run);
                    }
                }
            }
            return self
                .start
                .find(bytes, i)
                .map_or(Candidate::None, Candidate::Run);
        }
    }

    /// The first run at or after `i` whose preceding byte (past blanks and quotes) is a gate
    /// byte.
    fn next_gated_run(&self, gate: &ByteSet, bytes: &[u8], i: usize, from: usize) -> Candidate {
        let len = bytes.len();
        let is_run_start = |q: usize| {
            q < len && self.start.has(bytes[q]) && (q == from || !self.class.has(bytes[q - 1]))
        };
        // The run at `i` itself, gated by what stands before it.
        if is_run_start(i) && gate_before(gate, bytes, i) {
            return Candidate::Run(i);
        }
        // A gate byte may stand just before `i`, inside a run already looked at or a value
        // already committed (`_auth='value`: the `=` ends the run `_auth=`): look back as far
        // as a gate may be from its run, whatever the truncation point, so the verdict does
        // not depend on where a scan resumed or where an earlier value ended. (Streams keep
        // more than that much text before any resume point.)
        let mut j = i.saturating_sub(9);
        // With context words, a run counts only with one of them in the 64 bytes before it,
        // so gates far from every word lead nowhere: from a gate at or past `limit`, the
        // search jumps to the next word. With no word left in the text, no run in it can
        // count; a run still to come reads a look-back of text still to come, and is found
        // from the resume point the caller takes.
        let mut limit = if self.context_words.is_some() {
            0
        } else {
            usize::MAX
        };
        while let Some(g) = gate.find(bytes, j) {
            if g >= limit {
                if let Some(words) = &self.context_words {
                    // The run after `g` starts past it: its look-back starts at `g - 63` or later.
                    let lo = g.saturating_sub(64);
                    let Some(m) = words.find(&bytes[lo..]) else {
                        return Candidate::None;
                    };
                    let k = lo + m;
                    limit = k + 64;
                    if k.saturating_sub(9) > g {
                        j = k - 9;
                        continue;
                    }
                }
            }
            let mut q = g + 1;
            while q < len
                && q - g <= 8
                && matches!(bytes[q], b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'`')
            {
                q += 1;
            }
            if q >= len {
                // The value may not have started yet: keep the gate byte in view, resuming at
                // a position that does not split a run.
                let mut k = g.max(i);
                while k > i && self.class.has(bytes[k - 1]) {
                    k -= 1;
                }
                return Candidate::Wait(k);
            }
            if q > i && is_run_start(q) && gate_before(gate, bytes, q) {
                return Candidate::Run(q);
            }
            j = g + 1;
        }
        Candidate::None
    }

    /// First value inside one complete run piece: `(start, end)` relative to the piece.
    fn confirm(&self, v: &View<'_>, piece: usize, text: &str) -> Option<(usize, usize)> {
        if text.len() < self.min_len
            || (self.min_digits > 0
                && text.bytes().filter(u8::is_ascii_digit).count() < self.min_digits)
        {
            return None;
        }
        let bytes = v.text.as_bytes();
        if let Some(gate) = &self.context_gate {
            if !gate_before(gate, bytes, piece) {
                return None;
            }
        }
        if let Some(k) = &self.keywords {
            if !k.is_match(text.as_bytes()) {
                return None;
            }
        }
        // The look-back the context reads, as the context reads it.
        let lookback = || {
            let lo = floor_char_boundary(v.text, piece.saturating_sub(64).max(v.floor));
            v.text.get(lo..piece)
        };
        if let Some(w) = &self.context_words {
            if !lookback().is_some_and(|before| w.is_match(before.as_bytes())) {
                return None;
            }
        }
        let touches = |i: Option<&u8>| i.is_some_and(u8::is_ascii_alphanumeric);
        let mut context_ok: Option<bool> = None;
        let finder = self.finder.filter(|_| self.group == 0);
        let mut found = match finder {
            Some(_) => None,
            None => self.regex.as_ref().map(|r| r.captures_iter(text)),
        };
        let mut at = 0;
        let mut whole = Some((0, text));
        loop {
            let (m_start, value) = if let Some(f) = finder {
                let Some((s, e)) = f(text.as_bytes(), at) else {
                    break;
                };
                at = e.max(s + 1);
                (s, text.get(s..e).unwrap_or(""))
            } else {
                match &mut found {
                    Some(it) => {
                        let Some(caps) = it.next() else {
                            break;
                        };
                        let Some(m) = caps.get(self.group) else {
                            continue;
                        };
                        (m.start(), m.as_str())
                    }
                    None => match whole.take() {
                        Some(w) => w,
                        None => break,
                    },
                }
            };
            if value.is_empty() {
                continue;
            }
            let s = piece + m_start;
            if self.bounded && touches(s.checked_sub(1).and_then(|p| bytes.get(p))) {
                continue;
            }
            // The longest acceptable prefix of the match: the whole of it, or (with `shrink`)
            // the match cut before a trailing separator.
            let mut len = Some(value.len());
            while let Some(l) = len {
                let e = s + l;
                if l > 0 && !(self.bounded && touches(bytes.get(e))) && (self.validate)(&value[..l])
                {
                    break;
                }
                len = if self.shrink {
                    value[..l].rfind([' ', '-', '.']).filter(|&c| c > 0)
                } else {
                    None
                };
            }
            let Some(l) = len else {
                continue;
            };
            let m_end = m_start + l;
            if let Some(ctx) = &self.context {
                let ok = *context_ok
                    .get_or_insert_with(|| lookback().is_some_and(|before| ctx.is_match(before)));
                if !ok {
                    return None;
                }
            }
            if let Some(deny) = &self.context_deny {
                // The text right before the value (look-back and the run up to the value).
                let lo = floor_char_boundary(v.text, s.saturating_sub(64).max(v.floor));
                if v.text
                    .get(lo..s)
                    .is_some_and(|before| deny.is_match(before))
                {
                    continue;
                }
            }
            return Some((m_start, m_end));
        }
        None
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl TokenRun {
    fn step(&self, v: &View<'_>, from: usize, skip: bool) -> Step {
        let bytes = v.text.as_bytes();
        let len = bytes.len();
        let mut i = from;
        if skip {
            i = run_end(bytes, &self.class, i);
            if i == len && !v.eof {
                return Step::Wait {
                    resume: len,
                    safe: len,
                    skip: true,
                };
            }
        }
        // Candidates are lead occurrences at a run start; everything else is skipped by the
        // automaton without looking at runs one by one.
        while i < len {
            let next = match v.leads {
                Some((hits, base)) => hits
                    .get(hits.partition_point(|&h| h < base + i))
                    .map(|&h| h - base),
                None => self
                    .finder
                    .find(aho_corasick::Input::new(bytes).span(i..len))
                    .map(|m| m.start()),
            };
            let Some(s) = next else {
                break;
            };
            if !self.glued && s != i && self.class.has(bytes[s - 1]) {
                // Inside a run that did not begin with a lead.
                i = s + 1;
                continue;
            }
            let e = run_end(bytes, &self.class, s);
            let complete = e < len || v.eof;
            match (self.judge)(&v.text[s..e], complete) {
                Tri::Yes if complete => return Step::Match { start: s, end: e },
                Tri::Yes => {
                    return Step::Open {
                        start: s,
                        end: OpenEnd::RunEnd,
                        scan: e,
                    }
                }
                Tri::NeedMore if !complete => {
                    return Step::Wait {
                        resume: s,
                        safe: s,
                        skip: false,
                    }
                }
                // A glued lead later in the same run may still hold a value.
                _ if self.glued => i = s + 1,
                _ if !complete => {
                    // This run can hold no value; skip the rest of it as it arrives.
                    return Step::Wait {
                        resume: len,
                        safe: len,
                        skip: true,
                    };
                }
                _ => i = e,
            }
        }
        if !v.eof && i < len && self.glued {
            // Any tail of the text may be the start of a lead.
            let longest = self.leads.iter().map(|l| l.len()).max().unwrap_or(1);
            let lo = len.saturating_sub(longest - 1).max(i);
            for a in lo..len {
                let tail = &bytes[a..];
                if !self.lead_start.has(tail[0]) {
                    continue;
                }
                if self.leads.iter().any(|l| l.as_bytes().starts_with(tail)) {
                    return Step::Wait {
                        resume: a,
                        safe: a,
                        skip: false,
                    };
                }
            }
        } else if !v.eof && i < len {
            // The run touching the end may still grow into a lead.
            let a = stretch_start(bytes, &self.class, len, from);
            let tail = &v.text[a..];
            if a >= i && a < len && self.leads.iter().any(|l| l.starts_with(tail)) {
                return Step::Wait {
                    resume: a,
                    safe: a,
                    skip: false,
                };
            }
        }
        // Text ending inside a run that cannot hold a token: skip the rest of that run.
        let in_run = !self.glued && !v.eof && len > from && self.class.has(bytes[len - 1]);
        Step::Wait {
            resume: len,
            safe: len,
            skip: in_run,
        }
    }
}

impl Literals {
    fn step(&self, v: &View<'_>, from: usize) -> Step {
        let bytes = v.text.as_bytes();
        let len = bytes.len();
        // Earliest start of a partial match still in progress at the end of the text.
        let mut safe = len;
        if !v.eof {
            let max = self.max_len().min(len.saturating_sub(from) + 1);
            for k in (1..max).rev() {
                let s = len - k;
                if s >= from && self.is_proper_prefix_of_pattern(&bytes[s..]) {
                    safe = s;
                    break;
                }
            }
        }
        let input = aho_corasick::Input::new(bytes).span(from..len);
        if let Some(m) = self.ac.find(input) {
            if m.start() < safe {
                return Step::Match {
                    start: m.start(),
                    end: m.end(),
                };
            }
        }
        Step::Wait {
            resume: safe,
            safe,
            skip: false,
        }
    }
}

/// Where an open value ends, if that is known yet. `from` is where to look from (a previous
/// look may have covered earlier text).
pub fn find_open_end(
    kind: OpenEnd,
    class: Option<&ByteSet>,
    text: &str,
    from: usize,
    eof: bool,
) -> Option<usize> {
    let bytes = text.as_bytes();
    match kind {
        OpenEnd::RunEnd => {
            let class = class?;
            let e = run_end(bytes, class, from);
            (e < bytes.len() || eof).then_some(e)
        }
        OpenEnd::PemEnd => {
            let mut i = from;
            while let Some(p) = find_bytes(bytes, b"-----END", i) {
                let tail_start = p + 8;
                let window_end = (tail_start + 64).min(bytes.len());
                if let Some(q) = find_bytes(&bytes[..window_end], b"-----", tail_start) {
                    return Some(q + 5);
                }
                if window_end == bytes.len() && !eof {
                    return None;
                }
                i = p + 1;
            }
            eof.then_some(bytes.len())
        }
    }
}

/// How far after a PEM header its body must show.
pub const PEM_BODY_WINDOW: usize = 256;
/// Base64 characters in a row that make a PEM body.
const PEM_BODY_MIN: usize = 32;

/// Whether a PEM body follows a header ending at `from`: after line breaks and optional
/// header lines (`Proc-Type:`, `DEK-Info:`, `Comment:`), at least 32 base64 characters in a
/// row. Decided within [`PEM_BODY_WINDOW`] bytes of the header, or at the end of the text.
pub fn pem_body_follows(bytes: &[u8], from: usize, eof: bool) -> Tri {
    let limit = (from + PEM_BODY_WINDOW).min(bytes.len());
    let undecided = || {
        if eof || limit - from >= PEM_BODY_WINDOW {
            Tri::No
        } else {
            Tri::NeedMore
        }
    };
    let mut i = from;
    loop {
        // Blank space and line breaks, also escaped ones (`\n` in a JSON string such as a
        // service-account key file).
        while i < limit {
            match bytes[i] {
                b'\r' | b'\n' | b' ' | b'\t' => i += 1,
                b'\\' if i + 1 >= limit => return undecided(),
                b'\\' if matches!(bytes[i + 1], b'n' | b'r') => i += 2,
                _ => break,
            }
        }
        if i >= limit {
            return undecided();
        }
        let rest = &bytes[i..limit];
        // Encryption headers of PEM, armor headers of PGP.
        let header = [
            &b"Proc-Type:"[..],
            b"DEK-Info:",
            b"Comment:",
            b"Version:",
            b"Hash:",
            b"Charset:",
        ]
        .iter()
        .any(|h| rest.starts_with(h) || (rest.len() < h.len() && h.starts_with(rest)));
        if !header {
            break;
        }
        let newline = rest.iter().position(|&b| b == b'\n');
        let escaped = rest.windows(2).position(|w| w == b"\\n").map(|p| p + 1);
        match newline.into_iter().chain(escaped).min() {
            Some(n) => i += n + 1,
            None => return undecided(),
        }
    }
    let run = bytes[i..limit]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .count();
    if run >= PEM_BODY_MIN {
        Tri::Yes
    } else if i + run < limit {
        // Something else follows the header: no body.
        Tri::No
    } else {
        undecided()
    }
}

/// How far back an open-end search must keep text so a marker split across pushes is found.
pub const PEM_END_TAIL: usize = 8 + 64 + 5;

fn find_bytes(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A text still streaming in, as a detector sees it.
    fn unfinished(text: &str) -> View<'_> {
        View {
            text,
            eof: false,
            chop: 256,
            floor: 0,
            leads: None,
            digits: None,
        }
    }

    /// Stretches listed once for several detectors are passed over as each detector walking
    /// them itself passes over them, from every position, in finished and unfinished texts.
    #[test]
    fn listed_stretches_pass_over_what_walks_do() {
        let detectors = crate::output::catalog(&crate::output::CatalogConfig::default()).unwrap();
        let matchers = || detectors.iter().map(|d| &d.matcher);
        let shared = SharedWalks::of(matchers());
        assert!(!shared.0.is_empty(), "no class is walked by two detectors");
        let runs: Vec<&RegexRun> = matchers()
            .filter_map(|m| match m {
                Matcher::Regex(r) if shared.0.iter().any(|c| c.0.same(&r.class)) => Some(&**r),
                _ => None,
            })
            .collect();
        let parts = prop::sample::select(vec![
            "password",
            "key",
            "=",
            ":",
            " ",
            "\"",
            "'",
            "a1",
            "x",
            "7",
            "12345678",
            "Zq9",
            ",",
            "\n",
            "(",
            "-",
            "abcdefgh",
            "h7Gk29fLq0Xz",
        ]);
        let texts = prop::collection::vec(parts, 0..24).prop_map(|p| p.concat());
        proptest!(|(text in texts, eof in any::<bool>())| {
            let listed = Digits::of(text.as_bytes(), &shared);
            let walked = Digits::of(text.as_bytes(), &SharedWalks::default());
            let view = |digits| View { eof, digits: Some(digits), ..unfinished(&text) };
            for r in &runs {
                for i in 0..=text.len() {
                    prop_assert_eq!(
                        r.past_sparse(&view(&listed), i),
                        r.past_sparse(&view(&walked), i),
                        "from {} in {:?}", i, text
                    );
                }
            }
        });
    }

    /// Every built-in detector's quiet step equals its scanning step wherever the caller would
    /// take it: no watched byte from the resume point (less the margin) on, or for a token,
    /// no lead starting there and no tail there that begins one the step would wait for.
    /// Texts are built from the bytes and words the detectors look for, so that most cases
    /// are near a wake-up.
    #[test]
    fn quiet_steps_equal_scanning_steps() {
        use proptest::test_runner::{Config, TestRunner};
        let cfg = crate::output::CatalogConfig {
            canaries: vec!["EGCANARY-7f3a".into()],
            fingerprints: vec!["you are a helpful".into()],
            ..Default::default()
        };
        let detectors = crate::output::catalog(&cfg).unwrap();
        let parts = vec![
            "a",
            "s",
            "k",
            "-",
            "_",
            "@",
            "1",
            "0",
            "7",
            " ",
            ",",
            "=",
            ":",
            ">",
            ".",
            "(",
            "+",
            "A",
            "K",
            "S",
            "x",
            "e",
            "y",
            "J",
            "h",
            "f",
            "\n",
            "'",
            "\"",
            "key",
            "sk-",
            "sk_live_",
            "ghp_",
            "AKIA",
            "eyJ",
            "xoxb-",
            "hf_",
            "SK",
            "pass",
            "secret",
            "token",
            "aws",
            "555",
            "4111",
            "DE89",
            "-----BEGIN",
            "://",
            "mail",
            "ssn",
            "phone",
            "é",
            "EGCAN",
            "ARY-7f3a",
            "You are",
            " a help",
            "ful",
        ];
        let strategy = (
            proptest::collection::vec(proptest::sample::select(parts), 0..24),
            0usize..200,
            any::<bool>(),
        );
        // A value up to eight blanks after its gate, scanned from every position: the gate's
        // margin must reach back far enough.
        for n in 0..=8 {
            let blanks = " ".repeat(n);
            for text in [
                format!("password ={blanks}Tr0ub4dor&3xQ9 and"),
                format!(
                    "aws_secret_access_key ={blanks}wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY x"
                ),
            ] {
                let view = unfinished(&text);
                for d in &detectors {
                    let (set, margin) = d.matcher.watch();
                    for from in 0..text.len() {
                        if set
                            .find(text.as_bytes(), from.saturating_sub(margin))
                            .is_none()
                            && !matches!(d.matcher, Matcher::Token(_))
                        {
                            assert_eq!(
                                d.matcher.quiet_step(&view, from, false),
                                d.matcher.step(&view, from, false),
                                "{} from {from} in {text:?}",
                                d.id
                            );
                        }
                    }
                }
            }
        }
        let checked = std::cell::RefCell::new(vec![0usize; detectors.len()]);
        let mut runner = TestRunner::new(Config::with_cases(3000));
        let result = runner.run(&strategy, |(parts, from, skip)| {
            let text: String = parts.concat();
            let bytes = text.as_bytes();
            let mut from = from % (text.len() + 1);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let view = unfinished(&text);
            for (k, d) in detectors.iter().enumerate() {
                let m = &d.matcher;
                let (set, margin) = m.watch();
                // A glued token never skips: no step leaves it so.
                let skip = skip && !matches!(m, Matcher::Token(t) if t.glued);
                let quiet = match m {
                    Matcher::Token(t) => (from..bytes.len()).all(|a| {
                        let tail = &bytes[a..];
                        !t.leads.iter().any(|l| {
                            let l = l.as_bytes();
                            tail.starts_with(l)
                                || (l.starts_with(tail) && m.waits_for_tail(bytes, a, from))
                        })
                    }),
                    _ => set.find(bytes, from.saturating_sub(margin)).is_none(),
                };
                // (The caller steps quietly over a piece of new text only.)
                if !quiet || from == bytes.len() {
                    continue;
                }
                checked.borrow_mut()[k] += 1;
                let want = m.step(&view, from, skip);
                prop_assert_eq!(m.quiet_step(&view, from, skip), want, "{} {:?}", d.id, text);
                if let (Some(idle), Step::Wait { resume, skip, .. }) =
                    (m.idle_skip(bytes, bytes.len()), want)
                {
                    prop_assert_eq!((resume, skip), (bytes.len(), idle), "{}", d.id);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        // Every detector was checked on many texts.
        for (d, &n) in detectors.iter().zip(checked.borrow().iter()) {
            assert!(n >= 300, "{}: only {n} quiet cases", d.id);
        }
    }

    /// Two token detectors with overlapping leads around a detector that has none, and one
    /// whose short lead keeps it out of the shared pass.
    fn lead_matchers() -> Vec<Matcher> {
        let judge: fn(&str, bool) -> Tri = |_, _| Tri::No;
        let class = ByteSet::from_spec(b"A-Za-z0-9_-");
        let token =
            |leads: Vec<&'static str>| TokenRun::new(class, leads, judge).map(Matcher::Token);
        vec![
            token(vec!["sk-", "sk-ant-"]),
            Literals::new(&["canary".to_string()], false).map(Matcher::Literals),
            token(vec!["ant-", "hf_", "k-a"]),
            token(vec!["sk", "xyz"]),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Every start of every lead of each detector in the shared pass (token detectors whose
    /// leads are all at least three bytes), sorted and without repeats.
    fn naive_hits(matchers: &[Matcher], text: &str, from: usize) -> Vec<Option<Vec<usize>>> {
        matchers
            .iter()
            .map(|m| match m {
                Matcher::Token(t) if t.leads.iter().all(|l| l.len() >= 3) => {
                    let mut v: Vec<usize> = t
                        .leads
                        .iter()
                        .flat_map(|l| (0..text.len()).filter(move |&i| text[i..].starts_with(l)))
                        .filter(|&i| i >= from)
                        .collect();
                    v.sort_unstable();
                    v.dedup();
                    Some(v)
                }
                _ => None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn lead_hits_grow_and_shrink_with_the_text(
            parts in prop::collection::vec(
                prop::sample::select(vec!["sk-", "sk-ant-", "ant-", "hf_", "k", "-", "a", " ", "x"]),
                0..40,
            ),
            cuts in prop::collection::vec(0usize..200, 0..8),
            trims in prop::collection::vec(0usize..200, 0..8),
        ) {
            let matchers = lead_matchers();
            let leads = Leads::new(&matchers).unwrap();
            let text: String = parts.concat();
            // All at once.
            let mut once = LeadHits::default();
            let mut found = vec![0usize; matchers.len()];
            once.extend(&leads, &text, 0, |det| found[det] += 1);
            prop_assert_eq!(&once.per, &naive_hits(&matchers, &text, 0));
            // Each occurrence is reported to the caller (two leads at one start twice).
            for (det, hits) in once.per.iter().enumerate() {
                let n = hits.as_ref().map_or(0, Vec::len);
                prop_assert!(found[det] >= n && (found[det] == 0) == (n == 0));
            }
            // Grown piece by piece, with the front dropped now and then, as a stream keeps it.
            let mut ends: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
            ends.push(text.len());
            ends.sort_unstable();
            let mut grown = LeadHits::default();
            let mut base = 0;
            for (k, &end) in ends.iter().enumerate() {
                grown.extend(&leads, &text[base..end], base, |_| {});
                // The lead beginnings its DFA state names are the tails that begin a lead.
                // (No state yet: no text, and no tail.)
                let bytes = &text.as_bytes()[base..end];
                if let Some(sid) = grown.state {
                    let (listed, walked) = leads.pending_both_ways(sid, bytes, 0);
                    prop_assert_eq!(listed, walked);
                } else {
                    prop_assert_eq!(end, 0);
                }
                if let Some(t) = trims.get(k) {
                    base = base.max(t % (end + 1));
                    grown.trim(base);
                }
            }
            prop_assert_eq!(&grown.per, &naive_hits(&matchers, &text, base));
        }
    }
}
