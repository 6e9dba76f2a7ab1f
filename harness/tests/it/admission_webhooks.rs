//! Admission webhooks as a cluster's operator installs them: the API server sends each
//! matching request to the webhook (here one in the test process, over HTTPS with its own
//! CA, by `url` or through a Service's endpoints), applies a mutating webhook's JSON
//! patch, refuses what a validating webhook denies in Kubernetes' words, and follows
//! `failurePolicy` when a webhook cannot be reached.

use crate::support;

use base64::Engine;
use serde_json::{Value, json};
use support::api::{Server, call, delete, get, post, put};
use support::webhook::Webhook;

fn configurations(server: &Server, kind: &str) -> String {
    format!("{}/apis/admissionregistration.k8s.io/v1/{kind}", server.url)
}

fn configmaps(server: &Server) -> String {
    format!("{}/api/v1/namespaces/default/configmaps", server.url)
}

fn webhook(name: &str, client_config: Value, extra: Value) -> Value {
    let mut webhook = json!({
        "name": name,
        "clientConfig": client_config,
        "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(map), Some(extra)) = (webhook.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    webhook
}

fn configuration(kind: &str, name: &str, webhooks: Vec<Value>) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "webhooks": webhooks})
}

fn review_response(review: &Value, response: Value) -> Value {
    let mut response = response;
    response["uid"] = review["request"]["uid"].clone();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// Labels every object `mutated: "yes"`.
fn label_it(review: &Value) -> Value {
    let has_labels = review["request"]["object"]["metadata"]["labels"].is_object();
    let patch = if has_labels {
        json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
    };
    let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    review_response(review, json!({"allowed": true, "patchType": "JSONPatch", "patch": patch}))
}

/// Refuses objects whose data holds `forbidden`, warns about `risky`.
fn guard(review: &Value) -> Value {
    let object = &review["request"]["object"];
    if object["data"].get("forbidden").is_some() {
        return review_response(
            review,
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "forbidden data"}}),
        );
    }
    let warnings = if object["data"].get("risky").is_some() { json!(["risky data"]) } else { json!([]) };
    review_response(review, json!({"allowed": true, "warnings": warnings}))
}

