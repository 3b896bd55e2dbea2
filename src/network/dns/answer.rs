//! Decoding a query and answering it from the [`NameTable`] (dockerd's `serveDNS` and its
//! `handle*Query`), or deciding that it goes upstream.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{random_u64, NameTable, ANSWER_TTL};

/// What to do with one packet from a client.
pub(super) enum Outcome {
    /// Not a query (undecodable, a response, no question): no reply. Over TCP the
    /// connection is closed.
    Drop,
    /// The encoded reply.
    Reply(Vec<u8>),
    /// Not a name of the table: relay it upstream.
    Forward(Pending),
}

/// A query to be forwarded.
pub(super) struct Pending {
    /// The query as the client sent it.
    pub(super) packet: Vec<u8>,
    request: Message,
}

impl Pending {
    /// The encoded error reply with `rcode` (no upstream, too many queries in flight).
    pub(super) fn error(&self, rcode: ResponseCode) -> Option<Vec<u8>> {
        error_reply(&self.request, rcode)
    }
}

/// Handle one packet of a client; `tcp`: it came over TCP (no size limit on the reply).
pub(super) fn answer(names: &dyn NameTable, asker: &str, packet: &[u8], tcp: bool) -> Outcome {
    let Ok(request) = Message::from_vec(packet) else {
        return Outcome::Drop;
    };
    if request.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    if request.op_code != OpCode::Query {
        return reply_or_drop(error_reply(&request, ResponseCode::NotImp));
    }
    let query = match request.queries.as_slice() {
        // dockerd ignores a query without a question.
        [] => return Outcome::Drop,
        [query] => query,
        _ => return reply_or_drop(error_reply(&request, ResponseCode::FormErr)),
    };
    let Some(answers) = local_answers(names, asker, query) else {
        return Outcome::Forward(Pending {
            packet: packet.to_vec(),
            request,
        });
    };
    // As dockerd, answer within the size the client can take: 512 bytes over UDP, or what
    // its EDNS record announces.
    let limit = if tcp {
        usize::from(u16::MAX)
    } else {
        usize::from(request.max_payload())
    };
    reply_or_drop(local_reply(&request, answers, limit))
}

fn reply_or_drop(reply: Option<Vec<u8>>) -> Outcome {
    match reply {
        Some(reply) => Outcome::Reply(reply),
        None => Outcome::Drop,
    }
}

/// The answer records berth gives itself for `query`; `None`: forward it.
fn local_answers(names: &dyn NameTable, asker: &str, query: &Query) -> Option<Vec<Record>> {
    let qname = query.name();
    match query.query_type() {
        qtype @ (RecordType::A | RecordType::AAAA) => {
            let v6 = qtype == RecordType::AAAA;
            let mut ips = names.lookup(asker, &plain_name(qname)?, v6)?;
            ips.retain(|ip| ip.is_ipv6() == v6);
            shuffle(&mut ips);
            let records = ips.into_iter().map(|ip| {
                let data = match ip {
                    IpAddr::V4(ip) => RData::A(A(ip)),
                    IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
                };
                Record::from_rdata(qname.clone(), ANSWER_TTL, data)
            });
            Some(records.collect())
        }
        RecordType::PTR => {
            let net = qname.parse_arpa_name().ok()?;
            if net.prefix_len() != net.max_prefix_len() {
                return None;
            }
            let target = names.reverse(asker, net.addr())?;
            let target = if target.ends_with('.') {
                target
            } else {
                format!("{target}.")
            };
            let Ok(target) = Name::from_ascii(&target) else {
                tracing::debug!("dns: {target:?} is not a name for a PTR record");
                return None;
            };
            let data = RData::PTR(PTR(target));
            Some(vec![Record::from_rdata(qname.clone(), ANSWER_TTL, data)])
        }
        // Any other type of a name berth knows (MX for dockerd): NOERROR without records,
        // which mail clients read as an "implicit MX" (RFC 5321 §5.1) and others as "no
        // such record", rather than asking the upstreams about a container name.
        _ => {
            let name = plain_name(qname)?;
            let known = names.lookup(asker, &name, false).is_some()
                || names.lookup(asker, &name, true).is_some();
            known.then(Vec::new)
        }
    }
}

/// `name` as the table knows names: lower-case, dot-separated, no trailing dot. `None` for
/// a name no table entry can have (a label that is not UTF-8 or holds a dot).
fn plain_name(name: &Name) -> Option<String> {
    let mut plain = String::new();
    for label in name.iter() {
        let label = std::str::from_utf8(label).ok()?;
        if label.contains('.') {
            return None;
        }
        if !plain.is_empty() {
            plain.push('.');
        }
        plain.push_str(&label.to_lowercase());
    }
    Some(plain)
}

/// The reply header and question for `request` (miekg/dns' `SetReply`).
fn response_to(request: &Message, rcode: ResponseCode) -> Message {
    let mut reply = Message::response(request.id, request.op_code);
    reply.metadata.recursion_desired = request.recursion_desired;
    reply.metadata.checking_disabled = request.checking_disabled;
    reply.metadata.response_code = rcode;
    reply.queries = request.queries.clone();
    reply
}

/// An answer from the table, with records dropped from the end (and TC set) until it fits
/// in `limit` bytes.
fn local_reply(request: &Message, answers: Vec<Record>, limit: usize) -> Option<Vec<u8>> {
    let mut reply = response_to(request, ResponseCode::NoError);
    reply.metadata.recursion_available = true;
    reply.answers = answers;
    loop {
        let encoded = match reply.to_vec() {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::debug!("dns: encode a reply: {e}");
                return None;
            }
        };
        if encoded.len() <= limit || reply.answers.is_empty() {
            return Some(encoded);
        }
        reply.answers.pop();
        reply.metadata.truncation = true;
    }
}

/// An error reply with `rcode` (miekg/dns' `SetRcode`), encoded.
pub(super) fn error_reply(request: &Message, rcode: ResponseCode) -> Option<Vec<u8>> {
    match response_to(request, rcode).to_vec() {
        Ok(encoded) => Some(encoded),
        Err(e) => {
            tracing::debug!("dns: encode a {rcode} reply: {e}");
            None
        }
    }
}

/// Fisher-Yates, so that clients taking the first address spread over all of them.
fn shuffle<T>(items: &mut [T]) {
    let mut state = random_u64();
    for i in (1..items.len()).rev() {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = (z % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
