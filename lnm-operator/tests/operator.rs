//! The operator's reconcile step against a mocked API server (tower-test's `mock::pair` behind
//! `kube::Client::new`, as kube-rs's own mock tests do): the server-side-apply requests for a
//! new `Lnm`, the status patch (`ok` / `warn`), a change of `replicas`, a bad spec (a `warn`
//! status and nothing applied), the load-balancer address filling the client-config, and
//! deletion left to owner references.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use lnm_operator::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use lnm_operator::reconcile::{Context, reconcile};
use lnm_operator::{Lnm, RenderOptions};
use serde_json::{Value, json};

/// One request the operator made.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Call {
    fn is_apply(&self) -> bool {
        self.method == "PATCH"
            && self.content_type == "application/apply-patch+yaml"
            && self.query.contains("fieldManager=lnm-operator")
            && self.query.contains("force=true")
    }
}

/// How the fake API server answers.
#[derive(Clone, Default)]
struct Server {
    /// The load-balancer address the Service reports.
    load_balancer: Option<&'static str>,
}

impl Server {
    fn answer(&self, call: &Call) -> Response<Body> {
        match call.method.as_str() {
            "PATCH" => {
                let mut object = call.body.clone();
                if call.path.contains("/services/")
                    && let Some(ip) = self.load_balancer
                {
                    object["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
                }
                if call.path.contains("/deployments/") {
                    object["status"] = json!({"replicas": object["spec"]["replicas"]});
                }
                if call.path.ends_with("/status") {
                    object["metadata"] =
                        json!({"name": "level4", "namespace": "plant", "uid": "u-1"});
                }
                Response::new(Body::from(serde_json::to_vec(&object).unwrap()))
            }
            "DELETE" => Response::builder()
                .status(404)
                .body(Body::from(
                    serde_json::to_vec(&json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "not found", "reason": "NotFound", "code": 404
                    }))
                    .unwrap(),
                ))
                .unwrap(),
            other => panic!("unexpected {other} {}", call.path),
        }
    }
}

/// Runs one reconcile of `lnm` against the fake server; returns what the operator asked.
async fn reconcile_once(lnm: Lnm, server: Server) -> Vec<Call> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let fake = tokio::spawn(async move {
        let mut calls = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or("").to_owned(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default(),
                body: if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                },
            };
            send.send_response(server.answer(&call));
            calls.push(call);
        }
        calls
    });
    let client = kube::Client::new(service, "default");
    let context = Arc::new(Context::new(client, RenderOptions::default()));
    reconcile(Arc::new(lnm), context)
        .await
        .expect("reconcile succeeds");
    tokio::time::timeout(Duration::from_secs(5), fake)
        .await
        .expect("the client is dropped")
        .unwrap()
}

fn lnm(spec: Value) -> Lnm {
    Lnm {
        metadata: ObjectMeta {
            name: Some("level4".into()),
            namespace: Some("plant".into()),
            uid: Some("u-1".into()),
            generation: Some(7),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn level4_spec() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/lnm-level4.yaml"
    );
    let cr: Value =
        lnm_policy::serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cr["spec"].clone()
}

fn applied<'a>(calls: &'a [Call], resource: &str) -> Option<&'a Call> {
    calls
        .iter()
        .find(|c| c.is_apply() && c.path.contains(&format!("/{resource}/")))
}

fn status_of(calls: &[Call]) -> &Value {
    let call = calls.last().expect("a status patch comes last");
    assert!(call.is_apply(), "{call:?}");
    assert_eq!(
        call.path,
        "/apis/layerednetworkmgmt.iotoperations.azure.com/v1beta1/namespaces/plant/lnmz/level4/status"
    );
    &call.body["status"]
}

#[tokio::test]
async fn a_new_lnm_is_applied_server_side_and_owned() {
    let calls = reconcile_once(lnm(level4_spec()), Server::default()).await;
    let paths: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("PATCH", "/api/v1/namespaces/plant/services/aio-lnm-level4"),
            (
                "PATCH",
                "/api/v1/namespaces/plant/configmaps/aio-lnm-level4-config"
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/plant/deployments/aio-lnm-level4"
            ),
            (
                "DELETE",
                "/apis/policy/v1/namespaces/plant/poddisruptionbudgets/aio-lnm-level4"
            ),
            (
                "PATCH",
                "/apis/layerednetworkmgmt.iotoperations.azure.com/v1beta1/namespaces/plant/lnmz/level4/status"
            ),
        ],
        "Service first (its address feeds the client-config), no PDB for one replica, status last"
    );
    for call in calls
        .iter()
        .filter(|c| c.method == "PATCH" && !c.path.ends_with("/status"))
    {
        assert!(
            call.is_apply(),
            "server-side apply, forced, by lnm-operator: {call:?}"
        );
        let owners = &call.body["metadata"]["ownerReferences"];
        assert_eq!(
            owners,
            &json!([{
                "apiVersion": "layerednetworkmgmt.iotoperations.azure.com/v1beta1",
                "kind": "Lnm", "name": "level4", "uid": "u-1",
                "controller": true, "blockOwnerDeletion": true
            }]),
            "{}: deleting the Lnm deletes it",
            call.path
        );
        assert_eq!(call.body["metadata"]["namespace"], "plant");
    }
    let deployment = applied(&calls, "deployments").unwrap();
    assert_eq!(deployment.body["spec"]["replicas"], 1);
    assert_eq!(deployment.body["kind"], "Deployment");
    let service = applied(&calls, "services").unwrap();
    assert!(
        service.body["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["port"] != 9100)
    );
    let status = status_of(&calls);
    assert_eq!(status["configStatusLevel"], "ok", "{status}");
    assert_eq!(status["observedGeneration"], 7);
    assert_eq!(status["replicas"], 1);
    assert_eq!(status["selector"], "app=aio-lnm-level4");
    let description = status["configStatusDescription"].as_str().unwrap();
    assert!(
        description.contains("Envoy image"),
        "the ignored image is mentioned: {description}"
    );
    assert!(
        description.contains("waiting for the Service's load-balancer address"),
        "{description}"
    );
}

