//! The container engine of a container node: a pod whose images are not built in runs as
//! containers of the host's Docker engine, siblings of the node's own container (the
//! engine's socket is mounted into the node). Images the user built or pulled are used as
//! they are: no registry, no loading step.
//!
//! Each pod has a sandbox, as the kubelet's CRI runtimes do: a container of the kubeyard
//! image running `kubeyard pause` on the cluster network at the pod's address, with the
//! cluster's resolver and the Service range routed through the node (whose proxy answers
//! for cluster IPs). The pod's containers join the sandbox's network namespace, so they
//! share its address and reach each other on localhost. Containers are named as dockershim
//! named them (`k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`) and labelled with the
//! cluster, its user and the node, so faults on the node reach them and `kubeyard down`
//! removes them.

use super::process::Launch;
use super::volumes::{self, Kind, PodVolume};
use crate::containers::docker::{ContainerSpec, Docker, Ended, Limits};
use kubeyard_compiler::pod::quantity;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The pod a container belongs to (every container of the pod, sandbox too).
pub const POD_UID_LABEL: &str = "kubeyard.dev/pod-uid";
/// On a sandbox: the pod's address (a partitioned node's pods rejoin at it).
pub const POD_IP_LABEL: &str = "kubeyard.dev/pod-ip";
/// On a pod's containers: the node (its container's name) they run on.
pub const NODE_LABEL: &str = "kubeyard.dev/node";

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// A node's access to the host's engine, and where its pods go.
pub struct DockerRuntime {
    pub docker: Docker,
    /// The cluster network the sandboxes join.
    pub network: String,
    /// The kubeyard image, whose `pause` the sandboxes run.
    pub sandbox_image: String,
    /// Carried by every container of this node's pods (the cluster's, its user's, the node's).
    pub labels: HashMap<String, String>,
    /// Routed through the node from every sandbox.
    pub service_cidr: String,
    pub node_address: Ipv4Addr,
    /// With `--simulate-absent-images`: the images the engine holds, by every name they
    /// answer to, kept current by [`watch_images`]; pods of other images are simulated.
    pub images: Option<Mutex<std::collections::HashSet<String>>>,
}

