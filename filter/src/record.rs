//! The decision record, filter side: what a request contributes to its [`DecisionEvent`]
//! while it is handled ([`Draft`]), and the per-VM buffer of finished events that the root
//! context drains into batches on its tick ([`EventBuffer`]). Pure: the glue supplies clock
//! readings, properties and the callouts.

use std::collections::VecDeque;

use dohguard_core::contract::Verdict;
use dohguard_schema::{Answer, DecisionEvent, EventBatch, Layer};

use crate::config::{BlockAnswer, Mode};
use crate::decision::{Basis, Decision};
use crate::dns::HEADER_LEN;

/// What the request has told the record so far.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub name: Option<String>,
    pub qtype: Option<String>,
    pub rule: Option<String>,
    pub score: Option<f32>,
    pub model_version: Option<String>,
    pub answer: Option<Answer>,
    /// The CNAME/alias target that blocked the answer (layer `cname`).
    pub cname_target: Option<String>,
}

fn layer_of(basis: Basis) -> Layer {
    match basis {
        Basis::AllowList => Layer::AllowList,
        Basis::DenyList => Layer::DenyList,
        Basis::Model => Layer::Model,
        Basis::NoScorer => Layer::NoScorer,
        Basis::ScorerFailure => Layer::FailureMode,
        Basis::Unscored => Layer::Unscored,
        Basis::Cname => Layer::Cname,
        Basis::Override => Layer::Override,
    }
}

/// The block answer's mode name and RCODE, as recorded.
pub fn blocked_answer(kind: &BlockAnswer) -> Answer {
    let (mode, rcode) = match kind {
        BlockAnswer::Nxdomain => ("nxdomain", 3),
        BlockAnswer::Refused => ("refused", 5),
        BlockAnswer::Nodata => ("nodata", 0),
        BlockAnswer::Sinkhole => ("sinkhole", 0),
        BlockAnswer::Addresses(_) => ("addresses", 0),
    };
    Answer::Blocked {
        mode: mode.into(),
        rcode,
    }
}

/// RCODE and answer count from the DNS header ([`HEADER_LEN`] bytes) of the upstream's reply.
pub fn upstream_answer(header: &[u8], http_status: Option<u16>) -> Answer {
    let dns = header
        .get(..HEADER_LEN)
        .map(|h| (u16::from(h[3] & 0x0f), u16::from_be_bytes([h[6], h[7]])));
    Answer::Forwarded {
        rcode: dns.map(|d| d.0),
        answers: dns.map(|d| d.1),
        http_status: http_status.filter(|s| *s != 200),
    }
}

/// The RCODE of an upstream reply that is a DNS message: a 200 answer with a whole header.
pub fn upstream_rcode(header: &[u8], http_status: Option<u16>) -> Option<u8> {
    if http_status != Some(200) {
        return None;
    }
    header.get(..HEADER_LEN).map(|h| h[3] & 0x0f)
}

/// What only the host can tell, read when the stream ends.
#[derive(Debug, Clone, Default)]
pub struct StreamFacts {
    pub id: String,
    pub started_ms: u64,
    pub latency_us: u64,
    pub client: Option<String>,
    pub principal: Option<String>,
    pub request_id: Option<String>,
}

impl Draft {
    /// The finished event; `None` when the request never reached the DoH decoder.
    /// `decision` is the request's (`None`: refused before any decision).
    pub fn finish(
        self,
        decision: Option<Decision>,
        facts: StreamFacts,
        mode: Mode,
    ) -> Option<DecisionEvent> {
        let answer = self.answer?;
        let detector = decision.and_then(|d| d.detector);
        let (verdict, layer, cached_layer, cached, enforced) = match decision {
            Some(d) => {
                let own = layer_of(d.basis);
                let (layer, cached_layer) = if d.from_cache {
                    (Layer::Cache, Some(own))
                } else {
                    (own, None)
                };
                let enforced = !(d.verdict == Verdict::Block && mode == Mode::Monitor);
                (Some(d.verdict), layer, cached_layer, d.from_cache, enforced)
            }
            None => (None, Layer::Malformed, None, false, true),
        };
        Some(DecisionEvent {
            id: facts.id,
            ts_ms: facts.started_ms,
            client: facts.client,
            principal: facts.principal,
            request_id: facts.request_id,
            name: self.name,
            qtype: self.qtype,
            verdict,
            layer,
            cached_layer,
            rule: self.rule,
            cname_target: self.cname_target,
            score: self.score,
            model_version: self.model_version,
            detector,
            cached,
            enforced,
            answer,
            latency_us: facts.latency_us,
        })
    }
}

