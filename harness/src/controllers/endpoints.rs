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
    if selector_of(&service).is_none() || service.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = key_of_object(service.as_ref());
    if !context.expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = service.namespace().unwrap_or_else(|| "default".into());
    let pods = context.pods.in_namespace(&namespace);
    let current = context.endpoints.get(&namespace, &service.name_any());
    let change = decide(&service, &pods, current.as_deref())?;
    let endpoints: Api<Endpoints> = Api::namespaced(context.client.clone(), &namespace);
    let written = match change {
        None => None,
        Some(Change::Create(desired)) => Some(endpoints.create(&PostParams::default(), &desired).await?),
        Some(Change::Replace(desired)) => {
            Some(endpoints.replace(&desired.name_any(), &PostParams::default(), &desired).await?)
        }
    };
    // The next pass compares with the cache: it waits until it holds this write.
    let noted = Written::default();
    if let Some(written) = written {
        noted.note(&written);
    }
    context.expected.expect(&key, &noted);
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// The write a pass makes: the Service's Endpoints made, or replaced (against the
/// version read) because its subsets or labels changed.
#[derive(Debug, PartialEq)]
enum Change {
    Create(Endpoints),
    Replace(Endpoints),
}

/// What the Endpoints of `service` should be, from the pods of its namespace it selects,
/// against what the cache holds (`current`); `None` when it already is.
fn decide(service: &Service, pods: &[Arc<Pod>], current: Option<&Endpoints>) -> Result<Option<Change>, Error> {
    let mut desired = desired(service, pods)?;
    Ok(match current {
        None => Some(Change::Create(desired)),
        Some(current) if current.subsets != desired.subsets || current.metadata.labels != desired.metadata.labels => {
            desired.metadata.resource_version = current.metadata.resource_version.clone();
            Some(Change::Replace(desired))
        }
        Some(_) => None,
    })
}

/// The Endpoints listing the pods the Service selects as it serves them.
fn desired(service: &Service, pods: &[Arc<Pod>]) -> Result<Endpoints, Error> {
    let selector = selector_of(service);
    let namespace = service.namespace().unwrap_or_else(|| "default".into());
    let service_json = serde_json::to_value(service).unwrap_or(Value::Null);
    let publish_not_ready = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    // Subsets group pods that serve the same ports.
    let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in pods {
        let selected = selector.as_ref().is_some_and(|s| s.matches(pod.labels()));
        if !selected || pod.meta().deletion_timestamp.is_some() {
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
        "metadata": {"name": service.name_any(), "namespace": namespace, "labels": labels},
    });
    // As stored: no subsets at all rather than an empty list.
    if !subsets.is_empty() {
        wanted["subsets"] = json!(subsets);
    }
    serde_json::from_value(wanted).map_err(|e| Error::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn service(publish_not_ready: bool, labels: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": labels},
            "spec": {"selector": {"app": "web"}, "publishNotReadyAddresses": publish_not_ready,
                     "ports": [{"name": "http", "port": 80, "targetPort": "web"}]},
        }))
        .unwrap()
    }

    /// A pod `name` labelled `app`, at `ip` (empty: none yet), serving `port_name` on 8080.
    fn pod(name: &str, app: &str, ip: &str, ready: bool, port_name: &str) -> Arc<Pod> {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"), "labels": {"app": app}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx",
                     "ports": [{"name": port_name, "containerPort": 8080}]}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if !ip.is_empty() {
            pod["status"]["podIP"] = json!(ip);
        }
        Arc::new(serde_json::from_value(pod).unwrap())
    }

    fn ips(subset: &Value, field: &str) -> Vec<String> {
        subset[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["ip"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn subsets(endpoints: &Endpoints) -> Vec<Value> {
        endpoints.subsets.iter().flatten().map(|s| serde_json::to_value(s).unwrap()).collect()
    }

    #[test]
    fn selected_pods_with_an_address_are_listed_ready_or_not() {
        let mut deleting = pod("d", "web", "10.0.0.4", true, "web").as_ref().clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let pods = vec![
            pod("a", "web", "10.0.0.1", true, "web"),
            pod("b", "web", "10.0.0.2", false, "web"),
            pod("c", "web", "", true, "web"),
            Arc::new(deleting),
            pod("e", "db", "10.0.0.5", true, "web"),
            pod("f", "web", "10.0.0.6", true, "other"),
        ];
        // (publishNotReadyAddresses, ready addresses, not-ready addresses) of the subset
        // serving port 8080; pod `f` lacks the named port and stands apart, with no ports.
        let cases = [(false, vec!["10.0.0.1"], vec!["10.0.0.2"]), (true, vec!["10.0.0.1", "10.0.0.2"], vec![])];
        for (publish, ready, not_ready) in cases {
            let endpoints = desired(&service(publish, json!({})), &pods).unwrap();
            let subsets = subsets(&endpoints);
            assert_eq!(subsets.len(), 2, "{subsets:?}");
            let serving = subsets.iter().find(|s| s["ports"][0]["port"] == 8080).unwrap();
            assert_eq!(serving["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
            assert_eq!(ips(serving, "addresses"), ready, "publishNotReadyAddresses: {publish}");
            assert_eq!(ips(serving, "notReadyAddresses"), not_ready, "publishNotReadyAddresses: {publish}");
            assert_eq!(serving["addresses"][0]["targetRef"]["name"], "a");
            assert_eq!(serving["addresses"][0]["nodeName"], "node-1");
            let portless = subsets.iter().find(|s| s["ports"].as_array().is_none_or(Vec::is_empty)).unwrap();
            assert_eq!(ips(portless, "addresses"), ["10.0.0.6"]);
        }
        let empty = desired(&service(false, json!({})), &[]).unwrap();
        assert_eq!(empty.subsets, None, "no subsets at all, as stored");
    }

    #[test]
    fn endpoints_are_made_then_replaced_only_when_they_change() {
        let pods = vec![pod("a", "web", "10.0.0.1", true, "web")];
        let service = service(false, json!({"tier": "front"}));
        let Some(Change::Create(made)) = decide(&service, &pods, None).unwrap() else { panic!("made first") };
        let mut stored = made.clone();
        stored.metadata.resource_version = Some("42".into());
        assert_eq!(decide(&service, &pods, Some(&stored)).unwrap(), None, "nothing changed");
        let moved = vec![pod("a", "web", "10.0.0.9", true, "web")];
        let Some(Change::Replace(replaced)) = decide(&service, &moved, Some(&stored)).unwrap() else {
            panic!("a new address replaces them")
        };
        assert_eq!(replaced.metadata.resource_version.as_deref(), Some("42"), "against the version read");
        let relabelled = self::service(false, json!({"tier": "back"}));
        assert!(matches!(decide(&relabelled, &pods, Some(&stored)).unwrap(), Some(Change::Replace(_))));
    }
}
