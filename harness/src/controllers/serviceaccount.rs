//! The service account controller: every namespace that is not being deleted has the
//! ServiceAccount `default`, made again if it is deleted, as kube-controller-manager's
//! `serviceaccount-controller` keeps it. No token Secret is made for it (Kubernetes 1.24
//! on): pods get tokens through their `kube-api-access-*` volume.

use super::every_namespace::{self, Write};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::ResourceExt;
use kube::api::ObjectMeta;

/// The account every namespace has, and pods run as unless they name another.
pub const DEFAULT: &str = "default";

/// What the namespace needs: its `default` account, unless it has it or is going.
pub fn decide(namespace: &Namespace, current: Option<&ServiceAccount>) -> Option<Write<ServiceAccount>> {
    if current.is_some() || !every_namespace::active(namespace) {
        return None;
    }
    Some(Write::Create(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(namespace.name_any()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }))
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client) {
    every_namespace::run(client, DEFAULT, decide).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    fn namespace(phase: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta { name: Some("shop".into()), ..ObjectMeta::default() },
            status: Some(NamespaceStatus { phase: Some(phase.into()), ..NamespaceStatus::default() }),
            ..Namespace::default()
        }
    }

    #[test]
    fn an_active_namespace_without_its_default_account_gets_one_and_no_other() {
        let Some(Write::Create(made)) = decide(&namespace("Active"), None) else { panic!("nothing made") };
        assert_eq!(
            (made.metadata.name.as_deref(), made.metadata.namespace.as_deref()),
            (Some("default"), Some("shop"))
        );
        assert!(made.secrets.is_none(), "no token Secrets since 1.24");
        assert_eq!(decide(&namespace("Active"), Some(&made)), None);
        assert_eq!(decide(&namespace("Terminating"), None), None);
    }
}