/// Finished events of one VM, and the batches made of them that are not yet acknowledged.
/// Everything held (buffered events plus events in unacknowledged batches) is bounded by
/// `max_held`; an event that would exceed it is dropped and counted, and the count goes out
/// with the next batch so the receiver can write a gap marker.
#[derive(Debug)]
pub struct EventBuffer {
    source: String,
    events: Vec<DecisionEvent>,
    /// Serialised batches not yet acknowledged: (seq, events in it, body).
    unsent: VecDeque<Batch>,
    in_flight: Vec<(u32, Batch)>,
    held_in_batches: usize,
    max_held: usize,
    dropped_since_batch: u64,
    next_seq: u64,
    next_event: u64,
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub seq: u64,
    pub events: usize,
    pub body: Vec<u8>,
}

impl EventBuffer {
    pub fn new(source: String, max_held: usize) -> Self {
        EventBuffer {
            source,
            events: Vec::new(),
            unsent: VecDeque::new(),
            in_flight: Vec::new(),
            held_in_batches: 0,
            max_held,
            dropped_since_batch: 0,
            next_seq: 0,
            next_event: 0,
        }
    }

    /// A fresh event id: this VM's random source and a sequence number.
    pub fn next_event_id(&mut self) -> String {
        self.next_event += 1;
        let mut id = String::with_capacity(self.source.len() + 12);
        id.push_str(&self.source);
        id.push('-');
        id.push_str(itoa::Buffer::new().format(self.next_event));
        id
    }

    /// Adds a finished event; `false` when it was dropped because the buffer is full.
    pub fn push(&mut self, event: DecisionEvent) -> bool {
        if self.events.len() + self.held_in_batches >= self.max_held {
            self.dropped_since_batch += 1;
            return false;
        }
        self.events.push(event);
        true
    }

    pub fn held(&self) -> usize {
        self.events.len() + self.held_in_batches
    }

