//! Cross-crate checks: the configurations shipped in `examples/configs` stay valid, and the
//! allowlist composes with hops as tower services.

use std::path::Path;

use lnm_core::hop::{HopService, Memory, MemoryNetwork};
use lnm_core::{ConnInfo, Hop, Target};
use lnm_policy::{Config, Denied, EnforceLayer, Permitted, PolicyRequest, Reason, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{ServiceBuilder, ServiceExt};

#[test]
fn shipped_configs_load_without_warnings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let loaded = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            loaded.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            loaded.warnings
        );
        assert!(loaded.config.allowlist().rules().next().is_some());
        seen += 1;
    }
    assert!(seen > 0, "no configuration found in {}", dir.display());
}

/// A connection request as a gateway would build it after sniffing.
struct Sniffed {
    name: &'static str,
    client: std::net::SocketAddr,
    port: u16,
}

impl PolicyRequest for Sniffed {
    fn policy_request(&self) -> Request<'_> {
        Request::for_name(self.name, self.client.ip(), self.port)
    }
}

#[tokio::test]
async fn policy_layer_in_front_of_a_memory_hop() {
    let net = MemoryNetwork::new();
    let mut origin = net.bind("management.azure.com:443").unwrap();
    tokio::spawn(async move {
        while let Some((mut s, _)) = origin.accept().await {
            s.write_all(b"hello from the cloud").await.unwrap();
        }
    });
    let loaded = Config::parse(
        "allowList:\n  domains:\n    - {destinationUrl: management.azure.com, destinationType: external}\n  sourceIpRange:\n    - {addressPrefix: 10.2.0.0, prefixLen: 16}\n",
        "inline",
    )
    .unwrap();
    let hop = Memory::by_target(&net);
    let svc = ServiceBuilder::new()
        .layer(EnforceLayer::new(loaded.config.allowlist().into()))
        .map_request(|p: Permitted<Sniffed>| {
            Target::new(p.request.name.parse().unwrap(), p.request.port)
        })
        .service(HopService::new(hop.clone()));

    let client = "10.2.0.9:40000".parse().unwrap();
    let mut stream = svc
        .clone()
        .oneshot(Sniffed {
            name: "Management.Azure.com",
            client,
            port: 443,
        })
        .await
        .unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hello from the cloud");

    let err = svc
        .clone()
        .oneshot(Sniffed {
            name: "evil.example",
            client,
            port: 443,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Denied>().unwrap().reason,
        Reason::NotAllowlisted
    );

    let outsider = "10.3.0.9:40000".parse().unwrap();
    let err = svc
        .oneshot(Sniffed {
            name: "management.azure.com",
            client: outsider,
            port: 443,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Denied>().unwrap().reason,
        Reason::SourceNotAllowed
    );

    // The hop itself stays usable directly.
    let target = Target::new("management.azure.com".parse().unwrap(), 443);
    assert!(hop.connect(&target, &ConnInfo::default()).await.is_ok());
}
