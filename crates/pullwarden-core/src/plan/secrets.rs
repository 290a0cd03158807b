//! Secrets: create, update, replace (type or immutable data), adopt, prune;
//! conflicts with objects pullwarden does not own. Values are compared
//! through keyed digests (or a snapshot's slow digests), never shown.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerconfig::{self, Entry};
use crate::live::{LiveSecret, Ownership};
use crate::model::SecretFormat;
use crate::secret::{DigestKey, SecretString};

use super::desired::{DesiredSecret, finding};
use super::links::link_records;
use super::{
    Action, Assumed, Change, Detail, EntryDiff, EntryStatus, Finding, FindingCode, ObjectKind,
    Planner, SecretDiff,
};

impl Planner<'_> {
    /// Creates, updates, replaces, adopts or prunes Secrets; conflicts block the Secret (and its links).
    pub(super) fn secrets(&mut self) {
        let (ws, desired, live, options, key) =
            (self.ws, self.desired, self.live, self.options, self.key);
        let (changes, errors, warnings, blocked) = (
            &mut self.changes,
            &mut self.errors,
            &mut self.warnings,
            &mut self.blocked_secrets,
        );
        let cache = DigestCache::default();
        let live_by_key: BTreeMap<(&str, &str), &LiveSecret> = live
            .secrets
            .iter()
            .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
            .collect();
        for ((ns, name), want) in &desired.secrets {
            let Some(have) = live_by_key.get(&(ns.as_str(), name.as_str())) else {
                changes.push(Change {
                    namespace: ns.clone(),
                    kind: ObjectKind::Secret,
                    name: name.clone(),
                    action: Action::Create,
                    source: Some(want.source.clone()),
                    assumed: None,
                    detail: Detail::Secret(secret_diff(want, None, key)),
                });
                continue;
            };
            let ownership = have.meta.ownership(&ws.name);
            let adopting = match &ownership {
                Ownership::Ours => false,
                Ownership::OtherWorkspace(other) => {
                    blocked.insert((ns.clone(), name.clone()));
                    errors.push(Finding {
                    assumed: Some(Assumed::of(&have.meta)),
                    ..finding(
                        FindingCode::Conflict,
                        Some(ns),
                        if other.is_empty() {
                            format!(
                                "Secret {ns}/{name} is labelled as pullwarden's but names no workspace; {} wants the same name (never adopted: fix its labels by hand)",
                                want.source
                            )
                        } else {
                            format!(
                                "Secret {ns}/{name} belongs to workspace `{other}`; {} wants the same name (never adopted across workspaces)",
                                want.source
                            )
                        },
                    )
                });
                    continue;
                }
                Ownership::Unmanaged if have.is_openshift_owned() || !options.adopt => {
                    blocked.insert((ns.clone(), name.clone()));
                    let hint = if have.is_openshift_owned() {
                        " (it is OpenShift's own; rename the PullSecret)"
                    } else {
                        "; rerun with --adopt to take it over"
                    };
                    errors.push(Finding {
                        assumed: Some(Assumed::of(&have.meta)),
                        ..finding(
                            FindingCode::Conflict,
                            Some(ns),
                            format!(
                                "Secret {ns}/{name} exists and is not managed by pullwarden{hint}"
                            ),
                        )
                    });
                    continue;
                }
                Ownership::Unmanaged => true,
            };
            let diff = secret_diff_cached(want, Some(have), key, &cache);
            let content_same = diff.previous_type.is_none()
                && !diff.unreadable_live_data
                && diff
                    .entries
                    .iter()
                    .all(|e| e.status == EntryStatus::Unchanged);
            let action = if diff.previous_type.is_some() || (have.immutable && !content_same) {
                Action::Replace
            } else if adopting {
                Action::Adopt
            } else if content_same {
                continue;
            } else {
                Action::Update
            };
            changes.push(Change {
                namespace: ns.clone(),
                kind: ObjectKind::Secret,
                name: name.clone(),
                action,
                source: Some(want.source.clone()),
                assumed: Some(Assumed::of(&have.meta)),
                detail: Detail::Secret(diff),
            });
        }
        if !ws.prune {
            return;
        }
        for have in &live.secrets {
            let key = (have.meta.namespace.clone(), have.meta.name.clone());
            if have.meta.ownership(&ws.name) == Ownership::Ours
                && !desired.secrets.contains_key(&key)
            {
                // Service accounts that still name it through an entry this workspace
                // did not add (so will not unlink) lose it: say so.
                let still_used: Vec<String> = live
                    .service_accounts
                    .iter()
                    .filter(|sa| sa.meta.namespace == key.0)
                    .filter(|sa| {
                        let ours = link_records(&sa.meta).remove(&ws.name).unwrap_or_default();
                        (sa.image_pull_secrets.contains(&key.1) && !ours.pull.contains(&key.1))
                            || (sa.secrets.contains(&key.1) && !ours.mount.contains(&key.1))
                    })
                    .map(|sa| sa.meta.name.clone())
                    .collect();
                if !still_used.is_empty() {
                    warnings.push(finding(
                    FindingCode::PrunedSecretStillReferenced,
                    Some(&key.0),
                    format!(
                        "Secret {}/{} is pruned but ServiceAccount(s) {} still list it (entries pullwarden did not add)",
                        key.0,
                        key.1,
                        still_used.join(", ")
                    ),
                ));
                }
                changes.push(Change {
                    namespace: key.0,
                    kind: ObjectKind::Secret,
                    name: key.1,
                    action: Action::Delete,
                    source: None,
                    assumed: Some(Assumed::of(&have.meta)),
                    detail: Detail::Pruned,
                });
            }
        }
    }
}

