//! One-shot and streaming redaction over the detector catalog.
//!
//! [`Scanner::redact`] scans a whole text. [`StreamRedactor`] is fed fragments of any size and
//! releases every byte that can no longer be part of a value, holding back only text whose fate
//! depends on what comes next (an unfinished word that could still become an e-mail address, a
//! token prefix, a partial canary). Its output equals the one-shot output for every way of
//! splitting the input, including splits inside UTF-8 characters.

use serde::Serialize;

use super::detectors::{Action, Category, Detector};
use super::matcher::{
    find_open_end, pem_body_follows, ByteSet, LeadHits, Leads, Matcher, OpenEnd, Step, Tri, View,
};
use super::matcher::{Digits, SharedWalks, PEM_END_TAIL};
use crate::audit::sign::Fingerprinter;
use crate::unicode::{fold_char, Fold};

/// The longest text [`Scanner::redact`] scans whole; longer ones go through a stream in
/// pieces of `BLOCK` (16 KiB).
pub const WHOLE_MAX: usize = 64 * 1024;
const BLOCK: usize = 16 * 1024;

/// A stream piece at least this long has its digits mapped once for all number detectors
/// ([`Digits`]); shorter ones are searched by each detector that wakes for them.
const DIGIT_MAP_MIN: usize = 1024;

/// Default length of a run piece: the most text a single run can hold back.
pub const DEFAULT_HOLDBACK: usize = 512;
/// Look-back kept before any scan position, for detectors that read the text before a value.
const LOOKBACK: usize = 64;
/// The longest stream piece whose detectors may be stepped without scanning when none of their
/// watched bytes arrived ([`Matcher::watch`]); a longer piece wakes nearly every detector.
const QUIET_PIECE_MAX: usize = 256;

/// The most text a lagging detector holds behind the end before a pass steps it again.
const LAG_MAX: usize = 256;

/// A set of detectors, by index.
#[derive(Clone, Debug)]
struct DetSet(Vec<u64>);

impl DetSet {
    fn new(n: usize) -> Self {
        DetSet(vec![0; n.div_ceil(64)])
    }

    fn has(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 != 0)
    }

    fn insert(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    fn clear(&mut self) {
        self.0.fill(0);
    }

    /// Detectors `64 * w` to `64 * w + 63`, one bit each.
    fn word(&self, w: usize) -> u64 {
        self.0.get(w).copied().unwrap_or(0)
    }
}

/// Per byte value, the detectors it wakes: one table of set words per 64 detectors, so
/// that a piece's wake set is one lookup per byte and word.
struct Wakers(Vec<[u64; 256]>);

impl Wakers {
    fn new(n: usize) -> Self {
        Wakers(vec![[0; 256]; n.div_ceil(64)])
    }

    fn insert(&mut self, b: u8, det: usize) {
        if let Some(t) = self.0.get_mut(det / 64) {
            t[usize::from(b)] |= 1 << (det % 64);
        }
    }

    /// Adds the detectors that any byte of `piece` wakes to `set`.
    fn wake(&self, piece: &[u8], set: &mut DetSet) {
        for (t, w) in self.0.iter().zip(set.0.iter_mut()) {
            *w |= piece.iter().fold(0, |acc, &b| acc | t[usize::from(b)]);
        }
    }
}

/// Which idle detectors a pass leaves idle, unstepped.
#[derive(Clone, Copy)]
enum Stay {
    /// None: the pass ends the text, or brings a piece too long to step quietly.
    None,
    /// All: the pass brings no text (it follows a commit in the same push).
    All,
    /// Those the short piece it brings does not wake.
    Unwoken,
}

impl Stay {
    /// Whether detector `i` of a resting set (the idle ones, or the lagging ones) stays so.
    #[cfg(any(test, debug_assertions))]
    fn keeps(self, resting: &DetSet, woken: &DetSet, i: usize) -> bool {
        resting.has(i)
            && match self {
                Stay::None => false,
                Stay::All => true,
                Stay::Unwoken => !woken.has(i),
            }
    }

    /// Of the word `w` of the detector sets (detectors `64 * w` on), those of a resting set
    /// that stay so.
    fn skips_word(self, resting: &DetSet, woken: &DetSet, w: usize) -> u64 {
        match self {
            Stay::None => 0,
            Stay::All => resting.word(w),
            Stay::Unwoken => resting.word(w) & !woken.word(w),
        }
    }
}

/// One detected value: where it was (byte offsets in the text as seen), never what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub detector: String,
    pub category: Category,
    pub action: Action,
    pub start: usize,
    pub end: usize,
    /// The channel of model text it was found in (set by the response filter).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// The keyed fingerprint of the value ([`crate::audit::sign::fingerprint`]), when the
    /// scanner has an audit key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The result of a one-shot redaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub text: String,
    pub findings: Vec<Finding>,
    /// A `block` detector fired: `text` ends right before the value.
    pub blocked: bool,
}

pub struct Scanner {
    detectors: Vec<Detector>,
    /// The token detectors' leads, found for all of them in one pass.
    leads: Option<Leads>,
    /// Per detector, the bytes that wake it and how far back they matter ([`Matcher::watch`]).
    watch: Vec<(ByteSet, usize)>,
    /// Per byte value, the detectors outside the shared lead pass that it wakes.
    wakers: Wakers,
    /// The detectors that may lag ([`Matcher::lags`]).
    lags: DetSet,
    holdback: usize,
    /// Whether a detector looks for digit-dense stretches: a whole text's digits are then
    /// mapped once for all of them.
    maps_digits: bool,
    /// The digit stretches listed in that map for several detectors at once.
    shared_walks: SharedWalks,
    /// The audit key: findings carry a keyed fingerprint of their value when set.
    fingerprint_key: Option<Vec<u8>>,
}

