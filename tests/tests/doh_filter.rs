//! End-to-end: the real filter `.wasm` in a real Envoy (V8) in front of a real unbound, asked
//! with the real kdig over DoH (TLS, HTTP/2, GET and POST) and with curl for malformed input.
//! The scorer is the in-process stand-in (blocks `*.dga.test`, allows the rest).

use dohguard_launcher::dns::{self, Type};
use dohguard_launcher::filter_config::{FailureMode, FilterConfig};
use dohguard_launcher::kdig::Method;
use dohguard_launcher::stack::ScorerKind;
use dohguard_launcher::stand_in_scorer::Behaviour;
use dohguard_launcher::{Stack, StackOptions};
use serde_json::json;

const DENY: [&str; 2] = ["ads.example.test", ".tracker.example.test"];

fn gateway(config: FilterConfig) -> anyhow::Result<Stack> {
    Ok(Stack::start(StackOptions {
        filter_config: Some(config.to_json()),
        scorer: ScorerKind::StandIn,
        concurrency: 1,
        ..StackOptions::default()
    })?)
}

fn default_config() -> FilterConfig {
    FilterConfig {
        deny: DENY.iter().map(|s| s.to_string()).collect(),
        scorer: true,
        ..FilterConfig::default()
    }
}

#[test]
fn allowed_names_resolve_and_denied_names_get_the_block_answer() -> anyhow::Result<()> {
    let stack = gateway(default_config())?;
    for method in [Method::Get, Method::Post] {
        let allowed = stack.kdig(method, "www.example.test", "A")?;
        assert_eq!(allowed.status, "NOERROR", "{}", allowed.raw);
        assert_eq!(allowed.answer_data("A"), ["192.0.2.10"], "{}", allowed.raw);
        let v6 = stack.kdig(method, "www.example.test", "AAAA")?;
        assert_eq!(v6.answer_data("AAAA"), ["2001:db8::10"], "{}", v6.raw);

        for denied in [
            "ads.example.test",
            "tracker.example.test",
            "a.b.tracker.example.test",
        ] {
            let reply = stack.kdig(method, denied, "A")?;
            assert_eq!(reply.status, "NXDOMAIN", "{denied}: {}", reply.raw);
            assert!(reply.answers.is_empty(), "{}", reply.raw);
            assert_eq!(
                reply.ede,
                [15],
                "deny-list hits carry EDE 15 Blocked: {}",
                reply.raw
            );
        }
    }
    // unbound knows ads.example.test (192.0.2.66): the NXDOMAIN above came from the filter.
    assert_eq!(stack.filter_counter("dohguard.reason.deny_list")?, 6);
    assert_eq!(stack.filter_counter("dohguard.blocked")?, 6);
    Ok(())
}

#[test]
fn scorer_verdicts_block_and_are_cached() -> anyhow::Result<()> {
    let stack = gateway(default_config())?;
    let scorer = stack.stand_in.as_ref().expect("stand-in scorer");

    let blocked = stack.kdig(Method::Post, "x7k2q9.dga.test", "A")?;
    assert_eq!(blocked.status, "NXDOMAIN", "{}", blocked.raw);
    assert_eq!(
        blocked.ede,
        [15],
        "model verdicts carry EDE 15 Blocked (an operator's policy): {}",
        blocked.raw
    );
    assert_eq!(scorer.requests(), 1);

    // Same name again: answered from the verdict cache shared by the workers, no callout.
    let again = stack.kdig(Method::Get, "x7k2q9.dga.test", "A")?;
    assert_eq!(again.status, "NXDOMAIN", "{}", again.raw);
    assert_eq!(
        scorer.requests(),
        1,
        "a cached verdict must not call the scorer"
    );

    let allowed = stack.kdig(Method::Post, "allowed.example.test", "A")?;
    assert_eq!(allowed.answer_data("A"), ["192.0.2.11"], "{}", allowed.raw);
    assert_eq!(scorer.requests(), 2);

    assert_eq!(stack.filter_counter("dohguard.reason.model")?, 2);
    assert_eq!(stack.filter_counter("dohguard.reason.cache")?, 1);
    assert_eq!(stack.filter_counter("dohguard.cache.hit")?, 1);
    assert_eq!(stack.filter_counter("dohguard.callout.sent")?, 2);
    assert_eq!(stack.filter_counter("dohguard.verdict.block")?, 2);
    assert_eq!(stack.filter_counter("dohguard.verdict.allow")?, 1);

    // The same counters in Prometheus form (namespace stripped, dots to underscores).
    let prometheus = stack.envoy.prometheus()?;
    let line = prometheus
        .lines()
        .find(|l| l.starts_with("dohguard_verdict_block"))
        .unwrap_or_else(|| panic!("no dohguard_verdict_block in /stats/prometheus:\n{prometheus}"));
    assert!(line.ends_with(" 2"), "{line}");
    Ok(())
}

