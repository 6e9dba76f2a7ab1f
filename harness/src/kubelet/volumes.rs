//! A pod's volumes, as the kubelet makes them for the engine: `emptyDir` is an engine
//! volume (a tmpfs with `medium: Memory`); `configMap`, `secret`, `downwardAPI` and
//! `projected` are engine volumes holding files, laid out as the kubelet's AtomicWriter
//! lays them out: the files in a timestamped folder, `..data` a link to it, and each
//! top-level entry a link through `..data`, so a new version appears at once, whole.
//!
//! What the files are is decided here, purely, from the pod and its sources (the
//! ConfigMaps and Secrets it names, fetched by [`fetch`]); `docker.rs` writes them.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::Value;
use std::collections::BTreeMap;

/// A volume the engine makes for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVolume {
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `emptyDir`: empty, writable by anyone, in memory with `medium: Memory`.
    Empty { memory: bool },
    /// Files the node agent writes (read-only to the containers).
    Files,
    /// `persistentVolumeClaim`: the engine volume of the PersistentVolume the claim is
    /// bound to, which outlives the pod.
    Claim { claim: String, read_only: bool },
    /// `hostPath` (a directory): the node's engine volume for that path, shared by the
    /// node's pods and kept when they go, as a directory of a node's disk is.
    Host { path: String },
}

impl Kind {
    /// Whether the volume outlives the pod (the engine volume is not the pod's to remove).
    pub fn outlives_pod(&self) -> bool {
        matches!(self, Kind::Claim { .. } | Kind::Host { .. })
    }
}

/// One file of a volume: its path in the volume, its bytes and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// The ConfigMaps' and Secrets' data a pod's volumes name, by name (`None`: not found),
/// and the service account tokens its projections ask for, by [`token_key`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sources {
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    pub secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    pub tokens: BTreeMap<String, String>,
}

/// What the API server defaults a `serviceAccountToken` projection's lifetime to.
const TOKEN_EXPIRATION: u64 = 3600;
/// A token is asked for again when this much of its lifetime has passed, or a day, as
/// the kubelet's token manager renews them.
const TOKEN_RENEW_FRACTION: f64 = 0.8;
const TOKEN_RENEW_MAX: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A `serviceAccountToken` projection's audience and lifetime: one token per pair.
pub fn token_key(source: &Value) -> String {
    let seconds = source.get("expirationSeconds").and_then(Value::as_u64).unwrap_or(TOKEN_EXPIRATION);
    format!("{}|{seconds}", text(source, "/audience"))
}

/// The tokens a pod's volumes were given, with when: kept while they are fresh.
#[derive(Debug, Default)]
pub struct Tokens(std::sync::Mutex<BTreeMap<String, (String, std::time::Instant)>>);

impl Tokens {
    /// The token for `source` (a `serviceAccountToken` projection of `pod`), asked for
    /// through `serviceaccounts/<name>/token`, bound to the pod, unless the last is fresh.
    async fn get(&self, client: &kube::Client, pod: &Value, source: &Value) -> Result<String, String> {
        let key = token_key(source);
        let seconds = source.get("expirationSeconds").and_then(Value::as_u64).unwrap_or(TOKEN_EXPIRATION);
        let renew = std::time::Duration::from_secs_f64(seconds as f64 * TOKEN_RENEW_FRACTION).min(TOKEN_RENEW_MAX);
        {
            let held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((token, _)) = held.get(&key).filter(|(_, at)| at.elapsed() < renew) {
                return Ok(token.clone());
            }
        }
        let account = Some(text(pod, "/spec/serviceAccountName")).filter(|a| !a.is_empty()).unwrap_or("default");
        let audience = text(source, "/audience");
        let request = serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {
                "audiences": if audience.is_empty() { Vec::new() } else { vec![audience] },
                "expirationSeconds": seconds,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                   "name": text(pod, "/metadata/name"), "uid": text(pod, "/metadata/uid")},
            },
        }))
        .map_err(|e| e.to_string())?;
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), text(pod, "/metadata/namespace"));
        let answer = accounts
            .create_token_request(account, &Default::default(), &request)
            .await
            .map_err(|e| format!("failed to fetch token: {}", api_message(&e)))?;
        let token = answer.status.map(|s| s.token).unwrap_or_default();
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (token.clone(), std::time::Instant::now()));
        Ok(token)
    }
}

