//! Talking to Elasticsearch: building the client, installing the template, and delivering a
//! set of documents with the bulk `create` action, retrying what can be retried.

use std::{collections::HashMap, time::Duration};

use elasticsearch::{
    http::{
        transport::{SingleNodeConnectionPool, TransportBuilder},
        Url,
    },
    indices::IndicesPutIndexTemplateParts,
    BulkParts, Elasticsearch,
};
use serde::Deserialize;

use super::{document::Doc, template, SinkError};
use crate::{config::ElasticsearchConfig, metrics::SinkCounters};

/// The client plus the delivery settings.
pub struct EsClient {
    client: Elasticsearch,
    config: ElasticsearchConfig,
}

impl std::fmt::Debug for EsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsClient")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

/// What happened to a set of documents.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Stored now (201).
    pub stored: u64,
    /// Already stored (409 on create).
    pub duplicates: u64,
    /// Refused as invalid, with Elasticsearch's reason.
    pub rejected: Vec<(Doc, String)>,
    /// Not delivered after every attempt (Elasticsearch down or overloaded), in order.
    pub undelivered: Vec<Doc>,
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// A whole-request failure worth retrying (connection, timeout, 429, 5xx).
struct Transient(String);

impl EsClient {
    pub fn new(url: &str, config: &ElasticsearchConfig) -> Result<Self, SinkError> {
        let url: Url = url
            .parse()
            .map_err(|e| SinkError::Client(format!("{url:?}: {e}")))?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .disable_proxy()
            .build()
            .map_err(|e| SinkError::Client(e.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            config: config.clone(),
        })
    }

    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// `PUT _index_template/<name>`; idempotent, so it is safe after every reconnection.
    pub async fn install_template(&self) -> Result<(), SinkError> {
        let body = template::template_body(&self.config.index, self.config.data_stream);
        let response = self
            .client
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name(
                &self.config.template_name,
            ))
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        let status = response.status_code();
        if status.is_success() {
            Ok(())
        } else {
            let text = response.text().await.unwrap_or_default();
            Err(SinkError::Template(format!("{status}: {text}")))
        }
    }

    async fn bulk_once(
        &self,
        docs: &[&Doc],
    ) -> Result<Vec<(u16, Option<serde_json::Value>)>, Transient> {
        let mut body = Vec::with_capacity(docs.iter().map(|d| d.approx_bytes() + 64).sum());
        for doc in docs {
            doc.write_bulk_lines(&mut body);
        }
        let response = self
            .client
            .bulk(BulkParts::None)
            .body(vec![body])
            .send()
            .await
            .map_err(|e| Transient(e.to_string()))?;
        let status = response.status_code().as_u16();
        if status == 429 || status >= 500 {
            return Err(Transient(format!("bulk answered {status}")));
        }
        if !(200..300).contains(&status) {
            // A whole-request 4xx (other than 429) is not going to get better by retrying:
            // mark every document rejected with the reason.
            let text = response.text().await.unwrap_or_default();
            return Ok(docs
                .iter()
                .map(|_| (status, Some(serde_json::Value::String(text.clone()))))
                .collect());
        }
        let parsed: BulkResponse = response
            .json()
            .await
            .map_err(|e| Transient(format!("unreadable bulk response: {e}")))?;
        if parsed.items.len() != docs.len() {
            return Err(Transient(format!(
                "bulk response has {} items for {} documents",
                parsed.items.len(),
                docs.len()
            )));
        }
        Ok(parsed
            .items
            .into_iter()
            .map(|mut item| {
                let inner = item.remove("create").or_else(|| item.into_values().next());
                inner.map_or((500, None), |i| (i.status, i.error))
            })
            .collect())
    }

    /// Delivers `docs` with up to `max_attempts` bulk requests, backing off exponentially;
    /// after a partial failure only the failed items are sent again.
    pub async fn deliver(&self, docs: Vec<Doc>, counters: &SinkCounters) -> Delivery {
        let mut out = Delivery::default();
        let mut pending = docs;
        let mut delay = Duration::from_millis(self.config.retry_base_ms);
        for attempt in 1..=self.config.max_attempts {
            if pending.is_empty() {
                break;
            }
            if attempt > 1 {
                counters.retried.inc();
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
            let refs: Vec<&Doc> = pending.iter().collect();
            match self.bulk_once(&refs).await {
                Err(Transient(e)) => {
                    tracing::warn!(attempt, docs = pending.len(), error = %e, "bulk request failed");
                }
                Ok(results) => {
                    let mut retry = Vec::new();
                    for (doc, (status, error)) in pending.into_iter().zip(results) {
                        match status {
                            200..=299 => out.stored += 1,
                            409 => out.duplicates += 1,
                            429 | 500..=599 => retry.push(doc),
                            _ => {
                                let reason = error
                                    .map(|e| e.to_string())
                                    .unwrap_or_else(|| status.to_string());
                                out.rejected.push((doc, reason));
                            }
                        }
                    }
                    pending = retry;
                }
            }
        }
        out.undelivered = pending;
        out
    }

    /// Cheap reachability probe (`GET /`).
    pub async fn ping(&self) -> bool {
        matches!(self.client.ping().send().await, Ok(r) if r.status_code().is_success())
    }
}
