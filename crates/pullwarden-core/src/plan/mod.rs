//! The planner: `plan(workspace, credentials, live) -> Plan`, pure and
//! deterministic. The plan is data: renderers read it, apply executes it, and
//! a saved plan is the same value on disk. It records what it assumed about
//! the cluster (UID and resourceVersion of every object it writes, deletes or
//! conflicts with), and it never holds a credential.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::live::{LiveState, Meta, RbacSubject};
use crate::model::Workspace;
use crate::secret::DigestKey;

pub mod access;
mod desired;
pub mod links;
mod role_bindings;
pub mod schedule;
mod secrets;

pub use crate::dockerconfig::render as render_docker_config;
pub use crate::live::links::LinkRecord;
pub use desired::{Desired, DesiredRoleBinding, DesiredSecret, Purposes, desired};
pub use links::{link_records, links_annotation};
pub use schedule::Schedule;

/// Version of the plan's JSON shape (`--format json`, saved plans).
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Options the user chose when planning.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Take over unlabelled objects in the way instead of reporting conflicts.
    pub adopt: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub format_version: u32,
    pub workspace: String,
    pub adopt: bool,
    /// Sorted by namespace, then kind, then name.
    pub changes: Vec<Change>,
    /// Problems that make the plan unusable (conflicts, missing namespaces or
    /// service accounts). A plan with any is an error.
    pub errors: Vec<Finding>,
    /// Things worth knowing that change nothing (already-satisfied grants,
    /// globs that match nothing, skipped service accounts).
    pub warnings: Vec<Finding>,
    /// Every namespace a glob matched when planning.
    pub matched_namespaces: BTreeSet<String>,
    /// The order apply runs the changes in, decided here: apply makes no choice.
    #[serde(default)]
    pub schedule: Schedule,
    /// Who gains and who loses pull access (`access::plan_access`), set by the
    /// caller that read the RBAC policy; absent in the JSON when nothing moves.
    #[serde(default, skip_serializing_if = "access::is_silent")]
    pub access: Option<access::AccessChanges>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for change in &self.changes {
            match change.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
                Action::Adopt => s.adopt += 1,
                Action::Link => {}
            }
            if let Detail::Links(links) = &change.detail {
                s.link += links.pull_added.len() + links.mount_added.len();
                s.unlink += links.pull_removed.len() + links.mount_removed.len();
            }
        }
        s
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub adopt: usize,
    pub link: usize,
    pub unlink: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectKind {
    Secret,
    ServiceAccount,
    RoleBinding,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// An immutable field changes: delete + create (see the change's detail for the order).
    Replace,
    Delete,
    /// Take over an unlabelled object (`--adopt`), updating it to the desired content.
    Adopt,
    /// Edit a ServiceAccount's `imagePullSecrets` / `secrets` (link and/or unlink).
    Link,
}

/// What apply may assume of a live object; a saved plan is refused if it moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assumed {
    pub uid: String,
    pub resource_version: String,
}

