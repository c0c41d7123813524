//! Scorer benchmarks; prints figures (markdown), asserts nothing. Run through
//! `cargo xtask scorer-bench`, which builds the release binary first.
//!
//! 1. Raw ONNX Runtime batched ceiling of the model (in-process, pre-encoded, no HTTP).
//! 2. The scorer's HTTP API (release binary, separate process, verdicts logged to a live
//!    osmem-server) at several concurrencies, single-name and batch requests: names/s, p50, p99.
//! 3. The Flask baseline (`scorer/bench/flask_baseline.py` under gunicorn) with the same load
//!    generator, one name per request.
//! 4. Sink documents/s into osmem-server against a plain bulk loader (same batch size and
//!    concurrency) hitting the same kind of server; both checked for completeness.
//! 5. The write-ahead journal's cost: filter events acknowledged per second (`submit_batch`,
//!    what `POST /v1/events` does before its 202) with the journal off, on (fsync `interval`,
//!    the default) and on (fsync `always`), and the end-to-end rate into osmem-server.
//!
//! Everything shares the machine's cores with the load generator; the ratios compare figures
//! measured in the same run.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context, Result};
use dohguard_core::contract::{Reason, Scope, Verdict};
use dohguard_scorer::{
    config::{Device, ElasticsearchConfig, FsyncPolicy, SpoolConfig, DEFAULT_INDEX},
    metrics::Metrics,
    model::{runtime, Encoder, ModelCard},
    sink::{Sink, VerdictEvent},
};
use serde_json::{json, Value};

struct Opts {
    scorer_bin: PathBuf,
    card: PathBuf,
    seconds: f64,
    sink_docs: usize,
    python: PathBuf,
    osmem: PathBuf,
    /// `all`, `http` (sections 1-3), `sink` (section 4) or `journal` (section 5).
    only: String,
    /// Sink rounds; sink and loader alternate, best of each is compared.
    rounds: usize,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn env_path(var: &str) -> Result<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .with_context(|| format!("{var} is not set: source scripts/env.sh"))
}

