//! Reading RBAC from a cluster: Roles, ClusterRoles, RoleBindings and
//! `ClusterRoleBindings` as [`pullwarden_rbac::Policy`], for evaluating access
//! locally (`pullwarden_rbac::Authorizer`, `PullIndex`, `AccessMatrix`).
//!
//! Four paginated LISTs, cluster-wide, run concurrently, each page retried
//! by the one retry policy ([`crate::retry::retry`]) and failures mapped as
//! every other read maps them. Either every page of every list is read, or
//! it fails: a partial policy would under-report access. Never writes.

use k8s_openapi::api::rbac::v1 as k8s;
use kube::Client;
use kube::api::{Api, ListParams, ObjectList};
use pullwarden_rbac::{
    ClusterRole, ClusterRoleBinding, Policy, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::cluster::{ClusterError, ReadOptions};
use crate::convert::listed::ListedRoleBinding;

/// What [`read_rbac`] needs, for people.
pub const READ_RBAC_POLICY_HELP: &str = "pullwarden needs, cluster-wide (a ClusterRole bound by a ClusterRoleBinding): \
list on roles, clusterroles, rolebindings and clusterrolebindings (API group rbac.authorization.k8s.io)";

/// Reads every Role, ClusterRole, RoleBinding and `ClusterRoleBinding` of the
/// cluster (paginated by `options.page_size`), sorted by namespace and name.
pub async fn read_rbac(client: &Client, options: &ReadOptions) -> Result<Policy, ClusterError> {
    let roles: Api<k8s::Role> = Api::all(client.clone());
    let cluster_roles: Api<k8s::ClusterRole> = Api::all(client.clone());
    let (roles, cluster_roles) = (&roles, &cluster_roles);
    let (mut roles, mut cluster_roles, mut role_bindings, mut cluster_role_bindings) = tokio::try_join!(
        list_all(
            |p| async move { roles.list(&p).await },
            options,
            "roles",
            role
        ),
        list_all(
            |p| async move { cluster_roles.list(&p).await },
            options,
            "clusterroles",
            cluster_role
        ),
        // The bindings, by far the most numerous, decoded leanly (name,
        // namespace, roleRef, subjects: no `managedFields` trees).
        list_all(
            |p| crate::cluster::list_as::<k8s::RoleBinding, ListedRoleBinding>(client, None, p),
            options,
            "rolebindings",
            |listed: ListedRoleBinding| role_binding(listed.into())
        ),
        list_all(
            |p| crate::cluster::list_as::<k8s::ClusterRoleBinding, ListedRoleBinding>(
                client, None, p
            ),
            options,
            "clusterrolebindings",
            |listed: ListedRoleBinding| {
                let binding: k8s::RoleBinding = listed.into();
                cluster_role_binding(k8s::ClusterRoleBinding {
                    metadata: binding.metadata,
                    role_ref: binding.role_ref,
                    subjects: binding.subjects,
                })
            }
        ),
    )?;
    roles.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    cluster_roles.sort_by(|a, b| a.name.cmp(&b.name));
    role_bindings.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    cluster_role_bindings.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Policy {
        roles,
        cluster_roles,
        role_bindings,
        cluster_role_bindings,
    })
}

/// Every page of one cluster-wide LIST, converted page by page (the one
/// paginated reader of `cluster.rs`: retries, a 410 restart, all or nothing).
async fn list_all<K, T, L, Fut>(
    list: L,
    options: &ReadOptions,
    resource: &str,
    convert: impl Fn(K) -> Option<T>,
) -> Result<Vec<T>, ClusterError>
where
    L: Fn(ListParams) -> Fut,
    Fut: Future<Output = Result<ObjectList<K>, kube::Error>>,
    K: Clone,
{
    crate::cluster::list_pages(
        list,
        ListParams::default(),
        options,
        resource,
        "cluster scope",
        convert,
    )
    .await
}

fn rule(rule: k8s::PolicyRule) -> PolicyRule {
    PolicyRule {
        verbs: rule.verbs,
        api_groups: rule.api_groups.unwrap_or_default(),
        resources: rule.resources.unwrap_or_default(),
        resource_names: rule.resource_names.unwrap_or_default(),
        non_resource_urls: rule.non_resource_urls.unwrap_or_default(),
    }
}

fn rules(rules: Option<Vec<k8s::PolicyRule>>) -> Vec<PolicyRule> {
    rules.unwrap_or_default().into_iter().map(rule).collect()
}

/// A Role as plain data (`None` without a name or namespace, which a
/// server never returns).
pub fn role(object: k8s::Role) -> Option<Role> {
    Some(Role {
        namespace: object.metadata.namespace?,
        name: object.metadata.name?,
        rules: rules(object.rules),
    })
}