/// Keeps [`DockerRuntime::images`] current (every 2 s): an image built while the cluster
/// runs serves the pods made after it.
pub async fn watch_images(runtime: Arc<DockerRuntime>) {
    loop {
        if let (Some(images), Ok(names)) = (&runtime.images, runtime.docker.image_names().await) {
            *images.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = names;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime").field("network", &self.network).field("labels", &self.labels).finish()
    }
}

impl DockerRuntime {
    /// Whether the pod runs in the engine: always, unless absent images are simulated and
    /// one of its images is absent.
    pub fn runs(&self, pod: &Value) -> bool {
        let Some(images) = &self.images else { return true };
        let images = images.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ["initContainers", "containers"]
            .iter()
            .filter_map(|field| pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array))
            .flatten()
            .all(|c| {
                let image = text(c, "/image");
                // `app` is `app:latest` to the engine.
                images.contains(image) || (!image.contains(':') && images.contains(&format!("{image}:latest")))
            })
    }

    fn filters(&self) -> Vec<String> {
        self.labels.iter().map(|(key, value)| format!("{key}={value}")).collect()
    }

    /// Removes every pod container this node left: a node agent starting again (its
    /// machine stopped) begins from nothing, as a rebooted node does, and makes its pods'
    /// containers anew.
    pub async fn remove_leftovers(&self) -> Result<usize, crate::containers::docker::Error> {
        let mut filters = self.filters();
        filters.push(POD_UID_LABEL.to_string());
        let names = self.docker.containers_matching(&filters).await?;
        for result in futures_util::future::join_all(names.iter().map(|n| self.docker.remove(n))).await {
            result?;
        }
        Ok(names.len())
    }

    /// The running container of a pod on this node, by the names Kubernetes knows.
    pub async fn running_container(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        let mut filters = self.filters();
        filters.push(format!("io.kubernetes.pod.namespace={namespace}"));
        filters.push(format!("io.kubernetes.pod.name={pod}"));
        filters.push(format!("io.kubernetes.container.name={container}"));
        for name in self.docker.containers_matching(&filters).await.ok()? {
            if self.docker.running(&name).await {
                return Some(name);
            }
        }
        None
    }

    /// The engine volume of a PersistentVolume: one per cluster, whatever node mounts it
    /// (the engine is every node's), so a pod finds its data on any node.
    fn persistent_volume_name(&self, volume: &str) -> String {
        let cluster = self.labels.get(crate::containers::cluster::CLUSTER_LABEL).map_or("local", String::as_str);
        format!("k8s-pv_{volume}_{cluster}")
    }

    /// The engine volume standing for a directory of this node's disk (`hostPath`).
    fn host_volume_name(&self, path: &str) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut hasher);
        let node = self.labels.get(NODE_LABEL).map_or("node", String::as_str);
        format!("k8s-host_{node}_{:016x}", hasher.finish())
    }

    /// A PersistentVolume's engine volume belongs to the cluster (`node`: false), a host
    /// path's to the node: removed with the cluster, not with a pod.
    fn persistent_labels(&self, name: &str, node: bool) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = self
            .labels
            .iter()
            .filter(|(key, _)| node || key.as_str() != NODE_LABEL)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert("kubeyard.dev/persistent-volume".into(), name.into());
        labels
    }

    /// Makes the pod's volumes and its sandbox at `pod_ip` (the volumes mounted in it at
    /// `/volumes/<name>`, where the node agent writes their files).
    /// `bound` names the PersistentVolume of each claim the pod mounts
    /// ([`volumes::bound_volumes`]).
    pub async fn sandbox(
        self: &Arc<Self>,
        pod: &Value,
        pod_ip: &str,
        bound: BTreeMap<String, String>,
    ) -> Result<Sandbox, String> {
        let sandbox = Sandbox {
            runtime: Arc::clone(self),
            uid: text(pod, "/metadata/uid").to_string(),
            name: text(pod, "/metadata/name").to_string(),
            namespace: text(pod, "/metadata/namespace").to_string(),
            pod: pod.clone(),
            volumes: volumes::of(pod)?,
            bound,
            written: Mutex::new(None),
            tokens: volumes::Tokens::default(),
        };
        let mut binds = Vec::new();
        let mut cmd = vec!["pause".into(), "--route".into(), format!("{}={}", self.service_cidr, self.node_address)];
        for volume in &sandbox.volumes {
            // Writable by every user, as the kubelet makes an emptyDir and local-path a volume.
            if let Kind::Empty { .. } | Kind::Claim { .. } | Kind::Host { .. } = volume.kind {
                cmd.extend(["--open".to_string(), format!("/volumes/{}", volume.name)]);
            }
            let name = sandbox.volume_name(&volume.name);
            let memory = matches!(volume.kind, Kind::Empty { memory: true });
            let labels = match &volume.kind {
                Kind::Claim { .. } => self.persistent_labels(&name, false),
                Kind::Host { .. } => self.persistent_labels(&name, true),
                _ => sandbox.labels("POD"),
            };
            self.docker.create_volume(&name, &labels, memory).await.map_err(|e| e.to_string())?;
            binds.push(format!("{name}:/volumes/{}", volume.name));
        }
        let name = sandbox.container_name("POD", 0);
        // One left by an earlier attempt goes first.
        self.docker.remove(&name).await.map_err(|e| e.to_string())?;
        let hostname = Some(text(pod, "/spec/hostname")).filter(|h| !h.is_empty()).unwrap_or(&sandbox.name);
        let mut labels = sandbox.labels("POD");
        labels.insert(POD_IP_LABEL.to_string(), pod_ip.to_string());
        let spec = ContainerSpec {
            name: name.clone(),
            image: self.sandbox_image.clone(),
            cmd,
            labels,
            network: self.network.clone(),
            ip: pod_ip.to_string(),
            hostname: Some(hostname.to_string()),
            // To add its route; the pod's containers do not have it.
            cap_add: vec!["NET_ADMIN".into()],
            dns: vec![self.node_address.to_string()],
            dns_search: vec![
                format!("{}.svc.cluster.local", sandbox.namespace),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            dns_options: vec!["ndots:5".into()],
            binds,
            ..ContainerSpec::default()
        };
        self.docker.run(&spec).await.map_err(|e| format!("failed to create pod sandbox: {e}"))?;
        Ok(sandbox)
    }
}

