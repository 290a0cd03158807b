//! A saved plan (`plan --out FILE`): the plan, plus a salted slow digest of
//! every Secret content it will write, so that `apply --plan` can prove it
//! writes exactly what was reviewed without the file holding any credential.
//!
//! Trade-off: the digest is PBKDF2-HMAC-SHA256 with a per-plan random salt and
//! [`SLOW_DIGEST_ITERATIONS`] rounds. The salt defeats precomputed tables; the
//! rounds make each guess at a weak password cost ~0.1 s instead of
//! nanoseconds. A leaked saved plan still allows guessing, slowly: keep saved
//! plans where CI keeps other sensitive artefacts, and prefer strong tokens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{Action, Desired, Detail, Plan};
use crate::secret::{DigestKey, SLOW_DIGEST_ITERATIONS, SecretString, slow_digest};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedPlan {
    /// What this file is, for people who open it.
    pub kind: String,
    pub plan: Plan,
    /// Hex salt of the digests below.
    pub salt: String,
    pub iterations: u32,
    /// `namespace/name` -> digest of the Secret data apply will write.
    pub secret_digests: BTreeMap<String, String>,
}

pub const SAVED_PLAN_KIND: &str = "pullwarden saved plan";

/// Builds the saved form of a plan. Each distinct content is digested once.
pub fn save(plan: &Plan, desired: &Desired, salt: &[u8], key: &DigestKey) -> SavedPlan {
    save_with_iterations(plan, desired, salt, key, SLOW_DIGEST_ITERATIONS)
}

pub fn save_with_iterations(
    plan: &Plan,
    desired: &Desired,
    salt: &[u8],
    key: &DigestKey,
    iterations: u32,
) -> SavedPlan {
    let mut cache = BTreeMap::new();
    let mut secret_digests = BTreeMap::new();
    for change in &plan.changes {
        if !matches!(change.detail, Detail::Secret(_)) || change.action == Action::Delete {
            continue;
        }
        let Some(want) = desired
            .secrets
            .get(&(change.namespace.clone(), change.name.clone()))
        else {
            continue;
        };
        let data: SecretString = want.data();
        let fast = data.digest(key);
        let digest = cache
            .entry(fast)
            .or_insert_with(|| slow_digest(&data, salt, iterations))
            .clone();
        secret_digests.insert(format!("{}/{}", change.namespace, change.name), digest);
    }
    SavedPlan {
        kind: SAVED_PLAN_KIND.to_string(),
        plan: plan.clone(),
        salt: crate::secret::hex(salt),
        iterations,
        secret_digests,
    }
}

/// Why a saved plan no longer applies: every object it assumed must be as it
/// was (UID and resourceVersion), objects it creates must still be absent, its
/// globs must match the same namespaces, and the Secret contents resolved now
/// must be the ones that were reviewed. Empty when the plan may be applied.
pub fn stale_reasons(
    saved: &SavedPlan,
    workspace: &str,
    live: &crate::live::LiveState,
    desired: &Desired,
) -> Vec<String> {
    use crate::plan::ObjectKind;

    let mut reasons = Vec::new();
    if saved.plan.workspace != workspace {
        reasons.push(format!(
            "the plan is for workspace `{}`, not `{workspace}`",
            saved.plan.workspace
        ));
        return reasons;
    }
    let mut metas: BTreeMap<(ObjectKind, &str, &str), &crate::live::Meta> = BTreeMap::new();
    for s in &live.secrets {
        metas.insert(
            (ObjectKind::Secret, &s.meta.namespace, &s.meta.name),
            &s.meta,
        );
    }
    for sa in &live.service_accounts {
        metas.insert(
            (
                ObjectKind::ServiceAccount,
                &sa.meta.namespace,
                &sa.meta.name,
            ),
            &sa.meta,
        );
    }
    for rb in &live.role_bindings {
        metas.insert(
            (ObjectKind::RoleBinding, &rb.meta.namespace, &rb.meta.name),
            &rb.meta,
        );
    }
    let check = |reasons: &mut Vec<String>,
                 kind: ObjectKind,
                 ns: &str,
                 name: &str,
                 assumed: Option<&crate::plan::Assumed>| {
        let what = format!("{kind:?} {ns}/{name}");
        match (metas.get(&(kind, ns, name)), assumed) {
            (Some(meta), Some(a)) => {
                if meta.uid != a.uid {
                    reasons.push(format!("{what} was deleted and recreated since the plan"));
                } else if meta.resource_version != a.resource_version {
                    reasons.push(format!(
                        "{what} changed since the plan (resourceVersion {} -> {})",
                        a.resource_version, meta.resource_version
                    ));
                }
            }
            (None, Some(_)) => reasons.push(format!("{what} no longer exists")),
            (Some(_), None) => reasons.push(format!("{what} was created since the plan")),
            (None, None) => {}
        }
    };
    for change in &saved.plan.changes {
        let creates_sa = matches!(change.detail, Detail::Links(_))
            && saved.plan.changes.iter().any(|c| {
                matches!(c.detail, Detail::ServiceAccount)
                    && c.namespace == change.namespace
                    && c.name == change.name
            });
        if !creates_sa {
            check(
                &mut reasons,
                change.kind,
                &change.namespace,
                &change.name,
                change.assumed.as_ref(),
            );
        }
        if let Detail::RoleBinding(diff) = &change.detail
            && let Some(old) = &diff.replaces
        {
            check(
                &mut reasons,
                ObjectKind::RoleBinding,
                &change.namespace,
                &old.name,
                Some(&old.assumed),
            );
        }
    }
    if desired.matched_namespaces != saved.plan.matched_namespaces {
        let added: Vec<&String> = desired
            .matched_namespaces
            .difference(&saved.plan.matched_namespaces)
            .collect();
        let removed: Vec<&String> = saved
            .plan
            .matched_namespaces
            .difference(&desired.matched_namespaces)
            .collect();
        reasons.push(format!(
            "the namespaces the globs match changed (new: {added:?}, gone: {removed:?})"
        ));
    }
    let salt: Vec<u8> = crate::secret::unhex(&saved.salt).unwrap_or_default();
    let mut cache: BTreeMap<String, String> = BTreeMap::new();
    for (target, digest) in &saved.secret_digests {
        let Some((ns, name)) = target.split_once('/') else {
            reasons.push(format!("malformed secret digest entry `{target}`"));
            continue;
        };
        let Some(want) = desired.secrets.get(&(ns.to_string(), name.to_string())) else {
            reasons.push(format!(
                "Secret {target} is no longer wanted by the workspace"
            ));
            continue;
        };
        let data = want.data();
        let now = cache
            .entry(format!("{}:{}", want.source, want.format.secret_type()))
            .or_insert_with(|| slow_digest(&data, &salt, saved.iterations));
        if now != digest {
            reasons.push(format!(
                "the credentials for Secret {target} differ from the ones the plan was made with"
            ));
        }
    }
    reasons
}
