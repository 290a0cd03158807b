//! Drift: how the cluster differs from the workspace, told apart from work
//! that is simply pending. Built from a [`Plan`] and the live state it was
//! computed against; the plan already ignores what is not pullwarden's
//! (OpenShift's rotating dockercfg secrets, its default bindings), so those
//! never show up as drift.
//!
//! - **drift**: an object or link this workspace applied was changed or
//!   removed out of band: a managed Secret or RoleBinding whose content
//!   differs, a link recorded as pullwarden's that is gone from its
//!   ServiceAccount, a managed object missing where the same document's
//!   objects exist elsewhere (it was applied, then deleted);
//! - **pending**: work the workspace asks for that was never applied: a
//!   namespace that newly matches a glob, a new or removed declaration,
//!   adoptions.
//!
//! Record-only bookkeeping (a ServiceAccount annotation to tidy) is neither.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::live::{LiveState, Meta, Ownership, SOURCE_ANNOTATION};
use crate::plan::{Action, Change, Detail, Finding, FindingCode, ObjectKind, Plan, link_records};

mod render;

pub use render::{
    github_annotations, github_annotations_for_cluster, junit, junit_fleet, markdown, text,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftClass {
    Drift,
    Pending,
}

#[derive(Clone, Debug, Serialize)]
pub struct DriftItem {
    pub class: DriftClass,
    pub namespace: String,
    pub kind: ObjectKind,
    pub name: String,
    /// What differs, in words (never a value).
    pub what: String,
    /// Field managers other than pullwarden that wrote the object after it
    /// (from `managedFields`), newest last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_by: Vec<String>,
    /// The plan change that repairs it.
    pub change: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct DriftReport {
    pub format_version: u32,
    pub workspace: String,
    pub in_sync: bool,
    pub drift: usize,
    pub pending: usize,
    pub items: Vec<DriftItem>,
    /// Named namespaces or linked ServiceAccounts that do not exist: drift.
    pub missing: Vec<Finding>,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

/// Who else wrote an object: managers other than pullwarden whose last write
/// is not older than pullwarden's (`managedFields` times have one-second
/// resolution, so a write in the same second counts).
fn changed_by(meta: &Meta) -> Vec<String> {
    let ours = meta
        .managers
        .iter()
        .filter(|m| m.manager == crate::live::MANAGED_BY_VALUE)
        .filter_map(|m| m.time.as_deref())
        .max();
    let mut names: Vec<String> = meta
        .managers
        .iter()
        .filter(|m| m.manager != crate::live::MANAGED_BY_VALUE)
        .filter(|m| match (ours, m.time.as_deref()) {
            (Some(ours), Some(time)) => time >= ours,
            _ => true,
        })
        .map(|m| m.manager.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

pub fn classify(plan: &Plan, live: &LiveState) -> DriftReport {
    let ws = plan.workspace.as_str();
    // Namespaces where this workspace has anything applied.
    let mut applied_namespaces: BTreeSet<&str> = BTreeSet::new();
    let mut applied_sources: BTreeSet<&str> = BTreeSet::new();
    for meta in live
        .secrets
        .iter()
        .map(|s| &s.meta)
        .chain(live.role_bindings.iter().map(|r| &r.meta))
        .chain(live.service_accounts.iter().map(|s| &s.meta))
    {
        let ours = meta.ownership(ws) == Ownership::Ours;
        if ours || link_records(meta).contains_key(ws) {
            applied_namespaces.insert(meta.namespace.as_str());
        }
        if ours && let Some(source) = meta.annotations.get(SOURCE_ANNOTATION) {
            applied_sources.insert(source.as_str());
        }
    }
    let find_meta = |change: &Change| -> Option<&Meta> {
        match change.kind {
            ObjectKind::Secret => live
                .secrets
                .iter()
                .find(|s| s.meta.namespace == change.namespace && s.meta.name == change.name)
                .map(|s| &s.meta),
            ObjectKind::RoleBinding => live
                .role_bindings
                .iter()
                .find(|r| r.meta.namespace == change.namespace && r.meta.name == change.name)
                .map(|r| &r.meta),
            ObjectKind::ServiceAccount => live
                .service_accounts
                .iter()
                .find(|s| s.meta.namespace == change.namespace && s.meta.name == change.name)
                .map(|s| &s.meta),
        }
    };
    let mut items = Vec::new();
    for (index, change) in plan.changes.iter().enumerate() {
        let meta = find_meta(change);
        let by = meta.map(changed_by).unwrap_or_default();
        let (class, what) = match (&change.detail, change.action) {
            (Detail::Links(links), _) => {
                let recorded = meta
                    .map(|m| link_records(m).remove(ws).unwrap_or_default())
                    .unwrap_or_default();
                let lost_pull: Vec<&String> = links
                    .pull_added
                    .iter()
                    .filter(|s| recorded.pull.contains(*s))
                    .collect();
                let lost_mount: Vec<&String> = links
                    .mount_added
                    .iter()
                    .filter(|s| recorded.mount.contains(*s))
                    .collect();
                let moves = links.pull_added.len()
                    + links.pull_removed.len()
                    + links.mount_added.len()
                    + links.mount_removed.len();
                if moves == 0 {
                    continue; // bookkeeping only
                }
                if lost_pull.is_empty() && lost_mount.is_empty() {
                    (DriftClass::Pending, describe_links(links))
                } else {
                    let mut lost: Vec<String> = lost_pull
                        .iter()
                        .map(|s| format!("imagePullSecrets entry {s}"))
                        .collect();
                    lost.extend(lost_mount.iter().map(|s| format!("secrets entry {s}")));
                    (
                        DriftClass::Drift,
                        format!("{} removed out of band", lost.join(", ")),
                    )
                }
            }
            (Detail::ServiceAccount, _) => (
                DriftClass::Pending,
                "ServiceAccount to create (ifMissing: create)".to_string(),
            ),
            (_, Action::Delete) => (
                DriftClass::Pending,
                "no longer declared: to prune".to_string(),
            ),
            (_, Action::Adopt) => (DriftClass::Pending, "to adopt".to_string()),
            (_, Action::Create) => {
                let applied_here = applied_namespaces.contains(change.namespace.as_str());
                let source_applied = change
                    .source
                    .as_deref()
                    .is_some_and(|s| applied_sources.contains(s));
                if !applied_here {
                    (
                        DriftClass::Pending,
                        "namespace newly in scope: nothing applied here yet".to_string(),
                    )
                } else if source_applied {
                    (
                        DriftClass::Drift,
                        "missing: applied elsewhere from the same document, deleted here out of band"
                            .to_string(),
                    )
                } else {
                    (
                        DriftClass::Pending,
                        "missing: newly declared, or deleted out of band".to_string(),
                    )
                }
            }
            (Detail::Secret(diff), _) => {
                let mut parts = Vec::new();
                if let Some(previous) = &diff.previous_type {
                    parts.push(format!("type is {previous}"));
                }
                if diff.unreadable_live_data {
                    parts.push("data is not a readable docker config".to_string());
                }
                for entry in &diff.entries {
                    let mut fields = Vec::new();
                    if entry.username_changed {
                        fields.push("username");
                    }
                    if entry.password_changed {
                        fields.push("password");
                    }
                    if entry.email_changed {
                        fields.push("email");
                    }
                    match entry.status {
                        crate::plan::EntryStatus::Added => {
                            parts.push(format!("{} entry missing", entry.server));
                        }
                        crate::plan::EntryStatus::Removed => {
                            parts.push(format!("unexpected {} entry", entry.server));
                        }
                        crate::plan::EntryStatus::Changed => {
                            parts.push(format!("{} {} differ", entry.server, fields.join("/")));
                        }
                        crate::plan::EntryStatus::Unchanged => {}
                    }
                }
                // Only values a credential command reissued differ: the
                // workspace's credentials moved on, nobody edited the Secret.
                let reissued = diff.previous_type.is_none()
                    && !diff.unreadable_live_data
                    && diff
                        .entries
                        .iter()
                        .any(|e| e.status == crate::plan::EntryStatus::Changed)
                    && diff.entries.iter().all(|e| match e.status {
                        crate::plan::EntryStatus::Unchanged => true,
                        crate::plan::EntryStatus::Changed => e.from_command && !e.email_changed,
                        _ => false,
                    });
                if reissued {
                    (
                        DriftClass::Pending,
                        format!(
                            "credentials reissued by their command: {}",
                            parts.join("; ")
                        ),
                    )
                } else {
                    (
                        DriftClass::Drift,
                        format!("data differs: {}", parts.join("; ")),
                    )
                }
            }
            (Detail::RoleBinding(diff), _) => {
                let mut parts = Vec::new();
                if !diff.subjects_added.is_empty() {
                    parts.push(format!(
                        "missing {}",
                        diff.subjects_added
                            .iter()
                            .map(crate::live::RbacSubject::display)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !diff.subjects_removed.is_empty() {
                    parts.push(format!(
                        "unexpected {}",
                        diff.subjects_removed
                            .iter()
                            .map(crate::live::RbacSubject::display)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if diff.replaces.is_some() {
                    (
                        DriftClass::Pending,
                        "role changed in the workspace".to_string(),
                    )
                } else {
                    (
                        DriftClass::Drift,
                        format!("subjects differ: {}", parts.join("; ")),
                    )
                }
            }
            (Detail::Pruned, _) => (DriftClass::Pending, "to prune".to_string()),
        };
        items.push(DriftItem {
            class,
            namespace: change.namespace.clone(),
            kind: change.kind,
            name: change.name.clone(),
            what,
            changed_by: if class == DriftClass::Drift {
                by
            } else {
                Vec::new()
            },
            change: index,
        });
    }
    // A named namespace or a linked ServiceAccount that is missing is the
    // cluster differing from the workspace (exit 2), not a failure of the tool;
    // conflicts and the like stay errors (exit 1).
    let (missing, errors): (Vec<Finding>, Vec<Finding>) =
        plan.errors.iter().cloned().partition(|f| {
            f.code == FindingCode::MissingNamespace || f.code == FindingCode::MissingServiceAccount
        });
    let drift = items
        .iter()
        .filter(|i| i.class == DriftClass::Drift)
        .count()
        + missing.len();
    let pending = items.len() + missing.len() - drift;
    DriftReport {
        format_version: 1,
        workspace: plan.workspace.clone(),
        in_sync: items.is_empty() && plan.errors.is_empty(),
        drift,
        pending,
        items,
        missing,
        errors,
        warnings: plan.warnings.clone(),
    }
}

fn describe_links(links: &crate::plan::LinkDiff) -> String {
    let mut parts = Vec::new();
    for s in &links.pull_added {
        parts.push(format!("link {s} (imagePullSecrets)"));
    }
    for s in &links.mount_added {
        parts.push(format!("link {s} (secrets)"));
    }
    for s in &links.pull_removed {
        parts.push(format!("unlink {s} (imagePullSecrets)"));
    }
    for s in &links.mount_removed {
        parts.push(format!("unlink {s} (secrets)"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::live::{
        FieldManager, LINKS_ANNOTATION, LiveSecret, LiveServiceAccount, MANAGED_BY_LABEL,
        WORKSPACE_LABEL,
    };
    use crate::plan::{Assumed, EntryDiff, EntryStatus, LinkDiff, LinkRecord, SecretDiff};

    fn meta(ns: &str, name: &str) -> Meta {
        Meta {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            resource_version: "1".into(),
            ..Meta::default()
        }
    }

    fn ours(mut meta: Meta) -> Meta {
        meta.labels
            .insert(MANAGED_BY_LABEL.into(), "pullwarden".into());
        meta.labels.insert(WORKSPACE_LABEL.into(), "ws".into());
        meta.annotations
            .insert(SOURCE_ANNOTATION.into(), "PullSecret/pull".into());
        meta
    }

    fn change(ns: &str, kind: ObjectKind, name: &str, action: Action, detail: Detail) -> Change {
        Change {
            namespace: ns.into(),
            kind,
            name: name.into(),
            action,
            source: Some("PullSecret/pull".into()),
            assumed: Some(Assumed {
                uid: format!("uid-{name}"),
                resource_version: "1".into(),
            }),
            detail,
        }
    }

    fn plan(changes: Vec<Change>, errors: Vec<Finding>) -> Plan {
        Plan {
            format_version: 1,
            workspace: "ws".into(),
            adopt: false,
            schedule: crate::plan::schedule::schedule(&changes),
            changes,
            errors,
            warnings: Vec::new(),
            matched_namespaces: BTreeSet::new(),
            access: None,
        }
    }

    fn secret_update() -> Detail {
        Detail::Secret(SecretDiff {
            secret_type: "kubernetes.io/dockerconfigjson".into(),
            previous_type: None,
            entries: vec![EntryDiff {
                server: "quay.io".into(),
                status: EntryStatus::Changed,
                username: None,
                username_sensitive: true,
                username_changed: false,
                password_changed: true,
                email_changed: false,
                from_command: false,
            }],
            unreadable_live_data: false,
            immutable: false,
        })
    }

    #[test]
    fn a_password_its_command_reissued_is_pending_work_not_drift() {
        let live = LiveState {
            namespaces: BTreeSet::from(["a".to_string()]),
            terminating: BTreeSet::new(),
            namespace_labels: BTreeMap::new(),
            cluster: None,
            secrets: vec![LiveSecret {
                meta: ours(meta("a", "pull")),
                from_snapshot_file: false,
                type_: "kubernetes.io/dockerconfigjson".into(),
                immutable: false,
                data: BTreeMap::new(),
            }],
            service_accounts: Vec::new(),
            role_bindings: Vec::new(),
        };
        let reissued = |from_command: bool, email_changed: bool| {
            let Detail::Secret(mut diff) = secret_update() else {
                unreachable!()
            };
            diff.entries[0].from_command = from_command;
            diff.entries[0].email_changed = email_changed;
            let plan = plan(
                vec![change(
                    "a",
                    ObjectKind::Secret,
                    "pull",
                    Action::Update,
                    Detail::Secret(diff),
                )],
                Vec::new(),
            );
            let report = classify(&plan, &live);
            (report.items[0].class, report.items[0].what.clone())
        };
        let (class, what) = reissued(true, false);
        assert_eq!(class, DriftClass::Pending);
        assert_eq!(
            what,
            "credentials reissued by their command: quay.io password differ"
        );
        // The same difference for a value from the environment or a file: drift.
        assert_eq!(reissued(false, false).0, DriftClass::Drift);
        // An edited email is nobody's command: drift.
        assert_eq!(reissued(true, true).0, DriftClass::Drift);
    }

    #[test]
    fn edited_secret_and_lost_recorded_link_are_drift_with_who_did_it() {
        let mut secret_meta = ours(meta("a", "pull"));
        secret_meta.managers = vec![
            FieldManager {
                manager: "pullwarden".into(),
                operation: "Update".into(),
                time: Some("2026-11-28T10:00:00Z".into()),
            },
            FieldManager {
                manager: "kubectl-edit".into(),
                operation: "Update".into(),
                time: Some("2026-11-28T11:00:00Z".into()),
            },
            FieldManager {
                manager: "helm".into(),
                operation: "Update".into(),
                time: Some("2026-11-28T09:00:00Z".into()),
            },
        ];
        let mut sa_meta = meta("a", "default");
        let record = BTreeMap::from([(
            "ws".to_string(),
            LinkRecord {
                pull: BTreeSet::from(["pull".to_string()]),
                mount: BTreeSet::new(),
            },
        )]);
        sa_meta.annotations.insert(
            LINKS_ANNOTATION.into(),
            serde_json::to_string(&record).unwrap(),
        );
        let live = LiveState {
            namespaces: BTreeSet::from(["a".to_string()]),
            terminating: BTreeSet::new(),
            namespace_labels: BTreeMap::new(),
            cluster: None,
            secrets: vec![LiveSecret {
                meta: secret_meta,
                from_snapshot_file: false,
                type_: "kubernetes.io/dockerconfigjson".into(),
                immutable: false,
                data: BTreeMap::new(),
            }],
            service_accounts: vec![LiveServiceAccount {
                meta: sa_meta,
                image_pull_secrets: Vec::new(),
                secrets: Vec::new(),
            }],
            role_bindings: Vec::new(),
        };
        let links = LinkDiff {
            pull_added: vec!["pull".into()],
            record: LinkRecord {
                pull: BTreeSet::from(["pull".to_string()]),
                mount: BTreeSet::new(),
            },
            ..LinkDiff::default()
        };
        let report = classify(
            &plan(
                vec![
                    change(
                        "a",
                        ObjectKind::Secret,
                        "pull",
                        Action::Update,
                        secret_update(),
                    ),
                    change(
                        "a",
                        ObjectKind::ServiceAccount,
                        "default",
                        Action::Link,
                        Detail::Links(links),
                    ),
                ],
                Vec::new(),
            ),
            &live,
        );
        assert_eq!((report.drift, report.pending), (2, 0));
        assert!(!report.in_sync);
        assert_eq!(
            report.items[0].changed_by,
            ["kubectl-edit"],
            "helm wrote before pullwarden"
        );
        assert!(report.items[0].what.contains("quay.io password differ"));
        assert!(report.items[1].what.contains("removed out of band"));
    }

    #[test]
    fn new_namespace_is_pending_and_a_missing_namespace_is_drift() {
        let live = LiveState::default();
        let created = change(
            "new-team",
            ObjectKind::Secret,
            "pull",
            Action::Create,
            secret_update(),
        );
        let missing = Finding {
            code: FindingCode::MissingNamespace,
            namespace: Some("gone".into()),
            message: "PullSecret/pull targets namespace `gone`, which does not exist".into(),
            assumed: None,
        };
        let conflict = Finding {
            code: FindingCode::Conflict,
            namespace: Some("a".into()),
            message: "in the way".into(),
            assumed: None,
        };
        let report = classify(&plan(vec![created], vec![missing, conflict]), &live);
        assert_eq!(report.items.len(), 1);
        assert_eq!(report.items[0].class, DriftClass::Pending);
        assert!(report.items[0].what.contains("newly in scope"));
        assert_eq!(report.missing.len(), 1, "a missing namespace is drift");
        assert_eq!(report.errors.len(), 1, "a conflict stays an error");
        assert_eq!((report.drift, report.pending), (1, 1));
        let junit = junit(&report);
        assert_eq!(junit.matches("<failure").count(), 3);
        let annotations = github_annotations(&report);
        assert_eq!(annotations.lines().count(), 3);
    }

    #[test]
    fn in_sync_when_the_plan_is_empty() {
        let report = classify(&plan(Vec::new(), Vec::new()), &LiveState::default());
        assert!(report.in_sync);
        assert!(text(&report).contains("In sync"));
        assert!(junit(&report).contains("name=\"in sync\""));
        assert!(github_annotations(&report).is_empty());
    }

    /// Every renderer, fed hostile strings wherever text from the cluster
    /// can reach it, gives output its medium parses as intended: text and
    /// annotations one line per item with no control character, markdown
    /// with no tag or cell break of the input's, JUnit well-formed XML.
    #[test]
    fn every_renderer_escapes_hostile_strings_for_its_medium() {
        use crate::escape::tests::HOSTILE;
        let items: Vec<DriftItem> = HOSTILE
            .iter()
            .enumerate()
            .map(|(i, raw)| DriftItem {
                class: if i % 2 == 0 {
                    DriftClass::Drift
                } else {
                    DriftClass::Pending
                },
                namespace: (*raw).to_string(),
                kind: ObjectKind::Secret,
                name: format!("n{i}{raw}"),
                what: format!("registry key {raw} removed"),
                changed_by: vec![(*raw).to_string()],
                change: i,
            })
            .collect();
        let finding = |raw: &str| Finding {
            code: FindingCode::Conflict,
            namespace: Some(raw.into()),
            message: format!("in the way: {raw}"),
            assumed: None,
        };
        let report = DriftReport {
            format_version: 1,
            workspace: "ws</details>".into(),
            in_sync: false,
            drift: items.len(),
            pending: 0,
            items,
            missing: HOSTILE.iter().map(|r| finding(r)).collect(),
            errors: HOSTILE.iter().map(|r| finding(r)).collect(),
            warnings: Vec::new(),
        };
        let n = HOSTILE.len();

        let text = text(&report);
        assert!(!crate::escape::needs_escaping(&text.replace('\n', "")));
        let item_lines = text
            .lines()
            .filter(|l| l.starts_with("  ! ") || l.starts_with("  + "))
            .count();
        assert_eq!(item_lines, n, "{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("missing: ")).count(),
            n
        );

        let annotations = github_annotations(&report);
        assert_eq!(annotations.lines().count(), 3 * n, "{annotations}");
        for line in annotations.lines() {
            assert!(
                line.starts_with("::error title=pullwarden")
                    || line.starts_with("::warning title=pullwarden"),
                "{line}"
            );
            assert!(!crate::escape::needs_escaping(line), "{line:?}");
        }

        let markdown = markdown(&report);
        assert!(!markdown.contains("</details>") && !markdown.contains('@'));
        assert!(!crate::escape::needs_escaping(&markdown.replace('\n', "")));
        let rows: Vec<&str> = markdown.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), n + 1, "header + one row per item: {markdown}");
        for row in &rows {
            // cell separators: bars not escaped by a backslash
            let bytes = row.as_bytes();
            let bars = (0..bytes.len())
                .filter(|&i| bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\'))
                .count();
            assert_eq!(bars, 5, "four cells: {row}");
        }

        let junit = junit(&report);
        let document = roxmltree::Document::parse(&junit).expect("well-formed XML");
        let cases: Vec<_> = document
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 3 * n);
        let names: Vec<&str> = cases
            .iter()
            .filter_map(|c| c.attribute("classname"))
            .collect();
        assert!(names.contains(&"x?::error::forged"), "{names:?}");
        assert!(
            names.contains(&"<![CDATA[ ]]> </failure> & \" ' <"),
            "round-trips: {names:?}"
        );
    }

    /// A fleet's JUnit: one well-formed document, a test suite per cluster
    /// (hostile text escaped there too), a cluster that was not compared one
    /// failed case, and the totals the sum of the suites'.
    #[test]
    fn a_fleets_junit_has_a_suite_per_cluster() {
        use crate::escape::tests::HOSTILE;
        let in_sync = classify(&plan(Vec::new(), Vec::new()), &LiveState::default());
        let hostile = DriftReport {
            workspace: "ws".into(),
            in_sync: false,
            errors: HOSTILE
                .iter()
                .map(|raw| Finding {
                    code: FindingCode::Conflict,
                    namespace: Some((*raw).into()),
                    message: format!("in the way: {raw}"),
                    assumed: None,
                })
                .collect(),
            ..in_sync.clone()
        };
        let xml = junit_fleet(&[
            ("dev", Ok(&in_sync)),
            ("prod", Ok(&hostile)),
            (
                "staging",
                Err("cannot reach <the> \"server\" & more".to_owned()),
            ),
        ]);
        let document = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let suites: Vec<_> = document
            .descendants()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        let names: Vec<&str> = suites.iter().filter_map(|s| s.attribute("name")).collect();
        assert_eq!(names, ["cluster dev", "cluster prod", "cluster staging"]);
        let failures: Vec<&str> = suites
            .iter()
            .filter_map(|s| s.attribute("failures"))
            .collect();
        let n = HOSTILE.len().to_string();
        assert_eq!(failures, ["0", n.as_str(), "1"]);
        let root = document.root_element();
        assert_eq!(
            root.attribute("failures"),
            Some((HOSTILE.len() + 1).to_string().as_str())
        );
        assert_eq!(
            root.attribute("tests"),
            Some((HOSTILE.len() + 2).to_string().as_str())
        );
        let staging = suites[2]
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .and_then(|f| f.attribute("message"));
        assert_eq!(staging, Some("cannot reach <the> \"server\" & more"));
        assert!(
            github_annotations_for_cluster(&hostile, "prod")
                .lines()
                .all(|l| l.starts_with("::error title=pullwarden (cluster prod)::")),
        );
    }

    #[test]
    fn annotations_cannot_forge_workflow_commands() {
        assert_eq!(render::gh_escape("a\n::error::x"), "a%0A::error::x");
        assert_eq!(render::xml("<a \"b\">&"), "&lt;a &quot;b&quot;&gt;&amp;");
    }
}
