//! Rendering: golden files (through the `lnm-operator render` command line), the invariants
//! every rendered level keeps, and offline validation of every object against the Kubernetes
//! OpenAPI schemas (`kubernetes-validate --strict`, installed by `scripts/install-test-deps.sh`).
//!
//! `LNM_BLESS=1 cargo test -p lnm-operator --test render` rewrites the golden files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use lnm_operator::{CHECKSUM_ANNOTATION, Level, MAX_NAME, RenderOptions, Rendered, render};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One golden case: the input CR, the command-line options, the golden file.
struct Case {
    config: &'static str,
    args: &'static [&'static str],
    golden: &'static str,
}

const CASES: &[Case] = &[
    Case {
        config: "deploy/examples/lnm-level4.yaml",
        args: &["--service-address", "10.104.0.10"],
        golden: "level4.yaml",
    },
    Case {
        config: "deploy/examples/lnm-level3.yaml",
        args: &["--service-address", "10.103.0.10"],
        golden: "level3-internal.yaml",
    },
    Case {
        config: "deploy/examples/lnm-level3-ha.yaml",
        args: &[
            "--image",
            "registry.plant.local/lnm-gateway:0.1.0",
            "--child-upstream",
            "10.102.0.53:53",
        ],
        golden: "level3-ha.yaml",
    },
];

fn run_render(case: &Case) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lnm-operator"))
        .arg("render")
        .arg("--config")
        .arg(repo().join(case.config))
        .args(case.args)
        .output()
        .expect("lnm-operator runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn golden_files() {
    let bless = std::env::var_os("LNM_BLESS").is_some();
    for case in CASES {
        let yaml = run_render(case);
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(case.golden);
        if bless {
            std::fs::write(&path, &yaml).expect("golden written");
            continue;
        }
        let golden =
            std::fs::read_to_string(&path).expect("golden file exists (LNM_BLESS=1 writes it)");
        assert!(
            yaml == golden,
            "{} renders differently from {} (LNM_BLESS=1 rewrites it):\n{yaml}",
            case.config,
            path.display()
        );
    }
}

fn level(file: &str) -> Level {
    let path = repo().join(file);
    Level::parse(&std::fs::read_to_string(&path).expect("readable"), file).expect("valid level")
}

fn all_rendered() -> Vec<(String, Rendered)> {
    let mut out = Vec::new();
    for file in [
        "deploy/examples/lnm-level4.yaml",
        "deploy/examples/lnm-level3.yaml",
        "deploy/examples/lnm-level3-ha.yaml",
    ] {
        out.push((
            file.to_owned(),
            render(&level(file), &RenderOptions::default()).expect("renders"),
        ));
        let options = RenderOptions::default()
            .with_service_address("10.9.0.1".parse().unwrap())
            .with_name("a-very-long-level-name-that-does-not-fit-into-sixty-three-characters");
        out.push((
            format!("{file} (long name)"),
            render(&level(file), &options).expect("renders"),
        ));
    }
    out
}

