//! `pods/portforward` (`kubectl port-forward`): connections to a pod's ports carried over
//! one upgraded request, in each of the three ways clients ask for it:
//! - kubectl 1.32: a WebSocket with the subprotocol `SPDY/3.1+portforward.k8s.io`, whose
//!   binary messages carry a SPDY/3.1 session; for each local connection kubectl opens an
//!   `error` and a `data` stream (headers `streamType`, `port`, `requestID`);
//! - older kubectl and `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`: the same SPDY session on
//!   a connection upgraded with `Upgrade: SPDY/3.1`;
//! - the Python client and kube-rs: a WebSocket of channels (`v4.channel.k8s.io`,
//!   `?ports=80&ports=8080`), port *i* on channels 2*i* (data) and 2*i*+1 (errors), each
//!   first carrying the port as two little-endian bytes.
//!
//! The API server connects to the pod's address itself (the kubelet would enter the
//! pod's network namespace and dial localhost): a port the pod listens on only at
//! 127.0.0.1 is not reached, which docs/containers.md says.

use super::proxy::pod_address;
use super::spdy::{self, Frame};
use super::status::ApiError;
use super::{ApiServer, Query, Target};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// kubectl's tunnelled SPDY, over WebSocket.
const TUNNELED: &str = "SPDY/3.1+portforward.k8s.io";
/// The stream protocol of a SPDY session (`X-Stream-Protocol-Version`).
const SPDY_PROTOCOL: &str = "portforward.k8s.io";
/// Channel protocols, best first.
const CHANNELS: &[&str] = &["v4.channel.k8s.io", "channel.k8s.io"];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a pod's answer goes in one frame.
const CHUNK: usize = 32 << 10;

/// How the client asked to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tunneled,
    Spdy,
    Channels(&'static str),
}

fn header_text<'a>(headers: &'a axum::http::HeaderMap, name: &header::HeaderName) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The mode the request's upgrade headers ask for, if kubeyard speaks it.
fn mode(headers: &axum::http::HeaderMap) -> Result<Mode, ApiError> {
    let upgrade = header_text(headers, &header::UPGRADE);
    if upgrade.eq_ignore_ascii_case("websocket") {
        let offered: Vec<&str> =
            header_text(headers, &header::SEC_WEBSOCKET_PROTOCOL).split(',').map(str::trim).collect();
        if offered.contains(&TUNNELED) {
            return Ok(Mode::Tunneled);
        }
        if let Some(protocol) = CHANNELS.iter().find(|p| offered.contains(p)) {
            return Ok(Mode::Channels(protocol));
        }
        return Err(ApiError::bad_request(format!(
            "port-forward needs the WebSocket protocol {TUNNELED}, v4.channel.k8s.io or channel.k8s.io"
        )));
    }
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        spdy::negotiate(headers, SPDY_PROTOCOL)?;
        return Ok(Mode::Spdy);
    }
    Err(ApiError::bad_request("port-forward needs an upgrade: a WebSocket or SPDY/3.1"))
}

/// The ports a channel client names: `ports=80&ports=8080` or kube-rs' `ports=80,8080`.
fn ports(raw_query: &str) -> Result<Vec<u16>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw_query).unwrap_or_default();
    let mut ports = Vec::new();
    for value in pairs.iter().filter(|(k, _)| k == "ports").flat_map(|(_, v)| v.split(',')) {
        let port = value.trim().parse::<u16>().ok().filter(|p| *p > 0);
        ports.push(port.ok_or_else(|| ApiError::bad_request(format!("invalid port {value:?}")))?);
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request("at least one port must be specified (ports=...)"));
    }
    Ok(ports)
}

