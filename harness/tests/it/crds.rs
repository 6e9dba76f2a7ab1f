//! CustomResourceDefinitions over HTTP, as any client sees them: a CRD created is
//! Established and its kind served at once (discovery, OpenAPI, objects validated
//! against its schema, tables); names another CRD holds are refused in its status; a
//! CRD deleted takes its objects and its kind with it.

use crate::support;

use serde_json::{Value, json};
use support::api::{Server, delete, get, post, put};

fn fixture(name: &str) -> Value {
    support::yaml_documents(&format!("fixtures/crds/widgets/{name}")).remove(0)
}

fn crd_url(server: &Server) -> String {
    format!("{}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", server.url)
}

fn widgets_url(server: &Server) -> String {
    format!("{}/apis/example.com/v1/namespaces/default/widgets", server.url)
}

fn condition<'a>(crd: &'a Value, kind: &str) -> &'a Value {
    crd["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind)).unwrap_or(&Value::Null)
}

#[test]
fn a_crd_is_established_and_its_kind_served_at_once() {
    let server = Server::start();
    assert_eq!(get(&widgets_url(&server)).status, 404, "not served before its CRD");
    let created = post(&crd_url(&server), &fixture("crd.yaml"));
    assert_eq!(created.status, 201, "{}", created.text);
    // Defaults, as Kubernetes fills them.
    assert_eq!(created.body["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(created.body["spec"]["conversion"]["strategy"], "None");
    assert_eq!(created.body["status"]["storedVersions"], json!(["v1"]));

    let crd = get(&format!("{}/widgets.example.com", crd_url(&server))).body;
    let accepted = condition(&crd, "NamesAccepted");
    assert_eq!((accepted["status"].as_str(), accepted["reason"].as_str()), (Some("True"), Some("NoConflicts")));
    let established = condition(&crd, "Established");
    assert_eq!(
        (established["status"].as_str(), established["reason"].as_str()),
        (Some("True"), Some("InitialNamesAccepted"))
    );
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["acceptedNames"]["shortNames"], json!(["wd"]));

    // Discovery: the group, its version and the kind's resource with Kubernetes' verbs.
    let groups = get(&format!("{}/apis", server.url)).body;
    let group = groups["groups"].as_array().unwrap().iter().find(|g| g["name"] == "example.com").cloned();
    assert_eq!(group.expect("example.com in /apis")["preferredVersion"]["groupVersion"], "example.com/v1");
    let list = get(&format!("{}/apis/example.com/v1", server.url)).body;
    let widgets = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "widgets").cloned().unwrap();
    assert_eq!(widgets["kind"], "Widget");
    assert_eq!(widgets["namespaced"], true);
    assert_eq!(widgets["shortNames"], json!(["wd"]));
    assert_eq!(
        widgets["verbs"],
        json!(["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"])
    );
    let names: Vec<&str> = list["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.contains(&"widgets/status"), "{names:?}");
    // Aggregated discovery, which kubectl 1.32 reads first: the kind in one document.
    let aggregated = support::api::call(
        "GET",
        &format!("{}/apis", server.url),
        None,
        None,
        &[("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")],
    );
    assert_eq!(aggregated.body["kind"], "APIGroupDiscoveryList", "{}", aggregated.text);
    let group = aggregated.body["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "example.com");
    let resource = &group.expect("example.com in aggregated discovery")["versions"][0]["resources"][0];
    assert_eq!(resource["resource"], "widgets");
    assert_eq!(resource["responseKind"], json!({"group": "example.com", "version": "v1", "kind": "Widget"}));
    assert_eq!((resource["scope"].as_str(), resource["shortNames"].clone()), (Some("Namespaced"), json!(["wd"])));
    assert_eq!(resource["subresources"][0]["subresource"], "status");
    // OpenAPI, for kubectl explain.
    let index = get(&format!("{}/openapi/v3", server.url)).body;
    let url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"].as_str().expect("a document").to_string();
    let document = get(&format!("{}{url}", server.url)).body;
    let schema = &document["components"]["schemas"]["com.example.v1.Widget"];
    assert_eq!(schema["properties"]["spec"]["properties"]["size"]["type"], "integer");

    // Objects: validated against the CRD's schema, stored, listed, shown as a table.
    let widget = post(&widgets_url(&server), &fixture("widget.yaml"));
    assert_eq!(widget.status, 201, "{}", widget.text);
    assert_eq!(widget.body["metadata"]["generation"], 1);
    let refused = post(&widgets_url(&server), &fixture("bad-widget.yaml"));
    assert_eq!(refused.status, 422, "{}", refused.text);
    let message = refused.body["message"].as_str().unwrap_or_default();
    // Kubernetes' own words (kube-openapi's validators, apimachinery's field errors).
    assert_eq!(
        message,
        "Widget.example.com \"broken\" is invalid: [spec.color: Unsupported value: \"purple\": supported values: \
         \"red\", \"green\", \"blue\", spec.size: Invalid value: 0: spec.size in body should be greater than or \
         equal to 1]"
    );
    let reasons: Vec<&str> = refused.body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["FieldValueNotSupported", "FieldValueInvalid"], "{}", refused.text);
    let listed = get(&widgets_url(&server)).body;
    assert_eq!(listed["kind"], "WidgetList");
    assert_eq!(listed["items"][0]["metadata"]["name"], "gear");
    let table = support::api::call(
        "GET",
        &widgets_url(&server),
        None,
        None,
        &[("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
    );
    let columns: Vec<&str> =
        table.body["columnDefinitions"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(columns, ["Name", "Size", "Color", "Ready", "Age"], "{}", table.text);
    let cells = &table.body["rows"][0]["cells"];
    assert_eq!((&cells[0], &cells[1], &cells[2], &cells[3]), (&json!("gear"), &json!(3), &json!("red"), &Value::Null));
    assert_eq!(table.body["columnDefinitions"][3]["priority"], 1);

    // The status subresource: the main resource leaves status alone, and generation
    // counts the spec only.
    let mut changed = get(&format!("{}/gear", widgets_url(&server))).body;
    changed["status"] = json!({"ready": true});
    let written = put(&format!("{}/gear", widgets_url(&server)), &changed);
    assert_eq!(written.status, 200, "{}", written.text);
    assert_eq!(written.body.get("status"), None, "{}", written.text);
    assert_eq!(written.body["metadata"]["generation"], 1);
    let status = put(&format!("{}/gear/status", widgets_url(&server)), &changed);
    assert_eq!(status.body["status"]["ready"], true, "{}", status.text);
    assert_eq!(status.body["metadata"]["generation"], 1);

    // The scale subresource reads and writes the CRD's own paths; replicas the object
    // does not have yet read as 0.
    let sub = |name: &str| format!("{}/gear/{name}", widgets_url(&server));
    let scale = get(&sub("scale"));
    assert_eq!(scale.status, 200, "{}", scale.text);
    assert_eq!((&scale.body["kind"], &scale.body["apiVersion"]), (&json!("Scale"), &json!("autoscaling/v1")));
    assert_eq!((&scale.body["spec"]["replicas"], &scale.body["status"]["replicas"]), (&json!(0), &json!(0)));
    let mut observed = status.body.clone();
    observed["status"] = json!({"ready": true, "replicas": 2, "selector": "app=gear"});
    assert_eq!(put(&sub("status"), &observed).status, 200);
    let mut wanted = get(&sub("scale")).body;
    assert_eq!((&wanted["status"]["replicas"], &wanted["status"]["selector"]), (&json!(2), &json!("app=gear")));
    wanted["spec"]["replicas"] = json!(5);
    let scaled = put(&sub("scale"), &wanted);
    assert_eq!(scaled.status, 200, "{}", scaled.text);
    assert_eq!(scaled.body["spec"]["replicas"], 5);
    let widget = get(&format!("{}/gear", widgets_url(&server))).body;
    assert_eq!((&widget["spec"]["replicas"], &widget["metadata"]["generation"]), (&json!(5), &json!(2)));
    // The CRD's schema still holds for what the scale writes.
    wanted = scaled.body.clone();
    wanted["spec"]["replicas"] = json!(-1);
    let negative = put(&sub("scale"), &wanted);
    assert_eq!(negative.status, 422, "{}", negative.text);
    let resources = get(&format!("{}/apis/example.com/v1", server.url)).body;
    let scale_row = resources["resources"].as_array().unwrap().iter().find(|r| r["name"] == "widgets/scale").cloned();
    let scale_row = scale_row.expect("widgets/scale in discovery");
    assert_eq!((&scale_row["kind"], &scale_row["group"]), (&json!("Scale"), &json!("autoscaling")));
}

#[test]
fn a_crd_refused_or_in_conflict_says_why() {
    let server = Server::start();
    let mut wrong = fixture("crd.yaml");
    wrong["metadata"]["name"] = json!("gadgets.example.com");
    let refused = post(&crd_url(&server), &wrong);
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        "CustomResourceDefinition.apiextensions.k8s.io \"gadgets.example.com\" is invalid: metadata.name: Invalid \
         value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"
    );

    // A rule that could cost too much keeps the CRD out, as Kubernetes' estimate does.
    let costly = support::yaml_documents("fixtures/rules/api/invalid-crd/bad.yaml").remove(0);
    let refused = post(&crd_url(&server), &costly);
    assert_eq!(refused.status, 422, "{}", refused.text);
    let causes: Vec<String> = refused.body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}: {}", c["field"].as_str().unwrap_or_default(), c["message"].as_str().unwrap_or_default()))
        .collect();
    assert!(
        causes.contains(
            &"spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[hosts].x-kubernetes-validations[0].rule: \
              Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule, or \
              adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
                .to_string()
        ),
        "{causes:#?}"
    );

    assert_eq!(post(&crd_url(&server), &fixture("crd.yaml")).status, 201);
    // Another CRD of the group wanting the same short name is stored, but not served.
    let mut rival = fixture("crd.yaml");
    rival["metadata"]["name"] = json!("doodads.example.com");
    rival["spec"]["names"] = json!({"plural": "doodads", "singular": "doodad", "kind": "Doodad", "shortNames": ["wd"]});
    assert_eq!(post(&crd_url(&server), &rival).status, 201);
    let rival = get(&format!("{}/doodads.example.com", crd_url(&server))).body;
    let accepted = condition(&rival, "NamesAccepted");
    assert_eq!(accepted["status"], "False", "{rival}");
    assert_eq!(accepted["reason"], "ShortNamesConflict", "{rival}");
    assert_eq!(condition(&rival, "Established")["reason"], "NotAccepted", "{rival}");
    assert_eq!(get(&format!("{}/apis/example.com/v1/namespaces/default/doodads", server.url)).status, 404);

    // The holder deleted, the rival is accepted.
    let deleted = delete(&format!("{}/widgets.example.com", crd_url(&server)));
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    support::api::wait_for("the rival accepted", || {
        let rival = get(&format!("{}/doodads.example.com", crd_url(&server))).body;
        condition(&rival, "NamesAccepted")["status"] == "True"
    });
    assert_eq!(get(&format!("{}/apis/example.com/v1/namespaces/default/doodads", server.url)).status, 200);
}

#[test]
fn a_deleted_crd_takes_its_objects_and_its_kind_with_it() {
    let server = Server::start();
    assert_eq!(post(&crd_url(&server), &fixture("crd.yaml")).status, 201);
    assert_eq!(post(&widgets_url(&server), &fixture("widget.yaml")).status, 201);
    let deleted = delete(&format!("{}/widgets.example.com", crd_url(&server)));
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    support::api::wait_for("the CRD gone", || get(&format!("{}/widgets.example.com", crd_url(&server))).status == 404);
    assert_eq!(get(&widgets_url(&server)).status, 404, "its kind is no longer served");
    let groups = get(&format!("{}/apis", server.url)).body;
    assert!(!groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "example.com"), "{groups}");
    // Created again, it starts empty: its objects went with it.
    assert_eq!(post(&crd_url(&server), &fixture("crd.yaml")).status, 201);
    assert_eq!(get(&widgets_url(&server)).body["items"], json!([]));
}

/// Fields a CRD's schema does not declare are dropped as Kubernetes decodes a custom
/// resource: with a warning by default, refused with kubectl's `fieldValidation=Strict`,
/// silently with `Ignore`; `default:`s fill what is missing.
#[test]
fn unknown_fields_are_pruned_or_refused_and_defaults_filled() {
    let server = Server::start();
    let mut crd = fixture("crd.yaml");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["color"]["default"] =
        json!("green");
    assert_eq!(post(&crd_url(&server), &crd).status, 201);
    let widget = json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "cog"},
        "spec": {"size": 2, "shape": "round"}, "extra": 1
    });
    let warned = post(&widgets_url(&server), &widget);
    assert_eq!(warned.status, 201, "{}", warned.text);
    assert_eq!(warned.warnings, [r#"299 - "unknown field \"extra\"""#, r#"299 - "unknown field \"spec.shape\"""#]);
    assert_eq!(warned.body["spec"], json!({"size": 2, "color": "green"}));
    assert_eq!(warned.body.get("extra"), None);

    let strict = post(
        &format!("{}?fieldValidation=Strict", widgets_url(&server)),
        &json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "cam"}, "spec": {"size": 1, "shape": "x"}
        }),
    );
    assert_eq!(strict.status, 400, "{}", strict.text);
    assert_eq!(
        strict.body["message"],
        "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.shape\""
    );
    let ignored = post(
        &format!("{}?fieldValidation=Ignore", widgets_url(&server)),
        &json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "cam"}, "spec": {"size": 1, "shape": "x"}
        }),
    );
    assert_eq!((ignored.status, ignored.warnings.len()), (201, 0), "{}", ignored.text);
    assert_eq!(ignored.body["spec"], json!({"size": 1, "color": "green"}));
}

