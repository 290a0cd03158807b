//! The RBAC authorizer of kube-apiserver, on plain data.
//!
//! Ported (facts, not code) from k8s.io/kubernetes v1.36.3:
//! `plugin/pkg/auth/authorizer/rbac/rbac.go` (`RuleAllows`),
//! `pkg/apis/rbac/v1/evaluation_helpers.go` (`VerbMatches`,
//! `APIGroupMatches`, `ResourceMatches`, `ResourceNameMatches`) and
//! `pkg/registry/rbac/validation/rule.go` (`VisitRulesFor`, `appliesTo`,
//! `GetRoleReferenceRules`).

use std::collections::HashMap;

use serde::Serialize;

use crate::model::{
    ClusterRole, ClusterRoleBinding, Policy, PolicyRule, ResourceRequest, Role, RoleBinding,
    RoleRef, Subject, SubjectKey, UserInfo,
};

/// Whether `rule` allows the resource request (its namespace aside):
/// upstream's `RuleAllows` for resource requests.
///
/// - verbs: `*` or the verb;
/// - apiGroups: `*` or the group, exactly (`""` is only the core group);
/// - resources: `*`, `resource` (no subresource) or `resource/subresource`
///   exactly, or `*/subresource` when the request has that subresource.
///   There is no `resource/*`: that entry only matches a request for a
///   subresource literally named `*`;
/// - resourceNames: empty allows every name (also no name), else the name
///   must be listed.
pub fn rule_allows(rule: &PolicyRule, request: &ResourceRequest) -> bool {
    verb_matches(rule, &request.verb)
        && api_group_matches(rule, &request.api_group)
        && resource_matches(rule, &request.resource, &request.subresource)
        && resource_name_matches(rule, &request.name)
}

pub(crate) fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

pub(crate) fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.iter().any(|g| g == "*" || g == group)
}

pub(crate) fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|r| {
        if r == "*" {
            return true;
        }
        let exact = if subresource.is_empty() {
            r == resource
        } else {
            r.len() == resource.len() + 1 + subresource.len()
                && r.starts_with(resource)
                && r[resource.len()..].starts_with('/')
                && r.ends_with(subresource)
        };
        exact
            || (!subresource.is_empty()
                && r.len() == subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(subresource))
    })
}

pub(crate) fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name)
}

/// Whether a binding subject applies to `user` when evaluated in
/// `binding_namespace` (`""` for `ClusterRoleBindings`): upstream's
/// `appliesToUser`.
pub fn subject_applies(subject: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match subject.key(binding_namespace) {
        Some(SubjectKey::User(name)) => user.name == name,
        Some(SubjectKey::Group(name)) => user.groups.contains(&name),
        None => false,
    }
}

/// Names one RoleBinding or `ClusterRoleBinding`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BindingRef {
    /// `None` for a `ClusterRoleBinding`.
    pub namespace: Option<String>,
    pub name: String,
}

impl BindingRef {
    /// `ClusterRoleBinding` or `RoleBinding`.
    pub fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        }
    }
}

impl std::fmt::Display for BindingRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "RoleBinding {ns}/{}", self.name),
            None => write!(f, "ClusterRoleBinding {}", self.name),
        }
    }
}

/// One binding that allows a request: the binding, its role, the first of
/// its subjects that applies (as upstream names it) and the index of the
/// first rule of the role that allows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allowed {
    pub binding: BindingRef,
    pub role: RoleRef,
    pub subject: Subject,
    pub rule: usize,
}

/// A binding that applies to the user but whose role does not exist: it
/// grants nothing (upstream reports it as an evaluation error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MissingRole {
    pub binding: BindingRef,
    pub role: RoleRef,
}

/// The answer to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Every binding that allows the request, `ClusterRoleBindings` first,
    /// each group in name order. Upstream stops at the first; the request
    /// is allowed exactly when this is not empty.
    pub allowed_by: Vec<Allowed>,
    /// Bindings that apply to the user but reference a role that does not
    /// exist (or a kind that is not a role).
    pub missing_roles: Vec<MissingRole>,
}

impl Decision {
    /// Whether RBAC allows the request.
    pub fn allowed(&self) -> bool {
        !self.allowed_by.is_empty()
    }
}

