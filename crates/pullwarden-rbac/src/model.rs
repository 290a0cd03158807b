//! The RBAC objects of `rbac.authorization.k8s.io/v1` as plain data: only
//! the fields the authorizer reads.

use serde::{Deserialize, Serialize};

/// One rule of a Role or ClusterRole (`PolicyRule`).
///
/// Lists are kept as the server stored them; `*` is the wildcard of
/// `verbs`, `api_groups`, `resources` and `non_resource_urls`, and an empty
/// `resource_names` allows every name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    /// Only ever matched by non-resource requests (`/healthz`, …), which
    /// this crate does not evaluate; kept so a rule reads back whole.
    pub non_resource_urls: Vec<String>,
}

/// A namespaced Role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub namespace: String,
    pub name: String,
    pub rules: Vec<PolicyRule>,
}

/// A ClusterRole.
///
/// `aggregated` records that the object has an `aggregationRule`. Such a
/// role is evaluated by the `rules` the server has stored, exactly as the
/// API server's authorizer does: it never reads `aggregationRule`; the
/// ClusterRole aggregation controller (in kube-controller-manager) is what
/// keeps `rules` equal to the union of the selected roles. Where that
/// controller does not run (a bare control plane), `rules` are what was
/// written, and so is the access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRole {
    pub name: String,
    pub rules: Vec<PolicyRule>,
    pub aggregated: bool,
}

/// What a binding's `roleRef` names. The API server accepts only `Role`
/// (RoleBindings only) and `ClusterRole`; any other kind grants nothing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RoleRef {
    /// A Role in the binding's own namespace.
    Role(String),
    ClusterRole(String),
    /// A kind the authorizer does not know (`unsupported role reference kind`).
    Other {
        kind: String,
        name: String,
    },
}

impl RoleRef {
    /// The role's name.
    pub fn name(&self) -> &str {
        match self {
            RoleRef::Role(name) | RoleRef::ClusterRole(name) | RoleRef::Other { name, .. } => name,
        }
    }

    /// `Role`, `ClusterRole` or the unknown kind.
    pub fn kind(&self) -> &str {
        match self {
            RoleRef::Role(_) => "Role",
            RoleRef::ClusterRole(_) => "ClusterRole",
            RoleRef::Other { kind, .. } => kind,
        }
    }
}

/// A subject of a binding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Subject {
    /// A user name, compared exactly (a ServiceAccount's user name
    /// `system:serviceaccount:NS:NAME` matches too).
    User(String),
    /// A group name, compared exactly.
    Group(String),
    /// A ServiceAccount. `namespace: None` (or empty) means the binding's
    /// namespace in a RoleBinding and matches nothing in a
    /// `ClusterRoleBinding` (the server refuses to store that).
    ServiceAccount {
        namespace: Option<String>,
        name: String,
    },
    /// A kind the authorizer does not know: matches nothing.
    Other { kind: String, name: String },
}

impl Subject {
    /// A ServiceAccount subject with its namespace.
    pub fn service_account(namespace: &str, name: &str) -> Subject {
        Subject::ServiceAccount {
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// The user name or group name this subject stands for when it is
    /// evaluated in `binding_namespace` (`""` for a `ClusterRoleBinding`), or
    /// `None` when it can match no one.
    pub(crate) fn key(&self, binding_namespace: &str) -> Option<SubjectKey> {
        match self {
            Subject::User(name) => Some(SubjectKey::User(name.clone())),
            Subject::Group(name) => Some(SubjectKey::Group(name.clone())),
            Subject::ServiceAccount { namespace, name } => {
                let namespace = namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(binding_namespace);
                (!namespace.is_empty())
                    .then(|| SubjectKey::User(service_account_user_name(namespace, name)))
            }
            Subject::Other { .. } => None,
        }
    }
}

/// What a subject of a binding matches: one user name or one group name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum SubjectKey {
    User(String),
    Group(String),
}

/// A RoleBinding: grants its role's rules in its own namespace only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleBinding {
    pub namespace: String,
    pub name: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

/// A `ClusterRoleBinding`: grants its ClusterRole's rules in every namespace
/// (and at cluster scope).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRoleBinding {
    pub name: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

/// Everything the authorizer reads: the four kinds, as listed from a
/// cluster (or built by hand). Order does not matter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// Who asks: a user name and its groups, as an authenticator produced them
/// (the `user` and `groups` of a SubjectAccessReview).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with groups.
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// How a ServiceAccount's token authenticates: user
    /// `system:serviceaccount:NS:NAME`, groups `system:serviceaccounts`,
    /// `system:serviceaccounts:NS` and `system:authenticated`.
    pub fn service_account(namespace: &str, name: &str) -> UserInfo {
        UserInfo {
            name: service_account_user_name(namespace, name),
            groups: service_account_groups(namespace).to_vec(),
        }
    }
}

/// `system:serviceaccount:NS:NAME`.
pub fn service_account_user_name(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The groups every ServiceAccount of `namespace` authenticates with.
pub fn service_account_groups(namespace: &str) -> [String; 3] {
    [
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_owned(),
    ]
}

/// A resource request, as the `resourceAttributes` of a SubjectAccessReview.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRequest {
    pub verb: String,
    /// `""` is the core group.
    pub api_group: String,
    pub resource: String,
    /// `""` when the request is for the resource itself.
    pub subresource: String,
    /// `""` when the request names no object (list, create, "any").
    pub name: String,
    /// `""` for a cluster-scoped request: then only `ClusterRoleBindings` count.
    pub namespace: String,
}

/// The API group of OpenShift's image API.
pub const IMAGE_API_GROUP: &str = "image.openshift.io";

impl ResourceRequest {
    /// What OpenShift's integrated registry asks before it serves a pull of
    /// `stream` from `project`: `get` on `imagestreams/layers` in
    /// `image.openshift.io`. `stream: None` asks for no name, which only
    /// rules without `resourceNames` allow (every stream of the project).
    pub fn pull(project: &str, stream: Option<&str>) -> ResourceRequest {
        ResourceRequest {
            verb: "get".to_owned(),
            api_group: IMAGE_API_GROUP.to_owned(),
            resource: "imagestreams".to_owned(),
            subresource: "layers".to_owned(),
            name: stream.unwrap_or_default().to_owned(),
            namespace: project.to_owned(),
        }
    }
}
