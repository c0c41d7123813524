//! The ways around the filter and the costly inputs a security review found, each shown
//! against the real filter: HTTP/2 trailers ending a POST, trailers while a callout is
//! pending, GET query strings beyond the one checked `dns=` parameter, the root name, and
//! headers whose counts would make a full parse read thousands of questions.

use crate::common::*;
use dohguard_host_test::HeaderMap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::json;

#[test]
fn trailers_end_a_post_body_and_the_query_is_decided() {
    let mut filter = filter(json!({ "deny": ["blocked.test"] }));
    let dns = wire(&query("blocked.test.", RecordType::A, true));
    let mut stream = filter.stream().unwrap();
    doh_post_headers(&mut stream, dns.len());
    // The body arrives without end-of-stream: HTTP/2 trailers follow it.
    stream.request_body(&dns, false).unwrap().expect_pause();
    let reply = stream
        .request_trailers(&[("x-foo", "bar")])
        .unwrap()
        .expect_local_response(200);
    let answer = dns_answer(&reply);
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(extended_error(&answer).map(|e| e.0), Some(15));
    stream.finish().unwrap();
    assert_eq!(filter.metric("dohguard.blocked"), Some(1));
    assert_eq!(filter.metric("dohguard.queries"), Some(1));
}

#[test]
fn trailers_after_an_allowed_post_forward_it_once_decided() {
    let mut filter = filter(json!({ "deny": ["blocked.test"] }));
    let dns = wire(&query("fine.test.", RecordType::A, false));
    let mut stream = filter.stream().unwrap();
    doh_post_headers(&mut stream, dns.len());
    stream.request_body(&dns, false).unwrap().expect_pause();
    stream
        .request_trailers(&[("x-foo", "bar")])
        .unwrap()
        .expect_continue();
    stream.finish().unwrap();
    assert_eq!(filter.metric("dohguard.verdict.allow"), Some(1));
}

#[test]
fn trailers_with_no_body_are_an_empty_post() {
    let mut filter = filter(json!({}));
    let mut stream = filter.stream().unwrap();
    doh_post_headers(&mut stream, 0);
    let reply = stream
        .request_trailers(&[("x-foo", "bar")])
        .unwrap()
        .expect_local_response(400);
    assert!(
        reply.body_text().contains("empty body"),
        "{}",
        reply.body_text()
    );
}

#[test]
fn trailers_while_a_callout_is_pending_do_not_release_the_request() {
    let mut filter = filter(scorer_config(json!({})));
    let dns = wire(&query("xjw3kq9z.com.", RecordType::A, false));
    let (id, token) = {
        let mut stream = filter.stream().unwrap();
        doh_post_headers(&mut stream, dns.len());
        let call = stream
            .request_body(&dns, true)
            .unwrap()
            .expect_http_call(SCORER)
            .leave_pending();
        // Trailers (or more data) while the scorer is asked: nothing may move on.
        let id = stream.context_id();
        stream
            .request_trailers(&[("x-foo", "bar")])
            .unwrap()
            .expect_pause();
        (id, call.token)
    };
    let body = verdict("xjw3kq9z.com", "xjw3kq9z.com", "block", "name", 60);
    let step = filter
        .deliver_http_call(
            token,
            Some((
                HeaderMap::from_pairs(&[(":status", "200")]),
                body.into_bytes(),
            )),
        )
        .unwrap();
    let reply = step.local_response().expect("blocked after the reply");
    assert_eq!(
        dns_answer(reply).metadata.response_code,
        ResponseCode::NXDomain
    );
    assert!(
        !step.resumed_request(),
        "a blocked request is never resumed"
    );
    filter.reopen_stream(id).unwrap().finish().unwrap();
    assert_eq!(filter.metric("dohguard.blocked"), Some(1));
}

