//! The filter -> scorer callout (`POST /v1/score`) as serde types; `docs/contracts.md` is the
//! prose version and both must change together. The filter sends a [`ScoreRequest`] and reads a
//! [`ScoreReply`]; the batch forms wrap the same types. Unknown reply fields are ignored so the
//! scorer can add fields without breaking deployed filters; a missing field is an error.

use serde::{Deserialize, Serialize};

/// One name to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    /// Normalised query name (see [`crate::name::normalize`]).
    pub name: String,
    /// RR type mnemonic (`A`, `AAAA`, ... or `TYPE65` for unknown ones).
    pub qtype: String,
    /// Client IP address without port, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The caller records the query itself (the filter's decision record carries this
    /// verdict's score and model version), so the scorer writes no document of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caller_records: bool,
}

/// Several names at once: `{"names": [..]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub names: Vec<ScoreRequest>,
}

/// What the scorer decided for one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    /// Suspicious: log it, let it through.
    Monitor,
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Monitor => "monitor",
            Verdict::Block => "block",
        }
    }
}

/// Why the verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    AllowList,
    DenyList,
    Model,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AllowList => "allow_list",
            Reason::DenyList => "deny_list",
            Reason::Model => "model",
        }
    }
}

/// Which model decided a `reason: model` verdict (docs/contracts.md sections 2 and 3). A
/// model card names its detector; cards without one are `dga`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// Algorithmically generated registered domains (the character model).
    #[default]
    Dga,
    /// DNS tunnels: payload in the subdomain labels of the full name.
    Tunnel,
    /// Look-alike (phishing) registered domains.
    Lookalike,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Dga => "dga",
            Detector::Tunnel => "tunnel",
            Detector::Lookalike => "lookalike",
        }
    }
}

/// What a verdict covers, and so the key the filter caches it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// This exact name.
    Name,
    /// The registered domain and every name under it.
    RegisteredDomain,
}

/// The scorer's answer for one name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReply {
    pub name: String,
    /// `None` (JSON `null`) when the name is itself a public suffix.
    pub registered_domain: Option<String>,
    /// Model score in [0, 1]; 1.0 for deny-list hits, 0.0 for allow-list hits.
    pub score: f32,
    pub verdict: Verdict,
    pub reason: Reason,
    pub scope: Scope,
    pub model_version: String,
    /// Seconds the filter may cache the verdict.
    pub ttl: u32,
    /// For `reason: model`, the detector whose model decided (absent for list verdicts and
    /// from scorers that predate detectors, which means `dga`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<Detector>,
}

/// Answers to a [`BatchRequest`], in the same order: `{"results": [..]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReply {
    pub results: Vec<ScoreReply>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_matches_the_documented_json() {
        let req = ScoreRequest {
            name: "xjw3kq9z.com".into(),
            qtype: "A".into(),
            client: Some("192.0.2.7".into()),
            caller_records: false,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"name":"xjw3kq9z.com","qtype":"A","client":"192.0.2.7"}"#
        );
        let no_client: ScoreRequest =
            serde_json::from_str(r#"{"name":"a.com","qtype":"TXT"}"#).unwrap();
        assert_eq!(no_client.client, None);
        assert!(!serde_json::to_string(&no_client)
            .unwrap()
            .contains("client"));
    }

    #[test]
    fn reply_parses_the_documented_example() {
        let reply: ScoreReply = serde_json::from_str(
            r#"{"name":"xjw3kq9z.com","registered_domain":"xjw3kq9z.com","score":0.998,
                "verdict":"block","reason":"model","scope":"registered_domain",
                "model_version":"dga-cnn-2026.11.21","ttl":3600,"extra":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(reply.verdict, Verdict::Block);
        assert_eq!(reply.reason, Reason::Model);
        assert_eq!(reply.scope, Scope::RegisteredDomain);
        assert_eq!(reply.ttl, 3600);
        let back = serde_json::to_value(&reply).unwrap();
        assert_eq!(back["reason"], "model");
        assert_eq!(back["scope"], "registered_domain");
        assert_eq!(back["verdict"], "block");
        assert_eq!(
            reply.detector, None,
            "a reply without a detector still parses"
        );
        assert!(back.get("detector").is_none());
        let tunnel: ScoreReply = serde_json::from_str(
            r#"{"name":"a.t.example","registered_domain":"t.example","score":0.9,
                "verdict":"block","reason":"model","scope":"name","detector":"tunnel",
                "model_version":"tunnel-v1-1","ttl":60}"#,
        )
        .unwrap();
        assert_eq!(tunnel.detector, Some(Detector::Tunnel));
        assert_eq!(serde_json::to_value(&tunnel).unwrap()["detector"], "tunnel");
    }

    #[test]
    fn reply_with_missing_or_unknown_values_is_rejected() {
        let missing_ttl = r#"{"name":"a.com","registered_domain":"a.com","score":0.1,
            "verdict":"allow","reason":"model","scope":"name","model_version":"v"}"#;
        assert!(serde_json::from_str::<ScoreReply>(missing_ttl).is_err());
        let bad_verdict = r#"{"name":"a.com","registered_domain":"a.com","score":0.1,
            "verdict":"maybe","reason":"model","scope":"name","model_version":"v","ttl":1}"#;
        assert!(serde_json::from_str::<ScoreReply>(bad_verdict).is_err());
    }

    #[test]
    fn batch_forms_round_trip() {
        let batch = BatchRequest {
            names: vec![ScoreRequest {
                name: "a.com".into(),
                qtype: "A".into(),
                client: None,
                caller_records: false,
            }],
        };
        let json = serde_json::to_string(&batch).unwrap();
        assert_eq!(json, r#"{"names":[{"name":"a.com","qtype":"A"}]}"#);
        assert_eq!(serde_json::from_str::<BatchRequest>(&json).unwrap(), batch);
        let reply: BatchReply = serde_json::from_str(r#"{"results":[]}"#).unwrap();
        assert!(reply.results.is_empty());
    }
}
