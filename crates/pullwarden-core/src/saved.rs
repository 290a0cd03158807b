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
