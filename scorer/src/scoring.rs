//! From a callout request to a verdict: name normalisation and splitting
//! (`dohguard_core::name`), the scorer-side allow/deny lists (`dohguard_core::rules`, the
//! same semantics as the filter's), the bounded verdict cache, the model, and thresholds.
//! Every verdict is handed to the sink as a [`VerdictEvent`] before the reply goes out.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use dohguard_core::{
    contract::{Reason, Scope, ScoreReply, ScoreRequest, Verdict},
    name::{self, NameError},
    rules::{list_entries, split_pattern, ListDecision, Policy, RuleError, RuleSet},
};
use thiserror::Error;

use crate::{
    config::{RulesConfig, VerdictConfig},
    metrics::{Metrics, VerdictLabels},
    model::{Model, ModelError, Thresholds},
    sink::{Sink, VerdictEvent},
};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ScoreError {
    #[error("names[{index}]: name {name:?} is invalid: {source}")]
    InvalidName {
        index: usize,
        name: String,
        source: NameError,
    },
    #[error("names[{index}]: qtype {qtype:?} is not an RR type mnemonic (A, AAAA, TYPE65, ...)")]
    InvalidQtype { index: usize, qtype: String },
    #[error("names[{index}]: client {client:?} is not an IP address")]
    InvalidClient { index: usize, client: String },
    #[error(transparent)]
    Model(#[from] ModelError),
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RulesError {
    #[error("{list} list: {source}")]
    Rule {
        list: &'static str,
        source: RuleError,
    },
    #[error("{list} list file {path}: {source}")]
    File {
        list: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Compiles the configured lists into a policy, plus the registered domains that some rule
/// points into (model verdicts for those are scoped to the exact name; see [`Scorer`]).
pub fn compile_rules(config: &RulesConfig) -> Result<(Policy, HashSet<String>), RulesError> {
    let mut ruled_domains = HashSet::new();
    let mut compile = |list: &'static str, inline: &[String], files: &[std::path::PathBuf]| {
        let mut patterns: Vec<String> = inline.to_vec();
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|source| RulesError::File {
                list,
                path: path.display().to_string(),
                source,
            })?;
            patterns.extend(list_entries(&text).map(|(_, entry)| entry.to_owned()));
        }
        let set = RuleSet::from_patterns(patterns.iter().map(String::as_str))
            .map_err(|source| RulesError::Rule { list, source })?;
        for p in &patterns {
            if let Ok(n) = name::normalize(split_pattern(p).1) {
                if let Some(rd) = name::registered_domain(&n) {
                    ruled_domains.insert(rd.to_owned());
                }
            }
        }
        Ok::<_, RulesError>(set)
    };
    let allow = compile("allow", &config.allow, &config.allow_files)?;
    let deny = compile("deny", &config.deny, &config.deny_files)?;
    Ok((Policy { allow, deny }, ruled_domains))
}

/// How one name of a request is decided: by a list (decided once, up front), or by the
/// model score of its model input text.
enum Plan {
    Listed(ListDecision),
    Model(String),
}

/// A model score remembered for a model input text.
#[derive(Clone)]
struct CachedScore {
    score: f32,
    model_version: Arc<str>,
    at: Instant,
}

/// The scoring pipeline; shared by all requests.
pub struct Scorer {
    model: Model,
    policy: Policy,
    ruled_domains: HashSet<String>,
    cache: Option<quick_cache::sync::Cache<String, CachedScore>>,
    verdicts: VerdictConfig,
    sink: Sink,
    metrics: Metrics,
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer").finish_non_exhaustive()
    }
}

/// A request after validation.
struct Query {
    name: String,
    qtype: String,
    client: Option<IpAddr>,
    caller_records: bool,
}

