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

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_lite::Regex;

/// A set of ASCII bytes, as a 256-bit map. Bytes >= 0x80 are never members, so run
/// boundaries always fall on UTF-8 character boundaries.
#[derive(Clone, Copy)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    pub const fn empty() -> Self {
        ByteSet([0; 4])
    }

    const fn with(mut self, b: u8) -> Self {
        if b < 0x80 {
            self.0[(b >> 6) as usize] |= 1 << (b & 63);
        }
        self
    }

    const fn without(mut self, b: u8) -> Self {
        self.0[(b >> 6) as usize] &= !(1 << (b & 63));
        self
    }

    /// Builds a set from a compact description: single bytes and `a-z` style ranges.
    pub const fn from_spec(spec: &[u8]) -> Self {
        let mut set = ByteSet::empty();
        let mut i = 0;
        while i < spec.len() {
            if i + 2 < spec.len() && spec[i + 1] == b'-' {
                let mut c = spec[i];
                while c <= spec[i + 2] {
                    set = set.with(c);
                    c += 1;
                }
                i += 3;
            } else {
                set = set.with(spec[i]);
                i += 1;
            }
        }
        set
    }

    /// Every printable ASCII byte except the given ones.
    pub const fn printable_except(excluded: &[u8]) -> Self {
        let mut set = ByteSet::empty();
        let mut c = b'!';
        while c <= b'~' {
            set = set.with(c);
            c += 1;
        }
        let mut i = 0;
        while i < excluded.len() {
            set = set.without(excluded[i]);
            i += 1;
        }
        set
    }

    #[inline]
    pub fn has(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    /// Position of the first member in `bytes[from..]`.
    #[inline]
    pub fn find(&self, bytes: &[u8], from: usize) -> Option<usize> {
        bytes
            .get(from..)?
            .iter()
            .position(|&b| self.has(b))
            .map(|p| p + from)
    }
}

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

/// A detector over runs whose value is confirmed by a regex and an optional validator.
pub struct RegexRun {
    pub class: ByteSet,
    /// Runs begin at the first byte of this set within a class stretch.
    pub start: ByteSet,
    /// A run is only examined if it contains one of these bytes.
    pub trigger: Option<ByteSet>,
    pub regex: Regex,
    /// Capture group that is the value (0 = whole match).
    pub group: usize,
    pub validate: fn(&str) -> bool,
    /// Optional look-back: the value only counts if the text before the run matches this.
    pub context: Option<Regex>,
    /// A value of this detector stays open after its match, e.g. a PEM header.
    pub open_end: Option<OpenEnd>,
    /// If set, a run piece is only examined if it matches this (custom detectors' keywords).
    pub require: Option<Regex>,
    /// The value may not touch an ASCII letter or digit on either side in the text.
    pub bounded: bool,
}

impl RegexRun {
    /// A detector whose runs are stretches of `class` beginning at a byte of `start`.
    pub fn new(class: ByteSet, start: ByteSet, regex: Regex) -> Self {
        RegexRun {
            class,
            start,
            trigger: None,
            regex,
            group: 0,
            validate: |_| true,
            context: None,
            open_end: None,
            require: None,
            bounded: false,
        }
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

    pub fn context(mut self, c: Regex) -> Self {
        self.context = Some(c);
        self
    }

    pub fn open_end(mut self, e: OpenEnd) -> Self {
        self.open_end = Some(e);
        self
    }

    pub fn require(mut self, r: Regex) -> Self {
        self.require = Some(r);
        self
    }
}

/// A token detector: a run that begins with one of `leads` and is judged by `judge` from its
/// prefix; once judged a secret, the whole run is.
pub struct TokenRun {
    pub class: ByteSet,
    pub leads: Vec<&'static str>,
    pub judge: fn(&str, bool) -> Tri,
}

/// A set of literal strings (canaries, system-prompt fingerprints, custom literals).
pub struct Literals {
    ac: AhoCorasick,
    patterns: Vec<Vec<u8>>,
    case_insensitive: bool,
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
        Some(Literals {
            ac,
            patterns,
            case_insensitive,
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

    pub fn class(&self) -> Option<&ByteSet> {
        match self {
            Matcher::Regex(r) => Some(&r.class),
            Matcher::Token(t) => Some(&t.class),
            Matcher::Literals(_) => None,
        }
    }
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
            // Next run: a start byte. Runs without a trigger byte are skipped quickly.
            let run_start = match self.next_run_start(bytes, i) {
                Some(s) => s,
                None => {
                    return Step::Wait {
                        resume: len,
                        safe: len,
                        skip: false,
                    }
                }
            };
            let stretch_end = run_end(bytes, &self.class, run_start);
            // Pieces of at most `chop` bytes, counted from the run start.
            let mut piece = run_start;
            loop {
                let piece_end = (piece + v.chop).min(stretch_end);
                let complete = piece_end < len || v.eof || piece_end - piece >= v.chop;
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
                if piece_end >= stretch_end {
                    break;
                }
                piece = piece_end;
            }
            i = stretch_end;
        }
    }

