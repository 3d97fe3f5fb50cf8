//! Validated, normalised DNS names.
//!
//! Every server name lnm looks at — the SNI of a ClientHello, an HTTP `Host`, a DNS question, a
//! `destinationUrl` of the allowlist — goes through the same rules (DESIGN §3):
//!
//! - ASCII letters are folded to lower case and one trailing dot is ignored;
//! - names written in Unicode (configuration only) are converted to IDNA A-labels (`xn--…`);
//! - labels are 1..=63 bytes of `a-z 0-9 - _`, the whole name at most 253 bytes;
//! - IP literals (and names whose last label is numeric, which `getaddrinfo` would read as an
//!   IPv4 address such as `127.1` or `0x7f.1`), empty names and NUL bytes are rejected.
//!
//! Names read from the wire are never IDNA-mapped: a ClientHello or DNS question must already
//! carry A-labels, so a non-ASCII byte there is an [`NameError::InvalidByte`].

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use std::sync::Arc;

/// The longest name, in bytes, without its trailing dot.
pub const MAX_NAME_LEN: usize = 253;
/// The longest label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// A stack buffer large enough for any normalised name (see [`Name::normalize_into`]).
pub type NameBuf = [u8; MAX_NAME_LEN];

/// Why a server name is not a valid DNS name.
///
/// Every variant is `Copy` so a policy [decision](https://docs.rs/lnm-policy) can carry it without
/// allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty (or only a dot).
    #[error("the name is empty")]
    Empty,
    /// The name is longer than 253 bytes.
    #[error("the name is {len} bytes long; at most {MAX_NAME_LEN} are allowed")]
    TooLong {
        /// Length of the name in bytes, trailing dot excluded.
        len: usize,
    },
    /// Two dots in a row, or a leading dot.
    #[error("empty label at byte {position}")]
    EmptyLabel {
        /// Byte offset of the empty label.
        position: usize,
    },
    /// A label is longer than 63 bytes.
    #[error("label at byte {position} is {len} bytes long; at most {MAX_LABEL_LEN} are allowed")]
    LabelTooLong {
        /// Byte offset where the label starts.
        position: usize,
        /// Length of the label.
        len: usize,
    },
    /// A NUL byte, the classic certificate-name truncation trick.
    #[error("NUL byte at {position}")]
    NulByte {
        /// Byte offset of the NUL.
        position: usize,
    },
    /// A byte outside `a-z A-Z 0-9 - _ .`.
    #[error("byte 0x{byte:02x} at {position} is not allowed in a DNS name")]
    InvalidByte {
        /// The offending byte.
        byte: u8,
        /// Its offset.
        position: usize,
    },
    /// An IPv4 or IPv6 literal, or a name a resolver would read as one (numeric last label).
    #[error("an IP address literal is not a server name")]
    IpLiteral,
    /// A Unicode name that IDNA (UTS #46) cannot convert to A-labels.
    #[error("the name cannot be converted to IDNA A-labels")]
    Idna,
}

