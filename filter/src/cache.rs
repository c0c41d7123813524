//! The verdict cache: scorer verdicts kept in proxy-wasm shared data, so every Envoy worker
//! sees what any worker learned. The store is reached through the small [`SharedStore`] trait
//! (the glue implements it with `get_shared_data`/`set_shared_data`, tests with a map).
//!
//! Shared data cannot delete keys, so the size bound is built in: the cache is
//! set-associative, `max_entries` rounded up to whole sets of [`WAYS`] entries, one shared-data
//! key per set (`dohguard/cache/<n>`) holding up to [`WAYS`] fixed-size entries. A name lands in
//! the set a keyed hash picks (SipHash-1-3, 128 bits: one half picks the set, the other is the
//! entry's tag), so a client cannot craft names that crowd out a chosen verdict: without the
//! key it cannot tell which names share a set. A full set evicts its entry that expires
//! first. The key is random per deployment: the first VM stores it in shared data
//! ([`shared_key`]) and every VM reads it from there. Writes go through compare-and-swap, so
//! two workers filling one set at once do not lose each other's entries (except when both
//! create the set: Envoy's CAS does not guard a key that does not exist yet, so one entry
//! can be lost once per set). Expiry is checked on
//! read against the time the caller passes in, so the logic is testable without a clock.
//!
//! Tunnel-suspect names (`dohguard_core::features::tunnel::suspect`: long or random subdomain
//! labels) are judged one by one: a registered-domain entry answers them only when it blocks,
//! and a verdict for one that does not block is stored for that name only. Otherwise an
//! allowed `tunnel-base.example` would answer every exfiltration query under it unscored.

use std::hash::Hasher;

use dohguard_core::contract::{Detector, Reason, Scope, ScoreReply, Verdict};
use dohguard_core::features::tunnel;
use dohguard_core::name::registered_domain;
use siphasher::sip128::{Hasher128, SipHasher13};
use thiserror::Error;

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer changed the value since it was read.
    #[error("changed by another writer")]
    CasMismatch,
    #[error("shared data refused the write: {0}")]
    Host(String),
}

/// Shared key-value storage as proxy-wasm offers it: values carry a CAS token.
pub trait SharedStore {
    /// The value and its CAS token.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Stores a value; `cas` 0 writes unconditionally, any other value only while the stored
    /// value still carries that token.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

/// A verdict found in the cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachedVerdict {
    pub verdict: Verdict,
    pub reason: Reason,
    pub score: f32,
    pub scope: Scope,
    /// The detector of a model verdict, when the scorer named one.
    pub detector: Option<Detector>,
}

/// The SipHash key of the cache (16 random bytes, the same in every VM of a deployment).
pub type HashKey = [u8; 16];

/// Entries per set. 32 keeps a working set of half the capacity within the sets: at an
/// average of 16 per set, a set overflows with probability about 1e-4.
pub const WAYS: u32 = 32;
/// Where the hash key is kept in shared data.
pub const KEY_SLOT: &str = "dohguard/cache/key";
const FORMAT_VERSION: u8 = 2;
/// tag u64 | expires_ms u64 | score f32 | verdict u8 | reason u8 | detector u8 (0 = none,
/// which is what entries written before detectors carry) | 1 reserved byte.
const ENTRY_LEN: usize = 24;
/// Compare-and-swap attempts before an insert gives up (another worker kept winning).
const CAS_ATTEMPTS: usize = 4;

