//! The retraining loop end to end, in a real browser against the real stack: demo traffic
//! through Envoy + filter + scorer lands in the store; headless Chromium (`web/e2e/retrain.mjs`)
//! labels two domains in the vetting queue, exports the labels as CSV, starts a retrain
//! (the real pipeline: `$DOHGUARD_PYTHON -m dohguard_models finetune`, 2 epochs), watches its
//! progress, reads the shadow comparison and promotes the candidate. Then the scorer serves
//! it (`/v1/score`) and a new DoH query's verdict document carries its model version; the
//! browser rolls back and the shipped model serves again. Needs `cargo xtask wasm`, the
//! scorer and console builds, the set-up's venv, `chromium` and `npm ci` in console/web.

use std::time::{Duration, Instant};

use dohguard_launcher::console_stack::{ConsoleStack, ConsoleStackOptions};
use dohguard_launcher::{demo_traffic, dns, Stack};
use serde_json::{json, Value};

fn browser(running: &ConsoleStack, step: &str) -> anyhow::Result<Value> {
    Ok(running.browser("retrain.mjs", &[("STEP", step)])?)
}

fn scored_version(scorer_url: &str, name: &str) -> anyhow::Result<String> {
    let (status, reply) = dohguard_launcher::http::post_json(
        &format!("{scorer_url}/v1/score"),
        &json!({"name": name, "qtype": "A"}),
    )?;
    anyhow::ensure!(status == 200, "/v1/score: {status} {reply}");
    Ok(reply["model_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Sends one DoH query for `name` through Envoy and returns its verdict document's model
/// version once the document is in the store.
fn doh_model_version(stack: &Stack, name: &str) -> anyhow::Result<String> {
    let query = demo_traffic::Query {
        client: "127.0.0.9".parse()?,
        name: name.to_owned(),
        qtype: dns::Type::A,
    };
    demo_traffic::send_one(stack.envoy.ports.http, &query)?;
    let store = stack
        .osmem
        .as_ref()
        .expect("the real scorer comes with the store");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let docs = store.search(json!({"term": {"dns.question.name": name}}))?;
        if let Some(doc) = docs.first() {
            return Ok(doc["dohguard"]["model_version"]
                .as_str()
                .unwrap_or_default()
                .to_owned());
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} never reached the store");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_browser_retrains_promotes_and_rolls_back_the_model() -> anyhow::Result<()> {
    let running = ConsoleStack::start(ConsoleStackOptions {
        deny: vec!["ads.example.test".into(), ".tracker.example.test".into()],
        concurrency: 1,
        console_asks_scorer: true,
        console_admin_of_scorer: true,
        ..ConsoleStackOptions::default()
    })?;
    let (stack, scorer) = (&running.stack, running.scorer());
    let summary = demo_traffic::send(stack.envoy.ports.http)?;
    running.wait_for_events(summary.sent, Duration::from_secs(60))?;
    let shipped = scored_version(&scorer.url(), "retrain-probe-1.example")?;

    let done = browser(&running, "retrain")?;
    assert_eq!(done["previous"], shipped.as_str(), "{done}");
    assert_eq!(done["csv_lines"], 3, "header and two labels: {done}");
    assert!(
        done["progress_seen"].as_f64().unwrap() > 0.0,
        "progress shown: {done}"
    );
    assert!(
        done["shadow_names"].as_u64().unwrap() >= 10,
        "recent domains compared: {done}"
    );
    let candidate = done["candidate"].as_str().unwrap().to_owned();
    assert!(candidate.starts_with(&format!("{shipped}-ft.")), "{done}");

    // The scorer serves the candidate, to the API and to a new query through the gateway.
    assert_eq!(
        scored_version(&scorer.url(), "retrain-probe-2.example")?,
        candidate
    );
    assert_eq!(
        doh_model_version(stack, "promoted-probe-7.example")?,
        candidate
    );

    let back = browser(&running, "rollback")?;
    assert_eq!(back["serving"], shipped.as_str(), "{back}");
    assert_eq!(
        scored_version(&scorer.url(), "retrain-probe-3.example")?,
        shipped
    );
    assert_eq!(
        doh_model_version(stack, "rolled-back-probe-8.example")?,
        shipped
    );
    Ok(())
}
