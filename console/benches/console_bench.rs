//! The console's speed figures: loads `CONSOLE_BENCH_DOCS` (default 500,000) verdict
//! documents, built through `dohguard-schema`, into a fresh osmem-server, then times the
//! 24-hour overview and a filtered log page (the same functions the API handlers call), with
//! a plain `_count` on the same store in the same run as the floor. Prints p50/p95 in ms.
//! Goal (issue 10): both at most 500 ms at p95 with 500,000 documents.

use std::{collections::BTreeMap, time::Instant};

use dohguard_console::{api, AppState, Config};
use dohguard_core::{contract::Verdict, name::split};
use dohguard_schema::{Answer, DecisionEvent, Layer, VerdictDocument};
use serde_json::json;

const INDEX: &str = "logs-dohguard.verdicts-default";
/// Timed runs per figure (`CONSOLE_BENCH_RUNS`, default 20), after 2 warm-up runs.
fn runs() -> usize {
    std::env::var("CONSOLE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn time<F, Fut>(what: &str, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..2 {
        f().await;
    }
    let mut ms = Vec::with_capacity(runs());
    for _ in 0..runs() {
        let start = Instant::now();
        f().await;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
    println!("{what:<40} p50 {p50:>8.1} ms   p95 {p95:>8.1} ms");
    (p50, p95)
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
    let osmem = tokio::task::spawn_blocking({
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
    let batch = 5000;
    let mut i = 0;
    while i < docs {
        let mut body = String::new();
        for j in i..(i + batch).min(docs) {
            let e = event(j, now_ms);
            let ts = time::OffsetDateTime::from_unix_timestamp_nanos(e.ts_ms as i128 * 1_000_000)?
                .format(&time::format_description::well_known::Rfc3339)?;
            let doc =
                VerdictDocument::from_event(&e, ts, split(e.name.as_deref().unwrap_or_default()));
            body.push_str(&json!({"create": {"_index": INDEX, "_id": e.id}}).to_string());
            body.push('\n');
            body.push_str(&serde_json::to_string(&doc)?);
            body.push('\n');
        }
        let r = http
            .post(format!("{}/_bulk", osmem.url()))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        let reply: serde_json::Value = r.json().await?;
        anyhow::ensure!(
            reply["errors"] == false,
            "bulk errors: {}",
            reply.to_string().chars().take(500).collect::<String>()
        );
        i += batch;
    }
    http.post(format!("{}/{INDEX}/_refresh", osmem.url()))
        .send()
        .await?;
    let secs = load.elapsed().as_secs_f64();
    println!(
        "loaded {docs} documents in {secs:.1} s ({:.0} docs/s)",
        docs as f64 / secs
    );

    let mut config = Config {
        listen: "127.0.0.1:0".parse()?,
        scorer_url: String::new(),
        ..Config::default()
    };
    config.elasticsearch.url = osmem.url();
    config.admin.password_file = dir.path().join("pw");
    // Measure however long it takes rather than fail at the default 10 s.
    config.elasticsearch.request_timeout_ms = 300_000;
    let state = AppState::new(config)?;
    state.prepare().await?;

    let count_url = format!("{}/{INDEX}/_count", osmem.url());
    let (_, floor) = time("store floor: _count", || async {
        http.get(&count_url)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    })
    .await;
    let overview: BTreeMap<String, String> = [("range".into(), "24h".into())].into();
    let (_, ov) = time("overview, 24 h", || async {
        let (_, o) = api::overview_data(&state, &overview).await.unwrap();
        assert!(o.total > 0);
    })
    .await;
    let filtered: BTreeMap<String, String> = [
        ("range".into(), "24h".into()),
        ("verdict".into(), "monitor,block".into()),
        ("client".into(), "10.0.0.0/16".into()),
    ]
    .into();
    let (_, lg) = time("log page: verdict + CIDR filter, 50 rows", || async {
        let (_, page) = api::log_page(&state, &filtered).await.unwrap();
        assert_eq!(page.rows.len(), 50);
    })
    .await;
    // Where the overview's time goes: each aggregation alone, same query, straight to the store.
    let body = dohguard_console::overview::body(
        &dohguard_console::query_log::LogFilter::parse(&overview, &[]).unwrap(),
        time::OffsetDateTime::now_utc(),
    );
    let search_url = format!("{}/{INDEX}/_search", osmem.url());
    let mut no_aggs = body.clone();
    no_aggs.as_object_mut().unwrap().remove("aggs");
    time("  store: the overview's query, no aggregation", || async {
        http.post(&search_url)
            .json(&no_aggs)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    })
    .await;
    for (name, agg) in body["aggs"].as_object().unwrap() {
        let mut one = body.clone();
        one["aggs"] = json!({ name.clone(): agg.clone() });
        time(&format!("  store: aggregation {name} alone"), || async {
            http.post(&search_url)
                .json(&one)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
        })
        .await;
    }
    println!(
        "p95 over the _count floor: overview {:.1}x, log page {:.1}x",
        ov / floor,
        lg / floor
    );
    println!(
        "goal: p95 <= 500 ms with 500,000 documents: overview {}, log page {}",
        if docs >= 500_000 {
            if ov <= 500.0 {
                "met"
            } else {
                "missed"
            }
        } else {
            "not measured at 500k"
        },
        if docs >= 500_000 {
            if lg <= 500.0 {
                "met"
            } else {
                "missed"
            }
        } else {
            "not measured at 500k"
        }
    );
    Ok(())
}
