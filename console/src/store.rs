//! Elasticsearch access: the verdicts (read only, contract 3) and the console's own indices
//! (contract 4: users, sessions, audit, labels), through the same `elasticsearch` client the
//! scorer writes with. Only APIs real Elasticsearch 8.x has: `_search` (with `search_after`),
//! document `GET`/`PUT`/`_create`/`DELETE`, and index creation with explicit mappings.

use std::time::Duration;

use elasticsearch::{
    http::{
        response::Response,
        transport::{SingleNodeConnectionPool, TransportBuilder},
        Url,
    },
    indices::{IndicesCreateParts, IndicesPutMappingParts},
    params::{OpType, Refresh},
    DeleteParts, Elasticsearch, GetParts, IndexParts, SearchParts,
};
use serde_json::{json, Value};
use thiserror::Error;

use crate::config::ElasticsearchConfig;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("client: {0}")]
    Client(String),
    #[error("unreachable: {0}")]
    Unavailable(String),
    /// The store refused the request as invalid (HTTP 400), with its reason.
    #[error("refused the request: {0}")]
    Refused(String),
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unreadable answer: {0}")]
    Unreadable(String),
}

/// Names of the console's indices (contract 4).
#[derive(Debug, Clone)]
pub struct Indices {
    pub verdicts: String,
    pub users: String,
    pub sessions: String,
    pub audit: String,
    pub labels: String,
    pub overrides: String,
}

