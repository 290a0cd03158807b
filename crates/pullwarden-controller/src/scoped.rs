//! Re-planning only what events touched.
//!
//! A watch event names a namespace (a Namespace created, relabelled or
//! deleted) or objects in one. What the workspace wants in a namespace
//! depends on that namespace alone (its existence, labels and state), with
//! one exception: an `allServiceAccountsIn` subject that is a glob or label
//! selector lists one Group per matching namespace in every RoleBinding of
//! its grant, so a namespace appearing, disappearing or relabelled changes
//! those RoleBindings wherever they are. So a scoped reconcile:
//!
//! 1. reads the touched namespaces (plus, after a Namespace event, every
//!    target namespace of such a grant): each Namespace, and the Secrets,
//!    ServiceAccounts and RoleBindings in it, with the filters of a full read;
//! 2. plans over a live state holding every namespace the Namespace watch
//!    knows (so globs, selectors and `allServiceAccountsIn` expand exactly as
//!    in a full plan), the read namespaces as just read, and the objects of
//!    the read namespaces only ([`merge`]);
//! 3. keeps of what the workspace wants only what lies in the read
//!    namespaces ([`restrict`]) before planning: the planner then creates,
//!    changes and prunes only there, since it sees no object elsewhere and
//!    wants none.
//!
//! A full reconcile instead when the Namespace watch is not in sync (not yet
//! listed, failing, re-listing), when a watch re-listed (events may have been
//! lost), when more than [`MAX_NAMESPACES`] namespaces would be read, when
//! anything else triggered (start, resync, workspace change, backoff wake-up,
//! leadership), and after a reconcile that did not converge (a failed read or
//! write, held-back changes, a plan error that names no namespace).
//!
//! The planner's "a plan with errors applies nothing" rule stays the full
//! plan's ([`Carry`]): after a plan with errors, the namespaces they name and
//! those where it had changes (nothing was applied) are re-planned with
//! whatever events touch next, until a plan of them is clean (more than
//! [`MAX_NAMESPACES`]: a full one); a namespace no event touched since a plan
//! found it clean and in sync has no new error and nothing to do (its objects
//! and labels are as they were, and what it wants depends only on them, or on
//! the namespaces re-planned with it).

use std::collections::{BTreeMap, BTreeSet};

use pullwarden_core::live::LiveState;
use pullwarden_core::model::{Subject, Workspace};
use pullwarden_core::names::NamespacePattern;
use pullwarden_core::plan::Desired;

use crate::watch::{NamespaceView, Touch};

/// A scoped reconcile reads at most this many namespaces; more is a full one
/// (a full read is a few LISTs, a scoped one four per namespace).
pub(crate) const MAX_NAMESPACES: usize = 64;

/// What the events of one debounce window touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Touched {
    pub namespaces: BTreeSet<String>,
    /// Some were Namespace events (created, relabelled, deleted).
    pub namespace_events: bool,
    /// Something not confined to known namespaces.
    pub everything: bool,
}

impl Touched {
    pub(crate) fn add(&mut self, touch: &Touch) {
        match touch {
            Touch::Namespace(ns) => {
                self.namespace_events = true;
                self.namespaces.insert(ns.clone());
            }
            Touch::In(ns) => {
                self.namespaces.insert(ns.clone());
            }
            Touch::Everything => self.everything = true,
        }
    }
}

/// What the next reconcile re-plans besides what events touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Carry {
    /// A full reconcile.
    Everything,
    /// These namespaces too (none: only what events touch).
    Namespaces(BTreeSet<String>),
}

impl Carry {
    /// After a plan with errors over `scope` (`None`: every namespace) whose
    /// errors and changes lie in `pending` (`None`: an error names no namespace).
    pub(crate) fn after_errors(
        scope: Option<&BTreeSet<String>>,
        errors: Option<BTreeSet<String>>,
    ) -> Carry {
        match errors {
            // A scoped plan's errors lie in its namespaces; anything else: full.
            Some(errors)
                if errors.len() <= MAX_NAMESPACES
                    && scope.is_none_or(|set| errors.is_subset(set)) =>
            {
                Carry::Namespaces(errors)
            }
            _ => Carry::Everything,
        }
    }
}

