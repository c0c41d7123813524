//! Inference against the real ONNX Runtime: the encoding and scores agree with the Python
//! side's fixtures, micro-batching coalesces concurrent requests without holding a lone one
//! back, the queue is bounded in names and by age and skips abandoned jobs, a CUDA request
//! runs on CUDA or falls back loudly, and reloads are validated.

mod common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::*;
use dohguard_core::name;
use dohguard_scorer::{
    config::Device,
    metrics::Metrics,
    model::{runtime, BatcherConfig, LoadError, Model, ModelCard, ModelError},
};
use serde_json::Value;

fn start_model(card: &Path, device: Device, batching: BatcherConfig, metrics: Metrics) -> Model {
    require_env("ORT_DYLIB_PATH");
    Model::start(card, device, 1, 1, batching, metrics).expect("model loads")
}

fn batching() -> BatcherConfig {
    BatcherConfig {
        max_batch: 64,
        max_wait: Duration::from_micros(200),
        queue_capacity: 1024,
        max_age: Duration::from_secs(60),
    }
}

/// Folders that may hold a model: each shipped model under `models/`, and the scorer's test
/// model.
fn model_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_root().join("models"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    out.push(test_model_card().parent().unwrap().to_owned());
    out
}

/// Every model card in the repository, with its sha256.
fn cards() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for dir in model_dirs() {
        let card = dir.join("model.card.json");
        if card.is_file() {
            let c = ModelCard::load(&card).unwrap_or_else(|e| panic!("{}: {e}", card.display()));
            out.push((card, c.sha256));
        }
    }
    out
}

/// The shipped model's encoding fixture (shared with the Python side's tests).
fn shipped_fixture() -> PathBuf {
    repo_root().join("models/fixtures/encoding.json")
}

/// The test model's fixture, written by its `make_test_model.py`.
fn test_model_fixture() -> PathBuf {
    test_model_card().with_file_name("fixture.json")
}

/// Fixture files: both named above (they must exist) and any `fixture.json` beside a model.
fn fixtures() -> Vec<PathBuf> {
    let mut out = vec![shipped_fixture(), test_model_fixture()];
    for f in &out {
        assert!(f.is_file(), "fixture {} is missing", f.display());
    }
    let others: Vec<PathBuf> = model_dirs()
        .into_iter()
        .map(|d| d.join("fixture.json"))
        .filter(|p| p.is_file() && !out.contains(p))
        .collect();
    out.extend(others);
    out
}

/// Checks one fixture against the card it was made for: text (when the fixture has names),
/// ids and scores through the real runtime.
async fn check_fixture(fixture_path: &Path) {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_path).unwrap()).unwrap();
    let sha = fixture["model"]["sha256"].as_str().unwrap();
    let (card, _) = cards()
        .into_iter()
        .find(|(_, s)| s == sha)
        .unwrap_or_else(|| {
            panic!(
                "{}: no model card in the repository has sha256 {sha} (stale fixture?)",
                fixture_path.display()
            )
        });
    let tolerance = fixture["score_tolerance"].as_f64().unwrap();
    let model = start_model(&card, Device::Cpu, batching(), Metrics::new());
    let info = model.info();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut texts = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        if let Some(raw) = case["name"].as_str() {
            // The fixture also holds names the scorer refuses (a label over 63 octets gets a
            // 422 before any encoding); their text is still checked, computed the Python way.
            let n = name::normalize(raw)
                .unwrap_or_else(|_| raw.trim_end_matches('.').to_ascii_lowercase());
            let rd = name::registered_domain(&n);
            assert_eq!(
                info.encoder.text_of(&n, rd),
                text,
                "{}: model text of {raw}",
                fixture_path.display()
            );
        }
        let ids: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(
            info.encoder.encode(text),
            ids,
            "{}: ids of {text:?}",
            fixture_path.display()
        );
        texts.push(text.to_owned());
    }
    let scored = model.score(texts.clone()).await.unwrap();
    for ((case, text), got) in cases.iter().zip(&texts).zip(&scored.scores) {
        let want = case["score"].as_f64().unwrap();
        assert!(
            (f64::from(*got) - want).abs() <= tolerance,
            "{}: score of {text:?} is {got}, Python says {want}",
            fixture_path.display()
        );
    }
}

#[tokio::test]
async fn default_model_matches_its_fixture() {
    let default_sha = ModelCard::load(&default_card()).unwrap().sha256;
    let fixture = fixtures()
        .into_iter()
        .find(|f| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            v["model"]["sha256"] == default_sha.as_str()
        })
        .unwrap_or_else(|| {
            panic!(
                "no fixture is made for the default model {}",
                default_card().display()
            )
        });
    check_fixture(&fixture).await;
}

