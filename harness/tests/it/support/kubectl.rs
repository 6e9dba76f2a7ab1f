//! kubectl 1.32, the real client, as the tests drive it: against one kubeconfig, with a
//! discovery cache of its own (so tests never share one).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// kubectl for the cluster of `kubeconfig`, its cache in `dir`.
    pub fn new(kubeconfig: &Path, dir: &Path) -> Kubectl {
        Kubectl { kubeconfig: kubeconfig.to_path_buf(), cache: dir.join("cache") }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(&self.cache).args(args);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl runs")
    }

    /// kubectl's standard output; the test fails if kubectl does.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("kubectl writes UTF-8")
    }

    /// Asks again until `args`' output shows what `wanted` looks for (30 s at most).
    pub fn wait_for(&self, args: &[&str], wanted: impl Fn(&str) -> bool) -> String {
        self.wait_within(args, Duration::from_secs(30), wanted)
    }

    /// `wait_for`, for what takes the control plane's own time (pod GC's quarantine).
    pub fn wait_within(&self, args: &[&str], within: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let output = self.run(args);
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            if output.status.success() && wanted(&text) {
                return text;
            }
            assert!(start.elapsed() < within, "kubectl {args:?} never showed it:\n{text}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
