//! Fuzzes DNS request handling: parsing, the rewrite decision and every answer built from a
//! query (normal, empty, fitted to UDP) must never panic.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use domain::base::iana::Rcode;
use libfuzzer_sys::fuzz_target;
use lnm_dns::{Action, Query, RewriteConfig, decide};
use lnm_policy::Allowlist;

fn allowlist() -> &'static Allowlist {
    static LIST: OnceLock<Allowlist> = OnceLock::new();
    LIST.get_or_init(|| {
        Allowlist::builder()
            .external("management.azure.com")
            .and_then(|b| b.external("*.blob.core.windows.net"))
            .and_then(|b| b.internal("broker.l3.local", 8883))
            .map(|b| b.build())
            .unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = Query::parse(Bytes::copy_from_slice(data)) else { return };
    let config = RewriteConfig::new(vec!["10.3.0.1".parse().unwrap()], vec!["fd00::1".parse().unwrap()]);
    let action = decide(allowlist(), &config, &query, "10.2.0.1".parse().unwrap());
    let response = match action {
        Action::Answer(addrs) => query.answer(Rcode::NOERROR, 60, &addrs),
        Action::Forward | Action::Refuse(_) => query.empty(Rcode::REFUSED),
    };
    let _ = query.fit_udp(response);
});
