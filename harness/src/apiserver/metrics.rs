//! The resource metrics API (`metrics.k8s.io/v1beta1`, what metrics-server serves on a
//! real cluster and `kubectl top` and HorizontalPodAutoscalers read): `NodeMetrics` and
//! `PodMetrics`, computed at each request from what the nodes run.
//!
//! A simulated node's pods use what their `kubeyard.dev/usage` annotation says, per
//! container (`cpu=250m,memory=64Mi`; nothing when absent), once they run; a node uses
//! what its running pods use. Pods on nodes that run real processes (container clusters)
//! are not measured yet: they have no metrics, as a pod metrics-server could not scrape
//! has none, and `kubectl top` says so.

use super::objects::{Filter, from_entry, store_error};
use super::resources::{self, Resource};
use super::status::{ApiError, Subject};
use super::{ApiServer, Query, Target, json_response};
use crate::kubelet::simulate;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use kubeyard_compiler::quantity::Quantity;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The window each sample stands for (metrics-server's default resolution).
const WINDOW: &str = "15s";

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Usage per resource.
type Usage = BTreeMap<String, Quantity>;

fn add(total: &mut Usage, usage: &Usage) {
    for (name, amount) in usage {
        let sum = total.get(name).and_then(|t| t.checked_add(amount)).unwrap_or(*amount);
        total.insert(name.clone(), sum);
    }
}

/// The `usage` map as the API writes it: CPU in whole nanocores rounded to millicores
/// (`137m`), memory in `Ki` (`1510540Ki`), as metrics-server writes them.
fn usage_json(usage: &Usage) -> Value {
    let mut map = serde_json::Map::new();
    for name in ["cpu", "memory"] {
        let amount = usage.get(name).copied().unwrap_or_else(Quantity::zero);
        let written = match name {
            "cpu" => format!("{}m", amount.millis_ceil()),
            _ => format!("{}Ki", amount.units_ceil().div_euclid(1024)),
        };
        map.insert(name.into(), json!(written));
    }
    Value::Object(map)
}

/// A pod's containers' usage, when it can be known: a running pod on a simulated node.
fn pod_usage(pod: &Value, nodes: &HashMap<String, Value>) -> Option<Vec<(String, Usage)>> {
    if text(pod, "/status/phase") != "Running" || pod.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    let node = nodes.get(text(pod, "/spec/nodeName"))?;
    if text(node, "/metadata/annotations/kubeyard.dev~1runtime") == "process" {
        return None;
    }
    let annotation = pod.pointer("/metadata/annotations").and_then(|a| a.get(simulate::USAGE)).and_then(Value::as_str);
    // A value that does not read is reported on the pod by its node agent; here it is none.
    let each = annotation.map(simulate::usage).transpose().ok()?.unwrap_or_default();
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array)?;
    Some(containers.iter().map(|c| (text(c, "/name").to_string(), each.clone())).collect())
}

async fn listed(server: &ApiServer, resource: &Resource, namespace: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let listing =
        server.store.list(&resource.prefix(namespace), None, None).await.map_err(|e| store_error(resource, "", e))?;
    listing.entries.iter().map(from_entry).collect()
}

fn served(group: &str, kind: &str) -> Result<&'static Resource, ApiError> {
    resources::by_kind(group, kind).ok_or_else(|| ApiError::internal(format!("{kind} is not served")))
}

fn metrics_metadata(object: &Value, now: &str) -> Value {
    let mut metadata = json!({"name": text(object, "/metadata/name"), "creationTimestamp": now});
    if let Some(labels) = object.pointer("/metadata/labels") {
        metadata["labels"] = labels.clone();
    }
    if let Some(namespace) = object.pointer("/metadata/namespace") {
        metadata["namespace"] = namespace.clone();
    }
    metadata
}

