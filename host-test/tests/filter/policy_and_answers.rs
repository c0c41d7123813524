//! Allow/deny rules, enforce vs monitor mode, and the block answers of the
//! real filter, parsed with hickory-proto.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::common::*;
use dohguard_host_test::Filter;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use serde_json::{json, Value};

/// Queries `name` by GET; returns the parsed block answer, or `None` when forwarded.
fn decide(filter: &mut Filter, name: &str, qtype: RecordType, edns: bool) -> Option<Message> {
    let mut stream = filter.stream().unwrap();
    let outcome = doh_get(&mut stream, &wire(&query(name, qtype, edns)));
    match outcome.local_response() {
        Some(_) => Some(dns_answer(&outcome.expect_local_response(200))),
        None => {
            outcome.expect_no_http_call().expect_continue();
            None
        }
    }
}

fn blocked(filter: &mut Filter, name: &str) -> bool {
    decide(filter, name, RecordType::A, false).is_some()
}

#[test]
fn exact_deny_rule_matches_only_that_name() {
    let mut filter = filter(json!({ "deny": ["ads.example.com"] }));
    assert!(blocked(&mut filter, "ads.example.com."));
    assert!(blocked(&mut filter, "ADS.Example.COM."), "case is ignored");
    assert!(!blocked(&mut filter, "x.ads.example.com."));
    assert!(!blocked(&mut filter, "example.com."));
    assert!(!blocked(&mut filter, "bads.example.com."));
    assert_eq!(filter.metric("dohguard.reason.deny_list"), Some(2));
    assert_eq!(filter.metric("dohguard.blocked"), Some(2));
}

#[test]
fn wildcard_rule_matches_names_strictly_under_it() {
    let mut filter = filter(json!({ "deny": ["*.tracker.test"] }));
    assert!(blocked(&mut filter, "a.tracker.test."));
    assert!(blocked(&mut filter, "deep.a.tracker.test."));
    assert!(!blocked(&mut filter, "tracker.test."));
    assert!(!blocked(&mut filter, "nottracker.test."));
}

#[test]
fn dot_rule_matches_the_name_and_everything_under_it() {
    let mut filter = filter(json!({ "deny": [".malware.test"] }));
    assert!(blocked(&mut filter, "malware.test."));
    assert!(blocked(&mut filter, "cdn.malware.test."));
    assert!(!blocked(&mut filter, "amalware.test."));
}

#[test]
fn allow_beats_deny() {
    let mut filter = filter(json!({
        "deny": [".malware.test"],
        "allow": ["good.malware.test"],
    }));
    assert!(blocked(&mut filter, "bad.malware.test."));
    assert!(!blocked(&mut filter, "good.malware.test."));
    assert_eq!(filter.metric("dohguard.reason.allow_list"), Some(1));
    assert_eq!(filter.metric("dohguard.verdict.allow"), Some(1));
    assert_eq!(filter.metric("dohguard.verdict.block"), Some(1));
}

#[test]
fn list_hits_never_call_the_scorer() {
    let mut filter = filter(scorer_config(
        json!({ "deny": ["bad.test"], "allow": ["good.test"] }),
    ));
    assert!(blocked(&mut filter, "bad.test."));
    assert!(!blocked(&mut filter, "good.test."));
    assert_eq!(filter.metric("dohguard.callout.sent"), Some(0));
}

#[test]
fn monitor_mode_never_blocks_but_counts_and_labels() {
    let mut filter = filter(json!({ "mode": "monitor", "deny": ["bad.test"] }));
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("bad.test.", RecordType::A, false)),
    )
    .expect_continue();
    stream
        .response_headers(&[(":status", "200")], false)
        .unwrap()
        .expect_continue();
    assert_eq!(
        stream.response_header_map().get(VERDICT_HEADER).as_deref(),
        Some("block; reason=deny_list; enforced=no")
    );
    stream.finish().unwrap();
    assert_eq!(filter.metric("dohguard.verdict.block"), Some(1));
    assert_eq!(filter.metric("dohguard.monitor_passed"), Some(1));
    assert_eq!(filter.metric("dohguard.blocked"), Some(0));
}

/// Checks what every block answer shares: the query's ID, question and flags.
fn assert_answers_query(answer: &Message, query: &Message) {
    assert_eq!(answer.metadata.id, query.metadata.id);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert_eq!(answer.metadata.op_code, OpCode::Query);
    assert_eq!(answer.queries, query.queries);
    assert!(answer.metadata.recursion_desired, "RD is copied");
    assert!(answer.metadata.recursion_available);
    assert!(!answer.metadata.authoritative);
    assert!(!answer.metadata.truncation);
}

