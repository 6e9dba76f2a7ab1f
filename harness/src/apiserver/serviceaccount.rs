//! The ServiceAccount admission plugin, on every pod created: the pod runs as
//! `spec.serviceAccountName` (`default` when it names none), which must exist, and unless
//! the pod or its account turns `automountServiceAccountToken` off, every container and
//! init container gets the account's credentials at
//! `/var/run/secrets/kubernetes.io/serviceaccount` through a `kube-api-access-*`
//! projected volume (a token the kubelet asks for, the cluster's CA, the namespace).
//! The account's `imagePullSecrets` go to a pod that has none.
//!
//! `default` is made by the service account controller when its namespace is: a pod
//! created a moment after its namespace waits for it, as Kubernetes waits (10 tries,
//! 100 to 200 ms apart). `kubeyard apiserver --disable-admission-plugins ServiceAccount`
//! turns the plugin off, as kube-apiserver's flag does (for an API server run without a
//! controller manager, as envtest runs one).

use super::ApiServer;
use super::objects::stored;
use super::status::ApiError;
use serde_json::{Value, json};
use std::time::Duration;

/// The plugin's name, as `--disable-admission-plugins` takes it.
pub const PLUGIN: &str = "ServiceAccount";
/// Where the credentials are mounted in every container.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The volume's name, before its random suffix.
const VOLUME_PREFIX: &str = "kube-api-access-";
const DEFAULT_ACCOUNT: &str = "default";
/// Tries for the `default` account, which the controller may be making just now.
const DEFAULT_TRIES: u32 = 10;

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The account `name` of `namespace`, waiting for `default` a little (`None`: there is none).
async fn account(server: &ApiServer, namespace: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let tries = if name == DEFAULT_ACCOUNT { DEFAULT_TRIES } else { 1 };
    for attempt in 1..=tries {
        if let Some(account) = stored(server, ("", "ServiceAccount"), Some(namespace), name).await? {
            return Ok(Some(account));
        }
        if attempt < tries {
            tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(..100))).await;
        }
    }
    Ok(None)
}

/// Admits `pod`, being created in `namespace` as `shown` (its name, or `generateName`
/// when it has no name yet: what the 403 says, as Kubernetes says it).
pub async fn admit(server: &ApiServer, namespace: &str, shown: &str, pod: &mut Value) -> Result<(), ApiError> {
    if server.options.disabled_admission_plugins.iter().any(|p| p == PLUGIN) {
        return Ok(());
    }
    // Mirror pods (a node's static pods) are the kubelet's, not the plugin's.
    if pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some() {
        return Ok(());
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    let named = [spec.get("serviceAccountName"), spec.get("serviceAccount")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|n| !n.is_empty())
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_string();
    spec.insert("serviceAccountName".into(), json!(named));
    spec.insert("serviceAccount".into(), json!(named));
    let Some(account) = account(server, namespace, &named).await? else {
        return Err(ApiError::forbidden(format!(
            "pods {shown:?} is forbidden: error looking up service account {namespace}/{named}: serviceaccount \
             {named:?} not found"
        )));
    };
    let pull_secrets = account.get("imagePullSecrets").filter(|s| s.as_array().is_some_and(|s| !s.is_empty()));
    if let Some(secrets) = pull_secrets
        && spec.get("imagePullSecrets").and_then(Value::as_array).is_none_or(Vec::is_empty)
    {
        spec.insert("imagePullSecrets".into(), secrets.clone());
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    if automount {
        let suffix = server.options.names.suffix(namespace, VOLUME_PREFIX);
        mount_token(spec, &suffix);
    }
    Ok(())
}

/// Mounts the `kube-api-access-*` volume in every container lacking a mount at
/// [`MOUNT_PATH`], adding the volume if one of them needed it and it is not there.
fn mount_token(spec: &mut serde_json::Map<String, Value>, suffix: &str) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| text(v, "/name"))
        .find(|name| name.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let volume = existing.clone().unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(container) = container.as_object_mut() else { continue };
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if !mounts.iter().any(|m| text(m, "/mountPath") == MOUNT_PATH) {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if existing.is_none() && needed {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": crate::controllers::root_ca::NAME, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn every_container_without_the_path_mounts_one_volume() {
        let mut pod = spec(json!({
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "app"},
                {"name": "own", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]},
            ],
        }));
        mount_token(&mut pod, "abcde");
        let volumes = pod["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = text(&volumes[0], "/name").to_string();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5, "{name}");
        assert_eq!(
            volumes[0].pointer("/projected/sources/0/serviceAccountToken/expirationSeconds"),
            Some(&json!(3607))
        );
        assert_eq!(volumes[0].pointer("/projected/sources/1/configMap/name"), Some(&json!("kube-root-ca.crt")));
        for pointer in ["/initContainers/0/volumeMounts/0", "/containers/0/volumeMounts/0"] {
            let mount = Value::Object(pod.clone()).pointer(pointer).cloned().unwrap();
            assert_eq!(mount, json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
        }
        assert_eq!(pod["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1, "its own mount is kept");

        // Admitted again (a pod re-created from the same template): the volume is reused.
        let mut again = pod.clone();
        again["containers"][0]["volumeMounts"] = json!([]);
        mount_token(&mut again, "fghjk");
        assert_eq!(again["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(again["containers"][0]["volumeMounts"][0]["name"], json!(name));

        // No container needs it: no volume.
        let mut covered =
            spec(json!({"containers": [{"name": "own", "volumeMounts": [{"name": "m", "mountPath": MOUNT_PATH}]}]}));
        mount_token(&mut covered, "lmnpq");
        assert!(covered.get("volumes").is_none());
    }
}
