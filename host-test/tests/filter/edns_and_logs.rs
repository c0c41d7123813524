//! Answers that follow the EDNS RFCs (BADVERS for an unknown version, RFC 8467 padding of
//! block answers) and warnings that do not flood the log during a scorer outage, against the
//! real filter.

use std::time::Duration;

use crate::common::*;
use dohguard_host_test::LogLevel;
use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::RecordType;
use serde_json::json;

const PADDING: u16 = 12;

fn edns_query(name: &str, version: u8, padding: bool) -> Vec<u8> {
    let mut message = query(name, RecordType::A, false);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_version(version);
    if padding {
        edns.options_mut()
            .insert(EdnsOption::Unknown(PADDING, vec![0; 16]));
    }
    message.set_edns(edns);
    wire(&message)
}

#[test]
fn an_unknown_edns_version_is_answered_badvers_without_a_decision() {
    let mut filter = filter(scorer_config(json!({ "deny": ["blocked.test"] })));
    for name in ["blocked.test.", "xjw3kq9z.com."] {
        let mut stream = filter.stream().unwrap();
        let reply = doh_get(&mut stream, &edns_query(name, 1, false))
            .expect_no_http_call()
            .expect_local_response(200);
        let answer = dns_answer(&reply);
        assert_eq!(answer.metadata.id, 0x1234);
        // hickory reads extended RCODE 16 back as BADSIG, the code BADVERS shares.
        assert_eq!(u16::from(answer.metadata.response_code), 16, "{name}");
        let edns = answer.edns.as_ref().expect("an OPT record");
        assert_eq!(edns.version(), 0, "the version the filter implements");
        assert_eq!(
            reply.body[3] & 0x0f,
            0,
            "header RCODE is the low bits of 16"
        );
        stream.finish().unwrap();
    }
    assert_eq!(filter.metric("dohguard.malformed_requests"), Some(2));
    assert_eq!(
        filter.metric("dohguard.queries"),
        Some(0),
        "no decision was made"
    );
    // Version 0 is decided as usual.
    let mut stream = filter.stream().unwrap();
    let reply =
        doh_get(&mut stream, &edns_query("blocked.test.", 0, false)).expect_local_response(200);
    assert_eq!(
        dns_answer(&reply).metadata.response_code,
        ResponseCode::NXDomain
    );
}

#[test]
fn block_answers_are_padded_when_the_query_asked_for_padding() {
    let mut filter =
        filter(json!({ "deny": ["blocked.test", "much-longer-name.blocked.example"] }));
    for name in ["blocked.test.", "much-longer-name.blocked.example."] {
        let mut stream = filter.stream().unwrap();
        let reply = doh_get(&mut stream, &edns_query(name, 0, true)).expect_local_response(200);
        assert_eq!(
            reply.body.len() % 468,
            0,
            "{name}: {} octets",
            reply.body.len()
        );
        let answer = dns_answer(&reply);
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        let edns = answer.edns.as_ref().unwrap();
        assert!(edns.option(EdnsCode::Padding).is_some(), "{name}");
        assert_eq!(extended_error(&answer).map(|e| e.0), Some(15));
        stream.finish().unwrap();

        let mut stream = filter.stream().unwrap();
        let plain = doh_get(&mut stream, &edns_query(name, 0, false)).expect_local_response(200);
        let answer = dns_answer(&plain);
        assert!(answer
            .edns
            .as_ref()
            .unwrap()
            .option(EdnsCode::Padding)
            .is_none());
        stream.finish().unwrap();
    }
}

#[test]
fn callout_failures_are_all_counted_but_logged_once_per_interval() {
    let mut filter = filter(scorer_config(json!({})));
    let fail = |filter: &mut dohguard_host_test::Filter, i: usize| {
        let mut stream = filter.stream().unwrap();
        let name = format!("n{i}.example.org.");
        doh_get(&mut stream, &wire(&query(&name, RecordType::A, false)))
            .expect_http_call(SCORER)
            .returning(503, "overloaded")
            .unwrap()
            .expect_continue();
        stream.finish().unwrap();
    };
    let warnings = |filter: &dohguard_host_test::Filter| -> Vec<String> {
        filter
            .logs()
            .iter()
            .filter(|e| e.level >= LogLevel::Warn && e.message.contains("scorer callout"))
            .map(|e| e.message.clone())
            .collect()
    };
    for i in 0..50 {
        fail(&mut filter, i);
    }
    assert_eq!(filter.metric("dohguard.callout.error"), Some(50));
    assert_eq!(warnings(&filter).len(), 1, "{:?}", warnings(&filter));
    filter.advance_clock(Duration::from_secs(10));
    fail(&mut filter, 50);
    assert_eq!(filter.metric("dohguard.callout.error"), Some(51));
    let lines = warnings(&filter);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("49 more"), "{}", lines[1]);
}