fn valid_qtype(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= 16
        && q.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl Scorer {
    pub fn new(
        model: Model,
        policy: Policy,
        ruled_domains: HashSet<String>,
        verdicts: VerdictConfig,
        sink: Sink,
        metrics: Metrics,
    ) -> Self {
        let cache =
            (verdicts.max_entries > 0).then(|| quick_cache::sync::Cache::new(verdicts.max_entries));
        Self {
            model,
            policy,
            ruled_domains,
            cache,
            verdicts,
            sink,
            metrics,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// Thresholds in force: the configuration's overrides, else the model card's.
    pub fn thresholds(&self) -> Thresholds {
        let card = self.model.info().card.thresholds;
        Thresholds {
            block: self.verdicts.block_threshold.unwrap_or(card.block),
            monitor: self.verdicts.monitor_threshold.unwrap_or(card.monitor),
        }
    }

    fn validate(requests: Vec<ScoreRequest>) -> Result<Vec<Query>, ScoreError> {
        requests
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                let name = name::normalize(&r.name).map_err(|source| ScoreError::InvalidName {
                    index,
                    name: r.name.clone(),
                    source,
                })?;
                let qtype = r.qtype.to_ascii_uppercase();
                if !valid_qtype(&qtype) {
                    return Err(ScoreError::InvalidQtype {
                        index,
                        qtype: r.qtype,
                    });
                }
                let client = match r.client {
                    None => None,
                    Some(c) => Some(
                        c.parse::<IpAddr>()
                            .map_err(|_| ScoreError::InvalidClient { index, client: c })?,
                    ),
                };
                Ok(Query {
                    name,
                    qtype,
                    client,
                    caller_records: r.caller_records,
                })
            })
            .collect()
    }

    /// Scores names in order. All are validated first: one invalid name fails the whole call
    /// (422) and nothing is scored or logged.
    pub async fn score(&self, requests: Vec<ScoreRequest>) -> Result<Vec<ScoreReply>, ScoreError> {
        let started = Instant::now();
        let queries = Self::validate(requests)?;
        let model = self.model.info();
        let thresholds = self.thresholds();

        // Which names need the model, and for which text; collect unique texts not cached.
        let mut plans: Vec<Plan> = Vec::with_capacity(queries.len());
        let mut known: HashMap<String, (f32, Arc<str>)> = HashMap::new();
        let mut to_score: Vec<String> = Vec::new();
        let mut pending: HashSet<String> = HashSet::new();
        let max_age = Duration::from_secs(u64::from(self.verdicts.ttl_s));
        let version: Arc<str> = Arc::from(model.model_version.as_str());
        for q in &queries {
            if let Some(decision) = self.policy.decide(&q.name) {
                plans.push(Plan::Listed(decision));
                continue;
            }
            let text = model
                .encoder
                .text_of(&q.name, name::registered_domain(&q.name))
                .to_owned();
            if !known.contains_key(&text) && !pending.contains(&text) {
                let hit = self.cache.as_ref().and_then(|c| c.get(&text)).filter(|c| {
                    *c.model_version == *model.model_version && c.at.elapsed() < max_age
                });
                match hit {
                    Some(c) => {
                        self.metrics.cache_hits.inc();
                        known.insert(text.clone(), (c.score, c.model_version));
                    }
                    None => {
                        self.metrics.cache_misses.inc();
                        pending.insert(text.clone());
                        to_score.push(text.clone());
                    }
                }
            }
            plans.push(Plan::Model(text));
        }
        if !to_score.is_empty() {
            let scored = self.model.score(to_score.clone()).await?;
            let v: Arc<str> = Arc::from(scored.model.model_version.as_str());
            for (text, score) in to_score.into_iter().zip(scored.scores) {
                if let Some(cache) = &self.cache {
                    cache.insert(
                        text.clone(),
                        CachedScore {
                            score,
                            model_version: v.clone(),
                            at: Instant::now(),
                        },
                    );
                }
                known.insert(text, (score, v.clone()));
            }
        }

        let latency_us = started.elapsed().as_micros() as u64;
        let timestamp = SystemTime::now();
        let mut replies = Vec::with_capacity(queries.len());
        let mut events = Vec::with_capacity(queries.len());
        for (q, plan) in queries.into_iter().zip(plans) {
            let parts = name::split(&q.name);
            let registered_domain = parts.registered_domain.map(str::to_owned);
            let (score, verdict, reason, scope, model_version, ttl) = match plan {
                Plan::Listed(d) => {
                    let score = if d.reason() == Reason::DenyList {
                        1.0
                    } else {
                        0.0
                    };
                    (
                        score,
                        d.verdict(),
                        d.reason(),
                        Scope::Name,
                        version.clone(),
                        self.verdicts.list_ttl_s,
                    )
                }
                Plan::Model(text) => {
                    let (score, v) = known[&text].clone();
                    let scope = match &registered_domain {
                        Some(rd) if text == *rd && !self.ruled_domains.contains(rd.as_str()) => {
                            Scope::RegisteredDomain
                        }
                        _ => Scope::Name,
                    };
                    let verdict = if score >= thresholds.block {
                        Verdict::Block
                    } else if score >= thresholds.monitor {
                        Verdict::Monitor
                    } else {
                        Verdict::Allow
                    };
                    (score, verdict, Reason::Model, scope, v, self.verdicts.ttl_s)
                }
            };
            self.metrics
                .verdicts
                .get_or_create(&VerdictLabels {
                    verdict: verdict.as_str(),
                    reason: reason.as_str(),
                })
                .inc();
            // A caller that records the query itself (the filter) gets no second document.
            let record_here = !q.caller_records;
            if record_here {
                events.push(VerdictEvent {
                    timestamp,
                    name: q.name.clone(),
                    qtype: q.qtype,
                    client: q.client,
                    registered_domain: registered_domain.clone(),
                    subdomain: parts.subdomain.map(str::to_owned),
                    top_level_domain: parts.top_level_domain.map(str::to_owned),
                    score,
                    verdict,
                    reason,
                    scope,
                    model_version: model_version.to_string(),
                    latency_us,
                });
            }
            replies.push(ScoreReply {
                name: q.name,
                registered_domain,
                score,
                verdict,
                reason,
                scope,
                model_version: model_version.to_string(),
                ttl,
            });
        }
        self.sink.submit_all(events);
        Ok(replies)
    }
}