/// The shipped model's encoding fixture and the test model's fixture at least (`fixtures`
/// fails when either is missing).
#[tokio::test]
async fn every_fixture_in_the_repository_matches_its_model() {
    for f in fixtures() {
        check_fixture(&f).await;
    }
}

#[tokio::test]
async fn dga_looking_names_score_above_dictionary_names() {
    let model = start_model(&default_card(), Device::Cpu, batching(), Metrics::new());
    let benign = ["google.com", "wikipedia.org", "facebook.com"];
    let dga = ["xjw3kq9z.com", "kq3jx9zv8w2m.ru", "qz7x0vkj4w.net"];
    let texts: Vec<String> = benign.iter().chain(&dga).map(|s| s.to_string()).collect();
    let s = model.score(texts).await.unwrap().scores;
    let max_benign = s[..3].iter().cloned().fold(f32::MIN, f32::max);
    let min_dga = s[3..].iter().cloned().fold(f32::MAX, f32::min);
    assert!(min_dga > max_benign, "scores {s:?}");
    assert!(s.iter().all(|x| (0.0..=1.0).contains(x)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_coalesced_into_batches() {
    let metrics = Metrics::new();
    let model = start_model(&default_card(), Device::Cpu, batching(), metrics.clone());
    let requests = 200;
    let calls = (0..requests).map(|i| {
        let m = model.clone();
        async move {
            m.score(vec![format!("n{i}x.example")])
                .await
                .unwrap()
                .scores[0]
        }
    });
    let scores = futures::future::join_all(calls).await;
    assert_eq!(scores.len(), requests);
    let text = metrics.encode();
    let count: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("dohguard_scorer_inference_batch_size_count "))
        .unwrap()
        .parse()
        .unwrap();
    let sum: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("dohguard_scorer_inference_batch_size_sum "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sum, requests as f64, "every name scored exactly once");
    assert!(
        count < requests as f64 / 2.0,
        "{requests} requests ran in {count} model calls: not coalesced"
    );
    // Same name, same score, whatever batch it landed in.
    let single = model
        .score(vec!["n7x.example".into()])
        .await
        .unwrap()
        .scores[0];
    assert_eq!(single, scores[7]);
}

#[tokio::test]
async fn a_lone_request_is_not_held_for_max_wait() {
    let config = BatcherConfig {
        max_batch: 64,
        max_wait: Duration::from_secs(5),
        queue_capacity: 16,
        max_age: Duration::from_secs(60),
    };
    let model = start_model(&default_card(), Device::Cpu, config, Metrics::new());
    for _ in 0..3 {
        let started = Instant::now();
        model.score(vec!["example.com".into()]).await.unwrap();
        // Behaviour, not speed: waiting for max_wait would take 5 s.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "lone request waited {:?}",
            started.elapsed()
        );
    }
}

/// `(count, sum)` of the batch-size histogram: model calls, and names computed.
fn batches(metrics: &Metrics) -> (f64, f64) {
    let text = metrics.encode();
    let read = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("metrics lack {prefix:?}"))
            .parse()
            .unwrap()
    };
    (
        read("dohguard_scorer_inference_batch_size_count "),
        read("dohguard_scorer_inference_batch_size_sum "),
    )
}

/// The value of the counter line `name` in the metrics text (present or the test fails).
fn counter(metrics: &Metrics, name: &str) -> f64 {
    let text = metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("metrics lack {name:?}:\n{text}"))
        .parse()
        .unwrap()
}

/// Names enough to keep the inference thread busy for a good fraction of a second.
const BUSY_NAMES: usize = 30_000;

fn busy_texts() -> Vec<String> {
    (0..BUSY_NAMES)
        .map(|i| format!("busy{i}q{i}.example"))
        .collect()
}

/// Starts a model with `config`, hands its thread a large job, and returns once the thread is
/// computing it (its first chunk is done): jobs queued now wait behind it.
async fn model_busy_with_a_large_job(
    config: BatcherConfig,
) -> (
    Model,
    Metrics,
    tokio::task::JoinHandle<Result<dohguard_scorer::model::Scored, ModelError>>,
) {
    let metrics = Metrics::new();
    let model = start_model(&default_card(), Device::Cpu, config, metrics.clone());
    let m = model.clone();
    let busy = tokio::spawn(async move { m.score(busy_texts()).await });
    let watched = metrics.clone();
    eventually(
        "the inference thread starts the large job",
        Duration::from_secs(30),
        || {
            let started = batches(&watched).0 > 0.0;
            async move { started }
        },
    )
    .await;
    (model, metrics, busy)
}

