//! Rule-set figures (prints, asserts nothing about speed): building a 100k-entry list and
//! looking names up, each next to a baseline measured in the same run.
//! - build: compiling 100k patterns vs merely copying the same strings into a `HashSet`;
//! - lookup: `RuleSet::matches` vs a linear scan over the patterns (what the suffix-map
//!   design avoids), on a mix of listed, under-listed and unlisted names.
//!
//! Run: `cargo bench -p dohguard-core --bench rules`.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use dohguard_core::rules::RuleSet;

const ENTRIES: usize = 100_000;

fn patterns() -> Vec<String> {
    (0..ENTRIES)
        .map(|i| match i % 3 {
            0 => format!("host{i}.example{}.com", i % 977),
            1 => format!("*.zone{i}.net"),
            _ => format!(".tracker{i}.org"),
        })
        .collect()
}

fn queries() -> Vec<String> {
    (0..3_000)
        .map(|i| match i % 4 {
            0 => format!("host{}.example{}.com", i * 3, (i * 3) % 977),
            1 => format!("a.b.zone{}.net", i * 3 + 1),
            2 => format!("cdn.tracker{}.org", i * 3 + 2),
            _ => format!("www.unlisted{i}.example"),
        })
        .collect()
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// The obvious alternative: test every pattern against the name.
fn scan(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        if let Some(base) = p.strip_prefix("*.") {
            name.len() > base.len()
                && name.ends_with(base)
                && name.as_bytes()[name.len() - base.len() - 1] == b'.'
        } else if let Some(base) = p.strip_prefix('.') {
            name == base
                || (name.ends_with(base) && name.as_bytes()[name.len() - base.len() - 1] == b'.')
        } else {
            name == p
        }
    })
}

fn main() {
    let patterns = patterns();
    let queries = queries();

    let build = best_of(5, || {
        RuleSet::from_patterns(patterns.iter().map(String::as_str)).unwrap()
    });
    let copy = best_of(5, || patterns.iter().cloned().collect::<HashSet<String>>());
    println!(
        "build {ENTRIES} rules: {:.1} ms (baseline: copy into HashSet {:.1} ms, ratio {:.2})",
        build.as_secs_f64() * 1e3,
        copy.as_secs_f64() * 1e3,
        build.as_secs_f64() / copy.as_secs_f64()
    );

    let set = RuleSet::from_patterns(patterns.iter().map(String::as_str)).unwrap();
    let hits = queries.iter().filter(|q| set.matches(q).is_some()).count();
    let scan_hits = queries[..30].iter().filter(|q| scan(&patterns, q)).count();
    assert_eq!(
        hits,
        queries.len() / 4 * 3,
        "benchmark data is not what it claims"
    );
    assert_eq!(scan_hits, (0..30).filter(|i| i % 4 != 3).count());

    let lookup = best_of(5, || {
        queries.iter().filter(|q| set.matches(q).is_some()).count()
    });
    let per_lookup = lookup.as_secs_f64() / queries.len() as f64;
    // The scan is ~10^4 times slower: time a slice of the queries.
    let scan_time = best_of(3, || {
        queries[..30].iter().filter(|q| scan(&patterns, q)).count()
    });
    let per_scan = scan_time.as_secs_f64() / 30.0;
    println!(
        "lookup: {:.0} ns/name (baseline: linear scan {:.0} us/name, speed-up {:.0}x)",
        per_lookup * 1e9,
        per_scan * 1e6,
        per_scan / per_lookup
    );
}
