//! Tables, the form `kubectl get` asks for (`Accept: application/json;as=Table`): the
//! server chooses the columns, as Kubernetes' printers do for each kind.

use super::Query;
use super::resources::Resource;
use crate::clock;
use serde_json::{Value, json};

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn from_query(query: &Query) -> Include {
        match query.get("includeObject").map(String::as_str) {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

fn columns(kind: &str) -> &'static [(&'static str, &'static str, u8)] {
    match kind {
        "Pod" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "Deployment" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "ReplicaSet" | "ReplicationController" => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "StatefulSet" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        // No printer of its own in Kubernetes: the generic one's columns.
        "CustomResourceDefinition" => &[("Name", "string", 0), ("Created At", "date", 0)],
        "DaemonSet" => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "Job" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "CronJob" => &[
            ("Name", "string", 0),
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "HorizontalPodAutoscaler" => &[
            ("Name", "string", 0),
            ("Reference", "string", 0),
            ("Targets", "string", 0),
            ("MinPods", "string", 0),
            ("MaxPods", "string", 0),
            ("Replicas", "string", 0),
            ("Age", "string", 0),
        ],
        "PodDisruptionBudget" => &[
            ("Name", "string", 0),
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            ("Age", "string", 0),
        ],
        // Kubernetes 1.32's order (1.33 moved Age last).
        "ResourceQuota" => {
            &[("Name", "string", 0), ("Age", "string", 0), ("Request", "string", 0), ("Limit", "string", 0)]
        }
        "EndpointSlice" => &[
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "ServiceAccount" => &[("Name", "string", 0), ("Secrets", "string", 0), ("Age", "string", 0)],
        "ControllerRevision" => {
            &[("Name", "string", 0), ("Controller", "string", 0), ("Revision", "integer", 0), ("Age", "string", 0)]
        }
        "Lease" => &[("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
        "Ingress" => &[
            ("Name", "string", 0),
            ("Class", "string", 0),
            ("Hosts", "string", 0),
            ("Address", "string", 0),
            ("Ports", "string", 0),
            ("Age", "string", 0),
        ],
        "Service" => &[
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "Namespace" => &[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        "Node" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "ConfigMap" => &[("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            &[("Name", "string", 0), ("Webhooks", "integer", 0), ("Age", "string", 0)]
        }
        "Endpoints" => &[("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        "Secret" => &[("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        "Event" => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        "PersistentVolumeClaim" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Age", "string", 0),
        ],
        "PersistentVolume" => &[
            ("Name", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Reason", "string", 0),
            ("Age", "string", 0),
        ],
        "StorageClass" => &[
            ("Name", "string", 0),
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            ("Age", "string", 0),
        ],
        _ => &[("Name", "string", 0), ("Age", "string", 0)],
    }
}

/// Access modes as kubectl abbreviates them (`RWO,ROX`).
fn access_modes(object: &Value, pointer: &str) -> String {
    let modes: Vec<&str> = object
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|mode| match mode {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    modes.join(",")
}

/// An unset VolumeAttributesClass, as kubectl shows it.
fn attributes_class(object: &Value) -> String {
    Some(string(object, "/spec/volumeAttributesClassName")).filter(|c| !c.is_empty()).unwrap_or("<unset>").to_string()
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn string<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn or_none(text: &str) -> String {
    if text.is_empty() { "<none>".into() } else { text.to_string() }
}

/// The ready addresses with their ports, as kubectl prints them: three, then how many
/// more (`10.244.1.2:80,10.244.2.2:80,10.244.3.2:80 + 2 more...`).
fn endpoints(object: &Value) -> String {
    let mut all = Vec::new();
    for subset in object.get("subsets").and_then(Value::as_array).into_iter().flatten() {
        let ports: Vec<i64> =
            subset.get("ports").and_then(Value::as_array).into_iter().flatten().map(|p| int(p, "/port")).collect();
        for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
            let ip = string(address, "/ip");
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            all.extend(ports.iter().map(|port| format!("{ip}:{port}")));
        }
    }
    match all.len() {
        0 => "<none>".into(),
        1..=3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

/// A pod's READY counts, RESTARTS and STATUS, as kubectl's printer computes them
/// (`printPod`): init containers first (`Init:0/2`, `Init:CrashLoopBackOff`), then the
/// first container waiting or terminated (`CrashLoopBackOff`, `Completed`, `Error`,
/// `ExitCode:2`), `Terminating` while being deleted.
fn pod_status(object: &Value) -> (usize, usize, String, String) {
    let list = |pointer: &str| object.pointer(pointer).and_then(Value::as_array).cloned().unwrap_or_default();
    let (init_specs, specs) = (list("/spec/initContainers"), list("/spec/containers"));
    let (init_statuses, statuses) = (list("/status/initContainerStatuses"), list("/status/containerStatuses"));
    let sidecar = |name: &str| init_specs.iter().any(|c| c["name"] == name && c["restartPolicy"] == "Always");
    let total = specs.len() + init_specs.iter().filter(|c| c["restartPolicy"] == "Always").count();
    let mut ready = 0;
    // Restarts and the last one's time: every init container's while the pod initializes,
    // then the sidecars' and the containers' (`printPod`).
    let note = |restarts: &mut (i64, Option<String>), status: &Value| {
        restarts.0 += int(status, "/restartCount");
        if let Some(finished) = status.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str)
            && restarts.1.as_deref().is_none_or(|l| finished > l)
        {
            restarts.1 = Some(finished.to_string());
        }
    };
    let mut restarts: (i64, Option<String>) = (0, None);
    let mut sidecar_restarts: (i64, Option<String>) = (0, None);
    let mut reason = Some(string(object, "/status/reason"))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| string(object, "/status/phase"))
        .to_string();
    let gated = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".into();
    }
    let mut initializing = false;
    for (index, status) in init_statuses.iter().enumerate() {
        note(&mut restarts, status);
        let name = string(status, "/name");
        if sidecar(name) {
            note(&mut sidecar_restarts, status);
        }
        if sidecar(name) && status["started"] == true && status["ready"] == true {
            ready += 1;
        }
        let code = int(status, "/state/terminated/exitCode");
        if status.pointer("/state/terminated").is_some() && code == 0 {
            continue;
        }
        if sidecar(name) && status["started"] == true {
            continue;
        }
        initializing = true;
        reason = if let Some(terminated) = status.pointer("/state/terminated") {
            let why = string(terminated, "/reason");
            if !why.is_empty() {
                format!("Init:{why}")
            } else if int(terminated, "/signal") != 0 {
                format!("Init:Signal:{}", int(terminated, "/signal"))
            } else {
                format!("Init:ExitCode:{code}")
            }
        } else if let Some(waiting) = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty() && *w != "PodInitializing")
        {
            format!("Init:{waiting}")
        } else {
            format!("Init:{index}/{}", init_specs.len())
        };
        break;
    }
    let initialized = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Initialized" && c["status"] == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        let mut running = false;
        for status in statuses.iter().rev() {
            note(&mut restarts, status);
            if let Some(waiting) =
                status.pointer("/state/waiting/reason").and_then(Value::as_str).filter(|w| !w.is_empty())
            {
                reason = waiting.to_string();
            } else if let Some(terminated) = status.pointer("/state/terminated") {
                let why = string(terminated, "/reason");
                reason = if !why.is_empty() {
                    why.to_string()
                } else if int(terminated, "/signal") != 0 {
                    format!("Signal:{}", int(terminated, "/signal"))
                } else {
                    format!("ExitCode:{}", int(terminated, "/exitCode"))
                };
            } else if status["ready"] == true && status.pointer("/state/running").is_some() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            let pod_ready = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            reason = if pod_ready { "Running".into() } else { "NotReady".into() };
        }
    }
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        if string(object, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if !matches!(string(object, "/status/phase"), "Succeeded" | "Failed") {
            reason = "Terminating".into();
        }
    }
    let restarts = match (&restarts.1, restarts.0) {
        (Some(at), n) if n != 0 => format!("{n} ({} ago)", clock::age(Some(at))),
        (_, n) => n.to_string(),
    };
    (ready, total, restarts, reason)
}

/// A pod template's containers' names or images, comma-joined.
fn containers(object: &Value, spec: &str, field: &str) -> String {
    let containers = object.pointer(&format!("{spec}/containers")).and_then(Value::as_array).into_iter().flatten();
    containers.map(|c| string(c, &format!("/{field}"))).collect::<Vec<_>>().join(",")
}

/// A selector as kubectl prints it (`app=web,tier in (front)`), `<none>` when empty.
fn selector(value: Option<&Value>, plain_map: bool) -> String {
    let parsed = if plain_map {
        kubeyard_compiler::selector::Selector::from_map(value)
    } else {
        kubeyard_compiler::selector::Selector::from_label_selector(value)
    };
    match parsed {
        Ok(selector) if selector.is_everything() || selector.requirements().is_empty() => "<none>".into(),
        Ok(selector) => selector.to_string(),
        Err(_) => "<invalid>".into(),
    }
}

/// A map as `k=v,k2=v2`, `<none>` when empty.
fn pairs(value: Option<&Value>) -> String {
    let pairs: Vec<String> = value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if pairs.is_empty() { "<none>".into() } else { pairs.join(",") }
}

/// A Job's STATUS column (since 1.30).
fn job_status(object: &Value) -> &'static str {
    let condition = |kind: &str| {
        object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == kind && c["status"] == "True")
    };
    if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else if object.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if condition("Suspended") {
        "Suspended"
    } else if condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// Node roles from `node-role.kubernetes.io/<role>` and `kubernetes.io/role` labels.
fn node_roles(object: &Value) -> String {
    let mut roles = std::collections::BTreeSet::new();
    for (key, value) in object.pointer("/metadata/labels").and_then(Value::as_object).into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
            roles.insert(role.to_string());
        } else if key == "kubernetes.io/role"
            && let Some(role) = value.as_str().filter(|r| !r.is_empty())
        {
            roles.insert(role.to_string());
        }
    }
    if roles.is_empty() { "<none>".into() } else { roles.into_iter().collect::<Vec<_>>().join(",") }
}

/// A load balancer's ingress addresses, sorted and deduplicated.
fn load_balancer(object: &Value) -> Vec<String> {
    let ingress = object.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).into_iter().flatten();
    let mut found: Vec<String> = ingress
        .filter_map(|i| i.get("ip").or_else(|| i.get("hostname")).and_then(Value::as_str).map(str::to_string))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// A Service's EXTERNAL-IP.
fn external_ip(object: &Value) -> String {
    let external: Vec<String> = object
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.as_str().map(str::to_string))
        .collect();
    match string(object, "/spec/type") {
        "LoadBalancer" => {
            let mut all = load_balancer(object);
            all.extend(external);
            if all.is_empty() { "<pending>".into() } else { all.join(",") }
        }
        "ExternalName" => string(object, "/spec/externalName").to_string(),
        _ if external.is_empty() => "<none>".into(),
        _ => external.join(","),
    }
}

/// An autoscaler's TARGETS: up to two metrics, `cpu: 45%/80%`.
fn hpa_targets(object: &Value) -> String {
    let specs = object.pointer("/spec/metrics").and_then(Value::as_array).cloned().unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let current = object.pointer("/status/currentMetrics").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut shown = Vec::new();
    for (index, spec) in specs.iter().enumerate().take(2) {
        let now = current.get(index);
        let text = match string(spec, "/type") {
            "Resource" | "ContainerResource" => {
                let source = if spec["type"] == "Resource" { "resource" } else { "containerResource" };
                let name = string(spec, &format!("/{source}/name"));
                let target = &spec[source]["target"];
                let measured = now.map(|n| &n[source]["current"]);
                match target.get("averageValue").and_then(Value::as_str) {
                    Some(value) => {
                        let current =
                            measured.and_then(|m| m.get("averageValue")).and_then(Value::as_str).unwrap_or("<unknown>");
                        format!("{name}: {current}/{value}")
                    }
                    None => {
                        let current = measured
                            .and_then(|m| m.get("averageUtilization"))
                            .and_then(Value::as_i64)
                            .map_or("<unknown>".to_string(), |u| format!("{u}%"));
                        let wanted = target
                            .get("averageUtilization")
                            .and_then(Value::as_i64)
                            .map_or("<auto>".to_string(), |u| format!("{u}%"));
                        format!("{name}: {current}/{wanted}")
                    }
                }
            }
            other => {
                let source = match other {
                    "Pods" => "pods",
                    "Object" => "object",
                    _ => "external",
                };
                let target = &spec[source]["target"];
                let wanted = target
                    .get("averageValue")
                    .or_else(|| target.get("value"))
                    .and_then(Value::as_str)
                    .unwrap_or("<auto>");
                let current = now
                    .and_then(|n| {
                        n[source]["current"].get("averageValue").or_else(|| n[source]["current"].get("value"))
                    })
                    .and_then(Value::as_str)
                    .unwrap_or("<unknown>");
                let average = if other != "Pods" && target.get("averageValue").is_some() { " (avg)" } else { "" };
                format!("{current}/{wanted}{average}")
            }
        };
        shown.push(text);
    }
    let mut text = shown.join(", ");
    if specs.len() > 2 {
        text.push_str(&format!(" + {} more...", specs.len() - 2));
    }
    text
}

/// A ResourceQuota's REQUEST and LIMIT: `name: used/hard`, limits apart.
fn quota_usage(object: &Value) -> (String, String) {
    let hard = object.pointer("/status/hard").and_then(Value::as_object).cloned().unwrap_or_default();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (name, limit) in &hard {
        let used = object.pointer("/status/used").and_then(|u| u.get(name)).and_then(Value::as_str).unwrap_or("0");
        let text = format!("{name}: {used}/{}", limit.as_str().unwrap_or_default());
        if name.starts_with("limits.") { limits.push(text) } else { requests.push(text) }
    }
    (requests.join(", "), limits.join(", "))
}

/// An EndpointSlice's PORTS: up to three.
fn slice_ports(object: &Value) -> String {
    let ports: Vec<String> = object
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(port) => port.to_string(),
            None if p.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) => {
                string(p, "/name").to_string()
            }
            None => "*".into(),
        })
        .collect();
    truncated(ports)
}

/// An EndpointSlice's ENDPOINTS: up to three addresses.
fn slice_endpoints(object: &Value) -> String {
    let addresses: Vec<String> = object
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|e| e.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    truncated(addresses)
}

fn truncated(items: Vec<String>) -> String {
    match items.len() {
        0 => "<unset>".into(),
        1..=3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}

/// An Ingress's HOSTS: up to three (`*` when none).
fn ingress_hosts(object: &Value) -> String {
    let hosts: Vec<String> = object
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()).map(str::to_string))
        .collect();
    match hosts.len() {
        0 => "*".into(),
        1..=3 => hosts.join(","),
        n => format!("{} + {} more...", hosts[..3].join(","), n - 3),
    }
}