/// Why a verdict could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CacheError {
    #[error("set {set} kept changing under {CAS_ATTEMPTS} attempts")]
    Contended { set: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The cache key each VM must use: the one in shared data, or else `fresh` (random bytes),
/// stored there for the others. Shared data has no "create if absent", so two VMs starting
/// at the same instant may both write; each reads back what is stored and uses that, and a
/// VM that lost such a race picks the stored key up with [`stored_key`] on its next insert.
pub fn shared_key<S: SharedStore>(store: &S, fresh: impl FnOnce() -> HashKey) -> HashKey {
    if let Some(key) = stored_key(store) {
        return key;
    }
    let key = fresh();
    // A failed write leaves this VM with its own key: its entries are then private to it.
    let _ = store.set(KEY_SLOT, &key, 0);
    stored_key(store).unwrap_or(key)
}

/// The key entries are placed and tagged with after the cache flush `generation`
/// (`OverrideSet::cache_generation`; 0: never flushed, the stored key itself). A flush changes
/// every name's set and tag, so nothing cached before it is found again; those entries are
/// overwritten as their sets fill or they expire. Shared data cannot delete keys, and wiping
/// every set from one worker would race the others' inserts: a new key needs neither.
pub fn effective_key(stored: HashKey, generation: u64) -> HashKey {
    if generation == 0 {
        return stored;
    }
    let mut hasher = SipHasher13::new_with_key(&stored);
    hasher.write(b"dohguard/cache/flush");
    hasher.write_u64(generation);
    hasher.finish128().as_bytes()
}

/// The key in shared data, if one is stored.
pub fn stored_key<S: SharedStore>(store: &S) -> Option<HashKey> {
    store.get(KEY_SLOT)?.0.try_into().ok()
}

/// One entry of a set, as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    tag: u64,
    expires_ms: u64,
    score: f32,
    verdict: Verdict,
    reason: Reason,
    detector: Option<Detector>,
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&self.expires_ms.to_le_bytes());
        out.extend_from_slice(&self.score.to_le_bytes());
        out.extend_from_slice(&[
            verdict_code(self.verdict),
            reason_code(self.reason),
            detector_code(self.detector),
            0,
        ]);
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        Some(Entry {
            tag: word(0),
            expires_ms: word(8),
            score: f32::from_le_bytes(bytes[16..20].try_into().ok()?),
            verdict: verdict_from(bytes[20])?,
            reason: reason_from(bytes[21])?,
            detector: detector_from(bytes[22])?,
        })
    }
}

/// The entries of a set value; `None` for a value this version did not write.
fn entries(value: &[u8]) -> Option<std::slice::ChunksExact<'_, u8>> {
    let (&version, body) = value.split_first()?;
    (version == FORMAT_VERSION && body.len() % ENTRY_LEN == 0).then(|| body.chunks_exact(ENTRY_LEN))
}

pub struct VerdictCache<'a, S: SharedStore> {
    store: &'a S,
    sets: u32,
    ways: u32,
    max_ttl: u32,
    key: HashKey,
}

impl<'a, S: SharedStore> VerdictCache<'a, S> {
    /// A cache of at least `max_entries` verdicts (0 turns it off), rounded up to whole sets.
    pub fn new(store: &'a S, max_entries: u32, max_ttl: u32, key: HashKey) -> Self {
        let ways = max_entries.min(WAYS);
        VerdictCache {
            store,
            sets: max_entries.div_ceil(ways.max(1)),
            ways,
            max_ttl,
            key,
        }
    }

    pub fn enabled(&self) -> bool {
        self.sets > 0
    }

    /// How many verdicts fit (`max_entries` rounded up to whole sets).
    pub fn capacity(&self) -> u64 {
        u64::from(self.sets) * u64::from(self.ways)
    }

    /// Looks up the exact name, then its registered domain. A registered-domain entry that
    /// does not block answers only names that are not tunnel-suspect.
    pub fn lookup(&self, name: &str, now_ms: u64) -> Option<CachedVerdict> {
        if !self.enabled() {
            return None;
        }
        if let Some(hit) = self.found(Scope::Name, name, now_ms) {
            return Some(hit);
        }
        let rd = registered_domain(name)?;
        self.found(Scope::RegisteredDomain, rd, now_ms)
            .filter(|hit| hit.verdict == Verdict::Block || !tunnel::suspect_under(name, rd))
    }

