//! How pull access moves between two matrices.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::matrix::{AccessMatrix, PullAccess, PullSubject, Streams};

/// One (subject, project) pair whose access differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessChange {
    pub subject: PullSubject,
    pub project: String,
    /// The access before, with its granting bindings (`None`: nothing).
    pub before: Option<PullAccess>,
    /// The access after, with its granting bindings (`None`: nothing).
    pub after: Option<PullAccess>,
}

impl AccessChange {
    /// Streams granted before, or `None`.
    pub fn streams_before(&self) -> Option<Streams> {
        self.before.as_ref().map(PullAccess::streams)
    }

    /// Streams granted after, or `None`.
    pub fn streams_after(&self) -> Option<Streams> {
        self.after.as_ref().map(PullAccess::streams)
    }
}

/// The pairs that gain and lose pull access between two matrices.
///
/// A pair *gains* when the streams it may pull after are not all covered
/// before (nothing → something, or some streams → every stream); it
/// *loses* in the opposite direction. A pair whose streams change both ways
/// (`{a}` → `{b}`) is in both lists. A pair whose access is the same but
/// granted by other bindings is in neither.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AccessDiff {
    /// In subject then project order.
    pub gained: Vec<AccessChange>,
    /// In subject then project order.
    pub lost: Vec<AccessChange>,
}

impl AccessDiff {
    /// Whether no pair gains or loses anything.
    pub fn is_empty(&self) -> bool {
        self.gained.is_empty() && self.lost.is_empty()
    }

    /// Compares `before` with `after`. A subject or project present in only
    /// one of them has no access in the other.
    ///
    /// Cost: proportional to the pairs that can differ, not to subjects ×
    /// projects: for a subject whose `ClusterRoleBinding` streams are the
    /// same in both, only the projects where a RoleBinding grants it
    /// something (before or after), and projects present in only one
    /// matrix, are compared; only a subject whose cluster-wide access
    /// changed is compared in every project.
    pub fn between(before: &AccessMatrix, after: &AccessMatrix) -> AccessDiff {
        let subjects: BTreeSet<&PullSubject> =
            before.subjects().iter().chain(after.subjects()).collect();
        let all_projects: BTreeSet<&str> = before
            .projects()
            .iter()
            .chain(after.projects())
            .map(String::as_str)
            .collect();
        let mut diff = AccessDiff::default();
        for subject in subjects {
            let cluster_before = before.cluster_wide_streams(subject);
            let cluster_after = after.cluster_wide_streams(subject);
            let candidates: BTreeSet<&str> = if cluster_before == cluster_after {
                // Same grants in every project: only projects with
                // RoleBinding grants, and (when there are cluster-wide
                // grants) projects in only one of the two, can differ.
                let mut candidates: BTreeSet<&str> = before
                    .namespaced_projects(subject)
                    .chain(after.namespaced_projects(subject))
                    .collect();
                if cluster_before.is_some() {
                    candidates.extend(
                        before
                            .projects()
                            .symmetric_difference(after.projects())
                            .map(String::as_str),
                    );
                }
                candidates
            } else {
                all_projects.clone()
            };
            for project in candidates {
                let old = before.cell(subject, project);
                let new = after.cell(subject, project);
                let old_streams = old.as_ref().map(PullAccess::streams);
                let new_streams = new.as_ref().map(PullAccess::streams);
                let gained = !covered(new_streams.as_ref(), old_streams.as_ref());
                let lost = !covered(old_streams.as_ref(), new_streams.as_ref());
                if !gained && !lost {
                    continue;
                }
                let change = AccessChange {
                    subject: subject.clone(),
                    project: project.to_owned(),
                    before: old,
                    after: new,
                };
                if gained && lost {
                    diff.gained.push(change.clone());
                    diff.lost.push(change);
                } else if gained {
                    diff.gained.push(change);
                } else {
                    diff.lost.push(change);
                }
            }
        }
        diff
    }
}

/// Whether `a` (possibly nothing) is covered by `b`.
fn covered(a: Option<&Streams>, b: Option<&Streams>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(Streams::Named(names)), None) => names.is_empty(),
        (Some(_), None) => false,
        (Some(a), Some(b)) => a.is_subset(b),
    }
}