#[test]
fn mutating_and_validating_webhooks_take_part_in_admission() {
    let server = Server::start();
    let mutator = Webhook::start(label_it);
    let guard = Webhook::start(guard);
    let made = post(
        &configurations(&server, "mutatingwebhookconfigurations"),
        &configuration(
            "MutatingWebhookConfiguration",
            "labels",
            vec![webhook("label.example.com", mutator.client_config("/mutate"), json!({}))],
        ),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    // Kubernetes' defaults.
    let hook = &made.body["webhooks"][0];
    assert_eq!(
        (
            &hook["failurePolicy"],
            &hook["timeoutSeconds"],
            &hook["matchPolicy"],
            &hook["reinvocationPolicy"],
            &hook["rules"][0]["scope"]
        ),
        (&json!("Fail"), &json!(10), &json!("Equivalent"), &json!("Never"), &json!("*"))
    );
    let made = post(
        &configurations(&server, "validatingwebhookconfigurations"),
        &configuration(
            "ValidatingWebhookConfiguration",
            "guard",
            vec![webhook("guard.example.com", guard.client_config("/validate"), json!({}))],
        ),
    );
    assert_eq!(made.status, 201, "{}", made.text);

    // A configuration Kubernetes would refuse is refused, each field in its words.
    let bad =
        webhook("guard", json!({"url": "http://127.0.0.1/x"}), json!({"sideEffects": "Some", "timeoutSeconds": 60}));
    let refused = post(
        &configurations(&server, "validatingwebhookconfigurations"),
        &configuration("ValidatingWebhookConfiguration", "bad", vec![bad]),
    );
    assert_eq!(refused.status, 422, "{}", refused.text);
    let fields: Vec<&str> =
        refused.body["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    // In the order of the body (serde_json writes keys sorted).
    assert_eq!(
        fields,
        ["webhooks[0].clientConfig.url", "webhooks[0].name", "webhooks[0].sideEffects", "webhooks[0].timeoutSeconds"]
    );
    assert_eq!(
        refused.body["details"]["causes"][2]["message"],
        r#"Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#
    );

    // Created: the mutating webhook's patch applied, the validating webhook asked after it.
    let created = post(&configmaps(&server), &json!({"metadata": {"name": "plain"}, "data": {"a": "1"}}));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["metadata"]["labels"]["mutated"], "yes");
    let (path, review) = mutator.calls()[0].clone();
    assert_eq!(path, "/mutate?timeout=10s");
    let request = &review["request"];
    assert_eq!(
        (review["apiVersion"].as_str(), review["kind"].as_str()),
        (Some("admission.k8s.io/v1"), Some("AdmissionReview"))
    );
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["kind"], json!({"group": "", "version": "v1", "kind": "ConfigMap"}));
    assert_eq!(request["resource"], json!({"group": "", "version": "v1", "resource": "configmaps"}));
    assert_eq!((request["name"].as_str(), request["namespace"].as_str()), (Some("plain"), Some("default")));
    assert_eq!(request["options"]["kind"], "CreateOptions");
    assert!(request["oldObject"].is_null());
    let (_, validated) = guard.calls()[0].clone();
    assert_eq!(validated["request"]["object"]["metadata"]["labels"]["mutated"], "yes", "validation sees the mutation");

    // Denied: the webhook's code and message, in Kubernetes' words.
    let denied = post(&configmaps(&server), &json!({"metadata": {"name": "bad"}, "data": {"forbidden": "x"}}));
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert_eq!(denied.body["reason"], "Forbidden");
    assert_eq!(denied.body["message"], r#"admission webhook "guard.example.com" denied the request: forbidden data"#);
    assert_eq!(get(&format!("{}/bad", configmaps(&server))).status, 404);
    // Warnings reach the client.
    let warned = post(&configmaps(&server), &json!({"metadata": {"name": "risky"}, "data": {"risky": "x"}}));
    assert_eq!(warned.status, 201, "{}", warned.text);
    assert_eq!(warned.warnings, vec![r#"299 - "risky data""#.to_string()]);
    // Updates carry the old object; deletes too, with no object.
    let mut changed = created.body.clone();
    changed["data"]["forbidden"] = json!("now");
    let refused = put(&format!("{}/plain", configmaps(&server)), &changed);
    assert_eq!(refused.status, 403, "{}", refused.text);
    let (_, update) = guard.calls().last().cloned().unwrap();
    assert_eq!(update["request"]["operation"], "UPDATE");
    assert_eq!(update["request"]["oldObject"]["data"], json!({"a": "1"}));
    assert_eq!(delete(&format!("{}/plain", configmaps(&server))).status, 200);
    let (_, deletion) = guard.calls().last().cloned().unwrap();
    assert_eq!(
        (deletion["request"]["operation"].as_str(), deletion["request"]["object"].is_null()),
        (Some("DELETE"), true)
    );
    assert_eq!(deletion["request"]["options"]["kind"], "DeleteOptions");
    // Other kinds are not sent.
    let calls = guard.calls().len();
    let secret = json!({"metadata": {"name": "s"}, "stringData": {"forbidden": "x"}});
    assert_eq!(post(&format!("{}/api/v1/namespaces/default/secrets", server.url), &secret).status, 201);
    assert_eq!(guard.calls().len(), calls);
}

#[test]
fn failure_policy_selectors_and_services_decide_when_a_webhook_is_asked() {
    let server = Server::start();
    // Unreachable, failing closed: the request is refused with Go's error text.
    let down = json!({"url": "https://127.0.0.1:1/check", "caBundle": Webhook::start(guard).ca_bundle});
    let made = post(
        &configurations(&server, "validatingwebhookconfigurations"),
        &configuration(
            "ValidatingWebhookConfiguration",
            "down",
            vec![webhook("down.example.com", down.clone(), json!({}))],
        ),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    let refused = post(&configmaps(&server), &json!({"metadata": {"name": "a"}}));
    assert_eq!(refused.status, 500, "{}", refused.text);
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            r#"Internal error occurred: failed calling webhook "down.example.com": failed to call webhook: Post "https://127.0.0.1:1/check?timeout=10s": dial tcp 127.0.0.1:1"#
        ),
        "{message}"
    );
    // Failing open: the request goes on.
    let mut open = get(&format!("{}/down", configurations(&server, "validatingwebhookconfigurations"))).body;
    open["webhooks"][0]["failurePolicy"] = json!("Ignore");
    assert_eq!(put(&format!("{}/down", configurations(&server, "validatingwebhookconfigurations")), &open).status, 200);
    assert_eq!(post(&configmaps(&server), &json!({"metadata": {"name": "a"}})).status, 201);
    assert_eq!(delete(&format!("{}/down", configurations(&server, "validatingwebhookconfigurations"))).status, 200);

    // A webhook behind a Service (its endpoints here point at the test's listener), asked
    // only in namespaces labelled `guarded` and for objects not labelled `skip`.
    let guard = Webhook::serving(&["guard.default.svc"], guard);
    let service = json!({"metadata": {"name": "guard"}, "spec": {"ports": [{"name": "https", "port": 443, "targetPort": guard.port()}]}});
    assert_eq!(post(&format!("{}/api/v1/namespaces/default/services", server.url), &service).status, 201);
    let endpoints = json!({"metadata": {"name": "guard"}, "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": guard.port()}]}]});
    let made = post(&format!("{}/api/v1/namespaces/default/endpoints", server.url), &endpoints);
    assert_eq!(made.status, 201, "{}", made.text);
    let by_service =
        json!({"service": {"namespace": "default", "name": "guard", "path": "/validate"}, "caBundle": guard.ca_bundle});
    let selective = webhook(
        "guard.example.com",
        by_service,
        json!({
            "namespaceSelector": {"matchLabels": {"guarded": "true"}},
            "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
            "matchConditions": [{"name": "not-named-free", "expression": "object == null || object.metadata.name != 'free'"}],
        }),
    );
    let made = post(
        &configurations(&server, "validatingwebhookconfigurations"),
        &configuration("ValidatingWebhookConfiguration", "guard", vec![selective]),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    let forbidden =
        |name: &str, labels: Value| json!({"metadata": {"name": name, "labels": labels}, "data": {"forbidden": "x"}});
    // `default` is not labelled: not asked.
    assert_eq!(post(&configmaps(&server), &forbidden("b", json!({}))).status, 201);
    assert!(guard.calls().is_empty());
    let namespace = json!({"metadata": {"name": "guarded", "labels": {"guarded": "true"}}});
    assert_eq!(post(&format!("{}/api/v1/namespaces", server.url), &namespace).status, 201);
    let guarded = format!("{}/api/v1/namespaces/guarded/configmaps", server.url);
    let denied = post(&guarded, &forbidden("c", json!({})));
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert_eq!(guard.calls()[0].0, "/validate?timeout=10s");
    assert_eq!(
        post(&guarded, &forbidden("d", json!({"skip": "yes"}))).status,
        201,
        "the object selector leaves it out"
    );
    assert_eq!(post(&guarded, &forbidden("free", json!({}))).status, 201, "the match condition leaves it out");
    assert_eq!(guard.calls().len(), 1);
    // A dry run reaches webhooks without side effects.
    let dry = call(
        "POST",
        &format!("{guarded}?dryRun=All"),
        Some("application/json"),
        Some(&forbidden("e", json!({})).to_string()),
        &[],
    );
    assert_eq!(dry.status, 403, "{}", dry.text);
    assert_eq!(guard.calls()[1].1["request"]["dryRun"], true);
}

