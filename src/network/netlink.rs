//! Links, addresses and routes over rtnetlink: the bridge of a network, a container's veth
//! pair (host end on the bridge, the other moved into the container's namespace and renamed
//! `eth0`, `eth1`, …), and the host's routes that IPAM must avoid.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use futures_util::future::try_join_all;
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::netns;
use super::NetworkError;

/// The longest interface name the kernel takes (`IFNAMSIZ` - 1).
const MAX_IFNAME: usize = 15;

/// A bridge device as a network wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Device name (`berth0`, `br-<12 hex>`, or `com.docker.network.bridge.name`).
    pub name: String,
    /// The gateway addresses with the subnet's prefix (`172.18.0.1/16`); none for a network
    /// without a gateway on the host (`internal` networks still get one, as dockerd).
    pub addresses: Vec<IpNet>,
    /// `com.docker.network.driver.mtu` / `--mtu`; `None` keeps the kernel's default.
    pub mtu: Option<u32>,
}

/// One container endpoint: a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// The host end's name (`veth` + 7 hex, as dockerd), enslaved to `bridge`.
    pub host_name: String,
    pub bridge: String,
    /// The container's namespace file.
    pub netns: PathBuf,
    /// The name inside the namespace (`eth0`, …).
    pub ifname: String,
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
    /// Addresses with prefix (`172.18.0.2/16`, `fd00::2/64`).
    pub addresses: Vec<IpNet>,
    /// Default routes through these gateways (only for the endpoint that gives the
    /// container its default gateway).
    pub gateway_v4: Option<Ipv4Addr>,
    pub gateway_v6: Option<Ipv6Addr>,
}

