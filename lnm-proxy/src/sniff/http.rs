//! HTTP/1.x request-head sniffing with `httparse`: the `Host` (port stripped) or the
//! absolute-form authority.

use super::{Sniff, SniffError};

/// The cap on an HTTP request head (request line and headers).
pub const MAX_HTTP_HEAD: usize = lnm_policy::config::defaults::MAX_HTTP_HEAD;
/// The most header lines a request head may have.
const MAX_HEADERS: usize = 128;

/// What lnm needs from an HTTP request head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HttpHead {
    /// The host (port stripped), raw (validated later by the policy); `None` when the request
    /// names no host (an HTTP/1.0 origin-form request without `Host`).
    pub host: Option<Vec<u8>>,
    /// The method, for logs.
    pub method: String,
    /// Bytes of the head, blank line included.
    pub len: usize,
}

/// Incremental HTTP/1.x request-head sniffer (see the [module docs](super)).
///
/// ```
/// use lnm_proxy::sniff::{HttpSniffer, Sniff};
/// let mut sniffer = HttpSniffer::new(16 * 1024);
/// let head = b"GET / HTTP/1.1\r\nHost: Example.com:8080\r\n\r\n";
/// match sniffer.feed(head) {
///     Sniff::Done(h) => assert_eq!(h.host.as_deref(), Some(&b"Example.com"[..])),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct HttpSniffer {
    cap: usize,
    /// Bytes already scanned for the end of the head.
    scanned: usize,
    /// Whether the request line was checked already.
    line_checked: bool,
}

impl HttpSniffer {
    /// A sniffer that gives up when the head exceeds `cap` bytes.
    pub fn new(cap: usize) -> Self {
        HttpSniffer {
            cap,
            scanned: 0,
            line_checked: false,
        }
    }

    /// Feeds everything received so far (`buf` must extend the previous call's `buf`).
    pub fn feed(&mut self, buf: &[u8]) -> Sniff<HttpHead> {
        // A request line starts with a method token: reject TLS and binary at the first byte.
        match buf.first() {
            Some(22) => {
                return Sniff::Invalid(SniffError::NotHttp("a TLS handshake on an HTTP listener"));
            }
            Some(b) if !b.is_ascii_alphabetic() => {
                return Sniff::Invalid(SniffError::NotHttp("not a request line"));
            }
            _ => {}
        }
        // Parse only when something new can be decided: the request line just ended, or the
        // head did. Rescanning from a few bytes back finds a terminator split across calls.
        let from = self.scanned.saturating_sub(3);
        let end = find_head_end(buf, from);
        self.scanned = buf.len();
        match end {
            Some(end) => self.parse(&buf[..end]),
            None if buf.len() > self.cap => {
                Sniff::Invalid(SniffError::HeadTooLarge { cap: self.cap })
            }
            None if !self.line_checked => match buf.iter().position(|&b| b == b'\n') {
                // Only the request line is checked early: it is the same however the bytes
                // were split, so the outcome does not depend on segmentation.
                Some(end) => {
                    self.line_checked = true;
                    match parse_head(&buf[..=end]) {
                        Err(e) => Sniff::Invalid(e),
                        Ok(_) => Sniff::NeedMore,
                    }
                }
                None => Sniff::NeedMore,
            },
            None => Sniff::NeedMore,
        }
    }

    fn parse(&self, head: &[u8]) -> Sniff<HttpHead> {
        if head.len() > self.cap {
            return Sniff::Invalid(SniffError::HeadTooLarge { cap: self.cap });
        }
        match parse_head(head) {
            Ok(Some(head)) => Sniff::Done(head),
            Ok(None) => Sniff::Invalid(SniffError::NotHttp("incomplete head")),
            Err(e) => Sniff::Invalid(e),
        }
    }
}

/// The end of the head (just after the blank line), searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Parses a (possibly partial) head; `Ok(None)` when httparse needs more.
fn parse_head(buf: &[u8]) -> Result<Option<HttpHead>, SniffError> {
    if buf.first() == Some(&22) {
        return Err(SniffError::NotHttp("a TLS handshake on an HTTP listener"));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(SniffError::NotHttp("too many header lines"));
        }
        Err(httparse::Error::Version) => {
            return Err(SniffError::NotHttp("unsupported HTTP version"));
        }
        Err(_) => return Err(SniffError::NotHttp("malformed request head")),
    };
    let method = request.method.unwrap_or_default();
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(SniffError::Connect);
    }
    let mut host_headers = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let header_host = host_headers.next().map(|h| strip_port(trim(h.value)));
    if host_headers.next().is_some() {
        return Err(SniffError::RepeatedHost);
    }
    let target_host = request
        .path
        .and_then(absolute_form_host)
        .map(|h| strip_port(h.as_bytes()));
    let host = match (header_host, target_host) {
        (Some(h), Some(t)) if !h.eq_ignore_ascii_case(t) => {
            return Err(SniffError::ConflictingHost);
        }
        (_, Some(t)) => Some(t.to_vec()),
        (Some(h), None) => Some(h.to_vec()),
        (None, None) => None,
    };
    Ok(Some(HttpHead {
        host,
        method: method.to_owned(),
        len,
    }))
}

