//! The DaemonSet controller, as Kubernetes' (pkg/controller/daemon): one pod per node
//! that should run it. A node should when the pod's `nodeSelector` and required node
//! affinity match it and it tolerates the node's `NoSchedule` and `NoExecute` taints,
//! with the tolerations Kubernetes adds to every daemon pod (not-ready, unreachable,
//! pressure, unschedulable; network-unavailable for `hostNetwork` pods); a pod keeps
//! running on a node whose new taints it tolerates for `NoExecute`. Pods are made with a
//! required node affinity `matchFields metadata.name In [node]` (replacing the template's
//! required terms, which were already checked) and placed by the scheduler, as
//! Kubernetes >= 1.12 does. Nodes joining, leaving, relabelled or tainted are watched.
//!
//! Each pod carries `controller-revision-hash`, the hash of the template it was made
//! from; `RollingUpdate` replaces old pods within `maxUnavailable` (default 1) or, with
//! `maxSurge`, starts the new pod beside the old one and deletes the old once the new is
//! available; `OnDelete` leaves them. Failed and succeeded daemon pods are deleted and
//! made again. Pods bound to nodes that are gone are deleted too (Kubernetes leaves that
//! to the pod garbage collector). Each template is kept as a ControllerRevision
//! (`history.rs`), so `kubectl rollout history|undo daemonset` work.

use super::pods::{
    Naming, Pods, Reporter, creation, deleting, from_template, is_available, is_ready, is_terminal, next_available,
    template_metadata,
};
use super::{Error, Wakeups, Wiring, history, label_selector, owner_reference, patch_status};
use crate::clock::Clock;
use crate::informers::{Expectations, Informer, Informers, UNMET_RETRY, Written, key_of_object};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kubeyard_compiler::scheduling::filters::{self, Filter};
use kubeyard_compiler::scheduling::{NodeInfo, PodInfo};
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The label holding the hash of the template a pod was made from.
pub(super) const HASH_LABEL: &str = "controller-revision-hash";
/// Pods made or deleted in one pass at most (Kubernetes' `BurstReplicas`).
const BURST: usize = 250;
/// How often a DaemonSet is looked at again with nothing happening.
const RESYNC: Duration = Duration::from_secs(10);

struct Context {
    client: kube::Client,
    clock: Clock,
    wakeups: Wakeups<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    pods_expected: Expectations<Pod>,
    sets_expected: Expectations<DaemonSet>,
    revisions: Informer<ControllerRevision>,
    revisions_expected: Expectations<ControllerRevision>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    let sets = informers.daemonsets.clone();
    // A node joining, leaving, relabelled or tainted concerns every DaemonSet.
    let every_set = move |_: Arc<Node>| sets.all().iter().map(|s| ObjectRef::from_obj(s.as_ref())).collect::<Vec<_>>();
    let mut wiring = Wiring::of(&informers.daemonsets)
        .owns(&informers.pods)
        .owns(&informers.controller_revisions)
        .watches(&informers.nodes, every_set);
    let context = Context {
        client,
        clock: clock.clone(),
        wakeups: wiring.wakeups(clock),
        pods: informers.pods.clone(),
        nodes: informers.nodes.clone(),
        pods_expected: Expectations::new(&informers.pods),
        sets_expected: Expectations::new(&informers.daemonsets),
        revisions: informers.controller_revisions.clone(),
        revisions_expected: Expectations::new(&informers.controller_revisions),
    };
    wiring.run(reconcile, Arc::new(context)).await;
}

/// The tolerations every daemon pod gets (`AddOrUpdateDaemonPodTolerations`): it stays
/// on a node that is not ready or unreachable, and is placed on nodes under pressure or
/// cordoned, since it is the node's own agent.
fn daemon_tolerations(host_network: bool) -> Vec<Value> {
    let mut tolerations: Vec<Value> = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
        .iter()
        .map(|key| json!({"key": key, "operator": "Exists", "effect": "NoExecute"}))
        .collect();
    let mut no_schedule = vec![
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ];
    if host_network {
        no_schedule.push("node.kubernetes.io/network-unavailable");
    }
    tolerations.extend(no_schedule.iter().map(|key| json!({"key": key, "operator": "Exists", "effect": "NoSchedule"})));
    tolerations
}

