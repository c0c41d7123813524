//! The `lookalike-v1` feature set: how much a registered domain looks like an impersonation of
//! a popular brand (brand tokens, homoglyphs, punycode, one-edit neighbours, lure words).
//!
//! The one definition is this function and its Python twin,
//! `models/dohguard_models/lookalike.py`, whose module documentation describes every value;
//! `models/tests/test_lookalike.py` runs both over many real names and requires agreement
//! within 1e-5. The tables are the committed files in `models/features/lookalike-v1/`.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// The feature set's name, as a card's `input.feature_set` gives it.
pub const NAME: &str = "lookalike-v1";
/// Named values per name; the suffix one-hot follows them.
pub const BASE_WIDTH: usize = 29;
/// One-hot slots of the public suffix: `suffixes.txt`'s lines, then one for every other suffix.
pub const SUFFIX_SLOTS: usize = 256;
/// Values per name: [`BASE_NAMES`], then the suffix one-hot.
pub const WIDTH: usize = BASE_WIDTH + SUFFIX_SLOTS;
/// The named values, in order (the Python twin's `BASE_NAMES`).
pub const BASE_NAMES: [&str; BASE_WIDTH] = [
    "label_length",
    "suffix_labels",
    "suffix_length",
    "hyphens",
    "digits",
    "idn",
    "punycode_invalid",
    "non_ascii",
    "confusable_chars",
    "unmapped_chars",
    "brand_exact",
    "brand_exact_popularity",
    "brand_exact_disguised",
    "brand_contained_length",
    "brand_contained_popularity",
    "brands_contained",
    "brand_contained_ratio",
    "deleet_contained_length",
    "brand_neighbour",
    "brand_neighbour_popularity",
    "lures",
    "brand_and_lure",
    "tokens",
    "longest_token",
    "vowel_ratio",
    "longest_consonant_run",
    "entropy",
    "bigram_mean_logp",
    "bigram_min_logp",
];

const BRANDS: &str = include_str!("../../../models/features/lookalike-v1/brands.txt");
const CONFUSABLES: &str = include_str!("../../../models/features/lookalike-v1/confusables.tsv");
const LURES: &str = include_str!("../../../models/features/lookalike-v1/lures.txt");
const SUFFIXES: &str = include_str!("../../../models/features/lookalike-v1/suffixes.txt");
const BIGRAMS: &str = include_str!("../../../models/features/lookalike-v1/bigrams.tsv");

const MIN_BRAND: usize = 4;
const MIN_CONTAINED: usize = 5;
const MIN_EDIT: usize = 5;

struct Tables {
    brands: HashMap<&'static str, u32>,
    n_brands: u32,
    deletions: HashMap<String, u32>,
    max_brand: usize,
    confusables: HashMap<char, &'static str>,
    lures: HashSet<&'static str>,
    max_lure: usize,
    suffixes: HashMap<&'static str, usize>,
    bigrams: HashMap<&'static str, f64>,
    bigram_unknown: f64,
}

fn lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn deletions(s: &str) -> impl Iterator<Item = String> + '_ {
    (0..s.len()).map(move |i| format!("{}{}", &s[..i], &s[i + 1..]))
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut brands = HashMap::new();
        for label in lines(BRANDS) {
            let rank = brands.len() as u32 + 1;
            brands.entry(label).or_insert(rank);
        }
        let mut dels: HashMap<String, u32> = HashMap::new();
        for (label, &rank) in &brands {
            if label.len() >= MIN_EDIT {
                for d in deletions(label) {
                    let e = dels.entry(d).or_insert(rank);
                    *e = (*e).min(rank);
                }
            }
        }
        let mut confusables = HashMap::new();
        for line in lines(CONFUSABLES) {
            let mut cols = line.split('\t');
            let (Some(cp), Some(ascii)) = (cols.next(), cols.next()) else {
                continue;
            };
            let c = u32::from_str_radix(cp.trim_start_matches("U+"), 16)
                .ok()
                .and_then(char::from_u32);
            if let Some(c) = c {
                confusables.insert(c, ascii);
            }
        }
        let lures: HashSet<&str> = lines(LURES).collect();
        let mut suffixes = HashMap::new();
        for suffix in lines(SUFFIXES).take(SUFFIX_SLOTS - 1) {
            let slot = suffixes.len();
            suffixes.entry(suffix).or_insert(slot);
        }
        let mut bigrams = HashMap::new();
        for line in lines(BIGRAMS) {
            let mut cols = line.split('\t');
            if let (Some(pair), Some(Ok(logp))) = (cols.next(), cols.next().map(str::parse)) {
                bigrams.insert(pair, logp);
            }
        }
        Tables {
            bigram_unknown: bigrams.values().copied().fold(f64::INFINITY, f64::min),
            bigrams,
            n_brands: brands.len() as u32,
            max_brand: brands.keys().map(|b| b.len()).max().unwrap_or(0),
            brands,
            deletions: dels,
            confusables,
            max_lure: lures.iter().map(|l| l.len()).max().unwrap_or(0),
            lures,
            suffixes,
        }
    })
}

