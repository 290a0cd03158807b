//! What the workspace wants on the cluster, given the live namespaces: globs
//! expanded inside the scope, exclusions applied, registries merged in order.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerconfig::Entry;
use crate::live::{LiveState, RbacSubject};
use crate::model::{IfMissing, ResolvedRegistry, SecretFormat, Subject, Workspace};
use crate::names::NamespacePattern;
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

/// The live namespaces inside the scope that a glob matches (recorded for
/// saved plans); none is a warning naming `what`.
fn expand_glob(
    ws: &Workspace,
    live: &LiveState,
    glob: &NamespacePattern,
    what: &str,
    desired: &mut Desired,
) -> Vec<String> {
    let matched: Vec<String> = live
        .namespaces
        .iter()
        .filter(|ns| glob.matches(ns) && ws.scope.contains(ns))
        .cloned()
        .collect();
    if matched.is_empty() {
        desired.warnings.push(finding(
            FindingCode::GlobMatchesNothing,
            None,
            format!(
                "{what} `{}` matches no namespace inside the workspace's scope",
                glob.as_str()
            ),
        ));
    }
    desired.matched_namespaces.extend(matched.iter().cloned());
    matched
}

/// Expands a target list: exact names (which must exist) and globs matched
/// against the live namespaces inside the scope, minus the exclusions.
fn expand_targets(
    ws: &Workspace,
    live: &LiveState,
    patterns: &[crate::model::Located<NamespacePattern>],
    exclude: &[crate::model::Located<NamespacePattern>],
    owner: &str,
    desired: &mut Desired,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for pattern in patterns {
        match &pattern.value {
            NamespacePattern::Exact(name) => {
                if live.namespaces.contains(name) {
                    out.insert(name.clone());
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
            glob @ NamespacePattern::Glob { .. } => {
                out.extend(expand_glob(ws, live, glob, &format!("{owner}:"), desired));
            }
        }
    }
    out.retain(|ns| !exclude.iter().any(|p| p.value.matches(ns)));
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
        for name in &secret.registries {
            if let Some(registry) = registries.get(&name.value) {
                for entry in &registry.entries {
                    entries.push(entry.clone());
                    public.push(registry.usernames_public);
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
                Subject::AllServiceAccountsIn(glob) => {
                    let what = format!("{owner}: allServiceAccountsIn");
                    for ns in expand_glob(ws, live, glob, &what, &mut desired) {
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
