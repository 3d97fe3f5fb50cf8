//! The `Lnm` CustomResourceDefinition: LNM's names, the `scale` and `status` subresources, a
//! structural schema (every property typed), and existing LNM custom resources (and lnm's
//! example configurations) valid against it.

use std::path::Path;

use serde_json::Value;

fn schema() -> Value {
    let crd = lnm_operator::crd();
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn names_and_subresources_are_lnms() {
    let crd = lnm_operator::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("lnmz.layerednetworkmgmt.iotoperations.azure.com")
    );
    assert_eq!(crd.spec.group, lnm_operator::GROUP);
    assert_eq!(crd.spec.names.kind, "Lnm");
    assert_eq!(crd.spec.names.plural, "lnmz");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1beta1");
    assert!(version.served && version.storage);
    let subresources = version.subresources.as_ref().unwrap();
    assert!(subresources.status.is_some());
    let scale = subresources.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

/// Kubernetes' structural-schema rule: every node names its type, except a node that keeps
/// unknown fields or is int-or-string; `metadata` may only restrict name and generateName.
fn assert_structural(node: &Value, path: &str) {
    let flag = |key: &str| node.get(key).and_then(Value::as_bool) == Some(true);
    if !flag("x-kubernetes-preserve-unknown-fields") && !flag("x-kubernetes-int-or-string") {
        assert!(
            node.get("type").and_then(Value::as_str).is_some(),
            "{path} has no type"
        );
    }
    assert!(node.get("$ref").is_none(), "{path}: $ref is not structural");
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            assert_structural(child, &format!("{path}.{key}"));
        }
    }
    if let Some(items) = node.get("items") {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
        assert_structural(extra, &format!("{path}.*"));
    }
}

#[test]
fn the_schema_is_structural() {
    let schema = schema();
    assert_structural(&schema, "");
    let metadata = &schema["properties"]["metadata"];
    assert_eq!(metadata, &serde_json::json!({"type": "object"}));
}

/// The subset of OpenAPI v3 validation the schema uses: types, properties (an unknown key is an
/// error, as pruning would silently drop it), required, items, additionalProperties, enum,
/// minimum, maximum. Returns the first problem, naming its path.
fn validate(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        && schema.get("type").is_none()
    {
        return Ok(());
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => false,
    };
    if !ok {
        return Err(format!("{path}: expected {ty}, found {value}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(n) = value.as_f64()
        && (bound("minimum").is_some_and(|min| n < min)
            || bound("maximum").is_some_and(|max| n > max))
    {
        return Err(format!("{path}: {n} is out of range"));
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            validate(item, &schema["items"], &format!("{path}[{i}]"))?;
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = required.as_str().unwrap();
            if !object.contains_key(key) {
                return Err(format!("{path}: {key} is required"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let extra = schema.get("additionalProperties");
        for (key, child) in object {
            let child_path = format!("{path}.{key}");
            match (properties.and_then(|p| p.get(key)), extra) {
                (Some(child_schema), _) | (None, Some(child_schema)) => {
                    validate(child, child_schema, &child_path)?
                }
                (None, None) if properties.is_none() => {}
                (None, None) => return Err(format!("{child_path}: unknown field")),
            }
        }
    }
    Ok(())
}

fn as_resource(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let value: Value = lnm_policy::serde_saphyr::from_str(&text).unwrap();
    if value.get("kind").is_some() {
        value
    } else {
        serde_json::json!({
            "apiVersion": lnm_operator::API_VERSION,
            "kind": "Lnm",
            "metadata": {"name": "from-spec"},
            "spec": value,
        })
    }
}

#[test]
fn existing_lnm_resources_validate() {
    let schema = schema();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = [
        "lnm-policy/testdata/azure-level4.yaml",
        "lnm-policy/testdata/azure-level3-spec.yaml",
        "lnm-policy/testdata/level4.json",
        "examples/configs/level3.yaml",
        "deploy/examples/lnm-level4.yaml",
        "deploy/examples/lnm-level3.yaml",
        "deploy/examples/lnm-level3-ha.yaml",
    ];
    for file in files {
        let resource = as_resource(&repo.join(file));
        validate(&resource, &schema, "").unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // The validator is not vacuous.
    let mut bad = as_resource(&repo.join(files[0]));
    bad["spec"]["allowList"]["sourceIpRanges"] = serde_json::json!([]);
    assert!(
        validate(&bad, &schema, "")
            .unwrap_err()
            .contains("sourceIpRanges")
    );
    let mut bad = as_resource(&repo.join(files[0]));
    bad["spec"]["replicas"] = serde_json::json!("three");
    assert!(
        validate(&bad, &schema, "")
            .unwrap_err()
            .contains("replicas")
    );
}
