//! Block answers: the DNS response the filter sends instead of forwarding a blocked query.
//! Built from the parsed query so ID, opcode, question, RD and CD match it; the kind of answer
//! (NXDOMAIN, REFUSED, NODATA, sinkhole, given addresses) comes from the configuration, and an
//! RFC 8914 Extended DNS Error explains the block to clients that sent EDNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::ProtoError;

use crate::config::BlockAnswer;
use crate::dns::{DnsQuery, PADDING_OPTION};

/// RFC 8914 option code of an Extended DNS Error.
pub const EDE_OPTION: u16 = 15;
/// EDNS payload size advertised in block answers (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// RFC 8914 info codes a block answer can carry: 15 "Blocked" is an operator's security
/// policy (the default, for model verdicts too); 17 "Filtered" is filtering the client asked
/// for, an opt-in setting (`block.ede`).
pub const EDE_BLOCKED: u16 = 15;
pub const EDE_FILTERED: u16 = 17;

/// Why a block answer was sent: the EXTRA-TEXT of its Extended DNS Error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockCause {
    DenyList,
    /// The scorer said block.
    Model,
    /// The scorer could not be asked and `failure_mode` is `closed`.
    ScorerUnavailable,
    /// The upstream answer pointed (CNAME, HTTPS/SVCB target) to a blocked name.
    Cname,
}

impl BlockCause {
    pub fn text(self) -> &'static str {
        match self {
            BlockCause::DenyList => "blocked by deny list",
            BlockCause::Model => "blocked by model",
            BlockCause::ScorerUnavailable => "scorer unavailable",
            BlockCause::Cname => "blocked CNAME or alias target",
        }
    }
}

/// RFC 8467 block-length padding: padded answers are a multiple of this many octets.
pub const PADDING_BLOCK: usize = 468;

/// Builds the wire bytes of the block answer for `query`.
pub fn block_answer(
    query: &DnsQuery,
    kind: &BlockAnswer,
    ttl: u32,
    cause: BlockCause,
    ede_code: u16,
) -> Result<Vec<u8>, ProtoError> {
    let question = &query.question;
    let qname = question.name().clone();
    let mut reply = response_to(query);

    let addresses = match kind {
        BlockAnswer::Nxdomain => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            Vec::new()
        }
        BlockAnswer::Refused => {
            reply.metadata.response_code = ResponseCode::Refused;
            Vec::new()
        }
        BlockAnswer::Nodata => Vec::new(),
        BlockAnswer::Sinkhole => vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ],
        BlockAnswer::Addresses(list) => list.clone(),
    };
    let answers: Vec<Record> = addresses
        .into_iter()
        .filter_map(|ip| match (question.query_type(), ip) {
            (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(v4))),
            (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(qname.clone(), ttl, rdata))
        .collect();

    if answers.is_empty() && reply.metadata.response_code != ResponseCode::Refused {
        // Negative answer (NXDOMAIN or NODATA): an SOA sets how long it may be cached
        // (RFC 2308: the smaller of the SOA's TTL and its minimum field).
        reply.add_authority(Record::from_rdata(
            qname,
            ttl,
            RData::SOA(synthetic_soa(ttl)?),
        ));
    } else {
        reply.add_answers(answers);
    }

    if query.has_edns() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        let (code, text) = (ede_code, cause.text());
        let mut data = code.to_be_bytes().to_vec();
        data.extend_from_slice(text.as_bytes());
        edns.options_mut()
            .insert(EdnsOption::Unknown(EDE_OPTION, data));
        reply.set_edns(edns);
    }
    finish(reply, query)
}

/// The answer to a query whose EDNS version the filter does not implement: RCODE BADVERS
/// (16: extended RCODE 1 in the OPT record, 0 in the header), with an OPT record of version
/// 0, the highest this filter implements (RFC 6891 6.1.3). No policy applies to it.
pub fn badvers_answer(query: &DnsQuery) -> Result<Vec<u8>, ProtoError> {
    let mut reply = response_to(query);
    reply.metadata.response_code = ResponseCode::BADVERS;
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    reply.set_edns(edns);
    finish(reply, query)
}

/// A response header and question section for `query`: its ID, opcode QUERY, RD and CD.
fn response_to(query: &DnsQuery) -> Message {
    let mut reply = Message::response(query.id, OpCode::Query);
    reply.metadata.recursion_desired = query.recursion_desired;
    reply.metadata.checking_disabled = query.checking_disabled;
    reply.metadata.recursion_available = true;
    reply.add_query(query.question.clone());
    reply
}

