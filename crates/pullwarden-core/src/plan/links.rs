//! ServiceAccount links: which pull secrets (`imagePullSecrets`) and mounted
//! secrets (`secrets`) this workspace adds or removes, keeping every entry it
//! did not add. The rule "only remove what we added" lives here twice over:
//! [`relink`] plans it, [`edit_list`] applies it to a fresh read at write time.

use std::collections::{BTreeMap, BTreeSet};

use crate::live::{LINKS_ANNOTATION, LiveServiceAccount, Meta};
use crate::model::IfMissing;

use super::desired::{Purposes, finding};
use super::{
    Action, Assumed, Change, Detail, FindingCode, LinkDiff, LinkRecord, ObjectKind, Planner,
};

/// Every workspace's record on a ServiceAccount (see [`crate::live::links`]).
pub fn link_records(meta: &Meta) -> BTreeMap<String, LinkRecord> {
    crate::live::links::records(&meta.annotations)
}

/// The links annotation with `workspace`'s record replaced (removed when empty).
pub fn links_annotation(meta: &Meta, workspace: &str, record: &LinkRecord) -> Option<String> {
    crate::live::links::encode_with(&meta.annotations, workspace, record)
}

impl Planner<'_> {
    /// Links and unlinks pull secrets on ServiceAccounts, or creates the ones `ifMissing: create` asks for.
    pub(super) fn links(&mut self) {
        let (ws, desired, live) = (self.ws, self.desired, self.live);
        let (changes, errors, warnings, blocked) = (
            &mut self.changes,
            &mut self.errors,
            &mut self.warnings,
            &self.blocked_secrets,
        );
        let live_sas: BTreeMap<(&str, &str), &LiveServiceAccount> = live
            .service_accounts
            .iter()
            .map(|sa| ((sa.meta.namespace.as_str(), sa.meta.name.as_str()), sa))
            .collect();
        // Every SA that is wanted or carries a record of ours.
        let mut keys: BTreeSet<(String, String)> = desired.links.keys().cloned().collect();
        for sa in &live.service_accounts {
            if link_records(&sa.meta).contains_key(&ws.name) {
                keys.insert((sa.meta.namespace.clone(), sa.meta.name.clone()));
            }
        }
        let empty = BTreeMap::new();
        for (ns, sa_name) in keys {
            let wanted = desired
                .links
                .get(&(ns.clone(), sa_name.clone()))
                .unwrap_or(&empty);
            let wanted: BTreeMap<&String, &Purposes> = wanted
                .iter()
                .filter(|(secret, _)| !blocked.contains(&(ns.clone(), (*secret).clone())))
                .collect();
            let Some(sa) = live_sas.get(&(ns.as_str(), sa_name.as_str())) else {
                if wanted.is_empty() {
                    continue;
                }
                let if_missing = wanted
                    .values()
                    .filter_map(|p| p.if_missing)
                    // The most permissive wins: one document asking to create it is enough.
                    .max()
                    .unwrap_or(IfMissing::Error);
                let sources: BTreeSet<&str> = wanted.values().map(|p| p.source.as_str()).collect();
                let sources = sources.into_iter().collect::<Vec<_>>().join(", ");
                match if_missing {
                IfMissing::Error => errors.push(finding(
                    FindingCode::MissingServiceAccount,
                    Some(&ns),
                    format!(
                        "ServiceAccount {ns}/{sa_name} does not exist ({sources} links it; set `ifMissing: skip` or `create` to allow this)"
                    ),
                )),
                IfMissing::Skip => warnings.push(finding(
                    FindingCode::SkippedServiceAccount,
                    Some(&ns),
                    format!("ServiceAccount {ns}/{sa_name} does not exist; {sources} skips it"),
                )),
                IfMissing::Create => {
                    changes.push(Change {
                        namespace: ns.clone(),
                        kind: ObjectKind::ServiceAccount,
                        name: sa_name.clone(),
                        action: Action::Create,
                        source: Some(sources.clone()),
                        assumed: None,
                        detail: Detail::ServiceAccount,
                    });
                    let mut links = LinkDiff::default();
                    for (secret, p) in &wanted {
                        if p.pull {
                            links.pull_added.push((*secret).clone());
                            links.record.pull.insert((*secret).clone());
                        }
                        if p.mount {
                            links.mount_added.push((*secret).clone());
                            links.record.mount.insert((*secret).clone());
                        }
                    }
                    changes.push(Change {
                        namespace: ns.clone(),
                        kind: ObjectKind::ServiceAccount,
                        name: sa_name.clone(),
                        action: Action::Link,
                        source: Some(sources),
                        assumed: None,
                        detail: Detail::Links(links),
                    });
                }
            }
                continue;
            };
            if crate::live::links::decode(&sa.meta.annotations).is_err() {
                // Never overwrite what cannot be read: it holds other workspaces' records too.
                errors.push(finding(
                FindingCode::BrokenLinksAnnotation,
                Some(&ns),
                format!(
                    "ServiceAccount {ns}/{sa_name}: the annotation {LINKS_ANNOTATION} is not pullwarden's JSON; fix or remove it by hand"
                ),
            ));
                continue;
            }
            let old_record = link_records(&sa.meta).remove(&ws.name).unwrap_or_default();
            let want_pull: BTreeSet<String> = wanted
                .iter()
                .filter(|(_, p)| p.pull)
                .map(|(s, _)| (*s).clone())
                .collect();
            let want_mount: BTreeSet<String> = wanted
                .iter()
                .filter(|(_, p)| p.mount)
                .map(|(s, _)| (*s).clone())
                .collect();
            let (pull_added, pull_removed, pull_record) = relink(
                &sa.image_pull_secrets,
                &old_record.pull,
                &want_pull,
                ws.prune,
            );
            let (mount_added, mount_removed, mount_record) =
                relink(&sa.secrets, &old_record.mount, &want_mount, ws.prune);
            let record = LinkRecord {
                pull: pull_record,
                mount: mount_record,
            };
            if pull_added.is_empty()
                && pull_removed.is_empty()
                && mount_added.is_empty()
                && mount_removed.is_empty()
            {
                // Nothing to link or unlink: a stale record is tidied with the next real change.
                continue;
            }
            let sources: BTreeSet<&str> = wanted.values().map(|p| p.source.as_str()).collect();
            changes.push(Change {
                namespace: ns.clone(),
                kind: ObjectKind::ServiceAccount,
                name: sa_name.clone(),
                action: Action::Link,
                source: (!sources.is_empty())
                    .then(|| sources.into_iter().collect::<Vec<_>>().join(", ")),
                assumed: Some(Assumed::of(&sa.meta)),
                detail: Detail::Links(LinkDiff {
                    pull_added,
                    pull_removed,
                    mount_added,
                    mount_removed,
                    record,
                }),
            });
        }
    }
}

