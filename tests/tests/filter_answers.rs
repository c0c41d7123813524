//! The filter's own answers and its one-callout-per-name rule through the real gateway
//! (Envoy + the filter + unbound + the stand-in scorer): concurrent queries for one uncached
//! name make one callout (the waiting request is answered from another request's callout
//! reply, in its own stream), an unknown EDNS version gets BADVERS, and block answers are
//! padded when the query asked for padding.

use dohguard_e2e::dns;
use dohguard_e2e::filter_config::FilterConfig;
use dohguard_e2e::kdig::Method;
use dohguard_e2e::stack::ScorerKind;
use dohguard_e2e::stand_in_scorer::Behaviour;
use dohguard_e2e::{Stack, StackOptions};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RecordType};

fn gateway() -> anyhow::Result<Stack> {
    let config = FilterConfig {
        deny: vec!["ads.example.test".into()],
        scorer: true,
        scorer_timeout_ms: 3000,
        ..FilterConfig::default()
    };
    Ok(Stack::start(StackOptions {
        filter_config: Some(config.to_json()),
        scorer: ScorerKind::StandIn,
        // One worker: concurrent requests meet in one VM.
        concurrency: 1,
        ..StackOptions::default()
    })?)
}

/// A query for `name` with an OPT record of `version`, optionally carrying a Padding option.
fn edns_query(name: &str, version: u8, padding: bool) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(7)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_version(version);
    if padding {
        edns.options_mut()
            .insert(EdnsOption::Unknown(12, vec![0; 16]));
    }
    message.set_edns(edns);
    message.to_vec().unwrap()
}

fn post(stack: &Stack, body: &[u8]) -> anyhow::Result<dohguard_e2e::doh_client::HttpReply> {
    Ok(stack.http(
        "POST",
        "/dns-query",
        &[("content-type", "application/dns-message")],
        Some(body),
    )?)
}

#[test]
fn concurrent_queries_for_one_uncached_name_make_one_callout() -> anyhow::Result<()> {
    let stack = gateway()?;
    let scorer = stack.stand_in.as_ref().expect("stand-in scorer");
    // The callout takes long enough for the second query to arrive while it is in flight.
    scorer.set_behaviour(Behaviour::Slow);
    let name = "c9k2x7.dga.test";
    let replies = std::thread::scope(|s| {
        let first = s.spawn(|| stack.kdig(Method::Post, name, "A"));
        let second = s.spawn(|| stack.kdig(Method::Get, name, "A"));
        [first.join(), second.join()]
    });
    for reply in replies {
        let reply = reply.expect("kdig thread")?;
        assert_eq!(reply.status, "NXDOMAIN", "{}", reply.raw);
        assert_eq!(reply.ede, [15], "{}", reply.raw);
    }
    assert_eq!(scorer.requests(), 1, "one callout for both queries");
    assert_eq!(stack.filter_counter("dohguard.callout.sent")?, 1);
    assert_eq!(stack.filter_counter("dohguard.callout.joined")?, 1);
    assert_eq!(stack.filter_counter("dohguard.blocked")?, 2);
    assert_eq!(stack.filter_counter("dohguard.reason.model")?, 2);
    Ok(())
}

#[test]
fn edns_answers_follow_the_rfcs() -> anyhow::Result<()> {
    let stack = gateway()?;
    // An unknown EDNS version: BADVERS from the filter (unbound would answer NOERROR with
    // its own record for this name).
    let reply = post(&stack, &edns_query("www.example.test", 1, false))?;
    assert_eq!(reply.status, 200);
    let answer = dns::parse(&reply.body)?;
    assert_eq!(u16::from(answer.response_code()), 16, "{answer:?}");
    assert_eq!(answer.extensions().as_ref().map(|e| e.version()), Some(0));
    assert!(answer.answers().is_empty(), "not forwarded: {answer:?}");
    assert_eq!(stack.filter_counter("dohguard.malformed_requests")?, 1);

    // Padding asked for: the block answer is a multiple of 468 octets.
    let reply = post(&stack, &edns_query("ads.example.test", 0, true))?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len() % 468, 0, "{} octets", reply.body.len());
    let answer = dns::parse(&reply.body)?;
    assert_eq!(answer.response_code(), dns::ResponseCode::NXDomain);
    Ok(())
}