fn block_config(answer: Value) -> Value {
    json!({ "deny": ["bad.test"], "block": answer })
}

fn answer_for(config: Value, qtype: RecordType, edns: bool) -> (Message, Message) {
    let mut filter = filter(config);
    let query = query("bad.test.", qtype, edns);
    let mut stream = filter.stream().unwrap();
    let reply = doh_get(&mut stream, &wire(&query)).expect_local_response(200);
    assert_eq!(
        reply.header(VERDICT_HEADER).as_deref(),
        Some("block; reason=deny_list"),
        "verdict header on the local reply"
    );
    (dns_answer(&reply), query)
}

/// A negative answer carries an SOA whose TTL and minimum are the block TTL.
fn assert_negative(answer: &Message, ttl: u32) {
    assert!(answer.answers.is_empty());
    let soa = answer
        .authorities
        .first()
        .expect("SOA in the authority section");
    assert_eq!(soa.ttl, ttl);
    match &soa.data {
        RData::SOA(soa) => assert_eq!(soa.minimum, ttl),
        other => panic!("authority record is not an SOA: {other:?}"),
    }
}

#[test]
fn nxdomain_is_the_default_block_answer() {
    let (answer, query) = answer_for(json!({ "deny": ["bad.test"] }), RecordType::A, false);
    assert_answers_query(&answer, &query);
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert_negative(&answer, 300);
    assert!(answer.edns.is_none(), "no OPT without one in the query");
}

#[test]
fn refused_answer() {
    let (answer, query) = answer_for(
        block_config(json!({ "answer": "refused" })),
        RecordType::A,
        false,
    );
    assert_answers_query(&answer, &query);
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert!(answer.answers.is_empty());
}

#[test]
fn nodata_answer_uses_the_configured_ttl() {
    let (answer, query) = answer_for(
        block_config(json!({ "answer": "nodata", "ttl_s": 42 })),
        RecordType::A,
        false,
    );
    assert_answers_query(&answer, &query);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_negative(&answer, 42);
}

#[test]
fn sinkhole_answers_zero_addresses_and_nodata_for_other_types() {
    let config = block_config(json!({ "answer": "sinkhole", "ttl_s": 60 }));
    let (answer, query) = answer_for(config.clone(), RecordType::A, false);
    assert_answers_query(&answer, &query);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.answers[0].ttl, 60);
    assert_eq!(
        answer.answers[0].data,
        RData::A(Ipv4Addr::UNSPECIFIED.into())
    );

    let (answer, _) = answer_for(config.clone(), RecordType::AAAA, false);
    assert_eq!(
        answer.answers[0].data,
        RData::AAAA(Ipv6Addr::UNSPECIFIED.into())
    );

    let (answer, _) = answer_for(config, RecordType::TXT, false);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_negative(&answer, 60);
}

#[test]
fn configured_addresses_answer_by_family() {
    let config = block_config(json!({
        "answer": "addresses",
        "ttl_s": 30,
        "addresses": ["192.0.2.53", "2001:db8::53"],
    }));
    let (answer, _) = answer_for(config.clone(), RecordType::A, false);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(
        answer.answers[0].data,
        RData::A(Ipv4Addr::new(192, 0, 2, 53).into())
    );
    assert_eq!(answer.answers[0].ttl, 30);
    let (answer, _) = answer_for(config.clone(), RecordType::AAAA, false);
    assert_eq!(
        answer.answers[0].data,
        RData::AAAA("2001:db8::53".parse::<Ipv6Addr>().unwrap().into())
    );
    let (answer, _) = answer_for(config, RecordType::MX, false);
    assert!(answer.answers.is_empty());
}

#[test]
fn edns_queries_get_an_extended_dns_error_blocked() {
    let (answer, query) = answer_for(json!({ "deny": ["bad.test"] }), RecordType::A, true);
    assert_answers_query(&answer, &query);
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    let edns = answer.edns.as_ref().expect("OPT echoed");
    assert_eq!(edns.max_payload(), 1232);
    let (code, text) = extended_error(&answer).expect("EDE option");
    assert_eq!(code, 15, "EDE 15 Blocked for list hits");
    assert_eq!(text, "blocked by deny list");
}

#[test]
fn post_block_answer_is_identical_to_get() {
    let mut filter = filter(json!({ "deny": ["bad.test"] }));
    let query = wire(&query("bad.test.", RecordType::A, true));
    let mut stream = filter.stream().unwrap();
    let via_get = doh_get(&mut stream, &query).expect_local_response(200);
    let mut stream = filter.stream().unwrap();
    let via_post = doh_post(&mut stream, &query).expect_local_response(200);
    assert_eq!(via_get.body, via_post.body);
}