impl Scanner {
    /// A scanner over `detectors` (in priority order). Detectors whose action is `off` are
    /// dropped. `holdback` is clamped to at least 256 bytes, the longest built-in value shape.
    pub fn new(detectors: Vec<Detector>, holdback: usize) -> Self {
        let detectors: Vec<Detector> = detectors
            .into_iter()
            .filter(|d| d.action != Action::Off)
            .collect();
        let leads = Leads::new(detectors.iter().map(|d| &d.matcher));
        let watch: Vec<_> = detectors.iter().map(|d| d.matcher.watch()).collect();
        let n = detectors.len();
        let mut wakers = Wakers::new(n);
        for (i, (set, _)) in watch.iter().enumerate() {
            if leads.as_ref().is_some_and(|l| l.shares(i)) {
                continue;
            }
            for b in 0..=255 {
                if set.has(b) {
                    wakers.insert(b, i);
                }
            }
        }
        let mut lags = DetSet::new(n);
        (0..n)
            .filter(|&i| detectors[i].matcher.lags())
            .for_each(|i| lags.insert(i));
        Scanner {
            lags,
            leads,
            watch,
            wakers,
            maps_digits: detectors.iter().any(|d| d.matcher.seeks_digits()),
            shared_walks: SharedWalks::of(detectors.iter().map(|d| &d.matcher)),
            detectors,
            holdback: holdback.max(256),
            fingerprint_key: None,
        }
    }

    /// Fingerprints every finding's value (its folded form) under `key`
    /// ([`crate::audit::sign::fingerprint`]).
    pub fn with_fingerprint_key(mut self, key: Option<Vec<u8>>) -> Self {
        self.fingerprint_key = key.filter(|k| !k.is_empty());
        self
    }

    fn fingerprinter(&self, d: &Detector) -> Option<Fingerprinter> {
        self.fingerprint_key
            .as_deref()
            .map(|k| Fingerprinter::new(k, &d.id))
    }

    /// A finding; its fingerprint is `print` fed with `value` (the value's rest).
    fn finding(
        &self,
        d: &Detector,
        print: Option<Fingerprinter>,
        value: &str,
        start: usize,
        end: usize,
    ) -> Finding {
        Finding {
            detector: d.id.clone(),
            category: d.category,
            action: d.action,
            start,
            end,
            channel: String::new(),
            fingerprint: print.map(|mut f| {
                f.update(value.as_bytes());
                f.finish()
            }),
        }
    }

    pub fn detectors(&self) -> impl Iterator<Item = &Detector> {
        self.detectors.iter()
    }

    /// Redacts a whole text at once. Detectors read the folded text ([`fold_char`]); what is
    /// written and the findings' offsets are in the original text.
    ///
    /// A text longer than [`WHOLE_MAX`] is fed to a stream in 16 KiB pieces, whose
    /// output and findings equal [`Scanner::redact_whole`]'s (the stream's guarantee): each
    /// detector then reads a piece while it is in the cache, instead of running ahead through
    /// the whole text on its own and reading it from memory again, detector after detector.
    pub fn redact(&self, raw: &str) -> Redaction {
        if raw.len() <= WHOLE_MAX {
            return self.redact_whole(raw);
        }
        let mut st = self.stream();
        let mut out = String::with_capacity(raw.len());
        // Blocks of whole characters: the text is known to be UTF-8.
        let mut rest = raw;
        while !rest.is_empty() {
            let (block, next) = rest.split_at(rest.floor_char_boundary(BLOCK));
            st.push_str(block, &mut out);
            rest = next;
        }
        st.finish(&mut out);
        Redaction {
            blocked: st.blocked(),
            findings: st.take_findings(),
            text: out,
        }
    }

    /// [`Scanner::redact`] with every detector over the whole text: the reference the
    /// stream and long texts are held to.
    pub fn redact_whole(&self, raw: &str) -> Redaction {
        let mut map = FoldMap::default();
        let mut folded = String::new();
        // ASCII folds to itself: read it in place.
        let text = if raw.is_ascii() {
            raw
        } else {
            map.push(raw, &mut folded);
            folded.as_str()
        };
        let digits = self
            .maps_digits
            .then(|| Digits::of(text.as_bytes(), &self.shared_walks));
        let view = View {
            text,
            eof: true,
            chop: self.holdback,
            floor: 0,
            leads: None,
            digits: digits.as_ref(),
        };
        let hits = self.leads.as_ref().map(|l| {
            let mut h = LeadHits::default();
            h.extend(l, text, 0, |_| {});
            h
        });
        let mut out = String::with_capacity(raw.len());
        let mut findings = Vec::new();
        let mut rpos = 0;
        let mut states = vec![DetState::at(0); self.detectors.len()];
        loop {
            let mut best: Option<(usize, usize, usize)> = None;
            for (i, d) in self.detectors.iter().enumerate() {
                let st = &mut states[i];
                let step = loop {
                    let step = match st.cached {
                        Some(step) => step,
                        None => {
                            let dv = view.for_detector(hits.as_ref(), i, 0);
                            let step = d.matcher.step(&dv, st.resume, st.skip);
                            st.cached = Some(step);
                            step
                        }
                    };
                    // A PEM header without a body is no private key: look past it.
                    if let Some(after) = headless_pem(step, text.as_bytes(), true) {
                        *st = DetState::at(after);
                        continue;
                    }
                    break step;
                };
                let (s, e) = match step {
                    Step::Match { start, end } => (start, end),
                    Step::Open { start, end, scan } => {
                        let e = find_open_end(end, d.matcher.class(), text, scan, true)
                            .unwrap_or(text.len());
                        (start, e)
                    }
                    Step::Wait { .. } => continue,
                };
                if best.is_none_or(|(bs, _, _)| s < bs) {
                    best = Some((s, e, i));
                }
            }
            let Some((s, e, i)) = best else {
                out.push_str(raw.get(rpos..).unwrap_or_default());
                break;
            };
            let (rs, re) = (map.raw(s, false).max(rpos), map.raw(e, true));
            out.push_str(raw.get(rpos..rs).unwrap_or_default());
            let d = &self.detectors[i];
            findings.push(self.finding(
                d,
                self.fingerprinter(d),
                text.get(s..e).unwrap_or_default(),
                rs,
                re,
            ));
            match d.action {
                Action::Block => {
                    return Redaction {
                        text: out,
                        findings,
                        blocked: true,
                    }
                }
                Action::Monitor => out.push_str(raw.get(rs..re).unwrap_or_default()),
                _ => placeholder(&mut out, &d.id),
            }
            rpos = re.max(rpos);
            for (st, d) in states.iter_mut().zip(&self.detectors) {
                st.after_commit(&d.matcher, text, 0, e, self.holdback);
            }
        }
        Redaction {
            text: out,
            findings,
            blocked: false,
        }
    }

