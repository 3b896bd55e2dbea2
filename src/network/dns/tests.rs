//! The resolver in the test's own namespace (`netns: None`), against fake upstreams the
//! tests run on 127.0.0.1: no query ever leaves the host's loopback.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::{NameTable, Resolver, RESOLVER_IP};
use crate::network::firewall::NoFirewall;

const ASKER: &str = "c0ffee";
/// What the fake upstream answers to every A query.
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

#[derive(Default)]
struct Table {
    names: HashMap<String, Vec<IpAddr>>,
    ptrs: HashMap<IpAddr, String>,
    upstreams: Vec<SocketAddr>,
}

impl Table {
    fn with_names() -> Table {
        let mut t = Table::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        t.names.insert(
            "web".into(),
            vec![
                ip("10.0.0.2"),
                ip("10.0.0.3"),
                ip("10.0.0.4"),
                ip("fd00::2"),
            ],
        );
        t.names.insert("db.mynet".into(), vec![ip("10.0.0.5")]);
        t.names.insert(
            "many".into(),
            (1..=100).map(|i| ip(&format!("10.1.0.{i}"))).collect(),
        );
        t.ptrs.insert(ip("10.0.0.5"), "db.mynet".into());
        t.ptrs.insert(ip("fd00::2"), "web.mynet".into());
        t
    }
}

impl NameTable for Table {
    fn lookup(&self, asker: &str, name: &str, v6: bool) -> Option<Vec<IpAddr>> {
        assert_eq!(asker, ASKER);
        let ips = self.names.get(name)?;
        Some(
            ips.iter()
                .copied()
                .filter(|ip| ip.is_ipv6() == v6)
                .collect(),
        )
    }

    fn reverse(&self, asker: &str, ip: IpAddr) -> Option<String> {
        assert_eq!(asker, ASKER);
        self.ptrs.get(&ip).cloned()
    }

    fn upstreams(&self, asker: &str) -> Vec<SocketAddr> {
        assert_eq!(asker, ASKER);
        self.upstreams.clone()
    }
}

fn start(table: Table) -> Resolver {
    Resolver::start(None, ASKER.into(), Arc::new(table), &NoFirewall).unwrap()
}

fn udp_addr(r: &Resolver) -> SocketAddr {
    (RESOLVER_IP.parse::<IpAddr>().unwrap(), r.ports().0).into()
}

fn tcp_addr(r: &Resolver) -> SocketAddr {
    (RESOLVER_IP.parse::<IpAddr>().unwrap(), r.ports().1).into()
}

fn query(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// The next datagram on `sock`, or `None` after `wait`.
async fn recv(sock: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}

async fn ask_udp(r: &Resolver, q: &Message) -> (Message, usize) {
    let sock = client().await;
    sock.send_to(&q.to_vec().unwrap(), udp_addr(r))
        .await
        .unwrap();
    let reply = recv(&sock, Duration::from_secs(10)).await.expect("a reply");
    (Message::from_vec(&reply).unwrap(), reply.len())
}

async fn send_tcp(stream: &mut TcpStream, packet: &[u8]) {
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await.unwrap();
}

async fn recv_tcp(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await.unwrap();
    Message::from_vec(&reply).unwrap()
}

fn ips(reply: &Message) -> Vec<IpAddr> {
    reply
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("unexpected record {other:?}"),
        })
        .collect()
}

/// A fake upstream on 127.0.0.1 (UDP and TCP on one port) answering every query with
/// `rcode` and, for NOERROR A queries, `UPSTREAM_IP`; it counts the queries it got.
struct Upstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn upstream_reply(packet: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let q = Message::from_vec(packet).unwrap();
    let mut m = Message::response(q.id, q.op_code);
    m.metadata.response_code = rcode;
    m.metadata.recursion_available = true;
    m.queries = q.queries.clone();
    if rcode == ResponseCode::NoError && q.queries[0].query_type() == RecordType::A {
        m.add_answer(Record::from_rdata(
            q.queries[0].name().clone(),
            30,
            RData::A(A(UPSTREAM_IP)),
        ));
    }
    m.to_vec().unwrap()
}