/// An API error as the kubelet quotes it: the Status's message.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The pod's volumes the engine makes; `Err` names the first it cannot make, in the
/// words of the event the pod gets.
pub fn of(pod: &Value) -> Result<Vec<PodVolume>, String> {
    let mut volumes = Vec::new();
    for volume in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
        let name = text(volume, "/name").to_string();
        let kind = if let Some(empty) = volume.get("emptyDir") {
            Kind::Empty { memory: text(empty, "/medium") == "Memory" }
        } else if ["configMap", "secret", "downwardAPI", "projected"].iter().any(|k| volume.get(k).is_some()) {
            Kind::Files
        } else if let Some(claim) = volume.get("persistentVolumeClaim") {
            let read_only = claim.get("readOnly").and_then(Value::as_bool) == Some(true);
            Kind::Claim { claim: text(claim, "/claimName").to_string(), read_only }
        } else if let Some(host) = volume.get("hostPath") {
            match text(host, "/type") {
                "" | "Directory" | "DirectoryOrCreate" => Kind::Host { path: text(host, "/path").to_string() },
                other => {
                    return Err(format!(
                        "volume \"{name}\": hostPath of type {other} is not made by kubeyard's container engine: \
                         only directories (Directory, DirectoryOrCreate)"
                    ));
                }
            }
        } else {
            let kind = volume.as_object().and_then(|o| o.keys().find(|k| *k != "name").cloned()).unwrap_or_default();
            return Err(format!("volume \"{name}\": {kind} volumes are not run by kubeyard's container engine yet"));
        };
        volumes.push(PodVolume { name, kind });
    }
    Ok(volumes)
}

/// The PersistentVolume each `persistentVolumeClaim` volume of the pod is bound to, by
/// claim; `Err` is the `FailedMount` message for a claim that is missing or not bound.
pub async fn bound_volumes(client: &kube::Client, pod: &Value) -> Result<BTreeMap<String, String>, String> {
    let namespace = text(pod, "/metadata/namespace");
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let mut bound = BTreeMap::new();
    for volume in of(pod)? {
        let Kind::Claim { claim, .. } = volume.kind else { continue };
        let found = claims.get_opt(&claim).await.map_err(|e| e.to_string())?;
        let found = found.ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
        let phase = found.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        let name = found.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|_| phase == "Bound");
        let name = name.ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound (it is {phase})"))?;
        bound.insert(claim, name);
    }
    Ok(bound)
}

/// A ConfigMap of the namespace, as the API server has it now (`None`: there is none).
pub async fn config_map(client: &kube::Client, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace).get_opt(name).await.map_err(|e| e.to_string())
}

/// A Secret of the namespace, as the API server has it now (`None`: there is none).
pub async fn secret(client: &kube::Client, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
    Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await.map_err(|e| e.to_string())
}

