//! A DNS tunnel through the real gateway: kdig -> Envoy + filter (.wasm in V8) ->
//! dohguard-scorer with the shipped DGA model and the shipped full-name tunnel detector
//! (models/tunnel-v1) -> osmem-server; unbound answers every name under the demo tunnel base
//! domain. The session is a real tool's query names (tests/fixtures/tunnel-session.txt, from
//! a DNSExfiltrator capture, moved under the demo base domain), sent after an ordinary name
//! under the same domain was allowed and cached for the whole domain: the tunnel must be
//! blocked within 20 queries anyway, with reason `model` and detector `tunnel` on the record,
//! and the domain blocked as a whole after it; a CDN-like name under another allowed domain
//! still resolves.
//!
//! What this checks is the path (suspect names bypass the registered-domain cache entry, the
//! scorer runs the tunnel model and its session rule, the verdict and its detector reach the
//! client and the record); the detector's figures on held-out tools are in
//! models/tunnel-v1/report.md.

use std::time::{Duration, Instant};

use dohguard_launcher::filter_config::{FailureMode, FilterConfig};
use dohguard_launcher::kdig::Method;
use dohguard_launcher::osmem::Osmem;
use dohguard_launcher::scorer::default_model_card;
use dohguard_launcher::stack::ScorerKind;
use dohguard_launcher::unbound::{LocalZone, UnboundOptions};
use dohguard_launcher::{Stack, StackOptions};
use serde_json::Value;

/// The demo tunnel base domain (unbound answers every name under it).
const BASE: &str = "tunnel-demo.test";
/// The demo CDN-like domain and a long, random-looking name under it.
const CDN_BASE: &str = "cdn-demo.test";
const CDN_NAME: &str = "rr4---sn-4g5e6nsz.c.cdn-demo.test";
const SESSION: &str = include_str!("../fixtures/tunnel-session.txt");
const WITHIN: usize = 20;

fn redirect_zone(name: &str, address: &str) -> LocalZone {
    LocalZone {
        name: name.into(),
        kind: "redirect".into(),
        records: vec![format!("{name}. 60 IN A {address}")],
    }
}

fn gateway() -> anyhow::Result<Stack> {
    let config = FilterConfig {
        scorer: true,
        failure_mode: FailureMode::Closed,
        // A debug-build scorer on a loaded 2-core machine: generous, the test is not timing it.
        scorer_timeout_ms: 5000,
        events: true,
        ..FilterConfig::default()
    };
    let mut unbound = UnboundOptions::default();
    unbound.zones.push(redirect_zone(BASE, "192.0.2.53"));
    unbound.zones.push(redirect_zone(CDN_BASE, "192.0.2.54"));
    Ok(Stack::start(StackOptions {
        filter_config: Some(config.to_json()),
        scorer: ScorerKind::Real {
            model_card: default_model_card()?,
        },
        unbound,
        concurrency: 1,
        ..StackOptions::default()
    })?)
}

/// The session's names, in the order the tool sent them, under [`BASE`], normalised (lower
/// case) as the record writes them.
fn session() -> Vec<String> {
    SESSION
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|sub| format!("{sub}.{BASE}").to_ascii_lowercase())
        .collect()
}

/// Waits until `name` has `n` documents and returns them.
fn documents(store: &Osmem, name: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let query = serde_json::json!({"term": {"dns.question.name": name}});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let docs = store.search(query.clone())?;
        if docs.len() >= n {
            return Ok(docs);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name}: {} documents after 30 s, want {n}",
            docs.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_tunnel_under_an_allowed_domain_is_blocked_within_20_queries() -> anyhow::Result<()> {
    let names = session();
    assert!(
        names.len() >= WITHIN,
        "{} names in the fixture",
        names.len()
    );
    for name in &names {
        dohguard_core::normalize(name).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    let stack = gateway()?;
    let store = stack
        .osmem
        .as_ref()
        .expect("osmem runs with the real scorer");

    // An ordinary name first: the domain is allowed and cached for every name under it.
    let www = format!("www.{BASE}");
    let first = stack.kdig(Method::Post, &www, "A")?;
    assert_eq!(first.status, "NOERROR", "{}", first.raw);
    assert_eq!(first.answer_data("A"), ["192.0.2.53"], "{}", first.raw);
    let again = stack.kdig(Method::Post, &format!("mail.{BASE}"), "A")?;
    assert_eq!(again.status, "NOERROR", "{}", again.raw);

    // The tunnel session: each name is judged, none answered from the domain's allow.
    let mut blocked_at = None;
    for (i, name) in names.iter().take(WITHIN).enumerate() {
        let reply = stack.kdig(Method::Post, name, "TXT")?;
        match reply.status.as_str() {
            "NXDOMAIN" => {
                blocked_at = Some(i + 1);
                break;
            }
            "NOERROR" => {}
            other => anyhow::bail!("{name}: {other}: {}", reply.raw),
        }
    }
    let Some(at) = blocked_at else {
        anyhow::bail!("none of the first {WITHIN} tunnel queries was blocked");
    };
    let blocked_name = &names[at - 1];
    let doc = documents(store, blocked_name, 1)?.remove(0);
    assert_eq!(doc["dohguard"]["verdict"], "block", "{doc}");
    assert_eq!(doc["dohguard"]["reason"], "model", "{doc}");
    assert_eq!(doc["dohguard"]["detector"], "tunnel", "{doc}");
    assert_eq!(doc["dns"]["question"]["registered_domain"], BASE, "{doc}");

    // After the session rule fired, the whole domain is blocked, ordinary names included
    // (answered from the filter's cache, which keeps the detector).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe = at;
    loop {
        let name = &names[probe.min(names.len() - 1)];
        let reply = stack.kdig(Method::Post, name, "TXT")?;
        if reply.status == "NXDOMAIN" {
            let after = stack.kdig(Method::Post, &format!("news.{BASE}"), "A")?;
            if after.status == "NXDOMAIN" {
                break;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline && probe < names.len(),
            "the domain {BASE} was never blocked as a whole"
        );
        probe += 1;
    }
    let news = documents(store, &format!("news.{BASE}"), 1)?;
    let last = news
        .iter()
        .find(|d| d["dohguard"]["verdict"] == "block")
        .ok_or_else(|| anyhow::anyhow!("no block document for news.{BASE}: {news:?}"))?;
    assert_eq!(last["dohguard"]["detector"], "tunnel", "{last}");

    // A long, random-looking CDN-like name under another allowed domain still resolves.
    let cdn = stack.kdig(Method::Post, CDN_NAME, "A")?;
    assert_eq!(cdn.status, "NOERROR", "{}", cdn.raw);
    assert_eq!(cdn.answer_data("A"), ["192.0.2.54"], "{}", cdn.raw);
    Ok(())
}