fn popularity(rank: u32, t: &Tables) -> f64 {
    1.0 - f64::from(rank).ln() / f64::from(t.n_brands + 1).ln()
}

/// (`U`, whether an `xn--` label failed to decode).
fn decode_label(label: &str) -> (String, bool) {
    match label.strip_prefix("xn--") {
        None => (label.to_owned(), false),
        Some(rest) => match idna::punycode::decode_to_string(rest) {
            // Nothing decoded (`xn---`) is invalid too, as in the Python twin.
            Some(u) if !u.is_empty() => (u, false),
            _ => (label.to_owned(), true),
        },
    }
}

/// (`K`, confusable characters mapped, non-ASCII characters left unmapped).
fn skeleton(u: &str, t: &Tables) -> (String, u32, u32) {
    let (mut out, mut mapped, mut unmapped) = (String::with_capacity(u.len()), 0, 0);
    for c in u.chars() {
        if c.is_ascii() {
            out.push(c);
        } else if let Some(a) = t.confusables.get(&c) {
            out.push_str(a);
            mapped += 1;
        } else {
            out.push('?');
            unmapped += 1;
        }
    }
    (out, mapped, unmapped)
}

fn deleet(f: &str) -> String {
    f.replace("rn", "m")
        .replace("vv", "w")
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'l',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '7' => 't',
            '8' => 'b',
            other => other,
        })
        .collect()
}

/// (length, rank, distinct count) of the longest brand inside `s` other than `s` itself.
fn contained(s: &str, t: &Tables) -> (usize, u32, usize) {
    let (mut best_len, mut best_rank) = (0, 0);
    let mut found = HashSet::new();
    let n = s.len();
    for i in 0..n {
        for j in (i + MIN_CONTAINED)..=n.min(i + t.max_brand) {
            if j - i == n {
                continue;
            }
            let sub = &s[i..j];
            if let Some(&rank) = t.brands.get(sub) {
                found.insert(sub);
                if j - i > best_len || (j - i == best_len && rank < best_rank) {
                    (best_len, best_rank) = (j - i, rank);
                }
            }
        }
    }
    (best_len, best_rank, found.len())
}

/// Best rank of a brand one edit from `k` (`k` itself not a brand), 0 when none.
fn neighbour_rank(k: &str, t: &Tables) -> u32 {
    if k.len() + 1 < MIN_EDIT || t.brands.contains_key(k) {
        return 0;
    }
    let mut best = 0;
    let mut take = |rank: Option<&u32>| {
        if let Some(&r) = rank {
            if best == 0 || r < best {
                best = r;
            }
        }
    };
    take(t.deletions.get(k));
    for d in deletions(k) {
        if d.len() >= MIN_EDIT {
            take(t.brands.get(d.as_str()));
        }
        take(t.deletions.get(&d));
    }
    best
}

fn lures(f: &str, t: &Tables) -> usize {
    let mut found = HashSet::new();
    for i in 0..f.len() {
        for j in (i + 1)..=f.len().min(i + t.max_lure) {
            if t.lures.contains(&f[i..j]) {
                found.insert(&f[i..j]);
            }
        }
    }
    found.len()
}

