//! Scorer callouts in flight in one VM, by name: the first request that misses the cache for a
//! name makes the callout (the leader), later ones for the same name join it and wait for that
//! one answer instead of making their own. One VM runs on one Envoy worker thread; across
//! workers [`crate::pending`] does the same through shared data.

use std::collections::HashMap;

/// Requests waiting for a callout, keyed by the name it asks about. `W` is what a waiting
/// request needs to be answered later (its context id and query).
#[derive(Debug)]
pub struct InFlight<W> {
    by_name: HashMap<String, Vec<W>>,
}

impl<W> Default for InFlight<W> {
    fn default() -> Self {
        InFlight {
            by_name: HashMap::new(),
        }
    }
}

impl<W> InFlight<W> {
    /// Whether a callout for `name` is in flight.
    pub fn is_flying(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Records that the caller made the callout for `name`.
    pub fn lead(&mut self, name: &str) {
        self.by_name.entry(name.to_owned()).or_default();
    }

    /// Adds a waiting request to the callout for `name`; false (and the waiter dropped) when
    /// there is none: check [`InFlight::is_flying`] first.
    pub fn join(&mut self, name: &str, waiter: W) -> bool {
        match self.by_name.get_mut(name) {
            Some(waiters) => {
                waiters.push(waiter);
                true
            }
            None => false,
        }
    }

    /// The callout for `name` ended (answered, failed, or its leader went away): the requests
    /// that waited for it.
    pub fn land(&mut self, name: &str) -> Vec<W> {
        self.by_name.remove(name).unwrap_or_default()
    }

    /// A waiting request went away (its stream ended) before the answer came.
    pub fn leave(&mut self, name: &str, gone: impl Fn(&W) -> bool) {
        if let Some(waiters) = self.by_name.get_mut(name) {
            waiters.retain(|w| !gone(w));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_leads_and_later_ones_wait_for_its_answer() {
        let mut flights = InFlight::default();
        assert!(!flights.join("a.com", 2), "nothing to join yet");
        flights.lead("a.com");
        assert!(flights.is_flying("a.com"));
        assert!(flights.join("a.com", 3));
        assert!(flights.join("a.com", 4));
        assert!(!flights.join("b.com", 5), "another name is not joined");
        flights.leave("a.com", |w| *w == 3);
        assert_eq!(flights.land("a.com"), vec![4]);
        assert!(!flights.is_flying("a.com"));
        assert!(flights.land("a.com").is_empty());
    }
}
