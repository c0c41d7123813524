//! Log rate limiting: during a scorer outage every callout fails, and one warning each would
//! flood Envoy's log. A [`Throttle`] lets the first warning through, then at most one per
//! interval, which also says how many were held back since the last one. Counters are not
//! affected: they count every failure.

/// How often a throttled warning may be logged.
pub const LOG_INTERVAL_MS: u64 = 10_000;

#[derive(Debug, Clone, Default)]
pub struct Throttle {
    /// When the last line was let through (`None`: never).
    last_ms: Option<u64>,
    /// Warnings held back since then.
    held: u64,
}

impl Throttle {
    /// Called for each warning: `Some(held)` when this one is to be logged, with the number
    /// held back since the last logged one; `None` when it is held back.
    pub fn admit(&mut self, now_ms: u64) -> Option<u64> {
        match self.last_ms {
            Some(last) if now_ms < last.saturating_add(LOG_INTERVAL_MS) => {
                self.held += 1;
                None
            }
            _ => {
                self.last_ms = Some(now_ms);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// The suffix of a logged warning that follows held-back ones.
pub fn held_note(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(
            " ({held} more like it in the last {} s, not logged)",
            LOG_INTERVAL_MS / 1000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_one_per_interval_with_the_count() {
        let mut t = Throttle::default();
        assert_eq!(t.admit(0), Some(0));
        let held = (1..1000).filter(|i| t.admit(*i).is_none()).count();
        assert_eq!(held, 999);
        assert_eq!(t.admit(LOG_INTERVAL_MS - 1), None);
        assert_eq!(t.admit(LOG_INTERVAL_MS), Some(1000));
        assert_eq!(t.admit(LOG_INTERVAL_MS + 1), None);
        assert_eq!(t.admit(5 * LOG_INTERVAL_MS), Some(1));
        assert_eq!(held_note(0), "");
        assert!(held_note(1000).contains("1000 more"));
    }
}
