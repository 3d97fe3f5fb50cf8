//! A one-minute soak of this build's `lnm-gateway` (the ten-minute run against the release
//! build is `benches/soak.sh`): the driver of `lnm_benches::soak` runs the real binary under
//! mixed load — TLS and HTTP clients allowed and refused, slow and garbage clients, DNS
//! queries answered, forwarded and refused, a reload every 10 s — and the verdicts must hold:
//! RSS flat, descriptors back to their baseline and not growing, no unexpected client outcome,
//! every reload applied, the gateway alive and cleanly stopped. Nothing is timed: every client
//! has a generous timeout, and the rates are half the soak's so the test can share the machine.

use std::path::PathBuf;
use std::time::Duration;

use lnm_benches::soak::{self, SoakConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_under_mixed_load_for_a_minute_stays_flat() {
    let mut config = SoakConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_lnm-gateway")));
    config.duration = Duration::from_secs(60);
    config.warmup = Duration::from_secs(5);
    config.rate_scale = 0.5;
    config.sample_interval = Duration::from_secs(1);
    config.reload_interval = Duration::from_secs(10);
    // Logged per connection at info, as in production; the driver reads and counts every line.
    config.gateway_log = "info".to_owned();
    let report = soak::run(config)
        .await
        .expect("the soak could not be set up");
    let markdown = report.markdown("lnm soak (60 s, debug build)", 30);
    assert!(report.passed(), "{markdown}");
    // Something ran: allowed, refused and DNS traffic all reached the gateway.
    let last = report.samples.last().expect("samples");
    assert!(
        last.conns_allowed > 0 && last.conns_denied > 0 && last.dns_queries > 0,
        "{markdown}"
    );
    eprintln!("{markdown}");
    // The gateway's log and configuration are kept only when the soak failed.
    let _ = std::fs::remove_dir_all(&report.workdir);
}
