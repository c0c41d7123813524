//! DNS tunnels: whether a name looks like one ([`suspect`]), and the `tunnel-v1` feature set
//! the full-name tunnel model reads ([`features`]).
//!
//! Tunnels carry their payload in the subdomain labels, left of the registered domain
//! (`<data>.<data>.t.example.com`), so both look only at that part (plus the registered
//! domain's length). The Python twin is `models/dohguard_models/tunnel_features.py`;
//! `models/tests/test_tunnel_features.py` runs both over the real tunnel and benign names.

use crate::name::registered_domain;

use super::FeatureSet;

/// Values [`features`] yields.
pub const WIDTH: usize = 15;

pub const SET: FeatureSet = FeatureSet {
    name: "tunnel-v1",
    width: WIDTH,
    compute: features,
};

/// A subdomain label at least this long makes a name suspect.
pub const SUSPECT_LABEL_LEN: usize = 24;
/// Subdomain text (labels and their dots) at least this long makes a name suspect.
pub const SUSPECT_SUBDOMAIN_LEN: usize = 40;
/// A label at least [`SUSPECT_RANDOM_LABEL_LEN`] long with at least this many bits of
/// character entropy makes a name suspect.
pub const SUSPECT_ENTROPY_BITS: f64 = 3.0;
pub const SUSPECT_RANDOM_LABEL_LEN: usize = 12;

/// The subdomain part of a normalised name: what is left of its registered domain, without
/// the joining dot (`""` when there is none, or when the name is a public suffix).
pub fn subdomain(name: &str) -> &str {
    registered_domain(name)
        .and_then(|rd| name.strip_suffix(rd))
        .and_then(|head| head.strip_suffix('.'))
        .unwrap_or("")
}

/// Whether a normalised name may carry a tunnel: a subdomain label of
/// [`SUSPECT_LABEL_LEN`] or more, subdomain text of [`SUSPECT_SUBDOMAIN_LEN`] or more, or a
/// label of [`SUSPECT_RANDOM_LABEL_LEN`] or more whose characters carry at least
/// [`SUSPECT_ENTROPY_BITS`] bits of entropy. Such names are judged one by one (the filter does
/// not answer them from a registered-domain verdict; the scorer runs the tunnel model on them).
pub fn suspect(name: &str) -> bool {
    registered_domain(name).is_some_and(|rd| suspect_under(name, rd))
}

/// [`suspect`] for a name whose registered domain the caller already has (the filter's
/// cache does), saving a second public-suffix lookup.
pub fn suspect_under(name: &str, registered_domain: &str) -> bool {
    let sub = name
        .strip_suffix(registered_domain)
        .and_then(|head| head.strip_suffix('.'))
        .unwrap_or("");
    if sub.is_empty() {
        return false;
    }
    if sub.len() >= SUSPECT_SUBDOMAIN_LEN {
        return true;
    }
    sub.split('.').any(|label| {
        label.len() >= SUSPECT_LABEL_LEN
            || (label.len() >= SUSPECT_RANDOM_LABEL_LEN
                && entropy_bits(label.bytes()) >= SUSPECT_ENTROPY_BITS)
    })
}

/// Shannon entropy, in bits per character, of a byte string (0 for an empty one). Counts are
/// summed in byte order so the Python twin adds the same terms in the same order.
pub fn entropy_bits(bytes: impl Iterator<Item = u8>) -> f64 {
    let mut counts = [0u32; 256];
    let mut total = 0u32;
    for b in bytes {
        counts[b as usize] += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    let n = f64::from(total);
    let mut h = 0.0;
    for &c in counts.iter().filter(|&&c| c > 0) {
        let p = f64::from(c) / n;
        h -= p * p.log2();
    }
    h
}

fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u')
}

fn is_base32(b: u8) -> bool {
    b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)
}

