//! RFC 8484 request handling of the real filter: GET and POST decode, every
//! malformed request is answered locally with its 4xx and never forwarded,
//! other paths pass untouched.

use crate::common::*;
use dohguard_host_test::{Action, LocalResponse};
use hickory_proto::rr::RecordType;
use serde_json::json;

/// Sends a GET with `path` and expects a local 4xx that does not continue.
fn rejected_get(path: &str, status: u16) -> LocalResponse {
    let mut filter = filter(json!({ "deny": ["blocked.test"] }));
    let mut stream = filter.stream().unwrap();
    let reply = stream
        .request_headers(
            &[
                (":method", "GET"),
                (":authority", "doh.example"),
                (":path", path),
            ],
            true,
        )
        .unwrap()
        .expect_no_http_call()
        .expect_local_response(status);
    stream.finish().unwrap();
    assert_eq!(
        filter.metric("dohguard.malformed_requests"),
        Some(1),
        "{path}"
    );
    assert_eq!(filter.metric("dohguard.queries"), Some(0), "{path}");
    reply
}

/// Sends a POST; returns the local reply, or `None` after checking that the
/// request was forwarded.
fn post_with(headers: &[(&str, &str)], body: &[u8]) -> Option<LocalResponse> {
    let mut filter = filter(json!({ "deny": ["blocked.test"] }));
    let mut stream = filter.stream().unwrap();
    let first = stream.request_headers(headers, body.is_empty()).unwrap();
    if let Some(reply) = first.local_response().cloned() {
        assert_ne!(
            first.action(),
            Some(Action::Continue),
            "answered but continued"
        );
        return Some(reply);
    }
    drop(first);
    let outcome = stream.request_body(body, true).unwrap();
    if outcome.local_response().is_some() {
        return Some(outcome.expect_local_response(200..500));
    }
    outcome.expect_continue();
    None
}

fn post_headers<'a>(content_type: &'a str, length: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":authority", "doh.example"),
        (":path", "/dns-query"),
        ("content-type", content_type),
        ("content-length", length),
    ]
}

#[test]
fn get_query_is_decoded_and_forwarded() {
    let mut filter = filter(json!({ "deny": ["blocked.test"] }));
    let mut stream = filter.stream().unwrap();
    doh_get(
        &mut stream,
        &wire(&query("www.example.org.", RecordType::A, false)),
    )
    .expect_no_http_call()
    .expect_continue();
    // The answer is held until its body is in (CNAME inspection), then goes on.
    stream
        .response_headers(&[(":status", "200")], false)
        .unwrap()
        .expect_pause();
    let answer = [0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
    stream
        .response_body(&answer, true)
        .unwrap()
        .expect_continue();
    assert_eq!(stream.response_body_bytes(), answer);
    assert_eq!(
        stream.response_header_map().get(VERDICT_HEADER).as_deref(),
        Some("allow; reason=no_scorer")
    );
    stream.finish().unwrap();
    assert_eq!(filter.metric("dohguard.queries"), Some(1));
    assert_eq!(filter.metric("dohguard.verdict.allow"), Some(1));
    assert_eq!(filter.metric("dohguard.reason.no_scorer"), Some(1));
}

#[test]
fn get_decodes_the_name_so_the_deny_list_sees_it() {
    let mut filter = filter(json!({ "deny": ["blocked.test"] }));
    let mut stream = filter.stream().unwrap();
    let reply = doh_get(
        &mut stream,
        &wire(&query("Blocked.Test.", RecordType::A, false)),
    )
    .expect_local_response(200);
    assert_eq!(
        dns_answer(&reply).queries[0].name().to_ascii(),
        "Blocked.Test."
    );
}

#[test]
fn post_query_is_decoded_and_decided() {
    let mut filter = filter(json!({ "deny": ["blocked.test"] }));
    let mut stream = filter.stream().unwrap();
    doh_post(
        &mut stream,
        &wire(&query("allowed.test.", RecordType::AAAA, false)),
    )
    .expect_continue();
    let mut stream = filter.stream().unwrap();
    let reply = doh_post(
        &mut stream,
        &wire(&query("blocked.test.", RecordType::A, false)),
    )
    .expect_local_response(200);
    assert_eq!(dns_answer(&reply).metadata.id, 0x1234);
    assert_eq!(filter.metric("dohguard.queries"), Some(2));
}

#[test]
fn post_content_type_parameters_are_ignored() {
    let content_type = "application/dns-message; charset=binary";
    let allowed = wire(&query("allowed.test.", RecordType::A, false));
    let length = allowed.len().to_string();
    assert_eq!(
        post_with(&post_headers(content_type, &length), &allowed),
        None
    );
    let denied = wire(&query("blocked.test.", RecordType::A, false));
    let length = denied.len().to_string();
    let reply = post_with(&post_headers(content_type, &length), &denied).expect("block answer");
    assert_eq!(dns_answer(&reply).metadata.id, 0x1234);
}

#[test]
fn wrong_method_is_405_with_allow_header() {
    let mut filter = filter(json!({}));
    let mut stream = filter.stream().unwrap();
    let path = get_path(&wire(&query("example.org.", RecordType::A, false)));
    let reply = stream
        .request_headers(
            &[
                (":method", "PUT"),
                (":authority", "doh.example"),
                (":path", &path),
            ],
            true,
        )
        .unwrap()
        .expect_local_response(405);
    assert_eq!(reply.header("allow").as_deref(), Some("GET, POST"));
    assert!(!reply.body.is_empty(), "error replies say what was wrong");
}

#[test]
fn wrong_content_type_is_415() {
    let body = wire(&query("example.org.", RecordType::A, false));
    let length = body.len().to_string();
    let reply = post_with(&post_headers("text/plain", &length), &body).expect("answered");
    assert_eq!(reply.status, 415);
}

#[test]
fn bad_base64_is_400() {
    let reply = rejected_get("/dns-query?dns=%%%not-base64!!", 400);
    assert!(!reply.body.is_empty());
}

#[test]
fn missing_dns_parameter_is_400() {
    rejected_get("/dns-query?other=1", 400);
    rejected_get("/dns-query", 400);
}

#[test]
fn truncated_dns_message_is_400() {
    let full = wire(&query("example.org.", RecordType::A, false));
    for cut in [1, 11, 12, full.len() - 3] {
        rejected_get(&get_path(&full[..cut]), 400);
    }
}

#[test]
fn garbage_dns_message_is_400() {
    rejected_get(&get_path(&[0xff; 40]), 400);
}

#[test]
fn qdcount_other_than_one_is_400() {
    let mut two = query("a.example.org.", RecordType::A, false);
    two.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("b.example.org.").unwrap(),
        RecordType::A,
    ));
    rejected_get(&get_path(&wire(&two)), 400);
    let mut none = query("a.example.org.", RecordType::A, false);
    none.queries.clear();
    rejected_get(&get_path(&wire(&none)), 400);
}