/// The ConfigMaps and Secrets `pod`'s volumes name, read from the API server, and the
/// tokens its projections ask for (`tokens` keeps them while they are fresh).
pub async fn fetch(client: &kube::Client, pod: &Value, tokens: &Tokens) -> Result<Sources, String> {
    let namespace = text(pod, "/metadata/namespace");
    let mut sources = Sources::default();
    let mut named = Vec::new();
    for volume in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
        if let Some(config) = volume.get("configMap") {
            named.push(("configMap", text(config, "/name").to_string()));
        }
        if let Some(secret) = volume.get("secret") {
            named.push(("secret", text(secret, "/secretName").to_string()));
        }
        for source in volume.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten() {
            if let Some(config) = source.get("configMap") {
                named.push(("configMap", text(config, "/name").to_string()));
            }
            if let Some(secret) = source.get("secret") {
                named.push(("secret", text(secret, "/name").to_string()));
            }
            if let Some(token) = source.get("serviceAccountToken") {
                let got = tokens.get(client, pod, token).await.map_err(|why| {
                    format!("MountVolume.SetUp failed for volume \"{}\" : {why}", text(volume, "/name"))
                })?;
                sources.tokens.insert(token_key(token), got);
            }
        }
    }
    for (kind, name) in named {
        if kind == "configMap" && !sources.config_maps.contains_key(&name) {
            let data = config_map(client, namespace, &name).await?.map(|map| {
                let mut data: BTreeMap<String, Vec<u8>> =
                    map.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                data.extend(map.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                data
            });
            sources.config_maps.insert(name, data);
        } else if kind == "secret" && !sources.secrets.contains_key(&name) {
            let data = secret(client, namespace, &name).await?.map(|secret| {
                let mut data: BTreeMap<String, Vec<u8>> =
                    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                data.extend(secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
                data
            });
            sources.secrets.insert(name, data);
        }
    }
    Ok(sources)
}

/// A mount's `subPath`, or its `subPathExpr` with the container's variables (`env`, as
/// the container gets them) expanded as the kubelet expands it: relative, no `..`.
pub fn sub_path(mount: &Value, env: &[(String, String)]) -> Result<Option<String>, String> {
    let expression = text(mount, "/subPathExpr");
    let path = if expression.is_empty() {
        text(mount, "/subPath").to_string()
    } else {
        super::process::expand(expression, env)
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Ok(None);
    }
    if path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(format!("subPath {path:?} must be a relative path without '..'"));
    }
    Ok(Some(path.to_string()))
}

/// A tar of one directory (and its parents), to make a `subPath` in a volume.
pub fn directory_archive(path: &str) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut made = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        made.push_str(part);
        made.push('/');
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        // The kubelet makes subPath directories 0750; writable by all here, as the
        // volumes they are in are, so a container of another user can use them too.
        header.set_mode(0o777);
        header.set_size(0);
        builder.append_data(&mut header, &made, std::io::empty())?;
    }
    builder.into_inner()
}

/// Kubernetes' default mode of a projected file (`0644`).
const DEFAULT_MODE: u32 = 0o644;

fn mode(value: Option<&Value>, default: u32) -> u32 {
    value.and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok()).unwrap_or(default)
}

/// The files of a `Files` volume, or the message of the kubelet's `FailedMount`.
pub fn files(volume: &Value, pod: &Value, sources: &Sources) -> Result<Vec<File>, String> {
    let name = text(volume, "/name");
    let failed = |why: String| format!("MountVolume.SetUp failed for volume \"{name}\" : {why}");
    let mut files = Vec::new();
    if let Some(config) = volume.get("configMap") {
        let default = mode(config.get("defaultMode"), DEFAULT_MODE);
        keyed(&mut files, "configmap", config, text(config, "/name"), &sources.config_maps, default).map_err(failed)?;
    } else if let Some(secret) = volume.get("secret") {
        let default = mode(secret.get("defaultMode"), DEFAULT_MODE);
        keyed(&mut files, "secret", secret, text(secret, "/secretName"), &sources.secrets, default).map_err(failed)?;
    } else if let Some(downward) = volume.get("downwardAPI") {
        let default = mode(downward.get("defaultMode"), DEFAULT_MODE);
        downward_api(&mut files, downward, pod, default).map_err(failed)?;
    } else if let Some(projected) = volume.get("projected") {
        let default = mode(projected.get("defaultMode"), DEFAULT_MODE);
        for source in projected.get("sources").and_then(Value::as_array).into_iter().flatten() {
            if let Some(config) = source.get("configMap") {
                keyed(&mut files, "configmap", config, text(config, "/name"), &sources.config_maps, default)
                    .map_err(failed)?;
            } else if let Some(secret) = source.get("secret") {
                keyed(&mut files, "secret", secret, text(secret, "/name"), &sources.secrets, default)
                    .map_err(failed)?;
            } else if let Some(downward) = source.get("downwardAPI") {
                downward_api(&mut files, downward, pod, default).map_err(failed)?;
            } else if let Some(token) = source.get("serviceAccountToken") {
                let held = sources.tokens.get(&token_key(token));
                let held = held.ok_or_else(|| failed("failed to fetch token: no token was asked for".into()))?;
                let path = text(token, "/path").to_string();
                files.push(File { path, bytes: held.clone().into_bytes(), mode: default });
            } else {
                let kind = source.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
                return Err(failed(format!("{kind} projections are not made by kubeyard's container engine yet")));
            }
        }
    }
    Ok(files)
}

