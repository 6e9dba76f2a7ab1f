//! The EndpointSlice controller, as Kubernetes' (pkg/controller/endpointslice): each
//! Service with a selector gets `discovery.k8s.io/v1` EndpointSlices of its pods, labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io` (plus the Service's own labels, and
//! `service.kubernetes.io/headless` for a headless one), owned by the Service, named
//! `<service>-<random>`, `addressType: IPv4`.
//!
//! Each pod that has an IP and has not finished is an endpoint: its address, its
//! `ready`, `serving` and `terminating` conditions (a terminating pod is never ready
//! unless `publishNotReadyAddresses`), `nodeName`, the node's
//! `topology.kubernetes.io/zone`, a `targetRef` to the pod, and its `hostname` when its
//! `subdomain` is the Service (StatefulSet pods behind their governing Service). Pods are
//! grouped by the ports they serve (named target ports resolved per pod, as the
//! endpoints controller does), at most 100 endpoints to a slice. An endpoint stays in the
//! slice that already holds it, new ones fill slices with room before a new slice is
//! made, and slices left empty are deleted; a Service with no endpoints keeps one empty
//! placeholder slice, as Kubernetes does. IPv6 addresses and topology hints are left out.

use super::endpoints::{selecting, selector_of, target_port};
use super::same_content;
use super::{Error, Wiring};
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, key_of_object};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// `--max-endpoints-per-slice`'s default.
const MAX_ENDPOINTS: usize = 100;
/// Looked at again now and then: a node's zone label is not watched.
const RESYNC: Duration = Duration::from_secs(30);

struct Context {
    client: kube::Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    slices: Informer<EndpointSlice>,
    slices_expected: Expectations<EndpointSlice>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers) {
    let services = informers.services.clone();
    let wiring = Wiring::of(&informers.services)
        .owns(&informers.endpoint_slices)
        .watches(&informers.pods, move |pod| selecting(&services, &pod))
        .reads(&informers.nodes);
    let context = Context {
        client,
        pods: informers.pods.clone(),
        nodes: informers.nodes.clone(),
        slices: informers.endpoint_slices.clone(),
        slices_expected: Expectations::new(&informers.endpoint_slices),
    };
    wiring.run(reconcile, Arc::new(context)).await;
}

async fn reconcile(service: Arc<Service>, context: Arc<Context>) -> Result<Action, Error> {
    let Some(selector) = selector_of(&service) else { return Ok(Action::await_change()) };
    let external = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    if external || service.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = key_of_object(service.as_ref());
    if !context.slices_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = service.namespace().unwrap_or_else(|| "default".into());
    let pods: Vec<Pod> = context
        .pods
        .in_namespace(&namespace)
        .into_iter()
        .filter(|p| selector.matches(p.labels()))
        .map(|p| p.as_ref().clone())
        .collect();
    let zones = if pods.is_empty() { HashMap::new() } else { zones(&context.nodes) };
    let wanted = desired(&service, pods, &zones);
    let slices: Api<EndpointSlice> = Api::namespaced(context.client.clone(), &namespace);
    let name = service.name_any();
    let existing: Vec<EndpointSlice> = context
        .slices
        .in_namespace(&namespace)
        .into_iter()
        .filter(|s| {
            let labels = s.labels();
            labels.get(SERVICE_NAME_LABEL) == Some(&name)
                && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME)
        })
        .map(|s| s.as_ref().clone())
        .collect();
    let plan = plan(wanted, existing);
    let written = Written::default();
    let result = apply(&slices, &service, plan, &written).await;
    // The next pass compares with the cache: it waits until it holds these writes.
    context.slices_expected.expect(&key, &written);
    result.map(|()| Action::requeue(RESYNC))
}

/// Each node's zone, where it has one.
fn zones(nodes: &Informer<Node>) -> HashMap<String, String> {
    nodes.all().into_iter().filter_map(|n| Some((n.name_any(), n.labels().get(ZONE_LABEL)?.clone()))).collect()
}