/// Slow digests computed while planning against a snapshot, by (value, salt):
/// the same credential in thousands of namespaces is digested once.
type DigestCache = std::cell::RefCell<BTreeMap<(crate::secret::Digest, Vec<u8>, u32), String>>;

/// The salt and rounds of a snapshot Secret whose values are digests.
fn snapshot_digest_params(have: &LiveSecret) -> Option<(Vec<u8>, u32)> {
    if !have.from_snapshot_file {
        // On a live cluster the annotation means nothing: anyone who can edit
        // the Secret could otherwise make drift look like no change.
        return None;
    }
    crate::live::snapshot_digest::decode(
        have.meta
            .annotations
            .get(crate::live::SNAPSHOT_DIGEST_ANNOTATION)?,
    )
}

/// Whether a live value (plain, or a snapshot digest) equals a desired one.
fn same_value(
    live: &SecretString,
    want: &SecretString,
    key: &DigestKey,
    params: Option<&(Vec<u8>, u32)>,
    cache: &DigestCache,
) -> bool {
    match params {
        None => live.digest(key) == want.digest(key),
        Some((salt, iterations)) => {
            let Some(stored) = live.expose().strip_prefix(crate::live::DIGEST_VALUE_PREFIX) else {
                return false;
            };
            let mut cache = cache.borrow_mut();
            let computed = cache
                .entry((want.digest(key), salt.clone(), *iterations))
                .or_insert_with(|| crate::secret::slow_digest(want, salt, *iterations));
            computed == stored
        }
    }
}

fn secret_diff(want: &DesiredSecret, have: Option<&LiveSecret>, key: &DigestKey) -> SecretDiff {
    secret_diff_cached(want, have, key, &DigestCache::default())
}

fn secret_diff_cached(
    want: &DesiredSecret,
    have: Option<&LiveSecret>,
    key: &DigestKey,
    cache: &DigestCache,
) -> SecretDiff {
    let params = have.and_then(snapshot_digest_params);
    let secret_type = want.format.secret_type().to_string();
    let mut diff = SecretDiff {
        secret_type: secret_type.clone(),
        previous_type: None,
        entries: Vec::new(),
        unreadable_live_data: false,
        immutable: have.is_some_and(|h| h.immutable),
    };
    let live_entries: Vec<Entry> = match have {
        None => Vec::new(),
        Some(have) => {
            if have.type_ != secret_type {
                diff.previous_type = Some(have.type_.clone());
            }
            let live_format =
                SecretFormat::of_type(&have.type_).unwrap_or(SecretFormat::DockerConfigJson);
            let format = live_format.config_format();
            let data_key = live_format.data_key();
            if let Some(Ok(entries)) = have
                .data
                .get(data_key)
                .map(|d| dockerconfig::parse(d.expose(), format))
            {
                entries
            } else {
                diff.unreadable_live_data = true;
                Vec::new()
            }
        }
    };
    let live_map: BTreeMap<&str, &Entry> = live_entries
        .iter()
        .map(|e| (e.server.as_str(), e))
        .collect();
    let mut seen = BTreeSet::new();
    for (i, (entry, public)) in want.entries.iter().zip(&want.usernames_public).enumerate() {
        seen.insert(entry.server.as_str());
        let from_command = want.from_command.get(i).copied().unwrap_or(false);
        let username = public.then(|| entry.username.expose().to_string());
        let diff_entry = match live_map.get(entry.server.as_str()) {
            None => EntryDiff {
                server: entry.server.clone(),
                status: EntryStatus::Added,
                username,
                username_sensitive: !public,
                username_changed: true,
                password_changed: true,
                email_changed: entry.email.is_some(),
                from_command,
            },
            Some(old) => {
                let username_changed =
                    !same_value(&old.username, &entry.username, key, params.as_ref(), cache);
                let password_changed =
                    !same_value(&old.password, &entry.password, key, params.as_ref(), cache);
                let email_changed = old.email != entry.email;
                EntryDiff {
                    server: entry.server.clone(),
                    status: if username_changed || password_changed || email_changed {
                        EntryStatus::Changed
                    } else {
                        EntryStatus::Unchanged
                    },
                    username,
                    username_sensitive: !public,
                    username_changed,
                    password_changed,
                    email_changed,
                    from_command,
                }
            }
        };
        diff.entries.push(diff_entry);
    }
    for old in &live_entries {
        if !seen.contains(old.server.as_str()) {
            diff.entries.push(EntryDiff {
                server: old.server.clone(),
                status: EntryStatus::Removed,
                username: None,
                username_sensitive: true,
                username_changed: true,
                password_changed: true,
                email_changed: old.email.is_some(),
                from_command: false,
            });
        }
    }
    diff
}
