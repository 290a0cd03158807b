//! What the planner knows of the cluster: plain data, read by
//! `pullwarden-kube` from a cluster or a saved snapshot.
//!
//! Only what planning needs is kept. Secret data is held as [`SecretString`]
//! and only for secrets that can matter (docker-config types, or labelled).

pub mod links;
pub mod snapshot_digest;

use std::collections::{BTreeMap, BTreeSet};

use crate::secret::SecretString;

/// Label every managed object carries: `app.kubernetes.io/managed-by: pullwarden`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "pullwarden";
/// Label naming the owning workspace.
pub const WORKSPACE_LABEL: &str = "pullwarden.dev/workspace";
/// Annotation naming the document an object comes from (`PullSecret/quay-pull`).
pub const SOURCE_ANNOTATION: &str = "pullwarden.dev/source";
/// ServiceAccount annotation recording, per workspace, the entries it added:
/// `{"<workspace>": {"pull": ["a"], "mount": ["b"]}}`.
pub const LINKS_ANNOTATION: &str = "pullwarden.dev/links";

/// On a Secret in a snapshot (`pullwarden snapshot`): its docker-config values
/// were replaced by salted slow digests. Value: `pbkdf2-sha256;<iterations>;<salt hex>`.
pub const SNAPSHOT_DIGEST_ANNOTATION: &str = "pullwarden.dev/snapshot-digest";
/// The prefix of a digested value in a snapshot (no ':' so docker-config parsing accepts it).
pub const DIGEST_VALUE_PREFIX: &str = "pwdigest-";

/// OpenShift's markers of its own pull secrets.
pub const OPENSHIFT_SA_PULL_SECRET_REF: &str = "openshift.io/internal-registry-pull-secret-ref";
pub const OPENSHIFT_SECRET_AUTH_TOKEN_SA: &str =
    "openshift.io/internal-registry-auth-token.service-account";
/// Legacy OpenShift annotation that holds a live token: never exported.
pub const OPENSHIFT_TOKEN_SECRET_VALUE: &str = "openshift.io/token-secret.value";
/// Client-side apply's copy of the whole object (on a Secret: its data).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Clone, Debug, Default)]
pub struct LiveState {
    /// Namespaces that exist (and are not terminating).
    pub namespaces: BTreeSet<String>,
    /// Namespaces being deleted (phase `Terminating`): nothing can be created
    /// in them and everything in them is going away, so nothing is planned there.
    pub terminating: BTreeSet<String>,
    /// The labels of the namespaces in `namespaces`, by name, as read. A
    /// namespace missing here has labels that are not known (credentials
    /// that cannot read namespaces): label selectors cannot be decided for it.
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// The cluster this was read from, when known (not for a snapshot, nor
    /// for credentials that cannot list namespaces).
    pub cluster: Option<ClusterId>,
    pub secrets: Vec<LiveSecret>,
    pub service_accounts: Vec<LiveServiceAccount>,
    pub role_bindings: Vec<LiveRoleBinding>,
}

/// Which cluster: the UID of its `kube-system` namespace. It stays the same
/// behind another server URL or load balancer and differs between clusters,
/// so a saved plan made for one cluster is refused by another.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterId {
    pub kube_system_uid: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner_references: Vec<OwnerRef>,
    /// Field managers that wrote the object (`managedFields`), oldest first.
    pub managers: Vec<FieldManager>,
}

/// One entry of `managedFields`: who wrote, how, and when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldManager {
    pub manager: String,
    /// `Update` or `Apply`.
    pub operation: String,
    /// RFC 3339, when the server recorded it.
    pub time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// Who owns a live object, from pullwarden's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Labelled for this workspace.
    Ours,
    /// Labelled for another pullwarden workspace: never touched.
    OtherWorkspace(String),
    /// Not labelled by pullwarden.
    Unmanaged,
}

impl Meta {
    pub fn ownership(&self, workspace: &str) -> Ownership {
        if self.labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
            return Ownership::Unmanaged;
        }
        match self.labels.get(WORKSPACE_LABEL) {
            Some(ws) if ws == workspace => Ownership::Ours,
            Some(ws) => Ownership::OtherWorkspace(ws.clone()),
            None => Ownership::OtherWorkspace(String::new()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LiveSecret {
    pub meta: Meta,
    /// Read from a file (`--live`), not from a cluster: only then may its data
    /// be a snapshot's digests.
    pub from_snapshot_file: bool,
    pub type_: String,
    pub immutable: bool,
    /// Decoded data values by key; empty for secrets planning does not read.
    pub data: BTreeMap<String, SecretString>,
}

impl LiveSecret {
    /// Whether OpenShift made this secret for a service account.
    pub fn is_openshift_owned(&self) -> bool {
        self.meta
            .annotations
            .contains_key(OPENSHIFT_SECRET_AUTH_TOKEN_SA)
            || self
                .meta
                .annotations
                .contains_key("kubernetes.io/service-account.name")
                && self.type_ == "kubernetes.io/dockercfg"
            || self
                .meta
                .owner_references
                .iter()
                .any(|o| o.kind == "ServiceAccount")
            || is_openshift_dockercfg_name(&self.meta.name)
    }
}

/// `<sa>-dockercfg-<5 random lowercase letters or digits>`: the name
/// OpenShift's controller gives a ServiceAccount's pull secret (a fallback to
/// its annotations and owner reference).
pub fn is_openshift_dockercfg_name(name: &str) -> bool {
    name.rsplit_once("-dockercfg-").is_some_and(|(sa, random)| {
        !sa.is_empty()
            && random.len() == 5
            && random
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

#[derive(Clone, Debug)]
pub struct LiveServiceAccount {
    pub meta: Meta,
    pub image_pull_secrets: Vec<String>,
    pub secrets: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRoleBinding {
    pub meta: Meta,
    pub role_ref: RoleRef,
    pub subjects: Vec<RbacSubject>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleRef {
    /// `ClusterRole` or `Role`.
    pub kind: String,
    pub name: String,
}

/// An RBAC subject as the API has it.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RbacSubject {
    /// `ServiceAccount`, `User` or `Group`.
    pub kind: String,
    pub name: String,
    /// For service accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl RbacSubject {
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: Some(namespace.into()),
        }
    }
    pub fn group(name: &str) -> Self {
        Self {
            kind: "Group".into(),
            name: name.into(),
            namespace: None,
        }
    }
    pub fn user(name: &str) -> Self {
        Self {
            kind: "User".into(),
            name: name.into(),
            namespace: None,
        }
    }

    /// `system:serviceaccount:ns:name`, `group:name`, `user:name`: for people.
    pub fn display(&self) -> String {
        match (self.kind.as_str(), &self.namespace) {
            ("ServiceAccount", Some(ns)) => format!("serviceaccount {ns}/{}", self.name),
            ("Group", _) => format!("group {}", self.name),
            ("User", _) => format!("user {}", self.name),
            (kind, _) => format!("{} {}", kind.to_lowercase(), self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openshift_dockercfg_names_need_the_random_suffix() {
        assert!(is_openshift_dockercfg_name("default-dockercfg-x7k2p"));
        assert!(is_openshift_dockercfg_name("builder-dockercfg-abcde"));
        assert!(!is_openshift_dockercfg_name("team-dockercfg-prod"));
        assert!(!is_openshift_dockercfg_name("-dockercfg-abcde"));
        assert!(!is_openshift_dockercfg_name("quay-pull"));
    }
}
