//! Scorer callouts in flight across workers. [`crate::inflight`] coalesces misses for one name
//! within a VM; this module does it across VMs (Envoy workers) through shared data. The first
//! worker to miss a name writes a pending marker (`dohguard/pending/<slot>`: the leader's
//! deadline, a nonce and the name) with compare-and-swap and makes the callout. A worker that
//! finds a live marker for the name parks its request instead; its root context polls the
//! verdict cache for parked names and decides them from the leader's cached verdict. A marker
//! that is released or expires without a verdict gives the parked requests the failure mode.
//!
//! Everything is bounded: markers live in [`SLOTS`] fixed keys (a slot held by a live marker
//! for another name means no coalescing for this one, never waiting), every marker carries a
//! deadline, and a worker parks at most [`MAX_PARKED`] requests.

use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

use crate::cache::{HashKey, SharedStore};

/// Marker slots in shared data.
pub const SLOTS: u64 = 1024;
/// Requests one worker parks at most; past it a request makes its own callout.
pub const MAX_PARKED: usize = 256;
/// How often a worker with parked requests polls the verdict cache.
pub const POLL_MS: u64 = 5;

/// A marker this worker wrote: what releasing it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    key: String,
    nonce: u64,
}

/// What a worker that missed the cache for a name does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// It wrote the marker: it makes the callout and releases the marker when it ends.
    Lead(Marker),
    /// Another worker's callout for this name is live until `deadline_ms`: park.
    Wait { deadline_ms: u64 },
    /// The slot is held by a live marker for another name (or the store failed): call out
    /// without a marker.
    Alone,
}

/// The marker's value: deadline (8 bytes LE), nonce (8 bytes LE), then the name.
fn encode(deadline_ms: u64, nonce: u64, name: &str) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + name.len());
    value.extend_from_slice(&deadline_ms.to_le_bytes());
    value.extend_from_slice(&nonce.to_le_bytes());
    value.extend_from_slice(name.as_bytes());
    value
}

/// A marker's deadline, nonce and name; `None` for a released (empty) or foreign value.
fn decode(value: &[u8]) -> Option<(u64, u64, &[u8])> {
    let deadline = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let nonce = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
    Some((deadline, nonce, &value[16..]))
}

/// The shared-data key of `name`'s marker slot (keyed hash, so names cannot be crafted to
/// share a slot and switch coalescing off for a chosen name).
pub fn slot_key(key: &HashKey, name: &str) -> String {
    let mut hasher = SipHasher13::new_with_key(key);
    hasher.write_u8(b'p');
    hasher.write(name.as_bytes());
    let slot = hasher.finish128().h1 % SLOTS;
    let mut digits = itoa::Buffer::new();
    let mut out = String::from("dohguard/pending/");
    out.push_str(digits.format(slot));
    out
}

/// What the slot `key` says about `name` at `now_ms`.
fn read_slot<S: SharedStore>(store: &S, key: &str, name: &str, now_ms: u64) -> Slot {
    match store.get(key) {
        None => Slot::Free { cas: 0 },
        Some((value, cas)) => match decode(&value) {
            Some((deadline, nonce, owner)) if deadline > now_ms => {
                if owner == name.as_bytes() {
                    Slot::Live { deadline, nonce }
                } else {
                    Slot::Foreign
                }
            }
            _ => Slot::Free { cas },
        },
    }
}

enum Slot {
    Free { cas: u32 },
    Live { deadline: u64, nonce: u64 },
    Foreign,
}

