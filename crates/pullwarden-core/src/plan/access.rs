//! Who may pull what, and who gains or loses it with a plan, from plain data.
//!
//! Two kinds of access, as the kubelet and OpenShift's integrated registry
//! decide them:
//!
//! - **registry**: a ServiceAccount's `imagePullSecrets` name Secrets of its
//!   namespace whose docker configs hold keys; a registry is the host of a
//!   key as the kubelet normalises it ([`crate::pull::keyring`]). A Secret
//!   the kubelet cannot decode fails every pull of a pod that lists it, so a
//!   ServiceAccount listing one covers no registry. A Secret whose data was
//!   not read (pullwarden reads only the data of its own Secrets and of the
//!   ones holding a `PullSecret`'s name) covers nothing here.
//! - **project**: `get` on `imagestreams/layers` in `image.openshift.io`,
//!   evaluated by `pullwarden-rbac` ([`rbac::PullIndex`],
//!   [`rbac::AccessMatrix`], [`rbac::AccessDiff`]) over a [`rbac::Policy`]:
//!   the cluster's, or, from a snapshot (which holds RoleBindings but no
//!   roles), its RoleBindings with OpenShift's image roles
//!   ([`openshift_image_roles`]).
//!
//! A plan's effect ([`plan_access`]) is the difference between the policy and
//! pull secrets before and the same with the plan's RoleBinding, Secret and
//! link changes applied ([`policy_after`], [`PullSecretState::after`]).
//! Everything is sorted: the same inputs give the same output.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use pullwarden_rbac as rbac;
use rbac::{PullSubject, Streams};

use super::{Action, Change, Detail, EntryStatus, ObjectKind, Plan};
use crate::live::{LiveState, RbacSubject, SOURCE_ANNOTATION};
use crate::model::{Subject as WorkspaceSubject, Workspace};
use crate::names::NamespacePattern;
use crate::pull::{SecretInput, TYPE_DOCKER_CONFIG_JSON, TYPE_DOCKERCFG, docker_config, keyring};

/// Version of `pullwarden access --format json`.
pub const ACCESS_FORMAT_VERSION: u32 = 1;

/// What a snapshot-based evaluation covers, for people.
pub const SNAPSHOT_POLICY_NOTE: &str = "project access from the snapshot's RoleBindings to OpenShift's image roles \
(system:image-puller, system:image-pusher, system:image-builder, with OpenShift's rules); a snapshot holds no Roles, \
ClusterRoles or ClusterRoleBindings, so grants through any other role are not shown";

/// Registry coverage, for people.
pub const REGISTRY_NOTE: &str = "registries from the ServiceAccounts' imagePullSecrets and their docker configs; \
OpenShift's own dockercfg Secrets are not counted (the project lines stand for the integrated registry)";

/// Project or registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKind {
    /// Images of an OpenShift project (the integrated registry's RBAC check).
    Project,
    /// A registry host the subject's pull secrets hold a credential for.
    Registry,
}

impl AccessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessKind::Project => "project",
            AccessKind::Registry => "registry",
        }
    }
}

/// One allowed (subject, target) pair, with what grants it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pull {
    /// `system:serviceaccount:NS:NAME`, or the group `system:serviceaccounts:NS`.
    pub subject: String,
    pub kind: AccessKind,
    /// The project's namespace or the registry host.
    pub target: String,
    /// The granting objects: `RoleBinding ns/name`, `ClusterRoleBinding name`,
    /// `Secret ns/name`.
    pub via: Vec<String>,
}

/// One pair whose access a plan changes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccessLine {
    pub subject: String,
    pub kind: AccessKind,
    pub target: String,
    /// The granting objects after the plan (a gain) or before it (a loss).
    pub via: Vec<String>,
    /// The workspace declarations whose changes move it (`PullGrant/x`,
    /// `PullSecret/y`); `no longer declared` for a pruned object without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declarations: Vec<String>,
}

/// A plan's access section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChanges {
    /// Why it could not be computed (the credentials may not list roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    #[serde(default)]
    pub gained: Vec<AccessLine>,
    #[serde(default)]
    pub lost: Vec<AccessLine>,
    /// What the evaluation covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl AccessChanges {
    /// An access section that could not be computed, and why.
    pub fn unavailable(reason: &str) -> AccessChanges {
        AccessChanges {
            unavailable: Some(reason.to_owned()),
            ..AccessChanges::default()
        }
    }

    /// Whether nobody gains or loses anything (and it was computed).
    pub fn is_unchanged(&self) -> bool {
        self.unavailable.is_none() && self.gained.is_empty() && self.lost.is_empty()
    }
}

/// Serde's `skip_serializing_if` for `Plan::access`: absent, or nothing to
/// say, leaves the JSON plan as it was.
#[allow(clippy::ref_option)] // serde hands the field by reference
pub fn is_silent(access: &Option<AccessChanges>) -> bool {
    access.as_ref().is_none_or(AccessChanges::is_unchanged)
}

/// OpenShift's image ClusterRoles with the rules OpenShift gives them.
pub fn openshift_image_roles() -> Vec<rbac::ClusterRole> {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| rbac::PolicyRule {
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        api_groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        ..rbac::PolicyRule::default()
    };
    let image = ["", "image.openshift.io"];
    let build = ["", "build.openshift.io"];
    let cluster_role = |name: &str, rules| rbac::ClusterRole {
        name: name.to_owned(),
        rules,
        aggregated: false,
    };
    vec![
        cluster_role(
            "system:image-builder",
            vec![
                rule(&image, &["imagestreams/layers"], &["get", "update"]),
                rule(&image, &["imagestreams"], &["create"]),
                rule(&build, &["builds/details"], &["update"]),
                rule(&build, &["builds"], &["get"]),
            ],
        ),
        cluster_role(
            "system:image-puller",
            vec![rule(&image, &["imagestreams/layers"], &["get"])],
        ),
        cluster_role(
            "system:image-pusher",
            vec![rule(&image, &["imagestreams/layers"], &["get", "update"])],
        ),
    ]
}

fn rbac_subject(subject: &RbacSubject) -> rbac::Subject {
    match subject.kind.as_str() {
        "ServiceAccount" => rbac::Subject::ServiceAccount {
            namespace: subject.namespace.clone(),
            name: subject.name.clone(),
        },
        "User" => rbac::Subject::User(subject.name.clone()),
        "Group" => rbac::Subject::Group(subject.name.clone()),
        kind => rbac::Subject::Other {
            kind: kind.to_owned(),
            name: subject.name.clone(),
        },
    }
}

fn role_ref(kind: &str, name: &str) -> rbac::RoleRef {
    match kind {
        "ClusterRole" => rbac::RoleRef::ClusterRole(name.to_owned()),
        "Role" => rbac::RoleRef::Role(name.to_owned()),
        kind => rbac::RoleRef::Other {
            kind: kind.to_owned(),
            name: name.to_owned(),
        },
    }
}

/// The policy a snapshot gives: its RoleBindings, with
/// [`openshift_image_roles`] as the only roles (see [`SNAPSHOT_POLICY_NOTE`]).
pub fn policy_from_live(live: &LiveState) -> rbac::Policy {
    let mut role_bindings: Vec<rbac::RoleBinding> = live
        .role_bindings
        .iter()
        .map(|rb| rbac::RoleBinding {
            namespace: rb.meta.namespace.clone(),
            name: rb.meta.name.clone(),
            role_ref: role_ref(&rb.role_ref.kind, &rb.role_ref.name),
            subjects: rb.subjects.iter().map(rbac_subject).collect(),
        })
        .collect();
    role_bindings.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rbac::Policy {
        cluster_roles: openshift_image_roles(),
        role_bindings,
        ..rbac::Policy::default()
    }
}

/// `before` with the plan's RoleBinding creates, updates, replaces and
/// deletes applied. The plan's bindings reference ClusterRoles.
pub fn policy_after(before: &rbac::Policy, plan: &Plan) -> rbac::Policy {
    let mut bindings: BTreeMap<(String, String), rbac::RoleBinding> = before
        .role_bindings
        .iter()
        .map(|rb| ((rb.namespace.clone(), rb.name.clone()), rb.clone()))
        .collect();
    for change in plan
        .changes
        .iter()
        .filter(|c| c.kind == ObjectKind::RoleBinding)
    {
        let key = (change.namespace.clone(), change.name.clone());
        match (&change.action, &change.detail) {
            (Action::Delete, _) => {
                bindings.remove(&key);
            }
            (_, Detail::RoleBinding(diff)) => {
                if let Some(old) = &diff.replaces {
                    bindings.remove(&(change.namespace.clone(), old.name.clone()));
                }
                bindings.insert(
                    key,
                    rbac::RoleBinding {
                        namespace: change.namespace.clone(),
                        name: change.name.clone(),
                        role_ref: rbac::RoleRef::ClusterRole(diff.role.clone()),
                        subjects: diff.subjects.iter().map(rbac_subject).collect(),
                    },
                );
            }
            _ => {}
        }
    }
    rbac::Policy {
        role_bindings: bindings.into_values().collect(),
        ..before.clone()
    }
}