#[test]
fn a_response_instead_of_a_query_is_400() {
    let mut response = query("example.org.", RecordType::A, false);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    rejected_get(&get_path(&wire(&response)), 400);
}

#[test]
fn empty_post_body_is_400() {
    let reply = post_with(&post_headers("application/dns-message", "0"), b"").expect("answered");
    assert_eq!(reply.status, 400);
}

#[test]
fn oversized_post_body_is_413() {
    let body = vec![0u8; 65_536];
    let reply =
        post_with(&post_headers("application/dns-message", "65536"), &body).expect("answered");
    assert_eq!(reply.status, 413);
}

#[test]
fn oversized_body_arriving_in_chunks_is_413() {
    let mut filter = filter(json!({}));
    let mut stream = filter.stream().unwrap();
    let headers = [
        (":method", "POST"),
        (":authority", "doh.example"),
        (":path", "/dns-query"),
        ("content-type", "application/dns-message"),
    ];
    stream
        .request_headers(&headers, false)
        .unwrap()
        .expect_pause();
    let chunk = vec![0u8; 40_000];
    let first = stream.request_body(&chunk, false).unwrap();
    if first.local_response().is_none() {
        drop(first);
        stream
            .request_body(&chunk, true)
            .unwrap()
            .expect_local_response(413);
    } else {
        first.expect_local_response(413);
    }
}

#[test]
fn other_paths_pass_through_untouched() {
    let mut filter = filter(json!({ "deny": ["blocked.test"] }));
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/api/v1"),
        ("GET", "/dns-queryx?dns=AAAA"),
        ("DELETE", "/x"),
    ] {
        let mut stream = filter.stream().unwrap();
        let headers = [
            (":method", method),
            (":authority", "doh.example"),
            (":path", path),
        ];
        stream
            .request_headers(&headers, true)
            .unwrap()
            .expect_no_http_call()
            .expect_continue();
        assert_eq!(
            stream.request_header_map().pairs().len(),
            headers.len(),
            "{path}"
        );
        stream
            .response_headers(&[(":status", "200")], true)
            .unwrap()
            .expect_continue();
        assert_eq!(
            stream.response_header_map().get(VERDICT_HEADER),
            None,
            "{path}"
        );
        stream.finish().unwrap();
    }
    assert_eq!(filter.metric("dohguard.queries"), Some(0));
    assert_eq!(filter.metric("dohguard.malformed_requests"), Some(0));
}

#[test]
fn configured_doh_path_is_honoured() {
    let mut filter = filter(json!({ "doh_path": "/resolve", "deny": ["blocked.test"] }));
    let dns = wire(&query("blocked.test.", RecordType::A, false));
    let path = format!(
        "/resolve?dns={}",
        &get_path(&dns)["/dns-query?dns=".len()..]
    );
    let mut stream = filter.stream().unwrap();
    stream
        .request_headers(
            &[
                (":method", "GET"),
                (":authority", "doh.example"),
                (":path", &path),
            ],
            true,
        )
        .unwrap()
        .expect_local_response(200);
    let mut stream = filter.stream().unwrap();
    doh_get(&mut stream, &dns).expect_continue(); // /dns-query is now just another path
}
