//! The nftables backend: JSON batches through Debian's `nft` binary (the `nftables` crate's
//! schema types). Tables `ip berth` and `ip6 berth`; berth never lists, flushes or edits any
//! other table.
//!
//! The whole content of both tables is a pure function of [`FwState`] ([`ruleset`]) and goes to
//! the kernel in one `nft -j -f -` transaction: for each family `add table`, `delete table`
//! (our own only; `add` first so a missing table is no error), then, when the family has
//! anything to hold, the table again with every chain and rule. A family with nothing to hold
//! ends up without a table, so stale rules can never survive and an empty state leaves nothing
//! behind.
//!
//! The layout follows dockerd's nftables backend (`libnetwork/drivers/bridge/internal/
//! nftabler`), every base chain with policy `accept` so other tables keep deciding:
//!
//! ```text
//! chain raw-PREROUTING   filter prerouting raw (-300)    (ip only) CVE-2020-8558 guards
//! chain filter-FORWARD   filter forward filter (0)        oifname vmap → fwd-in__<br>
//!                                                          iifname vmap → fwd-out__<br>
//! chain nat-PREROUTING   nat prerouting dstnat (-100)     fib daddr type local → ports
//! chain nat-OUTPUT       nat output -100                  fib daddr type local → ports
//! chain nat-POSTROUTING  nat postrouting srcnat (100)     masquerade, hairpin masquerade
//! chain ports                                              one DNAT per published port
//! chain fwd-in__<br>     traffic into a bridge: established, DNAT'ed, ICC, else drop
//! chain fwd-out__<br>    traffic out of a bridge to a non-berth interface
//! ```
//!
//! Published ports' DNAT is accepted in `fwd-in__<br>` by `ct status dnat` rather than by
//! dockerd's per-port `ip daddr <container> <proto> dport <port> accept`: only connections
//! that really went through a DNAT rule get in, so a container's address is never reachable
//! directly from another host or from another berth network (dockerd needs an extra
//! "DROP DIRECT ACCESS" raw rule for that).
//!
//! With the userland proxy off, berth (elsewhere) turns `route_localnet` on for its bridges so
//! loopback clients can be DNAT'ed; the `raw-PREROUTING` chain then keeps packets with a
//! loopback source or destination that arrive on any interface but `lo` out (CVE-2020-8558).
//! The guards are there whatever the proxy setting: a port bound to `127.0.0.1` has a DNAT rule
//! in `nat-PREROUTING`'s reach, and DNAT happens before the kernel's martian check.
//!
//! What the rules need from the rest of berth (as with dockerd): IPv4 forwarding on; with the
//! proxy off, `route_localnet=1` on the bridges and hairpin mode on the bridge ports (with
//! `br_netfilter` active, a DNAT'ed packet back into its own container's bridge is bridged
//! out of the port it came in through); `icc=false` only holds between containers of one
//! bridge when `br_netfilter` is loaded (bridged frames skip IP forwarding otherwise).

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::IpNet;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, SetItem, Verdict, CT,
};
use nftables::schema::{self, NfCmd, NfListObject, NfObject, Nftables};
use nftables::stmt::{JumpTarget, Match, Operator, Statement, VerdictMap, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{FirewallDriver, FwNetwork, FwPort, FwState};
use crate::network::NetworkError;

/// The default table name of both families.
pub const DEFAULT_TABLE: &str = "berth";

/// The table (family `ip`) that [`dns_redirect`] fills inside a container's namespace.
pub const DNS_TABLE: &str = "berth-dns";

/// The embedded resolver's address inside every container (dockerd's).
const RESOLVER_IP: &str = "127.0.0.11";

/// Base chains (dockerd's names).
const CHAIN_RAW_PREROUTING: &str = "raw-PREROUTING";
const CHAIN_FORWARD: &str = "filter-FORWARD";
const CHAIN_NAT_PREROUTING: &str = "nat-PREROUTING";
const CHAIN_NAT_OUTPUT: &str = "nat-OUTPUT";
const CHAIN_NAT_POSTROUTING: &str = "nat-POSTROUTING";
/// The regular chain with one DNAT rule per published port.
const CHAIN_PORTS: &str = "ports";

/// Chain priorities, as `nft` names them.
const PRIO_RAW: i32 = -300;
const PRIO_FILTER: i32 = 0;
const PRIO_DSTNAT: i32 = -100;
const PRIO_NAT_OUTPUT: i32 = -100;
const PRIO_SRCNAT: i32 = 100;

/// The directories searched for `nft` after `$PATH`.
const NFT_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// An address family: which of the two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ip`: IPv4.
    V4,
    /// `ip6`: IPv6.
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    fn nf(self) -> NfFamily {
        match self {
            Family::V4 => NfFamily::IP,
            Family::V6 => NfFamily::IP6,
        }
    }

    /// The `nft` family keyword, which is also the payload protocol of addresses.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn of_addr(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// The loopback network of the family.
    fn loopback(self) -> (&'static str, u32) {
        match self {
            Family::V4 => ("127.0.0.0", 8),
            Family::V6 => ("::1", 128),
        }
    }
}

/// The `nft` binary, found at start.
pub struct Nft {
    pub program: String,
    /// The table name (`berth`; tests may use another).
    pub table: String,
}

impl Nft {
    /// Find `nft` (`$PATH`, `/usr/sbin`, `/sbin`); an error that names Debian's `nftables`
    /// package when it is missing.
    pub fn locate(table: &str) -> Result<Self, NetworkError> {
        check_table_name(table)?;
        let program = locate_program()?;
        Ok(Nft {
            program: program.to_string_lossy().into_owned(),
            table: table.to_string(),
        })
    }

    /// Run one batch through `nft -j -f -` in berthd's own namespace.
    fn run(&self, batch: &Nftables, what: &str) -> Result<(), NetworkError> {
        let payload = encode(batch, what)?;
        run_nft(
            Path::new(&self.program),
            &["-j", "-f", "-"],
            Some(&payload),
            None,
        )
        .map(drop)
        .map_err(|e| NetworkError::internal(format!("{what}: {e}")))
    }
}

impl FirewallDriver for Nft {
    /// One transaction for both families. Callers serialise calls (the state is theirs); two
    /// concurrent calls each stay atomic and the later one wins.
    fn apply(&self, state: &FwState) -> Result<(), NetworkError> {
        validate(state)?;
        let mut objects = Vec::new();
        for family in Family::ALL {
            objects.extend(ruleset(state, &self.table, family).objects.into_owned());
        }
        let batch = Nftables {
            objects: Cow::Owned(objects),
        };
        self.run(&batch, "apply nftables rules")
    }

    fn remove_all(&self) -> Result<(), NetworkError> {
        let mut objects = Vec::new();
        for family in Family::ALL {
            let mut b = Batch::new(family, &self.table);
            b.reset();
            objects.extend(b.objects);
        }
        let batch = Nftables {
            objects: Cow::Owned(objects),
        };
        self.run(&batch, "remove nftables rules")
    }

    fn dns_redirect(&self, netns: &Path, udp_port: u16, tcp_port: u16) -> Result<(), NetworkError> {
        dns_redirect_with(Path::new(&self.program), netns, udp_port, tcp_port)
    }

    fn name(&self) -> &'static str {
        "nftables"
    }
}

/// The DNS redirection rules inside a container's namespace (see
/// [`FirewallDriver::dns_redirect`]); `nft` runs with its network namespace switched in the
/// forked child, before exec.
pub fn dns_redirect(netns: &Path, udp_port: u16, tcp_port: u16) -> Result<(), NetworkError> {
    let program = locate_program()?;
    dns_redirect_with(&program, netns, udp_port, tcp_port)
}