/// A ConfigMap's or Secret's keys as files: every key, or the `items` asked for.
fn keyed(
    files: &mut Vec<File>,
    kind: &str,
    source: &Value,
    name: &str,
    found: &BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    default: u32,
) -> Result<(), String> {
    let optional = source.get("optional").and_then(Value::as_bool) == Some(true);
    let Some(Some(data)) = found.get(name) else {
        return if optional { Ok(()) } else { Err(format!("{kind} \"{name}\" not found")) };
    };
    match source.get("items").and_then(Value::as_array).filter(|items| !items.is_empty()) {
        None => files.extend(data.iter().map(|(key, bytes)| File {
            path: key.clone(),
            bytes: bytes.clone(),
            mode: default,
        })),
        Some(items) => {
            for item in items {
                let key = text(item, "/key");
                let Some(bytes) = data.get(key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("{kind} references non-existent config key: {key}"));
                };
                let path = text(item, "/path").to_string();
                files.push(File { path, bytes: bytes.clone(), mode: mode(item.get("mode"), default) });
            }
        }
    }
    Ok(())
}

/// A downward API volume's items: the pod's name, namespace, uid, labels and annotations.
fn downward_api(files: &mut Vec<File>, downward: &Value, pod: &Value, default: u32) -> Result<(), String> {
    for item in downward.get("items").and_then(Value::as_array).into_iter().flatten() {
        let path = text(item, "/path").to_string();
        let Some(field) = item.pointer("/fieldRef/fieldPath").and_then(Value::as_str) else {
            return Err(format!("downward API item {path}: only fieldRef is made by kubeyard's container engine yet"));
        };
        let content = match field {
            "metadata.name" => text(pod, "/metadata/name").to_string(),
            "metadata.namespace" => text(pod, "/metadata/namespace").to_string(),
            "metadata.uid" => text(pod, "/metadata/uid").to_string(),
            "metadata.labels" => format_map(pod.pointer("/metadata/labels")),
            "metadata.annotations" => format_map(pod.pointer("/metadata/annotations")),
            other => match super::process::map_field(other) {
                Some((map, key)) => {
                    let map = pod.pointer(&format!("/metadata/{map}"));
                    map.and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or_default().to_string()
                }
                None => return Err(format!("downward API item {path}: the field {other} is not supported")),
            },
        };
        files.push(File { path, bytes: content.into_bytes(), mode: mode(item.get("mode"), default) });
    }
    Ok(())
}