async fn upstream(rcode: ResponseCode) -> Upstream {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = queries.clone();
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let reply = upstream_reply(&buf[..n], rcode);
            udp.send_to(&reply, peer).await.unwrap();
        }
    });
    let counted = queries.clone();
    let tcp_task = tokio::spawn(async move {
        loop {
            let (mut stream, _) = tcp.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while stream.read_exact(&mut len).await.is_ok() {
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    stream.read_exact(&mut q).await.unwrap();
                    counted.fetch_add(1, Ordering::SeqCst);
                    send_tcp(&mut stream, &upstream_reply(&q, rcode)).await;
                }
            });
        }
    });
    Upstream {
        addr,
        queries,
        tasks: vec![udp_task, tcp_task],
    }
}

#[tokio::test]
async fn a_returns_all_addresses_shuffled_with_ttl_600() {
    let r = start(Table::with_names());
    let want: HashSet<IpAddr> = ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let mut orders = HashSet::new();
    for id in 0..40u16 {
        let (reply, _) = ask_udp(&r, &query(id, "web.", RecordType::A)).await;
        assert_eq!(reply.id, id);
        assert_eq!(reply.message_type, MessageType::Response);
        assert_eq!(reply.response_code, ResponseCode::NoError);
        assert!(reply.recursion_available);
        assert!(reply.recursion_desired);
        assert!(!reply.authoritative, "dockerd does not set AA");
        assert_eq!(reply.queries, query(id, "web.", RecordType::A).queries);
        let got = ips(&reply);
        assert_eq!(got.len(), 3);
        assert_eq!(got.iter().copied().collect::<HashSet<_>>(), want);
        for rec in &reply.answers {
            assert_eq!(rec.ttl, 600);
            assert_eq!(&rec.name, &Name::from_ascii("web.").unwrap());
        }
        orders.insert(got);
    }
    // 40 draws of 6 orders all being the same has probability 6^-39.
    assert!(orders.len() > 1, "answers are not shuffled");
}

