//! Jails with their own address: the rtnetlink messages ljspawn sends (built here, by pure
//! code, unit-tested) and the two places it sends them from.
//!
//! - `bridge:BR`: ljspawn (root, in the host's network namespace) creates a veth pair whose host
//!   end `lj<PID>` is enslaved to BR and up, and whose other end is created directly inside the
//!   jail's network namespace as `eth0`.
//! - `macvlan:IFACE` (lightjail's `-i IP -f IFACE`): a macvlan (bridge mode) on IFACE, created
//!   directly inside the jail's namespace as `eth0`.
//!
//! The jail's PID 1 then gives `eth0` its IPv4 address, brings it up, adds the default route,
//! and lets every group use ICMP echo sockets (`ping` without CAP_NET_RAW, as Docker does).
//! Both links go away with the jail's network namespace, which the kernel destroys when the
//! jail's last process is gone, asynchronously (a few milliseconds after ljspawn returns).
//! Deleting the host end of a veth pair by hand would make ljspawn wait about 25 ms for the
//! kernel to unregister the device, ten times the cost of the whole jail.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use crate::sys;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_MACVLAN_MODE: u16 = 1;
const MACVLAN_MODE_BRIDGE: u32 = 4;
const IFA_LOCAL: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RTA_OIF: u16 = 4;
const IFF_UP: u32 = 1;
const NLA_F_NESTED: u16 = 0x8000;

/// An rtnetlink request under construction: header, fixed part, then attributes.
#[derive(Debug)]
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16) -> Msg {
        let mut v = Vec::with_capacity(256);
        v.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        v.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
        v.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Msg(v)
    }

    /// `struct ifinfomsg`: family, type, index, flags, change.
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) -> &mut Self {
        self.0.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.0.extend_from_slice(&index.to_ne_bytes());
        self.0.extend_from_slice(&flags.to_ne_bytes());
        self.0.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.attr(kind, &b)
    }

    /// Opens a nested attribute; returns its offset for `end`.
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&0u16.to_ne_bytes());
        self.0.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) -> &mut Self {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// A veth pair: `host` (in this namespace, enslaved to the bridge `master`, up) and `eth0`
/// created directly in the network namespace of process `pid`.
pub fn veth_msg(host: &str, master: u32, pid: i32) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.ifinfo(0, IFF_UP, IFF_UP).attr_str(IFLA_IFNAME, host).attr_u32(IFLA_MASTER, master);
    let info = m.begin(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "veth");
    let data = m.begin(IFLA_INFO_DATA);
    let peer = m.begin(VETH_INFO_PEER);
    m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, "eth0").attr_u32(IFLA_NET_NS_PID, pid as u32);
    m.end(peer).end(data).end(info);
    m.finish()
}

/// A macvlan in bridge mode on the interface `parent`, created as `eth0` in the network
/// namespace of process `pid`.
pub fn macvlan_msg(parent: u32, pid: i32) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.ifinfo(0, 0, 0)
        .attr_str(IFLA_IFNAME, "eth0")
        .attr_u32(IFLA_LINK, parent)
        .attr_u32(IFLA_NET_NS_PID, pid as u32);
    let info = m.begin(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "macvlan");
    let data = m.begin(IFLA_INFO_DATA);
    m.attr_u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE);
    m.end(data).end(info);
    m.finish()
}

/// Sets interface `index` up.
pub fn link_up_msg(index: i32) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWLINK, 0);
    m.ifinfo(index, IFF_UP, IFF_UP);
    m.finish()
}

/// Adds `addr/prefix` to interface `index`.
pub fn addr_msg(index: i32, addr: Ipv4Addr, prefix: u8) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    // struct ifaddrmsg: family, prefixlen, flags, scope (universe), index.
    m.0.extend_from_slice(&[libc::AF_INET as u8, prefix, 0, 0]);
    m.0.extend_from_slice(&(index as u32).to_ne_bytes());
    m.attr(IFA_LOCAL, &addr.octets()).attr(IFA_ADDRESS, &addr.octets());
    m.finish()
}

/// Adds the default route via `gateway` on interface `index`.
pub fn default_route_msg(index: i32, gateway: Ipv4Addr) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    // struct rtmsg: family, dst_len, src_len, tos, table (main), protocol (boot),
    // scope (universe), type (unicast), flags.
    m.0.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0, 254, 3, 0, 1]);
    m.0.extend_from_slice(&0u32.to_ne_bytes());
    m.attr(RTA_GATEWAY, &gateway.octets()).attr_u32(RTA_OIF, index as u32);
    m.finish()
}

