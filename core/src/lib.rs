//! What the DoH filter and the scorer must agree on, in one place so the two cannot drift:
//! how a query name is normalised and split at its registered domain ([`name`]), how allow and
//! deny lists are written and matched ([`rules`]), the JSON types of the filter -> scorer
//! callout ([`contract`], described in `docs/contracts.md`), the feature sets detector
//! models read ([`features`], contract 2), and the analysts' override set and its matcher
//! ([`overrides`]). Everything here is plain Rust
//! with no I/O, so it builds for the wasm32-wasip1 filter as well as for the native scorer.

pub mod contract;
pub mod features;
pub mod name;
pub mod overrides;
pub mod rules;

pub use contract::{
    BatchReply, BatchRequest, Detector, Reason, Scope, ScoreReply, ScoreRequest, Verdict,
};
pub use name::{normalize, registered_domain, split, NameError, NameParts};
pub use rules::{ListDecision, MatchKind, Policy, RuleError, RuleSet};
