//! The detector binary against a real Prometheus (Debian `prometheus`, 1 s scrapes) that
//! scrapes a target serving the features directly, so the test decides what the detector
//! reads: a feature missing and coming back, an anomaly opening while Elasticsearch is down
//! and its document stored once the store (osmem-server) comes up, the anomaly resolving, a
//! broken model file that leaves the old model serving, the authenticated reload endpoint, and
//! Prometheus going away. Each failure must show in a metric and in one log line, and the
//! process must keep running. Needs `ORT_DYLIB_PATH` (scripts/env.sh).

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use dohguard_launcher::background::BackgroundServer;
use dohguard_launcher::monitoring::{Prometheus, Target, Timing};
use dohguard_launcher::osmem::Osmem;
use dohguard_launcher::ports::free_port;
use dohguard_launcher::process::ManagedProcess;

/// [`dohguard_launcher::wait::wait_for`] with this file's probes (anyhow errors).
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    Ok(dohguard_launcher::wait::wait_for(what, timeout, probe)?)
}

const NX: &str = "dohguard:nxdomain:ratio";
const LATE: &str = "dohguard:qname_length:p95";
const INDEX_PATTERN: &str = "logs-dohguard.anomalies-*";
const TOKEN: &str = "a-test-token-of-enough-length-0123";

/// The value of the series written exactly as `series` (name plus labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// What the feature target serves: `name -> value`.
type Served = Arc<Mutex<Vec<(String, f64)>>>;

fn feature_target(served: Served) -> anyhow::Result<BackgroundServer> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let served = served.clone();
            async move {
                let mut out = String::new();
                for (name, value) in served.lock().expect("served lock").iter() {
                    out.push_str(&format!("{name} {value}\n"));
                }
                out
            }
        }),
    );
    Ok(BackgroundServer::start("feature target", app)?)
}

fn set(served: &Served, name: &str, value: Option<f64>) {
    let mut s = served.lock().expect("served lock");
    s.retain(|(n, _)| n != name);
    if let Some(v) = value {
        s.push((name.to_owned(), v));
    }
}

struct Detector {
    process: ManagedProcess,
    url: String,
}

impl Detector {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dohguard-anomaly"));
        command
            .args(["--listen", "127.0.0.1:0", "--interval-ms", "500"])
            .args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let log = dir.join("anomaly.log");
        let mut process = ManagedProcess::spawn("dohguard-anomaly", command, &log)?;
        let mut addr = None;
        process.wait_ready(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            addr = text.lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["listen"].as_str().map(str::to_owned)
            });
            addr.is_some()
        })?;
        Ok(Self {
            process,
            url: format!("http://{}", addr.expect("address read")),
        })
    }

    fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = dohguard_launcher::http::get_text(&format!("{}/metrics", self.url))?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(body)
    }

    fn value(&self, series: &str) -> anyhow::Result<Option<f64>> {
        Ok(sample(&self.metrics()?, series))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    fn reload(&self, token: Option<&str>) -> anyhow::Result<u16> {
        let agent = dohguard_launcher::http::agent();
        let mut request = agent.post(&format!("{}/admin/reload", self.url));
        if let Some(t) = token {
            request = request.header("Authorization", &format!("Bearer {t}"));
        }
        Ok(request.send_empty()?.status().as_u16())
    }
}

fn anomaly_docs(store_url: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let url = format!("{store_url}/{INDEX_PATTERN}/_search");
    let (status, reply) = dohguard_launcher::http::post_json(
        &url,
        &serde_json::json!({"size": 100, "query": {"match_all": {}}}),
    )?;
    if status == 404 {
        return Ok(Vec::new());
    }
    anyhow::ensure!(status == 200, "{url}: {status} {reply}");
    Ok(reply["hits"]["hits"]
        .as_array()
        .map(|h| h.iter().map(|d| d["_source"].clone()).collect())
        .unwrap_or_default())
}

