//! Talking to Elasticsearch: building the client (TLS roots, credential), installing the
//! template, and delivering a set of documents with the bulk `create` action, retrying what
//! can be retried with jittered exponential backoff. A whole-request 401/403 is not retried
//! and rejects nothing: the documents come back undelivered with the refusal, for the spool.

use std::{collections::HashMap, time::Duration};

use elasticsearch::{
    cert::{Certificate, CertificateValidation},
    http::{
        headers::AUTHORIZATION,
        response::Response,
        transport::{SingleNodeConnectionPool, TransportBuilder},
        Url,
    },
    indices::IndicesPutIndexTemplateParts,
    BulkParts, Elasticsearch,
};
use serde::Deserialize;

use super::{auth::Credential, document::Doc, template, SinkError};
use crate::{config::ElasticsearchConfig, metrics::SinkCounters};

/// The client plus the delivery settings.
pub struct EsClient {
    client: Elasticsearch,
    config: ElasticsearchConfig,
    credential: Option<Credential>,
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
    /// Not delivered after every attempt (Elasticsearch down or overloaded, or the
    /// credential refused), in order.
    pub undelivered: Vec<Doc>,
    /// Set when Elasticsearch refused the whole request with 401/403: `undelivered` holds
    /// every document not stored before that.
    pub refused: Option<Refusal>,
}

/// A whole request refused with 401 (credential not accepted) or 403 (not allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// Elasticsearch's reason, shortened.
    pub reason: String,
}

impl Refusal {
    pub fn into_error(self) -> SinkError {
        SinkError::Unauthorized {
            status: self.status,
            reason: self.reason,
        }
    }
}

/// What a reachability probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Answered, and not with 401 (a 403 on `/` only means the key may not read cluster
    /// info, which a least-privilege key need not).
    Up,
    /// 401: the credential is not accepted.
    Refused(Refusal),
    /// No answer, a TLS failure, or 429/5xx.
    Down(String),
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

/// Why a whole bulk request failed.
enum Failure {
    /// Worth retrying: connection, timeout, TLS, 429, 5xx.
    Transient(String),
    /// 401/403: retrying with the same credential will not help.
    Refused(Refusal),
}

