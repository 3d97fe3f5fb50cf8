//! Your own edge gateway, from lnm's parts: one full level (proxy, DNS, admin, reload) built
//! from a configuration, with **your** hop wrapper and **your** policy layer.
//!
//! ```sh
//! cargo run -p lnm-examples --features sim --example custom_gateway
//! ```
//!
//! On loopback it starts a TLS "cloud" origin (test certificates from `lnm_proxy::sim`) and a
//! top-level gateway described in code ([`Config`], no YAML) with:
//! - `Audit`, a [`Hop`] that wraps whatever hop the configuration gives (here `Direct`) and
//!   counts and logs every connection it opens — wrapped again on every reload;
//! - a tower layer over the allowlist decision that closes `billing.example.com` for a
//!   maintenance window, whatever the allowlist says (a denial with its own reason, label
//!   `maintenance`, in logs and metrics).
//!
//! A TLS client then fetches an allowed name, is refused the closed one (TLS alert
//! `access_denied`) and a name not on the allowlist (`unrecognized_name`), the admin endpoint
//! answers `/readyz`, a reload allows a new name, and the example checks each step (exit 0) or
//! says what failed.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lnm_core::hop::SharedHop;
use lnm_core::{ConnInfo, Error, Hop, Stream, Target};
use lnm_policy::config::{
    AdminConfig, Config, DnsConfig, DomainEntry, ListenerConfig, ListenerProtocol, ResolverConfig,
};
use lnm_policy::{Denied, Reason, Request, Route};
use lnm_proxy::Gateway;
use lnm_proxy::sim::{TestPki, tls_origin};
use lnm_proxy::tower::filter::FilterLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Counts and logs the connections of the hop it wraps.
struct Audit {
    inner: SharedHop,
    route: Route,
    opened: Arc<AtomicUsize>,
}

#[lnm_core::async_trait]
impl Hop for Audit {
    async fn connect(&self, target: &Target, info: &ConnInfo) -> Result<Stream, Error> {
        let result = self.inner.connect(target, info).await;
        let n = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        let ok = if result.is_ok() { "opened" } else { "failed" };
        println!(
            "  audit #{n}: {} route to {target} for {} {ok}",
            self.route, info.client
        );
        result
    }
}

/// The level, described in code: a top-level gateway on loopback whose cloud is `origin`.
fn level(origin: SocketAddr, extra: Option<&str>) -> Config {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut config = Config::level(4)
        .allow(DomainEntry::external("*.example.com").expect("a valid pattern"))
        .with_listener(
            ListenerConfig::new(SocketAddr::new(lo, 0), ListenerProtocol::Tls)
                .with_destination_port(origin.port()),
        )
        .with_dns(DnsConfig::new(
            SocketAddr::new(lo, 0),
            vec![Ipv4Addr::LOCALHOST],
        ))
        .with_admin(AdminConfig::new(SocketAddr::new(lo, 0)));
    let mut resolver = ResolverConfig::default();
    for name in ["www.example.com", "billing.example.com", "new.example.org"] {
        resolver = resolver.with_host(name.parse().expect("a valid name"), origin.ip());
    }
    config = config.with_resolver(resolver);
    if let Some(pattern) = extra {
        config = config.allow(DomainEntry::external(pattern).expect("a valid pattern"));
    }
    config
}

/// A TLS GET through the gateway: the body, or the error (a refusal shows as an alert).
async fn get(gateway: SocketAddr, pki: &TestPki, name: &str) -> Result<String, String> {
    let tcp = TcpStream::connect(gateway)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = name.to_owned().try_into().map_err(|e| format!("{e}"))?;
    let mut tls = pki
        .connector()
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response).await;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.clone(), |(_, body)| body.to_owned()))
}

/// `GET path` on the admin endpoint: the status line.
async fn admin_status(admin: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(admin).await?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes())
        .await?;
    let mut response = vec![0u8; 256];
    let n = tcp.read(&mut response).await?;
    let text = String::from_utf8_lossy(&response[..n]).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let pki = match TestPki::new(&["*.example.com", "new.example.org"]) {
        Ok(pki) => pki,
        Err(e) => return fail(&format!("test PKI: {e}")),
    };
    let origin = match tls_origin(&pki, "127.0.0.1:0".parse().expect("an address"), "cloud").await {
        Ok(addr) => addr,
        Err(e) => return fail(&format!("origin: {e}")),
    };

    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    // Over every decision: `billing.example.com` is closed, whatever the allowlist says.
    let maintenance = FilterLayer::new(maintenance_window);
    let gateway = Gateway::builder(level(origin, None))
        .wrap_hops(move |route, inner| {
            Arc::new(Audit {
                inner,
                route,
                opened: counter.clone(),
            })
        })
        .policy_layer(maintenance)
        .start()
        .await;
    let mut gateway = match gateway {
        Ok(gateway) => gateway,
        Err(e) => return fail(&format!("gateway: {e}")),
    };
    let proxy = gateway.addrs()[0];
    let (Some(dns), Some(admin)) = (gateway.dns_addr(), gateway.admin_addr()) else {
        return fail("the configuration's DNS and admin sections did not start");
    };
    println!("level 4 gateway: proxy {proxy}, DNS {dns}, admin {admin}");

    let mut failures = 0;
    let mut check = |what: &str, ok: bool, detail: String| {
        println!("[{}] {what}: {detail}", if ok { " ok " } else { "FAIL" });
        failures += usize::from(!ok);
    };
    let www = get(proxy, &pki, "www.example.com").await;
    check(
        "allowed name reaches the cloud",
        matches!(&www, Ok(body) if body.contains("sni=www.example.com")),
        format!("{www:?}"),
    );
    let billing = get(proxy, &pki, "billing.example.com").await;
    check(
        "maintenance layer closes billing.example.com",
        matches!(&billing, Err(e) if e.contains("AccessDenied")),
        format!("{billing:?}"),
    );
    let other = get(proxy, &pki, "new.example.org").await;
    check(
        "a name off the allowlist is refused",
        matches!(&other, Err(e) if e.contains("UnrecognisedName")),
        format!("{other:?}"),
    );
    let ready = admin_status(admin, "/readyz").await;
    check(
        "admin /readyz",
        matches!(&ready, Ok(line) if line.contains("200")),
        format!("{ready:?}"),
    );
    let pending = gateway.reload(level(origin, Some("new.example.org")));
    let after = get(proxy, &pki, "new.example.org").await;
    check(
        "after a reload the new name passes, through a re-wrapped hop",
        pending.is_complete() && matches!(&after, Ok(body) if body.contains("sni=new.example.org")),
        format!("{after:?}, needs restart: {pending:?}"),
    );
    let audited = opened.load(Ordering::Relaxed);
    check(
        "the audit hop saw every forwarded connection",
        audited == 2,
        format!("{audited} connections"),
    );
    gateway.shutdown().await;
    if failures == 0 {
        println!("every expectation held");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The policy layer: `billing.example.com` is closed for maintenance (a denial with its own
/// reason); every other request goes on to the allowlist. (The name is compared as sent; a
/// real layer would normalise it with `lnm_core::Name`.)
fn maintenance_window(request: Request<'_>) -> Result<Request<'_>, Denied> {
    if request.server_name == Some(&b"billing.example.com"[..]) {
        return Err(Denied::new(Reason::Policy("maintenance")));
    }
    Ok(request)
}

fn fail(why: &str) -> ExitCode {
    println!("[FAIL] {why}");
    ExitCode::FAILURE
}