/// Claims the callout for `name` until `deadline_ms`, or finds another worker's live claim.
/// `nonce` tells this claim from every other (unique per request and worker).
pub fn claim<S: SharedStore>(
    store: &S,
    hash_key: &HashKey,
    name: &str,
    now_ms: u64,
    deadline_ms: u64,
    nonce: u64,
) -> Claim {
    let key = slot_key(hash_key, name);
    let cas = match read_slot(store, &key, name, now_ms) {
        Slot::Live { deadline, .. } => {
            return Claim::Wait {
                deadline_ms: deadline,
            }
        }
        Slot::Foreign => return Claim::Alone,
        Slot::Free { cas } => cas,
    };
    let written = store
        .set(&key, &encode(deadline_ms, nonce, name), cas)
        .is_ok();
    // A CAS write fails when another worker wrote first; a first write to an absent key has
    // no token to compare, so both are settled by reading back whose marker is there.
    match (written, read_slot(store, &key, name, now_ms)) {
        (true, Slot::Live { nonce: n, .. }) if n == nonce => Claim::Lead(Marker { key, nonce }),
        (_, Slot::Live { deadline, .. }) => Claim::Wait {
            deadline_ms: deadline,
        },
        _ => Claim::Alone,
    }
}

/// Whether a live marker for `name` is there at `now_ms`.
pub fn is_live<S: SharedStore>(store: &S, hash_key: &HashKey, name: &str, now_ms: u64) -> bool {
    let key = slot_key(hash_key, name);
    matches!(read_slot(store, &key, name, now_ms), Slot::Live { .. })
}

/// Releases a marker this worker wrote (after caching the verdict, or on failure). A marker
/// another worker has since replaced is left alone.
pub fn release<S: SharedStore>(store: &S, marker: &Marker) {
    if let Some((value, cas)) = store.get(&marker.key) {
        if decode(&value).is_some_and(|(_, nonce, _)| nonce == marker.nonce) {
            // Losing this race means another worker wrote the slot: nothing to release.
            let _ = store.set(&marker.key, &[], cas);
        }
    }
}

/// A parked request's fate at a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<D> {
    /// The leader's verdict is in the cache.
    Decided(D),
    /// The marker was released or expired without a verdict: the failure mode applies.
    Unanswered,
}

/// Requests this worker parked, waiting for another worker's callout, by name.
#[derive(Debug)]
pub struct Parked<W> {
    waiting: Vec<(String, u64, W)>,
}

impl<W> Default for Parked<W> {
    fn default() -> Self {
        Parked {
            waiting: Vec::new(),
        }
    }
}

impl<W> Parked<W> {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether [`MAX_PARKED`] requests wait already.
    pub fn is_full(&self) -> bool {
        self.waiting.len() >= MAX_PARKED
    }

    /// Parks `waiter` for `name` until `deadline_ms`; false (and the waiter dropped) when
    /// full: check [`Parked::is_full`] first.
    pub fn park(&mut self, name: &str, deadline_ms: u64, waiter: W) -> bool {
        if self.is_full() {
            return false;
        }
        self.waiting.push((name.to_owned(), deadline_ms, waiter));
        true
    }

    /// A parked request went away (its stream ended).
    pub fn leave(&mut self, gone: impl Fn(&W) -> bool) {
        self.waiting.retain(|(_, _, w)| !gone(w));
    }

