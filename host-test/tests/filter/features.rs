//! The counters and histograms the anomaly detector's features are made of: answers by
//! upstream RCODE, queries by qtype, query-name and longest-label lengths, callout latency.

use crate::common::*;
use dohguard_host_test::Filter;
use hickory_proto::rr::RecordType;
use serde_json::json;

/// A counter's value; a counter the filter did not define fails the test (never read as 0).
fn counter(filter: &Filter, name: &str) -> i64 {
    filter
        .metric(name)
        .unwrap_or_else(|| panic!("counter {name} not defined"))
}

/// A histogram's samples; a histogram the filter did not define fails the test.
fn samples(filter: &Filter, name: &str) -> Vec<u64> {
    filter
        .histogram(name)
        .unwrap_or_else(|| panic!("histogram {name} not defined"))
        .to_vec()
}

/// Forwards a query for `name`/`qtype` and feeds the upstream reply: HTTP `status` and a DNS
/// header with `rcode`.
fn forward(filter: &mut Filter, name: &str, qtype: RecordType, status: u16, rcode: u8) {
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&query(name, qtype, false))).expect_continue();
    let status = status.to_string();
    stream
        .response_headers(
            &[
                (":status", &status),
                ("content-type", "application/dns-message"),
            ],
            false,
        )
        .unwrap();
    let reply = [0x12, 0x34, 0x81, 0x80 | rcode, 0, 1, 0, 0, 0, 0, 0, 0];
    stream.response_body(&reply, true).unwrap();
    stream.finish().unwrap();
}

const RCODES: [&str; 5] = ["noerror", "nxdomain", "servfail", "refused", "other"];

fn rcode_counts(filter: &Filter) -> Vec<i64> {
    RCODES
        .iter()
        .map(|r| counter(filter, &format!("dohguard.rcode.{r}")))
        .collect()
}

#[test]
fn upstream_answers_are_counted_by_rcode() {
    let mut filter = filter(json!({}));
    assert_eq!(rcode_counts(&filter), [0, 0, 0, 0, 0]);
    forward(&mut filter, "a.example.", RecordType::A, 200, 0);
    forward(&mut filter, "nosuch.example.", RecordType::A, 200, 3);
    forward(&mut filter, "nosuch2.example.", RecordType::A, 200, 3);
    forward(&mut filter, "broken.example.", RecordType::A, 200, 2);
    forward(&mut filter, "closed.example.", RecordType::A, 200, 5);
    forward(&mut filter, "notimp.example.", RecordType::A, 200, 4);
    assert_eq!(rcode_counts(&filter), [1, 2, 1, 1, 1]);

    // A non-200 upstream reply carries no DNS message: no RCODE is counted.
    forward(&mut filter, "gateway.example.", RecordType::A, 502, 3);
    assert_eq!(rcode_counts(&filter), [1, 2, 1, 1, 1]);
}

#[test]
fn block_answers_are_not_upstream_rcodes() {
    let mut filter = filter(json!({ "deny": [".blocked.test"] }));
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("x.blocked.test.", RecordType::A, false)),
    )
    .expect_local_response(200);
    stream.finish().unwrap();
    assert_eq!(counter(&filter, "dohguard.blocked"), 1);
    assert_eq!(rcode_counts(&filter), [0, 0, 0, 0, 0]);
    // The query itself is counted by type.
    assert_eq!(counter(&filter, "dohguard.qtype.a"), 1);
}

#[test]
fn queries_are_counted_by_qtype_and_add_up_to_queries() {
    let mut filter = filter(json!({}));
    let types = [
        (RecordType::A, "a"),
        (RecordType::AAAA, "aaaa"),
        (RecordType::HTTPS, "https"),
        (RecordType::TXT, "txt"),
        (RecordType::MX, "mx"),
        (RecordType::CNAME, "cname"),
        (RecordType::PTR, "ptr"),
        (RecordType::SRV, "other"),
    ];
    for (n, (qtype, _)) in types.iter().enumerate() {
        forward(&mut filter, &format!("q{n}.example."), *qtype, 200, 0);
    }
    forward(&mut filter, "again.example.", RecordType::TXT, 200, 0);
    for (qtype, suffix) in types {
        let expected = if qtype == RecordType::TXT { 2 } else { 1 };
        assert_eq!(
            counter(&filter, &format!("dohguard.qtype.{suffix}")),
            expected,
            "{qtype}"
        );
    }
    let sum: i64 = types
        .iter()
        .map(|(_, s)| counter(&filter, &format!("dohguard.qtype.{s}")))
        .sum();
    assert_eq!(sum, counter(&filter, "dohguard.queries"));
}

#[test]
fn name_and_longest_label_lengths_are_recorded_per_query() {
    let mut filter = filter(json!({}));
    assert!(samples(&filter, "dohguard.qname_length").is_empty());
    let long_label = "x".repeat(60);
    forward(&mut filter, "www.example.com.", RecordType::A, 200, 0);
    forward(
        &mut filter,
        &format!("{long_label}.t.example."),
        RecordType::TXT,
        200,
        0,
    );
    assert_eq!(samples(&filter, "dohguard.qname_length"), [15, 70]);
    assert_eq!(samples(&filter, "dohguard.label_length_max"), [7, 60]);
}

#[test]
fn callout_latency_is_recorded_for_replies_and_timeouts() {
    let mut filter = filter(scorer_config(json!({})));
    assert!(samples(&filter, "dohguard.callout.latency_ms").is_empty());
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("fast.example.org.", RecordType::A, false)),
    )
    .expect_http_call(SCORER)
    .returning(
        200,
        verdict("fast.example.org", "example.org", "allow", "name", 60),
    )
    .unwrap()
    .expect_continue();
    stream.finish().unwrap();
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("slow.example.net.", RecordType::A, false)),
    )
    .expect_http_call(SCORER)
    .timing_out()
    .unwrap()
    .expect_continue();
    stream.finish().unwrap();
    let latency = samples(&filter, "dohguard.callout.latency_ms");
    assert_eq!(latency.len(), 2, "{latency:?}");
    assert!(latency[0] < 200, "an immediate reply: {latency:?}");
    assert!(latency[1] >= 200, "the 200 ms timeout: {latency:?}");
}
