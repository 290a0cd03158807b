//! Who may pull from which project: the pull question for many subjects and
//! projects at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::authorize::{Authorizer, BindingRef, rule_allows};
use crate::model::{
    PolicyRule, ResourceRequest, RoleRef, Subject, SubjectKey, service_account_groups,
    service_account_user_name,
};

/// Who pulls: one ServiceAccount, or every ServiceAccount of a namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PullSubject {
    ServiceAccount {
        namespace: String,
        name: String,
    },
    /// What every ServiceAccount of the namespace may pull through its
    /// groups alone (`system:serviceaccounts`, `system:serviceaccounts:NS`,
    /// `system:authenticated`): a binding to one ServiceAccount by name does
    /// not count.
    AllServiceAccountsIn(String),
}

impl PullSubject {
    /// A ServiceAccount.
    pub fn service_account(namespace: &str, name: &str) -> PullSubject {
        PullSubject::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The Kubernetes user name (`system:serviceaccount:NS:NAME`), or for
    /// all ServiceAccounts of a namespace its group
    /// (`system:serviceaccounts:NS`).
    pub fn kubernetes_name(&self) -> String {
        match self {
            PullSubject::ServiceAccount { namespace, name } => {
                service_account_user_name(namespace, name)
            }
            PullSubject::AllServiceAccountsIn(namespace) => {
                format!("system:serviceaccounts:{namespace}")
            }
        }
    }

    fn keys(&self) -> Vec<SubjectKey> {
        let namespace = match self {
            PullSubject::ServiceAccount { namespace, .. }
            | PullSubject::AllServiceAccountsIn(namespace) => namespace,
        };
        let mut keys: Vec<SubjectKey> = service_account_groups(namespace)
            .into_iter()
            .map(SubjectKey::Group)
            .collect();
        if let PullSubject::ServiceAccount { namespace, name } = self {
            keys.push(SubjectKey::User(service_account_user_name(namespace, name)));
        }
        keys
    }
}

impl crate::Policy {
    /// Drops what can grant no pull: Roles and ClusterRoles whose rules
    /// allow none ([`pull_streams`]), and the bindings to a role dropped or
    /// missing (a missing role grants nothing either). Every pull question
    /// ([`PullIndex`], [`AccessMatrix`], whether `Authorizer::authorize`
    /// allows a pull and through which bindings) has the same answer on
    /// what is left; other questions do not, nor does
    /// `Decision::missing_roles`. A cluster's RoleBindings are mostly of
    /// other roles (`view`, `edit`, operators'): they are not kept.
    pub fn retain_pull_relevant(&mut self) {
        self.roles.retain(|r| pull_streams(&r.rules).is_some());
        self.cluster_roles
            .retain(|r| pull_streams(&r.rules).is_some());
        let roles: HashSet<(&str, &str)> = self
            .roles
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str()))
            .collect();
        let cluster_roles: HashSet<&str> =
            self.cluster_roles.iter().map(|r| r.name.as_str()).collect();
        let kept = |role: &RoleRef, namespace: &str| match role {
            RoleRef::Role(name) => roles.contains(&(namespace, name.as_str())),
            RoleRef::ClusterRole(name) => cluster_roles.contains(name.as_str()),
            RoleRef::Other { .. } => false,
        };
        self.role_bindings
            .retain(|b| kept(&b.role_ref, &b.namespace));
        self.cluster_role_bindings.retain(|b| kept(&b.role_ref, ""));
    }
}

/// The user and group names some bindings' subjects match: which
/// [`PullSubject`]s those bindings can apply to, without evaluating them.
#[derive(Clone, Debug, Default)]
pub struct SubjectNames {
    keys: HashSet<SubjectKey>,
}

impl SubjectNames {
    /// Adds the subjects of one binding (`binding_namespace`: the
    /// RoleBinding's namespace, `""` for a `ClusterRoleBinding`), as the
    /// authorizer matches them.
    pub fn add_binding(&mut self, subjects: &[Subject], binding_namespace: &str) {
        self.keys
            .extend(subjects.iter().filter_map(|s| s.key(binding_namespace)));
    }

    /// Whether one of the added subjects matches `subject`'s user name or
    /// one of its groups (for [`PullSubject::AllServiceAccountsIn`], its
    /// groups only).
    pub fn applies_to(&self, subject: &PullSubject) -> bool {
        subject.keys().iter().any(|k| self.keys.contains(k))
    }
}

