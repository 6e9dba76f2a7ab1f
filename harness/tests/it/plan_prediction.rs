//! The plan's promise, as a property: for any Deployment applied with kubectl, changed by
//! someone else, and applied again changed, what `kubeyard plan` predicts the object will
//! be is what the API server stores once `kubectl apply` has sent its patch. kubectl
//! computes the patch (its three-way strategic merge), kubeyard's API server applies it
//! (`compiler::patch`); the plan predicts it (`compiler::plan::merge`): both read lists
//! through `compiler::list_merge`, and this checks them against kubectl itself.
//! And the server-side one: applied with `kubectl apply --server-side`, changed by someone
//! else, applied again changed, what `kubeyard plan --server-side` predicts from the
//! object's managedFields (refused or not, the object and its ownership) is what the
//! server answers and stores.

use crate::support;

use kubeyard_harness::cli::inputs::Inputs;
use kubeyard_harness::cli::plan::{Connection, Target, plan_with};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::api::Server;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<(), String> {
    let output = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("kubectl runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

fn env() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::btree_map("[ABC]", "[xy]", 0..3)
        .prop_map(|vars| vars.into_iter().map(|(name, value)| json!({"name": name, "value": value})).collect())
}

fn container(name: &'static str) -> impl Strategy<Value = Value> {
    (
        "[12]",
        env(),
        prop::collection::btree_set(prop_oneof![Just(80), Just(8080), Just(9090)], 0..3),
        prop::collection::vec("[pq]", 0..3),
    )
        .prop_map(move |(version, env, ports, args)| {
            let mut container = json!({"name": name, "image": format!("registry.example/{name}:{version}")});
            if !env.is_empty() {
                container["env"] = json!(env);
            }
            if !ports.is_empty() {
                container["ports"] = json!(ports.iter().map(|p| json!({"containerPort": p})).collect::<Vec<_>>());
            }
            if !args.is_empty() {
                container["args"] = json!(args);
            }
            container
        })
}

/// A Deployment's configuration, as a user writes it.
fn configuration() -> impl Strategy<Value = (Value, Vec<Value>, Value)> {
    (
        prop::collection::btree_map("[lm]", "[uv]", 0..3),
        prop::collection::btree_map("[no]", "[uv]", 0..2),
        container("app"),
        prop::option::of(container("side")),
        prop::collection::btree_set(prop_oneof![Just("a.example/x"), Just("b.example/y")], 0..3),
    )
        .prop_map(|(labels, annotations, app, side, finalizers)| {
            let containers: Vec<Value> = std::iter::once(app).chain(side).collect();
            (json!(labels), containers, json!({"annotations": annotations, "finalizers": finalizers}))
        })
}

fn deployment(name: &str, (labels, containers, extra): &(Value, Vec<Value>, Value)) -> Value {
    let mut metadata = json!({"name": name, "namespace": "default", "labels": labels});
    if extra["annotations"].as_object().is_some_and(|a| !a.is_empty()) {
        metadata["annotations"] = extra["annotations"].clone();
    }
    if extra["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
        metadata["finalizers"] = extra["finalizers"].clone();
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}
        }
    })
}

/// What someone else changes between the two applies (a controller, `kubectl edit`).
fn drift() -> impl Strategy<Value = Option<(&'static str, Value)>> {
    prop::option::of(prop_oneof![
        Just(("merge", json!({"metadata": {"labels": {"team": "ops"}}}))),
        Just(("merge", json!({"metadata": {"annotations": {"n": "edited"}}}))),
        Just(("merge", json!({"spec": {"replicas": 3}}))),
        Just((
            "strategic",
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "INJECTED", "value": "1"}]}]}}}})
        )),
        Just(("strategic", json!({"metadata": {"finalizers": ["c.example/z"]}}))),
    ])
}

/// What the comparison leaves out: what every write changes.
fn comparable(mut object: Value) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["resourceVersion", "generation", "managedFields"] {
            metadata.remove(field);
        }
        if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

