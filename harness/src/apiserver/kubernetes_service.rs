//! The `kubernetes` Service of the `default` namespace, which the API server keeps itself
//! (kube-apiserver's bootstrap controller): the first address of the service range, port
//! 443 (`https`) to the server's secure port, with an Endpoints and an EndpointSlice
//! `kubernetes` listing the address the server advertises. Pods reach the API server
//! through it (`KUBERNETES_SERVICE_HOST`, `kubernetes.default.svc`), as client-go's and
//! kube-rs' in-cluster configurations do.
//!
//! With other API servers on the same store (`Options::shared_store`), each keeps a lease
//! on its address in the store (`/registry/masterleases/<ip>`, renewed at every round,
//! good for `MASTER_LEASE_TTL`), and the endpoints list every address whose lease is
//! good, as kube-apiserver's `lease` endpoint reconciler does; an expired lease is
//! deleted by whoever sees it.
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

fn endpoints(addresses: &[IpAddr], port: u16) -> Value {
    let listed: Vec<Value> = addresses.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": listed,
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    })
}

fn endpoint_slice(addresses: &[IpAddr], port: u16) -> Value {
    let listed: Vec<Value> =
        addresses.iter().map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})).collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": if addresses.first().is_some_and(IpAddr::is_ipv6) { "IPv6" } else { "IPv4" },
        "endpoints": listed,
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    })
}

/// Where the API servers' leases on their addresses are kept (kube-apiserver's).
const MASTER_LEASES: &str = "/registry/masterleases/";
/// How long a lease is good for (kube-apiserver's `--endpoint-reconciler-type=lease`
/// TTL: 15 s, renewed every 10 s).
pub const MASTER_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(15);

/// Renews this server's lease on `address` and returns the addresses of every server
/// whose lease is good, in order; expired leases are deleted.
async fn live_servers(server: &ApiServer, address: IpAddr) -> Result<Vec<IpAddr>, ApiError> {
    let failed = |e: crate::store::StoreError| ApiError::internal(format!("the API servers' leases: {e}"));
    let now = server.options.clock.now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let key = format!("{MASTER_LEASES}{address}");
    let lease = bytes::Bytes::from(json!({"ip": address.to_string(), "renewed": now}).to_string());
    match server.store.update(&key, lease.clone(), None).await {
        Ok(_) => {}
        Err(crate::store::StoreError::NotFound(_)) => match server.store.create(&key, lease).await {
            Ok(_) | Err(crate::store::StoreError::Exists(_)) => {}
            Err(error) => return Err(failed(error)),
        },
        Err(error) => return Err(failed(error)),
    }
    let listing = server.store.list(MASTER_LEASES, None, None).await.map_err(failed)?;
    let mut live = Vec::new();
    for entry in listing.entries {
        let lease: Value = serde_json::from_slice(&entry.value).unwrap_or(Value::Null);
        let renewed = lease.get("renewed").and_then(Value::as_u64).unwrap_or(0);
        let ip = lease.get("ip").and_then(Value::as_str).and_then(|ip| ip.parse::<IpAddr>().ok());
        match ip {
            Some(ip) if renewed + MASTER_LEASE_TTL.as_secs() > now => live.push(ip),
            // Its server stopped renewing it (or it is not a lease): gone, as etcd's TTL
            // would have it; one renewed meanwhile stays (the delete is at its revision).
            _ => {
                let _ = server.store.delete(&entry.key, Some(entry.revision)).await;
            }
        }
    }
    live.sort();
    live.dedup();
    Ok(live)
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
    // The lease first, and whatever becomes of the rest: a server slow to write the
    // Service must not drop out of the others' endpoints.
    let servers = match advertise.filter(advertisable) {
        Some(address) if server.options.shared_store => Some((live_servers(server, address.ip()).await?, address)),
        Some(address) => Some((vec![address.ip()], address)),
        None => None,
    };
    put(server, "", "Service", service(cluster_ip, port), &["/spec/ports"]).await?;
    if let Some((addresses, address)) = servers {
        let port = address.port();
        put(server, "", "Endpoints", endpoints(&addresses, port), &["/subsets"]).await?;
        put(server, "discovery.k8s.io", "EndpointSlice", endpoint_slice(&addresses, port), &["/endpoints", "/ports"])
            .await?;
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
    // Read first: it is there at every round but the first, and a create of a Service
    // allocates (under the store's lock, with other API servers).
    let stored = match call(Method::GET, target(Some(NAME)), None).await {
        Ok((_, stored)) => stored,
        Err(error) if error.code == 404 => match call(Method::POST, target(None), Some(&object)).await {
            Ok(_) => return Ok(()),
            Err(error) if error.code == 409 => call(Method::GET, target(Some(NAME)), None).await?.1,
            Err(error) => return Err(error),
        },
        Err(error) => return Err(error),
    };
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
        let ip: IpAddr = "10.200.0.3".parse().unwrap();
        let slice = endpoint_slice(&[ip], 6443);
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(endpoints(&[ip], 6443)["subsets"][0]["ports"][0]["port"], 6443);
        assert_eq!(service("10.96.0.1".parse().unwrap(), 6443)["spec"]["ports"][0]["targetPort"], 6443);
    }

    /// Two API servers on one store: the endpoints list both while both renew their
    /// leases, and drop one once its lease expires.
    #[tokio::test]
    async fn servers_sharing_a_store_list_every_live_server() {
        use crate::store::memory::MemoryStore;
        use kubeyard_compiler::admission::Admission;
        use kubeyard_compiler::schema::CatalogOptions;
        let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::new());
        let clock = crate::clock::Clock::stopped();
        let server = |store: &Arc<dyn crate::store::Store>| {
            let options = super::super::Options { shared_store: true, clock: clock.clone(), ..Default::default() };
            ApiServer::new(Arc::clone(store), Admission::new(CatalogOptions::default()).unwrap(), options)
        };
        let (first, second) = (server(&store), server(&store));
        super::super::objects::ensure_namespace(&first, NAMESPACE).await.unwrap();
        let (a, b): (SocketAddr, SocketAddr) =
            ("10.200.0.3:6443".parse().unwrap(), "10.200.0.231:6443".parse().unwrap());
        let listed = |server: Arc<ApiServer>| async move {
            let key = resources::by_kind("", "Endpoints").unwrap().key(Some(NAMESPACE), NAME);
            let entry = server.store.get(&key).await.unwrap().unwrap();
            let object: Value = serde_json::from_slice(&entry.value).unwrap();
            let addresses = object.pointer("/subsets/0/addresses").and_then(Value::as_array).cloned().unwrap();
            addresses.iter().map(|a| a["ip"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        reconcile(&first, 6443, Some(a)).await.unwrap();
        assert_eq!(listed(Arc::clone(&first)).await, ["10.200.0.3"]);
        reconcile(&second, 6443, Some(b)).await.unwrap();
        assert_eq!(listed(Arc::clone(&first)).await, ["10.200.0.3", "10.200.0.231"]);
        // The second stops renewing: after the lease's time, the first's round drops it.
        clock.advance(MASTER_LEASE_TTL);
        reconcile(&first, 6443, Some(a)).await.unwrap();
        assert_eq!(listed(Arc::clone(&first)).await, ["10.200.0.3"]);
        assert_eq!(store.list(MASTER_LEASES, None, None).await.unwrap().entries.len(), 1);
    }
}
