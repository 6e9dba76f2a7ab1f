//! kube-rs, the Rust client, against the API server: typed CRUD, errors, server-side
//! dry run, patches, a `watcher` that gets a 410 after a restart and recovers, and a
//! `kube::runtime::Controller` reconciling the custom resources of a CRD it installed.

use crate::support;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kubeyard_harness::apiserver::Options;
use kubeyard_harness::store::memory::MemoryStore;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use support::api::Server;

fn client(server: &Server) -> kube::Client {
    let config = kube::Config::new(server.url.parse().expect("a URL"));
    kube::Client::try_from(config).expect("a client")
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..ConfigMap::default()
    }
}

fn api_error(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud_errors_dry_run_and_patches() {
    let server = Server::start();
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&server));
    let created = maps.create(&PostParams::default(), &config_map("one")).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    assert_eq!(
        api_error(maps.create(&PostParams::default(), &config_map("one")).await.unwrap_err()),
        (409, "AlreadyExists".into())
    );
    assert_eq!(api_error(maps.get("missing").await.unwrap_err()), (404, "NotFound".into()));

    let dry = PostParams { dry_run: true, ..PostParams::default() };
    maps.create(&dry, &config_map("dry")).await.unwrap();
    assert!(maps.get_opt("dry").await.unwrap().is_none());

    let mut changed = maps.get("one").await.unwrap();
    changed.data.as_mut().unwrap().insert("k".into(), "w".into());
    let replaced = maps.replace("one", &PostParams::default(), &changed).await.unwrap();
    assert_eq!(replaced.data.unwrap()["k"], "w");
    // `changed` still carries the old resourceVersion.
    assert_eq!(api_error(maps.replace("one", &PostParams::default(), &changed).await.unwrap_err()).0, 409);

    let patched = maps.patch("one", &PatchParams::default(), &Patch::Merge(json!({"data": {"m": "1"}}))).await.unwrap();
    assert_eq!(patched.data.unwrap()["m"], "1");
    let strategic = maps
        .patch("one", &PatchParams::default(), &Patch::Strategic(json!({"metadata": {"labels": {"s": "1"}}})))
        .await
        .unwrap();
    assert_eq!(strategic.metadata.labels.unwrap()["s"], "1");
    let dry_patch = PatchParams { dry_run: true, ..PatchParams::default() };
    maps.patch("one", &dry_patch, &Patch::Merge(json!({"data": {"dry": "1"}}))).await.unwrap();
    assert!(!maps.get("one").await.unwrap().data.unwrap().contains_key("dry"));

    let listed = maps.list(&ListParams::default().labels("s=1")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    // A dry-run delete (sent in the body, as kube-rs sends it) deletes nothing.
    let dry_delete = DeleteParams { dry_run: true, ..DeleteParams::default() };
    maps.delete("one", &dry_delete).await.unwrap();
    assert!(maps.get_opt("one").await.unwrap().is_some());
    // Deleted at once: a Status, not the object (which would mean "still deleting").
    assert!(maps.delete("one", &DeleteParams::default()).await.unwrap().is_right());
    assert!(maps.get_opt("one").await.unwrap().is_none());
    let metadata = maps.list_metadata(&ListParams::default()).await.unwrap();
    assert!(metadata.items.iter().all(|m| m.metadata.name.is_some()));

    // A typed Deployment comes back with the API server's defaults.
    let deployments: Api<Deployment> = Api::default_namespaced(client(&server));
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    }))
    .unwrap();
    let created = deployments.create(&PostParams::default(), &deployment).await.unwrap();
    assert_eq!(created.spec.unwrap().replicas, Some(1));
    let scale = deployments.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_recovers_from_410_after_a_restart() {
    // A history of three events: a watcher that was away for more must list again.
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::with_history(3));
    let first = Server::with(store.clone(), Options::default());
    let address = first.address.clone();
    let maps: Api<ConfigMap> = Api::default_namespaced(client(&first));
    maps.create(&PostParams::default(), &config_map("before")).await.unwrap();

    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let watched = maps.clone();
    let watching = tokio::spawn(async move {
        let stream = watcher(watched, watcher::Config::default()).default_backoff().applied_objects();
        futures_util::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if let Ok(object) = item {
                let _ = seen_tx.send(object.metadata.name.unwrap_or_default());
            }
        }
    });
    let listed = async { while seen.recv().await.as_deref() != Some("before") {} };
    tokio::time::timeout(Duration::from_secs(30), listed).await.expect("the watcher lists what exists");

    // The server goes away; writes happen elsewhere; it comes back at the same address.
    drop(first);
    let elsewhere = Server::with(store.clone(), Options::default());
    let other: Api<ConfigMap> = Api::default_namespaced(client(&elsewhere));
    let mut names = BTreeSet::new();
    for i in 0..10 {
        let name = format!("while-away-{i}");
        other.create(&PostParams::default(), &config_map(&name)).await.unwrap();
        names.insert(name);
    }
    drop(elsewhere);
    let _back = Server::at(&address, store.clone(), Options::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !names.is_empty() {
        let name = tokio::time::timeout_at(deadline, seen.recv()).await.expect("the watcher catches up").unwrap();
        names.remove(&name);
    }
    watching.abort();
}

