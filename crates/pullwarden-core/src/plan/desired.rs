//! What the workspace wants on the cluster, given the live namespaces: globs
//! and label selectors expanded inside the scope, exclusions applied,
//! registries merged in order.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerconfig::Entry;
use crate::live::{LiveState, RbacSubject};
use crate::model::{
    IfMissing, Located, ResolvedRegistry, SecretFormat, Subject, Workspace, any_match,
};
use crate::names::{Labels, NamespacePattern};
use crate::secret::SecretString;

use super::{Finding, FindingCode, role_binding_name};

/// A Secret pullwarden wants, with its content (never serialized).
#[derive(Clone, Debug)]
pub struct DesiredSecret {
    pub namespace: String,
    pub name: String,
    pub format: SecretFormat,
    pub source: String,
    pub entries: Vec<Entry>,
    pub usernames_public: Vec<bool>,
    /// Per entry: whether it comes from a `fromCommand`.
    pub from_command: Vec<bool>,
}

impl DesiredSecret {
    /// The Secret's data value (`.dockerconfigjson` / `.dockercfg`), as the
    /// kubelet reads it. Only the cluster writer and digests may use it.
    pub fn data(&self) -> SecretString {
        crate::dockerconfig::render(&self.entries, self.format)
    }
}

/// Everything the workspace wants on the cluster, given the live namespaces.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub secrets: BTreeMap<(String, String), DesiredSecret>,
    /// (namespace, service account) -> secret -> purposes.
    pub links: BTreeMap<(String, String), BTreeMap<String, Purposes>>,
    pub role_bindings: BTreeMap<(String, String), DesiredRoleBinding>,
    pub matched_namespaces: BTreeSet<String>,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purposes {
    pub pull: bool,
    pub mount: bool,
    pub if_missing: Option<IfMissing>,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRoleBinding {
    pub namespace: String,
    pub name: String,
    pub grant: String,
    pub role: String,
    pub subjects: Vec<RbacSubject>,
}

pub(super) fn finding(code: FindingCode, namespace: Option<&str>, message: String) -> Finding {
    Finding {
        code,
        namespace: namespace.map(str::to_string),
        message,
        assumed: None,
    }
}

pub(super) fn terminating_warning(namespace: &str) -> Finding {
    finding(
        FindingCode::NamespaceTerminating,
        Some(namespace),
        format!(
            "namespace `{namespace}` is being deleted (Terminating): nothing is planned in it; plan again once it is gone or recreated"
        ),
    )
}

/// A namespace's labels, when they were read.
fn labels_of<'l>(live: &'l LiveState, namespace: &str) -> Option<&'l Labels> {
    live.namespace_labels.get(namespace)
}

/// What cannot be decided because namespaces' labels were not read: an
/// error, so that nothing is written or pruned on a guess.
fn labels_unknown(desired: &mut Desired, what: &str, namespaces: &[String]) {
    desired.errors.push(finding(
        FindingCode::LabelsUnknown,
        (namespaces.len() == 1).then(|| namespaces[0].as_str()),
        format!(
            "{what} depends on the labels of namespace(s) {}, which could not be read (credentials that cannot list namespaces); nothing is planned there",
            namespaces.join(", ")
        ),
    ));
}

/// The live namespaces inside the scope that a glob or label selector
/// matches (recorded for saved plans); none is a warning naming `what`.
fn expand_pattern(
    ws: &Workspace,
    live: &LiveState,
    pattern: &NamespacePattern,
    what: &str,
    desired: &mut Desired,
) -> Vec<String> {
    let mut matched = Vec::new();
    let mut unknown = Vec::new();
    for ns in &live.namespaces {
        let labels = labels_of(live, ns);
        match (
            pattern.matches_namespace(ns, labels),
            ws.scope.contains_labeled(ns, labels),
        ) {
            (Some(true), Some(true)) => matched.push(ns.clone()),
            (Some(false), _) | (_, Some(false)) => {}
            _ => unknown.push(ns.clone()),
        }
    }
    // `PullSecret/x: `team-*``, `PullSecret/x: selector `team=a``.
    let named = if pattern.is_selector() {
        format!("{what} selector `{}`", pattern.as_str())
    } else {
        format!("{what} `{}`", pattern.as_str())
    };
    if !unknown.is_empty() {
        labels_unknown(desired, &named, &unknown);
    } else if matched.is_empty() {
        desired.warnings.push(finding(
            FindingCode::GlobMatchesNothing,
            None,
            format!("{named} matches no namespace inside the workspace's scope"),
        ));
    }
    desired.matched_namespaces.extend(matched.iter().cloned());
    matched
}