#[test]
fn the_detector_reports_reads_alerts_stores_and_survives_failures() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zscore");
    let model_dir = dir.path().join("model");
    std::fs::create_dir_all(&model_dir)?;
    for f in ["model.card.json", "model.onnx"] {
        std::fs::copy(fixture.join(f), model_dir.join(f))?;
    }
    let card_path = model_dir.join("model.card.json");
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&card_path)?)?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;

    // Every feature at its median except LATE, which is not there yet.
    let served = Served::default();
    for (name, median) in card["features"]
        .as_array()
        .unwrap()
        .iter()
        .zip(card["medians"].as_array().unwrap())
    {
        if name != LATE {
            set(&served, name.as_str().unwrap(), median.as_f64());
        }
    }
    let target = feature_target(served.clone())?;
    let mut prometheus = Prometheus::start(
        dir.path(),
        &[Target::new("features", target.addr.port(), "/metrics")],
        &Timing::fast(),
        None,
        None,
    )?;
    // Elasticsearch is down at first: nothing listens on its port yet.
    let es_port = free_port()?;
    let es_url = format!("http://127.0.0.1:{es_port}");
    let mut detector = Detector::start(
        dir.path(),
        &[
            "--model",
            card_path.to_str().unwrap(),
            "--prometheus-url",
            &prometheus.url(),
            "--elasticsearch-url",
            &es_url,
        ],
        &[
            (
                "DOHGUARD_ANOMALY_ADMIN__TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
            ("DOHGUARD_ANOMALY_ELASTICSEARCH__RETRY_MAX_MS", "500"),
            ("DOHGUARD_ANOMALY_MODEL__WATCH_INTERVAL_MS", "200"),
        ],
    )?;
    let ok_evals = "dohguard_anomaly_evaluations_total{outcome=\"ok\"}";
    let missing = |f: &str| format!("dohguard_anomaly_feature_missing{{feature=\"{f}\"}}");

    // A feature Prometheus has no series for: a metric, one log line, scored anyway.
    wait_for(
        "evaluations with LATE missing",
        Duration::from_secs(60),
        || {
            let m = detector.metrics()?;
            let ok = sample(&m, ok_evals).unwrap_or(0.0) >= 4.0;
            let late = sample(&m, &missing(LATE)) == Some(1.0);
            let nx = sample(&m, &missing(NX)) == Some(0.0);
            Ok((ok && late && nx).then_some(()))
        },
    )?;
    assert_eq!(detector.value("dohguard_anomaly_prometheus_up")?, Some(1.0));
    assert_eq!(detector.value("dohguard_anomaly_alerting")?, Some(0.0));
    let quiet = detector
        .value("dohguard_anomaly_score")?
        .expect("a score after evaluations");
    assert!(quiet < 1.0, "medians are quiet: score {quiet}");
    let log = detector.log();
    assert_eq!(
        log.matches("feature missing from Prometheus").count(),
        1,
        "logged once, not per evaluation:\n{log}"
    );
    set(&served, LATE, Some(20.0));
    wait_for("LATE back", Duration::from_secs(30), || {
        Ok((detector.value(&missing(LATE))? == Some(0.0)).then_some(()))
    })?;
    assert!(detector.log().contains("feature back in Prometheus"));

    // An NXDOMAIN storm: the anomaly opens and names the feature; the store is down, so
    // the document waits and the failed attempts are counted.
    set(&served, NX, Some(0.6));
    wait_for("alerting", Duration::from_secs(30), || {
        Ok((detector.value("dohguard_anomaly_alerting")? == Some(1.0)).then_some(()))
    })?;
    let m = detector.metrics()?;
    let nx_share = sample(
        &m,
        &format!("dohguard_anomaly_contribution{{feature=\"{NX}\"}}"),
    )
    .expect("a contribution per feature");
    assert!(
        nx_share > 0.9,
        "the NXDOMAIN share explains the score: {nx_share}"
    );
    assert!(sample(&m, "dohguard_anomaly_score").unwrap() >= 4.0);
    assert_eq!(sample(&m, "dohguard_anomaly_anomalies_total"), Some(1.0));
    wait_for("failed document attempts", Duration::from_secs(30), || {
        let m = detector.metrics()?;
        let failed =
            sample(&m, "dohguard_anomaly_documents_total{outcome=\"failed\"}").unwrap_or(0.0);
        Ok(
            (failed >= 1.0 && sample(&m, "dohguard_anomaly_documents_pending") == Some(1.0))
                .then_some(()),
        )
    })?;

    // The store comes up: the waiting document is delivered.
    let store = Osmem::start(dir.path(), Some(es_port))?;
    let open = wait_for("the open anomaly stored", Duration::from_secs(30), || {
        Ok(anomaly_docs(&store.url())?.into_iter().next())
    })?;
    assert_eq!(open["dohguard"]["anomaly"]["state"], "open", "{open}");
    assert_eq!(
        open["dohguard"]["anomaly"]["features"][0]["name"], NX,
        "{open}"
    );
    assert_eq!(
        open["dohguard"]["anomaly"]["model_version"],
        "dohguard-anomaly-zscore-fixture-1"
    );

    // The storm ends: the anomaly resolves and its document is overwritten, same _id.
    set(&served, NX, Some(0.0));
    wait_for("resolved", Duration::from_secs(60), || {
        Ok((detector.value("dohguard_anomaly_alerting")? == Some(0.0)).then_some(()))
    })?;
    let resolved = wait_for(
        "the resolved anomaly stored",
        Duration::from_secs(30),
        || {
            let docs = anomaly_docs(&store.url())?;
            anyhow::ensure!(docs.len() == 1, "one document per anomaly: {docs:?}");
            Ok(docs
                .into_iter()
                .find(|d| d["dohguard"]["anomaly"]["state"] == "resolved"))
        },
    )?;
    assert_eq!(resolved["event"]["id"], open["event"]["id"]);
    assert!(resolved["event"]["end"].is_string(), "{resolved}");
    assert!(resolved["dohguard"]["anomaly"]["score"].as_f64().unwrap() >= 4.0);

    // A broken model file: the reload fails, the old model keeps serving and evaluating.
    let good_onnx = std::fs::read(model_dir.join("model.onnx"))?;
    std::fs::write(model_dir.join("model.onnx"), b"not an onnx file")?;
    wait_for("a failed reload", Duration::from_secs(30), || {
        Ok((detector
            .value("dohguard_anomaly_model_reloads_total{outcome=\"failed\"}")?
            .unwrap_or(0.0)
            >= 1.0)
            .then_some(()))
    })?;
    let before = detector.value(ok_evals)?.unwrap();
    wait_for("evaluations go on", Duration::from_secs(30), || {
        Ok((detector.value(ok_evals)?.unwrap() >= before + 3.0).then_some(()))
    })?;
    let info = "dohguard_anomaly_model_info{model_version=\"dohguard-anomaly-zscore-fixture-1\",kind=\"zscore-fixture\",placeholder=\"false\"}";
    assert_eq!(detector.value(info)?, Some(1.0), "{}", detector.metrics()?);

    // The reload endpoint wants the token.
    assert_eq!(detector.reload(None)?, 401);
    assert_eq!(detector.reload(Some("wrong-token-wrong-token-wrong"))?, 401);
    assert_eq!(
        detector.reload(Some(TOKEN))?,
        422,
        "the file is still broken"
    );

    // A good new model is taken.
    std::fs::write(model_dir.join("model.onnx"), &good_onnx)?;
    let mut new_card = card.clone();
    new_card["version"] = "zscore-fixture-2".into();
    std::fs::write(&card_path, serde_json::to_string_pretty(&new_card)?)?;
    wait_for("the new model serving", Duration::from_secs(30), || {
        Ok((detector.value("dohguard_anomaly_model_info{model_version=\"dohguard-anomaly-zscore-fixture-2\",kind=\"zscore-fixture\",placeholder=\"false\"}")? == Some(1.0)).then_some(()))
    })?;
    assert_eq!(detector.reload(Some(TOKEN))?, 200);

    // Prometheus goes away: a metric and one log line, and the detector keeps running.
    prometheus.process().stop();
    wait_for("prometheus_up 0", Duration::from_secs(30), || {
        let m = detector.metrics()?;
        let errors = sample(
            &m,
            "dohguard_anomaly_evaluations_total{outcome=\"prometheus_error\"}",
        )
        .unwrap_or(0.0);
        Ok(
            (sample(&m, "dohguard_anomaly_prometheus_up") == Some(0.0) && errors >= 4.0)
                .then_some(()),
        )
    })?;
    detector.process.check_running()?;
    let log = detector.log();
    assert_eq!(
        log.matches("cannot read the features").count(),
        1,
        "logged once:\n{log}"
    );
    drop(target);
    Ok(())
}