/// A connection to the host namespace's rtnetlink.
pub struct Netlink {
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Netlink {
    /// Open a connection in the caller's (the host's) namespace.
    pub async fn new() -> Result<Self, NetworkError> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetworkError::io("open rtnetlink connection", e))?;
        let connection = tokio::spawn(connection);
        Ok(Netlink { handle, connection })
    }

    /// Create the bridge if missing (or adopt an existing one of that name), set its MTU and
    /// addresses (adding missing ones, never removing others), and bring it up.
    pub async fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<(), NetworkError> {
        let name = &spec.name;
        check_ifname(name)?;
        let fail = |e: &rtnetlink::Error| {
            NetworkError::internal(format!("set up bridge {name}: {}", describe(e)))
        };
        let link = match get_link(&self.handle, name).await.map_err(|e| fail(&e))? {
            Some(link) => link,
            None => {
                let mut bridge = LinkBridge::new(name);
                if let Some(mtu) = spec.mtu {
                    bridge = bridge.mtu(mtu);
                }
                match self.handle.link().add(bridge.build()).execute().await {
                    // EEXIST: made concurrently by someone else; adopt it below.
                    Err(e) if errno(&e) != Some(libc::EEXIST) => return Err(fail(&e)),
                    _ => {}
                }
                get_link(&self.handle, name)
                    .await
                    .map_err(|e| fail(&e))?
                    .ok_or_else(|| {
                        NetworkError::internal(format!(
                            "set up bridge {name}: it disappeared right after its creation"
                        ))
                    })?
            }
        };
        if !matches!(link_kind(&link), Some(InfoKind::Bridge)) {
            return Err(NetworkError::conflict(format!(
                "set up bridge {name}: a link of that name exists and is not a bridge"
            )));
        }
        let index = link.header.index;

        let mtu_ok = spec.mtu.is_none_or(|want| link_mtu(&link) == Some(want));
        let up = link.header.flags.contains(LinkFlags::Up);
        if !mtu_ok || !up {
            let mut change = LinkUnspec::new_with_index(index).up();
            if let Some(mtu) = spec.mtu.filter(|_| !mtu_ok) {
                change = change.mtu(mtu);
            }
            self.handle
                .link()
                .change(change.build())
                .execute()
                .await
                .map_err(|e| fail(&e))?;
        }

        if !spec.addresses.is_empty() {
            let present: Vec<IpNet> = self
                .handle
                .address()
                .get()
                .set_link_index_filter(index)
                .execute()
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| fail(&e))?
                .iter()
                .filter(|m| m.header.index == index)
                .filter_map(address_net)
                .collect();
            let missing = spec.addresses.iter().filter(|a| !present.contains(a));
            try_join_all(missing.map(|a| add_address(&self.handle, index, *a)))
                .await
                .map_err(|e| fail(&e))?;
        }
        Ok(())
    }

    /// Delete a link by name; a missing one is fine.
    pub async fn delete_link(&self, name: &str) -> Result<(), NetworkError> {
        if check_ifname(name).is_err() {
            // No link can have that name.
            return Ok(());
        }
        let message = LinkUnspec::new_with_name(name).build();
        match self.handle.link().del_with_message(message).execute().await {
            Err(e) if errno(&e) != Some(libc::ENODEV) => Err(NetworkError::internal(format!(
                "delete link {name}: {}",
                describe(&e)
            ))),
            _ => Ok(()),
        }
    }

    /// Delete a link without waiting for the kernel's teardown (a veth's takes tens of ms);
    /// for names nothing will reuse (a veth's random host end). Failures are logged.
    ///
    /// The kernel unregisters the device inside the request's `sendto` (RCU synchronisations
    /// and, on a bridge with many ports, walks of its ports and of the IPv6 routes: 15–40 ms
    /// for a veth here), which held an async worker that long, and the tasks queued on it with
    /// it. So the request goes on a netlink socket of its own from a blocking thread (which is
    /// in berthd's network namespace, as every thread of the blocking pool).
    pub fn delete_link_detached(&self, name: &str) {
        if check_ifname(name).is_err() {
            return;
        }
        let name = name.to_string();
        tokio::task::spawn_blocking(move || match delete_link_blocking(&name) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
                tracing::warn!("delete link {name}: {e}");
            }
            _ => {}
        });
    }

    /// The names of all links of the host namespace.
    pub async fn link_names(&self) -> Result<Vec<String>, NetworkError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetworkError::internal(format!("list links: {}", describe(&e))))?;
        Ok(links.iter().filter_map(link_name).collect())
    }

    /// The names of the links enslaved to bridge `bridge` (its ports); none when it is missing.
    pub async fn ports_of(&self, bridge: &str) -> Result<Vec<String>, NetworkError> {
        let Some(index) = link_index(&self.handle, bridge)
            .await
            .map_err(|e| NetworkError::internal(format!("find {bridge}: {}", describe(&e))))?
        else {
            return Ok(Vec::new());
        };
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetworkError::internal(format!("list links: {}", describe(&e))))?;
        Ok(links
            .iter()
            .filter(|l| {
                l.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == index))
            })
            .filter_map(link_name)
            .collect())
    }

    /// The destinations of the host's IPv4 and IPv6 routes (main table), for IPAM to skip.
    pub async fn routes(&self) -> Result<Vec<IpNet>, NetworkError> {
        let dump = |message: RouteMessage| {
            self.handle
                .route()
                .get(message)
                .execute()
                .try_collect::<Vec<_>>()
        };
        let (v4, v6) = futures_util::future::try_join(
            dump(RouteMessageBuilder::<Ipv4Addr>::new().build()),
            dump(RouteMessageBuilder::<Ipv6Addr>::new().build()),
        )
        .await
        .map_err(|e| NetworkError::internal(format!("list routes: {}", describe(&e))))?;
        let mut nets: Vec<IpNet> = Vec::new();
        for route in v4.iter().chain(v6.iter()) {
            if let Some(net) = route_destination(route) {
                if !nets.contains(&net) {
                    nets.push(net);
                }
            }
        }
        Ok(nets)
    }

    /// Create the veth pair, enslave the host end to the bridge and bring it up, move the
    /// other end into the namespace, rename it, set MAC, MTU and addresses, bring it up, and
    /// add the default routes. On failure, the pair is deleted.
    ///
    /// The container end is created directly inside the namespace under its final name, MAC
    /// and MTU (one `RTM_NEWLINK`, as `ip link add … type veth peer name eth0 netns …`): no
    /// temporary name, no rename and no costly move between namespaces. It is brought up, and
    /// given its addresses and routes, through a short-lived rtnetlink socket opened in the
    /// namespace (the kernel refuses to open a veth end before its pair exists, `ENOTCONN`).
    pub async fn add_veth(&self, spec: &VethSpec) -> Result<(), NetworkError> {
        let host = &spec.host_name;
        check_ifname(host)?;
        check_ifname(&spec.ifname)?;
        let fail = |what: &str, e: &rtnetlink::Error| {
            NetworkError::internal(format!("add veth {host}: {what}: {}", describe(e)))
        };
        let bridge = link_index(&self.handle, &spec.bridge)
            .await
            .map_err(|e| fail(&format!("look up bridge {}", spec.bridge), &e))?
            .ok_or_else(|| {
                NetworkError::not_found(format!(
                    "add veth {host}: bridge {} not found",
                    spec.bridge
                ))
            })?;
        let ns = File::open(&spec.netns).map_err(|e| {
            NetworkError::io(
                format!(
                    "add veth {host}: open network namespace {}",
                    spec.netns.display()
                ),
                e,
            )
        })?;

        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.ifname.clone())
            .address(spec.mac.to_vec())
            .setns_by_fd(ns.as_raw_fd());
        let mut pair = LinkVeth::new(host, &spec.ifname).controller(bridge).up();
        if let Some(mtu) = spec.mtu {
            peer = peer.mtu(mtu);
            pair = pair.mtu(mtu);
        }
        let pair = pair.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        let created = self.handle.link().add(pair.build()).execute().await;
        drop(ns);
        created.map_err(|e| fail("create the pair", &e))?;

        let configured = configure_peer(spec).await;
        if configured.is_err() {
            let _ = self.delete_link(host).await;
        }
        configured
    }

    /// The addresses of the host's own interfaces (for `host-gateway` and hairpin checks).
    pub async fn host_addresses(&self) -> Result<Vec<IpAddr>, NetworkError> {
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetworkError::internal(format!("list addresses: {}", describe(&e))))?;
        let mut addresses: Vec<IpAddr> = Vec::new();
        for ip in messages
            .iter()
            .filter_map(|m| address_net(m).map(|n| n.addr()))
        {
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
        Ok(addresses)
    }
}

