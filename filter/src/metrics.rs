//! The filter's counters: one enum so the names in Envoy's stats (listed in CONFIG.md) are
//! defined in a single place; the glue defines each with `define_metric` and keeps the ids.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    Queries,
    VerdictAllow,
    VerdictMonitor,
    VerdictBlock,
    ReasonAllowList,
    ReasonDenyList,
    ReasonCache,
    ReasonModel,
    ReasonNoScorer,
    ReasonScorerFailure,
    ReasonUnscored,
    ReasonCname,
    Blocked,
    MonitorPassed,
    CacheHit,
    CacheMiss,
    CalloutSent,
    CalloutError,
    CalloutTimeout,
    CalloutMalformed,
    CalloutJoined,
    MalformedRequests,
    EventsRecorded,
    EventsDropped,
    EventsBatchFailed,
    CnameInspected,
    CnameUninspected,
}

impl Counter {
    pub const ALL: [Counter; 27] = [
        Counter::Queries,
        Counter::VerdictAllow,
        Counter::VerdictMonitor,
        Counter::VerdictBlock,
        Counter::ReasonAllowList,
        Counter::ReasonDenyList,
        Counter::ReasonCache,
        Counter::ReasonModel,
        Counter::ReasonNoScorer,
        Counter::ReasonScorerFailure,
        Counter::ReasonUnscored,
        Counter::ReasonCname,
        Counter::Blocked,
        Counter::MonitorPassed,
        Counter::CacheHit,
        Counter::CacheMiss,
        Counter::CalloutSent,
        Counter::CalloutError,
        Counter::CalloutTimeout,
        Counter::CalloutMalformed,
        Counter::CalloutJoined,
        Counter::MalformedRequests,
        Counter::EventsRecorded,
        Counter::EventsDropped,
        Counter::EventsBatchFailed,
        Counter::CnameInspected,
        Counter::CnameUninspected,
    ];

    /// Position in [`Counter::ALL`] (and so in the glue's id table).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Counter::Queries => "dohguard.queries",
            Counter::VerdictAllow => "dohguard.verdict.allow",
            Counter::VerdictMonitor => "dohguard.verdict.monitor",
            Counter::VerdictBlock => "dohguard.verdict.block",
            Counter::ReasonAllowList => "dohguard.reason.allow_list",
            Counter::ReasonDenyList => "dohguard.reason.deny_list",
            Counter::ReasonCache => "dohguard.reason.cache",
            Counter::ReasonModel => "dohguard.reason.model",
            Counter::ReasonNoScorer => "dohguard.reason.no_scorer",
            Counter::ReasonScorerFailure => "dohguard.reason.scorer_failure",
            Counter::ReasonUnscored => "dohguard.reason.unscored",
            Counter::ReasonCname => "dohguard.reason.cname",
            Counter::Blocked => "dohguard.blocked",
            Counter::MonitorPassed => "dohguard.monitor_passed",
            Counter::CacheHit => "dohguard.cache.hit",
            Counter::CacheMiss => "dohguard.cache.miss",
            Counter::CalloutSent => "dohguard.callout.sent",
            Counter::CalloutError => "dohguard.callout.error",
            Counter::CalloutTimeout => "dohguard.callout.timeout",
            Counter::CalloutMalformed => "dohguard.callout.malformed",
            Counter::CalloutJoined => "dohguard.callout.joined",
            Counter::MalformedRequests => "dohguard.malformed_requests",
            Counter::EventsRecorded => "dohguard.events.recorded",
            Counter::EventsDropped => "dohguard.events.dropped",
            Counter::EventsBatchFailed => "dohguard.events.batch_failed",
            Counter::CnameInspected => "dohguard.cname.inspected",
            Counter::CnameUninspected => "dohguard.cname.uninspected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order_and_names_are_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }

    #[test]
    fn config_md_lists_every_counter() {
        let doc = include_str!("../CONFIG.md");
        for c in Counter::ALL {
            let name = c.name();
            // CONFIG.md abbreviates siblings as `.suffix` after the first full name.
            let suffix = &name[name.rfind('.').unwrap()..];
            assert!(
                doc.contains(name) || doc.contains(&format!("`{suffix}`")),
                "{name} missing from CONFIG.md"
            );
        }
    }
}
