//! Scorer service (placeholder until written).
