//! One-shot and streaming redaction over the detector catalog.
//!
//! [`Scanner::redact`] scans a whole text. [`StreamRedactor`] is fed fragments of any size and
//! releases every byte that can no longer be part of a value, holding back only text whose fate
//! depends on what comes next (an unfinished word that could still become an e-mail address, a
//! token prefix, a partial canary). Its output equals the one-shot output for every way of
//! splitting the input, including splits inside UTF-8 characters.

use serde::Serialize;

use super::detectors::{Action, Category, Detector};
use super::matcher::{find_open_end, Matcher, OpenEnd, Step, View, PEM_END_TAIL};

/// Default length of a run piece: the most text a single run can hold back.
pub const DEFAULT_HOLDBACK: usize = 512;
/// Look-back kept before any scan position, for detectors that read the text before a value.
const LOOKBACK: usize = 64;

/// One detected value: where it was (byte offsets in the text as seen), never what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub detector: String,
    pub category: Category,
    pub action: Action,
    pub start: usize,
    pub end: usize,
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
    holdback: usize,
}

impl Scanner {
    /// A scanner over `detectors` (in priority order). Detectors whose action is `off` are
    /// dropped. `holdback` is clamped to at least 256 bytes, the longest built-in value shape.
    pub fn new(detectors: Vec<Detector>, holdback: usize) -> Self {
        Scanner {
            detectors: detectors
                .into_iter()
                .filter(|d| d.action != Action::Off)
                .collect(),
            holdback: holdback.max(256),
        }
    }

    pub fn detectors(&self) -> impl Iterator<Item = &Detector> {
        self.detectors.iter()
    }

