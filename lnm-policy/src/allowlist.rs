//! The compiled allowlist: O(labels) name matching, source ranges, internal ports.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use lnm_core::Name;

use crate::decision::{Allowed, Decision, Reason, Request, Route, RuleId};
use crate::{Error, Pattern, arc};

/// Where a rule came from, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleOrigin {
    /// `allowList.domains[index]` of the configuration.
    Config {
        /// Position in `allowList.domains`.
        index: usize,
    },
    /// The built-in Azure Arc set (`enableArcDomains`).
    ArcDomains,
    /// Added through [`AllowlistBuilder`].
    Builder,
}

/// One allowlist rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What names it matches.
    pub pattern: Pattern,
    /// Where matching connections go.
    pub route: Route,
    /// For internal rules: the only port they are allowed on.
    pub port: Option<u16>,
    /// Where it came from.
    pub origin: RuleOrigin,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pattern)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, " ({}", self.route)?;
        match self.origin {
            RuleOrigin::Config { index } => write!(f, ", allowList.domains[{index}])"),
            RuleOrigin::ArcDomains => f.write_str(", enableArcDomains)"),
            RuleOrigin::Builder => f.write_str(")"),
        }
    }
}

/// What is allowed at one exact name or wildcard suffix.
#[derive(Debug, Default, Clone)]
struct Entry {
    external: Option<RuleId>,
    /// (port, rule), a handful at most; port `None`: any port.
    internal: Vec<(Option<u16>, RuleId)>,
}

impl Entry {
    /// The rule for `port` (`None`: any port, as for DNS), internal first on its own port.
    fn route(&self, port: Option<u16>) -> Option<RuleId> {
        let internal = self
            .internal
            .iter()
            .find(|(p, _)| p.is_none() || port.is_none() || *p == port);
        if let Some(&(_, rule)) = internal {
            return Some(rule);
        }
        self.external
    }

    fn is_empty(&self) -> bool {
        self.external.is_none() && self.internal.is_empty()
    }
}

/// Every suffix of every pattern (`com`, `azure.com`, `management.azure.com`) is a node.
#[derive(Debug, Clone)]
struct Node {
    /// The suffix this node stands for, to verify a match.
    suffix: Box<str>,
    exact: Entry,
    wildcard: Entry,
}

/// The index of the trie: the chained hash of a suffix's labels → its node.
///
/// Keying by a 64-bit chained hash (seeded per allowlist) makes each step one integer lookup
/// instead of a string comparison; the one or two candidate nodes are then verified against the
/// name itself, so a hash collision can never allow a name, only (with probability ~2⁻⁶⁴) fall
/// back to the slow path.
type Index = HashMap<u64, u32, PreHashed>;

/// The index's keys are already seeded 64-bit hashes: the map uses them as they are instead
/// of hashing them again.
#[derive(Debug, Clone, Copy, Default)]
struct PreHashed;

impl std::hash::BuildHasher for PreHashed {
    type Hasher = PreHashedKey;

    fn build_hasher(&self) -> PreHashedKey {
        PreHashedKey(0)
    }
}

/// The hasher of [`PreHashed`]: the `u64` key itself.
#[derive(Debug, Clone, Copy)]
struct PreHashedKey(u64);