    fn found(&self, scope: Scope, subject: &str, now_ms: u64) -> Option<CachedVerdict> {
        self.get(scope, subject, now_ms).map(|e| CachedVerdict {
            verdict: e.verdict,
            reason: e.reason,
            score: e.score,
            scope,
            detector: e.detector,
        })
    }

    /// The scope and subject a reply for `name` is stored under: the registered domain when
    /// the scorer scoped it so and its registered domain is the filter's own (their public
    /// suffix lists may differ), unless the name is tunnel-suspect and the verdict does not
    /// block; otherwise `name` itself.
    fn key_for<'n>(name: &'n str, reply: &ScoreReply) -> (Scope, &'n str) {
        match registered_domain(name) {
            Some(rd)
                if reply.scope == Scope::RegisteredDomain
                    && reply.registered_domain.as_deref() == Some(rd)
                    && (reply.verdict == Verdict::Block || !tunnel::suspect_under(name, rd)) =>
            {
                (Scope::RegisteredDomain, rd)
            }
            _ => (Scope::Name, name),
        }
    }

    /// Stores a scorer reply for `name` for `min(reply.ttl, max_ttl)` seconds (a zero TTL
    /// stores nothing), and returns the scope it was stored under ([`Self::key_for`]).
    pub fn insert(&self, name: &str, reply: &ScoreReply, now_ms: u64) -> Result<Scope, CacheError> {
        let ttl = reply.ttl.min(self.max_ttl);
        let (scope, subject) = Self::key_for(name, reply);
        if !self.enabled() || ttl == 0 {
            return Ok(scope);
        }
        let (set, tag) = self.locate(scope, subject);
        let entry = Entry {
            tag,
            expires_ms: now_ms.saturating_add(u64::from(ttl) * 1000),
            score: reply.score,
            verdict: reply.verdict,
            reason: reply.reason,
            detector: reply.detector,
        };
        let slot = slot_name(set);
        for _ in 0..CAS_ATTEMPTS {
            let (old, cas) = self.store.get(&slot).unwrap_or_default();
            let mut kept: Vec<Entry> = entries(&old)
                .into_iter()
                .flatten()
                .filter_map(Entry::decode)
                .filter(|e| e.tag != tag && e.expires_ms > now_ms)
                .collect();
            if kept.len() >= self.ways as usize {
                // Full: the entry that would expire first makes room.
                kept.sort_by_key(|e| std::cmp::Reverse(e.expires_ms));
                kept.truncate(self.ways as usize - 1);
            }
            kept.push(entry);
            let mut value = Vec::with_capacity(1 + kept.len() * ENTRY_LEN);
            value.push(FORMAT_VERSION);
            kept.iter().for_each(|e| e.encode(&mut value));
            match self.store.set(&slot, &value, cas) {
                Ok(()) => return Ok(scope),
                Err(StoreError::CasMismatch) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(CacheError::Contended { set })
    }

    fn get(&self, scope: Scope, subject: &str, now_ms: u64) -> Option<Entry> {
        let (set, tag) = self.locate(scope, subject);
        let (value, _) = self.store.get(&slot_name(set))?;
        entries(&value)?
            .find(|bytes| bytes[..8] == tag.to_le_bytes())
            .and_then(Entry::decode)
            .filter(|e| now_ms < e.expires_ms)
    }

    /// The set and the tag of a scoped name: the two halves of its keyed 128-bit hash.
    fn locate(&self, scope: Scope, subject: &str) -> (u64, u64) {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write_u8(match scope {
            Scope::Name => b'n',
            Scope::RegisteredDomain => b'd',
        });
        hasher.write(subject.as_bytes());
        let hash = hasher.finish128();
        (hash.h1 % u64::from(self.sets), hash.h2)
    }
}

/// `dohguard/cache/<n>`, built with pushes and `itoa` rather than `format!`: a lookup builds
/// up to two of them per request.
fn slot_name(set: u64) -> String {
    const PREFIX: &str = "dohguard/cache/";
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(set);
    let mut slot = String::with_capacity(PREFIX.len() + digits.len());
    slot.push_str(PREFIX);
    slot.push_str(digits);
    slot
}

fn verdict_code(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => 0,
        Verdict::Monitor => 1,
        Verdict::Block => 2,
    }
}