fn predicted_equals_stored(
    server: &Server,
    dir: &Path,
    first: &(Value, Vec<Value>, Value),
    other: Option<(&'static str, Value)>,
    second: &(Value, Vec<Value>, Value),
) -> Result<(), TestCaseError> {
    static CASE: AtomicUsize = AtomicUsize::new(0);
    let name = format!("web-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let kubeconfig = dir.join("kubeconfig");
    let manifest = dir.join(format!("{name}.json"));
    let shown = |v: &Value| serde_json::to_string(v).unwrap_or_default();

    std::fs::write(&manifest, shown(&deployment(&name, first))).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", &manifest.display().to_string()]).map_err(TestCaseError::fail)?;
    if let Some((kind, patch)) = other {
        kubectl(&kubeconfig, &["patch", "deployment", &name, "--type", kind, "-p", &shown(&patch)])
            .map_err(TestCaseError::fail)?;
    }
    std::fs::write(&manifest, shown(&deployment(&name, second))).unwrap();
    let inputs = Inputs { paths: vec![manifest.display().to_string()], ..Inputs::default() };
    let target = Target {
        connection: Connection { kubeconfig: Some(kubeconfig.clone()), ..Connection::default() },
        ..Target::default()
    };
    let plan = plan_with(&inputs, &target).map_err(TestCaseError::fail)?;
    let predicted = plan.objects.first().and_then(|entry| entry.result.clone()).expect("one object planned");
    kubectl(&kubeconfig, &["apply", "-f", &manifest.display().to_string()]).map_err(TestCaseError::fail)?;
    let stored = support::api::get(&format!("{}/apis/apps/v1/namespaces/default/deployments/{name}", server.url));
    prop_assert_eq!(comparable(predicted), comparable(stored.body));
    Ok(())
}

#[test]
fn the_plan_predicts_what_kubectl_apply_makes_the_server_store() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    kubeyard_harness::apiserver::kubeconfig::write(&dir.path().join("kubeconfig"), &server.url, None, None).unwrap();
    // Each case runs kubectl three times: a few dozen cases, and shrinking kept short.
    let config = ProptestConfig { cases: 32, max_shrink_iters: 32, failure_persistence: None, ..Default::default() };
    proptest!(config, |(first in configuration(), other in drift(), second in configuration())| {
        predicted_equals_stored(&server, dir.path(), &first, other, &second)?;
    });
}

/// An object's managedFields without their times (the plan's clock is not the server's).
fn ownership(object: &Value) -> Value {
    let mut entries = object.pointer("/metadata/managedFields").cloned().unwrap_or(json!([]));
    for entry in entries.as_array_mut().into_iter().flatten() {
        if let Some(entry) = entry.as_object_mut() {
            entry.remove("time");
        }
    }
    entries
}

/// The server-side promise: from a state that carries the object's managedFields,
/// `kubeyard plan --server-side` predicts whether an apply is refused and for which
/// fields, and what the server stores when it is forced, ownership included.
fn server_side_prediction_holds(
    server: &Server,
    dir: &Path,
    first: &(Value, Vec<Value>, Value),
    other: Option<(&'static str, Value)>,
    second: &(Value, Vec<Value>, Value),
) -> Result<(), TestCaseError> {
    static CASE: AtomicUsize = AtomicUsize::new(0);
    let name = format!("ssa-{}", CASE.fetch_add(1, Ordering::Relaxed));
    let kubeconfig = dir.join("kubeconfig");
    let manifest = dir.join(format!("{name}.json"));
    let state = dir.join(format!("{name}-state.json"));
    let shown = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let url = format!("{}/apis/apps/v1/namespaces/default/deployments/{name}", server.url);
    let apply = |force: bool| {
        let mut args = vec!["apply", "--server-side", "--field-manager=kubeyard", "-f"];
        let path = manifest.display().to_string();
        args.push(&path);
        if force {
            args.push("--force-conflicts");
        }
        kubectl(&kubeconfig, &args)
    };

    std::fs::write(&manifest, shown(&deployment(&name, first))).unwrap();
    apply(false).map_err(TestCaseError::fail)?;
    if let Some((kind, patch)) = other {
        kubectl(&kubeconfig, &["patch", "deployment", &name, "--type", kind, "-p", &shown(&patch)])
            .map_err(TestCaseError::fail)?;
    }
    std::fs::write(&state, shown(&support::api::get(&url).body)).unwrap();
    std::fs::write(&manifest, shown(&deployment(&name, second))).unwrap();
    let inputs = Inputs { paths: vec![manifest.display().to_string()], ..Inputs::default() };
    let predict = |force: bool| {
        let target = Target {
            state: Some(state.clone()),
            server_side: true,
            field_manager: "kubeyard".into(),
            force_conflicts: force,
            ..Target::default()
        };
        plan_with(&inputs, &target).map_err(TestCaseError::fail)
    };
    let unforced = predict(false)?;
    let entry = unforced.objects.first().expect("one object planned");
    let refused = apply(false);
    match (&refused, entry.action) {
        (Err(message), kubeyard_compiler::plan::Action::Conflict) => {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            for conflict in &entry.conflicts {
                prop_assert!(message.contains(&conflict.field), "{} not in {}", conflict.field, message);
            }
        }
        (Ok(()), action) => prop_assert_ne!(action, kubeyard_compiler::plan::Action::Conflict),
        (Err(message), action) => prop_assert!(false, "predicted {:?}, the server refused: {}", action, message),
    }
    if refused.is_err() {
        apply(true).map_err(TestCaseError::fail)?;
    }
    let forced = predict(true)?;
    let predicted = forced.objects.first().and_then(|entry| entry.result.clone()).expect("a result");
    let stored = support::api::get(&url).body;
    prop_assert_eq!(ownership(&predicted), ownership(&stored));
    prop_assert_eq!(comparable(predicted), comparable(stored));
    Ok(())
}

/// Applies the server refused, as predicted.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

#[test]
fn the_server_side_plan_predicts_conflicts_and_what_the_server_stores() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    kubeyard_harness::apiserver::kubeconfig::write(&dir.path().join("kubeconfig"), &server.url, None, None).unwrap();
    let config = ProptestConfig { cases: 32, max_shrink_iters: 32, failure_persistence: None, ..Default::default() };
    // Half the cases someone else sets the image every configuration sets: a conflict.
    let image =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.example/app:9"}]}}}});
    let drifts = prop_oneof![drift(), Just(Some(("strategic", image)))];
    proptest!(config, |(first in configuration(), other in drifts.clone(), second in configuration())| {
        server_side_prediction_holds(&server, dir.path(), &first, other, &second)?;
    });
    assert!(REFUSED.load(Ordering::Relaxed) > 0, "some applies were refused, as predicted");
}