/// What a plan refused for its errors leaves to do: the namespaces its
/// errors name and those where it has changes (nothing was applied); every
/// other namespace it planned is in sync. `None` when an error names no
/// namespace.
pub(crate) fn pending(plan: &pullwarden_core::plan::Plan) -> Option<BTreeSet<String>> {
    let mut pending = plan
        .errors
        .iter()
        .map(|f| f.namespace.clone())
        .collect::<Option<BTreeSet<String>>>()?;
    pending.extend(plan.changes.iter().map(|c| c.namespace.clone()));
    Some(pending)
}

/// Whether a grant's subjects depend on which namespaces exist.
fn subjects_follow_namespaces(grant: &pullwarden_core::model::PullGrant) -> bool {
    grant.to.iter().any(|s| {
        matches!(&s.value, Subject::AllServiceAccountsIn(p) if !matches!(p, NamespacePattern::Exact(_)))
    })
}

/// The namespaces a scoped reconcile of `touched` reads and plans, or `None`
/// when it must be a full one (see the module documentation).
pub(crate) fn namespaces(
    ws: &Workspace,
    view: &NamespaceView,
    touched: &Touched,
) -> Option<BTreeSet<String>> {
    if touched.everything || !view.ready || touched.namespaces.is_empty() {
        return None;
    }
    let mut set = touched.namespaces.clone();
    if touched.namespace_events {
        let grants: BTreeSet<&str> = ws
            .pull_grants
            .iter()
            .filter(|g| subjects_follow_namespaces(g))
            .map(|g| g.name.as_str())
            .collect();
        if !grants.is_empty() {
            let desired = pullwarden_core::plan::desired(
                ws,
                &BTreeMap::new(),
                &merge(view, LiveState::default(), &BTreeSet::new()),
            );
            set.extend(
                desired
                    .role_bindings
                    .values()
                    .filter(|rb| grants.contains(rb.grant.as_str()))
                    .map(|rb| rb.namespace.clone()),
            );
        }
    }
    (set.len() <= MAX_NAMESPACES).then_some(set)
}

/// The live state a scoped plan runs on: `fresh` (the namespaces of `set` as
/// just read, and their objects), and every other namespace as the
/// Namespace watch knows it, without objects.
pub(crate) fn merge(view: &NamespaceView, fresh: LiveState, set: &BTreeSet<String>) -> LiveState {
    let mut live = fresh;
    for (name, info) in &view.namespaces {
        if set.contains(name) {
            continue;
        }
        if info.terminating {
            live.terminating.insert(name.clone());
        } else {
            live.namespaces.insert(name.clone());
            live.namespace_labels
                .insert(name.clone(), info.labels.clone());
        }
    }
    live
}