pub(super) async fn serve(
    server: &ApiServer,
    target: &Target,
    _query: &Query,
    parts: &mut axum::http::request::Parts,
) -> Result<Response, ApiError> {
    let mode = mode(&parts.headers)?;
    let namespace = target.namespace.clone().unwrap_or_else(|| "default".into());
    let name = target.name.clone().unwrap_or_default();
    let (ip, uid) = pod_address(server, &namespace, &name, true).await?;
    let pod = Pod { ip, name, uid };
    let channel_ports = match mode {
        Mode::Channels(_) => ports(parts.uri.query().unwrap_or_default())?,
        _ => Vec::new(),
    };
    let on_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::internal("this connection cannot be upgraded"))?;
    let response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS).header(header::CONNECTION, "Upgrade");
    let response = match mode {
        Mode::Spdy => response.header(header::UPGRADE, "SPDY/3.1").header("X-Stream-Protocol-Version", SPDY_PROTOCOL),
        Mode::Tunneled | Mode::Channels(_) => {
            let key = parts
                .headers
                .get(header::SEC_WEBSOCKET_KEY)
                .ok_or_else(|| ApiError::bad_request("a WebSocket upgrade needs Sec-WebSocket-Key"))?;
            let protocol = if let Mode::Channels(p) = mode { p } else { TUNNELED };
            response
                .header(header::UPGRADE, "websocket")
                .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
                .header(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol))
        }
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let io = TokioIo::new(upgraded);
        match mode {
            Mode::Spdy => {
                let (incoming, outgoing) = spdy::byte_streams(io);
                spdy_session(pod, incoming, outgoing).await;
            }
            Mode::Tunneled => {
                let socket = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                let (incoming, outgoing) = websocket_bytes(socket);
                spdy_session(pod, incoming, outgoing).await;
            }
            Mode::Channels(_) => {
                let socket = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                channel_session(pod, socket, channel_ports).await;
            }
        }
    });
    response.body(Body::empty()).map_err(|e| ApiError::internal(e.to_string()))
}

/// The pod the connections go to.
#[derive(Debug, Clone)]
struct Pod {
    ip: String,
    name: String,
    uid: String,
}

impl Pod {
    async fn connect(&self, port: u16) -> Result<TcpStream, String> {
        let address = format!("{}:{port}", self.ip);
        let failed = |why: String| {
            format!("error forwarding port {port} to pod {}, uid {}: dial tcp {address}: {why}", self.name, self.uid)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address)).await {
            Ok(Ok(stream)) => Ok(stream),
            // In Go's words, which is what kubectl users see from a real kubelet.
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(failed("connect: connection refused".into()))
            }
            Ok(Err(error)) => Err(failed(error.to_string())),
            Err(_) => Err(failed("i/o timeout".into())),
        }
    }
}

