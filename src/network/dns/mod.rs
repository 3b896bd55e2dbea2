//! The embedded DNS server of user-defined networks (dockerd's `resolver.go`): inside each
//! container's namespace it listens on `127.0.0.11` at random UDP and TCP ports, to which the
//! namespace's own nat rules redirect port 53 (so the container may still bind :53 itself).
//! It answers A/AAAA/PTR from berth's endpoint table, as the asking container sees it, and
//! forwards everything else to the upstream resolvers.
//!
//! - [`answer`]: decoding a query and answering it from the [`NameTable`], or deciding that it
//!   is to be forwarded.
//! - [`forward`]: one query relayed to the upstreams, over the client's transport.

mod answer;
mod forward;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use self::answer::{Outcome, Pending};
use super::firewall::FirewallDriver;
use super::netns;
use super::NetworkError;

/// The address the resolver answers at, inside the container.
pub const RESOLVER_IP: &str = "127.0.0.11";

/// Names as one container sees them (the networks it is on).
pub trait NameTable: Send + Sync + 'static {
    /// The addresses of `name` (a container name, alias, short ID or hostname, or
    /// `name.network`) of the requested family, on the networks `asker` shares; all of them
    /// for a shared alias. `name` comes lower-cased and without the trailing dot (DNS names
    /// are case-insensitive). `None`: not a name berth knows (forward it). `Some(empty)`: the
    /// name exists but has no address of that family (NOERROR, no answer).
    fn lookup(&self, asker: &str, name: &str, v6: bool) -> Option<Vec<IpAddr>>;

    /// The name of `ip` for PTR (`<container name>.<network>`), on the networks `asker`
    /// shares.
    fn reverse(&self, asker: &str, ip: IpAddr) -> Option<String>;

    /// Where to forward other queries of `asker`: empty when none may be (all its networks
    /// are `internal`). Loopback upstreams are reached from the host namespace, others from
    /// the container's.
    fn upstreams(&self, asker: &str) -> Vec<SocketAddr>;
}

/// The TTL of the answers from the table (dockerd's `respTTL`).
const ANSWER_TTL: u32 = 600;
/// At most this many upstreams are tried for one query (dockerd's `maxExtDNS`).
const MAX_UPSTREAMS: usize = 3;
/// The time one upstream has to answer, connection included; a query is thus answered
/// (SERVFAIL at worst) within `MAX_UPSTREAMS` times this.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded queries in flight at once; beyond, REFUSED.
const MAX_FORWARDS: usize = 100;
/// TCP clients at once; beyond, new connections are closed.
const MAX_TCP_CLIENTS: usize = 128;
/// How long a TCP client may stay silent between queries (miekg/dns' idle timeout).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(8);
/// How long reading the rest of a started query, or writing a reply, may take over TCP.
const TCP_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A running resolver for one container.
pub struct Resolver {
    udp_port: u16,
    tcp_port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl Resolver {
    /// Bind UDP and TCP sockets on `127.0.0.11:0` inside `netns` (`None`: the current
    /// namespace, for tests), install the redirection through `fw`, and serve on the tokio
    /// runtime until [`Resolver::stop`] or drop. `asker` is the container's ID. Must be
    /// called within a tokio runtime; it blocks briefly while entering `netns`.
    pub fn start(
        netns: Option<&Path>,
        asker: String,
        names: Arc<dyn NameTable>,
        fw: &dyn FirewallDriver,
    ) -> Result<Resolver, NetworkError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(NetworkError::internal(
                "start the dns resolver: not within a tokio runtime",
            ));
        }
        let (udp, tcp) = match netns {
            Some(path) => netns::run_in(path, bind_listeners)?,
            None => bind_listeners(),
        }
        .map_err(|e| NetworkError::io(format!("bind the dns resolver on {RESOLVER_IP}"), e))?;
        let (udp, tcp) = into_tokio(udp, tcp)
            .map_err(|e| NetworkError::io("register the dns resolver sockets", e))?;
        let udp_port = udp
            .local_addr()
            .map_err(|e| NetworkError::io("read the dns resolver's udp port", e))?
            .port();
        let tcp_port = tcp
            .local_addr()
            .map_err(|e| NetworkError::io("read the dns resolver's tcp port", e))?
            .port();
        if let Some(path) = netns {
            fw.dns_redirect(path, udp_port, tcp_port)?;
        }
        let shared = Arc::new(Shared {
            asker,
            names,
            netns: netns.map(Path::to_path_buf),
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared)),
        ];
        Ok(Resolver {
            udp_port,
            tcp_port,
            tasks,
        })
    }

    /// The ports it listens on (udp, tcp).
    pub fn ports(&self) -> (u16, u16) {
        (self.udp_port, self.tcp_port)
    }

    /// Stop serving and close the sockets (queries being forwarded are abandoned).
    pub fn stop(self) {}
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // The serving tasks own the sockets and, through their `JoinSet`s, the tasks of the
        // queries in flight: aborting them drops everything.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What every query of one resolver needs.
