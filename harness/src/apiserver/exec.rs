//! `pods/exec` (`kubectl exec`, and `kubectl cp`, which runs `tar` through it) and
//! `pods/attach` (`kubectl attach`, the container's own streams): the API
//! server opens a WebSocket to the pod's kubelet (`/exec/{namespace}/{pod}/{container}`)
//! with the protocol the client asked for (`v5.channel.k8s.io` or `v4`), then accepts the
//! client's upgrade and relays the messages both ways, as Kubernetes proxies the stream.
//! The kubelet is asked first, so a refusal (no such container, a simulated node) reaches
//! the client as an HTTP error with its message. kubectl 1.32 speaks WebSocket first; over
//! SPDY (its fallback) the streams are relayed to the same kubelet session by
//! `exec_spdy.rs`.

use super::exec_spdy;
use super::logs::{Located, locate};
use super::status::ApiError;
use super::{ApiServer, Query, Target};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The protocol to speak: the first the client offers that the kubelet speaks.
fn protocol(offered: Option<&HeaderValue>) -> Option<&'static str> {
    let offered = offered?.to_str().ok()?;
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    offered.iter().find_map(|p| crate::kubelet::exec::PROTOCOLS.iter().find(|known| *known == p).copied())
}

pub(super) async fn serve(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    parts: &mut axum::http::request::Parts,
) -> Result<Response, ApiError> {
    let headers = &parts.headers;
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let websocket = upgrade.eq_ignore_ascii_case("websocket");
    let spdy = upgrade.eq_ignore_ascii_case("SPDY/3.1");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    // Over SPDY the client speaks v4 (the stream protocol's version is negotiated in a
    // header); to the kubelet the API server always speaks v5, for stdin's end.
    let protocol = if spdy {
        super::spdy::negotiate(headers, exec_spdy::PROTOCOL)?;
        crate::kubelet::exec::PROTOCOLS[0]
    } else {
        if !(websocket && key.is_some()) {
            return Err(ApiError::bad_request("exec needs an upgrade: a WebSocket or SPDY/3.1"));
        }
        protocol(headers.get(header::SEC_WEBSOCKET_PROTOCOL))
            .ok_or_else(|| ApiError::bad_request("exec needs the protocol v5.channel.k8s.io or v4.channel.k8s.io"))?
    };
    // `exec` or `attach`: the same session, with a command or with the container's own streams.
    let doing = if target.subresource.as_deref() == Some("attach") { "attach" } else { "exec" };
    let Located { namespace, name, container, node_name, kubelet } = locate(server, target, query, doing).await?;
    let raw = parts.uri.query().unwrap_or_default();
    let url = format!("ws://{kubelet}/{doing}/{namespace}/{name}/{container}?{raw}");
    let mut request = url.into_client_request().map_err(|e| ApiError::internal(e.to_string()))?;
    request.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    if let Some(token) = &server.options.token {
        let bearer =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| ApiError::internal(e.to_string()))?;
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
    }
    let unavailable = |why: String| {
        ApiError::new(503, "ServiceUnavailable", format!("the kubelet of {node_name} does not answer: {why}"))
    };
    let connected = tokio::time::timeout(std::time::Duration::from_secs(5), tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| unavailable("no answer within 5s".into()))?;
    let upstream = match connected {
        Ok((upstream, _)) => upstream,
        Err(tokio_tungstenite::tungstenite::Error::Http(refusal)) => {
            let message =
                refusal.body().as_ref().map(|b| String::from_utf8_lossy(b).trim().to_string()).unwrap_or_default();
            let code = refusal.status().as_u16();
            return Err(match code {
                404 => ApiError::new(404, "NotFound", message),
                401 => ApiError::internal(format!("the kubelet of {node_name} refused the API server's credentials")),
                _ => ApiError::bad_request(message),
            });
        }
        Err(error) => return Err(unavailable(error.to_string())),
    };
    let on_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::internal("this connection cannot be upgraded"))?;
    if spdy {
        let flag = |name: &str| query.get(name).is_some_and(|v| matches!(v.as_str(), "true" | "1"));
        let wanted = exec_spdy::Wanted {
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        };
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let (incoming, outgoing) = super::spdy::byte_streams(TokioIo::new(upgraded));
            exec_spdy::session(incoming, outgoing, upstream, wanted).await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "SPDY/3.1")
            .header(header::CONNECTION, "Upgrade")
            .header("X-Stream-Protocol-Version", exec_spdy::PROTOCOL)
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let key = key.ok_or_else(|| ApiError::bad_request("a WebSocket upgrade needs Sec-WebSocket-Key"))?;
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let client = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay(client, upstream).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Passes every message from each side to the other until either ends.
async fn relay<A, B>(client: WebSocketStream<A>, node: WebSocketStream<B>)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    let (mut to_client, mut from_client) = client.split();
    let (mut to_node, mut from_node) = node.split();
    let upward = async {
        while let Some(Ok(message)) = from_client.next().await {
            let closing = matches!(message, Message::Close(_));
            if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                continue;
            }
            if to_node.send(message).await.is_err() || closing {
                break;
            }
        }
    };
    let downward = async {
        while let Some(Ok(message)) = from_node.next().await {
            if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                continue;
            }
            let closing = matches!(message, Message::Close(_));
            if to_client.send(message).await.is_err() || closing {
                return;
            }
        }
        // The node went away without a word: close with a code, which kubectl reads as the end.
        let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        };
        let _ = to_client.send(Message::Close(Some(normal))).await;
    };
    // The node's side ends the session (the command's end); the client closing first
    // ends it too.
    tokio::select! {
        () = downward => {}
        () = upward => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_protocol_both_speak_is_chosen() {
        let offered = HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io, channel.k8s.io");
        assert_eq!(protocol(Some(&offered)), Some("v5.channel.k8s.io"));
        let older = HeaderValue::from_static("v4.channel.k8s.io,v3.channel.k8s.io");
        assert_eq!(protocol(Some(&older)), Some("v4.channel.k8s.io"));
        assert_eq!(protocol(Some(&HeaderValue::from_static("channel.k8s.io"))), None);
        assert_eq!(protocol(None), None);
    }
}