fn cells(kind: &str, object: &Value) -> Vec<Value> {
    let name = json!(string(object, "/metadata/name"));
    let age = json!(clock::age(object.pointer("/metadata/creationTimestamp").and_then(Value::as_str)));
    match kind {
        "Pod" => {
            let (ready, total, restarts, status) = pod_status(object);
            let nominated = string(object, "/status/nominatedNodeName");
            let gates = object.pointer("/spec/readinessGates").and_then(Value::as_array).map_or(0, Vec::len);
            let gates = if gates == 0 {
                "<none>".to_string()
            } else {
                let conditions = object.pointer("/status/conditions").and_then(Value::as_array);
                let met =
                    object.pointer("/spec/readinessGates").and_then(Value::as_array).into_iter().flatten().filter(
                        |g| {
                            conditions
                                .into_iter()
                                .flatten()
                                .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
                        },
                    );
                format!("{}/{gates}", met.count())
            };
            let ip = object
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .unwrap_or_else(|| string(object, "/status/podIP"));
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts),
                age,
                json!(or_none(ip)),
                json!(or_none(string(object, "/spec/nodeName"))),
                json!(or_none(nominated)),
                json!(gates),
            ]
        }
        "Deployment" => vec![
            name,
            json!(format!("{}/{}", int(object, "/status/readyReplicas"), int(object, "/spec/replicas"))),
            json!(int(object, "/status/updatedReplicas")),
            json!(int(object, "/status/availableReplicas")),
            age,
            json!(containers(object, "/spec/template/spec", "name")),
            json!(containers(object, "/spec/template/spec", "image")),
            json!(selector(object.pointer("/spec/selector"), false)),
        ],
        "ReplicaSet" | "ReplicationController" => vec![
            name,
            json!(int(object, "/spec/replicas")),
            json!(int(object, "/status/replicas")),
            json!(int(object, "/status/readyReplicas")),
            age,
            json!(containers(object, "/spec/template/spec", "name")),
            json!(containers(object, "/spec/template/spec", "image")),
            json!(selector(object.pointer("/spec/selector"), kind == "ReplicationController")),
        ],
        "StatefulSet" => {
            vec![
                name,
                json!(format!("{}/{}", int(object, "/status/readyReplicas"), int(object, "/spec/replicas"))),
                age,
                json!(containers(object, "/spec/template/spec", "name")),
                json!(containers(object, "/spec/template/spec", "image")),
            ]
        }
        "DaemonSet" => vec![
            name,
            json!(int(object, "/status/desiredNumberScheduled")),
            json!(int(object, "/status/currentNumberScheduled")),
            json!(int(object, "/status/numberReady")),
            json!(int(object, "/status/updatedNumberScheduled")),
            json!(int(object, "/status/numberAvailable")),
            json!(pairs(object.pointer("/spec/template/spec/nodeSelector"))),
            age,
            json!(containers(object, "/spec/template/spec", "name")),
            json!(containers(object, "/spec/template/spec", "image")),
            json!(selector(object.pointer("/spec/selector"), false)),
        ],
        "Job" => {
            let succeeded = int(object, "/status/succeeded");
            let completions = match object.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(completions) => format!("{succeeded}/{completions}"),
                None => match int(object, "/spec/parallelism") {
                    parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            let start = object.pointer("/status/startTime").and_then(Value::as_str).and_then(clock::parse);
            let end = object.pointer("/status/completionTime").and_then(Value::as_str).and_then(clock::parse);
            let duration = match (start, end) {
                (None, _) => String::new(),
                (Some(start), end) => {
                    let end = end.unwrap_or_else(std::time::SystemTime::now);
                    clock::human_duration(end.duration_since(start).unwrap_or_default().as_secs())
                }
            };
            vec![
                name,
                json!(job_status(object)),
                json!(completions),
                json!(duration),
                age,
                json!(containers(object, "/spec/template/spec", "name")),
                json!(containers(object, "/spec/template/spec", "image")),
                json!(selector(object.pointer("/spec/selector"), false)),
            ]
        }
        "CronJob" => {
            // `printBoolPtr`: the words, not a JSON boolean (kubectl would print `false`).
            let suspend = match object.pointer("/spec/suspend").and_then(Value::as_bool) {
                Some(true) => json!("True"),
                Some(false) => json!("False"),
                None => json!("<unset>"),
            };
            let last = object.pointer("/status/lastScheduleTime").and_then(Value::as_str);
            vec![
                name,
                json!(string(object, "/spec/schedule")),
                json!(or_none(string(object, "/spec/timeZone"))),
                suspend,
                json!(object.pointer("/status/active").and_then(Value::as_array).map_or(0, Vec::len)),
                json!(last.map_or_else(|| "<none>".to_string(), |l| clock::age(Some(l)))),
                age,
                json!(containers(object, "/spec/jobTemplate/spec/template/spec", "name")),
                json!(containers(object, "/spec/jobTemplate/spec/template/spec", "image")),
                json!(selector(object.pointer("/spec/jobTemplate/spec/selector"), false)),
            ]
        }
        "HorizontalPodAutoscaler" => {
            let reference = format!(
                "{}/{}",
                string(object, "/spec/scaleTargetRef/kind"),
                string(object, "/spec/scaleTargetRef/name")
            );
            let min = object
                .pointer("/spec/minReplicas")
                .and_then(Value::as_i64)
                .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
            vec![
                name,
                json!(reference),
                json!(hpa_targets(object)),
                json!(min),
                json!(int(object, "/spec/maxReplicas")),
                json!(int(object, "/status/currentReplicas")),
                age,
            ]
        }
        "PodDisruptionBudget" => {
            let given = |pointer: &str| match object.pointer(pointer) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "N/A".into(),
            };
            vec![
                name,
                json!(given("/spec/minAvailable")),
                json!(given("/spec/maxUnavailable")),
                json!(int(object, "/status/disruptionsAllowed")),
                age,
            ]
        }
        "ResourceQuota" => {
            let (requests, limits) = quota_usage(object);
            vec![name, age, json!(requests), json!(limits)]
        }
        "EndpointSlice" => vec![
            name,
            json!(string(object, "/addressType")),
            json!(slice_ports(object)),
            json!(slice_endpoints(object)),
            age,
        ],
        "ServiceAccount" => {
            vec![name, json!(object.get("secrets").and_then(Value::as_array).map_or(0, Vec::len).to_string()), age]
        }
        "Lease" => vec![name, json!(string(object, "/spec/holderIdentity")), age],
        "ControllerRevision" => {
            let owners = object.pointer("/metadata/ownerReferences").and_then(Value::as_array);
            let controller = owners.into_iter().flatten().find(|o| o["controller"] == true).map(|o| {
                let group = string(o, "/apiVersion").rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
                let kind = string(o, "/kind").to_lowercase();
                let kind = if group.is_empty() { kind } else { format!("{kind}.{group}") };
                format!("{kind}/{}", string(o, "/name"))
            });
            vec![name, json!(controller.unwrap_or_default()), json!(int(object, "/revision")), age]
        }
        "Ingress" => vec![
            name,
            json!(or_none(string(object, "/spec/ingressClassName"))),
            json!(ingress_hosts(object)),
            json!(load_balancer(object).join(",")),
            json!(if object.pointer("/spec/tls").and_then(Value::as_array).is_some_and(|t| !t.is_empty()) {
                "80, 443"
            } else {
                "80"
            }),
            age,
        ],
        "Service" => {
            let ports: Vec<String> = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let node_port =
                        p.get("nodePort").and_then(Value::as_i64).map(|n| format!(":{n}")).unwrap_or_default();
                    format!(
                        "{}{node_port}/{}",
                        int(p, "/port"),
                        p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                    )
                })
                .collect();
            vec![
                name,
                json!(string(object, "/spec/type")),
                json!(or_none(string(object, "/spec/clusterIP"))),
                json!(external_ip(object)),
                json!(or_none(&ports.join(","))),
                age,
                json!(pairs(object.pointer("/spec/selector"))),
            ]
        }
        "Namespace" => vec![name, json!(string(object, "/status/phase")), age],
        "PersistentVolumeClaim" => {
            let bound = string(object, "/spec/volumeName");
            vec![
                name,
                json!(string(object, "/status/phase")),
                json!(bound),
                json!(string(object, "/status/capacity/storage")),
                json!(access_modes(object, "/status/accessModes")),
                json!(string(object, "/spec/storageClassName")),
                json!(attributes_class(object)),
                age,
            ]
        }
        "PersistentVolume" => {
            let claim = match object.pointer("/spec/claimRef") {
                Some(claim) => format!("{}/{}", string(claim, "/namespace"), string(claim, "/name")),
                None => String::new(),
            };
            vec![
                name,
                json!(string(object, "/spec/capacity/storage")),
                json!(access_modes(object, "/spec/accessModes")),
                json!(string(object, "/spec/persistentVolumeReclaimPolicy")),
                json!(string(object, "/status/phase")),
                json!(claim),
                json!(string(object, "/spec/storageClassName")),
                json!(attributes_class(object)),
                json!(string(object, "/status/reason")),
                age,
            ]
        }
        "StorageClass" => {
            let default =
                string(object, "/metadata/annotations/storageclass.kubernetes.io~1is-default-class") == "true";
            let shown = format!("{}{}", string(object, "/metadata/name"), if default { " (default)" } else { "" });
            let mode = Some(string(object, "/volumeBindingMode")).filter(|m| !m.is_empty()).unwrap_or("Immediate");
            let policy = Some(string(object, "/reclaimPolicy")).filter(|p| !p.is_empty()).unwrap_or("Delete");
            let expansion = object.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false);
            vec![
                json!(shown),
                json!(string(object, "/provisioner")),
                json!(policy),
                json!(mode),
                json!(expansion.to_string()),
                age,
            ]
        }
        "Node" => {
            let ready = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c.get("type") == Some(&json!("Ready"))))
                .map(|c| if c.get("status") == Some(&json!("True")) { "Ready" } else { "NotReady" })
                .unwrap_or("Unknown");
            let status = if object.pointer("/spec/unschedulable") == Some(&json!(true)) {
                format!("{ready},SchedulingDisabled")
            } else {
                ready.to_string()
            };
            let address = |kind: &str| {
                let addresses = object.pointer("/status/addresses").and_then(Value::as_array).into_iter().flatten();
                addresses
                    .into_iter()
                    .find(|a| a["type"] == kind)
                    .map_or("<none>".to_string(), |a| string(a, "/address").to_string())
            };
            let info = |field: &str| {
                Some(string(object, &format!("/status/nodeInfo/{field}")))
                    .filter(|t| !t.is_empty())
                    .unwrap_or("<unknown>")
                    .to_string()
            };
            vec![
                name,
                json!(status),
                json!(node_roles(object)),
                age,
                json!(string(object, "/status/nodeInfo/kubeletVersion")),
                json!(address("InternalIP")),
                json!(address("ExternalIP")),
                json!(info("osImage")),
                json!(info("kernelVersion")),
                json!(info("containerRuntimeVersion")),
            ]
        }
        "Endpoints" => vec![name, json!(endpoints(object)), age],
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            let count = object.get("webhooks").and_then(Value::as_array).map_or(0, Vec::len);
            vec![name, json!(count), age]
        }
        "ConfigMap" => {
            let count = |p: &str| object.pointer(p).and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(count("/data") + count("/binaryData")), age]
        }
        "Secret" => {
            let count = object.pointer("/data").and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(string(object, "/type")), json!(count), age]
        }
        "Event" => {
            // Read through core/v1 or events.k8s.io/v1 (`regarding`, `note`, `deprecated*`).
            let either = |core: &str, events: &str| object.get(core).or_else(|| object.get(events));
            let seen = object
                .pointer("/series/lastObservedTime")
                .or_else(|| either("lastTimestamp", "deprecatedLastTimestamp"))
                .and_then(Value::as_str)
                .or_else(|| object.get("eventTime").and_then(Value::as_str))
                .or_else(|| object.pointer("/metadata/creationTimestamp").and_then(Value::as_str));
            let regarding = either("involvedObject", "regarding").cloned().unwrap_or(Value::Null);
            vec![
                json!(clock::age(seen)),
                json!(string(object, "/type")),
                json!(string(object, "/reason")),
                json!(format!("{}/{}", string(&regarding, "/kind").to_lowercase(), string(&regarding, "/name"))),
                json!(either("message", "note").and_then(Value::as_str).unwrap_or_default().trim()),
            ]
        }
        "CustomResourceDefinition" => vec![name, json!(string(object, "/metadata/creationTimestamp"))],
        _ => vec![name, age],
    }
}