#[test]
fn the_verdict_header_says_why_only_when_asked() -> anyhow::Result<()> {
    // Off by default: the header would tell any client about lists, cache and the model.
    let quiet = gateway(default_config())?;
    let query = dns::query("ads.example.test", Type::A, 7, false).expect("valid name");
    let reply = quiet.http(
        "POST",
        "/dns-query",
        &[("content-type", "application/dns-message")],
        Some(&query),
    )?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-dohguard-verdict"), None);
    drop(quiet);

    let mut config = default_config();
    config
        .overrides
        .insert("verdict_header".into(), json!("x-dohguard-verdict"));
    config
        .overrides
        .insert("verdict_header_detail".into(), json!(true));
    let stack = gateway(config)?;
    let post = |name: &str| {
        let query = dns::query(name, Type::A, 7, false).expect("valid name");
        stack.http(
            "POST",
            "/dns-query",
            &[("content-type", "application/dns-message")],
            Some(&query),
        )
    };
    let denied = post("ads.example.test")?;
    assert_eq!(denied.status, 200);
    assert_eq!(
        denied.header("content-type"),
        Some("application/dns-message")
    );
    assert_eq!(
        denied.header("x-dohguard-verdict"),
        Some("block; reason=deny_list")
    );
    let answer = dns::parse(&denied.body)?;
    assert_eq!(answer.id(), 7);
    assert_eq!(answer.response_code(), dns::ResponseCode::NXDomain);
    assert_eq!(answer.queries()[0].name().to_ascii(), "ads.example.test.");

    let allowed = post("www.example.test")?;
    assert_eq!(
        allowed.header("x-dohguard-verdict"),
        Some("allow; reason=model")
    );
    let cached = post("www.example.test")?;
    assert_eq!(
        cached.header("x-dohguard-verdict"),
        Some("allow; reason=model; cache=hit")
    );
    Ok(())
}

/// One malformed DoH request and the status it must get.
struct Malformed {
    http1: bool,
    method: &'static str,
    status: u16,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Vec<u8>>,
}

#[test]
fn malformed_requests_get_their_4xx_and_are_never_forwarded() -> anyhow::Result<()> {
    let stack = gateway(default_config())?;
    let upstream_before = stack
        .envoy
        .stat("cluster.upstream_doh.upstream_rq_total")?
        .expect("Envoy defines the upstream cluster's counters at start");
    let good = dns::query("www.example.test", Type::A, 1, false)?;
    let mut two_questions = good.clone();
    two_questions[5] = 2; // QDCOUNT = 2 (the question is not repeated: also truncated)
    let mut response_bit = good.clone();
    response_bit[2] |= 0x80; // QR set: a response, not a query

    let ct = |value: &'static str| vec![("content-type", value)];
    let case = |method, status, path: &str, headers, body| Malformed {
        http1: false,
        method,
        status,
        path: path.to_owned(),
        headers,
        body,
    };
    let dns = "application/dns-message";
    // Requests the filter rejects from their headers alone, while a body is still on its way,
    // go over HTTP/1.1: see Transport::CleartextHttp1. The same checks without a body run
    // over HTTP/2.
    let early = |c: Malformed| Malformed { http1: true, ..c };
    let cases = [
        early(case("PUT", 405, "/dns-query", ct(dns), Some(good.clone()))),
        case("DELETE", 405, "/dns-query", vec![], None),
        early(case(
            "POST",
            415,
            "/dns-query",
            ct("text/plain"),
            Some(good.clone()),
        )),
        case("POST", 415, "/dns-query", ct("text/plain"), None),
        case("GET", 400, "/dns-query", vec![], None),
        case("GET", 400, "/dns-query?dns=%%%not-base64%%%", vec![], None),
        case("POST", 400, "/dns-query", ct(dns), Some(good[..7].to_vec())),
        case("POST", 400, "/dns-query", ct(dns), Some(two_questions)),
        case("POST", 400, "/dns-query", ct(dns), Some(response_bit)),
        early(case(
            "POST",
            413,
            "/dns-query",
            ct(dns),
            Some(vec![0u8; 70_000]),
        )),
    ];
    let count = cases.len() as u64;
    for c in cases {
        let what = format!(
            "{} {} ({} body bytes)",
            c.method,
            c.path,
            c.body.as_ref().map_or(0, Vec::len)
        );
        let reply = stack
            .http_over(c.http1, c.method, &c.path, &c.headers, c.body.as_deref())
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        let body = String::from_utf8_lossy(&reply.body);
        assert_eq!(reply.status, c.status, "{what}: {body}");
        assert!(
            !body.trim().is_empty(),
            "{what}: the error body says what was wrong"
        );
        if c.status == 405 {
            assert_eq!(reply.header("allow"), Some("GET, POST"), "{what}");
        }
    }
    assert_eq!(stack.filter_counter("dohguard.malformed_requests")?, count);
    let upstream_after = stack
        .envoy
        .stat("cluster.upstream_doh.upstream_rq_total")?
        .expect("Envoy defines the upstream cluster's counters at start");
    assert_eq!(
        upstream_after, upstream_before,
        "a malformed request reached unbound"
    );

    // Paths other than /dns-query pass the filter untouched (and Envoy's route answers 404).
    let other = stack.http("GET", "/elsewhere", &[], None)?;
    assert_eq!(other.status, 404);
    assert_eq!(other.header("x-dohguard-verdict"), None);

    // The gateway still works after all that.
    let fine = stack.kdig(Method::Get, "www.example.test", "A")?;
    assert_eq!(fine.answer_data("A"), ["192.0.2.10"], "{}", fine.raw);
    Ok(())
}