fn overload_config(queue_capacity: usize, max_age: Duration) -> BatcherConfig {
    BatcherConfig {
        max_batch: 256,
        max_wait: Duration::ZERO,
        queue_capacity,
        max_age,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_in_names() {
    let (model, metrics, busy) =
        model_busy_with_a_large_job(overload_config(100, Duration::from_secs(60))).await;
    // 60 names fit in the empty queue; 60 more would make 120 > 100 names: refused at once,
    // while the large job still runs (not after waiting for it).
    let m = model.clone();
    let first = tokio::spawn(async move {
        m.score((0..60).map(|i| format!("fit{i}.example")).collect())
            .await
    });
    let watched = model.clone();
    eventually("60 names queued", Duration::from_secs(10), || {
        let n = watched.queued_names();
        async move { n == 60 }
    })
    .await;
    let refused = model
        .score((0..60).map(|i| format!("over{i}.example")).collect())
        .await;
    assert!(
        matches!(refused, Err(ModelError::Overloaded)),
        "{refused:?}"
    );
    assert!(
        !busy.is_finished(),
        "the refusal came only after the queue drained"
    );
    // Fewer names still fit.
    let m = model.clone();
    let small = tokio::spawn(async move { m.score(vec!["small.example".into(); 40]).await });
    assert_eq!(first.await.unwrap().unwrap().scores.len(), 60);
    assert_eq!(small.await.unwrap().unwrap().scores.len(), 40);
    busy.await.unwrap().unwrap();
    assert_eq!(
        counter(&metrics, "dohguard_scorer_inference_queue_rejected_total"),
        60.0
    );
    assert_eq!(
        batches(&metrics).1,
        (BUSY_NAMES + 100) as f64,
        "the refused names were never computed"
    );
    assert_eq!(model.queued_names(), 0);
    assert_eq!(metrics.queue_depth.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_caller_has_gone_is_never_computed() {
    let (model, metrics, busy) =
        model_busy_with_a_large_job(overload_config(100_000, Duration::from_secs(60))).await;
    let mut abandoned = Box::pin(model.score(vec!["gone1.example".into(), "gone2.example".into()]));
    // One poll queues the job; dropping the future is a caller giving up (a timeout).
    assert!(futures::poll!(&mut abandoned).is_pending());
    assert_eq!(model.queued_names(), 2);
    drop(abandoned);
    let kept = model.score(vec!["kept.example".into()]).await.unwrap();
    assert_eq!(kept.scores.len(), 1);
    busy.await.unwrap().unwrap();
    assert_eq!(
        batches(&metrics).1,
        (BUSY_NAMES + 1) as f64,
        "only the large job and the kept name were computed"
    );
    assert_eq!(
        counter(
            &metrics,
            "dohguard_scorer_inference_queue_dropped_total{reason=\"caller_gone\"}"
        ),
        2.0
    );
    assert_eq!(model.queued_names(), 0);
    assert_eq!(metrics.queue_depth.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_older_than_max_age_is_answered_expired_uncomputed() {
    let (model, metrics, busy) =
        model_busy_with_a_large_job(overload_config(100_000, Duration::from_millis(100))).await;
    let started = Instant::now();
    let late = model.score(vec!["late.example".into()]).await;
    assert!(matches!(late, Err(ModelError::Expired)), "{late:?}");
    assert!(
        started.elapsed() > Duration::from_millis(100),
        "answered after waiting its max_age behind the large job"
    );
    busy.await.unwrap().unwrap();
    assert_eq!(
        batches(&metrics).1,
        BUSY_NAMES as f64,
        "late.example was never computed"
    );
    assert_eq!(
        counter(
            &metrics,
            "dohguard_scorer_inference_queue_dropped_total{reason=\"too_old\"}"
        ),
        1.0
    );
    // A fresh job on the idle thread runs.
    model.score(vec!["fresh.example".into()]).await.unwrap();
}

/// On a CPU-only runtime (the PyPI `onnxruntime` these tests install) CUDA cannot be had:
/// the session must run on CPU and say so (gauge 1). On a runtime that offers CUDA (a GPU
/// build) the session runs on CUDA, or, when the GPU cannot be used, on CPU with the same
/// loud fallback. Either way the device reported and the fallback gauge agree, and inference
/// answers.
#[tokio::test]
async fn cuda_runs_where_offered_and_falls_back_loudly_elsewhere() {
    require_env("ORT_DYLIB_PATH");
    let offered = runtime::cuda_available().unwrap();
    let metrics = Metrics::new();
    let model = start_model(&default_card(), Device::Cuda, batching(), metrics.clone());
    let device = model.info().device.as_str();
    let fallback = metrics.cpu_fallback.get();
    eprintln!(
        "ONNX Runtime offers CUDA: {offered}; session device: {device}; fallback gauge: {fallback}"
    );
    if offered {
        assert!(
            matches!((device, fallback), ("cuda", 0) | ("cpu", 1)),
            "CUDA offered: device {device} with fallback gauge {fallback}"
        );
    } else {
        assert_eq!(device, "cpu", "a CPU-only runtime cannot run on CUDA");
        assert_eq!(fallback, 1, "the fallback to CPU is counted");
    }
    assert_eq!(
        model
            .score(vec!["example.com".into()])
            .await
            .unwrap()
            .scores
            .len(),
        1
    );
}

fn copy_model(to: &Path) -> PathBuf {
    let card = default_card();
    let c = ModelCard::load(&card).unwrap();
    std::fs::copy(&card, to.join("model.card.json")).unwrap();
    std::fs::copy(c.onnx_path(&card), to.join(&c.onnx_file)).unwrap();
    to.join("model.card.json")
}

fn rewrite_card(card: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(card).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(card, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[tokio::test]
async fn reload_is_validated_and_a_failure_keeps_the_old_model() {
    let dir = tempfile::tempdir().unwrap();
    let card = copy_model(dir.path());
    let model = start_model(&card, Device::Cpu, batching(), Metrics::new());
    let before = model.info().model_version.clone();
    let score_before = model
        .score(vec!["xjw3kq9z.com".into()])
        .await
        .unwrap()
        .scores[0];

    // Wrong checksum in the card.
    rewrite_card(&card, |v| v["sha256"] = Value::String("0".repeat(64)));
    let err = model.reload(None).await.unwrap_err();
    assert!(
        matches!(err, ModelError::Load(LoadError::Checksum { .. })),
        "{err}"
    );
    // A card that breaks the contract.
    rewrite_card(&card, |v| {
        v["input"]["dtype"] = Value::String("float32".into())
    });
    assert!(matches!(
        model.reload(None).await.unwrap_err(),
        ModelError::Load(LoadError::Card { .. })
    ));
    // Bytes that are not ONNX, with a matching checksum.
    let junk = b"definitely not an onnx model".to_vec();
    let onnx = dir
        .path()
        .join(ModelCard::load(&default_card()).unwrap().onnx_file);
    let good_bytes = std::fs::read(&onnx).unwrap();
    std::fs::write(&onnx, &junk).unwrap();
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(default_card()).unwrap()).unwrap();
    std::fs::write(&card, serde_json::to_string(&original).unwrap()).unwrap();
    rewrite_card(&card, |v| {
        use sha2::Digest;
        v["sha256"] = Value::String(hex::encode(sha2::Sha256::digest(&junk)));
    });
    assert!(matches!(
        model.reload(None).await.unwrap_err(),
        ModelError::Load(LoadError::Runtime(_))
    ));

    // Every failure left the old model serving.
    assert_eq!(model.info().model_version, before);
    assert_eq!(
        model
            .score(vec!["xjw3kq9z.com".into()])
            .await
            .unwrap()
            .scores[0],
        score_before
    );

    // A good model with a new version is swapped in.
    std::fs::write(&onnx, &good_bytes).unwrap();
    std::fs::write(&card, serde_json::to_string(&original).unwrap()).unwrap();
    rewrite_card(&card, |v| v["version"] = Value::String("reloaded".into()));
    let info = model.reload(None).await.unwrap();
    assert!(info.model_version.ends_with("-reloaded"));
    let scored = model.score(vec!["xjw3kq9z.com".into()]).await.unwrap();
    assert_eq!(scored.model.model_version, info.model_version);
    assert_eq!(scored.scores[0], score_before);
}

#[tokio::test]
async fn the_watcher_reloads_when_the_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let card = copy_model(dir.path());
    // Date the copied files in the past, so the rewrite below gets a different mtime however
    // coarse the file system's clock is.
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(past))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let model = start_model(&card, Device::Cpu, batching(), Metrics::new());
    // `watch` reads the current stamps when called, so a change made after it is seen.
    let watcher = tokio::spawn(dohguard_scorer::model::watch::watch(
        model.clone(),
        Duration::from_millis(50),
    ));
    rewrite_card(&card, |v| v["version"] = Value::String("watched".into()));
    let m = model.clone();
    eventually(
        "the watcher reloads the changed card",
        Duration::from_secs(10),
        || {
            let v = m.info().model_version.clone();
            async move { v.ends_with("-watched") }
        },
    )
    .await;
    watcher.abort();
}
