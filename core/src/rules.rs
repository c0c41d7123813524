//! Allow and deny lists: pattern syntax, matching, and the allow-beats-deny policy.
//!
//! Three pattern forms, each normalised with [`crate::name::normalize`]:
//! - `example.com`: exactly that name;
//! - `*.example.com`: names strictly under it (not `example.com` itself);
//! - `.example.com`: `example.com` and every name under it.
//!
//! A [`RuleSet`] is one hash map from a normalised name to the rule forms attached to it.
//! Looking a name up walks its suffixes (`a.b.example.com`, `b.example.com`, `example.com`,
//! `com`), one map probe per label, so the cost grows with the number of labels and not with
//! the size of the list; building is one insert per entry.

use std::collections::HashMap;

use thiserror::Error;

use crate::contract::{Reason, Verdict};
use crate::name::{normalize, NameError};

/// Which form of rule matched a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    /// `example.com` matched `example.com`.
    Exact,
    /// `*.example.com` matched a name strictly under `example.com`.
    Subdomain,
    /// `.example.com` matched `example.com` or a name under it.
    DomainAndSubdomains,
}

/// A list entry that could not be parsed; `index` counts from 0 in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rule #{index} {entry:?}: {source}")]
pub struct RuleError {
    pub index: usize,
    pub entry: String,
    #[source]
    pub source: NameError,
}

/// Rule forms attached to one normalised name (several can coexist).
#[derive(Debug, Clone, Copy, Default)]
struct Rules {
    exact: bool,
    subdomains: bool,
    domain_and_subdomains: bool,
}

/// A compiled allow or deny list.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    by_name: HashMap<Box<str>, Rules>,
    patterns: usize,
}

impl RuleSet {
    /// Compiles patterns; the first bad one is reported with its index. Duplicates are fine.
    pub fn from_patterns<'a, I>(patterns: I) -> Result<RuleSet, RuleError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let iter = patterns.into_iter();
        let mut set = RuleSet {
            by_name: HashMap::with_capacity(iter.size_hint().0),
            patterns: 0,
        };
        for (index, entry) in iter.enumerate() {
            set.insert(entry).map_err(|source| RuleError {
                index,
                entry: entry.to_owned(),
                source,
            })?;
        }
        Ok(set)
    }

    /// Compiles a list file: one pattern per line, blank lines and `#` comments skipped.
    /// A bad line is reported with `index` = its line number counted from 0.
    pub fn from_list_text(text: &str) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::default();
        for (index, entry) in list_entries(text) {
            set.insert(entry).map_err(|source| RuleError {
                index,
                entry: entry.to_owned(),
                source,
            })?;
        }
        Ok(set)
    }

    fn insert(&mut self, entry: &str) -> Result<(), NameError> {
        let (form, base) = split_pattern(entry);
        let name = normalize(base)?;
        let rules = self.by_name.entry(name.into_boxed_str()).or_default();
        match form {
            MatchKind::Exact => rules.exact = true,
            MatchKind::Subdomain => rules.subdomains = true,
            MatchKind::DomainAndSubdomains => rules.domain_and_subdomains = true,
        }
        self.patterns += 1;
        Ok(())
    }

    /// Number of patterns compiled (duplicates counted).
    pub fn len(&self) -> usize {
        self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns == 0
    }

    /// Matches a normalised name (see [`normalize`]); an exact rule wins over suffix rules,
    /// and a rule on a longer suffix wins over one on a shorter suffix.
    pub fn matches(&self, name: &str) -> Option<MatchKind> {
        self.matching_rule(name).map(|(kind, _)| kind)
    }

    /// [`RuleSet::matches`], with the name the matching rule is anchored on (`example.com`
    /// for the rule `*.example.com`); [`rule_text`] writes the rule back.
    pub fn matching_rule<'n>(&self, name: &'n str) -> Option<(MatchKind, &'n str)> {
        self.matching_rules(name).next()
    }

    /// Every rule that matches a normalised name, most specific first: on the name itself
    /// the exact rule, then `.name`; then on each parent, longest first, `*.parent`, then
    /// `.parent`. [`RuleSet::matching_rule`] is the first of them.
    pub fn matching_rules<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = (MatchKind, &'n str)> + 's
    where
        'n: 's,
    {
        let own = self.by_name.get(name).into_iter().flat_map(move |rules| {
            [
                rules.exact.then_some((MatchKind::Exact, name)),
                rules
                    .domain_and_subdomains
                    .then_some((MatchKind::DomainAndSubdomains, name)),
            ]
            .into_iter()
            .flatten()
        });
        let parents = std::iter::successors(name.split_once('.').map(|(_, p)| p), |rest| {
            rest.split_once('.').map(|(_, p)| p)
        })
        .flat_map(move |parent| {
            self.by_name.get(parent).into_iter().flat_map(move |rules| {
                [
                    rules.subdomains.then_some((MatchKind::Subdomain, parent)),
                    rules
                        .domain_and_subdomains
                        .then_some((MatchKind::DomainAndSubdomains, parent)),
                ]
                .into_iter()
                .flatten()
            })
        });
        own.chain(parents)
    }
}

