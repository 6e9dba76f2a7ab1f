//! Pod specs: containers, ports, probes, images and resources, wherever a pod template
//! is (bare pods and every workload kind).

use super::facts::DeclaredPorts;
use super::{Finding, ObjectContext, Rule, join};
use crate::diagnostic::Severity;
use crate::image::ImageReference;
use crate::names;
use crate::quantity::Quantity;
use crate::workloads;
use crate::yaml::{Node, Value};
use std::collections::{BTreeMap, HashSet};

pub static INVALID_CONTAINER_NAME: Rule = Rule {
    id: "pod/invalid-container-name",
    name: "Container name that is invalid or used twice",
    severity: Severity::Error,
    rationale: "Container names must be DNS labels and unique within a pod (init containers included); the API server refuses the pod otherwise, and logs, exec and metrics address containers by name.",
    fix: "Give each container a distinct lower-case name of letters, digits and '-'.",
    needs_set: false,
};

pub static DUPLICATE_PORT_NAME: Rule = Rule {
    id: "pod/duplicate-port-name",
    name: "Container port name used twice",
    severity: Severity::Error,
    rationale: "A Service's named targetPort and a probe's named port resolve through container port names; the API server refuses a container that names two ports the same.",
    fix: "Give each port of the container its own name.",
    needs_set: false,
};

pub static INVALID_PORT_NAME: Rule = Rule {
    id: "pod/invalid-port-name",
    name: "Container port name that is not an IANA service name",
    severity: Severity::Error,
    rationale: "Port names must be at most 15 lower-case letters, digits and '-', with at least one letter; the API server refuses others.",
    fix: "Rename the port, e.g. `http`, `metrics`, `grpc-api`.",
    needs_set: false,
};

pub static HOST_PORT: Rule = Rule {
    id: "pod/host-port",
    name: "Container binds a host port",
    severity: Severity::Warning,
    rationale: "A hostPort ties each pod to a port on its node: two replicas cannot share a node, scheduling gets harder, and the port bypasses network policy.",
    fix: "Remove hostPort and expose the pod through a Service (NodePort or LoadBalancer if it must be reachable from outside).",
    needs_set: false,
};

pub static PROBE_PORT: Rule = Rule {
    id: "pod/probe-port",
    name: "Probe on a port the container does not declare",
    severity: Severity::Warning,
    rationale: "A probe on a named port that the container does not declare can never succeed, so the container is restarted (liveness) or never ready (readiness). A numbered port that is not declared often means the probe and the server disagree.",
    fix: "Point the probe at a port listed in the container's ports, by name or number.",
    needs_set: false,
};

pub static IMAGE_LATEST: Rule = Rule {
    id: "image/latest-tag",
    name: "Image without a tag, or tagged latest",
    severity: Severity::Warning,
    rationale: "An image without a tag means `:latest`, which moves: two nodes can run different code under one spec, rollbacks do not roll back, and the pull policy defaults to Always.",
    fix: "Pin the image to a version tag or, better, a digest (`image: app:1.4.2` or `image: app@sha256:...`).",
    needs_set: false,
};

pub static IMAGE_INVALID: Rule = Rule {
    id: "image/invalid-reference",
    name: "Missing or malformed image reference",
    severity: Severity::Error,
    rationale: "The API server requires an image for every container, and the container runtime refuses references that do not parse (capitals, spaces, empty tags), which leaves pods in InvalidImageName.",
    fix: "Write the image as [registry[:port]/]name[:tag][@digest] with a lower-case name.",
    needs_set: false,
};

pub static INVALID_QUANTITY: Rule = Rule {
    id: "resources/invalid-quantity",
    name: "Resource quantity that does not parse",
    severity: Severity::Error,
    rationale: "CPU, memory and storage amounts are quantities (`250m`, `1.5Gi`, `2`). The API server refuses anything else, including common slips like `1GB` or `500 Mi`.",
    fix: "Write a number with an optional suffix: m (milli), k, M, G, T (decimal) or Ki, Mi, Gi, Ti (binary).",
    needs_set: false,
};