/// The [`WIDTH`] values of one model text (a normalised registered domain, as
/// [`crate::name::normalize`] and [`crate::name::registered_domain`] give it).
#[must_use]
pub fn features(text: &str) -> [f32; WIDTH] {
    let t = tables();
    let (label, suffix) = text.split_once('.').unwrap_or((text, ""));
    let (u, invalid) = decode_label(label);
    let (k, mapped, unmapped) = skeleton(&u, t);
    let f = k.replace('-', "");
    let d = deleet(&f);
    let exact_rank = if k.len() >= MIN_BRAND {
        t.brands.get(k.as_str()).copied().unwrap_or(0)
    } else {
        0
    };
    let disguised = (exact_rank > 0 && u != k)
        || (exact_rank == 0 && d.len() >= MIN_BRAND && t.brands.contains_key(d.as_str()));
    let (c_len, c_rank, c_count) = contained(&k, t);
    let d_len = if d == k { 0 } else { contained(&d, t).0 };
    let n_rank = neighbour_rank(&k, t);
    let n_lures = lures(&f, t);
    let branded = exact_rank > 0 || disguised || c_len > 0 || d_len > 0 || n_rank > 0;
    let tokens: Vec<&str> = label.split('-').filter(|p| !p.is_empty()).collect();
    let pop = |rank: u32| if rank > 0 { popularity(rank, t) } else { 0.0 };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let letters = label.bytes().filter(u8::is_ascii_alphabetic).count();
    let vowels = label.bytes().filter(|b| b"aeiouy".contains(b)).count();
    let (mut run, mut longest) = (0, 0);
    for b in label.bytes() {
        run = if b.is_ascii_alphabetic() && !b"aeiouy".contains(&b) {
            run + 1
        } else {
            0
        };
        longest = longest.max(run);
    }
    // Counts in first-occurrence order, the order the Python twin sums in.
    let mut counts: Vec<(u8, usize)> = Vec::new();
    for b in label.bytes() {
        match counts.iter_mut().find(|(c, _)| *c == b) {
            Some((_, n)) => *n += 1,
            None => counts.push((b, 1)),
        }
    }
    let len = label.len() as f64;
    let entropy = -counts
        .iter()
        .map(|&(_, n)| n as f64 / len * (n as f64 / len).log2())
        .sum::<f64>();
    let ends = format!("^{label}$");
    let logps: Vec<f64> = (0..ends.len() - 1)
        .map(|i| {
            ends.get(i..i + 2)
                .and_then(|pair| t.bigrams.get(pair))
                .copied()
                .unwrap_or(t.bigram_unknown)
        })
        .collect();
    let base: [f64; BASE_WIDTH] = [
        label.len() as f64,
        if suffix.is_empty() {
            0.0
        } else {
            (suffix.matches('.').count() + 1) as f64
        },
        suffix.len() as f64,
        label.matches('-').count() as f64,
        label.bytes().filter(u8::is_ascii_digit).count() as f64,
        flag(label.starts_with("xn--")),
        flag(invalid),
        u.chars().filter(|c| !c.is_ascii()).count() as f64,
        f64::from(mapped),
        f64::from(unmapped),
        flag(exact_rank > 0),
        pop(exact_rank),
        flag(disguised),
        c_len as f64,
        if c_len > 0 { pop(c_rank) } else { 0.0 },
        c_count as f64,
        c_len as f64 / k.len().max(1) as f64,
        d_len as f64,
        flag(n_rank > 0),
        pop(n_rank),
        n_lures as f64,
        flag(branded && n_lures > 0),
        tokens.len() as f64,
        tokens.iter().map(|p| p.len()).max().unwrap_or(0) as f64,
        vowels as f64 / letters.max(1) as f64,
        f64::from(longest),
        entropy,
        logps.iter().sum::<f64>() / logps.len() as f64,
        logps.iter().copied().fold(f64::INFINITY, f64::min),
    ];
    let mut out = [0.0f32; WIDTH];
    for (o, v) in out.iter_mut().zip(base) {
        *o = v as f32;
    }
    let slot = t.suffixes.get(suffix).copied().unwrap_or(SUFFIX_SLOTS - 1);
    out[BASE_WIDTH + slot] = 1.0;
    out
}

/// The set as cards name it (`feature_set: "lookalike-v1"`).
pub const SET: super::FeatureSet = super::FeatureSet {
    name: NAME,
    width: WIDTH,
    compute: extend,
};

fn extend(text: &str, out: &mut Vec<f32>) {
    out.extend_from_slice(&features(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, name: &str) -> f32 {
        let i = BASE_NAMES.iter().position(|n| *n == name).unwrap();
        features(text)[i]
    }

    #[test]
    fn a_brand_is_exact_and_its_disguises_are_flagged() {
        assert_eq!(value("paypal.com", "brand_exact"), 1.0);
        assert_eq!(value("paypal.com", "brand_exact_disguised"), 0.0);
        // Cyrillic a in "pаypal": punycode, one confusable mapped, the skeleton is the brand.
        assert_eq!(value("xn--pypal-4ve.com", "idn"), 1.0);
        assert_eq!(value("xn--pypal-4ve.com", "confusable_chars"), 1.0);
        assert_eq!(value("xn--pypal-4ve.com", "brand_exact_disguised"), 1.0);
        assert_eq!(value("faceb00k.com", "brand_exact_disguised"), 1.0);
        assert_eq!(value("xn--zz-invalid!.com", "punycode_invalid"), 1.0);
    }

    #[test]
    fn brands_inside_labels_neighbours_and_lures_count() {
        assert_eq!(
            value("wellsfargo-login.com", "brand_contained_length"),
            10.0
        );
        assert_eq!(value("wellsfargo-login.com", "lures"), 1.0);
        assert_eq!(value("wellsfargo-login.com", "brand_and_lure"), 1.0);
        assert_eq!(
            value("micros0ft-account.net", "deleet_contained_length"),
            9.0
        );
        assert_eq!(value("gooogle.com", "brand_neighbour"), 1.0);
        assert_eq!(value("qzxwvkjh.com", "brand_neighbour"), 0.0);
        assert_eq!(value("shop.co.uk", "suffix_labels"), 2.0);
    }

    #[test]
    fn the_suffix_is_one_hot_and_the_table_fills_every_slot() {
        assert_eq!(tables().suffixes.len(), SUFFIX_SLOTS - 1);
        let com = features("example.com");
        assert_eq!(com[BASE_WIDTH], 1.0, "com is the most frequent suffix");
        assert_eq!(com[BASE_WIDTH..].iter().sum::<f32>(), 1.0);
        let rare = features("example.sbs");
        assert_eq!(
            rare[WIDTH - 1],
            1.0,
            "a suffix outside the table takes the last slot"
        );
        assert_eq!(rare[BASE_WIDTH..].iter().sum::<f32>(), 1.0);
    }
}
