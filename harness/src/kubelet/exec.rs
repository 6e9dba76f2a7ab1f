//! `kubectl exec` on a node: the kubelet's `/exec/{namespace}/{pod}/{container}`, which
//! the API server's `pods/exec` reaches over a WebSocket, speaking Kubernetes' streaming
//! protocol (`v5.channel.k8s.io`, and `v4`): each binary message starts with its channel,
//! 0 stdin, 1 stdout, 2 stderr, 3 the final status, 4 terminal resizes, and (v5) 255 to
//! close a channel (`255, 0`: stdin is done). The command runs in the pod's container in
//! the engine, its streams attached.

use super::docker::DockerRuntime;
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// The protocols spoken, best first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What `kubectl exec` asked for, from the query: the command, and which streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Vec<String>,
    pub stdin: bool,
    pub tty: bool,
}

impl Request {
    /// `command=sh&command=-c&command=...&stdin=true&tty=true`; `Err` as the kubelet says it.
    pub fn parse(query: &str) -> Result<Request, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| e.to_string())?;
        let flag = |key: &str| pairs.iter().any(|(k, v)| k == key && matches!(v.as_str(), "true" | "1"));
        let command: Vec<String> = pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
        if command.is_empty() {
            return Err("you must specify at least 1 command".into());
        }
        Ok(Request { command, stdin: flag("stdin"), tty: flag("tty") })
    }
}

/// The status the final message carries: success, or the exit code as kubectl reads it.
pub fn status(command: &[String], code: i64) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Runs the command in `container` for the session on `socket`, until its output ends.
pub async fn session(docker: Arc<DockerRuntime>, container: String, request: Request, socket: WebSocket) {
    let engine = docker.docker.clone();
    let attached = engine.exec_attached(&container, &request.command, request.stdin, request.tty).await;
    let Some((id, mut sink)) = relay(&engine, attached, Resize::Exec, socket).await else { return };
    let code = engine.exec_exit_code(&id).await.unwrap_or(-1);
    let _ = sink.send(framed(ERROR, status(&request.command, code).to_string().as_bytes())).await;
    let _ = sink.send(normal_close()).await;
}

/// `kubectl attach`: the container's own streams for the session on `socket`, until the
/// client leaves or the container ends.
pub async fn attach(docker: Arc<DockerRuntime>, container: String, stdin: bool, socket: WebSocket) {
    let engine = docker.docker.clone();
    let attached = engine.attach(&container, stdin).await;
    // The client's end of input closes the container's only with `stdinOnce`; otherwise
    // the container's stays open for the next attachment, as Kubernetes keeps it.
    let resize = Resize::Container { close_stdin: engine.stdin_once(&container).await };
    let Some((_, mut sink)) = relay(&engine, attached, resize, socket).await else { return };
    let _ = sink.send(framed(ERROR, json!({"metadata": {}, "status": "Success"}).to_string().as_bytes())).await;
    let _ = sink.send(normal_close()).await;
}

/// What a terminal resize resizes (and, for an attachment, whether the end of the
/// client's input ends the container's).
#[derive(Clone, Copy)]
enum Resize {
    Exec,
    Container { close_stdin: bool },
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Relays the attached streams and the session both ways until the output ends; the
/// sink, for the final status, and the attachment's id. A failure to attach is told on
/// the error channel and ends the session (`None`).
async fn relay(
    engine: &crate::containers::docker::Docker,
    attached: Result<crate::containers::docker::Attached, crate::containers::docker::Error>,
    resize: Resize,
    socket: WebSocket,
) -> Option<(String, Sink)> {
    let (mut sink, mut stream) = socket.split();
    let attached = match attached {
        Ok(attached) => attached,
        Err(error) => {
            let failure = json!({"metadata": {}, "status": "Failure", "message": error.to_string(),
                                 "reason": "InternalError"});
            let _ = sink.send(framed(ERROR, failure.to_string().as_bytes())).await;
            let _ = sink.send(normal_close()).await;
            return None;
        }
    };
    let (id, mut output, mut input) = (attached.id, attached.output, attached.input);
    // What the client sends: stdin, resizes, and (v5) the end of stdin.
    let resizer = engine.clone();
    let resize_id = id.clone();
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let from_client = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Binary(bytes) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match bytes.first().copied() {
                Some(STDIN) if input.write_all(&bytes[1..]).await.is_err() => break,
                Some(RESIZE) => {
                    let size: Value = serde_json::from_slice(&bytes[1..]).unwrap_or_default();
                    let dimension =
                        |key: &str| size.get(key).and_then(Value::as_u64).and_then(|v| u16::try_from(v).ok());
                    if let (Some(width), Some(height)) = (dimension("Width"), dimension("Height")) {
                        let _ = match resize {
                            Resize::Exec => resizer.resize_exec(&resize_id, width, height).await,
                            Resize::Container { .. } => resizer.resize_container(&resize_id, width, height).await,
                        };
                    }
                }
                Some(CLOSE)
                    if bytes.get(1) == Some(&STDIN) && !matches!(resize, Resize::Container { close_stdin: false }) =>
                {
                    let _ = input.shutdown().await;
                }
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });
    // An attachment ends when the client leaves, though the container goes on; a
    // command's session when the command's output ends.
    let ends_with_client = matches!(resize, Resize::Container { .. });
    loop {
        tokio::select! {
            chunk = output.next() => {
                let Some(Ok(chunk)) = chunk else { break };
                let (channel, data) = match chunk {
                    bollard::container::LogOutput::StdErr { message } => (STDERR, message),
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message } => (STDOUT, message),
                    bollard::container::LogOutput::StdIn { .. } => continue,
                };
                if sink.send(framed(channel, &data)).await.is_err() {
                    break;
                }
            }
            _ = &mut gone, if ends_with_client => break,
        }
    }
    from_client.abort();
    Some((id, sink))
}

/// A close frame with code 1000: kubectl reads a close without a code as an error.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame { code: 1000, reason: "".into() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_the_command_and_its_streams() {
        let request =
            Request::parse("command=sh&command=-c&command=echo+hi%3B+exit+3&stdin=true&stdout=true&tty=false").unwrap();
        assert_eq!(request.command, ["sh", "-c", "echo hi; exit 3"]);
        assert!(request.stdin && !request.tty);
        assert_eq!(Request::parse("stdout=true").unwrap_err(), "you must specify at least 1 command");
    }

    #[test]
    fn the_final_status_carries_the_exit_code_as_kubectl_reads_it() {
        assert_eq!(status(&["true".into()], 0)["status"], "Success");
        let failed = status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        assert!(failed["message"].as_str().unwrap().ends_with("[sh -c exit 3], exit code 3"));
    }
}