fn dns_redirect_with(
    program: &Path,
    netns: &Path,
    udp_port: u16,
    tcp_port: u16,
) -> Result<(), NetworkError> {
    let what = format!("redirect dns in {}", netns.display());
    let ns = File::open(netns).map_err(|e| NetworkError::io(format!("{what}: open"), e))?;
    let payload = encode(&dns_ruleset(udp_port, tcp_port), &what)?;
    run_nft(program, &["-j", "-f", "-"], Some(&payload), Some(&ns))
        .map(drop)
        .map_err(|e| NetworkError::internal(format!("{what}: {e}")))
}

/// The batch [`dns_redirect`] applies (dockerd's `resolver_unix.go` rules, in nftables):
///
/// ```text
/// table ip berth-dns {
///     chain output { type nat hook output priority -100; policy accept;
///         ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:<udp_port>
///         ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:<tcp_port> }
///     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
///         ip saddr 127.0.0.11 udp sport <udp_port> snat to :53
///         ip saddr 127.0.0.11 tcp sport <tcp_port> snat to :53 }
/// }
/// ```
///
/// Idempotent: the table is added, deleted and declared again in the same transaction.
pub fn dns_ruleset(udp_port: u16, tcp_port: u16) -> Nftables<'static> {
    let mut b = Batch::new(Family::V4, DNS_TABLE);
    b.reset();
    b.add_table();
    b.base_chain("output", NfChainType::NAT, NfHook::Output, PRIO_NAT_OUTPUT);
    b.base_chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        PRIO_SRCNAT,
    );
    for (proto, port) in [("udp", udp_port), ("tcp", tcp_port)] {
        b.rule(
            "output",
            vec![
                eq(payload("ip", "daddr"), s(RESOLVER_IP)),
                eq(payload(proto, "dport"), num(53)),
                Statement::DNAT(Some(NAT {
                    addr: Some(s(RESOLVER_IP)),
                    family: None,
                    port: Some(num(port)),
                    flags: None,
                })),
            ],
        );
        b.rule(
            "postrouting",
            vec![
                eq(payload("ip", "saddr"), s(RESOLVER_IP)),
                eq(payload(proto, "sport"), num(port)),
                Statement::SNAT(Some(NAT {
                    addr: None,
                    family: None,
                    port: Some(num(53)),
                    flags: None,
                })),
            ],
        );
    }
    b.finish()
}

/// The batch that makes table `<family> <table>` hold exactly what `state` says of `family`
/// (see the module documentation for the layout). It starts with `add table` + `delete
/// table`; when the family has neither a network with a subnet of it nor a published port
/// to a container address of it, that is all, and the table is gone after the transaction.
pub fn ruleset(state: &FwState, table: &str, family: Family) -> Nftables<'static> {
    let mut b = Batch::new(family, table);
    b.reset();

    let l3 = family.as_str();
    let networks: Vec<&FwNetwork> = state
        .networks
        .iter()
        .filter(|n| n.subnets.iter().any(|s| Family::of_net(s) == family))
        .collect();
    let ports: Vec<&FwPort> = state
        .ports
        .iter()
        .filter(|p| port_in_family(state, p, family))
        .collect();
    if networks.is_empty() && ports.is_empty() {
        return b.finish();
    }

    b.add_table();

    // Base chains, each with policy accept: other tables keep deciding.
    if family == Family::V4 {
        b.base_chain(
            CHAIN_RAW_PREROUTING,
            NfChainType::Filter,
            NfHook::Prerouting,
            PRIO_RAW,
        );
    }
    b.base_chain(
        CHAIN_FORWARD,
        NfChainType::Filter,
        NfHook::Forward,
        PRIO_FILTER,
    );
    b.base_chain(
        CHAIN_NAT_PREROUTING,
        NfChainType::NAT,
        NfHook::Prerouting,
        PRIO_DSTNAT,
    );
    b.base_chain(
        CHAIN_NAT_OUTPUT,
        NfChainType::NAT,
        NfHook::Output,
        PRIO_NAT_OUTPUT,
    );
    b.base_chain(
        CHAIN_NAT_POSTROUTING,
        NfChainType::NAT,
        NfHook::Postrouting,
        PRIO_SRCNAT,
    );
    b.chain(CHAIN_PORTS);
    for n in &networks {
        b.chain(&fwd_in_chain(&n.bridge));
        b.chain(&fwd_out_chain(&n.bridge));
    }

    // CVE-2020-8558: nothing from or to 127.0.0.0/8 may come in through another interface
    // than lo, whether route_localnet is on (proxy off) or a DNAT rule would reach it first.
    if family == Family::V4 {
        let (lo_addr, lo_len) = family.loopback();
        for field in ["daddr", "saddr"] {
            b.rule(
                CHAIN_RAW_PREROUTING,
                vec![
                    ne(meta(MetaKey::Iifname), s("lo")),
                    eq(payload(l3, field), prefix(lo_addr, lo_len)),
                    Statement::Drop(None),
                ],
            );
        }
    }

    // Internal networks first: nothing leaves or enters them, not even DNAT'ed traffic to
    // another network's published port (the dispatch below would accept that in the
    // destination's fwd-in before the internal bridge's fwd-out is reached).
    for n in networks.iter().filter(|n| n.internal) {
        let br = n.bridge.as_str();
        b.rule(
            CHAIN_FORWARD,
            vec![
                eq(meta(MetaKey::Iifname), s(br)),
                ne(meta(MetaKey::Oifname), s(br)),
                Statement::Drop(None),
            ],
        );
        b.rule(
            CHAIN_FORWARD,
            vec![
                eq(meta(MetaKey::Oifname), s(br)),
                ne(meta(MetaKey::Iifname), s(br)),
                Statement::Drop(None),
            ],
        );
    }
    // Forwarding: one dispatch on the output bridge, one on the input bridge.
    if !networks.is_empty() {
        b.rule(
            CHAIN_FORWARD,
            vec![vmap(
                MetaKey::Oifname,
                networks
                    .iter()
                    .map(|n| (n.bridge.clone(), fwd_in_chain(&n.bridge))),
            )],
        );
        b.rule(
            CHAIN_FORWARD,
            vec![vmap(
                MetaKey::Iifname,
                networks
                    .iter()
                    .map(|n| (n.bridge.clone(), fwd_out_chain(&n.bridge))),
            )],
        );
    }
    for n in &networks {
        network_rules(&mut b, n, state.userland_proxy, family);
    }

    // DNAT of published ports.
    if !ports.is_empty() {
        b.rule(
            CHAIN_NAT_PREROUTING,
            vec![fib_local(FibFlag::Daddr), jump(CHAIN_PORTS)],
        );
        // Loopback clients go through the proxy when it runs (and always in IPv6, where
        // ::1 can never leave lo); without it they are DNAT'ed too (route_localnet).
        let mut output = Vec::new();
        if state.userland_proxy || family == Family::V6 {
            let (lo_addr, lo_len) = family.loopback();
            output.push(ne(payload(l3, "daddr"), prefix(lo_addr, lo_len)));
        }
        output.push(fib_local(FibFlag::Daddr));
        output.push(jump(CHAIN_PORTS));
        b.rule(CHAIN_NAT_OUTPUT, output);
    }
    for p in &ports {
        let mut rule = Vec::new();
        if state.userland_proxy {
            // Containers of the port's own bridge reach it through the proxy (dockerd).
            rule.push(ne(meta(MetaKey::Iifname), s(p.bridge.clone())));
        }
        if family == Family::V6 {
            rule.push(ne(payload(l3, "saddr"), prefix("fe80::", 10)));
        }
        if let Some(ip) = p.host_ip.filter(|ip| !ip.is_unspecified()) {
            rule.push(eq(payload(l3, "daddr"), s(ip.to_string())));
        }
        rule.push(eq(payload(p.proto.as_str(), "dport"), num(p.host_port)));
        rule.push(Statement::DNAT(Some(NAT {
            addr: Some(s(p.container_ip.to_string())),
            family: None,
            port: Some(num(p.container_port)),
            flags: None,
        })));
        b.rule(CHAIN_PORTS, rule);
    }

    b.finish()
}

