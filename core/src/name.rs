//! Query-name normalisation and public-suffix splitting.
//!
//! [`normalize`] turns a name as it arrives (any case, optional trailing dot) into the one
//! canonical spelling used for rule matching, cache keys and the scorer callout, and rejects
//! what is not a DNS host name. [`registered_domain`] and [`split`] use the public suffix list
//! compiled into the `psl` crate, ICANN and private sections both, so `foo.github.io` is a
//! registered domain of its own rather than a subdomain of `github.io`.
//!
//! This is the one definition of a name (docs/contracts.md, "Names"): the training code's
//! `dohguard_models.encoding` follows it, reading the same list exported into
//! `models/psl/public_suffix_list.dat` (`tests/psl_file.rs` keeps the two equal), and
//! `models/tests/test_name_agreement.py` runs both over every name in the data.

use thiserror::Error;

/// Longest label, in octets (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest name in presentation form without the trailing dot: 255 octets on the wire
/// minus the length octets and the root label.
pub const MAX_NAME_LEN: usize = 253;

/// Why a name was rejected by [`normalize`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {len} octets long; the limit is {MAX_NAME_LEN}")]
    TooLong { len: usize },
    #[error("label {index} is empty")]
    EmptyLabel { index: usize },
    #[error("label {index} is {len} octets long; the limit is {MAX_LABEL_LEN}")]
    LabelTooLong { index: usize, len: usize },
    #[error("character {ch:?} at offset {offset} is not allowed in a DNS name")]
    BadCharacter { ch: char, offset: usize },
}

/// Normalises a query name: ASCII lower case, one trailing dot removed.
///
/// Accepted characters are letters, digits, `-` and `_` (underscore labels such as
/// `_dmarc` and `_443._tcp` are real query names). Internationalised names must arrive in
/// their punycode (`xn--`) form, which is kept as is; anything else non-ASCII is rejected
/// rather than guessed at. The root name (`.` or empty) is rejected as [`NameError::Empty`]:
/// it has no registered domain and callers decide separately what to do with it.
pub fn normalize(raw: &str) -> Result<String, NameError> {
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: trimmed.len() });
    }
    if let Some((offset, ch)) = trimmed
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        return Err(NameError::BadCharacter { ch, offset });
    }
    for (index, label) in trimmed.split('.').enumerate() {
        if label.is_empty() {
            return Err(NameError::EmptyLabel { index });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong {
                index,
                len: label.len(),
            });
        }
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// The registered domain (public suffix plus one label) of a normalised name, or `None` when
/// the name is itself a public suffix (`com`, `co.uk`, `github.io`).
///
/// Names under a top-level domain the list does not know get the list's default rule (`*`),
/// so `host.example.internal` has the registered domain `example.internal`.
pub fn registered_domain(name: &str) -> Option<&str> {
    psl::domain_str(name)
}

/// Whether the DGA model judges this normalised name. The root (`.`, or empty) and names
/// under `.arpa` (reverse lookups, ENUM) are not host names anyone registers: `in-addr.arpa`
/// is a public suffix, so a model verdict on `10.in-addr.arpa` would cover a whole /8.
/// Lists still apply to them; the model and its cache do not.
pub fn model_judges(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !(name.is_empty() || name == "arpa" || name.ends_with(".arpa"))
}

/// A normalised name cut at its public suffix, as Elastic Common Schema's
/// `dns.question.{registered_domain, subdomain, top_level_domain}` fields want it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameParts<'a> {
    /// `example.co.uk` for `www.example.co.uk`; `None` when the name is a public suffix.
    pub registered_domain: Option<&'a str>,
    /// `www` for `www.example.co.uk`; `None` when there is nothing left of the registered domain.
    pub subdomain: Option<&'a str>,
    /// The effective top-level domain (public suffix): `co.uk` for `www.example.co.uk`.
    pub top_level_domain: Option<&'a str>,
}

