//! Kubernetes RBAC, evaluated on plain data exactly as kube-apiserver's RBAC
//! authorizer does, and the question pullwarden asks of it most: who may
//! pull images from which OpenShift project.
//!
//! # What it answers
//!
//! - [`Authorizer::authorize`]: may a user with groups do a verb on a
//!   resource (API group, resource, subresource, name) in a namespace, and
//!   through which bindings. This is the RBAC authorizer of k8s.io/kubernetes
//!   v1.36.3 (`plugin/pkg/auth/authorizer/rbac`, `pkg/apis/rbac/v1`
//!   `evaluation_helpers.go`, `pkg/registry/rbac/validation/rule.go`), with
//!   the facts taken and the code written anew:
//!   - every `ClusterRoleBinding` applies in every namespace; a RoleBinding
//!     only in its own; a cluster-scoped request (namespace `""`) sees only
//!     `ClusterRoleBindings`;
//!   - a RoleBinding may reference a ClusterRole (its rules then hold in the
//!     binding's namespace) or a Role of its own namespace; a role that does
//!     not exist grants nothing (upstream notes an evaluation error and goes
//!     on: [`Decision::missing_roles`]);
//!   - subjects: `User` and `Group` by exact name (a User subject named
//!     `system:serviceaccount:NS:NAME` is that ServiceAccount);
//!     `ServiceAccount` is the user `system:serviceaccount:NS:NAME`, its
//!     namespace defaulting to the RoleBinding's (in a `ClusterRoleBinding` an
//!     SA subject without namespace matches nobody). The subject's
//!     `apiGroup` is not looked at;
//!   - rules: `*` in verbs, apiGroups and resources; `""` in apiGroups is
//!     the core group only; resources match `*`, the resource, exactly
//!     `resource/subresource`, or `*/subresource` — there is no
//!     `resource/*` (it matches only a subresource literally named `*`);
//!     an empty resourceNames allows every name (and a request without one),
//!     a non-empty one only the names listed (never a request without a
//!     name).
//! - [`ResourceRequest::pull`]: the integrated registry's question — `get`
//!   on `imagestreams/layers` in `image.openshift.io`, in the image's
//!   project, for the image stream. OpenShift's image roles list both
//!   `image.openshift.io` and the legacy `""` group; only the first answers
//!   this question. A rule for `""` alone grants no pull.
//! - [`AccessMatrix`]: that question for many ServiceAccounts (and "every
//!   ServiceAccount of a namespace", [`PullSubject::AllServiceAccountsIn`])
//!   against many projects, each allowed cell naming its granting bindings
//!   ([`Grant`]) and the streams they cover ([`Streams`]).
//! - [`AccessDiff`]: the pairs that gain or lose access between two
//!   matrices, each with the bindings that grant it before and after.
//!
//! # Who the subject is
//!
//! A ServiceAccount authenticates as `system:serviceaccount:NS:NAME` with
//! the groups `system:serviceaccounts`, `system:serviceaccounts:NS` and
//! `system:authenticated` ([`UserInfo::service_account`]); these are the
//! `user` and `groups` to give a SubjectAccessReview to get the same answer
//! (a review with a user and no groups gets none added).
//!
//! # Aggregated ClusterRoles
//!
//! A ClusterRole with an `aggregationRule` is evaluated by the `rules` the
//! server has stored ([`ClusterRole::aggregated`] only records that it is
//! one). The authorizer itself never reads `aggregationRule`; the
//! aggregation controller of kube-controller-manager rewrites `rules`.
//! Reading the roles from the server therefore gives the server's answer,
//! controller or not (a bare kube-apiserver, as in pullwarden's tests, has
//! none); a workspace-only evaluation cannot know what the controller would
//! add.
//!
//! # Not covered
//!
//! Other authorizers of the chain (`system:masters` is allowed everything
//! before RBAC is asked; Node, webhook, ABAC), non-resource URLs, and
//! impersonation. pullwarden asks about ServiceAccounts on clusters where
//! RBAC decides.
//!
//! # Cost
//!
//! [`Authorizer::new`] indexes roles by name and RoleBindings by namespace,
//! so one request costs what upstream's does: the `ClusterRoleBindings` plus
//! the RoleBindings of one namespace. A matrix does not ask S × P questions:
//! [`PullIndex::new`] checks each role's rules once, keeps only bindings
//! whose role allows a pull, and indexes them by the user or group name of
//! each subject; [`AccessMatrix::compute`] then looks up each subject's (at
//! most four) names and touches only the bindings that grant it something:
//! O(rules + subjects of bindings + S + E) with E the (subject, granting
//! binding) matches. `ClusterRoleBinding` grants are stored once per subject,
//! not once per project.
//!
//! # Example
//!
//! ```
//! use pullwarden_rbac::*;
//!
//! let puller = ClusterRole {
//!     name: "system:image-puller".into(),
//!     aggregated: false,
//!     rules: vec![PolicyRule {
//!         verbs: vec!["get".into()],
//!         api_groups: vec!["".into(), "image.openshift.io".into()],
//!         resources: vec!["imagestreams/layers".into()],
//!         ..PolicyRule::default()
//!     }],
//! };
//! let grant = RoleBinding {
//!     namespace: "project-b".into(),
//!     name: "pull-from-b".into(),
//!     role_ref: RoleRef::ClusterRole("system:image-puller".into()),
//!     subjects: vec![Subject::service_account("project-a", "default")],
//! };
//! let before = Policy { cluster_roles: vec![puller], ..Policy::default() };
//! let mut after = before.clone();
//! after.role_bindings.push(grant);
//!
//! let subjects = [PullSubject::service_account("project-a", "default")];
//! let projects = ["project-a", "project-b"];
//! let matrix = |policy: &Policy| {
//!     let index = PullIndex::new(&Authorizer::new(policy));
//!     AccessMatrix::compute(&index, &subjects, projects)
//! };
//! let (old, new) = (matrix(&before), matrix(&after));
//! assert!(new.cell(&subjects[0], "project-b").is_some_and(|a| a.whole_project()));
//!
//! let diff = AccessDiff::between(&old, &new);
//! assert_eq!(diff.gained.len(), 1);
//! assert_eq!(diff.gained[0].project, "project-b");
//! let via = &diff.gained[0].after.as_ref().unwrap().grants[0].binding;
//! assert_eq!(via.to_string(), "RoleBinding project-b/pull-from-b");
//! assert!(diff.lost.is_empty());
//! ```
//!
//! Architecture invariant: pure. No I/O, no tokio, no Kubernetes client and
//! no other pullwarden crate; the caller lists the objects (see
//! `pullwarden-kube`'s `rbac` module) and hands them over as [`Policy`].
//! Results are deterministic: grants in binding order, cells in subject and
//! project order.

mod authorize;
mod diff;
mod matrix;
mod model;

pub use authorize::{
    Allowed, Authorizer, BindingRef, Decision, MissingRole, rule_allows, subject_applies,
};
pub use diff::{AccessChange, AccessDiff};
pub use matrix::{
    AccessMatrix, Grant, PullAccess, PullIndex, PullSubject, Streams, SubjectNames, pull_streams,
};
pub use model::{
    ClusterRole, ClusterRoleBinding, IMAGE_API_GROUP, Policy, PolicyRule, ResourceRequest, Role,
    RoleBinding, RoleRef, Subject, UserInfo, service_account_groups, service_account_user_name,
};

#[cfg(test)]
mod tests;