/// A WebSocket whose binary messages carry a byte stream, as streams of bytes in and out.
fn websocket_bytes<T>(socket: WebSocketStream<T>) -> (mpsc::Receiver<Bytes>, mpsc::Sender<Bytes>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut write, mut read) = socket.split();
    let (incoming_tx, incoming) = mpsc::channel::<Bytes>(64);
    let (outgoing, mut outgoing_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        while let Some(Ok(message)) = read.next().await {
            match message {
                Message::Binary(bytes) if incoming_tx.send(bytes.clone()).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    tokio::spawn(async move {
        while let Some(bytes) = outgoing_rx.recv().await {
            if write.send(Message::Binary(bytes)).await.is_err() {
                return;
            }
        }
        let _ = write.send(Message::Close(None)).await;
    });
    (incoming, outgoing)
}

/// One forwarded connection: kubectl's pair of streams for a `requestID`.
#[derive(Default)]
struct Request {
    port: Option<u16>,
    error: Option<u32>,
    data: Option<u32>,
}

/// A SPDY session: streams paired by request, each pair one connection to the pod.
async fn spdy_session(pod: Pod, mut incoming: mpsc::Receiver<Bytes>, outgoing: mpsc::Sender<Bytes>) {
    let (frames, writer) = spdy::writer(outgoing);
    let mut decoder = spdy::Decoder::default();
    let mut buffer = BytesMut::new();
    let mut requests: HashMap<String, Request> = HashMap::new();
    // What the client sends on a data stream, to that stream's connection; `None` is its FIN.
    let mut to_pod: HashMap<u32, mpsc::UnboundedSender<Option<Bytes>>> = HashMap::new();
    let mut last_stream = 0;
    'session: while let Some(bytes) = incoming.recv().await {
        buffer.extend_from_slice(&bytes);
        loop {
            let frame = match decoder.decode(&mut buffer) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                // Bytes that are not SPDY end the session, as SPDY asks: a GOAWAY with
                // PROTOCOL_ERROR, which the client reports.
                Err(_) => {
                    let _ = frames.send(Frame::GoAway { last_good: last_stream, status: 1 });
                    break 'session;
                }
            };
            match frame {
                Frame::SynStream { stream, headers, .. } => {
                    last_stream = stream;
                    let value = |name: &str| {
                        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
                    };
                    let port = value("port").and_then(|p| p.parse::<u16>().ok());
                    let (Some(kind), Some(port)) = (value("streamtype"), port) else {
                        let _ = frames.send(Frame::RstStream { stream, status: spdy::RST_PROTOCOL_ERROR });
                        continue;
                    };
                    let _ = frames.send(Frame::SynReply { stream, fin: false, headers: Vec::new() });
                    // Clients that send no requestID (kubectl before 1.5) pair streams by port.
                    let id = value("requestid").map_or_else(|| format!("port {port}"), str::to_string);
                    let request = requests.entry(id.clone()).or_default();
                    request.port = Some(port);
                    match kind {
                        "error" => request.error = Some(stream),
                        "data" => request.data = Some(stream),
                        _ => {
                            let _ = frames.send(Frame::RstStream { stream, status: spdy::RST_INVALID_STREAM });
                            continue;
                        }
                    }
                    if let Request { port: Some(port), error: Some(error), data: Some(data) } = request {
                        let (tx, rx) = mpsc::unbounded_channel();
                        to_pod.insert(*data, tx);
                        tokio::spawn(forward(pod.clone(), *port, *error, *data, rx, frames.clone()));
                        requests.remove(&id);
                    }
                }
                Frame::Data { stream, fin, data } => {
                    if let Some(tx) = to_pod.get(&stream) {
                        if !data.is_empty() {
                            let _ = tx.send(Some(data));
                        }
                        if fin {
                            let _ = tx.send(None);
                        }
                    }
                }
                Frame::RstStream { stream, .. } => {
                    to_pod.remove(&stream);
                }
                Frame::Ping { id } => {
                    let _ = frames.send(Frame::Ping { id });
                }
                Frame::GoAway { .. } => break 'session,
                Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Settings | Frame::WindowUpdate { .. } => {}
            }
        }
    }
    drop(to_pod);
    drop(frames);
    let _ = writer.await;
}

/// One connection to the pod, relayed on a data stream; its failure is written on the
/// error stream, which is closed when the connection ends either way.
async fn forward(
    pod: Pod,
    port: u16,
    error: u32,
    data: u32,
    mut from_client: mpsc::UnboundedReceiver<Option<Bytes>>,
    frames: mpsc::UnboundedSender<Frame>,
) {
    let stream = match pod.connect(port).await {
        Ok(stream) => stream,
        Err(why) => {
            let _ = frames.send(Frame::Data { stream: error, fin: true, data: Bytes::from(why) });
            let _ = frames.send(Frame::Data { stream: data, fin: true, data: Bytes::new() });
            return;
        }
    };
    let (mut read, mut write) = stream.into_split();
    let upward = async move {
        // The client's FIN, or its stream reset, or the session's end: no more to send.
        while let Some(Some(bytes)) = from_client.recv().await {
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    };
    let frames_down = frames.clone();
    let downward = async move {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            match read.read(&mut buffer).await {
                Ok(n) if n > 0 => {
                    let chunk = Bytes::copy_from_slice(&buffer[..n]);
                    if frames_down.send(Frame::Data { stream: data, fin: false, data: chunk }).is_err() {
                        return;
                    }
                }
                _ => break,
            }
        }
        let _ = frames_down.send(Frame::Data { stream: data, fin: true, data: Bytes::new() });
    };
    tokio::join!(upward, downward);
    let _ = frames.send(Frame::Data { stream: error, fin: true, data: Bytes::new() });
}