pub static REQUESTS_ABOVE_LIMITS: Rule = Rule {
    id: "resources/requests-above-limits",
    name: "Resource request above its limit",
    severity: Severity::Error,
    rationale: "A container's request for a resource may not exceed its limit; the API server refuses the pod.",
    fix: "Lower the request or raise the limit.",
    needs_set: false,
};

pub static MISSING_REQUESTS: Rule = Rule {
    id: "resources/missing-requests",
    name: "Container without CPU or memory requests",
    severity: Severity::Warning,
    rationale: "The scheduler places pods by their requests. A container without them is packed onto nodes as if it used nothing, is the first evicted under pressure (BestEffort), and makes capacity planning guesswork.",
    fix: "Set resources.requests.cpu and resources.requests.memory to what the container needs at steady state.",
    needs_set: false,
};

pub static MISSING_LIMITS: Rule = Rule {
    id: "resources/missing-limits",
    name: "Container without CPU or memory limits",
    severity: Severity::Warning,
    rationale: "Without a memory limit a leaking container takes memory from its neighbours until the node kills something; without a CPU limit it can starve them. Many teams set memory limits and leave CPU unlimited: turn this rule down in .kubeyard.yaml if that is your policy.",
    fix: "Set resources.limits.memory (and resources.limits.cpu if your policy wants it).",
    needs_set: false,
};

pub(super) fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    if let Some(template) = &context.template {
        check_pod_spec(template.spec, template.spec_path, out);
    }
    check_other_quantities(context, out);
}

fn check_pod_spec(spec: &Node, spec_path: &str, out: &mut Vec<Finding>) {
    let mut seen_names: HashSet<&str> = HashSet::new();
    for (field, container) in workloads::containers(spec) {
        let path = join(spec_path, &field);
        let ephemeral = field.starts_with("ephemeralContainers");
        if let Some(entry) = container.entry("name")
            && let Some(name) = entry.value.as_str()
        {
            if let Some(problem) = names::dns1123_label(name).first() {
                out.push(
                    Finding::new(
                        &INVALID_CONTAINER_NAME,
                        entry.value.span,
                        format!("container name \"{name}\": {problem}"),
                    )
                    .label("invalid container name")
                    .path(join(&path, "name")),
                );
            }
            if !seen_names.insert(name) {
                out.push(
                    Finding::new(
                        &INVALID_CONTAINER_NAME,
                        entry.value.span,
                        format!("container name \"{name}\" is used twice in this pod"),
                    )
                    .label("duplicate container name")
                    .path(join(&path, "name")),
                );
            }
        }
        let ports = ports(container, &path, out);
        image(container, &path, out);
        probes(container, &path, &ports, out);
        // Ephemeral containers take no resources; plain init containers run one at a time
        // before the pod starts, and requests for them would be noise.
        let init = field.starts_with("initContainers")
            && container.get("restartPolicy").and_then(Node::as_str) != Some("Always");
        if !ephemeral && !init {
            resources(container, &path, out);
        }
    }
}

/// The container's declared ports, checking their names on the way.
fn ports(container: &Node, path: &str, out: &mut Vec<Finding>) -> DeclaredPorts {
    let mut declared = DeclaredPorts::default();
    for (i, port) in container.get("ports").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
        let port_path = format!("{path}.ports[{i}]");
        let number = match port.get("containerPort").map(|n| &n.value) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        declared.numbers.extend(number);
        if let Some(entry) = port.entry("name")
            && let Some(name) = entry.value.as_str()
        {
            if let Some(problem) = names::port_name(name).first() {
                out.push(
                    Finding::new(&INVALID_PORT_NAME, entry.value.span, format!("port name \"{name}\": {problem}"))
                        .label("invalid port name")
                        .path(join(&port_path, "name")),
                );
            }
            if declared.named.insert(name.to_string(), number.unwrap_or(0)).is_some() {
                out.push(
                    Finding::new(
                        &DUPLICATE_PORT_NAME,
                        entry.value.span,
                        format!("port name \"{name}\" is used twice in this container"),
                    )
                    .label("duplicate port name")
                    .path(join(&port_path, "name")),
                );
            }
        }
        if let Some(entry) = port.entry("hostPort")
            && matches!(entry.value.value, Value::Int(n) if n > 0)
        {
            out.push(
                Finding::new(&HOST_PORT, entry.key.span, "container binds a port on its node (hostPort)")
                    .label("hostPort")
                    .path(join(&port_path, "hostPort")),
            );
        }
    }
    declared
}