/// A pod's IPv4 address, if it has one.
fn ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|ip| ip.ip.clone());
    status.pod_ip.clone().into_iter().chain(listed).find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// `ShouldPodBeInEndpoints` (terminating pods included): not finished, with an address.
fn listed(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && ipv4(pod).is_some()
}

/// `podToEndpoint`.
fn endpoint(service: &Service, pod: &Pod, zones: &HashMap<String, String>) -> Option<Endpoint> {
    let publish_not_ready = service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let serving = super::pods::is_ready(pod);
    let spec = pod.spec.as_ref();
    let node = spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    // Named by its hostname when it is one of this Service's subdomain's hosts.
    let hostname = spec
        .filter(|s| s.subdomain.as_deref() == Some(service.name_any().as_str()))
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    let endpoint = json!({
        "addresses": [ipv4(pod)?],
        "conditions": {
            "ready": publish_not_ready || (serving && !terminating),
            "serving": serving,
            "terminating": terminating,
        },
        "targetRef": {"kind": "Pod", "namespace": pod.namespace(), "name": pod.name_any(), "uid": pod.uid()},
        "nodeName": node,
        "zone": node.as_ref().and_then(|n| zones.get(n)),
        "hostname": hostname,
    });
    serde_json::from_value(endpoint).ok()
}

/// `getEndpointPorts`: the Service's ports this pod serves, named as the Service names
/// them.
fn endpoint_ports(service: &Value, pod: &Value) -> Vec<EndpointPort> {
    let mut ports = Vec::new();
    for port in service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        let Some(number) = target_port(port, pod) else { continue };
        ports.push(EndpointPort {
            name: Some(port.get("name").and_then(Value::as_str).unwrap_or_default().to_string()),
            port: i32::try_from(number).ok(),
            protocol: Some(port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string()),
            app_protocol: port.get("appProtocol").and_then(Value::as_str).map(str::to_string),
        });
    }
    ports
}

/// The endpoints wanted, grouped by the ports they serve (keyed by the ports' JSON), each
/// group in pod name order.
type Groups = BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)>;

fn desired(service: &Service, mut pods: Vec<Pod>, zones: &HashMap<String, String>) -> Groups {
    let service_json = serde_json::to_value(service).unwrap_or(Value::Null);
    pods.sort_by_key(|p| p.name_any());
    let mut groups = Groups::new();
    for pod in pods.iter().filter(|p| listed(p)) {
        let Some(endpoint) = endpoint(service, pod, zones) else { continue };
        let ports = endpoint_ports(&service_json, &serde_json::to_value(pod).unwrap_or(Value::Null));
        let key = ports_key(&ports);
        groups.entry(key).or_insert_with(|| (ports, Vec::new())).1.push(endpoint);
    }
    groups
}

fn ports_key(ports: &[EndpointPort]) -> String {
    serde_json::to_string(ports).unwrap_or_default()
}

/// Which endpoint this is, across passes: the pod it stands for.
fn endpoint_key(endpoint: &Endpoint) -> String {
    match endpoint.target_ref.as_ref().and_then(|r| r.uid.clone()) {
        Some(uid) => uid,
        None => endpoint.addresses.join(","),
    }
}

/// One slice to end up with: an existing one (kept or rewritten) or a new one.
struct Wanted {
    existing: Option<EndpointSlice>,
    ports: Option<Vec<EndpointPort>>,
    endpoints: Vec<Endpoint>,
}

struct Plan {
    slices: Vec<Wanted>,
    delete: Vec<EndpointSlice>,
}

