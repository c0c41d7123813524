//! The console's speed figures: loads `CONSOLE_BENCH_DOCS` (default 500,000) verdict
//! documents, built through `dohguard-schema`, into a fresh osmem-server, then times the
//! 24-hour overview (from the minute cache, and aggregated from the documents as the
//! baseline), the 1-hour overview, and a filtered log page and the page after it (the same
//! functions the API handlers call), with a plain `_count` on the same store in the same run
//! as the floor. Prints p50/p95 in ms (one warm-up run each). `CONSOLE_BENCH_RUNS` (20)
//! timed runs per figure, `CONSOLE_BENCH_LIVE_RUNS` (3) for the slow aggregated ones;
//! `CONSOLE_BENCH_PROFILE=1` also times each store request alone (where the time goes).
//! Goal (issue 10): both at most 500 ms at p95 with 500,000 documents.

use std::{collections::BTreeMap, time::Instant};

use dohguard_console::{api, AppState, Config};
use dohguard_core::{contract::Verdict, name::split};
use dohguard_schema::{Answer, DecisionEvent, Layer, VerdictDocument};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

const INDEX: &str = "logs-dohguard.verdicts-default";
/// Timed runs per figure (`CONSOLE_BENCH_RUNS`, default 20), after 2 warm-up runs.
fn runs() -> usize {
    env_usize("CONSOLE_BENCH_RUNS", 20)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn time<F, Fut>(what: &str, runs: usize, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f().await;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
    println!("{what:<40} p50 {p50:>8.1} ms   p95 {p95:>8.1} ms");
    (p50, p95)
}

/// Documents per bulk request and bulk requests in flight while loading.
const BULK: u64 = 1000;
const IN_FLIGHT: usize = 4;

/// The `_bulk` body of documents `from..to`, each built through `dohguard-schema`.
fn bulk_body(from: u64, to: u64, now_ms: u64) -> anyhow::Result<String> {
    let mut body = String::new();
    for j in from..to {
        let e = event(j, now_ms);
        let ts = time::OffsetDateTime::from_unix_timestamp_nanos(e.ts_ms as i128 * 1_000_000)?
            .format(&time::format_description::well_known::Rfc3339)?;
        let doc = VerdictDocument::from_event(&e, ts, split(e.name.as_deref().unwrap_or_default()));
        body.push_str(&json!({"create": {"_index": INDEX, "_id": e.id}}).to_string());
        body.push('\n');
        body.push_str(&serde_json::to_string(&doc)?);
        body.push('\n');
    }
    Ok(body)
}

fn event(i: u64, now_ms: u64) -> DecisionEvent {
    // 2,000 domains, 500 clients, 85% allow / 10% monitor / 5% block, spread over 24 h.
    let domain = i % 2000;
    let (verdict, layer, score) = match i % 20 {
        0 => (Verdict::Block, Layer::Model, 0.97),
        1 | 2 => (Verdict::Monitor, Layer::Model, 0.6),
        _ => (Verdict::Allow, Layer::Model, 0.02),
    };
    DecisionEvent {
        id: format!("bench-{i}"),
        ts_ms: now_ms - (i * 7919) % 86_400_000,
        client: Some(format!(
            "10.{}.{}.{}",
            (i % 500) / 250,
            (i % 250),
            1 + i % 3
        )),
        principal: None,
        request_id: None,
        name: Some(format!("h{}.d{domain}.example.org", i % 17)),
        qtype: Some(
            match i % 3 {
                0 => "AAAA",
                _ => "A",
            }
            .into(),
        ),
        verdict: Some(verdict),
        layer,
        cached_layer: None,
        rule: None,
        cname_target: None,
        score: Some(score),
        model_version: Some("bench-model".into()),
        detector: None,
        cached: false,
        enforced: true,
        answer: match verdict {
            Verdict::Block => Answer::Blocked {
                mode: "nxdomain".into(),
                rcode: 3,
            },
            _ => Answer::Forwarded {
                rcode: Some(0),
                answers: Some(1),
                http_status: None,
            },
        },
        latency_us: 300 + i % 700,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let docs: u64 = std::env::var("CONSOLE_BENCH_DOCS")
        .ok()
        .map_or(Ok(500_000), |v| v.parse())?;
    let dir = tempfile::tempdir()?;
    let mut osmem = tokio::task::spawn_blocking({
        let path = dir.path().to_owned();
        move || dohguard_launcher::osmem::Osmem::start(&path, None)
    })
    .await??;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let template = dohguard_scorer::sink::template::template_body(INDEX, false);
    http.put(format!("{}/_index_template/dohguard-verdicts", osmem.url()))
        .json(&template)
        .send()
        .await?
        .error_for_status()?;

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let load = Instant::now();
    let bulk_url = format!("{}/_bulk", osmem.url());
    // Bulk requests of `BULK` documents, `IN_FLIGHT` at a time, no refresh until the end.
    futures::stream::iter((0..docs).step_by(BULK as usize))
        .map(|start| {
            let (http, bulk_url) = (http.clone(), bulk_url.clone());
            async move {
                let body = bulk_body(start, (start + BULK).min(docs), now_ms)?;
                let reply: serde_json::Value = http
                    .post(&bulk_url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                anyhow::ensure!(
                    reply["errors"] == false,
                    "bulk errors: {}",
                    reply.to_string().chars().take(500).collect::<String>()
                );
                anyhow::Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    http.post(format!("{}/{INDEX}/_refresh", osmem.url()))
        .send()
        .await?
        .error_for_status()?;
    let secs = load.elapsed().as_secs_f64();
    println!(
        "loaded {docs} documents in {secs:.1} s ({:.0} docs/s; bulk {BULK}, {IN_FLIGHT} in flight); osmem-server RSS {}",
        docs as f64 / secs,
        osmem.process().pid().map_or("unknown".into(), rss)
    );

    let mut config = Config {
        listen: "127.0.0.1:0".parse()?,
        scorer_url: String::new(),
        ..Config::default()
    };
    config.elasticsearch.url = osmem.url();
    config.admin.password_file = dir.path().join("pw");
    // Measure however long it takes rather than fail at the default 10 s.
    config.elasticsearch.request_timeout_ms = 600_000;
    let state = AppState::new(config.clone())?;
    state.prepare().await?;
    // The same console with the overview's minute cache off: every overview aggregates.
    config.overview_cache.enabled = false;
    let uncached = AppState::new(config)?;

    merge_cost();
    let count_url = format!("{}/{INDEX}/_count", osmem.url());
    let (_, floor) = time("store floor: _count", runs(), || async {
        http.get(&count_url)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    })
    .await;

    // Fill the minute cache as the console's tick does at start-up, then one steady tick.
    let cache = state
        .overview_cache
        .clone()
        .expect("the cache is on by default");
    let warm = Instant::now();
    let report = cache
        .refresh(&state.store, INDEX, time::OffsetDateTime::now_utc())
        .await?;
    println!(
        "overview cache fill: {} minutes in {:.1} s",
        report.filled_minutes,
        warm.elapsed().as_secs_f64()
    );
    time("overview cache: steady refresh tick", 5, || async {
        cache
            .refresh(&state.store, INDEX, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
    })
    .await;

    let overview: BTreeMap<String, String> = [("range".into(), "24h".into())].into();
    let (_, ov) = time("overview, 24 h (minute cache)", runs(), || async {
        let (_, o) = api::overview_data(&state, &overview).await.unwrap();
        assert!(o.total > 0);
    })
    .await;
    let live_runs = env_usize("CONSOLE_BENCH_LIVE_RUNS", 3);
    let (_, ov_live) = time(
        "overview, 24 h (aggregated, no cache)",
        live_runs,
        || async {
            let (_, o) = api::overview_data(&uncached, &overview).await.unwrap();
            assert!(o.total > 0);
        },
    )
    .await;
    let hour: BTreeMap<String, String> = [("range".into(), "1h".into())].into();
    time(
        "overview, 1 h (aggregated: sub-minute interval)",
        live_runs,
        || async {
            api::overview_data(&state, &hour).await.unwrap();
        },
    )
    .await;
    let filtered: BTreeMap<String, String> = [
        ("range".into(), "24h".into()),
        ("verdict".into(), "monitor,block".into()),
        ("client".into(), "10.0.0.0/16".into()),
    ]
    .into();
    let (_, lg) = time(
        "log page: verdict + CIDR filter, 50 rows",
        runs(),
        || async {
            let (_, page) = api::log_page(&state, &filtered).await.unwrap();
            assert_eq!(page.rows.len(), 50);
        },
    )
    .await;
    let (_, first) = api::log_page(&state, &filtered).await.unwrap();
    let mut deep = filtered.clone();
    deep.insert("after".into(), first.next.clone().unwrap());
    time("log page 2 (search_after)", runs(), || async {
        let (_, page) = api::log_page(&state, &deep).await.unwrap();
        assert_eq!(page.rows.len(), 50);
    })
    .await;
    if std::env::var_os("CONSOLE_BENCH_PROFILE").is_some() {
        profile(&http, &osmem.url(), &overview, &filtered).await;
    }
    println!(
        "p95 over the _count floor: overview {:.1}x (aggregated {:.1}x), log page {:.1}x",
        ov / floor,
        ov_live / floor,
        lg / floor
    );
    let verdict = |p95: f64| match (docs >= 500_000, p95 <= 500.0) {
        (false, _) => "not measured at 500k",
        (true, true) => "met",
        (true, false) => "missed",
    };
    println!(
        "goal: p95 <= 500 ms with 500,000 documents: overview {}, log page {}",
        verdict(ov),
        verdict(lg)
    );
    Ok(())
}

/// Where the time goes, straight to the store: the overview's query alone and each of its
/// aggregations alone; the log page's query with and without the hit total.
async fn profile(
    http: &reqwest::Client,
    url: &str,
    overview: &BTreeMap<String, String>,
    filtered: &BTreeMap<String, String>,
) {
    use dohguard_console::query_log::LogFilter;
    let now = time::OffsetDateTime::now_utc();
    let body = dohguard_console::overview::body(&LogFilter::parse(overview, &[]).unwrap(), now);
    let search_url = format!("{url}/{INDEX}/_search");
    let post = |b: serde_json::Value| {
        let (http, search_url) = (http.clone(), search_url.clone());
        async move {
            http.post(&search_url)
                .json(&b)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        }
    };
    let n = env_usize("CONSOLE_BENCH_LIVE_RUNS", 3);
    let mut no_aggs = body.clone();
    no_aggs.as_object_mut().unwrap().remove("aggs");
    time("  store: the overview's query, no aggregation", n, || {
        post(no_aggs.clone())
    })
    .await;
    for (name, agg) in body["aggs"].as_object().unwrap() {
        let mut one = body.clone();
        one["aggs"] = json!({ name.clone(): agg.clone() });
        time(&format!("  store: aggregation {name} alone"), n, || {
            post(one.clone())
        })
        .await;
    }
    let filter = LogFilter::parse(filtered, &[]).unwrap();
    let page = json!({"size": 50, "sort": dohguard_console::query_log::sort(), "query": filter.query(now)});
    let mut counted = page.clone();
    counted["track_total_hits"] = json!(true);
    time("  store: log page, hit total counted", n, || {
        post(counted.clone())
    })
    .await;
    let mut uncounted = page.clone();
    uncounted["track_total_hits"] = json!(false);
    time("  store: log page, no hit total", n, || {
        post(uncounted.clone())
    })
    .await;
    let count = json!({"size": 0, "track_total_hits": true, "query": filter.query(now)});
    time("  store: log page's count alone", n, || post(count.clone())).await;
    // osmem-server evaluates every clause of a `bool` over the whole index and intersects
    // the lists: each clause's own cost, alone.
    let query = filter.query(now);
    for clause in query["bool"]["filter"].as_array().unwrap() {
        let alone =
            json!({"size": 0, "track_total_hits": true, "query": {"bool": {"filter": [clause]}}});
        let label: String = clause.to_string().chars().take(60).collect();
        time(&format!("  store: clause alone {label}"), n, || {
            post(alone.clone())
        })
        .await;
    }
    // The same rows query over the newest 10 minutes only (what a narrow first window costs).
    let mut narrow = uncounted.clone();
    let from = now - time::Duration::minutes(10);
    narrow["query"]["bool"]["filter"][0] = json!({"range": {"@timestamp": {"gte": from.unix_timestamp() * 1000, "format": "epoch_millis"}}});
    time("  store: log page rows, newest 10 min only", n, || {
        post(narrow.clone())
    })
    .await;
}

/// The resident set size of process `pid`, as `/proc` gives it (Linux).
fn rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The console's own CPU cost of a cached 24 h overview at the cardinality of 500,000
/// documents a day (2,000 domains, 500 clients; ~350 queries a minute, so ~300 of each per
/// minute), without loading them: merging 24 merged hours plus 118 minutes, against merging
/// 1,440 single minutes.
fn merge_cost() {
    use dohguard_console::overview_cache::Minute;
    let minute = |seed: usize, domains: usize, clients: usize| {
        let mut m = Minute {
            total: 350,
            verdicts: [300, 35, 15],
            ..Minute::default()
        };
        for d in 0..domains {
            m.domains
                .insert(format!("d{}.example.org", (seed * 7 + d) % 2000), [1, 0, 0]);
        }
        for c in 0..clients {
            m.clients.insert(
                format!("10.0.{}.{}", (seed + c) % 500 / 250, (seed + c) % 250),
                [1, 0, 0],
            );
        }
        m
    };
    let minutes: Vec<Minute> = (0..1440).map(|i| minute(i, 300, 300)).collect();
    let hours: Vec<Minute> = (0..24).map(|i| minute(i, 2000, 500)).collect();
    for (what, parts) in [
        (
            "24 merged hours + 118 minutes",
            hours.iter().chain(&minutes[..118]).collect::<Vec<_>>(),
        ),
        ("1,440 single minutes", minutes.iter().collect()),
    ] {
        let mut ms = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let mut all = Minute::default();
            for m in &parts {
                all.merge(m);
            }
            assert!(all.domains.len() <= 2000);
            ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "console CPU: merge of {what} (500k/day cardinality) p50 {:>8.1} ms",
            ms[2]
        );
    }
}