/// Adds `{key: value}` to the object's labels.
fn add_label(review: &Value, key: &str, value: &str) -> Value {
    let labels = &review["request"]["object"]["metadata"]["labels"];
    let patch = if labels.is_object() {
        json!([{"op": "add", "path": format!("/metadata/labels/{key}"), "value": value}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {key: value}}])
    };
    let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    review_response(review, json!({"allowed": true, "patchType": "JSONPatch", "patch": patch}))
}

#[test]
fn each_mutating_webhook_sees_what_the_ones_before_it_did() {
    let server = Server::start();
    let first = Webhook::start(|review| add_label(review, "stage", "first"));
    let second = Webhook::start(|review| add_label(review, "second", "yes"));
    // The second takes only objects the first has labelled; configurations run by name.
    let hooks = vec![
        webhook("first.example.com", first.client_config("/"), json!({"reinvocationPolicy": "IfNeeded"})),
        webhook(
            "second.example.com",
            second.client_config("/"),
            json!({"objectSelector": {"matchLabels": {"stage": "first"}}}),
        ),
    ];
    let made = post(
        &configurations(&server, "mutatingwebhookconfigurations"),
        &configuration("MutatingWebhookConfiguration", "labels", hooks),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    // What kubeyard does not honour is said.
    assert_eq!(
        made.warnings,
        [
            r#"299 - "webhook \"first.example.com\": kubeyard asks each mutating webhook once; reinvocationPolicy IfNeeded is not honoured""#
        ]
    );
    let created = post(&configmaps(&server), &json!({"metadata": {"name": "a"}, "data": {"x": "1"}}));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["metadata"]["labels"], json!({"stage": "first", "second": "yes"}));
    assert_eq!(second.calls().len(), 1);
    // An update asks them again, the second seeing the first's label.
    let mut changed = created.body.clone();
    changed["data"]["x"] = json!("2");
    let updated = put(&format!("{}/a", configmaps(&server)), &changed);
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(second.calls()[1].1["request"]["operation"], "UPDATE");
}

