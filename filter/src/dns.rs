//! DNS query parsing: checks that the bytes of a DoH request are one well-formed query and
//! extracts what the policy needs (normalised name, type mnemonic, EDNS presence). Wire format
//! goes through `hickory-proto`; the name rules come from `dohguard-core`.

use dohguard_core::name::normalize;
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RecordType;

use crate::doh::Rejection;

/// A parsed, checked query.
#[derive(Debug, Clone)]
pub struct DnsQuery {
    pub message: Message,
    /// Normalised query name; `None` for the root name.
    pub name: Option<String>,
    pub qtype: RecordType,
}

impl DnsQuery {
    /// Parses one DNS query message; every problem is a 400 with a reason.
    pub fn parse(bytes: &[u8]) -> Result<DnsQuery, Rejection> {
        let message = Message::from_vec(bytes)
            .map_err(|err| Rejection::bad_request(format!("malformed DNS message: {err}")))?;
        if message.metadata.message_type != MessageType::Query {
            return Err(Rejection::bad_request(
                "DNS message is a response, not a query",
            ));
        }
        if message.queries.len() != 1 {
            return Err(Rejection::bad_request(format!(
                "DNS message has {} questions; exactly 1 is supported",
                message.queries.len()
            )));
        }
        let question = &message.queries[0];
        let qtype = question.query_type();
        let qname = question.name();
        let name = if qname.is_root() {
            None
        } else {
            Some(name_text(qname.iter())?)
        };
        Ok(DnsQuery {
            message,
            name,
            qtype,
        })
    }

    /// RR type mnemonic for the callout: `A`, `AAAA`, ..., `TYPE65` style for unknown ones.
    pub fn qtype_mnemonic(&self) -> String {
        match self.qtype {
            RecordType::Unknown(code) => format!("TYPE{code}"),
            known => known.to_string(),
        }
    }

    pub fn has_edns(&self) -> bool {
        self.message.edns.is_some()
    }
}

/// Joins wire labels into presentation form and normalises it. Labels are raw bytes on the
/// wire; a byte that is not a host-name character (including a `.` inside a label) is refused
/// instead of escaped, because such names cannot be matched against lists or scored.
fn name_text<'a>(labels: impl Iterator<Item = &'a [u8]>) -> Result<String, Rejection> {
    // Sized for a typical name up front instead of growing by doubling.
    let mut text = String::with_capacity(64);
    for label in labels {
        if !text.is_empty() {
            text.push('.');
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(Rejection::bad_request(format!(
                    "query name has byte 0x{b:02x}, which DNS host names do not carry"
                )));
            }
            text.push(char::from(b));
        }
    }
    normalize(&text).map_err(|err| Rejection::bad_request(format!("query name rejected: {err}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::Name;

    /// Builds a query message the way a stub resolver would.
    pub fn query_bytes(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
        let mut msg = Message::new(0x1234, MessageType::Query, hickory_proto::op::OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if edns {
            msg.set_edns(Edns::new());
        }
        msg.to_vec().unwrap()
    }

    #[test]
    fn parses_a_query() {
        let q = DnsQuery::parse(&query_bytes("WWW.Example.COM.", RecordType::AAAA, true)).unwrap();
        assert_eq!(q.name.as_deref(), Some("www.example.com"));
        assert_eq!(q.qtype_mnemonic(), "AAAA");
        assert!(q.has_edns());
        assert_eq!(q.message.metadata.id, 0x1234);
    }

    #[test]
    fn unknown_types_use_type_n() {
        let q = DnsQuery::parse(&query_bytes("a.com.", RecordType::Unknown(65280), false)).unwrap();
        assert_eq!(q.qtype_mnemonic(), "TYPE65280");
        assert!(!q.has_edns());
    }

    #[test]
    fn root_query_has_no_name() {
        let q = DnsQuery::parse(&query_bytes(".", RecordType::NS, false)).unwrap();
        assert_eq!(q.name, None);
    }

    #[test]
    fn truncated_and_garbage_messages_are_400() {
        let full = query_bytes("example.com.", RecordType::A, false);
        for cut in 0..full.len() {
            let err = DnsQuery::parse(&full[..cut]).unwrap_err();
            assert_eq!(err.status, 400, "cut at {cut}");
        }
        assert_eq!(DnsQuery::parse(b"\xff\xff\xff").unwrap_err().status, 400);
    }

    #[test]
    fn qdcount_must_be_one() {
        let mut zero = query_bytes("example.com.", RecordType::A, false);
        zero[4] = 0;
        zero[5] = 0;
        zero.truncate(12);
        let err = DnsQuery::parse(&zero).unwrap_err();
        assert!(err.message.contains("0 questions"), "{}", err.message);

        let mut msg = Message::new(1, MessageType::Query, hickory_proto::op::OpCode::Query);
        msg.add_query(Query::query(
            Name::from_ascii("a.com.").unwrap(),
            RecordType::A,
        ));
        msg.add_query(Query::query(
            Name::from_ascii("b.com.").unwrap(),
            RecordType::A,
        ));
        let err = DnsQuery::parse(&msg.to_vec().unwrap()).unwrap_err();
        assert!(err.message.contains("2 questions"));
    }

    #[test]
    fn responses_and_odd_names_are_rejected() {
        let mut resp = query_bytes("example.com.", RecordType::A, false);
        resp[2] |= 0x80;
        assert!(DnsQuery::parse(&resp)
            .unwrap_err()
            .message
            .contains("response"));
        // A label holding a space: legal on the wire, not a host name.
        let mut odd = query_bytes("axb.com.", RecordType::A, false);
        let x = odd.iter().position(|&b| b == b'x').unwrap();
        odd[x] = b' ';
        assert!(DnsQuery::parse(&odd).unwrap_err().message.contains("0x20"));
    }
}
