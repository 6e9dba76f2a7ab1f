//! The resource quota controller: each ResourceQuota's `status.hard` (its `spec.hard`) and
//! `status.used`, what the namespace's objects count against each name
//! (`kubeyard_compiler::quota`, the admission plugin's arithmetic), as `kubectl describe
//! quota` shows them. Looked at when the quota or a pod of its namespace changes, and
//! every 10 s of the control plane's clock for the other kinds it counts (Kubernetes
//! replenishes on their deletes and resyncs every 5 minutes).
//!
//! `decide` is the pure part: from the quota and the objects of each kind it counts, the
//! status.

use super::{Error, Wakeups, Wiring, patch_status};
use crate::clock::Clock;
use crate::informers::{Informer, Informers};
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kubeyard_compiler::quantity::Quantity;
use kubeyard_compiler::quota;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const RESYNC: Duration = Duration::from_secs(10);

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<ResourceQuota>,
    pods: Informer<Pod>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    let quotas = informers.resource_quotas.clone();
    let quotas_of = move |pod: Arc<Pod>| {
        let namespace = pod.namespace().unwrap_or_default();
        quotas.in_namespace(&namespace).iter().map(|q| ObjectRef::from_obj(q.as_ref())).collect::<Vec<_>>()
    };
    let mut wiring = Wiring::of(&informers.resource_quotas).watches(&informers.pods, quotas_of);
    let context = Arc::new(Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        pods: informers.pods.clone(),
    });
    wiring.run(reconcile, context).await;
}

/// Objects of one kind: (group, plural, kind) and each one's JSON.
struct Counted {
    group: String,
    plural: String,
    kind: String,
    objects: Vec<Value>,
}

/// The quota's status: `hard` as its spec says, `used` for each of its names, over the
/// objects its scopes select.
fn decide(quota_object: &Value, hard: &BTreeMap<String, String>, counted: &[Counted], now: &str) -> Value {
    let mut total = quota::Usage::new();
    for kind in counted {
        let counts = |o: &&Value| {
            quota::counts(&kind.group, &kind.kind, o, now) && quota::in_scope(quota_object, &kind.group, &kind.kind, o)
        };
        for object in kind.objects.iter().filter(counts) {
            quota::add(&mut total, &quota::usage(&kind.group, &kind.plural, &kind.kind, object));
        }
    }
    let mut used = Map::new();
    for name in hard.keys() {
        let amount = total.get(name).copied().unwrap_or_else(Quantity::zero);
        used.insert(name.clone(), json!(amount.to_string()));
    }
    json!({"hard": hard, "used": used})
}

/// The objects of `(group, plural)` in the namespace: pods from the cache, others listed.
async fn objects_of(context: &Context, namespace: &str, group: &str, plural: &str) -> Result<Counted, Error> {
    if group.is_empty() && plural == "pods" {
        let objects: Result<Vec<Value>, _> =
            context.pods.in_namespace(namespace).iter().map(|p| serde_json::to_value(p.as_ref())).collect();
        let objects = objects.map_err(|e| Error::Invalid(e.to_string()))?;
        return Ok(Counted { group: String::new(), plural: plural.into(), kind: "Pod".into(), objects });
    }
    let found = kube::discovery::group(&context.client, group)
        .await
        .map_err(|_| Error::Invalid(format!("the group {group:?} is not served")))?;
    let (resource, _) = found
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.plural == plural)
        .ok_or_else(|| Error::Invalid(format!("{plural}.{group} is not served")))?;
    let api: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), namespace, &resource);
    let listed = api.list(&ListParams::default()).await?;
    let objects: Result<Vec<Value>, _> = listed.items.iter().map(serde_json::to_value).collect();
    let objects = objects.map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(Counted { group: group.into(), plural: plural.into(), kind: resource.kind, objects })
}

async fn reconcile(quota: Arc<ResourceQuota>, context: Arc<Context>) -> Result<Action, Error> {
    context.wakeups.after(quota.as_ref(), RESYNC);
    let namespace = quota.namespace().unwrap_or_default();
    let hard: BTreeMap<String, String> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default();
    let mut kinds: Vec<(String, String)> = hard.keys().filter_map(|name| quota::counted_resource(name)).collect();
    kinds.sort();
    kinds.dedup();
    let mut counted = Vec::new();
    for (group, plural) in kinds {
        // A name of a kind not served counts nothing (used 0), as for Kubernetes.
        match objects_of(&context, &namespace, &group, &plural).await {
            Ok(objects) => counted.push(objects),
            Err(Error::Invalid(_)) => {}
            Err(error) => return Err(error),
        }
    }
    let quota_object = serde_json::to_value(quota.as_ref()).map_err(|e| Error::Invalid(e.to_string()))?;
    let status = decide(&quota_object, &hard, &counted, &context.clock.timestamp());
    let api: Api<ResourceQuota> = Api::namespaced(context.client.clone(), &namespace);
    patch_status(&api, quota.as_ref(), status).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_is_what_the_namespace_counts_for_each_hard_name() {
        let hard: BTreeMap<String, String> =
            [("pods", "4"), ("requests.cpu", "1"), ("count/configmaps", "2"), ("services.nodeports", "3")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let pod = |cpu: &str, phase: &str| json!({"spec": {"containers": [{"resources": {"requests": {"cpu": cpu}}}]}, "status": {"phase": phase}});
        let counted = [
            Counted {
                group: String::new(),
                plural: "pods".into(),
                kind: "Pod".into(),
                objects: vec![pod("200m", "Running"), pod("300m", "Pending"), pod("1", "Succeeded")],
            },
            Counted {
                group: String::new(),
                plural: "configmaps".into(),
                kind: "ConfigMap".into(),
                objects: vec![json!({})],
            },
        ];
        let status = decide(&json!({"spec": {}}), &hard, &counted, "2026-01-01T00:00:00Z");
        assert_eq!(status["hard"]["pods"], "4");
        assert_eq!(
            status["used"],
            json!({"pods": "2", "requests.cpu": "500m", "count/configmaps": "1", "services.nodeports": "0"}),
            "a finished pod no longer counts; nothing counted is 0"
        );
        // Scoped to BestEffort pods: only the pod without requests would count, and there is none.
        let best_effort = json!({"spec": {"scopes": ["BestEffort"]}});
        let status = decide(&best_effort, &hard, &counted, "2026-01-01T00:00:00Z");
        assert_eq!(status["used"]["pods"], "0");
        assert_eq!(status["used"]["count/configmaps"], "0", "a scoped quota counts pods only");
    }
}
