//! ValidatingAdmissionPolicies over HTTP: a binding that says `Deny` refuses what its
//! policy's CEL finds wrong, in Kubernetes' words and with the code of the validation's
//! reason; one that says `Warn` lets it in with a `Warning` header; parameters come from
//! the object the binding names; requests the policy does not match pass untouched.

use crate::support;

use serde_json::{Value, json};
use support::api::{Server, delete, get, post, put};

fn policy() -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "max-replicas"},
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["deployments"]
            }]},
            "variables": [{"name": "most", "expression": "int(params.data.most)"}],
            "validations": [{
                "expression": "object.spec.replicas <= variables.most",
                "messageExpression": "'replicas ' + string(object.spec.replicas) + ' exceeds ' + string(variables.most)"
            }, {
                "expression": "'team' in object.metadata.labels",
                "reason": "Forbidden"
            }]
        }
    })
}

fn binding(actions: &[&str]) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "max-replicas-binding"},
        "spec": {
            "policyName": "max-replicas",
            "validationActions": actions,
            "paramRef": {"name": "limits", "namespace": "default", "parameterNotFoundAction": "Deny"},
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}}}
        }
    })
}

fn deployment(name: &str, replicas: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    })
}

#[test]
fn policies_deny_or_warn_as_their_bindings_say() {
    let server = Server::start();
    let api = |path: &str| format!("{}{path}", server.url);
    let policies = api("/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies");
    let bindings = api("/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings");
    let deployments = api("/apis/apps/v1/namespaces/default/deployments");
    assert_eq!(post(&policies, &policy()).status, 201);
    assert_eq!(post(&bindings, &binding(&["Deny"])).status, 201);

    // The parameter object is missing and the binding says Deny.
    let refused = post(&deployments, &deployment("early", 1, json!({"team": "a"})));
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{}",
        refused.text
    );

    let limits =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "limits"}, "data": {"most": "5"}});
    assert_eq!(post(&api("/api/v1/namespaces/default/configmaps"), &limits).status, 201);
    let refused = post(&deployments, &deployment("big", 10, json!({"team": "a"})));
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        "deployments.apps \"big\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding \
         'max-replicas-binding' denied request: replicas 10 exceeds 5"
    );
    assert_eq!(refused.body["reason"], "Invalid");
    let forbidden = post(&deployments, &deployment("anonymous", 1, json!({"app": "x"})));
    assert_eq!(forbidden.status, 403, "{}", forbidden.text);
    assert_eq!(forbidden.body["reason"], "Forbidden");
    assert!(
        forbidden.body["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("denied request: failed expression: 'team' in object.metadata.labels"),
        "{}",
        forbidden.text
    );
    let small = post(&deployments, &deployment("small", 2, json!({"team": "a"})));
    assert_eq!(small.status, 201, "{}", small.text);
    // Updates are checked too.
    let mut bigger = small.body.clone();
    bigger["spec"]["replicas"] = json!(6);
    assert_eq!(put(&format!("{deployments}/small"), &bigger).status, 422);
    // What the policy does not match passes.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}});
    assert_eq!(post(&api("/api/v1/namespaces/default/configmaps"), &other).status, 201);

    // Warn: let in, with Kubernetes' warning.
    let mut warning = get(&format!("{bindings}/max-replicas-binding")).body;
    warning["spec"]["validationActions"] = json!(["Warn"]);
    assert_eq!(put(&format!("{bindings}/max-replicas-binding"), &warning).status, 200);
    let warned = post(&deployments, &deployment("warned", 9, json!({"team": "a"})));
    assert_eq!(warned.status, 201, "{}", warned.text);
    assert_eq!(
        warned.warnings,
        [
            r#"299 - "Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding': replicas 9 exceeds 5""#
        ]
    );

    // No binding, no policy in force.
    assert_eq!(delete(&format!("{bindings}/max-replicas-binding")).status, 200);
    let free = post(&deployments, &deployment("free", 50, json!({})));
    assert_eq!(free.status, 201, "{}", free.text);
    assert!(free.warnings.is_empty(), "{:?}", free.warnings);
}

#[test]
fn a_policy_on_deletes_sees_the_old_object_and_refuses() {
    let server = Server::start();
    let admission = format!("{}/apis/admissionregistration.k8s.io/v1", server.url);
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "keep-protected"},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["DELETE"], "resources": ["configmaps"]
            }]},
            "validations": [{
                "expression": "object == null && !(has(oldObject.metadata.labels) && 'protected' in oldObject.metadata.labels)",
                "message": "protected ConfigMaps stay",
                "reason": "Forbidden"
            }]
        }
    });
    assert_eq!(post(&format!("{admission}/validatingadmissionpolicies"), &policy).status, 201);
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "keep-protected"},
        "spec": {"policyName": "keep-protected", "validationActions": ["Deny"]}
    });
    assert_eq!(post(&format!("{admission}/validatingadmissionpolicybindings"), &binding).status, 201);
    let configmaps = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let kept = json!({"metadata": {"name": "kept", "labels": {"protected": "yes"}}});
    assert_eq!(post(&configmaps, &kept).status, 201, "creates are not the policy's business");
    assert_eq!(post(&configmaps, &json!({"metadata": {"name": "free"}})).status, 201);
    let refused = delete(&format!("{configmaps}/kept"));
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        "configmaps \"kept\" is forbidden: ValidatingAdmissionPolicy 'keep-protected' with binding 'keep-protected' \
         denied request: protected ConfigMaps stay"
    );
    assert_eq!(get(&format!("{configmaps}/kept")).status, 200);
    assert_eq!(delete(&format!("{configmaps}/free")).status, 200);
}

#[test]
fn a_binding_is_judged_as_the_binding_the_client_posted() {
    let server = Server::start();
    let admission = format!("{}/apis/admissionregistration.k8s.io/v1", server.url);
    // Bindings are CREATEs of pods/binding whose object is the Binding; the pod's own
    // write is the registry's, so a policy on pod UPDATEs is not asked.
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "no-node-x"},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["pods", "pods/binding"]
            }]},
            "validations": [{
                "expression": "request.operation == 'CREATE' && (request.subResource == '' || \
                               (request.kind.kind == 'Binding' && object.kind == 'Binding' && \
                                object.target.name != 'node-x'))",
                "messageExpression": "request.operation + ' ' + request.kind.kind + ' ' + request.subResource",
                "reason": "Forbidden"
            }]
        }
    });
    assert_eq!(post(&format!("{admission}/validatingadmissionpolicies"), &policy).status, 201);
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "no-node-x"},
        "spec": {"policyName": "no-node-x", "validationActions": ["Deny"]}
    });
    assert_eq!(post(&format!("{admission}/validatingadmissionpolicybindings"), &binding).status, 201);
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    assert_eq!(post(&pods, &pod).status, 201);
    let bind = |node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"kind": "Node", "name": node}});
    let refused = post(&format!("{pods}/web/binding"), &bind("node-x"));
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        "pods \"web\" is forbidden: ValidatingAdmissionPolicy 'no-node-x' with binding 'no-node-x' \
         denied request: CREATE Binding binding"
    );
    assert!(get(&format!("{pods}/web")).body["spec"]["nodeName"].is_null());
    let bound = post(&format!("{pods}/web/binding"), &bind("node-a"));
    assert_eq!(bound.status, 201, "the pod's write is not the policy's UPDATE: {}", bound.text);
    assert_eq!(get(&format!("{pods}/web")).body["spec"]["nodeName"], "node-a");
}
