//! `pods/exec` over SPDY/3.1: what kubectl falls back to when its WebSocket is refused, and
//! speaks alone with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`. The client opens one SPDY
//! stream per channel (`streamType`: `error`, `stdin`, `stdout`, `stderr`, `resize`); the
//! API server relays them to the kubelet's WebSocket session (`v5.channel.k8s.io`), frame
//! by frame: stdin data to channel 0 and its end as v5's CLOSE, resizes to channel 4, and
//! channels 1, 2 and 3 back to the streams, each closed when the command ends.

use super::spdy::{self, Frame};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The stream protocol spoken over SPDY: v4's framing, a JSON Status on the error stream.
pub(super) const PROTOCOL: &str = "v4.channel.k8s.io";

/// How long the client may take to open the streams it asked for.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// The streams the request asked for (from its query), which the client opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Wanted {
    fn all_open(&self, open: &HashMap<String, u32>) -> bool {
        let has = |kind: &str| open.contains_key(kind);
        has("error")
            && (!self.stdin || has("stdin"))
            && (!self.stdout || has("stdout"))
            && (!self.stderr || self.tty || has("stderr"))
    }
}

/// Relays one exec between the client's SPDY session (`incoming`/`outgoing` bytes) and the
/// kubelet's WebSocket.
pub(super) async fn session<S>(
    mut incoming: mpsc::Receiver<Bytes>,
    outgoing: mpsc::Sender<Bytes>,
    kubelet: WebSocketStream<S>,
    wanted: Wanted,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (frames, writer) = spdy::writer(outgoing);
    let (mut to_kubelet, mut from_kubelet) = kubelet.split();
    let mut decoder = spdy::Decoder::default();
    let mut buffer = BytesMut::new();
    let mut open: HashMap<String, u32> = HashMap::new();
    let mut resizes = BytesMut::new();
    let deadline = tokio::time::Instant::now() + STREAMS_TIMEOUT;
    let mut ready = false;
    'session: loop {
        tokio::select! {
            bytes = incoming.recv() => {
                let Some(bytes) = bytes else { break 'session };
                buffer.extend_from_slice(&bytes);
                loop {
                    let frame = match decoder.decode(&mut buffer) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(_) => {
                            let _ = frames.send(Frame::GoAway { last_good: 0, status: 1 });
                            break 'session;
                        }
                    };
                    let mut to_send = Vec::new();
                    match frame {
                        Frame::SynStream { stream, headers, .. } => {
                            let kind = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("streamtype")).map(|(_, v)| v.clone());
                            let _ = frames.send(Frame::SynReply { stream, fin: false, headers: Vec::new() });
                            if let Some(kind) = kind {
                                open.insert(kind, stream);
                            }
                        }
                        Frame::Data { stream, fin, data } => {
                            if open.get("stdin") == Some(&stream) {
                                if !data.is_empty() {
                                    to_send.push(framed(0, &data));
                                }
                                if fin {
                                    to_send.push(Message::Binary(Bytes::from_static(&[255, 0])));
                                }
                            } else if open.get("resize") == Some(&stream) {
                                // Sizes come as JSON objects one after another.
                                resizes.extend_from_slice(&data);
                                let mut parsed = serde_json::Deserializer::from_slice(&resizes).into_iter::<serde_json::Value>();
                                let mut used = 0;
                                while let Some(Ok(size)) = parsed.next() {
                                    used = parsed.byte_offset();
                                    to_send.push(framed(4, size.to_string().as_bytes()));
                                }
                                let _ = resizes.split_to(used);
                            }
                        }
                        Frame::Ping { id } => {
                            let _ = frames.send(Frame::Ping { id });
                        }
                        Frame::GoAway { .. } => break 'session,
                        Frame::RstStream { .. }
                        | Frame::SynReply { .. }
                        | Frame::Headers { .. }
                        | Frame::Settings
                        | Frame::WindowUpdate { .. } => {}
                    }
                    for message in to_send {
                        if to_kubelet.send(message).await.is_err() {
                            break 'session;
                        }
                    }
                }
                ready = ready || wanted.all_open(&open);
            }
            message = from_kubelet.next(), if ready => {
                let payload = match message {
                    Some(Ok(Message::Binary(payload))) => payload,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break 'session,
                    Some(Ok(_)) => continue,
                };
                let Some((&channel, data)) = payload.split_first() else { continue };
                let kind = match channel {
                    1 => "stdout",
                    2 => "stderr",
                    3 => "error",
                    _ => continue,
                };
                if let Some(&stream) = open.get(kind) {
                    let _ = frames.send(Frame::Data { stream, fin: channel == 3, data: Bytes::copy_from_slice(data) });
                }
            }
            () = tokio::time::sleep_until(deadline), if !ready => {
                if let Some(&stream) = open.get("error") {
                    let message = "timed out waiting for the client to create the streams it asked for";
                    let _ = frames.send(Frame::Data { stream, fin: true, data: Bytes::from_static(message.as_bytes()) });
                }
                break 'session;
            }
        }
    }
    // The command's end is each output stream's end, which the client waits for.
    for kind in ["stdout", "stderr"] {
        if let Some(&stream) = open.get(kind) {
            let _ = frames.send(Frame::Data { stream, fin: true, data: Bytes::new() });
        }
    }
    let _ = to_kubelet.send(Message::Close(None)).await;
    drop(frames);
    let _ = writer.await;
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_waits_for_the_streams_the_request_asked_for() {
        let streams = |kinds: &[&str]| kinds.iter().enumerate().map(|(i, k)| (k.to_string(), i as u32)).collect();
        let plain = Wanted { stdin: false, stdout: true, stderr: true, tty: false };
        assert!(!plain.all_open(&streams(&["error", "stdout"])));
        assert!(plain.all_open(&streams(&["error", "stdout", "stderr"])));
        // With a terminal, stderr is merged into stdout: no stream of its own.
        let terminal = Wanted { stdin: true, stdout: true, stderr: true, tty: true };
        assert!(terminal.all_open(&streams(&["error", "stdin", "stdout", "resize"])));
        assert!(!terminal.all_open(&streams(&["error", "stdout"])));
    }
}