    pub fn stream(&self) -> StreamRedactor<'_> {
        StreamRedactor {
            scanner: self,
            buf: String::new(),
            raw: String::new(),
            raw_base: 0,
            raw_released: 0,
            map: FoldMap::default(),
            base: 0,
            released: 0,
            states: vec![DetState::at(0); self.detectors.len()],
            open: None,
            blocked: false,
            findings: Vec::new(),
            utf8: Vec::new(),
            hits: LeadHits::default(),
            fresh: 0,
            pass_end: 0,
            woken: DetSet::new(self.detectors.len()),
            idle: DetSet::new(self.detectors.len()),
            lag: DetSet::new(self.detectors.len()),
            lag_floor: usize::MAX,
            #[cfg(test)]
            steps: (0, 0),
        }
    }
}

/// Where to look on when `step` opens a PEM header that no body follows (`None` otherwise).
fn headless_pem(step: Step, bytes: &[u8], eof: bool) -> Option<usize> {
    match step {
        Step::Open {
            end: OpenEnd::PemEnd,
            scan,
            ..
        } if pem_body_follows(bytes, scan, eof) == Tri::No => Some(scan),
        _ => None,
    }
}

fn placeholder(out: &mut String, id: &str) {
    out.push_str("[REDACTED:");
    out.push_str(id);
    out.push(']');
}

/// What one detector knows, in absolute positions. `from` is the truncation point its
/// verdicts were computed under; `cached` holds a final verdict (a value ahead, or at the end
/// of a whole text, none) until a commit makes it stale.
#[derive(Clone, Copy)]
struct DetState {
    from: usize,
    resume: usize,
    skip: bool,
    cached: Option<Step>,
    /// The end of the text when this detector last stepped.
    seen: usize,
    /// No byte the detector watches stands between its resume point (less the watch's
    /// margin) and `seen`: a piece bringing none either leaves it nothing to scan.
    quiet: bool,
}

impl DetState {
    fn at(p: usize) -> Self {
        DetState {
            from: p,
            resume: p,
            skip: false,
            cached: None,
            seen: 0,
            quiet: false,
        }
    }

    /// The state of an idle detector at `at`, the end of the text at the latest pass (`text`
    /// starts at absolute offset `base`).
    fn wake(&mut self, m: &Matcher, text: &str, base: usize, at: usize) {
        self.cached = None;
        self.resume = at;
        self.seen = at;
        self.quiet = true;
        // (Text trimmed past `at` while a value stayed open: the commit that closes the value
        // starts this detector afresh.)
        self.skip = at
            .checked_sub(base)
            .and_then(|rel| m.idle_skip(text.as_bytes(), rel))
            .unwrap_or(false);
    }

    /// A value ending at `p` was committed: verdicts about text after `p` survive if the
    /// truncation at `p` does not split one of this detector's runs. If it does, only the run
    /// it cut is looked at again; past that run the old verdict still holds. `text` starts at
    /// absolute offset `base`.
    fn after_commit(&mut self, m: &Matcher, text: &str, base: usize, p: usize, chop: usize) {
        let decided_upto = match self.cached {
            Some(Step::Match { start, .. } | Step::Open { start, .. }) => start,
            Some(Step::Wait { resume, .. }) => resume,
            None => self.resume,
        };
        let bytes = text.as_bytes();
        let rel = p - base;
        if p > decided_upto {
            *self = DetState::at(p);
            return;
        }
        if p == self.from || m.unsplit_at(bytes, rel) {
            return;
        }
        // The cut run ends at the first byte outside the class; judge just that run.
        let Some(end) = m.class().map(|c| {
            rel + bytes[rel..]
                .iter()
                .position(|&b| !c.has(b))
                .unwrap_or(bytes.len() - rel)
        }) else {
            *self = DetState::at(p);
            return;
        };
        if end >= bytes.len() || end + base > decided_upto {
            *self = DetState::at(p);
            return;
        }
        // Keep the whole character that ends the run in view.
        let mut cut = end + 1;
        while cut < text.len() && !text.is_char_boundary(cut) {
            cut += 1;
        }
        let view = View {
            text: &text[..cut],
            eof: false,
            chop,
            floor: 0,
            leads: None,
            digits: None,
        };
        match m.step(&view, rel, false) {
            step @ (Step::Match { start, .. } | Step::Open { start, .. }) if start < end => {
                *self = DetState {
                    cached: Some(shift(step, base, true)),
                    ..DetState::at(p)
                };
            }
            // Nothing in the cut run: the old verdict covers everything after it.
            _ => self.from = end + base,
        }
    }
}

struct OpenValue {
    det: usize,
    start: usize,
    /// Where the value starts in the original text (the folded map may be trimmed past it).
    raw_start: usize,
    kind: OpenEnd,
    scan: usize,
    /// The value's fingerprint so far, fed up to `printed` (the text before is trimmed).
    print: Option<Fingerprinter>,
    printed: usize,
}

/// What an open value brings to its commit.
struct OpenCommit {
    raw_start: usize,
    print: Option<Fingerprinter>,
    /// Where the fingerprint's remaining text starts (folded, absolute).
    from: usize,
}