/// A valid DNS name in canonical form: lower case, A-labels, no trailing dot.
///
/// Cheap to clone (the text is shared). Compares, hashes and displays as its canonical text.
///
/// ```
/// use lnm_core::Name;
/// let name: Name = "Management.Azure.COM.".parse().unwrap();
/// assert_eq!(name.as_str(), "management.azure.com");
/// assert_eq!("bücher.example".parse::<Name>().unwrap().as_str(), "xn--bcher-kva.example");
/// assert!("10.0.0.1".parse::<Name>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    /// Parses a name written by a person (configuration): Unicode is converted to A-labels.
    pub fn new(input: &str) -> Result<Self, NameError> {
        if input.is_ascii() {
            return Self::from_ascii(input.as_bytes());
        }
        // IDNA only for non-ASCII input; `domain_to_ascii` applies UTS #46 mapping (which also
        // folds case), the result then goes through the same strict checks as wire names.
        let ascii = idna::domain_to_ascii(input).map_err(|_| NameError::Idna)?;
        Self::from_ascii(ascii.as_bytes())
    }

    /// Parses a name read from the wire (SNI, `Host`, DNS question): ASCII only, no IDNA mapping.
    pub fn from_ascii(input: &[u8]) -> Result<Self, NameError> {
        Self::with_normalized(input, |text| Name(Arc::from(text)))
    }

    /// Validates and normalises `input`, then hands the canonical text to `f` — without
    /// allocating, and without copying when the input is already lower case (the usual case for
    /// SNI and DNS). This is the hot path of every policy check; [`Name::from_ascii`] is built
    /// on it.
    #[inline]
    pub fn with_normalized<R>(input: &[u8], f: impl FnOnce(&str) -> R) -> Result<R, NameError> {
        Self::with_normalized_ascii(input, |ascii| {
            // Every byte was checked to be ASCII.
            std::str::from_utf8(ascii)
                .map(f)
                .map_err(|_| NameError::Idna)
        })?
    }

    /// [`with_normalized`](Self::with_normalized) handing over the canonical name as bytes
    /// (lower-case ASCII letters, digits, `-`, `_` and dots), which spares callers that compare
    /// bytes a UTF-8 check.
    #[inline]
    pub fn with_normalized_ascii<R>(
        input: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, NameError> {
        let input = input.strip_suffix(b".").unwrap_or(input);
        if input.is_empty() {
            return Err(NameError::Empty);
        }
        if input.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: input.len() });
        }
        let mut label_start = 0;
        let mut has_upper = false;
        for (i, &b) in input.iter().enumerate() {
            match CLASS[b as usize] {
                LOWER => {}
                UPPER => has_upper = true,
                DOT => {
                    check_label(label_start, i)?;
                    label_start = i + 1;
                }
                _ => return Err(invalid_byte(input, i)),
            }
        }
        check_label(label_start, input.len())?;
        if is_numeric_label(&input[label_start..]) {
            return Err(NameError::IpLiteral);
        }
        if has_upper {
            return Ok(fold_then(input, f));
        }
        Ok(f(input))
    }

    /// Validates and normalises `input` into `buf`, returning the canonical text.
    pub fn normalize_into<'b>(input: &[u8], buf: &'b mut NameBuf) -> Result<&'b str, NameError> {
        let len = Self::with_normalized(input, |text| {
            buf[..text.len()].copy_from_slice(text.as_bytes());
            text.len()
        })?;
        std::str::from_utf8(&buf[..len]).map_err(|_| NameError::Idna)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels from right to left (`com`, `azure`, `management`).
    pub fn labels_rev(&self) -> impl Iterator<Item = &str> {
        self.0.rsplit('.')
    }

    /// The number of labels.
    pub fn label_count(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'.').count() + 1
    }

    /// The name without its leftmost label (`azure.com` for `management.azure.com`), if any.
    pub fn parent(&self) -> Option<Name> {
        self.0
            .split_once('.')
            .map(|(_, rest)| Name(Arc::from(rest)))
    }
}

const INVALID: u8 = 0;
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DOT: u8 = 3;

/// The class of each byte in a name: `a-z 0-9 - _` are kept, `A-Z` folded, `.` separates.
static CLASS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => LOWER,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            _ => INVALID,
        };
        b += 1;
    }
    table
};

#[cold]
fn invalid_byte(input: &[u8], position: usize) -> NameError {
    match input[position] {
        0 => NameError::NulByte { position },
        b':' if std::str::from_utf8(input).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok()) => {
            NameError::IpLiteral
        }
        byte => NameError::InvalidByte { byte, position },
    }
}

#[cold]
fn fold_then<R>(input: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf: NameBuf = [0; MAX_NAME_LEN];
    let folded = &mut buf[..input.len()];
    folded.copy_from_slice(input);
    folded.make_ascii_lowercase();
    f(folded)
}

fn check_label(start: usize, end: usize) -> Result<(), NameError> {
    match end - start {
        0 => Err(NameError::EmptyLabel { position: start }),
        len if len > MAX_LABEL_LEN => Err(NameError::LabelTooLong {
            position: start,
            len,
        }),
        _ => Ok(()),
    }
}

/// Whether a last label would make `inet_aton`/WHATWG read the name as IPv4: all decimal
/// digits, or `0x`/`0X` followed by hex digits of either case.
fn is_numeric_label(label: &[u8]) -> bool {
    if let Some(hex) = label
        .strip_prefix(b"0x")
        .or_else(|| label.strip_prefix(b"0X"))
    {
        return hex.iter().all(u8::is_ascii_hexdigit);
    }
    label.iter().all(u8::is_ascii_digit)
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.parse::<Ipv4Addr>().is_ok() {
            return Err(NameError::IpLiteral);
        }
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(s);
        if unbracketed.parse::<Ipv6Addr>().is_ok() {
            return Err(NameError::IpLiteral);
        }
        Name::new(s)
    }
}

impl TryFrom<&str> for Name {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({:?})", &*self.0)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format_args!("invalid name {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> Result<String, NameError> {
        s.parse::<Name>().map(|n| n.as_str().to_owned())
    }

