//! Demo traffic for `cargo xtask up --demo-traffic`: a realistic mix of DoH queries through the
//! real gateway, so a fresh console has something to show. Each query is one HTTP/1.1 GET on
//! the cleartext listener from its own loopback source address (127.0.0.0/8 is all local on
//! Linux), so the console sees several clients:
//! - ordinary clients (127.0.0.10-13) asking for the demo zone (`www`, `allowed.example.test`);
//! - one client (127.0.0.20) asking for names generated to look algorithmic (DGA-like);
//! - one client (127.0.0.11) hitting the demo deny list (`ads.example.test`, `*.tracker...`);
//! - one client (127.0.0.66) with a burst of random names under the static demo zone, all
//!   NXDOMAIN (what a DGA-infected host looks like from the resolver).
//!
//! Names come from a fixed-seed generator, so two runs send the same mix.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use crate::dns;
use crate::LaunchError;

/// What was sent and how the gateway answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub sent: usize,
    /// Answered with HTTP 200 (a DNS answer, blocked or not).
    pub answered: usize,
    /// Distinct client addresses used.
    pub clients: usize,
}

/// One planned query: from which loopback address, which name, which type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub client: Ipv4Addr,
    pub name: String,
    pub qtype: dns::Type,
}

/// A small linear congruential generator: enough for demo names, no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn label(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| CHARS[(self.next() % CHARS.len() as u64) as usize] as char)
            .collect()
    }
}

/// The mix (about 120 queries).
pub fn plan() -> Vec<Query> {
    let mut rng = Lcg(0x5eed);
    let mut out = Vec::new();
    let q = |client: [u8; 4], name: String, qtype| Query {
        client: Ipv4Addr::from(client),
        name,
        qtype,
    };
    for i in 0..40u8 {
        let name = if i % 3 == 0 {
            "allowed.example.test"
        } else {
            "www.example.test"
        };
        let qtype = if i % 2 == 0 {
            dns::Type::A
        } else {
            dns::Type::AAAA
        };
        out.push(q([127, 0, 0, 10 + i % 4], name.into(), qtype));
    }
    for i in 0..30 {
        let tld = ["com", "net", "org", "info"][i % 4];
        let len = 10 + (rng.next() % 7) as usize;
        out.push(q(
            [127, 0, 0, 20],
            format!("{}.{tld}", rng.label(len)),
            dns::Type::A,
        ));
    }
    for i in 0..10 {
        let name = if i % 2 == 0 {
            "ads.example.test".to_owned()
        } else {
            format!("{}.tracker.example.test", rng.label(6))
        };
        out.push(q([127, 0, 0, 11], name, dns::Type::A));
    }
    for _ in 0..40 {
        out.push(q(
            [127, 0, 0, 66],
            format!("{}.example.test", rng.label(12)),
            dns::Type::A,
        ));
    }
    out
}

/// Sends one query as a DoH GET over HTTP/1.1 from `query.client`; returns the HTTP status.
pub fn send_one(http_port: u16, query: &Query) -> Result<u16, LaunchError> {
    let message =
        dns::query(&query.name, query.qtype, 0, false).map_err(|e| LaunchError::Http {
            url: query.name.clone(),
            message: format!("building the DNS query: {e}"),
        })?;
    let io = |what: &str| {
        LaunchError::io(format!(
            "demo query {what} {} from {}",
            query.name, query.client
        ))
    };
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(io("socket for"))?;
    socket
        .bind(&SocketAddr::V4(SocketAddrV4::new(query.client, 0)).into())
        .map_err(io("binding"))?;
    socket
        .connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], http_port)).into(),
            Duration::from_secs(5),
        )
        .map_err(io("connecting"))?;
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io("timeout for"))?;
    let request = format!(
        "GET /dns-query?dns={} HTTP/1.1\r\nHost: localhost\r\nAccept: application/dns-message\r\nConnection: close\r\n\r\n",
        dns::get_param(&message)
    );
    stream
        .write_all(request.as_bytes())
        .map_err(io("sending"))?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .map_err(io("reading the answer to"))?;
    let head = String::from_utf8_lossy(&reply[..reply.len().min(64)]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| LaunchError::Http {
            url: format!("http://127.0.0.1:{http_port}/dns-query"),
            message: format!("not an HTTP answer: {head:?}"),
        })
}

/// Sends the whole [`plan`] to the gateway's cleartext listener.
pub fn send(http_port: u16) -> Result<Summary, LaunchError> {
    let plan = plan();
    let mut summary = Summary {
        clients: plan
            .iter()
            .map(|q| q.client)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        ..Summary::default()
    };
    for query in &plan {
        summary.sent += 1;
        if send_one(http_port, query)? == 200 {
            summary.answered += 1;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_fixed_and_mixed() {
        let a = plan();
        assert_eq!(a, plan(), "same seed, same names");
        assert_eq!(a.len(), 120);
        let clients: std::collections::HashSet<_> = a.iter().map(|q| q.client).collect();
        assert_eq!(clients.len(), 6);
        assert_eq!(
            a.iter()
                .filter(|q| q.client == Ipv4Addr::new(127, 0, 0, 66))
                .count(),
            40
        );
        assert!(a.iter().any(|q| q.name == "ads.example.test"));
    }
}