/// Sends bindings to node-a to node-b instead.
fn bind_elsewhere(review: &Value) -> Value {
    if review["request"]["object"]["target"]["name"] != "node-a" {
        return review_response(review, json!({"allowed": true}));
    }
    let patch = json!([{"op": "replace", "path": "/target/name", "value": "node-b"}]);
    let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    review_response(review, json!({"allowed": true, "patchType": "JSONPatch", "patch": patch}))
}

/// Refuses bindings to node-x and evictions that ask for a grace period of 13 s.
fn guard_pods(review: &Value) -> Value {
    let object = &review["request"]["object"];
    let refused = object["target"]["name"] == "node-x" || object["deleteOptions"]["gracePeriodSeconds"] == 13;
    if refused {
        return review_response(review, json!({"allowed": false, "status": {"code": 403, "message": "not there"}}));
    }
    review_response(review, json!({"allowed": true}))
}

#[test]
fn bindings_and_evictions_are_admitted_as_what_the_client_posted() {
    let server = Server::start();
    let mutator = Webhook::start(bind_elsewhere);
    let guard = Webhook::start(guard_pods);
    let pod_rules = |resources: Value| json!({"rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": resources}]});
    let hook = webhook("bind.example.com", mutator.client_config("/"), pod_rules(json!(["pods/binding"])));
    let made = post(
        &configurations(&server, "mutatingwebhookconfigurations"),
        &configuration("MutatingWebhookConfiguration", "bind", vec![hook]),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    // Every write to pods and their subresources.
    let hook = webhook("pods.example.com", guard.client_config("/"), pod_rules(json!(["pods", "pods/*"])));
    let made = post(
        &configurations(&server, "validatingwebhookconfigurations"),
        &configuration("ValidatingWebhookConfiguration", "pods", vec![hook]),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let pod =
        |name: &str| json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    for name in ["web", "db"] {
        assert_eq!(post(&pods, &pod(name)).status, 201);
    }
    let binding = |pod: &str, node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"kind": "Node", "name": node}});

    // The mutating webhook is sent the Binding, a CREATE of pods/binding, and what it
    // changes is what the registry binds.
    let bound = post(&format!("{pods}/web/binding"), &binding("web", "node-a"));
    assert_eq!(bound.status, 201, "{}", bound.text);
    assert_eq!(get(&format!("{pods}/web")).body["spec"]["nodeName"], "node-b");
    let (_, review) = mutator.calls()[0].clone();
    let request = &review["request"];
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["kind"], json!({"group": "", "version": "v1", "kind": "Binding"}));
    assert_eq!(request["resource"], json!({"group": "", "version": "v1", "resource": "pods"}));
    assert_eq!(request["subResource"], "binding");
    assert_eq!((request["name"].as_str(), request["namespace"].as_str()), (Some("web"), Some("default")));
    assert_eq!(request["object"]["kind"], "Binding");
    assert_eq!(request["object"]["metadata"]["namespace"], "default", "the path's namespace, filled in");
    assert!(request["oldObject"].is_null());
    // The validating webhook saw the pods' creates and the Binding as mutated; the pod's
    // write that the binding made is the registry's own, which no webhook is sent.
    let seen: Vec<(String, String, String)> = guard
        .calls()
        .iter()
        .map(|(_, review)| {
            let request = &review["request"];
            let field = |value: &Value| value.as_str().unwrap_or_default().to_string();
            (field(&request["operation"]), field(&request["kind"]["kind"]), field(&request["subResource"]))
        })
        .collect();
    let expected = |list: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        list.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
    };
    assert_eq!(seen, expected(&[("CREATE", "Pod", ""), ("CREATE", "Pod", ""), ("CREATE", "Binding", "binding")]));
    assert_eq!(guard.calls()[2].1["request"]["object"]["target"]["name"], "node-b");

    // A validating webhook's refusal of a Binding leaves the pod unbound.
    let refused = post(&format!("{pods}/db/binding"), &binding("db", "node-x"));
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.body["message"], r#"admission webhook "pods.example.com" denied the request: not there"#);
    assert!(get(&format!("{pods}/db")).body["spec"]["nodeName"].is_null());

    // The legacy `POST namespaces/{ns}/bindings` is its own resource, `bindings`, with no
    // subresource: webhooks on pods are not sent it, one on `bindings` is.
    let legacy = Webhook::start(|review| review_response(review, json!({"allowed": true})));
    let hook = webhook("bindings.example.com", legacy.client_config("/"), pod_rules(json!(["bindings"])));
    let made = post(
        &configurations(&server, "validatingwebhookconfigurations"),
        &configuration("ValidatingWebhookConfiguration", "bindings", vec![hook]),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    let (mutated, guarded) = (mutator.calls().len(), guard.calls().len());
    let bound = post(&format!("{}/api/v1/namespaces/default/bindings", server.url), &binding("db", "node-a"));
    assert_eq!(bound.status, 201, "{}", bound.text);
    assert_eq!(get(&format!("{pods}/db")).body["spec"]["nodeName"], "node-a", "no webhook on pods/binding changed it");
    assert_eq!((mutator.calls().len(), guard.calls().len()), (mutated, guarded));
    assert_eq!(legacy.calls().len(), 1);
    let request = &legacy.calls()[0].1["request"];
    assert_eq!(request["resource"], json!({"group": "", "version": "v1", "resource": "bindings"}));
    assert!(request["subResource"].is_null(), "{request}");
    assert_eq!(request["kind"], json!({"group": "", "version": "v1", "kind": "Binding"}));
    assert_eq!((request["operation"].as_str(), request["name"].as_str()), (Some("CREATE"), Some("db")));

    // An eviction is sent as the Eviction it is, a CREATE of pods/eviction; the
    // condition and the delete that follow are not sent.
    let eviction = |pod: &str, grace: i64| {
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod},
               "deleteOptions": {"gracePeriodSeconds": grace}})
    };
    let calls = guard.calls().len();
    let refused = post(&format!("{pods}/web/eviction"), &eviction("web", 13));
    assert_eq!(refused.status, 403, "{}", refused.text);
    let kept = get(&format!("{pods}/web")).body;
    assert!(kept["metadata"]["deletionTimestamp"].is_null(), "a refused eviction touches nothing");
    assert!(kept["status"]["conditions"].as_array().into_iter().flatten().all(|c| c["type"] != "DisruptionTarget"));
    let evicted = post(&format!("{pods}/web/eviction"), &eviction("web", 5));
    assert_eq!(evicted.status, 201, "{}", evicted.text);
    let going = get(&format!("{pods}/web")).body;
    assert!(going["metadata"]["deletionTimestamp"].is_string(), "bound, so deleted gracefully: {going}");
    let sent: Vec<Value> = guard.calls()[calls..].iter().map(|(_, review)| review["request"].clone()).collect();
    assert_eq!(sent.len(), 2, "the two evictions only: {sent:?}");
    for request in &sent {
        assert_eq!(
            (request["operation"].as_str(), request["subResource"].as_str()),
            (Some("CREATE"), Some("eviction"))
        );
        assert_eq!(request["kind"], json!({"group": "policy", "version": "v1", "kind": "Eviction"}));
        assert_eq!(request["object"]["kind"], "Eviction");
    }
    // A v1beta1 Eviction is admitted as the subresource's kind, policy/v1; a dry run the
    // body's deleteOptions ask for is the delete's, not admission's.
    let calls = guard.calls().len();
    let old_style = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "db"},
                           "deleteOptions": {"dryRun": ["All"]}});
    let tried = post(&format!("{pods}/db/eviction"), &old_style);
    assert_eq!(tried.status, 201, "{}", tried.text);
    assert_eq!(get(&format!("{pods}/db")).status, 200, "a dry run deletes nothing");
    let request = guard.calls()[calls].1["request"].clone();
    assert_eq!(request["kind"], json!({"group": "policy", "version": "v1", "kind": "Eviction"}));
    assert_eq!(request["object"]["apiVersion"], "policy/v1");
    assert_eq!(request["dryRun"], false);
}

