//! End-to-end stack launcher (placeholder until written).
