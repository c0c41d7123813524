//! CNAME and alias cloaking: an allowed name whose upstream answer points (CNAME, HTTPS/SVCB
//! target) to a denied or model-blocked name gets the block answer, reason `cname`. The
//! upstream answer is delivered through the response callbacks as Envoy delivers it.

use crate::common::*;
use dohguard_host_test::{Filter, HeaderMap, HttpStream};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{HTTPS, SVCB};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use serde_json::{json, Value};

const EVENTS: &str = "dohguard_events";

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn cname(target: &str) -> RData {
    RData::CNAME(rdata::CNAME(name(target)))
}

fn a() -> RData {
    RData::A(rdata::A::new(192, 0, 2, 80))
}

/// The upstream's answer to `request` with these answer records (and EDNS when asked).
fn upstream_answer(request: &Message, answers: Vec<(&str, RData)>) -> Vec<u8> {
    let mut reply = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    reply.metadata.recursion_desired = true;
    reply.metadata.recursion_available = true;
    reply.add_query(request.queries[0].clone());
    for (owner, data) in answers {
        reply.add_answer(Record::from_rdata(name(owner), 3600, data));
    }
    if let Some(edns) = &request.edns {
        reply.set_edns(edns.clone());
    }
    wire(&reply)
}

/// Delivers an upstream 200 DoH answer: the headers must be held for inspection, and the
/// body's end lets the stream go on. Returns the response body as the client gets it.
fn deliver(stream: &mut HttpStream<'_>, body: &[u8]) -> Vec<u8> {
    let length = body.len().to_string();
    stream
        .response_headers(
            &[
                (":status", "200"),
                ("content-type", "application/dns-message"),
                ("content-length", &length),
                ("cache-control", "max-age=3600"),
            ],
            false,
        )
        .unwrap()
        .expect_pause();
    stream.response_body(body, true).unwrap().expect_continue();
    stream.response_body_bytes().to_vec()
}

fn metric(filter: &Filter, name: &str) -> i64 {
    filter
        .metric(name)
        .unwrap_or_else(|| panic!("metric {name} is not defined"))
}

#[test]
fn a_cname_into_a_denied_domain_gets_the_block_answer() {
    let mut filter = filter(json!({ "deny": [".evil.test"] }));
    let request = query("cloak.example.test.", RecordType::A, true);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request)).expect_continue();
    let answer = upstream_answer(
        &request,
        vec![
            ("cloak.example.test.", cname("hop.example.net.")),
            ("hop.example.net.", cname("tracker.evil.test.")),
            ("tracker.evil.test.", a()),
        ],
    );
    let body = deliver(&mut stream, &answer);
    let blocked = Message::from_vec(&body).expect("the client gets a DNS message");
    assert_eq!(blocked.metadata.id, 0x1234);
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(blocked.queries[0].name().to_ascii(), "cloak.example.test.");
    assert!(blocked.answers.is_empty(), "no record of the cloaked chain");
    assert_eq!(
        extended_error(&blocked),
        Some((15, "blocked CNAME or alias target".into()))
    );
    let headers = stream.response_header_map();
    assert_eq!(
        headers.get(VERDICT_HEADER).as_deref(),
        Some("block; reason=cname")
    );
    assert_eq!(
        headers.get("content-length"),
        Some(body.len().to_string()),
        "content-length follows the new body"
    );
    assert_eq!(headers.get("cache-control").as_deref(), Some("max-age=300"));
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.queries"), 1);
    assert_eq!(
        metric(&filter, "dohguard.verdict.allow"),
        1,
        "the name itself was allowed"
    );
    assert_eq!(metric(&filter, "dohguard.reason.no_scorer"), 1);
    assert_eq!(metric(&filter, "dohguard.reason.cname"), 1);
    assert_eq!(metric(&filter, "dohguard.verdict.block"), 1);
    assert_eq!(metric(&filter, "dohguard.blocked"), 1);
    assert_eq!(metric(&filter, "dohguard.cname.inspected"), 1);
    assert_eq!(metric(&filter, "dohguard.cname.uninspected"), 0);
}

#[test]
fn an_https_alias_into_a_denied_domain_is_blocked_for_a_post_in_two_chunks() {
    let mut filter = filter(json!({ "deny": ["alias.evil.test"] }));
    let request = query("svc.example.test.", RecordType::HTTPS, false);
    let mut stream = filter.stream().unwrap();
    doh_post(&mut stream, &wire(&request)).expect_continue();
    let alias = RData::HTTPS(HTTPS(SVCB::new(0, name("alias.evil.test."), Vec::new())));
    let answer = upstream_answer(&request, vec![("svc.example.test.", alias)]);
    stream
        .response_headers(&[(":status", "200")], false)
        .unwrap()
        .expect_pause();
    let (first, rest) = answer.split_at(answer.len() / 2);
    stream.response_body(first, false).unwrap().expect_pause();
    stream.response_body(rest, true).unwrap().expect_continue();
    let blocked = Message::from_vec(stream.response_body_bytes()).unwrap();
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(blocked.queries[0].query_type(), RecordType::HTTPS);
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.reason.cname"), 1);
}