/// Keeps only what the workspace wants in `set` (its findings stay: they
/// are the full plan's).
pub(crate) fn restrict(desired: &mut Desired, set: &BTreeSet<String>) {
    desired.secrets.retain(|(ns, _), _| set.contains(ns));
    desired.links.retain(|(ns, _), _| set.contains(ns));
    desired.role_bindings.retain(|(ns, _), _| set.contains(ns));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use pullwarden_core::live::{
        LiveRoleBinding, LiveSecret, LiveServiceAccount, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Meta,
        RbacSubject, RoleRef, WORKSPACE_LABEL,
    };
    use pullwarden_core::plan::{Action, Plan, PlanOptions};
    use pullwarden_core::secret::DigestKey;

    use super::*;
    use crate::watch::NamespaceInfo;

    const WORKSPACE: &str = "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {name: ws}
spec:
  namespaces: {include: [\"team-*\", ci]}
  prune: true
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {name: quay}
spec:
  server: quay.io
  username: robot
  password: {fromFile: creds/quay}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {name: quay-pull}
spec:
  registries: [quay]
  namespaces: [{matchLabels: {pull: quay}}]
  serviceAccounts: [{name: default}]
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata: {name: from-ci}
spec:
  role: system:image-puller
  namespaces: [ci]
  to:
    - allServiceAccountsIn: \"team-*\"
";

    fn load() -> crate::workspace::Loaded {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("creds")).unwrap();
        std::fs::write(dir.path().join("creds/quay"), "scoped-test-pw").unwrap();
        std::fs::write(dir.path().join("workspace.yaml"), WORKSPACE).unwrap();
        crate::workspace::load(dir.path()).unwrap_or_else(|p| panic!("{p:?}"))
    }

    fn meta(ns: &str, name: &str, ours: bool) -> Meta {
        let mut labels = BTreeMap::new();
        if ours {
            labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
            labels.insert(WORKSPACE_LABEL.to_owned(), "ws".to_owned());
        }
        Meta {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            uid: format!("uid-{ns}-{name}"),
            resource_version: "1".to_owned(),
            labels,
            ..Meta::default()
        }
    }

    /// A whole cluster: `team-a` converged earlier, `team-b` (labelled) new,
    /// `team-old` no longer labelled but still holding our Secret, `ci` with
    /// our RoleBinding listing only `team-a`'s and `team-old`'s Groups.
    fn cluster() -> LiveState {
        let mut live = LiveState::default();
        for (ns, labels) in [
            ("team-a", vec![("pull", "quay")]),
            ("team-b", vec![("pull", "quay")]),
            ("team-old", vec![]),
            ("ci", vec![]),
        ] {
            live.namespaces.insert(ns.to_owned());
            live.namespace_labels.insert(
                ns.to_owned(),
                labels
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            );
        }
        for ns in ["team-a", "team-b", "team-old", "ci"] {
            live.service_accounts.push(LiveServiceAccount {
                meta: meta(ns, "default", false),
                image_pull_secrets: Vec::new(),
                secrets: Vec::new(),
            });
        }
        for ns in ["team-a", "team-old"] {
            live.secrets.push(LiveSecret {
                meta: meta(ns, "quay-pull", true),
                from_snapshot_file: false,
                type_: "kubernetes.io/dockerconfigjson".to_owned(),
                immutable: false,
                data: BTreeMap::new(),
            });
        }
        live.role_bindings.push(LiveRoleBinding {
            meta: meta("ci", "pullwarden:ws:from-ci:system:image-puller", true),
            role_ref: RoleRef {
                kind: "ClusterRole".to_owned(),
                name: "system:image-puller".to_owned(),
            },
            subjects: vec![
                RbacSubject::group("system:serviceaccounts:team-a"),
                RbacSubject::group("system:serviceaccounts:team-old"),
            ],
        });
        live
    }

    /// The Namespace watch's view of a live state.
    fn view_of(live: &LiveState) -> NamespaceView {
        let mut view = NamespaceView {
            ready: true,
            ..NamespaceView::default()
        };
        for ns in &live.namespaces {
            view.namespaces.insert(
                ns.clone(),
                NamespaceInfo {
                    labels: live.namespace_labels[ns].clone(),
                    terminating: false,
                },
            );
        }
        view
    }

    /// What a scoped read of `set` returns: those namespaces and their objects.
    fn read_of(live: &LiveState, set: &BTreeSet<String>) -> LiveState {
        let mut fresh = LiveState::default();
        for ns in set {
            if live.namespaces.contains(ns) {
                fresh.namespaces.insert(ns.clone());
                fresh
                    .namespace_labels
                    .insert(ns.clone(), live.namespace_labels[ns].clone());
            }
        }
        fresh.secrets = live
            .secrets
            .iter()
            .filter(|s| set.contains(&s.meta.namespace))
            .cloned()
            .collect();
        fresh.service_accounts = live
            .service_accounts
            .iter()
            .filter(|s| set.contains(&s.meta.namespace))
            .cloned()
            .collect();
        fresh.role_bindings = live
            .role_bindings
            .iter()
            .filter(|s| set.contains(&s.meta.namespace))
            .cloned()
            .collect();
        fresh
    }

    fn plan(
        loaded: &crate::workspace::Loaded,
        live: &LiveState,
        set: Option<&BTreeSet<String>>,
    ) -> Plan {
        let key = DigestKey::from_bytes([7; 32]);
        let mut desired =
            pullwarden_core::plan::desired(&loaded.workspace, &loaded.registries, live);
        if let Some(set) = set {
            restrict(&mut desired, set);
        }
        pullwarden_core::plan::plan(
            &loaded.workspace,
            &desired,
            live,
            PlanOptions::default(),
            &key,
        )
    }

    fn titles(plan: &Plan) -> Vec<String> {
        plan.changes
            .iter()
            .map(|c| format!("{} {:?} {:?} {}", c.namespace, c.kind, c.action, c.name))
            .collect()
    }

    /// An event in `team-b` (its default ServiceAccount appeared): the
    /// scoped plan is exactly the full plan's changes in `team-b`; the stale
    /// Secret in `team-old`, which a full plan prunes, is not touched by it.
    #[test]
    fn a_scoped_plan_is_the_full_plan_within_its_namespaces_and_prunes_nothing_outside() {
        let loaded = load();
        let live = cluster();
        let view = view_of(&live);
        let touched = Touched {
            namespaces: ["team-b".to_owned()].into(),
            ..Touched::default()
        };
        let set = namespaces(&loaded.workspace, &view, &touched).expect("scoped");
        assert_eq!(set, BTreeSet::from(["team-b".to_owned()]));
        let scoped_live = merge(&view, read_of(&live, &set), &set);
        let scoped = plan(&loaded, &scoped_live, Some(&set));
        let full = plan(&loaded, &live, None);
        assert!(scoped.errors.is_empty() && full.errors.is_empty());
        let full_in_set: Vec<String> = titles(&full)
            .into_iter()
            .filter(|t| t.starts_with("team-b "))
            .collect();
        assert_eq!(titles(&scoped), full_in_set);
        assert_eq!(
            titles(&scoped),
            [
                "team-b Secret Create quay-pull",
                "team-b ServiceAccount Link default"
            ]
        );
        // The full plan prunes team-old's Secret and fixes ci's binding; the scoped one does neither.
        assert!(
            full.changes
                .iter()
                .any(|c| c.namespace == "team-old" && c.action == Action::Delete),
            "{:?}",
            titles(&full)
        );
        assert!(scoped.changes.iter().all(|c| c.namespace == "team-b"));
    }

    /// A Namespace event where a grant's `allServiceAccountsIn` is a glob:
    /// the grant's RoleBindings elsewhere (`ci`) are read and planned too,
    /// their subjects computed from every namespace.
    #[test]
    fn a_namespace_event_also_replans_the_bindings_whose_subjects_follow_namespaces() {
        let loaded = load();
        let live = cluster();
        let view = view_of(&live);
        let touched = Touched {
            namespaces: ["team-b".to_owned()].into(),
            namespace_events: true,
            ..Touched::default()
        };
        let set = namespaces(&loaded.workspace, &view, &touched).expect("scoped");
        assert_eq!(set, BTreeSet::from(["ci".to_owned(), "team-b".to_owned()]));
        let scoped = plan(
            &loaded,
            &merge(&view, read_of(&live, &set), &set),
            Some(&set),
        );
        let full = plan(&loaded, &live, None);
        let full_in_set: Vec<String> = titles(&full)
            .into_iter()
            .filter(|t| t.starts_with("team-b ") || t.starts_with("ci "))
            .collect();
        assert_eq!(titles(&scoped), full_in_set);
        let binding = scoped
            .changes
            .iter()
            .find(|c| c.namespace == "ci")
            .expect("ci's binding is updated");
        assert_eq!(binding.action, Action::Update);
        let pullwarden_core::plan::Detail::RoleBinding(diff) = &binding.detail else {
            panic!("{:?}", binding.detail);
        };
        let mut subjects: Vec<String> = diff.subjects.iter().map(RbacSubject::display).collect();
        subjects.sort();
        // team-b's Group joins; every `team-*` namespace counts, read or not.
        assert_eq!(
            subjects,
            [
                "group system:serviceaccounts:team-a",
                "group system:serviceaccounts:team-b",
                "group system:serviceaccounts:team-old"
            ]
        );
    }

    /// A full reconcile when the view cannot be trusted, a watch re-listed,
    /// or too many namespaces would be read.
    #[test]
    fn falls_back_to_a_full_reconcile() {
        let loaded = load();
        let live = cluster();
        let mut view = view_of(&live);
        let one = Touched {
            namespaces: ["team-a".to_owned()].into(),
            ..Touched::default()
        };
        assert!(namespaces(&loaded.workspace, &view, &one).is_some());
        let mut everything = one.clone();
        everything.add(&Touch::Everything);
        assert!(namespaces(&loaded.workspace, &view, &everything).is_none());
        let many = Touched {
            namespaces: (0..=MAX_NAMESPACES).map(|i| format!("team-{i}")).collect(),
            ..Touched::default()
        };
        assert!(namespaces(&loaded.workspace, &view, &many).is_none());
        view.ready = false;
        assert!(namespaces(&loaded.workspace, &view, &one).is_none());
    }

    /// A plan refused for an error in one namespace leaves the changes it
    /// had in another to do (the bench once lost a namespace that way: planned
    /// beside one whose ServiceAccounts did not exist yet, then forgotten).
    #[test]
    fn a_refused_plan_leaves_its_errors_and_its_changes_to_do() {
        let loaded = load();
        let mut live = cluster();
        // team-b's default ServiceAccount does not exist yet: an error there.
        live.service_accounts
            .retain(|sa| !(sa.meta.namespace == "team-b" && sa.meta.name == "default"));
        // team-a: a change (its Secret's data is unreadable: an update).
        let view = view_of(&live);
        let set: BTreeSet<String> = ["team-a".to_owned(), "team-b".to_owned()].into();
        let refused = plan(
            &loaded,
            &merge(&view, read_of(&live, &set), &set),
            Some(&set),
        );
        assert_eq!(refused.errors.len(), 1, "{:?}", refused.errors);
        assert!(
            titles(&refused).iter().any(|t| t.starts_with("team-a ")),
            "{:?}",
            titles(&refused)
        );
        let left = pending(&refused).expect("every error names its namespace");
        assert_eq!(left, set);
        assert_eq!(
            Carry::after_errors(Some(&set), Some(left.clone())),
            Carry::Namespaces(left)
        );
    }

    /// After a plan with errors, their namespaces are planned again with the
    /// next events; an error naming no namespace, or outside a scoped plan's
    /// namespaces, makes the next reconcile a full one.
    #[test]
    fn errors_are_carried_to_the_next_reconcile() {
        let set = |names: &[&str]| -> BTreeSet<String> {
            names.iter().map(|n| (*n).to_owned()).collect()
        };
        assert_eq!(
            Carry::after_errors(None, Some(set(&["a"]))),
            Carry::Namespaces(set(&["a"]))
        );
        assert_eq!(
            Carry::after_errors(Some(&set(&["a", "b"])), Some(set(&["b"]))),
            Carry::Namespaces(set(&["b"]))
        );
        assert_eq!(
            Carry::after_errors(Some(&set(&["a"])), Some(set(&["c"]))),
            Carry::Everything
        );
        assert_eq!(Carry::after_errors(None, None), Carry::Everything);
    }
}
