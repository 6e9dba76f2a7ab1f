//! The taint-eviction controller: pods on a node with a `NoExecute` taint they do not
//! tolerate are deleted at once; pods that tolerate it for `tolerationSeconds` are deleted
//! that long after the taint was added (every pod tolerates `unreachable` and `not-ready`
//! for 300 s unless it says otherwise: the API server's DefaultTolerationSeconds). Their
//! owners make replacements, which the scheduler keeps off the tainted node.

use super::node_lifecycle::Options;
use crate::clock::{self, Clock};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::Value;
use std::time::Duration;

/// Runs until the task is dropped; checks every monitor period of `options`.
pub async fn run(client: kube::Client, options: Options) {
    loop {
        options.clock.sleep(options.period.min(Duration::from_secs(1))).await;
        let _ = pass(&client, &options.clock).await;
    }
}

/// How long a pod may stay with `taint`: `None` for ever, zero when it is not tolerated.
fn tolerated_for(pod: &Value, taint: &Value) -> Option<Duration> {
    let tolerations = pod.pointer("/spec/tolerations").and_then(Value::as_array);
    let tolerates = |t: &&Value| {
        let effect = t["effect"].as_str().unwrap_or("");
        let exists = t["operator"].as_str() == Some("Exists");
        let key_matches = match t["key"].as_str() {
            None | Some("") => exists,
            Some(key) => taint["key"].as_str() == Some(key),
        };
        let value_matches = exists || t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
        key_matches && value_matches && (effect.is_empty() || effect == "NoExecute")
    };
    let matching: Vec<&Value> = tolerations.into_iter().flatten().filter(tolerates).collect();
    if matching.is_empty() {
        return Some(Duration::ZERO);
    }
    // The most generous matching toleration wins; one without a limit is for ever.
    if matching.iter().any(|t| t.get("tolerationSeconds").is_none_or(Value::is_null)) {
        return None;
    }
    matching.iter().filter_map(|t| t["tolerationSeconds"].as_i64()).max().map(|s| Duration::from_secs(s.max(0) as u64))
}

async fn pass(client: &kube::Client, clock: &Clock) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    for node in nodes.list(&ListParams::default()).await?.items {
        let taints: Vec<Value> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .iter()
            .filter(|t| t.effect == "NoExecute")
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect();
        if taints.is_empty() {
            continue;
        }
        let pods: Api<Pod> = Api::all(client.clone());
        let on_node = pods.list(&ListParams::default().fields(&format!("spec.nodeName={}", node.name_any()))).await?;
        for pod in on_node.items {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let value = serde_json::to_value(&pod).unwrap_or(Value::Null);
            let due = taints.iter().any(|taint| match tolerated_for(&value, taint) {
                None => false,
                Some(limit) => {
                    let added = taint["timeAdded"].as_str().and_then(clock::parse);
                    let waited = added.map(|a| clock.now().duration_since(a).unwrap_or_default());
                    waited.is_none_or(|w| w >= limit)
                }
            });
            if due {
                let namespaced: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
                let _ = namespaced.delete(&pod.name_any(), &DeleteParams::default()).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerations_decide_how_long_a_pod_stays() {
        let taint = json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"});
        let pod = |tolerations: Value| json!({"spec": {"tolerations": tolerations}});
        assert_eq!(tolerated_for(&pod(json!([])), &taint), Some(Duration::ZERO));
        let defaulted = pod(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                    "effect": "NoExecute", "tolerationSeconds": 300}]));
        assert_eq!(tolerated_for(&defaulted, &taint), Some(Duration::from_secs(300)));
        assert_eq!(tolerated_for(&pod(json!([{"operator": "Exists"}])), &taint), None);
        let other = pod(json!([{"key": "dedicated", "operator": "Exists"}]));
        assert_eq!(tolerated_for(&other, &taint), Some(Duration::ZERO));
        let no_schedule_only =
            pod(json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}]));
        assert_eq!(tolerated_for(&no_schedule_only, &taint), Some(Duration::ZERO));
    }
}
