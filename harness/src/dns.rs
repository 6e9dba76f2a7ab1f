//! Cluster DNS on each node of a real network: `<service>.<namespace>.svc.cluster.local`
//! (and `<service>.<namespace>.svc`, `<service>.<namespace>` through the search list)
//! answers the Service's cluster IP, or its ready endpoints' addresses when it is
//! headless; a name in `cluster.local` that names nothing is NXDOMAIN. The node
//! container's resolver (Docker's) asks here for every name it does not know itself.
//! Only A queries get addresses; AAAA and the rest get an empty answer, as for a cluster
//! without IPv6.

use crate::informers::Informer;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use std::net::{Ipv4Addr, SocketAddr};

const DOMAIN: &str = "cluster.local";
/// How long a resolver may keep an answer: short, as CoreDNS's default 30 s, shorter still
/// so a test sees a new Service at once.
const TTL: u32 = 5;

/// A question: the name (lower case, no trailing dot) and its type.
#[derive(Debug, PartialEq, Eq)]
struct Question {
    name: String,
    kind: u16,
    /// Where the question ends in the packet (the answer copies up to here).
    end: usize,
}

fn question(packet: &[u8]) -> Option<Question> {
    // Header: id, flags, then one question and nothing else. A packet with QR set is a
    // response, never a question: answering it could start a loop between two servers.
    if packet.len() < 12 || packet[2] & 0x80 != 0 || u16::from_be_bytes([packet[4], packet[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let length = *packet.get(at)? as usize;
        at += 1;
        if length == 0 {
            break;
        }
        // Compression pointers never appear in a question; anything else over 63 is malformed.
        if length > 63 {
            return None;
        }
        let label = packet.get(at..at + length)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += length;
    }
    let kind = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    // The class follows the type: the answer echoes both, so both must be there.
    packet.get(at + 2..at + 4)?;
    Some(Question { name: labels.join("."), kind, end: at + 4 })
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

/// The answer to a query: the question echoed, then the records.
fn answer(packet: &[u8], question: &Question, addresses: Option<&[Ipv4Addr]>) -> Vec<u8> {
    let mut reply = packet[..question.end].to_vec();
    // Response, authoritative, recursion desired copied, recursion available.
    let recursion_desired = packet[2] & 0x01;
    reply[2] = 0x84 | recursion_desired;
    let (code, records): (u8, &[Ipv4Addr]) = match addresses {
        None => (3, &[]),
        Some(addresses) if question.kind == 1 => (0, addresses),
        Some(_) => (0, &[]),
    };
    reply[3] = 0x80 | code;
    reply[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    reply[8..12].copy_from_slice(&[0, 0, 0, 0]);
    for address in records {
        // Name: a pointer to the question's (offset 12), type A, class IN, TTL, 4 bytes.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        reply.extend_from_slice(&TTL.to_be_bytes());
        reply.extend_from_slice(&[0, 4]);
        reply.extend_from_slice(&address.octets());
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
        let packet = &buffer[..length];
        let Some(question) = question(packet) else { continue };
        let addresses = resolve(&question.name, &services, &endpoints);
        // Not the cluster's name: refuse, so the resolver asks elsewhere.
        let reply = match (&addresses, question.name.ends_with(DOMAIN)) {
            (None, false) => {
                let mut reply = packet[..question.end].to_vec();
                reply[2] = 0x80 | (packet[2] & 0x01);
                reply[3] = 0x80 | 5;
                reply[6..12].copy_from_slice(&[0; 6]);
                reply
            }
            _ => answer(packet, &question, addresses.as_deref()),
        };
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

    #[test]
    fn questions_are_read_and_answers_laid_out() {
        let packet = query("Web.Shop.svc.cluster.local", 1);
        let asked = question(&packet).unwrap();
        assert_eq!((asked.name.as_str(), asked.kind, asked.end), ("web.shop.svc.cluster.local", 1, packet.len()));
        let reply = answer(&packet, &asked, Some(&[Ipv4Addr::new(10, 96, 0, 10)]));
        assert_eq!(&reply[..2], &[0x12, 0x34], "the id is kept");
        assert_eq!(reply[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&reply[6..8], &[0, 1], "one answer");
        assert_eq!(&reply[reply.len() - 4..], &[10, 96, 0, 10]);
        let missing = answer(&packet, &asked, None);
        assert_eq!(missing[3] & 0x0f, 3, "NXDOMAIN");
        let aaaa = query("web.shop.svc.cluster.local", 28);
        let ipv6 = answer(&aaaa, &question(&aaaa).unwrap(), Some(&[Ipv4Addr::LOCALHOST]));
        assert_eq!(&ipv6[6..8], &[0, 0], "no AAAA records");
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
    }
}