/// A rule in list syntax (normalised): the inverse of [`split_pattern`].
pub fn rule_text(kind: MatchKind, anchor: &str) -> String {
    match kind {
        MatchKind::Exact => anchor.to_owned(),
        MatchKind::Subdomain => format!("*.{anchor}"),
        MatchKind::DomainAndSubdomains => format!(".{anchor}"),
    }
}

/// The entries of a list file with their line numbers (from 0): one pattern per line,
/// blank lines and `#` comments skipped.
pub fn list_entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index, line.split('#').next().unwrap_or("").trim()))
        .filter(|(_, entry)| !entry.is_empty())
}

/// Splits a pattern into its form and the name it is anchored on (not yet normalised):
/// `*.example.com` -> (`Subdomain`, `example.com`), `.example.com` ->
/// (`DomainAndSubdomains`, `example.com`), `example.com` -> (`Exact`, `example.com`).
pub fn split_pattern(pattern: &str) -> (MatchKind, &str) {
    let trimmed = pattern.trim();
    if let Some(rest) = trimmed.strip_prefix("*.") {
        (MatchKind::Subdomain, rest)
    } else if let Some(rest) = trimmed.strip_prefix('.') {
        (MatchKind::DomainAndSubdomains, rest)
    } else {
        (MatchKind::Exact, trimmed)
    }
}

/// The list verdict for a name: which list matched and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListDecision {
    Allow(MatchKind),
    Deny(MatchKind),
}

impl ListDecision {
    pub fn verdict(self) -> Verdict {
        match self {
            ListDecision::Allow(_) => Verdict::Allow,
            ListDecision::Deny(_) => Verdict::Block,
        }
    }

    pub fn reason(self) -> Reason {
        match self {
            ListDecision::Allow(_) => Reason::AllowList,
            ListDecision::Deny(_) => Reason::DenyList,
        }
    }
}

/// An allow list and a deny list; the allow list always wins.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow: RuleSet,
    pub deny: RuleSet,
}

impl Policy {
    /// Decides a normalised name from the lists alone; `None` means neither list matched.
    pub fn decide(&self, name: &str) -> Option<ListDecision> {
        if let Some(kind) = self.allow.matches(name) {
            return Some(ListDecision::Allow(kind));
        }
        self.deny.matches(name).map(ListDecision::Deny)
    }

