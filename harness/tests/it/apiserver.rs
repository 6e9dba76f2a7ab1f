//! The API server over HTTP, as any client sees it: discovery, the verbs, errors as
//! `Status` objects, watches, patches, deletion, subresources, tokens, concurrency.

use crate::support;

use kubeyard_compiler::admission::Admission;
use kubeyard_compiler::schema::CatalogOptions;
use kubeyard_harness::apiserver::Options;
use kubeyard_harness::store::memory::MemoryStore;
use serde_json::{Value, json};
use std::sync::Arc;
use support::api::{self, Server, call, delete, get, patch, post, put};

fn config_map(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "proxy:1"}
            ]}}
        }
    })
}

fn assert_status(reply: &api::Reply, code: u16, reason: &str) {
    assert_eq!(reply.status, code, "{}", reply.text);
    assert_eq!(reply.body["kind"], "Status", "{}", reply.text);
    assert_eq!(reply.body["code"], code, "{}", reply.text);
    assert_eq!(reply.body["reason"], reason, "{}", reply.text);
}

#[test]
fn discovery_describes_every_served_resource() {
    let server = Server::start();
    let version = get(&format!("{}/version", server.url));
    assert_eq!(version.body["major"], "1");
    assert_eq!(get(&format!("{}/api", server.url)).body["versions"], json!(["v1"]));
    let core = get(&format!("{}/api/v1", server.url)).body;
    let names: Vec<&str> = core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for name in [
        "pods",
        "pods/status",
        "pods/binding",
        "namespaces/finalize",
        "replicationcontrollers/scale",
        "events",
        "nodes",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let groups = get(&format!("{}/apis", server.url)).body;
    let groups: Vec<&str> = groups["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    for group in ["apps", "batch", "coordination.k8s.io", "discovery.k8s.io", "rbac.authorization.k8s.io"] {
        assert!(groups.contains(&group), "{group} missing from {groups:?}");
    }
    let apps = get(&format!("{}/apis/apps/v1", server.url)).body;
    let scale = apps["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
    assert_eq!((scale["group"].as_str(), scale["kind"].as_str()), (Some("autoscaling"), Some("Scale")));
    assert_eq!(get(&format!("{}/apis/apps", server.url)).body["preferredVersion"]["version"], "v1");
    // OpenAPI v3: an index of group versions, each with the kinds' schemas and operations.
    let index = get(&format!("{}/openapi/v3", server.url)).body;
    let apps_url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    let document = get(&format!("{}{apps_url}", server.url)).body;
    let patch = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
    assert_eq!(document["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["type"], "object");
    assert!(index["paths"]["api/v1"].is_object());
    for health in ["healthz", "readyz", "livez"] {
        assert_eq!(get(&format!("{}/{health}", server.url)).text, "ok");
    }
}

#[test]
fn objects_are_created_read_and_updated_with_optimistic_concurrency() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let created = post(&collection, &config_map("one", json!({"app": "a"})));
    assert_eq!(created.status, 201, "{}", created.text);
    let metadata = &created.body["metadata"];
    assert_eq!(metadata["namespace"], "default");
    assert_eq!(metadata["uid"].as_str().map(str::len), Some(36));
    assert!(metadata["creationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let first = created.rv();

    assert_status(&post(&collection, &config_map("one", json!({}))), 409, "AlreadyExists");
    let read = get(&format!("{collection}/one"));
    assert_eq!(read.body, created.body);
    assert_status(&get(&format!("{collection}/missing")), 404, "NotFound");

    let mut changed = read.body.clone();
    changed["data"]["k"] = json!("w");
    let updated = put(&format!("{collection}/one"), &changed);
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert!(updated.rv() > first);
    assert_eq!(updated.body["metadata"]["uid"], metadata["uid"]);
    // The same body again carries a stale resourceVersion.
    let stale = put(&format!("{collection}/one"), &changed);
    assert_status(&stale, 409, "Conflict");
    assert!(stale.body["message"].as_str().unwrap().contains("the object has been modified"));
    // Without one, an update is unconditional.
    changed["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    changed["data"]["k"] = json!("x");
    assert_eq!(put(&format!("{collection}/one"), &changed).status, 200);

    // generateName, and dryRun that stores nothing.
    let generated =
        post(&collection, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}));
    assert_eq!(generated.status, 201, "{}", generated.text);
    assert!(generated.body["metadata"]["name"].as_str().unwrap().starts_with("gen-"));
    let dry = post(&format!("{collection}?dryRun=All"), &config_map("dry", json!({})));
    assert_eq!(dry.status, 201, "{}", dry.text);
    assert_status(&get(&format!("{collection}/dry")), 404, "NotFound");
}

#[test]
fn admission_defaults_and_refuses_like_the_api_server() {
    let server = Server::start();
    let deployments = format!("{}/apis/apps/v1/namespaces/default/deployments", server.url);
    let created = post(&deployments, &deployment("web"));
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        created.body["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    assert_eq!(created.body["metadata"]["generation"], 1);

    let mut bad = deployment("bad");
    bad["spec"]["replicas"] = json!("two");
    let refused = post(&deployments, &bad);
    assert_status(&refused, 422, "Invalid");
    assert_eq!(refused.body["details"]["causes"][0]["field"], "spec.replicas");
    assert!(refused.body["message"].as_str().unwrap().starts_with("Deployment.apps \"bad\" is invalid: spec.replicas"));

    let mut mismatched = deployment("mismatch");
    mismatched["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let refused = post(&deployments, &mismatched);
    assert_status(&refused, 422, "Invalid");
    assert!(
        refused.text.contains("workload/selector-mismatch") || refused.text.contains("selector"),
        "{}",
        refused.text
    );

    // Namespaces must exist.
    let elsewhere = post(&format!("{}/api/v1/namespaces/nowhere/configmaps", server.url), &config_map("c", json!({})));
    assert_status(&elsewhere, 404, "NotFound");
    // The body's namespace must be the path's.
    let mut other = config_map("c", json!({}));
    other["metadata"]["namespace"] = json!("kube-system");
    assert_status(&post(&format!("{}/api/v1/namespaces/default/configmaps", server.url), &other), 400, "BadRequest");
    // The generation counts spec changes only.
    let mut spec = created.body.clone();
    spec["spec"]["replicas"] = json!(5);
    let updated = put(&format!("{deployments}/web"), &spec);
    assert_eq!(updated.body["metadata"]["generation"], 2, "{}", updated.text);
    let mut labels = updated.body.clone();
    labels["metadata"]["labels"] = json!({"x": "y"});
    assert_eq!(put(&format!("{deployments}/web"), &labels).body["metadata"]["generation"], 2);
}

#[test]
fn bad_requests_get_4xx_statuses() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let malformed = call("POST", &collection, Some("application/json"), Some("{not json"), &[]);
    assert_status(&malformed, 400, "BadRequest");
    let wrong_type = call("POST", &collection, Some("text/plain"), Some("{}"), &[]);
    assert_status(&wrong_type, 415, "UnsupportedMediaType");
    let wrong_kind = post(&collection, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}));
    assert_status(&wrong_kind, 400, "BadRequest");
    for path in [
        "/api/v1/widgets",
        "/apis/apps/v9/deployments",
        "/api/v1/namespaces/default/configmaps/a/b/c",
        "/../etc/passwd",
        "/api/v1/namespaces/default/nodes",
    ] {
        let reply = get(&format!("{}{path}", server.url));
        assert_status(&reply, 404, "NotFound");
    }
    assert_status(&call("DELETE", &format!("{}/api/v1", server.url), None, None, &[]), 405, "MethodNotAllowed");
    let huge = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}",
        "x".repeat(4 << 20)
    );
    let too_large = call("POST", &collection, Some("application/json"), Some(&huge), &[]);
    assert_status(&too_large, 413, "RequestEntityTooLarge");
    let yaml = call(
        "POST",
        &collection,
        Some("application/yaml"),
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n"),
        &[],
    );
    assert_eq!(yaml.status, 201, "{}", yaml.text);
    let protobuf = call("GET", &collection, None, None, &[("Accept", "application/vnd.kubernetes.protobuf")]);
    assert_status(&protobuf, 406, "NotAcceptable");
}

#[test]
fn lists_select_by_labels_and_fields_and_page() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    for i in 0..7 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        assert_eq!(post(&collection, &config_map(&format!("cm-{i}"), json!({"tier": tier}))).status, 201);
    }
    let names = |reply: &api::Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let list = get(&collection);
    assert_eq!(list.body["kind"], "ConfigMapList");
    assert_eq!(list.body["items"][0]["kind"], "ConfigMap");
    assert_eq!(names(&list).len(), 7);
    assert_eq!(names(&get(&format!("{collection}?labelSelector=tier%3Dodd"))), ["cm-1", "cm-3", "cm-5"]);
    assert_eq!(
        names(&get(&format!("{collection}?labelSelector=tier+in+(even),tier!%3Dodd&limit=2"))),
        ["cm-0", "cm-2"]
    );
    assert_eq!(names(&get(&format!("{collection}?fieldSelector=metadata.name%3Dcm-4"))), ["cm-4"]);
    assert_status(&get(&format!("{collection}?fieldSelector=data.k%3Dv")), 400, "BadRequest");
    assert_status(&get(&format!("{collection}?labelSelector=%3D%3D")), 400, "BadRequest");
    // All namespaces.
    assert_eq!(names(&get(&format!("{}/api/v1/configmaps", server.url))).len(), 7);

    let mut seen = Vec::new();
    let mut next = format!("{collection}?limit=3");
    let mut pages = 0;
    loop {
        let page = get(&next);
        pages += 1;
        seen.extend(names(&page));
        match page.body["metadata"]["continue"].as_str() {
            Some(token) => next = format!("{collection}?limit=3&continue={token}"),
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 7));
    assert_status(&get(&format!("{collection}?limit=3&continue=garbage")), 400, "BadRequest");
}

