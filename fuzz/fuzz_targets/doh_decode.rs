//! Fuzzes the filter's decode path with untrusted bytes, the way a DoH client can send them:
//! the first byte picks GET with the rest as the raw query string, GET with the rest as the
//! DNS message (encoded here as `dns=<base64url>`, so GET also sees full-size messages, and it
//! must decode back to exactly those bytes), or POST (the rest is the body, up to the 65,535
//! bytes the filter accepts; `cargo xtask fuzz` runs with `-max_len=65536`).
//! Whatever decodes must round-trip: what the filter keeps of a query agrees with a full
//! parse of it, every block answer parses back
//! with the query's ID and question, and the normalised name is a fixed point of `normalize`.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dohguard_core::name::normalize;
use dohguard_filter::answer::{block_answer, BlockCause, EDE_BLOCKED};
use dohguard_filter::config::BlockAnswer;
use dohguard_filter::dns::{DnsQuery, ROOT_NAME};
use dohguard_filter::doh::{check_body_size, classify, RequestKind, DNS_MESSAGE};
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let wire = if selector % 3 == 2 {
        let encoded = URL_SAFE_NO_PAD.encode(rest);
        match classify(
            "/dns-query",
            "GET",
            &format!("/dns-query?dns={encoded}"),
            None,
            None,
        ) {
            Ok(RequestKind::Get(bytes)) => {
                assert_eq!(bytes, rest, "dns=<base64url> decodes to the bytes encoded");
                bytes
            }
            Ok(other) => panic!("GET on the DoH path classified as {other:?}"),
            Err(rejection) => {
                assert!(matches!(rejection.status, 400 | 413), "{rejection:?}");
                return;
            }
        }
    } else if selector % 3 == 0 {
        let Ok(query) = std::str::from_utf8(rest) else {
            return;
        };
        match classify(
            "/dns-query",
            "GET",
            &format!("/dns-query?{query}"),
            None,
            None,
        ) {
            Ok(RequestKind::Get(bytes)) => bytes,
            Ok(other) => panic!("GET on the DoH path classified as {other:?}"),
            Err(rejection) => {
                assert!(matches!(rejection.status, 400 | 413), "{rejection:?}");
                return;
            }
        }
    } else {
        let kind = classify("/dns-query", "POST", "/dns-query", Some(DNS_MESSAGE), None);
        assert_eq!(kind, Ok(RequestKind::Post));
        if check_body_size(rest.len()).is_err() {
            return;
        }
        rest.to_vec()
    };

    let Ok(query) = DnsQuery::parse(&wire) else {
        return;
    };
    let question = query.question.clone();
    if query.name != ROOT_NAME {
        assert_eq!(normalize(&query.name).as_deref(), Ok(query.name.as_str()));
    }

    // What the filter kept agrees with a full parse of the same bytes. hickory also checks the
    // contents of EDNS options (Client Subnet, ...), which the filter frames but passes through
    // unread: only a query with option bytes may be refused by hickory, and its block answers
    // must still be well formed (below).
    match Message::from_vec(&wire) {
        Ok(full) => {
            assert_eq!(full.queries, vec![question.clone()]);
            assert_eq!(full.metadata.id, query.id);
            assert_eq!(full.edns.is_some(), query.has_edns());
        }
        Err(e) => assert!(
            query.edns.is_some_and(|edns| edns.option_bytes > 0),
            "a query the filter accepts, with no EDNS options, parses in full: {e}"
        ),
    }

    let kinds = [
        BlockAnswer::Nxdomain,
        BlockAnswer::Refused,
        BlockAnswer::Nodata,
        BlockAnswer::Sinkhole,
        BlockAnswer::Addresses(vec![
            "192.0.2.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]),
    ];
    for kind in &kinds {
        for cause in [BlockCause::DenyList, BlockCause::Model] {
            let answer =
                block_answer(&query, kind, 300, cause, EDE_BLOCKED).expect("block answer builds");
            let parsed = Message::from_vec(&answer).expect("block answer parses");
            assert_eq!(parsed.metadata.id, query.id);
            assert_eq!(parsed.queries, vec![question.clone()]);
            assert_eq!(parsed.edns.is_some(), query.has_edns());
        }
    }
});