fn image(container: &Node, path: &str, out: &mut Vec<Finding>) {
    let Some(entry) = container.entry("image") else {
        let span = container.as_map().and_then(|m| m.first()).map_or(container.span, |e| e.key.span);
        out.push(
            Finding::new(&IMAGE_INVALID, span, "container has no image")
                .label("no image")
                .help("add `image:` with the image to run")
                .path(join(path, "image")),
        );
        return;
    };
    let Some(text) = entry.value.as_str() else { return };
    match text.parse::<ImageReference>() {
        Err(error) => out.push(
            Finding::new(&IMAGE_INVALID, entry.value.span, error.to_string())
                .label("not an image reference")
                .path(join(path, "image")),
        ),
        Ok(reference) if reference.is_latest() => {
            let message = if reference.is_untagged() {
                format!("image \"{text}\" has no tag, so it means :latest")
            } else {
                format!("image \"{text}\" uses the moving :latest tag")
            };
            out.push(
                Finding::new(&IMAGE_LATEST, entry.value.span, message)
                    .label("unpinned image")
                    .path(join(path, "image")),
            );
        }
        Ok(_) => {}
    }
}

fn probes(container: &Node, path: &str, declared: &DeclaredPorts, out: &mut Vec<Finding>) {
    for probe_field in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = container.get(probe_field) else { continue };
        for handler in ["httpGet", "tcpSocket", "grpc"] {
            let Some(entry) = probe.get(handler).and_then(|h| h.entry("port")) else { continue };
            let field = format!("{path}.{probe_field}.{handler}.port");
            match &entry.value.value {
                Value::String(name) if name.parse::<i64>().is_err() && !declared.named.contains_key(name) => {
                    out.push(
                        Finding::new(
                            &PROBE_PORT,
                            entry.value.span,
                            format!("{probe_field} uses port \"{name}\", which the container does not declare"),
                        )
                        .severity(Severity::Error)
                        .label("no container port has this name")
                        .help(known_ports(declared))
                        .path(field),
                    );
                }
                Value::String(digits) if digits.parse::<i64>().is_ok() => {
                    out.push(
                        Finding::new(
                            &PROBE_PORT,
                            entry.value.span,
                            format!(
                                "{probe_field} port \"{digits}\" is a string of digits, which the API server refuses"
                            ),
                        )
                        .severity(Severity::Error)
                        .label("neither a number nor a port name")
                        .help(format!("write the number without quotes: {digits}"))
                        .path(field),
                    );
                }
                Value::Int(number) if !declared.numbers.contains(number) => {
                    out.push(
                        Finding::new(
                            &PROBE_PORT,
                            entry.value.span,
                            format!("{probe_field} uses port {number}, which the container does not declare"),
                        )
                        .label("port not in the container's ports")
                        .help(known_ports(declared))
                        .path(field),
                    );
                }
                _ => {}
            }
        }
    }
}

fn known_ports(declared: &DeclaredPorts) -> String {
    if declared.numbers.is_empty() {
        return "the container declares no ports: add the probed port to its ports".into();
    }
    let numbers: Vec<String> = declared.numbers.iter().map(i64::to_string).collect();
    if declared.named.is_empty() {
        return format!("the container declares ports {}", numbers.join(", "));
    }
    let named: Vec<String> = declared.named.iter().map(|(name, number)| format!("{name} ({number})")).collect();
    format!("the container declares ports {} (named: {})", numbers.join(", "), named.join(", "))
}

/// Parses one quantity field, reporting it if it does not parse.
fn quantity(entry: &crate::yaml::Entry, path: &str, out: &mut Vec<Finding>) -> Option<Quantity> {
    let text = match &entry.value.value {
        Value::String(s) => s.clone(),
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => entry.value.to_json().to_string(),
        _ => return None,
    };
    match text.parse::<Quantity>() {
        Ok(q) => Some(q),
        Err(error) => {
            out.push(
                Finding::new(&INVALID_QUANTITY, entry.value.span, error.to_string())
                    .label("not a quantity")
                    .path(format!("{path}.{}", entry.key.name)),
            );
            None
        }
    }
}