#[test]
fn sinkhole_answers_carry_unspecified_addresses() -> anyhow::Result<()> {
    let mut config = default_config();
    config
        .overrides
        .insert("block".into(), json!({"answer": "sinkhole", "ttl_s": 42}));
    let stack = gateway(config)?;
    let a = stack.kdig(Method::Post, "ads.example.test", "A")?;
    assert_eq!(a.status, "NOERROR", "{}", a.raw);
    assert_eq!(a.answer_data("A"), ["0.0.0.0"], "{}", a.raw);
    assert_eq!(a.answers[0].ttl, 42, "{}", a.raw);
    let aaaa = stack.kdig(Method::Get, "ads.example.test", "AAAA")?;
    assert_eq!(aaaa.answer_data("AAAA"), ["::"], "{}", aaaa.raw);
    let txt = stack.kdig(Method::Get, "ads.example.test", "TXT")?;
    assert_eq!(txt.status, "NOERROR", "{}", txt.raw);
    assert!(
        txt.answers.is_empty(),
        "other types get NODATA: {}",
        txt.raw
    );
    Ok(())
}

#[test]
fn a_failing_scorer_fails_open_or_closed_as_configured() -> anyhow::Result<()> {
    for (mode, behaviour) in [
        (FailureMode::Open, Behaviour::ServerError),
        (FailureMode::Closed, Behaviour::ServerError),
        (FailureMode::Closed, Behaviour::Malformed),
    ] {
        let stack = gateway(FilterConfig {
            failure_mode: mode,
            ..default_config()
        })?;
        stack
            .stand_in
            .as_ref()
            .expect("stand-in")
            .set_behaviour(behaviour);
        let reply = stack.kdig(Method::Post, "allowed.example.test", "A")?;
        match mode {
            FailureMode::Open => {
                assert_eq!(
                    reply.answer_data("A"),
                    ["192.0.2.11"],
                    "{mode:?}: {}",
                    reply.raw
                )
            }
            FailureMode::Closed => {
                assert_eq!(reply.status, "NXDOMAIN", "{mode:?}: {}", reply.raw);
                assert_eq!(reply.ede, [15], "{}", reply.raw);
            }
        }
        assert_eq!(stack.filter_counter("dohguard.reason.scorer_failure")?, 1);
        let counter = match behaviour {
            Behaviour::Malformed => "dohguard.callout.malformed",
            _ => "dohguard.callout.error",
        };
        assert_eq!(stack.filter_counter(counter)?, 1, "{behaviour:?}");
        // The deny list still works while the scorer is down.
        let denied = stack.kdig(Method::Get, "ads.example.test", "A")?;
        assert_eq!(denied.ede, [15], "{}", denied.raw);
    }
    Ok(())
}

