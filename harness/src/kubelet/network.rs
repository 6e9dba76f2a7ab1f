//! Addresses on a real node's interfaces, through rtnetlink: each pod's IP is added to the
//! interface that holds the node's address (so the cluster network's bridge reaches the
//! pod by ARP, with no overlay), and each Service's cluster IP to the loopback (so the
//! node's proxy can listen on it). Needs CAP_NET_ADMIN: the node containers get it.
//!
//! The messages are netlink-packet-route's and the socket netlink-sys's: nothing here
//! lays out bytes or calls the C library itself.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// The index of the interface holding `address`, if any does.
pub fn interface_holding(address: Ipv4Addr) -> Option<u32> {
    addresses().ok()?.into_iter().find(|(_, a)| *a == address).map(|(index, _)| index)
}

/// The loopback interface's index.
pub fn loopback() -> Option<u32> {
    interface_holding(Ipv4Addr::LOCALHOST)
}

/// Whether some interface holds `address`.
pub fn holds(address: Ipv4Addr) -> bool {
    interface_holding(address).is_some()
}

/// Adds `address/prefix` to interface `index` (replacing it if it is there).
pub fn add(index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let message = RouteNetlinkMessage::NewAddress(address_message(index, address, prefix));
    exchange(message, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, |_| {})
}

/// Removes `address/prefix` from interface `index`; one that is not there is no error.
pub fn remove(index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let message = RouteNetlinkMessage::DelAddress(address_message(index, address, prefix));
    match exchange(message, NLM_F_REQUEST | NLM_F_ACK, |_| {}) {
        Err(error) if matches!(error.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV)) => Ok(()),
        other => other,
    }
}

/// Routes `destination/prefix` through `gateway` (`ip route replace`): a pod's sandbox
/// sends Service cluster IPs to its node, whose proxy answers for them.
pub fn add_route(destination: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> io::Result<()> {
    let message = RouteNetlinkMessage::NewRoute(route_message(destination, prefix, gateway));
    exchange(message, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, |_| {})
}

fn route_message(destination: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = prefix;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
    message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    message
}

/// Every IPv4 address of every interface, with the interface's index (`ip -4 addr`).
fn addresses() -> io::Result<Vec<(u32, Ipv4Addr)>> {
    let mut request = AddressMessage::default();
    request.header.family = AddressFamily::Inet;
    let mut found = Vec::new();
    exchange(RouteNetlinkMessage::GetAddress(request), NLM_F_REQUEST | NLM_F_DUMP, |answer| {
        if let RouteNetlinkMessage::NewAddress(message) = answer {
            // `IFA_LOCAL` is the interface's own address (`IFA_ADDRESS` the peer's on
            // point-to-point links); without it, the two are one.
            let local = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address) {
                found.push((message.header.index, ip));
            }
        }
    })?;
    Ok(found)
}

/// An address message for `address/prefix` on interface `index`, the kernel's way: the
/// address as both local and peer, host scope on the loopback.
fn address_message(index: u32, address: Ipv4Addr, prefix: u8) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix;
    message.header.index = index;
    message.header.scope = if address.is_loopback() { AddressScope::Host } else { AddressScope::Universe };
    message.attributes.push(AddressAttribute::Local(IpAddr::V4(address)));
    message.attributes.push(AddressAttribute::Address(IpAddr::V4(address)));
    message
}

/// The request as bytes on the wire.
fn encode(message: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    bytes
}

/// Sends one request and reads the kernel's answers until its acknowledgement (or the
/// end of a dump), handing each message of the answer to `each`.
fn exchange(message: RouteNetlinkMessage, flags: u16, mut each: impl FnMut(RouteNetlinkMessage)) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(&encode(message, flags), 0)?;
    let mut buffer = Vec::with_capacity(64 * 1024);
    loop {
        buffer.clear();
        let size = socket.recv(&mut buffer, 0)?.min(buffer.len());
        let mut offset = 0;
        while offset < size {
            let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer[offset..size])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {e}")))?;
            let length = answer.header.length as usize;
            match answer.payload {
                NetlinkPayload::Error(error) => {
                    // A code of zero is the acknowledgement.
                    return if error.code.is_none() { Ok(()) } else { Err(error.to_io()) };
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::InnerMessage(inner) => each(inner),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_laid_out_as_the_kernel_reads_it() {
        let message = RouteNetlinkMessage::NewAddress(address_message(7, Ipv4Addr::new(10, 200, 1, 2), 32));
        let bytes = encode(message, NLM_F_REQUEST | NLM_F_ACK);
        // nlmsghdr (16), ifaddrmsg (8), two 8-byte IPv4 attributes.
        assert_eq!(bytes.len(), 40);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(bytes[4..6].try_into().unwrap()), 20); // RTM_NEWADDR
        assert_eq!(&bytes[16..20], &[libc::AF_INET as u8, 32, 0, 0]);
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 7);
        assert_eq!(&bytes[28..32], &[10, 200, 1, 2]);
        assert_eq!(&bytes[36..40], &[10, 200, 1, 2]);
        let loopback = encode(
            RouteNetlinkMessage::DelAddress(address_message(1, Ipv4Addr::new(10, 96, 0, 10), 32)),
            NLM_F_REQUEST,
        );
        assert_eq!(u16::from_ne_bytes(loopback[4..6].try_into().unwrap()), 21); // RTM_DELADDR
    }

    #[test]
    fn a_route_is_laid_out_as_the_kernel_reads_it() {
        let message = RouteNetlinkMessage::NewRoute(route_message(
            Ipv4Addr::new(10, 96, 0, 0),
            12,
            Ipv4Addr::new(10, 200, 0, 11),
        ));
        let bytes = encode(message, NLM_F_REQUEST | NLM_F_ACK);
        // nlmsghdr (16), rtmsg (12), destination and gateway attributes (8 each).
        assert_eq!(bytes.len(), 44);
        assert_eq!(u16::from_ne_bytes(bytes[4..6].try_into().unwrap()), 24); // RTM_NEWROUTE
        assert_eq!(&bytes[16..20], &[libc::AF_INET as u8, 12, 0, 0]);
        assert_eq!(bytes[20], 254, "the main table");
        assert_eq!(&bytes[32..36], &[10, 96, 0, 0]);
        assert_eq!(&bytes[40..44], &[10, 200, 0, 11]);
    }

    #[test]
    fn the_loopback_is_found() {
        assert!(loopback().is_some());
        assert!(holds(Ipv4Addr::LOCALHOST));
        assert!(!holds(Ipv4Addr::new(192, 0, 2, 77)));
    }
}