/// A `meta.k8s.io/v1` Table of objects of one resource.
pub fn table(
    resource: &Resource,
    objects: &[Value],
    revision: Option<u64>,
    token: Option<String>,
    include: Include,
) -> Value {
    let definitions: Vec<Value> = match resource.crd {
        Some(_) => custom::definitions(resource),
        None => columns(resource.builtin_kind())
            .iter()
            .map(|(name, kind, priority)| {
                let format = if *name == "Name" { "name" } else { "" };
                json!({"name": name, "type": kind, "format": format, "description": name, "priority": priority})
            })
            .collect(),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells = match resource.crd {
                Some(_) => custom::cells(resource, object),
                None => cells(resource.builtin_kind(), object),
            };
            let mut row = json!({"cells": cells});
            // A finished pod's row says so, as Kubernetes' pod printer marks it.
            if resource.crd.is_none() && resource.builtin_kind() == "Pod" {
                match string(object, "/status/phase") {
                    "Succeeded" => row["conditions"] = json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
                    "Failed" => row["conditions"] = json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
                    _ => {}
                }
            }
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
                Include::Object => row["object"] = super::objects::with_type(resource, object.clone()),
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(revision) = revision {
        metadata["resourceVersion"] = json!(revision.to_string());
    }
    if let Some(token) = token {
        metadata["continue"] = json!(token);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": definitions, "rows": rows})
}

/// Custom resources' tables: `Name`, then the CRD version's `additionalPrinterColumns`
/// (their JSONPaths evaluated, each cell of its column's type), or `Age` when it has none.
mod custom {
    use super::super::resources::Resource;
    use crate::clock;
    use jsonpath_rust::JsonPath;
    use serde_json::{Value, json};

    const AGE_PATH: &str = ".metadata.creationTimestamp";

    pub fn definitions(resource: &Resource) -> Vec<Value> {
        let mut definitions = vec![json!({
            "name": "Name", "type": "string", "format": "name", "priority": 0,
            "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        })];
        if resource.columns.is_empty() {
            definitions.push(json!({
                "name": "Age", "type": "date", "format": "", "priority": 0,
                "description": format!("Custom resource definition column (in JSONPath format): {AGE_PATH}"),
            }));
        }
        for column in resource.columns {
            definitions.push(json!({
                "name": column.name, "type": column.kind, "format": column.format,
                "description": column.description, "priority": column.priority,
            }));
        }
        definitions
    }

    pub fn cells(resource: &Resource, object: &Value) -> Vec<Value> {
        let mut cells = vec![json!(object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default())];
        if resource.columns.is_empty() {
            cells.push(cell("date", evaluate(object, AGE_PATH)));
        }
        for column in resource.columns {
            cells.push(cell(&column.kind, evaluate(object, &column.json_path)));
        }
        cells
    }

    /// A column's JSONPath (Kubernetes writes them without the leading `$`); its first
    /// value, as Kubernetes' table convertor takes it.
    fn evaluate<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
        let path = if path.starts_with('$') { path.to_string() } else { format!("${path}") };
        object.query(&path).ok()?.into_iter().next()
    }

    fn cell(kind: &str, value: Option<&Value>) -> Value {
        let Some(value) = value.filter(|v| !v.is_null()) else { return Value::Null };
        match kind {
            "integer" => value.as_i64().or_else(|| value.as_f64().map(|f| f as i64)).map_or(Value::Null, |n| json!(n)),
            "number" => value.as_f64().map_or(Value::Null, |n| json!(n)),
            "boolean" => value.as_bool().map_or(Value::Null, |b| json!(b)),
            "date" => value.as_str().map_or(Value::Null, |time| json!(clock::age(Some(time)))),
            _ => match value {
                Value::String(text) => json!(text),
                other => json!(other.to_string()),
            },
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn cells_follow_their_column_types_and_paths() {
            let object = json!({"spec": {"size": 3.7, "tags": ["a"]}, "status": {"conditions": [
                {"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
            let ready = evaluate(&object, ".status.conditions[?(@.type==\"Ready\")].status");
            assert_eq!(cell("string", ready), json!("True"));
            assert_eq!(cell("integer", evaluate(&object, ".spec.size")), json!(3));
            assert_eq!(cell("string", evaluate(&object, ".spec.tags")), json!("[\"a\"]"));
            assert_eq!(cell("boolean", evaluate(&object, ".spec.missing")), Value::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_print_three_addresses_then_how_many_more() {
        let subsets = |ips: &[&str]| {
            let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            json!({"subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]})
        };
        assert_eq!(endpoints(&json!({})), "<none>");
        assert_eq!(endpoints(&subsets(&["10.0.0.1", "10.0.0.2"])), "10.0.0.1:80,10.0.0.2:80");
        assert_eq!(
            endpoints(&subsets(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"])),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
        );
    }

    fn status_of(pod: Value) -> String {
        pod_status(&pod).3
    }

    #[test]
    fn pod_status_reads_as_kubectl_prints_it() {
        let running = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "web", "ready": true, "state": {"running": {}}, "restartCount": 0}]},
                             "spec": {"containers": [{"name": "web"}]}});
        assert_eq!(pod_status(&running), (1, 1, "0".to_string(), "Running".to_string()));
        let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
                          "spec": {"containers": [{"name": "job"}]}});
        assert_eq!(status_of(done), "Completed");
        let failed = json!({"status": {"phase": "Failed", "containerStatuses": [{"name": "job", "state": {"terminated": {"exitCode": 2}}}]}});
        assert_eq!(status_of(failed), "ExitCode:2");
        // The first container waiting decides, not the last.
        let crashing = json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            {"name": "b", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(status_of(crashing), "CrashLoopBackOff");
        let initializing = json!({"spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}]},
                                  "status": {"phase": "Pending", "initContainerStatuses": [
                                      {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                                      {"name": "i2", "state": {"running": {}}}]}});
        assert_eq!(status_of(initializing), "Init:1/2");
        let evicted = json!({"status": {"phase": "Failed", "reason": "Evicted"}});
        assert_eq!(status_of(evicted), "Evicted");
        let going = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
        assert_eq!(status_of(going), "Terminating");
        // Sidecars count in READY.
        let sidecar = json!({"spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "web"}]},
                             "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                                        "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "state": {"running": {}}}],
                                        "containerStatuses": [{"name": "web", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(pod_status(&sidecar).0..=pod_status(&sidecar).1, 2..=2);
        // Once initialized, an ordinary init container's restarts no longer count.
        let restarted = json!({"spec": {"initContainers": [{"name": "setup"}, {"name": "proxy", "restartPolicy": "Always"}],
                                        "containers": [{"name": "web"}]},
                               "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                                          "initContainerStatuses": [
                                              {"name": "setup", "restartCount": 2, "state": {"terminated": {"exitCode": 0}}},
                                              {"name": "proxy", "restartCount": 1, "started": true, "ready": true, "state": {"running": {}}}],
                                          "containerStatuses": [{"name": "web", "restartCount": 3, "ready": true, "state": {"running": {}}}]}});
        assert_eq!(pod_status(&restarted).2, "4");
    }

    #[test]
    fn workload_service_and_autoscaler_cells() {
        let job = json!({"metadata": {"name": "report"}, "spec": {"parallelism": 2, "selector": {"matchLabels": {"a": "b"}},
                                                                   "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
                         "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}],
                                    "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:01:05Z"}});
        let row = cells("Job", &job);
        assert_eq!((&row[1], &row[2], &row[3]), (&json!("Complete"), &json!("1/1 of 2"), &json!("65s")));
        assert_eq!((&row[5], &row[6], &row[7]), (&json!("c"), &json!("busybox"), &json!("a=b")));
        let balancer = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}], "selector": {"app": "web"}},
                              "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}, {"ip": "10.0.0.10"}]}}});
        let row = cells("Service", &balancer);
        assert_eq!(
            (&row[3], &row[4], &row[6]),
            (&json!("10.0.0.10,10.0.0.9"), &json!("80:30080/TCP"), &json!("app=web"))
        );
        assert_eq!(cells("Service", &json!({"spec": {"type": "LoadBalancer"}}))[3], "<pending>");
        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                                  "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                                              {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "200Mi"}}}]},
                         "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45}}}]}});
        let row = cells("HorizontalPodAutoscaler", &hpa);
        assert_eq!(row[1], "Deployment/web");
        assert_eq!(row[2], "cpu: 45%/80%, memory: <unknown>/200Mi");
        assert_eq!((&row[3], &row[4], &row[5]), (&json!("<unset>"), &json!(5), &json!(2)));
        let quota =
            json!({"status": {"hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "3", "limits.cpu": "500m"}}});
        let row = cells("ResourceQuota", &quota);
        assert_eq!((&row[2], &row[3]), (&json!("pods: 3/10"), &json!("limits.cpu: 500m/2")));
        let budget = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(&cells("PodDisruptionBudget", &budget)[1..4], &[json!("50%"), json!("N/A"), json!(1)]);
        let node = json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}},
                          "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}], "nodeInfo": {"osImage": "kubeyard"}}});
        let row = cells("Node", &node);
        assert_eq!(
            (&row[2], &row[5], &row[6], &row[7], &row[8]),
            (&json!("control-plane"), &json!("10.0.0.2"), &json!("<none>"), &json!("kubeyard"), &json!("<unknown>"))
        );
    }
}