#[tokio::test]
async fn aaaa_and_name_without_v6_address() {
    let r = start(Table::with_names());
    let (reply, _) = ask_udp(&r, &query(7, "web", RecordType::AAAA)).await;
    assert_eq!(reply.response_code, ResponseCode::NoError);
    assert_eq!(ips(&reply), vec!["fd00::2".parse::<IpAddr>().unwrap()]);
    assert_eq!(reply.answers[0].record_type(), RecordType::AAAA);
    assert_eq!(reply.answers[0].ttl, 600);

    // Known, no IPv6 address, no upstream: NOERROR without answers (not forwarded, which
    // would have been SERVFAIL).
    let (reply, _) = ask_udp(&r, &query(8, "db.mynet.", RecordType::AAAA)).await;
    assert_eq!(reply.id, 8);
    assert_eq!(reply.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
}

#[tokio::test]
async fn names_are_case_insensitive_and_the_question_is_echoed() {
    let r = start(Table::with_names());
    let (reply, _) = ask_udp(&r, &query(9, "DB.MyNet.", RecordType::A)).await;
    assert_eq!(ips(&reply), vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
    assert_eq!(reply.answers[0].name.to_ascii(), "DB.MyNet.");
}

#[tokio::test]
async fn other_types_of_known_names_are_empty_noerror() {
    let r = start(Table::with_names());
    for qtype in [RecordType::MX, RecordType::TXT] {
        let (reply, _) = ask_udp(&r, &query(10, "web", qtype)).await;
        assert_eq!(reply.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
    }
}

#[tokio::test]
async fn ptr_v4_and_v6() {
    let r = start(Table::with_names());
    let (reply, _) = ask_udp(&r, &query(11, "5.0.0.10.in-addr.arpa.", RecordType::PTR)).await;
    assert_eq!(reply.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.answers[0].ttl, 600);
    assert_eq!(
        reply.answers[0].name,
        Name::from_ascii("5.0.0.10.in-addr.arpa.").unwrap()
    );
    match &reply.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_ascii(), "db.mynet."),
        other => panic!("unexpected {other:?}"),
    }

    let v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    let (reply, _) = ask_udp(&r, &query(12, v6, RecordType::PTR)).await;
    match reply.answers.first().map(|r| &r.data) {
        Some(RData::PTR(p)) => assert_eq!(p.0.to_ascii(), "web.mynet."),
        other => panic!("unexpected {other:?}"),
    }

    // Unknown address, no upstream: forwarded, so SERVFAIL.
    let (reply, _) = ask_udp(&r, &query(13, "9.9.9.10.in-addr.arpa.", RecordType::PTR)).await;
    assert_eq!(reply.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn unknown_names_are_forwarded_with_the_clients_id() {
    let up = upstream(ResponseCode::NoError).await;
    let mut table = Table::with_names();
    table.upstreams = vec![up.addr];
    let r = start(table);
    let (reply, _) = ask_udp(&r, &query(0xBEEF, "example.com.", RecordType::A)).await;
    assert_eq!(reply.id, 0xBEEF);
    assert_eq!(reply.response_code, ResponseCode::NoError);
    assert_eq!(ips(&reply), vec![IpAddr::V4(UPSTREAM_IP)]);
    assert_eq!(reply.answers[0].ttl, 30);
    assert_eq!(up.queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failing_upstreams_are_skipped() {
    let failing = upstream(ResponseCode::ServFail).await;
    let refusing = upstream(ResponseCode::Refused).await;
    let good = upstream(ResponseCode::NoError).await;
    let mut table = Table::with_names();
    table.upstreams = vec![failing.addr, refusing.addr, good.addr];
    let r = start(table);
    let (reply, _) = ask_udp(&r, &query(21, "example.org.", RecordType::A)).await;
    assert_eq!(reply.response_code, ResponseCode::NoError);
    assert_eq!(ips(&reply), vec![IpAddr::V4(UPSTREAM_IP)]);
    assert_eq!(failing.queries.load(Ordering::SeqCst), 1);
    assert_eq!(refusing.queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn only_three_upstreams_are_tried() {
    let failing: Vec<Upstream> =
        futures_util::future::join_all((0..3).map(|_| upstream(ResponseCode::ServFail))).await;
    let good = upstream(ResponseCode::NoError).await;
    let mut table = Table::with_names();
    table.upstreams = failing.iter().map(|u| u.addr).collect();
    table.upstreams.push(good.addr);
    let r = start(table);
    let (reply, _) = ask_udp(&r, &query(22, "example.org.", RecordType::A)).await;
    assert_eq!(reply.response_code, ResponseCode::ServFail);
    assert_eq!(good.queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tcp_queries_local_and_forwarded_on_one_connection() {
    let up = upstream(ResponseCode::NoError).await;
    let mut table = Table::with_names();
    table.upstreams = vec![up.addr];
    let r = start(table);
    let mut stream = TcpStream::connect(tcp_addr(&r)).await.unwrap();

    send_tcp(
        &mut stream,
        &query(31, "web", RecordType::A).to_vec().unwrap(),
    )
    .await;
    let reply = recv_tcp(&mut stream).await;
    assert_eq!(reply.id, 31);
    assert_eq!(ips(&reply).len(), 3);

    send_tcp(
        &mut stream,
        &query(32, "example.net", RecordType::A).to_vec().unwrap(),
    )
    .await;
    let reply = recv_tcp(&mut stream).await;
    assert_eq!(reply.id, 32);
    assert_eq!(ips(&reply), vec![IpAddr::V4(UPSTREAM_IP)]);
    assert_eq!(up.queries.load(Ordering::SeqCst), 1);

    // 100 addresses do not fit in 512 bytes, but TCP has no such limit.
    send_tcp(
        &mut stream,
        &query(33, "many", RecordType::A).to_vec().unwrap(),
    )
    .await;
    let reply = recv_tcp(&mut stream).await;
    assert!(!reply.truncation);
    assert_eq!(reply.answers.len(), 100);
}

#[tokio::test]
async fn udp_answers_are_truncated_to_the_clients_size() {
    let r = start(Table::with_names());
    let (reply, len) = ask_udp(&r, &query(41, "many", RecordType::A)).await;
    assert!(reply.truncation);
    assert!(len <= 512, "{len} bytes");
    assert!(!reply.answers.is_empty() && reply.answers.len() < 100);

    let mut q = query(42, "many", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.set_edns(edns);
    let (reply, _) = ask_udp(&r, &q).await;
    assert!(!reply.truncation);
    assert_eq!(reply.answers.len(), 100);
}

#[tokio::test]
async fn no_upstream_is_servfail() {
    let r = start(Table::with_names());
    let (reply, _) = ask_udp(&r, &query(51, "example.com.", RecordType::A)).await;
    assert_eq!(reply.id, 51);
    assert_eq!(reply.response_code, ResponseCode::ServFail);
    assert!(reply.answers.is_empty());
    assert_eq!(
        reply.queries,
        query(51, "example.com.", RecordType::A).queries
    );
}

#[tokio::test]
async fn silent_upstream_is_servfail_within_the_timeout() {
    // Bound, never read: the query vanishes.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent_tcp = TcpListener::bind(silent.local_addr().unwrap())
        .await
        .unwrap();
    let mut table = Table::with_names();
    table.upstreams = vec![silent.local_addr().unwrap()];
    let r = start(table);

    let started = Instant::now();
    let (reply, _) = ask_udp(&r, &query(61, "example.com.", RecordType::A)).await;
    assert_eq!(reply.id, 61);
    assert_eq!(reply.response_code, ResponseCode::ServFail);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // Over TCP the connection is accepted (by the kernel) but never answered.
    let started = Instant::now();
    let mut stream = TcpStream::connect(tcp_addr(&r)).await.unwrap();
    send_tcp(
        &mut stream,
        &query(62, "example.com.", RecordType::A).to_vec().unwrap(),
    )
    .await;
    let reply = recv_tcp(&mut stream).await;
    assert_eq!(reply.id, 62);
    assert_eq!(reply.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(6));
    drop(silent_tcp);
}

#[tokio::test]
async fn too_many_forwards_in_flight_are_refused() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut table = Table::with_names();
    table.upstreams = vec![silent.local_addr().unwrap()];
    let r = start(table);
    let sock = client().await;
    for id in 0..super::MAX_FORWARDS as u16 {
        let q = query(id, &format!("n{id}.example."), RecordType::A);
        sock.send_to(&q.to_vec().unwrap(), udp_addr(&r))
            .await
            .unwrap();
    }
    // Let the resolver take them all in before the one too many.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q = query(999, "extra.example.", RecordType::A);
    sock.send_to(&q.to_vec().unwrap(), udp_addr(&r))
        .await
        .unwrap();
    let reply = recv(&sock, Duration::from_secs(1))
        .await
        .expect("an immediate reply");
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.id, 999);
    assert_eq!(reply.response_code, ResponseCode::Refused);
    // Local names are still answered.
    let (reply, _) = ask_udp(&r, &query(1000, "web", RecordType::A)).await;
    assert_eq!(reply.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn malformed_input_is_ignored() {
    let r = start(Table::with_names());
    let sock = client().await;
    let garbage: [&[u8]; 4] = [b"", b"\x12", b"not a dns message at all", &[0xff; 40]];
    for g in garbage {
        sock.send_to(g, udp_addr(&r)).await.unwrap();
    }
    // A response is not a query.
    let mut response = query(71, "web", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    sock.send_to(&response.to_vec().unwrap(), udp_addr(&r))
        .await
        .unwrap();
    // No question: dockerd ignores it.
    let empty = Message::new(72, MessageType::Query, OpCode::Query);
    sock.send_to(&empty.to_vec().unwrap(), udp_addr(&r))
        .await
        .unwrap();
    // Still serving, and the first reply is to this query.
    let q = query(73, "web", RecordType::A);
    sock.send_to(&q.to_vec().unwrap(), udp_addr(&r))
        .await
        .unwrap();
    let reply = recv(&sock, Duration::from_secs(5)).await.unwrap();
    assert_eq!(Message::from_vec(&reply).unwrap().id, 73);
    assert!(recv(&sock, Duration::from_millis(200)).await.is_none());

    // Two questions: FORMERR; another opcode: NOTIMP.
    let mut two = query(74, "web", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("db.mynet").unwrap(),
        RecordType::A,
    ));
    let (reply, _) = ask_udp(&r, &two).await;
    assert_eq!(reply.response_code, ResponseCode::FormErr);
    let mut notify = query(75, "web", RecordType::A);
    notify.metadata.op_code = OpCode::Status;
    let (reply, _) = ask_udp(&r, &notify).await;
    assert_eq!(reply.response_code, ResponseCode::NotImp);

    // Over TCP, garbage closes the connection.
    let mut stream = TcpStream::connect(tcp_addr(&r)).await.unwrap();
    send_tcp(&mut stream, b"garbage!garbage!").await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection is closed");
}

#[tokio::test]
async fn stop_closes_the_sockets() {
    let r = start(Table::with_names());
    let (udp, tcp) = (udp_addr(&r), tcp_addr(&r));
    r.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sock = client().await;
    sock.send_to(&query(81, "web", RecordType::A).to_vec().unwrap(), udp)
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let got = tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await;
    assert!(!matches!(got, Ok(Ok(_))), "no reply after stop");
    assert!(TcpStream::connect(tcp).await.is_err());
}