/// The (subject, project) pairs of `scope` that gain or lose pull access
/// from `before` to `after`, which differ only in the `touched` RoleBindings.
///
/// A RoleBinding grants in its own namespace only, so a pair can change only
/// in a touched binding's namespace and for a subject a touched binding (as
/// it is or as it will be) names. Every other pair is the same in both
/// matrices and never in the diff, so both are computed for those pairs only:
/// over the whole scope of a 2,000-namespace cluster the two matrices held
/// ~28 MB, and a plan that touches no RoleBinding now computes none. The
/// result is [`project_diff_unrestricted`]'s (a test checks it on random
/// policies and plans).
fn project_diff(
    scope: &Scope,
    before: &rbac::Policy,
    after: &rbac::Policy,
    touched: &[rbac::RoleBinding],
) -> rbac::AccessDiff {
    let mut names = rbac::SubjectNames::default();
    for rb in touched {
        names.add_binding(&rb.subjects, &rb.namespace);
    }
    let projects: BTreeSet<&str> = touched
        .iter()
        .map(|rb| rb.namespace.as_str())
        .filter(|ns| scope.projects.contains(*ns))
        .collect();
    let subjects: Vec<&PullSubject> = if projects.is_empty() {
        Vec::new()
    } else {
        scope
            .subjects
            .iter()
            .filter(|s| names.applies_to(s))
            .collect()
    };
    if subjects.is_empty() {
        return rbac::AccessDiff::default();
    }
    let matrix = |policy: &rbac::Policy| {
        let authorizer = rbac::Authorizer::new(policy);
        let index = rbac::PullIndex::new(&authorizer);
        rbac::AccessMatrix::compute(&index, subjects.iter().copied(), projects.iter().copied())
    };
    rbac::AccessDiff::between(&matrix(before), &matrix(after))
}

/// The policy before and after `plan`, reduced to what decides pulls in the
/// namespaces whose RoleBindings the plan touches (the only projects
/// [`project_diff`] compares): the Roles and RoleBindings of those
/// namespaces, the ClusterRoles that allow a pull (one that allows none
/// grants none, like a missing one) and the `ClusterRoleBindings` of those.
/// Nothing else is copied (a copy of the whole policy per plan was ~3 MB at
/// 2,000 namespaces with unrelated RoleBindings).
fn local_policies(before: &rbac::Policy, plan: &Plan) -> (rbac::Policy, rbac::Policy) {
    let namespaces: BTreeSet<&str> = plan
        .changes
        .iter()
        .filter(|c| c.kind == ObjectKind::RoleBinding)
        .map(|c| c.namespace.as_str())
        .collect();
    let cluster_roles: Vec<rbac::ClusterRole> = if namespaces.is_empty() {
        Vec::new()
    } else {
        before
            .cluster_roles
            .iter()
            .filter(|r| rbac::pull_streams(&r.rules).is_some())
            .cloned()
            .collect()
    };
    let kept: BTreeSet<&str> = cluster_roles.iter().map(|r| r.name.as_str()).collect();
    let local = rbac::Policy {
        roles: before
            .roles
            .iter()
            .filter(|r| namespaces.contains(r.namespace.as_str()))
            .cloned()
            .collect(),
        role_bindings: before
            .role_bindings
            .iter()
            .filter(|rb| namespaces.contains(rb.namespace.as_str()))
            .cloned()
            .collect(),
        cluster_role_bindings: before
            .cluster_role_bindings
            .iter()
            .filter(|b| matches!(&b.role_ref, rbac::RoleRef::ClusterRole(r) if kept.contains(r.as_str())))
            .cloned()
            .collect(),
        cluster_roles,
    };
    let after = policy_after(&local, plan);
    (local, after)
}

/// [`project_diff`] over every subject and project of the scope (what #11
/// computed): the reference the restriction is checked against.
#[cfg(test)]
fn project_diff_unrestricted(
    scope: &Scope,
    before: &rbac::Policy,
    after: &rbac::Policy,
) -> rbac::AccessDiff {
    let matrix = |policy: &rbac::Policy| {
        let authorizer = rbac::Authorizer::new(policy);
        let index = rbac::PullIndex::new(&authorizer);
        rbac::AccessMatrix::compute(
            &index,
            &scope.subjects,
            scope.projects.iter().map(String::as_str),
        )
    };
    rbac::AccessDiff::between(&matrix(before), &matrix(after))
}

/// The RoleBindings a plan creates, changes, replaces or deletes, as they
/// are in `before` and as they will be in `after`. One `before` lacks (a
/// policy read keeps only the bindings that can grant a pull:
/// `Policy::retain_pull_relevant`) is taken from `live`, which the plan was
/// made from and so holds every binding it changes: its subjects still
/// widen the scope as before.
fn touched_bindings(
    plan: &Plan,
    before: &rbac::Policy,
    after: &rbac::Policy,
    live: &LiveState,
) -> Vec<rbac::RoleBinding> {
    let touched: BTreeSet<(&str, &str)> = plan
        .changes
        .iter()
        .filter(|c| c.kind == ObjectKind::RoleBinding)
        .flat_map(|c| {
            let mut keys = vec![(c.namespace.as_str(), c.name.as_str())];
            if let Detail::RoleBinding(diff) = &c.detail
                && let Some(old) = &diff.replaces
            {
                keys.push((c.namespace.as_str(), old.name.as_str()));
            }
            keys
        })
        .collect();
    let is_touched =
        |rb: &&rbac::RoleBinding| touched.contains(&(rb.namespace.as_str(), rb.name.as_str()));
    let mut found: Vec<rbac::RoleBinding> = before
        .role_bindings
        .iter()
        .filter(is_touched)
        .cloned()
        .collect();
    let read: BTreeSet<(&str, &str)> = found
        .iter()
        .map(|rb| (rb.namespace.as_str(), rb.name.as_str()))
        .collect();
    let from_live: Vec<rbac::RoleBinding> = live
        .role_bindings
        .iter()
        .filter(|rb| {
            let key = (rb.meta.namespace.as_str(), rb.meta.name.as_str());
            touched.contains(&key) && !read.contains(&key)
        })
        .map(|rb| rbac::RoleBinding {
            namespace: rb.meta.namespace.clone(),
            name: rb.meta.name.clone(),
            role_ref: role_ref(&rb.role_ref.kind, &rb.role_ref.name),
            subjects: rb.subjects.iter().map(rbac_subject).collect(),
        })
        .collect();
    found.extend(from_live);
    found.extend(after.role_bindings.iter().filter(is_touched).cloned());
    found
}

/// The host of a registry key as the kubelet normalises it (`quay.io` for
/// `https://quay.io/v2/team`), or `None` when the kubelet ignores the key.
pub fn registry_host(raw_key: &str) -> Option<String> {
    let key = keyring::normalize_registry_key(raw_key)?;
    let host = key.split('/').next().unwrap_or_default();
    (!host.is_empty()).then(|| host.to_owned())
}

/// What a Secret gives a pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretHosts {
    /// The registry hosts of its keys (empty: not a docker-config Secret,
    /// or its data was not read).
    Hosts(BTreeSet<String>),
    /// The kubelet cannot decode its docker config: every pull of a pod
    /// listing it fails.
    Broken,
}

/// Which Secrets each ServiceAccount lists for pulling, and which registries
/// each Secret covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullSecretState {
    /// (namespace, ServiceAccount) → `imagePullSecrets` names.
    pub links: BTreeMap<(String, String), Vec<String>>,
    /// (namespace, Secret) → its registries. A listed Secret absent here
    /// does not exist (the kubelet skips it).
    pub secrets: BTreeMap<(String, String), SecretHosts>,
}

impl PullSecretState {
    /// From a live state (a cluster read or a snapshot). OpenShift's own
    /// dockercfg Secrets are left out (see [`REGISTRY_NOTE`]).
    pub fn from_live(live: &LiveState) -> PullSecretState {
        let links = live
            .service_accounts
            .iter()
            .map(|sa| {
                (
                    (sa.meta.namespace.clone(), sa.meta.name.clone()),
                    sa.image_pull_secrets.clone(),
                )
            })
            .collect();
        let secrets = live
            .secrets
            .iter()
            .filter(|s| !s.is_openshift_owned())
            .map(|s| {
                (
                    (s.meta.namespace.clone(), s.meta.name.clone()),
                    secret_hosts(&SecretInput::from_live(s)),
                )
            })
            .collect();
        PullSecretState { links, secrets }
    }

