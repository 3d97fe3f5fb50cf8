//! Benchmarks of lnm.
//!
//! - `benches/policy.rs`: criterion benchmark of [`lnm_policy::Allowlist::check`] over 10,000
//!   rules (`cargo bench -p lnm-benches --bench policy`);
//! - `benches/sniff.rs`: the TLS and HTTP sniffers on real first flights (Chromium, curl,
//!   openssl s_client), whole and in 100-byte segments (`--bench sniff`);
//! - `benches/dns.rs`: DNS request → answer without sockets, pure and through the
//!   `RewriteResolver` tower service (`--bench dns`).
//!
//! This library holds the inputs shared by the benchmarks, so they are built the same way
//! everywhere, and [`soak`]: the soak driver of the `lnm-soak` binary (`benches/soak.sh`) and
//! of the 60 s soak test (`examples/tests/soak.rs`).

pub mod soak;

use lnm_policy::Allowlist;

/// An allowlist of `n` rules: half exact names, half wildcards, spread over many suffixes.
pub fn synthetic_allowlist(n: usize) -> Allowlist {
    let mut builder = Allowlist::builder().arc_domains();
    for i in 0..n / 2 {
        builder = builder
            .external(&format!("host{i}.svc{}.example{}.com", i % 100, i % 7))
            .and_then(|b| b.external(&format!("*.tenant{i}.cloud{}.net", i % 13)))
            .unwrap_or_else(|e| panic!("synthetic pattern is valid: {e}"));
    }
    builder.build()
}

/// Names to check against [`synthetic_allowlist`]: exact hits, wildcard hits (shallow and deep),
/// an apex of a wildcard, misses, and mixed case with a trailing dot.
pub fn probe_names() -> Vec<String> {
    vec![
        "management.azure.com".into(),
        "host4242.svc42.example0.com".into(),
        "a.tenant777.cloud10.net".into(),
        "x.y.z.tenant1234.cloud12.net".into(),
        "tenant777.cloud10.net".into(),
        "evil.example.com".into(),
        "management.azure.com.evil.net".into(),
        "HOST17.Svc17.Example3.COM.".into(),
    ]
}