#[test]
fn watches_see_exactly_the_writes_after_their_revision_in_order() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let before = post(&collection, &config_map("before", json!({}))).rv();
    let url = format!("{collection}?watch=true&resourceVersion={before}&timeoutSeconds=2");
    let watcher = std::thread::spawn(move || api::watch_events(&url));
    let mut expected = Vec::new();
    for i in 0..20 {
        let created = post(&collection, &config_map(&format!("w-{i}"), json!({"i": i.to_string()})));
        expected.push(("ADDED", created.rv()));
    }
    let mut changed = get(&format!("{collection}/w-3")).body;
    changed["data"]["k"] = json!("changed");
    expected.push(("MODIFIED", put(&format!("{collection}/w-3"), &changed).rv()));
    // A deleted ConfigMap comes back as a Status; the list after it is at its revision.
    let deleted = delete(&format!("{collection}/w-4"));
    assert_eq!((deleted.body["kind"].as_str(), deleted.body["status"].as_str()), (Some("Status"), Some("Success")));
    expected.push(("DELETED", get(&collection).rv()));
    let events = watcher.join().unwrap();
    let seen: Vec<(&str, u64)> = events
        .iter()
        .map(|e| {
            (e["type"].as_str().unwrap(), e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(events[0]["object"]["kind"], "ConfigMap");

    // From no revision: the current state first, as ADDED; a selector narrows it.
    let initial = api::watch_events(&format!("{collection}?watch=1&timeoutSeconds=1&labelSelector=i%3D7"));
    assert_eq!(initial.len(), 1);
    assert_eq!(
        (initial[0]["type"].as_str(), initial[0]["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("w-7"))
    );
}

#[test]
fn a_watch_from_a_revision_the_history_lost_gets_410_in_the_stream() {
    let server = Server::with(Arc::new(MemoryStore::with_history(5)), Options::default());
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let first = post(&collection, &config_map("c-0", json!({}))).rv();
    for i in 1..10 {
        post(&collection, &config_map(&format!("c-{i}"), json!({})));
    }
    let events = api::watch_events(&format!("{collection}?watch=true&resourceVersion={first}&timeoutSeconds=1"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
}

#[test]
fn watches_send_bookmarks_and_objects_leaving_a_selection_as_deleted() {
    let options = Options { bookmark_interval: std::time::Duration::from_millis(300), ..Options::default() };
    let server = Server::with(Arc::new(MemoryStore::new()), options);
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let start = post(&collection, &config_map("m", json!({"keep": "yes"}))).rv();
    let url = format!(
        "{collection}?watch=true&resourceVersion={start}&timeoutSeconds=1&allowWatchBookmarks=true&labelSelector=keep%3Dyes"
    );
    let watcher = std::thread::spawn(move || api::watch_events(&url));
    let mut object = get(&format!("{collection}/m")).body;
    object["metadata"]["labels"] = json!({"keep": "no"});
    put(&format!("{collection}/m"), &object);
    let events = watcher.join().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"DELETED"), "{kinds:?}");
    // It leaves as it last matched, at the revision that made it leave.
    assert_eq!(events[0]["object"]["metadata"]["labels"]["keep"], "yes");
    assert!(events[0]["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() > start);
    assert!(kinds.contains(&"BOOKMARK"), "{kinds:?}");
}

#[test]
fn patches_of_every_type() {
    let server = Server::start();
    let url = format!("{}/apis/apps/v1/namespaces/default/deployments/web", server.url);
    post(&format!("{}/apis/apps/v1/namespaces/default/deployments", server.url), &deployment("web"));
    let strategic = patch(
        &url,
        "application/strategic-merge-patch+json",
        &json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
            {"name": "sidecar", "$patch": "delete"}
        ]}}}}),
    );
    assert_eq!(strategic.status, 200, "{}", strategic.text);
    let containers = &strategic.body["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 1);
    assert_eq!(containers[0]["image"], "app:2");
    assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2);
    assert_eq!(strategic.body["metadata"]["generation"], 2);

    let merged = patch(
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"a": "b"}}, "spec": {"paused": true}}),
    );
    assert_eq!(
        (merged.body["metadata"]["labels"]["a"].as_str(), merged.body["spec"]["paused"].as_bool()),
        (Some("b"), Some(true))
    );
    let json_patch =
        patch(&url, "application/json-patch+json", &json!([{"op": "replace", "path": "/spec/replicas", "value": 7}]));
    assert_eq!(json_patch.body["spec"]["replicas"], 7, "{}", json_patch.text);
    let failed_test =
        patch(&url, "application/json-patch+json", &json!([{"op": "test", "path": "/spec/replicas", "value": 1}]));
    assert_eq!(failed_test.status, 422, "{}", failed_test.text);
    let invalid = patch(&url, "application/merge-patch+json", &json!({"spec": {"replicas": -1}}));
    assert_status(&invalid, 422, "Invalid");
    let stale = patch(
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 3}}),
    );
    assert_status(&stale, 409, "Conflict");
    // An apply names its field manager; a patch type the server does not know is 415.
    assert_status(&patch(&url, "application/apply-patch+yaml", &json!({})), 422, "Invalid");
    assert_status(&patch(&url, "application/apply-patch+cbor", &json!({})), 415, "UnsupportedMediaType");
    assert_status(&patch(&format!("{url}-missing"), "application/merge-patch+json", &json!({})), 404, "NotFound");
}

