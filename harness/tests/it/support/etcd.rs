//! A real etcd (Debian's `etcd-server`, which `.ci/run` installs) on free loopback ports,
//! removed with its data when dropped.

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
        let started = Instant::now();
        let agent = super::api::agent();
        loop {
            if let Ok(mut response) = agent.get(&format!("{url}/health")).call()
                && response.body_mut().read_to_string().is_ok_and(|body| body.contains("true"))
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "etcd did not become healthy in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Etcd { url, child, _data: data }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
