//! The Helm chart (`deploy/helm/lnm`) renders what `lnm-operator render` renders for the same
//! input: for each golden case, the chart is rendered offline through Helm's own engine and
//! every object compared with the renderer's. The level's configuration is compared as lnm
//! reads it (the chart writes the same configuration in Helm's YAML style) and the checksum
//! annotation as the checksum of that text.
//!
//! Helm's engine comes from PyPI (`helm-python-sdk`: Helm's Go SDK as a C library, used through
//! Python's ctypes; no `helm` binary ships in the reachable registries), installed by
//! `scripts/install-test-deps.sh`; this test fails, rather than skips, when it is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lnm_operator::{CHECKSUM_ANNOTATION, Level, RenderOptions, render};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Renders the chart with `values` through Helm's engine; returns the objects.
fn helm_template(values: &Value, namespace: &str) -> Vec<Value> {
    let dir = std::env::temp_dir().join(format!("lnm-helm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let values_file = dir.join(format!("values-{namespace}.json"));
    std::fs::write(&values_file, values.to_string()).unwrap();
    let script = r#"
import json, sys
try:
    from helm_python import Chart
except ImportError:
    sys.exit("helm_python is missing: python3 -m pip install helm-python-sdk (scripts/install-test-deps.sh does)")
chart = Chart.load(sys.argv[1])
values = json.load(open(sys.argv[2]))
chart.validate_schema(values)
print(json.dumps(chart.render(values, name="release", namespace=sys.argv[3])))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(repo().join("deploy/helm/lnm"))
        .arg(&values_file)
        .arg(namespace)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the chart renders: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&values_file);
    let manifests: BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    let mut objects = Vec::new();
    for text in manifests.values() {
        let docs: Vec<Value> = lnm_policy::serde_saphyr::from_multiple(text).unwrap();
        objects.extend(docs.into_iter().filter(|d| !d.is_null()));
    }
    objects
}

fn key(object: &Value) -> String {
    format!(
        "{} {}",
        object["kind"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap()
    )
}

/// The level's configuration as lnm reads it, and the checksum annotation replaced by a check
/// that it is the checksum of the ConfigMap's text.
fn normalise(objects: &mut [Value]) {
    let mut config_text = None;
    for object in objects.iter_mut() {
        if object["kind"] == "ConfigMap" && object["data"].get("config.yaml").is_some() {
            let text = object["data"]["config.yaml"].as_str().unwrap().to_owned();
            let config = lnm_policy::Config::parse(&text, "config.yaml")
                .expect("lnm reads it")
                .config;
            object["data"]["config.yaml"] =
                json!(lnm_policy::serde_saphyr::to_string(&config).unwrap());
            config_text = Some(text);
        }
    }
    let text = config_text.expect("a config ConfigMap");
    for object in objects.iter_mut() {
        if object["kind"] == "Deployment" {
            let annotations = &mut object["spec"]["template"]["metadata"]["annotations"];
            let checksum = annotations[CHECKSUM_ANNOTATION].as_str().unwrap();
            use sha2::Digest;
            let expected: String = sha2::Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(checksum, expected, "the checksum of the config text");
            annotations[CHECKSUM_ANNOTATION] = json!("<checksum of config.yaml>");
        }
    }
}

struct Case {
    config: &'static str,
    options: RenderOptions,
    values: Value,
}

fn cases() -> Vec<Case> {
    let with_image = RenderOptions::default()
        .with_image("registry.plant.local/lnm-gateway:0.1.0")
        .with_child_upstream(vec!["10.102.0.53:53".parse().unwrap()]);
    vec![
        Case {
            config: "deploy/examples/lnm-level4.yaml",
            options: RenderOptions::default().with_service_address("10.104.0.10".parse().unwrap()),
            values: json!({"service": {"address": "10.104.0.10"}}),
        },
        Case {
            config: "deploy/examples/lnm-level3.yaml",
            options: RenderOptions::default().with_service_address("10.103.0.10".parse().unwrap()),
            values: json!({"service": {"address": "10.103.0.10"}}),
        },
        Case {
            config: "deploy/examples/lnm-level3-ha.yaml",
            options: with_image,
            values: json!({
                "image": {"repository": "registry.plant.local/lnm-gateway", "tag": "0.1.0"},
                "childUpstream": ["10.102.0.53:53"],
            }),
        },
    ]
}

#[test]
fn the_chart_renders_what_the_renderer_renders() {
    for case in cases() {
        let text = std::fs::read_to_string(repo().join(case.config)).unwrap();
        let cr: Value = lnm_policy::serde_saphyr::from_str(&text).unwrap();
        let level = Level::parse(&text, case.config).unwrap();
        let rendered = render(&level, &case.options).unwrap();
        let mut expected: Vec<Value> = vec![
            serde_json::to_value(&rendered.config_map).unwrap(),
            serde_json::to_value(&rendered.service).unwrap(),
            serde_json::to_value(&rendered.deployment).unwrap(),
        ];
        expected.extend(
            rendered
                .pod_disruption_budget
                .iter()
                .map(|o| serde_json::to_value(o).unwrap()),
        );
        expected.extend(
            rendered
                .client_config
                .iter()
                .map(|o| serde_json::to_value(o).unwrap()),
        );

        let mut values = case.values.clone();
        values["name"] = cr["metadata"]["name"].clone();
        values["spec"] = cr["spec"].clone();
        let namespace = cr["metadata"]["namespace"].as_str().unwrap();
        let mut actual = helm_template(&values, namespace);

        normalise(&mut expected);
        normalise(&mut actual);
        let expected: BTreeMap<String, Value> =
            expected.into_iter().map(|o| (key(&o), o)).collect();
        let actual: BTreeMap<String, Value> = actual.into_iter().map(|o| (key(&o), o)).collect();
        assert_eq!(
            expected.keys().collect::<Vec<_>>(),
            actual.keys().collect::<Vec<_>>(),
            "{}: the same objects",
            case.config
        );
        for (name, object) in &expected {
            assert!(
                &actual[name] == object,
                "{}: {name} differs\nrenderer: {}\nchart:    {}",
                case.config,
                serde_json::to_string_pretty(object).unwrap(),
                serde_json::to_string_pretty(&actual[name]).unwrap()
            );
        }
    }
}

#[test]
fn the_chart_ships_lnms_crd_arc_domains_and_spec_schema() {
    let chart = repo().join("deploy/helm/lnm");
    assert_eq!(
        std::fs::read_to_string(chart.join("crds/lnm.yaml")).unwrap(),
        lnm_operator::CRD_YAML
    );
    let arc: Vec<String> = std::fs::read_to_string(chart.join("files/arc-domains.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        arc,
        lnm_policy::ARC_DOMAINS,
        "the chart's Arc domains are lnm's"
    );
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart.join("values.schema.json")).unwrap())
            .unwrap();
    let crd: Value = lnm_policy::serde_saphyr::from_str(lnm_operator::CRD_YAML).unwrap();
    let spec_schema =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        &schema["properties"]["spec"], spec_schema,
        "values.spec is validated like the CR's spec"
    );
}