/// A uid is a precondition: an update's of the whole object (a 409 from storage, before
/// validation), a patch's of an immutable field (a 422), as `pkg/registry/rest` has them.
/// A kubelet's status patch carries its pod's uid so that it never lands on a pod made
/// anew under the same name.
#[test]
fn a_uid_not_the_stored_objects_is_refused() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let created = post(&collection, &config_map("one", json!({})));
    let uid = created.body["metadata"]["uid"].as_str().unwrap().to_string();
    let url = format!("{collection}/one");

    let mut other = created.body.clone();
    other["metadata"]["uid"] = json!("0b8e5c7a-0000-4000-8000-000000000000");
    // Storage checks the uid before the resourceVersion (here both are wrong), and names
    // the key Kubernetes keeps the object under.
    other["metadata"]["resourceVersion"] = json!("1");
    let replaced = put(&url, &other);
    assert_status(&replaced, 409, "Conflict");
    assert_eq!(
        replaced.body["message"],
        format!(
            "Operation cannot be fulfilled on configmaps \"one\": StorageError: invalid object, Code: 4, \
             Key: /registry/configmaps/default/one, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: \
             UID in precondition: 0b8e5c7a-0000-4000-8000-000000000000, UID in object meta: {uid}"
        )
    );
    let patched = patch(
        &url,
        "application/merge-patch+json",
        &json!({"metadata": {"uid": "0b8e5c7a-0000-4000-8000-000000000000"}, "data": {"k": "w"}}),
    );
    assert_status(&patched, 422, "Invalid");
    assert_eq!(
        patched.body["message"],
        "ConfigMap \"one\" is invalid: metadata.uid: Invalid value: \"0b8e5c7a-0000-4000-8000-000000000000\": \
         field is immutable"
    );
    assert_eq!(patched.body["details"]["causes"][0]["field"], "metadata.uid");
    assert_eq!(get(&url).body["data"]["k"], "v", "nothing refused was stored");

    // The stored uid, or none, is taken.
    let same = patch(&url, "application/merge-patch+json", &json!({"metadata": {"uid": uid}, "data": {"k": "w"}}));
    assert_eq!(same.status, 200, "{}", same.text);
    let mut unset = same.body.clone();
    unset["metadata"]["uid"] = json!("");
    unset["data"]["k"] = json!("x");
    let updated = put(&url, &unset);
    assert_eq!(
        (updated.status, updated.body["metadata"]["uid"].as_str()),
        (200, Some(uid.as_str())),
        "{}",
        updated.text
    );

    // Through the status subresource too, as the kubelet sends it.
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                     "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}});
    let pod_uid = post(&pods, &pod).body["metadata"]["uid"].as_str().unwrap().to_string();
    let status = |uid: &str| json!({"metadata": {"uid": uid}, "status": {"phase": "Running"}});
    assert_status(
        &patch(&format!("{pods}/web/status"), "application/merge-patch+json", &status("not-this-pod")),
        422,
        "Invalid",
    );
    let taken = patch(&format!("{pods}/web/status"), "application/merge-patch+json", &status(&pod_uid));
    assert_eq!(taken.body["status"]["phase"], "Running", "{}", taken.text);

    // A Scale's uid is its workload's precondition, and the key named is Kubernetes' own.
    let deployments = format!("{}/apis/apps/v1/namespaces/default/deployments", server.url);
    post(&deployments, &deployment("app"));
    let mut scale = get(&format!("{deployments}/app/scale")).body;
    scale["metadata"]["uid"] = json!("not-this-deployment");
    scale["spec"]["replicas"] = json!(5);
    let scaled = put(&format!("{deployments}/app/scale"), &scale);
    assert_status(&scaled, 409, "Conflict");
    assert!(scaled.text.contains("Key: /registry/deployments/default/app, "), "{}", scaled.text);
    assert_eq!(get(&format!("{deployments}/app")).body["spec"]["replicas"], 2);
    let nodes = format!("{}/api/v1/nodes", server.url);
    let node = post(&nodes, &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    let mut renamed = node.body.clone();
    renamed["metadata"]["uid"] = json!("not-this-node");
    let refused = put(&format!("{nodes}/n1"), &renamed);
    assert!(refused.text.contains("Key: /registry/minions/n1, "), "{}", refused.text);

    // A delete's preconditions, in `rest.BeforeDelete`'s words (on the kind).
    let options = json!({"preconditions": {"uid": "not-this-pod"}}).to_string();
    let gone = call("DELETE", &format!("{pods}/web"), Some("application/json"), Some(&options), &[]);
    assert_status(&gone, 409, "Conflict");
    assert_eq!(
        gone.body["message"],
        format!(
            "Operation cannot be fulfilled on Pod \"web\": the UID in the precondition (not-this-pod) does not \
             match the UID in record ({pod_uid}). The object might have been deleted and then recreated"
        )
    );
}

