//! The tolerant reader of HTTP/1.x request heads. The notice server answers every request
//! with the same page, chosen by the address the client connected to, so it needs only
//! two things from a request: whether it is `HEAD` (no body in the answer) and its `Accept`
//! header (HTML or plain text). Everything else is skipped, whatever it looks like: a
//! strict parser (hyper's) answers `400 Bad Request` with an empty body to request lines
//! it finds irregular, such as a raw `<` in the query, and the subscriber then never
//! learns why the service is unreachable.
//!
//! The reader takes bytes as they arrive ([`Head::push`]) and says when to stop reading:
//! at the blank line that ends the head, at the end of a request line that carries no
//! `HTTP/` version (an HTTP/0.9 client, or bytes that are not HTTP at all: either way
//! nothing more may come), or at the size limit. The caller adds the other reasons to
//! stop (the client closed, the timeout passed) and answers in every case where any byte
//! arrived. Lines may end in CRLF or a bare LF; blank lines before the request line are
//! skipped (RFC 9112, 2.2); bytes need not be UTF-8.

/// Why reading the request head stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// A blank line after the request line: the head is complete.
    Complete,
    /// The request line has no `HTTP/` version: HTTP/0.9, or not HTTP at all. Such a
    /// client sends no headers (or nothing that would end them), so answer now.
    NoVersion,
    /// The head reached the size limit before its end; the rest is not read as a head.
    TooLarge,
    /// The client shut down its side of the connection before the head was complete.
    Closed,
    /// The header timeout passed before the head was complete.
    TimedOut,
    /// Reading failed (a reset, for example): there is nobody to answer.
    Failed,
}

/// A request head as it arrives, up to a size limit.
#[derive(Debug)]
pub struct Head {
    buf: Vec<u8>,
    limit: usize,
    /// Where the line being scanned starts, and how far the scan has gone: each byte is
    /// looked at once, so a client sending one byte at a time costs linear work.
    line_start: usize,
    scanned: usize,
    seen_request_line: bool,
    end: Option<End>,
}

impl Head {
    /// An empty head that takes at most `limit` bytes (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit: limit.max(1),
            line_start: 0,
            scanned: 0,
            seen_request_line: false,
            end: None,
        }
    }

    /// How many more bytes the head takes: read no more than this.
    pub fn room(&self) -> usize {
        if self.end.is_some() {
            0
        } else {
            self.limit - self.buf.len()
        }
    }

    /// Whether the client has sent anything at all.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Adds bytes read from the client (beyond [`Head::room`] they are dropped). Returns
    /// why to stop reading once the head is complete, has no version, or is full.
    pub fn push(&mut self, data: &[u8]) -> Option<End> {
        if self.end.is_some() {
            return self.end;
        }
        let take = data.len().min(self.room());
        self.buf.extend_from_slice(&data[..take]);
        while let Some(offset) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let newline = self.scanned + offset;
            let line = trim_cr(&self.buf[self.line_start..newline]);
            self.scanned = newline + 1;
            self.line_start = newline + 1;
            if !self.seen_request_line {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                self.seen_request_line = true;
                if !has_version(line) {
                    self.end = Some(End::NoVersion);
                    return self.end;
                }
            } else if line.is_empty() {
                self.end = Some(End::Complete);
                return self.end;
            }
        }
        self.scanned = self.buf.len();
        if self.buf.len() >= self.limit {
            self.end = Some(End::TooLarge);
        }
        self.end
    }

    /// What the answer depends on, from the complete lines received (a line cut by the
    /// size limit or the timeout is ignored).
    pub fn request(&self) -> Request {
        let complete = match self.buf.iter().rposition(|&b| b == b'\n') {
            Some(last) => &self.buf[..=last],
            None => &[][..],
        };
        let mut lines = complete
            .split(|&b| b == b'\n')
            .map(trim_cr)
            .skip_while(|l| l.iter().all(u8::is_ascii_whitespace));
        let method = lines
            .next()
            .and_then(|l| l.split(u8::is_ascii_whitespace).find(|t| !t.is_empty()));
        let head_only = method.is_some_and(|m| m.eq_ignore_ascii_case(b"HEAD"));
        let mut accept = String::new();
        let mut host = None;
        if self.end != Some(End::NoVersion) {
            for line in lines.take_while(|l| !l.is_empty()) {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                if line[..colon].trim_ascii().eq_ignore_ascii_case(b"accept") {
                    if !accept.is_empty() {
                        accept.push_str(", ");
                    }
                    accept.push_str(&String::from_utf8_lossy(line[colon + 1..].trim_ascii()));
                } else if host.is_none() && line[..colon].trim_ascii().eq_ignore_ascii_case(b"host")
                {
                    host = Some(host_name(line[colon + 1..].trim_ascii()));
                }
            }
        }
        Request {
            head_only,
            accept: accept.to_ascii_lowercase(),
            host: host.flatten(),
        }
    }
}

