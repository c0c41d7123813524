//! `lookalike-v1` feature figures (prints, asserts nothing about speed): names per second of
//! [`features`] on a mix of brand-like, disguised, random and ordinary registered domains, next
//! to a baseline measured in the same run: `normalize` + `registered_domain` of the same names
//! (the per-name work the scorer does anyway before any model).
//!
//! Run: `cargo bench -p dohguard-core --bench lookalike`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use dohguard_core::features::lookalike::features;
use dohguard_core::name::{normalize, registered_domain};

fn names() -> Vec<String> {
    let stems = [
        "paypal-secure-login",
        "xn--pypal-4ve",
        "micros0ft-account",
        "wellsfargo",
        "qzxwvkjhpt",
        "weather-forecast-today",
        "gooogle",
        "a7wtafw5uro1",
    ];
    let suffixes = ["com", "co.uk", "xyz", "sbs", "de"];
    (0..4_000)
        .map(|i| {
            format!(
                "{}{}.{}",
                stems[i % stems.len()],
                i / 40,
                suffixes[i % suffixes.len()]
            )
        })
        .collect()
}

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let names = names();
    black_box(features("warm.up")); // the tables are built once, on first use
    let feat = best_of(5, || {
        for n in &names {
            black_box(features(black_box(n)));
        }
    });
    let base = best_of(5, || {
        for n in &names {
            let n = normalize(black_box(n)).expect("bench names are valid");
            black_box(registered_domain(&n).map(str::len));
        }
    });
    let rate = |d: Duration| names.len() as f64 / d.as_secs_f64();
    println!(
        "lookalike-v1 features: {:.0} names/s; normalize + registered_domain: {:.0} names/s; \
         features cost {:.1}x the name handling",
        rate(feat),
        rate(base),
        feat.as_secs_f64() / base.as_secs_f64()
    );
}
