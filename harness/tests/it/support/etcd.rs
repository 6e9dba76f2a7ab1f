//! A real etcd (Debian's `etcd-server`, which `.ci/run` installs) on free loopback ports,
//! removed with its data when dropped: one member, or a cluster of several whose
//! members a test can kill and start again.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    pub url: String,
    child: Child,
    _data: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Etcd {
    pub fn start() -> Etcd {
        let data = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "kubeyard-test", "--data-dir"])
            .arg(data.path())
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("kubeyard-test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian's etcd-server; .ci/run installs it)");
        wait_healthy(&url, "etcd");
        Etcd { url, child, _data: data }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the etcd at `url` says it is healthy, 30 s at most.
fn wait_healthy(url: &str, what: &str) {
    let started = Instant::now();
    let agent = super::api::agent();
    loop {
        if let Ok(mut response) = agent.get(&format!("{url}/health")).call()
            && response.body_mut().read_to_string().is_ok_and(|body| body.contains("true"))
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{what} did not become healthy in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One member of an `EtcdCluster`: its flags, so it can start again on its data.
struct Member {
    name: String,
    client: String,
    peer: String,
    data: tempfile::TempDir,
    child: Option<Child>,
}

/// An etcd cluster of several members on loopback.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial: String,
}

impl EtcdCluster {
    pub fn start(size: usize) -> EtcdCluster {
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("member-{i}"),
                client: format!("http://127.0.0.1:{}", free_port()),
                peer: format!("http://127.0.0.1:{}", free_port()),
                data: tempfile::tempdir().unwrap(),
                child: None,
            })
            .collect();
        let initial = members.iter().map(|m| format!("{}={}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { members, initial };
        for index in 0..size {
            cluster.spawn(index);
        }
        for index in 0..size {
            cluster.wait_healthy(index);
        }
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let member = &mut self.members[index];
        let child = Command::new("etcd")
            .args(["--name", &member.name, "--data-dir"])
            .arg(member.data.path())
            .args(["--listen-client-urls", &member.client, "--advertise-client-urls", &member.client])
            .args(["--listen-peer-urls", &member.peer, "--initial-advertise-peer-urls", &member.peer])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-token", "kubeyard-test"])
            // Elections as fast as a loaded 2-core machine allows without flapping.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian's etcd-server; .ci/run installs it)");
        member.child = Some(child);
    }

    fn wait_healthy(&self, index: usize) {
        wait_healthy(&self.members[index].client, &format!("etcd member {index}"));
    }

    /// The members' client URLs, comma-separated as `--etcd` takes them.
    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| m.client.clone()).collect::<Vec<_>>().join(",")
    }

    /// Kills a member (SIGKILL): its data stays for `restart`.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member again on its data, and waits until it is healthy.
    pub fn restart(&mut self, index: usize) {
        self.spawn(index);
        self.wait_healthy(index);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}