#[tokio::test]
async fn the_load_balancer_address_fills_the_client_config() {
    let server = Server {
        load_balancer: Some("10.104.0.10"),
    };
    let calls = reconcile_once(lnm(level4_spec()), server).await;
    let client = applied(&calls, "configmaps")
        .filter(|c| c.path.ends_with("-client-config"))
        .or_else(|| {
            calls
                .iter()
                .find(|c| c.path.ends_with("/configmaps/aio-lnm-level4-client-config"))
        });
    let client = client.expect("the client-config is applied once the address exists");
    assert!(client.is_apply());
    let corefile = client.body["data"]["lnm.override"].as_str().unwrap();
    assert!(corefile.contains("IN A 10.104.0.10"), "{corefile}");
    let status = status_of(&calls);
    assert_eq!(status["configStatusLevel"], "ok");
    assert!(
        status["configStatusDescription"]
            .as_str()
            .unwrap()
            .contains("10.104.0.10")
    );
}

#[tokio::test]
async fn a_replicas_change_is_followed() {
    let mut spec = level4_spec();
    spec["replicas"] = json!(3);
    let calls = reconcile_once(lnm(spec), Server::default()).await;
    let deployment = applied(&calls, "deployments").unwrap();
    assert_eq!(deployment.body["spec"]["replicas"], 3);
    let pdb = applied(&calls, "poddisruptionbudgets").expect("a PDB for 3 replicas");
    assert_eq!(pdb.body["spec"]["maxUnavailable"], 1);
    assert!(!calls.iter().any(|c| c.method == "DELETE"));
    assert_eq!(status_of(&calls)["replicas"], 3);
    // And back to one: the budget goes.
    let calls = reconcile_once(lnm(level4_spec()), Server::default()).await;
    assert_eq!(
        applied(&calls, "deployments").unwrap().body["spec"]["replicas"],
        1
    );
    assert!(
        calls
            .iter()
            .any(|c| c.method == "DELETE" && c.path.contains("poddisruptionbudgets"))
    );
}

#[tokio::test]
async fn a_bad_spec_warns_and_applies_nothing() {
    let mut spec = level4_spec();
    spec["allowList"]["sourceIpRanges"] = json!([]);
    let calls = reconcile_once(lnm(spec), Server::default()).await;
    assert_eq!(calls.len(), 1, "only the status: {calls:?}");
    let status = status_of(&calls);
    assert_eq!(status["configStatusLevel"], "warn");
    let description = status["configStatusDescription"].as_str().unwrap();
    assert!(
        description.contains("sourceIpRanges") && description.contains("Lnm plant/level4"),
        "{description}"
    );

    let mut spec = level4_spec();
    spec["replicas"] = json!(-2);
    let calls = reconcile_once(lnm(spec), Server::default()).await;
    assert_eq!(calls.len(), 1);
    assert!(
        status_of(&calls)["configStatusDescription"]
            .as_str()
            .unwrap()
            .contains("replicas")
    );
}

#[tokio::test]
async fn a_risky_spec_is_applied_with_a_warn_status() {
    let mut spec = level4_spec();
    spec["level"] = json!(3); // a level 3 without parentIpAddr goes straight to the internet
    let calls = reconcile_once(lnm(spec), Server::default()).await;
    assert!(applied(&calls, "deployments").is_some());
    let status = status_of(&calls);
    assert_eq!(status["configStatusLevel"], "warn");
    assert!(
        status["configStatusDescription"]
            .as_str()
            .unwrap()
            .contains("parentIpAddr")
    );
}

#[tokio::test]
async fn a_deleted_lnm_is_left_to_the_garbage_collector() {
    let mut deleted = lnm(level4_spec());
    deleted.metadata.deletion_timestamp = Some(Time(Default::default()));
    let calls = reconcile_once(deleted, Server::default()).await;
    assert!(
        calls.is_empty(),
        "owner references delete the objects: {calls:?}"
    );
}

/// The operator's ClusterRole (`deploy/kubernetes/operator.yaml`) grants every request the
/// reconcile step makes.
#[test]
fn rbac_covers_what_the_operator_does() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/operator.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = lnm_policy::serde_saphyr::from_multiple(&text).unwrap();
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let allows = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|rule| {
            let has =
                |key: &str, want: &str| rule[key].as_array().unwrap().iter().any(|v| v == want);
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    let group = lnm_operator::GROUP;
    for verb in ["get", "list", "watch"] {
        assert!(allows(group, "lnmz", verb), "lnmz {verb}");
    }
    assert!(allows(group, "lnmz/status", "patch"));
    assert!(
        allows(group, "lnmz/finalizers", "update"),
        "blockOwnerDeletion needs it"
    );
    for (api_group, resource) in [
        ("", "configmaps"),
        ("", "services"),
        ("apps", "deployments"),
    ] {
        for verb in ["get", "list", "watch", "create", "patch"] {
            assert!(allows(api_group, resource, verb), "{resource} {verb}");
        }
    }
    for verb in ["create", "patch", "delete"] {
        assert!(
            allows("policy", "poddisruptionbudgets", verb),
            "poddisruptionbudgets {verb}"
        );
    }
    assert!(allows(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "patch"
    ));
}