    /// Cuts the buffered events into batches of at most `max_batch` (the dropped count rides
    /// on the first), queued behind any batch awaiting a retry.
    pub fn seal(&mut self, max_batch: usize) {
        if self.events.is_empty() && self.dropped_since_batch == 0 {
            return;
        }
        let events = std::mem::take(&mut self.events);
        let mut chunks: Vec<Vec<DecisionEvent>> = Vec::new();
        let mut rest = events.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push(rest.by_ref().take(max_batch).collect());
        }
        if chunks.is_empty() {
            chunks.push(Vec::new()); // a gap report with no events
        }
        for events in chunks {
            let batch = EventBatch {
                source: self.source.clone(),
                seq: self.next_seq,
                dropped: std::mem::take(&mut self.dropped_since_batch),
                events,
            };
            self.next_seq += 1;
            let count = batch.events.len();
            // A struct of strings and numbers always serialises.
            let body = serde_json::to_vec(&batch).unwrap_or_default();
            self.held_in_batches += count;
            self.unsent.push_back(Batch {
                seq: batch.seq,
                events: count,
                body,
            });
        }
    }

    /// The next batch to send, when fewer than `max_in_flight` are out.
    pub fn next_to_send(&mut self, max_in_flight: usize) -> Option<Batch> {
        if self.in_flight.len() >= max_in_flight {
            return None;
        }
        self.unsent.pop_front()
    }

    pub fn sent(&mut self, token: u32, batch: Batch) {
        self.in_flight.push((token, batch));
    }

    /// A batch could not be dispatched: it goes back to the front.
    pub fn not_sent(&mut self, batch: Batch) {
        self.unsent.push_front(batch);
    }

    /// The reply to callout `token`: acknowledged batches are released, failed ones queue
    /// again at the front (same body, same ids: the receiver stores each event once).
    /// Returns whether the token was one of ours.
    pub fn answered(&mut self, token: u32, ok: bool) -> bool {
        let Some(at) = self.in_flight.iter().position(|(t, _)| *t == token) else {
            return false;
        };
        let (_, batch) = self.in_flight.swap_remove(at);
        if ok {
            self.held_in_batches -= batch.events;
        } else {
            self.unsent.push_front(batch);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> DecisionEvent {
        Draft {
            name: Some(format!("n{i}.test")),
            qtype: Some("A".into()),
            answer: Some(Answer::Rejected {
                http_status: 400,
                reason: "x".into(),
            }),
            ..Draft::default()
        }
        .finish(
            None,
            StreamFacts {
                id: format!("s-{i}"),
                ..StreamFacts::default()
            },
            Mode::Enforce,
        )
        .unwrap()
    }

    #[test]
    fn only_a_whole_200_dns_header_gives_an_rcode() {
        let mut header = [0u8; HEADER_LEN];
        header[3] = 0x83; // RA + NXDOMAIN
        assert_eq!(upstream_rcode(&header, Some(200)), Some(3));
        assert_eq!(upstream_rcode(&header, Some(502)), None);
        assert_eq!(upstream_rcode(&header, None), None);
        assert_eq!(upstream_rcode(&header[..5], Some(200)), None);
    }

    #[test]
    fn the_upstream_header_gives_rcode_and_answer_count() {
        let header = [0x12, 0x34, 0x81, 0x83, 0, 1, 0, 2, 0, 0, 0, 0];
        assert_eq!(
            upstream_answer(&header, Some(200)),
            Answer::Forwarded {
                rcode: Some(3),
                answers: Some(2),
                http_status: None
            }
        );
        assert_eq!(
            upstream_answer(b"", Some(502)),
            Answer::Forwarded {
                rcode: None,
                answers: None,
                http_status: Some(502)
            }
        );
    }

    #[test]
    fn the_buffer_is_bounded_and_reports_what_it_dropped() {
        let mut b = EventBuffer::new("vm".into(), 3);
        assert!(b.push(event(0)) && b.push(event(1)) && b.push(event(2)));
        assert!(!b.push(event(3)), "the fourth event is over the bound");
        b.seal(2);
        let first = b.next_to_send(4).unwrap();
        let parsed: EventBatch = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(parsed.events.len(), 2);
        assert_eq!(parsed.dropped, 1, "the gap rides on the first batch");
        b.sent(7, first);
        // Still held while unacknowledged: a new event is still over the bound.
        assert!(!b.push(event(4)));
        assert!(b.answered(7, false), "a failed batch queues again");
        let again = b.next_to_send(4).unwrap();
        assert_eq!(again.seq, 0, "the same batch, same ids");
        b.sent(8, again);
        assert!(b.answered(8, true));
        assert_eq!(b.held(), 1);
        assert!(b.push(event(5)));
        b.seal(2);
        let second = b.next_to_send(4).unwrap();
        let parsed: EventBatch = serde_json::from_slice(&second.body).unwrap();
        assert_eq!(parsed.seq, 1);
        assert_eq!(parsed.events.len(), 1);
        let third: EventBatch = serde_json::from_slice(&b.next_to_send(4).unwrap().body).unwrap();
        assert_eq!((third.events.len(), third.dropped), (1, 1));
        assert!(!b.answered(99, true), "not our token");
    }

    #[test]
    fn monitor_mode_blocks_are_recorded_as_not_enforced() {
        let draft = Draft {
            name: Some("x.test".into()),
            answer: Some(upstream_answer(&[0; HEADER_LEN], None)),
            ..Draft::default()
        };
        let decision = Decision {
            verdict: Verdict::Block,
            basis: Basis::DenyList,
            from_cache: true,
            detector: None,
        };
        let e = draft
            .finish(Some(decision), StreamFacts::default(), Mode::Monitor)
            .unwrap();
        assert!(!e.enforced && e.cached);
        assert_eq!(e.layer, Layer::Cache);
        assert_eq!(e.cached_layer, Some(Layer::DenyList));
    }
}
