//! DNS query parsing: checks that the bytes of a DoH request are one well-formed query and
//! extracts what the policy needs (normalised name, type mnemonic, EDNS presence). Wire format
//! goes through `hickory-proto`; the name rules come from `dohguard-core`.

use dohguard_core::name::normalize;
use hickory_proto::op::Query;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};

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

/// What a pending request keeps of its query: only what the decision and the answer need
/// (ID, the flags an answer copies, the question, EDNS presence and the options the answer
/// acts on), never the parsed message.
#[derive(Debug, Clone)]
pub struct DnsQuery {
    pub id: u16,
    /// RD and CD, copied into answers.
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    /// The question as sent (case kept), for the answer's question section.
    pub question: Query,
    /// Normalised query name; [`ROOT_NAME`] (`.`) for the root.
    pub name: String,
    pub qtype: RecordType,
    /// The OPT record, when the query has one.
    pub edns: Option<EdnsInfo>,
}

/// What the filter reads from a query's OPT record (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdnsInfo {
    pub version: u8,
    /// The DO bit.
    pub dnssec_ok: bool,
    /// The query carried an EDNS Padding option (RFC 7830): the answer is padded (RFC 8467).
    pub padding: bool,
    /// Bytes of EDNS options in the OPT record. Their contents are passed through unread (only
    /// their framing is checked): the upstream judges options it knows, such as Client Subnet.
    pub option_bytes: u16,
}

/// RFC 6891 OPT record type and RFC 7830 Padding option code.
const OPT_TYPE: u16 = 41;
pub const PADDING_OPTION: u16 = 12;
const RD_BIT: u8 = 0x01;
const CD_BIT: u8 = 0x10;
const DO_BIT: u32 = 0x8000;

