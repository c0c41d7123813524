//! From what Prometheus returned to the model's input: one row per feature, `window` steps
//! on a grid ending at the evaluation time, gaps filled by the card's `ffill-then-median`
//! rule. Pure functions, tested here and against the Python side's fixture.

/// Raw samples on the grid: `values[f][t]`, `None` where Prometheus had no value (or NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct RawWindow {
    pub values: Vec<Vec<Option<f64>>>,
    /// Per feature: Prometheus returned a series for it (even one of NaN only: a quantile
    /// of a histogram without samples, normal on an idle gateway).
    pub present: Vec<bool>,
}

impl RawWindow {
    pub fn empty(features: usize, window: usize) -> Self {
        Self {
            values: vec![vec![None; window]; features],
            present: vec![false; features],
        }
    }

    /// A window whose features are present when they have at least one value.
    pub fn from_values(values: Vec<Vec<Option<f64>>>) -> Self {
        let present = values
            .iter()
            .map(|r| r.iter().any(Option::is_some))
            .collect();
        Self { values, present }
    }

    /// Features Prometheus has no series for in the whole window: the metric (or its
    /// recording rule) is gone. They are scored with their median.
    pub fn missing(&self) -> Vec<bool> {
        self.present.iter().map(|p| !p).collect()
    }
}

/// `ffill-then-median`: a gap takes the last value before it in the window; a leading gap,
/// or a feature missing throughout, takes the feature's median. NaN and infinities count as
/// gaps. Returns the row-major `[features, window]` input the model reads.
pub fn fill(raw: &RawWindow, medians: &[f32]) -> Vec<f32> {
    let window = raw.values.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(raw.values.len() * window);
    for (row, &median) in raw.values.iter().zip(medians) {
        let mut last = median;
        for v in row {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                last = v as f32;
            }
            out.push(last);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_fills_and_uses_the_median_for_leading_gaps() {
        let raw = RawWindow::from_values(vec![
            vec![None, Some(1.0), None, Some(f64::NAN), Some(3.0)],
            vec![None; 5],
            vec![Some(2.0), None, None, None, None],
        ]);
        assert_eq!(
            fill(&raw, &[9.0, 7.0, 0.0]),
            vec![9.0, 1.0, 1.0, 1.0, 3.0, 7.0, 7.0, 7.0, 7.0, 7.0, 2.0, 2.0, 2.0, 2.0, 2.0]
        );
        assert_eq!(raw.missing(), vec![false, true, false]);
    }
}
