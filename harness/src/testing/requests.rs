//! The `exec` and `http` steps: a command run in a pod's container through `pods/exec`
//! (the path `kubectl exec` takes), or a request to a Service or pod through the API
//! server's proxy (`services/proxy`, `pods/proxy`, as `kubectl get --raw` reaches them),
//! retried until the answer is what the step expects. Both go through the API server
//! alone, so they work the same on a kubeyard container cluster and on a real one.

use super::cluster::{Cluster, Error};
use super::expect::{Failure, show};
use super::spec::{ExecStep, Expect, HttpStep};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a command or a request answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Exec { exit_code: i64, stdout: String, stderr: String },
    Http { status: u16, body: String },
}

impl Answer {
    /// The answer as a step's output lines.
    pub fn lines(&self) -> Vec<String> {
        let first_line = |text: &str| text.lines().next().unwrap_or_default().to_string();
        match self {
            Answer::Exec { exit_code, stdout, .. } => vec![format!("exit code {exit_code}: {}", first_line(stdout))],
            Answer::Http { status, body } => vec![format!("{status}: {}", first_line(body))],
        }
    }
}

/// Texts are compared without their trailing newline: `echo` ends with one, YAML
/// strings seldom do.
fn same(actual: &str, expected: &str) -> bool {
    actual.strip_suffix('\n').unwrap_or(actual) == expected.strip_suffix('\n').unwrap_or(expected)
}

/// How the answer differs from what is expected, one line a difference; empty when it
/// is as expected. An exec is expected to exit 0 and a request to answer 200 unless the
/// step says otherwise.
pub fn differences(expect: &Expect, answer: &Answer) -> Vec<String> {
    let mut out = Vec::new();
    let mut text = |field: &str, actual: &str, whole: &Option<String>, part: &Option<String>| {
        if let Some(expected) = whole
            && !same(actual, expected)
        {
            out.push(format!("{field}: expected {expected:?}, got {actual:?}"));
        }
        if let Some(part) = part
            && !actual.contains(part.as_str())
        {
            out.push(format!("{field}: expected to contain {part:?}, got {actual:?}"));
        }
    };
    match answer {
        Answer::Exec { exit_code, stdout, stderr } => {
            text("stdout", stdout, &expect.stdout, &expect.stdout_contains);
            text("stderr", stderr, &expect.stderr, &expect.stderr_contains);
            let expected = expect.exit_code.unwrap_or(0);
            if *exit_code != expected {
                out.push(format!("exit code: expected {expected}, got {exit_code}"));
            }
        }
        Answer::Http { status, body } => {
            text("body", body, &expect.body, &expect.body_contains);
            let expected = expect.status.unwrap_or(200);
            if *status != expected {
                out.push(format!("status: expected {expected}, got {status}"));
            }
        }
    }
    out
}

/// The exit code a `pods/exec` error channel reports: its Status, `Success` or a
/// `NonZeroExitCode` failure carrying the code as its `ExitCode` cause.
pub fn exit_code(status: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> Result<i64, String> {
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.parse().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    Err(status.message.clone().unwrap_or_else(|| "the command failed without saying why".into()))
}

/// The last lines of a command's output, on one line (a failure report's width).
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let last = &lines[lines.len().saturating_sub(5)..];
    let shown = last.join(" ⏎ ");
    if lines.len() > last.len() { format!("… {shown}") } else { shown }
}

/// How often an answer that is not yet right is asked again.
const RETRY: Duration = Duration::from_millis(250);

impl Cluster {
    /// Runs the step's command until its answer is as expected, within `within`.
    pub async fn exec_step(&self, step: &ExecStep, expect: &Expect, within: Duration) -> Result<Answer, Error> {
        self.needs_real_containers("exec")?;
        let namespace = step.namespace.clone().unwrap_or_else(|| self.namespace().to_string());
        let pods: Api<Pod> = Api::namespaced(self.kube(), &namespace);
        self.until(
            within,
            || async {
                let name = match (&step.pod, &step.selector) {
                    (Some(name), _) => name.clone(),
                    (None, selector) => ready_pod(&pods, selector.as_deref().unwrap_or_default()).await?,
                };
                let answer = exec(&pods, &name, step).await?;
                Ok((format!("pod {namespace}/{name}"), answer))
            },
            expect,
        )
        .await
    }