/// Which image streams of a project a grant covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Streams {
    /// Every stream (a rule without `resourceNames`).
    All,
    /// Only these streams (the `resourceNames` of the allowing rules).
    Named(BTreeSet<String>),
}

impl Streams {
    /// Whether `stream` is covered.
    pub fn contains(&self, stream: &str) -> bool {
        match self {
            Streams::All => true,
            Streams::Named(names) => names.contains(stream),
        }
    }

    /// Whether every stream `self` covers is covered by `other`.
    pub fn is_subset(&self, other: &Streams) -> bool {
        match (self, other) {
            (_, Streams::All) => true,
            (Streams::All, Streams::Named(_)) => false,
            (Streams::Named(a), Streams::Named(b)) => a.is_subset(b),
        }
    }

    fn union(self, other: &Streams) -> Streams {
        match (self, other) {
            (Streams::All, _) | (_, Streams::All) => Streams::All,
            (Streams::Named(mut a), Streams::Named(b)) => {
                a.extend(b.iter().cloned());
                Streams::Named(a)
            }
        }
    }
}

/// The streams of a project that `rules` let anyone bound to them pull
/// (`get` on `imagestreams/layers` in `image.openshift.io`), or `None`.
///
/// A rule with `resourceNames` allows exactly the listed streams, which
/// upstream's `ResourceNameMatches` decides per request name; every other
/// part of the pull request is the same for every stream.
pub fn pull_streams(rules: &[PolicyRule]) -> Option<Streams> {
    let any_stream = ResourceRequest::pull("", None);
    let mut streams: Option<Streams> = None;
    for rule in rules {
        let covered = if rule.resource_names.is_empty() {
            // The name is the only part that varies; with no names the
            // rule allows the request for every name or none.
            rule_allows(rule, &any_stream).then_some(Streams::All)
        } else {
            let without_names = PolicyRule {
                resource_names: Vec::new(),
                ..rule.clone()
            };
            rule_allows(&without_names, &any_stream)
                .then(|| Streams::Named(rule.resource_names.iter().cloned().collect()))
        };
        if let Some(covered) = covered {
            streams = Some(match streams {
                None => covered,
                Some(s) => s.union(&covered),
            });
        }
    }
    streams
}

/// One binding through which a subject may pull from a project.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Grant {
    pub binding: BindingRef,
    pub role: RoleRef,
    /// The first subject of the binding that applies (as upstream names
    /// it): the ServiceAccount itself, its user name or one of its groups.
    pub subject: Subject,
    pub streams: Streams,
}

/// What one subject may pull from one project, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PullAccess {
    /// Every granting binding, `ClusterRoleBindings` first, each in name order.
    pub grants: Vec<Grant>,
}

impl PullAccess {
    /// The union of the grants' streams.
    pub fn streams(&self) -> Streams {
        let mut streams = Streams::Named(BTreeSet::new());
        for grant in &self.grants {
            streams = streams.union(&grant.streams);
        }
        streams
    }

    /// Whether the subject may pull every stream of the project.
    pub fn whole_project(&self) -> bool {
        self.streams() == Streams::All
    }

    /// Whether the subject may pull `stream`.
    pub fn allows(&self, stream: &str) -> bool {
        self.grants.iter().any(|g| g.streams.contains(stream))
    }
}

/// A binding that can grant a pull, with the index of its subject.
#[derive(Clone, Debug)]
struct IndexedGrant {
    grant: Grant,
    subject_index: usize,
}

/// The bindings that can grant a pull, by the user or group name they
/// match. Built once per [`Policy`](crate::Policy) in O(roles' rules +
/// bindings' subjects).
pub struct PullIndex {
    cluster_wide: HashMap<SubjectKey, Vec<IndexedGrant>>,
    /// RoleBindings: key → (project, grant).
    namespaced: HashMap<SubjectKey, Vec<(String, IndexedGrant)>>,
}