/// Expands a target list: exact names (which must exist, and lie inside the
/// scope also by their labels) and globs and label selectors matched against
/// the live namespaces inside the scope, minus the exclusions.
fn expand_targets(
    ws: &Workspace,
    live: &LiveState,
    patterns: &[Located<NamespacePattern>],
    exclude: &[Located<NamespacePattern>],
    owner: &str,
    desired: &mut Desired,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for pattern in patterns {
        match &pattern.value {
            NamespacePattern::Exact(name) => {
                if live.namespaces.contains(name) {
                    // Validation checked the name against the scope; its
                    // labels may still leave it out (an opt-out label).
                    match ws.scope.contains_labeled(name, labels_of(live, name)) {
                        Some(true) => {
                            out.insert(name.clone());
                        }
                        Some(false) => desired.errors.push(finding(
                            FindingCode::ExcludedByLabels,
                            Some(name),
                            format!(
                                "{owner} targets namespace `{name}`, which the workspace's scope leaves out by its labels; nothing is planned there"
                            ),
                        )),
                        None => labels_unknown(
                            desired,
                            &format!("the workspace's scope (for {owner})"),
                            std::slice::from_ref(name),
                        ),
                    }
                } else if live.terminating.contains(name) {
                    desired.warnings.push(terminating_warning(name));
                } else {
                    desired.errors.push(finding(
                        FindingCode::MissingNamespace,
                        Some(name),
                        format!("{owner} targets namespace `{name}`, which does not exist"),
                    ));
                }
            }
            other => {
                out.extend(expand_pattern(
                    ws,
                    live,
                    other,
                    &format!("{owner}:"),
                    desired,
                ));
            }
        }
    }
    let mut unknown = Vec::new();
    out.retain(|ns| {
        let excluded = any_match(exclude, ns, labels_of(live, ns));
        if excluded.is_none() {
            unknown.push(ns.clone());
        }
        excluded == Some(false)
    });
    if !unknown.is_empty() {
        labels_unknown(desired, &format!("{owner}: excludeNamespaces"), &unknown);
    }
    out
}