    /// This state with the plan's Secret, ServiceAccount and link changes
    /// applied.
    #[must_use]
    pub fn after(&self, plan: &Plan) -> PullSecretState {
        let mut next = self.clone();
        for change in &plan.changes {
            let key = (change.namespace.clone(), change.name.clone());
            match (change.kind, change.action, &change.detail) {
                (ObjectKind::Secret, Action::Delete, _) => {
                    next.secrets.remove(&key);
                }
                (ObjectKind::Secret, _, Detail::Secret(diff)) => {
                    let hosts = diff
                        .entries
                        .iter()
                        .filter(|e| e.status != EntryStatus::Removed)
                        .filter_map(|e| registry_host(&e.server))
                        .collect();
                    next.secrets.insert(key, SecretHosts::Hosts(hosts));
                }
                (ObjectKind::ServiceAccount, Action::Create, _) => {
                    next.links.entry(key).or_default();
                }
                (ObjectKind::ServiceAccount, _, Detail::Links(links)) => {
                    let list = next.links.entry(key).or_default();
                    list.retain(|s| !links.pull_removed.contains(s));
                    for added in &links.pull_added {
                        if !list.contains(added) {
                            list.push(added.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        next
    }

    /// The registries `namespace/service_account` may pull from, each with
    /// the Secrets covering it (in list order). Empty when a listed Secret
    /// is broken.
    pub fn registries(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let Some(listed) = self
            .links
            .get(&(namespace.to_owned(), service_account.to_owned()))
        else {
            return out;
        };
        for name in listed {
            match self.secrets.get(&(namespace.to_owned(), name.clone())) {
                Some(SecretHosts::Broken) => return BTreeMap::new(),
                Some(SecretHosts::Hosts(hosts)) => {
                    for host in hosts {
                        let via = out.entry(host.clone()).or_default();
                        if !via.contains(name) {
                            via.push(name.clone());
                        }
                    }
                }
                None => {}
            }
        }
        out
    }
}

fn secret_hosts(secret: &SecretInput<'_>) -> SecretHosts {
    let decoded = match (secret.secret_type, secret.docker_config) {
        (TYPE_DOCKER_CONFIG_JSON, Some(bytes)) if !bytes.is_empty() => {
            docker_config::decode_config_json(bytes)
        }
        (TYPE_DOCKERCFG, Some(bytes)) if !bytes.is_empty() => {
            docker_config::decode_dockercfg(bytes)
        }
        _ => return SecretHosts::Hosts(BTreeSet::new()),
    };
    match decoded {
        Ok(config) => SecretHosts::Hosts(config.keys().filter_map(|k| registry_host(k)).collect()),
        Err(_) => SecretHosts::Broken,
    }
}

/// Who and what: the subjects and projects an access evaluation covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub subjects: BTreeSet<PullSubject>,
    pub projects: BTreeSet<String>,
}

impl Scope {
    /// The workspace's scope in `live`: every ServiceAccount of its
    /// namespaces, the ServiceAccounts and `allServiceAccountsIn` groups its
    /// grants name (wherever they are), and its namespaces as projects.
    pub fn of_workspace(ws: &Workspace, live: &LiveState) -> Scope {
        let mut scope = Scope {
            subjects: BTreeSet::new(),
            projects: live
                .namespaces
                .iter()
                .filter(|ns| ws.scope.contains(ns))
                .cloned()
                .collect(),
        };
        for sa in &live.service_accounts {
            if ws.scope.contains(&sa.meta.namespace) {
                scope.subjects.insert(PullSubject::service_account(
                    &sa.meta.namespace,
                    &sa.meta.name,
                ));
            }
        }
        for subject in ws.pull_grants.iter().flat_map(|g| g.to.iter()) {
            match &subject.value {
                WorkspaceSubject::ServiceAccount { namespace, name } => {
                    scope
                        .subjects
                        .insert(PullSubject::service_account(namespace, name));
                }
                WorkspaceSubject::AllServiceAccountsIn(pattern) => {
                    scope.add_groups_matching(pattern, live);
                }
                WorkspaceSubject::Group(_) | WorkspaceSubject::User(_) => {}
            }
        }
        scope
    }

    /// `allServiceAccountsIn` groups (and their ServiceAccounts) of the
    /// namespaces `pattern` matches.
    fn add_groups_matching(&mut self, pattern: &NamespacePattern, live: &LiveState) {
        // A label selector chooses by the namespace's labels, like the planner.
        let namespaces: BTreeSet<&String> = live
            .namespaces
            .iter()
            .filter(|ns| {
                pattern
                    .matches_namespace(ns, live.namespace_labels.get(*ns))
                    .unwrap_or(false)
            })
            .collect();
        let exact = if let NamespacePattern::Exact(name) = pattern {
            Some(name)
        } else {
            None
        };
        for ns in namespaces.iter().copied().chain(exact) {
            self.add_group(ns, live);
        }
    }

    fn add_group(&mut self, namespace: &str, live: &LiveState) {
        self.subjects
            .insert(PullSubject::AllServiceAccountsIn(namespace.to_owned()));
        for sa in live
            .service_accounts
            .iter()
            .filter(|sa| sa.meta.namespace == namespace)
        {
            self.subjects.insert(PullSubject::service_account(
                &sa.meta.namespace,
                &sa.meta.name,
            ));
        }
    }

    /// Adds the subjects and projects of RoleBindings a plan touches (before
    /// and after), and the ServiceAccounts it creates.
    fn add_plan(&mut self, plan: &Plan, touched: &[rbac::RoleBinding], live: &LiveState) {
        for rb in touched {
            self.projects.insert(rb.namespace.clone());
            for subject in &rb.subjects {
                match subject {
                    rbac::Subject::ServiceAccount { namespace, name } => {
                        let ns = namespace
                            .as_deref()
                            .filter(|ns| !ns.is_empty())
                            .unwrap_or(&rb.namespace);
                        self.subjects.insert(PullSubject::service_account(ns, name));
                    }
                    rbac::Subject::Group(group) => {
                        if let Some(ns) = group.strip_prefix("system:serviceaccounts:") {
                            self.add_group(ns, live);
                        }
                    }
                    rbac::Subject::User(user) => {
                        if let Some((ns, name)) = user
                            .strip_prefix("system:serviceaccount:")
                            .and_then(|rest| rest.split_once(':'))
                        {
                            self.subjects.insert(PullSubject::service_account(ns, name));
                        }
                    }
                    rbac::Subject::Other { .. } => {}
                }
            }
        }
        for change in &plan.changes {
            if change.kind == ObjectKind::ServiceAccount && change.action == Action::Create {
                self.subjects.insert(PullSubject::service_account(
                    &change.namespace,
                    &change.name,
                ));
            }
        }
    }
}

fn via_bindings(access: &rbac::PullAccess) -> Vec<String> {
    let mut via: Vec<String> = access
        .grants
        .iter()
        .map(|g| match &g.streams {
            Streams::All => g.binding.to_string(),
            Streams::Named(names) => format!(
                "{} (image streams {})",
                g.binding,
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
        .collect();
    via.dedup();
    via
}

/// Every allowed pair of `scope`: project access by `policy`, registry
/// access by `secrets` (ServiceAccounts only). Sorted by subject, kind, target.
pub fn current_access(
    policy: &rbac::Policy,
    secrets: &PullSecretState,
    scope: &Scope,
) -> Vec<Pull> {
    let authorizer = rbac::Authorizer::new(policy);
    let index = rbac::PullIndex::new(&authorizer);
    let matrix = rbac::AccessMatrix::compute(
        &index,
        &scope.subjects,
        scope.projects.iter().map(String::as_str),
    );
    let mut pulls: Vec<Pull> = matrix
        .pairs()
        .map(|(subject, project, access)| Pull {
            subject: subject.kubernetes_name(),
            kind: AccessKind::Project,
            target: project.to_owned(),
            via: via_bindings(&access),
        })
        .collect();
    for subject in &scope.subjects {
        if let PullSubject::ServiceAccount { namespace, name } = subject {
            for (host, via) in secrets.registries(namespace, name) {
                pulls.push(Pull {
                    subject: subject.kubernetes_name(),
                    kind: AccessKind::Registry,
                    target: host,
                    via: via
                        .iter()
                        .map(|s| format!("Secret {namespace}/{s}"))
                        .collect(),
                });
            }
        }
    }
    pulls.sort();
    pulls
}

/// Which pairs `access` keeps.
#[derive(Clone, Debug, Default)]
pub struct AccessFilter {
    /// The subject's namespace.
    pub namespace: Option<NamespacePattern>,
    /// One ServiceAccount (`namespace`, `name`): its own lines only.
    pub service_account: Option<(String, String)>,
    /// Only registry lines for this host.
    pub registry: Option<String>,
}

impl AccessFilter {
    /// Whether `subject` passes the subject filters.
    pub fn keeps_subject(&self, subject: &PullSubject) -> bool {
        let namespace = match subject {
            PullSubject::ServiceAccount { namespace, .. }
            | PullSubject::AllServiceAccountsIn(namespace) => namespace,
        };
        if let Some(pattern) = &self.namespace
            && !pattern.matches(namespace)
        {
            return false;
        }
        match (&self.service_account, subject) {
            (None, _) => true,
            (Some((ns, name)), PullSubject::ServiceAccount { namespace, name: n }) => {
                ns == namespace && name == n
            }
            (Some(_), PullSubject::AllServiceAccountsIn(_)) => false,
        }
    }

    /// Whether `pull` passes the target filter.
    pub fn keeps_pull(&self, pull: &Pull) -> bool {
        self.registry
            .as_ref()
            .is_none_or(|host| pull.kind == AccessKind::Registry && pull.target == *host)
    }
}

/// `pullwarden access --format json`.
#[derive(Serialize)]
pub struct AccessReport<'a> {
    pub format_version: u32,
    pub pulls: &'a [Pull],
}

/// The declaration a plan's change stands for: its source, or the source
/// recorded on the live object it deletes.
fn change_declarations(change: &Change, live: &LiveState) -> Vec<String> {
    if let Some(source) = &change.source {
        return source.split(", ").map(str::to_owned).collect();
    }
    let recorded = match change.kind {
        ObjectKind::RoleBinding => live
            .role_bindings
            .iter()
            .find(|rb| rb.meta.namespace == change.namespace && rb.meta.name == change.name)
            .map(|rb| &rb.meta),
        ObjectKind::Secret => live
            .secrets
            .iter()
            .find(|s| s.meta.namespace == change.namespace && s.meta.name == change.name)
            .map(|s| &s.meta),
        ObjectKind::ServiceAccount => None,
    }
    .and_then(|meta| meta.annotations.get(SOURCE_ANNOTATION));
    vec![match recorded {
        Some(source) => format!("{source} (no longer declared)"),
        None => "no longer declared".to_owned(),
    }]
}

/// Who gains and who loses pull access with `plan`: `before` is the
/// cluster's policy (or [`policy_from_live`] for a snapshot), `live` the
/// state the plan was made from. Subjects: the workspace's scope
/// ([`Scope::of_workspace`]) and every subject of a RoleBinding the plan
/// touches.
pub fn plan_access(
    ws: &Workspace,
    live: &LiveState,
    before: &rbac::Policy,
    plan: &Plan,
) -> AccessChanges {
    let (before, after) = local_policies(before, plan);
    let touched = touched_bindings(plan, &before, &after, live);
    // No RoleBinding touched, no project changes: the scope is not built.
    let mut scope = Scope::default();
    if !touched.is_empty() {
        scope = Scope::of_workspace(ws, live);
        scope.add_plan(plan, &touched, live);
    }

    // Which declaration each touched object answers to.
    let mut binding_sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut secret_sources: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut link_sources: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for change in &plan.changes {
        let declarations = change_declarations(change, live);
        let key = (change.namespace.clone(), change.name.clone());
        match change.kind {
            ObjectKind::RoleBinding => {
                if let Detail::RoleBinding(diff) = &change.detail
                    && let Some(old) = &diff.replaces
                {
                    binding_sources.insert(
                        format!("RoleBinding {}/{}", change.namespace, old.name),
                        declarations.clone(),
                    );
                }
                binding_sources.insert(
                    format!("RoleBinding {}/{}", change.namespace, change.name),
                    declarations,
                );
            }
            ObjectKind::Secret => {
                secret_sources.insert(key, declarations);
            }
            ObjectKind::ServiceAccount => {
                link_sources.insert(key, declarations);
            }
        }
    }

    let diff = project_diff(&scope, &before, &after, &touched);
    let project_line = |change: &rbac::AccessChange, access: Option<&rbac::PullAccess>| {
        let via = access.map(via_bindings).unwrap_or_default();
        let mut declarations: Vec<String> = access
            .into_iter()
            .flat_map(|a| &a.grants)
            .filter_map(|g| binding_sources.get(&g.binding.to_string()))
            .flatten()
            .cloned()
            .collect();
        declarations.sort();
        declarations.dedup();
        AccessLine {
            subject: change.subject.kubernetes_name(),
            kind: AccessKind::Project,
            target: change.project.clone(),
            via,
            declarations,
        }
    };
    let mut changes = AccessChanges {
        gained: diff
            .gained
            .iter()
            .map(|c| project_line(c, c.after.as_ref()))
            .collect(),
        lost: diff
            .lost
            .iter()
            .map(|c| project_line(c, c.before.as_ref()))
            .collect(),
        ..AccessChanges::default()
    };

    // Registries: the ServiceAccounts whose links or linked Secrets change
    // (none without link or Secret changes: every Secret's hosts are then
    // not worked out).
    if link_sources.is_empty() && secret_sources.is_empty() {
        changes.gained.sort();
        changes.lost.sort();
        return changes;
    }
    let secrets_before = PullSecretState::from_live(live);
    let secrets_after = secrets_before.after(plan);
    let mut accounts: BTreeSet<(String, String)> = link_sources.keys().cloned().collect();
    for (key, listed) in secrets_before.links.iter().chain(&secrets_after.links) {
        if listed
            .iter()
            .any(|s| secret_sources.contains_key(&(key.0.clone(), s.clone())))
        {
            accounts.insert(key.clone());
        }
    }
    for (namespace, name) in &accounts {
        let old = secrets_before.registries(namespace, name);
        let new = secrets_after.registries(namespace, name);
        let subject = rbac::service_account_user_name(namespace, name);
        let registry_line = |host: &str, via: &[String]| {
            // The Secrets' own declarations; else the link's, narrowed to
            // the PullSecrets named like the Secrets.
            let mut declarations: Vec<String> = via
                .iter()
                .filter_map(|s| secret_sources.get(&(namespace.clone(), s.clone())))
                .flatten()
                .cloned()
                .collect();
            if declarations.is_empty()
                && let Some(link) = link_sources.get(&(namespace.clone(), name.clone()))
            {
                declarations = link
                    .iter()
                    .filter(|d| via.iter().any(|s| **d == format!("PullSecret/{s}")))
                    .cloned()
                    .collect();
                if declarations.is_empty() {
                    declarations.clone_from(link);
                }
            }
            declarations.sort();
            declarations.dedup();
            AccessLine {
                subject: subject.clone(),
                kind: AccessKind::Registry,
                target: host.to_owned(),
                via: via
                    .iter()
                    .map(|s| format!("Secret {namespace}/{s}"))
                    .collect(),
                declarations,
            }
        };
        for (host, via) in &new {
            if !old.contains_key(host) {
                changes.gained.push(registry_line(host, via));
            }
        }
        for (host, via) in &old {
            if !new.contains_key(host) {
                changes.lost.push(registry_line(host, via));
            }
        }
    }
    changes.gained.sort();
    changes.lost.sort();
    changes
}

/// One field of a declaration that differs between two workspaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: String,
    pub after: String,
}

/// A declaration added, removed or changed, by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeclarationChange {
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// What two workspaces declare differently.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeclarationDiff {
    pub added: Vec<DeclarationChange>,
    pub removed: Vec<DeclarationChange>,
    pub changed: Vec<DeclarationChange>,
}

impl DeclarationDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn patterns(list: &[crate::model::Located<NamespacePattern>]) -> String {
    let items: Vec<&str> = list.iter().map(|p| p.value.as_str()).collect();
    format!("[{}]", items.join(", "))
}

fn value_source(source: &crate::model::ValueSource, sensitive: bool) -> String {
    use crate::model::ValueSource;
    match source {
        ValueSource::Literal(_) if sensitive => "a literal (sensitive)".to_owned(),
        ValueSource::Literal(value) => value.clone(),
        ValueSource::FromEnv(var) => format!("fromEnv {var}"),
        ValueSource::FromFile(path) => format!("fromFile {path}", path = path.display()),
        ValueSource::FromCommand(command) => format!("fromCommand {:?}", command.argv),
    }
}

/// Each declaration of a workspace as (kind, name) → field → value shown to
/// people. Credentials show where they come from, never a value (a literal
/// password is "a literal (sensitive)").
fn declarations(
    ws: &Workspace,
    root: &std::path::Path,
) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    use crate::model::RegistrySource;
    let shown = |path: &std::path::Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut out = BTreeMap::new();
    let mut workspace = BTreeMap::from([
        ("namespaces.include".to_owned(), patterns(&ws.scope.include)),
        ("namespaces.exclude".to_owned(), patterns(&ws.scope.exclude)),
        ("prune".to_owned(), ws.prune.to_string()),
    ]);
    // A fleet's clusters and cluster limits are fields only where written,
    // so that a single-cluster workspace's fields stay as they were.
    if !ws.clusters.is_empty() {
        let clusters: Vec<String> = ws
            .clusters
            .iter()
            .map(|c| {
                let mut parts = vec![format!("context {}", c.context)];
                if let Some(path) = &c.kubeconfig {
                    parts.push(format!("kubeconfig {}", shown(path)));
                }
                if !c.labels.is_empty() {
                    let labels: Vec<String> =
                        c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    parts.push(format!("labels {}", labels.join(",")));
                }
                format!("{} ({})", c.name, parts.join("; "))
            })
            .collect();
        workspace.insert("clusters".to_owned(), format!("[{}]", clusters.join(", ")));
    }
    out.insert(("Workspace".to_owned(), ws.name.clone()), workspace);
    for registry in ws.registries.values() {
        let mut fields = BTreeMap::new();
        match &registry.source {
            RegistrySource::Login {
                server,
                username,
                password,
                email,
            } => {
                fields.insert("server".to_owned(), server.value.clone());
                let username = match &username.value {
                    crate::model::ValueSource::FromFile(path) => {
                        format!("fromFile {}", shown(path))
                    }
                    other => value_source(other, false),
                };
                fields.insert("username".to_owned(), username);
                let password = match &password.value {
                    crate::model::ValueSource::FromFile(path) => {
                        format!("fromFile {}", shown(path))
                    }
                    other => value_source(other, true),
                };
                fields.insert("password".to_owned(), password);
                if let Some(email) = email {
                    fields.insert("email".to_owned(), email.value.clone());
                }
            }
            RegistrySource::DockerConfigFile(path) => {
                fields.insert("dockerConfigFile".to_owned(), shown(&path.value));
            }
            RegistrySource::DockercfgFile(path) => {
                fields.insert("dockercfgFile".to_owned(), shown(&path.value));
            }
        }
        out.insert(("Registry".to_owned(), registry.name.clone()), fields);
    }
    for secret in &ws.pull_secrets {
        let registries: Vec<&str> = secret.registries.iter().map(|r| r.value.as_str()).collect();
        let accounts: Vec<String> = secret
            .service_accounts
            .iter()
            .map(|l| {
                let mut uses = Vec::new();
                if l.pull {
                    uses.push("pull");
                }
                if l.mount {
                    uses.push("mount");
                }
                format!(
                    "{} ({}; ifMissing {:?})",
                    l.name.value,
                    uses.join(", "),
                    l.if_missing
                )
            })
            .collect();
        let mut fields = BTreeMap::from([
            ("format".to_owned(), secret.format.secret_type().to_owned()),
            (
                "registries".to_owned(),
                format!("[{}]", registries.join(", ")),
            ),
            ("namespaces".to_owned(), patterns(&secret.namespaces)),
            (
                "excludeNamespaces".to_owned(),
                patterns(&secret.exclude_namespaces),
            ),
            (
                "serviceAccounts".to_owned(),
                format!("[{}]", accounts.join(", ")),
            ),
        ]);
        if !secret.clusters.is_empty() {
            fields.insert("clusters".to_owned(), patterns(&secret.clusters));
        }
        out.insert(("PullSecret".to_owned(), secret.name.clone()), fields);
    }
    for grant in &ws.pull_grants {
        let to: Vec<String> = grant
            .to
            .iter()
            .map(|s| match &s.value {
                WorkspaceSubject::ServiceAccount { namespace, name } => {
                    format!("serviceAccount {namespace}/{name}")
                }
                WorkspaceSubject::AllServiceAccountsIn(pattern) => {
                    format!("allServiceAccountsIn {}", pattern.as_str())
                }
                WorkspaceSubject::Group(group) => format!("group {group}"),
                WorkspaceSubject::User(user) => format!("user {user}"),
            })
            .collect();
        let mut fields = BTreeMap::from([
            ("role".to_owned(), grant.role.value.clone()),
            ("namespaces".to_owned(), patterns(&grant.namespaces)),
            ("to".to_owned(), format!("[{}]", to.join(", "))),
        ]);
        if !grant.clusters.is_empty() {
            fields.insert("clusters".to_owned(), patterns(&grant.clusters));
        }
        out.insert(("PullGrant".to_owned(), grant.name.clone()), fields);
    }
    out
}

/// The declarations `head` adds, removes and changes relative to `base`,
/// with a field-level summary of each change (file paths shown relative to
/// each workspace's folder, `base_root` and `head_root`). Sorted by kind,
/// then name.
pub fn declaration_diff(
    base: &Workspace,
    base_root: &std::path::Path,
    head: &Workspace,
    head_root: &std::path::Path,
) -> DeclarationDiff {
    let old = declarations(base, base_root);
    let new = declarations(head, head_root);
    let mut diff = DeclarationDiff::default();
    let declared = |(kind, name): &(String, String)| DeclarationChange {
        kind: kind.clone(),
        name: name.clone(),
        fields: Vec::new(),
    };
    for (key, fields) in &new {
        match old.get(key) {
            None => diff.added.push(declared(key)),
            Some(before) => {
                let names: BTreeSet<&String> = before.keys().chain(fields.keys()).collect();
                let changed: Vec<FieldChange> = names
                    .into_iter()
                    .filter(|f| before.get(*f) != fields.get(*f))
                    .map(|f| FieldChange {
                        field: f.clone(),
                        before: before.get(f).cloned().unwrap_or_else(|| "(none)".into()),
                        after: fields.get(f).cloned().unwrap_or_else(|| "(none)".into()),
                    })
                    .collect();
                if !changed.is_empty() {
                    diff.changed.push(DeclarationChange {
                        fields: changed,
                        ..declared(key)
                    });
                }
            }
        }
    }
    diff.removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(declared)
        .collect();
    diff
}

/// The registry hosts each Registry declaration covers: its resolved
/// entries' servers, or for a login whose credentials could not be resolved,
/// its `server`.
pub fn registry_hosts(
    ws: &Workspace,
    resolved: &BTreeMap<String, crate::model::ResolvedRegistry>,
) -> BTreeMap<String, BTreeSet<String>> {
    ws.registries
        .values()
        .map(|registry| {
            let hosts: BTreeSet<String> = match resolved.get(&registry.name) {
                Some(r) => r
                    .entries
                    .iter()
                    .filter_map(|e| registry_host(&e.server))
                    .collect(),
                None => match &registry.source {
                    crate::model::RegistrySource::Login { server, .. } => {
                        registry_host(&server.value).into_iter().collect()
                    }
                    _ => BTreeSet::new(),
                },
            };
            (registry.name.clone(), hosts)
        })
        .collect()
}

/// One side of a workspace comparison without a cluster.
pub struct Side<'a> {
    pub ws: &'a Workspace,
    pub desired: &'a super::Desired,
    /// [`registry_hosts`] of `ws`.
    pub hosts: &'a BTreeMap<String, BTreeSet<String>>,
}

/// The namespaces a workspace's declarations target (Secrets and
/// RoleBindings it wants).
pub fn targeted_namespaces(desired: &super::Desired) -> BTreeSet<String> {
    desired
        .secrets
        .keys()
        .chain(desired.role_bindings.keys())
        .map(|(ns, _)| ns.clone())
        .collect()
}

/// The access that moves between two workspaces, as far as it is known
/// without a cluster: project access through their grants (RoleBindings to
/// OpenShift's image roles, over `live`'s other RoleBindings, e.g. from a
/// snapshot), and registries through the pull links they declare.
pub fn workspace_access(base: &Side<'_>, head: &Side<'_>, live: &LiveState) -> AccessChanges {
    let others: Vec<rbac::RoleBinding> = policy_from_live(live)
        .role_bindings
        .into_iter()
        .filter(|rb| {
            !base
                .desired
                .role_bindings
                .contains_key(&(rb.namespace.clone(), rb.name.clone()))
                && !head
                    .desired
                    .role_bindings
                    .contains_key(&(rb.namespace.clone(), rb.name.clone()))
        })
        .collect();
    let policy = |side: &Side<'_>| {
        let mut role_bindings = others.clone();
        role_bindings.extend(
            side.desired
                .role_bindings
                .values()
                .map(|rb| rbac::RoleBinding {
                    namespace: rb.namespace.clone(),
                    name: rb.name.clone(),
                    role_ref: rbac::RoleRef::ClusterRole(rb.role.clone()),
                    subjects: rb.subjects.iter().map(rbac_subject).collect(),
                }),
        );
        rbac::Policy {
            cluster_roles: openshift_image_roles(),
            role_bindings,
            ..rbac::Policy::default()
        }
    };
    let (before, after) = (policy(base), policy(head));
    let mut scope = Scope::of_workspace(base.ws, live);
    let head_scope = Scope::of_workspace(head.ws, live);
    scope.subjects.extend(head_scope.subjects);
    scope.projects.extend(head_scope.projects);
    for rb in base
        .desired
        .role_bindings
        .values()
        .chain(head.desired.role_bindings.values())
    {
        scope.projects.insert(rb.namespace.clone());
        for subject in &rb.subjects {
            match (subject.kind.as_str(), &subject.namespace) {
                ("ServiceAccount", Some(ns)) => {
                    scope
                        .subjects
                        .insert(PullSubject::service_account(ns, &subject.name));
                }
                ("Group", _) => {
                    if let Some(ns) = subject.name.strip_prefix("system:serviceaccounts:") {
                        scope.add_group(ns, live);
                    }
                }
                _ => {}
            }
        }
    }
    let grant_of = |side: &Side<'_>, binding: &rbac::BindingRef| {
        binding.namespace.as_ref().and_then(|ns| {
            side.desired
                .role_bindings
                .get(&(ns.clone(), binding.name.clone()))
                .map(|rb| format!("PullGrant/{}", rb.grant))
        })
    };
    let matrix = |policy: &rbac::Policy| {
        let authorizer = rbac::Authorizer::new(policy);
        let index = rbac::PullIndex::new(&authorizer);
        rbac::AccessMatrix::compute(
            &index,
            &scope.subjects,
            scope.projects.iter().map(String::as_str),
        )
    };
    let diff = rbac::AccessDiff::between(&matrix(&before), &matrix(&after));
    let project_line =
        |change: &rbac::AccessChange, side: &Side<'_>, access: Option<&rbac::PullAccess>| {
            let mut declarations: Vec<String> = access
                .into_iter()
                .flat_map(|a| &a.grants)
                .filter_map(|g| grant_of(side, &g.binding))
                .collect();
            declarations.sort();
            declarations.dedup();
            AccessLine {
                subject: change.subject.kubernetes_name(),
                kind: AccessKind::Project,
                target: change.project.clone(),
                via: access.map(via_bindings).unwrap_or_default(),
                declarations,
            }
        };
    let mut changes = AccessChanges {
        gained: diff
            .gained
            .iter()
            .map(|c| project_line(c, head, c.after.as_ref()))
            .collect(),
        lost: diff
            .lost
            .iter()
            .map(|c| project_line(c, base, c.before.as_ref()))
            .collect(),
        ..AccessChanges::default()
    };
    // Registries through the links each side declares.
    let registries = |side: &Side<'_>| {
        let by_name: BTreeMap<&str, &crate::model::PullSecret> = side
            .ws
            .pull_secrets
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut out: BTreeMap<(String, String), BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for ((ns, sa), secrets) in &side.desired.links {
            for (secret, purposes) in secrets {
                if !purposes.pull {
                    continue;
                }
                let Some(declared) = by_name.get(secret.as_str()) else {
                    continue;
                };
                for registry in &declared.registries {
                    for host in side.hosts.get(&registry.value).into_iter().flatten() {
                        let via = out
                            .entry((ns.clone(), sa.clone()))
                            .or_default()
                            .entry(host.clone())
                            .or_default();
                        if !via.contains(secret) {
                            via.push(secret.clone());
                        }
                    }
                }
            }
        }
        out
    };
    let (old, new) = (registries(base), registries(head));
    let accounts: BTreeSet<&(String, String)> = old.keys().chain(new.keys()).collect();
    let empty = BTreeMap::new();
    for key in accounts {
        let (ns, sa) = key;
        let before = old.get(key).unwrap_or(&empty);
        let after = new.get(key).unwrap_or(&empty);
        let entry = |host: &String, via: &Vec<String>| AccessLine {
            subject: rbac::service_account_user_name(ns, sa),
            kind: AccessKind::Registry,
            target: host.clone(),
            via: via.iter().map(|s| format!("Secret {ns}/{s}")).collect(),
            declarations: via.iter().map(|s| format!("PullSecret/{s}")).collect(),
        };
        for (host, via) in after {
            if !before.contains_key(host) {
                changes.gained.push(entry(host, via));
            }
        }
        for (host, via) in before {
            if !after.contains_key(host) {
                changes.lost.push(entry(host, via));
            }
        }
    }
    changes.gained.sort();
    changes.lost.sort();
    changes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::live::{LiveRoleBinding, LiveSecret, LiveServiceAccount, Meta, RoleRef};
    use crate::model::{FileId, Located, Origin, PullGrant, Scope as WsScope};
    use crate::plan::{EntryDiff, LinkDiff, RoleBindingDiff, SecretDiff};
    use crate::secret::SecretString;

    fn at<T>(value: T) -> Located<T> {
        Located {
            value,
            origin: Origin {
                file: FileId(0),
                span: 0..0,
            },
        }
    }

    fn workspace(grants: Vec<PullGrant>) -> Workspace {
        Workspace {
            name: "ws".into(),
            scope: WsScope {
                include: vec![at(NamespacePattern::parse("project-*").unwrap())],
                exclude: Vec::new(),
            },
            prune: true,
            registries: BTreeMap::new(),
            pull_secrets: Vec::new(),
            pull_grants: grants,
            clusters: Vec::new(),
        }
    }

    fn meta(namespace: &str, name: &str) -> Meta {
        Meta {
            namespace: namespace.into(),
            name: name.into(),
            ..Meta::default()
        }
    }

    /// project-a, -b, -c and `outside`, each with `default` and `builder`,
    /// and OpenShift's per-project `system:image-pullers` binding.
    fn live() -> LiveState {
        let mut live = LiveState::default();
        for ns in ["project-a", "project-b", "project-c", "outside"] {
            live.namespaces.insert(ns.into());
            for sa in ["default", "builder"] {
                live.service_accounts.push(LiveServiceAccount {
                    meta: meta(ns, sa),
                    image_pull_secrets: Vec::new(),
                    secrets: Vec::new(),
                });
            }
            live.role_bindings.push(LiveRoleBinding {
                meta: meta(ns, "system:image-pullers"),
                role_ref: RoleRef {
                    kind: "ClusterRole".into(),
                    name: "system:image-puller".into(),
                },
                subjects: vec![RbacSubject {
                    kind: "Group".into(),
                    name: format!("system:serviceaccounts:{ns}"),
                    namespace: None,
                }],
            });
        }
        live
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            format_version: 1,
            workspace: "ws".into(),
            adopt: false,
            changes,
            errors: Vec::new(),
            warnings: Vec::new(),
            matched_namespaces: BTreeSet::new(),
            schedule: crate::plan::Schedule::default(),
            access: None,
        }
    }

    fn binding_change(action: Action, ns: &str, name: &str, subjects: Vec<RbacSubject>) -> Change {
        Change {
            namespace: ns.into(),
            kind: ObjectKind::RoleBinding,
            name: name.into(),
            action,
            source: (action != Action::Delete).then(|| "PullGrant/g".to_owned()),
            assumed: None,
            detail: if action == Action::Delete {
                Detail::Pruned
            } else {
                Detail::RoleBinding(RoleBindingDiff {
                    role: "system:image-puller".into(),
                    subjects,
                    subjects_added: Vec::new(),
                    subjects_removed: Vec::new(),
                    replaces: None,
                })
            },
        }
    }

    fn group(ns: &str) -> RbacSubject {
        RbacSubject {
            kind: "Group".into(),
            name: format!("system:serviceaccounts:{ns}"),
            namespace: None,
        }
    }

    fn summary(lines: &[AccessLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| format!("{} {} {}", l.subject, l.kind.as_str(), l.target))
            .collect()
    }

    /// The restricted diff is the unrestricted one, on random policies
    /// (RoleBindings and `ClusterRoleBindings` of pull, push and missing
    /// roles to ServiceAccounts, their groups, users and others) and random
    /// plans (creates, updates, deletes and replaces of RoleBindings).
    #[test]
    fn the_restricted_access_diff_is_the_full_one_on_random_policies_and_plans() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| -> usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % (n as u64)).unwrap()
        };
        let namespaces = ["project-a", "project-b", "project-c", "outside"];
        // Pull roles, a role that allows no pull, a missing one; and a
        // namespaced Role `local-puller` (in project-a and project-b only).
        let roles = [
            "system:image-puller",
            "system:image-pusher",
            "view",
            "no-such-role",
        ];
        let puller_rules = || {
            vec![rbac::PolicyRule {
                verbs: vec!["get".into()],
                api_groups: vec!["image.openshift.io".into()],
                resources: vec!["imagestreams/layers".into()],
                resource_names: Vec::new(),
                non_resource_urls: Vec::new(),
            }]
        };
        let mut nonempty = 0;
        for _ in 0..400 {
            let pick_subject = |next: &mut dyn FnMut(usize) -> usize| {
                let ns = namespaces[next(namespaces.len())];
                let sa = ["default", "builder", "ghost"][next(3)];
                match next(8) {
                    0 => RbacSubject::service_account(ns, sa),
                    1 => RbacSubject {
                        kind: "ServiceAccount".into(),
                        name: sa.into(),
                        namespace: None,
                    },
                    2 => group(ns),
                    3 => RbacSubject {
                        kind: "Group".into(),
                        name: ["system:serviceaccounts", "system:authenticated", "devs"][next(3)]
                            .into(),
                        namespace: None,
                    },
                    4 => RbacSubject {
                        kind: "User".into(),
                        name: format!("system:serviceaccount:{ns}:{sa}"),
                        namespace: None,
                    },
                    5 => RbacSubject {
                        kind: "User".into(),
                        name: "bob".into(),
                        namespace: None,
                    },
                    _ => RbacSubject::service_account(ns, "default"),
                }
            };
            let mut live = live();
            live.role_bindings.clear();
            for ns in namespaces {
                for b in 0..next(4) {
                    let subjects = (0..=next(3)).map(|_| pick_subject(&mut next)).collect();
                    live.role_bindings.push(LiveRoleBinding {
                        meta: meta(ns, &format!("b{b}")),
                        role_ref: if next(4) == 0 {
                            RoleRef {
                                kind: "Role".into(),
                                name: "local-puller".into(),
                            }
                        } else {
                            RoleRef {
                                kind: "ClusterRole".into(),
                                name: roles[next(roles.len())].into(),
                            }
                        },
                        subjects,
                    });
                }
            }
            let mut before = policy_from_live(&live);
            before.cluster_roles.push(rbac::ClusterRole {
                name: "view".into(),
                rules: vec![rbac::PolicyRule {
                    verbs: vec!["get".into()],
                    api_groups: vec![String::new()],
                    resources: vec!["pods".into()],
                    resource_names: Vec::new(),
                    non_resource_urls: Vec::new(),
                }],
                aggregated: false,
            });
            for ns in ["project-a", "project-b"] {
                before.roles.push(rbac::Role {
                    namespace: ns.into(),
                    name: "local-puller".into(),
                    rules: puller_rules(),
                });
            }
            for c in 0..next(3) {
                let subjects = (0..=next(2))
                    .map(|_| rbac_subject(&pick_subject(&mut next)))
                    .collect();
                before.cluster_role_bindings.push(rbac::ClusterRoleBinding {
                    name: format!("crb{c}"),
                    role_ref: rbac::RoleRef::ClusterRole(roles[next(roles.len())].into()),
                    subjects,
                });
            }
            let mut changes = Vec::new();
            for ns in namespaces {
                for b in 0..4 {
                    let name = format!("b{b}");
                    let exists = live
                        .role_bindings
                        .iter()
                        .any(|rb| rb.meta.namespace == ns && rb.meta.name == name);
                    let subjects: Vec<RbacSubject> =
                        (0..=next(3)).map(|_| pick_subject(&mut next)).collect();
                    let mut change = match (next(5), exists) {
                        (0, false) => binding_change(Action::Create, ns, &name, subjects),
                        (0, true) => binding_change(Action::Update, ns, &name, subjects),
                        (1, true) => binding_change(Action::Delete, ns, &name, Vec::new()),
                        (2, true) => {
                            let mut c = binding_change(
                                Action::Replace,
                                ns,
                                &format!("{name}-new"),
                                subjects,
                            );
                            if let Detail::RoleBinding(diff) = &mut c.detail {
                                diff.replaces = Some(crate::plan::Replaced {
                                    name: name.clone(),
                                    role: "system:image-puller".into(),
                                    assumed: crate::plan::Assumed {
                                        uid: String::new(),
                                        resource_version: String::new(),
                                    },
                                });
                            }
                            c
                        }
                        _ => continue,
                    };
                    if let Detail::RoleBinding(diff) = &mut change.detail {
                        diff.role = roles[next(2)].into();
                    }
                    changes.push(change);
                }
            }
            let grants = vec![PullGrant {
                name: "g".into(),
                origin: at(()).origin,
                role: at("system:image-puller".into()),
                namespaces: vec![at(NamespacePattern::parse("project-*").unwrap())],
                to: vec![
                    at(WorkspaceSubject::ServiceAccount {
                        namespace: "outside".into(),
                        name: "builder".into(),
                    }),
                    at(WorkspaceSubject::AllServiceAccountsIn(
                        NamespacePattern::parse("project-*").unwrap(),
                    )),
                ],
                clusters: Vec::new(),
            }];
            let plan = plan(changes);
            // What plan_access computes, on the policy as read (only what
            // can grant a pull) and local to the touched namespaces ...
            let mut read = before.clone();
            read.retain_pull_relevant();
            let (local, local_after) = local_policies(&read, &plan);
            let touched = touched_bindings(&plan, &local, &local_after, &live);
            let ws = workspace(grants);
            let mut scope = Scope::of_workspace(&ws, &live);
            scope.add_plan(&plan, &touched, &live);
            // ... is what the whole policies give, over the whole scope.
            let after = policy_after(&before, &plan);
            let touched_whole = touched_bindings(&plan, &before, &after, &live);
            let mut whole_scope = Scope::of_workspace(&ws, &live);
            whole_scope.add_plan(&plan, &touched_whole, &live);
            let full = project_diff_unrestricted(&whole_scope, &before, &after);
            assert_eq!(project_diff(&scope, &local, &local_after, &touched), full);
            nonempty += usize::from(!full.is_empty());
        }
        // The cases exercise the diff, not only empty ones.
        assert!(nonempty > 100, "{nonempty} of 400 cases changed access");
    }

    /// `allServiceAccountsIn` with a label selector chooses namespaces by
    /// their labels, as the planner does.
    #[test]
    fn a_selector_in_all_service_accounts_in_chooses_by_labels() {
        use crate::names::{LabelSelector, SelectorOperator, SelectorRequirement};
        let mut live = live();
        live.namespace_labels.insert(
            "project-c".into(),
            BTreeMap::from([("team".to_string(), "payments".to_string())]),
        );
        let selector = NamespacePattern::Selector(LabelSelector::new([SelectorRequirement {
            key: "team".into(),
            operator: SelectorOperator::In,
            values: BTreeSet::from(["payments".to_string()]),
        }]));
        let grant = PullGrant {
            name: "g".into(),
            origin: at(()).origin,
            role: at("system:image-puller".into()),
            namespaces: vec![at(NamespacePattern::parse("project-b").unwrap())],
            to: vec![at(WorkspaceSubject::AllServiceAccountsIn(selector))],
            clusters: Vec::new(),
        };
        let scope = Scope::of_workspace(&workspace(vec![grant]), &live);
        assert!(
            scope
                .subjects
                .contains(&PullSubject::AllServiceAccountsIn("project-c".into())),
            "{:?}",
            scope.subjects
        );
        assert!(
            !scope
                .subjects
                .contains(&PullSubject::AllServiceAccountsIn("project-a".into())),
            "an unlabelled namespace is not chosen"
        );
    }

    #[test]
    fn a_new_grant_gains_exactly_its_subject() {
        let live = live();
        let ws = workspace(Vec::new());
        let before = policy_from_live(&live);
        let plan = plan(vec![binding_change(
            Action::Create,
            "project-b",
            "pullwarden:ws:g:system:image-puller",
            vec![RbacSubject::service_account("project-a", "default")],
        )]);
        let access = plan_access(&ws, &live, &before, &plan);
        assert_eq!(
            summary(&access.gained),
            ["system:serviceaccount:project-a:default project project-b"]
        );
        assert_eq!(
            access.gained[0].via,
            ["RoleBinding project-b/pullwarden:ws:g:system:image-puller"]
        );
        assert_eq!(access.gained[0].declarations, ["PullGrant/g"]);
        assert!(access.lost.is_empty(), "{access:?}");
    }

    #[test]
    fn a_pruned_group_grant_loses_the_group_and_each_of_its_service_accounts() {
        let mut live = live();
        let mut rb = LiveRoleBinding {
            meta: meta("project-b", "pullwarden:ws:c:system:image-puller"),
            role_ref: RoleRef {
                kind: "ClusterRole".into(),
                name: "system:image-puller".into(),
            },
            subjects: vec![group("project-c")],
        };
        rb.meta
            .annotations
            .insert(SOURCE_ANNOTATION.into(), "PullGrant/c".into());
        live.role_bindings.push(rb);
        let ws = workspace(Vec::new());
        let before = policy_from_live(&live);
        let plan = plan(vec![binding_change(
            Action::Delete,
            "project-b",
            "pullwarden:ws:c:system:image-puller",
            Vec::new(),
        )]);
        let access = plan_access(&ws, &live, &before, &plan);
        assert!(access.gained.is_empty(), "{access:?}");
        assert_eq!(
            summary(&access.lost),
            [
                "system:serviceaccount:project-c:builder project project-b",
                "system:serviceaccount:project-c:default project project-b",
                "system:serviceaccounts:project-c project project-b",
            ]
        );
        for line in &access.lost {
            assert_eq!(line.declarations, ["PullGrant/c (no longer declared)"]);
        }
        // Everybody keeps their own project (OpenShift's binding is untouched).
        let after = policy_after(&before, &plan);
        let scope = Scope::of_workspace(&ws, &live);
        let pulls = current_access(&after, &PullSecretState::default(), &scope);
        assert!(
            pulls.iter().all(|p| p.subject.contains(&p.target)),
            "{pulls:?}"
        );
        assert!(!pulls.iter().any(|p| p.target == "outside"), "out of scope");
    }

    #[test]
    fn a_subject_also_granted_otherwise_does_not_lose_access() {
        let live = live();
        let ws = workspace(Vec::new());
        let before = policy_from_live(&live);
        // project-b's own ServiceAccounts already pull from project-b.
        let plan = plan(vec![binding_change(
            Action::Create,
            "project-b",
            "extra",
            vec![RbacSubject::service_account("project-b", "default")],
        )]);
        let access = plan_access(&ws, &live, &before, &plan);
        assert!(access.is_unchanged(), "{access:?}");
        assert!(is_silent(&Some(access)));
    }

    fn entry(server: &str, status: EntryStatus) -> EntryDiff {
        EntryDiff {
            server: server.into(),
            status,
            username: None,
            username_sensitive: true,
            username_changed: false,
            password_changed: false,
            email_changed: false,
            from_command: false,
        }
    }

    fn secret_change(action: Action, entries: Vec<EntryDiff>) -> Change {
        Change {
            namespace: "project-a".into(),
            kind: ObjectKind::Secret,
            name: "quay-pull".into(),
            action,
            source: Some("PullSecret/quay-pull".into()),
            assumed: None,
            detail: Detail::Secret(SecretDiff {
                secret_type: TYPE_DOCKER_CONFIG_JSON.into(),
                previous_type: None,
                entries,
                unreadable_live_data: false,
                immutable: false,
            }),
        }
    }

    fn link_change(added: &[&str], removed: &[&str]) -> Change {
        Change {
            namespace: "project-a".into(),
            kind: ObjectKind::ServiceAccount,
            name: "default".into(),
            action: Action::Link,
            source: Some("PullSecret/quay-pull".into()),
            assumed: None,
            detail: Detail::Links(LinkDiff {
                pull_added: added.iter().map(|s| (*s).to_owned()).collect(),
                pull_removed: removed.iter().map(|s| (*s).to_owned()).collect(),
                ..LinkDiff::default()
            }),
        }
    }

    #[test]
    fn a_linked_secret_gains_its_registries_and_an_unlink_loses_them() {
        let live = live();
        let ws = workspace(Vec::new());
        let before = policy_from_live(&live);
        let created = plan(vec![
            secret_change(
                Action::Create,
                vec![
                    entry("quay.io", EntryStatus::Added),
                    entry("https://index.docker.io/v1/", EntryStatus::Added),
                ],
            ),
            link_change(&["quay-pull"], &[]),
        ]);
        let access = plan_access(&ws, &live, &before, &created);
        assert_eq!(
            summary(&access.gained),
            [
                "system:serviceaccount:project-a:default registry index.docker.io",
                "system:serviceaccount:project-a:default registry quay.io",
            ]
        );
        assert_eq!(access.gained[1].via, ["Secret project-a/quay-pull"]);
        assert_eq!(access.gained[1].declarations, ["PullSecret/quay-pull"]);

        // Applied: the live state has the Secret and the link.
        let mut applied = live.clone();
        let config = r#"{"auths":{"quay.io":{"auth":"dTpw"},"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#;
        applied.secrets.push(LiveSecret {
            meta: meta("project-a", "quay-pull"),
            from_snapshot_file: false,
            type_: TYPE_DOCKER_CONFIG_JSON.into(),
            immutable: false,
            data: BTreeMap::from([(".dockerconfigjson".into(), SecretString::new(config))]),
        });
        applied.service_accounts[0].image_pull_secrets = vec!["quay-pull".into()];
        assert_eq!(applied.service_accounts[0].meta.name, "default");
        let state = PullSecretState::from_live(&applied);
        assert_eq!(
            state
                .registries("project-a", "default")
                .into_keys()
                .collect::<Vec<_>>(),
            ["index.docker.io", "quay.io"]
        );
        // One entry removed: only that registry is lost.
        let narrowed = plan(vec![secret_change(
            Action::Update,
            vec![
                entry("quay.io", EntryStatus::Unchanged),
                entry("https://index.docker.io/v1/", EntryStatus::Removed),
            ],
        )]);
        let access = plan_access(&ws, &applied, &before, &narrowed);
        assert!(access.gained.is_empty());
        assert_eq!(
            summary(&access.lost),
            ["system:serviceaccount:project-a:default registry index.docker.io"]
        );
        // Unlinked: both are lost.
        let unlinked = plan(vec![link_change(&[], &["quay-pull"])]);
        let access = plan_access(&ws, &applied, &before, &unlinked);
        assert_eq!(access.lost.len(), 2, "{access:?}");
        // A password rotation moves no access.
        let rotated = plan(vec![secret_change(
            Action::Update,
            vec![
                entry("quay.io", EntryStatus::Changed),
                entry("https://index.docker.io/v1/", EntryStatus::Changed),
            ],
        )]);
        assert!(plan_access(&ws, &applied, &before, &rotated).is_unchanged());
    }

    #[test]
    fn a_secret_the_kubelet_cannot_decode_covers_no_registry() {
        let mut live = live();
        for (name, config) in [
            ("good", r#"{"auths":{"quay.io":{}}}"#),
            ("bad", "{not json"),
        ] {
            live.secrets.push(LiveSecret {
                meta: meta("project-a", name),
                from_snapshot_file: false,
                type_: TYPE_DOCKER_CONFIG_JSON.into(),
                immutable: false,
                data: BTreeMap::from([(".dockerconfigjson".into(), SecretString::new(config))]),
            });
        }
        live.service_accounts[0].image_pull_secrets = vec!["good".into()];
        live.service_accounts[1].image_pull_secrets = vec!["good".into(), "bad".into()];
        let state = PullSecretState::from_live(&live);
        assert_eq!(state.registries("project-a", "default").len(), 1);
        assert!(state.registries("project-a", "builder").is_empty());
    }

    #[test]
    fn registry_hosts_are_the_kubelets_normalised_keys() {
        assert_eq!(
            registry_host("https://index.docker.io/v1/").as_deref(),
            Some("index.docker.io")
        );
        assert_eq!(registry_host("quay.io/team").as_deref(), Some("quay.io"));
        assert_eq!(
            registry_host("localhost:5000").as_deref(),
            Some("localhost:5000")
        );
        assert_eq!(
            registry_host("http://Registry.example.com:443/x").as_deref(),
            Some("Registry.example.com:443")
        );
    }

    #[test]
    fn filters_keep_subjects_and_targets() {
        let filter = AccessFilter {
            namespace: Some(NamespacePattern::parse("project-[ab]").unwrap()),
            service_account: None,
            registry: Some("quay.io".into()),
        };
        assert!(filter.keeps_subject(&PullSubject::service_account("project-a", "x")));
        assert!(!filter.keeps_subject(&PullSubject::AllServiceAccountsIn("project-c".into())));
        let pull = |kind, target: &str| Pull {
            subject: String::new(),
            kind,
            target: target.into(),
            via: Vec::new(),
        };
        assert!(filter.keeps_pull(&pull(AccessKind::Registry, "quay.io")));
        assert!(!filter.keeps_pull(&pull(AccessKind::Registry, "docker.io")));
        assert!(!filter.keeps_pull(&pull(AccessKind::Project, "project-a")));
    }

    #[test]
    fn declaration_diff_shows_clusters_and_cluster_limits_only_where_written() {
        let grant = |clusters: &[&str]| PullGrant {
            name: "g".into(),
            origin: at(()).origin,
            role: at("system:image-puller".into()),
            namespaces: vec![at(NamespacePattern::parse("project-b").unwrap())],
            to: vec![at(WorkspaceSubject::Group("devs".into()))],
            clusters: clusters
                .iter()
                .map(|c| at(NamespacePattern::parse(c).unwrap()))
                .collect(),
        };
        let root = std::path::Path::new("/ws");
        let base = workspace(vec![grant(&[])]);
        // A single-cluster workspace has no `clusters` field at all.
        let fields = &declarations(&base, root)[&("PullGrant".to_owned(), "g".to_owned())];
        assert!(!fields.contains_key("clusters"));
        let mut head = workspace(vec![grant(&["prod-*"])]);
        head.clusters.push(crate::model::Cluster {
            name: "prod-eu".into(),
            origin: at(()).origin,
            context: "admin@prod-eu".into(),
            kubeconfig: Some("/ws/kube/eu.yaml".into()),
            labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
        });
        let diff = declaration_diff(&base, root, &head, root);
        let changes: Vec<(&str, &str, &str, &str)> = diff
            .changed
            .iter()
            .flat_map(|c| {
                c.fields.iter().map(move |f| {
                    (
                        c.kind.as_str(),
                        f.field.as_str(),
                        f.before.as_str(),
                        f.after.as_str(),
                    )
                })
            })
            .collect();
        assert_eq!(
            changes,
            [
                ("PullGrant", "clusters", "(none)", "[prod-*]"),
                (
                    "Workspace",
                    "clusters",
                    "(none)",
                    "[prod-eu (context admin@prod-eu; kubeconfig kube/eu.yaml; labels env=prod)]"
                ),
            ]
        );
        assert!(declaration_diff(&head, root, &head, root).is_empty());
    }
}