    #[test]
    fn case_and_trailing_dot_are_normalised() {
        assert_eq!(n("Management.Azure.COM.").unwrap(), "management.azure.com");
        assert_eq!(n("a_b-c.example").unwrap(), "a_b-c.example");
        assert_eq!(
            n("example.com..").unwrap_err(),
            NameError::EmptyLabel { position: 12 }
        );
    }

    #[test]
    fn unicode_becomes_a_labels() {
        assert_eq!(n("BÜCHER.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(n("münchen.de.").unwrap(), "xn--mnchen-3ya.de");
        // Wire names are never IDNA-mapped.
        assert_eq!(
            Name::from_ascii("bücher.example".as_bytes()).unwrap_err(),
            NameError::InvalidByte {
                byte: 0xc3,
                position: 1
            }
        );
    }

    #[test]
    fn ip_literals_are_rejected() {
        for ip in [
            "10.0.0.1",
            "::1",
            "[::1]",
            "fe80::1",
            "127.1",
            "0x7f.1",
            "0X7F.1",
            "a.0Xff",
            "A.0x7F",
            "2130706433",
            "a.b.12",
        ] {
            assert_eq!(n(ip).unwrap_err(), NameError::IpLiteral, "{ip}");
            assert!(Name::from_ascii(ip.as_bytes()).is_err(), "{ip} on the wire");
        }
        assert_eq!(
            Name::from_ascii(b"10.0.0.1").unwrap_err(),
            NameError::IpLiteral
        );
        assert_eq!(Name::from_ascii(b"::1").unwrap_err(), NameError::IpLiteral);
        // A numeric label that is not the last one is fine (e.g. 1.example.com).
        assert_eq!(n("1.example.com").unwrap(), "1.example.com");
        assert_eq!(n("0xcafe.example").unwrap(), "0xcafe.example");
    }

    #[test]
    fn each_invalid_shape_has_its_own_error() {
        assert_eq!(n("").unwrap_err(), NameError::Empty);
        assert_eq!(n(".").unwrap_err(), NameError::Empty);
        assert_eq!(
            n(".example.com").unwrap_err(),
            NameError::EmptyLabel { position: 0 }
        );
        assert_eq!(
            n("a..b").unwrap_err(),
            NameError::EmptyLabel { position: 2 }
        );
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(
            n(&long_label).unwrap_err(),
            NameError::LabelTooLong {
                position: 0,
                len: 64
            }
        );
        let long = vec!["a".repeat(63); 4].join(".") + ".x";
        assert_eq!(n(&long).unwrap_err(), NameError::TooLong { len: 257 });
        assert_eq!(
            Name::from_ascii(b"evil.com\0.good.com").unwrap_err(),
            NameError::NulByte { position: 8 }
        );
        assert_eq!(
            n("exa mple.com").unwrap_err(),
            NameError::InvalidByte {
                byte: b' ',
                position: 3
            }
        );
        assert_eq!(
            n("*.example.com").unwrap_err(),
            NameError::InvalidByte {
                byte: b'*',
                position: 0
            }
        );
        assert_eq!(
            n("host:443").unwrap_err(),
            NameError::InvalidByte {
                byte: b':',
                position: 4
            }
        );
    }

    #[test]
    fn limits_are_inclusive() {
        let label = "a".repeat(63);
        assert!(n(&format!("{label}.com")).is_ok());
        let max = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "b".repeat(61));
        assert_eq!(max.len(), 253);
        assert!(n(&max).is_ok());
        assert!(n(&format!("{max}.")).is_ok(), "trailing dot does not count");
    }

    #[test]
    fn labels_and_parent() {
        let name: Name = "a.b.example.com".parse().unwrap();
        assert_eq!(
            name.labels_rev().collect::<Vec<_>>(),
            ["com", "example", "b", "a"]
        );
        assert_eq!(name.label_count(), 4);
        assert_eq!(name.parent().unwrap().as_str(), "b.example.com");
        assert_eq!("com".parse::<Name>().unwrap().parent(), None);
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(s in "[a-zA-Z0-9_.-]{0,80}\\.?") {
            if let Ok(once) = Name::from_ascii(s.as_bytes()) {
                let twice = Name::from_ascii(once.as_str().as_bytes()).unwrap();
                prop_assert_eq!(&once, &twice);
                prop_assert_eq!(once.as_str(), once.as_str().to_ascii_lowercase());
                prop_assert!(!once.as_str().ends_with('.'));
            }
        }

        #[test]
        fn unicode_normalisation_is_idempotent(s in "\\PC{1,30}") {
            if let Ok(once) = Name::new(&s) {
                prop_assert_eq!(Name::new(once.as_str()).unwrap(), once);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Name::from_ascii(&bytes);
        }
    }
}
