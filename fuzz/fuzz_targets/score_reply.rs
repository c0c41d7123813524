//! Fuzzes the filter's parser of the scorer's reply (`decision::parse_reply`), the bytes an
//! Envoy callout hands back: the first byte picks the HTTP status the reply came with and how
//! long it took, the rest is the body. Whatever is accepted must be a 200 with a score in
//! [0, 1], and must survive a round trip: the reply serialised again parses to the same reply.
//! A reply about another name than the one asked for is refused as malformed.
//! Anything else must be refused with a typed failure, never a panic.

#![no_main]

use dohguard_filter::decision::{parse_reply, CalloutFailure};
use libfuzzer_sys::fuzz_target;

const TIMEOUT_MS: u64 = 200;
/// The name the filter asked about (the seed corpus's replies carry it).
const ASKED: &str = "xjw3kq9z.com";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = match selector % 4 {
        0 | 1 => Some("200"),
        2 => Some("503"),
        _ => None,
    };
    // 0..=252 ms: both sides of the 200 ms timeout.
    let elapsed_ms = u64::from(selector / 4) * 4;
    match parse_reply(ASKED, status, Some(body), elapsed_ms, TIMEOUT_MS) {
        Ok(reply) => {
            assert_eq!(status, Some("200"), "only a 200 is a reply");
            assert_eq!(reply.name, ASKED, "a reply about another name is refused");
            assert!((0.0..=1.0).contains(&reply.score), "{reply:?}");
            let again = serde_json::to_vec(&reply).expect("a reply serialises");
            let back = parse_reply(ASKED, Some("200"), Some(&again), 0, TIMEOUT_MS)
                .expect("a re-serialised accepted reply is accepted");
            assert_eq!(back, reply);
        }
        Err(CalloutFailure::Timeout) => {
            assert_ne!(status, Some("200"));
            assert!(elapsed_ms + 1 >= TIMEOUT_MS);
        }
        Err(CalloutFailure::Status(s)) => assert_eq!(s.as_deref(), status.filter(|s| *s != "200")),
        Err(CalloutFailure::Malformed(why)) => {
            assert_eq!(status, Some("200"));
            assert!(!why.is_empty());
        }
        Err(other) => panic!("unexpected failure {other:?}"),
    }
});
