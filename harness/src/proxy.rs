//! The service proxy of a node on a real network (kube-proxy's userspace mode): every
//! Service's NodePorts are listened on at the node's addresses, and its cluster IP is
//! added to the node's loopback and listened on, so a connection from the host to
//! `node:nodePort`, or from a pod on this node to `clusterIP:port`, is forwarded to one of
//! the Service's ready endpoints, picked at random. A LoadBalancer Service's ingress (the
//! nodes' own addresses) is listened on at its ports too, as k3s' ServiceLB does. Endpoints are read at each
//! connection, so a pod that stops being ready stops getting new connections at once.

use crate::informers::Informer;
use crate::kubelet::network;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Where a listener forwards: the Service (namespace, name) and the port's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Route {
    namespace: String,
    service: String,
    port_name: String,
    /// The target port, for a Service that selects nothing and names a number.
    target: Option<u16>,
}

/// What should be listened on, from the Services as they are.
fn routes(services: &[Arc<Service>]) -> BTreeMap<SocketAddr, Route> {
    let mut routes = BTreeMap::new();
    for service in services {
        let (Some(spec), Some(name)) = (service.spec.as_ref(), service.metadata.name.as_ref()) else { continue };
        let namespace = service.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip: Option<Ipv4Addr> = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else { continue };
            let target = match &port.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => u16::try_from(*n).ok(),
                None => Some(number),
                _ => None,
            };
            let route = Route {
                namespace: namespace.clone(),
                service: name.clone(),
                port_name: port.name.clone().unwrap_or_default(),
                target,
            };
            if let Some(ip) = cluster_ip {
                routes.insert(SocketAddr::new(IpAddr::V4(ip), number), route.clone());
            }
            // A LoadBalancer's ingress is the nodes' addresses (controllers/service_lb.rs):
            // this node answers on its own at the Service's port.
            let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()?.ingress.as_ref());
            for ip in ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()) {
                if spec.type_.as_deref() == Some("LoadBalancer") && network::holds(ip) {
                    routes.insert(SocketAddr::new(IpAddr::V4(ip), number), route.clone());
                }
            }
            if let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) {
                routes.insert(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), node_port), route);
            }
        }
    }
    routes
}

/// The ready addresses behind a Service's port, from its Endpoints.
fn backends(endpoints: Option<&Endpoints>, route: &Route) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for subset in endpoints.and_then(|e| e.subsets.as_ref()).into_iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let port = match ports {
            [only] if route.port_name.is_empty() => u16::try_from(only.port).ok(),
            _ => ports
                .iter()
                .find(|p| p.name.as_deref().unwrap_or_default() == route.port_name)
                .and_then(|p| u16::try_from(p.port).ok()),
        };
        let Some(port) = port.or(route.target) else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                found.push(SocketAddr::new(ip, port));
            }
        }
    }
    found
}

async fn forward(mut inbound: tokio::net::TcpStream, route: Route, endpoints: Informer<Endpoints>) {
    let mut candidates = backends(endpoints.get(&route.namespace, &route.service).as_deref(), &route);
    fastrand::shuffle(&mut candidates);
    // As kube-proxy's userspace mode: try the next endpoint when one refuses.
    for backend in candidates {
        let connect = tokio::net::TcpStream::connect(backend);
        if let Ok(Ok(mut outbound)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            return;
        }
    }
}

/// The route of every address listened on. A listener reads its route at each
/// connection, so a Service whose port changes keeps its listener (rebinding the same
/// address would race the old socket's close).
type Routes = Arc<RwLock<HashMap<SocketAddr, Route>>>;

async fn listen(address: SocketAddr, routes: Routes, endpoints: Informer<Endpoints>) {
    // An address given up a moment ago (a Service deleted and made again) may still be
    // held by the aborted listener's socket for a little while.
    let mut attempts = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => break listener,
            Err(_) if attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
            }
            Err(error) => {
                eprintln!("kubeyard proxy: cannot listen on {address}: {error}");
                return;
            }
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Some(route) = routes.read().ok().and_then(|r| r.get(&address).cloned()) else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(forward(stream, route, endpoints.clone()));
            }
            // Out of file descriptors and the like: back off rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Listeners running, by address, with the routes they serve.
struct Listening {
    tasks: HashMap<SocketAddr, JoinHandle<()>>,
    routes: Routes,
}

impl Listening {
    /// Brings the listeners and the loopback's cluster IPs to what the Services ask.
    fn reconcile(&mut self, wanted: BTreeMap<SocketAddr, Route>, endpoints: &Informer<Endpoints>) {
        let loopback = network::loopback();
        self.tasks.retain(|address, task| {
            let keep = wanted.contains_key(address);
            if !keep {
                task.abort();
                if let (IpAddr::V4(ip), Some(index)) = (address.ip(), loopback)
                    && !ip.is_unspecified()
                    && !wanted.keys().any(|a| a.ip() == address.ip())
                {
                    let _ = network::remove(index, ip, 32);
                }
            }
            keep
        });
        if let Ok(mut routes) = self.routes.write() {
            *routes = wanted.iter().map(|(address, route)| (*address, route.clone())).collect();
        }
        for address in wanted.into_keys() {
            if self.tasks.contains_key(&address) {
                continue;
            }
            if let (IpAddr::V4(ip), Some(index)) = (address.ip(), loopback)
                && !ip.is_unspecified()
                && !network::holds(ip)
                && let Err(error) = network::add(index, ip, 32)
            {
                eprintln!("kubeyard proxy: cannot add cluster IP {ip}: {error}");
                continue;
            }
            let task = tokio::spawn(listen(address, self.routes.clone(), endpoints.clone()));
            self.tasks.insert(address, task);
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

/// Runs the proxy until the task is dropped.
pub async fn run(services: Informer<Service>, endpoints: Informer<Endpoints>) {
    tokio::join!(services.synced(), endpoints.synced());
    let mut listening = Listening { tasks: HashMap::new(), routes: Routes::default() };
    let changes = services.subscribe();
    futures_util::pin_mut!(changes);
    loop {
        listening.reconcile(routes(&services.all()), &endpoints);
        if changes.next().await.is_none() {
            return;
        }
        // A burst of changes (a whole manifest applied) is one reconcile.
        while let Some(Some(_)) = futures_util::FutureExt::now_or_never(changes.next()) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn cluster_ips_and_node_ports_are_listened_on() {
        let services = vec![
            service(json!({"metadata": {"name": "web", "namespace": "shop"},
                           "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                                    "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                                              {"name": "dns", "port": 53, "protocol": "UDP"}]}})),
            service(json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}})),
            service(
                json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "x.example"}}),
            ),
        ];
        let routes = routes(&services);
        let addresses: Vec<String> = routes.keys().map(ToString::to_string).collect();
        assert_eq!(addresses, ["0.0.0.0:30080", "10.96.0.10:80"]);
        assert_eq!(routes.values().next().unwrap().port_name, "http");
    }

    #[test]
    fn backends_are_the_ready_addresses_of_the_named_port() {
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.200.1.2"}, {"ip": "10.200.2.2"}],
                         "notReadyAddresses": [{"ip": "10.200.3.2"}],
                         "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9000}]}]
        }))
        .unwrap();
        let route =
            Route { namespace: "default".into(), service: "web".into(), port_name: "http".into(), target: None };
        let found: Vec<String> = backends(Some(&endpoints), &route).iter().map(ToString::to_string).collect();
        assert_eq!(found, ["10.200.1.2:8080", "10.200.2.2:8080"]);
        assert!(backends(None, &route).is_empty());
    }
}