#[test]
fn response_trailers_end_the_answer_and_it_is_still_inspected() {
    let mut filter = filter(json!({ "deny": [".evil.test"] }));
    let request = query("cloak.example.test.", RecordType::A, false);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request)).expect_continue();
    let answer = upstream_answer(
        &request,
        vec![("cloak.example.test.", cname("tracker.evil.test."))],
    );
    stream
        .response_headers(&[(":status", "200")], false)
        .unwrap()
        .expect_pause();
    stream.response_body(&answer, false).unwrap().expect_pause();
    stream
        .response_trailers(&[("x-upstream", "done")])
        .unwrap()
        .expect_continue();
    let blocked = Message::from_vec(stream.response_body_bytes()).unwrap();
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.reason.cname"), 1);
}

#[test]
fn a_clean_answer_is_forwarded_byte_for_byte() {
    let mut filter = filter(json!({ "deny": [".evil.test"] }));
    let request = query("www.example.test.", RecordType::A, true);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request)).expect_continue();
    let answer = upstream_answer(
        &request,
        vec![
            ("www.example.test.", cname("cdn.example.net.")),
            ("cdn.example.net.", a()),
        ],
    );
    assert_eq!(deliver(&mut stream, &answer), answer);
    assert_eq!(
        stream.response_header_map().get(VERDICT_HEADER).as_deref(),
        Some("allow; reason=no_scorer")
    );
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.cname.inspected"), 1);
    assert_eq!(metric(&filter, "dohguard.reason.cname"), 0);
    assert_eq!(metric(&filter, "dohguard.blocked"), 0);
}

#[test]
fn allow_listed_names_and_headers_only_replies_are_not_held() {
    let mut filter = filter(json!({ "allow": ["trusted.test"], "deny": [".evil.test"] }));
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("trusted.test.", RecordType::A, false)),
    )
    .expect_continue();
    stream
        .response_headers(&[(":status", "200")], false)
        .unwrap()
        .expect_continue();
    stream.finish().unwrap();
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("other.test.", RecordType::A, false)),
    )
    .expect_continue();
    stream
        .response_headers(&[(":status", "502")], false)
        .unwrap()
        .expect_continue();
    stream.finish().unwrap();
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("other.test.", RecordType::A, false)),
    )
    .expect_continue();
    stream
        .response_headers(&[(":status", "200")], true)
        .unwrap()
        .expect_continue();
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.cname.inspected"), 0);
    assert_eq!(metric(&filter, "dohguard.cname.uninspected"), 0);
}

#[test]
fn a_target_the_verdict_cache_holds_as_block_is_blocked() {
    let mut filter = filter(scorer_config(json!({})));
    // The scorer blocks a DGA-looking domain; its verdict is cached for the whole domain.
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("xjw3kq9z.com.", RecordType::A, false)),
    )
    .expect_http_call(SCORER)
    .returning(
        200,
        verdict(
            "xjw3kq9z.com",
            "xjw3kq9z.com",
            "block",
            "registered_domain",
            600,
        ),
    )
    .unwrap()
    .expect_local_response(200);
    stream.finish().unwrap();
    // An allowed name whose answer leads there.
    let request = query("shop.example.com.", RecordType::A, false);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request))
        .expect_http_call(SCORER)
        .returning(
            200,
            verdict(
                "shop.example.com",
                "example.com",
                "allow",
                "registered_domain",
                600,
            ),
        )
        .unwrap()
        .expect_continue();
    let answer = upstream_answer(
        &request,
        vec![("shop.example.com.", cname("c2.xjw3kq9z.com."))],
    );
    let blocked = Message::from_vec(&deliver(&mut stream, &answer)).unwrap();
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.reason.cname"), 1);
    assert_eq!(
        metric(&filter, "dohguard.callout.sent"),
        2,
        "the target is not scored"
    );
}

