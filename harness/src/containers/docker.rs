//! What kubeyard asks of the Docker engine, through bollard: images built from a tar
//! context, networks with a fixed subnet, containers with fixed addresses, and the faults
//! (stop, kill, pause, restart, disconnect). The API version is negotiated with the
//! engine: Debian's Docker 20.10 speaks API 1.41.

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the Docker engine ({0}); is it running, and is DOCKER_HOST right?")]
    Unreachable(String),
    #[error("the Docker engine refused to {what}: {message}")]
    Refused { what: String, message: String },
}

fn refused(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Error {
    let what = what.into();
    move |error| {
        let message = match error {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            other => other.to_string(),
        };
        Error::Refused { what, message }
    }
}

/// One container to run.
#[derive(Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub labels: HashMap<String, String>,
    pub network: String,
    /// Its fixed address on `network`.
    pub ip: String,
    pub hostname: Option<String>,
    /// Linux capabilities beyond Docker's defaults (a node adds its pods' addresses: NET_ADMIN).
    pub cap_add: Vec<String>,
    /// Name servers Docker's own resolver forwards to for names it does not know.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    /// A TCP port published on the host's loopback: (the container's, the host's).
    pub publish: Option<(u16, u16)>,
    /// Docker starts it again when it exits with an error (a control-plane component that
    /// lost its store at boot); a node that fails stays down, as a test made it.
    pub restart_on_failure: bool,
    /// Files put in the container before it starts: (absolute path, content), each
    /// readable by root only. Credentials go here, not into `cmd`, which every local user
    /// can read (`ps` on the host shows a container's processes) and `docker inspect` too.
    pub files: Vec<(String, Vec<u8>)>,
    /// Replaces the image's entrypoint (a pod's `command`); `cmd` empty keeps the
    /// image's CMD only when this is `None`, as Kubernetes runs `command` and `args`.
    pub entrypoint: Option<Vec<String>>,
    /// `NAME=value`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `uid` or `uid:gid`.
    pub user: Option<String>,
    pub read_only: bool,
    pub limits: Limits,
    /// Host paths mounted in, `host:container` (a node's access to the engine).
    pub binds: Vec<String>,
    pub dns_options: Vec<String>,
    /// Joins another container's network namespace (a pod's containers, their sandbox's)
    /// instead of `network`: no address, hostname or resolver of its own.
    pub join: Option<String>,
    /// The container's standard input kept open (`stdin`), closed after the first
    /// attachment ends (`stdinOnce`), and a terminal (`tty`): what `kubectl attach` uses.
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

/// What the engine holds a container to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// In bytes, with no swap beyond it: over it, the kernel kills.
    pub memory: Option<i64>,
    /// In billionths of a CPU.
    pub nano_cpus: Option<i64>,
}

/// A command running in a container with its streams attached.
pub struct Attached {
    pub id: String,
    pub output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>,
    >,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// How a container ended, as the engine recorded it: its exit code, and whether the
/// kernel killed it for going over its memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub code: i32,
    pub oom_killed: bool,
}

impl std::fmt::Debug for ContainerFiles<'_> {
    /// Names only: the contents are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(path, _)| path)).finish()
    }
}

/// A container's files, as a log may show them.
pub struct ContainerFiles<'a>(pub &'a [(String, Vec<u8>)]);

/// A tar of `files`, directories made as needed, files 0600 and directories 0700.
fn archive(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut directories = std::collections::BTreeSet::new();
    for (path, bytes) in files {
        let relative = path.trim_start_matches('/');
        let mut parent = std::path::Path::new(relative).parent();
        let mut missing = Vec::new();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            if directories.insert(dir.to_path_buf()) {
                missing.push(dir.to_path_buf());
            }
            parent = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_mode(0o700);
            header.set_cksum();
            builder.append_data(&mut header, &dir, std::io::empty())?;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        builder.append_data(&mut header, relative, bytes.as_slice())?;
    }
    builder.into_inner()
}