    /// Redacts a whole text at once.
    pub fn redact(&self, text: &str) -> Redaction {
        let view = View {
            text,
            eof: true,
            chop: self.holdback,
            floor: 0,
        };
        let mut out = String::with_capacity(text.len());
        let mut findings = Vec::new();
        let mut pos = 0;
        let mut states = vec![DetState::at(0); self.detectors.len()];
        loop {
            let mut best: Option<(usize, usize, usize)> = None;
            for (i, d) in self.detectors.iter().enumerate() {
                let st = &mut states[i];
                let step = match st.cached {
                    Some(step) => step,
                    None => {
                        let step = d.matcher.step(&view, st.resume, st.skip);
                        st.cached = Some(step);
                        step
                    }
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
                out.push_str(&text[pos..]);
                break;
            };
            out.push_str(&text[pos..s]);
            let d = &self.detectors[i];
            findings.push(finding(d, s, e));
            match d.action {
                Action::Block => {
                    return Redaction {
                        text: out,
                        findings,
                        blocked: true,
                    }
                }
                Action::Monitor => out.push_str(&text[s..e]),
                _ => placeholder(&mut out, &d.id),
            }
            pos = e;
            for (st, d) in states.iter_mut().zip(&self.detectors) {
                st.after_commit(&d.matcher, text, 0, pos, self.holdback);
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
            base: 0,
            released: 0,
            states: vec![DetState::at(0); self.detectors.len()],
            open: None,
            blocked: false,
            findings: Vec::new(),
            utf8: Vec::new(),
        }
    }
}

fn finding(d: &Detector, start: usize, end: usize) -> Finding {
    Finding {
        detector: d.id.clone(),
        category: d.category,
        action: d.action,
        start,
        end,
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
}

impl DetState {
    fn at(p: usize) -> Self {
        DetState {
            from: p,
            resume: p,
            skip: false,
            cached: None,
        }
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
        };
        match m.step(&view, rel, false) {
            step @ (Step::Match { start, .. } | Step::Open { start, .. }) if start < end => {
                *self = DetState {
                    from: p,
                    resume: p,
                    skip: false,
                    cached: Some(shift(step, base, true)),
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
    kind: OpenEnd,
    scan: usize,
}

/// A stateful filter for one text stream. Positions are absolute offsets in the decoded text.
pub struct StreamRedactor<'s> {
    scanner: &'s Scanner,
    /// Retained text, starting at absolute offset `base`.
    buf: String,
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
}

impl StreamRedactor<'_> {
    /// Feeds raw bytes; invalid UTF-8 becomes U+FFFD exactly as `String::from_utf8_lossy` would
    /// decode the whole stream.
    pub fn push_bytes(&mut self, bytes: &[u8], out: &mut String) {
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
        self.buf.push_str(text);
        self.drive(false, out);
    }

    /// Ends the stream: releases (or redacts) everything still held.
    pub fn finish(&mut self, out: &mut String) {
        if !self.utf8.is_empty() {
            self.utf8.clear();
            if !self.blocked {
                self.buf.push('\u{FFFD}');
            }
        }
        if !self.blocked {
            self.drive(true, out);
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

    /// Bytes currently held back (not yet released, not suppressed).
    pub fn held(&self) -> usize {
        if self.open.is_some() {
            return 0;
        }
        (self.base + self.buf.len()).saturating_sub(self.released)
    }

    fn emit(&self, out: &mut String, from: usize, to: usize) {
        if to > from {
            if let Some(s) = self.buf.get(from - self.base..to - self.base) {
                out.push_str(s);
            }
        }
    }

    fn drive(&mut self, eof: bool, out: &mut String) {
        let scanner = self.scanner;
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
                        let (det, start) = (o.det, o.start);
                        self.open = None;
                        self.commit(det, start, self.base + rel_end, out);
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
                            self.emit(out, self.released, scan);
                            self.released = self.released.max(scan);
                        }
                        if let Some(o) = &mut self.open {
                            o.scan = scan;
                        }
                        self.trim(scan);
                        return;
                    }
                }
            }

            let view = View {
                text: &self.buf,
                eof,
                chop: scanner.holdback,
                floor: 0,
            };
            let mut best: Option<(usize, Step, usize)> = None;
            let mut safe = self.buf.len();
            for (i, d) in scanner.detectors.iter().enumerate() {
                let st = &mut self.states[i];
                let step = match st.cached {
                    // A final verdict from an earlier push, kept in absolute positions.
                    Some(c) => shift(c, self.base, false),
                    None => {
                        let step = d.matcher.step(&view, st.resume - self.base, st.skip);
                        if !matches!(step, Step::Wait { .. }) {
                            st.cached = Some(shift(step, self.base, true));
                        }
                        step
                    }
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
                    }
                }
            }
            match best {
                Some((s, step, i)) if s < safe => {
                    let start = self.base + s;
                    self.emit(out, self.released, start);
                    self.released = start;
                    match step {
                        Step::Match { end, .. } => self.commit(i, start, self.base + end, out),
                        Step::Open { end, scan, .. } => {
                            self.open = Some(OpenValue {
                                det: i,
                                start,
                                kind: end,
                                scan: self.base + scan,
                            });
                        }
                        Step::Wait { .. } => {}
                    }
                }
                _ => {
                    let upto = self.base + best.map_or(safe, |(s, _, _)| s.min(safe));
                    self.emit(out, self.released, upto);
                    self.released = self.released.max(upto);
                    let keep = self
                        .states
                        .iter()
                        .filter(|st| st.cached.is_none())
                        .map(|st| st.resume)
                        .chain(std::iter::once(self.released))
                        .min()
                        .unwrap_or(self.released);
                    self.trim(keep);
                    return;
                }
            }
        }
    }

    /// A value at `start..end` is final: apply the detector's action.
    fn commit(&mut self, det: usize, start: usize, end: usize, out: &mut String) {
        let d = &self.scanner.detectors[det];
        self.findings.push(finding(d, start, end));
        match d.action {
            Action::Block => {
                self.blocked = true;
                self.buf.clear();
                return;
            }
            Action::Monitor => self.emit(out, self.released, end),
            _ => placeholder(out, &d.id),
        }
        self.released = end;
        let (text, base, chop) = (self.buf.as_str(), self.base, self.scanner.holdback);
        for (st, d) in self.states.iter_mut().zip(&self.scanner.detectors) {
            st.after_commit(&d.matcher, text, base, end, chop);
        }
    }

    /// Drops retained text before `keep - LOOKBACK`.
    fn trim(&mut self, keep: usize) {
        let target = keep.saturating_sub(LOOKBACK).max(self.base) - self.base;
        let cut = floor_boundary(&self.buf, target);
        if cut > 0 {
            self.buf.drain(..cut);
            self.base += cut;
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