/// Labels or annotations as the kubelet writes them: `key="value"` lines, sorted by key,
/// the value quoted as Go's `%q` quotes it.
fn format_map(map: Option<&Value>) -> String {
    let sorted: BTreeMap<&String, &str> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, value)| (key, value.as_str().unwrap_or_default()))
        .collect();
    let quote = |value: &str| {
        let mut quoted = String::from('"');
        for c in value.chars() {
            match c {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                '\n' => quoted.push_str("\\n"),
                '\t' => quoted.push_str("\\t"),
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        quoted
    };
    sorted.iter().map(|(key, value)| format!("{key}={}", quote(value))).collect::<Vec<_>>().join("\n")
}

/// A tar of `files` in AtomicWriter's layout, version `version` (a name for the folder):
/// `..<version>/<path>` each, `..data` linking to that folder, and each top-level entry
/// linking through `..data`. Unpacked over an older version, it replaces it whole.
pub fn archive(files: &[File], version: &str) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let folder = format!("..{version}");
    let mut directories = std::collections::BTreeSet::new();
    let mut top = std::collections::BTreeSet::new();
    let mut directory = |builder: &mut tar::Builder<Vec<u8>>, path: String| -> std::io::Result<()> {
        if directories.insert(path.clone()) {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
        }
        Ok(())
    };
    directory(&mut builder, folder.clone())?;
    for file in files {
        let relative = file.path.trim_start_matches('/');
        let mut parts: Vec<&str> = relative.split('/').collect();
        parts.pop();
        let mut walked = folder.clone();
        for part in parts {
            walked = format!("{walked}/{part}");
            directory(&mut builder, walked.clone())?;
        }
        top.insert(relative.split('/').next().unwrap_or(relative).to_string());
        let mut header = tar::Header::new_gnu();
        header.set_size(file.bytes.len() as u64);
        header.set_mode(file.mode);
        header.set_cksum();
        builder.append_data(&mut header, format!("{folder}/{relative}"), file.bytes.as_slice())?;
    }
    let link = |builder: &mut tar::Builder<Vec<u8>>, path: &str, target: &str| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, path, target)
    };
    link(&mut builder, "..data", &folder)?;
    for entry in &top {
        link(&mut builder, entry, &format!("..data/{entry}"))?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sources() -> Sources {
        let data = |pairs: &[(&str, &str)]| {
            Some(pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<BTreeMap<_, _>>())
        };
        Sources {
            config_maps: [("app".to_string(), data(&[("a.conf", "A"), ("b.conf", "B")])), ("gone".to_string(), None)]
                .into(),
            secrets: [("creds".to_string(), data(&[("password", "hunter2")]))].into(),
            tokens: [("|3607".to_string(), "jwt".to_string())].into(),
        }
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
                            "labels": {"app": "web", "tier": "front \"end\""}}})
    }

    #[test]
    fn sub_paths_are_relative_and_expressions_take_the_containers_variables() {
        let env = vec![("POD_NAME".to_string(), "web-0".to_string())];
        let mount = |m: Value| sub_path(&m, &env);
        assert_eq!(mount(json!({"name": "v", "subPath": "data/"})), Ok(Some("data".into())));
        assert_eq!(mount(json!({"name": "v", "subPathExpr": "logs/$(POD_NAME)"})), Ok(Some("logs/web-0".into())));
        assert_eq!(mount(json!({"name": "v", "subPathExpr": "$(UNSET)"})), Ok(Some("$(UNSET)".into())));
        assert_eq!(mount(json!({"name": "v"})), Ok(None));
        assert!(mount(json!({"name": "v", "subPath": "../etc"})).is_err());
        assert!(mount(json!({"name": "v", "subPathExpr": "/$(POD_NAME)"})).is_err());
    }

    #[test]
    fn volumes_the_engine_makes_and_those_it_cannot() {
        let pod = json!({"spec": {"volumes": [
            {"name": "scratch", "emptyDir": {}}, {"name": "fast", "emptyDir": {"medium": "Memory"}},
            {"name": "config", "configMap": {"name": "app"}}, {"name": "all", "projected": {"sources": []}}]}});
        let kinds: Vec<Kind> = of(&pod).unwrap().into_iter().map(|v| v.kind).collect();
        assert_eq!(kinds, [Kind::Empty { memory: false }, Kind::Empty { memory: true }, Kind::Files, Kind::Files]);
        let claim = json!({"spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]}});
        assert_eq!(of(&claim).unwrap()[0].kind, Kind::Claim { claim: "d".into(), read_only: false });
        let host = json!({"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/var/log"}}]}});
        assert_eq!(of(&host).unwrap()[0].kind, Kind::Host { path: "/var/log".into() });
        let socket =
            json!({"spec": {"volumes": [{"name": "s", "hostPath": {"path": "/run/x.sock", "type": "Socket"}}]}});
        assert!(of(&socket).unwrap_err().contains("hostPath of type Socket is not made"));
        let nfs = json!({"spec": {"volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]}});
        assert!(of(&nfs).unwrap_err().contains("volume \"n\": nfs volumes are not run"));
    }

    #[test]
    fn config_maps_and_secrets_become_files_by_key_or_by_item() {
        let every = json!({"name": "config", "configMap": {"name": "app"}});
        let files = files(&every, &pod(), &sources()).unwrap();
        let paths: Vec<(&str, u32)> = files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
        assert_eq!(paths, [("a.conf", 0o644), ("b.conf", 0o644)]);
        let some = json!({"name": "config", "configMap": {"name": "app", "defaultMode": 0o600,
                          "items": [{"key": "b.conf", "path": "conf/b"}, {"key": "a.conf", "path": "a", "mode": 0o400}]}});
        let files = super::files(&some, &pod(), &sources()).unwrap();
        let paths: Vec<(&str, &[u8], u32)> =
            files.iter().map(|f| (f.path.as_str(), f.bytes.as_slice(), f.mode)).collect();
        assert_eq!(paths, [("conf/b", &b"B"[..], 0o600), ("a", &b"A"[..], 0o400)]);
        let secret = json!({"name": "creds", "secret": {"secretName": "creds"}});
        assert_eq!(super::files(&secret, &pod(), &sources()).unwrap()[0].bytes, b"hunter2");
    }

    #[test]
    fn a_missing_source_or_key_fails_the_mount_as_the_kubelet_says_unless_optional() {
        let missing = json!({"name": "config", "configMap": {"name": "gone"}});
        assert_eq!(
            files(&missing, &pod(), &sources()).unwrap_err(),
            "MountVolume.SetUp failed for volume \"config\" : configmap \"gone\" not found"
        );
        let optional = json!({"name": "config", "configMap": {"name": "gone", "optional": true}});
        assert_eq!(files(&optional, &pod(), &sources()).unwrap(), []);
        let no_key = json!({"name": "config", "configMap": {"name": "app", "items": [{"key": "z", "path": "z"}]}});
        assert!(
            files(&no_key, &pod(), &sources())
                .unwrap_err()
                .ends_with("configmap references non-existent config key: z")
        );
        let no_secret = json!({"name": "s", "secret": {"secretName": "nope"}});
        assert!(files(&no_secret, &pod(), &sources()).unwrap_err().ends_with("secret \"nope\" not found"));
    }

    #[test]
    fn the_downward_api_writes_fields_and_labels_as_the_kubelet_does() {
        let volume = json!({"name": "info", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}}]}});
        let files = files(&volume, &pod(), &sources()).unwrap();
        let content: Vec<String> = files.iter().map(|f| String::from_utf8(f.bytes.clone()).unwrap()).collect();
        assert_eq!(content, ["web-1", "app=\"web\"\ntier=\"front \\\"end\\\"\"", "web"]);
        let projected = json!({"name": "all", "projected": {"sources": [
            {"configMap": {"name": "app", "items": [{"key": "a.conf", "path": "a"}]}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}});
        let paths: Vec<String> =
            super::files(&projected, &pod(), &sources()).unwrap().into_iter().map(|f| f.path).collect();
        assert_eq!(paths, ["a", "ns"]);
        // The token the kubelet was given for that audience and lifetime, as a file.
        let token = json!({"name": "t", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}});
        let files = super::files(&token, &pod(), &sources()).unwrap();
        assert_eq!(files, [File { path: "token".into(), bytes: b"jwt".to_vec(), mode: 0o644 }]);
        let other = json!({"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "vault"}}]}});
        assert!(super::files(&other, &pod(), &sources()).unwrap_err().contains("failed to fetch token"));
    }

    #[test]
    fn files_are_laid_out_as_atomic_writer_lays_them_out() {
        let files = [
            File { path: "a.conf".into(), bytes: b"A".to_vec(), mode: 0o644 },
            File { path: "conf/b".into(), bytes: b"B".to_vec(), mode: 0o600 },
        ];
        let tar = archive(&files, "v1").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, Option<String>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (path, e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()))
            })
            .collect();
        let expected = [
            ("..v1/", None),
            ("..v1/a.conf", None),
            ("..v1/conf/", None),
            ("..v1/conf/b", None),
            ("..data", Some("..v1")),
            ("a.conf", Some("..data/a.conf")),
            ("conf", Some("..data/conf")),
        ];
        let expected: Vec<(String, Option<String>)> =
            expected.iter().map(|(p, l)| (p.to_string(), l.map(str::to_string))).collect();
        assert_eq!(entries, expected);
    }
}