/// One list of a ServiceAccount: what to add, what to remove, and the new record.
/// Entries present but not recorded were there before pullwarden: never
/// recorded, never removed.
pub fn relink(
    current: &[String],
    recorded: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
    prune: bool,
) -> (Vec<String>, Vec<String>, BTreeSet<String>) {
    let present: BTreeSet<&String> = current.iter().collect();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut record = BTreeSet::new();
    for name in wanted {
        if !present.contains(name) {
            added.push(name.clone());
            record.insert(name.clone());
        } else if recorded.contains(name) {
            record.insert(name.clone());
        }
    }
    for name in recorded {
        if wanted.contains(name) {
            continue;
        }
        if !prune {
            if present.contains(name) {
                record.insert(name.clone());
            }
            continue;
        }
        if present.contains(name) {
            removed.push(name.clone());
        }
    }
    (added, removed, record)
}

/// One list of a ServiceAccount edited as the plan says, against what is
/// there *now* (read at write time): the new names (order kept, additions
/// appended) and this workspace's record for the list. Only entries recorded
/// as ours when read are removed; an entry someone else added meanwhile is
/// not recorded. `previous` is the record read now, `planned` the record the
/// plan computed.
pub fn edit_list(
    current: &[String],
    added: &[String],
    removed: &[String],
    previous: &BTreeSet<String>,
    planned: &BTreeSet<String>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut names: Vec<String> = current
        .iter()
        .filter(|n| !(removed.contains(n) && previous.contains(*n)))
        .cloned()
        .collect();
    let mut record: BTreeSet<String> = planned
        .iter()
        .filter(|n| previous.contains(*n) || added.contains(n))
        .cloned()
        .collect();
    for name in added {
        if current.contains(name) {
            if !previous.contains(name) {
                record.remove(name);
            }
        } else {
            names.push(name.clone());
        }
    }
    (names, record)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::edit_list;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn edits_only_what_is_ours_and_records_only_what_it_added() {
        // "theirs" was never ours; "old" was ours and is unlinked; "kept" stays ours;
        // "new" is added; "raced" was added by someone else meanwhile.
        let (list, record) = edit_list(
            &names(&["theirs", "old", "kept", "raced"]),
            &names(&["new", "raced"]),
            &names(&["old", "theirs"]),
            &set(&["old", "kept"]),
            &set(&["kept", "new", "raced"]),
        );
        assert_eq!(list, names(&["theirs", "kept", "raced", "new"]));
        assert_eq!(record, set(&["kept", "new"]));
    }
}