impl std::fmt::Debug for ContainerSpec {
    /// Everything but the files' contents, which are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("cmd", &self.cmd)
            .field("labels", &self.labels)
            .field("network", &self.network)
            .field("ip", &self.ip)
            .field("publish", &self.publish)
            .field("files", &ContainerFiles(&self.files))
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Docker {
    inner: bollard::Docker,
}

impl Docker {
    /// Connects to the engine (`DOCKER_HOST`, else the local socket) at the newest API
    /// version both sides speak.
    pub async fn connect() -> Result<Docker, Error> {
        let unreachable = |e: bollard::errors::Error| Error::Unreachable(e.to_string());
        let inner = bollard::Docker::connect_with_local_defaults().map_err(unreachable)?;
        let inner = inner.negotiate_version().await.map_err(unreachable)?;
        inner.ping().await.map_err(unreachable)?;
        Ok(Docker { inner })
    }

    pub async fn image_exists(&self, tag: &str) -> bool {
        self.inner.inspect_image(tag).await.is_ok()
    }

    /// Builds `tag` from a tar of a build context holding a `Dockerfile`.
    pub async fn build(&self, tag: &str, context: Vec<u8>) -> Result<(), Error> {
        let options =
            BuildImageOptionsBuilder::default().dockerfile("Dockerfile").t(tag).rm(true).forcerm(true).build();
        let mut stream = self.inner.build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(step) = stream.next().await {
            let step = step.map_err(refused(format!("build {tag}")))?;
            if let Some(detail) = step.error_detail.and_then(|d| d.message) {
                return Err(Error::Refused { what: format!("build {tag}"), message: detail });
            }
        }
        Ok(())
    }

    /// Gives the image `source` the name `repository:tag` too (`docker tag`).
    pub async fn tag(&self, source: &str, repository: &str, tag: &str) -> Result<(), Error> {
        let options =
            bollard::query_parameters::TagImageOptions { repo: Some(repository.into()), tag: Some(tag.into()) };
        self.inner
            .tag_image(source, Some(options))
            .await
            .map_err(refused(format!("tag {source} as {repository}:{tag}")))
    }

    /// The tags of a repository's images (`kubeyard/kubeyard:...`), each with when it was
    /// built (seconds since the epoch).
    pub async fn image_tags(&self, repository: &str) -> Result<Vec<(String, i64)>, Error> {
        let filters = HashMap::from([("reference".to_string(), vec![format!("{repository}:*")])]);
        let options = ListImagesOptionsBuilder::default().filters(&filters).build();
        let images = self.inner.list_images(Some(options)).await.map_err(refused("list images"))?;
        Ok(images
            .into_iter()
            .flat_map(|i| i.repo_tags.into_iter().map(move |tag| (tag, i.created)))
            .filter(|(t, _)| t.starts_with(&format!("{repository}:")))
            .collect())
    }

    pub async fn remove_image(&self, tag: &str) -> Result<(), Error> {
        self.inner
            .remove_image(tag, None::<bollard::query_parameters::RemoveImageOptions>, None)
            .await
            .map(drop)
            .map_err(refused(format!("remove image {tag}")))
    }

