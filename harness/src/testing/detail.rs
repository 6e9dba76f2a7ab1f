//! What `kubeyard test --verbose` shows under a step: the events the cluster recorded or
//! repeated while it ran (of every object: what a step touches sets off events all down the chain,
//! a Deployment's ReplicaSet, its pods, their node) and, when it failed, the last lines
//! of the logs of the pods its failure names, where those are real processes (pods of a
//! container cluster; simulated pods have no logs, and say nothing here).

use super::cluster::Cluster;
use super::expect::Failure;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, LogParams};
use serde_json::Value;
use std::collections::HashMap;

fn text(value: &Value, pointer: &str) -> String {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Lines of a pod's log shown per container.
const LOG_LINES: i64 = 20;

/// The events a cluster holds, each by uid with its resource version: what a step adds or
/// updates (a repeated event's count) is what differs afterwards.
pub type EventMarks = HashMap<String, String>;

impl Cluster {
    /// Where the events stand before a step.
    pub async fn event_marks(&self) -> EventMarks {
        self.events().await.iter().map(|e| (text(e, "/metadata/uid"), text(e, "/metadata/resourceVersion"))).collect()
    }

    /// The detail of a step that began when the events stood at `before`.
    pub async fn step_detail(&self, before: &EventMarks, failure: Option<&Failure>) -> Vec<String> {
        let mut lines = self.events_since(before, failure).await;
        if let Some(failure) = failure {
            lines.extend(self.logs_of(failure).await);
        }
        lines
    }

    async fn events(&self) -> Vec<Value> {
        let Ok((resource, _)) = self.resource("v1", "Event").await else { return Vec::new() };
        let api = Api::<DynamicObject>::all_with(self.kube(), &resource);
        let Ok(list) = api.list(&ListParams::default()).await else { return Vec::new() };
        list.items.iter().filter_map(|event| serde_json::to_value(event).ok()).collect()
    }

    async fn events_since(&self, before: &EventMarks, failure: Option<&Failure>) -> Vec<String> {
        let mut events: Vec<(String, String)> = self
            .events()
            .await
            .iter()
            .filter(|e| before.get(&text(e, "/metadata/uid")) != Some(&text(e, "/metadata/resourceVersion")))
            .map(|event| {
                let at = text(event, "/lastTimestamp");
                let count = event.get("count").and_then(Value::as_u64).filter(|c| *c > 1);
                let times = count.map(|c| format!(" (x{c})")).unwrap_or_default();
                let object = format!("{}/{}", text(event, "/involvedObject/kind"), text(event, "/involvedObject/name"));
                let line = format!(
                    "{} {} {object}: {}{times}",
                    text(event, "/type"),
                    text(event, "/reason"),
                    text(event, "/message")
                );
                (at, line)
            })
            // The failure lists its own objects' events already.
            .filter(|(_, line)| !failure.is_some_and(|f| f.events.contains(line)))
            .collect();
        // By time, then by what they say: events of one second come in no set order.
        events.sort();
        if events.is_empty() {
            return Vec::new();
        }
        let mut lines = vec!["events while it ran:".to_string()];
        lines.extend(events.into_iter().map(|(_, line)| format!("  {line}")));
        lines
    }

    async fn logs_of(&self, failure: &Failure) -> Vec<String> {
        let mut lines = Vec::new();
        let pods = failure.subjects.iter().chain(failure.closest.iter()).filter(|o| o["kind"] == "Pod");
        for pod in pods {
            let (namespace, name) = (text(pod, "/metadata/namespace"), text(pod, "/metadata/name"));
            let api: Api<Pod> = Api::namespaced(self.kube(), &namespace);
            let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
            for container in containers {
                let container = container.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                let params = LogParams {
                    container: Some(container.clone()),
                    tail_lines: Some(LOG_LINES),
                    ..LogParams::default()
                };
                // A simulated pod has no log, a pending one none yet: nothing to show.
                let Ok(log) = api.logs(&name, &params).await else { continue };
                if log.trim().is_empty() {
                    continue;
                }
                lines.push(format!("log of pod {namespace}/{name}, container {container} (last {LOG_LINES} lines):"));
                lines.extend(log.lines().map(|l| format!("  {l}")));
            }
        }
        lines
    }
}