/// `GET /apis/metrics.k8s.io/v1beta1/...`.
pub(super) async fn serve(
    server: &ApiServer,
    method: &Method,
    target: &Target,
    query: &Query,
) -> Result<Response, ApiError> {
    if method != Method::GET || target.subresource.is_some() || super::objects::flag(query, "watch") {
        return Err(ApiError::method_not_allowed());
    }
    let now = server.options.clock.timestamp();
    let node_list = listed(server, served("", "Node")?, None).await?;
    let nodes: HashMap<String, Value> =
        node_list.iter().map(|n| (text(n, "/metadata/name").to_string(), n.clone())).collect();
    let pods_resource = served("", "Pod")?;
    let pods_namespace = if target.resource.kind == "PodMetrics" { target.namespace.as_deref() } else { None };
    let pods = listed(server, pods_resource, pods_namespace).await?;
    let filter = Filter::from_query(pods_resource, query)?;
    let (list_kind, items) = match target.resource.kind {
        "PodMetrics" => {
            let mut items = Vec::new();
            for pod in pods.iter().filter(|p| target.name.as_deref().is_none_or(|n| n == text(p, "/metadata/name"))) {
                if target.name.is_none() && !filter.matches(pod) {
                    continue;
                }
                let Some(containers) = pod_usage(pod, &nodes) else { continue };
                let containers: Vec<Value> =
                    containers.iter().map(|(name, usage)| json!({"name": name, "usage": usage_json(usage)})).collect();
                items.push(json!({
                    "kind": "PodMetrics",
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": metrics_metadata(pod, &now),
                    "timestamp": now,
                    "window": WINDOW,
                    "containers": containers,
                }));
            }
            ("PodMetricsList", items)
        }
        _ => {
            let node_filter = Filter::from_query(served("", "Node")?, query)?;
            let mut per_node: HashMap<&str, Usage> = HashMap::new();
            for pod in &pods {
                for (_, usage) in pod_usage(pod, &nodes).unwrap_or_default() {
                    add(per_node.entry(text(pod, "/spec/nodeName")).or_default(), &usage);
                }
            }
            let mut items = Vec::new();
            for node in &node_list {
                let name = text(node, "/metadata/name");
                let simulated = text(node, "/metadata/annotations/kubeyard.dev~1runtime") != "process";
                let wanted = target.name.as_deref().is_none_or(|n| n == name)
                    && (target.name.is_some() || node_filter.matches(node));
                if !wanted || !simulated {
                    continue;
                }
                let usage = per_node.get(name).cloned().unwrap_or_default();
                items.push(json!({
                    "kind": "NodeMetrics",
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": metrics_metadata(node, &now),
                    "timestamp": now,
                    "window": WINDOW,
                    "usage": usage_json(&usage),
                }));
            }
            ("NodeMetricsList", items)
        }
    };
    if let Some(name) = &target.name {
        let kind = if target.resource.kind == "PodMetrics" { "pods" } else { "nodes" };
        let found = items
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(Subject { group: "metrics.k8s.io", kind, name }))?;
        return Ok(json_response(StatusCode::OK, &found));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": list_kind, "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_pod_uses_what_its_annotation_says_once_running() {
        let nodes = HashMap::from([
            ("node-1".to_string(), json!({"metadata": {"name": "node-1"}})),
            (
                "node-2".to_string(),
                json!({"metadata": {"name": "node-2", "annotations": {"kubeyard.dev/runtime": "process"}}}),
            ),
        ]);
        let pod = |node: &str, phase: &str| {
            json!({"metadata": {"name": "web", "annotations": {"kubeyard.dev/usage": "cpu=250m,memory=64Mi"}},
                   "spec": {"nodeName": node, "containers": [{"name": "web"}, {"name": "sidecar"}]},
                   "status": {"phase": phase}})
        };
        let containers = pod_usage(&pod("node-1", "Running"), &nodes).unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(usage_json(&containers[0].1), json!({"cpu": "250m", "memory": "65536Ki"}));
        assert!(pod_usage(&pod("node-1", "Pending"), &nodes).is_none(), "not running: no metrics yet");
        assert!(pod_usage(&pod("node-2", "Running"), &nodes).is_none(), "real processes are not measured");
        let mut total = Usage::new();
        for (_, usage) in &containers {
            add(&mut total, usage);
        }
        assert_eq!(usage_json(&total), json!({"cpu": "500m", "memory": "131072Ki"}));
        let quiet = json!({"metadata": {"name": "idle"}, "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
                           "status": {"phase": "Running"}});
        assert_eq!(usage_json(&pod_usage(&quiet, &nodes).unwrap()[0].1), json!({"cpu": "0m", "memory": "0Ki"}));
    }
}
