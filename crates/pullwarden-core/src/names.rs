//! Kubernetes name rules and namespace patterns (exact names, globs or
//! label selectors).

use std::collections::{BTreeMap, BTreeSet};

use globset::{Glob, GlobMatcher};

/// A namespace's labels.
pub type Labels = BTreeMap<String, String>;

/// Why a name is not a valid Kubernetes name.
pub fn dns_label_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 63 {
        return Some(format!(
            "is {} characters long; at most 63 are allowed",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("may contain only lowercase letters, digits and '-'".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// RFC 1123 subdomain: the rule for Secret and ServiceAccount names.
pub fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some(format!(
            "is {} characters long; at most 253 are allowed",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Some("may contain only lowercase letters, digits, '-' and '.'".into());
    }
    for part in name.split('.') {
        if part.is_empty() || part.starts_with('-') || part.ends_with('-') {
            return Some(
                "each '.'-separated part must start and end with a letter or digit".into(),
            );
        }
    }
    None
}

/// RBAC role names allow almost anything but '/' and '%' (path segment rules).
pub fn role_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('%') {
        return Some("may not be '.' or '..' or contain '/' or '%'".into());
    }
    None
}

/// Whether a pattern string uses glob syntax.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The name part of a label key and a label value: alphanumerics, '-', '_'
/// and '.', starting and ending with an alphanumeric (Kubernetes'
/// `qualifiedNameFmt`).
fn label_name_chars_problem(name: &str) -> Option<&'static str> {
    let ok_end = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Some("may contain only letters, digits, '-', '_' and '.'");
    }
    if !ok_end(name.as_bytes().first()) || !ok_end(name.as_bytes().last()) {
        return Some("must start and end with a letter or digit");
    }
    None
}

/// Why a label key is not a Kubernetes qualified name: an optional DNS
/// subdomain prefix and '/', then a name of at most 63 characters
/// (`validation.IsQualifiedName`).
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("has an empty prefix before '/'".into());
        }
        if let Some(problem) = dns_subdomain_problem(prefix) {
            return Some(format!(
                "has a prefix that is not a DNS subdomain: it {problem}"
            ));
        }
    }
    if name.contains('/') {
        return Some("has more than one '/' (at most one separates the prefix)".into());
    }
    if name.is_empty() {
        return Some("has an empty name (the part after any '/' prefix)".into());
    }
    if name.len() > 63 {
        return Some(format!(
            "has a name part of {} characters; at most 63 are allowed",
            name.len()
        ));
    }
    label_name_chars_problem(name).map(|p| format!("has a name part that {p}"))
}

/// Why a label value is not valid: empty, or at most 63 characters of
/// letters, digits, '-', '_' and '.', starting and ending with a letter or
/// digit (`validation.IsValidLabelValue`).
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 63 {
        return Some(format!(
            "is {} characters long; at most 63 are allowed",
            value.len()
        ));
    }
    label_name_chars_problem(value).map(str::to_string)
}

/// The operator of one label selector requirement (`matchExpressions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl SelectorOperator {
    pub const ALL: [(&'static str, Self); 4] = [
        ("In", Self::In),
        ("NotIn", Self::NotIn),
        ("Exists", Self::Exists),
        ("DoesNotExist", Self::DoesNotExist),
    ];

    /// Whether the operator takes values (`In`, `NotIn`: at least one;
    /// `Exists`, `DoesNotExist`: none).
    pub fn takes_values(self) -> bool {
        matches!(self, Self::In | Self::NotIn)
    }
}

/// One requirement of a label selector: `matchLabels` entries are `In` with
/// one value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: BTreeSet<String>,
}

impl SelectorRequirement {
    /// Kubernetes' `labels.Requirement.Matches`: `NotIn` and `DoesNotExist`
    /// match a namespace without the key; `In` and `Exists` need it.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl std::fmt::Display for SelectorRequirement {
    /// Kubernetes' selector syntax: `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let values = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            SelectorOperator::In if self.values.len() == 1 => {
                write!(f, "{}={}", self.key, values())
            }
            SelectorOperator::In => write!(f, "{} in ({})", self.key, values()),
            SelectorOperator::NotIn => write!(f, "{} notin ({})", self.key, values()),
            SelectorOperator::Exists => write!(f, "{}", self.key),
            SelectorOperator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A Kubernetes label selector (`metav1.LabelSelector`): every requirement
/// must hold (all of them); no requirement matches every namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// Sorted and without duplicates, so that equal selectors compare equal.
    requirements: Vec<SelectorRequirement>,
    /// The selector in Kubernetes' syntax (`team=payments,!legacy`).
    text: String,
}

