//! `purdue-demo`: the quick start. Starts a local "cloud" and the gateways of levels 4, 3 and
//! 2 on loopback, makes real requests from a level-2 host, and prints what happened at each
//! level. Exits 0 only when every expectation held.
//!
//! ```sh
//! cargo run -p lnm-examples --bin purdue-demo
//! ```
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use lnm_proxy::sim::{LevelSpec, Network, SimError, Topology};
use lnm_proxy::{ConnReport, Outcome};

const BROKER: &str = "broker.l2.contoso.local";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    match demo().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("purdue-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How a request is sent from the level-2 host.
enum Send {
    /// Resolve through level 2's DNS, then TLS through its proxy.
    Https(&'static str, &'static str),
    /// TLS straight at level 2's proxy with this SNI (DNS bypassed).
    ViaProxy(&'static str),
    /// The internal service of level 2, on its own port.
    Internal(&'static str, &'static str),
}

/// What a request is expected to do.
enum Expect {
    /// Reach the origin (body starts with this).
    Body(&'static str),
    /// Fail (error text contains this).
    Fail(&'static str),
}

async fn demo() -> Result<bool, SimError> {
    let started = Instant::now();
    let topology = Topology::builder()
        .cloud(&[
            "management.azure.com",
            "login.microsoftonline.com",
            "*.blob.core.windows.net",
            "evil.example.com",
        ])
        .level(
            LevelSpec::new(4)
                .allow("management.azure.com")
                .allow("login.microsoftonline.com")
                .allow("*.blob.core.windows.net"),
        )
        .level(
            LevelSpec::new(3)
                .allow("management.azure.com")
                .allow("*.blob.core.windows.net"),
        )
        .level(
            LevelSpec::new(2)
                .allow("management.azure.com")
                .allow("login.microsoftonline.com")
                .allow("*.blob.core.windows.net")
                .internal_service(BROKER),
        )
        .network(Network::Loopback)
        .start()
        .await?;
    println!(
        "lnm Purdue demo: cloud origin + gateways of levels 4, 3, 2 on loopback (started in {:?})",
        started.elapsed()
    );
    for level in topology.levels() {
        println!(
            "  level {}: gateway {}  proxy {}  dns {}",
            level.level(),
            level.gateway_ip(),
            level
                .proxy(topology.tls_port())
                .map_or("-".into(), |a| a.to_string()),
            level.dns().map_or("-".into(), |a| a.to_string()),
        );
    }
    let mut all_ok = true;

    println!("\nDNS at each level (management.azure.com A):");
    for level in topology.levels() {
        let answer = topology
            .client(level.level())?
            .resolve("management.azure.com")
            .await;
        let ok = matches!(&answer, Ok(ips) if ips == &[level.gateway_ip()]);
        all_ok &= ok;
        println!(
            "  [{}] level {} -> {:?}",
            mark(ok),
            level.level(),
            answer.map_err(|e| e.to_string())
        );
    }
    let refused = topology.client(2)?.resolve("evil.example.com").await;
    let ok = refused.is_err();
    all_ok &= ok;
    println!(
        "  [{}] level 2 evil.example.com -> {}",
        mark(ok),
        refused.map_or_else(|e| e.to_string(), |ips| format!("{ips:?}"))
    );

    println!("\nRequests from a level-2 host:");
    let host = topology.client(2)?;
    let port = topology.tls_port();
    // (description, expectation, how to send it, levels that see the connection)
    let cases: [(&str, Expect, Send, usize); 6] = [
        (
            "GET https://management.azure.com/ (exact name)",
            Expect::Body("origin sni=management.azure.com"),
            Send::Https("management.azure.com", "/"),
            3,
        ),
        (
            "GET https://acct1.blob.core.windows.net/data (wildcard)",
            Expect::Body("origin sni=acct1.blob.core.windows.net"),
            Send::Https("acct1.blob.core.windows.net", "/data"),
            3,
        ),
        (
            "GET https://login.microsoftonline.com/ (allowed at 2, not at 3)",
            Expect::Fail("UnrecognisedName"),
            Send::Https("login.microsoftonline.com", "/"),
            2,
        ),
        (
            "TLS to evil.example.com straight at the level-2 proxy (DNS bypassed)",
            Expect::Fail("UnrecognisedName"),
            Send::ViaProxy("evil.example.com"),
            1,
        ),
        (
            "TLS to blob.core.windows.net (apex of a wildcard) at the proxy",
            Expect::Fail("UnrecognisedName"),
            Send::ViaProxy("blob.core.windows.net"),
            1,
        ),
        (
            "GET https://broker.l2.contoso.local/mqtt (east-west, internal)",
            Expect::Body("internal sni=broker.l2.contoso.local"),
            Send::Internal(BROKER, "/mqtt"),
            1,
        ),
    ];
    for (what, expect, send, hops) in cases {
        let result = match send {
            Send::Https(name, path) => host.https_get(name, path).await,
            Send::ViaProxy(name) => host.https_get_via_proxy(name, port, "/").await,
            Send::Internal(name, path) => host.internal_get(name, path).await,
        };
        // Each level reports when its side of the connection closes: wait for all of them
        // before the next request, so the path printed is this request's.
        let mut path = topology.wait_reports(hops, Duration::from_secs(3)).await;
        let ok = path.len() == hops
            && match (&expect, &result) {
                (Expect::Body(prefix), Ok(body)) => body.starts_with(prefix),
                (Expect::Fail(text), Err(e)) => e.to_string().contains(text),
                _ => false,
            };
        all_ok &= ok;
        let outcome = match &result {
            Ok(body) => format!("200, body {:?}", truncate(body, 60)),
            Err(e) => format!("refused: {e}"),
        };
        println!("  [{}] {what}\n        -> {outcome}", mark(ok));
        path.sort_by_key(|(level, _)| std::cmp::Reverse(*level));
        for (level, r) in path.iter().rev() {
            println!("        level {level}: {}", describe(r));
        }
    }
    println!(
        "\n{} in {:?}",
        if all_ok {
            "every expectation held"
        } else {
            "SOME EXPECTATIONS FAILED"
        },
        started.elapsed()
    );
    topology.shutdown().await;
    Ok(all_ok)
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAIL" }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_owned()
    } else {
        format!("{}...", &s[..n])
    }
}

fn describe(r: &ConnReport) -> String {
    let name = r.server_name.as_deref().unwrap_or("-");
    match &r.outcome {
        Outcome::Denied(reason) => format!("deny {name} ({reason})"),
        outcome if outcome.is_allowed() => format!(
            "allow {name} -> {} via {}; {} B up, {} B down, {:.1} ms",
            r.route.map_or("-", |route| route.as_str()),
            r.rule
                .as_ref()
                .map_or("-".to_owned(), |rule| rule.to_string()),
            r.bytes_up,
            r.bytes_down,
            r.duration.as_secs_f64() * 1000.0
        ),
        other => format!("{other} ({name})"),
    }
}