impl Assumed {
    pub(crate) fn of(meta: &Meta) -> Self {
        Self {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub namespace: String,
    pub kind: ObjectKind,
    pub name: String,
    pub action: Action,
    /// The document that wants this (`PullSecret/quay-pull`), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// The live object this change was computed against (none for a create).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub assumed: Option<Assumed>,
    pub detail: Detail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Detail {
    Secret(SecretDiff),
    RoleBinding(RoleBindingDiff),
    Links(LinkDiff),
    /// A ServiceAccount created by `ifMissing: create` (labelled; never deleted by prune).
    ServiceAccount,
    /// A managed object removed by prune.
    Pruned,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretDiff {
    /// `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`.
    pub secret_type: String,
    /// The live type when it differs (a replace).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_type: Option<String>,
    /// Registry entries, by server, with what changed. Values never appear.
    pub entries: Vec<EntryDiff>,
    /// The live data could not be read as a docker config (it will be rewritten).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub unreadable_live_data: bool,
    /// The live Secret is `immutable: true` (so a content change is a replace).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub immutable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)] // flat flags read best in the JSON plan
pub struct EntryDiff {
    pub server: String,
    pub status: EntryStatus,
    /// The desired username when it is a literal from the workspace; otherwise none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    pub username_sensitive: bool,
    pub username_changed: bool,
    pub password_changed: bool,
    pub email_changed: bool,
    /// The desired value comes from a `fromCommand`: a changed one was
    /// reissued by the command (pending work for `drift`, not drift).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_command: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    Added,
    Removed,
    Changed,
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleBindingDiff {
    pub role: String,
    /// The full desired subject list (what apply writes).
    pub subjects: Vec<RbacSubject>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub subjects_added: Vec<RbacSubject>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub subjects_removed: Vec<RbacSubject>,
    /// For a replace: the binding (of the old role) deleted after this one is created,
    /// so that access never lapses.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replaces: Option<Replaced>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub name: String,
    pub role: String,
    pub assumed: Assumed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDiff {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pull_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pull_removed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mount_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mount_removed: Vec<String>,
    /// What this workspace's record on the SA becomes.
    pub record: LinkRecord,
}

/// What a finding is about: a stable code, typed here and written as text
/// (`pullwarden::plan::conflict`) in JSON plans and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FindingCode {
    #[serde(rename = "pullwarden::plan::conflict")]
    Conflict,
    #[serde(rename = "pullwarden::plan::missing_namespace")]
    MissingNamespace,
    #[serde(rename = "pullwarden::plan::excluded_by_labels")]
    ExcludedByLabels,
    #[serde(rename = "pullwarden::plan::labels_unknown")]
    LabelsUnknown,
    #[serde(rename = "pullwarden::plan::namespace_terminating")]
    NamespaceTerminating,
    #[serde(rename = "pullwarden::plan::glob_matches_nothing")]
    GlobMatchesNothing,
    #[serde(rename = "pullwarden::plan::pruned_secret_still_referenced")]
    PrunedSecretStillReferenced,
    #[serde(rename = "pullwarden::plan::missing_service_account")]
    MissingServiceAccount,
    #[serde(rename = "pullwarden::plan::skipped_service_account")]
    SkippedServiceAccount,
    #[serde(rename = "pullwarden::plan::broken_links_annotation")]
    BrokenLinksAnnotation,
    #[serde(rename = "pullwarden::plan::already_satisfied")]
    AlreadySatisfied,
}

impl FindingCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conflict => "pullwarden::plan::conflict",
            Self::MissingNamespace => "pullwarden::plan::missing_namespace",
            Self::ExcludedByLabels => "pullwarden::plan::excluded_by_labels",
            Self::LabelsUnknown => "pullwarden::plan::labels_unknown",
            Self::NamespaceTerminating => "pullwarden::plan::namespace_terminating",
            Self::GlobMatchesNothing => "pullwarden::plan::glob_matches_nothing",
            Self::PrunedSecretStillReferenced => "pullwarden::plan::pruned_secret_still_referenced",
            Self::MissingServiceAccount => "pullwarden::plan::missing_service_account",
            Self::SkippedServiceAccount => "pullwarden::plan::skipped_service_account",
            Self::BrokenLinksAnnotation => "pullwarden::plan::broken_links_annotation",
            Self::AlreadySatisfied => "pullwarden::plan::already_satisfied",
        }
    }

    /// The last part of the code (`conflict`), as plans show it.
    pub fn short(self) -> &'static str {
        self.as_str().rsplit("::").next().unwrap_or_default()
    }
}

impl std::fmt::Display for FindingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code, serialized as `pullwarden::plan::conflict`, ...
    pub code: FindingCode,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    pub message: String,
    /// The object in the way, for conflicts (recorded so apply can check it did not move).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub assumed: Option<Assumed>,
}

/// The deterministic name of a managed RoleBinding. It starts with
/// `pullwarden:` (never `system:`), and holds the workspace and grant, so it
/// cannot collide with OpenShift's or another workspace's; it holds the role
/// too, so that a role change creates the new binding before deleting the old.
pub fn role_binding_name(workspace: &str, grant: &str, role: &str) -> String {
    format!("pullwarden:{workspace}:{grant}:{role}")
}

/// One planning run: the inputs, and what it has found so far. Each concern
/// (`secrets`, `links`, `role_bindings`) is a method in its own module.
struct Planner<'a> {
    ws: &'a Workspace,
    desired: &'a Desired,
    live: &'a LiveState,
    options: PlanOptions,
    key: &'a DigestKey,
    changes: Vec<Change>,
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
    /// Secrets in the way (conflicts): nothing links them.
    blocked_secrets: BTreeSet<(String, String)>,
}

/// Plans the changes that make `live` match `desired`.
pub fn plan(
    ws: &Workspace,
    desired: &Desired,
    live: &LiveState,
    options: PlanOptions,
    key: &DigestKey,
) -> Plan {
    let mut planner = Planner {
        ws,
        desired,
        live,
        options,
        key,
        changes: Vec::new(),
        errors: desired.errors.clone(),
        warnings: desired.warnings.clone(),
        blocked_secrets: BTreeSet::new(),
    };
    planner.secrets();
    planner.links();
    planner.role_bindings();
    planner.finish()
}

impl Planner<'_> {
    fn finish(self) -> Plan {
        let Planner {
            ws,
            desired,
            live,
            options,
            mut changes,
            mut errors,
            mut warnings,
            ..
        } = self;
        // A namespace being deleted takes everything in it along and refuses
        // anything new: no change there is planned, and no conflict there blocks
        // the rest (its objects are not "no longer declared", its creates would be refused).
        if !live.terminating.is_empty() {
            let mut held: BTreeSet<String> = BTreeSet::new();
            changes.retain(|c| {
                let keep = !live.terminating.contains(&c.namespace);
                if !keep {
                    held.insert(c.namespace.clone());
                }
                keep
            });
            errors.retain(|f| match &f.namespace {
                Some(ns) if live.terminating.contains(ns) => {
                    held.insert(ns.clone());
                    false
                }
                _ => true,
            });
            warnings.extend(held.iter().map(|ns| desired::terminating_warning(ns)));
        }
        changes
            .sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
        errors.sort_by(|a, b| (&a.namespace, &a.message).cmp(&(&b.namespace, &b.message)));
        warnings.sort_by(|a, b| (&a.namespace, &a.message).cmp(&(&b.namespace, &b.message)));
        warnings.dedup();
        let schedule = schedule::schedule(&changes);
        Plan {
            format_version: PLAN_FORMAT_VERSION,
            workspace: ws.name.clone(),
            adopt: options.adopt,
            changes,
            errors,
            warnings,
            matched_namespaces: desired.matched_namespaces.clone(),
            schedule,
            access: None,
        }
    }
}
