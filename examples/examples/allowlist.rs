//! Loads a level's configuration and shows, for each name, what its allowlist decides and why.
//!
//! ```sh
//! cargo run -p lnm-examples --example allowlist                      # built-in level-3 config
//! cargo run -p lnm-examples --example allowlist -- my-lnm.yaml management.azure.com x.example:443
//! ```
//!
//! The client address used is the first address of the first `sourceIpRange` (or 10.2.0.10).
#![allow(clippy::print_stdout)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use lnm_policy::{Config, Decision, Request};

const DEFAULT_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/level3.yaml");
const DEFAULT_NAMES: &[&str] = &[
    "management.azure.com",
    "acct1.blob.core.windows.net",
    "blob.core.windows.net",
    "eastus.his.arc.azure.com",
    "management.azure.com.evil.example",
    "broker.l3.contoso.local:8883",
    "broker.l3.contoso.local:443",
    "10.0.0.1",
];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_CONFIG.into());
    let names: Vec<String> = args.collect();
    let names: Vec<&str> = if names.is_empty() {
        DEFAULT_NAMES.to_vec()
    } else {
        names.iter().map(String::as_str).collect()
    };

    let loaded = match Config::load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let allowlist = loaded.config.allowlist();
    let client: IpAddr = allowlist
        .source_ranges()
        .and_then(|r| r.first())
        .map(|net| net.hosts().next().unwrap_or(net.addr()))
        .unwrap_or(IpAddr::from([10, 2, 0, 10]));
    println!(
        "{}: {} rules, client {client}",
        path.display(),
        allowlist.rules().len()
    );
    for arg in names {
        let (name, port) = match arg.rsplit_once(':') {
            Some((name, port)) if port.parse::<u16>().is_ok() => {
                (name, port.parse().unwrap_or(443))
            }
            _ => (arg, 443),
        };
        match allowlist.check(&Request::for_name(name, client, port)) {
            Decision::Allow(a) => println!("  allow  {name}:{port} -> {} via {}", a.route, &a.rule),
            Decision::Deny(reason) => println!("  deny   {name}:{port} ({reason})"),
        }
    }
    ExitCode::SUCCESS
}
