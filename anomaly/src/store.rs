//! Anomaly documents in Elasticsearch, next to the verdicts: index
//! `logs-dohguard.anomalies-default` (contract 7). An anomaly is written when it opens
//! (`dohguard.anomaly.state: open`) and written again under the same `_id` when it closes
//! (`resolved`, with `event.end`), so a reader sees open anomalies and each anomaly is one
//! document. The index template (priority 200) keeps the write target a plain index on real
//! Elasticsearch, where `logs-*-*` would otherwise become a data stream (create-only).
//!
//! [`Store::submit`] never waits: documents go to a bounded queue that one writer task
//! delivers in order, retrying each with jittered exponential backoff until it is stored
//! (`documents{outcome="failed"}` counts the failed attempts). Past `max_documents` waiting,
//! the oldest is dropped and counted. The queue is in memory: a restart loses what waits.
//! The client set-up (TLS, API key or basic auth from files) is the scorer's.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use dohguard_scorer::sink::{bulk::backoff_delay, EsClient};
use elasticsearch::{
    http::headers::AUTHORIZATION, indices::IndicesPutIndexTemplateParts, IndexParts,
};
use serde::Serialize;
use tokio::sync::{Mutex, Notify};

use crate::config::Config;
use crate::metrics::Metrics;

/// One anomaly as stored (ECS names where ECS has them).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnomalyDocument {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub event: AnomalyEvent,
    pub dohguard: DohguardAnomaly,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnomalyEvent {
    pub id: String,
    pub kind: &'static str,
    pub category: [&'static str; 1],
    pub dataset: &'static str,
    pub start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Nanoseconds, once it has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DohguardAnomaly {
    pub anomaly: AnomalyFields,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnomalyFields {
    /// `open` or `resolved`.
    pub state: &'static str,
    /// Highest smoothed score while open.
    pub score: f32,
    pub threshold: f32,
    /// Top contributing features over the anomaly, largest first.
    pub features: Vec<FeatureShare>,
    pub model_version: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeatureShare {
    pub name: String,
    /// Mean contribution over the anomaly's evaluations.
    pub contribution: f32,
}

pub const DATASET: &str = "dohguard.anomalies";

/// The template body: explicit mappings for every field, `dynamic: strict`.
pub fn template_body(index: &str) -> serde_json::Value {
    let pattern = match index.rsplit_once('-') {
        Some((head, _)) if !head.is_empty() => format!("{head}-*"),
        _ => format!("{index}*"),
    };
    let keyword = serde_json::json!({"type": "keyword", "ignore_above": 1024});
    let date = serde_json::json!({"type": "date"});
    serde_json::json!({
        "index_patterns": [pattern],
        "priority": 200,
        "_meta": {"managed_by": "dohguard-anomaly", "description": "dohguard metric anomalies"},
        "template": {
            "settings": {"index": {"number_of_shards": 1}},
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "@timestamp": date,
                    "event": {"properties": {
                        "id": keyword, "kind": keyword, "category": keyword, "dataset": keyword,
                        "start": date, "end": date, "duration": {"type": "long"}
                    }},
                    "dohguard": {"properties": {"anomaly": {"properties": {
                        "state": keyword,
                        "score": {"type": "float"},
                        "threshold": {"type": "float"},
                        "model_version": keyword,
                        "features": {"properties": {
                            "name": keyword, "contribution": {"type": "float"}
                        }}
                    }}}}
                }
            }
        }
    })
}

struct Pending {
    id: String,
    body: serde_json::Value,
}

struct Shared {
    queue: Mutex<VecDeque<Pending>>,
    wake: Notify,
    max_documents: usize,
    metrics: Metrics,
}

/// Handle for writing anomaly documents; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Builds the client (errors name the key) and starts the writer; `None` without a URL.
    pub fn start(
        config: &Config,
        metrics: Metrics,
    ) -> Result<Option<(Store, tokio::task::JoinHandle<()>)>, String> {
        let Some(url) = config.elasticsearch.url.as_deref() else {
            return Ok(None);
        };
        let es_config = config.scorer_elasticsearch();
        let client = EsClient::new(url, &es_config).map_err(|e| {
            // The shared set-up words its errors for the scorer; this is the detector.
            e.to_string()
                .replacen("scorer: configuration", "anomaly: configuration", 1)
        })?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            max_documents: config.elasticsearch.max_documents,
            metrics,
        });
        let writer = tokio::spawn(write_loop(
            client,
            shared.clone(),
            config.elasticsearch.index.clone(),
            config.elasticsearch.template_name.clone(),
            Duration::from_millis(config.elasticsearch.retry_base_ms),
            Duration::from_millis(config.elasticsearch.retry_max_ms),
        ));
        Ok(Some((Store { shared }, writer)))
    }

    /// Queues `doc` (a later version of the same anomaly replaces a waiting one).
    pub async fn submit(&self, doc: &AnomalyDocument) {
        let body = serde_json::to_value(doc).expect("an anomaly document serialises");
        let id = doc.event.id.clone();
        let mut queue = self.shared.queue.lock().await;
        if let Some(waiting) = queue.iter_mut().find(|p| p.id == id) {
            waiting.body = body;
        } else {
            if queue.len() >= self.shared.max_documents {
                queue.pop_front();
                Metrics::outcome(&self.shared.metrics.documents, "dropped");
                tracing::error!("anomaly document queue full (elasticsearch.max_documents): the oldest was dropped");
            }
            queue.push_back(Pending { id, body });
        }
        self.shared
            .metrics
            .documents_pending
            .set(queue.len() as i64);
        drop(queue);
        self.shared.wake.notify_one();
    }
}

