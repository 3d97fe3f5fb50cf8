//! What a denied client receives: a TLS alert or an HTTP error, then close.

/// TLS alert descriptions lnm sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alert {
    /// `unrecognized_name` (112): the name is not allowed here.
    UnrecognizedName,
    /// `access_denied` (49): the client, port or path is not allowed.
    AccessDenied,
    /// `internal_error` (80): the next hop could not be reached.
    InternalError,
    /// `decode_error` (50): the ClientHello is malformed.
    DecodeError,
}

impl Alert {
    /// The alert description code.
    pub fn code(self) -> u8 {
        match self {
            Alert::UnrecognizedName => 112,
            Alert::AccessDenied => 49,
            Alert::InternalError => 80,
            Alert::DecodeError => 50,
        }
    }

    /// The alert a TLS server sends for a first flight that fails to sniff as `error`.
    pub fn for_sniff_error(error: &crate::sniff::SniffError) -> Alert {
        let _ = error;
        Alert::DecodeError
    }

    /// The complete fatal alert record (TLS 1.2 record version, understood by every client).
    pub fn record(self) -> [u8; 7] {
        [21, 3, 3, 0, 2, 2, self.code()]
    }
}

/// An HTTP/1.1 error response with a one-line plain-text reason.
pub(crate) fn http_response(status: u16, reason_phrase: &str, line: &str) -> Vec<u8> {
    let body = format!("{line}\n");
    format!(
        "HTTP/1.1 {status} {reason_phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nServer: lnm\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_records_and_http_responses() {
        assert_eq!(Alert::UnrecognizedName.record(), [21, 3, 3, 0, 2, 2, 112]);
        let resp = http_response(403, "Forbidden", "lnm: x.example is not allowlisted");
        let text = String::from_utf8(resp).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(text.ends_with("\r\n\r\nlnm: x.example is not allowlisted\n"));
        assert!(text.contains("Content-Length: 34\r\n"), "{text}");
    }
}