/// Splits a normalised name into registered domain, subdomain and public suffix.
pub fn split(name: &str) -> NameParts<'_> {
    let top_level_domain = psl::suffix_str(name);
    let registered_domain = registered_domain(name);
    let subdomain = registered_domain.and_then(|rd| {
        let head = name.strip_suffix(rd)?.strip_suffix('.')?;
        (!head.is_empty()).then_some(head)
    });
    NameParts {
        registered_domain,
        subdomain,
        top_level_domain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_model_does_not_judge_the_root_or_arpa() {
        for name in [
            ".",
            "",
            "arpa",
            "10.in-addr.arpa",
            "1.0.0.127.in-addr.arpa",
            "b.ip6.arpa",
        ] {
            assert!(!model_judges(name), "{name}");
        }
        for name in ["example.com", "arpa.example.com", "xarpa", "notarpa.net"] {
            assert!(model_judges(name), "{name}");
        }
    }

    #[test]
    fn lower_cases_and_strips_one_trailing_dot() {
        assert_eq!(normalize("WWW.Example.COM.").unwrap(), "www.example.com");
        assert_eq!(normalize("example.com").unwrap(), "example.com");
        assert_eq!(
            normalize("example.com..").unwrap_err(),
            NameError::EmptyLabel { index: 2 }
        );
    }

    #[test]
    fn keeps_punycode_and_underscores() {
        assert_eq!(
            normalize("XN--Bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize("_dmarc.example.com").unwrap(),
            "_dmarc.example.com"
        );
    }

    #[test]
    fn rejects_what_dns_names_do_not_carry() {
        assert_eq!(normalize("").unwrap_err(), NameError::Empty);
        assert_eq!(normalize(".").unwrap_err(), NameError::Empty);
        assert_eq!(
            normalize(".com").unwrap_err(),
            NameError::EmptyLabel { index: 0 }
        );
        assert_eq!(
            normalize("a..com").unwrap_err(),
            NameError::EmptyLabel { index: 1 }
        );
        assert_eq!(
            normalize("bü.com").unwrap_err(),
            NameError::BadCharacter {
                ch: 'ü', offset: 1
            }
        );
        assert_eq!(
            normalize("a b.com").unwrap_err(),
            NameError::BadCharacter { ch: ' ', offset: 1 }
        );
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(
            normalize(&long_label).unwrap_err(),
            NameError::LabelTooLong { index: 0, len: 64 }
        );
        assert!(normalize(&format!("{}.com", "a".repeat(63))).is_ok());
    }

    #[test]
    fn name_length_limit_is_253_without_the_dot() {
        // 4 labels of 63 + 3 dots = 255; trim to exactly 253 and 254.
        let label = "a".repeat(63);
        let base = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(base.len(), 253);
        assert!(normalize(&base).is_ok());
        assert!(normalize(&format!("{base}.")).is_ok());
        let over = format!("{label}.{label}.{label}.{}", "b".repeat(62));
        assert_eq!(
            normalize(&over).unwrap_err(),
            NameError::TooLong { len: 254 }
        );
    }

    #[test]
    fn registered_domain_uses_icann_and_private_sections() {
        assert_eq!(
            registered_domain("www.example.co.uk"),
            Some("example.co.uk")
        );
        assert_eq!(registered_domain("foo.github.io"), Some("foo.github.io"));
        assert_eq!(
            registered_domain("a.b.foo.github.io"),
            Some("foo.github.io")
        );
        assert_eq!(registered_domain("example.com"), Some("example.com"));
        assert_eq!(registered_domain("com"), None);
        assert_eq!(registered_domain("co.uk"), None);
    }

    #[test]
    fn split_gives_ecs_question_fields() {
        let parts = split("a.b.example.co.uk");
        assert_eq!(parts.registered_domain, Some("example.co.uk"));
        assert_eq!(parts.subdomain, Some("a.b"));
        assert_eq!(parts.top_level_domain, Some("co.uk"));

        let bare = split("example.com");
        assert_eq!(bare.registered_domain, Some("example.com"));
        assert_eq!(bare.subdomain, None);
        assert_eq!(bare.top_level_domain, Some("com"));

        let suffix = split("co.uk");
        assert_eq!(suffix.registered_domain, None);
        assert_eq!(suffix.subdomain, None);
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_-]{1,63}"
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(label(), 1..5).prop_map(|labels| labels.join("."))
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent(raw in name()) {
            if let Ok(once) = normalize(&raw) {
                prop_assert_eq!(normalize(&once).unwrap(), once.clone());
                prop_assert_eq!(normalize(&format!("{once}.")).unwrap(), once);
            }
        }

        #[test]
        fn normalized_names_obey_the_limits(raw in "\\PC{0,300}") {
            if let Ok(name) = normalize(&raw) {
                prop_assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN);
                prop_assert!(name.split('.').all(|l| !l.is_empty() && l.len() <= MAX_LABEL_LEN));
                prop_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
            }
        }

        #[test]
        fn accepted_names_fit_the_limits_exactly(raw in name()) {
            let fits = raw.len() <= MAX_NAME_LEN;
            prop_assert_eq!(normalize(&raw).is_ok(), fits);
        }

        #[test]
        fn split_reassembles_the_name(raw in name()) {
            if let Ok(name) = normalize(&raw) {
                let parts = split(&name);
                if let Some(rd) = parts.registered_domain {
                    let whole = match parts.subdomain {
                        Some(sub) => format!("{sub}.{rd}"),
                        None => rd.to_owned(),
                    };
                    prop_assert_eq!(whole, name);
                }
            }
        }
    }
}
