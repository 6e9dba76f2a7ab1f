//! The resource metrics API (`metrics.k8s.io/v1beta1`, what metrics-server serves on a
//! real cluster and `kubectl top` and HorizontalPodAutoscalers read): `NodeMetrics` and
//! `PodMetrics`, computed at each request from what the nodes run.
//!
//! A simulated node's pods use what their `kubeyard.dev/usage` annotation says, per
//! container (`cpu=250m,memory=64Mi`; nothing when absent), once they run; a node uses
//! what its running pods use. A node that runs real containers (container clusters) is
//! asked, as metrics-server asks it: its kubelet's Summary API (`/stats/summary`) says
//! what each container really uses (see `kubelet/stats.rs`). A pod it has not measured
//! twice yet has no metrics, and a node whose kubelet does not answer has none either,
//! as a scrape metrics-server could not make leaves them out; `kubectl top` says so.

use super::objects::{Filter, from_entry, store_error};
use super::resources::{self, Resource};
use super::status::{ApiError, Subject};
use super::{ApiServer, Query, Target, json_response};
use crate::kubelet::simulate;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
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

/// What the kubelet of a node that runs real containers says (its Summary API): the
/// node's usage, and each measured pod's containers' by (namespace, name).
#[derive(Debug, Default)]
struct Measured {
    node: Option<Usage>,
    pods: HashMap<(String, String), Vec<(String, Usage)>>,
}

/// A Summary API reading's CPU (`usageNanoCores`) and memory (`workingSetBytes`); none
/// while the CPU rate is not known (a single reading), as metrics-server leaves out.
fn summary_usage(stats: &Value) -> Option<Usage> {
    let nano_cores = stats.pointer("/cpu/usageNanoCores").and_then(Value::as_u64)?;
    let memory = stats.pointer("/memory/workingSetBytes").and_then(Value::as_u64).unwrap_or(0);
    let cpu: Quantity = format!("{nano_cores}n").parse().ok()?;
    let memory: Quantity = memory.to_string().parse().ok()?;
    Some(Usage::from([("cpu".to_string(), cpu), ("memory".to_string(), memory)]))
}

fn read_summary(summary: &Value) -> Measured {
    let mut measured = Measured { node: summary.get("node").and_then(summary_usage), pods: HashMap::new() };
    for pod in summary.get("pods").and_then(Value::as_array).into_iter().flatten() {
        let containers: Option<Vec<(String, Usage)>> = pod
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| Some((text(c, "/name").to_string(), summary_usage(c)?)))
            .collect();
        // A pod with a container not measured yet is left out whole, as metrics-server does.
        if let Some(containers) = containers.filter(|c| !c.is_empty()) {
            let key = (text(pod, "/podRef/namespace").to_string(), text(pod, "/podRef/name").to_string());
            measured.pods.insert(key, containers);
        }
    }
    measured
}

fn runs_processes(node: &Value) -> bool {
    text(node, "/metadata/annotations/kubeyard.dev~1runtime") == "process"
}

/// How long a kubelet has to answer, body included.
const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Asks each of `nodes`' kubelets at once (the Ready ones: metrics-server skips the
/// others); a node that does not answer within `SCRAPE_TIMEOUT` is left out.
async fn scrape<'n>(server: &ApiServer, nodes: impl Iterator<Item = &'n Value>) -> HashMap<String, Measured> {
    let wanted = nodes.filter(|node| runs_processes(node) && kubeyard_compiler::node::is_ready(node));
    let asked = wanted.map(|node| async move {
        let name = text(node, "/metadata/name");
        let kubelet = super::logs::kubelet_endpoint(node)?;
        let asking = async {
            let response = super::logs::kubelet_get(server, name, &kubelet, "/stats/summary").await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.into_body().collect().await.ok().map(|body| body.to_bytes())
        };
        let body = tokio::time::timeout(SCRAPE_TIMEOUT, asking).await.ok()??;
        let summary: Value = serde_json::from_slice(&body).ok()?;
        Some((name.to_string(), read_summary(&summary)))
    });
    futures_util::future::join_all(asked).await.into_iter().flatten().collect()
}

