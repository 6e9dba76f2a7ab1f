//! The namespace controller: a namespace being deleted (a `deletionTimestamp`, phase
//! `Terminating`) has everything in it deleted, kind by kind over every namespaced kind
//! discovery shows (`deletecollection` where it is served, else object by object, with
//! `Background` propagation as Kubernetes' namespace deleter asks), and its status
//! conditions say what is left and why (`NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining`, `NamespaceDeletionContentFailure`, ...). When nothing
//! is left, `kubernetes` is taken out of `spec.finalizers` through the `finalize`
//! subresource, and the API server removes the namespace once no finalizer holds it.
//!
//! Objects held by finalizers (a pod on a node waiting for its kubelet, a foreground
//! owner waiting for its dependents) keep the namespace until whoever owns the finalizer
//! is done: the namespace is looked at again every second meanwhile, as nothing in it
//! sends the namespace an event.

use super::Error;
use super::garbage_collector::{Kind, Meta, discover};
use crate::clock::Clock;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The finalizer the namespace controller owns.
const FINALIZER: &str = "kubernetes";

/// How soon a namespace with content left is looked at again, on the control plane's
/// clock (a test that runs the clock ahead has it looked at sooner).
const POLL: Duration = Duration::from_secs(1);

struct Context {
    client: kube::Client,
    clock: Clock,
    again: mpsc::UnboundedSender<ObjectRef<Namespace>>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, clock: Clock) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let (again, later) = mpsc::unbounded_channel();
    let later = futures_util::stream::unfold(later, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    Controller::new(namespaces, watcher::Config::default())
        .reconcile_on(later)
        .run(reconcile, |_, _, _| Action::requeue(POLL), Arc::new(Context { client, clock, again }))
        .for_each(|_| async {})
        .await;
}

/// The namespace is looked at again after `POLL` of the control plane's clock.
fn again_later(context: &Context, namespace: &Namespace) {
    let (clock, again, reference) = (context.clock.clone(), context.again.clone(), ObjectRef::from_obj(namespace));
    tokio::spawn(async move {
        clock.sleep(POLL).await;
        let _ = again.send(reference);
    });
}

