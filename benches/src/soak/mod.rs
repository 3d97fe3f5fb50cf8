//! A soak test of one lnm level: the real `lnm-gateway` binary under mixed load for a set time.
//!
//! [`run`] starts, all in this process: a TLS origin (rustls, a throw-away CA from
//! [`lnm_proxy::sim::TestPki`]), a plain-HTTP origin and an upstream DNS server on loopback;
//! then the gateway binary with a TLS listener, an HTTP listener, DNS, the admin endpoint and an
//! allowlist; then drives it with every [`Kind`] of client at its rate ([`Rates`]) while it
//! rewrites the configuration and sends SIGHUP every [`SoakConfig::reload_interval`], and samples
//! the gateway's RSS, descriptors, threads and `/metrics` every [`SoakConfig::sample_interval`].
//! Every client's outcome is classified as an expected success, an expected refusal, or an
//! unexpected error; the [`Report`] holds the counts, the samples and the [`Verdicts`], and
//! renders itself as Markdown and CSV.
//!
//! `lnm-soak` (this crate's binary, `benches/soak.sh`) runs it for minutes against the release
//! build; `examples/tests/soak.rs` runs it for 60 s in the test suite.
//!
//! # Layout
//! - `config.rs`: [`SoakConfig`], [`Rates`], [`Kind`]
//! - `level.rs`: the gateway's configuration file and process, its log
//! - `origin.rs`: the HTTP origin and the upstream DNS server
//! - `client.rs`: one client of each kind and how its outcome is classified
//! - `sample.rs`: `/proc` and `/metrics` sampling
//! - `driver.rs`: [`run`]: the phases (warm-up, load, drain), the load loops, the reloads
//! - `report.rs`: [`Report`], [`Verdicts`], Markdown and CSV
//! - `error.rs`: [`SoakError`]

mod client;
mod config;
mod driver;
mod error;
mod level;
mod origin;
mod report;
mod sample;

pub use config::{Kind, Rates, SoakConfig};
pub use driver::run;
pub use error::SoakError;
pub use level::LogSummary;
pub use report::{KindTotals, Report, Verdict, Verdicts};
pub use sample::Sample;