/// The template's spec with the daemon tolerations added, each replacing one of the
/// template's with the same key, operator, value and effect.
fn daemon_spec(template: &Value) -> Value {
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let host_network = spec.get("hostNetwork") == Some(&json!(true));
    let mut tolerations = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    for added in daemon_tolerations(host_network) {
        let same = |t: &Value| ["key", "operator", "value", "effect"].iter().all(|f| t.get(f) == added.get(f));
        tolerations.retain(|t| !same(t));
        tolerations.push(added);
    }
    spec["tolerations"] = json!(tolerations);
    spec
}

/// Where a node stands for this DaemonSet (`NodeShouldRunDaemonPod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fit {
    should_run: bool,
    /// A pod already there may stay: the node changed only in `NoSchedule` taints.
    should_continue: bool,
}

fn node_fit(pod: &Value, node: &Value) -> Fit {
    let info = NodeInfo::new(node);
    let pod = PodInfo::new(pod);
    if pod.node_name.as_ref().is_some_and(|named| *named != info.name)
        || filters::NodeAffinity.filter(&pod, &info).is_err()
    {
        return Fit { should_run: false, should_continue: false };
    }
    if filters::TaintToleration.filter(&pod, &info).is_ok() {
        return Fit { should_run: true, should_continue: true };
    }
    // An untolerated NoSchedule taint keeps new pods away but evicts no one.
    let tolerated = info.taints.iter().filter(|t| t.effect == "NoExecute").all(|t| pod.tolerates(t));
    Fit { should_run: false, should_continue: tolerated }
}

/// The node a daemon pod is for: where it is bound, or where its node affinity sends it
/// (`GetTargetNodeName`).
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    let required =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    required.node_selector_terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|field| {
        let values = field.values.as_deref().unwrap_or_default();
        (field.key == "metadata.name" && field.operator == "In" && values.len() == 1).then(|| values[0].clone())
    })
}

/// `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required terms become one term naming
/// the node; preferred terms and other affinities are kept.
fn pin_to_node(spec: &mut Value, node: &str) {
    let term = json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]});
    if !spec.get("affinity").is_some_and(Value::is_object) {
        spec["affinity"] = json!({});
    }
    if !spec["affinity"].get("nodeAffinity").is_some_and(Value::is_object) {
        spec["affinity"]["nodeAffinity"] = json!({});
    }
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
        json!({"nodeSelectorTerms": [term]});
}

/// What the DaemonSet's spec asks for.
struct Daemon {
    set: DaemonSet,
    namespace: String,
    selector: Selector,
    template: Value,
    /// `{"spec": ...}`: the template's spec with the daemon tolerations, the pod whose
    /// fit each node is judged on (`NewPod` without the node).
    probe: Value,
    hash: String,
    /// `None` for `OnDelete`.
    rolling: Option<(IntOrString, IntOrString)>,
    min_ready_seconds: i32,
    /// When this pass looks, on the control plane's clock.
    now: SystemTime,
}