    /// The rule (list syntax) of the list `reason` names that matches `name`, for the
    /// decision record; `None` for [`Reason::Model`] or when no rule matches.
    pub fn rule_for(&self, name: &str, reason: Reason) -> Option<String> {
        let set = match reason {
            Reason::AllowList => &self.allow,
            Reason::DenyList => &self.deny,
            Reason::Model => return None,
        };
        set.matching_rule(name).map(|(k, a)| rule_text(k, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Instant;

    fn set(patterns: &[&str]) -> RuleSet {
        RuleSet::from_patterns(patterns.iter().copied()).unwrap()
    }

    #[test]
    fn matching_rules_lists_every_match_most_specific_first() {
        let s = set(&["a.b.test", ".a.b.test", "*.b.test", ".b.test", "*.a.b.test"]);
        let all: Vec<String> = s
            .matching_rules("a.b.test")
            .map(|(k, a)| rule_text(k, a))
            .collect();
        assert_eq!(all, ["a.b.test", ".a.b.test", "*.b.test", ".b.test"]);
        let under: Vec<String> = s
            .matching_rules("x.a.b.test")
            .map(|(k, a)| rule_text(k, a))
            .collect();
        assert_eq!(under, ["*.a.b.test", ".a.b.test", "*.b.test", ".b.test"]);
        assert_eq!(s.matching_rules("other.test").count(), 0);
    }

    #[test]
    fn matching_rule_names_the_rule() {
        let s = set(&["*.ads.test", ".evil.test", "one.test"]);
        let rule = |n: &str| s.matching_rule(n).map(|(k, a)| rule_text(k, a));
        assert_eq!(rule("x.y.ads.test").as_deref(), Some("*.ads.test"));
        assert_eq!(rule("evil.test").as_deref(), Some(".evil.test"));
        assert_eq!(rule("a.evil.test").as_deref(), Some(".evil.test"));
        assert_eq!(rule("one.test").as_deref(), Some("one.test"));
        assert_eq!(rule("ads.test"), None);
    }

    #[test]
    fn exact_pattern_matches_only_that_name() {
        let s = set(&["Example.COM."]);
        assert_eq!(s.matches("example.com"), Some(MatchKind::Exact));
        assert_eq!(s.matches("www.example.com"), None);
        assert_eq!(s.matches("com"), None);
        assert_eq!(s.matches("notexample.com"), None);
    }

    #[test]
    fn wildcard_matches_strictly_under() {
        let s = set(&["*.example.com"]);
        assert_eq!(s.matches("example.com"), None);
        assert_eq!(s.matches("a.example.com"), Some(MatchKind::Subdomain));
        assert_eq!(s.matches("a.b.example.com"), Some(MatchKind::Subdomain));
        assert_eq!(s.matches("badexample.com"), None);
    }

    #[test]
    fn leading_dot_matches_domain_and_everything_under() {
        let s = set(&[".example.com"]);
        assert_eq!(
            s.matches("example.com"),
            Some(MatchKind::DomainAndSubdomains)
        );
        assert_eq!(
            s.matches("x.y.example.com"),
            Some(MatchKind::DomainAndSubdomains)
        );
        assert_eq!(s.matches("example.org"), None);
    }

    #[test]
    fn forms_on_the_same_name_coexist() {
        let s = set(&["example.com", "*.example.com"]);
        assert_eq!(s.matches("example.com"), Some(MatchKind::Exact));
        assert_eq!(s.matches("a.example.com"), Some(MatchKind::Subdomain));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn bad_entry_is_named_with_its_index() {
        let err = RuleSet::from_patterns(["ok.com", "*.fine.org", "bad..name"]).unwrap_err();
        assert_eq!(err.index, 2);
        assert_eq!(err.entry, "bad..name");
        assert!(err.to_string().contains("rule #2 \"bad..name\""), "{err}");
        for bad in ["", "*.", ".", "*.a b.com", "**.x.com"] {
            assert!(RuleSet::from_patterns([bad]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn list_text_skips_comments_and_blank_lines() {
        let s =
            RuleSet::from_list_text("# header\n\nexample.com  # trailing\n*.ads.net\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.matches("x.ads.net"), Some(MatchKind::Subdomain));
        let err = RuleSet::from_list_text("ok.com\n\nbad..com\n").unwrap_err();
        assert_eq!(err.index, 2);
    }

    #[test]
    fn allow_beats_deny() {
        let policy = Policy {
            allow: set(&["good.example.com"]),
            deny: set(&[".example.com"]),
        };
        assert_eq!(
            policy.decide("good.example.com"),
            Some(ListDecision::Allow(MatchKind::Exact))
        );
        assert_eq!(
            policy.decide("bad.example.com"),
            Some(ListDecision::Deny(MatchKind::DomainAndSubdomains))
        );
        assert_eq!(policy.decide("other.org"), None);
        let d = policy.decide("bad.example.com").unwrap();
        assert_eq!(
            (d.verdict(), d.reason()),
            (Verdict::Block, Reason::DenyList)
        );
    }

    /// Builds a 100k-entry list and prints how long it took (the speed goal lives in a
    /// benchmark; this checks that every entry is really in the set).
    #[test]
    fn hundred_thousand_entries_build_and_match() {
        let names: Vec<String> = (0..100_000)
            .map(|i| match i % 3 {
                0 => format!("host{i}.example{}.com", i % 977),
                1 => format!("*.zone{i}.net"),
                _ => format!(".tracker{i}.org"),
            })
            .collect();
        let start = Instant::now();
        let s = RuleSet::from_patterns(names.iter().map(String::as_str)).unwrap();
        println!("built 100k-entry rule set in {:?}", start.elapsed());
        assert_eq!(s.len(), 100_000);
        assert_eq!(s.matches("host3.example3.com"), Some(MatchKind::Exact));
        assert_eq!(s.matches("a.zone4.net"), Some(MatchKind::Subdomain));
        assert_eq!(s.matches("zone4.net"), None);
        assert_eq!(
            s.matches("x.tracker5.org"),
            Some(MatchKind::DomainAndSubdomains)
        );
        assert_eq!(s.matches("host4.example4.com"), None);
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,8}"
    }

    fn labels() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(label(), 1..5)
    }

    /// Reference semantics, written as directly as possible.
    fn reference(patterns: &[String], name: &str) -> bool {
        patterns.iter().any(|p| {
            if let Some(base) = p.strip_prefix("*.") {
                name.ends_with(&format!(".{base}"))
            } else if let Some(base) = p.strip_prefix('.') {
                name == base || name.ends_with(&format!(".{base}"))
            } else {
                name == p
            }
        })
    }

    proptest! {
        #[test]
        fn matching_agrees_with_reference(
            bases in prop::collection::vec((labels(), 0..3u8), 0..6),
            name in labels(),
            reuse in prop::option::of((0..6usize, labels())),
        ) {
            let patterns: Vec<String> = bases
                .iter()
                .map(|(ls, form)| {
                    let base = ls.join(".");
                    match form { 0 => base, 1 => format!("*.{base}"), _ => format!(".{base}") }
                })
                .collect();
            // Often query a name under one of the patterns, so matches are exercised.
            let name = match (reuse, bases.is_empty()) {
                (Some((i, prefix)), false) => {
                    format!("{}.{}", prefix.join("."), bases[i % bases.len()].0.join("."))
                }
                _ => name.join("."),
            };
            let s = RuleSet::from_patterns(patterns.iter().map(String::as_str)).unwrap();
            prop_assert_eq!(s.matches(&name).is_some(), reference(&patterns, &name));
        }
    }
}
