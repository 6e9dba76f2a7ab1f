//! `pod/*`: containers, their ports and probes, wherever a pod template is (bare pods and
//! every workload kind). The containers are walked once per object
//! (`ObjectContext::containers`); each rule loops over them.

mod duplicate_port_name;
mod env_var_secret;
mod host_port;
mod invalid_container_name;
mod invalid_port_name;
mod missing_probe;
mod probe_port;

use super::Rule;
use crate::yaml::Node;

pub(super) const RULES: &[&Rule] = &[
    &invalid_container_name::RULE,
    &duplicate_port_name::RULE,
    &invalid_port_name::RULE,
    &host_port::RULE,
    &probe_port::RULE,
    &missing_probe::RULE,
    &env_var_secret::RULE,
];

/// A container's `ports`, each with its index (field paths are made only for findings).
fn ports(container: &Node) -> impl Iterator<Item = (usize, &Node)> {
    container.get("ports").and_then(Node::as_seq).unwrap_or_default().iter().enumerate()
}