impl std::hash::Hasher for PreHashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in rather than panic.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// A compiled allowlist (DESIGN §3). Immutable and cheap to share; swap a new one in with an
/// [`AllowlistHandle`](crate::AllowlistHandle).
///
/// Matching walks a trie of labels from the right, so a check costs O(labels of the name)
/// whatever the number of rules. Precedence, independent of rule order: an exact pattern before
/// wildcards, a longer wildcard suffix before a shorter one; within one pattern an internal rule
/// on the requested port before an external rule. A name that only matches internal rules for
/// other ports is denied with [`Reason::PortNotAllowed`].
///
/// ```
/// use lnm_policy::{Allowlist, Decision, Reason, Request, Route};
///
/// let allowlist = Allowlist::builder()
///     .external("management.azure.com").unwrap()
///     .external("*.blob.core.windows.net").unwrap()
///     .internal("broker.l3.local", 8883).unwrap()
///     .source_range("10.2.0.0/16".parse().unwrap())
///     .build();
/// let client = "10.2.0.7".parse().unwrap();
///
/// let d = allowlist.check(&Request::for_name("acct.blob.core.windows.net", client, 443));
/// assert!(matches!(d, Decision::Allow(a) if a.route == Route::External));
/// let d = allowlist.check(&Request::for_name("broker.l3.local", client, 8883));
/// assert!(matches!(d, Decision::Allow(a) if a.route == Route::Internal));
/// let d = allowlist.check(&Request::for_name("blob.core.windows.net", client, 443));
/// assert_eq!(d, Decision::Deny(Reason::NotAllowlisted));
/// let d = allowlist.check(&Request::for_name("management.azure.com", "10.9.0.1".parse().unwrap(), 443));
/// assert_eq!(d, Decision::Deny(Reason::SourceNotAllowed));
/// ```
#[derive(Debug, Clone)]
pub struct Allowlist {
    nodes: Vec<Node>,
    index: Index,
    hasher: foldhash::fast::FixedState,
    /// Shared, so that a decision names its rule without holding on to the allowlist.
    rules: Vec<Arc<Rule>>,
    /// `None`: every source is allowed.
    sources: Option<Vec<IpNet>>,
}

impl Default for Allowlist {
    /// An allowlist that allows nothing.
    fn default() -> Self {
        Allowlist::builder().build()
    }
}

impl Allowlist {
    /// Starts building an allowlist.
    pub fn builder() -> AllowlistBuilder {
        AllowlistBuilder {
            rules: Vec::new(),
            sources: None,
        }
    }

    /// Decides on a connection (pure: no I/O, no clock, no allocation; an allowed decision
    /// shares its [`Rule`]).
    ///
    /// Order of the checks: source range, presence and validity of the name, then the patterns.
    pub fn check(&self, request: &Request<'_>) -> Decision {
        self.decide(request, Some(request.port))
    }

    /// Decides on a DNS query: like [`check`](Self::check) but without a port, so an internal
    /// entry matches on any port (its name must resolve to the gateway whatever it is used for).
    pub fn check_query(&self, name: &[u8], source: IpAddr) -> Decision {
        self.decide(&Request::new(Some(name), source, 0), None)
    }

    /// Whether `source` may use this gateway at all (checked before anything is read).
    pub fn source_allowed(&self, source: IpAddr) -> bool {
        match &self.sources {
            None => true,
            Some(nets) => {
                let ip = source.to_canonical();
                nets.iter().any(|net| net.contains(&ip))
            }
        }
    }