/// Sends one request on a fresh rtnetlink socket and returns the kernel's verdict.
pub fn request(msg: &[u8]) -> io::Result<()> {
    let sock = sys::netlink_route_socket()?;
    sys::write_all(sock.as_fd(), msg)?;
    let mut buf = [0u8; 1024];
    let n = sys::read(sock.as_fd(), &mut buf)?;
    ack_error(&buf[..n])
}

/// Reads the answer to a request: `Ok` for an ack (error 0), the errno otherwise.
fn ack_error(reply: &[u8]) -> io::Result<()> {
    if reply.len() < 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink reply"));
    }
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind != NLMSG_ERROR {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected netlink reply"));
    }
    match i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}

/// The interface index of `name` in ljspawn's network namespace (asked of the kernel, not of
/// sysfs, which may show another namespace's interfaces, e.g. under `nsenter --net`).
pub fn host_ifindex(name: &str) -> io::Result<u32> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', '\0']) {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    sys::ifindex(name).map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_ne_bytes([b[i], b[i + 1]])
    }
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    /// Walks the attributes in `b` (from `start` to `end`), returning (type, payload range).
    fn attrs(b: &[u8], start: usize, end: usize) -> Vec<(u16, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut i = start;
        while i + 4 <= end {
            let len = u16_at(b, i) as usize;
            assert!(len >= 4 && i + len <= end, "attribute overruns its parent");
            out.push((u16_at(b, i + 2) & !NLA_F_NESTED, i + 4..i + len));
            i += (len + 3) & !3;
        }
        assert_eq!(i, end, "attributes do not fill their parent exactly");
        out
    }

    #[test]
    fn veth_request_is_well_formed() {
        let b = veth_msg("lj42", 7, 4242);
        assert_eq!(u32_at(&b, 0) as usize, b.len());
        assert_eq!(u16_at(&b, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&b, 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(u32_at(&b, 16 + 8), IFF_UP);
        let top = attrs(&b, 32, b.len());
        assert_eq!(&b[top[0].1.clone()], b"lj42\0");
        assert_eq!((top[1].0, u32_at(&b, top[1].1.start)), (IFLA_MASTER, 7));
        assert_eq!(top[2].0, IFLA_LINKINFO);
        let info = attrs(&b, top[2].1.start, top[2].1.end);
        assert_eq!(&b[info[0].1.clone()], b"veth\0");
        let data = attrs(&b, info[1].1.start, info[1].1.end);
        assert_eq!(data[0].0, VETH_INFO_PEER);
        // The peer: an ifinfomsg (16 bytes), then its own attributes.
        let peer = attrs(&b, data[0].1.start + 16, data[0].1.end);
        assert_eq!(&b[peer[0].1.clone()], b"eth0\0");
        assert_eq!((peer[1].0, u32_at(&b, peer[1].1.start)), (IFLA_NET_NS_PID, 4242));
    }

    #[test]
    fn macvlan_address_and_route_requests() {
        let b = macvlan_msg(3, 99);
        let top = attrs(&b, 32, b.len());
        assert_eq!((top[1].0, u32_at(&b, top[1].1.start)), (IFLA_LINK, 3));
        assert_eq!((top[2].0, u32_at(&b, top[2].1.start)), (IFLA_NET_NS_PID, 99));
        let info = attrs(&b, top[3].1.start, top[3].1.end);
        assert_eq!(&b[info[0].1.clone()], b"macvlan\0");
        let data = attrs(&b, info[1].1.start, info[1].1.end);
        assert_eq!(u32_at(&b, data[0].1.start), MACVLAN_MODE_BRIDGE);

        let b = addr_msg(2, Ipv4Addr::new(10, 1, 2, 3), 24);
        assert_eq!(u32_at(&b, 0) as usize, b.len());
        assert_eq!((b[16], b[17]), (libc::AF_INET as u8, 24));
        assert_eq!(u32_at(&b, 20), 2);
        let a = attrs(&b, 24, b.len());
        assert_eq!(&b[a[0].1.clone()], &[10, 1, 2, 3]);

        let b = default_route_msg(2, Ipv4Addr::new(10, 1, 2, 1));
        let a = attrs(&b, 28, b.len());
        assert_eq!((a[0].0, &b[a[0].1.clone()]), (RTA_GATEWAY, &[10u8, 1, 2, 1][..]));
        assert_eq!((a[1].0, u32_at(&b, a[1].1.start)), (RTA_OIF, 2));
    }

    #[test]
    fn acks_and_errors() {
        let mut r = vec![0u8; 36];
        r[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(ack_error(&r).is_ok());
        r[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(ack_error(&r).unwrap_err().raw_os_error(), Some(libc::EEXIST));
        assert!(ack_error(&r[..10]).is_err());
        assert!(host_ifindex("../x").is_err());
    }
}
