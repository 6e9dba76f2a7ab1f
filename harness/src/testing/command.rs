//! The `command` step: a program run on this machine (chainsaw's `script`), for what no
//! built-in step covers, with the test's cluster in `KUBECONFIG` (a file written for the
//! run), its namespace in `NAMESPACE` and the test's name in `KUBEYARD_TEST`, in the
//! test's folder. Its answer (exit code, stdout, stderr) is judged as an `exec` step's.
//! Run once; with `within`, run again until the answer is right or the time is up.

use super::cluster::{Cluster, Error};
use super::requests::Answer;
use super::spec::{CommandStep, Expect};
use std::path::Path;
use std::time::Duration;

/// A kubeconfig file for one run, removed when dropped.
struct Kubeconfig(std::path::PathBuf);

impl Drop for Kubeconfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Cluster {
    /// Runs the step's program, once (`within` is `None`; it may take up to `limit`), or
    /// until its answer is as expected within `within`.
    pub async fn command_step(
        &self,
        step: &CommandStep,
        expect: &Expect,
        (within, limit): (Option<Duration>, Duration),
        test: (&str, &Path),
    ) -> Result<Answer, Error> {
        let (name, dir) = test;
        let argv = step.argv();
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::Manifests("a command step needs run or script".into()));
        };
        let dir = match &step.working_dir {
            Some(relative) => dir.join(relative),
            None => dir.to_path_buf(),
        };
        let each = within.unwrap_or(limit);
        let shown = format!("command {}", argv.join(" "));
        self.until(
            within.unwrap_or(Duration::ZERO),
            || async {
                // The cluster's kubeconfig for this run; a shared cluster's is the user's own.
                let kubeconfig = match self.kubeconfig() {
                    Some(text) => {
                        let path = std::env::temp_dir().join(format!(
                            "kubeyard-command-{}-{}.kubeconfig",
                            std::process::id(),
                            fastrand::u64(..)
                        ));
                        crate::apiserver::kubeconfig::write_text(&path, &text)
                            .map_err(|e| Error::Api(format!("writing the kubeconfig {}: {e}", path.display())))?;
                        Some(Kubeconfig(path))
                    }
                    None => None,
                };
                let mut command = tokio::process::Command::new(program);
                command
                    .args(args)
                    .current_dir(&dir)
                    .env("NAMESPACE", self.namespace())
                    .env("KUBEYARD_TEST", name)
                    .envs(&step.env)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true);
                if let Some(Kubeconfig(path)) = &kubeconfig {
                    command.env("KUBECONFIG", path);
                }
                let output = match tokio::time::timeout(each, command.output()).await {
                    Ok(Ok(output)) => output,
                    Ok(Err(error)) => {
                        return Err(Error::Manifests(format!(
                            "{shown}: cannot start {program} in {}: {error}",
                            dir.display()
                        )));
                    }
                    Err(_) => return Err(Error::Api(format!("{shown} was still running after {each:?}: killed"))),
                };
                drop(kubeconfig);
                // Killed by a signal: 128 + its number, as a shell reports it.
                let exit_code = output.status.code().map_or_else(
                    || {
                        use std::os::unix::process::ExitStatusExt;
                        128 + i64::from(output.status.signal().unwrap_or(0))
                    },
                    i64::from,
                );
                let answer = Answer::Exec {
                    exit_code,
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                };
                Ok((shown.clone(), answer))
            },
            expect,
        )
        .await
    }
}