/// The reviewed bypass: a POST whose body is followed by HTTP/2 trailers (nghttp --trailer)
/// got unbound's answer for a deny-listed name, with no verdict and no counter. Now the
/// trailers end the body and the filter answers.
#[test]
fn a_post_with_trailers_is_decided_not_forwarded() -> anyhow::Result<()> {
    let stack = gateway(default_config())?;
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("query.bin");
    std::fs::write(
        &body,
        dns::query("ads.example.test", Type::A, 9, false).expect("valid name"),
    )?;
    let nghttp = dohguard_launcher::tools::find(dohguard_launcher::tools::Tool::Nghttp)?;
    let out = std::process::Command::new(nghttp)
        .args(["--no-dep", "-H", "content-type: application/dns-message"])
        .args(["--trailer", "x-foo: bar", "-d"])
        .arg(&body)
        .arg(format!(
            "http://127.0.0.1:{}/dns-query",
            stack.envoy.ports.http
        ))
        .output()?;
    assert!(
        out.status.success(),
        "nghttp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = dns::parse(&out.stdout)?;
    assert_eq!(answer.id(), 9);
    assert_eq!(
        answer.response_code(),
        dns::ResponseCode::NXDomain,
        "the block answer, not unbound's A record (192.0.2.66)"
    );
    assert_eq!(stack.filter_counter("dohguard.blocked")?, 1);
    assert_eq!(
        stack.envoy.stat("cluster.upstream_doh.upstream_rq_total")?,
        Some(0),
        "nothing reached unbound"
    );
    Ok(())
}

/// CNAME and alias cloaking: unbound answers an allowed name with a CNAME (or an HTTPS
/// AliasMode record) into a deny-listed domain; the client gets the block answer.
#[test]
fn cname_and_alias_cloaking_into_a_denied_domain_get_the_block_answer() -> anyhow::Result<()> {
    use dohguard_launcher::unbound::{LocalZone, UnboundOptions};
    let mut unbound = UnboundOptions::default();
    let zone = |name: &str, records: &[&str]| LocalZone {
        name: name.into(),
        kind: "static".into(),
        records: records.iter().map(|r| r.to_string()).collect(),
    };
    unbound.zones.push(zone(
        "cloak.test",
        &[
            "cdn.cloak.test. 300 IN CNAME tracker.evil.test.",
            "svc.cloak.test. 300 IN HTTPS 0 alias.evil.test.",
            "www.cloak.test. 300 IN CNAME www.example.test.",
        ],
    ));
    unbound.zones.push(zone(
        "evil.test",
        &["tracker.evil.test. 300 IN A 192.0.2.99"],
    ));
    let config = FilterConfig {
        deny: vec![".evil.test".into()],
        ..FilterConfig::default()
    };
    let stack = Stack::start(StackOptions {
        filter_config: Some(config.to_json()),
        concurrency: 1,
        unbound,
        ..StackOptions::default()
    })?;
    for method in [Method::Get, Method::Post] {
        let cloaked = stack.kdig(method, "cdn.cloak.test", "A")?;
        assert_eq!(cloaked.status, "NXDOMAIN", "{}", cloaked.raw);
        assert!(cloaked.answers.is_empty(), "{}", cloaked.raw);
        assert_eq!(cloaked.ede, [15], "{}", cloaked.raw);
        let alias = stack.kdig(method, "svc.cloak.test", "HTTPS")?;
        assert_eq!(alias.status, "NXDOMAIN", "{}", alias.raw);
        assert_eq!(alias.ede, [15], "{}", alias.raw);
        // A CNAME to an allowed name resolves as before.
        let clean = stack.kdig(method, "www.cloak.test", "A")?;
        assert_eq!(clean.status, "NOERROR", "{}", clean.raw);
        assert_eq!(
            clean.answer_data("CNAME"),
            ["www.example.test."],
            "{}",
            clean.raw
        );
    }
    assert_eq!(stack.filter_counter("dohguard.reason.cname")?, 4);
    assert_eq!(stack.filter_counter("dohguard.cname.inspected")?, 6);
    assert_eq!(stack.filter_counter("dohguard.cname.uninspected")?, 0);
    assert_eq!(stack.filter_counter("dohguard.reason.deny_list")?, 0);
    Ok(())
}