/// A stateful filter for one text stream. Detectors read the folded text; positions inside are
/// absolute offsets in it, mapped back to the original text for output and findings.
pub struct StreamRedactor<'s> {
    scanner: &'s Scanner,
    /// Retained folded text, starting at absolute offset `base`.
    buf: String,
    /// Retained original text from `raw_base`; everything before `raw_released` is written out
    /// or suppressed.
    raw: String,
    raw_base: usize,
    raw_released: usize,
    map: FoldMap,
    base: usize,
    /// Everything before this has been written out (or suppressed).
    released: usize,
    /// Per detector: where its scan resumes and any final verdict it has reached.
    states: Vec<DetState>,
    open: Option<OpenValue>,
    blocked: bool,
    findings: Vec<Finding>,
    /// Bytes of an unfinished UTF-8 character.
    utf8: Vec<u8>,
    /// Lead occurrences in `buf`, for the token detectors.
    hits: LeadHits,
    /// Where the text of the latest piece begins (folded, absolute).
    fresh: usize,
    /// The end of the text at the latest pass over the detectors (absolute).
    pass_end: usize,
    /// The detectors the latest piece wakes. A token detector in the shared pass: the piece
    /// completes one of its leads, or a tail of it begins one (a token that may still be
    /// arriving). With a short piece, also every other detector it brings a watched byte.
    woken: DetSet,
    /// Token detectors and literal sets waiting at the end of the text, however far it has
    /// grown ([`Matcher::idle_skip`]): their states are stale until [`DetState::wake`] sets
    /// them for the end of the latest pass.
    idle: DetSet,
    /// Run detectors whose latest step was a quiet wait ([`Matcher::lags`]) that no piece
    /// since has woken: a short piece that does not wake one leaves it unstepped, its resume
    /// point behind the text, until the text it holds grows past [`LAG_MAX`].
    lag: DetSet,
    /// No lagging detector resumes before this (absolute; `usize::MAX` when none lags).
    lag_floor: usize,
    /// Detector steps taken without scanning, and with.
    #[cfg(test)]
    steps: (usize, usize),
}

