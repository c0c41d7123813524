//! The anomaly detector end to end, every part real: Envoy with the filter, unbound, the
//! scorer, osmem-server, Prometheus (1 s scrapes, the recording rules of contract 5),
//! Alertmanager with a webhook receiver, and `dohguard-anomaly` running the z-score fixture
//! model (`anomaly/tests/make_fixture_model.py`). Light DoH traffic runs throughout; an
//! NXDOMAIN storm from one client (random names under the demo zone) raises
//! `dohguard_anomaly_score` as Prometheus scrapes it, fires `DohguardAnomaly` at the webhook
//! with the NXDOMAIN share named first among the top features, and resolves there after the
//! storm stops; the anomaly is stored in `logs-dohguard.anomalies-default`.
//! The second test runs the shipped model (`anomaly/model/`, at its card's pace) on the same
//! light traffic (one client, two names, 4 queries/s, as a lightly used `./dohguard up`),
//! from the detector's start on: it must not alert on that normal, through its warm-up (the
//! card's `warmup_s`) and 90 s of evaluations after it (`max_over_time` of its alert state
//! stays 0); in the storm it must alert, at the webhook.
//! Needs `cargo xtask wasm` and `cargo build -p dohguard-scorer -p dohguard-anomaly` first.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dohguard_launcher::anomaly::{
    default_model_card as anomaly_model_card, evaluation_interval_ms, fixture_model_card,
};
use dohguard_launcher::demo_traffic::{send_one, Query};
use dohguard_launcher::dns::Type;
use dohguard_launcher::filter_config::{FailureMode, FilterConfig};
use dohguard_launcher::monitoring::{DetectorSetup, Monitoring, Timing};
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

const NX: &str = "dohguard:nxdomain:ratio";

/// Sends queries from `client` until `stop`, `per_s` a second; names from `name(i)`.
fn traffic(
    port: u16,
    client: Ipv4Addr,
    per_s: u32,
    stop: Arc<AtomicBool>,
    name: impl Fn(u64) -> String + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut sent = 0;
        let pause = Duration::from_millis(1000 / u64::from(per_s));
        while !stop.load(Ordering::Relaxed) {
            let query = Query {
                client,
                name: name(sent),
                qtype: Type::A,
            };
            if send_one(port, &query).is_ok() {
                sent += 1;
            }
            std::thread::sleep(pause);
        }
        sent
    })
}

/// Light normal traffic: the demo zone's two names from one client, 4 a second.
fn light_traffic(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    traffic(port, Ipv4Addr::new(127, 0, 0, 10), 4, stop, |i| {
        ["www.example.test", "allowed.example.test"][(i % 2) as usize].to_owned()
    })
}

/// The fault: one client asks for names that do not exist, 15 a second.
fn nxdomain_storm(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    traffic(port, Ipv4Addr::new(127, 0, 0, 66), 15, stop, |i| {
        format!("nx{i}-{}.example.test", std::process::id())
    })
}

