//! Addresses on a real node's interfaces, through rtnetlink: each pod's IP is added to the
//! interface that holds the node's address (so the cluster network's bridge reaches the
//! pod by ARP, with no overlay), and each Service's cluster IP to the loopback (so the
//! node's proxy can listen on it). Needs CAP_NET_ADMIN: the node containers get it.

use std::io;
use std::net::Ipv4Addr;

/// The index of the interface holding `address`, if any does.
pub fn interface_holding(address: Ipv4Addr) -> Option<u32> {
    interfaces().into_iter().find(|(_, a)| *a == address).map(|(index, _)| index)
}

/// The loopback interface's index.
pub fn loopback() -> Option<u32> {
    interface_holding(Ipv4Addr::LOCALHOST)
}

/// Whether some interface holds `address`.
pub fn holds(address: Ipv4Addr) -> bool {
    interface_holding(address).is_some()
}

/// Every IPv4 address of every interface, with the interface's index.
fn interfaces() -> Vec<(u32, Ipv4Addr)> {
    let mut found = Vec::new();
    // SAFETY: getifaddrs fills a list we only read and then free; every pointer is checked.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let ifa = &*entry;
            if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                let address = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr));
                let index = libc::if_nametoindex(ifa.ifa_name);
                if index != 0 {
                    found.push((index, ip));
                }
            }
            entry = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// One RTM_NEWADDR or RTM_DELADDR request for `address/prefix` on interface `index`.
fn message(kind: u16, flags: u16, index: u32, address: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut body = Vec::with_capacity(40);
    // struct ifaddrmsg: family, prefix length, flags, scope (universe; host on loopback).
    let scope = if address.is_loopback() { 254 } else { 0 };
    body.extend_from_slice(&[libc::AF_INET as u8, prefix, 0, scope]);
    body.extend_from_slice(&index.to_ne_bytes());
    for attribute in [IFA_LOCAL, IFA_ADDRESS] {
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&attribute.to_ne_bytes());
        body.extend_from_slice(&address.octets());
    }
    let mut message = Vec::with_capacity(16 + body.len());
    message.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's to fill
    message.extend(body);
    message
}

/// Sends one request and reads the kernel's acknowledgement.
fn request(message: &[u8]) -> io::Result<()> {
    // SAFETY: a socket we own, closed on every path; buffers sized by their Vec.
    unsafe {
        let socket = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        if socket < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            let sent = libc::sendto(
                socket,
                message.as_ptr().cast(),
                message.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            );
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut reply = vec![0u8; 4096];
            let read = libc::recv(socket, reply.as_mut_ptr().cast(), reply.len(), 0);
            if read < 0 {
                return Err(io::Error::last_os_error());
            }
            let reply = &reply[..read as usize];
            // nlmsghdr, then for NLMSG_ERROR an i32: 0 is the acknowledgement, else -errno.
            let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
            let code = reply.get(16..20).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            match (kind, code) {
                (Some(NLMSG_ERROR), Some(0)) => Ok(()),
                (Some(NLMSG_ERROR), Some(code)) => Err(io::Error::from_raw_os_error(-code)),
                _ => Err(io::Error::other("netlink: an answer that is not an acknowledgement")),
            }
        })();
        libc::close(socket);
        result
    }
}

/// Adds `address/prefix` to interface `index` (replacing it if it is there).
pub fn add(index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
    request(&message(RTM_NEWADDR, flags, index, address, prefix))
}

/// Removes `address/prefix` from interface `index`; one that is not there is no error.
pub fn remove(index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    match request(&message(RTM_DELADDR, flags, index, address, prefix)) {
        Err(error) if matches!(error.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV)) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_laid_out_as_the_kernel_reads_it() {
        let bytes = message(RTM_NEWADDR, 5, 7, Ipv4Addr::new(10, 200, 1, 2), 32);
        assert_eq!(bytes.len(), 40);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(bytes[4..6].try_into().unwrap()), RTM_NEWADDR);
        assert_eq!(&bytes[16..20], &[libc::AF_INET as u8, 32, 0, 0]);
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 7);
        assert_eq!(&bytes[28..32], &[10, 200, 1, 2]);
        assert_eq!(&bytes[36..40], &[10, 200, 1, 2]);
    }

    #[test]
    fn the_loopback_is_found() {
        assert!(loopback().is_some());
        assert!(holds(Ipv4Addr::LOCALHOST));
        assert!(!holds(Ipv4Addr::new(192, 0, 2, 77)));
    }
}