/// A channel session: one connection a port, opened at once.
async fn channel_session<T>(pod: Pod, socket: WebSocketStream<T>, ports: Vec<u16>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut write, mut read) = socket.split();
    let (messages, mut messages_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(message) = messages_rx.recv().await {
            if write.send(Message::Binary(message.into())).await.is_err() {
                return;
            }
        }
        let _ = write.send(Message::Close(None)).await;
    });
    let frame = |channel: usize, payload: &[u8]| {
        let mut message = Vec::with_capacity(payload.len() + 1);
        message.push(u8::try_from(channel).unwrap_or(u8::MAX));
        message.extend_from_slice(payload);
        message
    };
    let mut writers = HashMap::new();
    let mut readers = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        // Each channel first says its port, as the kubelet does.
        let _ = messages.send(frame(2 * i, &port.to_le_bytes()));
        let _ = messages.send(frame(2 * i + 1, &port.to_le_bytes()));
        match pod.connect(*port).await {
            Ok(stream) => {
                let (mut pod_read, pod_write) = stream.into_split();
                writers.insert(2 * i, pod_write);
                let messages = messages.clone();
                readers.spawn(async move {
                    let mut buffer = vec![0u8; CHUNK];
                    while let Ok(n) = pod_read.read(&mut buffer).await {
                        if n == 0 || messages.send(frame(2 * i, &buffer[..n])).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(why) => {
                let _ = messages.send(frame(2 * i + 1, why.as_bytes()));
            }
        }
    }
    // As the kubelet does, the session ends when every port's connection has: the
    // client reads that as the end of the stream.
    while !readers.is_empty() {
        let message = tokio::select! {
            message = read.next() => message,
            done = readers.join_next(), if !readers.is_empty() => {
                if done.is_some() && readers.is_empty() {
                    break;
                }
                continue;
            }
        };
        let payload = match message {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let Some((&channel, rest)) = payload.split_first() else { continue };
        if let Some(pod_write) = writers.get_mut(&usize::from(channel))
            && pod_write.write_all(rest).await.is_err()
        {
            writers.remove(&usize::from(channel));
        }
    }
    drop(messages);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(header::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_mode_is_what_the_upgrade_asks_for() {
        let kubectl = headers(&[("upgrade", "websocket"), ("sec-websocket-protocol", TUNNELED)]);
        assert_eq!(mode(&kubectl).unwrap(), Mode::Tunneled);
        let python = headers(&[("upgrade", "websocket"), ("sec-websocket-protocol", "v4.channel.k8s.io")]);
        assert_eq!(mode(&python).unwrap(), Mode::Channels("v4.channel.k8s.io"));
        let spdy = headers(&[("upgrade", "SPDY/3.1"), ("x-stream-protocol-version", "portforward.k8s.io")]);
        assert_eq!(mode(&spdy).unwrap(), Mode::Spdy);
        let other = headers(&[("upgrade", "SPDY/3.1"), ("x-stream-protocol-version", "v5.channel.k8s.io")]);
        assert_eq!(mode(&other).unwrap_err().code, 403);
        assert_eq!(mode(&headers(&[])).unwrap_err().code, 400);
    }

    #[test]
    fn ports_come_repeated_or_comma_separated() {
        assert_eq!(ports("ports=80&ports=8080").unwrap(), [80, 8080]);
        assert_eq!(ports("ports=80,1234").unwrap(), [80, 1234]);
        assert!(ports("").is_err());
        assert!(ports("ports=0").is_err());
        assert!(ports("ports=http").is_err());
    }
}