/// Parses a map of quantities (`requests`, `limits`, `hard`).
fn quantity_map<'a>(
    map: Option<&'a Node>,
    path: &str,
    out: &mut Vec<Finding>,
) -> BTreeMap<String, (Quantity, &'a Node)> {
    let mut parsed = BTreeMap::new();
    for entry in map.and_then(Node::as_map).unwrap_or_default() {
        if let Some(q) = quantity(entry, path, out) {
            parsed.insert(entry.key.name.clone(), (q, &entry.value));
        }
    }
    parsed
}

fn resources(container: &Node, path: &str, out: &mut Vec<Finding>) {
    let resources = container.get("resources");
    let resources_path = join(path, "resources");
    let requests = quantity_map(resources.and_then(|r| r.get("requests")), &join(&resources_path, "requests"), out);
    let limits = quantity_map(resources.and_then(|r| r.get("limits")), &join(&resources_path, "limits"), out);
    for (name, (request, node)) in &requests {
        if let Some((limit, _)) = limits.get(name)
            && request > limit
        {
            out.push(
                Finding::new(
                    &REQUESTS_ABOVE_LIMITS,
                    node.span,
                    format!("{name} request {request} is above its limit {limit}"),
                )
                .label("above the limit")
                .path(format!("{resources_path}.requests.{name}")),
            );
        }
    }
    let anchor = container
        .entry("resources")
        .map_or_else(|| container.entry("name").map_or(container.span, |e| e.value.span), |e| e.key.span);
    let container_name = container.get("name").and_then(Node::as_str).unwrap_or("?");
    // A limit without a request makes the request equal to it (API server default).
    let missing_requests: Vec<&str> =
        ["cpu", "memory"].into_iter().filter(|r| !requests.contains_key(*r) && !limits.contains_key(*r)).collect();
    if !missing_requests.is_empty() {
        out.push(
            Finding::new(
                &MISSING_REQUESTS,
                anchor,
                format!("container \"{container_name}\" requests no {}", missing_requests.join(" or ")),
            )
            .label("no resource requests")
            .path(resources_path.clone()),
        );
    }
    let missing_limits: Vec<&str> = ["cpu", "memory"].into_iter().filter(|r| !limits.contains_key(*r)).collect();
    if !missing_limits.is_empty() {
        out.push(
            Finding::new(
                &MISSING_LIMITS,
                anchor,
                format!("container \"{container_name}\" has no {} limit", missing_limits.join(" or ")),
            )
            .label("no resource limits")
            .path(resources_path),
        );
    }
}

/// Quantities outside containers: volumes, claims, quotas and limit ranges.
fn check_other_quantities(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let node = context.node;
    let spec = node.get("spec");
    match (context.info.gvk.group.as_str(), context.info.gvk.kind.as_str()) {
        ("", "PersistentVolumeClaim") => {
            let resources = spec.and_then(|s| s.get("resources"));
            quantity_map(resources.and_then(|r| r.get("requests")), "spec.resources.requests", out);
            quantity_map(resources.and_then(|r| r.get("limits")), "spec.resources.limits", out);
        }
        ("", "PersistentVolume") => {
            quantity_map(spec.and_then(|s| s.get("capacity")), "spec.capacity", out);
        }
        ("", "ResourceQuota") => {
            quantity_map(spec.and_then(|s| s.get("hard")), "spec.hard", out);
        }
        ("", "LimitRange") => {
            for (i, limit) in
                spec.and_then(|s| s.get("limits")).and_then(Node::as_seq).unwrap_or_default().iter().enumerate()
            {
                for field in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
                    quantity_map(limit.get(field), &format!("spec.limits[{i}].{field}"), out);
                }
            }
        }
        _ => {}
    }
    if let Some(template) = &context.template {
        for (i, volume) in template.spec.get("volumes").and_then(Node::as_seq).unwrap_or_default().iter().enumerate() {
            if let Some(size) = volume.get("emptyDir").and_then(|e| e.entry("sizeLimit")) {
                quantity(size, &format!("{}.volumes[{i}].emptyDir", template.spec_path), out);
            }
        }
        quantity_map(template.spec.get("overhead"), &join(template.spec_path, "overhead"), out);
    }
}