fn verdict_from(code: u8) -> Option<Verdict> {
    [Verdict::Allow, Verdict::Monitor, Verdict::Block]
        .get(usize::from(code))
        .copied()
}

fn reason_code(r: Reason) -> u8 {
    match r {
        Reason::AllowList => 0,
        Reason::DenyList => 1,
        Reason::Model => 2,
    }
}

fn reason_from(code: u8) -> Option<Reason> {
    [Reason::AllowList, Reason::DenyList, Reason::Model]
        .get(usize::from(code))
        .copied()
}

fn detector_code(d: Option<Detector>) -> u8 {
    match d {
        None => 0,
        Some(Detector::Dga) => 1,
        Some(Detector::Tunnel) => 2,
        Some(Detector::Lookalike) => 3,
    }
}

/// `Some(None)` for code 0 (no detector); `None` for a code this version does not know.
fn detector_from(code: u8) -> Option<Option<Detector>> {
    [
        None,
        Some(Detector::Dga),
        Some(Detector::Tunnel),
        Some(Detector::Lookalike),
    ]
    .get(usize::from(code))
    .copied()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Shared data as a map, with CAS tokens as the host keeps them.
    #[derive(Default)]
    pub struct MapStore(pub RefCell<HashMap<String, (Vec<u8>, u32)>>, RefCell<u32>);

    impl SharedStore for MapStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            let mut map = self.0.borrow_mut();
            if let Some((_, current)) = map.get(key) {
                if cas != 0 && cas != *current {
                    return Err(StoreError::CasMismatch);
                }
            }
            *self.1.borrow_mut() += 1;
            map.insert(key.to_owned(), (value.to_vec(), *self.1.borrow()));
            Ok(())
        }
    }

    pub const KEY: HashKey = *b"0123456789abcdef";

    pub fn cache(store: &MapStore, max_entries: u32, max_ttl: u32) -> VerdictCache<'_, MapStore> {
        VerdictCache::new(store, max_entries, max_ttl, KEY)
    }

    pub fn reply(name: &str, verdict: Verdict, scope: Scope, ttl: u32) -> ScoreReply {
        ScoreReply {
            name: name.into(),
            registered_domain: registered_domain(name).map(str::to_owned),
            score: 0.97,
            verdict,
            reason: Reason::Model,
            scope,
            model_version: "test".into(),
            ttl,
            detector: None,
        }
    }

    /// The slot the cache before this design used: unkeyed FNV-1a of `n:<name>` modulo
    /// `max_entries`, one entry per slot. Kept here to craft collisions against it.
    fn old_slot(name: &str, max_entries: u64) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in b"n:".iter().chain(name.as_bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash % max_entries
    }

    #[test]
    fn name_scope_covers_only_that_name() {
        let store = MapStore::default();
        let cache = cache(&store, 1024, 3600);
        let scope = cache
            .insert(
                "a.evil.com",
                &reply("a.evil.com", Verdict::Block, Scope::Name, 60),
                0,
            )
            .unwrap();
        assert_eq!(scope, Scope::Name);
        let hit = cache.lookup("a.evil.com", 1000).unwrap();
        assert_eq!(
            (hit.verdict, hit.reason, hit.scope),
            (Verdict::Block, Reason::Model, Scope::Name)
        );
        assert!((hit.score - 0.97).abs() < 1e-6);
        assert_eq!(cache.lookup("b.evil.com", 1000), None);
    }

    const TUNNEL_NAME: &str = "labowcwlabvnya30qfedax4gk0gtykda.t.example.com";

    #[test]
    fn an_allowed_registered_domain_does_not_answer_tunnel_suspect_names() {
        let store = MapStore::default();
        let cache = cache(&store, 1024, 3600);
        let allow = reply(
            "www.example.com",
            Verdict::Allow,
            Scope::RegisteredDomain,
            60,
        );
        assert_eq!(
            cache.insert("www.example.com", &allow, 0).unwrap(),
            Scope::RegisteredDomain
        );
        assert!(cache.lookup("mail.example.com", 0).is_some());
        assert_eq!(
            cache.lookup(TUNNEL_NAME, 0),
            None,
            "a suspect name is looked up by its exact name only"
        );
        // A suspect name's own allow covers that name, not the domain.
        let mut own = reply(TUNNEL_NAME, Verdict::Allow, Scope::RegisteredDomain, 60);
        own.detector = Some(Detector::Tunnel);
        let other = reply("other.com", Verdict::Allow, Scope::Name, 60);
        let fresh = MapStore::default();
        let c2 = super::VerdictCache::new(&fresh, 1024, 3600, KEY);
        assert_eq!(c2.insert(TUNNEL_NAME, &own, 0).unwrap(), Scope::Name);
        assert!(c2.lookup("www.example.com", 0).is_none());
        let hit = c2.lookup(TUNNEL_NAME, 0).unwrap();
        assert_eq!(hit.detector, Some(Detector::Tunnel), "the detector is kept");
        assert_eq!(c2.insert("other.com", &other, 0).unwrap(), Scope::Name);
    }

    #[test]
    fn a_blocked_registered_domain_answers_tunnel_suspect_names_too() {
        let store = MapStore::default();
        let cache = cache(&store, 1024, 3600);
        let mut block = reply(TUNNEL_NAME, Verdict::Block, Scope::RegisteredDomain, 60);
        block.detector = Some(Detector::Tunnel);
        assert_eq!(
            cache.insert(TUNNEL_NAME, &block, 0).unwrap(),
            Scope::RegisteredDomain
        );
        let other_tunnel = "mrqxiyjaon2gk43u.post.t.example.com";
        assert!(dohguard_core::features::tunnel::suspect(other_tunnel));
        for name in [other_tunnel, "www.example.com"] {
            let hit = cache.lookup(name, 0).unwrap();
            assert_eq!(
                (hit.verdict, hit.scope, hit.detector),
                (
                    Verdict::Block,
                    Scope::RegisteredDomain,
                    Some(Detector::Tunnel)
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn registered_domain_scope_covers_subdomains() {
        let store = MapStore::default();
        let cache = cache(&store, 1024, 3600);
        cache
            .insert(
                "x.dga.co.uk",
                &reply("x.dga.co.uk", Verdict::Block, Scope::RegisteredDomain, 60),
                0,
            )
            .unwrap();
        for name in ["dga.co.uk", "y.dga.co.uk", "a.b.dga.co.uk"] {
            let hit = cache.lookup(name, 0).unwrap();
            assert_eq!(hit.scope, Scope::RegisteredDomain, "{name}");
        }
        assert_eq!(cache.lookup("other.co.uk", 0), None);
    }

    #[test]
    fn a_registered_domain_the_filter_disagrees_with_is_cached_for_the_name() {
        // The scorer's suffix list makes `b.example.com` the registered domain; the filter's
        // says `example.com`. Neither domain may be covered on the scorer's word.
        let store = MapStore::default();
        let cache = cache(&store, 1024, 3600);
        let mut disagreeing = reply(
            "a.b.example.com",
            Verdict::Block,
            Scope::RegisteredDomain,
            60,
        );
        disagreeing.registered_domain = Some("b.example.com".into());
        let scope = cache.insert("a.b.example.com", &disagreeing, 0).unwrap();
        assert_eq!(scope, Scope::Name);
        assert_eq!(
            cache.lookup("a.b.example.com", 0).unwrap().scope,
            Scope::Name
        );
        for other in ["c.b.example.com", "b.example.com", "x.example.com"] {
            assert_eq!(cache.lookup(other, 0), None, "{other}");
        }
        // No registered domain at all (the scorer saw a public suffix): name scope too.
        let mut none = reply("z.example.org", Verdict::Block, Scope::RegisteredDomain, 60);
        none.registered_domain = None;
        assert_eq!(
            cache.insert("z.example.org", &none, 0).unwrap(),
            Scope::Name
        );
        assert_eq!(cache.lookup("y.example.org", 0), None);
    }

    #[test]
    fn exact_name_wins_over_registered_domain() {
        let store = MapStore::default();
        let cache = cache(&store, 1024, 3600);
        cache
            .insert(
                "a.x.com",
                &reply("a.x.com", Verdict::Block, Scope::RegisteredDomain, 60),
                0,
            )
            .unwrap();
        cache
            .insert(
                "ok.x.com",
                &reply("ok.x.com", Verdict::Allow, Scope::Name, 60),
                0,
            )
            .unwrap();
        assert_eq!(cache.lookup("ok.x.com", 0).unwrap().verdict, Verdict::Allow);
        assert_eq!(cache.lookup("z.x.com", 0).unwrap().verdict, Verdict::Block);
    }

    #[test]
    fn entries_expire_and_ttl_is_capped() {
        let store = MapStore::default();
        let cache = cache(&store, 1024, 10);
        cache
            .insert(
                "a.com",
                &reply("a.com", Verdict::Block, Scope::Name, 3600),
                5_000,
            )
            .unwrap();
        assert!(cache.lookup("a.com", 14_999).is_some());
        assert!(
            cache.lookup("a.com", 15_000).is_none(),
            "max_ttl 10 s caps the 3600 s ttl"
        );
        cache
            .insert("b.com", &reply("b.com", Verdict::Block, Scope::Name, 0), 0)
            .unwrap();
        assert!(store.0.borrow().len() == 1, "ttl 0 is not stored");
    }

    #[test]
    fn size_is_bounded_by_max_entries() {
        let store = MapStore::default();
        let cache = cache(&store, 64, 60);
        assert_eq!(cache.capacity(), 64);
        for i in 0..500 {
            let name = format!("n{i}.com");
            cache
                .insert(&name, &reply(&name, Verdict::Allow, Scope::Name, 60), 0)
                .unwrap();
            assert!(cache.lookup(&name, 0).is_some(), "latest entry is readable");
        }
        let map = store.0.borrow();
        assert_eq!(map.len(), 2, "64 entries are two sets of 32");
        let stored: usize = map.values().map(|(v, _)| (v.len() - 1) / ENTRY_LEN).sum();
        assert_eq!(stored, 64);
        assert_eq!(cache.capacity(), 64);
        assert_eq!(VerdictCache::new(&store, 100, 60, KEY).capacity(), 128);
        assert_eq!(VerdictCache::new(&store, 5, 60, KEY).capacity(), 5);
    }

    #[test]
    fn half_the_capacity_stays_cached() {
        // The working set of the issue: half the default capacity, every name inserted
        // once, then all looked up again.
        let store = MapStore::default();
        let cache = cache(&store, 65_536, 86_400);
        let names: Vec<String> = (0..32_768)
            .map(|i| format!("w{i}.example{}.com", i % 97))
            .collect();
        for name in &names {
            cache
                .insert(name, &reply(name, Verdict::Allow, Scope::Name, 3600), 0)
                .unwrap();
        }
        let misses = names
            .iter()
            .filter(|n| cache.lookup(n, 1).is_none())
            .count();
        assert!(
            misses * 1000 <= names.len(),
            "{misses} of {} missed",
            names.len()
        );
    }

    #[test]
    fn names_crafted_to_collide_do_not_evict_a_chosen_entry() {
        let store = MapStore::default();
        let max_entries = 1024;
        let cache = cache(&store, max_entries, 3600);
        let victim = "victim.example.com";
        cache
            .insert(victim, &reply(victim, Verdict::Block, Scope::Name, 3600), 0)
            .unwrap();
        // 300 names that all shared the victim's slot under the old unkeyed hash: any one of
        // them evicted it there.
        let target = old_slot(victim, u64::from(max_entries));
        let crafted: Vec<String> = (0u64..)
            .map(|i| format!("x{i}.attacker.test"))
            .filter(|n| old_slot(n, u64::from(max_entries)) == target)
            .take(300)
            .collect();
        for name in &crafted {
            cache
                .insert(name, &reply(name, Verdict::Allow, Scope::Name, 3600), 0)
                .unwrap();
        }
        let hit = cache
            .lookup(victim, 1)
            .expect("the victim survives the crafted names");
        assert_eq!(hit.verdict, Verdict::Block);
        // They spread over the sets instead.
        let crafted_sets: std::collections::HashSet<u64> = crafted
            .iter()
            .map(|n| cache.locate(Scope::Name, n).0)
            .collect();
        assert!(crafted_sets.len() > 20, "{} sets", crafted_sets.len());
    }

    #[test]
    fn a_full_set_evicts_within_itself_only() {
        // Even names that do land in the victim's set (found here with the key, which a client
        // does not have) evict only that set's earliest-expiring entry.
        let store = MapStore::default();
        let cache = cache(&store, 4096, 3600);
        let victim = "victim.example.com";
        cache
            .insert(victim, &reply(victim, Verdict::Block, Scope::Name, 3600), 0)
            .unwrap();
        let set = cache.locate(Scope::Name, victim).0;
        let same_set: Vec<String> = (0u64..)
            .map(|i| format!("y{i}.attacker.test"))
            .filter(|n| cache.locate(Scope::Name, n).0 == set)
            .take(WAYS as usize - 1)
            .collect();
        for name in &same_set {
            // Shorter-lived than the victim.
            cache
                .insert(name, &reply(name, Verdict::Allow, Scope::Name, 60), 0)
                .unwrap();
        }
        assert!(cache.lookup(victim, 1).is_some(), "31 others fit beside it");
        let intruder = (0u64..)
            .map(|i| format!("z{i}.attacker.test"))
            .find(|n| cache.locate(Scope::Name, n).0 == set)
            .unwrap();
        cache
            .insert(
                &intruder,
                &reply(&intruder, Verdict::Allow, Scope::Name, 60),
                0,
            )
            .unwrap();
        assert!(
            cache.lookup(victim, 1).is_some(),
            "the earliest expiry went, not the victim"
        );
        assert!(cache.lookup(&intruder, 1).is_some());
    }

    #[test]
    fn a_flush_generation_hides_every_verdict_cached_before_it() {
        let store = MapStore::default();
        let before = VerdictCache::new(&store, 4096, 3600, effective_key(KEY, 0));
        assert_eq!(effective_key(KEY, 0), KEY);
        for i in 0..200 {
            let name = format!("n{i}.example.com");
            before
                .insert(&name, &reply(&name, Verdict::Block, Scope::Name, 600), 0)
                .unwrap();
        }
        let flushed = effective_key(KEY, 1_700_000_000_000);
        assert_ne!(flushed, KEY);
        assert_eq!(
            flushed,
            effective_key(KEY, 1_700_000_000_000),
            "every worker derives the same key"
        );
        let after = VerdictCache::new(&store, 4096, 3600, flushed);
        for i in 0..200 {
            let name = format!("n{i}.example.com");
            assert!(before.lookup(&name, 1).is_some());
            assert_eq!(after.lookup(&name, 1), None, "{name} survived the flush");
        }
        after
            .insert(
                "n0.example.com",
                &reply("n0.example.com", Verdict::Allow, Scope::Name, 600),
                2,
            )
            .unwrap();
        assert_eq!(
            after.lookup("n0.example.com", 3).unwrap().verdict,
            Verdict::Allow
        );
    }

    #[test]
    fn a_different_key_places_names_elsewhere() {
        let store = MapStore::default();
        let a = VerdictCache::new(&store, 65_536, 60, KEY);
        let b = VerdictCache::new(&store, 65_536, 60, *b"fedcba9876543210");
        let moved = (0..100)
            .map(|i| format!("n{i}.com"))
            .filter(|n| a.locate(Scope::Name, n) != b.locate(Scope::Name, n))
            .count();
        assert_eq!(moved, 100);
    }

    #[test]
    fn the_first_key_stored_is_the_one_every_vm_uses() {
        let store = MapStore::default();
        assert_eq!(stored_key(&store), None);
        let first = shared_key(&store, || KEY);
        let second = shared_key(&store, || *b"another-key-0000");
        assert_eq!((first, second), (KEY, KEY));
        // A VM that raced and overwrote it: the others pick the stored key up on re-reading.
        store.set(KEY_SLOT, b"racer-key-000000", 0).unwrap();
        assert_eq!(stored_key(&store), Some(*b"racer-key-000000"));
    }

    #[test]
    fn concurrent_writers_to_one_set_keep_both_entries() {
        // A store whose first write to a set loses a race to another worker's entry.
        struct Racing<'a>(&'a MapStore, RefCell<bool>);
        impl SharedStore for Racing<'_> {
            fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
                self.0.get(key)
            }
            fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
                if key != KEY_SLOT && !self.1.replace(true) {
                    let other = cache(self.0, 32, 60);
                    other
                        .insert(
                            "other.com",
                            &reply("other.com", Verdict::Block, Scope::Name, 60),
                            0,
                        )
                        .unwrap();
                }
                self.0.set(key, value, cas)
            }
        }
        let store = MapStore::default();
        // The set exists: Envoy's compare-and-swap only guards a key that is already there.
        cache(&store, 32, 60)
            .insert(
                "first.com",
                &reply("first.com", Verdict::Allow, Scope::Name, 60),
                0,
            )
            .unwrap();
        let racing = Racing(&store, RefCell::new(false));
        let cache_a = VerdictCache::new(&racing, 32, 60, KEY);
        cache_a
            .insert(
                "mine.com",
                &reply("mine.com", Verdict::Allow, Scope::Name, 60),
                0,
            )
            .unwrap();
        assert!(cache_a.lookup("mine.com", 0).is_some());
        assert!(
            cache_a.lookup("other.com", 0).is_some(),
            "the other worker's entry is kept"
        );
        assert!(cache_a.lookup("first.com", 0).is_some());
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let store = MapStore::default();
        let cache = cache(&store, 0, 60);
        cache
            .insert("a.com", &reply("a.com", Verdict::Block, Scope::Name, 60), 0)
            .unwrap();
        assert!(store.0.borrow().is_empty());
        assert_eq!(cache.lookup("a.com", 0), None);
    }

    #[test]
    fn corrupt_sets_are_misses() {
        let store = MapStore::default();
        let cache = cache(&store, 1, 60);
        for value in [vec![1, 9, 9], vec![7; 40], vec![FORMAT_VERSION; 25]] {
            store
                .0
                .borrow_mut()
                .insert("dohguard/cache/0".into(), (value, 1));
            assert_eq!(cache.lookup("a.com", 0), None);
        }
        // And an insert replaces the corrupt value.
        cache
            .insert("a.com", &reply("a.com", Verdict::Block, Scope::Name, 60), 0)
            .unwrap();
        assert!(cache.lookup("a.com", 0).is_some());
    }
}
