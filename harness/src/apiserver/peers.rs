//! What an API server keeps from the store, kept in step with the writes of other API
//! servers on the same store (`Options::shared_store`), as kube-apiserver's informers
//! keep its authorizer, admission plugins and CRD handlers current: the RBAC objects,
//! the admission policies and webhooks, and the CRDs. One store watch per kind; each
//! event makes the server read that kind again, as a write through this server does. A
//! watch that ends (the store away, its history compacted) is opened again from the
//! store's revision after everything is read again, so nothing written meanwhile is
//! missed.

use super::{ApiServer, crds, policies, resources, webhooks};
use std::sync::Arc;
use std::time::Duration;

/// What an event on a kind makes the server read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follows {
    Rbac,
    Policies,
    Webhooks,
    Crds,
}

/// The kinds followed: (group, kind, what their events refresh).
const FOLLOWED: [(&str, &str, Follows); 9] = [
    ("rbac.authorization.k8s.io", "Role", Follows::Rbac),
    ("rbac.authorization.k8s.io", "ClusterRole", Follows::Rbac),
    ("rbac.authorization.k8s.io", "RoleBinding", Follows::Rbac),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", Follows::Rbac),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", Follows::Policies),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", Follows::Policies),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration", Follows::Webhooks),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", Follows::Webhooks),
    ("apiextensions.k8s.io", "CustomResourceDefinition", Follows::Crds),
];

/// Follows the store for as long as the server lives.
pub async fn follow(server: Arc<ApiServer>) {
    let weak = Arc::downgrade(&server);
    drop(server);
    let tasks = FOLLOWED.iter().filter_map(|&(group, kind, follows)| {
        let resource = resources::by_kind(group, kind)?;
        Some(follow_kind(weak.clone(), resource.prefix(None), follows))
    });
    futures_util::future::join_all(tasks).await;
}

async fn follow_kind(server: std::sync::Weak<ApiServer>, prefix: String, follows: Follows) {
    loop {
        let Some(strong) = server.upgrade() else { return };
        let Ok(revision) = strong.store.revision().await else {
            drop(strong);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let watch = strong.store.watch(&prefix, revision).await;
        // Read everything again from that revision on: what was written while no watch
        // was open is seen now, what is written later the watch brings.
        refresh_all(&strong, follows).await;
        drop(strong);
        let Ok(mut events) = watch else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let opened = std::time::Instant::now();
        loop {
            // Looks up now and then whether the server is still there, so a quiet kind's
            // task ends with it.
            let event = tokio::select! {
                event = events.recv() => event,
                () = tokio::time::sleep(Duration::from_secs(30)) => {
                    if server.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            };
            let Some(Ok(event)) = event else { break };
            let Some(strong) = server.upgrade() else { return };
            refresh(&strong, follows, &event.key).await;
        }
        // A watch that ended at once (the store failing) is not opened again at once.
        if opened.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn refresh(server: &ApiServer, follows: Follows, key: &str) {
    match follows {
        Follows::Rbac => server.policy_cache.forget(),
        Follows::Policies => policies::reload(server).await,
        Follows::Webhooks => webhooks::reload(server).await,
        Follows::Crds => {
            if let Some(name) = key.rsplit('/').next().filter(|n| !n.is_empty()) {
                crds::sync(server, name).await;
            }
        }
    }
}

async fn refresh_all(server: &ApiServer, follows: Follows) {
    match follows {
        Follows::Crds => crds::load(server).await,
        other => refresh(server, other, "").await,
    }
}