#[test]
fn invariants() {
    for (what, r) in all_rendered() {
        let deployment = r.deployment.spec.as_ref().unwrap();
        let template = &deployment.template;
        let pod_labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        let selector = deployment.selector.match_labels.as_ref().unwrap();
        assert!(
            selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
            "{what}: selector matches the pods"
        );
        let service = r.service.spec.as_ref().unwrap();
        assert_eq!(
            service.selector.as_ref(),
            Some(selector),
            "{what}: the Service selects the pods"
        );
        if let Some(pdb) = &r.pod_disruption_budget {
            let pdb_selector = pdb
                .spec
                .as_ref()
                .unwrap()
                .selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref();
            assert_eq!(
                pdb_selector,
                Some(selector),
                "{what}: the PDB selects the pods"
            );
        }
        assert_eq!(
            r.pod_disruption_budget.is_some(),
            deployment.replicas.unwrap() >= 2,
            "{what}: a PDB exactly when replicas >= 2"
        );

        let mut names = vec![
            r.config_map.metadata.name.clone().unwrap(),
            r.deployment.metadata.name.clone().unwrap(),
            r.service.metadata.name.clone().unwrap(),
        ];
        names.extend(
            r.client_config
                .iter()
                .map(|c| c.metadata.name.clone().unwrap()),
        );
        names.extend(pod_labels.values().cloned());
        for name in &names {
            assert!(
                name.len() <= MAX_NAME,
                "{what}: {name} is longer than {MAX_NAME}"
            );
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'.'),
                "{what}: {name} is a DNS label"
            );
        }

        let pod = template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        let container_ports: Vec<_> = container.ports.as_ref().unwrap().iter().collect();
        let unique: BTreeSet<_> = container_ports
            .iter()
            .map(|p| (p.container_port, p.protocol.clone()))
            .collect();
        assert_eq!(
            unique.len(),
            container_ports.len(),
            "{what}: container ports are unique"
        );
        assert!(
            container_ports.iter().all(|p| p.container_port >= 1024),
            "{what}: unprivileged ports only"
        );
        let service_ports = service.ports.as_ref().unwrap();
        let unique: BTreeSet<_> = service_ports
            .iter()
            .map(|p| (p.port, p.protocol.clone()))
            .collect();
        assert_eq!(
            unique.len(),
            service_ports.len(),
            "{what}: Service ports are unique"
        );
        let unique: BTreeSet<_> = service_ports.iter().map(|p| p.name.clone()).collect();
        assert_eq!(
            unique.len(),
            service_ports.len(),
            "{what}: Service port names are unique"
        );
        for port in service_ports {
            assert_ne!(
                port.port, 9100,
                "{what}: the admin port is never on the Service"
            );
            assert_ne!(
                port.name.as_deref(),
                Some("admin"),
                "{what}: the admin port is never on the Service"
            );
            let target = match port.target_port.as_ref().unwrap() {
                lnm_operator::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
                    *n
                }
                other => panic!("{what}: numeric target ports, found {other:?}"),
            };
            assert!(
                container_ports
                    .iter()
                    .any(|c| c.container_port == target && c.protocol == port.protocol),
                "{what}: Service port {} goes to a container port",
                port.port
            );
        }
        assert!(
            service_ports.iter().any(|p| p.port == 443)
                && service_ports.iter().any(|p| p.port == 80)
        );
        assert_eq!(
            service.external_traffic_policy.as_deref(),
            Some("Local"),
            "{what}"
        );

        // The pod runs the ConfigMap's configuration, which lnm-gateway accepts, with the
        // checksum of exactly that text.
        let text = &r.config_map.data.as_ref().unwrap()["config.yaml"];
        let config = lnm_policy::Config::parse(text, "config.yaml")
            .expect("the pod's config is valid")
            .config;
        let annotations = template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        let digest = sha256_hex(text);
        assert_eq!(
            annotations[CHECKSUM_ANNOTATION], digest,
            "{what}: checksum of the config"
        );
        for listener in config.effective_listeners() {
            assert!(
                container_ports
                    .iter()
                    .any(|p| p.container_port == i32::from(listener.bind.port())),
                "{what}: listener {} has a container port",
                listener.bind
            );
        }
        let admin = config.admin.expect("admin endpoint for the probes");
        assert_eq!(admin.bind.port(), 9100);
        let grace = pod.termination_grace_period_seconds.unwrap();
        assert!(
            grace > config.timeouts.shutdown_drain.as_secs() as i64,
            "{what}: grace period above the drain"
        );

        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(
            pod_security.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(
            container
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        assert_eq!(
            container
                .liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/healthz")
        );
        // The config volume is a directory mount: a subPath mount would never see updates.
        let mount = &container.volume_mounts.as_ref().unwrap()[0];
        assert!(mount.sub_path.is_none(), "{what}: no subPath");
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn replicas_and_tolerations_come_from_the_cr() {
    let r = render(
        &level("deploy/examples/lnm-level3-ha.yaml"),
        &RenderOptions::default(),
    )
    .unwrap();
    let spec = r.deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let tolerations = spec.template.spec.unwrap().tolerations.unwrap();
    assert_eq!(tolerations.len(), 2);
    assert_eq!(tolerations[1].toleration_seconds, Some(300));
    let pdb = r.pod_disruption_budget.expect("a PDB for 3 replicas");
    assert_eq!(pdb.metadata.name.as_deref(), Some("aio-lnm-level3-ha"));
    // The level runs DNS: 53 over UDP and TCP on the Service, 1053 in the pod.
    let ports = r.service.spec.unwrap().ports.unwrap();
    let dns: Vec<_> = ports.iter().filter(|p| p.port == 53).collect();
    assert_eq!(dns.len(), 2);
}

#[test]
fn the_metrics_collector_reaches_the_pods_config() {
    let level = level("deploy/examples/lnm-level4.yaml");
    assert!(
        !level
            .notes
            .iter()
            .chain(&level.warnings)
            .any(|w| w.contains("openTelemetryMetricsCollectorAddr")),
        "the collector is used, not ignored: {:?} {:?}",
        level.notes,
        level.warnings
    );
    let r = render(&level, &RenderOptions::default()).unwrap();
    let text = &r.config_map.data.as_ref().unwrap()["config.yaml"];
    let config = lnm_policy::Config::parse(text, "config.yaml")
        .unwrap()
        .config;
    assert_eq!(
        config
            .open_telemetry_metrics_collector_addr
            .as_ref()
            .map(|c| c.uri()),
        Some("http://aio-otel-collector.azure-iot-operations.svc.cluster.local:4317".to_owned())
    );
    // The grace period covers the drain (30 s), the last push (5 s + 1) and the margin (10 s).
    let grace = r
        .deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .termination_grace_period_seconds;
    assert_eq!(grace, Some(30 + 6 + 10));
}

#[test]
fn the_envoy_image_is_ignored_with_a_note() {
    let level = level("deploy/examples/lnm-level4.yaml");
    assert!(
        level
            .notes
            .iter()
            .any(|w| w.contains("`image`") && w.contains("Envoy")),
        "{:?}",
        level.notes
    );
    assert!(
        level.warnings.is_empty(),
        "a stock LNM resource raises no warning: {:?}",
        level.warnings
    );
    assert!(
        !level.warnings.iter().any(|w| w.contains("`replicas`")),
        "replicas means something here"
    );
    let r = render(
        &level,
        &RenderOptions::default().with_image("example.com/lnm:1"),
    )
    .unwrap();
    let image = r.deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("example.com/lnm:1"));
}

#[test]
fn a_change_of_listeners_changes_the_checksum() {
    let text = std::fs::read_to_string(repo().join("deploy/examples/lnm-level3.yaml")).unwrap();
    let changed = text.replace(
        "opcua.level3.contoso.local:4840",
        "opcua.level3.contoso.local:4843",
    );
    let a = render(
        &Level::parse(&text, "a").unwrap(),
        &RenderOptions::default(),
    )
    .unwrap();
    let b = render(
        &Level::parse(&changed, "b").unwrap(),
        &RenderOptions::default(),
    )
    .unwrap();
    let checksum = |r: &Rendered| {
        r.deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CHECKSUM_ANNOTATION]
            .clone()
    };
    assert_ne!(checksum(&a), checksum(&b));
    assert_eq!(
        checksum(&a),
        checksum(
            &render(
                &Level::parse(&text, "c").unwrap(),
                &RenderOptions::default()
            )
            .unwrap()
        )
    );
}