impl StreamRedactor<'_> {
    /// Feeds raw bytes; invalid UTF-8 becomes U+FFFD exactly as `String::from_utf8_lossy` would
    /// decode the whole stream.
    pub fn push_bytes(&mut self, bytes: &[u8], out: &mut String) {
        // Whole characters with nothing pending (the usual piece): no copy.
        if self.utf8.is_empty() {
            if let Ok(text) = std::str::from_utf8(bytes) {
                self.push_str(text, out);
                return;
            }
        }
        self.utf8.extend_from_slice(bytes);
        let mut text = String::new();
        let mut consumed = 0;
        loop {
            let rest = &self.utf8[consumed..];
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    text.push_str(s);
                    consumed = self.utf8.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    text.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            text.push('\u{FFFD}');
                            consumed += valid + n;
                        }
                        None => {
                            consumed += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.utf8.drain(..consumed);
        self.push_str(&text, out);
    }

    /// Feeds text and appends whatever can be released to `out`.
    pub fn push_str(&mut self, text: &str, out: &mut String) {
        if self.blocked {
            return;
        }
        self.raw.push_str(text);
        self.fresh = self.base + self.buf.len();
        self.map.push(text, &mut self.buf);
        self.drive(false, out);
    }

    /// Ends the stream: releases (or redacts) everything still held.
    pub fn finish(&mut self, out: &mut String) {
        if !self.utf8.is_empty() {
            self.utf8.clear();
            if !self.blocked {
                self.raw.push('\u{FFFD}');
                self.map.push("\u{FFFD}", &mut self.buf);
            }
        }
        if !self.blocked {
            self.drive(true, out);
        }
        if !self.blocked {
            // Invisible characters at the very end belong to no later text: they go out now.
            if let Some(rest) = self.raw.get(self.raw_released - self.raw_base..) {
                out.push_str(rest);
            }
            self.raw_released = self.raw_base + self.raw.len();
        }
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
    }

    /// A `block` detector fired; nothing more will be released.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Everything before this offset of the original text is decided: written out, redacted
    /// or suppressed.
    pub fn decided(&self) -> usize {
        self.raw_released
    }

    /// Bytes currently held back (not yet released, not suppressed).
    pub fn held(&self) -> usize {
        if self.open.is_some() {
            return 0;
        }
        (self.raw_base + self.raw.len()).saturating_sub(self.raw_released)
    }

    /// Writes the original text up to folded offset `to` (`ceil`: a character folded into
    /// several bytes and cut by `to` goes out whole).
    fn emit(&mut self, out: &mut String, to: usize, ceil: bool) {
        let r = self.map.raw(to, ceil);
        if r > self.raw_released {
            if let Some(s) = self
                .raw
                .get(self.raw_released - self.raw_base..r - self.raw_base)
            {
                out.push_str(s);
            }
            self.raw_released = r;
        }
    }

    fn drive(&mut self, eof: bool, out: &mut String) {
        let scanner = self.scanner;
        // A long piece: its digits and the retained text's are mapped once for all number
        // detectors. The buffer is trimmed only on the way out of a drive, so the map holds
        // for every pass below.
        let fresh = (self.base + self.buf.len()).saturating_sub(self.fresh);
        let digits = (scanner.maps_digits && fresh >= DIGIT_MAP_MIN)
            .then(|| Digits::of(self.buf.as_bytes(), &scanner.shared_walks));
        let mapped_at = self.base;
        loop {
            if self.blocked {
                return;
            }
            let len = self.base + self.buf.len();
            if let Some(o) = &self.open {
                let d = &scanner.detectors[o.det];
                let rel = o.scan - self.base;
                match find_open_end(o.kind, d.matcher.class(), &self.buf, rel, eof) {
                    Some(rel_end) => {
                        let (det, start, raw_start) = (o.det, o.start, o.raw_start);
                        let printed = self.open.take().map(|o| (o.print, o.printed));
                        let (print, from) = printed.unwrap_or((None, start));
                        let open = OpenCommit {
                            raw_start,
                            print,
                            from,
                        };
                        self.commit(det, start, self.base + rel_end, Some(open), out);
                        continue;
                    }
                    None => {
                        let keep = match o.kind {
                            OpenEnd::RunEnd => 0,
                            OpenEnd::PemEnd => PEM_END_TAIL,
                        };
                        let scan = floor_boundary(
                            &self.buf,
                            len.saturating_sub(keep).max(o.scan) - self.base,
                        ) + self.base;
                        if d.action == Action::Monitor {
                            self.emit(out, scan, false);
                            self.released = self.released.max(scan);
                        }
                        if let Some(o) = &mut self.open {
                            o.scan = scan;
                            // The text up to `scan` is about to go: fingerprint it first.
                            if let Some(p) = &mut o.print {
                                let piece = self
                                    .buf
                                    .get(o.printed.saturating_sub(self.base)..scan - self.base)
                                    .unwrap_or_default();
                                p.update(piece.as_bytes());
                            }
                            o.printed = o.printed.max(scan);
                        }
                        self.trim(scan);
                        return;
                    }
                }
            }

            // The detectors the piece wakes: per token detector in the shared pass, it
            // completes one of its leads (and, below, ends with the beginning of one).
            self.woken.clear();
            if let Some(l) = &scanner.leads {
                let woken = &mut self.woken;
                self.hits
                    .extend(l, &self.buf, self.base, |det| woken.insert(det));
            }
            debug_assert!(
                digits.is_none() || self.base == mapped_at,
                "the buffer moved under its digit map"
            );
            let view = View {
                text: &self.buf,
                eof,
                chop: scanner.holdback,
                floor: 0,
                leads: None,
                digits: digits.as_ref(),
            };
            let hits = scanner.leads.as_ref().map(|_| &self.hits);
            // A short piece: detectors with nothing pending that it brings none of their
            // watched bytes step without scanning.
            let piece = &self.buf.as_bytes()[self.fresh.saturating_sub(self.base)..];
            let quiet = !eof && !piece.is_empty() && piece.len() <= QUIET_PIECE_MAX;
            if quiet {
                if let Some(l) = &scanner.leads {
                    // Tails of the piece that begin a lead the token's step would wait for.
                    let (bytes, fresh) = (self.buf.as_bytes(), self.fresh - self.base);
                    l.pending(&self.hits, bytes, fresh, |a, det| {
                        if scanner.detectors[det]
                            .matcher
                            .waits_for_tail(bytes, a, fresh)
                        {
                            self.woken.insert(det);
                        }
                    });
                }
                // Any other detector: a byte it watches.
                scanner.wakers.wake(piece, &mut self.woken);
            }
            let end = self.base + self.buf.len();
            // An idle detector (a wait at the end of the text) stays so, unstepped, when the
            // pass brings no text, or a short piece that wakes none of its bytes.
            let stay = if eof {
                Stay::None
            } else if end == self.pass_end {
                Stay::All
            } else if quiet && self.fresh == self.pass_end {
                Stay::Unwoken
            } else {
                Stay::None
            };
            // Lagging detectors rest too, unless one holds too much text: then all step.
            let lag_rests = end.saturating_sub(self.lag_floor) <= LAG_MAX;
            if !lag_rests {
                self.lag_floor = usize::MAX;
            }
            #[cfg(test)]
            {
                let n = scanner.detectors.len();
                self.steps.0 += (0..n)
                    .filter(|&i| {
                        stay.keeps(&self.idle, &self.woken, i)
                            || (lag_rests && stay.keeps(&self.lag, &self.woken, i))
                    })
                    .count();
            }
            #[cfg(debug_assertions)]
            for (i, d) in scanner.detectors.iter().enumerate() {
                if stay.keeps(&self.idle, &self.woken, i) {
                    let mut t = self.states[i];
                    t.wake(&d.matcher, &self.buf, self.base, self.pass_end);
                    let dv = view.for_detector(hits, i, self.base);
                    let len = self.buf.len();
                    let skip = d.matcher.idle_skip(self.buf.as_bytes(), len);
                    debug_assert_eq!(
                        d.matcher.step(&dv, t.resume - self.base, t.skip),
                        Step::Wait {
                            resume: len,
                            safe: len,
                            skip: skip.unwrap_or(false)
                        },
                        "idle {}",
                        d.id
                    );
                }
                // A lagging detector left unstepped holds back no text it would release.
                if lag_rests && stay.keeps(&self.lag, &self.woken, i) {
                    let st = &self.states[i];
                    let dv = view.for_detector(hits, i, self.base);
                    let step = d.matcher.step(&dv, st.resume - self.base, st.skip);
                    debug_assert!(
                        matches!(step, Step::Wait { safe, .. } if safe == self.buf.len()),
                        "lagging {}: {step:?}",
                        d.id
                    );
                }
            }
            let mut best: Option<(usize, Step, usize)> = None;
            let mut safe = self.buf.len();
            // The earliest point a stepped detector still needs (the lagging ones' floor joins
            // it at the trim).
            let mut keep = usize::MAX;
            // (Each word of the sets is read as the walk reaches it: a detector changes only
            // its own bit.)
            let n = scanner.detectors.len();
            for w in 0..n.div_ceil(64) {
                let (idle_w, lag_w) = (self.idle.word(w), self.lag.word(w));
                let mut skip_w = stay.skips_word(&self.idle, &self.woken, w);
                if lag_rests {
                    skip_w |= stay.skips_word(&self.lag, &self.woken, w);
                }
                // Only the detectors that step are visited, in order.
                let live = u64::MAX >> (64 - (n - w * 64).min(64));
                let mut visit = live & !skip_w;
                while visit != 0 {
                    let i = w * 64 + visit.trailing_zeros() as usize;
                    visit &= visit - 1;
                    let (Some(d), Some(st)) = (scanner.detectors.get(i), self.states.get_mut(i))
                    else {
                        break;
                    };
                    if idle_w >> (i % 64) & 1 != 0 {
                        st.wake(&d.matcher, &self.buf, self.base, self.pass_end);
                        self.idle.remove(i);
                    }
                    // (A lagging detector saw no byte it watches since its latest step: its state
                    // holds for the text up to this piece.)
                    let lagged = lag_w >> (i % 64) & 1 != 0;
                    if lagged {
                        self.lag.remove(i);
                    }
                    // Whether the piece brings the detector, stepped at its start, something to scan.
                    let shared = || scanner.leads.as_ref().is_some_and(|l| l.shares(i));
                    if quiet && st.cached.is_none() && (st.seen == self.fresh || lagged) {
                        let woken = if shared() {
                            st.resume != self.fresh || self.woken.has(i)
                        } else {
                            !st.quiet || self.woken.has(i)
                        };
                        if !woken {
                            let from = st.resume - self.base;
                            let step = d.matcher.quiet_step(&view, from, st.skip);
                            debug_assert_eq!(
                                step,
                                d.matcher.step(
                                    &view.for_detector(hits, i, self.base),
                                    from,
                                    st.skip
                                ),
                                "quiet step of {}",
                                d.id
                            );
                            if let Step::Wait {
                                resume,
                                safe: s,
                                skip,
                            } = step
                            {
                                safe = safe.min(s);
                                st.resume = self.base + resume;
                                st.skip = skip;
                                st.seen = end;
                                if resume == self.buf.len()
                                    && d.matcher.idle_skip(self.buf.as_bytes(), resume)
                                        == Some(skip)
                                {
                                    self.idle.insert(i);
                                } else {
                                    keep = keep.min(st.resume);
                                    if scanner.lags.has(i) {
                                        self.lag.insert(i);
                                        self.lag_floor = self.lag_floor.min(st.resume);
                                    }
                                }
                                #[cfg(test)]
                                {
                                    self.steps.0 += 1;
                                }
                                continue;
                            }
                        }
                    }
                    // A lagging detector scans from its older resume point: the same step as
                    // from where quiet steps up to this piece would have left it.
                    #[cfg(debug_assertions)]
                    if lagged && st.cached.is_none() && st.resume < self.fresh {
                        let before = View {
                            text: &self.buf[..self.fresh - self.base],
                            eof: false,
                            leads: None,
                            digits: None,
                            ..view
                        };
                        let from = st.resume - self.base;
                        if let Step::Wait { resume, skip, .. } =
                            d.matcher.quiet_step(&before, from, st.skip)
                        {
                            let dv = view.for_detector(hits, i, self.base);
                            debug_assert_eq!(
                                d.matcher.step(&dv, from, st.skip),
                                d.matcher.step(&dv, resume, skip),
                                "lagging {} scanned from {from}, caught up to {resume}",
                                d.id
                            );
                        }
                    }
                    let step = loop {
                        let step = match st.cached {
                            // A final verdict from an earlier push, kept in absolute positions.
                            Some(c) => shift(c, self.base, false),
                            None => {
                                let dv = view.for_detector(hits, i, self.base);
                                let step = d.matcher.step(&dv, st.resume - self.base, st.skip);
                                #[cfg(test)]
                                {
                                    self.steps.1 += 1;
                                }
                                if !matches!(step, Step::Wait { .. }) {
                                    st.cached = Some(shift(step, self.base, true));
                                }
                                step
                            }
                        };
                        // A PEM header is a private key only when a body follows: hold the text
                        // from the header while that is undecided (a bounded window); without a
                        // body, look past the header as if it were plain text.
                        if let Step::Open {
                            start,
                            end: OpenEnd::PemEnd,
                            scan,
                        } = step
                        {
                            match pem_body_follows(self.buf.as_bytes(), scan, eof) {
                                Tri::Yes => {}
                                Tri::No => {
                                    *st = DetState::at(self.base + scan);
                                    continue;
                                }
                                Tri::NeedMore => {
                                    st.cached = None;
                                    st.resume = self.base + start;
                                    st.skip = false;
                                    st.quiet = false;
                                    break Step::Wait {
                                        resume: start,
                                        safe: start,
                                        skip: false,
                                    };
                                }
                            }
                        }
                        break step;
                    };
                    match step {
                        step @ (Step::Match { start, .. } | Step::Open { start, .. }) => {
                            if best.is_none_or(|(bs, _, _)| start < bs) {
                                best = Some((start, step, i));
                            }
                        }
                        Step::Wait {
                            resume,
                            safe: s,
                            skip,
                        } => {
                            safe = safe.min(s);
                            st.resume = self.base + resume;
                            st.skip = skip;
                            st.seen = end;
                            // (Only short pieces step quietly: after a long one, the next scans.)
                            st.quiet = quiet && {
                                let (set, margin) = scanner.watch[i];
                                set.find(self.buf.as_bytes(), resume.saturating_sub(margin))
                                    .is_none()
                            };
                            if st.quiet
                                && resume == self.buf.len()
                                && s == resume
                                && d.matcher.idle_skip(self.buf.as_bytes(), resume) == Some(skip)
                            {
                                self.idle.insert(i);
                            } else {
                                keep = keep.min(st.resume);
                            }
                        }
                    }
                }
            }
            self.pass_end = end;
            match best {
                Some((s, step, i)) if s < safe => {
                    let start = self.base + s;
                    self.emit(out, start, false);
                    self.released = start;
                    match step {
                        Step::Match { end, .. } => {
                            self.commit(i, start, self.base + end, None, out)
                        }
                        Step::Open { end, scan, .. } => {
                            let raw_start = self.map.raw(start, false).max(self.raw_released);
                            self.open = Some(OpenValue {
                                det: i,
                                start,
                                raw_start,
                                kind: end,
                                scan: self.base + scan,
                                print: scanner.fingerprinter(&scanner.detectors[i]),
                                printed: start,
                            });
                        }
                        Step::Wait { .. } => {}
                    }
                }
                _ => {
                    let upto = self.base + best.map_or(safe, |(s, _, _)| s.min(safe));
                    self.emit(out, upto, false);
                    self.released = self.released.max(upto);
                    self.trim(keep.min(self.lag_floor).min(self.released));
                    return;
                }
            }
        }
    }

    /// A value at `start..end` is final: apply the detector's action. An open value (one that
    /// outgrew the window) brings where it started in the original text and its fingerprint so
    /// far.
    fn commit(
        &mut self,
        det: usize,
        start: usize,
        end: usize,
        open: Option<OpenCommit>,
        out: &mut String,
    ) {
        let d = &self.scanner.detectors[det];
        let (raw_start, print, from) = match open {
            Some(o) => (Some(o.raw_start), o.print, o.from),
            None => (None, self.scanner.fingerprinter(d), start),
        };
        let rs = raw_start.unwrap_or_else(|| self.map.raw(start, false).max(self.raw_released));
        let re = self.map.raw(end, true);
        let value = self
            .buf
            .get(from.saturating_sub(self.base)..end.saturating_sub(self.base))
            .unwrap_or_default();
        let f = self.scanner.finding(d, print, value, rs, re);
        self.findings.push(f);
        match d.action {
            Action::Block => {
                self.blocked = true;
                self.buf.clear();
                self.raw.clear();
                return;
            }
            Action::Monitor => self.emit(out, end, true),
            _ => {
                placeholder(out, &d.id);
                self.raw_released = self.raw_released.max(re);
            }
        }
        self.released = end;
        let (text, base, chop) = (self.buf.as_str(), self.base, self.scanner.holdback);
        for (i, (st, d)) in self
            .states
            .iter_mut()
            .zip(&self.scanner.detectors)
            .enumerate()
        {
            if self.idle.has(i) {
                st.wake(&d.matcher, text, base, self.pass_end);
            }
            st.after_commit(&d.matcher, text, base, end, chop);
        }
        self.idle.clear();
        self.lag.clear();
        self.lag_floor = usize::MAX;
    }

    /// Drops retained text before `keep - LOOKBACK`.
    fn trim(&mut self, keep: usize) {
        let target = keep.saturating_sub(LOOKBACK).max(self.base) - self.base;
        let cut = floor_boundary(&self.buf, target);
        if cut > 0 {
            self.buf.drain(..cut);
            self.base += cut;
            self.map.trim(self.base);
            self.hits.trim(self.base);
        }
        let done = self.raw_released.saturating_sub(self.raw_base);
        let done = floor_boundary(&self.raw, done);
        if done > 0 {
            self.raw.drain(..done);
            self.raw_base += done;
        }
    }
}

