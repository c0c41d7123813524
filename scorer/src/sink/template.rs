//! The composable index template installed at start (`PUT _index_template/<name>`): explicit
//! ECS mappings for every field the documents carry, `dynamic: strict` so a document that
//! drifts from the mapping is refused (and dead-lettered) instead of silently changing it.

use serde_json::{json, Value};

/// The index pattern the template covers, derived from the write target:
/// `logs-dohguard.verdicts-default` -> `logs-dohguard.verdicts-*`.
pub fn index_pattern(index: &str) -> String {
    match index.rsplit_once('-') {
        Some((head, _namespace)) if !head.is_empty() => format!("{head}-*"),
        _ => format!("{index}*"),
    }
}

/// The template body. `data_stream` adds `"data_stream": {}` (real Elasticsearch 8.x turns
/// the write target into a data stream; the test server has no data streams).
pub fn template_body(index: &str, data_stream: bool) -> Value {
    let keyword = json!({"type": "keyword", "ignore_above": 1024});
    let mut body = json!({
        "index_patterns": [index_pattern(index)],
        // Above the built-in `logs` template (priority 100) of Elasticsearch 8.x.
        "priority": 200,
        "_meta": {
            "managed_by": "dohguard-scorer",
            "description": "dohguard verdicts (ECS)",
            "schema": dohguard_schema::SCHEMA_VERSION
        },
        "template": {
            "settings": {"index": {"number_of_shards": 1}},
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "@timestamp": {"type": "date"},
                    "ecs": {"properties": {"version": keyword}},
                    "event": {"properties": {
                        "id": keyword,
                        "kind": keyword, "category": keyword, "type": keyword,
                        "action": keyword, "outcome": keyword, "dataset": keyword,
                        "duration": {"type": "long"}
                    }},
                    "dns": {"properties": {
                        "type": keyword,
                        "response_code": keyword,
                        "question": {"properties": {
                            "name": keyword, "type": keyword, "registered_domain": keyword,
                            "subdomain": keyword, "top_level_domain": keyword
                        }}
                    }},
                    "client": {"properties": {"ip": {"type": "ip"}}},
                    "source": {"properties": {"ip": {"type": "ip"}}},
                    "http": {"properties": {
                        "request": {"properties": {"id": keyword}},
                        "response": {"properties": {"status_code": {"type": "long"}}}
                    }},
                    "rule": {"properties": {"name": keyword, "ruleset": keyword}},
                    "dohguard": {"properties": {
                        "schema": {"type": "long"},
                        "score": {"type": "float"},
                        "verdict": keyword, "reason": keyword, "cached_reason": keyword,
                        "cached": {"type": "boolean"}, "enforced": {"type": "boolean"},
                        "scope": keyword,
                        "model_version": keyword,
                        "detector": keyword,
                        "latency_us": {"type": "long"},
                        "principal": keyword,
                        "cname_target": keyword,
                        "answer": {"properties": {
                            "kind": keyword, "block_mode": keyword,
                            "rcode": {"type": "long"}, "count": {"type": "long"},
                            "reason": {"type": "keyword", "ignore_above": 1024}
                        }},
                        "gap": {"properties": {"dropped": {"type": "long"}, "source": keyword}}
                    }}
                }
            }
        }
    });
    if data_stream {
        body["data_stream"] = json!({});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_replaces_the_namespace() {
        assert_eq!(
            index_pattern("logs-dohguard.verdicts-default"),
            "logs-dohguard.verdicts-*"
        );
        assert_eq!(index_pattern("verdicts"), "verdicts*");
    }

    #[test]
    fn data_stream_is_optional() {
        assert!(template_body("logs-a-b", false)
            .get("data_stream")
            .is_none());
        assert_eq!(template_body("logs-a-b", true)["data_stream"], json!({}));
    }
}