impl LabelSelector {
    /// A selector of these requirements (`matchLabels` given as `In` with one value).
    pub fn new(requirements: impl IntoIterator<Item = SelectorRequirement>) -> Self {
        let requirements: Vec<SelectorRequirement> = requirements
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let text = requirements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Self { requirements, text }
    }

    pub fn requirements(&self) -> &[SelectorRequirement] {
        &self.requirements
    }

    /// Whether a namespace with these labels is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The selector in Kubernetes' syntax; empty for the empty selector.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// How namespaces are chosen: an exact name, a shell-style glob, or a label
/// selector.
#[derive(Clone, Debug)]
pub enum NamespacePattern {
    Exact(String),
    Glob {
        pattern: String,
        matcher: GlobMatcher,
    },
    /// Chooses namespaces by their labels; needs the namespaces' labels.
    Selector(LabelSelector),
}

impl NamespacePattern {
    /// Parses a name pattern. Exact names must be DNS labels; globs must compile.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if is_glob(pattern) {
            let glob =
                Glob::new(pattern).map_err(|e| format!("is not a valid glob: {}", e.kind()))?;
            Ok(Self::Glob {
                pattern: pattern.to_string(),
                matcher: glob.compile_matcher(),
            })
        } else {
            match dns_label_problem(pattern) {
                Some(problem) => Err(format!("is not a valid namespace name: it {problem}")),
                None => Ok(Self::Exact(pattern.to_string())),
            }
        }
    }

    /// The name, the glob, or the selector in Kubernetes' syntax.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Exact(name) => name,
            Self::Glob { pattern, .. } => pattern,
            Self::Selector(selector) => selector.as_str(),
        }
    }

    pub fn is_glob(&self) -> bool {
        matches!(self, Self::Glob { .. })
    }

    pub fn is_selector(&self) -> bool {
        matches!(self, Self::Selector(_))
    }

    /// Whether a namespace is chosen, judging by its name alone: a selector
    /// chooses nothing this way (see [`Self::matches_namespace`]).
    pub fn matches(&self, namespace: &str) -> bool {
        match self {
            Self::Exact(name) => name == namespace,
            Self::Glob { matcher, .. } => matcher.is_match(namespace),
            Self::Selector(_) => false,
        }
    }

    /// Whether a namespace is chosen, given its labels when they are known:
    /// `None` when only its labels could tell and they are not known.
    pub fn matches_namespace(&self, namespace: &str, labels: Option<&Labels>) -> Option<bool> {
        match self {
            Self::Selector(selector) => labels.map(|labels| selector.matches(labels)),
            _ => Some(self.matches(namespace)),
        }
    }
}

/// How clusters are chosen by `PullSecret.spec.clusters` and
/// `PullGrant.spec.clusters`: the same names, globs and label selectors as
/// namespaces, matched against a cluster's name and its declared `labels`.
pub type ClusterPattern = NamespacePattern;

impl NamespacePattern {
    /// Whether an object with this name and these labels is chosen (a name
    /// or glob by the name, a selector by the labels).
    pub fn matches_labeled(&self, name: &str, labels: &Labels) -> bool {
        match self {
            Self::Selector(selector) => selector.matches(labels),
            _ => self.matches(name),
        }
    }
}

