//! The endpoints controller: each Service with a selector gets an `Endpoints` object of
//! the same name listing the pods it selects, ready ones under `addresses` and the rest
//! under `notReadyAddresses`, with the Service's ports resolved against each pod (a
//! named `targetPort` is looked up in the pod's container ports). Pods with no IP yet are
//! left out, as Kubernetes leaves them.

use super::{Error, Wiring};
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, key_of_object};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

struct Context {
    client: kube::Client,
    pods: Informer<Pod>,
    endpoints: Informer<Endpoints>,
    expected: Expectations<Endpoints>,
}

/// One subset being built: its ports, ready addresses and not-ready addresses.
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);

/// The Service's selector, when it selects some pods and not every one. Shared with the
/// EndpointSlice controller.
pub(super) fn selector_of(service: &Service) -> Option<Selector> {
    let selector = service.spec.as_ref()?.selector.as_ref()?;
    let map = serde_json::to_value(selector).ok()?;
    Selector::from_map(Some(&map)).ok().filter(|s| !s.is_nothing() && !s.is_everything())
}

/// The Services of a pod's namespace that select it: a pod's change concerns each of
/// them. Shared with the EndpointSlice controller.
pub(super) fn selecting(services: &Informer<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let labels = pod.labels();
    services
        .in_namespace(&pod.namespace().unwrap_or_default())
        .iter()
        .filter(|s| selector_of(s).is_some_and(|selector| selector.matches(labels)))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers) {
    let services = informers.services.clone();
    let wiring = Wiring::of(&informers.services)
        .watches(&informers.pods, move |pod| selecting(&services, &pod))
        .reads(&informers.endpoints);
    let context = Context {
        client,
        pods: informers.pods.clone(),
        endpoints: informers.endpoints.clone(),
        expected: Expectations::new(&informers.endpoints),
    };
    wiring.run(reconcile, Arc::new(context)).await;
}

/// `FindPort`: the container port a Service port's `targetPort` means on this pod, a
/// number as it is, a name looked up among the pod's container ports of the same
/// protocol; `None` when the pod has no port of that name. Shared with the
/// EndpointSlice controller.
pub(super) fn target_port(service_port: &Value, pod: &Value) -> Option<i64> {
    let target = service_port.get("targetPort").unwrap_or(&service_port["port"]);
    let protocol = service_port.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
    match target {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c.get("ports").and_then(Value::as_array).into_iter().flatten())
            .find(|p| {
                p.get("name").and_then(Value::as_str) == Some(name.as_str())
                    && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
            })
            .and_then(|p| p.get("containerPort").and_then(Value::as_i64)),
        _ => None,
    }
}

/// The Service's ports as this pod serves them; a named port the pod lacks is left out.
fn ports(service: &Value, pod: &Value) -> Vec<Value> {
    let mut resolved = Vec::new();
    for port in service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        if let Some(number) = target_port(port, pod) {
            let mut endpoint_port =
                json!({"port": number, "protocol": port.get("protocol").cloned().unwrap_or(json!("TCP"))});
            if let Some(name) = port.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                endpoint_port["name"] = json!(name);
            }
            resolved.push(endpoint_port);
        }
    }
    resolved
}

async fn reconcile(service: Arc<Service>, context: Arc<Context>) -> Result<Action, Error> {
    let Some(selector) = selector_of(&service) else { return Ok(Action::await_change()) };
    if service.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = key_of_object(service.as_ref());
    if !context.expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = service.namespace().unwrap_or_else(|| "default".into());
    let name = service.name_any();
    let service_json = serde_json::to_value(service.as_ref()).unwrap_or(Value::Null);
    let publish_not_ready = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    // Subsets group pods that serve the same ports.
    let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in context.pods.in_namespace(&namespace) {
        if pod.meta().deletion_timestamp.is_some() || !selector.matches(pod.labels()) {
            continue;
        }
        let pod = serde_json::to_value(pod.as_ref()).unwrap_or(Value::Null);
        let Some(ip) = pod.pointer("/status/podIP").and_then(Value::as_str).filter(|ip| !ip.is_empty()) else {
            continue;
        };
        let mut address = json!({"ip": ip, "targetRef": {
            "kind": "Pod", "name": pod["metadata"]["name"], "namespace": namespace, "uid": pod["metadata"]["uid"],
        }});
        if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            address["nodeName"] = json!(node);
        }
        let ports = ports(&service_json, &pod);
        let entry =
            subsets.entry(Value::Array(ports.clone()).to_string()).or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if kubeyard_compiler::pod::is_ready(&pod) || publish_not_ready {
            entry.1.push(address);
        } else {
            entry.2.push(address);
        }
    }
    let subsets: Vec<Value> = subsets
        .into_values()
        .map(|(ports, ready, not_ready)| {
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subset
        })
        .collect();
    let labels = service_json.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    let mut wanted = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    });
    // As stored: no subsets at all rather than an empty list.
    if !subsets.is_empty() {
        wanted["subsets"] = json!(subsets);
    }
    let endpoints: Api<Endpoints> = Api::namespaced(context.client.clone(), &namespace);
    let mut desired: Endpoints = serde_json::from_value(wanted).map_err(|e| Error::Invalid(e.to_string()))?;
    let written = match context.endpoints.get(&namespace, &name) {
        None => Some(endpoints.create(&PostParams::default(), &desired).await?),
        Some(current) if current.subsets != desired.subsets || current.metadata.labels != desired.metadata.labels => {
            desired.metadata.resource_version = current.metadata.resource_version.clone();
            Some(endpoints.replace(&name, &PostParams::default(), &desired).await?)
        }
        Some(_) => None,
    };
    // The next pass compares with the cache: it waits until it holds this write.
    let noted = Written::default();
    if let Some(written) = written {
        noted.note(&written);
    }
    context.expected.expect(&key, &noted);
    Ok(Action::requeue(Duration::from_secs(30)))
}