    /// Sends the step's request until its answer is as expected, within `within`.
    pub async fn http_step(&self, step: &HttpStep, expect: &Expect, within: Duration) -> Result<Answer, Error> {
        self.needs_real_containers("http")?;
        let namespace = step.namespace.clone().unwrap_or_else(|| self.namespace().to_string());
        let (kind, name) = match (&step.service, &step.pod) {
            (Some(service), _) => ("services", service.as_str()),
            (None, pod) => ("pods", pod.as_deref().unwrap_or_default()),
        };
        let id = match &step.port {
            None => name.to_string(),
            Some(Value::String(port)) => format!("{name}:{port}"),
            Some(port) => format!("{name}:{port}"),
        };
        let path = step.path.as_deref().unwrap_or("/");
        let uri = format!("/api/v1/namespaces/{namespace}/{kind}/{id}/proxy{path}");
        let subject = format!("{} {namespace}/{name}{path}", &kind[..kind.len() - 1]);
        self.until(
            within,
            || async {
                let mut request = http::Request::builder().method(step.method.as_deref().unwrap_or("GET")).uri(&uri);
                for (header, value) in &step.headers {
                    request = request.header(header, value);
                }
                let request = request
                    .body(kube::client::Body::from(step.body.clone().unwrap_or_default().into_bytes()))
                    .map_err(|e| Error::Manifests(format!("http: {e}")))?;
                let response = self.kube().send(request).await?;
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.map_err(|e| Error::Api(e.to_string()))?.to_bytes();
                Ok((subject.clone(), Answer::Http { status, body: String::from_utf8_lossy(&body).into_owned() }))
            },
            expect,
        )
        .await
    }

    /// In process, pods are simulated: there is nothing to run a command in or to ask.
    fn needs_real_containers(&self, step: &str) -> Result<(), Error> {
        if self.plane().is_some() {
            return Err(Error::Manifests(format!(
                "{step} steps need real containers, and in process pods are simulated: \
                 run the test with --cluster containers (or kubeconfig)"
            )));
        }
        Ok(())
    }

    /// Asks until the answer is as expected; the failure shows the last answer, or the
    /// last error when there was none.
    pub(super) async fn until<F, Fut>(&self, within: Duration, ask: F, expect: &Expect) -> Result<Answer, Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Answer), Error>>,
    {
        let started = Instant::now();
        // What is asked runs in real time (a local program may wait on the cluster):
        // a stopped clock follows it meanwhile.
        let _follow = self.clock().follow_real_time();
        loop {
            let (summary, differences) = match ask().await {
                Ok((subject, answer)) => {
                    let mut differences = differences(expect, &answer);
                    if differences.is_empty() {
                        return Ok(answer);
                    }
                    // What a command said is most of what tells why it failed.
                    if let Answer::Exec { stdout, stderr, .. } = &answer {
                        for (stream, text) in [("stdout", stdout), ("stderr", stderr)] {
                            if !text.trim().is_empty() {
                                differences.push(format!("its {stream}: {}", tail(text)));
                            }
                        }
                    }
                    (format!("{subject} did not answer as expected"), differences)
                }
                Err(Error::Failed(failure)) => (failure.summary.clone(), failure.differences.clone()),
                Err(error) => (error.to_string(), Vec::new()),
            };
            if started.elapsed() >= within {
                let summary =
                    if within.is_zero() { summary } else { format!("{summary} (still, after {})", show(within)) };
                let failure = Failure { summary, differences, ..Failure::default() };
                return Err(Error::Failed(Box::new(failure)));
            }
            tokio::time::sleep(RETRY.min(within.saturating_sub(started.elapsed()))).await;
        }
    }
}