/// The folded text the detectors read maps back to the text the client sees: breakpoints
/// where a character folded to something else (or to nothing); identity in between.
#[derive(Debug, Clone, Default)]
struct FoldMap {
    /// (folded start, folded length, raw start, raw length) of each folded character.
    bps: Vec<(usize, usize, usize, usize)>,
    /// Identity holds from here (folded, raw) when no kept breakpoint precedes a position.
    anchor: (usize, usize),
    folded_len: usize,
    raw_len: usize,
}

impl FoldMap {
    /// Folds `raw` onto the end of `out`.
    fn push(&mut self, raw: &str, out: &mut String) {
        if raw.is_ascii() {
            out.push_str(raw);
            self.folded_len += raw.len();
            self.raw_len += raw.len();
            return;
        }
        out.reserve(raw.len());
        let mut rest = raw;
        while !rest.is_empty() {
            // ASCII folds to itself: copy runs of it whole.
            let ascii = crate::lanes::ascii_prefix(rest.as_bytes());
            if ascii > 0 {
                out.push_str(&rest[..ascii]);
                self.folded_len += ascii;
                self.raw_len += ascii;
                rest = &rest[ascii..];
            }
            let Some(c) = rest.chars().next() else {
                break;
            };
            rest = &rest[c.len_utf8()..];
            let rlen = c.len_utf8();
            let (f, r) = (self.folded_len, self.raw_len);
            match fold_char(c) {
                Fold::Same => {
                    out.push(c);
                    self.folded_len += rlen;
                }
                Fold::Gone => self.bps.push((f, 0, r, rlen)),
                Fold::Ascii(b) => {
                    out.push(char::from(b));
                    self.bps.push((f, 1, r, rlen));
                    self.folded_len += 1;
                }
                Fold::Text(t) => {
                    out.push_str(&t);
                    self.bps.push((f, t.len(), r, rlen));
                    self.folded_len += t.len();
                }
            }
            self.raw_len += rlen;
        }
    }

