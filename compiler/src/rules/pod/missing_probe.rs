use crate::rules::{Finding, ObjectContext};

rule! {
    /// Long-running container without a readiness or liveness probe
    ///
    /// Without a readiness probe a container gets traffic (and counts as available in a rollout) the moment it starts,
    /// before it can answer; without a liveness probe a container that hangs is never restarted. Off by default, as
    /// kube-linter's `no-readiness-probe` and `no-liveness-probe` are: some containers need neither. Turn it on with
    /// `rules: {pod/missing-probe: info}` in .kubeyard.yaml.
    ///
    /// Fix: Add a readinessProbe (and a livenessProbe that checks the process is alive, not its dependencies).
    "pod/missing-probe", Info, Object(check), off
}

/// Kinds whose pods run to completion: a probe-less container there is expected.
const RUN_TO_COMPLETION: [&str; 2] = ["Job", "CronJob"];

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    if RUN_TO_COMPLETION.contains(&context.info.gvk.kind.as_str()) {
        return;
    }
    for container in context.containers() {
        // Plain init containers end before the pod is ready; ephemeral ones take no probes.
        if !container.path.contains(".containers[") {
            continue;
        }
        let missing: Vec<&str> = ["readinessProbe", "livenessProbe"]
            .into_iter()
            .filter(|probe| container.node.get(probe).is_none())
            .collect();
        if missing.is_empty() {
            continue;
        }
        let node = container.node;
        let anchor = node.entry("name").map_or(node.span, |e| e.value.span);
        let name = node.get("name").and_then(crate::yaml::Node::as_str).unwrap_or("?");
        out.push(
            Finding::new(&RULE, anchor, format!("container \"{name}\" has no {}", missing.join(" and no ")))
                .label("no probe")
                .path(container.path.clone()),
        );
    }
}
