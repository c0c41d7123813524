//! The host's clock, under the test's control.
//!
//! Guests read time through `proxy_get_current_time_nanoseconds` (and WASI
//! `clock_time_get`); both read this clock, so a test can move time forward to
//! expire cache entries or HTTP-call deadlines without sleeping. Clones share
//! one time, so several VMs can live on the same clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-21T00:00:00Z, so guests see a plausible wall-clock time.
const DEFAULT_START_NANOS: u64 = 1_795_219_200_000_000_000;

#[derive(Debug, Clone)]
pub struct Clock {
    nanos: Arc<AtomicU64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::starting_at(DEFAULT_START_NANOS)
    }
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn starting_at(unix_nanos: u64) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(unix_nanos)),
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }

    /// Moves the clock to `unix_nanos` if that is later than now (time never runs back).
    pub fn advance_to(&self, unix_nanos: u64) {
        self.nanos.fetch_max(unix_nanos, Ordering::SeqCst);
    }
}