impl Daemon {
    fn of(set: DaemonSet, now: SystemTime) -> Result<Daemon, Error> {
        let spec = set.spec.as_ref().ok_or_else(|| Error::Invalid("a DaemonSet without a spec".into()))?;
        let selector = label_selector(&spec.selector)?;
        let template = serde_json::to_value(&spec.template).map_err(|e| Error::Invalid(e.to_string()))?;
        // Always salted, with 0 until a collision, so the hash is the same before and
        // after the status records the count.
        let collisions = Some(set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0));
        let hash = super::deployment::pod_template_hash(&spec.template, collisions);
        let strategy = spec.update_strategy.as_ref();
        let rolling = match strategy.and_then(|s| s.type_.as_deref()) {
            Some("OnDelete") => None,
            _ => {
                let parameters = strategy.and_then(|s| s.rolling_update.as_ref());
                let surge = parameters.and_then(|p| p.max_surge.clone()).unwrap_or(IntOrString::Int(0));
                let unavailable = parameters.and_then(|p| p.max_unavailable.clone()).unwrap_or(IntOrString::Int(1));
                Some((surge, unavailable))
            }
        };
        Ok(Daemon {
            namespace: set.namespace().unwrap_or_else(|| "default".into()),
            selector,
            probe: json!({"spec": daemon_spec(&template)}),
            template,
            hash,
            rolling,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            now,
            set,
        })
    }

    fn fit(&self, node: &Value) -> Fit {
        node_fit(&self.probe, node)
    }

    fn updated(&self, pod: &Pod) -> bool {
        pod.labels().get(HASH_LABEL) == Some(&self.hash)
    }

    fn available(&self, pod: &Pod) -> bool {
        is_available(pod, self.min_ready_seconds, self.now)
    }

    /// The daemon pod for a node, as `syncNodes` makes it.
    fn pod_for(&self, node: &str) -> Result<Pod, Error> {
        let (mut labels, annotations) = template_metadata(&self.template);
        labels[HASH_LABEL] = json!(self.hash);
        let mut spec = self.probe["spec"].clone();
        pin_to_node(&mut spec, node);
        let owner = serde_json::to_value(owner_reference(&self.set)?).map_err(|e| Error::Invalid(e.to_string()))?;
        let naming = Naming::Generated(format!("{}-", self.set.name_any()));
        from_template(naming, &self.namespace, (labels, annotations), spec, owner, &[])
    }
}

/// What one pass decided: nodes to make a pod on, pods to delete.
#[derive(Debug, Default)]
struct Changes {
    create: Vec<String>,
    delete: Vec<String>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

async fn reconcile(set: Arc<DaemonSet>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of_object(set.as_ref());
    if !context.pods_expected.met(&key) || !context.sets_expected.met(&key) || !context.revisions_expected.met(&key) {
        return Ok(Action::requeue(UNMET_RETRY));
    }
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let pods = Pods::new(&context.client, &context.pods, &namespace).reporting(Reporter::of(
        (&context.client, &context.clock),
        set.as_ref(),
        ("apps/v1", "DaemonSet"),
        "daemonset-controller",
    ));
    let written = Written::default();
    let revisions_written = Written::default();
    let result = match keep_history(&set, &context, &revisions_written).await {
        Ok(()) => sync(&set, &context, &pods, &written).await,
        Err(error) => Err(error),
    };
    // The next pass reads the caches: it waits until they hold what this one wrote.
    context.pods_expected.expect(&key, pods.written());
    context.sets_expected.expect(&key, &written);
    context.revisions_expected.expect(&key, &revisions_written);
    result
}

/// The template's ControllerRevision (`kubectl rollout history|undo daemonset`): made,
/// or renumbered as the newest when an undo brought its template back; the oldest past
/// `revisionHistoryLimit` that no pod runs deleted.
async fn keep_history(set: &DaemonSet, context: &Context, written: &Written) -> Result<(), Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let daemon = Daemon::of(set.clone(), context.clock.now())?;
    let name = set.name_any();
    let revisions = history::owned(&context.revisions, &daemon.namespace, &set.uid().unwrap_or_default());
    let data = history::data(&daemon.template);
    let in_use: std::collections::HashSet<String> = context
        .pods
        .controlled_by(&daemon.namespace, &set.uid().unwrap_or_default())
        .iter()
        .filter_map(|p| p.labels().get(HASH_LABEL).map(|hash| format!("{name}-{hash}")))
        .collect();
    let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(history::DEFAULT_LIMIT);
    let plan = history::decide(&revisions, &format!("{name}-{}", daemon.hash), &data, &in_use, limit);
    let labels = set.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone());
    history::apply(&context.client, set, &plan, &data, &labels.unwrap_or_default(), &daemon.hash, written).await
}

