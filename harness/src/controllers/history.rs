//! ControllerRevisions: the template history DaemonSets and StatefulSets keep, as
//! Kubernetes' controllers keep it (`pkg/controller/history`, the DaemonSet's `snapshot`
//! and the StatefulSet's `newRevision`). One revision per distinct template, named
//! `<owner>-<hash>` (the hash the pods' `controller-revision-hash` label carries), holding
//! the template as a strategic merge patch that replaces it
//! (`{"spec":{"template":{...,"$patch":"replace"}}}`), the owner's annotations (so
//! `kubernetes.io/change-cause` shows in `kubectl rollout history`) and a revision number.
//! A template brought back (`kubectl rollout undo`) reuses its revision, renumbered as the
//! newest, so history reads `2, 3` as in Kubernetes. Past `revisionHistoryLimit` (10), the
//! oldest revisions no pod still runs are deleted.
//!
//! `decide` is the pure part: from the owner's revisions, the current template's, and the
//! revisions pods run, what to create, renumber and delete.

use super::{Error, owner_reference};
use crate::informers::{Informer, Written};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// `revisionHistoryLimit`'s default for DaemonSets and StatefulSets.
pub const DEFAULT_LIMIT: i32 = 10;

/// A revision as `decide` sees it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Known {
    pub name: String,
    pub revision: i64,
    pub data: Value,
}

/// What to do with the history.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// The current template's revision to make, with its number.
    pub create: Option<(String, i64)>,
    /// An older revision of the same template, renumbered as the newest.
    pub renumber: Option<(String, i64)>,
    pub delete: Vec<String>,
    /// The current template's revision number, once the plan is made.
    pub current: i64,
}

/// The data a revision holds for a template.
pub(super) fn data(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// `name` is the current template's revision, `data` its data; `in_use` the revision
/// names pods still run.
pub(super) fn decide(known: &[Known], name: &str, data: &Value, in_use: &HashSet<String>, limit: i32) -> Plan {
    let newest = known.iter().map(|k| k.revision).max().unwrap_or(0);
    let mut plan = Plan::default();
    // The same template under its name (or, after a hash change, the same data).
    let found = known.iter().find(|k| k.name == name || k.data == *data);
    match found {
        Some(existing) if existing.revision == newest => plan.current = existing.revision,
        Some(existing) => {
            plan.renumber = Some((existing.name.clone(), newest + 1));
            plan.current = newest + 1;
        }
        None => {
            plan.create = Some((name.to_string(), newest + 1));
            plan.current = newest + 1;
        }
    }
    // The oldest first, never the current one nor one a pod runs.
    // The revision that holds the current template, whatever its name.
    let current_name = found.map(|k| k.name.clone()).unwrap_or_else(|| name.to_string());
    let mut old: Vec<&Known> = known.iter().filter(|k| k.name != current_name && !in_use.contains(&k.name)).collect();
    old.sort_by_key(|k| k.revision);
    let total = known.len() + usize::from(plan.create.is_some());
    let excess = total.saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0) + 1);
    plan.delete = old.into_iter().take(excess).map(|k| k.name.clone()).collect();
    plan
}

/// The owner's revisions, from the cache.
pub(super) fn owned(revisions: &Informer<ControllerRevision>, namespace: &str, uid: &str) -> Vec<Known> {
    revisions
        .controlled_by(namespace, uid)
        .iter()
        .map(|r: &Arc<ControllerRevision>| Known {
            name: r.name_any(),
            revision: r.revision,
            data: r.data.as_ref().map(|d| d.0.clone()).unwrap_or(Value::Null),
        })
        .collect()
}

/// Brings the owner's history to the plan: the revision made (labels: the template's and
/// the hash; annotations: the owner's), renumbered or deleted.
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply<K>(
    client: &kube::Client,
    owner: &K,
    plan: &Plan,
    data: &Value,
    template_labels: &BTreeMap<String, String>,
    hash: &str,
    written: &Written,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    if let Some((name, revision)) = &plan.create {
        let mut labels = template_labels.clone();
        labels.insert(super::daemonset::HASH_LABEL.into(), hash.to_string());
        let mut metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(owner)?]),
            ..Default::default()
        };
        metadata.annotations = owner.meta().annotations.clone();
        let revision = ControllerRevision { metadata, data: Some(RawExtension(data.clone())), revision: *revision };
        match api.create(&PostParams::default(), &revision).await {
            Ok(created) => written.note(&created),
            // Made by an earlier pass the cache does not show yet.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
    }
    if let Some((name, revision)) = &plan.renumber {
        let patch = json!({"revision": revision});
        written.note(&api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?);
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str, revision: i64, image: &str) -> Known {
        Known { name: name.into(), revision, data: data(&json!({"spec": {"containers": [{"image": image}]}})) }
    }

    fn template(image: &str) -> Value {
        data(&json!({"spec": {"containers": [{"image": image}]}}))
    }

    #[test]
    fn each_template_is_one_revision_and_an_undo_renumbers_the_old_one() {
        let none = HashSet::new();
        let first = decide(&[], "agent-a", &template("v1"), &none, 10);
        assert_eq!((first.create, first.current), (Some(("agent-a".into(), 1)), 1));
        let same = decide(&[known("agent-a", 1, "v1")], "agent-a", &template("v1"), &none, 10);
        assert_eq!(same, Plan { current: 1, ..Plan::default() });
        let updated = decide(&[known("agent-a", 1, "v1")], "agent-b", &template("v2"), &none, 10);
        assert_eq!(updated.create, Some(("agent-b".into(), 2)));
        // Back to v1: its revision becomes 3; history reads 2, 3.
        let undone =
            decide(&[known("agent-a", 1, "v1"), known("agent-b", 2, "v2")], "agent-a", &template("v1"), &none, 10);
        assert_eq!((undone.renumber, undone.create, undone.current), (Some(("agent-a".into(), 3)), None, 3));
    }

    #[test]
    fn past_the_limit_the_oldest_unused_revisions_go() {
        let history = [known("a", 1, "v1"), known("b", 2, "v2"), known("c", 3, "v3")];
        let in_use: HashSet<String> = ["a".to_string()].into();
        let plan = decide(&history, "d", &template("v4"), &in_use, 1);
        // Four revisions with the new one, two allowed (the current and one more): "a" is
        // still run by a pod, so "b" goes, then "c".
        assert_eq!(plan.delete, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(decide(&history, "c", &template("v3"), &HashSet::new(), 10).delete, Vec::<String>::new());
        assert_eq!(data(&json!({"spec": {}}))["spec"]["template"]["$patch"], "replace");
    }
}
