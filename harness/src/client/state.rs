//! What a live cluster holds for a plan: each desired object as the cluster has it, and,
//! for pruning, every object that carries a last-applied configuration among the kinds
//! of the manifests and those `kubectl apply --prune` looks at by default, in the
//! manifests' namespaces.

use super::Client;
use futures_util::StreamExt;
use kubeyard_compiler::graph::ObjectId;
use kubeyard_compiler::plan::DryRun;
use kubeyard_compiler::plan::state::{LAST_APPLIED, State};
use serde_json::Value;
use std::collections::BTreeSet;

/// Requests in flight at once.
const CONCURRENCY: usize = 16;

/// The kinds `kubectl apply --prune` considers when not told otherwise.
const PRUNED_BY_DEFAULT: &[(&str, &str)] = &[
    ("v1", "ConfigMap"),
    ("v1", "Endpoints"),
    ("v1", "Namespace"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "PersistentVolume"),
    ("v1", "Pod"),
    ("v1", "ReplicationController"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "Ingress"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
];

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

pub async fn read(client: &Client, desired: &[&Value], prune: bool) -> Result<State, String> {
    let mut wanted = Vec::new();
    let mut collections = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    let mut namespaces = BTreeSet::new();
    for object in desired {
        let (Some(api_version), Some(kind), Some(name)) =
            (text(object, "/apiVersion"), text(object, "/kind"), text(object, "/metadata/name"))
        else {
            continue;
        };
        let Some(served) = client.resource(api_version, kind).await? else {
            // A kind the cluster does not serve (a CRD not installed yet): nothing exists.
            continue;
        };
        let namespace = served.namespaced.then(|| text(object, "/metadata/namespace").unwrap_or("default").to_string());
        let collection = Client::collection(api_version, &served.resource.plural, namespace.as_deref());
        wanted.push(format!("{collection}/{name}"));
        kinds.insert((api_version.to_string(), kind.to_string()));
        namespaces.extend(namespace);
    }
    if prune {
        kinds.extend(PRUNED_BY_DEFAULT.iter().map(|(v, k)| (v.to_string(), k.to_string())));
        if namespaces.is_empty() {
            namespaces.insert("default".to_string());
        }
        for (api_version, kind) in &kinds {
            let Some(served) = client.resource(api_version, kind).await? else { continue };
            let plural = &served.resource.plural;
            if served.namespaced {
                for namespace in &namespaces {
                    let collection = Client::collection(api_version, plural, Some(namespace));
                    collections.insert((api_version.clone(), kind.clone(), collection));
                }
            } else {
                collections.insert((api_version.clone(), kind.clone(), Client::collection(api_version, plural, None)));
            }
        }
    }
    let mut state = State::default();
    let fetched: Vec<Result<Option<Value>, String>> =
        futures_util::stream::iter(wanted.iter().map(|path| client.get(path))).buffered(CONCURRENCY).collect().await;
    for object in fetched {
        if let Some(object) = object? {
            state
                .add(object)
                .map_err(|problems| problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; "))?;
        }
    }
    if prune {
        let lists: Vec<Result<Vec<Value>, String>> = futures_util::stream::iter(
            collections.iter().map(|(api_version, kind, path)| client.list(path, api_version, kind)),
        )
        .buffered(CONCURRENCY)
        .collect()
        .await;
        for items in lists {
            for object in items? {
                if object.pointer("/metadata/annotations").and_then(|a| a.get(LAST_APPLIED)).is_some() {
                    state.add(object).map_err(|problems| {
                        problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; ")
                    })?;
                }
            }
        }
    }
    Ok(state)
}

/// A server-side apply of each desired object the state holds, with `dryRun=All`, by
/// `manager`: the server's answers, by object (`plan --server-side` on a live cluster).
/// `desired` pairs each object's normalized form (its identity) with the form written,
/// which is what is sent. Objects the cluster does not hold yet are left to the plan's
/// prediction: a dry run cannot create them in a namespace the plan has yet to create.
pub async fn dry_run_applies(
    client: &Client,
    desired: &[(&Value, &Value)],
    state: &State,
    manager: &str,
    force: bool,
) -> Result<std::collections::HashMap<ObjectId, DryRun>, String> {
    let mut asked = Vec::new();
    for (normalized, written) in desired {
        let Some(id) = ObjectId::of(normalized) else { continue };
        let Some(current) = state.get(&id) else { continue };
        // What kubeyard's client-side applies own becomes the applier's before its apply
        // (`Client::upgrade_client_side`), which a dry run cannot do: the prediction
        // models it.
        let entries = current.live.pointer("/metadata/managedFields").unwrap_or(&Value::Null);
        let entries = kubeyard_compiler::managed_fields::decode(entries).unwrap_or_default();
        let csa = kubeyard_compiler::managed_fields::KUBEYARD_CLIENT_SIDE_APPLY;
        if kubeyard_compiler::managed_fields::upgrade_client_side(&entries, csa, manager).is_some() {
            continue;
        }
        let (Some(api_version), Some(kind), Some(name)) =
            (text(normalized, "/apiVersion"), text(normalized, "/kind"), text(normalized, "/metadata/name"))
        else {
            continue;
        };
        let Some(served) = client.resource(api_version, kind).await? else { continue };
        let namespace =
            served.namespaced.then(|| text(normalized, "/metadata/namespace").unwrap_or("default").to_string());
        let collection = Client::collection(api_version, &served.resource.plural, namespace.as_deref());
        asked.push((id, format!("{collection}/{name}"), *written));
    }
    let answers: Vec<Result<DryRun, String>> = futures_util::stream::iter(
        asked.iter().map(|(_, path, written)| client.apply_dry_run(path, written, manager, force)),
    )
    .buffered(CONCURRENCY)
    .collect()
    .await;
    let mut out = std::collections::HashMap::new();
    for ((id, _, _), answer) in asked.into_iter().zip(answers) {
        out.insert(id, answer?);
    }
    Ok(out)
}