impl Indices {
    pub fn new(config: &ElasticsearchConfig) -> Self {
        let p = &config.index_prefix;
        Self {
            verdicts: config.verdicts.clone(),
            users: format!("{p}-users"),
            sessions: format!("{p}-sessions"),
            audit: format!("{p}-audit"),
            labels: format!("{p}-labels"),
            overrides: format!("{p}-overrides"),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    client: Elasticsearch,
    pub indices: Indices,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("indices", &self.indices)
            .finish_non_exhaustive()
    }
}

/// `PUT <index>` bodies of the console's own indices: explicit mappings, `dynamic: strict`.
pub fn index_mappings(indices: &Indices) -> Vec<(String, Value)> {
    let kw = json!({"type": "keyword"});
    let date = json!({"type": "date"});
    let text = json!({"type": "keyword", "ignore_above": 4096});
    let mapping = |properties: Value| {
        json!({"settings": {"index": {"number_of_shards": 1}},
               "mappings": {"dynamic": "strict", "properties": properties}})
    };
    vec![
        (
            indices.users.clone(),
            mapping(json!({
                "username": kw, "role": kw, "password_hash": {"type": "keyword", "index": false},
                "created_at": date, "created_by": kw, "disabled": {"type": "boolean"},
                "status_changed_at": date, "status_changed_by": kw
            })),
        ),
        (
            indices.sessions.clone(),
            mapping(json!({
                "username": kw, "role": kw, "csrf_token": {"type": "keyword", "index": false},
                "created_at": date, "expires_at": date
            })),
        ),
        (
            indices.audit.clone(),
            mapping(json!({
                "@timestamp": date, "actor": kw, "action": kw, "outcome": kw,
                "target": kw, "reason": text, "details": {"type": "object", "enabled": false}
            })),
        ),
        (
            indices.labels.clone(),
            mapping(json!({
                "@timestamp": date, "registered_domain": kw, "label": kw,
                "reason": text, "labelled_by": kw
            })),
        ),
        (
            indices.overrides.clone(),
            mapping(json!({
                "id": kw, "action": kw, "match": kw, "name": kw, "clients": kw,
                "expires_at": date, "expires_at_ms": {"type": "long"}, "reason": text,
                "created_by": kw, "created_at": date, "created_ms": {"type": "long"},
                "removed_by": kw, "removed_at": date, "updated_ms": {"type": "long"}
            })),
        ),
    ]
}

fn unavailable(e: elasticsearch::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

async fn body_of(response: Response) -> Result<(u16, Value), StoreError> {
    let status = response.status_code().as_u16();
    let text = response.text().await.map_err(unavailable)?;
    let value = serde_json::from_str(&text)
        .map_err(|e| StoreError::Unreadable(format!("{e}: {}", truncate(&text))))?;
    Ok((status, value))
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// The most specific reason Elasticsearch gives for a refusal.
fn reason(body: &Value) -> String {
    let error = &body["error"];
    for candidate in [
        &error["caused_by"]["caused_by"]["reason"],
        &error["caused_by"]["reason"],
        &error["root_cause"][0]["reason"],
        &error["reason"],
    ] {
        if let Some(s) = candidate.as_str() {
            return s.to_owned();
        }
    }
    truncate(&body.to_string())
}

fn check(status: u16, body: Value) -> Result<Value, StoreError> {
    match status {
        200..=299 => Ok(body),
        400 => Err(StoreError::Refused(reason(&body))),
        _ => Err(StoreError::Status {
            status,
            body: reason(&body),
        }),
    }
}

impl Store {
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, StoreError> {
        let url: Url = config
            .url
            .parse()
            .map_err(|e| StoreError::Client(format!("{:?}: {e}", config.url)))?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .disable_proxy()
            .build()
            .map_err(|e| StoreError::Client(e.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            indices: Indices::new(config),
        })
    }

    /// Creates the console's indices that do not exist yet; an existing one gets the fields
    /// added since it was created (`PUT <index>/_mapping`, additive: nothing stored changes).
    pub async fn ensure_indices(&self) -> Result<(), StoreError> {
        for (index, body) in index_mappings(&self.indices) {
            let properties = body["mappings"]["properties"].clone();
            let response = self
                .client
                .indices()
                .create(IndicesCreateParts::Index(&index))
                .body(body)
                .send()
                .await
                .map_err(unavailable)?;
            let (status, body) = body_of(response).await?;
            let exists = body["error"]["type"] == "resource_already_exists_exception";
            if exists {
                self.add_fields(&index, properties).await?;
            } else if !(200..300).contains(&status) {
                return Err(StoreError::Status {
                    status,
                    body: format!("creating {index}: {}", reason(&body)),
                });
            }
        }
        Ok(())
    }

    /// `PUT <index>/_mapping` with `properties` (fields already mapped the same way are kept).
    async fn add_fields(&self, index: &str, properties: Value) -> Result<(), StoreError> {
        let response = self
            .client
            .indices()
            .put_mapping(IndicesPutMappingParts::Index(&[index]))
            .body(json!({ "properties": properties }))
            .send()
            .await
            .map_err(unavailable)?;
        let (status, body) = body_of(response).await?;
        check(status, body)
            .map(|_| ())
            .map_err(|e| StoreError::Client(format!("updating the mapping of {index}: {e}")))
    }

    /// `POST <index>/_search`. A missing index (no verdicts written yet) is an empty result.
    pub async fn search(&self, index: &str, body: Value) -> Result<Value, StoreError> {
        let response = self
            .client
            .search(SearchParts::Index(&[index]))
            .allow_no_indices(true)
            .ignore_unavailable(true)
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        let (status, body) = body_of(response).await?;
        if status == 404 && body["error"]["type"] == "index_not_found_exception" {
            return Ok(json!({"hits": {"total": {"value": 0}, "hits": []}}));
        }
        check(status, body)
    }

    /// The `_source` of document `id`, or `None`.
    pub async fn get(&self, index: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let response = self
            .client
            .get(GetParts::IndexId(index, id))
            .send()
            .await
            .map_err(unavailable)?;
        let (status, body) = body_of(response).await?;
        if status == 404 {
            return Ok(None);
        }
        let body = check(status, body)?;
        Ok(body.get("_source").cloned())
    }

    /// Stores `doc` as `id` only if no document has that id; `false` when one does.
    pub async fn create(&self, index: &str, id: &str, doc: &Value) -> Result<bool, StoreError> {
        let response = self
            .client
            .index(IndexParts::IndexId(index, id))
            .op_type(OpType::Create)
            .refresh(Refresh::WaitFor)
            .body(doc)
            .send()
            .await
            .map_err(unavailable)?;
        let (status, body) = body_of(response).await?;
        if status == 409 {
            return Ok(false);
        }
        check(status, body).map(|_| true)
    }

    /// Stores `doc` as `id`, replacing the document of that id (visible when this returns).
    pub async fn put(&self, index: &str, id: &str, doc: &Value) -> Result<(), StoreError> {
        let response = self
            .client
            .index(IndexParts::IndexId(index, id))
            .refresh(Refresh::WaitFor)
            .body(doc)
            .send()
            .await
            .map_err(unavailable)?;
        let (status, body) = body_of(response).await?;
        check(status, body).map(|_| ())
    }

    /// Appends `doc` with a generated id, visible to searches when this returns.
    pub async fn append(&self, index: &str, doc: &Value) -> Result<(), StoreError> {
        let response = self
            .client
            .index(IndexParts::Index(index))
            .refresh(Refresh::WaitFor)
            .body(doc)
            .send()
            .await
            .map_err(unavailable)?;
        let (status, body) = body_of(response).await?;
        check(status, body).map(|_| ())
    }

    pub async fn delete(&self, index: &str, id: &str) -> Result<(), StoreError> {
        let response = self
            .client
            .delete(DeleteParts::IndexId(index, id))
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status_code().as_u16();
        if status == 404 || (200..300).contains(&status) {
            return Ok(());
        }
        let (status, body) = body_of(response).await?;
        check(status, body).map(|_| ())
    }

    /// Reachability probe for `/readyz`.
    pub async fn ping(&self) -> bool {
        matches!(self.client.ping().send().await, Ok(r) if r.status_code().is_success())
    }
}