/// What became of asking for an image.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// Present already (and the policy did not ask for a pull).
    Present,
    /// Pulled now, in this long.
    Pulled(Duration),
}

/// One pod's place in the engine.
pub struct Sandbox {
    runtime: Arc<DockerRuntime>,
    uid: String,
    name: String,
    namespace: String,
    pod: Value,
    volumes: Vec<PodVolume>,
    /// The PersistentVolume of each claim the pod mounts.
    bound: BTreeMap<String, String>,
    /// What the file volumes last held (a hash): they are written again only on a change.
    written: Mutex<Option<u64>>,
    /// The service account tokens of its projected volumes, renewed when they age.
    tokens: volumes::Tokens,
}

impl Sandbox {
    /// dockershim's name: `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>` (`POD` for
    /// the sandbox).
    pub fn container_name(&self, container: &str, attempt: u32) -> String {
        format!("k8s_{container}_{}_{}_{}_{attempt}", self.name, self.namespace, self.uid)
    }

    /// An engine volume's name: `k8s_<volume>_<pod>_<namespace>_<uid>`, or for a claim
    /// its PersistentVolume's (`k8s-pv_<volume>_<cluster>`), shared by every pod that
    /// mounts it and kept when they go.
    fn volume_name(&self, volume: &str) -> String {
        match self.volumes.iter().find(|v| v.name == volume).map(|v| &v.kind) {
            Some(Kind::Claim { claim, .. }) if self.bound.contains_key(claim) => {
                self.runtime.persistent_volume_name(&self.bound[claim])
            }
            Some(Kind::Host { path }) => self.runtime.host_volume_name(path),
            _ => format!("k8s_{volume}_{}_{}_{}", self.name, self.namespace, self.uid),
        }
    }