/// Inside the namespace: bring the link up and add its addresses (IPv6 ones without DAD, so
/// the gateway route and the first packets need not wait), then the default routes.
async fn configure_peer(spec: &VethSpec) -> Result<(), NetworkError> {
    let ifname = &spec.ifname;
    let context = format!(
        "add veth {}: configure {ifname} in {}",
        spec.host_name,
        spec.netns.display()
    );
    let fail = |e: &rtnetlink::Error| NetworkError::internal(format!("{context}: {}", describe(e)));
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| NetworkError::internal(format!("{context}: {e}")))?;
    // The socket is made on a thread inside the namespace and keeps it; the runtime is entered
    // there only to register the socket with the reactor. That thread also sets the link's
    // IPv6 switch while it is still down, before it could get a link-local address.
    let ipv6 = spec.addresses.iter().any(|a| a.addr().is_ipv6());
    let name = ifname.clone();
    let (connection, ipv6_set) = netns::run_in(&spec.netns, move || {
        let ipv6_set = set_ipv6(&name, ipv6);
        let _entered = runtime.enter();
        (rtnetlink::new_connection(), ipv6_set)
    })?;
    ipv6_set.map_err(|e| NetworkError::io(context.clone(), e))?;
    let (connection, handle, _) = connection
        .map_err(|e| NetworkError::io(format!("{context}: open rtnetlink connection"), e))?;
    let connection = tokio::spawn(connection);

    let result = async {
        let index = link_index(&handle, ifname)
            .await
            .map_err(|e| fail(&e))?
            .ok_or_else(|| {
                NetworkError::internal(format!("{context}: the link is not in the namespace"))
            })?;
        // Independent requests, sent together: one wait instead of several.
        let up = handle
            .link()
            .change(LinkUnspec::new_with_index(index).up().build())
            .execute();
        let addresses = try_join_all(
            spec.addresses
                .iter()
                .map(|a| add_address(&handle, index, *a)),
        );
        futures_util::future::try_join(up, addresses)
            .await
            .map_err(|e| fail(&e))?;
        let mut routes = Vec::new();
        if let Some(gateway) = spec.gateway_v4 {
            routes.push(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .output_interface(index)
                    .build(),
            );
        }
        if let Some(gateway) = spec.gateway_v6 {
            routes.push(
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .gateway(gateway)
                    .output_interface(index)
                    .build(),
            );
        }
        try_join_all(routes.into_iter().map(|r| handle.route().add(r).execute()))
            .await
            .map_err(|e| {
                NetworkError::internal(format!("{context}: add default route: {}", describe(&e)))
            })?;
        Ok(())
    }
    .await;
    connection.abort();
    result
}