/// The forwarding and NAT rules of one network in `family`.
fn network_rules(b: &mut Batch, n: &FwNetwork, userland_proxy: bool, family: Family) {
    let l3 = family.as_str();
    let br = n.bridge.as_str();
    let fwd_in = fwd_in_chain(br);
    let fwd_out = fwd_out_chain(br);
    let icc = if n.icc {
        Statement::Accept(None)
    } else {
        Statement::Drop(None)
    };

    // Into the bridge (oifname == br).
    b.rule(&fwd_in, vec![ct_established(), Statement::Accept(None)]);
    if n.internal {
        b.rule(
            &fwd_in,
            vec![ne(meta(MetaKey::Iifname), s(br)), Statement::Drop(None)],
        );
        b.rule(&fwd_in, vec![icc]);
    } else {
        // Published ports (also from the same bridge: hairpin, whatever icc says, as the
        // proxy would do).
        b.rule(&fwd_in, vec![ct_dnat(), Statement::Accept(None)]);
        b.rule(&fwd_in, vec![eq(meta(MetaKey::Iifname), s(br)), icc]);
        // Anything else, from other berth bridges too (isolation) or from outside.
        b.rule(&fwd_in, vec![Statement::Drop(None)]);
    }

    // Out of the bridge to an interface that is no berth bridge (those went to fwd-in).
    b.rule(&fwd_out, vec![ct_established(), Statement::Accept(None)]);
    if n.internal {
        b.rule(
            &fwd_out,
            vec![ne(meta(MetaKey::Oifname), s(br)), Statement::Drop(None)],
        );
        return;
    }
    b.rule(&fwd_out, vec![Statement::Accept(None)]);

    let subnets: Vec<&IpNet> = n
        .subnets
        .iter()
        .filter(|s| Family::of_net(s) == family)
        .collect();
    if n.masquerade {
        for net in &subnets {
            b.rule(
                CHAIN_NAT_POSTROUTING,
                vec![
                    ne(meta(MetaKey::Oifname), s(br)),
                    eq(payload(l3, "saddr"), net_expr(net)),
                    Statement::Masquerade(None),
                ],
            );
        }
    }
    if !userland_proxy {
        if family == Family::V4 {
            // Loopback (and other host-sourced) clients DNAT'ed into the bridge: the container
            // must answer the host, not 127.0.0.1.
            b.rule(
                CHAIN_NAT_POSTROUTING,
                vec![
                    eq(meta(MetaKey::Oifname), s(br)),
                    fib_local(FibFlag::Saddr),
                    ct_dnat(),
                    Statement::Masquerade(None),
                ],
            );
        }
        // Hairpin: a container reaching a published port of its own bridge through a host
        // address; without masquerade the answer would bypass the host's conntrack.
        for net in &subnets {
            b.rule(
                CHAIN_NAT_POSTROUTING,
                vec![
                    eq(meta(MetaKey::Oifname), s(br)),
                    eq(payload(l3, "saddr"), net_expr(net)),
                    ct_dnat(),
                    Statement::Masquerade(None),
                ],
            );
        }
    }
}

/// Whether `p` gets a DNAT rule in `family`'s table: its container address is of the family,
/// its host address (if any) too (a v6 host address to a v4 container is the proxy's job), it
/// is not on an internal network, and a port bound to loopback with the proxy on is the
/// proxy's alone.
fn port_in_family(state: &FwState, p: &FwPort, family: Family) -> bool {
    if Family::of_addr(&p.container_ip) != family {
        return false;
    }
    if let Some(ip) = &p.host_ip {
        if Family::of_addr(ip) != family {
            return false;
        }
        if ip.is_loopback() && (state.userland_proxy || family == Family::V6) {
            return false;
        }
    }
    !state
        .networks
        .iter()
        .any(|n| n.bridge == p.bridge && n.internal)
}

fn fwd_in_chain(bridge: &str) -> String {
    format!("fwd-in__{bridge}")
}

fn fwd_out_chain(bridge: &str) -> String {
    format!("fwd-out__{bridge}")
}

/// What `nft` would refuse or what would make the batch ambiguous, as a clear error before
/// running it.
fn validate(state: &FwState) -> Result<(), NetworkError> {
    let mut seen = std::collections::HashSet::new();
    for n in &state.networks {
        check_ifname(&n.bridge)?;
        if !seen.insert(n.bridge.as_str()) {
            return Err(NetworkError::invalid(format!(
                "firewall: bridge {} appears in two networks",
                n.bridge
            )));
        }
    }
    for p in &state.ports {
        check_ifname(&p.bridge)?;
        if p.host_port == 0 || p.container_port == 0 {
            return Err(NetworkError::invalid(format!(
                "firewall: port 0 in mapping {}:{} -> {}:{}/{}",
                p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                p.host_port,
                p.container_ip,
                p.container_port,
                p.proto.as_str()
            )));
        }
    }
    Ok(())
}

fn check_ifname(name: &str) -> Result<(), NetworkError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && !name.contains(['/', '"', '\\'])
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(NetworkError::invalid(format!(
            "firewall: invalid bridge name {name:?}"
        )))
    }
}

fn check_table_name(table: &str) -> Result<(), NetworkError> {
    let ok = !table.is_empty()
        && table.len() <= 64
        && table.starts_with(|c: char| c.is_ascii_alphabetic())
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NetworkError::invalid(format!(
            "invalid nftables table name {table:?}"
        )))
    }
}