    /// A bridge network with this subnet, every address in it assigned by kubeyard.
    pub async fn create_network(
        &self,
        name: &str,
        subnet: &str,
        gateway: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), Error> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    gateway: Some(gateway.to_string()),
                    ..IpamConfig::default()
                }]),
                ..Ipam::default()
            }),
            labels: Some(labels.clone()),
            ..NetworkCreateRequest::default()
        };
        self.inner.create_network(request).await.map(drop).map_err(refused(format!("create network {name}")))
    }

    pub async fn remove_network(&self, name: &str) -> Result<(), Error> {
        self.inner.remove_network(name).await.map_err(refused(format!("remove network {name}")))
    }

    /// Creates and starts a container.
    pub async fn run(&self, spec: &ContainerSpec) -> Result<(), Error> {
        let endpoint = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some(spec.ip.clone()),
                ..EndpointIpamConfig::default()
            }),
            ..EndpointSettings::default()
        };
        let port_bindings = spec.publish.map(|(port, host)| {
            let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host.to_string()) };
            HashMap::from([(format!("{port}/tcp"), Some(vec![binding]))])
        });
        let list = |items: &Vec<String>| (!items.is_empty()).then(|| items.clone());
        let joined = spec.join.as_ref().map(|other| format!("container:{other}"));
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: list(&spec.cmd).or_else(|| spec.entrypoint.as_ref().map(|_| Vec::new())),
            env: list(&spec.env),
            working_dir: spec.working_dir.clone(),
            user: spec.user.clone(),
            hostname: spec.hostname.clone().filter(|_| joined.is_none()),
            labels: Some(spec.labels.clone()),
            exposed_ports: spec.publish.map(|(port, _)| vec![format!("{port}/tcp")]),
            open_stdin: spec.stdin.then_some(true),
            stdin_once: spec.stdin_once.then_some(true),
            attach_stdin: spec.stdin.then_some(true),
            tty: spec.tty.then_some(true),
            host_config: Some(HostConfig {
                network_mode: Some(joined.clone().unwrap_or_else(|| spec.network.clone())),
                cap_add: list(&spec.cap_add),
                dns: list(&spec.dns),
                dns_search: list(&spec.dns_search),
                dns_options: list(&spec.dns_options),
                binds: list(&spec.binds),
                readonly_rootfs: spec.read_only.then_some(true),
                memory: spec.limits.memory,
                memory_swap: spec.limits.memory,
                nano_cpus: spec.limits.nano_cpus,
                port_bindings,
                init: Some(false),
                restart_policy: spec.restart_on_failure.then_some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ON_FAILURE),
                    maximum_retry_count: Some(10),
                }),
                ..HostConfig::default()
            }),
            networking_config: joined.is_none().then(|| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        self.inner
            .create_container(Some(options), body)
            .await
            .map_err(refused(format!("create container {}", spec.name)))?;
        if !spec.files.is_empty() {
            let tar = archive(&spec.files).map_err(|e| Error::Refused {
                what: format!("copy files into {}", spec.name),
                message: e.to_string(),
            })?;
            let options = UploadToContainerOptionsBuilder::default().path("/").build();
            self.inner
                .upload_to_container(&spec.name, Some(options), bollard::body_full(tar.into()))
                .await
                .map_err(refused(format!("copy files into {}", spec.name)))?;
        }
        self.start(&spec.name).await
    }

    pub async fn start(&self, name: &str) -> Result<(), Error> {
        self.inner.start_container(name, None).await.map_err(refused(format!("start {name}")))
    }

    /// SIGTERM, then SIGKILL after `grace_seconds`.
    pub async fn stop(&self, name: &str, grace_seconds: i32) -> Result<(), Error> {
        let options = StopContainerOptionsBuilder::default().t(grace_seconds).build();
        self.inner.stop_container(name, Some(options)).await.map_err(refused(format!("stop {name}")))
    }

    pub async fn kill(&self, name: &str) -> Result<(), Error> {
        let options = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
        self.inner.kill_container(name, Some(options)).await.map_err(refused(format!("kill {name}")))
    }

    pub async fn pause(&self, name: &str) -> Result<(), Error> {
        self.inner.pause_container(name).await.map_err(refused(format!("pause {name}")))
    }

    pub async fn unpause(&self, name: &str) -> Result<(), Error> {
        self.inner.unpause_container(name).await.map_err(refused(format!("unpause {name}")))
    }

    pub async fn restart(&self, name: &str, grace_seconds: i32) -> Result<(), Error> {
        let options = RestartContainerOptionsBuilder::default().t(grace_seconds).build();
        self.inner.restart_container(name, Some(options)).await.map_err(refused(format!("restart {name}")))
    }

    /// Removes a container, running or not; one already gone is no error.
    pub async fn remove(&self, name: &str) -> Result<(), Error> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.inner.remove_container(name, Some(options)).await {
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) | Ok(()) => Ok(()),
            // Someone else (a node agent, its pod done) is removing it: wait for that.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message })
                if message.contains("already in progress") =>
            {
                for _ in 0..100 {
                    if !self.exists(name).await? {
                        return Ok(());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(Error::Refused { what: format!("remove {name}"), message })
            }
            Err(error) => Err(refused(format!("remove {name}"))(error)),
        }
    }

    /// Cuts a container off a network (a partition).
    pub async fn disconnect(&self, network: &str, container: &str) -> Result<(), Error> {
        let request = NetworkDisconnectRequest { container: container.to_string(), force: Some(true) };
        self.inner.disconnect_network(network, request).await.map_err(refused(format!("disconnect {container}")))
    }

    /// Joins a container to a network again, at its fixed address.
    pub async fn connect_to(&self, network: &str, container: &str, ip: &str) -> Result<(), Error> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                ipam_config: Some(EndpointIpamConfig { ipv4_address: Some(ip.to_string()), ..Default::default() }),
                ..EndpointSettings::default()
            }),
        };
        self.inner.connect_network(network, request).await.map_err(refused(format!("connect {container}")))
    }

    /// Whether the container is running (not stopped, not paused, not gone).
    pub async fn running(&self, name: &str) -> bool {
        let Ok(container) = self.inner.inspect_container(name, None).await else { return false };
        container.state.is_some_and(|s| s.running == Some(true) && s.paused != Some(true))
    }

    /// What is wrong with the container as a person reads it, `None` while it runs:
    /// "is paused", "exited with code 137, killed for going over its memory limit",
    /// "is gone".
    pub async fn not_running(&self, name: &str) -> Option<String> {
        let inspected = match self.inner.inspect_container(name, None).await {
            Ok(inspected) => inspected,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                return Some("is gone (removed)".into());
            }
            Err(error) => return Some(format!("cannot be inspected: {error}")),
        };
        let state = inspected.state.unwrap_or_default();
        if state.paused == Some(true) {
            return Some("is paused".into());
        }
        if state.running == Some(true) {
            return None;
        }
        let mut text = format!("exited with code {}", state.exit_code.unwrap_or(0));
        if state.oom_killed == Some(true) {
            text.push_str(", killed for going over its memory limit");
        }
        if let Some(error) = state.error.filter(|e| !e.is_empty()) {
            text.push_str(&format!(" ({error})"));
        }
        Some(text)
    }

    /// Whether the container exists (in any state): `kubeyard down` removes them.
    pub async fn exists(&self, name: &str) -> Result<bool, Error> {
        match self.inner.inspect_container(name, None).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(error) => Err(refused(format!("inspect {name}"))(error)),
        }
    }

    /// Whether the network exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool, Error> {
        let options = bollard::query_parameters::InspectNetworkOptions::default();
        match self.inner.inspect_network(name, Some(options)).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(error) => Err(refused(format!("inspect network {name}"))(error)),
        }
    }

    /// Names of the containers (running or not) carrying `label` (`key` or `key=value`).
    pub async fn containers_labelled(&self, label: &str) -> Result<Vec<String>, Error> {
        self.containers_matching(&[label.to_string()]).await
    }

    /// Names of the containers (running or not) carrying every one of `labels`.
    pub async fn containers_matching(&self, labels: &[String]) -> Result<Vec<String>, Error> {
        let filters = HashMap::from([("label".to_string(), labels.to_vec())]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = self.inner.list_containers(Some(options)).await.map_err(refused("list containers"))?;
        Ok(list
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    pub async fn networks_labelled(&self, label: &str) -> Result<Vec<String>, Error> {
        self.networks_matching(&[label.to_string()]).await
    }

    /// Names of the networks carrying every one of `labels`.
    pub async fn networks_matching(&self, labels: &[String]) -> Result<Vec<String>, Error> {
        let filters = HashMap::from([("label".to_string(), labels.to_vec())]);
        let options = ListNetworksOptionsBuilder::default().filters(&filters).build();
        let list = self.inner.list_networks(Some(options)).await.map_err(refused("list networks"))?;
        Ok(list.into_iter().filter_map(|n| n.name).collect())
    }

    /// The container's memory use now, in bytes (the cgroup's, less its page cache).
    pub async fn memory(&self, name: &str) -> Result<u64, Error> {
        self.usage(name).await.map(|(_, memory)| memory)
    }

    /// The container's CPU time so far, in nanoseconds, and its memory use now, in bytes
    /// (the cgroup's, less its inactive page cache: the working set, as cAdvisor counts it).
    pub async fn usage(&self, name: &str) -> Result<(u64, u64), Error> {
        let options = StatsOptionsBuilder::default().stream(false).one_shot(true).build();
        let mut stats = self.inner.stats(name, Some(options));
        let sample = stats.next().await.transpose().map_err(refused(format!("read stats of {name}")))?;
        let cpu = sample.as_ref().and_then(|s| s.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage).unwrap_or(0);
        let memory = sample.and_then(|s| s.memory_stats);
        let usage = memory.as_ref().and_then(|m| m.usage).unwrap_or(0);
        let cache = memory
            .and_then(|m| m.stats)
            .and_then(|s| s.get("inactive_file").or_else(|| s.get("total_inactive_file")).copied())
            .unwrap_or(0);
        Ok((cpu, usage.saturating_sub(cache)))
    }

    /// Whether the engine holds the image (`name:tag` or by digest).
    pub async fn has_image(&self, image: &str) -> Result<bool, Error> {
        match self.inner.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(error) => Err(refused(format!("inspect image {image}"))(error)),
        }
    }

    /// Every name the engine's images answer to (`repo:tag`, `repo@digest`).
    pub async fn image_names(&self) -> Result<std::collections::HashSet<String>, Error> {
        let images = self.inner.list_images(None::<bollard::query_parameters::ListImagesOptions>).await;
        let images = images.map_err(refused("list images"))?;
        Ok(images.into_iter().flat_map(|image| image.repo_tags.into_iter().chain(image.repo_digests)).collect())
    }

    /// Pulls an image from its registry.
    pub async fn pull(&self, image: &str) -> Result<(), Error> {
        let options = CreateImageOptionsBuilder::default().from_image(image).build();
        let mut progress = self.inner.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(refused(format!("pull {image}")))?;
        }
        Ok(())
    }

    /// Waits until the container has exited (at once if it has); how it ended.
    pub async fn wait(&self, name: &str) -> Result<Ended, Error> {
        let mut waiting = self.inner.wait_container(name, None);
        // A non-zero exit comes as an error of the wait: either way it has ended.
        if let Some(Err(bollard::errors::Error::DockerResponseServerError { status_code, message })) =
            waiting.next().await
        {
            return Err(Error::Refused {
                what: format!("wait for {name}"),
                message: format!("{status_code}: {message}"),
            });
        }
        let ended = self.ended(name).await?;
        // The engine learns of a cgroup's OOM kill apart from the exit, and under load it
        // reports the exit (137, a pipeline's process killed) with `OOMKilled` false and
        // the kill only as an `oom` event: look for that event before calling it a plain
        // SIGKILL, as a kubelet reads the cgroup's own OOM count.
        if ended.code == 137 && !ended.oom_killed {
            for _ in 0..5 {
                if self.had_oom_event(name).await {
                    return Ok(Ended { oom_killed: true, ..ended });
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        Ok(ended)
    }

    /// Whether the engine reported the container's cgroup out of memory (its `oom`
    /// event) since the container last started.
    async fn had_oom_event(&self, name: &str) -> bool {
        let Ok(inspected) = self.inner.inspect_container(name, None).await else { return false };
        let started = inspected.state.and_then(|s| s.started_at).unwrap_or_default();
        let Ok(started) = chrono::DateTime::parse_from_rfc3339(&started) else { return false };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let options = bollard::query_parameters::EventsOptions {
            since: Some(started.timestamp().to_string()),
            until: Some((now + 1).to_string()),
            filters: Some(HashMap::from([
                ("container".to_string(), vec![name.to_string()]),
                ("event".to_string(), vec!["oom".to_string()]),
            ])),
        };
        let mut events = self.inner.events(Some(options));
        matches!(tokio::time::timeout(std::time::Duration::from_secs(3), events.next()).await, Ok(Some(Ok(_))))
    }

    /// How the container ended (or its state so far, while it runs).
    pub async fn ended(&self, name: &str) -> Result<Ended, Error> {
        let inspected = self.inner.inspect_container(name, None).await.map_err(refused(format!("inspect {name}")))?;
        let state = inspected.state.unwrap_or_default();
        Ok(Ended {
            code: i32::try_from(state.exit_code.unwrap_or(0)).unwrap_or(i32::MAX),
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    /// Runs a command in a running container, its output discarded; its exit code.
    pub async fn exec(&self, name: &str, argv: &[String]) -> Result<i64, Error> {
        let config = bollard::models::ExecConfig {
            cmd: Some(argv.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self.inner.create_exec(name, config).await.map_err(refused(format!("exec in {name}")))?;
        let started = self.inner.start_exec(&created.id, None).await.map_err(refused(format!("exec in {name}")))?;
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(Ok(_)) = output.next().await {}
        }
        let inspected = self.inner.inspect_exec(&created.id).await.map_err(refused(format!("exec in {name}")))?;
        Ok(inspected.exit_code.unwrap_or(-1))
    }

    /// Starts a command in a running container with its streams attached (`kubectl
    /// exec`): the exec's id, its output and its input.
    pub async fn exec_attached(&self, name: &str, argv: &[String], stdin: bool, tty: bool) -> Result<Attached, Error> {
        let config = bollard::models::ExecConfig {
            cmd: Some(argv.to_vec()),
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            ..Default::default()
        };
        let created = self.inner.create_exec(name, config).await.map_err(refused(format!("exec in {name}")))?;
        match self.inner.start_exec(&created.id, None).await.map_err(refused(format!("exec in {name}")))? {
            bollard::exec::StartExecResults::Attached { output, input } => {
                Ok(Attached { id: created.id, output, input })
            }
            bollard::exec::StartExecResults::Detached => {
                Err(Error::Refused { what: format!("exec in {name}"), message: "the exec started detached".into() })
            }
        }
    }

    /// An exec's exit code, once it has ended.
    pub async fn exec_exit_code(&self, id: &str) -> Result<i64, Error> {
        let inspected = self.inner.inspect_exec(id).await.map_err(refused("inspect exec"))?;
        Ok(inspected.exit_code.unwrap_or(-1))
    }

    /// Resizes an exec's terminal.
    pub async fn resize_exec(&self, id: &str, width: u16, height: u16) -> Result<(), Error> {
        let options = bollard::query_parameters::ResizeExecOptions { h: i32::from(height), w: i32::from(width) };
        self.inner.resize_exec(id, options).await.map_err(refused("resize exec"))
    }

    /// Appends everything the container writes (from its start, following) to `log`,
    /// until it exits.
    pub async fn copy_logs(&self, name: &str, log: &mut (impl std::io::Write + Send)) {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).follow(true).build();
        let mut logs = self.inner.logs(name, Some(options));
        while let Some(Ok(chunk)) = logs.next().await {
            if log.write_all(&chunk.into_bytes()).is_err() {
                return;
            }
        }
    }

    /// Creates a volume (in memory: a tmpfs), labelled.
    pub async fn create_volume(&self, name: &str, labels: &HashMap<String, String>, memory: bool) -> Result<(), Error> {
        let driver_opts = memory.then(|| {
            HashMap::from([("type".to_string(), "tmpfs".to_string()), ("device".to_string(), "tmpfs".to_string())])
        });
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some("local".to_string()),
            driver_opts,
            labels: Some(labels.clone()),
            ..Default::default()
        };
        self.inner.create_volume(request).await.map(drop).map_err(refused(format!("create volume {name}")))
    }

    /// Attaches to a running container's own streams (from now on), as `docker attach`.
    pub async fn attach(&self, name: &str, stdin: bool) -> Result<Attached, Error> {
        let options = bollard::query_parameters::AttachContainerOptionsBuilder::default()
            .stdin(stdin)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(false)
            .build();
        let attached =
            self.inner.attach_container(name, Some(options)).await.map_err(refused(format!("attach to {name}")))?;
        Ok(Attached { id: name.to_string(), output: attached.output, input: attached.input })
    }

    /// Whether the container's standard input closes when its first attachment ends
    /// (`stdinOnce`).
    pub async fn stdin_once(&self, name: &str) -> bool {
        let Ok(container) = self.inner.inspect_container(name, None).await else { return false };
        container.config.and_then(|c| c.stdin_once).unwrap_or(false)
    }

    /// Resizes a container's terminal.
    pub async fn resize_container(&self, name: &str, width: u16, height: u16) -> Result<(), Error> {
        let options =
            bollard::query_parameters::ResizeContainerTTYOptions { h: i32::from(height), w: i32::from(width) };
        self.inner.resize_container_tty(name, options).await.map_err(refused("resize container"))
    }

    /// Where a volume's files are on the engine's host.
    pub async fn volume_mountpoint(&self, name: &str) -> Result<String, Error> {
        let volume = self.inner.inspect_volume(name).await.map_err(refused(format!("inspect volume {name}")))?;
        Ok(volume.mountpoint)
    }

    /// Removes a volume; one already gone is no error.
    pub async fn remove_volume(&self, name: &str) -> Result<(), Error> {
        let options = bollard::query_parameters::RemoveVolumeOptionsBuilder::default().force(true).build();
        match self.inner.remove_volume(name, Some(options)).await {
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) | Ok(()) => Ok(()),
            Err(error) => Err(refused(format!("remove volume {name}"))(error)),
        }
    }

    /// Names of the volumes carrying every one of `labels`.
    pub async fn volumes_matching(&self, labels: &[String]) -> Result<Vec<String>, Error> {
        let filters = HashMap::from([("label".to_string(), labels.to_vec())]);
        let options = bollard::query_parameters::ListVolumesOptionsBuilder::default().filters(&filters).build();
        let list = self.inner.list_volumes(Some(options)).await.map_err(refused("list volumes"))?;
        Ok(list.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
    }

    /// Unpacks a tar into a container (running or not) at `path`.
    pub async fn upload(&self, container: &str, path: &str, tar: Vec<u8>) -> Result<(), Error> {
        let options = UploadToContainerOptionsBuilder::default().path(path).build();
        self.inner
            .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(refused(format!("copy files into {container}")))
    }

    /// The containers carrying every one of `labels`, each with its value of `key`.
    pub async fn containers_with(&self, labels: &[String], key: &str) -> Result<Vec<(String, String)>, Error> {
        let filters = HashMap::from([("label".to_string(), labels.to_vec())]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = self.inner.list_containers(Some(options)).await.map_err(refused("list containers"))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.into_iter().next()?.trim_start_matches('/').to_string();
                let value = c.labels.and_then(|l| l.get(key).cloned()).unwrap_or_default();
                Some((name, value))
            })
            .collect())
    }

    /// The last lines a container wrote, for a report of why it failed.
    pub async fn logs(&self, name: &str, lines: usize) -> String {
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&lines.to_string()).build();
        let mut logs = self.inner.logs(name, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&chunk.to_string());
        }
        text
    }
}