#[test]
fn subresources_change_only_their_part() {
    let server = Server::start();
    let deployments = format!("{}/apis/apps/v1/namespaces/default/deployments", server.url);
    let created = post(&deployments, &deployment("web")).body;
    // The main resource ignores status; the status subresource ignores the rest.
    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 2, "readyReplicas": 1});
    with_status["spec"]["replicas"] = json!(3);
    let main = put(&format!("{deployments}/web"), &with_status).body;
    assert_eq!((main["spec"]["replicas"].as_i64(), main.get("status")), (Some(3), None));
    let mut status = main.clone();
    status["status"] = json!({"replicas": 2, "readyReplicas": 1});
    status["spec"]["replicas"] = json!(9);
    let updated = put(&format!("{deployments}/web/status"), &status);
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(
        (updated.body["spec"]["replicas"].as_i64(), updated.body["status"]["readyReplicas"].as_i64()),
        (Some(3), Some(1))
    );

    let scale = get(&format!("{deployments}/web/scale")).body;
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(3)));
    assert_eq!(scale["status"]["selector"], "app=web");
    let mut scaled = scale.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert_eq!(put(&format!("{deployments}/web/scale"), &scaled).body["spec"]["replicas"], 5);
    assert_status(&put(&format!("{deployments}/web/scale"), &scaled), 409, "Conflict");
    let patched =
        patch(&format!("{deployments}/web/scale"), "application/merge-patch+json", &json!({"spec": {"replicas": 1}}));
    assert_eq!(patched.body["spec"]["replicas"], 1, "{}", patched.text);
    assert_eq!(get(&format!("{deployments}/web")).body["spec"]["replicas"], 1);

    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let pod = post(
        &pods,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    );
    assert_eq!(
        (pod.body["status"]["phase"].as_str(), pod.body["status"]["qosClass"].as_str()),
        (Some("Pending"), Some("BestEffort"))
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    assert_eq!(post(&format!("{pods}/p/binding"), &binding).status, 201);
    let bound = get(&format!("{pods}/p")).body;
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
    // A binding is stored without admission (as the registry's `assignPod` stores it):
    // what it writes must already be what admission would make of it.
    let admission = Admission::new(CatalogOptions::default()).expect("schemas");
    let mut unmanaged = bound.clone();
    unmanaged["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
    let admitted = admission.admit(&unmanaged).expect("a bound pod is valid").object;
    assert_eq!(admitted, unmanaged, "a bound pod is stored as admission normalizes it");
    let refused = post(&format!("{pods}/p/binding"), &binding);
    assert_status(&refused, 409, "Conflict");
    assert_eq!(
        refused.body["message"],
        "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"node-1\""
    );

    // A pod the scheduler found no node for keeps its condition's place; the binding turns
    // it True, its reason and message gone; the binding's annotations go onto the pod.
    post(
        &pods,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    );
    let unschedulable = json!({"status": {"conditions": [
        {"type": "Example", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let patched = patch(&format!("{pods}/q/status"), "application/merge-patch+json", &unschedulable);
    assert_eq!(patched.status, 200, "{}", patched.text);
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
                         "metadata": {"name": "q", "annotations": {"example.com/placed-by": "test"}},
                         "target": {"kind": "Node", "name": "node-1"}});
    assert_eq!(post(&format!("{pods}/q/binding"), &binding).status, 201);
    let bound = get(&format!("{pods}/q")).body;
    let conditions = &bound["status"]["conditions"];
    assert_eq!(
        (conditions[0]["type"].as_str(), conditions[1]["type"].as_str()),
        (Some("Example"), Some("PodScheduled"))
    );
    assert_eq!(conditions[1]["status"], "True");
    assert!(conditions[1].get("reason").is_none() && conditions[1].get("message").is_none(), "{conditions}");
    assert_ne!(conditions[1]["lastTransitionTime"], "2026-01-01T00:00:00Z", "it changed status: a new transition time");
    assert_eq!(bound["metadata"]["annotations"]["example.com/placed-by"], "test");
    let mut unmanaged = bound.clone();
    unmanaged["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
    assert_eq!(admission.admit(&unmanaged).expect("valid").object, unmanaged, "stored as admission normalizes it");

    // A condition already True keeps its transition time.
    let pod = |name: &str, spec: Value| {
        post(&pods, &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
    };
    let containers = json!([{"name": "c", "image": "x"}]);
    pod("r", json!({"containers": containers}));
    let scheduled = json!({"status": {"conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    assert_eq!(patch(&format!("{pods}/r/status"), "application/merge-patch+json", &scheduled).status, 200);
    let binding = |name: &str, metadata: Value| {
        let mut metadata = metadata;
        metadata["name"] = json!(name);
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": metadata, "target": {"kind": "Node", "name": "node-1"}})
    };
    assert_eq!(post(&format!("{pods}/r/binding"), &binding("r", json!({}))).status, 201);
    let bound = get(&format!("{pods}/r")).body;
    assert_eq!(bound["status"]["conditions"][0]["lastTransitionTime"], "2026-01-01T00:00:00Z");

    // What the registry refuses.
    pod("gated", json!({"containers": containers, "schedulingGates": [{"name": "example.com/wait"}]}));
    let gated = post(&format!("{pods}/gated/binding"), &binding("gated", json!({})));
    assert_status(&gated, 409, "Conflict");
    assert!(gated.text.contains("pod gated has non-empty .spec.schedulingGates"), "{}", gated.text);
    pod("s", json!({"containers": containers}));
    let misnamed = post(&format!("{pods}/s/binding"), &binding("other", json!({})));
    assert_status(&misnamed, 400, "BadRequest");
    assert!(misnamed.text.contains("name in URL does not match name in Binding object"), "{}", misnamed.text);
    let stale = post(&format!("{pods}/s/binding"), &binding("s", json!({"uid": "not-its-uid"})));
    assert_status(&stale, 409, "Conflict");
    assert!(stale.text.contains("Precondition failed: UID in precondition: not-its-uid"), "{}", stale.text);
    let untyped = post(&format!("{pods}/s/binding"), &binding("s", json!({"annotations": {"a": 5}})));
    assert_status(&untyped, 400, "BadRequest");
    // A target that is not a node: the registry's field errors come back as an unknown
    // 500 (it returns them unwrapped), each as Kubernetes words it.
    let mut elsewhere = binding("s", json!({}));
    elsewhere["target"] = json!({"kind": "Pod", "name": ""});
    let refused = post(&format!("{pods}/s/binding"), &elsewhere);
    assert_eq!(refused.status, 500, "{}", refused.text);
    assert!(refused.body.get("reason").is_none(), "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        "[target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\", target.name: Required value]"
    );
    elsewhere["target"] = json!({"apiVersion": "v1"});
    let unnamed = post(&format!("{pods}/s/binding"), &elsewhere);
    assert_eq!((unnamed.status, unnamed.body["message"].as_str()), (500, Some("target.name: Required value")));
    assert!(get(&format!("{pods}/s")).body["spec"].get("nodeName").is_none(), "nothing refused was bound");
    let uid = get(&format!("{pods}/s")).body["metadata"]["uid"].clone();
    // A stale resourceVersion is storage's precondition too, in storage's words.
    let stale = post(&format!("{pods}/s/binding"), &binding("s", json!({"uid": uid, "resourceVersion": "1"})));
    assert_status(&stale, 409, "Conflict");
    assert!(
        stale.body["message"].as_str().unwrap_or_default().starts_with(
            "Operation cannot be fulfilled on pods \"s\": StorageError: invalid object, Code: 4, Key: \
             /registry/pods/default/s, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: ResourceVersion \
             in precondition: 1, ResourceVersion in object meta: "
        ),
        "{}",
        stale.text
    );
    assert_eq!(post(&format!("{pods}/s/binding"), &binding("s", json!({"uid": uid}))).status, 201);
}

#[test]
fn deletion_honours_finalizers_grace_periods_and_terminating_namespaces() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let mut guarded = config_map("guarded", json!({}));
    guarded["metadata"]["finalizers"] = json!(["example.com/hold"]);
    post(&collection, &guarded);
    let deleting = delete(&format!("{collection}/guarded"));
    assert_eq!(deleting.status, 200, "{}", deleting.text);
    assert!(deleting.body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(get(&format!("{collection}/guarded")).status, 200);
    let released = patch(
        &format!("{collection}/guarded"),
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(released.status, 200, "{}", released.text);
    assert_status(&get(&format!("{collection}/guarded")), 404, "NotFound");

    post(&collection, &config_map("fg", json!({})));
    let foreground = call(
        "DELETE",
        &format!("{collection}/fg"),
        Some("application/json"),
        Some(r#"{"propagationPolicy":"Foreground"}"#),
        &[],
    );
    assert_eq!(foreground.body["metadata"]["finalizers"], json!(["foregroundDeletion"]), "{}", foreground.text);
    let precondition = call(
        "DELETE",
        &format!("{collection}/fg"),
        Some("application/json"),
        Some(r#"{"preconditions":{"uid":"nope"}}"#),
        &[],
    );
    assert_status(&precondition, 409, "Conflict");

    // A pod on a node is given its grace period; one on no node goes at once.
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let pod = |name: &str, node: Option<&str>| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"nodeName": node, "terminationGracePeriodSeconds": 10, "containers": [{"name": "c", "image": "x"}]}})
    };
    post(&pods, &pod("running", Some("node-1")));
    post(&pods, &pod("pending", None));
    let graceful = delete(&format!("{pods}/running"));
    assert_eq!(graceful.body["metadata"]["deletionGracePeriodSeconds"], 10, "{}", graceful.text);
    assert_eq!(get(&format!("{pods}/running")).status, 200);
    assert_eq!(delete(&format!("{pods}/running?gracePeriodSeconds=0")).status, 200);
    assert_status(&get(&format!("{pods}/running")), 404, "NotFound");
    delete(&format!("{pods}/pending"));
    assert_status(&get(&format!("{pods}/pending")), 404, "NotFound");

    // A terminating namespace takes nothing new.
    let namespaces = format!("{}/api/v1/namespaces", server.url);
    assert_eq!(
        post(&namespaces, &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}})).status,
        201
    );
    let terminating = delete(&format!("{namespaces}/gone"));
    assert_eq!(terminating.body["status"]["phase"], "Terminating", "{}", terminating.text);
    let refused = post(&format!("{namespaces}/gone/configmaps"), &config_map("late", json!({})));
    assert_status(&refused, 403, "Forbidden");
    // Its finalizers change only through `finalize`; emptying them (what the namespace
    // controller does) removes it.
    let mut finalize = get(&format!("{namespaces}/gone")).body;
    finalize["spec"]["finalizers"] = json!([]);
    assert_eq!(put(&format!("{namespaces}/gone"), &finalize).body["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(put(&format!("{namespaces}/gone/finalize"), &finalize).status, 200);
    assert_status(&get(&format!("{namespaces}/gone")), 404, "NotFound");
}

#[test]
fn deletes_as_typed_clients_send_them() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    post(&collection, &config_map("kept", json!({})));
    let body = Some(r#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"]}"#);
    let dry = call("DELETE", &format!("{collection}/kept"), Some("application/json"), body, &[]);
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!(get(&format!("{collection}/kept")).status, 200, "a dry-run delete deleted");
    // Not across namespaces: that is only for list and watch.
    assert_status(&delete(&format!("{}/api/v1/configmaps", server.url)), 405, "MethodNotAllowed");
    assert_eq!(get(&format!("{collection}/kept")).status, 200);

    // A pod in its grace period stays through updates of its status; a shorter grace
    // period brings its deletion forward; grace periods beyond reason are clamped.
    let pods = format!("{}/api/v1/namespaces/default/pods", server.url);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                     "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}});
    post(&pods, &pod);
    let graceful = delete(&format!("{pods}/p?gracePeriodSeconds=9223372036854775807"));
    assert_eq!(graceful.status, 200, "{}", graceful.text);
    let mut status = graceful.body.clone();
    status["status"]["phase"] = json!("Running");
    assert_eq!(put(&format!("{pods}/p/status"), &status).status, 200);
    assert_eq!(get(&format!("{pods}/p")).body["status"]["phase"], "Running");
    let shorter = delete(&format!("{pods}/p?gracePeriodSeconds=5"));
    assert_eq!(shorter.body["metadata"]["deletionGracePeriodSeconds"], 5, "{}", shorter.text);
    assert_eq!(delete(&format!("{pods}/p?gracePeriodSeconds=0")).body["kind"], "Pod");
    assert_status(&get(&format!("{pods}/p")), 404, "NotFound");
}

#[test]
fn metadata_only_requests_get_partial_objects() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    post(&collection, &config_map("m", json!({"a": "b"})));
    let accept = [("Accept", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")];
    let list = call("GET", &collection, None, None, &accept);
    assert_eq!(list.body["kind"], "PartialObjectMetadataList", "{}", list.text);
    assert_eq!(list.body["items"][0]["metadata"]["labels"]["a"], "b");
    assert!(list.body["items"][0].get("data").is_none());
    let one = call(
        "GET",
        &format!("{collection}/m"),
        None,
        None,
        &[("Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")],
    );
    assert_eq!(one.body["kind"], "PartialObjectMetadata", "{}", one.text);
}

#[test]
fn malformed_writes_are_refused_without_harm() {
    let server = Server::start();
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    post(&collection, &config_map("c", json!({})));
    let url = format!("{collection}/c");
    let whole = patch(&url, "application/json-patch+json", &json!([{"op": "replace", "path": "", "value": "x"}]));
    assert_status(&whole, 422, "Invalid");
    let missing = patch(&url, "application/json-patch+json", &json!([{"op": "remove", "path": "/nope"}]));
    assert_status(&missing, 422, "Invalid");
    let unnamed =
        post(&collection, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": ""}}));
    assert_status(&unnamed, 422, "Invalid");
    let deployments = format!("{}/apis/apps/v1/namespaces/default/deployments", server.url);
    post(&deployments, &deployment("web"));
    let keyless = patch(
        &format!("{deployments}/web"),
        "application/strategic-merge-patch+json",
        &json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
    );
    assert_status(&keyless, 422, "Invalid");
    assert_eq!(get(&url).status, 200);
}

#[test]
fn a_token_is_required_when_set() {
    let options = Options { token: Some("s3cret".into()), ..Options::default() };
    let server = Server::with(Arc::new(MemoryStore::new()), options);
    let url = format!("{}/api/v1/namespaces", server.url);
    assert_status(&get(&url), 401, "Unauthorized");
    assert_status(&call("GET", &url, None, None, &[("Authorization", "Bearer wrong")]), 401, "Unauthorized");
    assert_eq!(call("GET", &url, None, None, &[("Authorization", "Bearer s3cret")]).status, 200);
    assert_eq!(get(&format!("{}/healthz", server.url)).status, 200);
}

#[test]
fn concurrent_writers_retrying_on_conflict_lose_no_update() {
    let server = Server::start();
    let url = format!("{}/api/v1/namespaces/default/configmaps/counter", server.url);
    let mut counter = config_map("counter", json!({}));
    counter["data"] = json!({"n": "0"});
    post(&format!("{}/api/v1/namespaces/default/configmaps", server.url), &counter);
    let (clients, each) = (16, 20);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut conflicts = 0;
                for _ in 0..each {
                    loop {
                        let mut current = get(&url).body;
                        let n: u64 = current["data"]["n"].as_str().unwrap().parse().unwrap();
                        current["data"]["n"] = json!((n + 1).to_string());
                        let reply = put(&url, &current);
                        match reply.status {
                            200 => break,
                            409 => conflicts += 1,
                            other => panic!("unexpected {other}: {}", reply.text),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(get(&url).body["data"]["n"], (clients * each).to_string());
    // The test means something only if writers did collide.
    assert!(conflicts > 0, "no conflicts: the writers never raced");
}

#[test]
fn a_generated_name_taken_meanwhile_is_drawn_again() {
    // A seeded server draws the same names as a generator of the same seed: take the
    // first nine it will try (its check before the write skips eight taken ones), so
    // that its write meets a taken name and must draw again, as Kubernetes 1.32 does.
    let names = kubeyard_harness::apiserver::names::Names::seeded(11);
    let options =
        Options { names: Arc::new(kubeyard_harness::apiserver::names::Names::seeded(11)), ..Options::default() };
    let server = Server::with(Arc::new(MemoryStore::new()), options);
    let collection = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let taken: Vec<String> = (0..9).map(|_| format!("gen-{}", names.suffix("default", "gen-"))).collect();
    let next = format!("gen-{}", names.suffix("default", "gen-"));
    // Created by name, these leave the server's own sequence where it was.
    for name in &taken {
        assert_eq!(post(&collection, &config_map(name, json!({}))).status, 201);
    }
    let generated =
        post(&collection, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}));
    assert_eq!(generated.status, 201, "{}", generated.text);
    assert_eq!(generated.body["metadata"]["name"], json!(next));
    assert_eq!(get(&format!("{collection}/{next}")).status, 200);
}