/// `reconcileByPortMapping`, per group of ports: endpoints stay where they are, new ones
/// fill slices with room, then new slices; what is left empty goes.
fn plan(groups: Groups, existing: Vec<EndpointSlice>) -> Plan {
    let mut by_ports: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
    let mut delete = Vec::new();
    for slice in existing {
        if slice.address_type == "IPv4" {
            by_ports.entry(ports_key(slice.ports.as_deref().unwrap_or_default())).or_default().push(slice);
        } else {
            delete.push(slice);
        }
    }
    let mut slices = Vec::new();
    for (key, (ports, endpoints)) in groups {
        let mut current = by_ports.remove(&key).unwrap_or_default();
        current.sort_by_key(|s| s.name_any());
        slices.extend(fill(current, ports, endpoints, &mut delete));
    }
    delete.extend(by_ports.into_values().flatten());
    if slices.is_empty() {
        // No endpoints at all: one empty slice says so, an existing one if it is empty.
        let placeholder =
            delete.iter().position(|s| s.endpoints.is_empty() && s.ports.as_ref().is_none_or(Vec::is_empty));
        let existing = placeholder.map(|i| delete.remove(i));
        slices.push(Wanted { existing, ports: None, endpoints: Vec::new() });
    }
    Plan { slices, delete }
}

fn fill(
    current: Vec<EndpointSlice>,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
    delete: &mut Vec<EndpointSlice>,
) -> Vec<Wanted> {
    let mut pending: BTreeMap<String, Endpoint> = endpoints.iter().map(|e| (endpoint_key(e), e.clone())).collect();
    let order: Vec<String> = endpoints.iter().map(endpoint_key).collect();
    let mut slices = Vec::new();
    for slice in current {
        let kept: Vec<Endpoint> =
            slice.endpoints.iter().filter_map(|e| pending.remove(&endpoint_key(e))).take(MAX_ENDPOINTS).collect();
        if kept.is_empty() {
            delete.push(slice);
        } else {
            slices.push(Wanted { existing: Some(slice), ports: Some(ports.clone()), endpoints: kept });
        }
    }
    let mut fresh = order.into_iter().filter_map(|key| pending.remove(&key)).peekable();
    for slice in &mut slices {
        while slice.endpoints.len() < MAX_ENDPOINTS
            && let Some(endpoint) = fresh.next()
        {
            slice.endpoints.push(endpoint);
        }
    }
    while fresh.peek().is_some() {
        let endpoints: Vec<Endpoint> = fresh.by_ref().take(MAX_ENDPOINTS).collect();
        slices.push(Wanted { existing: None, ports: Some(ports.clone()), endpoints });
    }
    slices
}

/// `setEndpointSliceLabels`: the Service's labels, then the controller's own.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    labels.retain(|k, _| k != SERVICE_NAME_LABEL && k != MANAGED_BY_LABEL && k != HEADLESS_LABEL);
    if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.into(), service.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