/// The `tunnel-v1` features of a normalised name, appended to `out` (exactly [`WIDTH`]
/// values), all computed in `f64` and rounded to `f32` once. With `s` the subdomain
/// ([`subdomain`]), its labels, and `c` the characters of `s` without dots:
///
/// - 0: `len(s) / 100`; 1: labels / 10; 2: longest label / 63; 3: mean label length / 63;
/// - 4: entropy of `c` in bits / 6; 5: digits / `len(c)`; 6: hex digits / `len(c)`;
/// - 7: vowels / letters; 8: distinct characters / `len(c)`; 9: longest consonant run / 20;
/// - 10: digit-letter switches / `len(c)`; 11: share of labels of 8+ hex digits;
/// - 12: share of labels of 16+ base32 characters (`a-z2-7`); 13: `-` and `_` / `len(c)`;
/// - 14: registered domain length / 63.
///
/// A name without a subdomain yields zeros except value 14.
pub fn features(name: &str, out: &mut Vec<f32>) {
    let sub = subdomain(name);
    let rd_len = registered_domain(name).map_or(name.len(), str::len) as f64;
    let labels: Vec<&str> = if sub.is_empty() {
        Vec::new()
    } else {
        sub.split('.').collect()
    };
    let chars: Vec<u8> = sub.bytes().filter(|&b| b != b'.').collect();
    let n = chars.len() as f64;
    let share = |count: usize, of: f64| if of > 0.0 { count as f64 / of } else { 0.0 };
    let digits = chars.iter().filter(|b| b.is_ascii_digit()).count();
    let hex = chars.iter().filter(|b| b.is_ascii_hexdigit()).count();
    let letters = chars.iter().filter(|b| b.is_ascii_lowercase()).count();
    let vowels = chars.iter().filter(|&&b| is_vowel(b)).count();
    let mut seen = [false; 256];
    let distinct = chars
        .iter()
        .filter(|&&b| !std::mem::replace(&mut seen[b as usize], true))
        .count();
    let mut run = 0usize;
    let mut longest_run = 0usize;
    for &b in &chars {
        run = if b.is_ascii_lowercase() && !is_vowel(b) {
            run + 1
        } else {
            0
        };
        longest_run = longest_run.max(run);
    }
    let switches = chars
        .windows(2)
        .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
        .count();
    let hex_labels = labels
        .iter()
        .filter(|l| l.len() >= 8 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .count();
    let base32_labels = labels
        .iter()
        .filter(|l| l.len() >= 16 && l.bytes().all(is_base32))
        .count();
    let marks = chars.iter().filter(|&&b| b == b'-' || b == b'_').count();
    let longest = labels.iter().map(|l| l.len()).max().unwrap_or(0) as f64;
    let nl = labels.len() as f64;
    let values = [
        sub.len() as f64 / 100.0,
        nl / 10.0,
        longest / 63.0,
        if nl > 0.0 { n / nl / 63.0 } else { 0.0 },
        entropy_bits(chars.iter().copied()) / 6.0,
        share(digits, n),
        share(hex, n),
        share(vowels, letters as f64),
        share(distinct, n),
        longest_run as f64 / 20.0,
        share(switches, n),
        share(hex_labels, nl),
        share(base32_labels, nl),
        share(marks, n),
        rd_len / 63.0,
    ];
    out.extend(values.iter().map(|&v| v as f32));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(name: &str) -> Vec<f32> {
        let mut out = Vec::new();
        features(name, &mut out);
        out
    }

    #[test]
    fn subdomain_is_left_of_the_registered_domain() {
        assert_eq!(subdomain("a.b.example.co.uk"), "a.b");
        assert_eq!(subdomain("example.com"), "");
        assert_eq!(subdomain("com"), "");
    }

    #[test]
    fn tunnel_names_are_suspect_and_ordinary_ones_are_not() {
        for name in [
            "labowcwlabvnya30qfedax4gk0gtykda.bot.hackbiji.top",
            "post.3a4d1c151417f0ab1d477671184d9f4418b6d0d877af67a4dca82b556.2028a4f2.bot.hackbiji.top",
            "gu4aaaaxcgnvbsx6bgliaaaaa.bot.hackbiji.top",
            "k3j9x2m4q8w1z7.t.example.com",
        ] {
            assert!(suspect(name), "{name}");
        }
        for name in [
            "www.example.com",
            "example.com",
            "com",
            "mail.google.com",
            "e17437.dscb.akamaiedge.net",
            "iabin.bot.hackbiji.top",
        ] {
            assert!(!suspect(name), "{name}");
        }
    }

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(entropy_bits("".bytes()), 0.0);
        assert_eq!(entropy_bits("aaaa".bytes()), 0.0);
        assert!((entropy_bits("abcd".bytes()) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn features_of_a_known_name() {
        let f = feats("ab12.cd.example.com");
        assert_eq!(f.len(), WIDTH);
        assert!((f[0] - 0.07).abs() < 1e-6, "len('ab12.cd') = 7");
        assert!((f[1] - 0.2).abs() < 1e-6, "2 labels");
        assert!((f[2] - 4.0 / 63.0).abs() < 1e-6);
        assert!((f[3] - 3.0 / 63.0).abs() < 1e-6, "6 chars / 2 labels");
        assert!((f[5] - 2.0 / 6.0).abs() < 1e-6, "digits");
        assert!((f[6] - 1.0).abs() < 1e-6, "all hex");
        assert!((f[10] - 2.0 / 6.0).abs() < 1e-6, "b1 and 2c switch");
        assert!((f[14] - 11.0 / 63.0).abs() < 1e-6);
        let none = feats("example.com");
        assert!(none[..14].iter().all(|&v| v == 0.0));
    }
}