/// Waits until the webhook has received `DohguardAnomaly` in `status` (`firing`,
/// `resolved`); its annotations.
fn anomaly_alert(
    hook: &WebhookReceiver,
    status: &str,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<(String, serde_json::Value)> {
    wait_for(what, timeout, || {
        Ok(hook
            .annotations_of("DohguardAnomaly")
            .into_iter()
            .find(|(s, _)| s == status))
    })
}

/// The real stack (real scorer, filter failing open), a webhook receiver, and Prometheus,
/// Alertmanager and the detector on `model_card` watching it, once every scrape target is up.
struct Watched {
    // Declared in the order they stop: the watchers before what they watch.
    monitoring: Monitoring,
    hook: WebhookReceiver,
    stack: Stack,
}

impl Watched {
    fn start(model_card: std::path::PathBuf, interval_ms: u64) -> anyhow::Result<Self> {
        let stack = Stack::start(StackOptions::real_scorer(
            FilterConfig {
                failure_mode: FailureMode::Open,
                ..FilterConfig::default()
            },
            1,
        )?)?;
        let hook = WebhookReceiver::start()?;
        let monitoring = Monitoring::start_with_detector(
            &stack,
            &Timing::fast(),
            Some(&hook.url()),
            None,
            Some(&DetectorSetup {
                model_card,
                interval_ms,
                port: None,
                admin_token_file: None,
            }),
        )?;
        let prometheus = &monitoring.prometheus;
        wait_for("every scrape target up", Duration::from_secs(30), || {
            let health = prometheus.target_health()?;
            let up = health.iter().filter(|(_, h)| h == "up").count();
            anyhow::ensure!(health.iter().any(|(j, _)| j == "anomaly"), "{health:?}");
            Ok((up == health.len()).then_some(()))
        })?;
        Ok(Self {
            monitoring,
            hook,
            stack,
        })
    }
}

#[test]
fn an_nxdomain_storm_raises_the_anomaly_alert_end_to_end() -> anyhow::Result<()> {
    let watched = Watched::start(fixture_model_card(), 1000)?;
    let (stack, hook) = (&watched.stack, &watched.hook);
    let store_url = stack.osmem.as_ref().expect("osmem").url();
    let prometheus = &watched.monitoring.prometheus;
    let port = stack.envoy.ports.http;
    let value = |promql: &str| -> anyhow::Result<Option<f64>> {
        Ok(prometheus.query(promql)?.first().map(|s| s.1))
    };

    // Normal traffic (`light_traffic`).
    let stop_normal = Arc::new(AtomicBool::new(false));
    let normal = light_traffic(port, stop_normal.clone());
    wait_for(
        "a quiet score scraped by Prometheus",
        Duration::from_secs(60),
        || {
            // Not scraped yet is "keep waiting", never zero.
            let (Some(evaluated), Some(queries)) = (
                value("dohguard_anomaly_evaluations_total{outcome=\"ok\"}")?,
                value("dohguard:queries:rate")?,
            ) else {
                return Ok(None);
            };
            Ok((evaluated >= 5.0 && queries > 0.0).then_some(()))
        },
    )?;
    let quiet = value("dohguard_anomaly_score")?.expect("the score is scraped");
    assert!(
        quiet < 4.0,
        "normal traffic is not anomalous: score {quiet}"
    );
    assert_eq!(value("dohguard_anomaly_alerting")?, Some(0.0));
    assert!(
        hook.annotations_of("DohguardAnomaly").is_empty(),
        "no anomaly alert yet: {:?}",
        hook.alerts()
    );

    // The fault (`nxdomain_storm`).
    let stop_storm = Arc::new(AtomicBool::new(false));
    let storm = nxdomain_storm(port, stop_storm.clone());
    let raised = wait_for(
        "dohguard_anomaly_score over the threshold",
        Duration::from_secs(60),
        || Ok(value("dohguard_anomaly_score")?.filter(|s| *s >= 4.0)),
    );
    let fired = raised.and_then(|_| {
        anomaly_alert(
            hook,
            "firing",
            "DohguardAnomaly firing at the webhook",
            Duration::from_secs(60),
        )
    });
    stop_storm.store(true, Ordering::Relaxed);
    let storm_sent = storm.join().expect("storm thread");
    let (_, annotations) = fired?;
    let top = annotations["top_features"].as_str().unwrap_or_default();
    assert!(
        top.starts_with(&format!("{NX}=")),
        "the NXDOMAIN share is named first: {annotations} ({storm_sent} storm queries)"
    );

    // The storm is over: the alert resolves at the webhook.
    anomaly_alert(
        hook,
        "resolved",
        "DohguardAnomaly resolved at the webhook",
        Duration::from_secs(120),
    )?;
    stop_normal.store(true, Ordering::Relaxed);
    normal.join().expect("traffic thread");

    // And the anomaly is on the record next to the verdicts.
    let doc = wait_for(
        "the resolved anomaly document",
        Duration::from_secs(30),
        || {
            let url = format!("{store_url}/logs-dohguard.anomalies-*/_search");
            let (status, reply) = dohguard_launcher::http::post_json(
                &url,
                &serde_json::json!({"query": {"term": {"dohguard.anomaly.state": "resolved"}}}),
            )?;
            anyhow::ensure!(status == 200 || status == 404, "{url}: {status} {reply}");
            Ok(reply["hits"]["hits"]
                .as_array()
                .and_then(|h| h.first())
                .map(|h| h["_source"].clone()))
        },
    )?;
    assert_eq!(
        doc["dohguard"]["anomaly"]["features"][0]["name"], NX,
        "{doc}"
    );
    assert!(
        doc["dohguard"]["anomaly"]["score"].as_f64().unwrap() >= 4.0,
        "{doc}"
    );
    assert!(doc["event"]["end"].is_string(), "{doc}");
    Ok(())
}

#[test]
fn the_shipped_model_stays_quiet_on_light_traffic_and_alerts_in_a_storm() -> anyhow::Result<()> {
    let card = anomaly_model_card()?;
    let interval_ms = evaluation_interval_ms(&card)?;
    let watched = Watched::start(card.clone(), interval_ms)?;
    let (stack, hook) = (&watched.stack, &watched.hook);
    let prometheus = &watched.monitoring.prometheus;
    let port = stack.envoy.ports.http;
    let value = |promql: &str| -> anyhow::Result<Option<f64>> {
        Ok(prometheus.query(promql)?.first().map(|s| s.1))
    };

    // Light normal traffic from the start: the gateway's own normal, not the recordings'.
    let stop_normal = Arc::new(AtomicBool::new(false));
    let normal = light_traffic(port, stop_normal.clone());
    // 90 s of evaluations of that traffic after the card's warm-up (`warmup_s`; evaluations
    // in it are counted as `warming_up`, not `ok`). Not scraped yet is "keep waiting", never zero.
    let evaluations = 90_000 / interval_ms;
    wait_for(
        "90 s of evaluations of light traffic after the warm-up",
        Duration::from_secs(360),
        || {
            let (Some(evaluated), Some(queries)) = (
                value("dohguard_anomaly_evaluations_total{outcome=\"ok\"}")?,
                value("dohguard:queries:rate")?,
            ) else {
                return Ok(None);
            };
            Ok((evaluated >= evaluations as f64 && queries > 0.0).then_some(()))
        },
    )?;
    let threshold = value("dohguard_anomaly_threshold")?.expect("the threshold is scraped");
    let quiet = value("dohguard_anomaly_score")?.expect("the score is scraped");
    let ever = value("max_over_time(dohguard_anomaly_alerting[10m])")?
        .expect("the alert state is scraped");
    let peak = value("max_over_time(dohguard_anomaly_score[10m])")?.expect("the score is scraped");
    println!("light traffic: score {quiet}, peak {peak}, threshold {threshold}");
    assert_eq!(
        ever, 0.0,
        "no alert on light normal traffic, start-up included: peak score {peak}, threshold {threshold}"
    );
    assert!(
        quiet < threshold,
        "light normal traffic is not anomalous: score {quiet}, threshold {threshold}"
    );
    assert!(
        hook.annotations_of("DohguardAnomaly").is_empty(),
        "no anomaly alert on light traffic: {:?}",
        hook.alerts()
    );

    // The fault (`nxdomain_storm`): the shipped model alerts, end to end, at the webhook.
    let stop_storm = Arc::new(AtomicBool::new(false));
    let storm = nxdomain_storm(port, stop_storm.clone());
    let fired = anomaly_alert(
        hook,
        "firing",
        "DohguardAnomaly firing at the webhook in the storm (shipped model)",
        Duration::from_secs(180),
    );
    stop_storm.store(true, Ordering::Relaxed);
    let storm_sent = storm.join().expect("storm thread");
    // What the detector saw, for the log (and the error when it did not alert).
    let mut seen = String::new();
    for q in [
        "max_over_time(dohguard_anomaly_raw_score[3m])",
        "max_over_time(dohguard_anomaly_score[3m])",
        "max_over_time(dohguard_anomaly_alerting[3m])",
        "max_over_time(dohguard:queries:rate[3m])",
        "max_over_time(dohguard:nxdomain:ratio[3m])",
        "topk(3, max_over_time(dohguard_anomaly_contribution[3m]))",
    ] {
        let answer = prometheus
            .query(q)
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|e| e.to_string());
        seen.push_str(&format!("\n  {q}: {answer}"));
    }
    println!("shipped model, NXDOMAIN storm ({storm_sent} queries):{seen}");
    let (_, annotations) =
        fired.map_err(|e| e.context(format!("threshold {threshold}; the detector saw:{seen}")))?;
    let storm_peak = value("max_over_time(dohguard_anomaly_score[3m])")?.expect("scraped");
    assert!(
        storm_peak >= threshold,
        "an alert means the smoothed score reached the threshold {threshold}: {storm_peak}"
    );
    println!("alert raised by the shipped model: {annotations}");
    stop_normal.store(true, Ordering::Relaxed);
    normal.join().expect("traffic thread");
    Ok(())
}