/// Caps a Scale's replicas at 3.
fn cap_scale(review: &Value) -> Value {
    if review["request"]["object"]["spec"]["replicas"].as_i64().is_none_or(|r| r <= 3) {
        return review_response(review, json!({"allowed": true}));
    }
    let patch = json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]);
    let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    review_response(review, json!({"allowed": true, "patchType": "JSONPatch", "patch": patch}))
}

#[test]
fn a_write_through_scale_is_admitted_as_a_scale() {
    let server = Server::start();
    let mutator = Webhook::start(cap_scale);
    let watcher = Webhook::start(|review| review_response(review, json!({"allowed": true})));
    let scale_rules = json!({"rules": [{"operations": ["UPDATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
                                        "resources": ["deployments/scale"]}]});
    for (kind, hook) in [
        ("MutatingWebhookConfiguration", webhook("cap.example.com", mutator.client_config("/"), scale_rules.clone())),
        ("ValidatingWebhookConfiguration", webhook("see.example.com", watcher.client_config("/"), scale_rules.clone())),
    ] {
        let plural = format!("{}s", kind.to_lowercase());
        let made = post(&configurations(&server, &plural), &configuration(kind, "scale", vec![hook]));
        assert_eq!(made.status, 201, "{}", made.text);
    }
    let deployments = format!("{}/apis/apps/v1/namespaces/default/deployments", server.url);
    let deployment = json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    });
    assert_eq!(post(&deployments, &deployment).status, 201);
    let scale = get(&format!("{deployments}/web/scale")).body;
    let mut wanted = scale.clone();
    wanted["spec"]["replicas"] = json!(7);
    let scaled = put(&format!("{deployments}/web/scale"), &wanted);
    assert_eq!(scaled.status, 200, "{}", scaled.text);
    // The mutating webhook capped the Scale, and the Deployment took what it left.
    assert_eq!(scaled.body["spec"]["replicas"], 3);
    assert_eq!(get(&format!("{deployments}/web")).body["spec"]["replicas"], 3);
    for (hook, replicas) in [(&mutator, 7), (&watcher, 3)] {
        let calls = hook.calls();
        assert_eq!(calls.len(), 1, "the Deployment's create is not theirs");
        let request = &calls[0].1["request"];
        assert_eq!(request["kind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
        assert_eq!(request["resource"], json!({"group": "apps", "version": "v1", "resource": "deployments"}));
        assert_eq!((request["operation"].as_str(), request["subResource"].as_str()), (Some("UPDATE"), Some("scale")));
        assert_eq!(request["object"]["kind"], "Scale");
        assert_eq!(request["object"]["spec"]["replicas"], replicas);
        assert_eq!(request["oldObject"]["kind"], "Scale");
        assert_eq!(request["oldObject"]["spec"]["replicas"], 1);
        assert_eq!(request["oldObject"]["status"]["selector"], "app=web");
    }
}
