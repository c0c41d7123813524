//! Shared core (placeholder until written).
