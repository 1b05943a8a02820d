//! Server-sent events: an incremental parser that accepts any chunking (including `\r\n` split
//! across chunks) and the serializer for the events the gateway re-emits.

/// Headers of a streamed response the gateway sends (the body is re-framed by the filter).
pub const RESPONSE_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
];

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    pub fn data(data: impl Into<String>) -> Self {
        SseEvent {
            event: None,
            data: data.into(),
            id: None,
        }
    }

    pub fn named(event: &str, data: impl Into<String>) -> Self {
        SseEvent {
            event: Some(event.to_string()),
            data: data.into(),
            id: None,
        }
    }

    /// Appends the wire form of the event to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        if let Some(e) = &self.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(e.as_bytes());
            out.push(b'\n');
        }
        if let Some(id) = &self.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id.as_bytes());
            out.push(b'\n');
        }
        for line in self.data.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// One event grew beyond the cap: the stream is not one the gateway can inspect.
    EventTooLarge(usize),
}

/// Incremental parser. Feed it bytes as they arrive; complete events come out.
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    /// The previous chunk ended with `\r`: a leading `\n` in the next one belongs to it.
    after_cr: bool,
    event_bytes: usize,
    max_event: usize,
}

impl SseParser {
    pub fn new(max_event: usize) -> Self {
        SseParser {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: None,
            id: None,
            after_cr: false,
            event_bytes: 0,
            max_event,
        }
    }

    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut i = 0;
        if self.after_cr && bytes[0] == b'\n' {
            i = 1;
        }
        self.after_cr = false;
        while i < bytes.len() {
            let rest = &bytes[i..];
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(p) => {
                    self.line.extend_from_slice(&rest[..p]);
                    self.bump(p)?;
                    let eol = rest[p];
                    i += p + 1;
                    if eol == b'\r' {
                        if i < bytes.len() {
                            if bytes[i] == b'\n' {
                                i += 1;
                            }
                        } else {
                            self.after_cr = true;
                        }
                    }
                    self.end_line(out);
                }
                None => {
                    self.line.extend_from_slice(rest);
                    self.bump(rest.len())?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn bump(&mut self, n: usize) -> Result<(), SseError> {
        self.event_bytes += n + 1;
        if self.event_bytes > self.max_event {
            return Err(SseError::EventTooLarge(self.max_event));
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                    id: self.id.take(),
                });
            }
            self.data.clear();
            self.has_data = false;
            self.event = None;
            self.event_bytes = 0;
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*text, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            "id" => self.id = Some(value.to_string()),
            _ => {}
        }
    }

    /// Bytes of an event still being assembled (a stream that ends here ended mid-event).
    pub fn pending(&self) -> bool {
        self.has_data || !self.line.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn parses_events_and_line_endings() {
        let ev = parse_all(&[b"event: a\r\ndata: 1\r\n\r\n: ping\n\ndata: x\ndata: y\n\n"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event.as_deref(), Some("a"));
        assert_eq!(ev[0].data, "1");
        assert_eq!(ev[1].data, "x\ny");
    }

    #[test]
    fn cr_lf_split_across_chunks() {
        let ev = parse_all(&[b"data: 1\r", b"\n\r", b"\ndata: 2\r\r"]);
        assert_eq!(
            ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
    }

    #[test]
    fn event_cap() {
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        assert!(p.feed(b"data: 0123456789abcdef", &mut out).is_err());
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(cuts in prop::collection::vec(0usize..200, 0..20)) {
            let wire = b"event: x\r\ndata: {\"a\":\"\xc3\xa9\"}\r\n\r\ndata: 2\n\n: c\n\ndata: 3\r\rdata:4\n\n".to_vec();
            let whole = parse_all(&[&wire]);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for p in points { chunks.push(&wire[last..p]); last = p; }
            chunks.push(&wire[last..]);
            prop_assert_eq!(parse_all(&chunks), whole);
        }
    }
}