fn held_by_us(namespace: &Namespace) -> bool {
    namespace.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

async fn reconcile(namespace: Arc<Namespace>, context: Arc<Context>) -> Result<Action, Error> {
    if namespace.metadata.deletion_timestamp.is_none() || !held_by_us(&namespace) {
        return Ok(Action::await_change());
    }
    let client = &context.client;
    let name = namespace.name_any();
    let content = match discover(client).await {
        Ok(kinds) => delete_content(client, &name, &kinds).await,
        Err(error) => Content { undiscovered: Some(error.to_string()), ..Content::default() },
    };
    report(client, &namespace, &content).await?;
    if !content.is_empty() {
        again_later(&context, &namespace);
        return Ok(Action::await_change());
    }
    finalize(client, &name).await?;
    Ok(Action::await_change())
}

/// What one pass over a namespace's content found.
#[derive(Default)]
struct Content {
    /// Why discovery failed, if it did: then nothing is known to be gone.
    undiscovered: Option<String>,
    /// Per resource whose deletion or listing failed, why.
    failures: Vec<String>,
    /// Objects left per resource (`pods`, `replicasets.apps`).
    remaining: BTreeMap<String, usize>,
    /// Objects left per finalizer holding them.
    finalizers: BTreeMap<String, usize>,
}

impl Content {
    fn is_empty(&self) -> bool {
        self.undiscovered.is_none() && self.failures.is_empty() && self.remaining.is_empty()
    }

    fn count(&mut self, resource: String, left: &[Meta]) {
        if left.is_empty() {
            return;
        }
        self.remaining.insert(resource, left.len());
        for finalizer in left.iter().flat_map(|o| o.metadata.finalizers.iter().flatten()) {
            *self.finalizers.entry(finalizer.clone()).or_default() += 1;
        }
    }
}

/// Deletes everything namespaced in `namespace`, then counts what is left.
async fn delete_content(client: &kube::Client, namespace: &str, kinds: &[Kind]) -> Content {
    let mut content = Content::default();
    for kind in kinds.iter().filter(|k| k.namespaced) {
        let api = kind.api(client, Some(namespace));
        if let Err(error) = delete_all(&api, kind).await {
            content.failures.push(format!("{}: {error}", kind.resource_name()));
        }
        match api.list(&ListParams::default()).await {
            Ok(left) => content.count(kind.resource_name(), &left.items),
            Err(error) => content.failures.push(format!("{}: {error}", kind.resource_name())),
        }
    }
    content
}

async fn delete_all(api: &Api<Meta>, kind: &Kind) -> Result<(), kube::Error> {
    let params = DeleteParams::background();
    if kind.delete_collection {
        return api.delete_collection(&params, &ListParams::default()).await.map(drop);
    }
    for object in api.list(&ListParams::default()).await?.items {
        match api.delete(&object.name_any(), &params).await {
            // Gone in the meantime: that is what was wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// One condition: `True` with its reason and message when there is `trouble`, else
/// `False` with the all-clear reason and message.
fn condition(type_: &str, trouble: Option<(&str, String)>, clear: (&str, &str)) -> NamespaceCondition {
    let (status, reason, message) = match trouble {
        Some((reason, message)) => ("True", reason, message),
        None => ("False", clear.0, clear.1.to_string()),
    };
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

fn listed(counts: &BTreeMap<String, usize>, what: &str) -> String {
    counts
        .iter()
        .map(|(name, count)| format!("{name} {what} {count} resource instances"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conditions Kubernetes' namespace controller sets on a terminating namespace.
fn conditions(content: &Content) -> Vec<NamespaceCondition> {
    let failed = &content.failures;
    let undiscovered = content
        .undiscovered
        .as_ref()
        .map(|why| ("DiscoveryFailed", format!("Discovery failed for some groups: {why}")));
    let failures = (!failed.is_empty()).then(|| {
        let message = format!("Failed to delete all resource types, {} remaining: {}", failed.len(), failed.join(", "));
        ("ContentDeletionFailed", message)
    });
    let remaining = (!content.remaining.is_empty()).then(|| {
        ("SomeResourcesRemain", format!("Some resources are remaining: {}", listed(&content.remaining, "has")))
    });
    let finalizers = (!content.finalizers.is_empty()).then(|| {
        let held = listed(&content.finalizers, "in");
        ("SomeFinalizersRemain", format!("Some content in the namespace has finalizers remaining: {held}"))
    });
    vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            undiscovered,
            ("ResourcesDiscovered", "All resources successfully discovered"),
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            None,
            ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
        ),
        condition(
            "NamespaceDeletionContentFailure",
            failures,
            ("ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
        ),
        condition("NamespaceContentRemaining", remaining, ("ContentRemoved", "All content successfully removed")),
        condition(
            "NamespaceFinalizersRemaining",
            finalizers,
            ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
        ),
    ]
}

/// Writes the conditions if they changed; a condition keeps its transition time while its
/// status stays.
async fn report(client: &kube::Client, namespace: &Namespace, content: &Content) -> Result<(), kube::Error> {
    let current = namespace.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let same = |a: &NamespaceCondition, b: &NamespaceCondition| {
        (&a.type_, &a.status, &a.reason, &a.message) == (&b.type_, &b.status, &b.reason, &b.message)
    };
    let mut wanted = conditions(content);
    let unchanged = wanted.len() == current.len() && wanted.iter().all(|w| current.iter().any(|c| same(w, c)));
    if unchanged {
        return Ok(());
    }
    let now = Time(Timestamp::now());
    for condition in &mut wanted {
        let before = current.iter().find(|c| c.type_ == condition.type_ && c.status == condition.status);
        condition.last_transition_time =
            Some(before.and_then(|c| c.last_transition_time.clone()).unwrap_or(now.clone()));
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": wanted}});
    api.patch_status(&namespace.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
}

/// Takes `kubernetes` out of `spec.finalizers` through the `finalize` subresource, on the
/// namespace as it is now (the conditions were just written).
async fn finalize(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let Some(mut namespace) = api.get_opt(name).await? else {
        return Ok(());
    };
    if let Some(finalizers) = namespace.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        finalizers.retain(|f| f != FINALIZER);
    }
    match api.replace_subresource("finalize", name, &PostParams::default(), &namespace).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        result => result.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_is_left_and_what_holds_it() {
        let mut content = Content::default();
        assert!(content.is_empty());
        let all_clear = conditions(&content);
        assert!(all_clear.iter().all(|c| c.status == "False"), "{all_clear:?}");

        content.remaining.insert("pods".into(), 2);
        content.finalizers.insert("foregroundDeletion".into(), 1);
        assert!(!content.is_empty());
        let held = conditions(&content);
        let remaining = held.iter().find(|c| c.type_ == "NamespaceContentRemaining").map(|c| c.message.clone());
        assert_eq!(remaining, Some(Some("Some resources are remaining: pods has 2 resource instances".into())));
        let finalizers = held.iter().find(|c| c.type_ == "NamespaceFinalizersRemaining").map(|c| c.status.as_str());
        assert_eq!(finalizers, Some("True"));
    }
}