impl PartialEq for NamespacePattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Selector(a), Self::Selector(b)) => a == b,
            (Self::Selector(_), _) | (_, Self::Selector(_)) => false,
            _ => self.as_str() == other.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert_eq!(dns_label_problem("project-a"), None);
        assert!(dns_label_problem("Project").is_some());
        assert!(dns_label_problem("-a").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
        assert!(dns_label_problem("a.b").is_some());
        assert_eq!(dns_subdomain_problem("quay-pull.v2"), None);
        assert!(dns_subdomain_problem("a..b").is_some());
        assert!(dns_subdomain_problem("a_b").is_some());
        assert_eq!(role_name_problem("system:image-puller"), None);
        assert!(role_name_problem("a/b").is_some());
    }

    #[test]
    fn patterns_match_whole_names() {
        let glob = NamespacePattern::parse("team-*").unwrap();
        assert!(glob.matches("team-a"));
        assert!(!glob.matches("my-team-a"));
        let set = NamespacePattern::parse("team-[ab]").unwrap();
        assert!(set.matches("team-b") && !set.matches("team-c"));
        let q = NamespacePattern::parse("p?").unwrap();
        assert!(q.matches("p1") && !q.matches("p12"));
        assert!(NamespacePattern::parse("team-[").is_err());
        assert!(NamespacePattern::parse("Team").is_err());
        assert!(NamespacePattern::parse("b").unwrap().matches("b"));
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> SelectorRequirement {
        SelectorRequirement {
            key: key.to_string(),
            operator,
            values: values.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_operator_matches_as_kubernetes_does() {
        use SelectorOperator::{DoesNotExist, Exists, In, NotIn};
        let prod = labels(&[("env", "prod"), ("team", "payments")]);
        let dev = labels(&[("env", "dev")]);
        let bare = Labels::new();
        let empty_value = labels(&[("env", "")]);

        let r#in = req("env", In, &["prod", "staging"]);
        assert!(r#in.matches(&prod));
        assert!(!r#in.matches(&dev));
        assert!(!r#in.matches(&bare), "In needs the key");
        assert!(!r#in.matches(&empty_value));
        assert!(
            req("env", In, &[""]).matches(&empty_value),
            "an empty value is a value"
        );

        let not_in = req("env", NotIn, &["prod"]);
        assert!(!not_in.matches(&prod));
        assert!(not_in.matches(&dev));
        assert!(
            not_in.matches(&bare),
            "NotIn matches a namespace without the key"
        );
        assert!(not_in.matches(&empty_value));
        assert!(!req("env", NotIn, &[""]).matches(&empty_value));

        let exists = req("team", Exists, &[]);
        assert!(exists.matches(&prod));
        assert!(!exists.matches(&dev));
        assert!(!exists.matches(&bare));
        assert!(
            req("env", Exists, &[]).matches(&empty_value),
            "an empty value exists"
        );

        let absent = req("team", DoesNotExist, &[]);
        assert!(!absent.matches(&prod));
        assert!(absent.matches(&dev));
        assert!(absent.matches(&bare));
        assert!(!req("env", DoesNotExist, &[]).matches(&empty_value));
    }

    #[test]
    fn requirements_are_anded_and_the_empty_selector_matches_everything() {
        use SelectorOperator::{DoesNotExist, In, NotIn};
        let selector = LabelSelector::new([
            req("env", In, &["prod"]),
            req("team", NotIn, &["legacy"]),
            req("pullwarden.dev/exclude", DoesNotExist, &[]),
        ]);
        assert!(selector.matches(&labels(&[("env", "prod")])));
        assert!(selector.matches(&labels(&[("env", "prod"), ("team", "a")])));
        assert!(!selector.matches(&labels(&[("env", "prod"), ("team", "legacy")])));
        assert!(!selector.matches(&labels(&[
            ("env", "prod"),
            ("pullwarden.dev/exclude", "true")
        ])));
        assert!(!selector.matches(&labels(&[("team", "a")])));
        assert_eq!(
            selector.as_str(),
            "env=prod,!pullwarden.dev/exclude,team notin (legacy)"
        );
        let everything = LabelSelector::new([]);
        assert!(everything.matches(&Labels::new()));
        assert!(everything.matches(&labels(&[("a", "b")])));
        assert_eq!(everything.as_str(), "");
    }

    #[test]
    fn selectors_need_labels_and_compare_by_requirements() {
        use SelectorOperator::{Exists, In};
        let selector = NamespacePattern::Selector(LabelSelector::new([req("team", In, &["a"])]));
        assert!(
            !selector.matches("team"),
            "a selector never matches by name"
        );
        assert_eq!(selector.matches_namespace("x", None), None);
        assert_eq!(
            selector.matches_namespace("x", Some(&labels(&[("team", "a")]))),
            Some(true)
        );
        assert_eq!(
            selector.matches_namespace("x", Some(&Labels::new())),
            Some(false)
        );
        let name = NamespacePattern::parse("team").unwrap();
        assert_eq!(name.matches_namespace("team", None), Some(true));
        // `{matchExpressions: [{key: team, operator: Exists}]}` reads `team`, like the name.
        let exists = NamespacePattern::Selector(LabelSelector::new([req("team", Exists, &[])]));
        assert_eq!(exists.as_str(), "team");
        assert_ne!(exists, name);
        // matchLabels {team: a} and In [a] are the same requirement.
        let same = NamespacePattern::Selector(LabelSelector::new([
            req("team", In, &["a"]),
            req("team", In, &["a"]),
        ]));
        assert_eq!(same, selector);
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for good in ["team", "pullwarden.dev/exclude", "a_b.c-d", "A9", "x/y"] {
            assert_eq!(label_key_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "/team",
            "team/",
            "-team",
            "team-",
            "te am",
            "Pullwarden.dev/x",
            "a/b/c",
            &"k".repeat(64),
            &format!("{}/k", "p".repeat(254)),
        ] {
            assert!(label_key_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(label_key_problem(&"k".repeat(63)), None);
        for good in ["", "prod", "v1.2_3-x", &"v".repeat(63)] {
            assert_eq!(label_value_problem(good), None, "{good}");
        }
        for bad in ["-prod", "prod.", "a b", "a/b", &"v".repeat(64)] {
            assert!(label_value_problem(bad).is_some(), "{bad}");
        }
    }
}
