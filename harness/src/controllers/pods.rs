//! Pods as the pod-making controllers (ReplicaSet's kin: DaemonSet, Job, StatefulSet)
//! handle them: read from the shared informer's cache, claimed as Kubernetes'
//! `ClaimPods` does (orphans the selector matches adopted, owned ones it no longer
//! matches released), written through the API with every write noted, so the next
//! reconcile waits for the cache to hold it; and the predicates they all read.

use super::Error;
use crate::informers::{Informer, Written, controller_of};
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubeyard_compiler::selector::Selector;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// One namespace's pods, for one reconcile.
pub(crate) struct Pods {
    pub api: Api<Pod>,
    cache: Informer<Pod>,
    namespace: String,
    written: Written,
    reporter: Option<Reporter>,
}

/// Who says what this handle's creates and deletes did (`SuccessfulCreate`,
/// `SuccessfulDelete`, `FailedCreate`), on which owner, in whose words.
pub(crate) struct Reporter {
    pub client: kube::Client,
    pub clock: crate::clock::Clock,
    /// The owner as the API returns it (`apiVersion`, `kind`, `metadata`).
    pub owner: Value,
    pub component: &'static str,
    /// StatefulSets word it their own way (`create Pod web-0 in StatefulSet web successful`).
    pub stateful: bool,
}

impl Reporter {
    /// The reporter of `component`'s pods of `owner` (of `api_version`, `kind`).
    pub fn of<K: serde::Serialize>(
        context: (&kube::Client, &crate::clock::Clock),
        owner: &K,
        (api_version, kind): (&str, &str),
        component: &'static str,
    ) -> Reporter {
        Reporter {
            client: context.0.clone(),
            clock: context.1.clone(),
            owner: owner_json(owner, api_version, kind),
            component,
            stateful: kind == "StatefulSet",
        }
    }
}

/// An owner as events name it: its JSON with `apiVersion` and `kind`.
pub(crate) fn owner_json<K: serde::Serialize>(owner: &K, api_version: &str, kind: &str) -> Value {
    let mut object = serde_json::to_value(owner).unwrap_or_default();
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    object
}

impl Reporter {
    async fn say(&self, kind: crate::events::Type, reason: &str, message: String) {
        let source = crate::events::Source { component: self.component, host: None };
        let now = self.clock.timestamp();
        crate::events::record(&self.client, &self.owner, source, kind, reason, &message, &now).await;
    }

    fn owner_name(&self) -> &str {
        self.owner.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
    }
}

impl Pods {
    pub fn new(client: &kube::Client, cache: &Informer<Pod>, namespace: &str) -> Pods {
        Pods {
            api: Api::namespaced(client.clone(), namespace),
            cache: cache.clone(),
            namespace: namespace.to_string(),
            written: Written::default(),
            reporter: None,
        }
    }

    /// This handle's creates and deletes are reported as events on the owner.
    pub fn reporting(mut self, reporter: Reporter) -> Pods {
        self.reporter = Some(reporter);
        self
    }

    /// The namespace's pods this owner controls (`ClaimPods`): orphans its selector
    /// matches (and `member` accepts) adopted unless `adopt` is false (an owner being
    /// deleted adopts nothing), owned ones it no longer matches released.
    pub async fn claim(
        &self,
        selector: &Selector,
        owner: &OwnerReference,
        member: impl Fn(&Pod) -> bool,
        adopt: bool,
    ) -> Result<Vec<Pod>, Error> {
        let mut claimed = Vec::new();
        let owned = self.cache.controlled_by(&self.namespace, &owner.uid);
        let orphans = if adopt { self.cache.controlled_by(&self.namespace, "") } else { Vec::new() };
        for pod in owned.into_iter().chain(orphans) {
            let matches = !selector.is_nothing() && selector.matches(pod.labels()) && member(&pod);
            match controller_of(pod.as_ref()) {
                Some(uid) if uid == owner.uid && matches => claimed.push(pod.as_ref().clone()),
                Some(uid) if uid == owner.uid && !deleting(&pod) => {
                    // Released: it no longer carries the labels this owner selects.
                    let kept: Vec<&OwnerReference> =
                        pod.owner_references().iter().filter(|r| r.uid != owner.uid).collect();
                    self.set_owners(&pod, json!(kept)).await?;
                }
                None if matches && adopt && !deleting(&pod) => {
                    let mut references = pod.owner_references().to_vec();
                    references.push(owner.clone());
                    if let Some(adopted) = self.set_owners(&pod, json!(references)).await? {
                        claimed.push(adopted);
                    }
                }
                _ => {}
            }
        }
        Ok(claimed)
    }

    /// Writes a pod's owner references against the version it was read at; `None` if the
    /// pod is gone meanwhile.
    async fn set_owners(&self, pod: &Pod, references: Value) -> Result<Option<Pod>, Error> {
        let patch = json!({"metadata": {"ownerReferences": references, "resourceVersion": pod.resource_version()}});
        self.patch(&pod.name_any(), patch).await
    }