#[test]
fn answers_over_the_bound_are_forwarded_and_counted_or_blocked_when_configured() {
    let padding: Vec<(String, RData)> = (0..40)
        .map(|i| {
            (
                "cloak.example.test.".to_owned(),
                RData::A(rdata::A::new(192, 0, 2, i)),
            )
        })
        .collect();
    let request = query("cloak.example.test.", RecordType::A, false);
    let mut records: Vec<(&str, RData)> =
        vec![("cloak.example.test.", cname("tracker.evil.test."))];
    records.extend(padding.iter().map(|(o, d)| (o.as_str(), d.clone())));
    let answer = upstream_answer(&request, records);
    assert!(answer.len() > 512, "{} bytes", answer.len());

    let config = json!({ "deny": [".evil.test"], "cname": { "max_answer_bytes": 512 } });
    let mut filter = filter(config);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request)).expect_continue();
    assert_eq!(
        deliver(&mut stream, &answer),
        answer,
        "forwarded uninspected"
    );
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.cname.uninspected"), 1);
    assert_eq!(metric(&filter, "dohguard.reason.cname"), 0);

    let config = json!({
        "deny": [".evil.test"],
        "cname": { "max_answer_bytes": 512, "oversize": "block" }
    });
    let mut filter = crate::common::filter(config);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request)).expect_continue();
    let blocked = Message::from_vec(&deliver(&mut stream, &answer)).unwrap();
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.cname.uninspected"), 1);
    assert_eq!(metric(&filter, "dohguard.reason.cname"), 1);

    // Too many distinct targets counts as over the bound too.
    let chain: Vec<(String, RData)> = (0..4)
        .map(|i| {
            (
                format!("h{i}.example.test."),
                cname(&format!("h{}.example.test.", i + 1)),
            )
        })
        .collect();
    let request = query("h0.example.test.", RecordType::A, false);
    let answer = upstream_answer(
        &request,
        chain.iter().map(|(o, d)| (o.as_str(), d.clone())).collect(),
    );
    let mut filter = crate::common::filter(json!({ "cname": { "max_targets": 3 } }));
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request)).expect_continue();
    assert_eq!(deliver(&mut stream, &answer), answer);
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.cname.uninspected"), 1);
}

#[test]
fn monitor_mode_forwards_the_answer_and_says_it_would_block() {
    let mut filter = filter(json!({ "mode": "monitor", "deny": [".evil.test"] }));
    let request = query("cloak.example.test.", RecordType::A, false);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request)).expect_continue();
    let answer = upstream_answer(
        &request,
        vec![("cloak.example.test.", cname("tracker.evil.test."))],
    );
    assert_eq!(deliver(&mut stream, &answer), answer);
    assert_eq!(
        stream.response_header_map().get(VERDICT_HEADER).as_deref(),
        Some("block; reason=cname; enforced=no")
    );
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.monitor_passed"), 1);
    assert_eq!(metric(&filter, "dohguard.blocked"), 0);
}

#[test]
fn cname_can_be_turned_off() {
    let mut filter = filter(json!({ "deny": [".evil.test"], "cname": { "enabled": false } }));
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("cloak.example.test.", RecordType::A, false)),
    )
    .expect_continue();
    stream
        .response_headers(&[(":status", "200")], false)
        .unwrap()
        .expect_continue();
    stream.finish().unwrap();
    assert_eq!(metric(&filter, "dohguard.cname.inspected"), 0);
}

#[test]
fn the_decision_event_says_cname_with_the_target_and_the_rule() {
    let config = json!({
        "deny": [".evil.test"],
        "events": { "cluster": EVENTS },
    });
    let mut filter = plugin()
        .vm()
        .configuration(config.to_string())
        .clusters(&[EVENTS])
        .start()
        .unwrap();
    let request = query("cloak.example.test.", RecordType::A, false);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&request)).expect_continue();
    let answer = upstream_answer(
        &request,
        vec![("cloak.example.test.", cname("tracker.evil.test."))],
    );
    deliver(&mut stream, &answer);
    stream.finish().unwrap();
    filter.tick().unwrap();
    let calls = filter.pending_http_calls();
    let [call] = calls.as_slice() else {
        panic!("one events batch expected, got {calls:?}")
    };
    let batch: Value = serde_json::from_slice(&call.body).unwrap();
    filter
        .deliver_http_call(
            call.token,
            Some((HeaderMap::from_pairs(&[(":status", "202")]), Vec::new())),
        )
        .unwrap();
    let event = &batch["events"][0];
    assert_eq!(event["name"], "cloak.example.test");
    assert_eq!(event["verdict"], "block");
    assert_eq!(event["layer"], "cname");
    assert_eq!(event["cname_target"], "tracker.evil.test");
    assert_eq!(event["rule"], ".evil.test");
    assert_eq!(event["enforced"], true);
    assert_eq!(
        event["answer"],
        json!({"kind": "blocked", "mode": "nxdomain", "rcode": 3})
    );
}
