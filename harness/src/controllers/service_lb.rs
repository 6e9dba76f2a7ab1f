//! The load-balancer controller: what a cloud's service controller does for a
//! `type: LoadBalancer` Service, done the way k3s' ServiceLB and k3d do it on machines
//! without a cloud. The Service's load balancer is its nodes: `status.loadBalancer.ingress`
//! lists the InternalIP of every Ready node (so `EXTERNAL-IP` is not `<pending>` for
//! ever), and each node's service proxy answers on those addresses at the Service's ports,
//! spreading connections over the ready endpoints (in container clusters they answer from
//! the host; in process they are recorded for tests to read). A port another
//! LoadBalancer Service holds already leaves the later one pending, with a
//! `SyncLoadBalancerFailed` event, as ServiceLB leaves it. A Service that stops being a
//! LoadBalancer loses its ingress (the API server clears it).
//!
//! `decide` is the pure part: from the Service, the ready nodes and the other
//! LoadBalancer Services, the ingress it should have.

use super::{Error, Wiring, patch_status};
use crate::clock::Clock;
use crate::events::{self, Source, Type};
use crate::informers::{Informer, Informers};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use std::sync::Arc;

const COMPONENT: &str = "service-controller";

struct Context {
    client: kube::Client,
    clock: Clock,
    nodes: Informer<Node>,
    services: Informer<Service>,
}

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, informers: &Informers, clock: &Clock) {
    // A node that comes or goes, or turns ready, changes every load balancer; a Service
    // that goes, or changes its ports or type, may free a port another waits for.
    let (services, others) = (informers.services.clone(), informers.services.clone());
    let every_balancer = move |_: Arc<Node>| balancers(&services);
    let other_balancers = move |_: Arc<Service>| balancers(&others);
    let wiring = Wiring::of(&informers.services)
        .watches(&informers.nodes, every_balancer)
        .watches(&informers.services, other_balancers);
    let context = Arc::new(Context {
        client,
        clock: clock.clone(),
        nodes: informers.nodes.clone(),
        services: informers.services.clone(),
    });
    wiring.run(reconcile, context).await;
}

/// Every LoadBalancer Service, to look at again.
fn balancers(services: &Informer<Service>) -> Vec<ObjectRef<Service>> {
    services.all().into_iter().filter(|s| is_balancer(s)).map(|s| ObjectRef::from_obj(s.as_ref())).collect()
}

fn is_balancer(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

fn ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    conditions.into_iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn internal_ip(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone())
}

/// The (protocol, port) pairs a Service listens on.
fn ports(service: &Service) -> Vec<(String, i32)> {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten();
    ports.map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port)).collect()
}

/// The ingress the Service should have, or the Service that holds one of its ports.
fn decide(service: &Service, nodes: &[Arc<Node>], others: &[Arc<Service>]) -> Result<Vec<Value>, String> {
    let key = |s: &Service| (s.namespace().unwrap_or_default(), s.name_any());
    let created = |s: &Service| (s.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()), key(s));
    let wanted = ports(service);
    // The Service that holds a port keeps it; of two that hold it or neither does, the
    // older (then the first by name), as the first to ask got it.
    let holds = |s: &Service| {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .is_some_and(|i| !i.is_empty())
    };
    for other in others.iter().filter(|o| is_balancer(o) && key(o) != key(service)) {
        let first = match (holds(other), holds(service)) {
            (true, false) => true,
            (false, true) => false,
            _ => created(other) < created(service),
        };
        if first && let Some((protocol, port)) = ports(other).into_iter().find(|p| wanted.contains(p)) {
            let (namespace, name) = key(other);
            return Err(format!(
                "{protocol} port {port} is already used by the LoadBalancer Service {namespace}/{name}"
            ));
        }
    }
    let mut addresses: Vec<String> = nodes.iter().filter(|n| ready(n)).filter_map(|n| internal_ip(n)).collect();
    addresses.sort_by_key(|a| a.parse::<std::net::IpAddr>().ok());
    addresses.dedup();
    Ok(addresses.into_iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect())
}

async fn reconcile(service: Arc<Service>, context: Arc<Context>) -> Result<Action, Error> {
    if !is_balancer(&service) || service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = service.namespace().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(context.client.clone(), &namespace);
    let object = json!({"apiVersion": "v1", "kind": "Service", "metadata": service.metadata});
    let source = Source { component: COMPONENT, host: None };
    let now = context.clock.timestamp();
    let current = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.clone());
    let current = serde_json::to_value(current.unwrap_or_default()).unwrap_or_else(|_| json!([]));
    match decide(&service, &context.nodes.all(), &context.services.all()) {
        Ok(ingress) if Value::Array(ingress.clone()) == current => {}
        Ok(ingress) => {
            let ensuring = (Type::Normal, "EnsuringLoadBalancer", "Ensuring load balancer");
            events::record(&context.client, &object, source, ensuring.0, ensuring.1, ensuring.2, &now).await;
            patch_status(&api, service.as_ref(), json!({"loadBalancer": {"ingress": ingress}})).await?;
            let ensured = (Type::Normal, "EnsuredLoadBalancer", "Ensured load balancer");
            events::record(&context.client, &object, source, ensured.0, ensured.1, ensured.2, &now).await;
        }
        Err(why) => {
            if current.as_array().is_some_and(|c| !c.is_empty()) {
                patch_status(&api, service.as_ref(), json!({"loadBalancer": {"ingress": []}})).await?;
            }
            let message = format!("Error syncing load balancer: failed to ensure load balancer: {why}");
            events::record(&context.client, &object, source, Type::Warning, "SyncLoadBalancerFailed", &message, &now)
                .await;
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: bool) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    fn service(name: &str, created: &str, port: i32) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
                "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_balancer_is_every_ready_node_and_the_first_to_ask_keeps_its_port() {
        let nodes =
            [node("node-2", "10.0.0.10", true), node("node-1", "10.0.0.9", true), node("node-3", "10.0.0.11", false)];
        let web = service("web", "2026-01-01T00:00:00Z", 80);
        let ingress = decide(&web, &nodes, std::slice::from_ref(&web)).unwrap();
        assert_eq!(
            ingress,
            vec![json!({"ip": "10.0.0.9", "ipMode": "VIP"}), json!({"ip": "10.0.0.10", "ipMode": "VIP"})],
            "ready nodes only, in address order"
        );
        let later = service("api", "2026-01-01T00:01:00Z", 80);
        let all = [Arc::clone(&web), Arc::clone(&later)];
        assert_eq!(
            decide(&later, &nodes, &all).unwrap_err(),
            "TCP port 80 is already used by the LoadBalancer Service shop/web"
        );
        assert!(decide(&web, &nodes, &all).is_ok(), "the first keeps it");
        let other_port = service("admin", "2026-01-01T00:02:00Z", 8080);
        assert!(decide(&other_port, &nodes, &all).is_ok());
    }
}
