//! The filter's counters and histograms: enums so the names in Envoy's stats (listed in
//! CONFIG.md) are defined in a single place; the glue defines each with `define_metric` and
//! keeps the ids. proxy-wasm metrics carry no labels, so a dimension (RCODE, qtype) is one
//! counter per value; the mapping from a value to its counter is here, pure.

use hickory_proto::rr::RecordType;

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
    RcodeNoerror,
    RcodeNxdomain,
    RcodeServfail,
    RcodeRefused,
    RcodeOther,
    QtypeA,
    QtypeAaaa,
    QtypeHttps,
    QtypeTxt,
    QtypeMx,
    QtypeCname,
    QtypePtr,
    QtypeOther,
    ReasonOverride,
    OverridesUpdated,
    OverridesPollFailed,
}

impl Counter {
    pub const ALL: [Counter; 43] = [
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
        Counter::RcodeNoerror,
        Counter::RcodeNxdomain,
        Counter::RcodeServfail,
        Counter::RcodeRefused,
        Counter::RcodeOther,
        Counter::QtypeA,
        Counter::QtypeAaaa,
        Counter::QtypeHttps,
        Counter::QtypeTxt,
        Counter::QtypeMx,
        Counter::QtypeCname,
        Counter::QtypePtr,
        Counter::QtypeOther,
        Counter::ReasonOverride,
        Counter::OverridesUpdated,
        Counter::OverridesPollFailed,
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
            Counter::RcodeNoerror => "dohguard.rcode.noerror",
            Counter::RcodeNxdomain => "dohguard.rcode.nxdomain",
            Counter::RcodeServfail => "dohguard.rcode.servfail",
            Counter::RcodeRefused => "dohguard.rcode.refused",
            Counter::RcodeOther => "dohguard.rcode.other",
            Counter::QtypeA => "dohguard.qtype.a",
            Counter::QtypeAaaa => "dohguard.qtype.aaaa",
            Counter::QtypeHttps => "dohguard.qtype.https",
            Counter::QtypeTxt => "dohguard.qtype.txt",
            Counter::QtypeMx => "dohguard.qtype.mx",
            Counter::QtypeCname => "dohguard.qtype.cname",
            Counter::QtypePtr => "dohguard.qtype.ptr",
            Counter::QtypeOther => "dohguard.qtype.other",
            Counter::ReasonOverride => "dohguard.reason.override",
            Counter::OverridesUpdated => "dohguard.overrides.updated",
            Counter::OverridesPollFailed => "dohguard.overrides.poll_failed",
        }
    }

    /// The counter of an upstream answer's RCODE (the header's 4 bits).
    pub fn for_rcode(rcode: u8) -> Counter {
        match rcode {
            0 => Counter::RcodeNoerror,
            2 => Counter::RcodeServfail,
            3 => Counter::RcodeNxdomain,
            5 => Counter::RcodeRefused,
            _ => Counter::RcodeOther,
        }
    }

    /// The counter of a query's type.
    pub fn for_qtype(qtype: RecordType) -> Counter {
        match qtype {
            RecordType::A => Counter::QtypeA,
            RecordType::AAAA => Counter::QtypeAaaa,
            RecordType::HTTPS => Counter::QtypeHttps,
            RecordType::TXT => Counter::QtypeTxt,
            RecordType::MX => Counter::QtypeMx,
            RecordType::CNAME => Counter::QtypeCname,
            RecordType::PTR => Counter::QtypePtr,
            _ => Counter::QtypeOther,
        }
    }
}

/// The filter's histograms (proxy-wasm `MetricType::Histogram`; Envoy exports each as a
/// Prometheus histogram `dohguard_<name>_bucket`/`_sum`/`_count` with its default buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Histogram {
    /// Length of the normalised query name, without the trailing dot (0 for the root).
    QnameLength,
    /// Length of the query name's longest label.
    LabelLengthMax,
    /// Milliseconds from a scorer callout's dispatch to its reply (or the host's timeout).
    CalloutLatencyMs,
}

impl Histogram {
    pub const ALL: [Histogram; 3] = [
        Histogram::QnameLength,
        Histogram::LabelLengthMax,
        Histogram::CalloutLatencyMs,
    ];

    /// Position in [`Histogram::ALL`] (and so in the glue's id table).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Histogram::QnameLength => "dohguard.qname_length",
            Histogram::LabelLengthMax => "dohguard.label_length_max",
            Histogram::CalloutLatencyMs => "dohguard.callout.latency_ms",
        }
    }
}

/// A normalised query name's length and its longest label's length (the root `.` is 0, 0).
/// No allocation: it runs for every query.
pub fn name_lengths(name: &str) -> (u64, u64) {
    let name = name.strip_suffix('.').unwrap_or(name);
    let longest = name.split('.').map(str::len).max().unwrap_or(0);
    (name.len() as u64, longest as u64)
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
    fn histogram_table_is_in_declaration_order_and_names_are_new() {
        for (i, h) in Histogram::ALL.iter().enumerate() {
            assert_eq!(h.index(), i);
            assert!(Counter::ALL.iter().all(|c| c.name() != h.name()));
        }
        let doc = include_str!("../CONFIG.md");
        for h in Histogram::ALL {
            assert!(
                doc.contains(h.name()),
                "{} missing from CONFIG.md",
                h.name()
            );
        }
    }

    #[test]
    fn rcodes_map_to_their_counters() {
        assert_eq!(Counter::for_rcode(0), Counter::RcodeNoerror);
        assert_eq!(Counter::for_rcode(2), Counter::RcodeServfail);
        assert_eq!(Counter::for_rcode(3), Counter::RcodeNxdomain);
        assert_eq!(Counter::for_rcode(5), Counter::RcodeRefused);
        for other in [1, 4, 6, 9, 15] {
            assert_eq!(Counter::for_rcode(other), Counter::RcodeOther);
        }
    }

    #[test]
    fn qtypes_map_to_their_counters() {
        assert_eq!(Counter::for_qtype(RecordType::A), Counter::QtypeA);
        assert_eq!(Counter::for_qtype(RecordType::AAAA), Counter::QtypeAaaa);
        assert_eq!(Counter::for_qtype(RecordType::HTTPS), Counter::QtypeHttps);
        assert_eq!(Counter::for_qtype(RecordType::TXT), Counter::QtypeTxt);
        assert_eq!(Counter::for_qtype(RecordType::MX), Counter::QtypeMx);
        assert_eq!(Counter::for_qtype(RecordType::CNAME), Counter::QtypeCname);
        assert_eq!(Counter::for_qtype(RecordType::PTR), Counter::QtypePtr);
        assert_eq!(Counter::for_qtype(RecordType::SRV), Counter::QtypeOther);
        assert_eq!(
            Counter::for_qtype(RecordType::Unknown(65280)),
            Counter::QtypeOther
        );
    }

    #[test]
    fn name_lengths_are_total_and_longest_label() {
        assert_eq!(name_lengths("www.example.com"), (15, 7));
        assert_eq!(name_lengths("a.bb.ccc."), (8, 3));
        assert_eq!(name_lengths("."), (0, 0));
        assert_eq!(name_lengths("localhost"), (9, 9));
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
