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
use kubeyard_compiler::scheduling::{Taint, Toleration, tolerated_for};
use serde_json::Value;
use std::time::Duration;

/// Runs until the task is dropped; checks every monitor period of `options`.
pub async fn run(client: kube::Client, options: Options) {
    loop {
        options.clock.sleep(options.period.min(Duration::from_secs(1))).await;
        let _ = pass(&client, &options.clock).await;
    }
}

async fn pass(client: &kube::Client, clock: &Clock) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    for node in nodes.list(&ListParams::default()).await?.items {
        let taints: Vec<Taint> = Taint::of_node(&serde_json::to_value(&node).unwrap_or(Value::Null))
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
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
            let tolerations = Toleration::of_pod(&serde_json::to_value(&pod).unwrap_or(Value::Null));
            let due = taints.iter().any(|taint| match tolerated_for(&tolerations, taint) {
                None => false,
                Some(limit) => {
                    let added = taint.time_added.as_deref().and_then(clock::parse);
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