#[test]
fn bad_specs_name_the_key() {
    let cases = [
        (
            "level: 3\nallowList: {domains: [{destinationUrl: '*', destinationType: external}]}\n",
            "*",
        ),
        ("level: 3\nallowLists: {}\n", "allowLists"),
        ("level: 3\nreplicas: -1\n", "replicas"),
        ("level: 3\nreplicas: many\n", "replicas"),
        (
            "level: 3\nnodeTolerations: [{key: a, tolerationSeconds: soon}]\n",
            "nodeTolerations",
        ),
    ];
    for (text, key) in cases {
        let err = Level::parse(text, "bad.yaml").expect_err(text).to_string();
        assert!(
            err.contains(key) && err.contains("bad.yaml"),
            "{text}: {err}"
        );
    }
    // A bare spec needs a name.
    let level = Level::parse("level: 4\n", "spec.yaml").unwrap();
    let err = render(&level, &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("metadata.name"), "{err}");
    // Two uses of one pod port.
    let text = "level: 4\nallowList: {domains: [{destinationUrl: 'x.local:9100', destinationType: internal}]}\n";
    let err = render(
        &Level::parse(text, "clash.yaml").unwrap(),
        &RenderOptions::default().with_name("x"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("9100") && err.contains("allowList.domains"),
        "{err}"
    );
}

#[test]
fn the_client_config_is_coredns_from_the_export() {
    let level = level("deploy/examples/lnm-level3.yaml");
    let without = render(&level, &RenderOptions::default()).unwrap();
    assert!(
        without.client_config.is_none(),
        "no address, no client-config"
    );
    assert!(without.notes.iter().any(|w| w.contains("client-config")));
    let r = render(
        &level,
        &RenderOptions::default().with_service_address("10.103.0.10".parse().unwrap()),
    )
    .unwrap();
    let client = r.client_config.unwrap();
    assert_eq!(
        client.metadata.name.as_deref(),
        Some("aio-lnm-level3-client-config")
    );
    let data = client.data.unwrap();
    let allowlist = level.config.allowlist();
    let answers = lnm_dns::RewriteConfig::new(vec!["10.103.0.10".parse().unwrap()], vec![]);
    let expected = lnm_dns::export::corefile(
        &allowlist,
        &lnm_dns::export::ExportConfig::new(answers, vec![]),
    );
    assert_eq!(
        data["Corefile"], expected,
        "the same text as export-dns --format coredns"
    );
    let snippet = &data["lnm.override"];
    assert!(
        snippet.contains("answer \"{{ .Name }} 60 IN A 10.103.0.10\""),
        "{snippet}"
    );
    for absent in [".:53", "forward", "errors", "cache", "REFUSED", "192.0.2.1"] {
        assert!(
            !snippet.contains(absent),
            "the override snippet has no {absent}: {snippet}"
        );
    }
    assert_eq!(
        snippet.matches('{').count(),
        snippet.matches('}').count(),
        "balanced braces"
    );
}

/// Offline validation of every rendered object against the Kubernetes OpenAPI schemas, strict
/// (unknown keys fail). The tool comes from PyPI (`kubernetes-validate`); the test fails, rather
/// than skips, when it is missing.
#[test]
fn rendered_objects_validate_against_kubernetes_schemas() {
    let tool = "kubernetes-validate";
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    assert!(
        found,
        "this test drives `{tool}` (PyPI package kubernetes-validate), which is not on PATH: run \
         `scripts/test.sh` (it installs the test tools) or `python3 -m pip install kubernetes-validate`"
    );
    let dir = std::env::temp_dir().join(format!("lnm-operator-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (i, (_, r)) in all_rendered().iter().enumerate() {
        let path = dir.join(format!("rendered-{i}.yaml"));
        std::fs::write(&path, r.to_yaml().unwrap()).unwrap();
        files.push(path);
    }
    let crd = dir.join("crd.yaml");
    std::fs::write(&crd, lnm_operator::CRD_YAML).unwrap();
    files.push(crd);
    files.push(repo().join("deploy/kubernetes/operator.yaml"));
    let validate = |files: &[PathBuf]| {
        Command::new(tool)
            .args(["--strict", "--quiet", "-k", "1.33.0"])
            .args(files)
            .output()
            .expect("kubernetes-validate runs")
    };
    let out = validate(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator is not vacuous: an unknown key fails it.
    let bad = dir.join("bad.yaml");
    let text = std::fs::read_to_string(&files[0]).unwrap().replacen(
        "imagePullPolicy:",
        "imagePullPolice:",
        1,
    );
    std::fs::write(&bad, text).unwrap();
    assert!(
        !validate(&[bad]).status.success(),
        "--strict rejects an unknown key"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