/// `nft` in `$PATH`, `/usr/sbin` or `/sbin`.
fn locate_program() -> Result<PathBuf, NetworkError> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(NFT_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("nft"))
        .find(|p| is_executable(p))
        .ok_or_else(|| NetworkError::internal("nft not found: install Debian's nftables package"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn encode(batch: &Nftables, what: &str) -> Result<String, NetworkError> {
    serde_json::to_string(batch)
        .map_err(|e| NetworkError::internal(format!("{what}: encode nftables json: {e}")))
}

/// Run `program args…` with `stdin` fed in, inside the network namespace `netns` if given;
/// its stdout, or an error with its (trimmed) stderr. Not the `nftables` crate's runner: that
/// one lets stderr through to berthd's own instead of returning it, and cannot enter a
/// namespace.
fn run_nft(
    program: &Path,
    args: &[&str],
    stdin: Option<&str>,
    netns: Option<&File>,
) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .current_dir("/")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = netns {
        let fd = ns.as_raw_fd();
        // SAFETY: the child only calls setns(2), an async-signal-safe system call, on a
        // descriptor opened before the fork (`ns` outlives `spawn`); errno is read without
        // allocating. The descriptor is close-on-exec, so `nft` does not inherit it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("run {}: {e}", program.display()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // nft reads its whole input before it answers, so writing first cannot deadlock.
        if let Err(e) = pipe.write_all(input.as_bytes()) {
            let out = child.wait_with_output();
            let stderr = out
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_default();
            return Err(if stderr.is_empty() {
                format!("write to {}: {e}", program.display())
            } else {
                stderr
            });
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait for {}: {e}", program.display()))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(if stderr.is_empty() {
        format!("{} failed ({})", program.display(), out.status)
    } else {
        stderr
    })
}

/// Objects of one family's table, in order.
struct Batch {
    family: Family,
    table: String,
    objects: Vec<NfObject<'static>>,
}

impl Batch {
    fn new(family: Family, table: &str) -> Self {
        Batch {
            family,
            table: table.to_string(),
            objects: Vec::new(),
        }
    }

    fn table(&self) -> schema::Table<'static> {
        schema::Table {
            family: self.family.nf(),
            name: Cow::Owned(self.table.clone()),
            handle: None,
        }
    }

    fn cmd(&mut self, cmd: NfCmd<'static>) {
        self.objects.push(NfObject::CmdObject(cmd));
    }

    /// `add table` + `delete table`: the table is gone, whether it existed or not.
    fn reset(&mut self) {
        self.cmd(NfCmd::Add(NfListObject::Table(self.table())));
        self.cmd(NfCmd::Delete(NfListObject::Table(self.table())));
    }

    fn add_table(&mut self) {
        self.cmd(NfCmd::Add(NfListObject::Table(self.table())));
    }

    fn chain_obj(&self, name: &str) -> schema::Chain<'static> {
        schema::Chain {
            family: self.family.nf(),
            table: Cow::Owned(self.table.clone()),
            name: Cow::Owned(name.to_string()),
            ..Default::default()
        }
    }

    fn base_chain(&mut self, name: &str, kind: NfChainType, hook: NfHook, prio: i32) {
        let chain = schema::Chain {
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(NfChainPolicy::Accept),
            ..self.chain_obj(name)
        };
        self.cmd(NfCmd::Add(NfListObject::Chain(chain)));
    }

    fn chain(&mut self, name: &str) {
        let chain = self.chain_obj(name);
        self.cmd(NfCmd::Add(NfListObject::Chain(chain)));
    }

    fn rule(&mut self, chain: &str, expr: Vec<Statement<'static>>) {
        let rule = schema::Rule {
            family: self.family.nf(),
            table: Cow::Owned(self.table.clone()),
            chain: Cow::Owned(chain.to_string()),
            expr: Cow::Owned(expr),
            handle: None,
            index: None,
            comment: None,
        };
        self.cmd(NfCmd::Add(NfListObject::Rule(rule)));
    }

    fn finish(self) -> Nftables<'static> {
        Nftables {
            objects: Cow::Owned(self.objects),
        }
    }
}

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn num(n: u16) -> Expression<'static> {
    Expression::Number(u32::from(n))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

fn prefix(addr: &str, len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(addr)),
        len,
    }))
}

/// A subnet as `nft` wants it: host bits cleared, a single address without a prefix.
fn net_expr(net: &IpNet) -> Expression<'static> {
    let net = net.trunc();
    if net.prefix_len() == net.max_prefix_len() {
        s(net.addr().to_string())
    } else {
        prefix(&net.network().to_string(), u32::from(net.prefix_len()))
    }
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

fn ne(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::NEQ, right)
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

/// `ct state established,related`
fn ct_established() -> Statement<'static> {
    matches(
        ct("state"),
        Operator::IN,
        Expression::List(vec![s("established"), s("related")]),
    )
}

/// `ct status dnat`
fn ct_dnat() -> Statement<'static> {
    matches(ct("status"), Operator::IN, s("dnat"))
}

/// `fib <flag> type local`
fn fib_local(flag: FibFlag) -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: [flag].into_iter().collect(),
        })),
        s("local"),
    )
}

fn jump(target: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: Cow::Owned(target.to_string()),
    })
}

