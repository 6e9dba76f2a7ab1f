//! The root CA publisher: every namespace that is not being deleted has the ConfigMap
//! `kube-root-ca.crt` holding the certificate authority clients in pods trust the API
//! server by (`ca.crt` of every `kube-api-access-*` volume), put back as it was if it is
//! edited or deleted, as kube-controller-manager's `root-ca-cert-publisher` keeps it.
//!
//! A cluster serving plain HTTP (`--insecure-http`) has no CA: the ConfigMap is still
//! made, with an empty `ca.crt`, so pods' volumes mount as they would on any cluster.

use super::every_namespace::{self, Write};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// The ConfigMap's name.
pub const NAME: &str = "kube-root-ca.crt";
/// Its key.
pub const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// The annotation's text, Kubernetes' own.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal \
                           endpoints such as the internal service IP or kubernetes.default.svc. No other usage is \
                           guaranteed across distributions of Kubernetes clusters.";

/// What the namespace needs: the ConfigMap made, or put back to `ca` with its description.
pub fn decide(namespace: &Namespace, current: Option<&ConfigMap>, ca: &str) -> Option<Write<ConfigMap>> {
    if !every_namespace::active(namespace) {
        return None;
    }
    let data = BTreeMap::from([(KEY.to_string(), ca.to_string())]);
    match current {
        None => Some(Write::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: Some(namespace.name_any()),
                annotations: Some(BTreeMap::from([(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into())])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        })),
        Some(current) => {
            let described = current.annotations().get(DESCRIPTION_ANNOTATION).is_some_and(|d| !d.is_empty());
            if current.data.as_ref() == Some(&data) && described {
                return None;
            }
            let mut fixed = current.clone();
            fixed.data = Some(data);
            fixed.annotations_mut().insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            Some(Write::Replace(fixed))
        }
    }
}

/// Runs until the task is dropped, publishing `ca` (PEM).
pub async fn run(client: kube::Client, ca: String) {
    every_namespace::run(client, NAME, move |namespace, current| decide(namespace, current, &ca)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(deleting: bool) -> Namespace {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some("shop".into());
        if deleting {
            namespace.metadata.deletion_timestamp = Some(crate::controllers::time_at(std::time::UNIX_EPOCH));
        }
        namespace
    }

    #[test]
    fn the_ca_is_published_kept_and_put_back() {
        let Some(Write::Create(made)) = decide(&namespace(false), None, "PEM") else { panic!("nothing made") };
        assert_eq!(made.metadata.name.as_deref(), Some(NAME));
        assert_eq!(made.data.as_ref().and_then(|d| d.get(KEY)).map(String::as_str), Some("PEM"));
        assert!(made.annotations()[DESCRIPTION_ANNOTATION].starts_with("Contains a CA bundle"));
        assert_eq!(decide(&namespace(false), Some(&made), "PEM"), None);

        let mut edited = made.clone();
        edited.data.as_mut().unwrap().insert(KEY.into(), "mine".into());
        edited.data.as_mut().unwrap().insert("extra".into(), "x".into());
        let Some(Write::Replace(fixed)) = decide(&namespace(false), Some(&edited), "PEM") else { panic!("kept") };
        assert_eq!(fixed.data, made.data);

        let mut undescribed = made.clone();
        undescribed.annotations_mut().clear();
        assert!(matches!(decide(&namespace(false), Some(&undescribed), "PEM"), Some(Write::Replace(_))));
        assert_eq!(decide(&namespace(true), None, "PEM"), None);
    }
}
