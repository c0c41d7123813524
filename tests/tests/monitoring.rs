//! The gateway's monitoring end to end: a real Prometheus scrapes the real Envoy (with the
//! filter), the real scorer and a real Alertmanager; the recording rules of
//! `anomaly/prometheus/rules.yml.j2` (checked by `promtool`) turn the counters into features;
//! a scorer outage fires the static `DohguardScorerDown` alert, which Alertmanager delivers to
//! a webhook, and the scorer's return resolves it there.
//! Needs `cargo xtask wasm` and `cargo build -p dohguard-scorer` first.

use std::process::Command;
use std::time::Duration;

use dohguard_launcher::filter_config::{FailureMode, FilterConfig};
use dohguard_launcher::kdig::Method;
use dohguard_launcher::monitoring::{Monitoring, Timing};
use dohguard_launcher::scorer::{default_model_card, Scorer, ScorerOptions};
use dohguard_launcher::stack::ScorerKind;
use dohguard_launcher::tools::{self, Tool};
use dohguard_launcher::webhook::WebhookReceiver;
use dohguard_launcher::{Stack, StackOptions};

/// [`dohguard_launcher::wait::wait_for`] with this file's probes (anyhow errors).
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    Ok(dohguard_launcher::wait::wait_for(what, timeout, probe)?)
}