/// Encodes `reply`; when the query asked for padding (RFC 7830), pads it to a multiple of
/// [`PADDING_BLOCK`] octets with a Padding option, as RFC 8467 recommends for responses.
fn finish(mut reply: Message, query: &DnsQuery) -> Result<Vec<u8>, ProtoError> {
    let bytes = reply.to_vec()?;
    let Some(edns) = reply
        .edns
        .as_mut()
        .filter(|_| query.edns.is_some_and(|e| e.padding))
    else {
        return Ok(bytes);
    };
    // The option adds its 4-byte header plus the padding itself.
    let padding = (PADDING_BLOCK - (bytes.len() + 4) % PADDING_BLOCK) % PADDING_BLOCK;
    edns.options_mut()
        .insert(EdnsOption::Unknown(PADDING_OPTION, vec![0; padding]));
    reply.to_vec()
}

fn synthetic_soa(ttl: u32) -> Result<SOA, ProtoError> {
    // The two names never change: parse them once per VM, not once per blocked query.
    static NAMES: OnceLock<(Name, Name)> = OnceLock::new();
    let (mname, rname) = match NAMES.get() {
        Some(names) => names,
        None => {
            let names = (
                Name::from_ascii("dohguard.invalid.")?,
                Name::from_ascii("hostmaster.dohguard.invalid.")?,
            );
            NAMES.get_or_init(|| names)
        }
    };
    Ok(SOA::new(
        mname.clone(),
        rname.clone(),
        1,
        3600,
        600,
        86_400,
        ttl,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::tests::query_bytes;
    use hickory_proto::op::MessageType;
    use hickory_proto::rr::rdata::opt::EdnsCode;

    fn answer(
        name: &str,
        qtype: RecordType,
        edns: bool,
        kind: BlockAnswer,
        cause: BlockCause,
    ) -> Message {
        let query = DnsQuery::parse(&query_bytes(name, qtype, edns)).unwrap();
        Message::from_vec(&block_answer(&query, &kind, 60, cause, EDE_BLOCKED).unwrap()).unwrap()
    }

    fn ede(msg: &Message) -> Option<(u16, String)> {
        match msg.edns.as_ref()?.option(EdnsCode::Unknown(EDE_OPTION))? {
            EdnsOption::Unknown(_, data) => Some((
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8(data[2..].to_vec()).unwrap(),
            )),
            _ => None,
        }
    }

    #[test]
    fn nxdomain_copies_id_question_and_flags() {
        let msg = answer(
            "Bad.Example.com.",
            RecordType::A,
            false,
            BlockAnswer::Nxdomain,
            BlockCause::DenyList,
        );
        assert_eq!(msg.metadata.id, 0x1234);
        assert_eq!(msg.metadata.message_type, MessageType::Response);
        assert!(msg.metadata.recursion_desired);
        assert!(msg.metadata.recursion_available);
        assert!(!msg.metadata.authoritative);
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(msg.queries.len(), 1);
        assert_eq!(msg.queries[0].name().to_ascii(), "Bad.Example.com.");
        assert_eq!(msg.queries[0].query_type(), RecordType::A);
        assert!(msg.answers.is_empty());
        assert_eq!(msg.authorities.len(), 1);
        assert_eq!(msg.authorities[0].ttl, 60);
        assert!(msg.edns.is_none(), "no OPT when the query had none");
    }

    #[test]
    fn ede_is_added_when_the_query_had_edns() {
        let msg = answer(
            "bad.example.com.",
            RecordType::A,
            true,
            BlockAnswer::Nxdomain,
            BlockCause::DenyList,
        );
        assert_eq!(ede(&msg), Some((15, "blocked by deny list".into())));
        let msg = answer(
            "dga.example.com.",
            RecordType::A,
            true,
            BlockAnswer::Refused,
            BlockCause::Model,
        );
        assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
        assert!(msg.authorities.is_empty());
        assert_eq!(ede(&msg), Some((15, "blocked by model".into())));
    }

    #[test]
    fn sinkhole_answers_unspecified_addresses_or_nodata() {
        let a = answer(
            "x.test.",
            RecordType::A,
            false,
            BlockAnswer::Sinkhole,
            BlockCause::Model,
        );
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].data, RData::A(A(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(a.answers[0].ttl, 60);
        let aaaa = answer(
            "x.test.",
            RecordType::AAAA,
            false,
            BlockAnswer::Sinkhole,
            BlockCause::Model,
        );
        assert_eq!(
            aaaa.answers[0].data,
            RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED))
        );
        let txt = answer(
            "x.test.",
            RecordType::TXT,
            false,
            BlockAnswer::Sinkhole,
            BlockCause::Model,
        );
        assert_eq!(txt.metadata.response_code, ResponseCode::NoError);
        assert!(txt.answers.is_empty());
        assert_eq!(txt.authorities.len(), 1, "NODATA carries the SOA");
    }

    #[test]
    fn given_addresses_are_answered_by_family() {
        let kind = BlockAnswer::Addresses(vec![
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]);
        let a = answer(
            "x.test.",
            RecordType::A,
            false,
            kind.clone(),
            BlockCause::DenyList,
        );
        assert_eq!(a.answers.len(), 2);
        let aaaa = answer(
            "x.test.",
            RecordType::AAAA,
            false,
            kind.clone(),
            BlockCause::DenyList,
        );
        assert_eq!(aaaa.answers.len(), 1);
        let mx = answer("x.test.", RecordType::MX, false, kind, BlockCause::DenyList);
        assert!(mx.answers.is_empty());
    }

    #[test]
    fn nodata_is_noerror_with_soa() {
        let msg = answer(
            "x.test.",
            RecordType::A,
            false,
            BlockAnswer::Nodata,
            BlockCause::DenyList,
        );
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert!(msg.answers.is_empty());
        assert_eq!(msg.authorities[0].record_type(), RecordType::SOA);
    }

    fn padding_of(msg: &Message) -> Option<usize> {
        match msg.edns.as_ref()?.option(EdnsCode::Padding)? {
            EdnsOption::Unknown(_, data) => {
                assert!(data.iter().all(|&b| b == 0), "padding octets are zero");
                Some(data.len())
            }
            _ => None,
        }
    }

    #[test]
    fn answers_are_padded_to_468_octets_when_the_query_asked() {
        use crate::dns::tests::edns_query_bytes;
        let kinds = [
            BlockAnswer::Nxdomain,
            BlockAnswer::Refused,
            BlockAnswer::Sinkhole,
            BlockAnswer::Addresses(vec!["192.0.2.1".parse().unwrap()]),
        ];
        for name in [
            "a.com.",
            "a-much-longer-name.under.several.labels.example.org.",
        ] {
            let padded =
                edns_query_bytes(name, 0, vec![EdnsOption::Unknown(PADDING_OPTION, vec![])]);
            let query = DnsQuery::parse(&padded).unwrap();
            for kind in &kinds {
                let wire = block_answer(&query, kind, 60, BlockCause::Model, EDE_BLOCKED).unwrap();
                assert_eq!(
                    wire.len() % PADDING_BLOCK,
                    0,
                    "{name} {kind:?}: {} octets",
                    wire.len()
                );
                let msg = Message::from_vec(&wire).unwrap();
                assert!(padding_of(&msg).is_some(), "{name} {kind:?}");
                assert_eq!(ede(&msg), Some((15, "blocked by model".into())));
                assert_eq!(msg.queries[0].name().to_ascii(), name);
            }
            // Without the option: no padding.
            let plain = DnsQuery::parse(&edns_query_bytes(name, 0, vec![])).unwrap();
            let wire =
                block_answer(&plain, &BlockAnswer::Nxdomain, 60, BlockCause::Model, 15).unwrap();
            assert_eq!(padding_of(&Message::from_vec(&wire).unwrap()), None);
            assert_ne!(wire.len() % PADDING_BLOCK, 0);
        }
    }

    #[test]
    fn unknown_edns_version_is_answered_badvers() {
        use crate::dns::tests::edns_query_bytes;
        let query = DnsQuery::parse(&edns_query_bytes("a.com.", 1, vec![])).unwrap();
        let msg = Message::from_vec(&badvers_answer(&query).unwrap()).unwrap();
        assert_eq!(msg.metadata.id, 0x1234);
        assert_eq!(msg.metadata.message_type, MessageType::Response);
        // The parser merges the OPT record's extended RCODE into the header's (hickory names
        // 16 BADSIG, the code BADVERS shares).
        assert_eq!(u16::from(msg.metadata.response_code), 16);
        let edns = msg.edns.as_ref().expect("BADVERS carries an OPT record");
        assert_eq!((edns.version(), edns.rcode_high()), (0, 1));
        assert!(msg.answers.is_empty() && msg.authorities.is_empty());
        // The raw header RCODE is the low four bits of 16: zero.
        let wire = badvers_answer(&query).unwrap();
        assert_eq!(wire[3] & 0x0f, 0);
        // Padded too when asked.
        let padded = DnsQuery::parse(&edns_query_bytes(
            "a.com.",
            3,
            vec![EdnsOption::Unknown(PADDING_OPTION, vec![0; 7])],
        ))
        .unwrap();
        assert_eq!(badvers_answer(&padded).unwrap().len() % PADDING_BLOCK, 0);
    }
}
