//! What a denied client receives: a TLS alert or an HTTP error, then close.

use crate::sniff::SniffError;

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
    /// `unexpected_message` (10): the first handshake message is not a ClientHello, or a record
    /// that is not a handshake record came first or inside the hello.
    UnexpectedMessage,
    /// `record_overflow` (22): a record longer than 2^14 bytes.
    RecordOverflow,
    /// `illegal_parameter` (47): the ClientHello is larger than the cap, or repeats an
    /// extension.
    IllegalParameter,
}

impl Alert {
    /// The alert description code.
    pub fn code(self) -> u8 {
        match self {
            Alert::UnrecognizedName => 112,
            Alert::AccessDenied => 49,
            Alert::InternalError => 80,
            Alert::DecodeError => 50,
            Alert::UnexpectedMessage => 10,
            Alert::RecordOverflow => 22,
            Alert::IllegalParameter => 47,
        }
    }

    /// The complete fatal alert record (TLS 1.2 record version, understood by every client).
    pub fn record(self) -> [u8; 7] {
        [21, 3, 3, 0, 2, 2, self.code()]
    }

    /// The alert a TLS server sends for a first flight the sniffer refused: the same words
    /// as the server the client meant to reach.
    ///
    /// | refusal | alert | why |
    /// |---|---|---|
    /// | first record not a handshake record, a non-handshake record inside the hello, first handshake message not a ClientHello, handshake bytes after the hello in its last record | `unexpected_message` | RFC 8446 section 5 and 5.1; OpenSSL and rustls send it |
    /// | record longer than 2^14 bytes | `record_overflow` | RFC 8446 section 5.1, RFC 5246 section 6.2.1 |
    /// | ClientHello over the cap ([`SniffError::TooLarge`]) | `illegal_parameter` | what OpenSSL (also BoringSSL, LibreSSL) sends for an excessive handshake message (`SSL_R_EXCESSIVE_MESSAGE_SIZE`); rustls closes without an alert |
    /// | an extension twice (RFC 8446 section 4.2 forbids it) | `illegal_parameter` | what rustls sends for any repeated extension and OpenSSL for one it knows |
    /// | malformed hello, trailing data, several SNI host names, empty record, SSLv2 header, record major version not 3, connection closed mid-hello | `decode_error` | the bytes are not a well-formed TLS 1.x ClientHello |
    ///
    /// The HTTP sniffer's errors are answered with HTTP 400 and never use an alert; they map
    /// to `decode_error` so that this function is total.
    ///
    /// ```
    /// use lnm_proxy::Alert;
    /// use lnm_proxy::sniff::SniffError;
    ///
    /// let not_tls = SniffError::NotHandshake { content_type: b'G' };
    /// assert_eq!(Alert::for_sniff_error(&not_tls), Alert::UnexpectedMessage);
    /// ```
    pub fn for_sniff_error(error: &SniffError) -> Alert {
        match error {
            SniffError::NotHandshake { .. }
            | SniffError::InterleavedRecord { .. }
            | SniffError::NotClientHello { .. }
            | SniffError::NotOnRecordBoundary { .. } => Alert::UnexpectedMessage,
            SniffError::RecordTooLong { .. } => Alert::RecordOverflow,
            SniffError::TooLarge { .. } | SniffError::DuplicateExtension { .. } => {
                Alert::IllegalParameter
            }
            SniffError::SslV2
            | SniffError::BadRecordVersion { .. }
            | SniffError::EmptyRecord
            | SniffError::Malformed(_)
            | SniffError::TrailingData(_)
            | SniffError::MultipleServerNames
            | SniffError::Truncated { .. } => Alert::DecodeError,
            SniffError::NotHttp(_)
            | SniffError::HeadTooLarge { .. }
            | SniffError::RepeatedHost
            | SniffError::ConflictingHost
            | SniffError::Connect => Alert::DecodeError,
        }
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

    #[test]
    fn codes_are_the_rfc_ones() {
        let codes = [
            (Alert::UnexpectedMessage, 10),
            (Alert::RecordOverflow, 22),
            (Alert::IllegalParameter, 47),
            (Alert::AccessDenied, 49),
            (Alert::DecodeError, 50),
            (Alert::InternalError, 80),
            (Alert::UnrecognizedName, 112),
        ];
        for (alert, code) in codes {
            assert_eq!(alert.code(), code, "{alert:?}");
            assert_eq!(alert.record(), [21, 3, 3, 0, 2, 2, code]);
        }
    }

    /// Every `SniffError` variant, with the alert a TLS server would send. The match in
    /// `for_sniff_error` has no wildcard, so a new variant is a compile error there; this list
    /// is checked against `as_str` labels so that it names each variant once.
    #[test]
    fn every_sniff_error_has_its_alert() {
        use Alert::*;
        let cases = [
            (
                SniffError::NotHandshake { content_type: 23 },
                UnexpectedMessage,
            ),
            (
                SniffError::InterleavedRecord {
                    index: 1,
                    content_type: 20,
                },
                UnexpectedMessage,
            ),
            (
                SniffError::NotClientHello { msg_type: 2 },
                UnexpectedMessage,
            ),
            (
                SniffError::NotOnRecordBoundary { len: 1 },
                UnexpectedMessage,
            ),
            (SniffError::RecordTooLong { len: 16385 }, RecordOverflow),
            (
                SniffError::TooLarge {
                    len: 65537,
                    cap: 65536,
                },
                IllegalParameter,
            ),
            (SniffError::SslV2, DecodeError),
            (SniffError::BadRecordVersion { major: 2 }, DecodeError),
            (SniffError::EmptyRecord, DecodeError),
            (SniffError::Malformed("x"), DecodeError),
            (SniffError::TrailingData("x"), DecodeError),
            (
                SniffError::DuplicateExtension { ext_type: 0 },
                IllegalParameter,
            ),
            (SniffError::MultipleServerNames, DecodeError),
            (SniffError::Truncated { len: 3 }, DecodeError),
            (SniffError::NotHttp("x"), DecodeError),
            (SniffError::HeadTooLarge { cap: 16384 }, DecodeError),
            (SniffError::RepeatedHost, DecodeError),
            (SniffError::ConflictingHost, DecodeError),
            (SniffError::Connect, DecodeError),
        ];
        let mut labels: Vec<&str> = cases.iter().map(|(e, _)| e.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), cases.len(), "each variant once");
        for (error, alert) in cases {
            assert_eq!(Alert::for_sniff_error(&error), alert, "{error:?}");
        }
    }
}
