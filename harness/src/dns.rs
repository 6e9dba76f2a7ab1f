//! Cluster DNS on each node of a real network: `<service>.<namespace>.svc.cluster.local`
//! (and `<service>.<namespace>.svc`, `<service>.<namespace>` through the search list)
//! answers the Service's cluster IP, or its ready endpoints' addresses when it is
//! headless; a name in `cluster.local` that names nothing is NXDOMAIN. The node
//! container's resolver (Docker's) asks here for every name it does not know itself.
//! Only A queries get addresses; AAAA and the rest get an empty answer, as for a cluster
//! without IPv6.

use crate::informers::Informer;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use std::net::{Ipv4Addr, SocketAddr};

const DOMAIN: &str = "cluster.local";
/// How long a resolver may keep an answer: short, as CoreDNS's default 30 s, shorter still
/// so a test sees a new Service at once.
const TTL: u32 = 5;

/// The one question of a query, and its name (lower case, no trailing dot). A message
/// that is a response is never a question (answering it could start a loop between two
/// servers), nor is one with no question or several.
fn question(packet: &[u8]) -> Option<(Message, String)> {
    let message = Message::from_vec(packet).ok()?;
    if message.message_type() != MessageType::Query || message.queries().len() != 1 {
        return None;
    }
    let name = message.queries()[0].name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    Some((message, name))
}

/// What a name resolves to in the cluster: `None` when no Service has it (NXDOMAIN for a
/// name in `cluster.local`; any other name is not the cluster's to say).
fn resolve(name: &str, services: &Informer<Service>, endpoints: &Informer<Endpoints>) -> Option<Vec<Ipv4Addr>> {
    let local = name.strip_suffix(DOMAIN).map(|n| n.trim_end_matches('.'));
    let Some(local) = local else {
        // `web.shop.svc` and `web.shop`: the forms the search list makes of short names.
        let short = name.strip_suffix(".svc").unwrap_or(name);
        let parts: Vec<&str> = short.split('.').collect();
        return match parts.as_slice() {
            [service, namespace] => lookup(service, namespace, services, endpoints),
            _ => None,
        };
    };
    let parts: Vec<&str> = local.split('.').collect();
    match parts.as_slice() {
        [service, namespace, "svc"] => lookup(service, namespace, services, endpoints),
        _ => None,
    }
}

fn lookup(
    service: &str,
    namespace: &str,
    services: &Informer<Service>,
    endpoints: &Informer<Endpoints>,
) -> Option<Vec<Ipv4Addr>> {
    let found = services.get(namespace, service)?;
    let cluster_ip = found.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("None");
    if let Ok(ip) = cluster_ip.parse::<Ipv4Addr>() {
        return Some(vec![ip]);
    }
    // Headless: the ready pods themselves.
    let endpoints = endpoints.get(namespace, service);
    Some(
        endpoints
            .iter()
            .flat_map(|e| e.subsets.iter().flatten())
            .flat_map(|s| s.addresses.iter().flatten())
            .filter_map(|a| a.ip.parse().ok())
            .collect(),
    )
}

/// The answer to a query: the question echoed, then the records. `None` addresses: the
/// name is not the cluster's (REFUSED, so the resolver asks elsewhere) or, in
/// `cluster.local`, names nothing (NXDOMAIN). Only A queries get addresses.
fn answer(query: &Message, name: &str, addresses: Option<&[Ipv4Addr]>) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true);
    let question: &Query = &query.queries()[0];
    reply.add_query(question.clone());
    match addresses {
        None if !name.ends_with(DOMAIN) => {
            reply.set_response_code(ResponseCode::Refused);
        }
        None => {
            reply.set_authoritative(true).set_response_code(ResponseCode::NXDomain);
        }
        Some(addresses) => {
            reply.set_authoritative(true).set_response_code(ResponseCode::NoError);
            if question.query_type() == RecordType::A {
                for address in addresses {
                    reply.add_answer(Record::from_rdata(question.name().clone(), TTL, RData::A(A(*address))));
                }
            }
        }
    }
    reply
}

/// Serves DNS over UDP at `address` until the task is dropped.
pub async fn serve(
    address: SocketAddr,
    services: Informer<Service>,
    endpoints: Informer<Endpoints>,
) -> std::io::Result<()> {
    let socket = tokio::net::UdpSocket::bind(address).await?;
    let mut buffer = [0u8; 512];
    loop {
        let Ok((length, peer)) = socket.recv_from(&mut buffer).await else { continue };
        let Some((query, name)) = question(&buffer[..length]) else { continue };
        let addresses = resolve(&name, &services, &endpoints);
        let Ok(reply) = answer(&query, &name, addresses.as_deref()).to_vec() else { continue };
        let _ = socket.send_to(&reply, peer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name`, of type `kind`, as a resolver sends it.
    fn query(name: &str, kind: u16) -> Vec<u8> {
        let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            packet.push(label.len() as u8);
            packet.extend_from_slice(label.as_bytes());
        }
        packet.extend_from_slice(&[0, 0, kind as u8, 0, 1]);
        packet
    }

    fn reply(packet: &[u8], addresses: Option<&[Ipv4Addr]>) -> Message {
        let (query, name) = question(packet).expect("a question");
        let wire = answer(&query, &name, addresses).to_vec().unwrap();
        Message::from_vec(&wire).unwrap()
    }

    #[test]
    fn questions_are_read_and_answers_laid_out() {
        let packet = query("Web.Shop.svc.cluster.local", 1);
        assert_eq!(question(&packet).unwrap().1, "web.shop.svc.cluster.local");
        let found = reply(&packet, Some(&[Ipv4Addr::new(10, 96, 0, 10)]));
        assert_eq!(found.id(), 0x1234, "the id is kept");
        assert_eq!(found.response_code(), ResponseCode::NoError);
        assert!(found.authoritative() && found.recursion_available() && found.recursion_desired());
        assert_eq!(found.queries().len(), 1, "the question is echoed");
        assert_eq!(found.answers().len(), 1);
        assert_eq!(found.answers()[0].data(), &RData::A(A(Ipv4Addr::new(10, 96, 0, 10))));
        assert_eq!(found.answers()[0].ttl(), TTL);
        assert_eq!(reply(&packet, None).response_code(), ResponseCode::NXDomain);
        let aaaa = query("web.shop.svc.cluster.local", 28);
        let ipv6 = reply(&aaaa, Some(&[Ipv4Addr::LOCALHOST]));
        assert_eq!((ipv6.response_code(), ipv6.answers().len()), (ResponseCode::NoError, 0), "no AAAA records");
        let elsewhere = reply(&query("example.com", 1), None);
        assert_eq!(elsewhere.response_code(), ResponseCode::Refused);
        assert!(!elsewhere.authoritative());
    }

    #[test]
    fn malformed_packets_are_ignored() {
        assert!(question(&[0; 5]).is_none());
        let mut packet = query("a.b", 1);
        packet[12] = 200;
        assert!(question(&packet).is_none());
        let truncated = &query("web.shop", 1)[..15];
        assert!(question(truncated).is_none());
        let whole = query("web.shop", 1);
        let classless = &whole[..whole.len() - 2];
        assert!(question(classless).is_none(), "a question without its class is not answered");
        let mut response = query("web.shop", 1);
        response[2] |= 0x80;
        assert!(question(&response).is_none(), "responses are not questions");
        let mut two = query("web.shop", 1);
        two[5] = 2;
        assert!(question(&two).is_none(), "a query of two questions is not one this server reads");
    }
}
