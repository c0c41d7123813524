//! Feature sets for models whose card input is `"kind": "features"` (docs/contracts.md
//! section 2): one submodule per set, each a pure function from a normalised name to a fixed
//! number of `f32` values. The training code has a Python twin of every set, and an agreement
//! test runs both over real names (within 1e-5 per value). [`by_name`] is how a card's
//! `feature_set` finds its function. The data a set needs is compiled in from the committed
//! files under `models/features/<set>/`, which the Python twin reads too, so training and
//! serving compute the same values.

pub mod lookalike;
pub mod tunnel;

/// A feature set: its name in cards, how many values it yields, and the function.
#[derive(Debug, Clone, Copy)]
pub struct FeatureSet {
    pub name: &'static str,
    pub width: usize,
    /// Appends exactly `width` values for a normalised name to `out`.
    pub compute: fn(name: &str, out: &mut Vec<f32>),
}

/// Every feature set this build knows.
pub const SETS: &[FeatureSet] = &[tunnel::SET, lookalike::SET];

/// The feature set a card names, if this build knows it.
pub fn by_name(name: &str) -> Option<FeatureSet> {
    SETS.iter().copied().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_set_yields_its_width() {
        for set in SETS {
            let mut out = Vec::new();
            (set.compute)("a.b.example.com", &mut out);
            assert_eq!(out.len(), set.width, "{}", set.name);
        }
        assert!(by_name("tunnel-v1").is_some());
        assert!(by_name("lookalike-v1").is_some());
        assert!(by_name("no-such-set").is_none());
    }
}