/// CEL validation rules (`x-kubernetes-validations`): the API server and `kubeyard lint`
/// refuse the same objects with the same messages, the ones the fixture's comments give;
/// a transition rule (`oldSelf`) runs on updates only.
#[test]
fn cel_rules_refuse_alike_in_admission_and_in_lint() {
    use kubeyard_compiler::{LintOptions, Linter, SourceFile, Verdict};
    let server = Server::start();
    let dir = support::workspace().join("fixtures/crds/cel");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("the fixture exists");
    let documents = |name: &str| support::yaml_documents(&format!("fixtures/crds/cel/{name}"));
    let crd = documents("crd.yaml").remove(0);
    let created = post(&crd_url(&server), &crd);
    assert_eq!(created.status, 201, "{}", created.text);
    let url = format!("{}/apis/example.com/v1/namespaces/default/autoscalers", server.url);

    let mut linter = Linter::new(LintOptions::default()).expect("a linter");
    assert_eq!(linter.register_crds(&SourceFile::new("crd.yaml", read("crd.yaml")).unwrap()).len(), 1);
    let lint = |name: &str| linter.lint(&SourceFile::new(name, read(name)).unwrap());

    assert_eq!(lint("valid.yaml")[0].verdict, Verdict::Valid, "{:?}", lint("valid.yaml")[0].diagnostics);
    let valid = documents("valid.yaml").remove(0);
    let accepted = post(&url, &valid);
    assert_eq!(accepted.status, 201, "{}", accepted.text);

    // The message each object gets is the comment line above it.
    let expected: Vec<String> = read("invalid.yaml")
        .split("\n---\n")
        .map(|chunk| {
            let line = chunk.lines().rfind(|l| l.starts_with("# spec")).expect("a message comment");
            line.trim_start_matches("# ").to_string()
        })
        .collect();
    let reports = lint("invalid.yaml");
    for (index, object) in documents("invalid.yaml").into_iter().enumerate() {
        let refused = post(&url, &object);
        assert_eq!(refused.status, 422, "{}", refused.text);
        let causes: Vec<String> = refused.body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!("{}: {}", c["field"].as_str().unwrap_or_default(), c["message"].as_str().unwrap_or_default())
            })
            .collect();
        let linted: Vec<String> = reports[index].diagnostics.iter().map(|d| d.message.clone()).collect();
        assert_eq!(causes, [expected[index].clone()], "{}", refused.text);
        assert_eq!(linted, causes, "lint and the API server disagree on document {index}");
        assert!(reports[index].diagnostics.iter().all(|d| d.code.as_str() == "schema/validation-rule"));
    }

    // A transition rule compares with the object an update replaces.
    let mut lowered = accepted.body.clone();
    lowered["spec"]["maxReplicas"] = json!(4);
    let refused = put(&format!("{url}/web"), &lowered);
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(
        refused.body["message"],
        "Autoscaler.example.com \"web\" is invalid: spec: Invalid value: \"object\": maxReplicas may not go down from 5"
    );
    lowered["spec"]["maxReplicas"] = json!(6);
    assert_eq!(put(&format!("{url}/web"), &lowered).status, 200);

    // A rule that does not compile keeps the CRD out.
    let mut broken = crd.clone();
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"][0]["rule"] =
        json!("self.minReplicas <=");
    broken["metadata"]["name"] = json!("autoscalers.example.com");
    let refused = put(&format!("{}/autoscalers.example.com", crd_url(&server)), &{
        let mut current = get(&format!("{}/autoscalers.example.com", crd_url(&server))).body;
        current["spec"] = broken["spec"].clone();
        current
    });
    assert_eq!(refused.status, 422, "{}", refused.text);
    let field = refused.body["details"]["causes"][0]["field"].as_str().unwrap_or_default().to_string();
    assert_eq!(field, "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule");
}