    /// Writes the file volumes (`configMap`, `secret`, `downwardAPI`, `projected`) from
    /// their sources as they are now, if they changed since the last time; `Err` is the
    /// `FailedMount` message (the last files stay, as the kubelet keeps them).
    pub async fn mount(&self, client: &kube::Client) -> Result<(), String> {
        let declared: Vec<&Value> =
            self.pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten().collect();
        let wanted: Vec<&Value> = declared
            .into_iter()
            .filter(|v| self.volumes.iter().any(|p| p.kind == Kind::Files && p.name == text(v, "/name")))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let sources = volumes::fetch(client, &self.pod, &self.tokens).await?;
        let mut contents = Vec::new();
        for volume in &wanted {
            contents.push((text(volume, "/name").to_string(), volumes::files(volume, &self.pod, &sources)?));
        }
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            for (name, files) in &contents {
                name.hash(&mut hasher);
                for file in files {
                    (&file.path, &file.bytes, file.mode).hash(&mut hasher);
                }
            }
            hasher.finish()
        };
        if *self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner) == Some(hash) {
            return Ok(());
        }
        let version = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| format!("{}_{:09}", d.as_secs(), d.subsec_nanos()))
            .unwrap_or_default();
        let sandbox = self.container_name("POD", 0);
        for (name, files) in &contents {
            let tar = volumes::archive(files, &version).map_err(|e| e.to_string())?;
            let path = format!("/volumes/{name}");
            self.runtime.docker.upload(&sandbox, &path, tar).await.map_err(|e| e.to_string())?;
        }
        *self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hash);
        Ok(())
    }

    /// The engine's mounts for a container's `volumeMounts`: `volume:path[:ro]`. File
    /// volumes are read-only, as Kubernetes mounts them.
    ///
    /// A `subPath` mount binds that path of the volume, by the volume's place on the
    /// engine's host (the engine and its volumes are on one machine); a missing directory
    /// is made first, as the kubelet makes it. Files of a ConfigMap or Secret mounted by
    /// `subPath` are not updated, as in Kubernetes.
    async fn binds(&self, container: &Value, env: &[(String, String)]) -> Result<Vec<String>, String> {
        let docker = &self.runtime.docker;
        let mut binds = Vec::new();
        for mount in container.get("volumeMounts").and_then(Value::as_array).into_iter().flatten() {
            let name = text(mount, "/name");
            let Some(volume) = self.volumes.iter().find(|v| v.name == name) else {
                return Err(format!("volume \"{name}\" is not among the pod's volumes"));
            };
            let read_only = volume.kind == Kind::Files
                || matches!(volume.kind, Kind::Claim { read_only: true, .. })
                || mount.get("readOnly").and_then(Value::as_bool) == Some(true);
            let suffix = if read_only { ":ro" } else { "" };
            let source = match volumes::sub_path(mount, env)? {
                None => self.volume_name(name),
                Some(path) => {
                    if volume.kind != Kind::Files {
                        let tar = volumes::directory_archive(&path).map_err(|e| e.to_string())?;
                        let sandbox = self.container_name("POD", 0);
                        docker.upload(&sandbox, &format!("/volumes/{name}"), tar).await.map_err(|e| e.to_string())?;
                    }
                    let place = docker.volume_mountpoint(&self.volume_name(name)).await.map_err(|e| e.to_string())?;
                    format!("{place}/{path}")
                }
            };
            binds.push(format!("{source}:{}{suffix}", text(mount, "/mountPath")));
        }
        Ok(binds)
    }

    fn labels(&self, container: &str) -> HashMap<String, String> {
        let mut labels = self.runtime.labels.clone();
        labels.insert(POD_UID_LABEL.to_string(), self.uid.clone());
        labels.insert("io.kubernetes.pod.name".to_string(), self.name.clone());
        labels.insert("io.kubernetes.pod.namespace".to_string(), self.namespace.clone());
        labels.insert("io.kubernetes.container.name".to_string(), container.to_string());
        labels
    }

    /// The image, as `imagePullPolicy` asks: `Never` takes what is there, `IfNotPresent`
    /// pulls what is not, `Always` pulls. `Err` is the waiting reason and its message.
    pub async fn image(&self, image: &str, policy: &str) -> Result<Pulled, (&'static str, String)> {
        let docker = &self.runtime.docker;
        let present = docker.has_image(image).await.map_err(|e| ("ErrImagePull", e.to_string()))?;
        match policy {
            "Never" if present => return Ok(Pulled::Present),
            "Never" => {
                let message = format!("Container image \"{image}\" is not present with pull policy of Never");
                return Err(("ErrImageNeverPull", message));
            }
            "IfNotPresent" if present => return Ok(Pulled::Present),
            _ => {}
        }
        let started = std::time::Instant::now();
        match docker.pull(image).await {
            Ok(()) => Ok(Pulled::Pulled(started.elapsed())),
            Err(error) => Err(("ErrImagePull", format!("failed to pull and unpack image \"{image}\": {error}"))),
        }
    }

    /// Makes and starts attempt `attempt` of a container, its output appended to `log`;
    /// the container's name.
    pub(crate) async fn start(
        &self,
        container: &Value,
        launch: &Launch,
        attempt: u32,
        log: std::fs::File,
    ) -> Result<String, String> {
        let docker = &self.runtime.docker;
        let name = text(container, "/name");
        let container_name = self.container_name(name, attempt);
        // The attempt before is done: its output is in the log already.
        if attempt > 0 {
            let _ = docker.remove(&self.container_name(name, attempt - 1)).await;
        }
        docker.remove(&container_name).await.map_err(|e| e.to_string())?;
        let security = |field: &str| {
            container
                .pointer(&format!("/securityContext/{field}"))
                .or_else(|| launch.pod_security.get(field))
                .and_then(Value::as_i64)
        };
        let user = match (security("runAsUser"), security("runAsGroup")) {
            (Some(user), Some(group)) => Some(format!("{user}:{group}")),
            (Some(user), None) => Some(user.to_string()),
            (None, Some(group)) => Some(format!("0:{group}")),
            (None, None) => None,
        };
        let limit = |resource: &str| container.pointer(&format!("/resources/limits/{resource}")).and_then(quantity);
        let spec = ContainerSpec {
            name: container_name.clone(),
            image: text(container, "/image").to_string(),
            entrypoint: launch.command.clone(),
            cmd: launch.args.clone().unwrap_or_default(),
            env: launch.env.iter().map(|(key, value)| format!("{key}={value}")).collect(),
            working_dir: Some(text(container, "/workingDir").to_string()).filter(|d| !d.is_empty()),
            user,
            read_only: container.pointer("/securityContext/readOnlyRootFilesystem").and_then(Value::as_bool)
                == Some(true),
            limits: Limits {
                memory: limit("memory").map(|q| i64::try_from(q.units_ceil()).unwrap_or(i64::MAX)),
                nano_cpus: limit("cpu").map(|q| i64::try_from(q.millis_ceil() * 1_000_000).unwrap_or(i64::MAX)),
            },
            labels: self.labels(name),
            binds: self.binds(container, &launch.env).await?,
            join: Some(self.container_name("POD", 0)),
            stdin: container.get("stdin").and_then(Value::as_bool) == Some(true),
            stdin_once: container.get("stdinOnce").and_then(Value::as_bool) == Some(true),
            tty: container.get("tty").and_then(Value::as_bool) == Some(true),
            ..ContainerSpec::default()
        };
        docker.run(&spec).await.map_err(|e| e.to_string())?;
        let (docker, following) = (docker.clone(), container_name.clone());
        tokio::spawn(async move {
            let mut log = log;
            docker.copy_logs(&following, &mut log).await;
        });
        Ok(container_name)
    }

    /// Waits for the container to end.
    pub async fn wait(&self, name: &str) -> Ended {
        self.runtime.docker.wait(name).await.unwrap_or_else(|_| gone())
    }

    /// SIGTERM, then SIGKILL once `grace` has passed; how it ended.
    pub async fn stop(&self, name: &str, grace: Duration) -> Ended {
        let docker = &self.runtime.docker;
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let _ = docker.stop(name, seconds).await;
        docker.ended(name).await.unwrap_or_else(|_| gone())
    }

    /// Runs a command in the container (an exec probe); its exit code.
    pub async fn exec(&self, name: &str, argv: &[String]) -> Result<i64, String> {
        self.runtime.docker.exec(name, argv).await.map_err(|e| e.to_string())
    }

    /// Removes every container of the pod, its sandbox last, then its volumes.
    pub async fn remove(&self) {
        let docker = &self.runtime.docker;
        let filters = [format!("{POD_UID_LABEL}={}", self.uid)];
        let sandbox = self.container_name("POD", 0);
        if let Ok(names) = docker.containers_matching(&filters).await {
            let others = names.iter().filter(|n| **n != sandbox).map(|n| docker.remove(n));
            futures_util::future::join_all(others).await;
        }
        let _ = docker.remove(&sandbox).await;
        // A claim's or a host path's volume holds data that outlives the pod: it stays.
        for volume in self.volumes.iter().filter(|v| !v.kind.outlives_pod()) {
            let _ = docker.remove_volume(&self.volume_name(&volume.name)).await;
        }
    }
}

/// A container that went away under the node (removed by hand): killed, as far as anyone knows.
fn gone() -> Ended {
    Ended { code: 137, oom_killed: false }
}
