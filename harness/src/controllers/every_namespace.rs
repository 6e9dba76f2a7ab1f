//! The scaffold of the controllers that keep one object in every namespace (the
//! `default` ServiceAccount, the `kube-root-ca.crt` ConfigMap): each namespace is
//! reconciled when it or that object changes, and a pure `decide` over the namespace and
//! the object as it is now says what to write. A namespace being deleted gets nothing:
//! the API server would refuse it, and the namespace controller is emptying it.

use super::Error;
use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

/// What a namespace's object needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Write<K> {
    Create(K),
    /// Replaced as given (it carries the `resourceVersion` it was read at).
    Replace(K),
}

/// Whether a namespace may still get content.
pub fn active(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_none()
        && namespace.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

type Decide<K> = dyn Fn(&Namespace, Option<&K>) -> Option<Write<K>> + Send + Sync;

struct Context<K> {
    client: kube::Client,
    name: &'static str,
    decide: Box<Decide<K>>,
}

/// Keeps the object `name` of kind `K` in every namespace, as `decide` says, until the
/// task is dropped.
pub async fn run<K>(
    client: kube::Client,
    name: &'static str,
    decide: impl Fn(&Namespace, Option<&K>) -> Option<Write<K>> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let objects: Api<K> = Api::all(client.clone());
    let only_ours = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let context = Arc::new(Context { client, name, decide: Box::new(decide) });
    Controller::new(namespaces, watcher::Config::default())
        .watches(objects, only_ours, |object: K| object.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)))
        .run(reconcile::<K>, |_, error, _| super::retry(error), context)
        .for_each(|_| async {})
        .await;
}

async fn reconcile<K>(namespace: Arc<Namespace>, context: Arc<Context<K>>) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + std::fmt::Debug,
    K: serde::Serialize + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(context.client.clone(), &namespace.name_any());
    let current = api.get_opt(context.name).await?;
    match (context.decide)(&namespace, current.as_ref()) {
        None => {}
        Some(Write::Create(object)) => match api.create(&PostParams::default(), &object).await {
            // Made meanwhile (by us, a moment ago), or the namespace began to go.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => {}
            other => {
                other?;
            }
        },
        Some(Write::Replace(object)) => {
            api.replace(context.name, &PostParams::default(), &object).await?;
        }
    }
    Ok(Action::await_change())
}
