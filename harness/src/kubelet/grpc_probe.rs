//! gRPC probes: the standard health check (`grpc.health.v1.Health/Check`) over HTTP/2
//! without TLS, as the kubelet sends it, succeeding only on `SERVING`. The failures say
//! what the kubelet's say (`pkg/probe/grpc`): a connection that cannot be made, a server
//! without the health service, or the status it answered.

use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;

/// The health check's serving statuses, by number.
const STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// gRPC's status code for a method the server does not have.
const UNIMPLEMENTED: &str = "12";

/// A length-prefixed `HealthCheckRequest { service }` (field 1, a string).
pub fn request(service: &str) -> Bytes {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        let mut length = service.len();
        while length >= 0x80 {
            message.push(u8::try_from(length & 0x7f).unwrap_or(0) | 0x80);
            length >>= 7;
        }
        message.push(u8::try_from(length).unwrap_or(0));
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    framed.extend_from_slice(&message);
    framed.freeze()
}

/// The serving status a length-prefixed `HealthCheckResponse` carries (field 1, an enum;
/// absent is 0, UNKNOWN).
pub fn status(mut body: &[u8]) -> Result<u64, String> {
    if body.len() < 5 {
        return Err("the health response is cut off".into());
    }
    let length = usize::try_from(u32::from_be_bytes([body[1], body[2], body[3], body[4]])).unwrap_or(usize::MAX);
    body.advance(5);
    let mut message = body.get(..length).ok_or("the health response is cut off")?;
    let mut status = 0;
    while !message.is_empty() {
        let key = varint(&mut message)?;
        match key & 7 {
            0 => {
                let value = varint(&mut message)?;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let skip = usize::try_from(varint(&mut message)?).unwrap_or(usize::MAX);
                message = message.get(skip..).ok_or("the health response is malformed")?;
            }
            _ => return Err("the health response is malformed".into()),
        }
    }
    Ok(status)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or("the health response is malformed")?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("the health response is malformed".into())
}

/// One health check of `service` at `ip:port`; `Err` in the kubelet's words.
pub async fn check(ip: &str, port: u16, service: &str, timeout: Duration) -> Result<(), String> {
    let address = format!("{ip}:{port}");
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(&address).await.map_err(|e| e.to_string())?;
        let (client, connection) = h2::client::handshake(tcp).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        client.ready().await.map_err(|e| e.to_string())
    };
    let mut client = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(client)) => client,
        Ok(Err(why)) => {
            return Err(format!("timeout: failed to connect service {address:?} within {timeout:?}: {why}"));
        }
        Err(_) => return Err(format!("timeout: failed to connect service {address:?} within {timeout:?}")),
    };
    let rpc = async {
        let head = http::Request::builder()
            .method("POST")
            .uri(format!("http://{address}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "kube-probe/1.32")
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut send) = client.send_request(head, false).map_err(|e| e.to_string())?;
        send.send_data(request(service), true).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        let headers = response.headers().clone();
        let mut body = response.into_body();
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(|e| e.to_string())?.unwrap_or_default();
        // A trailers-only answer carries its status in the headers.
        let grpc = |name: &str| {
            trailers.get(name).or_else(|| headers.get(name)).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
        };
        Ok::<_, String>((grpc("grpc-status"), grpc("grpc-message"), data))
    };
    let (code, message, data) = match tokio::time::timeout(timeout, rpc).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(why)) => return Err(format!("error: health rpc probe failed: {why}")),
        Err(_) => return Err(format!("timeout: health rpc did not complete within {timeout:?}")),
    };
    match code.as_str() {
        "0" => {}
        UNIMPLEMENTED => {
            return Err(format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
            ));
        }
        other => return Err(format!("error: health rpc probe failed: code {other}: {message}")),
    }
    let answered = status(&data)?;
    if answered == 1 {
        return Ok(());
    }
    let name = usize::try_from(answered).ok().and_then(|i| STATUSES.get(i)).copied().unwrap_or("UNKNOWN");
    Err(format!("service unhealthy (responded with {name:?})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A health server on loopback answering every check with `serving`.
    async fn server(serving: u8) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(tcp).await else { return };
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(response, false).unwrap();
                        let body: &[u8] = &[0, 0, 0, 0, 2, 0x08, serving];
                        send.send_data(Bytes::copy_from_slice(body), false).unwrap();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        send.send_trailers(trailers).unwrap();
                    }
                });
            }
        });
        port
    }

    #[test]
    fn messages_are_read_and_written_as_protobuf() {
        assert_eq!(&request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&request("db")[..], &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(status(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(status(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(status(&[0, 0]).is_err());
    }

    #[tokio::test]
    async fn a_check_passes_on_serving_only_and_says_why_not() {
        let second = Duration::from_secs(1);
        assert_eq!(check("127.0.0.1", server(1).await, "", second).await, Ok(()));
        let unhealthy = check("127.0.0.1", server(2).await, "", second).await.unwrap_err();
        assert_eq!(unhealthy, "service unhealthy (responded with \"NOT_SERVING\")");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let refused = check("127.0.0.1", closed, "", second).await.unwrap_err();
        assert!(refused.starts_with("timeout: failed to connect service \"127.0.0.1:"), "{refused}");
    }
}