    /// The raw offset of folded offset `x`: where the original text of everything folded
    /// before `x` ends, so it never depends on what follows `x` (invisible characters at `x`
    /// go with the text after it). Inside a character that folded to several bytes, `ceil`
    /// chooses its end (a value ending there takes the whole character), else its start.
    fn raw(&self, x: usize, ceil: bool) -> usize {
        let i = self.bps.partition_point(|b| b.0 < x);
        let Some(&(f, flen, r, rlen)) = i.checked_sub(1).and_then(|i| self.bps.get(i)) else {
            return self.anchor.1 + x.saturating_sub(self.anchor.0);
        };
        if x < f + flen {
            if ceil {
                r + rlen
            } else {
                r
            }
        } else {
            r + rlen + (x - f - flen)
        }
    }

    /// Forgets breakpoints wholly before folded offset `keep`.
    fn trim(&mut self, keep: usize) {
        let n = self
            .bps
            .partition_point(|b| b.0 < keep && b.0 + b.1 <= keep);
        if n > 0 {
            let (f, flen, r, rlen) = self.bps[n - 1];
            self.anchor = (f + flen, r + rlen);
            self.bps.drain(..n);
        }
    }
}

/// Moves a step's positions between buffer-relative and absolute (`to_abs`) coordinates.
fn shift(step: Step, base: usize, to_abs: bool) -> Step {
    let f = |x: usize| {
        if to_abs {
            x + base
        } else {
            x.saturating_sub(base)
        }
    };
    match step {
        Step::Match { start, end } => Step::Match {
            start: f(start),
            end: f(end),
        },
        Step::Open { start, end, scan } => Step::Open {
            start: f(start),
            end,
            scan: f(scan),
        },
        Step::Wait { resume, safe, skip } => Step::Wait {
            resume: f(resume),
            safe: f(safe),
            skip,
        },
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{catalog, CatalogConfig};
    use proptest::prelude::*;

    proptest! {
        /// The words of a pass's skipped detectors mark exactly the idle ones that stay so.
        #[test]
        fn skipped_words_mark_the_staying_idle(
            n in 0usize..200,
            idle in prop::collection::vec(any::<bool>(), 200),
            woken in prop::collection::vec(any::<bool>(), 200),
            stay in 0usize..3,
        ) {
            let stay = [Stay::None, Stay::All, Stay::Unwoken][stay];
            let set = |bits: &[bool]| {
                let mut s = DetSet::new(n);
                (0..n).filter(|&i| bits[i]).for_each(|i| s.insert(i));
                s
            };
            let (idle, woken) = (set(&idle), set(&woken));
            for i in 0..n {
                let bit = stay.skips_word(&idle, &woken, i / 64) >> (i % 64) & 1 != 0;
                prop_assert_eq!(bit, stay.keeps(&idle, &woken, i), "{}", i);
            }
        }
    }

    /// A text past `WHOLE_MAX`, redacted in blocks, gives what the whole scan gives.
    #[test]
    fn wakers_wake_what_each_byte_wakes() {
        let mut w = Wakers::new(130);
        for (b, det) in [(b'a', 0), (b'a', 64), (b'b', 129), (b'-', 3)] {
            w.insert(b, det);
        }
        let mut set = DetSet::new(130);
        w.wake(b"xaxa", &mut set);
        assert_eq!(set.0, [1, 1, 0]);
        set.insert(7);
        w.wake(b"b-", &mut set);
        assert_eq!(set.0, [1 | 1 << 3 | 1 << 7, 1, 2]);
    }

    #[test]
    fn long_texts_redact_in_blocks_as_whole() {
        let scanner = Scanner::new(catalog(&CatalogConfig::default()).unwrap(), 256);
        let row = "SSN: 536-22-8727, mail bob+tag@mail.corp.io, Résumé — naïve: call \
                   +1 415 555 2671; token = \"Tr0ub4dor&3x!\" and 17151 2450 then ";
        let mut text = String::new();
        while text.len() <= 3 * WHOLE_MAX {
            text.push_str(row);
        }
        // A value across the first block boundary.
        text.insert_str(text.floor_char_boundary(BLOCK - 5), " 4111 1111 1111 1111 ");
        let (blocks, whole) = (scanner.redact(&text), scanner.redact_whole(&text));
        assert!(whole.findings.len() > 1000, "{}", whole.findings.len());
        assert_eq!(blocks.text, whole.text);
        assert_eq!(blocks.findings, whole.findings);
        assert!(!whole.blocked);
        // With cards set to block, the card across the first block boundary ends both
        // outputs right before it.
        let cfg = CatalogConfig {
            actions: vec![("credit_card".into(), Action::Block)],
            ..CatalogConfig::default()
        };
        let blocking = Scanner::new(catalog(&cfg).unwrap(), 256);
        let (blocks, whole) = (blocking.redact(&text), blocking.redact_whole(&text));
        assert!(whole.blocked && !whole.text.contains("4111 1111"));
        assert!(whole.text.len() < 2 * BLOCK, "{}", whole.text.len());
        assert_eq!(blocks.text, whole.text);
        assert_eq!(blocks.findings, whole.findings);
        assert_eq!(blocks.blocked, whole.blocked);
    }

    /// Long pieces have their digits mapped once, with many values committed while the map
    /// is in use. The output equals the one-shot output whatever the piece size.
    #[test]
    fn long_pieces_read_the_digit_map() {
        let scanner = Scanner::new(catalog(&CatalogConfig::default()).unwrap(), 256);
        let rows = [
            "card 4111 1111 1111 1111 exp 12/29, ",
            "SSN: 536-22-8727; ",
            "call +1 415 555 2671 or (415) 555-2671. ",
            "mail bob+tag@mail.corp.io ",
            "password = \"Tr0ub4dor&3x!\" ",
            "IBAN DE89 3704 0044 0532 0130 00. ",
            "version 1.2.3 build 20240308 at 2024-03-08 02:30:00, ids 17151 2450 and 536917763. ",
            "    let x = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]; ",
        ];
        let mut text = String::new();
        for i in 0..120 {
            text.push_str(rows[i % rows.len()]);
            text.push_str(rows[(i * 5 + 3) % rows.len()]);
        }
        let want = scanner.redact(&text);
        assert!(want.findings.len() > 200, "{}", want.findings.len());
        for piece in [1024, 1031, 1500, 4096, text.len()] {
            streamed(&scanner, &text, piece, &want);
        }
    }

    /// `text` through a stream in pieces of `piece` bytes, its output and findings held to
    /// the one-shot `want`.
    fn streamed<'s>(
        scanner: &'s Scanner,
        text: &str,
        piece: usize,
        want: &Redaction,
    ) -> StreamRedactor<'s> {
        let mut st = scanner.stream();
        let mut out = String::new();
        for c in text.as_bytes().chunks(piece) {
            st.push_bytes(c, &mut out);
        }
        st.finish(&mut out);
        assert_eq!(out, want.text, "pieces of {piece}");
        assert_eq!(st.findings(), want.findings.as_slice(), "pieces of {piece}");
        st
    }

    /// Lagging detectors hold text behind the end, but no more than [`LAG_MAX`] past what a
    /// stream keeps anyway: the retained text stays bounded on long answers in short pieces.
    #[test]
    fn lagging_keeps_the_retained_text_bounded() {
        let scanner = Scanner::new(catalog(&CatalogConfig::default()).unwrap(), 256);
        let para = "The quick brown fox jumps over the lazy dog while the CLI prints \
                    README_FILE and OTHER-CAPS in a long line of prose with no numbers; ";
        let text = para.repeat(200);
        let want = scanner.redact(&text);
        for piece in [1, 3, 16, 100] {
            let mut st = scanner.stream();
            let mut out = String::new();
            let mut most = 0;
            for c in text.as_bytes().chunks(piece) {
                st.push_bytes(c, &mut out);
                most = most.max(st.buf.len());
            }
            st.finish(&mut out);
            assert_eq!(out, want.text);
            assert!(
                most <= LAG_MAX + LOOKBACK + piece,
                "pieces of {piece}: {most} kept"
            );
        }
    }

    /// Text in short pieces: most detector steps are told without scanning, and (in debug
    /// builds, where every such step is compared with the scanning step) agree with it; the
    /// output equals the one-shot output.
    #[test]
    fn quiet_steps_agree_with_scanning() {
        let scanner = Scanner::new(catalog(&CatalogConfig::default()).unwrap(), 256);
        let text = "Deploy notes, 2024-03-08: set password = \"Tr0ub4dor&3x!\" in prod; mail \
                    alice.smith@northwind-mail.io or call +1 415 555 2671. Keys: \
                    AKIAZ3MSJV4WWNKWW5FG, 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, sk_live_short \
                    and sk-learn are mentioned; card 4111 1111 1111 1111, SSN: 536-22-8727, \
                    https://user:hunter2hunter2@db.example.net/x. Résumé — naïve façade. \
                    -----BEGIN PRIVATE KEY----- is only a header here. aws_secret_access_key = \
                    wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and the rest of the answer.";
        let want = scanner.redact(text);
        assert!(want.findings.len() >= 6, "{:?}", want.findings);
        let mut quiet = 0;
        for piece in 1..=24 {
            let st = streamed(&scanner, text, piece, &want);
            let (q, scanned) = st.steps;
            assert!(
                q > scanned,
                "pieces of {piece}: {q} quiet, {scanned} scanned"
            );
            quiet += q;
        }
        assert!(quiet > 0);
    }
}