/// A [`Policy`] indexed for lookups: roles by name, RoleBindings by
/// namespace. Building it is O(objects); [`Authorizer::authorize`] is
/// O(`ClusterRoleBindings` + RoleBindings of the namespace), each times the
/// subjects and the rules of what applies, like upstream's.
pub struct Authorizer<'p> {
    pub(crate) policy: &'p Policy,
    roles: HashMap<(&'p str, &'p str), &'p Role>,
    cluster_roles: HashMap<&'p str, &'p ClusterRole>,
    role_bindings: HashMap<&'p str, Vec<&'p RoleBinding>>,
    cluster_role_bindings: Vec<&'p ClusterRoleBinding>,
}

impl<'p> Authorizer<'p> {
    /// Indexes `policy`. Two objects with the same name (which a cluster
    /// cannot hold): the later one wins.
    pub fn new(policy: &'p Policy) -> Authorizer<'p> {
        let roles = policy
            .roles
            .iter()
            .map(|r| ((r.namespace.as_str(), r.name.as_str()), r))
            .collect();
        let cluster_roles = policy
            .cluster_roles
            .iter()
            .map(|r| (r.name.as_str(), r))
            .collect();
        let mut role_bindings: HashMap<&str, Vec<&RoleBinding>> = HashMap::new();
        for binding in &policy.role_bindings {
            role_bindings
                .entry(binding.namespace.as_str())
                .or_default()
                .push(binding);
        }
        for list in role_bindings.values_mut() {
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let mut cluster_role_bindings: Vec<_> = policy.cluster_role_bindings.iter().collect();
        cluster_role_bindings.sort_by(|a, b| a.name.cmp(&b.name));
        Authorizer {
            policy,
            roles,
            cluster_roles,
            role_bindings,
            cluster_role_bindings,
        }
    }

    /// The policy this authorizer reads.
    pub fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// The rules `role_ref` stands for in `binding_namespace`, or `None`
    /// when that role does not exist: upstream's `GetRoleReferenceRules`.
    /// A `Role` is looked up in the binding's namespace only.
    pub fn role_rules(
        &self,
        role_ref: &RoleRef,
        binding_namespace: &str,
    ) -> Option<&'p [PolicyRule]> {
        match role_ref {
            RoleRef::Role(name) => self
                .roles
                .get(&(binding_namespace, name.as_str()))
                .map(|r| r.rules.as_slice()),
            RoleRef::ClusterRole(name) => self
                .cluster_roles
                .get(name.as_str())
                .map(|r| r.rules.as_slice()),
            RoleRef::Other { .. } => None,
        }
    }

    /// Whether RBAC allows `user` the request, and through which bindings:
    /// every `ClusterRoleBinding`, then (for a namespaced request) every
    /// RoleBinding of the request's namespace, whose subjects apply to the
    /// user and one of whose role's rules allows the request.
    pub fn authorize(&self, user: &UserInfo, request: &ResourceRequest) -> Decision {
        let mut decision = Decision::default();
        for binding in &self.cluster_role_bindings {
            let binding_ref = BindingRef {
                namespace: None,
                name: binding.name.clone(),
            };
            self.visit(
                user,
                request,
                binding_ref,
                &binding.role_ref,
                &binding.subjects,
                "",
                &mut decision,
            );
        }
        if !request.namespace.is_empty()
            && let Some(bindings) = self.role_bindings.get(request.namespace.as_str())
        {
            for binding in bindings {
                let binding_ref = BindingRef {
                    namespace: Some(binding.namespace.clone()),
                    name: binding.name.clone(),
                };
                self.visit(
                    user,
                    request,
                    binding_ref,
                    &binding.role_ref,
                    &binding.subjects,
                    &binding.namespace,
                    &mut decision,
                );
            }
        }
        decision
    }

    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        user: &UserInfo,
        request: &ResourceRequest,
        binding: BindingRef,
        role_ref: &RoleRef,
        subjects: &[Subject],
        binding_namespace: &str,
        decision: &mut Decision,
    ) {
        let Some(subject) = subjects
            .iter()
            .find(|s| subject_applies(s, user, binding_namespace))
        else {
            return;
        };
        let Some(rules) = self.role_rules(role_ref, binding_namespace) else {
            decision.missing_roles.push(MissingRole {
                binding,
                role: role_ref.clone(),
            });
            return;
        };
        if let Some(rule) = rules.iter().position(|r| rule_allows(r, request)) {
            decision.allowed_by.push(Allowed {
                binding,
                role: role_ref.clone(),
                subject: subject.clone(),
                rule,
            });
        }
    }
}