struct Shared {
    asker: String,
    names: Arc<dyn NameTable>,
    netns: Option<PathBuf>,
    forwards: Arc<Semaphore>,
}

impl Shared {
    fn answer(&self, packet: &[u8], tcp: bool) -> Outcome {
        answer::answer(self.names.as_ref(), &self.asker, packet, tcp)
    }

    /// Relay `pending` upstream; the reply for the client (SERVFAIL when no upstream
    /// answered), `None` if not even that can be encoded.
    async fn forward(&self, pending: &Pending, tcp: bool) -> Option<Vec<u8>> {
        let upstreams = self.names.upstreams(&self.asker);
        if upstreams.is_empty() {
            tracing::debug!(asker = %self.asker, "dns: no upstream to forward to");
            return pending.error(ResponseCode::ServFail);
        }
        let upstreams = &upstreams[..upstreams.len().min(MAX_UPSTREAMS)];
        match forward::forward(self.netns.as_deref(), upstreams, &pending.packet, tcp).await {
            Some(reply) => Some(reply),
            None => pending.error(ResponseCode::ServFail),
        }
    }
}

fn bind_listeners() -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let udp = std::net::UdpSocket::bind((RESOLVER_IP, 0))?;
    let tcp = std::net::TcpListener::bind((RESOLVER_IP, 0))?;
    Ok((udp, tcp))
}

fn into_tokio(
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
) -> io::Result<(UdpSocket, TcpListener)> {
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    Ok((UdpSocket::from_std(udp)?, TcpListener::from_std(tcp)?))
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut inflight = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        while inflight.try_join_next().is_some() {}
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("dns: receive on the udp socket: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let reply = match shared.answer(&buf[..n], false) {
            Outcome::Drop => continue,
            Outcome::Reply(reply) => reply,
            Outcome::Forward(pending) => match shared.forwards.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (sock, shared) = (sock.clone(), shared.clone());
                    inflight.spawn(async move {
                        let reply = shared.forward(&pending, false).await;
                        drop(permit);
                        if let Some(reply) = reply {
                            if let Err(e) = sock.send_to(&reply, peer).await {
                                tracing::debug!("dns: reply to {peer}: {e}");
                            }
                        }
                    });
                    continue;
                }
                Err(_) => {
                    tracing::debug!("dns: more than {MAX_FORWARDS} queries in flight");
                    match pending.error(ResponseCode::Refused) {
                        Some(reply) => reply,
                        None => continue,
                    }
                }
            },
        };
        if let Err(e) = sock.send_to(&reply, peer).await {
            tracing::debug!("dns: reply to {peer}: {e}");
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let clients = Arc::new(Semaphore::new(MAX_TCP_CLIENTS));
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                tracing::debug!("dns: accept on the tcp socket: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = clients.clone().try_acquire_owned() else {
            tracing::debug!("dns: more than {MAX_TCP_CLIENTS} tcp clients, closing {peer}");
            continue;
        };
        let shared = shared.clone();
        conns.spawn(async move {
            serve_conn(stream, &shared).await;
            drop(permit);
        });
    }
}

/// Serve one TCP client: 2-byte length-prefixed queries, one after the other, until it
/// closes, stays idle too long or sends something that is not a query.
async fn serve_conn(mut stream: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 65535];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let len = usize::from(u16::from_be_bytes(len));
        let query = &mut buf[..len];
        match tokio::time::timeout(TCP_IO_TIMEOUT, stream.read_exact(query)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let reply = match shared.answer(query, true) {
            Outcome::Drop => return,
            Outcome::Reply(reply) => Some(reply),
            Outcome::Forward(pending) => match shared.forwards.clone().try_acquire_owned() {
                Ok(_permit) => shared.forward(&pending, true).await,
                Err(_) => {
                    tracing::debug!("dns: more than {MAX_FORWARDS} queries in flight");
                    pending.error(ResponseCode::Refused)
                }
            },
        };
        let Some(reply) = reply else { return };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        match tokio::time::timeout(TCP_IO_TIMEOUT, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// 64 random bits (query IDs towards the upstreams, the order of answers).
fn random_u64() -> u64 {
    // A v4 UUID has fixed bits in both halves but never at the same positions, so folding
    // them leaves 64 random bits.
    let v = uuid::Uuid::new_v4().as_u128();
    (v as u64) ^ ((v >> 64) as u64)
}