/// A pod's containers' usage, when it can be known: a running pod on a simulated node,
/// or one its real node has measured.
fn pod_usage(
    pod: &Value,
    nodes: &HashMap<String, Value>,
    measured: &HashMap<String, Measured>,
) -> Option<Vec<(String, Usage)>> {
    if text(pod, "/status/phase") != "Running" || pod.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    let node_name = text(pod, "/spec/nodeName");
    let node = nodes.get(node_name)?;
    if runs_processes(node) {
        let key = (text(pod, "/metadata/namespace").to_string(), text(pod, "/metadata/name").to_string());
        return measured.get(node_name)?.pods.get(&key).cloned();
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
            let wanted: Vec<&Value> = pods
                .iter()
                .filter(|p| target.name.as_deref().is_none_or(|n| n == text(p, "/metadata/name")))
                .filter(|p| target.name.is_some() || filter.matches(p))
                .collect();
            let mut on: Vec<&str> = wanted.iter().map(|p| text(p, "/spec/nodeName")).collect();
            on.sort_unstable();
            on.dedup();
            let measured = scrape(server, on.iter().filter_map(|name| nodes.get(*name))).await;
            let mut items = Vec::new();
            for pod in wanted {
                let Some(containers) = pod_usage(pod, &nodes, &measured) else { continue };
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
            let wanted: Vec<&Value> = node_list
                .iter()
                .filter(|node| {
                    let name = text(node, "/metadata/name");
                    target.name.as_deref().is_none_or(|n| n == name)
                        && (target.name.is_some() || node_filter.matches(node))
                })
                .collect();
            let measured = scrape(server, wanted.iter().copied()).await;
            let mut per_node: HashMap<&str, Usage> = HashMap::new();
            for pod in &pods {
                let on = nodes.get(text(pod, "/spec/nodeName"));
                if on.is_none_or(runs_processes) {
                    continue;
                }
                for (_, usage) in pod_usage(pod, &nodes, &measured).unwrap_or_default() {
                    add(per_node.entry(text(pod, "/spec/nodeName")).or_default(), &usage);
                }
            }
            let mut items = Vec::new();
            for node in wanted {
                let name = text(node, "/metadata/name");
                let usage = if runs_processes(node) {
                    // The kubelet's own count: its agent and its containers.
                    let Some(usage) = measured.get(name).and_then(|m| m.node.clone()) else { continue };
                    usage
                } else {
                    per_node.get(name).cloned().unwrap_or_default()
                };
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
        let none = HashMap::new();
        let containers = pod_usage(&pod("node-1", "Running"), &nodes, &none).unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(usage_json(&containers[0].1), json!({"cpu": "250m", "memory": "65536Ki"}));
        assert!(pod_usage(&pod("node-1", "Pending"), &nodes, &none).is_none(), "not running: no metrics yet");
        assert!(
            pod_usage(&pod("node-2", "Running"), &nodes, &none).is_none(),
            "a real node's pods are measured by its kubelet, not annotated"
        );
        let mut total = Usage::new();
        for (_, usage) in &containers {
            add(&mut total, usage);
        }
        assert_eq!(usage_json(&total), json!({"cpu": "500m", "memory": "131072Ki"}));
        let quiet = json!({"metadata": {"name": "idle"}, "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
                           "status": {"phase": "Running"}});
        assert_eq!(usage_json(&pod_usage(&quiet, &nodes, &none).unwrap()[0].1), json!({"cpu": "0m", "memory": "0Ki"}));
    }

    #[test]
    fn a_real_node_reports_what_its_kubelet_measured() {
        let nodes = HashMap::from([(
            "node-2".to_string(),
            json!({"metadata": {"name": "node-2", "annotations": {"kubeyard.dev/runtime": "process"}}}),
        )]);
        let summary = json!({
            "node": {"nodeName": "node-2", "cpu": {"usageNanoCores": 1_200_000_000u64}, "memory": {"workingSetBytes": 52_428_800}},
            "pods": [
                {"podRef": {"namespace": "shop", "name": "web", "uid": "u1"},
                 "containers": [{"name": "app", "cpu": {"usageNanoCores": 250_000_001u64}, "memory": {"workingSetBytes": 2_097_152}}]},
                {"podRef": {"namespace": "shop", "name": "fresh", "uid": "u2"},
                 "containers": [{"name": "app", "cpu": {"usageCoreNanoSeconds": 5}, "memory": {"workingSetBytes": 1024}}]}
            ]
        });
        let measured = HashMap::from([("node-2".to_string(), read_summary(&summary))]);
        assert_eq!(usage_json(measured["node-2"].node.as_ref().unwrap()), json!({"cpu": "1200m", "memory": "51200Ki"}));
        let pod = |name: &str| {
            json!({"metadata": {"namespace": "shop", "name": name}, "spec": {"nodeName": "node-2", "containers": [{"name": "app"}]},
                   "status": {"phase": "Running"}})
        };
        let web = pod_usage(&pod("web"), &nodes, &measured).unwrap();
        // Nanocores round up to the next millicore, as metrics-server's quantities print.
        assert_eq!(web, vec![("app".to_string(), summary_usage(&summary["pods"][0]["containers"][0]).unwrap())]);
        assert_eq!(usage_json(&web[0].1), json!({"cpu": "251m", "memory": "2048Ki"}));
        assert!(pod_usage(&pod("fresh"), &nodes, &measured).is_none(), "measured once: no CPU rate yet");
        assert!(pod_usage(&pod("web"), &nodes, &HashMap::new()).is_none(), "a node that did not answer");
    }
}