impl DnsQuery {
    /// Parses one DNS query message; every problem is a 400 with a reason. Two steps: the
    /// 12-byte header first ([`check_header`]), then only the question and the optional OPT
    /// record, nothing else; bytes after them are refused. Nothing is allocated from a count
    /// in the message, and the question name is read by `hickory-proto`, which follows only
    /// backward compression pointers: in the first name only the 12 header bytes lie behind
    /// it, so a pointer can hop a few times at most and never loop.
    pub fn parse(bytes: &[u8]) -> Result<DnsQuery, Rejection> {
        check_header(bytes)?;
        let malformed =
            |err: DecodeError| Rejection::bad_request(format!("malformed DNS message: {err}"));
        let mut decoder = BinDecoder::new(bytes);
        decoder.read_slice(HEADER_LEN).map_err(malformed)?;
        let question = Query::read(&mut decoder).map_err(malformed)?;
        let edns = if bytes[11] == 1 {
            Some(read_opt(&mut decoder)?)
        } else {
            None
        };
        if !decoder.is_empty() {
            return Err(Rejection::bad_request(format!(
                "DNS query has {} bytes after its last record",
                decoder.len()
            )));
        }
        let qtype = question.query_type();
        let qname = question.name();
        let name = if qname.is_root() {
            ROOT_NAME.to_owned()
        } else {
            name_text(qname.iter())?
        };
        Ok(DnsQuery {
            id: u16::from_be_bytes([bytes[0], bytes[1]]),
            recursion_desired: bytes[2] & RD_BIT != 0,
            checking_disabled: bytes[3] & CD_BIT != 0,
            question,
            name,
            qtype,
            edns,
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
        self.edns.is_some()
    }

    /// The query's EDNS version when it is one this filter does not implement (anything
    /// above 0): such a query is answered BADVERS (RFC 6891 6.1.3).
    pub fn unsupported_edns_version(&self) -> Option<u8> {
        self.edns.map(|e| e.version).filter(|v| *v > 0)
    }
}

/// Reads the one additional record, which must be an OPT record (owner the root, type 41),
/// walking its options within the record's own length: only the Padding option is kept.
fn read_opt(decoder: &mut BinDecoder<'_>) -> Result<EdnsInfo, Rejection> {
    let short = |_| Rejection::bad_request("malformed DNS message: OPT record cut short");
    let owner = decoder.read_u8().map_err(short)?.unverified();
    let rtype = decoder.read_u16().map_err(short)?.unverified();
    if owner != 0 || rtype != OPT_TYPE {
        return Err(Rejection::bad_request(
            "the additional record of a query must be an EDNS OPT record for the root",
        ));
    }
    let _payload = decoder.read_u16().map_err(short)?;
    let ttl = decoder.read_u32().map_err(short)?.unverified();
    let rdlen = decoder.read_u16().map_err(short)?.unverified();
    let mut rdata = decoder
        .read_slice(usize::from(rdlen))
        .map_err(short)?
        .unverified();
    let mut padding = false;
    while !rdata.is_empty() {
        let [c0, c1, l0, l1, rest @ ..] = rdata else {
            return Err(Rejection::bad_request(
                "malformed DNS message: EDNS option header cut short",
            ));
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if rest.len() < len {
            return Err(Rejection::bad_request(
                "malformed DNS message: EDNS option longer than its OPT record",
            ));
        }
        padding |= u16::from_be_bytes([*c0, *c1]) == PADDING_OPTION;
        rdata = &rest[len..];
    }
    Ok(EdnsInfo {
        version: (ttl >> 16) as u8,
        dnssec_ok: ttl & DO_BIT != 0,
        padding,
        option_bytes: rdlen,
    })
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
    use hickory_proto::op::{Edns, Message, MessageType};
    use hickory_proto::rr::rdata::opt::EdnsOption;
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
        assert_eq!(q.id, 0x1234);
        assert!(q.recursion_desired && !q.checking_disabled);
        assert_eq!(q.question.name().to_ascii(), "WWW.Example.COM.");
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

    /// A query with an OPT record of the given version and options.
    pub fn edns_query_bytes(name: &str, version: u8, options: Vec<EdnsOption>) -> Vec<u8> {
        let mut msg = Message::new(0x1234, MessageType::Query, hickory_proto::op::OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let mut edns = Edns::new();
        edns.set_version(version);
        edns.set_dnssec_ok(true);
        for option in options {
            edns.options_mut().insert(option);
        }
        msg.set_edns(edns);
        msg.to_vec().unwrap()
    }

    #[test]
    fn edns_version_do_bit_and_padding_are_read() {
        let plain = DnsQuery::parse(&edns_query_bytes("a.com.", 0, vec![])).unwrap();
        assert_eq!(
            plain.edns,
            Some(EdnsInfo {
                version: 0,
                dnssec_ok: true,
                padding: false,
                option_bytes: 0,
            })
        );
        assert_eq!(plain.unsupported_edns_version(), None);
        let padded = DnsQuery::parse(&edns_query_bytes(
            "a.com.",
            0,
            vec![
                EdnsOption::Unknown(10, vec![1; 8]), // a cookie before the padding
                EdnsOption::Unknown(PADDING_OPTION, vec![0; 20]),
            ],
        ))
        .unwrap();
        assert!(padded.edns.unwrap().padding);
        // Two option headers (4 bytes each) and their 8 + 20 bytes.
        assert_eq!(padded.edns.unwrap().option_bytes, 36);
        let v1 = DnsQuery::parse(&edns_query_bytes("a.com.", 1, vec![])).unwrap();
        assert_eq!(v1.unsupported_edns_version(), Some(1));
    }

    #[test]
    fn only_question_and_opt_are_accepted() {
        let good = query_bytes("example.com.", RecordType::A, true);
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0, 0]);
        assert!(DnsQuery::parse(&trailing)
            .unwrap_err()
            .message
            .contains("3 bytes after"));
        // An A record where the OPT record belongs.
        let mut not_opt = query_bytes("example.com.", RecordType::A, false);
        not_opt[11] = 1;
        not_opt.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        assert!(DnsQuery::parse(&not_opt)
            .unwrap_err()
            .message
            .contains("must be an EDNS OPT"));
        // An option claiming more bytes than its OPT record holds.
        let mut long_option =
            edns_query_bytes("a.com.", 0, vec![EdnsOption::Unknown(10, vec![1; 8])]);
        let at = long_option.len() - 10; // the option's length field
        long_option[at..at + 2].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(DnsQuery::parse(&long_option).unwrap_err().status, 400);
    }

    #[test]
    fn compression_pointers_in_the_question_cannot_loop() {
        // The question name is a pointer to itself, then one into the header.
        for target in [12u8, 0] {
            let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            b.extend([0xc0, target, 0, 1, 0, 1]);
            assert_eq!(DnsQuery::parse(&b).unwrap_err().status, 400, "{target}");
        }
    }
}
