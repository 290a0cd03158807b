//! `RoleBindings` for `PullGrants`. A binding's name holds the workspace, the
//! grant and the role, so a role change is a create of the new binding before
//! the delete of the old (access never lapses); subjects another, unmanaged
//! binding already grants are reported as satisfied, not duplicated.

use std::collections::{BTreeMap, BTreeSet};

use crate::live::{LiveRoleBinding, Ownership, RbacSubject};

use super::desired::finding;
use super::{
    Action, Assumed, Change, Detail, Finding, FindingCode, ObjectKind, Planner, Replaced,
    RoleBindingDiff,
};

impl Planner<'_> {
    /// `RoleBindings` for `PullGrants`: create, update, replace (a role change: new binding first), adopt, prune.
    pub(super) fn role_bindings(&mut self) {
        let (ws, desired, live, options) = (self.ws, self.desired, self.live, self.options);
        let (changes, errors, warnings) = (&mut self.changes, &mut self.errors, &mut self.warnings);
        let by_ns: BTreeMap<&str, Vec<&LiveRoleBinding>> =
            live.role_bindings
                .iter()
                .fold(BTreeMap::new(), |mut m, rb| {
                    m.entry(rb.meta.namespace.as_str()).or_default().push(rb);
                    m
                });
        let no_bindings = Vec::new();
        let mut kept: BTreeSet<(String, String)> = BTreeSet::new();
        for ((ns, name), want) in &desired.role_bindings {
            let bindings = by_ns.get(ns.as_str()).unwrap_or(&no_bindings);
            // Subjects that a binding not of this workspace already grants the role to.
            // A binding with our name is not one of those: it is in the way (a
            // conflict, or adopted and rewritten), so it cannot vouch for a subject.
            let mut subjects = Vec::new();
            for subject in &want.subjects {
                let satisfied_by = bindings.iter().find(|rb| {
                    // Only an unmanaged binding vouches: another workspace may drop it.
                    rb.meta.ownership(&ws.name) == Ownership::Unmanaged
                        && rb.meta.name != *name
                        && rb.role_ref.kind == "ClusterRole"
                        && rb.role_ref.name == want.role
                        && rb.subjects.contains(subject)
                });
                match satisfied_by {
                    Some(rb) => warnings.push(finding(
                        FindingCode::AlreadySatisfied,
                        Some(ns),
                        format!(
                            "PullGrant/{}: RoleBinding {ns}/{} already grants {} to {}",
                            want.grant,
                            rb.meta.name,
                            want.role,
                            subject.display()
                        ),
                    )),
                    None => subjects.push(subject.clone()),
                }
            }
            if subjects.is_empty() {
                continue;
            }
            let source = Some(format!("PullGrant/{}", want.grant));
            let existing = bindings.iter().find(|rb| rb.meta.name == *name);
            match existing {
                Some(rb)
                    if options.adopt && rb.meta.ownership(&ws.name) == Ownership::Unmanaged =>
                {
                    kept.insert((ns.clone(), name.clone()));
                    changes.push(Change {
                        namespace: ns.clone(),
                        kind: ObjectKind::RoleBinding,
                        name: name.clone(),
                        action: Action::Adopt,
                        source,
                        assumed: Some(Assumed::of(&rb.meta)),
                        detail: Detail::RoleBinding(rewrite(rb, &want.role, subjects)),
                    });
                }
                Some(rb) if rb.meta.ownership(&ws.name) != Ownership::Ours => {
                    errors.push(Finding {
                        assumed: Some(Assumed::of(&rb.meta)),
                        ..finding(
                            FindingCode::Conflict,
                            Some(ns),
                            format!(
                                "RoleBinding {ns}/{name} exists and is not this workspace's{}",
                                if rb.meta.ownership(&ws.name) == Ownership::Unmanaged {
                                    "; rerun with --adopt to take it over"
                                } else {
                                    ""
                                }
                            ),
                        )
                    });
                }
                Some(rb) => {
                    kept.insert((ns.clone(), name.clone()));
                    let have: BTreeSet<&RbacSubject> = rb.subjects.iter().collect();
                    let wanted: BTreeSet<&RbacSubject> = subjects.iter().collect();
                    if have == wanted && rb.role_ref.name == want.role {
                        continue;
                    }
                    changes.push(Change {
                        namespace: ns.clone(),
                        kind: ObjectKind::RoleBinding,
                        name: name.clone(),
                        action: Action::Update,
                        source,
                        assumed: Some(Assumed::of(&rb.meta)),
                        detail: Detail::RoleBinding(rewrite(rb, &want.role, subjects)),
                    });
                }
                None => {
                    // The same grant bound under another role: replace it, new binding first.
                    let previous = bindings.iter().find(|rb| {
                        rb.meta.ownership(&ws.name) == Ownership::Ours
                            && rb.meta.name != *name
                            && rb.meta.annotations.get(crate::live::SOURCE_ANNOTATION)
                                == Some(&format!("PullGrant/{}", want.grant))
                    });
                    if let Some(old) = previous {
                        kept.insert((ns.clone(), old.meta.name.clone()));
                    }
                    changes.push(Change {
                        namespace: ns.clone(),
                        kind: ObjectKind::RoleBinding,
                        name: name.clone(),
                        action: if previous.is_some() {
                            Action::Replace
                        } else {
                            Action::Create
                        },
                        source,
                        assumed: None,
                        detail: Detail::RoleBinding(RoleBindingDiff {
                            role: want.role.clone(),
                            subjects_added: subjects.clone(),
                            subjects_removed: Vec::new(),
                            subjects,
                            replaces: previous.map(|old| Replaced {
                                name: old.meta.name.clone(),
                                role: old.role_ref.name.clone(),
                                assumed: Assumed::of(&old.meta),
                            }),
                        }),
                    });
                }
            }
        }
        // The old-role binding left by an interrupted replace (the new one exists,
        // the old one was not deleted yet): finish the replace, prune or not.
        for rb in &live.role_bindings {
            let key = (rb.meta.namespace.clone(), rb.meta.name.clone());
            if rb.meta.ownership(&ws.name) != Ownership::Ours || kept.contains(&key) {
                continue;
            }
            let Some(grant) = rb
                .meta
                .annotations
                .get(crate::live::SOURCE_ANNOTATION)
                .and_then(|s| s.strip_prefix("PullGrant/"))
            else {
                continue;
            };
            let replaced = desired
                .role_bindings
                .iter()
                .any(|((ns, name), want)| *ns == key.0 && *name != key.1 && want.grant == grant);
            if replaced {
                kept.insert(key.clone());
                changes.push(Change {
                    namespace: key.0,
                    kind: ObjectKind::RoleBinding,
                    name: key.1,
                    action: Action::Delete,
                    source: Some(format!("PullGrant/{grant}")),
                    assumed: Some(Assumed::of(&rb.meta)),
                    detail: Detail::Pruned,
                });
            }
        }
        if !ws.prune {
            return;
        }
        for rb in &live.role_bindings {
            let key = (rb.meta.namespace.clone(), rb.meta.name.clone());
            if rb.meta.ownership(&ws.name) == Ownership::Ours && !kept.contains(&key) {
                changes.push(Change {
                    namespace: key.0,
                    kind: ObjectKind::RoleBinding,
                    name: key.1,
                    action: Action::Delete,
                    source: None,
                    assumed: Some(Assumed::of(&rb.meta)),
                    detail: Detail::Pruned,
                });
            }
        }
    }
}

/// The diff of an existing binding rewritten to `subjects` (an update, or an
/// adoption): what is added and removed, and the full list apply writes.
fn rewrite(rb: &LiveRoleBinding, role: &str, subjects: Vec<RbacSubject>) -> RoleBindingDiff {
    let have: BTreeSet<&RbacSubject> = rb.subjects.iter().collect();
    let wanted: BTreeSet<&RbacSubject> = subjects.iter().collect();
    RoleBindingDiff {
        role: role.to_owned(),
        subjects_added: wanted.difference(&have).map(|s| (*s).clone()).collect(),
        subjects_removed: have.difference(&wanted).map(|s| (*s).clone()).collect(),
        subjects,
        replaces: None,
    }
}
