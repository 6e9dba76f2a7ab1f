//! The `kubernetes` Service of the `default` namespace, which the API server keeps itself
//! (kube-apiserver's bootstrap controller): the first address of the service range, port
//! 443 (`https`) to the server's secure port, with an Endpoints and an EndpointSlice
//! `kubernetes` listing the address the server advertises. Pods reach the API server
//! through it (`KUBERNETES_SERVICE_HOST`, `kubernetes.default.svc`), as client-go's and
//! kube-rs' in-cluster configurations do.
//!
//! Without an address to advertise (an API server on the host's loopback: pods there are
//! simulated, and loopback addresses are not valid endpoints) the Service has no
//! endpoints.

use super::objects;
use super::status::ApiError;
use super::{ApiServer, Representation, Target, resources};
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";

/// The Service, with the server's secure port as its target.
fn service(cluster_ip: IpAddr, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    })
}

fn endpoints(address: SocketAddr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address.ip().to_string()}],
                     "ports": [{"name": "https", "port": address.port(), "protocol": "TCP"}]}],
    })
}

fn endpoint_slice(address: SocketAddr) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [address.ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": address.port(), "protocol": "TCP"}],
    })
}

/// The names clients in pods reach the server by, for its serving certificate: the
/// Service's DNS names and cluster IP (the first of `service_cidr`).
pub fn serving_names(service_cidr: &str) -> Vec<String> {
    let mut names: Vec<String> =
        ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
            .map(String::from)
            .to_vec();
    names.extend(super::allocate::Allocator::new(service_cidr).first_address().map(|ip| ip.to_string()));
    names
}

/// Whether pods could reach the server at `address`.
fn advertisable(address: &SocketAddr) -> bool {
    !address.ip().is_loopback() && !address.ip().is_unspecified()
}

/// Makes the Service (and its endpoints, given an address) or brings them up to date:
/// `fields` are what must match (the rest is the server's or another writer's).
pub async fn reconcile(server: &Arc<ApiServer>, port: u16, advertise: Option<SocketAddr>) -> Result<(), ApiError> {
    let Some(cluster_ip) = server.allocator.first_address() else { return Ok(()) };
    put(server, "", "Service", service(cluster_ip, port), &["/spec/ports"]).await?;
    if let Some(address) = advertise.filter(advertisable) {
        put(server, "", "Endpoints", endpoints(address), &["/subsets"]).await?;
        put(server, "discovery.k8s.io", "EndpointSlice", endpoint_slice(address), &["/endpoints", "/ports"]).await?;
    }
    Ok(())
}

/// How often the Service is made again if deleted (kube-apiserver's bootstrap controller
/// reconciles every 10 s).
pub const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Keeps the Service (and its endpoints) as [`reconcile`] makes them, on the server's
/// clock, until the task is dropped: a deleted `kubernetes` Service comes back.
pub async fn keep(server: Arc<ApiServer>, port: u16, advertise: Option<SocketAddr>) {
    loop {
        server.options.clock.sleep(RECONCILE_EVERY).await;
        // A failure (the store away for a moment) is tried again at the next round.
        let _ = reconcile(&server, port, advertise).await;
    }
}

/// Creates `object`, or replaces it where `fields` differ from what is stored.
async fn put(server: &Arc<ApiServer>, group: &str, kind: &str, object: Value, fields: &[&str]) -> Result<(), ApiError> {
    let resource = resources::by_kind(group, kind).ok_or_else(|| ApiError::internal(format!("{kind} not served")))?;
    let target = |name: Option<&str>| Target {
        resource,
        namespace: Some(NAMESPACE.into()),
        name: name.map(str::to_string),
        subresource: None,
    };
    let call = |method: Method, target: Target, body: Option<&Value>| {
        let body = body.map(|b| bytes::Bytes::from(b.to_string())).unwrap_or_default();
        async move {
            let query = super::Query::new();
            let response =
                objects::handle(server, &method, target, &query, &HeaderMap::new(), &body, Representation::Json)
                    .await?;
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), super::MAX_BODY)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok::<_, ApiError>((status, bytes))
        }
    };
    match call(Method::POST, target(None), Some(&object)).await {
        Ok(_) => return Ok(()),
        Err(error) if error.code == 409 => {}
        Err(error) => return Err(error),
    }
    let (_, stored) = call(Method::GET, target(Some(NAME)), None).await?;
    let mut current: Value =
        serde_json::from_slice(&stored).map_err(|e| ApiError::internal(format!("the stored {kind}: {e}")))?;
    if fields.iter().all(|field| current.pointer(field) == object.pointer(field)) {
        return Ok(());
    }
    for field in fields {
        let (parent, key) = field.rsplit_once('/').unwrap_or(("", field));
        if let (Some(parent), Some(value)) = (current.pointer_mut(parent), object.pointer(field)) {
            parent[key] = value.clone();
        }
    }
    let (status, _) = call(Method::PUT, target(Some(NAME)), Some(&current)).await?;
    debug_assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_pods_can_reach_are_advertised() {
        assert!(advertisable(&"10.200.0.3:6443".parse().unwrap()));
        assert!(!advertisable(&"127.0.0.1:6443".parse().unwrap()));
        assert!(!advertisable(&"0.0.0.0:6443".parse().unwrap()));
        let slice = endpoint_slice("10.200.0.3:6443".parse().unwrap());
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(endpoints("10.200.0.3:6443".parse().unwrap())["subsets"][0]["ports"][0]["port"], 6443);
        assert_eq!(service("10.96.0.1".parse().unwrap(), 6443)["spec"]["ports"][0]["targetPort"], 6443);
    }
}