async fn sync(set: &DaemonSet, context: &Context, pods: &Pods, written: &Written) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_else(|| "default".into());
    let sets: Api<DaemonSet> = Api::namespaced(context.client.clone(), &namespace);
    let daemon = Daemon::of(set.clone(), context.clock.now())?;
    let mut nodes: Vec<Value> =
        context.nodes.all().iter().filter_map(|n| serde_json::to_value(n.as_ref()).ok()).collect();
    nodes.sort_by(|a, b| node_name(a).cmp(node_name(b)));
    let owner = owner_reference(&daemon.set)?;
    let claimed = pods.claim(&daemon.selector, &owner, |_| true, true).await?;
    // Looked at again when a ready pod has been ready for `minReadySeconds`.
    if let Some(next) = next_available(&claimed, daemon.min_ready_seconds, daemon.now) {
        context.wakeups.after(&daemon.set, next);
    }
    let by_node = pods_by_node(&claimed);

    let mut changes = manage(&daemon, &nodes, &by_node);
    if changes.is_empty() && daemon.rolling.is_some() {
        // As Kubernetes, a rollout step only once the last pass's pods are all accounted for.
        changes = roll(&daemon, &nodes, &by_node)?;
    }
    apply(&daemon, pods, &changes).await?;
    if let Some(set) = write_status(&sets, &daemon, &nodes, &by_node).await? {
        written.note(&set);
    }
    Ok(Action::requeue(RESYNC))
}