impl PullIndex {
    /// Indexes the bindings whose role allows a pull. Each role's rules are
    /// checked once, however many bindings reference it; bindings of roles
    /// that allow no pull, or that do not exist, are left out.
    pub fn new(authorizer: &Authorizer<'_>) -> PullIndex {
        let policy = authorizer.policy;
        let mut role_streams: HashMap<(String, RoleRef), Option<Streams>> = HashMap::new();
        let mut streams_of = |role: &RoleRef, namespace: &str| -> Option<Streams> {
            // A ClusterRole is the same in every namespace: checked once.
            let scope = if matches!(role, RoleRef::Role(_)) {
                namespace
            } else {
                ""
            };
            role_streams
                .entry((scope.to_owned(), role.clone()))
                .or_insert_with(|| {
                    authorizer
                        .role_rules(role, namespace)
                        .and_then(pull_streams)
                })
                .clone()
        };
        let mut cluster_wide: HashMap<SubjectKey, Vec<IndexedGrant>> = HashMap::new();
        for binding in &policy.cluster_role_bindings {
            let Some(streams) = streams_of(&binding.role_ref, "") else {
                continue;
            };
            let binding_ref = BindingRef {
                namespace: None,
                name: binding.name.clone(),
            };
            for (key, indexed) in indexed_subjects(
                &binding.subjects,
                "",
                &binding_ref,
                &binding.role_ref,
                &streams,
            ) {
                cluster_wide.entry(key).or_default().push(indexed);
            }
        }
        let mut namespaced: HashMap<SubjectKey, Vec<(String, IndexedGrant)>> = HashMap::new();
        for binding in &policy.role_bindings {
            let Some(streams) = streams_of(&binding.role_ref, &binding.namespace) else {
                continue;
            };
            let binding_ref = BindingRef {
                namespace: Some(binding.namespace.clone()),
                name: binding.name.clone(),
            };
            for (key, indexed) in indexed_subjects(
                &binding.subjects,
                &binding.namespace,
                &binding_ref,
                &binding.role_ref,
                &streams,
            ) {
                namespaced
                    .entry(key)
                    .or_default()
                    .push((binding.namespace.clone(), indexed));
            }
        }
        PullIndex {
            cluster_wide,
            namespaced,
        }
    }

    /// What `subject` may pull in every project (`ClusterRoleBindings`).
    fn cluster_wide(&self, subject: &PullSubject) -> Vec<Grant> {
        let found = subject
            .keys()
            .iter()
            .filter_map(|k| self.cluster_wide.get(k))
            .flatten()
            .cloned()
            .collect();
        first_subject_per_binding(found)
    }

    /// What `subject` may pull by RoleBindings, per project of `projects`.
    fn namespaced(
        &self,
        subject: &PullSubject,
        projects: &HashSet<&str>,
    ) -> BTreeMap<String, Vec<Grant>> {
        let mut by_project: BTreeMap<String, Vec<IndexedGrant>> = BTreeMap::new();
        for key in subject.keys() {
            for (project, indexed) in self.namespaced.get(&key).into_iter().flatten() {
                if projects.contains(project.as_str()) {
                    by_project
                        .entry(project.clone())
                        .or_default()
                        .push(indexed.clone());
                }
            }
        }
        by_project
            .into_iter()
            .map(|(project, found)| (project, first_subject_per_binding(found)))
            .collect()
    }
}

/// The keys a binding's subjects match, each with the first subject index
/// that matches it.
fn indexed_subjects(
    subjects: &[Subject],
    binding_namespace: &str,
    binding: &BindingRef,
    role: &RoleRef,
    streams: &Streams,
) -> Vec<(SubjectKey, IndexedGrant)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (subject_index, subject) in subjects.iter().enumerate() {
        let Some(key) = subject.key(binding_namespace) else {
            continue;
        };
        if seen.insert(key.clone()) {
            out.push((
                key,
                IndexedGrant {
                    grant: Grant {
                        binding: binding.clone(),
                        role: role.clone(),
                        subject: subject.clone(),
                        streams: streams.clone(),
                    },
                    subject_index,
                },
            ));
        }
    }
    out
}

/// One grant per binding, naming the first of its subjects that applies
/// (a binding can be reached through several of a subject's names), in
/// binding-name order.
fn first_subject_per_binding(mut found: Vec<IndexedGrant>) -> Vec<Grant> {
    found.sort_by(|a, b| {
        (&a.grant.binding, a.subject_index).cmp(&(&b.grant.binding, b.subject_index))
    });
    found.dedup_by(|later, first| later.grant.binding == first.grant.binding);
    found.into_iter().map(|i| i.grant).collect()
}