    /// Polls at `now_ms`: `verdict` looks a name up in the cache, `live` says whether its
    /// marker is still there. Returns the requests that are done, with their outcome; the
    /// others keep waiting (never past their deadline).
    pub fn poll<D: Clone>(
        &mut self,
        now_ms: u64,
        mut verdict: impl FnMut(&str) -> Option<D>,
        mut live: impl FnMut(&str) -> bool,
    ) -> Vec<(W, Outcome<D>)> {
        let mut done = Vec::new();
        let mut kept = Vec::with_capacity(self.waiting.len());
        for (name, deadline, waiter) in self.waiting.drain(..) {
            if let Some(d) = verdict(&name) {
                done.push((waiter, Outcome::Decided(d)));
            } else if now_ms >= deadline || !live(&name) {
                done.push((waiter, Outcome::Unanswered));
            } else {
                kept.push((name, deadline, waiter));
            }
        }
        self.waiting = kept;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{MapStore, KEY};

    #[test]
    fn the_first_worker_leads_and_others_wait_until_it_releases() {
        let store = MapStore::default();
        let lead = match claim(&store, &KEY, "a.com", 100, 250, 1) {
            Claim::Lead(marker) => marker,
            other => panic!("expected to lead, got {other:?}"),
        };
        assert_eq!(
            claim(&store, &KEY, "a.com", 110, 260, 2),
            Claim::Wait { deadline_ms: 250 }
        );
        assert!(is_live(&store, &KEY, "a.com", 110));
        release(&store, &lead);
        assert!(!is_live(&store, &KEY, "a.com", 110));
        assert!(matches!(
            claim(&store, &KEY, "a.com", 120, 270, 3),
            Claim::Lead(_)
        ));
    }

    #[test]
    fn an_expired_marker_is_taken_over_and_its_old_owner_does_not_release_the_new_one() {
        let store = MapStore::default();
        let Claim::Lead(old) = claim(&store, &KEY, "a.com", 0, 100, 1) else {
            panic!("expected to lead");
        };
        assert!(
            !is_live(&store, &KEY, "a.com", 100),
            "expired at its deadline"
        );
        let Claim::Lead(_) = claim(&store, &KEY, "a.com", 100, 200, 2) else {
            panic!("an expired marker is free");
        };
        release(&store, &old);
        assert!(is_live(&store, &KEY, "a.com", 150), "the new marker stays");
    }

    #[test]
    fn a_slot_held_for_another_name_means_calling_out_alone() {
        let store = MapStore::default();
        let name = "a.com";
        let other = (0..100_000)
            .map(|i| format!("n{i}.com"))
            .find(|n| slot_key(&KEY, n) == slot_key(&KEY, name))
            .expect("a name sharing the slot");
        assert!(matches!(
            claim(&store, &KEY, &other, 0, 100, 1),
            Claim::Lead(_)
        ));
        assert_eq!(claim(&store, &KEY, name, 10, 110, 2), Claim::Alone);
    }

    /// A store where another worker writes the slot between this worker's read and write.
    struct Racing(MapStore, std::cell::Cell<bool>);

    impl SharedStore for Racing {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.0.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), crate::cache::StoreError> {
            if !self.1.replace(true) {
                self.0.set(key, &encode(500, 99, "a.com"), 0)?;
            }
            self.0.set(key, value, cas)
        }
    }

    #[test]
    fn losing_the_write_race_means_waiting_for_the_winner() {
        // The slot exists (released), so the write carries a CAS token and fails.
        let store = Racing(MapStore::default(), std::cell::Cell::new(true));
        store.0.set(&slot_key(&KEY, "a.com"), &[], 0).unwrap();
        store.1.set(false);
        assert_eq!(
            claim(&store, &KEY, "a.com", 0, 100, 1),
            Claim::Wait { deadline_ms: 500 }
        );
    }

    #[test]
    fn parked_requests_are_decided_by_the_cache_or_given_up() {
        let mut parked = Parked::default();
        assert!(parked.park("a.com", 100, 1));
        assert!(parked.park("b.com", 100, 2));
        assert!(parked.park("c.com", 100, 3));
        assert!(parked.park("d.com", 100, 4));
        parked.leave(|w| *w == 4);
        let done = parked.poll(50, |n| (n == "a.com").then_some("block"), |n| n == "b.com");
        assert_eq!(
            done,
            vec![(1, Outcome::Decided("block")), (3, Outcome::Unanswered)]
        );
        assert_eq!(parked.len(), 1, "b.com's marker is live: it waits");
        let done = parked.poll(100, |_| None::<&str>, |_| true);
        assert_eq!(done, vec![(2, Outcome::Unanswered)], "past its deadline");
        assert!(parked.is_empty());
    }

    #[test]
    fn parking_is_bounded() {
        let mut parked = Parked::default();
        for i in 0..MAX_PARKED {
            assert!(parked.park("a.com", 100, i));
        }
        assert!(parked.is_full());
        assert!(!parked.park("a.com", 100, MAX_PARKED));
        assert_eq!(parked.len(), MAX_PARKED);
    }
}