    /// All rules, in the order they were added.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = &Rule> + '_ {
        self.rules.iter().map(|rule| &**rule)
    }

    /// The decision that allows with rule `id`.
    fn allow(&self, id: RuleId) -> Decision {
        let rule = &self.rules[id.index()];
        Decision::Allow(Allowed {
            route: rule.route,
            rule: rule.clone(),
        })
    }

    /// The source ranges (`None`: every source).
    pub fn source_ranges(&self) -> Option<&[IpNet]> {
        self.sources.as_deref()
    }

    fn decide(&self, request: &Request<'_>, port: Option<u16>) -> Decision {
        if !self.source_allowed(request.source) {
            return Decision::Deny(Reason::SourceNotAllowed);
        }
        let Some(raw) = request.server_name else {
            return Decision::Deny(Reason::NoServerName);
        };
        match Name::with_normalized_ascii(raw, |name| self.lookup(name, port)) {
            Ok(decision) => decision,
            Err(e) => Decision::Deny(Reason::InvalidName(e)),
        }
    }

    /// Walks the trie and applies the precedence rules.
    ///
    /// The fast path remembers only the exact entry and the deepest wildcard on the way down;
    /// the rare case where that match is an internal rule for another port (or fails
    /// verification) walks again for the fallbacks.
    fn lookup(&self, name: &[u8], port: Option<u16>) -> Decision {
        let (exact, deepest_wildcard) = self.walk(name, |_| ());
        let first = exact
            .map(|n| &n.exact)
            .or(deepest_wildcard.map(|n| &n.wildcard));
        match first.map(|entry| entry.route(port)) {
            None => Decision::Deny(Reason::NotAllowlisted),
            Some(Some(rule)) => self.allow(rule),
            Some(None) => self.lookup_fallback(name, port),
        }
    }

    /// Walks the labels from the right, calling `on_wildcard` for every node with a wildcard
    /// entry that matches (shortest suffix first); returns the node of the exact entry and the
    /// node of the deepest wildcard entry. Every node returned or passed on is verified.
    fn walk<'s>(
        &'s self,
        name: &[u8],
        mut on_wildcard: impl FnMut(&'s Node),
    ) -> (Option<&'s Node>, Option<&'s Node>) {
        let bytes = name;
        let mut end = bytes.len();
        let mut hash = 0u64;
        let (mut exact, mut wildcard) = (None, None);
        loop {
            let mut start = end;
            while start > 0 && bytes[start - 1] != b'.' {
                start -= 1;
            }
            hash = chain(&self.hasher, hash, &bytes[start..end]);
            let Some(&id) = self.index.get(&hash) else {
                break;
            };
            let node = &self.nodes[id as usize];
            if start == 0 {
                if !node.exact.is_empty() && node.suffix.as_bytes() == name {
                    exact = Some(node);
                }
                break;
            }
            if !node.wildcard.is_empty() && &name[start..] == node.suffix.as_bytes() {
                wildcard = Some(node);
                on_wildcard(node);
            }
            end = start - 1;
        }
        (exact, wildcard)
    }

    #[cold]
    fn lookup_fallback(&self, name: &[u8], port: Option<u16>) -> Decision {
        let mut wildcards: Vec<&Node> = Vec::new();
        let (exact, _) = self.walk(name, |node| wildcards.push(node));
        let candidates = exact
            .map(|n| &n.exact)
            .into_iter()
            .chain(wildcards.into_iter().rev().map(|n| &n.wildcard));
        for entry in candidates {
            if let Some(rule) = entry.route(port) {
                return self.allow(rule);
            }
        }
        match port {
            Some(port) => Decision::Deny(Reason::PortNotAllowed { port }),
            None => Decision::Deny(Reason::NotAllowlisted),
        }
    }
}

/// Builds an [`Allowlist`].
#[derive(Debug, Clone)]
pub struct AllowlistBuilder {
    rules: Vec<Rule>,
    sources: Option<Vec<IpNet>>,
}

impl AllowlistBuilder {
    /// Allows `pattern` (`name` or `*.suffix`) as an external destination on every listener.
    pub fn external(self, pattern: &str) -> Result<Self, Error> {
        Ok(self.rule(
            Pattern::parse(pattern)?,
            Route::External,
            None,
            RuleOrigin::Builder,
        ))
    }

    /// Allows `pattern` as an internal (east-west) destination on `port` only.
    pub fn internal(self, pattern: &str, port: u16) -> Result<Self, Error> {
        Ok(self.rule(
            Pattern::parse(pattern)?,
            Route::Internal,
            Some(port),
            RuleOrigin::Builder,
        ))
    }

    /// Adds a rule. An internal rule without a port is allowed on every port; the port of an
    /// external rule is ignored (external rules are allowed on every listener).
    pub fn rule(
        mut self,
        pattern: Pattern,
        route: Route,
        port: Option<u16>,
        origin: RuleOrigin,
    ) -> Self {
        let port = if route == Route::Internal { port } else { None };
        self.rules.push(Rule {
            pattern,
            route,
            port,
            origin,
        });
        self
    }

