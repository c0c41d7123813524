//! Feature sets that detector models read instead of character ids (docs/contracts.md,
//! contract 2: a card with `input.kind = "features"` names its `feature_set`). Each set is one
//! pure function of the model text with no I/O; the data it needs is compiled in from the
//! committed files under `models/features/<set>/`, which the Python twin in
//! `models/dohguard_models` reads too, so training and serving compute the same values.

pub mod lookalike;