    /// A merge patch; `None` when the pod is gone.
    pub async fn patch(&self, name: &str, patch: Value) -> Result<Option<Pod>, Error> {
        match self.api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(pod) => {
                self.written.note(&pod);
                Ok(Some(pod))
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn create(&self, pod: &Pod) -> Result<Pod, kube::Error> {
        let created = self.api.create(&PostParams::default(), pod).await;
        if let Some(reporter) = &self.reporter {
            let owner = reporter.owner_name();
            let (kind, reason, message) = match (&created, reporter.stateful) {
                (Ok(pod), false) => {
                    (crate::events::Type::Normal, "SuccessfulCreate", format!("Created pod: {}", pod.name_any()))
                }
                (Ok(pod), true) => (
                    crate::events::Type::Normal,
                    "SuccessfulCreate",
                    format!("create Pod {} in StatefulSet {owner} successful", pod.name_any()),
                ),
                (Err(error), false) => {
                    (crate::events::Type::Warning, "FailedCreate", format!("Error creating: {error}"))
                }
                (Err(error), true) => (
                    crate::events::Type::Warning,
                    "FailedCreate",
                    format!("create Pod {} in StatefulSet {owner} failed error: {error}", pod.name_any()),
                ),
            };
            reporter.say(kind, reason, message).await;
        }
        let created = created?;
        self.written.note(&created);
        Ok(created)
    }

    /// Deletes a pod; one already gone is what was wanted.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        match self.api.delete(name, &DeleteParams::default()).await {
            Ok(deleted) => {
                if let Some(pod) = deleted.left() {
                    self.written.note(&pod);
                }
                if let Some(reporter) = &self.reporter {
                    let message = if reporter.stateful {
                        format!("delete Pod {name} in StatefulSet {} successful", reporter.owner_name())
                    } else {
                        format!("Deleted pod: {name}")
                    };
                    reporter.say(crate::events::Type::Normal, "SuccessfulDelete", message).await;
                }
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// An event on the owner this handle reports for (none without a reporter).
    pub async fn say(&self, kind: crate::events::Type, reason: &str, message: String) {
        if let Some(reporter) = &self.reporter {
            reporter.say(kind, reason, message).await;
        }
    }

    /// Every write made through this handle, for the reconcile's expectations.
    pub fn written(&self) -> &Written {
        &self.written
    }
}

pub(crate) fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The pod's condition of this type.
pub(crate) fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    condition(pod, "Ready")
}

/// `IsPodReady` (`kubeyard_compiler::pod::ready`).
pub(crate) fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    kubeyard_compiler::pod::ready(conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())))
}

/// Ready for at least `min_ready_seconds` (`IsPodAvailable`).
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: SystemTime) -> bool {
    available_in(pod, min_ready_seconds, now).is_some_and(|left| left.is_zero())
}

/// How long until a ready pod has been ready for `min_ready_seconds` (zero: it is
/// available); `None` for a pod that is not ready, or whose readiness has no time.
pub(crate) fn available_in(pod: &Pod, min_ready_seconds: i32, now: SystemTime) -> Option<Duration> {
    let condition = ready_condition(pod).filter(|_| is_ready(pod))?;
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    let since = condition.last_transition_time.as_ref().and_then(|t| crate::clock::parse(&t.0.to_string()))?;
    let wait = Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0));
    Some((since + wait).duration_since(now).unwrap_or_default())
}

/// When the first of these pods that is ready but not yet available will be: the moment
/// a controller counting available pods looks again.
pub(crate) fn next_available<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    min_ready_seconds: i32,
    now: SystemTime,
) -> Option<Duration> {
    pods.into_iter().filter_map(|p| available_in(p, min_ready_seconds, now)).filter(|left| !left.is_zero()).min()
}

/// Which active pod a controller removes first (`controller.ActivePods`' order, without its
/// ready-time and restart tie-breaks): unscheduled before scheduled, pending before
/// unknown before running, not ready before ready, then the newest.
pub(crate) fn removal_rank(pod: &Pod) -> (bool, u8, bool, std::cmp::Reverse<Option<Timestamp>>) {
    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
    let phase = match phase(pod) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    (scheduled, phase, is_ready(pod), std::cmp::Reverse(creation(pod)))
}

pub(crate) fn creation(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// How a pod made from a template is named: by the API server from a prefix
/// (`generateName`: ReplicaSets, Jobs, DaemonSets), or by its controller (StatefulSets).
pub(crate) enum Naming {
    Generated(String),
    Named(String),
}

/// A pod of its controller's template, as `GetPodFromTemplate` (pkg/controller) makes it:
/// the template's labels, annotations and spec as the caller has adjusted them, in the
/// owner's namespace, with the owner's controller reference and any finalizers the
/// controller tracks pods by.
pub(crate) fn from_template(
    naming: Naming,
    namespace: &str,
    (labels, annotations): (Value, Value),
    spec: Value,
    owner: Value,
    finalizers: &[&str],
) -> Result<Pod, Error> {
    let mut metadata = json!({
        "namespace": namespace,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [owner],
    });
    match naming {
        Naming::Generated(prefix) => metadata["generateName"] = json!(prefix),
        Naming::Named(name) => metadata["name"] = json!(name),
    }
    if !finalizers.is_empty() {
        metadata["finalizers"] = json!(finalizers);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    serde_json::from_value(pod).map_err(|e| Error::Invalid(e.to_string()))
}

/// A template's labels and annotations (empty maps when it has none).
pub(crate) fn template_metadata(template: &Value) -> (Value, Value) {
    let field = |name: &str| template.pointer(&format!("/metadata/{name}")).cloned().unwrap_or_else(|| json!({}));
    (field("labels"), field("annotations"))
}