/// Claimed pods by the node they are for; pods for no node are left out.
fn pods_by_node(pods: &[Pod]) -> BTreeMap<String, Vec<Pod>> {
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods {
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    for list in by_node.values_mut() {
        list.sort_by_key(age_key);
    }
    by_node
}

/// `podByCreationTimestampAndPhase`: scheduled pods first, then oldest, then by name.
fn age_key(pod: &Pod) -> (bool, Option<Timestamp>, String) {
    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
    (!scheduled, creation(pod), pod.name_any())
}

fn node_name(node: &Value) -> &str {
    node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// `manage`: a pod on each node that should run one, none where none should be, failed
/// ones replaced, extra ones deleted.
fn manage(daemon: &Daemon, nodes: &[Value], by_node: &BTreeMap<String, Vec<Pod>>) -> Changes {
    let mut changes = Changes::default();
    for node in nodes {
        let name = node_name(node);
        let pods = by_node.get(name).map(Vec::as_slice).unwrap_or_default();
        let fit = daemon.fit(node);
        if fit.should_run && pods.is_empty() {
            changes.create.push(name.to_string());
        } else if fit.should_continue {
            let mut running = Vec::new();
            for pod in pods.iter().filter(|p| !deleting(p)) {
                if is_terminal(pod) {
                    changes.delete.push(pod.name_any());
                } else {
                    running.push(pod);
                }
            }
            changes.delete.extend(excess(daemon, &running));
        } else {
            changes.delete.extend(pods.iter().filter(|p| !deleting(p)).map(|p| p.name_any()));
        }
    }
    // Pods for nodes that are gone (scheduled ones are the pod garbage collector's work
    // in Kubernetes, which is not run here).
    let known: HashSet<&str> = nodes.iter().map(node_name).collect();
    for (node, pods) in by_node {
        if !known.contains(node.as_str()) {
            changes.delete.extend(pods.iter().filter(|p| !deleting(p)).map(|p| p.name_any()));
        }
    }
    changes
}

/// Running pods beyond the one a node keeps: the oldest stays; with surge an old and a
/// new one may stay together while the new one is not yet available.
fn excess(daemon: &Daemon, running: &[&Pod]) -> Vec<String> {
    if running.len() <= 1 {
        return Vec::new();
    }
    let surge = daemon.rolling.as_ref().is_some_and(|(surge, _)| *surge != IntOrString::Int(0));
    if !surge {
        return running[1..].iter().map(|p| p.name_any()).collect();
    }
    let (mut oldest_new, mut oldest_old, mut delete) = (None, None, Vec::new());
    for pod in running {
        let slot = if daemon.updated(pod) { &mut oldest_new } else { &mut oldest_old };
        if slot.is_none() {
            *slot = Some(*pod);
        } else {
            delete.push(pod.name_any());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!is_ready(old) || daemon.available(new))
    {
        delete.push(old.name_any());
    }
    delete
}

/// `maxSurge`/`maxUnavailable` scaled to `total`, rounding up as the DaemonSet controller does.
fn scaled(value: &IntOrString, total: usize) -> Result<usize, Error> {
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    Ok(usize::try_from(super::scaled(value, total, true)?).unwrap_or(0))
}

/// The node's up-to-date and old pod, or `None` when it has two of a kind (`manage`
/// sorts that out first).
fn updated_and_old<'a>(daemon: &Daemon, pods: &'a [Pod]) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !deleting(p)) {
        let slot = if daemon.updated(pod) { &mut new } else { &mut old };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// `rollingUpdate`: old pods deleted within `maxUnavailable` (unavailable ones at
/// once), or new ones surged beside them within `maxSurge`.
fn roll(daemon: &Daemon, nodes: &[Value], by_node: &BTreeMap<String, Vec<Pod>>) -> Result<Changes, Error> {
    let Some((surge, unavailable)) = &daemon.rolling else { return Ok(Changes::default()) };
    // Nodes that should run the pod or have one.
    let nodes: Vec<(&str, Fit, &[Pod])> = nodes
        .iter()
        .map(|n| (node_name(n), daemon.fit(n), by_node.get(node_name(n)).map(Vec::as_slice).unwrap_or_default()))
        .filter(|(_, fit, pods)| fit.should_run || !pods.is_empty())
        .collect();
    let desired = nodes.iter().filter(|(_, fit, _)| fit.should_run).count();
    let max_surge = scaled(surge, desired)?;
    let max_unavailable = scaled(unavailable, desired)?;
    Ok(if max_surge == 0 {
        // Both zero would never replace anything: one may be unavailable.
        replace_within_unavailable(daemon, &nodes, max_unavailable.max(1))
    } else {
        replace_by_surging(daemon, &nodes, max_surge)
    })
}

/// Old pods deleted (and made again by `manage`) while at most `max_unavailable` nodes
/// lack an available pod; old pods that are unavailable anyway go at once.
fn replace_within_unavailable(daemon: &Daemon, nodes: &[(&str, Fit, &[Pod])], max_unavailable: usize) -> Changes {
    let (mut unavailable, mut must, mut candidates) = (0, Vec::new(), Vec::new());
    for (_, _, pods) in nodes {
        match updated_and_old(daemon, pods) {
            // Two of a kind, none, or both: `manage` is still at work on this node.
            None | Some((None, None) | (Some(_), Some(_))) => unavailable += 1,
            Some((Some(new), None)) => unavailable += usize::from(!daemon.available(new)),
            Some((None, Some(old))) if !daemon.available(old) => must.push(old.name_any()),
            Some((None, Some(old))) => candidates.push(old.name_any()),
        }
    }
    let room = max_unavailable.saturating_sub(unavailable).min(candidates.len());
    must.extend(candidates.drain(..room));
    Changes { create: Vec::new(), delete: must }
}

/// New pods made beside old ones on at most `max_surge` nodes at a time (at once where
/// the old one is unavailable anyway); an old pod goes once its replacement is
/// available.
fn replace_by_surging(daemon: &Daemon, nodes: &[(&str, Fit, &[Pod])], max_surge: usize) -> Changes {
    let mut changes = Changes::default();
    let (mut surged, mut candidates) = (0, Vec::new());
    for (node, fit, pods) in nodes {
        let Some((new, old)) = updated_and_old(daemon, pods) else {
            surged += 1;
            continue;
        };
        if !fit.should_run {
            changes.delete.extend(old.map(|p| p.name_any()));
            continue;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !daemon.available(old) => changes.create.push(node.to_string()),
            (None, Some(_)) => candidates.push(node.to_string()),
            (Some(new), Some(_)) if !daemon.available(new) => surged += 1,
            (Some(_), Some(old)) => changes.delete.push(old.name_any()),
        }
    }
    let room = max_surge.saturating_sub(surged).min(candidates.len());
    changes.create.extend(candidates.drain(..room));
    changes
}

async fn apply(daemon: &Daemon, pods: &Pods, changes: &Changes) -> Result<(), Error> {
    for node in changes.create.iter().take(BURST) {
        pods.create(&daemon.pod_for(node)?).await?;
    }
    for name in changes.delete.iter().take(BURST) {
        pods.delete(name).await?;
    }
    Ok(())
}

/// Status from the pods as listed (what this pass made or deleted is seen next pass).
async fn write_status(
    sets: &Api<DaemonSet>,
    daemon: &Daemon,
    nodes: &[Value],
    by_node: &BTreeMap<String, Vec<Pod>>,
) -> Result<Option<DaemonSet>, Error> {
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let pods: Vec<&Pod> =
            by_node.get(node_name(node)).into_iter().flatten().filter(|p| !(deleting(p) && is_terminal(p))).collect();
        if !daemon.fit(node).should_run {
            misscheduled += i32::from(!pods.is_empty());
            continue;
        }
        desired += 1;
        let Some(pod) = pods.first() else { continue };
        current += 1;
        if is_ready(pod) {
            ready += 1;
            available += i32::from(daemon.available(pod));
        }
        updated += i32::from(daemon.updated(pod));
    }
    let status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
        "updatedNumberScheduled": updated,
        "observedGeneration": daemon.set.metadata.generation,
    });
    patch_status(sets, &daemon.set, status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
               "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})
    }

    fn daemon_pod(template_spec: Value) -> Value {
        json!({"spec": daemon_spec(&json!({"spec": template_spec}))})
    }

    #[test]
    fn daemon_pods_tolerate_node_conditions_but_not_other_taints() {
        let pod = daemon_pod(json!({"containers": [{"name": "a", "image": "a"}]}));
        let unreachable = json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]);
        assert_eq!(node_fit(&pod, &node("n", json!({}), unreachable)), Fit { should_run: true, should_continue: true });
        let cordoned = json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]);
        assert!(node_fit(&pod, &node("n", json!({}), cordoned)).should_run);
        let gpu = json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]);
        assert_eq!(node_fit(&pod, &node("n", json!({}), gpu)), Fit { should_run: false, should_continue: true });
        let evicting = json!([{"key": "gpu", "value": "yes", "effect": "NoExecute"}]);
        assert_eq!(node_fit(&pod, &node("n", json!({}), evicting)), Fit { should_run: false, should_continue: false });
        let network = json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]);
        assert!(!node_fit(&pod, &node("n", json!({}), network.clone())).should_run);
        let host = daemon_pod(json!({"hostNetwork": true, "containers": [{"name": "a", "image": "a"}]}));
        assert!(node_fit(&host, &node("n", json!({}), network)).should_run);
    }

    #[test]
    fn selectors_and_required_affinity_pick_nodes() {
        let pod = daemon_pod(json!({"nodeSelector": {"role": "edge"}, "containers": []}));
        assert!(node_fit(&pod, &node("n", json!({"role": "edge"}), json!([]))).should_run);
        assert_eq!(node_fit(&pod, &node("n", json!({}), json!([]))), Fit { should_run: false, should_continue: false });
        let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}});
        let pod = daemon_pod(json!({"affinity": affinity, "containers": []}));
        assert!(node_fit(&pod, &node("n", json!({"zone": "a"}), json!([]))).should_run);
        assert!(!node_fit(&pod, &node("n", json!({"zone": "b"}), json!([]))).should_run);
    }

    #[test]
    fn pods_are_pinned_by_node_affinity_and_found_by_it() {
        let mut spec = json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": []}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}}});
        pin_to_node(&mut spec, "node-2");
        let terms = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
        assert_eq!(terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0], "node-2");
        assert_eq!(terms["nodeSelectorTerms"].as_array().map(Vec::len), Some(1));
        assert!(spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array());
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap();
        assert_eq!(target_node(&pod).as_deref(), Some("node-2"));
    }

    #[test]
    fn template_tolerations_are_replaced_not_doubled() {
        let spec = daemon_spec(&json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
            {"key": "dedicated", "operator": "Exists"}]}}));
        let tolerations = spec["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 7);
        assert_eq!(tolerations.iter().filter(|t| t["key"] == "node.kubernetes.io/not-ready").count(), 1);
        assert!(tolerations.iter().all(|t| t.get("tolerationSeconds").is_none()));
    }
}
