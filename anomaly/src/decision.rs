//! From model scores to an alert state: an exponentially weighted moving average of the
//! score, compared with the threshold; an anomaly opens when `k` of the last `n` smoothed
//! scores are at or over it and closes when none of the last `n` are (contract 7). While an
//! anomaly is open the detector keeps its peak score and sums the per-feature contributions,
//! so the anomaly is explained by the features that contributed most over its whole span.

use std::collections::VecDeque;

use crate::card::AnomalyCard;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionParams {
    pub threshold: f32,
    pub alpha: f32,
    pub k: usize,
    pub n: usize,
}

impl DecisionParams {
    /// The card's parameters; `threshold` overrides the card's when given.
    pub fn from_card(card: &AnomalyCard, threshold: Option<f32>) -> Self {
        Self {
            threshold: threshold.unwrap_or(card.threshold),
            alpha: card.smoothing.ewma_alpha,
            k: card.hysteresis.k,
            n: card.hysteresis.n,
        }
    }
}

/// What one evaluation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed,
}

#[derive(Debug, Clone)]
pub struct Decider {
    params: DecisionParams,
    smoothed: Option<f32>,
    recent: VecDeque<bool>,
    alerting: bool,
}

impl Decider {
    pub fn new(params: DecisionParams) -> Self {
        Self {
            params,
            smoothed: None,
            recent: VecDeque::with_capacity(params.n),
            alerting: false,
        }
    }

    /// New parameters (a reloaded model); the smoothed score and history are kept.
    pub fn set_params(&mut self, params: DecisionParams) {
        self.params = params;
        while self.recent.len() > params.n {
            self.recent.pop_front();
        }
    }

    pub fn params(&self) -> DecisionParams {
        self.params
    }

    pub fn smoothed(&self) -> Option<f32> {
        self.smoothed
    }

    pub fn alerting(&self) -> bool {
        self.alerting
    }

    /// Feeds one raw score; returns the smoothed score and what changed.
    pub fn observe(&mut self, score: f32) -> (f32, Transition) {
        let p = self.params;
        let smoothed = match self.smoothed {
            Some(prev) if score.is_finite() => p.alpha * score + (1.0 - p.alpha) * prev,
            Some(prev) => prev,
            None => score,
        };
        self.smoothed = Some(smoothed);
        if self.recent.len() == p.n {
            self.recent.pop_front();
        }
        self.recent.push_back(smoothed >= p.threshold);
        let over = self.recent.iter().filter(|o| **o).count();
        let transition = if !self.alerting && over >= p.k {
            self.alerting = true;
            Transition::Opened
        } else if self.alerting && over == 0 && self.recent.len() == p.n {
            self.alerting = false;
            Transition::Closed
        } else {
            Transition::None
        };
        (smoothed, transition)
    }
}

/// Indices of the `top` largest contributions, largest first (NaN last).
pub fn top_features(contributions: &[f32], top: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..contributions.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (contributions[a], contributions[b]);
        y.partial_cmp(&x)
            .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
    });
    order.truncate(top);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DecisionParams {
        DecisionParams {
            threshold: 4.0,
            alpha: 1.0,
            k: 3,
            n: 5,
        }
    }

    #[test]
    fn one_noisy_score_does_not_alert() {
        let mut d = Decider::new(params());
        for s in [0.0, 9.0, 0.0, 0.0, 9.0, 0.0, 0.0] {
            assert_eq!(d.observe(s).1, Transition::None, "{s}");
        }
        assert!(!d.alerting());
    }

    #[test]
    fn k_of_n_opens_and_n_quiet_closes() {
        let mut d = Decider::new(params());
        let seq = [9.0, 0.0, 9.0, 9.0];
        let t: Vec<_> = seq.iter().map(|s| d.observe(*s).1).collect();
        assert_eq!(t[3], Transition::Opened, "3 of the last 5: {t:?}");
        // Still over sometimes: stays open until 5 quiet evaluations in a row.
        for s in [0.0, 0.0, 0.0, 0.0] {
            assert_eq!(d.observe(s).1, Transition::None);
        }
        assert_eq!(d.observe(0.0).1, Transition::Closed);
        assert!(!d.alerting());
    }

    #[test]
    fn smoothing_delays_and_nan_keeps_the_previous_value() {
        let mut d = Decider::new(DecisionParams {
            alpha: 0.5,
            ..params()
        });
        assert_eq!(d.observe(0.0).0, 0.0);
        assert_eq!(d.observe(8.0).0, 4.0);
        assert_eq!(d.observe(f32::NAN).0, 4.0);
        assert_eq!(d.observe(0.0).0, 2.0);
    }

    #[test]
    fn top_features_are_ordered() {
        assert_eq!(top_features(&[0.1, 0.5, f32::NAN, 0.3], 3), vec![1, 3, 0]);
        assert_eq!(top_features(&[0.1], 3), vec![0]);
    }
}