/// A custom resource as operator authors write it: `#[derive(CustomResource)]`, its CRD
/// generated by kube-rs (schemars) and installed as is.
#[derive(kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema)]
#[kube(group = "example.com", version = "v1", kind = "Gizmo", namespaced, status = "GizmoStatus")]
#[kube(printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".spec.size"}"#)]
pub struct GizmoSpec {
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize, Clone, Debug, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GizmoStatus {
    observed_size: i64,
}

/// The envtest use, on kubeyard: a `#[derive(CustomResource)]` type's generated CRD
/// installed with kube-rs and awaited as operators await it
/// (`conditions::is_crd_established`), then a `kube::runtime::Controller` reconciling its
/// objects, writing their status through the subresource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_runtime_controller_reconciles_custom_resources() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::runtime::controller::{Action, Controller};
    use kube::runtime::wait::{await_condition, conditions};

    let server = Server::start();
    let client = client(&server);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Gizmo::crd();
    let name = crd.metadata.name.clone().expect("the generated CRD is named");
    crds.create(&PostParams::default(), &crd).await.expect("the generated CRD is accepted");
    let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(10), established).await.expect("in time").expect("established");

    let gizmos: Api<Gizmo> = Api::namespaced(client.clone(), "default");
    let reconcile = |gizmo: Arc<Gizmo>, gizmos: Arc<Api<Gizmo>>| async move {
        let name = gizmo.metadata.name.clone().unwrap_or_default();
        let status = Patch::Merge(json!({"status": {"observedSize": gizmo.spec.size}}));
        gizmos.patch_status(&name, &PatchParams::default(), &status).await?;
        Ok::<_, kube::Error>(Action::await_change())
    };
    let error_policy = |_: Arc<Gizmo>, _: &kube::Error, _: Arc<Api<Gizmo>>| Action::requeue(Duration::from_millis(100));
    let controller = Controller::new(gizmos.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(gizmos.clone()))
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    let gizmo = Gizmo::new("gear", GizmoSpec { size: 3, label: None });
    gizmos.create(&PostParams::default(), &gizmo).await.expect("created");
    let observed = |size: i64| {
        move |object: Option<&Gizmo>| object.and_then(|o| o.status.as_ref()).is_some_and(|s| s.observed_size == size)
    };
    let reconciled = await_condition(gizmos.clone(), "gear", observed(3));
    tokio::time::timeout(Duration::from_secs(10), reconciled).await.expect("reconciled in time").expect("watched");
    gizmos.patch("gear", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 5}}))).await.expect("patched");
    let again = await_condition(gizmos.clone(), "gear", observed(5));
    tokio::time::timeout(Duration::from_secs(10), again).await.expect("reconciled again in time").expect("watched");
    // The schema the derive generated holds: a size that is not a number is refused in
    // Kubernetes' words.
    let wrong = gizmos.patch("gear", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": "big"}}))).await;
    let Err(kube::Error::Api(refused)) = wrong else { panic!("a string size was taken: {wrong:?}") };
    assert_eq!(refused.code, 422, "{refused:?}");
    assert!(refused.message.contains("spec.size in body must be of type integer: \"string\""), "{refused:?}");
    running.abort();
}

/// kube-rs's `Patch::Apply`, as operators write objects: created by the first apply,
/// refused with a 409 when another manager owns a field it would change, taken with
/// `force()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_with_patch_apply() {
    let server = Server::start();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let applied =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "fast"}});
    let made = api.patch("settings", &PatchParams::apply("operator"), &Patch::Apply(&applied)).await.expect("created");
    let entries = made.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!((entries[0].manager.as_deref(), entries[0].operation.as_deref()), (Some("operator"), Some("Apply")));
    let other =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "slow"}});
    let refused = api.patch("settings", &PatchParams::apply("rival"), &Patch::Apply(&other)).await.unwrap_err();
    let kube::Error::Api(status) = refused else { panic!("an API error") };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(status.message, r#"Apply failed with 1 conflict: conflict with "operator": .data.mode"#);
    let forced =
        api.patch("settings", &PatchParams::apply("rival").force(), &Patch::Apply(&other)).await.expect("forced");
    assert_eq!(forced.data.unwrap_or_default()["mode"], "slow");
    let managers: Vec<String> =
        forced.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|e| e.manager).collect();
    assert_eq!(managers, ["rival"], "the operator owned nothing else");
}
