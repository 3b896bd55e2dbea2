//! One query relayed to the upstream resolvers (dockerd's `forwardExtDNS`): over the
//! transport the client used, from the host's namespace for loopback upstreams and from the
//! container's for the others, under a query ID of our own.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use super::{netns, random_u64, UPSTREAM_TIMEOUT};

/// The DNS header's length.
const HEADER_LEN: usize = 12;
/// The RCODEs after which the next upstream is tried (as dockerd: a failure may be the
/// upstream's alone, and REFUSED may be transitional).
const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// Relay `packet` to `upstreams` in turn until one answers other than SERVFAIL or REFUSED;
/// its reply, verbatim but for the ID which is the client's again. `None`: no answer.
pub(super) async fn forward(
    netns: Option<&Path>,
    upstreams: &[SocketAddr],
    packet: &[u8],
    tcp: bool,
) -> Option<Vec<u8>> {
    if packet.len() < HEADER_LEN {
        return None;
    }
    let client_id = [packet[0], packet[1]];
    for &upstream in upstreams {
        let id = (random_u64() as u16).to_be_bytes();
        let mut query = packet.to_vec();
        query[..2].copy_from_slice(&id);
        let exchange = exchange(netns, upstream, &query, tcp);
        let mut reply = match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!("dns: forward to {upstream}: {e}");
                continue;
            }
            Err(_) => {
                tracing::debug!("dns: forward to {upstream}: no answer in {UPSTREAM_TIMEOUT:?}");
                continue;
            }
        };
        if !is_reply_to(&reply, id) {
            tracing::debug!("dns: forward to {upstream}: the answer is not a reply to the query");
            continue;
        }
        let rcode = reply[3] & 0x0f;
        if rcode == RCODE_SERVFAIL || rcode == RCODE_REFUSED {
            tracing::debug!("dns: forward to {upstream}: it answered with rcode {rcode}");
            continue;
        }
        reply[..2].copy_from_slice(&client_id);
        return Some(reply);
    }
    None
}

/// A response (QR set) with the ID `id`.
fn is_reply_to(reply: &[u8], id: [u8; 2]) -> bool {
    reply.len() >= HEADER_LEN && reply[..2] == id && reply[2] & 0x80 != 0
}

/// One query to one upstream and its reply (unchecked over TCP; over UDP datagrams that are
/// not a reply to it are skipped). A truncated UDP reply is returned as it is: the client
/// retries over TCP.
async fn exchange(
    netns: Option<&Path>,
    upstream: SocketAddr,
    query: &[u8],
    tcp: bool,
) -> io::Result<Vec<u8>> {
    let netns = netns.filter(|_| !upstream.ip().is_loopback());
    if tcp {
        let len = u16::try_from(query.len())
            .map_err(|_| io::Error::other("the query is too long for tcp"))?;
        let mut stream = tcp_stream(netns, upstream).await?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).await?;
        Ok(reply)
    } else {
        let sock = udp_socket(netns, upstream).await?;
        sock.connect(upstream).await?;
        sock.send(query).await?;
        let id = [query[0], query[1]];
        let mut buf = vec![0u8; 65535];
        loop {
            let n = sock.recv(&mut buf).await?;
            if is_reply_to(&buf[..n], id) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }
}

/// A UDP socket on an ephemeral port of `upstream`'s family, in `netns` (`None`: here).
async fn udp_socket(netns: Option<&Path>, upstream: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = match netns {
        None => return UdpSocket::bind(local).await,
        Some(path) => in_netns(path, move || std::net::UdpSocket::bind(local)).await?,
    };
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock)
}

/// A TCP connection to `upstream` from `netns` (`None`: from here).
async fn tcp_stream(netns: Option<&Path>, upstream: SocketAddr) -> io::Result<TcpStream> {
    let new = move || {
        if upstream.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
    };
    let socket = match netns {
        None => new()?,
        // Only the socket must be made inside: it keeps its namespace for the connection.
        Some(path) => in_netns(path, new).await?,
    };
    socket.connect(upstream).await
}

/// Run `f` inside the namespace at `path`, off the tokio workers.
async fn in_netns<T, F>(path: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let path = path.to_path_buf();
    let entered = tokio::task::spawn_blocking(move || netns::run_in(&path, f))
        .await
        .map_err(|e| io::Error::other(format!("enter the container's namespace: {e}")))?;
    entered.map_err(|e| io::Error::other(format!("enter the container's namespace: {e}")))?
}