async fn write_loop(
    client: EsClient,
    shared: Arc<Shared>,
    index: String,
    template_name: String,
    base: Duration,
    max: Duration,
) {
    let mut template_installed = false;
    let mut failures: u32 = 0;
    loop {
        let next = {
            let queue = shared.queue.lock().await;
            queue.front().map(|p| (p.id.clone(), p.body.clone()))
        };
        let Some((id, body)) = next else {
            shared.wake.notified().await;
            continue;
        };
        if !template_installed {
            template_installed = install_template(&client, &index, &template_name).await;
        }
        match put(&client, &index, &id, body.clone()).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "Elasticsearch takes anomaly documents again");
                }
                failures = 0;
                Metrics::outcome(&shared.metrics.documents, "stored");
                let mut queue = shared.queue.lock().await;
                // Remove it unless a newer version replaced it meanwhile.
                if queue.front().is_some_and(|p| p.id == id && p.body == body) {
                    queue.pop_front();
                }
                shared.metrics.documents_pending.set(queue.len() as i64);
            }
            Err((Some(status), e)) if is_permanent(status) => {
                Metrics::outcome(&shared.metrics.documents, "rejected");
                tracing::error!(status, error = %e, id, "Elasticsearch refused an anomaly document; it is dropped");
                let mut queue = shared.queue.lock().await;
                if queue.front().is_some_and(|p| p.id == id && p.body == body) {
                    queue.pop_front();
                }
                shared.metrics.documents_pending.set(queue.len() as i64);
            }
            Err((_, e)) => {
                failures = failures.saturating_add(1);
                Metrics::outcome(&shared.metrics.documents, "failed");
                if failures == 1 {
                    tracing::warn!(error = %e, "writing an anomaly document failed; retrying with backoff");
                }
                tokio::time::sleep(backoff_delay(base, max, failures, fastrand::f64())).await;
            }
        }
    }
}

async fn install_template(client: &EsClient, index: &str, name: &str) -> bool {
    let indices = client.client().indices();
    let mut request = indices.put_index_template(IndicesPutIndexTemplateParts::Name(name));
    if let Some(credential) = client.credential() {
        request = request.header(AUTHORIZATION, credential.header());
    }
    match request.body(template_body(index)).send().await {
        Ok(r) if r.status_code().is_success() => true,
        Ok(r) => {
            tracing::warn!(
                status = r.status_code().as_u16(),
                "the anomalies index template was refused; writing anyway"
            );
            // A refusal (a least-privilege key) is not retried per document.
            r.status_code().as_u16() < 500 && r.status_code().as_u16() != 429
        }
        Err(_) => false,
    }
}

async fn put(
    client: &EsClient,
    index: &str,
    id: &str,
    body: serde_json::Value,
) -> Result<(), (Option<u16>, String)> {
    let mut request = client.client().index(IndexParts::IndexId(index, id));
    if let Some(credential) = client.credential() {
        request = request.header(AUTHORIZATION, credential.header());
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| (None, e.to_string()))?;
    let status = response.status_code().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        let text = response.text().await.unwrap_or_default();
        Err((
            Some(status),
            format!("{status}: {}", text.chars().take(300).collect::<String>()),
        ))
    }
}

/// A refusal retrying will not fix (a document the mapping refuses); 401/403 (credential),
/// 408, 429 and 5xx are retried.
fn is_permanent(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 429)
}