    /// Adds the built-in Azure Arc domain set ([`ARC_DOMAINS`](crate::ARC_DOMAINS)).
    pub fn arc_domains(mut self) -> Self {
        for pattern in arc::patterns() {
            self = self.rule(pattern, Route::External, None, RuleOrigin::ArcDomains);
        }
        self
    }

    /// Restricts clients to `range` (call again to add more). Without any call, every source is
    /// allowed.
    pub fn source_range(mut self, range: IpNet) -> Self {
        self.sources
            .get_or_insert_with(Vec::new)
            .push(range.trunc());
        self
    }

    /// Restricts clients to `ranges`; an empty list allows no source at all.
    pub fn source_ranges(mut self, ranges: impl IntoIterator<Item = IpNet>) -> Self {
        let list = self.sources.get_or_insert_with(Vec::new);
        list.extend(ranges.into_iter().map(|r| r.trunc()));
        self
    }

    /// Compiles the rules.
    pub fn build(self) -> Allowlist {
        // A seed collision between two different suffixes is astronomically unlikely, but it is
        // detected and answered with a new seed rather than assumed away.
        loop {
            if let Some(allowlist) = self.try_build(lnm_core::random_u64()) {
                return allowlist;
            }
        }
    }

    fn try_build(&self, seed: u64) -> Option<Allowlist> {
        let hasher = foldhash::fast::FixedState::with_seed(seed);
        let mut nodes: Vec<Node> = Vec::new();
        let mut index = Index::with_hasher(PreHashed);
        for (i, rule) in self.rules.iter().enumerate() {
            let id = RuleId(u32::try_from(i).unwrap_or(u32::MAX));
            let name = rule.pattern.name().as_str();
            let bytes = name.as_bytes();
            let mut hash = 0u64;
            let mut end = bytes.len();
            let at = loop {
                let mut start = end;
                while start > 0 && bytes[start - 1] != b'.' {
                    start -= 1;
                }
                hash = chain(&hasher, hash, &bytes[start..end]);
                let suffix = &name[start..];
                let at = match index.get(&hash) {
                    Some(&existing) if *nodes[existing as usize].suffix == *suffix => {
                        existing as usize
                    }
                    Some(_) => return None,
                    None => {
                        nodes.push(Node {
                            suffix: suffix.into(),
                            exact: Entry::default(),
                            wildcard: Entry::default(),
                        });
                        index.insert(hash, (nodes.len() - 1) as u32);
                        nodes.len() - 1
                    }
                };
                if start == 0 {
                    break at;
                }
                end = start - 1;
            };
            let entry = match rule.pattern {
                Pattern::Exact(_) => &mut nodes[at].exact,
                Pattern::Wildcard(_) => &mut nodes[at].wildcard,
            };
            // The first rule for the same pattern and route wins, so duplicates are harmless.
            match rule.route {
                Route::Internal => {
                    if !entry.internal.iter().any(|(p, _)| *p == rule.port) {
                        entry.internal.push((rule.port, id));
                    }
                }
                Route::External => {
                    entry.external.get_or_insert(id);
                }
            }
        }
        nodes.shrink_to_fit();
        index.shrink_to_fit();
        Some(Allowlist {
            nodes,
            index,
            hasher,
            rules: self.rules.iter().cloned().map(Arc::new).collect(),
            sources: self.sources.clone(),
        })
    }
}

/// The hash of a suffix, from the hash of its parent suffix and its first label.
#[inline]
fn chain(hasher: &foldhash::fast::FixedState, parent: u64, label: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = hasher.build_hasher();
    h.write_u64(parent);
    h.write(label);
    h.finish()
}

#[cfg(test)]
mod tests;
