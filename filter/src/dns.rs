//! DNS query parsing: checks that the bytes of a DoH request are one well-formed query and
//! extracts what the policy needs (normalised name, type mnemonic, EDNS presence). Wire format
//! goes through `hickory-proto`; the name rules come from `dohguard-core`.

use dohguard_core::name::normalize;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::doh::Rejection;

/// How the root name is written in [`DnsQuery::name`], events and logs.
pub const ROOT_NAME: &str = ".";

/// Header flag bits and field offsets (RFC 1035 4.1.1).
pub const HEADER_LEN: usize = 12;
const QR_BIT: u8 = 0x80;
const OPCODE_MASK: u8 = 0x78;

/// Checks the fixed 12-byte header before anything else is parsed: a query (QR 0), opcode
/// QUERY, exactly one question, no answer or authority records, and at most one additional
/// record (the EDNS OPT record). Reads no more than those 12 bytes.
pub fn check_header(bytes: &[u8]) -> Result<(), Rejection> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(Rejection::bad_request(format!(
            "malformed DNS message: {} bytes, shorter than the 12-byte header",
            bytes.len()
        )));
    };
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    if header[2] & QR_BIT != 0 {
        return Err(Rejection::bad_request(
            "DNS message is a response, not a query",
        ));
    }
    let opcode = (header[2] & OPCODE_MASK) >> 3;
    if opcode != 0 {
        return Err(Rejection::bad_request(format!(
            "DNS opcode {opcode} not supported: only QUERY (0)"
        )));
    }
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 {
        return Err(Rejection::bad_request(format!(
            "DNS message has {qd} questions; exactly 1 is supported"
        )));
    }
    if an != 0 || ns != 0 {
        return Err(Rejection::bad_request(format!(
            "DNS query carries {an} answer and {ns} authority records; a query has none"
        )));
    }
    if ar > 1 {
        return Err(Rejection::bad_request(format!(
            "DNS query carries {ar} additional records; at most 1 (EDNS OPT) is supported"
        )));
    }
    Ok(())
}

/// A hostile DoH body for tests and benchmarks: a 64 KB query whose QDCOUNT claims about
/// 10,900 questions, the first a 253-byte name and the rest compression pointers to it.
/// A parser that reads every question before checking the count pays for all of them.
pub fn hostile_question_flood() -> Vec<u8> {
    let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    // The first question: four 62-byte labels and one 1-byte label (253 characters).
    for _ in 0..4 {
        b.push(62);
        b.extend(std::iter::repeat_n(b'a', 62));
    }
    b.extend([1, b'a', 0, 0, 1, 0, 1]);
    let mut count: u16 = 1;
    // Then pointer-only questions (pointer to offset 12, type A, class IN) up to 65,535 bytes.
    while b.len() + 6 <= crate::config::MAX_DNS_MESSAGE {
        b.extend([0xc0, 12, 0, 1, 0, 1]);
        count += 1;
    }
    b[4..6].copy_from_slice(&count.to_be_bytes());
    b
}

/// A parsed, checked query.
#[derive(Debug, Clone)]
pub struct DnsQuery {
    pub message: Message,
    /// Normalised query name; [`ROOT_NAME`] (`.`) for the root.
    pub name: String,
    pub qtype: RecordType,
}

impl DnsQuery {
    /// Parses one DNS query message; every problem is a 400 with a reason. The 12-byte header
    /// is checked first ([`check_header`]), so the full parse only ever reads one question and
    /// at most one additional record: a body of thousands of questions costs no more than one.
    pub fn parse(bytes: &[u8]) -> Result<DnsQuery, Rejection> {
        check_header(bytes)?;
        let message = Message::from_vec(bytes)
            .map_err(|err| Rejection::bad_request(format!("malformed DNS message: {err}")))?;
        // The header check settled QR and QDCOUNT; a parse that still yields no question
        // is refused rather than indexed.
        let Some(question) = message.queries.first() else {
            return Err(Rejection::bad_request("DNS message has no question"));
        };
        let qtype = question.query_type();
        let qname = question.name();
        let name = if qname.is_root() {
            ROOT_NAME.to_owned()
        } else {
            name_text(qname.iter())?
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
    use hickory_proto::op::{Edns, MessageType, Query};
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
        assert_eq!(q.name, "www.example.com");
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
    fn root_query_is_named_dot() {
        let q = DnsQuery::parse(&query_bytes(".", RecordType::NS, false)).unwrap();
        assert_eq!(q.name, ROOT_NAME);
    }

    #[test]
    fn header_is_checked_before_the_body() {
        let good = query_bytes("example.com.", RecordType::A, true);
        let with = |at: usize, value: u16| {
            let mut b = good.clone();
            b[at..at + 2].copy_from_slice(&value.to_be_bytes());
            b
        };
        // Counts that would make a full parse read far past the question.
        for (bytes, needle) in [
            (with(4, 10_878), "10878 questions"),
            (with(6, 1), "1 answer"),
            (with(8, 3), "3 authority"),
            (with(10, 2), "2 additional"),
        ] {
            let err = DnsQuery::parse(&bytes).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(needle), "{}", err.message);
        }
        let mut notify = good.clone();
        notify[2] |= 4 << 3; // opcode NOTIFY
        assert!(DnsQuery::parse(&notify)
            .unwrap_err()
            .message
            .contains("opcode 4"));
        assert!(check_header(&good[..11])
            .unwrap_err()
            .message
            .contains("11 bytes"));
    }

    #[test]
    fn the_hostile_body_is_refused_by_its_header() {
        // 64 KB of questions that all point at one 253-byte name (the reviewed attack).
        let body = hostile_question_flood();
        assert!(body.len() > 60_000);
        let err = DnsQuery::parse(&body).unwrap_err();
        assert!(err.message.contains("questions"), "{}", err.message);
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