/// GETs whose query string holds more than `dns=<base64url>`: the upstream could decode a
/// message other than the one decided, so each is refused and never forwarded.
#[test]
fn get_query_strings_beyond_one_dns_parameter_are_400() {
    let allowed = wire(&query("fine.test.", RecordType::A, false));
    let denied = wire(&query("blocked.test.", RecordType::A, false));
    let fine = get_path(&allowed);
    let bad = get_path(&denied)["/dns-query?dns=".len()..].to_owned();
    for path in [
        format!("{fine}&dns={bad}"),
        format!("/dns-query?x=1&dns={bad}"),
        format!("{fine}&ct=application/dns-message"),
        format!("{fine}=="),
        format!("{fine}%3D"),
        format!("{}+{}", &fine[..20], &fine[21..]),
    ] {
        let mut filter = filter(json!({ "deny": ["blocked.test"] }));
        let mut stream = filter.stream().unwrap();
        stream
            .request_headers(&[(":method", "GET"), (":path", &path)], true)
            .unwrap()
            .expect_no_http_call()
            .expect_local_response(400);
        stream.finish().unwrap();
        assert_eq!(
            filter.metric("dohguard.malformed_requests"),
            Some(1),
            "{path}"
        );
    }
}

#[test]
fn the_root_name_is_decided_and_counted() {
    let mut filter = filter(scorer_config(json!({})));
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &wire(&query(".", RecordType::NS, false)))
        .expect_no_http_call()
        .expect_continue();
    stream.finish().unwrap();
    assert_eq!(filter.metric("dohguard.queries"), Some(1));
    assert_eq!(filter.metric("dohguard.reason.unscored"), Some(1));
    assert_eq!(filter.metric("dohguard.callout.sent"), Some(0));
}

#[test]
fn reverse_lookups_are_not_sent_to_the_model() {
    let mut filter = filter(scorer_config(json!({})));
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("7.2.0.192.in-addr.arpa.", RecordType::PTR, false)),
    )
    .expect_no_http_call()
    .expect_continue();
    stream.finish().unwrap();
    assert_eq!(filter.metric("dohguard.reason.unscored"), Some(1));
}

/// The reviewed attack: 64 KB of questions pointing at one long name. Refused by the header.
#[test]
fn a_body_of_thousands_of_questions_is_refused_by_its_header() {
    let body = dohguard_filter::dns::hostile_question_flood();
    let mut filter = filter(json!({}));
    let mut stream = filter.stream().unwrap();
    doh_post_headers(&mut stream, body.len());
    let reply = stream
        .request_body(&body, true)
        .unwrap()
        .expect_local_response(400);
    assert!(
        reply.body_text().contains("questions"),
        "{}",
        reply.body_text()
    );
}

#[test]
fn the_verdict_header_is_off_by_default_and_terse_when_on() {
    let dns = wire(&query("blocked.test.", RecordType::A, false));
    let mut quiet = filter_as_configured(json!({ "deny": ["blocked.test"] }));
    let mut stream = quiet.stream().unwrap();
    let reply = doh_get(&mut stream, &dns).expect_local_response(200);
    assert_eq!(reply.header(VERDICT_HEADER), None);

    let mut terse =
        filter_as_configured(json!({ "deny": ["blocked.test"], "verdict_header": VERDICT_HEADER }));
    let mut stream = terse.stream().unwrap();
    let reply = doh_get(&mut stream, &dns).expect_local_response(200);
    assert_eq!(reply.header(VERDICT_HEADER).as_deref(), Some("block"));
}

#[test]
fn ede_filtered_is_an_opt_in_setting() {
    let dns = wire(&query("blocked.test.", RecordType::A, true));
    let mut filter = filter(json!({ "deny": ["blocked.test"], "block": { "ede": "filtered" } }));
    let mut stream = filter.stream().unwrap();
    let reply = doh_get(&mut stream, &dns).expect_local_response(200);
    assert_eq!(extended_error(&dns_answer(&reply)).map(|e| e.0), Some(17));
}