/// `<key> vmap { name : jump chain, … }`
fn vmap(key: MetaKey, entries: impl Iterator<Item = (String, String)>) -> Statement<'static> {
    Statement::VerdictMap(VerdictMap {
        key: meta(key),
        data: Expression::Named(NamedExpression::Set(
            entries
                .map(|(name, chain)| {
                    SetItem::Mapping(
                        s(name),
                        Expression::Verdict(Verdict::Jump(JumpTarget {
                            target: Cow::Owned(chain),
                        })),
                    )
                })
                .collect(),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::firewall::Proto;
    use serde_json::Value;

    fn net(bridge: &str, subnets: &[&str]) -> FwNetwork {
        FwNetwork {
            bridge: bridge.to_string(),
            subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
            masquerade: true,
            icc: true,
            internal: false,
        }
    }

    fn port(proto: Proto, host: Option<&str>, hp: u16, bridge: &str, cip: &str, cp: u16) -> FwPort {
        FwPort {
            proto,
            host_ip: host.map(|h| h.parse().unwrap()),
            host_port: hp,
            bridge: bridge.to_string(),
            container_ip: cip.parse().unwrap(),
            container_port: cp,
        }
    }

    fn state(networks: Vec<FwNetwork>, ports: Vec<FwPort>, userland_proxy: bool) -> FwState {
        FwState {
            networks,
            ports,
            userland_proxy,
        }
    }

    /// An nft-like rendering of one expression of the JSON schema (the subset berth uses).
    fn expr(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Array(items) => items.iter().map(expr).collect::<Vec<_>>().join(","),
            Value::Object(o) => {
                let (k, v) = o.iter().next().unwrap();
                match k.as_str() {
                    "meta" => v["key"].as_str().unwrap().to_string(),
                    "payload" => format!(
                        "{} {}",
                        v["protocol"].as_str().unwrap(),
                        v["field"].as_str().unwrap()
                    ),
                    "ct" => format!("ct {}", v["key"].as_str().unwrap()),
                    "fib" => format!("fib {} {}", expr(&v["flags"]), expr(&v["result"])),
                    "prefix" => format!("{}/{}", expr(&v["addr"]), v["len"]),
                    "set" => {
                        let items: Vec<String> = v
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|i| format!("{} : {}", expr(&i[0]), expr(&i[1])))
                            .collect();
                        format!("{{ {} }}", items.join(", "))
                    }
                    "jump" => format!("jump {}", v["target"].as_str().unwrap()),
                    other => panic!("unexpected expression {other}: {v}"),
                }
            }
            other => panic!("unexpected expression {other}"),
        }
    }

    fn stmt(v: &Value) -> String {
        let (k, v) = v.as_object().unwrap().iter().next().unwrap();
        match k.as_str() {
            "match" => {
                let (l, r) = (expr(&v["left"]), expr(&v["right"]));
                match v["op"].as_str().unwrap() {
                    "==" | "in" => format!("{l} {r}"),
                    op => format!("{l} {op} {r}"),
                }
            }
            "accept" | "drop" | "masquerade" => k.clone(),
            "jump" => format!("jump {}", v["target"].as_str().unwrap()),
            "vmap" => format!("{} vmap {}", expr(&v["key"]), expr(&v["data"])),
            "dnat" | "snat" => {
                let addr = v.get("addr").map(expr).unwrap_or_default();
                let addr = if addr.contains(':') {
                    format!("[{addr}]")
                } else {
                    addr
                };
                format!("{k} to {addr}:{}", v["port"])
            }
            other => panic!("unexpected statement {other}: {v}"),
        }
    }

    /// Every command of a batch, one line each: `add table ip t`, `add chain ip t c [...]`,
    /// `ip t c: <rule>`.
    fn lines(batch: &Nftables) -> Vec<String> {
        let v = serde_json::to_value(batch).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|cmd| {
                let (verb, obj) = cmd.as_object().unwrap().iter().next().unwrap();
                let (kind, o) = obj.as_object().unwrap().iter().next().unwrap();
                match kind.as_str() {
                    "table" => format!("{verb} table {} {}", expr(&o["family"]), expr(&o["name"])),
                    "chain" => {
                        let mut line = format!(
                            "{verb} chain {} {} {}",
                            expr(&o["family"]),
                            expr(&o["table"]),
                            expr(&o["name"])
                        );
                        if let Some(hook) = o.get("hook") {
                            line += &format!(
                                " [{} {} {} {}]",
                                expr(&o["type"]),
                                expr(hook),
                                o["prio"],
                                expr(&o["policy"])
                            );
                        }
                        line
                    }
                    "rule" => {
                        assert_eq!(verb, "add");
                        let stmts: Vec<String> =
                            o["expr"].as_array().unwrap().iter().map(stmt).collect();
                        format!(
                            "{} {} {}: {}",
                            expr(&o["family"]),
                            expr(&o["table"]),
                            expr(&o["chain"]),
                            stmts.join(" ")
                        )
                    }
                    other => panic!("unexpected object {other}"),
                }
            })
            .collect()
    }

    /// The rules of one chain of a v4 or v6 ruleset, without the `ip t chain: ` prefix.
    fn chain_rules(batch: &Nftables, chain: &str) -> Vec<String> {
        lines(batch)
            .into_iter()
            .filter_map(|l| {
                let (head, rule) = l.split_once(": ")?;
                (head.rsplit(' ').next() == Some(chain)).then(|| rule.to_string())
            })
            .collect()
    }

    fn v4(st: &FwState) -> Nftables<'static> {
        ruleset(st, "t", Family::V4)
    }

    fn v6(st: &FwState) -> Nftables<'static> {
        ruleset(st, "t", Family::V6)
    }

    fn assert_gone(batch: &Nftables, family: &str) {
        assert_eq!(
            lines(batch),
            vec![
                format!("add table {family} t"),
                format!("delete table {family} t")
            ]
        );
    }

    #[test]
    fn empty_state_leaves_no_table() {
        let st = FwState::default();
        assert_gone(&v4(&st), "ip");
        assert_gone(&v6(&st), "ip6");
        let st = state(vec![], vec![], true);
        assert_gone(&v4(&st), "ip");
    }

    #[test]
    fn base_chains_have_dockerd_priorities_and_accept_policy() {
        let st = state(vec![net("br0", &["10.0.0.0/24"])], vec![], true);
        let l = lines(&v4(&st));
        assert_eq!(
            l[..3],
            ["add table ip t", "delete table ip t", "add table ip t"]
        );
        for want in [
            "add chain ip t raw-PREROUTING [filter prerouting -300 accept]",
            "add chain ip t filter-FORWARD [filter forward 0 accept]",
            "add chain ip t nat-PREROUTING [nat prerouting -100 accept]",
            "add chain ip t nat-OUTPUT [nat output -100 accept]",
            "add chain ip t nat-POSTROUTING [nat postrouting 100 accept]",
            "add chain ip t ports",
            "add chain ip t fwd-in__br0",
            "add chain ip t fwd-out__br0",
        ] {
            assert!(l.contains(&want.to_string()), "{want} missing from {l:#?}");
        }
        // Every object of the batch is in table `t` of family ip: nothing else is touched.
        let v = serde_json::to_value(v4(&st)).unwrap();
        for cmd in v["nftables"].as_array().unwrap() {
            let obj = cmd.as_object().unwrap().values().next().unwrap();
            let o = obj.as_object().unwrap().values().next().unwrap();
            assert_eq!(o["family"], "ip");
            assert_eq!(o.get("table").or(o.get("name")).unwrap(), "t");
        }
        assert_eq!(
            chain_rules(&v4(&st), "raw-PREROUTING"),
            [
                "iifname != lo ip daddr 127.0.0.0/8 drop",
                "iifname != lo ip saddr 127.0.0.0/8 drop"
            ]
        );
    }

    #[test]
    fn masquerade_on_and_off() {
        let mut n = net("br0", &["10.0.0.0/24", "10.0.1.7/24"]);
        let st = state(vec![n.clone()], vec![], true);
        assert_eq!(
            chain_rules(&v4(&st), "nat-POSTROUTING"),
            [
                "oifname != br0 ip saddr 10.0.0.0/24 masquerade",
                // Host bits cleared.
                "oifname != br0 ip saddr 10.0.1.0/24 masquerade",
            ]
        );
        n.masquerade = false;
        let st = state(vec![n], vec![], true);
        assert!(chain_rules(&v4(&st), "nat-POSTROUTING").is_empty());
        // Without masquerade, outbound traffic is still forwarded.
        assert!(chain_rules(&v4(&st), "fwd-out__br0").contains(&"accept".to_string()));
    }

    #[test]
    fn forward_rules_of_a_network_with_icc() {
        let st = state(vec![net("br0", &["10.0.0.0/24"])], vec![], true);
        let b = v4(&st);
        assert_eq!(
            chain_rules(&b, "filter-FORWARD"),
            [
                "oifname vmap { br0 : jump fwd-in__br0 }",
                "iifname vmap { br0 : jump fwd-out__br0 }"
            ]
        );
        assert_eq!(
            chain_rules(&b, "fwd-in__br0"),
            [
                "ct state established,related accept",
                "ct status dnat accept",
                "iifname br0 accept",
                "drop"
            ]
        );
        assert_eq!(
            chain_rules(&b, "fwd-out__br0"),
            ["ct state established,related accept", "accept"]
        );
    }

    #[test]
    fn icc_off_drops_bridge_to_same_bridge() {
        let mut n = net("br0", &["10.0.0.0/24"]);
        n.icc = false;
        let st = state(vec![n], vec![], true);
        assert_eq!(
            chain_rules(&v4(&st), "fwd-in__br0"),
            [
                "ct state established,related accept",
                "ct status dnat accept",
                "iifname br0 drop",
                "drop"
            ]
        );
    }

    #[test]
    fn internal_network_keeps_traffic_on_its_bridge() {
        for icc in [true, false] {
            let mut n = net("br-int", &["10.1.0.0/24", "fd00:1::/64"]);
            n.internal = true;
            n.icc = icc;
            let verdict = if icc { "accept" } else { "drop" };
            let p = port(Proto::Tcp, None, 8080, "br-int", "10.1.0.2", 80);
            let st = state(vec![n], vec![p], false);
            for b in [v4(&st), v6(&st)] {
                assert_eq!(
                    chain_rules(&b, "fwd-in__br-int"),
                    [
                        "ct state established,related accept",
                        "iifname != br-int drop",
                        verdict
                    ]
                );
                assert_eq!(
                    chain_rules(&b, "fwd-out__br-int"),
                    [
                        "ct state established,related accept",
                        "oifname != br-int drop"
                    ]
                );
                // No masquerade, no published ports, even with the proxy off.
                assert!(chain_rules(&b, "nat-POSTROUTING").is_empty());
                assert!(chain_rules(&b, "ports").is_empty());
                assert!(chain_rules(&b, "nat-PREROUTING").is_empty());
            }
        }
    }

    #[test]
    fn two_networks_are_isolated() {
        let st = state(
            vec![net("br-a", &["10.0.0.0/24"]), net("br-b", &["10.0.1.0/24"])],
            vec![],
            true,
        );
        let b = v4(&st);
        assert_eq!(
            chain_rules(&b, "filter-FORWARD"),
            [
                "oifname vmap { br-a : jump fwd-in__br-a, br-b : jump fwd-in__br-b }",
                "iifname vmap { br-a : jump fwd-out__br-a, br-b : jump fwd-out__br-b }"
            ]
        );
        // Into br-b: only established, DNAT'ed or br-b's own traffic; br-a's ends in the drop,
        // and the dispatch on the output bridge comes first, so fwd-out__br-a (which accepts)
        // never sees br-a → br-b.
        for (me, other) in [("br-a", "br-b"), ("br-b", "br-a")] {
            let rules = chain_rules(&b, &format!("fwd-in__{me}"));
            assert_eq!(rules.last().unwrap(), "drop");
            assert!(rules.iter().all(|r| !r.contains(other)), "{rules:?}");
            let accepts: Vec<_> = rules.iter().filter(|r| r.ends_with("accept")).collect();
            assert_eq!(
                accepts,
                [
                    "ct state established,related accept",
                    "ct status dnat accept",
                    &format!("iifname {me} accept")
                ]
            );
        }
    }

    #[test]
    fn ports_with_and_without_host_ip() {
        let st = state(
            vec![net("br0", &["10.0.0.0/24"])],
            vec![
                port(Proto::Tcp, None, 8080, "br0", "10.0.0.2", 80),
                port(Proto::Udp, Some("192.0.2.1"), 5353, "br0", "10.0.0.2", 53),
                port(Proto::Tcp, Some("0.0.0.0"), 8443, "br0", "10.0.0.3", 443),
                // A v6 host address to a v4 container is the proxy's.
                port(Proto::Tcp, Some("2001:db8::1"), 8081, "br0", "10.0.0.2", 81),
            ],
            true,
        );
        let b = v4(&st);
        assert_eq!(
            chain_rules(&b, "ports"),
            [
                "iifname != br0 tcp dport 8080 dnat to 10.0.0.2:80",
                "iifname != br0 ip daddr 192.0.2.1 udp dport 5353 dnat to 10.0.0.2:53",
                "iifname != br0 tcp dport 8443 dnat to 10.0.0.3:443",
            ]
        );
        assert_eq!(
            chain_rules(&b, "nat-PREROUTING"),
            ["fib daddr type local jump ports"]
        );
        // Only v4 content: the v6 table goes.
        assert_gone(&v6(&st), "ip6");
    }

    #[test]
    fn userland_proxy_on_keeps_loopback_for_the_proxy() {
        let st = state(
            vec![net("br0", &["10.0.0.0/24"])],
            vec![
                port(Proto::Tcp, None, 8080, "br0", "10.0.0.2", 80),
                port(Proto::Tcp, Some("127.0.0.1"), 8081, "br0", "10.0.0.2", 81),
            ],
            true,
        );
        let b = v4(&st);
        assert_eq!(
            chain_rules(&b, "nat-OUTPUT"),
            ["ip daddr != 127.0.0.0/8 fib daddr type local jump ports"]
        );
        // The loopback-bound port is the proxy's alone; the own bridge goes through it too.
        assert_eq!(
            chain_rules(&b, "ports"),
            ["iifname != br0 tcp dport 8080 dnat to 10.0.0.2:80"]
        );
        // No hairpin masquerade.
        assert_eq!(
            chain_rules(&b, "nat-POSTROUTING"),
            ["oifname != br0 ip saddr 10.0.0.0/24 masquerade"]
        );
    }

    #[test]
    fn userland_proxy_off_dnats_loopback_and_hairpins() {
        let st = state(
            vec![net("br0", &["10.0.0.0/24"])],
            vec![
                port(Proto::Tcp, None, 8080, "br0", "10.0.0.2", 80),
                port(Proto::Tcp, Some("127.0.0.1"), 8081, "br0", "10.0.0.2", 81),
            ],
            false,
        );
        let b = v4(&st);
        assert_eq!(
            chain_rules(&b, "nat-OUTPUT"),
            ["fib daddr type local jump ports"]
        );
        assert_eq!(
            chain_rules(&b, "nat-PREROUTING"),
            ["fib daddr type local jump ports"]
        );
        // The own bridge is DNAT'ed too (hairpin).
        assert_eq!(
            chain_rules(&b, "ports"),
            [
                "tcp dport 8080 dnat to 10.0.0.2:80",
                "ip daddr 127.0.0.1 tcp dport 8081 dnat to 10.0.0.2:81",
            ]
        );
        assert_eq!(
            chain_rules(&b, "nat-POSTROUTING"),
            [
                "oifname != br0 ip saddr 10.0.0.0/24 masquerade",
                "oifname br0 fib saddr type local ct status dnat masquerade",
                "oifname br0 ip saddr 10.0.0.0/24 ct status dnat masquerade",
            ]
        );
        // Remote packets for 127.0.0.1:8081 never reach the DNAT (CVE-2020-8558).
        assert!(chain_rules(&b, "raw-PREROUTING")
            .contains(&"iifname != lo ip daddr 127.0.0.0/8 drop".to_string()));
        // A DNAT'ed connection from the same bridge is accepted before icc decides.
        let mut n = st.networks[0].clone();
        n.icc = false;
        let st = state(vec![n], st.ports.clone(), false);
        let rules = chain_rules(&v4(&st), "fwd-in__br0");
        let dnat = rules
            .iter()
            .position(|r| r == "ct status dnat accept")
            .unwrap();
        let icc = rules.iter().position(|r| r == "iifname br0 drop").unwrap();
        assert!(dnat < icc);
    }

    #[test]
    fn ipv6_network_and_ports() {
        let st = state(
            vec![
                net("br0", &["10.0.0.0/24", "fd00::/64"]),
                net("br4", &["10.0.1.0/24"]),
            ],
            vec![
                port(Proto::Tcp, None, 8080, "br0", "fd00::2", 80),
                port(Proto::Tcp, None, 8080, "br0", "10.0.0.2", 80),
                port(Proto::Tcp, Some("::1"), 8082, "br0", "fd00::2", 82),
            ],
            false,
        );
        let b = v6(&st);
        let l = lines(&b);
        assert!(!l.iter().any(|l| l.contains("raw-PREROUTING")));
        assert!(!l.iter().any(|l| l.contains("br4")), "{l:#?}");
        assert_eq!(
            chain_rules(&b, "ports"),
            ["ip6 saddr != fe80::/10 tcp dport 8080 dnat to [fd00::2]:80"]
        );
        assert_eq!(
            chain_rules(&b, "nat-OUTPUT"),
            ["ip6 daddr != ::1/128 fib daddr type local jump ports"]
        );
        assert_eq!(
            chain_rules(&b, "nat-POSTROUTING"),
            [
                "oifname != br0 ip6 saddr fd00::/64 masquerade",
                "oifname br0 ip6 saddr fd00::/64 ct status dnat masquerade",
            ]
        );
        assert_eq!(
            chain_rules(&v4(&st), "ports"),
            ["tcp dport 8080 dnat to 10.0.0.2:80"]
        );
    }

    #[test]
    fn dns_rules() {
        let b = dns_ruleset(40000, 40001);
        assert_eq!(
            lines(&b),
            [
                "add table ip berth-dns",
                "delete table ip berth-dns",
                "add table ip berth-dns",
                "add chain ip berth-dns output [nat output -100 accept]",
                "add chain ip berth-dns postrouting [nat postrouting 100 accept]",
                "ip berth-dns output: ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40000",
                "ip berth-dns postrouting: ip saddr 127.0.0.11 udp sport 40000 snat to :53",
                "ip berth-dns output: ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40001",
                "ip berth-dns postrouting: ip saddr 127.0.0.11 tcp sport 40001 snat to :53",
            ]
        );
    }

    #[test]
    fn invalid_states_are_refused_before_nft_runs() {
        let nft = Nft {
            program: "/nonexistent/nft".into(),
            table: "t".into(),
        };
        let st = state(
            vec![net("br0", &["10.0.0.0/24"]), net("br0", &["10.0.1.0/24"])],
            vec![],
            true,
        );
        let e = nft.apply(&st).unwrap_err();
        assert_eq!(e.message(), "firewall: bridge br0 appears in two networks");
        let st = state(vec![net("a\"b", &["10.0.0.0/24"])], vec![], true);
        assert!(nft
            .apply(&st)
            .unwrap_err()
            .message()
            .contains("invalid bridge name"));
        // A valid state reaches nft, whose absence is reported with context.
        let e = nft.apply(&FwState::default()).unwrap_err();
        assert!(
            e.message()
                .starts_with("apply nftables rules: run /nonexistent/nft:"),
            "{e}"
        );
        assert!(Nft::locate("bad name").is_err());
        assert!(Nft::locate("").is_err());
    }

    // ---- Real nftables, each test inside its own throwaway network namespace. ----

    /// `nft` for a root test, or `None` (with a message) when the test cannot run here.
    fn real_nft(table: &str) -> Option<Nft> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root for network namespaces and nftables");
            return None;
        }
        match Nft::locate(table) {
            Ok(nft) => Some(nft),
            Err(e) => {
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    /// Run `f` on a new thread that has unshared its network namespace (so `nft` children it
    /// spawns see an empty ruleset, never the host's).
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(CLONE_NEWNET) only moves this thread into a new namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    fn nft_cmd(nft: &Nft, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        run_nft(Path::new(&nft.program), args, stdin, None)
    }

    fn list(nft: &Nft, family: &str, table: &str) -> Option<String> {
        nft_cmd(nft, &["list", "table", family, table], None).ok()
    }

    const FOREIGN: &str = "table ip other {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n";

    #[test]
    fn real_apply_and_remove_all_in_a_netns() {
        let Some(nft) = real_nft("berth-t-apply") else {
            return;
        };
        in_new_netns(move || {
            nft_cmd(&nft, &["-f", "-"], Some(FOREIGN)).unwrap();
            let foreign = list(&nft, "ip", "other").unwrap();

            let mut st = state(
                vec![
                    net("br-a", &["10.0.0.0/24"]),
                    net("br-b", &["10.0.1.0/24"]),
                    net("br-c", &["10.0.2.0/24"]),
                ],
                (0..10)
                    .map(|i| port(Proto::Tcp, None, 8000 + i, "br-a", "10.0.0.2", 80 + i))
                    .collect(),
                true,
            );
            st.ports.push(port(
                Proto::Udp,
                Some("127.0.0.1"),
                53,
                "br-b",
                "10.0.1.2",
                53,
            ));
            let started = std::time::Instant::now();
            nft.apply(&st).unwrap();
            eprintln!("apply of 3 networks, 11 ports: {:?}", started.elapsed());
            let text = list(&nft, "ip", "berth-t-apply").unwrap();
            for want in [
                "type filter hook forward priority filter; policy accept;",
                "type nat hook prerouting priority dstnat; policy accept;",
                "type nat hook output priority -100; policy accept;",
                "type nat hook postrouting priority srcnat; policy accept;",
                "type filter hook prerouting priority raw; policy accept;",
                "oifname vmap { \"br-a\" : jump fwd-in__br-a, \"br-b\" : jump fwd-in__br-b, \"br-c\" : jump fwd-in__br-c }",
                "oifname != \"br-a\" ip saddr 10.0.0.0/24 masquerade",
                "iifname != \"br-a\" tcp dport 8009 dnat to 10.0.0.2:89",
                "ip daddr != 127.0.0.0/8 fib daddr type local jump ports",
                "iifname != \"lo\" ip daddr 127.0.0.0/8 drop",
                "ct status dnat accept",
            ] {
                assert!(text.contains(want), "{want:?} missing from\n{text}");
            }
            // No IPv6 network: no ip6 table.
            assert!(list(&nft, "ip6", "berth-t-apply").is_none());
            // The JSON listing parses with the crate's schema.
            let json =
                nft_cmd(&nft, &["-j", "list", "table", "ip", "berth-t-apply"], None).unwrap();
            let parsed: Nftables = serde_json::from_str(&json).unwrap();
            let rules = parsed
                .objects
                .iter()
                .filter(|o| matches!(o, NfObject::ListObject(NfListObject::Rule(_))))
                .count();
            assert!(rules > 20, "{rules} rules");

            // A new state replaces everything atomically: stale rules vanish, v6 appears.
            let mut n = net("br-d", &["10.0.3.0/24", "fd00:3::/64"]);
            n.icc = false;
            let st = state(vec![n], vec![], false);
            nft.apply(&st).unwrap();
            let text = list(&nft, "ip", "berth-t-apply").unwrap();
            assert!(
                !text.contains("br-a") && !text.contains("dnat to"),
                "{text}"
            );
            assert!(text.contains("iifname \"br-d\" drop"), "{text}");
            assert!(
                text.contains("oifname \"br-d\" fib saddr type local ct status dnat masquerade"),
                "{text}"
            );
            let text6 = list(&nft, "ip6", "berth-t-apply").unwrap();
            assert!(
                text6.contains("oifname != \"br-d\" ip6 saddr fd00:3::/64 masquerade"),
                "{text6}"
            );
            // Applying the same state twice is fine.
            nft.apply(&st).unwrap();

            // A big state still goes in one transaction.
            let big = state(
                (0..50)
                    .map(|i| net(&format!("br-{i}"), &[&format!("10.{i}.0.0/24")]))
                    .collect(),
                (0..500)
                    .map(|i| {
                        let bridge = format!("br-{}", i % 50);
                        let ip = format!("10.{}.0.{}", i % 50, 2 + i / 50);
                        port(Proto::Tcp, None, 10000 + i, &bridge, &ip, 80)
                    })
                    .collect(),
                false,
            );
            let started = std::time::Instant::now();
            nft.apply(&big).unwrap();
            eprintln!("apply of 50 networks, 500 ports: {:?}", started.elapsed());

            // The empty state removes both tables.
            nft.apply(&FwState::default()).unwrap();
            assert!(list(&nft, "ip", "berth-t-apply").is_none());
            assert!(list(&nft, "ip6", "berth-t-apply").is_none());

            nft.apply(&st).unwrap();
            nft.remove_all().unwrap();
            assert!(list(&nft, "ip", "berth-t-apply").is_none());
            assert!(list(&nft, "ip6", "berth-t-apply").is_none());
            // Removing what is not there is no error.
            nft.remove_all().unwrap();

            assert_eq!(list(&nft, "ip", "other").unwrap(), foreign);
        });
    }

    #[test]
    fn real_apply_error_carries_nft_stderr() {
        let Some(nft) = real_nft("berth-t-err") else {
            return;
        };
        in_new_netns(move || {
            // A rule for a chain that does not exist: nft refuses the whole batch.
            let mut b = Batch::new(Family::V4, "berth-t-err");
            b.reset();
            b.add_table();
            b.rule("no-such-chain", vec![Statement::Accept(None)]);
            let e = nft.run(&b.finish(), "apply nftables rules").unwrap_err();
            assert!(e.message().starts_with("apply nftables rules: "), "{e}");
            assert!(e.message().contains("No such file or directory"), "{e}");
            assert!(list(&nft, "ip", "berth-t-err").is_none());
        });
    }

    /// A new network namespace bind-mounted on `path` (an empty file is made first).
    fn bind_new_netns(path: &Path) {
        File::create(path).unwrap();
        let target = path.to_path_buf();
        in_new_netns(move || {
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
        });
    }

    /// Run `f` on a new thread inside the namespace bind-mounted on `path`.
    fn in_netns_file<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = File::open(path).unwrap();
        std::thread::spawn(move || {
            // SAFETY: setns only moves this thread into the namespace of an open descriptor.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    /// `program args…` (split on spaces) in the calling thread's namespace, or in `netns`.
    fn sh(program: &Path, args: &str, netns: Option<&Path>) {
        let ns = netns.map(|p| File::open(p).unwrap());
        let args: Vec<&str> = args.split(' ').collect();
        if let Err(e) = run_nft(program, &args, None, ns.as_ref()) {
            panic!("{} {}: {e}", program.display(), args.join(" "));
        }
    }

    fn can_connect(addr: &str) -> bool {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)).is_ok()
    }

    /// Two berth networks with one container each, in throwaway namespaces (the "host" one
    /// too), and real TCP connections through the applied rules.
    #[test]
    fn real_traffic_published_port_hairpin_and_isolation() {
        let Some(nft) = real_nft("berth-t-flow") else {
            return;
        };
        let Some(ip) = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .iter()
            .map(PathBuf::from)
            .find(|p| is_executable(p))
        else {
            eprintln!("skipped: needs iproute2's ip");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (c1, c2) = (dir.path().join("c1"), dir.path().join("c2"));
        bind_new_netns(&c1);
        bind_new_netns(&c2);
        let (c1m, c2m) = (c1.clone(), c2.clone());
        let result = std::panic::catch_unwind(move || {
            in_new_netns(move || {
                // The "host": two bridges, an address of its own, forwarding on.
                for cmd in [
                    "link set lo up",
                    "addr add 192.0.2.1/32 dev lo",
                    "link add br-a type bridge",
                    "addr add 10.99.0.1/24 dev br-a",
                    "link set br-a up",
                    "link add br-b type bridge",
                    "addr add 10.99.1.1/24 dev br-b",
                    "link set br-b up",
                ] {
                    sh(&ip, cmd, None);
                }
                for (name, br, ns, addr, gw) in [
                    ("a", "br-a", &c1, "10.99.0.2/24", "10.99.0.1"),
                    ("b", "br-b", &c2, "10.99.1.2/24", "10.99.1.1"),
                ] {
                    let nsp = ns.display();
                    sh(
                        &ip,
                        &format!("link add {name}-h type veth peer name {name}-c"),
                        None,
                    );
                    sh(&ip, &format!("link set {name}-h master {br} up"), None);
                    // Proxy off: dockerd turns hairpin mode on for the bridge ports; with
                    // br_netfilter active, a DNAT'ed packet back to its own container is
                    // bridged out of the port it came in through.
                    sh(
                        &ip,
                        &format!("link set {name}-h type bridge_slave hairpin on"),
                        None,
                    );
                    sh(&ip, &format!("link set {name}-c netns {nsp}"), None);
                    sh(&ip, "link set lo up", Some(ns));
                    sh(&ip, &format!("addr add {addr} dev {name}-c"), Some(ns));
                    sh(&ip, &format!("link set {name}-c up"), Some(ns));
                    sh(&ip, &format!("route add default via {gw}"), Some(ns));
                }
                // /proc/sys/net is this thread's namespace's (dockerd sets route_localnet
                // on the bridge when the proxy is off; berth's netlink code will).
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
                std::fs::write("/proc/sys/net/ipv4/conf/br-a/route_localnet", "1").unwrap();

                let st = state(
                    vec![
                        net("br-a", &["10.99.0.0/24"]),
                        net("br-b", &["10.99.1.0/24"]),
                    ],
                    vec![port(Proto::Tcp, None, 8080, "br-a", "10.99.0.2", 80)],
                    false,
                );
                nft.apply(&st).unwrap();

                // A server in container 1 (connects complete in the kernel's backlog).
                let _server =
                    in_netns_file(&c1, || std::net::TcpListener::bind("0.0.0.0:80").unwrap());

                // The host reaches the published port on its address and on loopback
                // (proxy off: DNAT from 127.0.0.1 plus masquerade).
                assert!(can_connect("192.0.2.1:8080"));
                assert!(can_connect("127.0.0.1:8080"));
                // Container 2, on another network: via the host's address yes, directly no.
                assert!(in_netns_file(&c2, || can_connect("192.0.2.1:8080")));
                assert!(!in_netns_file(&c2, || can_connect("10.99.0.2:80")));
                // Container 1 reaches its own published port through the host (hairpin).
                assert!(in_netns_file(&c1, || can_connect("192.0.2.1:8080")));
                // Container 1 cannot reach container 2 either.
                let _server2 =
                    in_netns_file(&c2, || std::net::TcpListener::bind("0.0.0.0:81").unwrap());
                assert!(!in_netns_file(&c1, || can_connect("10.99.1.2:81")));

                // Without berth's table, the direct connection goes through (the drop above
                // was ours), and the published port is gone.
                nft.remove_all().unwrap();
                assert!(in_netns_file(&c2, || can_connect("10.99.0.2:80")));
                assert!(!can_connect("192.0.2.1:8080"));
            })
        });
        for ns in [&c1m, &c2m] {
            nix::mount::umount2(ns.as_path(), nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }

    /// Bring `lo` up in this thread's network namespace.
    fn lo_up() {
        // SAFETY: a plain socket used for two interface ioctls on a zeroed, NUL-terminated
        // ifreq; the descriptor is closed by OwnedFd.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
            let mut req: libc::ifreq = std::mem::zeroed();
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
                *dst = *src as libc::c_char;
            }
            assert_eq!(libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req), 0);
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            assert_eq!(libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req), 0);
        }
    }

    /// In the namespace `ns`: a UDP query and a TCP connection to 127.0.0.11:53 land on the
    /// given ports, and the UDP answer comes back from port 53.
    fn redirect_works(ns: File, udp_port: u16, tcp_port: u16) {
        use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
        use std::time::Duration;
        std::thread::spawn(move || {
            // SAFETY: setns only moves this thread into the namespace of an open descriptor.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            lo_up();
            let timeout = Some(Duration::from_secs(2));
            let dns: SocketAddr = "127.0.0.11:53".parse().unwrap();

            let server = UdpSocket::bind(("127.0.0.11", udp_port)).unwrap();
            server.set_read_timeout(timeout).unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.set_read_timeout(timeout).unwrap();
            client.send_to(b"query", dns).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"query");
            server.send_to(b"answer", from).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"answer"[..], dns));

            let listener = TcpListener::bind(("127.0.0.11", tcp_port)).unwrap();
            let conn = TcpStream::connect_timeout(&dns, Duration::from_secs(2)).unwrap();
            let (_accepted, peer) = listener.accept().unwrap();
            assert_eq!(peer, conn.local_addr().unwrap());
            assert_eq!(conn.peer_addr().unwrap(), dns);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn real_dns_redirect_in_a_bind_mounted_netns() {
        let Some(nft) = real_nft("berth-t-dns") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netns");
        bind_new_netns(&path);
        let result = std::panic::catch_unwind(|| {
            nft.dns_redirect(&path, 40000, 40001).unwrap();
            // Idempotent, and the free function (NoFirewall's) does the same.
            dns_redirect(&path, 40002, 40003).unwrap();
            let ns = File::open(&path).unwrap();
            let text = run_nft(
                Path::new(&nft.program),
                &["list", "table", "ip", DNS_TABLE],
                None,
                Some(&ns),
            )
            .unwrap();
            for want in [
                "type nat hook output priority -100; policy accept;",
                "type nat hook postrouting priority srcnat; policy accept;",
                "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40002",
                "ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40003",
                "ip saddr 127.0.0.11 udp sport 40002 snat to :53",
                "ip saddr 127.0.0.11 tcp sport 40003 snat to :53",
            ] {
                assert!(text.contains(want), "{want:?} missing from\n{text}");
            }
            assert!(!text.contains("40000"), "{text}");
            // And the redirection works: 127.0.0.11:53 reaches the resolver's real ports, and
            // its answers come from port 53.
            redirect_works(ns, 40002, 40003);
            // A missing namespace file is a clear error.
            let e = dns_redirect(&dir.path().join("missing"), 1, 2).unwrap_err();
            assert!(e.message().starts_with("redirect dns in "), "{e}");
        });
        nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH).unwrap();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}
