//! Shared helpers of the filter behaviour tests: load the real filter once
//! per test binary, build DNS queries and DoH requests, parse DNS answers,
//! and write scorer replies per `docs/contracts.md`.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use serde_json::{json, Value};

use dohguard_host_test::{
    dohguard_filter_wasm, Filter, HttpStream, LocalResponse, Outcome, Plugin,
};

/// The Envoy cluster the tests' configurations name for the scorer.
pub const SCORER: &str = "dohguard_scorer";

/// The compiled filter, shared by the tests of one binary (compiling is the slow part).
pub fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let path = dohguard_filter_wasm().unwrap_or_else(|e| panic!("{e}"));
        Plugin::load(&path).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A VM of the filter started with `config`, allowed to call [`SCORER`] only. The verdict
/// header is turned on with its detail (both off by default) unless `config` says otherwise,
/// because most tests read the verdict off it; [`filter_as_configured`] takes `config` as is.
pub fn filter(config: Value) -> Filter {
    let mut full = json!({ "verdict_header": VERDICT_HEADER, "verdict_header_detail": true });
    merge(&mut full, config);
    filter_as_configured(full)
}

/// A VM of the filter started with exactly `config`.
pub fn filter_as_configured(config: Value) -> Filter {
    plugin()
        .vm()
        .configuration(config.to_string())
        .clusters(&[SCORER])
        .start()
        .unwrap_or_else(|e| panic!("filter did not start with {config}: {e}"))
}

/// A configuration with a scorer (fail-open unless overridden by `extra`).
pub fn scorer_config(extra: Value) -> Value {
    let mut config = json!({ "scorer": { "cluster": SCORER, "timeout_ms": 200 } });
    merge(&mut config, extra);
    config
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra,
    }
}

/// A DNS query for `name`/`qtype` with id 0x1234 and RD set; with an OPT
/// record when `edns`.
pub fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        message.set_edns(opt);
    }
    message
}

pub fn wire(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap()
}

pub fn get_path(dns: &[u8]) -> String {
    format!("/dns-query?dns={}", URL_SAFE_NO_PAD.encode(dns))
}

/// Runs a DoH GET for `dns` through the stream's request headers.
pub fn doh_get<'s>(stream: &'s mut HttpStream<'_>, dns: &[u8]) -> Outcome<'s> {
    let path = get_path(dns);
    stream
        .request_headers(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "doh.example"),
                (":path", &path),
                ("accept", "application/dns-message"),
            ],
            true,
        )
        .unwrap()
}

/// Runs a DoH POST's request headers for a body of `length` bytes: the filter must pause to
/// read the body, not answer yet.
pub fn doh_post_headers(stream: &mut HttpStream<'_>, length: usize) {
    let length = length.to_string();
    let headers = stream
        .request_headers(
            &[
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", "doh.example"),
                (":path", "/dns-query"),
                ("content-type", "application/dns-message"),
                ("content-length", &length),
            ],
            false,
        )
        .unwrap();
    assert!(
        headers.local_response().is_none(),
        "a POST was answered before its body arrived: {:?}",
        headers.local_response()
    );
    headers.expect_pause();
}

/// Runs a DoH POST for `dns`: headers (which must not be answered yet), then the body.
pub fn doh_post<'s>(stream: &'s mut HttpStream<'_>, dns: &[u8]) -> Outcome<'s> {
    doh_post_headers(stream, dns.len());
    stream.request_body(dns, true).unwrap()
}

/// Parses a local reply that must be a DNS answer.
pub fn dns_answer(reply: &LocalResponse) -> Message {
    assert_eq!(
        reply.status,
        200,
        "block answers are HTTP 200: {}",
        reply.body_text()
    );
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/dns-message"),
        "content type of a DNS answer"
    );
    Message::from_vec(&reply.body).unwrap_or_else(|e| panic!("block answer is not DNS: {e}"))
}

/// The Extended DNS Error (RFC 8914, option 15) of an answer: info code and text.
pub fn extended_error(answer: &Message) -> Option<(u16, String)> {
    let edns = answer.edns.as_ref()?;
    match edns.options().get(EdnsCode::from(15u16))? {
        EdnsOption::Unknown(_, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8_lossy(&data[2..]).into_owned(),
        )),
        other => panic!("EDE option with unexpected payload {other:?}"),
    }
}

/// A `/v1/score` reply body per `docs/contracts.md`.
pub fn verdict(name: &str, registered: &str, verdict: &str, scope: &str, ttl: u64) -> String {
    json!({
        "name": name,
        "registered_domain": registered,
        "score": if verdict == "block" { 0.99 } else { 0.01 },
        "verdict": verdict,
        "reason": "model",
        "scope": scope,
        "model_version": "test-1",
        "ttl": ttl,
    })
    .to_string()
}

/// The verdict header on a reply or forwarded response.
pub const VERDICT_HEADER: &str = "x-dohguard-verdict";