/// Who may pull from which project, for a set of subjects and projects.
///
/// Stored factored: the grants of `ClusterRoleBindings` once per subject
/// (they hold in every project), the grants of RoleBindings per (subject,
/// project). Memory is O(subjects + namespaced cells), not
/// O(subjects × projects).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessMatrix {
    projects: BTreeSet<String>,
    subjects: BTreeSet<PullSubject>,
    cluster_wide: BTreeMap<PullSubject, Vec<Grant>>,
    namespaced: BTreeMap<PullSubject, BTreeMap<String, Vec<Grant>>>,
}

impl AccessMatrix {
    /// Computes the matrix of `subjects` × `projects` from `index`.
    ///
    /// Cost: O(S·k + E + S·log S + P·log P), where S is the number of
    /// subjects, k ≤ 4 the names each authenticates as, P the projects and E
    /// the (subject, granting RoleBinding) matches found: the index hands
    /// each subject name only the bindings naming it, so no (subject,
    /// project, binding) triple that grants nothing is ever looked at. A
    /// binding to a group every subject has (`system:serviceaccounts`) is
    /// visited once per subject, which is what the output holds anyway.
    pub fn compute<'s>(
        index: &PullIndex,
        subjects: impl IntoIterator<Item = &'s PullSubject>,
        projects: impl IntoIterator<Item = &'s str>,
    ) -> AccessMatrix {
        let projects: BTreeSet<String> = projects.into_iter().map(str::to_owned).collect();
        let subjects: BTreeSet<PullSubject> = subjects.into_iter().cloned().collect();
        let project_set: HashSet<&str> = projects.iter().map(String::as_str).collect();
        let mut cluster_wide = BTreeMap::new();
        let mut namespaced = BTreeMap::new();
        for subject in &subjects {
            let grants = index.cluster_wide(subject);
            if !grants.is_empty() {
                cluster_wide.insert(subject.clone(), grants);
            }
            let cells = index.namespaced(subject, &project_set);
            if !cells.is_empty() {
                namespaced.insert(subject.clone(), cells);
            }
        }
        AccessMatrix {
            projects,
            subjects,
            cluster_wide,
            namespaced,
        }
    }

    /// The projects the matrix covers.
    pub fn projects(&self) -> &BTreeSet<String> {
        &self.projects
    }

    /// The subjects the matrix covers.
    pub fn subjects(&self) -> &BTreeSet<PullSubject> {
        &self.subjects
    }

    /// What `subject` may pull from `project`, or `None` when nothing
    /// (also when either is outside the matrix).
    pub fn cell(&self, subject: &PullSubject, project: &str) -> Option<PullAccess> {
        if !self.projects.contains(project) || !self.subjects.contains(subject) {
            return None;
        }
        let mut grants: Vec<Grant> = self.cluster_wide.get(subject).cloned().unwrap_or_default();
        if let Some(more) = self.namespaced.get(subject).and_then(|c| c.get(project)) {
            grants.extend(more.iter().cloned());
        }
        (!grants.is_empty()).then_some(PullAccess { grants })
    }

    /// Every (subject, project) pair where the subject may pull something,
    /// in subject then project order. A subject with a `ClusterRoleBinding`
    /// grant yields every project.
    pub fn pairs(&self) -> impl Iterator<Item = (&PullSubject, &str, PullAccess)> + '_ {
        self.subjects.iter().flat_map(move |subject| {
            let projects: Box<dyn Iterator<Item = &String>> =
                if self.cluster_wide.contains_key(subject) {
                    Box::new(self.projects.iter())
                } else {
                    Box::new(
                        self.namespaced
                            .get(subject)
                            .into_iter()
                            .flat_map(BTreeMap::keys),
                    )
                };
            projects.filter_map(move |project| {
                self.cell(subject, project)
                    .map(|access| (subject, project.as_str(), access))
            })
        })
    }

    /// The projects where `subject`'s RoleBindings grant something.
    pub(crate) fn namespaced_projects(&self, subject: &PullSubject) -> impl Iterator<Item = &str> {
        self.namespaced
            .get(subject)
            .into_iter()
            .flat_map(BTreeMap::keys)
            .map(String::as_str)
    }

    /// The streams `subject`'s `ClusterRoleBindings` grant in every project.
    pub(crate) fn cluster_wide_streams(&self, subject: &PullSubject) -> Option<Streams> {
        self.cluster_wide.get(subject).map(|grants| {
            PullAccess {
                grants: grants.clone(),
            }
            .streams()
        })
    }
}
