//! A small authoritative DNS server on 127.0.0.1:0 (UDP) whose answers a test sets and
//! changes: A/AAAA records with a TTL, SERVFAIL, or silence.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// What the server says about one name.
#[derive(Debug, Clone)]
pub enum Answer {
    /// These addresses (A for IPv4, AAAA for IPv6), in this order, with this TTL in seconds.
    Addresses(Vec<IpAddr>, u32),
    /// `SERVFAIL`.
    ServFail,
    /// No reply at all (the resolver times out).
    Silent,
}

#[derive(Default)]
struct Zone {
    answers: HashMap<String, Answer>,
    queries: HashMap<String, usize>,
}

/// A running test DNS server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    /// Starts a server with no names (every query is NXDOMAIN until [`DnsServer::set`]).
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let z = zone.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Some(reply) = answer(&z, &query) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        DnsServer { addr, zone, task }
    }

    /// Where it listens (pass it as `--dns-server`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers `name` with `addresses` and `ttl` seconds from now on.
    pub fn set(&self, name: &str, addresses: &[IpAddr], ttl: u32) {
        self.answer(name, Answer::Addresses(addresses.to_vec(), ttl));
    }

    /// Sets what the server says about `name`.
    pub fn answer(&self, name: &str, answer: Answer) {
        self.zone
            .lock()
            .unwrap()
            .answers
            .insert(normalize(name), answer);
    }

    /// How many queries (of any type) asked about `name` so far.
    pub fn queries(&self, name: &str) -> usize {
        self.zone
            .lock()
            .unwrap()
            .queries
            .get(&normalize(name))
            .copied()
            .unwrap_or(0)
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn answer(zone: &Mutex<Zone>, query: &Message) -> Option<Vec<u8>> {
    let q = query.queries().first()?;
    let name = normalize(&q.name().to_ascii());
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_query(q.clone());
    let found = {
        let mut zone = zone.lock().unwrap();
        *zone.queries.entry(name.clone()).or_default() += 1;
        zone.answers.get(&name).cloned()
    };
    match found {
        None => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Some(Answer::Silent) => return None,
        Some(Answer::ServFail) => {
            reply.set_response_code(ResponseCode::ServFail);
        }
        Some(Answer::Addresses(ips, ttl)) => {
            reply.set_response_code(ResponseCode::NoError);
            for ip in ips {
                let rdata = match (ip, q.query_type()) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                    _ => continue,
                };
                reply.add_answer(Record::from_rdata(q.name().clone(), ttl, rdata));
            }
        }
    }
    reply.to_vec().ok()
}