/// A ClusterRole as plain data: its stored `rules`, and whether it has an
/// `aggregationRule` (not evaluated: see `pullwarden_rbac::ClusterRole`).
pub fn cluster_role(object: k8s::ClusterRole) -> Option<ClusterRole> {
    Some(ClusterRole {
        name: object.metadata.name?,
        rules: rules(object.rules),
        aggregated: object.aggregation_rule.is_some(),
    })
}

/// A RoleBinding as plain data.
pub fn role_binding(object: k8s::RoleBinding) -> Option<RoleBinding> {
    Some(RoleBinding {
        namespace: object.metadata.namespace?,
        name: object.metadata.name?,
        role_ref: role_ref(object.role_ref),
        subjects: subjects(object.subjects),
    })
}

/// A `ClusterRoleBinding` as plain data.
pub fn cluster_role_binding(object: k8s::ClusterRoleBinding) -> Option<ClusterRoleBinding> {
    Some(ClusterRoleBinding {
        name: object.metadata.name?,
        role_ref: role_ref(object.role_ref),
        subjects: subjects(object.subjects),
    })
}

/// A `roleRef`, by its kind (the API group is not looked at, as upstream's
/// authorizer does not).
pub fn role_ref(role_ref: k8s::RoleRef) -> RoleRef {
    match role_ref.kind.as_str() {
        "Role" => RoleRef::Role(role_ref.name),
        "ClusterRole" => RoleRef::ClusterRole(role_ref.name),
        _ => RoleRef::Other {
            kind: role_ref.kind,
            name: role_ref.name,
        },
    }
}

/// A binding subject, by its kind (the API group is not looked at, as
/// upstream's authorizer does not).
pub fn subject(subject: k8s::Subject) -> Subject {
    match subject.kind.as_str() {
        "User" => Subject::User(subject.name),
        "Group" => Subject::Group(subject.name),
        "ServiceAccount" => Subject::ServiceAccount {
            namespace: subject.namespace.filter(|ns| !ns.is_empty()),
            name: subject.name,
        },
        _ => Subject::Other {
            kind: subject.kind,
            name: subject.name,
        },
    }
}

fn subjects(list: Option<Vec<k8s::Subject>>) -> Vec<Subject> {
    list.unwrap_or_default().into_iter().map(subject).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: namespace.map(str::to_owned),
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn converts_every_field_the_authorizer_reads() {
        let converted = role_binding(k8s::RoleBinding {
            metadata: meta(Some("p"), "b"),
            role_ref: k8s::RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                kind: "Role".to_owned(),
                name: "r".to_owned(),
            },
            subjects: Some(vec![
                k8s::Subject {
                    kind: "ServiceAccount".to_owned(),
                    name: "default".to_owned(),
                    namespace: Some(String::new()),
                    api_group: None,
                },
                k8s::Subject {
                    kind: "Group".to_owned(),
                    name: "system:serviceaccounts:a".to_owned(),
                    namespace: None,
                    api_group: Some("rbac.authorization.k8s.io".to_owned()),
                },
                k8s::Subject {
                    kind: "User".to_owned(),
                    name: "alice".to_owned(),
                    namespace: None,
                    api_group: Some("rbac.authorization.k8s.io".to_owned()),
                },
            ]),
        })
        .expect("named");
        assert_eq!(converted.namespace, "p");
        assert_eq!(converted.role_ref, RoleRef::Role("r".to_owned()));
        assert_eq!(
            converted.subjects,
            vec![
                Subject::ServiceAccount {
                    namespace: None,
                    name: "default".to_owned()
                },
                Subject::Group("system:serviceaccounts:a".to_owned()),
                Subject::User("alice".to_owned()),
            ]
        );
        let aggregated = cluster_role(k8s::ClusterRole {
            metadata: meta(None, "view"),
            aggregation_rule: Some(k8s::AggregationRule::default()),
            rules: Some(vec![k8s::PolicyRule {
                verbs: vec!["get".to_owned()],
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".to_owned()]),
                resource_names: Some(vec!["x".to_owned()]),
                non_resource_urls: None,
            }]),
        })
        .expect("named");
        assert!(aggregated.aggregated);
        assert_eq!(
            aggregated.rules,
            vec![PolicyRule {
                verbs: vec!["get".to_owned()],
                api_groups: vec![String::new()],
                resources: vec!["pods".to_owned()],
                resource_names: vec!["x".to_owned()],
                non_resource_urls: Vec::new(),
            }]
        );
        let odd = cluster_role_binding(k8s::ClusterRoleBinding {
            metadata: meta(None, "c"),
            role_ref: k8s::RoleRef {
                api_group: None,
                kind: "Thing".to_owned(),
                name: "t".to_owned(),
            },
            subjects: None,
        })
        .expect("named");
        assert_eq!(
            odd.role_ref,
            RoleRef::Other {
                kind: "Thing".to_owned(),
                name: "t".to_owned()
            }
        );
        assert!(odd.subjects.is_empty());
        assert!(role(k8s::Role::default()).is_none());
    }
}
