//! Carrying out a plan on a live cluster, as `kubectl apply` does: creations post the
//! configuration as written, updates put the three-way merged object under the live
//! resourceVersion (someone changing it meanwhile is a conflict, not a silent overwrite),
//! and prunes delete with background propagation. Each object carries kubectl's
//! last-applied annotation, so kubectl and kubeyard can take turns on one cluster.
//!
//! Objects of one wave do not depend on each other and are sent side by side; waves go
//! in order, so a Namespace exists before what lives in it.

use super::{Client, Written};
use futures_util::StreamExt;
use kubeyard_compiler::graph::ObjectId;
use kubeyard_compiler::managed_fields::KUBEYARD_CLIENT_SIDE_APPLY;
use kubeyard_compiler::plan::state::LAST_APPLIED;
use kubeyard_compiler::plan::{Action, Entry, Plan};
use serde_json::{Value, json};
use std::collections::HashMap;

/// How objects are written.
#[derive(Clone, Debug, Default)]
pub enum Mode {
    /// As `kubectl apply` does: a create, or a put of the three-way merge, with the
    /// last-applied annotation.
    #[default]
    ClientSide,
    /// As `kubectl apply --server-side` does: each configuration as written, applied by a
    /// field manager, the server merging and refusing conflicts unless forced.
    ServerSide { manager: String, force: bool },
}

/// What happened to one object.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub entry: usize,
    pub result: Result<(), Written>,
}

fn with_last_applied(object: &Value, written: Option<&Value>) -> Value {
    let mut object = object.clone();
    if let Some(written) = written
        && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
    {
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(LAST_APPLIED.into(), Value::String(written.to_string()));
        }
    }
    object
}

/// How long an object waits for its kind, defined by a CRD of the same plan, to be served:
/// a real API server establishes a CRD a moment after it is created.
const ESTABLISHING: std::time::Duration = std::time::Duration::from_secs(30);

async fn path_of(client: &Client, entry: &Entry, defined_here: bool) -> Result<(String, String), Written> {
    let object = &entry.object;
    let started = std::time::Instant::now();
    let served = loop {
        let served =
            client.resource(&object.api_version, &object.kind).await.map_err(|e| Written::Failed(e.to_string()))?;
        match served {
            Some(served) => break served,
            None if defined_here && started.elapsed() < ESTABLISHING => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            None if defined_here => {
                return Err(Written::Failed(format!(
                    "the cluster does not serve {} {}: its CustomResourceDefinition was applied but not established within {}s",
                    object.api_version,
                    object.kind,
                    ESTABLISHING.as_secs()
                )));
            }
            None => {
                return Err(Written::Failed(format!(
                    "the cluster does not serve {} {}",
                    object.api_version, object.kind
                )));
            }
        }
    };
    let namespace = served.namespaced.then(|| object.namespace.as_deref().unwrap_or("default"));
    let collection = Client::collection(&object.api_version, &served.resource.plural, namespace);
    let path = format!("{collection}/{}", object.name);
    Ok((collection, path))
}

async fn apply_one(
    client: &Client,
    entry: &Entry,
    written: Option<&Value>,
    defined_here: bool,
    mode: &Mode,
) -> Result<(), Written> {
    // Server-side, every object is sent, as kubectl sends it: the server's merge and
    // conflicts are the truth the plan predicted.
    let server_side = matches!(mode, Mode::ServerSide { .. });
    if entry.action == Action::Unchanged && !server_side {
        return Ok(());
    }
    let (collection, path) = path_of(client, entry, defined_here).await?;
    if let (
        Mode::ServerSide { manager, force },
        Action::Create | Action::Update | Action::Unchanged | Action::Conflict,
    ) = (mode, entry.action)
    {
        // Not for an apply the plan knows will be refused: a failed apply changes nothing.
        if entry.action != Action::Create && (entry.action != Action::Conflict || *force) {
            client.upgrade_client_side(&path, manager).await?;
        }
        let source = written.or(entry.result.as_ref()).cloned().unwrap_or(Value::Null);
        return client.apply(&path, &source, manager, *force).await.map(|_| ());
    }
    match entry.action {
        Action::Create => {
            // What the user wrote, not the normalized form: defaulting is the server's job.
            let source = written.or(entry.result.as_ref()).cloned().unwrap_or(Value::Null);
            client
                .create_by(&collection, &with_last_applied(&source, written), KUBEYARD_CLIENT_SIDE_APPLY)
                .await
                .map(|_| ())
        }
        Action::Update => {
            let merged = entry.result.as_ref().ok_or_else(|| Written::Failed(format!("{path}: nothing to apply")))?;
            client.replace_by(&path, &with_last_applied(merged, written), KUBEYARD_CLIENT_SIDE_APPLY).await.map(|_| ())
        }
        Action::Delete => client.delete(&path).await.map_err(Written::Failed),
        Action::Unchanged => Ok(()),
        // Only server-side plans have conflicts, and those are sent above.
        Action::Conflict => Err(Written::Failed(format!("{path}: other field managers own fields it changes"))),
    }
}

/// Applies every entry of `plan` in its order, wave by wave, and says what became of each.
/// `on_done` is called as each object is done (for progress views).
pub async fn apply(
    client: &Client,
    plan: &Plan,
    written: &HashMap<ObjectId, Value>,
    mode: &Mode,
    mut on_done: impl FnMut(&Entry, &Result<(), Written>),
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(plan.objects.len());
    let defined = kinds_defined(plan);
    let mut start = 0;
    while start < plan.objects.len() {
        let wave = plan.objects[start].wave;
        let end = plan.objects[start..]
            .iter()
            .position(|e| e.wave != wave || wave.is_none())
            .map_or(plan.objects.len(), |n| start + n.max(1));
        let mut done = futures_util::stream::iter((start..end).map(|i| {
            let entry = &plan.objects[i];
            let group = entry.object.api_version.rsplit_once('/').map_or("", |(group, _)| group);
            let defined_here = defined.contains(&(group.to_string(), entry.object.kind.clone()));
            async move { (i, apply_one(client, entry, written.get(&entry.object.id), defined_here, mode).await) }
        }))
        .buffer_unordered(16);
        while let Some((i, result)) = done.next().await {
            on_done(&plan.objects[i], &result);
            outcomes.push(Outcome { entry: i, result });
        }
        start = end;
    }
    outcomes.sort_by_key(|o| o.entry);
    outcomes
}

/// The (group, kind)s the plan's CustomResourceDefinitions define.
fn kinds_defined(plan: &Plan) -> std::collections::HashSet<(String, String)> {
    plan.objects
        .iter()
        .filter(|e| {
            e.object.kind == "CustomResourceDefinition" && e.object.api_version.starts_with("apiextensions.k8s.io/")
        })
        .filter_map(|e| e.result.as_ref())
        .filter_map(|crd| {
            let group = crd.pointer("/spec/group")?.as_str()?;
            let kind = crd.pointer("/spec/names/kind")?.as_str()?;
            Some((group.to_string(), kind.to_string()))
        })
        .collect()
}