/// Deterministic, distinct names: half dictionary-like, half random-looking.
fn names(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "cloud", "shop", "mail", "news", "data", "tech", "home", "blue", "green", "city", "north",
        "media", "travel", "bank", "secure", "photo", "music", "game", "sport", "food",
    ];
    const TLDS: &[&str] = &["com", "net", "org", "info", "co.uk", "de", "ru", "io"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let tld = TLDS[(next() % TLDS.len() as u64) as usize];
            if i % 2 == 0 {
                let a = WORDS[(next() % 20) as usize];
                let b = WORDS[(next() % 20) as usize];
                format!("www.{a}{b}{i}.{tld}")
            } else {
                let len = 8 + (next() % 12) as usize;
                let label: String = (0..len)
                    .map(|_| {
                        b"abcdefghijklmnopqrstuvwxyz0123456789"[(next() % 36) as usize] as char
                    })
                    .collect();
                format!("{label}{i}.{tld}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Processes

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_osmem(bin: &Path) -> Result<(Proc, String)> {
    let mut child = Command::new(bin)
        .args(["-addr", "127.0.0.1:0", "-no-stdin-watch", "-no-ja"])
        .args(["-parent-pid", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting osmem-server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let url = serde_json::from_str::<Value>(&line)?["url"]
        .as_str()
        .context("osmem url")?
        .to_owned();
    Ok((Proc(child), url))
}

fn free_port() -> u16 {
    dohguard_launcher::ports::free_port().expect("a free loopback port")
}

async fn wait_http(url: &str) -> Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not come up")
}

// ---------------------------------------------------------------------------------------
// Load generator

struct LoadResult {
    names_per_s: f64,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// `concurrency` tasks, each sending requests back to back for `seconds`; every request
/// carries `per_request` names (1 = the single-name form).
async fn load(
    url: &str,
    names: Arc<Vec<String>>,
    concurrency: usize,
    per_request: usize,
    seconds: f64,
) -> LoadResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let client = client.clone();
            let names = names.clone();
            let url = url.to_owned();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                let mut i = t * 7919;
                while Instant::now() < deadline {
                    let body = if per_request == 1 {
                        i += 1;
                        json!({"name": names[i % names.len()], "qtype": "A", "client": "192.0.2.1"})
                    } else {
                        let batch: Vec<Value> = (0..per_request)
                            .map(|_| {
                                i += 1;
                                json!({"name": names[i % names.len()], "qtype": "A"})
                            })
                            .collect();
                        json!({ "names": batch })
                    };
                    let t0 = Instant::now();
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(t0.elapsed().as_micros() as u32);
                        }
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    LoadResult {
        names_per_s: (lat.len() * per_request) as f64 / elapsed,
        requests_per_s: lat.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

// ---------------------------------------------------------------------------------------
// 1. Ceiling

fn ceiling(card_path: &Path, names: &[String], batch: usize, seconds: f64) -> Result<f64> {
    let card = ModelCard::load(card_path)?;
    let mut session = runtime::load_session(&card, card_path, Device::Cpu, 1)?;
    let enc = Encoder::new(&card.input);
    let batches: Vec<Vec<i64>> = names
        .chunks(batch)
        .filter(|c| c.len() == batch)
        .take(64)
        .map(|c| {
            let mut ids = Vec::new();
            for n in c {
                let nn = dohguard_core::name::normalize(n).unwrap();
                enc.encode_into(
                    enc.text_of(&nn, dohguard_core::name::registered_domain(&nn)),
                    &mut ids,
                );
            }
            ids
        })
        .collect();
    for b in batches.iter().take(3) {
        session.run(b)?;
    }
    let started = Instant::now();
    let mut done = 0usize;
    let mut i = 0;
    while started.elapsed().as_secs_f64() < seconds {
        session.run(&batches[i % batches.len()])?;
        done += batch;
        i += 1;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// 4. Sink vs plain bulk loader

fn event(i: usize) -> VerdictEvent {
    VerdictEvent {
        timestamp: SystemTime::now(),
        name: format!("n{i}.sink-bench.example"),
        qtype: "A".into(),
        client: Some("192.0.2.55".parse().unwrap()),
        registered_domain: Some("sink-bench.example".into()),
        subdomain: Some(format!("n{i}")),
        top_level_domain: Some("example".into()),
        score: 0.42,
        verdict: Verdict::Allow,
        reason: Reason::Model,
        scope: Scope::RegisteredDomain,
        model_version: "bench".into(),
        detector: None,
        latency_us: 100,
    }
}

async fn count(url: &str) -> u64 {
    let c = reqwest::Client::new();
    let _ = c
        .post(format!("{url}/{DEFAULT_INDEX}/_refresh"))
        .send()
        .await;
    match c.get(format!("{url}/{DEFAULT_INDEX}/_count")).send().await {
        Ok(r) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["count"].as_u64())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn sink_rate(osmem: &Path, n: usize, es: &ElasticsearchConfig) -> Result<(f64, u64, u64)> {
    let (_server, url) = start_osmem(osmem)?;
    let spool = tempfile::tempdir()?;
    let mut cfg = es.clone();
    cfg.url = Some(url.clone());
    cfg.queue_capacity = n + 1; // measure the bulk path, not the overflow spool
    let spool_cfg = SpoolConfig {
        dir: spool.path().to_owned(),
        fsync: FsyncPolicy::Interval,
        fsync_interval_ms: 1000,
        segment_bytes: 8 << 20,
        replay_interval_ms: 1000,
        shutdown_timeout_ms: 3_600_000, // measure delivery, not the shutdown bound
        ..SpoolConfig::default()
    };
    let metrics = Metrics::new();
    let (sink, tasks) = Sink::start(&cfg, &spool_cfg, metrics.clone()).await?;
    let events: Vec<VerdictEvent> = (0..n).map(event).collect();
    let started = Instant::now();
    for e in events {
        sink.submit(e);
    }
    drop(sink);
    tasks.shutdown().await; // returns once every queued document is delivered
    let elapsed = started.elapsed().as_secs_f64();
    let stored = count(&url).await;
    Ok((
        n as f64 / elapsed,
        stored,
        metrics.sink.dropped.get() + metrics.sink.spooled.get(),
    ))
}

async fn loader_rate(osmem: &Path, n: usize, es: &ElasticsearchConfig) -> Result<(f64, u64)> {
    let (_server, url) = start_osmem(osmem)?;
    let client = reqwest::Client::new();
    let template = dohguard_scorer::sink::template::template_body(DEFAULT_INDEX, false);
    client
        .put(format!("{url}/_index_template/{}", es.template_name))
        .json(&template)
        .send()
        .await?
        .error_for_status()?;
    // Bodies prepared up front: the loader does nothing but send them.
    let bodies: Vec<Vec<u8>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(es.bulk_max_docs)
        .map(|c| {
            let mut body = Vec::new();
            for &i in c {
                event(i).to_doc(DEFAULT_INDEX).write_bulk_lines(&mut body);
            }
            body
        })
        .collect();
    let bodies = Arc::new(tokio::sync::Mutex::new(bodies.into_iter()));
    let started = Instant::now();
    let workers: Vec<_> = (0..es.max_in_flight)
        .map(|_| {
            let bodies = bodies.clone();
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                loop {
                    let Some(body) = bodies.lock().await.next() else {
                        break;
                    };
                    let r = client
                        .post(format!("{url}/_bulk"))
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .expect("bulk");
                    let _ = r.bytes().await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((n as f64 / elapsed, count(&url).await))
}

// ---------------------------------------------------------------------------------------

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let opts = Opts {
        scorer_bin: arg(&args, "--scorer-bin")
            .map(PathBuf::from)
            // Built by `cargo bench` itself, with the bench (release) profile.
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dohguard-scorer"))),
        card: arg(&args, "--model")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(dohguard_scorer::config::DEFAULT_MODEL_CARD)),
        seconds: arg(&args, "--seconds")
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(4.0),
        sink_docs: arg(&args, "--sink-docs")
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(20_000),
        python: env_path("DOHGUARD_PYTHON")?,
        osmem: env_path("OSMEM_BIN")?,
        only: arg(&args, "--only").unwrap_or_else(|| "all".into()),
        rounds: arg(&args, "--rounds")
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(3),
    };
    if !["all", "http", "sink", "journal"].contains(&opts.only.as_str()) {
        bail!("--only must be all, http, sink or journal");
    }
    env_path("ORT_DYLIB_PATH")?;
    let card = ModelCard::load(&opts.card)?;
    let root = root.as_path();
    let all = Arc::new(names(200_000));
    println!("# scorer benchmark\n");
    println!("- machine: {}", machine());
    println!(
        "- model: {} ({}), card {}",
        card.model_version(),
        if card.placeholder {
            "placeholder"
        } else {
            "trained"
        },
        opts.card.display()
    );
    println!("- {} s per HTTP measurement; {} distinct names; verdict cache off so every name reaches the model\n", opts.seconds, all.len());

    if opts.only == "all" || opts.only == "http" {
        http_sections(&opts, &all, root).await?;
    }
    if opts.only == "all" || opts.only == "sink" {
        sink_section(&opts).await?;
    }
    if opts.only == "all" || opts.only == "journal" {
        journal_section(&opts).await?;
    }
    println!("GPU inference not measured: no device lent to this task.");
    Ok(())
}

async fn http_sections(opts: &Opts, all: &Arc<Vec<String>>, root: &Path) -> Result<()> {
    // 1. Ceiling.
    println!("## 1. Raw ONNX Runtime ceiling (in-process, pre-encoded, 1 intra-op thread)\n");
    println!("| batch | names/s |\n|---:|---:|");
    let mut best_ceiling = 0f64;
    for batch in [1, 16, 64, 256] {
        let r = ceiling(&opts.card, all, batch, opts.seconds.min(3.0))?;
        best_ceiling = best_ceiling.max(r);
        println!("| {batch} | {r:.0} |");
    }
    println!("\nceiling (best batch): {best_ceiling:.0} names/s\n");

    // 2. The scorer over HTTP, logging to osmem.
    let (_osmem, es_url) = start_osmem(&opts.osmem)?;
    let spool = tempfile::tempdir()?;
    let port = free_port();
    let scorer = Proc(
        Command::new(&opts.scorer_bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--model")
            .arg(&opts.card)
            .args(["--elasticsearch-url", &es_url])
            .arg("--spool-dir")
            .arg(spool.path())
            .env("DOHGUARD_SCORER_VERDICTS__MAX_ENTRIES", "0")
            .env("DOHGUARD_SCORER_MODEL__WATCH", "false")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", opts.scorer_bin.display()))?,
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/healthz")).await?;
    let score_url = format!("{base}/v1/score");
    println!("## 2. dohguard-scorer over HTTP/1.1 (release, verdicts to osmem-server)\n");
    println!("| request | concurrency | names/s | requests/s | p50 ms | p99 ms | errors | vs ceiling |\n|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut scorer_single = Vec::new();
    let mut best_http = 0f64;
    for (per, conc) in [
        (1, 1),
        (1, 8),
        (1, 32),
        (1, 128),
        (64, 4),
        (64, 16),
        (256, 8),
    ] {
        let r = load(&score_url, all.clone(), conc, per, opts.seconds).await;
        best_http = best_http.max(r.names_per_s);
        println!(
            "| {} | {conc} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {:.2} |",
            if per == 1 {
                "single".to_owned()
            } else {
                format!("batch {per}")
            },
            r.names_per_s,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            r.names_per_s / best_ceiling
        );
        if per == 1 {
            scorer_single.push((conc, r));
        }
    }
    println!(
        "\nbest HTTP / ceiling: {:.2} (goal >= 0.8)\n",
        best_http / best_ceiling
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    let sink_line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("dohguard_scorer_sink_{name}_total ")))
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    println!(
        "sink during the HTTP runs: queued {}, sent {}, spooled {}, dropped {}\n",
        sink_line("queued"),
        sink_line("sent"),
        sink_line("spooled"),
        sink_line("dropped")
    );
    drop(scorer);

    // 3. Flask baseline.
    let fport = free_port();
    let flask = Proc(
        Command::new(&opts.python)
            .args([
                "-m",
                "gunicorn",
                "-w",
                "2",
                "-b",
                &format!("127.0.0.1:{fport}"),
                "--chdir",
            ])
            .arg(root.join("scorer/bench"))
            .arg("flask_baseline:app")
            .env("DOHGUARD_MODEL_CARD", &opts.card)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting gunicorn")?,
    );
    wait_http(&format!("http://127.0.0.1:{fport}/healthz")).await?;
    println!("## 3. Flask baseline (gunicorn, 2 sync workers, one name per request)\n");
    println!("| concurrency | names/s | p50 ms | p99 ms | errors | scorer single names/s | ratio | scorer p99 ms |\n|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut best_flask = 0f64;
    let mut best_flask_p99 = 0f64;
    for conc in [1, 8, 32] {
        let r = load(
            &format!("http://127.0.0.1:{fport}/v1/score"),
            all.clone(),
            conc,
            1,
            opts.seconds,
        )
        .await;
        if r.names_per_s > best_flask {
            best_flask = r.names_per_s;
            best_flask_p99 = r.p99_ms;
        }
        let s = scorer_single
            .iter()
            .find(|(c, _)| *c == conc)
            .map(|(_, s)| s);
        println!(
            "| {conc} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.1}x | {:.2} |",
            r.names_per_s,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            s.map_or(0.0, |s| s.names_per_s),
            s.map_or(0.0, |s| s.names_per_s / r.names_per_s),
            s.map_or(0.0, |s| s.p99_ms)
        );
    }
    drop(flask);
    println!("\nbest scorer names/s / best Flask names/s: {:.1}x (goal >= 50x; Flask best p99 {:.2} ms)\n", best_http / best_flask, best_flask_p99);

    Ok(())
}

async fn sink_section(opts: &Opts) -> Result<()> {
    // 4. Sink: a fresh server per run, sink and loader alternating; best of each compared.
    let es = ElasticsearchConfig::default();
    let n = opts.sink_docs;
    println!(
        "## 4. Sink into osmem-server ({n} documents per run, bulk {} docs, {} in flight)\n",
        es.bulk_max_docs, es.max_in_flight
    );
    println!("| round | writer | docs/s | stored | spooled+dropped |\n|---:|---|---:|---:|---:|");
    let (mut best_sink, mut best_plain) = (0f64, 0f64);
    for round in 1..=opts.rounds {
        let (sink, stored, lost) = sink_rate(&opts.osmem, n, &es).await?;
        println!("| {round} | dohguard sink | {sink:.0} | {stored} | {lost} |");
        let (plain, plain_stored) = loader_rate(&opts.osmem, n, &es).await?;
        println!("| {round} | plain bulk loader | {plain:.0} | {plain_stored} | - |");
        best_sink = best_sink.max(sink);
        best_plain = best_plain.max(plain);
    }
    println!(
        "\nbest sink / best loader: {:.2} (goal >= 0.9)\n",
        best_sink / best_plain
    );
    Ok(())
}

/// One filter event batch of `n` events (ids `<tag>-<batch>-<i>`).
fn event_batch(tag: &str, batch: usize, n: usize) -> dohguard_schema::EventBatch {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("{tag}-{batch}-{i}"), "ts_ms": 1764633600000u64 + i as u64,
                   "client": "192.0.2.7", "request_id": format!("r{batch}-{i}"),
                   "name": format!("n{i}.b{batch}.journal-bench.example"), "qtype": "A",
                   "verdict": "allow", "layer": "cache", "cached": true, "enforced": true,
                   "answer": {"kind": "forwarded", "rcode": 0, "answers": 1}, "latency_us": 40})
        })
        .collect();
    serde_json::from_value(json!({"source": tag, "seq": batch, "dropped": 0, "events": events}))
        .expect("a valid event batch")
}

/// Acknowledged events/s (the `submit_batch` calls alone) and end-to-end events/s (until every
/// document is stored), with the given journal setting.
async fn journal_rate(
    osmem: &Path,
    batches: usize,
    per_batch: usize,
    journal: Option<FsyncPolicy>,
) -> Result<(f64, f64, u64)> {
    let (_server, url) = start_osmem(osmem)?;
    let spool = tempfile::tempdir_in(std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    ))?;
    let n = batches * per_batch;
    let es = ElasticsearchConfig {
        url: Some(url.clone()),
        queue_capacity: n + 1,
        ..ElasticsearchConfig::default()
    };
    let spool_cfg = SpoolConfig {
        dir: spool.path().to_owned(),
        fsync: journal.unwrap_or(FsyncPolicy::Interval),
        journal: journal.is_some(),
        shutdown_timeout_ms: 3_600_000,
        ..SpoolConfig::default()
    };
    let metrics = Metrics::new();
    let (sink, tasks) = Sink::start(&es, &spool_cfg, metrics.clone()).await?;
    let tag = format!("{:?}", journal)
        .to_lowercase()
        .replace(['(', ')'], "");
    let all: Vec<_> = (0..batches)
        .map(|b| event_batch(&tag, b, per_batch))
        .collect();
    let started = Instant::now();
    for b in &all {
        sink.submit_batch(b)?;
    }
    let acked = started.elapsed().as_secs_f64();
    drop(sink);
    tasks.shutdown().await;
    let total = started.elapsed().as_secs_f64();
    Ok((n as f64 / acked, n as f64 / total, count(&url).await))
}

async fn journal_section(opts: &Opts) -> Result<()> {
    let (batches, per_batch) = (opts.sink_docs.div_ceil(1000), 1000);
    let n = batches * per_batch;
    println!(
        "## 5. Journal cost ({n} filter events per run in batches of {per_batch}; spool on the target/ disk)\n"
    );
    println!("| round | journal | acknowledged events/s | vs off | end-to-end events/s | vs off | stored |\n|---:|---|---:|---:|---:|---:|---:|");
    for round in 1..=opts.rounds {
        let (off_ack, off_e2e, off_stored) =
            journal_rate(&opts.osmem, batches, per_batch, None).await?;
        println!("| {round} | off | {off_ack:.0} | 1.00 | {off_e2e:.0} | 1.00 | {off_stored} |");
        for policy in [FsyncPolicy::Interval, FsyncPolicy::Always] {
            let (ack, e2e, stored) =
                journal_rate(&opts.osmem, batches, per_batch, Some(policy)).await?;
            println!(
                "| {round} | on, fsync {policy:?} | {ack:.0} | {:.2} | {e2e:.0} | {:.2} | {stored} |",
                ack / off_ack,
                e2e / off_e2e
            );
        }
    }
    println!();
    Ok(())
}
