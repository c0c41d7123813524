//! Property tests over the filter's public pure API: arbitrary bytes never panic the decode
//! path, GET encoding round-trips, and block answers for generated queries always parse back
//! with the query's ID, question and EDNS presence.

use dohguard_filter::answer::{block_answer, BlockCause};
use dohguard_filter::config::BlockAnswer;
use dohguard_filter::dns::DnsQuery;
use dohguard_filter::doh::{classify, encode_get_param, RequestKind};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;

fn query(labels: &[String], qtype: u16, id: u16, edns: bool) -> Vec<u8> {
    let name = Name::from_ascii(format!("{}.", labels.join("."))).unwrap();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = id & 1 == 0;
    msg.add_query(Query::query(name, RecordType::from(qtype)));
    if edns {
        msg.set_edns(Edns::new());
    }
    msg.to_vec().unwrap()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Err(rejection) = DnsQuery::parse(&bytes) {
            prop_assert_eq!(rejection.status, 400);
        }
    }

    #[test]
    fn get_parameter_round_trips(bytes in prop::collection::vec(any::<u8>(), 1..2000)) {
        let path = format!("/dns-query?dns={}", encode_get_param(&bytes));
        prop_assert_eq!(
            classify("/dns-query", "GET", &path, None, None).unwrap(),
            RequestKind::Get(bytes)
        );
    }

    #[test]
    fn block_answers_parse_back(
        labels in prop::collection::vec("[a-z0-9][a-z0-9-]{0,20}", 1..5),
        qtype in prop::sample::select(vec![1u16, 28, 16, 15, 65, 255, 65280]),
        id in any::<u16>(),
        edns in any::<bool>(),
        kind in 0..5usize,
    ) {
        let q = DnsQuery::parse(&query(&labels, qtype, id, edns)).unwrap();
        prop_assert_eq!(q.name.clone(), labels.join("."));
        let kind = [
            BlockAnswer::Nxdomain,
            BlockAnswer::Refused,
            BlockAnswer::Nodata,
            BlockAnswer::Sinkhole,
            BlockAnswer::Addresses(vec!["192.0.2.9".parse().unwrap()]),
        ][kind].clone();
        let bytes = block_answer(&q, &kind, 30, BlockCause::Model, dohguard_filter::answer::EDE_BLOCKED).unwrap();
        let reply = Message::from_vec(&bytes).unwrap();
        prop_assert_eq!(reply.metadata.id, id);
        prop_assert_eq!(reply.metadata.message_type, MessageType::Response);
        prop_assert_eq!(reply.metadata.recursion_desired, id & 1 == 0);
        prop_assert_eq!(&reply.queries, &vec![q.question.clone()]);
        prop_assert_eq!(reply.edns.is_some(), edns);
    }
}
