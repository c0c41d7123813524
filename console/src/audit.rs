//! The append-only audit trail (`<prefix>-audit`): logins (good and bad), logouts, user
//! creation, labels. Entries are only ever appended (generated ids); the console has no
//! endpoint that changes or deletes one. Admins read it through `GET /api/audit`.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{app::AppState, store::StoreError, time_range::rfc3339};

/// Appends one entry.
pub async fn record(
    state: &AppState,
    actor: &str,
    action: &str,
    outcome: &str,
    target: &str,
    reason: Option<&str>,
    details: Value,
) -> Result<(), StoreError> {
    let mut entry = json!({
        "@timestamp": rfc3339(OffsetDateTime::now_utc()),
        "actor": actor, "action": action, "outcome": outcome, "target": target,
        "details": details,
    });
    if let Some(reason) = reason {
        entry["reason"] = json!(reason);
    }
    state.store.append(&state.store.indices.audit, &entry).await
}

/// The newest `size` entries, newest first.
pub async fn recent(state: &AppState, size: usize) -> Result<Vec<Value>, StoreError> {
    let body = json!({"size": size, "sort": [{"@timestamp": "desc"}], "query": {"match_all": {}}});
    let reply = state.store.search(&state.store.indices.audit, body).await?;
    Ok(crate::query_log::sources(&reply))
}