/// The delay before retry number `retry` (1 = the first retry): "equal jitter", a wait
/// between half and all of a ceiling that starts at `base`, doubles per retry and stops at
/// `max`. `unit` is a random number in [0, 1), so retries of many writers spread out.
pub fn backoff_delay(base: Duration, max: Duration, retry: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    let ceiling = base.saturating_mul(factor).min(max);
    let half = ceiling / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// An error and its causes on one line (reqwest hides the TLS reason in the source chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

async fn refusal(status: u16, response: Response) -> Refusal {
    let mut reason = match response.text().await {
        Ok(text) if !text.trim().is_empty() => text,
        Ok(_) => format!("{status} with an empty body"),
        Err(e) => format!("{status}; body unreadable: {}", error_chain(&e)),
    };
    if reason.len() > 300 {
        let mut end = 300;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    Refusal { status, reason }
}

impl EsClient {
    /// Builds the client; reads the credential and the CA file (errors name the key).
    pub fn new(url: &str, config: &ElasticsearchConfig) -> Result<Self, SinkError> {
        let url: Url = url
            .parse()
            .map_err(|e| SinkError::Client(format!("elasticsearch.url: {e}")))?;
        let credential = Credential::load(config)?;
        let validation = match (&config.tls_ca_file, config.tls_verify) {
            (_, false) => {
                tracing::warn!(
                    "elasticsearch.tls_verify is off: the server's certificate is not checked"
                );
                CertificateValidation::None
            }
            (Some(path), true) => {
                let ca_error =
                    |source: Box<dyn std::error::Error + Send + Sync>| SinkError::CaFile {
                        path: path.clone(),
                        source,
                    };
                let pem = std::fs::read(path).map_err(|e| ca_error(e.into()))?;
                CertificateValidation::Full(
                    Certificate::from_pem(&pem).map_err(|e| ca_error(e.into()))?,
                )
            }
            (None, true) => CertificateValidation::Default,
        };
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .cert_validation(validation)
            .disable_proxy()
            .build()
            .map_err(|e| SinkError::Client(e.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            config: config.clone(),
            credential,
        })
    }

    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// The base URL, for logs (it never carries credentials: validation refuses them).
    pub fn url(&self) -> &str {
        self.config.url.as_deref().unwrap_or("")
    }

    /// The credential, when one is configured.
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    fn auth(&self) -> Option<elasticsearch::http::headers::HeaderValue> {
        self.credential.as_ref().map(Credential::header)
    }

    /// `PUT _index_template/<name>`; idempotent, so it is safe after every reconnection.
    /// 401 is [`SinkError::Unauthorized`]; any other refusal (403 for a least-privilege key)
    /// is [`SinkError::Template`]; no answer or 429/5xx is [`SinkError::Unavailable`].
    pub async fn install_template(&self) -> Result<(), SinkError> {
        let body = template::template_body(&self.config.index, self.config.data_stream);
        let indices = self.client.indices();
        let mut request = indices.put_index_template(IndicesPutIndexTemplateParts::Name(
            &self.config.template_name,
        ));
        if let Some(auth) = self.auth() {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::Unavailable(error_chain(&e)))?;
        let status = response.status_code().as_u16();
        match status {
            200..=299 => Ok(()),
            401 => Err(refusal(status, response).await.into_error()),
            429 | 500.. => Err(SinkError::Unavailable(format!(
                "template answered {status}"
            ))),
            _ => {
                let r = refusal(status, response).await;
                Err(SinkError::Template(format!("{status}: {}", r.reason)))
            }
        }
    }

    async fn bulk_once(
        &self,
        docs: &[&Doc],
    ) -> Result<Vec<(u16, Option<serde_json::Value>)>, Failure> {
        let mut body = Vec::with_capacity(docs.iter().map(|d| d.approx_bytes() + 64).sum());
        for doc in docs {
            doc.write_bulk_lines(&mut body);
        }
        let mut request = self.client.bulk(BulkParts::None);
        if let Some(auth) = self.auth() {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = request
            .body(vec![body])
            .send()
            .await
            .map_err(|e| Failure::Transient(error_chain(&e)))?;
        let status = response.status_code().as_u16();
        if status == 429 || status >= 500 {
            return Err(Failure::Transient(format!("bulk answered {status}")));
        }
        if status == 401 || status == 403 {
            return Err(Failure::Refused(refusal(status, response).await));
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
            .map_err(|e| Failure::Transient(format!("unreadable bulk response: {e}")))?;
        if parsed.items.len() != docs.len() {
            return Err(Failure::Transient(format!(
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

    /// Delivers `docs` with up to `max_attempts` bulk requests, backing off exponentially
    /// with jitter; after a partial failure only the failed items are sent again. A 401/403
    /// stops at once: nothing is retried or rejected, everything pending comes back.
    pub async fn deliver(&self, docs: Vec<Doc>, counters: &SinkCounters) -> Delivery {
        let mut out = Delivery::default();
        let mut pending = docs;
        let base = Duration::from_millis(self.config.retry_base_ms);
        let max = Duration::from_millis(self.config.retry_max_ms);
        for attempt in 1..=self.config.max_attempts {
            if pending.is_empty() {
                break;
            }
            if attempt > 1 {
                counters.retried.inc();
                tokio::time::sleep(backoff_delay(base, max, attempt - 1, fastrand::f64())).await;
            }
            let refs: Vec<&Doc> = pending.iter().collect();
            let started = std::time::Instant::now();
            let result = self.bulk_once(&refs).await;
            counters
                .bulk_seconds
                .0
                .observe(started.elapsed().as_secs_f64());
            match result {
                Err(Failure::Refused(r)) => {
                    out.refused = Some(r);
                    break;
                }
                Err(Failure::Transient(e)) => {
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

    /// Cheap reachability probe (`HEAD /`).
    pub async fn ping(&self) -> bool {
        self.probe().await == Probe::Up
    }

    /// `HEAD /` with the credential: up, credential refused (401), or down.
    pub async fn probe(&self) -> Probe {
        let mut request = self.client.ping();
        if let Some(auth) = self.auth() {
            request = request.header(AUTHORIZATION, auth);
        }
        match request.send().await {
            Err(e) => Probe::Down(error_chain(&e)),
            Ok(r) => match r.status_code().as_u16() {
                401 => Probe::Refused(Refusal {
                    status: 401,
                    reason: "HEAD / answered 401".to_owned(),
                }),
                s @ (429 | 500..) => Probe::Down(format!("HEAD / answered {s}")),
                _ => Probe::Up,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_jitters_and_stops_at_the_cap() {
        let (base, max) = (ms(100), ms(1000));
        // The ceiling: 100, 200, 400, 800, then 1000 forever.
        for (retry, ceiling) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            assert_eq!(
                backoff_delay(base, max, retry, 0.0),
                ms(ceiling / 2),
                "retry {retry}"
            );
            assert_eq!(
                backoff_delay(base, max, retry, 1.0),
                ms(ceiling),
                "retry {retry}"
            );
            let mid = backoff_delay(base, max, retry, 0.5);
            assert!(
                mid > ms(ceiling / 2) && mid < ms(ceiling),
                "retry {retry}: {mid:?}"
            );
        }
        // Huge retry numbers and out-of-range randomness do not overflow or escape the bounds.
        assert_eq!(backoff_delay(base, max, u32::MAX, 7.0), ms(1000));
        assert_eq!(backoff_delay(base, max, 0, 0.0), ms(50));
        // Different random draws give different waits: writers spread out.
        assert_ne!(
            backoff_delay(base, max, 3, 0.1),
            backoff_delay(base, max, 3, 0.9)
        );
    }
}