#[test]
fn the_gateway_api_runs_on_its_crds() {
    use kubeyard_compiler::{LintOptions, Linter, SourceFile, Verdict};
    let server = Server::start();
    let dir = support::workspace().join("fixtures/crds/gateway-api");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("the fixture exists");
    let documents = |name: &str| support::yaml_documents(&format!("fixtures/crds/gateway-api/{name}"));
    for crd in documents("crds.yaml") {
        let created = post(&crd_url(&server), &crd);
        assert_eq!(created.status, 201, "{}", created.text);
    }
    let url = |object: &Value| {
        let kind = object["kind"].as_str().unwrap_or_default();
        let plural = format!("{}{}", kind.to_lowercase(), if kind.ends_with('s') { "es" } else { "s" });
        match object["metadata"]["namespace"].as_str() {
            Some(namespace) => {
                format!("{}/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/{plural}", server.url)
            }
            None => format!("{}/apis/gateway.networking.k8s.io/v1/{plural}", server.url),
        }
    };
    let mut linter = Linter::new(LintOptions::default()).expect("a linter");
    assert_eq!(linter.register_crds(&SourceFile::new("crds.yaml", read("crds.yaml")).unwrap()).len(), 3);
    let lint = |name: &str| linter.lint(&SourceFile::new(name, read(name)).unwrap());
    for report in lint("gateway.yaml") {
        assert_eq!(report.verdict, Verdict::Valid, "{:?}", report.diagnostics);
    }
    let mut made = Vec::new();
    for object in documents("gateway.yaml") {
        let created = post(&url(&object), &object);
        assert_eq!(created.status, 201, "{}", created.text);
        made.push(created.body);
    }
    // The schemas' defaults, filled as the API server fills them.
    let listener = &made[1]["spec"]["listeners"][1];
    assert_eq!(listener["tls"]["mode"], "Terminate");
    assert_eq!(listener["tls"]["certificateRefs"][0], json!({"group": "", "kind": "Secret", "name": "shop-tls"}));
    assert_eq!(listener["allowedRoutes"], json!({"namespaces": {"from": "Same"}}));
    let route = &made[2]["spec"];
    assert_eq!(
        route["parentRefs"][0],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "shop"})
    );
    assert_eq!(route["rules"][0]["backendRefs"][0]["weight"], 1);
    assert_eq!(route["rules"][1]["matches"], json!([{"path": {"type": "PathPrefix", "value": "/"}}]));

    // Upstream's CEL rules refuse, in the API server and in lint alike.
    let expected: Vec<String> = read("invalid.yaml")
        .split("\n---\n")
        .map(|chunk| {
            chunk.lines().find(|l| l.starts_with("# spec")).expect("a message").trim_start_matches("# ").to_string()
        })
        .collect();
    let reports = lint("invalid.yaml");
    for (index, object) in documents("invalid.yaml").into_iter().enumerate() {
        let refused = post(&url(&object), &object);
        assert_eq!(refused.status, 422, "{}", refused.text);
        let causes: Vec<String> = refused.body["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!("{}: {}", c["field"].as_str().unwrap_or_default(), c["message"].as_str().unwrap_or_default())
            })
            .collect();
        assert_eq!(causes, [expected[index].clone()], "{}", refused.text);
        let linted: Vec<String> = reports[index].diagnostics.iter().map(|d| d.message.clone()).collect();
        assert_eq!(linted, causes, "lint and the API server disagree on document {index}");
    }
    // The controller name is immutable (a transition rule).
    let mut class = made[0].clone();
    class["spec"]["controllerName"] = json!("example.com/other");
    let refused = put(&format!("{}/example", url(&class)), &class);
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.body["details"]["causes"][0]["message"], "Invalid value: \"string\": Value is immutable");
}