/// The first Ready pod the selector picks, by name.
async fn ready_pod(pods: &Api<Pod>, selector: &str) -> Result<String, Error> {
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    let mut ready: Vec<String> = list
        .items
        .iter()
        .filter(|pod| {
            let value = serde_json::to_value(pod).unwrap_or_default();
            kubeyard_compiler::pod::is_ready(&value)
        })
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    ready.sort();
    ready.into_iter().next().ok_or_else(|| {
        Error::Failed(Box::new(Failure {
            summary: format!("no Ready pod matches {selector} ({} pods match)", list.items.len()),
            ..Failure::default()
        }))
    })
}

/// Runs the command once and reads all it writes.
async fn exec(pods: &Api<Pod>, name: &str, step: &ExecStep) -> Result<Answer, Error> {
    let mut params = AttachParams::default().stdin(step.stdin.is_some()).stdout(true).stderr(true);
    if let Some(container) = &step.container {
        params = params.container(container.clone());
    }
    let mut process = pods.exec(name, step.command.clone(), &params).await?;
    if let (Some(text), Some(mut stdin)) = (&step.stdin, process.stdin()) {
        stdin.write_all(text.as_bytes()).await.map_err(|e| Error::Api(format!("exec: writing stdin: {e}")))?;
        // Dropping the writer closes standard input (v5's CLOSE), so `cat` and the like end.
        stdin.shutdown().await.map_err(|e| Error::Api(format!("exec: closing stdin: {e}")))?;
    }
    let status = process.take_status();
    let read = |half: Option<tokio::io::ReadHalf<tokio::io::SimplexStream>>| async move {
        let mut text = Vec::new();
        if let Some(mut half) = half {
            let _ = half.read_to_end(&mut text).await;
        }
        String::from_utf8_lossy(&text).into_owned()
    };
    let (stdout, stderr) = tokio::join!(read(process.stdout()), read(process.stderr()));
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    let _ = process.join().await;
    let status = status.ok_or_else(|| Error::Api(format!("exec in {name}: the stream ended without a status")))?;
    let exit_code = exit_code(&status).map_err(|why| Error::Api(format!("exec in {name}: {why}")))?;
    Ok(Answer::Exec { exit_code, stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

    #[test]
    fn answers_are_checked_field_by_field() {
        let ran = Answer::Exec { exit_code: 0, stdout: "swordfish\n".into(), stderr: String::new() };
        let cases: &[(Expect, &[&str])] = &[
            (Expect::default(), &[]),
            (Expect { stdout: Some("swordfish".into()), ..Expect::default() }, &[]),
            (Expect { stdout_contains: Some("fish".into()), ..Expect::default() }, &[]),
            (
                Expect { stdout: Some("trout".into()), ..Expect::default() },
                &["stdout: expected \"trout\", got \"swordfish\\n\""],
            ),
            (Expect { exit_code: Some(3), ..Expect::default() }, &["exit code: expected 3, got 0"]),
            (
                Expect { stderr_contains: Some("x".into()), ..Expect::default() },
                &["stderr: expected to contain \"x\", got \"\""],
            ),
        ];
        for (expect, expected) in cases {
            assert_eq!(differences(expect, &ran), *expected, "{expect:?}");
        }
        let answered = Answer::Http { status: 503, body: "no endpoints".into() };
        assert_eq!(differences(&Expect::default(), &answered), ["status: expected 200, got 503"]);
        let expect = Expect { status: Some(503), body_contains: Some("endpoints".into()), ..Expect::default() };
        assert!(differences(&expect, &answered).is_empty());
    }

    #[test]
    fn exit_codes_come_from_the_error_channel_status() {
        let success = Status { status: Some("Success".into()), ..Status::default() };
        assert_eq!(exit_code(&success), Ok(0));
        let cause = StatusCause { reason: Some("ExitCode".into()), message: Some("3".into()), field: None };
        let failed = Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails { causes: Some(vec![cause]), ..StatusDetails::default() }),
            ..Status::default()
        };
        assert_eq!(exit_code(&failed), Ok(3));
        let other =
            Status { status: Some("Failure".into()), message: Some("no such container".into()), ..Status::default() };
        assert_eq!(exit_code(&other), Err("no such container".into()));
    }
}
