//! The verdict cache: scorer verdicts kept in proxy-wasm shared data, so every Envoy worker
//! sees what any worker learned. The store is reached through the small [`SharedStore`] trait
//! (the glue implements it with `get_shared_data`/`set_shared_data`, tests with a map).
//!
//! Shared data cannot delete keys, so the size bound is built in: the cache is direct-mapped
//! onto `max_entries` slot keys (`dohguard/cache/<n>`), each slot holding one entry together
//! with its full key. A new entry replaces whatever shared its slot; the number of keys the
//! cache ever creates is at most `max_entries`. Expiry is checked on read against the time the
//! caller passes in, so the logic is testable without a clock.

use dohguard_core::contract::{Reason, Scope, ScoreReply, Verdict};
use dohguard_core::name::registered_domain;

/// Shared key-value storage as proxy-wasm offers it.
pub trait SharedStore {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores a value; a failure is reported but never fatal to the caller.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), String>;
}

/// A verdict found in the cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachedVerdict {
    pub verdict: Verdict,
    pub reason: Reason,
    pub score: f32,
    pub scope: Scope,
}

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 16;

pub struct VerdictCache<'a, S: SharedStore> {
    store: &'a S,
    max_entries: u32,
    max_ttl: u32,
}

impl<'a, S: SharedStore> VerdictCache<'a, S> {
    pub fn new(store: &'a S, max_entries: u32, max_ttl: u32) -> Self {
        VerdictCache {
            store,
            max_entries,
            max_ttl,
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// Looks up the exact name, then its registered domain.
    pub fn lookup(&self, name: &str, now_ms: u64) -> Option<CachedVerdict> {
        if !self.enabled() {
            return None;
        }
        self.get(&entry_key(Scope::Name, name), now_ms)
            .map(|(v, r, s)| (v, r, s, Scope::Name))
            .or_else(|| {
                let rd = registered_domain(name)?;
                self.get(&entry_key(Scope::RegisteredDomain, rd), now_ms)
                    .map(|(v, r, s)| (v, r, s, Scope::RegisteredDomain))
            })
            .map(|(verdict, reason, score, scope)| CachedVerdict {
                verdict,
                reason,
                score,
                scope,
            })
    }

    /// Stores a scorer reply for `name` under the scope the reply names, for
    /// `min(reply.ttl, max_ttl)` seconds. A zero TTL stores nothing.
    pub fn insert(&self, name: &str, reply: &ScoreReply, now_ms: u64) -> Result<(), String> {
        let ttl = reply.ttl.min(self.max_ttl);
        if !self.enabled() || ttl == 0 {
            return Ok(());
        }
        // The registered domain is recomputed here rather than taken from the reply, so the
        // key always matches what `lookup` computes.
        let key = match (reply.scope, registered_domain(name)) {
            (Scope::RegisteredDomain, Some(rd)) => entry_key(Scope::RegisteredDomain, rd),
            _ => entry_key(Scope::Name, name),
        };
        let expires = now_ms.saturating_add(u64::from(ttl) * 1000);
        let mut value = Vec::with_capacity(HEADER_LEN + key.len());
        value.push(FORMAT_VERSION);
        value.push(verdict_code(reply.verdict));
        value.push(reason_code(reply.reason));
        value.push(0);
        value.extend_from_slice(&expires.to_le_bytes());
        value.extend_from_slice(&reply.score.to_le_bytes());
        value.extend_from_slice(key.as_bytes());
        self.store.set(&self.slot(&key), &value)
    }

    fn get(&self, key: &str, now_ms: u64) -> Option<(Verdict, Reason, f32)> {
        let value = self.store.get(&self.slot(key))?;
        if value.len() < HEADER_LEN
            || value[0] != FORMAT_VERSION
            || &value[HEADER_LEN..] != key.as_bytes()
        {
            return None;
        }
        let expires = u64::from_le_bytes(value[4..12].try_into().ok()?);
        if now_ms >= expires {
            return None;
        }
        let score = f32::from_le_bytes(value[12..16].try_into().ok()?);
        Some((verdict_from(value[1])?, reason_from(value[2])?, score))
    }

    /// `dohguard/cache/<n>`. Keys are built with pushes and `itoa` rather than `format!`:
    /// a lookup builds up to four of them per request.
    fn slot(&self, key: &str) -> String {
        const PREFIX: &str = "dohguard/cache/";
        let index = fnv1a(key.as_bytes()) % u64::from(self.max_entries);
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(index);
        let mut slot = String::with_capacity(PREFIX.len() + digits.len());
        slot.push_str(PREFIX);
        slot.push_str(digits);
        slot
    }
}

fn entry_key(scope: Scope, name: &str) -> String {
    let prefix = match scope {
        Scope::Name => "n:",
        Scope::RegisteredDomain => "d:",
    };
    let mut key = String::with_capacity(prefix.len() + name.len());
    key.push_str(prefix);
    key.push_str(name);
    key
}

/// FNV-1a: a slot index must be the same in every VM copy and every build, which std's
/// hashers do not promise; eight lines do not warrant a dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct MapStore(pub RefCell<HashMap<String, Vec<u8>>>);

    impl SharedStore for MapStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
            self.0.borrow_mut().insert(key.to_owned(), value.to_vec());
            Ok(())
        }
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
        }
    }

    #[test]
    fn name_scope_covers_only_that_name() {
        let store = MapStore::default();
        let cache = VerdictCache::new(&store, 1024, 3600);
        cache
            .insert(
                "a.evil.com",
                &reply("a.evil.com", Verdict::Block, Scope::Name, 60),
                0,
            )
            .unwrap();
        let hit = cache.lookup("a.evil.com", 1000).unwrap();
        assert_eq!(
            (hit.verdict, hit.reason, hit.scope),
            (Verdict::Block, Reason::Model, Scope::Name)
        );
        assert!((hit.score - 0.97).abs() < 1e-6);
        assert_eq!(cache.lookup("b.evil.com", 1000), None);
    }

    #[test]
    fn registered_domain_scope_covers_subdomains() {
        let store = MapStore::default();
        let cache = VerdictCache::new(&store, 1024, 3600);
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
    fn exact_name_wins_over_registered_domain() {
        let store = MapStore::default();
        let cache = VerdictCache::new(&store, 1024, 3600);
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
        let cache = VerdictCache::new(&store, 1024, 10);
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
        let cache = VerdictCache::new(&store, 8, 60);
        for i in 0..500 {
            let name = format!("n{i}.com");
            cache
                .insert(&name, &reply(&name, Verdict::Allow, Scope::Name, 60), 0)
                .unwrap();
            assert!(cache.lookup(&name, 0).is_some(), "latest entry is readable");
        }
        assert!(store.0.borrow().len() <= 8);
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let store = MapStore::default();
        let cache = VerdictCache::new(&store, 0, 60);
        cache
            .insert("a.com", &reply("a.com", Verdict::Block, Scope::Name, 60), 0)
            .unwrap();
        assert!(store.0.borrow().is_empty());
        assert_eq!(cache.lookup("a.com", 0), None);
    }

    #[test]
    fn corrupt_slots_are_misses() {
        let store = MapStore::default();
        let cache = VerdictCache::new(&store, 1, 60);
        store
            .0
            .borrow_mut()
            .insert("dohguard/cache/0".into(), vec![1, 9, 9]);
        assert_eq!(cache.lookup("a.com", 0), None);
        store
            .0
            .borrow_mut()
            .insert("dohguard/cache/0".into(), vec![7; 40]);
        assert_eq!(cache.lookup("a.com", 0), None);
    }
}