/// What the notice server uses from a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The method is `HEAD`: the answer has headers only.
    pub head_only: bool,
    /// Every `Accept` header's value, joined with ", ", lowercased (media types are
    /// case-insensitive); empty when there is none.
    pub accept: String,
    /// The first `Host` header, when it is a valid name (without its port): the page
    /// names it only when it is one of the blocking order's names.
    pub host: Option<crate::orders::DomainName>,
}

/// The name in a `Host` header's value (`allofmp3.com:80`), if it is one.
fn host_name(value: &[u8]) -> Option<crate::orders::DomainName> {
    let text = std::str::from_utf8(value).ok()?;
    if text.starts_with('[') {
        return None; // an IPv6 literal
    }
    let name = text.rsplit_once(':').map_or(text, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            text
        }
    });
    name.parse().ok()
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether a request line names a version: a word after the method that starts with
/// `HTTP/`, in any case. Lenient on purpose: spaces inside the target or extra words
/// still count as a versioned request, whose head ends with a blank line.
fn has_version(line: &[u8]) -> bool {
    line.split(u8::is_ascii_whitespace)
        .filter(|t| !t.is_empty())
        .skip(1)
        .any(|t| t.len() >= 5 && t[..5].eq_ignore_ascii_case(b"HTTP/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in pieces of `step` bytes; returns where reading stopped and what was
    /// read.
    fn read(bytes: &[u8], step: usize, limit: usize) -> (Option<End>, Request) {
        let mut head = Head::new(limit);
        let mut end = None;
        for piece in bytes.chunks(step) {
            end = head.push(piece);
            if end.is_some() {
                break;
            }
        }
        (end, head.request())
    }

    struct Case {
        what: &'static str,
        bytes: &'static [u8],
        end: Option<End>,
        head_only: bool,
        accept: &'static str,
    }

    #[test]
    fn heads_end_where_they_should_however_they_arrive() {
        let cases = [
            Case {
                what: "regular",
                bytes: b"GET / HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\nBODY",
                end: Some(End::Complete),
                head_only: false,
                accept: "text/plain",
            },
            Case {
                what: "raw < > in the query",
                bytes: b"GET /p?q=<script> HTTP/1.1\r\nAccept: text/html\r\n\r\n",
                end: Some(End::Complete),
                head_only: false,
                accept: "text/html",
            },
            Case {
                what: "bare LF, HEAD, header name in capitals without a space",
                bytes: b"HEAD / HTTP/1.0\nACCEPT:Text/Plain\n\n",
                end: Some(End::Complete),
                head_only: true,
                accept: "text/plain",
            },
            Case {
                what: "two Accept headers are joined",
                bytes: b"GET / HTTP/1.1\r\nAccept: text/plain\r\naccept : text/html\r\n\r\n",
                end: Some(End::Complete),
                head_only: false,
                accept: "text/plain, text/html",
            },
            Case {
                what: "blank lines before the request line",
                bytes: b"\r\n\r\n\nget / http/1.1\r\nAccept: a/b\r\n\r\n",
                end: Some(End::Complete),
                head_only: false,
                accept: "a/b",
            },
            Case {
                what: "no version: answered after the request line, its headers ignored",
                bytes: b"GET /x\r\nAccept: text/plain\r\n\r\n",
                end: Some(End::NoVersion),
                head_only: false,
                accept: "",
            },
            Case {
                what: "not HTTP at all",
                bytes: b"\x16\x03\x01\x00\xa5\x01\x00\x00\n\x03\x03",
                end: Some(End::NoVersion),
                head_only: false,
                accept: "",
            },
            Case {
                what: "lines without a colon, odd names, non-UTF-8",
                bytes: b"GET /\xff HTTP/1.1\r\nnot a header\r\n<>: x\r\nAccept: \xfe/text/plain\r\n\r\n",
                end: Some(End::Complete),
                head_only: false,
                accept: "\u{fffd}/text/plain",
            },
            Case {
                what: "incomplete: the last line is ignored",
                bytes: b"GET / HTTP/1.1\r\nAccept: text/plain\r\nAccept: text/ht",
                end: None,
                head_only: false,
                accept: "text/plain",
            },
        ];
        for c in cases {
            for step in [1, 3, c.bytes.len()] {
                let (end, got) = read(c.bytes, step, 1024);
                let what = c.what;
                assert_eq!(end, c.end, "{what}, in pieces of {step}");
                assert_eq!(got.head_only, c.head_only, "{what}, in pieces of {step}");
                assert_eq!(got.accept, c.accept, "{what}, in pieces of {step}");
            }
        }
    }

    #[test]
    fn the_size_limit_stops_reading_and_keeps_what_was_complete() {
        let mut bytes = b"GET / HTTP/1.1\r\nAccept: text/plain\r\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', 5000));
        let mut head = Head::new(100);
        assert_eq!(head.push(&bytes), Some(End::TooLarge));
        assert_eq!(head.room(), 0);
        assert_eq!(head.request().accept, "text/plain");
        // Blank lines alone never end a head, and count against the limit.
        let mut head = Head::new(100);
        assert_eq!(head.push(&[b'\n'; 99]), None);
        assert_eq!(head.push(b"\r\n"), Some(End::TooLarge));
        assert_eq!(head.request(), Request::default());
    }
}
