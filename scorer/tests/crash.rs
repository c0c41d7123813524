//! The `dohguard-scorer` process killed and stopped under load, against real `osmem-server`
//! processes: a SIGKILL loses no event acknowledged with 202 (the journal is replayed at the
//! next start, and `create` with the event id stores each once), and SIGTERM finishes within
//! `spool.shutdown_timeout_ms` even when Elasticsearch never answers, leaving what was not
//! delivered in the spool.

mod common;

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::*;
use dohguard_scorer::config::DEFAULT_INDEX;
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(90);

/// A scorer process, killed (by its PID) if a test fails while it runs.
struct Scorer(Child);

impl Drop for Scorer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the scorer binary; returns the process and its address.
fn spawn_scorer(es_url: &str, spool: &Path, env: &[(&str, &str)]) -> (Scorer, String) {
    require_env("ORT_DYLIB_PATH");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dohguard-scorer"))
        .current_dir(repo_root())
        .env("RUST_LOG", "dohguard_scorer=warn")
        .envs(env.iter().copied())
        .args(["--listen", "127.0.0.1:0", "--elasticsearch-url", es_url])
        .arg("--model")
        .arg(test_model_card())
        .arg("--spool-dir")
        .arg(spool)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let start: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("start line {line:?}: {e}"));
    (Scorer(child), start["listen"].as_str().unwrap().to_owned())
}

fn signal(child: &Scorer, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

async fn post(client: &reqwest::Client, addr: &str, batch: &Value) -> Result<u16, reqwest::Error> {
    Ok(client
        .post(format!("http://{addr}/v1/events"))
        .json(batch)
        .send()
        .await?
        .status()
        .as_u16())
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_event() {
    let osmem = Osmem::start();
    let spool = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_scorer(&osmem.url, spool.path(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let es = Es::new(&osmem.url);

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    let batches_acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let stored_at_kill = rt.block_on(async {
        let mut senders = Vec::new();
        for sender in 0..4u64 {
            let (acked, sent, n, stop, addr) = (
                acked.clone(),
                sent.clone(),
                batches_acked.clone(),
                stop.clone(),
                addr.clone(),
            );
            senders.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for seq in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let batch = event_batch(&format!("kill{sender}"), seq, 100);
                    let ids = batch_ids(&batch);
                    sent.lock().unwrap().extend(ids.iter().cloned());
                    match post(&client, &addr, &batch).await {
                        Ok(202) => {
                            acked.lock().unwrap().extend(ids);
                            n.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(s) => panic!("status {s} before the kill"),
                        Err(_) => break, // the process is gone
                    }
                }
            }));
        }
        let n = batches_acked.clone();
        eventually("60 batches acknowledged", SETTLE, || {
            let done = n.load(Ordering::SeqCst) >= 60;
            async move { done }
        })
        .await;
        child.0.kill().unwrap(); // SIGKILL
        stop.store(true, Ordering::SeqCst);
        for s in senders {
            s.await.unwrap();
        }
        es.count_if_exists(DEFAULT_INDEX).await.unwrap_or(0)
    });
    child.0.wait().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "SIGKILL with {} events acknowledged, {stored_at_kill} stored at that moment",
        acked.len()
    );

    // Restart on the same spool: the journal is replayed.
    let (mut child, _addr) = spawn_scorer(&osmem.url, spool.path(), &[]);
    rt.block_on(async {
        let es = &es;
        let want: HashSet<String> = acked.iter().cloned().collect();
        eventually("every acknowledged event stored", SETTLE, || {
            let want = &want;
            async move {
                let stored = id_counts(es, DEFAULT_INDEX).await;
                want.iter().all(|id| stored.contains_key(id))
            }
        })
        .await;
        let stored = id_counts(es, DEFAULT_INDEX).await;
        let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "stored twice: {twice:?}");
        let sent = sent.lock().unwrap();
        assert!(
            stored.keys().all(|id| sent.contains(id)),
            "only events that were sent are stored"
        );
    });
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());
}

/// An Elasticsearch stand-in that takes the template and never answers a bulk request.
async fn hanging_elasticsearch(bulk_calls: Arc<AtomicUsize>) -> String {
    use axum::{
        routing::{get, post, put},
        Json, Router,
    };
    let app = Router::new()
        .route(
            "/",
            get(|| async { Json(json!({"version": {"number": "8.15.0"}})) }),
        )
        .route(
            "/_index_template/{name}",
            put(|| async { Json(json!({"acknowledged": true})) }),
        )
        .route(
            "/_bulk",
            post(move || {
                bulk_calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<&'static str>()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[test]
fn sigterm_finishes_within_the_bound_and_spools_the_rest() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bulk_calls = Arc::new(AtomicUsize::new(0));
    let url = rt.block_on(hanging_elasticsearch(bulk_calls.clone()));
    let spool = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_scorer(
        &url,
        spool.path(),
        &[
            ("DOHGUARD_SCORER_SPOOL__SHUTDOWN_TIMEOUT_MS", "1500"),
            (
                "DOHGUARD_SCORER_ELASTICSEARCH__REQUEST_TIMEOUT_MS",
                "120000",
            ),
        ],
    );
    let batches: Vec<Value> = (0..5).map(|seq| event_batch("term", seq, 50)).collect();
    rt.block_on(async {
        let client = reqwest::Client::new();
        for b in &batches {
            assert_eq!(post(&client, &addr, b).await.unwrap(), 202);
        }
        let calls = bulk_calls.clone();
        eventually("a bulk request is hanging", SETTLE, || {
            let n = calls.load(Ordering::SeqCst);
            async move { n > 0 }
        })
        .await;
    });
    let started = Instant::now();
    signal(&child, "-TERM");
    let status = child.0.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_millis(1500 + 2500),
        "SIGTERM took {took:?} with a 1.5 s bound"
    );
    assert!(
        took >= Duration::from_millis(1300),
        "it gave delivery its time ({took:?})"
    );
    eprintln!("SIGTERM with a hanging Elasticsearch: exited after {took:?} (bound 1.5 s)");

    // What was not delivered is in the spool, and reaches Elasticsearch at the next start.
    let mut on_disk = HashSet::new();
    for path in dohguard_scorer::sink::spool::list_segments(spool.path()).unwrap() {
        let (docs, bad) =
            dohguard_scorer::sink::spool::parse_segment(&std::fs::read(&path).unwrap());
        assert_eq!(bad, 0);
        on_disk.extend(docs.into_iter().map(|(_, d)| d.id));
    }
    let ids: Vec<String> = batches.iter().flat_map(batch_ids).collect();
    assert!(
        ids.iter().all(|id| on_disk.contains(id)),
        "every event is in the spool"
    );

    let osmem = Osmem::start();
    let (mut child, _) = spawn_scorer(&osmem.url, spool.path(), &[]);
    rt.block_on(async {
        let es = Es::new(&osmem.url);
        let es = &es;
        eventually("the spooled events stored", SETTLE, || async move {
            es.count_if_exists(DEFAULT_INDEX).await == Some(250)
        })
        .await;
        assert_ids_exactly_once(es, DEFAULT_INDEX, &ids).await;
    });
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());
}
