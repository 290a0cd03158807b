//! The order apply runs a plan's changes in, decided by the planner so that
//! apply makes no choice of its own.
//!
//! Phases run one after another; the changes of one phase may run at once:
//! 1. Secrets (created, updated, replaced, adopted), so links never name a
//!    Secret that is not there;
//! 2. ServiceAccounts created by `ifMissing: create`;
//! 3. links and unlinks;
//! 4. RoleBindings (a role change creates the new binding and only then
//!    deletes the old one, within its change);
//! 5. prune deletes, last, after unlinks stopped naming what they delete.
//!
//! A change also *needs* others: a link needs the Secrets it adds and the
//! ServiceAccount it creates; a Secret's delete needs every link edit of its
//! namespace. When a needed change did not succeed, apply skips the change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Action, Change, Detail, ObjectKind};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Indices into the plan's changes, phase by phase.
    pub phases: Vec<Vec<usize>>,
    /// Change index → the changes that must have succeeded before it runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub needs: BTreeMap<usize, Vec<usize>>,
}

/// The phase of a change (0-based; see the module docs).
fn phase(change: &Change) -> usize {
    match (&change.detail, change.action) {
        (_, Action::Delete) | (Detail::Pruned, _) => 4,
        (Detail::Secret(_), _) => 0,
        (Detail::ServiceAccount, _) => 1,
        (Detail::Links(_), _) => 2,
        (Detail::RoleBinding(_), _) => 3,
    }
}

/// The schedule of `changes` (in plan order).
pub fn schedule(changes: &[Change]) -> Schedule {
    let mut phases: Vec<Vec<usize>> = vec![Vec::new(); 5];
    // (namespace, kind, name) -> index, for the writes links depend on.
    let mut written: BTreeMap<(&str, ObjectKind, &str), usize> = BTreeMap::new();
    let mut links_by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, change) in changes.iter().enumerate() {
        phases[phase(change)].push(index);
        match (&change.detail, change.action) {
            (Detail::Secret(_) | Detail::ServiceAccount, _) if change.action != Action::Delete => {
                written.insert((&change.namespace, change.kind, &change.name), index);
            }
            (Detail::Links(_), _) => links_by_namespace
                .entry(&change.namespace)
                .or_default()
                .push(index),
            _ => {}
        }
    }
    let mut needs: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (index, change) in changes.iter().enumerate() {
        let mut needed = Vec::new();
        match (&change.detail, change.action) {
            (Detail::Links(links), _) => {
                for secret in links.pull_added.iter().chain(&links.mount_added) {
                    if let Some(&i) = written.get(&(
                        change.namespace.as_str(),
                        ObjectKind::Secret,
                        secret.as_str(),
                    )) {
                        needed.push(i);
                    }
                }
                if let Some(&i) = written.get(&(
                    change.namespace.as_str(),
                    ObjectKind::ServiceAccount,
                    change.name.as_str(),
                )) {
                    needed.push(i);
                }
            }
            (_, Action::Delete) if change.kind == ObjectKind::Secret => {
                if let Some(links) = links_by_namespace.get(change.namespace.as_str()) {
                    needed.extend(links);
                }
            }
            _ => {}
        }
        needed.sort_unstable();
        needed.dedup();
        if !needed.is_empty() {
            needs.insert(index, needed);
        }
    }
    phases.retain(|p| !p.is_empty());
    Schedule { phases, needs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LinkDiff, SecretDiff};

    fn change(ns: &str, kind: ObjectKind, name: &str, action: Action, detail: Detail) -> Change {
        Change {
            namespace: ns.into(),
            kind,
            name: name.into(),
            action,
            source: None,
            assumed: None,
            detail,
        }
    }

    fn secret() -> Detail {
        Detail::Secret(SecretDiff {
            secret_type: "kubernetes.io/dockerconfigjson".into(),
            previous_type: None,
            entries: Vec::new(),
            unreadable_live_data: false,
            immutable: false,
        })
    }

    #[test]
    fn secrets_first_prune_last_and_links_need_what_they_link() {
        let changes = vec![
            change(
                "a",
                ObjectKind::RoleBinding,
                "rb",
                Action::Create,
                Detail::RoleBinding(crate::plan::RoleBindingDiff {
                    role: "system:image-puller".into(),
                    subjects: Vec::new(),
                    subjects_added: Vec::new(),
                    subjects_removed: Vec::new(),
                    replaces: None,
                }),
            ),
            change(
                "a",
                ObjectKind::Secret,
                "old",
                Action::Delete,
                Detail::Pruned,
            ),
            change("a", ObjectKind::Secret, "pull", Action::Create, secret()),
            change(
                "a",
                ObjectKind::ServiceAccount,
                "bot",
                Action::Create,
                Detail::ServiceAccount,
            ),
            change(
                "a",
                ObjectKind::ServiceAccount,
                "bot",
                Action::Link,
                Detail::Links(LinkDiff {
                    pull_added: vec!["pull".into(), "unchanged".into()],
                    pull_removed: vec!["old".into()],
                    ..LinkDiff::default()
                }),
            ),
            change(
                "b",
                ObjectKind::Secret,
                "other",
                Action::Delete,
                Detail::Pruned,
            ),
        ];
        let schedule = schedule(&changes);
        assert_eq!(
            schedule.phases,
            vec![vec![2], vec![3], vec![4], vec![0], vec![1, 5]]
        );
        assert_eq!(
            schedule.needs[&4],
            vec![2, 3],
            "the link needs its Secret and its SA"
        );
        assert_eq!(
            schedule.needs[&1],
            vec![4],
            "a prune waits for the unlinks of its namespace"
        );
        assert!(
            !schedule.needs.contains_key(&5),
            "no link edit in namespace b"
        );
        assert!(!schedule.needs.contains_key(&0));
    }
}