    /// Next position >= `i` where a run of this detector begins. With a trigger, runs lacking
    /// one are skipped: the search jumps to the next trigger byte and walks back to its run.
    fn next_run_start(&self, bytes: &[u8], i: usize) -> Option<usize> {
        let len = bytes.len();
        let mut i = i;
        loop {
            if i >= len {
                return None;
            }
            if let Some(trigger) = &self.trigger {
                // A run whose trigger is yet to come may be open at the end of the text.
                match trigger.find(bytes, i) {
                    Some(t) => {
                        let mut a = t;
                        while a > i && self.class.has(bytes[a - 1]) {
                            a -= 1;
                        }
                        match self.start.find(&bytes[..t + 1], a) {
                            // The trigger byte itself may not be inside a run; look on.
                            Some(s) if self.class_stretch_reaches(bytes, s, t) => return Some(s),
                            _ => {
                                i = t + 1;
                                continue;
                            }
                        }
                    }
                    None => {
                        // No trigger ahead: only the run touching the end can still matter.
                        let mut a = len;
                        while a > i && self.class.has(bytes[a - 1]) {
                            a -= 1;
                        }
                        return self.start.find(bytes, a);
                    }
                }
            }
            let s = self.start.find(bytes, i)?;
            return Some(s);
        }
    }

    fn class_stretch_reaches(&self, bytes: &[u8], s: usize, t: usize) -> bool {
        bytes[s..=t].iter().all(|&b| self.class.has(b))
    }

    /// First value inside one complete run piece: `(start, end)` relative to the piece.
    fn confirm(&self, v: &View<'_>, piece: usize, text: &str) -> Option<(usize, usize)> {
        if let Some(req) = &self.require {
            if !req.is_match(text) {
                return None;
            }
        }
        if let Some(ctx) = &self.context {
            let lo = floor_char_boundary(v.text, piece.saturating_sub(64).max(v.floor));
            let before = v.text.get(lo..piece)?;
            if !ctx.is_match(before) {
                return None;
            }
        }
        let bytes = v.text.as_bytes();
        let touches = |i: Option<&u8>| i.is_some_and(u8::is_ascii_alphanumeric);
        for caps in self.regex.captures_iter(text) {
            let Some(m) = caps.get(self.group) else {
                continue;
            };
            if m.is_empty() {
                continue;
            }
            let (s, e) = (piece + m.start(), piece + m.end());
            if self.bounded
                && (touches(s.checked_sub(1).and_then(|p| bytes.get(p))) || touches(bytes.get(e)))
            {
                continue;
            }
            if (self.validate)(m.as_str()) {
                return Some((m.start(), m.end()));
            }
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
        while i < len {
            let Some(s) = self.class.find(bytes, i) else {
                break;
            };
            let e = run_end(bytes, &self.class, s);
            let complete = e < len || v.eof;
            let run = &v.text[s..e];
            let lead = self.leads.iter().find(|l| run.starts_with(**l));
            match lead {
                Some(_) => match (self.judge)(run, complete) {
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
                    _ => {}
                },
                None => {
                    if !complete && self.leads.iter().any(|l| l.starts_with(run)) {
                        return Step::Wait {
                            resume: s,
                            safe: s,
                            skip: false,
                        };
                    }
                }
            }
            if !complete {
                // This run can hold no value; skip the rest of it as it arrives.
                return Step::Wait {
                    resume: len,
                    safe: len,
                    skip: true,
                };
            }
            i = e;
        }
        Step::Wait {
            resume: len,
            safe: len,
            skip: false,
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
