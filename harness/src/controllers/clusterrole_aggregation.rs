//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` holds
//! the union of the rules of every ClusterRole its selectors pick
//! (`kubeyard_compiler::rbac::aggregated_rules`), written again whenever any ClusterRole
//! changes, as Kubernetes' `clusterrole-aggregation` controller keeps `admin`, `edit` and
//! `view` (and users' own aggregated roles) up to date.

use futures_util::StreamExt;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

/// Runs until the task is dropped.
pub async fn run(client: kube::Client) {
    let api: Api<ClusterRole> = Api::all(client);
    let (store, writer) = reflector::store();
    let changes = watcher(api.clone(), watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
    futures_util::pin_mut!(changes);
    while let Some(change) = changes.next().await {
        if change.is_err() {
            continue;
        }
        let roles: Vec<Value> = store.state().iter().filter_map(|r| serde_json::to_value(r.as_ref()).ok()).collect();
        for role in &roles {
            let Some(rules) = kubeyard_compiler::rbac::aggregated_rules(role, &roles) else { continue };
            if role.get("rules").cloned().unwrap_or_else(|| json!([])) == json!(rules) {
                continue;
            }
            let name = role.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
            let version = role.pointer("/metadata/resourceVersion").cloned();
            let patch = json!({"metadata": {"resourceVersion": version}, "rules": rules});
            // A lost race is settled by the watch event the winner's write brings.
            let _ = api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await;
        }
    }
}