#[test]
fn the_rules_file_passes_promtool() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for timing in [Timing::fast(), Timing::operator()] {
        let rules = dohguard_launcher::monitoring::render_rules(dir.path(), &timing)?;
        let out = Command::new(tools::find(Tool::Promtool)?)
            .arg("check")
            .arg("rules")
            .arg(&rules)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "promtool check rules {}: {}{}",
            rules.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn prometheus_records_the_features_and_a_scorer_outage_alerts_through_alertmanager(
) -> anyhow::Result<()> {
    let model_card = default_model_card()?;
    let mut stack = Stack::start(StackOptions {
        filter_config: Some(
            FilterConfig {
                deny: vec!["ads.example.test".into()],
                scorer: true,
                failure_mode: FailureMode::Open,
                scorer_timeout_ms: 5000,
                events: true,
                ..FilterConfig::default()
            }
            .to_json(),
        ),
        scorer: ScorerKind::Real {
            model_card: model_card.clone(),
        },
        concurrency: 1,
        ..StackOptions::default()
    })?;
    let dir = stack.dir().to_path_buf();
    let scorer_port = stack.scorer.as_ref().expect("real scorer").port;
    let store_url = stack.osmem.as_ref().expect("osmem").url();

    let hook = WebhookReceiver::start()?;
    let monitoring = Monitoring::start_for(&stack, &Timing::fast(), Some(&hook.url()), None)?;
    let prometheus = &monitoring.prometheus;
    let targets = &monitoring.targets;
    assert_eq!(targets.len(), 3, "envoy, alertmanager, scorer: {targets:?}");

    wait_for("every scrape target up", Duration::from_secs(30), || {
        let health = prometheus.target_health()?;
        let up = health.iter().filter(|(_, h)| h == "up").count();
        anyhow::ensure!(up == targets.len(), "targets: {health:?}");
        Ok(Some(()))
    })?;

    // Traffic: deny-list hits and an allowed name (cache hits after the first).
    for _ in 0..5 {
        let denied = stack.kdig(Method::Post, "ads.example.test", "A")?;
        assert_eq!(denied.status, "NXDOMAIN", "{}", denied.raw);
        let allowed = stack.kdig(Method::Get, "www.example.test", "A")?;
        assert_eq!(allowed.status, "NOERROR", "{}", allowed.raw);
    }

    // A name unbound's static zone does not have (an upstream NXDOMAIN, forwarded) and a TXT
    // query (NOERROR without data).
    for _ in 0..2 {
        let missing = stack.kdig(Method::Get, "nosuch.example.test", "A")?;
        assert_eq!(missing.status, "NXDOMAIN", "{}", missing.raw);
    }
    let txt = stack.kdig(Method::Get, "www.example.test", "TXT")?;
    assert_eq!(txt.status, "NOERROR", "{}", txt.raw);

    // The filter's counters arrive under the documented Prometheus names, and the recording
    // rules turn them into features.
    let queries = wait_for("dohguard_queries >= 13", Duration::from_secs(20), || {
        let samples = prometheus.query("dohguard_queries")?;
        Ok(samples.first().map(|s| s.1).filter(|v| *v >= 13.0))
    })?;
    assert_eq!(queries, 13.0, "thirteen DoH queries were sent");
    // Forwarded answers by upstream RCODE: 5 + 1 NOERROR, 2 NXDOMAIN (the deny-list blocks are
    // the filter's own answers, not upstream ones).
    for (metric, expected) in [
        ("dohguard_rcode_noerror", 6.0),
        ("dohguard_rcode_nxdomain", 2.0),
        ("dohguard_rcode_servfail", 0.0),
        ("dohguard_qtype_a", 12.0),
        ("dohguard_qtype_txt", 1.0),
    ] {
        let value = wait_for(metric, Duration::from_secs(20), || {
            Ok(prometheus.query(metric)?.first().map(|s| s.1))
        })?;
        assert_eq!(value, expected, "{metric}");
    }
    let nxdomain = wait_for(
        "dohguard:nxdomain:ratio > 0",
        Duration::from_secs(30),
        || {
            Ok(prometheus
                .query("dohguard:nxdomain:ratio")?
                .first()
                .map(|s| s.1)
                .filter(|v| *v > 0.0))
        },
    )?;
    assert!(
        (0.1..=0.4).contains(&nxdomain),
        "2 of 8 forwarded answers were NXDOMAIN; the feature says {nxdomain}"
    );
    let txt_share = wait_for(
        "dohguard:qtype_txt:ratio > 0",
        Duration::from_secs(30),
        || {
            Ok(prometheus
                .query("dohguard:qtype_txt:ratio")?
                .first()
                .map(|s| s.1)
                .filter(|v| *v > 0.0))
        },
    )?;
    assert!(
        (0.03..=0.15).contains(&txt_share),
        "1 of 13 queries was TXT; the feature says {txt_share}"
    );
    // The filter's histograms come through Envoy as Prometheus histograms (after its stats
    // flush): the names sent are 16 to 19 characters long.
    let p95 = wait_for("dohguard:qname_length:p95", Duration::from_secs(30), || {
        Ok(prometheus
            .query("dohguard:qname_length:p95")?
            .first()
            .map(|s| s.1)
            .filter(|v| v.is_finite() && *v > 0.0))
    })?;
    assert!(
        (10.0..=25.0).contains(&p95),
        "Envoy's default buckets put names of 16-19 characters in (10, 25]; p95 {p95}"
    );
    wait_for("dohguard:queries:rate > 0", Duration::from_secs(30), || {
        Ok(prometheus
            .query("dohguard:queries:rate")?
            .first()
            .map(|s| s.1)
            .filter(|v| *v > 0.0))
    })?;
    let blocked_ratio = wait_for("dohguard:blocked:ratio", Duration::from_secs(30), || {
        Ok(prometheus
            .query("dohguard:blocked:ratio")?
            .first()
            .map(|s| s.1)
            .filter(|v| *v > 0.0))
    })?;
    assert!(
        (0.3..=0.7).contains(&blocked_ratio),
        "half the queries were blocked; the feature says {blocked_ratio}"
    );
    assert!(
        hook.alerts().is_empty(),
        "no alert while everything is up: {:?}",
        hook.alerts()
    );

    // A scorer outage fires the static alert, delivered by Alertmanager to the webhook.
    stack.scorer.as_mut().expect("real scorer").process().stop();
    wait_for(
        "DohguardScorerDown firing at the webhook",
        Duration::from_secs(60),
        || {
            Ok(hook
                .alerts()
                .contains(&("firing".to_owned(), "DohguardScorerDown".to_owned()))
                .then_some(()))
        },
    )?;

    // The scorer comes back on its port: the alert resolves.
    stack.scorer = Some(Scorer::start(
        &dir,
        &ScorerOptions {
            model_card,
            detector_cards: Vec::new(),
            elasticsearch_url: store_url,
            port: Some(scorer_port),
        },
    )?);
    wait_for(
        "DohguardScorerDown resolved at the webhook",
        Duration::from_secs(90),
        || {
            Ok(hook
                .alerts()
                .contains(&("resolved".to_owned(), "DohguardScorerDown".to_owned()))
                .then_some(()))
        },
    )?;
    Ok(())
}