/// The host of an absolute-form request target (`http://user@host:port/path`).
fn absolute_form_host(target: &str) -> Option<&str> {
    let scheme_end = target.find("://")?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // The host is after the last `@`: `http://allowed.example@evil.example/` is evil.example.
    Some(
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host),
    )
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// Strips a `:port` suffix (digits only); `[v6]:port` keeps its brackets.
fn strip_port(host: &[u8]) -> &[u8] {
    match host.iter().rposition(|&b| b == b':') {
        Some(i) if host[i + 1..].iter().all(u8::is_ascii_digit) && !host[..i].contains(&b':') => {
            &host[..i]
        }
        Some(i) if host.first() == Some(&b'[') && host[i - 1] == b']' => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff_all(head: &[u8]) -> Sniff<HttpHead> {
        HttpSniffer::new(MAX_HTTP_HEAD).feed(head)
    }

    fn host(head: &[u8]) -> Option<Vec<u8>> {
        match sniff_all(head) {
            Sniff::Done(h) => h.host,
            other => panic!("{}: {other:?}", String::from_utf8_lossy(head)),
        }
    }

    #[test]
    fn host_header_with_and_without_port() {
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n").unwrap(),
            b"a.example"
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nhost:  a.example:8080 \r\n\r\n").unwrap(),
            b"a.example"
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").unwrap(),
            b"[::1]"
        );
        assert_eq!(host(b"GET / HTTP/1.0\r\n\r\n"), None);
        assert_eq!(
            host(b"GET / HTTP/1.1\nHost: bare.lf\n\n").unwrap(),
            b"bare.lf"
        );
    }

    #[test]
    fn absolute_form_authority() {
        assert_eq!(
            host(b"GET http://a.example:81/x HTTP/1.1\r\n\r\n").unwrap(),
            b"a.example"
        );
        assert_eq!(
            host(
                b"GET http://allowed.example@evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n"
            )
            .unwrap(),
            b"evil.example"
        );
        assert_eq!(
            host(b"GET HTTP://A.example/ HTTP/1.1\r\nHost: a.EXAMPLE\r\n\r\n").unwrap(),
            b"A.example"
        );
    }

    #[test]
    fn tricks_are_invalid() {
        let cases: [(&[u8], SniffError); 6] = [
            (
                b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
                SniffError::RepeatedHost,
            ),
            (
                b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
                SniffError::ConflictingHost,
            ),
            (
                b"CONNECT evil.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n",
                SniffError::Connect,
            ),
            (
                b"\x16\x03\x01\x00\x05hello",
                SniffError::NotHttp("a TLS handshake on an HTTP listener"),
            ),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                SniffError::NotHttp("unsupported HTTP version"),
            ),
            (
                b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                SniffError::NotHttp("malformed request head"),
            ),
        ];
        for (head, err) in cases {
            assert_eq!(
                sniff_all(head),
                Sniff::Invalid(err),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn garbage_is_rejected_at_the_first_line() {
        let mut sniffer = HttpSniffer::new(MAX_HTTP_HEAD);
        assert_eq!(sniffer.feed(b"GE\x01garbage"), Sniff::NeedMore);
        assert!(matches!(
            sniffer.feed(b"GE\x01garbage\n"),
            Sniff::Invalid(SniffError::NotHttp(_))
        ));
        let mut sniffer = HttpSniffer::new(MAX_HTTP_HEAD);
        assert_eq!(
            sniffer.feed(b"\x00"),
            Sniff::Invalid(SniffError::NotHttp("not a request line"))
        );
    }

    /// Found by the `http_sniff` fuzz target: a malformed header before the end of the head
    /// gave a different answer fed whole (Invalid) than fed in pieces (NeedMore).
    #[test]
    fn fuzz_regression_malformed_header_split_invariant() {
        let input = b"GET / HTTP/1.1\r\n-Host: management.azurem\rom\r\n0\n";
        let whole = HttpSniffer::new(MAX_HTTP_HEAD).feed(input);
        let mut sniffer = HttpSniffer::new(MAX_HTTP_HEAD);
        let mut split = Sniff::NeedMore;
        for end in (5..=input.len()).step_by(5).chain([input.len()]) {
            split = sniffer.feed(&input[..end]);
            if split != Sniff::NeedMore {
                break;
            }
        }
        assert_eq!(whole, split);
        // Completed, the head is rejected.
        let mut done = input.to_vec();
        done.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            HttpSniffer::new(MAX_HTTP_HEAD).feed(&done),
            Sniff::Invalid(_)
        ));
    }

    #[test]
    fn head_cap() {
        let mut head = b"GET / HTTP/1.1\r\nHost: a.example\r\n".to_vec();
        while head.len() <= 200 {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaa\r\n");
        }
        assert_eq!(
            HttpSniffer::new(200).feed(&head),
            Sniff::Invalid(SniffError::HeadTooLarge { cap: 200 })
        );
        head.extend_from_slice(b"\r\n");
        assert_eq!(
            HttpSniffer::new(200).feed(&head),
            Sniff::Invalid(SniffError::HeadTooLarge { cap: 200 })
        );
    }

    #[test]
    fn every_prefix_and_split_gives_the_same_host() {
        let head = b"POST /upload HTTP/1.1\r\nUser-Agent: curl/8\r\nHost: Up.Example:80\r\nContent-Length: 3\r\n\r\nabc";
        let full = sniff_all(head);
        for split in 0..head.len() {
            let mut sniffer = HttpSniffer::new(MAX_HTTP_HEAD);
            let mut outcome = sniffer.feed(&head[..split]);
            if outcome == Sniff::NeedMore {
                outcome = sniffer.feed(head);
            }
            assert_eq!(outcome, full, "split at {split}");
        }
        // One byte at a time: the incremental path.
        let mut sniffer = HttpSniffer::new(MAX_HTTP_HEAD);
        let mut last = Sniff::NeedMore;
        for end in 1..=head.len() {
            last = sniffer.feed(&head[..end]);
            if last != Sniff::NeedMore {
                break;
            }
        }
        assert_eq!(last, full);
    }
}