/// In the calling thread's network namespace (moby's `setIPv6`): IPv6 on the interface if and
/// only if its network gives it an IPv6 address. An interface on an IPv4-only network would
/// otherwise join IPv6 multicast groups, get a link-local address and send router
/// solicitations. `all` and `default` are left alone, so that a container's own `--sysctl
/// net.ipv6.conf.all.disable_ipv6=0`, applied after this at its start, turns it back on. A
/// kernel without IPv6 (no such file) is fine.
fn set_ipv6(ifname: &str, enable: bool) -> io::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    let value = if enable { b'0' } else { b'1' };
    match std::fs::read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("read {path}: {e}"))),
        Ok(cur) if cur.first() == Some(&value) => return Ok(()),
        Ok(_) => {}
    }
    match std::fs::write(&path, [value, b'\n']) {
        Err(e) if enable => {
            // As dockerd: a wish for IPv6 that cannot be met is only logged.
            tracing::warn!("cannot enable IPv6 on container interface {ifname}: {e}");
            Ok(())
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("failed to disable IPv6 on container's interface {ifname}: {e}"),
        )),
        Ok(()) => Ok(()),
    }
}

/// Add an address (IPv6 ones without DAD); one already there is fine.
async fn add_address(handle: &Handle, index: u32, net: IpNet) -> Result<(), rtnetlink::Error> {
    let mut request = handle.address().add(index, net.addr(), net.prefix_len());
    if net.addr().is_ipv6() {
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match request.execute().await {
        Err(e) if errno(&e) != Some(libc::EEXIST) => Err(e),
        _ => Ok(()),
    }
}

/// One link by name; `None` when there is none.
async fn get_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        other => other,
    }
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    Ok(get_link(handle, name).await?.map(|l| l.header.index))
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

/// The interface address with its prefix: `IFA_LOCAL` (IPv4, the own address even on
/// point-to-point links), else `IFA_ADDRESS`.
fn address_net(message: &AddressMessage) -> Option<IpNet> {
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let ip = local.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    IpNet::new(ip, message.header.prefix_len).ok()
}

/// The destination of a main-table route; `None` for default routes and other tables.
fn route_destination(route: &RouteMessage) -> Option<IpNet> {
    let table = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let prefix = route.header.destination_prefix_length;
    if prefix == 0 {
        return None;
    }
    let ip = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    })?;
    let family_ok = match route.header.address_family {
        AddressFamily::Inet => ip.is_ipv4(),
        AddressFamily::Inet6 => ip.is_ipv6(),
        _ => false,
    };
    family_ok.then(|| IpNet::new(ip, prefix).ok()).flatten()
}

fn check_ifname(name: &str) -> Result<(), NetworkError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if valid {
        Ok(())
    } else {
        Err(NetworkError::invalid(format!(
            "invalid interface name {name:?}"
        )))
    }
}

/// The positive errno of a netlink error reply.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|c| -c.get()),
        _ => None,
    }
}

/// A netlink error as the kernel's text (`File exists (os error 17)`).
fn describe(e: &rtnetlink::Error) -> String {
    match errno(e) {
        Some(n) => io::Error::from_raw_os_error(n).to_string(),
        None => e.to_string(),
    }
}

/// Write a sysctl under `/proc/sys` (`net/ipv4/ip_forward` → `1`); a no-op when it already
/// holds that value.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), NetworkError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(NetworkError::invalid(format!("invalid sysctl {key:?}")));
    }
    let path = std::path::Path::new("/proc/sys").join(key);
    let current = std::fs::read_to_string(&path)
        .map_err(|e| NetworkError::io(format!("read sysctl {key}"), e))?;
    if current.trim() == value.trim() {
        return Ok(());
    }
    std::fs::write(&path, value)
        .map_err(|e| NetworkError::io(format!("set sysctl {key} to {value}"), e))
}