/// Computes what the workspace wants, given resolved credentials and the live namespaces.
pub fn desired(
    ws: &Workspace,
    registries: &BTreeMap<String, ResolvedRegistry>,
    live: &LiveState,
) -> Desired {
    let mut desired = Desired::default();
    for secret in &ws.pull_secrets {
        let owner = format!("PullSecret/{}", secret.name);
        let targets = expand_targets(
            ws,
            live,
            &secret.namespaces,
            &secret.exclude_namespaces,
            &owner,
            &mut desired,
        );
        let mut entries = Vec::new();
        let mut public = Vec::new();
        let mut from_command = Vec::new();
        for name in &secret.registries {
            if let Some(registry) = registries.get(&name.value) {
                for entry in &registry.entries {
                    entries.push(entry.clone());
                    public.push(registry.usernames_public);
                    from_command.push(registry.from_command);
                }
            }
        }
        for ns in targets {
            desired.secrets.insert(
                (ns.clone(), secret.name.clone()),
                DesiredSecret {
                    namespace: ns.clone(),
                    name: secret.name.clone(),
                    format: secret.format,
                    source: owner.clone(),
                    entries: entries.clone(),
                    usernames_public: public.clone(),
                    from_command: from_command.clone(),
                },
            );
            for link in &secret.service_accounts {
                let purposes = desired
                    .links
                    .entry((ns.clone(), link.name.value.clone()))
                    .or_default()
                    .entry(secret.name.clone())
                    .or_default();
                purposes.pull |= link.pull;
                purposes.mount |= link.mount;
                purposes.if_missing = Some(
                    purposes
                        .if_missing
                        .map_or(link.if_missing, |m| m.max(link.if_missing)),
                );
                purposes.source.clone_from(&owner);
            }
        }
    }
    for grant in &ws.pull_grants {
        let owner = format!("PullGrant/{}", grant.name);
        let targets = expand_targets(ws, live, &grant.namespaces, &[], &owner, &mut desired);
        let mut subjects = Vec::new();
        for subject in &grant.to {
            match &subject.value {
                Subject::ServiceAccount { namespace, name } => {
                    subjects.push(RbacSubject::service_account(namespace, name));
                }
                Subject::Group(g) => subjects.push(RbacSubject::group(g)),
                Subject::User(u) => subjects.push(RbacSubject::user(u)),
                Subject::AllServiceAccountsIn(NamespacePattern::Exact(ns)) => {
                    subjects.push(RbacSubject::group(&format!("system:serviceaccounts:{ns}")));
                }
                Subject::AllServiceAccountsIn(pattern) => {
                    let what = format!("{owner}: allServiceAccountsIn");
                    for ns in expand_pattern(ws, live, pattern, &what, &mut desired) {
                        subjects.push(RbacSubject::group(&format!("system:serviceaccounts:{ns}")));
                    }
                }
            }
        }
        let mut seen = BTreeSet::new();
        subjects.retain(|s| seen.insert(s.clone()));
        for ns in targets {
            let name = role_binding_name(&ws.name, &grant.name, &grant.role.value);
            desired.role_bindings.insert(
                (ns.clone(), name.clone()),
                DesiredRoleBinding {
                    namespace: ns,
                    name,
                    grant: grant.name.clone(),
                    role: grant.role.value.clone(),
                    subjects: subjects.clone(),
                },
            );
        }
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FileId, Origin, PullSecret, Scope};
    use crate::names::{LabelSelector, SelectorOperator, SelectorRequirement};

    fn at<T>(value: T) -> Located<T> {
        Located {
            value,
            origin: Origin {
                file: FileId(0),
                span: 0..0,
            },
        }
    }

    fn selector(key: &str, value: &str) -> NamespacePattern {
        NamespacePattern::Selector(LabelSelector::new([SelectorRequirement {
            key: key.into(),
            operator: SelectorOperator::In,
            values: [value.to_string()].into(),
        }]))
    }

    fn name(pattern: &str) -> NamespacePattern {
        NamespacePattern::parse(pattern).unwrap()
    }

    fn workspace(
        scope: Scope,
        targets: Vec<NamespacePattern>,
        exclude: Vec<NamespacePattern>,
    ) -> Workspace {
        Workspace {
            name: "ws".into(),
            scope,
            prune: true,
            registries: BTreeMap::new(),
            pull_secrets: vec![PullSecret {
                name: "pull".into(),
                origin: at(()).origin,
                format: SecretFormat::DockerConfigJson,
                registries: Vec::new(),
                namespaces: targets.into_iter().map(at).collect(),
                exclude_namespaces: exclude.into_iter().map(at).collect(),
                service_accounts: Vec::new(),
                clusters: Vec::new(),
            }],
            pull_grants: Vec::new(),
            clusters: Vec::new(),
        }
    }

    fn scope(include: Vec<NamespacePattern>, exclude: Vec<NamespacePattern>) -> Scope {
        Scope {
            include: include.into_iter().map(at).collect(),
            exclude: exclude.into_iter().map(at).collect(),
        }
    }

    type Namespaces<'a> = [(&'a str, Option<&'a [(&'a str, &'a str)]>)];

    /// Namespaces with labels read (`Some`) or not (`None`).
    fn live(namespaces: &Namespaces<'_>) -> LiveState {
        let mut live = LiveState::default();
        for (ns, labels) in namespaces {
            live.namespaces.insert((*ns).to_string());
            if let Some(labels) = labels {
                live.namespace_labels.insert(
                    (*ns).to_string(),
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                );
            }
        }
        live
    }

    fn targets(desired: &Desired) -> Vec<&str> {
        desired.secrets.keys().map(|(ns, _)| ns.as_str()).collect()
    }

    #[test]
    fn selectors_choose_by_labels_inside_the_scope_and_are_recorded() {
        let ws = workspace(
            scope(vec![name("team-*")], vec![selector("opt-out", "true")]),
            vec![selector("pull", "quay")],
            vec![selector("env", "sandbox")],
        );
        let live = live(&[
            ("team-a", Some(&[("pull", "quay")])),
            ("team-b", Some(&[("pull", "quay"), ("opt-out", "true")])),
            ("team-c", Some(&[("pull", "quay"), ("env", "sandbox")])),
            ("team-d", Some(&[])),
            ("other", Some(&[("pull", "quay")])),
        ]);
        let got = desired(&ws, &BTreeMap::new(), &live);
        assert_eq!(targets(&got), ["team-a"]);
        assert!(got.errors.is_empty() && got.warnings.is_empty());
        assert_eq!(
            got.matched_namespaces,
            BTreeSet::from(["team-a".to_string(), "team-c".to_string()])
        );
    }

    #[test]
    fn a_selector_matching_nothing_warns() {
        let ws = workspace(
            scope(vec![name("*")], Vec::new()),
            vec![selector("pull", "quay")],
            Vec::new(),
        );
        let got = desired(&ws, &BTreeMap::new(), &live(&[("a", Some(&[]))]));
        assert!(got.secrets.is_empty());
        assert_eq!(got.warnings.len(), 1);
        assert_eq!(got.warnings[0].code, FindingCode::GlobMatchesNothing);
        assert!(got.warnings[0].message.contains("selector `pull=quay`"));
    }

    #[test]
    fn an_exact_target_left_out_by_its_labels_is_an_error() {
        let ws = workspace(
            scope(vec![name("*")], vec![selector("opt-out", "true")]),
            vec![name("a"), name("b")],
            Vec::new(),
        );
        let live = live(&[("a", Some(&[])), ("b", Some(&[("opt-out", "true")]))]);
        let got = desired(&ws, &BTreeMap::new(), &live);
        assert_eq!(targets(&got), ["a"]);
        assert_eq!(got.errors.len(), 1);
        assert_eq!(got.errors[0].namespace.as_deref(), Some("b"));
    }

    /// Credentials that cannot read namespaces: labels unknown. Nothing is
    /// decided on a guess: an error, and the namespace is not planned (so an
    /// opted-out namespace is neither written nor, the plan failing, pruned).
    #[test]
    fn unknown_labels_are_an_error_never_a_guess() {
        // An exclusion selector in the scope, an exact target.
        let ws = workspace(
            scope(vec![name("*")], vec![selector("opt-out", "true")]),
            vec![name("a")],
            Vec::new(),
        );
        let got = desired(&ws, &BTreeMap::new(), &live(&[("a", None)]));
        assert!(got.secrets.is_empty());
        assert_eq!(got.errors.len(), 1);
        assert!(got.errors[0].message.contains("could not be read"));

        // A target selector, an excludeNamespaces selector.
        for (targets_, exclude) in [
            (vec![selector("pull", "quay")], Vec::new()),
            (vec![name("a")], vec![selector("env", "sandbox")]),
        ] {
            let ws = workspace(scope(vec![name("*")], Vec::new()), targets_, exclude);
            let got = desired(&ws, &BTreeMap::new(), &live(&[("a", None)]));
            assert!(got.secrets.is_empty());
            assert_eq!(got.errors.len(), 1, "{:?}", got.errors);
        }

        // Names and globs alone need no labels.
        let ws = workspace(
            scope(vec![name("*")], vec![name("b")]),
            vec![name("a"), name("c*")],
            Vec::new(),
        );
        let got = desired(&ws, &BTreeMap::new(), &live(&[("a", None), ("c1", None)]));
        assert_eq!(targets(&got), ["a", "c1"]);
        assert!(got.errors.is_empty());
    }

    #[test]
    fn the_scope_decides_with_labels_when_it_must() {
        let s = scope(
            vec![name("team-*"), selector("managed", "yes")],
            vec![name("team-x"), selector("opt-out", "true")],
        );
        let labels = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        assert_eq!(s.contains_labeled("team-a", Some(&labels(&[]))), Some(true));
        assert_eq!(
            s.contains_labeled("team-a", Some(&labels(&[("opt-out", "true")]))),
            Some(false)
        );
        assert_eq!(
            s.contains_labeled("db", Some(&labels(&[("managed", "yes")]))),
            Some(true)
        );
        assert_eq!(s.contains_labeled("db", Some(&labels(&[]))), Some(false));
        // Excluded by name: no labels needed.
        assert_eq!(s.contains_labeled("team-x", None), Some(false));
        // Included by name, the exclusion selector cannot tell.
        assert_eq!(s.contains_labeled("team-a", None), None);
        assert_eq!(s.contains_labeled("db", None), None);
        // By name alone, an include selector may hold any namespace.
        assert!(s.contains("db") && s.contains("team-a") && !s.contains("team-x"));
        assert!(s.has_selectors());
    }
}
