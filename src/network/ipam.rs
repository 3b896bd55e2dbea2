//! IPAM (dockerd's default driver): subnets for new networks from the default address pools,
//! skipping those that overlap a network berth has or a route the host has, and addresses
//! inside a subnet (or its `IPRange`), handed out in order after the last one given, so that
//! a released address is not reused at once.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// dockerd's default local pools (`ipamutils`): 172.17–172.31 as /16s, then 192.168/16 as /20s.
pub fn default_pools() -> Vec<(IpNet, u8)> {
    let p = |s: &str, size: u8| -> Option<(IpNet, u8)> { s.parse().ok().map(|n| (n, size)) };
    [
        p("172.17.0.0/16", 16),
        p("172.18.0.0/16", 16),
        p("172.19.0.0/16", 16),
        p("172.20.0.0/14", 16),
        p("172.24.0.0/14", 16),
        p("172.28.0.0/14", 16),
        p("192.168.0.0/16", 20),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The first subnet of the pools that overlaps none of `used`.
pub fn pick_subnet(pools: &[(IpNet, u8)], used: &[IpNet]) -> Option<IpNet> {
    for (base, size) in pools {
        let Ok(subnets) = base.subnets(*size) else {
            continue;
        };
        for s in subnets {
            if !used.iter().any(|u| overlaps(&s, u)) {
                return Some(s);
            }
        }
    }
    None
}

/// Whether two subnets share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The gateway dockerd's IPAM picks: the first usable address of the range (or subnet).
pub fn default_gateway(subnet: &IpNet, range: Option<&IpNet>) -> IpAddr {
    next_free(subnet, range, &BTreeSet::new(), None).unwrap_or_else(|| add(subnet.network(), 1))
}

fn add(ip: IpAddr, n: u128) -> IpAddr {
    match ip {
        IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v).wrapping_add(n as u32))),
        IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(v).wrapping_add(n))),
    }
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// Whether `ip` may be given to an endpoint of `subnet`: inside it, and not its network or
/// (IPv4) broadcast address.
pub fn usable(subnet: &IpNet, ip: IpAddr) -> bool {
    if !subnet.contains(&ip) || ip == subnet.network() {
        return false;
    }
    match subnet {
        IpNet::V4(n) => n.prefix_len() >= 31 || ip != IpAddr::V4(n.broadcast()),
        IpNet::V6(_) => true,
    }
}

/// The next free address of `subnet` (within `range` when set), after `last` and wrapping
/// around; `None` when every address is taken.
pub fn next_free(
    subnet: &IpNet,
    range: Option<&IpNet>,
    taken: &BTreeSet<IpAddr>,
    last: Option<IpAddr>,
) -> Option<IpAddr> {
    let area = range.unwrap_or(subnet);
    let v4 = matches!(area, IpNet::V4(_));
    let lo = as_u128(area.network());
    let hi = as_u128(area.broadcast());
    let size = hi - lo + 1;
    let start = match last {
        Some(l) if area.contains(&l) => as_u128(l) - lo + 1,
        _ => 0,
    };
    // Bound the scan: a /8 of taken addresses is not a case worth walking fully.
    let limit = size.min(1 << 24);
    for i in 0..limit {
        let off = (start + i) % size;
        let ip = from_u128(v4, lo + off);
        if usable(subnet, ip) && !taken.contains(&ip) {
            return Some(ip);
        }
    }
    None
}

/// A MAC address as dockerd's bridge driver derives it from an IPv4 address (`02:42` and the
/// four address bytes); random (locally administered) for IPv6-only endpoints.
pub fn mac_for(ip: Option<Ipv4Addr>) -> [u8; 6] {
    match ip {
        Some(v4) => {
            let o = v4.octets();
            [0x02, 0x42, o[0], o[1], o[2], o[3]]
        }
        None => {
            let hex = crate::util::rand::random_hex(12);
            let mut r = parse_mac(
                &hex.as_bytes()
                    .chunks(2)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join(":"),
            )
            .unwrap_or([0x02, 0x42, 0, 0, 0, 1]);
            r[0] = (r[0] & 0xfe) | 0x02;
            r
        }
    }
}

/// `02:42:ac:11:00:02`.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `02:42:ac:11:00:02` (also with `-`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// A v4 subnet's prefix as a network (`172.17.0.0/16` from `172.17.0.1/16`).
pub fn v4_network(n: &Ipv4Net) -> Ipv4Net {
    n.trunc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn pools_skip_used_subnets() {
        let pools = default_pools();
        assert_eq!(pick_subnet(&pools, &[]), Some(net("172.17.0.0/16")));
        let used = [net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(pick_subnet(&pools, &used), Some(net("172.19.0.0/16")));
        let used = [net("172.16.0.0/12")];
        assert_eq!(pick_subnet(&pools, &used), Some(net("192.168.0.0/20")));
        let all: Vec<IpNet> = vec![net("0.0.0.0/0")];
        assert_eq!(pick_subnet(&pools, &all), None);
    }

    #[test]
    fn addresses_roll_forward_and_skip_reserved() {
        let s = net("10.9.0.0/29");
        let mut taken = BTreeSet::new();
        taken.insert("10.9.0.1".parse().unwrap());
        let a = next_free(&s, None, &taken, None).unwrap();
        assert_eq!(a.to_string(), "10.9.0.2");
        taken.insert(a);
        let b = next_free(&s, None, &taken, Some(a)).unwrap();
        assert_eq!(b.to_string(), "10.9.0.3");
        taken.remove(&a);
        // .2 was released, but the next after .3 comes first.
        let c = next_free(&s, None, &taken, Some(b)).unwrap();
        assert_eq!(c.to_string(), "10.9.0.4");
        for i in 4..7 {
            taken.insert(format!("10.9.0.{i}").parse().unwrap());
        }
        taken.insert(b);
        // Wraps around to the released .2; never .0 or .7 (broadcast).
        assert_eq!(
            next_free(&s, None, &taken, Some("10.9.0.6".parse().unwrap()))
                .unwrap()
                .to_string(),
            "10.9.0.2"
        );
        taken.insert("10.9.0.2".parse().unwrap());
        assert_eq!(next_free(&s, None, &taken, None), None);
    }

    #[test]
    fn ranges_and_gateways() {
        let s = net("10.10.0.0/16");
        let r = net("10.10.5.0/24");
        assert_eq!(default_gateway(&s, None).to_string(), "10.10.0.1");
        assert_eq!(default_gateway(&s, Some(&r)).to_string(), "10.10.5.0");
        let taken: BTreeSet<IpAddr> = ["10.10.5.0".parse().unwrap()].into();
        assert_eq!(
            next_free(&s, Some(&r), &taken, None).unwrap().to_string(),
            "10.10.5.1"
        );
        let v6 = net("fd00:1::/64");
        assert_eq!(default_gateway(&v6, None).to_string(), "fd00:1::1");
    }

    #[test]
    fn macs() {
        let m = mac_for(Some("172.17.0.2".parse().unwrap()));
        assert_eq!(mac_string(&m), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00:02"), Some(m));
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        let r = mac_for(None);
        assert_eq!(r[0] & 0x03, 0x02);
    }
}