/// Delete link `name` of the calling thread's network namespace and wait for the kernel's
/// answer, on a netlink socket of its own (blocking).
fn delete_link_blocking(name: &str) -> io::Result<()> {
    use rtnetlink::packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
    };
    use rtnetlink::packet_route::RouteNetlinkMessage;
    use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut msg = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::DelLink(
            LinkUnspec::new_with_name(name).build(),
        )),
    );
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let (reply, _) = socket.recv_from_full()?;
    let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| io::Error::other(format!("netlink answer: {e}")))?;
    match answer.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Instant;

    use super::*;

    /// Run an async test on a thread in a throwaway network namespace, with its own
    /// current-thread runtime; skipped when not root.
    fn in_throwaway_netns<F, Fut>(test: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare a throwaway network namespace");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(test());
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    /// A namespace file that is unmounted and removed however the test ends.
    struct Ns(PathBuf);

    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = netns::remove(&self.0);
        }
    }

    /// `ip -j <args>` in the calling thread's namespace.
    fn ip_json(args: &[&str]) -> serde_json::Value {
        let out = Command::new("ip")
            .arg("-j")
            .args(args)
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).expect("ip json")
    }

    /// `ip -j <args>` inside the namespace at `ns`.
    fn ip_json_in(ns: &Path, args: &[&str]) -> serde_json::Value {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        netns::run_in(ns, move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ip_json(&args)
        })
        .expect("run_in")
    }

    fn addresses_of(link: &serde_json::Value) -> Vec<String> {
        link["addr_info"]
            .as_array()
            .map(|infos| {
                infos
                    .iter()
                    .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or(""), i["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn bridge_spec() -> BridgeSpec {
        BridgeSpec {
            name: "br-test".into(),
            addresses: vec![
                "172.30.0.1/16".parse().expect("net"),
                "fd00:30::1/64".parse().expect("net"),
            ],
            mtu: Some(1400),
        }
    }

    fn veth_spec(ns: &Path) -> VethSpec {
        VethSpec {
            host_name: "vethtest0".into(),
            bridge: "br-test".into(),
            netns: ns.to_path_buf(),
            ifname: "eth0".into(),
            mac: [0x02, 0x42, 0xac, 0x1e, 0x00, 0x02],
            mtu: Some(1400),
            addresses: vec![
                "172.30.0.2/16".parse().expect("net"),
                "fd00:30::2/64".parse().expect("net"),
            ],
            gateway_v4: Some("172.30.0.1".parse().expect("ip")),
            gateway_v6: Some("fd00:30::1".parse().expect("ip")),
        }
    }

    #[test]
    fn ensure_bridge_is_idempotent() {
        in_throwaway_netns(|| async {
            let nl = Netlink::new().await.expect("netlink");
            let spec = bridge_spec();
            nl.ensure_bridge(&spec).await.expect("create");
            nl.ensure_bridge(&spec).await.expect("again");

            let links = ip_json(&["-d", "addr", "show", "dev", "br-test"]);
            let link = &links[0];
            assert_eq!(link["linkinfo"]["info_kind"], "bridge");
            assert_eq!(link["mtu"], 1400);
            assert!(link["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .any(|f| f == "UP"));
            let mut addrs = addresses_of(link);
            addrs.retain(|a| !a.starts_with("fe80:"));
            addrs.sort();
            assert_eq!(addrs, ["172.30.0.1/16", "fd00:30::1/64"]);

            assert!(nl.link_names().await.expect("links").contains(&spec.name));
            let routes = nl.routes().await.expect("routes");
            assert!(
                routes.contains(&"172.30.0.0/16".parse().expect("net")),
                "{routes:?}"
            );
            assert!(!routes.iter().any(|r| r.prefix_len() == 0), "{routes:?}");
            let host = nl.host_addresses().await.expect("addresses");
            assert!(
                host.contains(&"172.30.0.1".parse().expect("ip")),
                "{host:?}"
            );
            assert!(
                host.contains(&"fd00:30::1".parse().expect("ip")),
                "{host:?}"
            );

            // Adopting an existing bridge: a changed MTU and an added address, the old kept;
            // a downed bridge is brought up again.
            assert!(Command::new("ip")
                .args(["link", "set", "br-test", "down"])
                .status()
                .expect("ip")
                .success());
            let changed = BridgeSpec {
                mtu: Some(1300),
                addresses: vec!["172.31.0.1/24".parse().expect("net")],
                ..spec.clone()
            };
            nl.ensure_bridge(&changed).await.expect("adopt");
            let link = &ip_json(&["addr", "show", "dev", "br-test"])[0];
            assert_eq!(link["mtu"], 1300);
            assert!(link["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .any(|f| f == "UP"));
            let addrs = addresses_of(link);
            assert!(addrs.contains(&"172.30.0.1/16".to_string()), "{addrs:?}");
            assert!(addrs.contains(&"172.31.0.1/24".to_string()), "{addrs:?}");

            // A link of that name that is no bridge is not adopted.
            assert!(Command::new("ip")
                .args([
                    "link",
                    "add",
                    "notabridge",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "nb-peer"
                ])
                .status()
                .expect("ip")
                .success());
            let err = nl
                .ensure_bridge(&BridgeSpec {
                    name: "notabridge".into(),
                    addresses: vec![],
                    mtu: None,
                })
                .await
                .expect_err("dummy is no bridge");
            assert!(err.message().contains("not a bridge"), "{err}");
        });
    }

    #[test]
    fn a_link_is_deleted_from_a_blocking_thread() {
        in_throwaway_netns(|| async {
            let nl = Netlink::new().await.expect("netlink");
            nl.ensure_bridge(&BridgeSpec {
                name: "br-gone".into(),
                addresses: vec![],
                mtu: None,
            })
            .await
            .expect("create");
            assert_eq!(
                ip_json(&["link", "show", "dev", "br-gone"])[0]["ifname"],
                "br-gone"
            );
            // This thread is in the throwaway namespace, as the blocking pool's are in berthd's.
            delete_link_blocking("br-gone").expect("delete");
            let out = Command::new("ip")
                .args(["link", "show", "dev", "br-gone"])
                .output()
                .expect("run ip");
            assert!(!out.status.success(), "still there: {out:?}");
            let e = delete_link_blocking("br-gone").expect_err("gone already");
            assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        });
    }

    #[test]
    fn delete_link_missing_is_ok() {
        in_throwaway_netns(|| async {
            let nl = Netlink::new().await.expect("netlink");
            nl.delete_link("nosuchlink0")
                .await
                .expect("missing is fine");
            nl.ensure_bridge(&BridgeSpec {
                name: "br-del".into(),
                addresses: vec![],
                mtu: None,
            })
            .await
            .expect("bridge");
            assert!(nl
                .link_names()
                .await
                .expect("links")
                .contains(&"br-del".to_string()));
            nl.delete_link("br-del").await.expect("delete");
            assert!(!nl
                .link_names()
                .await
                .expect("links")
                .contains(&"br-del".to_string()));
            nl.delete_link("br-del").await.expect("again");
        });
    }

    #[test]
    fn add_veth_into_a_namespace() {
        in_throwaway_netns(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let ns = Ns(dir.path().join("c1"));
            netns::create(&ns.0).expect("netns");
            let nl = Netlink::new().await.expect("netlink");
            nl.ensure_bridge(&bridge_spec()).await.expect("bridge");

            let spec = veth_spec(&ns.0);
            let started = Instant::now();
            nl.add_veth(&spec).await.expect("add_veth");
            eprintln!("add_veth took {:?}", started.elapsed());

            // The host end: on the bridge, up, with the MTU.
            let host = &ip_json(&["link", "show", "dev", "vethtest0"])[0];
            assert_eq!(host["master"], "br-test");
            assert_eq!(host["mtu"], 1400);
            assert!(host["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .any(|f| f == "UP"));
            assert!(!nl
                .link_names()
                .await
                .expect("links")
                .contains(&"eth0".to_string()));

            // The container end.
            let inside = &ip_json_in(&ns.0, &["addr", "show", "dev", "eth0"])[0];
            assert_eq!(inside["address"], "02:42:ac:1e:00:02");
            assert_eq!(inside["mtu"], 1400);
            assert!(inside["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .any(|f| f == "UP"));
            let addrs = addresses_of(inside);
            assert!(addrs.contains(&"172.30.0.2/16".to_string()), "{addrs:?}");
            assert!(addrs.contains(&"fd00:30::2/64".to_string()), "{addrs:?}");
            let v4 = ip_json_in(&ns.0, &["-4", "route", "show", "default"]);
            assert_eq!(v4[0]["gateway"], "172.30.0.1", "{v4}");
            assert_eq!(v4[0]["dev"], "eth0", "{v4}");
            let v6 = ip_json_in(&ns.0, &["-6", "route", "show", "default"]);
            assert_eq!(v6[0]["gateway"], "fd00:30::1", "{v6}");

            // Traffic between the container and its gateway, both in namespaces of this test.
            let reachable = netns::run_in(&ns.0, || {
                std::net::TcpStream::connect_timeout(
                    &"172.30.0.1:9".parse().expect("addr"),
                    std::time::Duration::from_secs(2),
                )
                .map(|_| ())
                .map_err(|e| e.kind())
            })
            .expect("run_in");
            // Nothing listens there: a refused connection proves the round trip.
            assert_eq!(reachable, Err(std::io::ErrorKind::ConnectionRefused));

            // A second endpoint in another namespace, then the pair goes with its host end.
            let ns2 = Ns(dir.path().join("c2"));
            netns::create(&ns2.0).expect("netns");
            let second = VethSpec {
                host_name: "vethtest1".into(),
                netns: ns2.0.clone(),
                mac: [0x02, 0x42, 0xac, 0x1e, 0x00, 0x03],
                addresses: vec!["172.30.0.3/16".parse().expect("net")],
                gateway_v6: None,
                ..veth_spec(&ns2.0)
            };
            let started = Instant::now();
            nl.add_veth(&second).await.expect("second add_veth");
            eprintln!("second add_veth took {:?}", started.elapsed());
            nl.delete_link("vethtest1").await.expect("delete");
            let links = ip_json_in(&ns2.0, &["link", "show"]);
            assert!(
                !links
                    .as_array()
                    .expect("links")
                    .iter()
                    .any(|l| l["ifname"] == "eth0"),
                "{links}"
            );
        });
    }

    #[test]
    fn add_veth_failures_leave_nothing_behind() {
        in_throwaway_netns(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let ns = Ns(dir.path().join("c1"));
            netns::create(&ns.0).expect("netns");
            let nl = Netlink::new().await.expect("netlink");

            // No such bridge.
            let err = nl.add_veth(&veth_spec(&ns.0)).await.expect_err("no bridge");
            assert!(err.message().contains("bridge br-test not found"), "{err}");

            nl.ensure_bridge(&bridge_spec()).await.expect("bridge");
            // No such namespace.
            let err = nl
                .add_veth(&veth_spec(&dir.path().join("missing")))
                .await
                .expect_err("no namespace");
            assert!(err.message().contains("open network namespace"), "{err}");

            // A gateway off the subnet: the route fails after the pair exists.
            let spec = VethSpec {
                gateway_v4: Some("10.99.0.1".parse().expect("ip")),
                ..veth_spec(&ns.0)
            };
            let err = nl.add_veth(&spec).await.expect_err("unreachable gateway");
            assert!(err.message().contains("add default route"), "{err}");
            let names = nl.link_names().await.expect("links");
            assert!(!names.contains(&"vethtest0".to_string()), "{names:?}");
            let inside = ip_json_in(&ns.0, &["link", "show"]);
            assert_eq!(
                inside.as_array().expect("links").len(),
                1,
                "only lo: {inside}"
            );

            // The same endpoint works afterwards.
            nl.add_veth(&veth_spec(&ns.0)).await.expect("add_veth");

            // Invalid names are refused before anything is made.
            let err = nl
                .add_veth(&VethSpec {
                    host_name: "a-name-far-too-long".into(),
                    ..veth_spec(&ns.0)
                })
                .await
                .expect_err("long name");
            assert!(err.message().starts_with("invalid interface name"), "{err}");
        });
    }

    #[test]
    fn sysctl_writes_only_on_change() {
        in_throwaway_netns(|| async {
            // Per network namespace: this is the throwaway one's.
            set_sysctl("net/ipv4/ip_forward", "1").expect("set");
            let now = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read");
            assert_eq!(now.trim(), "1");
            set_sysctl("net/ipv4/ip_forward", "1").expect("no-op");
            assert!(set_sysctl("../etc/passwd", "x").is_err());
            assert!(set_sysctl("net/ipv4/nosuchsysctl", "1")
                .expect_err("missing")
                .message()
                .starts_with("read sysctl net/ipv4/nosuchsysctl: "));
        });
    }

    #[test]
    fn route_destinations_skip_defaults_and_other_tables() {
        let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix("10.1.0.0".parse().expect("ip"), 16)
            .build();
        assert_eq!(
            route_destination(&route),
            Some("10.1.0.0/16".parse().expect("net"))
        );
        route.header.table = 255;
        assert_eq!(route_destination(&route), None);
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway("10.1.0.1".parse().expect("ip"))
            .build();
        assert_eq!(route_destination(&default), None);
    }
}