async fn apply(slices: &Api<EndpointSlice>, service: &Service, plan: Plan, written: &Written) -> Result<(), Error> {
    let owner = super::owner_reference(service)?;
    let labels = slice_labels(service);
    for wanted in plan.slices {
        let mut slice = wanted.existing.clone().unwrap_or_default();
        slice.metadata.labels = Some(labels.clone());
        slice.metadata.owner_references = Some(vec![owner.clone()]);
        slice.address_type = "IPv4".into();
        slice.endpoints = wanted.endpoints;
        slice.ports = wanted.ports;
        match &wanted.existing {
            None => {
                slice.metadata.generate_name = Some(format!("{}-", service.name_any()));
                slice.metadata.namespace = service.namespace();
                written.note(&slices.create(&PostParams::default(), &slice).await?);
            }
            Some(existing) if !same_slice(existing, &slice) => {
                written.note(&slices.replace(&existing.name_any(), &PostParams::default(), &slice).await?);
            }
            Some(_) => {}
        }
    }
    for slice in plan.delete {
        match slices.delete(&slice.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn same_slice(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    let content = |s: &EndpointSlice| {
        json!({"labels": s.metadata.labels, "owners": s.metadata.owner_references, "endpoints": s.endpoints,
               "ports": s.ports, "addressType": s.address_type})
    };
    same_content(&content(a), &content(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint_for(name: &str) -> Endpoint {
        serde_json::from_value(json!({"addresses": [format!("10.0.0.{}", name.len())],
                                      "targetRef": {"kind": "Pod", "name": name, "uid": name}}))
        .unwrap()
    }

    fn slice(name: &str, endpoints: &[&str], ports: &[EndpointPort]) -> EndpointSlice {
        EndpointSlice {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            address_type: "IPv4".into(),
            endpoints: endpoints.iter().map(|e| endpoint_for(e)).collect(),
            ports: Some(ports.to_vec()),
        }
    }

    fn port(number: i32) -> EndpointPort {
        EndpointPort { name: Some(String::new()), port: Some(number), protocol: Some("TCP".into()), app_protocol: None }
    }

    fn names(wanted: &Wanted) -> Vec<String> {
        wanted.endpoints.iter().map(endpoint_key).collect()
    }

    #[test]
    fn endpoints_stay_in_their_slice_and_new_ones_fill_up_to_a_hundred() {
        let ports = vec![port(80)];
        let mut groups = Groups::new();
        let mut wanted: Vec<String> = (0..150).map(|i| format!("p{i:03}")).collect();
        wanted.retain(|p| p != "p001");
        let endpoints = wanted.iter().map(|p| endpoint_for(p)).collect();
        groups.insert(ports_key(&ports), (ports.clone(), endpoints));
        let existing = vec![slice("s-a", &["p000", "p001", "p149"], &ports), slice("s-b", &["p001"], &ports)];
        let plan = plan(groups, existing);
        assert_eq!(plan.delete.iter().map(|s| s.name_any()).collect::<Vec<_>>(), ["s-b"], "left empty");
        assert_eq!(plan.slices.len(), 2);
        assert_eq!(plan.slices[0].existing.as_ref().map(|s| s.name_any()).as_deref(), Some("s-a"));
        assert_eq!(&names(&plan.slices[0])[..3], ["p000", "p149", "p002"], "kept ones first, then new ones");
        assert_eq!(plan.slices[0].endpoints.len(), MAX_ENDPOINTS);
        assert!(plan.slices[1].existing.is_none());
        assert_eq!(plan.slices[1].endpoints.len(), 149 - MAX_ENDPOINTS);
    }

    #[test]
    fn a_service_without_endpoints_keeps_one_placeholder() {
        let existing = vec![slice("s-a", &["p0"], &[port(80)]), slice("s-b", &[], &[])];
        let plan = plan(Groups::new(), existing);
        assert_eq!(plan.slices.len(), 1);
        assert_eq!(plan.slices[0].existing.as_ref().map(|s| s.name_any()).as_deref(), Some("s-b"));
        assert_eq!(plan.delete.iter().map(|s| s.name_any()).collect::<Vec<_>>(), ["s-a"]);
        let plan = super::plan(Groups::new(), Vec::new());
        assert!(plan.slices[0].existing.is_none() && plan.slices[0].ports.is_none());
    }

    #[test]
    fn pods_become_endpoints_with_conditions() {
        let service: Service = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
        .unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "default", "uid": "u0", "deletionTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "hostname": "web-0", "subdomain": "web",
                     "containers": [{"name": "a", "image": "a", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.244.1.2", "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        let zones = HashMap::from([("n1".to_string(), "z1".to_string())]);
        let endpoint = serde_json::to_value(endpoint(&service, &pod, &zones).unwrap()).unwrap();
        assert_eq!(endpoint["conditions"], json!({"ready": false, "serving": true, "terminating": true}));
        assert_eq!((endpoint["zone"].as_str(), endpoint["hostname"].as_str()), (Some("z1"), Some("web-0")));
        let ports = endpoint_ports(&serde_json::to_value(&service).unwrap(), &serde_json::to_value(&pod).unwrap());
        assert_eq!((ports[0].port, ports[0].name.as_deref()), (Some(8080), Some("http")));
    }
}
