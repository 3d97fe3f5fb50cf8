//! Domain patterns: an exact name or `*.suffix`.

use std::fmt;
use std::str::FromStr;

use lnm_core::{Name, NameError};

use crate::Error;

/// One allowlist pattern (DESIGN §3).
///
/// - `example.com` matches only `example.com`;
/// - `*.example.com` matches any name with one or more labels before `.example.com`, never
///   `example.com` itself and never `badexample.com`.
///
/// ```
/// use lnm_policy::Pattern;
/// let p: Pattern = "*.Blob.Core.Windows.Net".parse().unwrap();
/// assert_eq!(p.to_string(), "*.blob.core.windows.net");
/// assert!(p.matches(&"a.b.blob.core.windows.net".parse().unwrap()));
/// assert!(!p.matches(&"blob.core.windows.net".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// Exactly this name.
    Exact(Name),
    /// Any name below this suffix (the suffix itself excluded).
    Wildcard(Name),
}

impl Pattern {
    /// Parses `name` or `*.suffix` (Unicode converted to A-labels, case folded, one trailing dot
    /// ignored).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::Pattern {
            pattern: text.to_owned(),
            reason,
        };
        if text == "*" || text == "*." {
            return Err(invalid(
                "a bare `*` would allow every name: lnm is never an open proxy".into(),
            ));
        }
        if let Some(suffix) = text.strip_prefix("*.") {
            if suffix.contains('*') {
                return Err(invalid("only one leading `*.` is allowed".into()));
            }
            let name = Name::new(suffix).map_err(|e| invalid(e.to_string()))?;
            return Ok(Pattern::Wildcard(name));
        }
        if text.contains('*') {
            return Err(invalid(
                "a wildcard must be a whole leading label, as in `*.example.com`".into(),
            ));
        }
        if text.contains("://") || text.contains('/') {
            return Err(invalid("a destination is a host name, not a URL".into()));
        }
        match Name::new(text) {
            Ok(name) => Ok(Pattern::Exact(name)),
            Err(NameError::InvalidByte { byte: b':', .. }) => Err(invalid(
                "unexpected port: only internal entries carry a port".into(),
            )),
            Err(e) => Err(invalid(e.to_string())),
        }
    }

    /// Whether `name` matches (the reference semantics; [`Allowlist`](crate::Allowlist) answers
    /// the same in O(labels) over many patterns).
    pub fn matches(&self, name: &Name) -> bool {
        match self {
            Pattern::Exact(exact) => exact == name,
            Pattern::Wildcard(suffix) => {
                let (name, suffix) = (name.as_str(), suffix.as_str());
                name.len() > suffix.len() + 1
                    && name.ends_with(suffix)
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
            }
        }
    }

    /// The name (for `Exact`) or the suffix (for `Wildcard`).
    pub fn name(&self) -> &Name {
        match self {
            Pattern::Exact(name) | Pattern::Wildcard(name) => name,
        }
    }

    /// Whether this is a wildcard pattern.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Pattern::Wildcard(_))
    }
}

impl FromStr for Pattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(name) => write!(f, "{name}"),
            Pattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        pattern
            .parse::<Pattern>()
            .unwrap()
            .matches(&name.parse().unwrap())
    }

    #[test]
    fn wildcard_semantics() {
        assert!(m("*.example.com", "a.example.com"));
        assert!(m("*.example.com", "a.b.c.example.com"));
        assert!(!m("*.example.com", "example.com"));
        assert!(!m("*.example.com", "badexample.com"));
        assert!(!m("*.example.com", "example.com.evil.net"));
        assert!(m("example.com", "EXAMPLE.com."));
        assert!(!m("example.com", "a.example.com"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (text, why) in [
            ("*", "open proxy"),
            ("*example.com", "whole leading label"),
            ("a.*.example.com", "whole leading label"),
            ("*.*.example.com", "only one"),
            ("https://example.com", "not a URL"),
            ("example.com:443", "only internal entries carry a port"),
            ("10.0.0.1", "IP address"),
            ("*.10.0.0.1", "IP address"),
        ] {
            let err = Pattern::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains(text), "{text}: {err}");
        }
    }
}
