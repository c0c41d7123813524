//! From a callout request to a verdict: name normalisation and splitting
//! (`dohguard_core::name`), the scorer-side allow/deny lists (`dohguard_core::rules`, the
//! same semantics as the filter's), the bounded score cache, the models (the main one and the
//! extra detectors that apply to the name), thresholds, and the tunnel session rule
//! ([`TunnelSessions`]). The most severe verdict over the models decides, and the reply names
//! its `detector`. Every verdict is handed to the sink as a [`VerdictEvent`] before the reply
//! goes out.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use dohguard_core::{
    contract::{Detector, Reason, Scope, ScoreReply, ScoreRequest, Verdict},
    features::tunnel,
    name::{self, NameError},
    rules::{list_entries, split_pattern, ListDecision, Policy, RuleError, RuleSet},
};
use thiserror::Error;

use crate::{
    config::{RulesConfig, TunnelConfig, VerdictConfig},
    metrics::{Metrics, VerdictLabels},
    model::{card::InputText, Model, ModelError, Thresholds},
    sessions::TunnelSessions,
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
/// scores of the models that apply to it.
enum Plan {
    Listed(ListDecision),
    Model(Vec<Ask>),
}

/// One model asked about one name: `slot` 0 is the main model, `i + 1` the detector
/// `detectors[i]`; `key` is the model input text, prefixed `<slot>:` for detectors (`:`
/// never occurs in a name) so every model has its own entries in the score cache.
struct Ask {
    slot: usize,
    key: String,
}

/// A model score remembered for a model input text.
#[derive(Clone)]
struct CachedScore {
    score: f32,
    model_version: Arc<str>,
    at: Instant,
}

/// What one model said about one name.
#[derive(Clone)]
struct Opinion {
    detector: Detector,
    score: f32,
    verdict: Verdict,
    model_version: Arc<str>,
    /// The model read the registered domain (not the full name).
    reads_registered_domain: bool,
}

/// The decided verdict of one name, before it becomes a reply and an event.
struct Decided {
    score: f32,
    verdict: Verdict,
    reason: Reason,
    scope: Scope,
    model_version: Arc<str>,
    detector: Option<Detector>,
    ttl: u32,
}

/// The scoring pipeline; shared by all requests.
pub struct Scorer {
    model: Model,
    /// Extra detector models (card v2), in configuration order.
    detectors: Vec<Model>,
    sessions: TunnelSessions,
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

/// Whether a detector judges this normalised name: the tunnel detector only tunnel-suspect
/// names (`dohguard_core::features::tunnel::suspect`), the others every name.
pub fn detector_applies(detector: Detector, name: &str) -> bool {
    match detector {
        Detector::Tunnel => tunnel::suspect(name),
        Detector::Dga | Detector::Lookalike => true,
    }
}

fn verdict_at(score: f32, thresholds: Thresholds) -> Verdict {
    if score >= thresholds.block {
        Verdict::Block
    } else if score >= thresholds.monitor {
        Verdict::Monitor
    } else {
        Verdict::Allow
    }
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
            detectors: Vec::new(),
            sessions: TunnelSessions::new(TunnelConfig::default()),
            policy,
            ruled_domains,
            cache,
            verdicts,
            sink,
            metrics,
        }
    }

    /// Adds extra detector models (card v2) and the tunnel session rule's settings.
    pub fn with_detectors(mut self, detectors: Vec<Model>, tunnel: TunnelConfig) -> Self {
        self.detectors = detectors;
        self.sessions = TunnelSessions::new(tunnel);
        self
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The extra detector models, in configuration order.
    pub fn detectors(&self) -> &[Model] {
        &self.detectors
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

    /// The model of a slot (0: the main model, `i + 1`: detector `i`).
    fn slot_model(&self, slot: usize) -> &Model {
        if slot == 0 {
            &self.model
        } else {
            &self.detectors[slot - 1]
        }
    }

    /// A slot's thresholds: the configured overrides apply to the main model only.
    fn slot_thresholds(&self, slot: usize) -> Thresholds {
        if slot == 0 {
            self.thresholds()
        } else {
            self.detectors[slot - 1].info().card.thresholds
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
        let plans: Vec<Plan> = queries.iter().map(|q| self.plan(&q.name)).collect();
        let known = self.scores_for(&plans).await?;
        let latency_us = started.elapsed().as_micros() as u64;
        let timestamp = SystemTime::now();
        let now = Instant::now();
        let mut replies = Vec::with_capacity(queries.len());
        let mut events = Vec::with_capacity(queries.len());
        for (q, plan) in queries.into_iter().zip(plans) {
            let parts = name::split(&q.name);
            let registered_domain = parts.registered_domain.map(str::to_owned);
            let decided = self.decide(&q.name, parts.registered_domain, plan, &known, now);
            self.metrics
                .verdicts
                .get_or_create(&VerdictLabels {
                    verdict: decided.verdict.as_str(),
                    reason: decided.reason.as_str(),
                })
                .inc();
            // A caller that records the query itself (the filter) gets no second document.
            if !q.caller_records {
                events.push(event_of(&q, &parts, &decided, timestamp, latency_us));
            }
            replies.push(ScoreReply {
                name: q.name,
                registered_domain,
                score: decided.score,
                verdict: decided.verdict,
                reason: decided.reason,
                scope: decided.scope,
                model_version: decided.model_version.to_string(),
                ttl: decided.ttl,
                detector: decided.detector,
            });
        }
        self.sink.submit_all(events);
        Ok(replies)
    }

    /// A list decision, or the models that apply to the name and the text each reads.
    fn plan(&self, name: &str) -> Plan {
        if let Some(decision) = self.policy.decide(name) {
            return Plan::Listed(decision);
        }
        let rd = name::registered_domain(name);
        let main = self.model.info();
        let mut asks = vec![Ask {
            slot: 0,
            key: main.encoder.text_of(name, rd).to_owned(),
        }];
        for (i, detector) in self.detectors.iter().enumerate() {
            let info = detector.info();
            if detector_applies(info.card.detector, name) {
                asks.push(Ask {
                    slot: i + 1,
                    key: format!("{}:{}", i + 1, info.encoder.text_of(name, rd)),
                });
            }
        }
        Plan::Model(asks)
    }

    /// Scores of every asked key: from the score cache, else from the models (each model's
    /// texts in one call).
    async fn scores_for(
        &self,
        plans: &[Plan],
    ) -> Result<HashMap<String, (f32, Arc<str>)>, ScoreError> {
        let mut known: HashMap<String, (f32, Arc<str>)> = HashMap::new();
        let mut to_score: Vec<Vec<String>> = vec![Vec::new(); self.detectors.len() + 1];
        let mut pending: HashSet<&str> = HashSet::new();
        for ask in plans.iter().flat_map(|p| match p {
            Plan::Model(asks) => asks.as_slice(),
            Plan::Listed(_) => &[][..],
        }) {
            if known.contains_key(&ask.key) || pending.contains(ask.key.as_str()) {
                continue;
            }
            match self.cached(ask) {
                Some(hit) => {
                    self.metrics.cache_hits.inc();
                    known.insert(ask.key.clone(), hit);
                }
                None => {
                    self.metrics.cache_misses.inc();
                    pending.insert(&ask.key);
                    to_score[ask.slot].push(ask.key.clone());
                }
            }
        }
        for (slot, keys) in to_score.into_iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let texts = keys
                .iter()
                .map(|k| text_of_key(slot, k).to_owned())
                .collect();
            let scored = self.slot_model(slot).score(texts).await?;
            let v: Arc<str> = Arc::from(scored.model.model_version.as_str());
            for (key, score) in keys.into_iter().zip(scored.scores) {
                if let Some(cache) = &self.cache {
                    let entry = CachedScore {
                        score,
                        model_version: v.clone(),
                        at: Instant::now(),
                    };
                    cache.insert(key.clone(), entry);
                }
                known.insert(key, (score, v.clone()));
            }
        }
        Ok(known)
    }

    /// A fresh cached score of the asked model's current version.
    fn cached(&self, ask: &Ask) -> Option<(f32, Arc<str>)> {
        let max_age = Duration::from_secs(u64::from(self.verdicts.ttl_s));
        let info = self.slot_model(ask.slot).info();
        let version = &info.model_version;
        self.cache
            .as_ref()
            .and_then(|c| c.get(&ask.key))
            .filter(|c| *c.model_version == **version && c.at.elapsed() < max_age)
            .map(|c| (c.score, c.model_version))
    }

    /// The verdict of one name from its plan and the scores.
    fn decide(
        &self,
        name: &str,
        rd: Option<&str>,
        plan: Plan,
        known: &HashMap<String, (f32, Arc<str>)>,
        now: Instant,
    ) -> Decided {
        let asks = match plan {
            Plan::Listed(d) => return self.listed(d),
            Plan::Model(asks) => asks,
        };
        let opinions: Vec<Opinion> = asks
            .iter()
            .map(|ask| self.opinion(ask, known[&ask.key].clone()))
            .collect();
        // The most severe verdict decides; among equals the earliest model (the main one).
        let decider = opinions.iter().fold(&opinions[0], |best, o| {
            if o.verdict > best.verdict {
                o
            } else {
                best
            }
        });
        let tunnel = opinions.iter().find(|o| o.detector == Detector::Tunnel);
        if let (Some(rd), Some(t)) = (rd, tunnel) {
            if t.verdict == Verdict::Block && self.sessions.flag(rd, now) {
                return self.tunnel_domain_block(rd, t.score, t.model_version.clone());
            }
        }
        if let Some(rd) = rd.filter(|rd| self.sessions.blocked(rd, now)) {
            let score = tunnel.map_or(decider.score, |t| t.score);
            return self.tunnel_domain_block(rd, score, self.tunnel_version(tunnel));
        }
        let covers_domain = decider.reads_registered_domain
            && rd.is_some_and(|rd| !self.ruled_domains.contains(rd))
            && (decider.verdict == Verdict::Block || !tunnel::suspect(name));
        Decided {
            score: decider.score,
            verdict: decider.verdict,
            reason: Reason::Model,
            scope: if covers_domain {
                Scope::RegisteredDomain
            } else {
                Scope::Name
            },
            model_version: decider.model_version.clone(),
            detector: Some(decider.detector),
            ttl: self.verdicts.ttl_s,
        }
    }

    fn listed(&self, d: ListDecision) -> Decided {
        let score = if d.reason() == Reason::DenyList {
            1.0
        } else {
            0.0
        };
        Decided {
            score,
            verdict: d.verdict(),
            reason: d.reason(),
            scope: Scope::Name,
            model_version: Arc::from(self.model.info().model_version.as_str()),
            detector: None,
            ttl: self.verdicts.list_ttl_s,
        }
    }

    fn opinion(&self, ask: &Ask, (score, model_version): (f32, Arc<str>)) -> Opinion {
        let info = self.slot_model(ask.slot).info();
        Opinion {
            detector: info.card.detector,
            score,
            verdict: verdict_at(score, self.slot_thresholds(ask.slot)),
            model_version,
            reads_registered_domain: info.card.input.text == InputText::RegisteredDomain,
        }
    }

    /// The version of the tunnel model (the name's own opinion, else the first tunnel card).
    fn tunnel_version(&self, tunnel: Option<&Opinion>) -> Arc<str> {
        if let Some(t) = tunnel {
            return t.model_version.clone();
        }
        let info = self
            .detectors
            .iter()
            .map(Model::info)
            .find(|i| i.card.detector == Detector::Tunnel);
        Arc::from(
            info.map_or(String::new(), |i| i.model_version.clone())
                .as_str(),
        )
    }

    /// The session rule's verdict: the whole registered domain is blocked as a tunnel (for
    /// the name only when a list rule points into the domain).
    fn tunnel_domain_block(&self, rd: &str, score: f32, model_version: Arc<str>) -> Decided {
        Decided {
            score,
            verdict: Verdict::Block,
            reason: Reason::Model,
            scope: if self.ruled_domains.contains(rd) {
                Scope::Name
            } else {
                Scope::RegisteredDomain
            },
            model_version,
            detector: Some(Detector::Tunnel),
            ttl: self.verdicts.ttl_s,
        }
    }
}

/// The model input text of a score-cache key (detector keys carry a `<slot>:` prefix).
fn text_of_key(slot: usize, key: &str) -> &str {
    if slot == 0 {
        key
    } else {
        key.split_once(':').map_or(key, |(_, text)| text)
    }
}

fn event_of(
    q: &Query,
    parts: &name::NameParts<'_>,
    d: &Decided,
    timestamp: SystemTime,
    latency_us: u64,
) -> VerdictEvent {
    VerdictEvent {
        timestamp,
        name: q.name.clone(),
        qtype: q.qtype.clone(),
        client: q.client,
        registered_domain: parts.registered_domain.map(str::to_owned),
        subdomain: parts.subdomain.map(str::to_owned),
        top_level_domain: parts.top_level_domain.map(str::to_owned),
        score: d.score,
        verdict: d.verdict,
        reason: d.reason,
        scope: d.scope,
        model_version: d.model_version.to_string(),
        detector: d.detector,
        latency_us,
    }
}
