//! The tunnel session rule: how many tunnel-flagged names each registered domain had in the
//! last `window_s` seconds. A tunnel sends many distinct names under one domain; once
//! `domain_block_names` of them are flagged, the scorer blocks the whole registered domain
//! (docs/contracts.md section 1, "Tunnels"). Bounded: past `max_entries` domains the one
//! flagged longest ago is forgotten.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::TunnelConfig;

#[derive(Debug)]
pub struct TunnelSessions {
    config: TunnelConfig,
    /// Registered domain -> times its flagged names were seen, oldest first.
    domains: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl TunnelSessions {
    pub fn new(config: TunnelConfig) -> Self {
        Self {
            config,
            domains: Mutex::new(HashMap::new()),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.config.window_s)
    }

    fn enabled(&self) -> bool {
        self.config.domain_block_names > 0
    }

    /// Records one flagged name under `domain` at `now`; returns whether the domain is now
    /// blocked (at least `domain_block_names` flagged names within the window).
    pub fn flag(&self, domain: &str, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut domains = self.domains.lock().expect("sessions lock poisoned");
        if !domains.contains_key(domain) && domains.len() >= self.config.max_entries {
            Self::forget_oldest(&mut domains);
        }
        let times = domains.entry(domain.to_owned()).or_default();
        times.push_back(now);
        Self::expire(times, now, self.window());
        // Only the last `domain_block_names` times matter.
        while times.len() > self.config.domain_block_names as usize {
            times.pop_front();
        }
        times.len() >= self.config.domain_block_names as usize
    }

    /// Whether `domain` is blocked at `now` by names flagged earlier.
    pub fn blocked(&self, domain: &str, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let domains = self.domains.lock().expect("sessions lock poisoned");
        domains.get(domain).is_some_and(|times| {
            times
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) < self.window())
                .count()
                >= self.config.domain_block_names as usize
        })
    }

    fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while times
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            times.pop_front();
        }
    }

    fn forget_oldest(domains: &mut HashMap<String, VecDeque<Instant>>) {
        let oldest = domains
            .iter()
            .min_by_key(|(_, times)| times.back().copied())
            .map(|(d, _)| d.clone());
        if let Some(d) = oldest {
            domains.remove(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(k: u32, window_s: u64, max_entries: usize) -> TunnelSessions {
        TunnelSessions::new(TunnelConfig {
            domain_block_names: k,
            window_s,
            max_entries,
        })
    }

    #[test]
    fn k_flags_within_the_window_block_the_domain() {
        let s = sessions(3, 60, 10);
        let t0 = Instant::now();
        assert!(!s.flag("t.example", t0));
        assert!(!s.flag("t.example", t0 + Duration::from_secs(1)));
        assert!(!s.blocked("t.example", t0 + Duration::from_secs(2)));
        assert!(!s.flag("other.example", t0 + Duration::from_secs(2)));
        assert!(s.flag("t.example", t0 + Duration::from_secs(2)));
        assert!(s.blocked("t.example", t0 + Duration::from_secs(3)));
        assert!(!s.blocked("other.example", t0 + Duration::from_secs(3)));
        assert!(
            !s.blocked("t.example", t0 + Duration::from_secs(61)),
            "the first flag left the window"
        );
    }

    #[test]
    fn flags_further_apart_than_the_window_do_not_add_up() {
        let s = sessions(2, 10, 10);
        let t0 = Instant::now();
        assert!(!s.flag("t.example", t0));
        assert!(!s.flag("t.example", t0 + Duration::from_secs(11)));
        assert!(s.flag("t.example", t0 + Duration::from_secs(12)));
    }

    #[test]
    fn zero_turns_the_rule_off_and_the_table_is_bounded() {
        let off = sessions(0, 60, 10);
        let t0 = Instant::now();
        assert!((0..10).all(|_| !off.flag("t.example", t0)));
        assert!(!off.blocked("t.example", t0));
        let small = sessions(5, 60, 2);
        small.flag("a.example", t0);
        small.flag("b.example", t0 + Duration::from_secs(1));
        small.flag("c.example", t0 + Duration::from_secs(2));
        let held = small.domains.lock().unwrap();
        assert_eq!(held.len(), 2);
        assert!(!held.contains_key("a.example"), "the oldest is forgotten");
    }
}
