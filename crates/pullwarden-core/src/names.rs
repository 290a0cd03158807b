//! Kubernetes name rules and namespace patterns (exact names or globs).

use globset::{Glob, GlobMatcher};

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

/// A namespace selector: an exact name or a shell-style glob.
#[derive(Clone, Debug)]
pub enum NamespacePattern {
    Exact(String),
    Glob {
        pattern: String,
        matcher: GlobMatcher,
    },
}

impl NamespacePattern {
    /// Parses a pattern. Exact names must be DNS labels; globs must compile.
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

    pub fn as_str(&self) -> &str {
        match self {
            Self::Exact(name) => name,
            Self::Glob { pattern, .. } => pattern,
        }
    }

    pub fn is_glob(&self) -> bool {
        matches!(self, Self::Glob { .. })
    }

    pub fn matches(&self, namespace: &str) -> bool {
        match self {
            Self::Exact(name) => name == namespace,
            Self::Glob { matcher, .. } => matcher.is_match(namespace),
        }
    }
}

impl PartialEq for NamespacePattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
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
}
