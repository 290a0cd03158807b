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
    /// The cluster the plan was made for (its `kube-system` Namespace's UID),
    /// when known: not for a plan made from a snapshot without the
    /// `kube-system` Namespace, nor by credentials that cannot list
    /// namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::live::ClusterId>,
}

/// Why `apply --plan` refuses a saved plan, writing nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The file is not a saved plan of this version of pullwarden.
    NotThisVersion,
    /// The plan was made for another cluster (`kube-system` UIDs differ).
    OtherCluster { planned: String, now: String },
    /// The plan names a cluster, and this one cannot be told (its
    /// namespaces cannot be listed).
    UnknownCluster,
    /// The plan names no cluster (made from a snapshot without the
    /// `kube-system` Namespace, or by credentials that cannot list
    /// namespaces), and this cluster can be told: nothing binds the plan to it.
    NoCluster { now: String },
    /// Something the plan assumed moved; one line per thing.
    Stale(Vec<String>),
    /// The file is not the plan this workspace gives now (edited, or the
    /// workspace changed).
    NotTheSamePlan,
}

impl std::fmt::Display for Refusal {
    /// Printed made safe as a whole: UIDs, names, resourceVersions and
    /// targets come from the saved plan file, the cluster or a snapshot.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::render::safe(&self.describe()))
    }
}

impl Refusal {
    fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        let f = &mut text;
        let _ = match self {
            Refusal::NotThisVersion => {
                f.write_str("it is not a saved plan of this version of pullwarden")
            }
            Refusal::OtherCluster { planned, now } => write!(
                f,
                "it was made for another cluster (kube-system UID {planned}, this one is {now})"
            ),
            Refusal::UnknownCluster => f.write_str(
                "it was made for one cluster, and these credentials cannot tell which cluster this is (they cannot list namespaces)",
            ),
            Refusal::NoCluster { now } => write!(
                f,
                "it names no cluster (it was made from a snapshot without the kube-system Namespace, or by credentials that cannot list namespaces), so it is not known to be for this one (kube-system UID {now}); plan against this cluster, or a snapshot of it that holds kube-system"
            ),
            Refusal::Stale(reasons) => write!(
                f,
                "{} thing{} changed since it was made: {}",
                reasons.len(),
                if reasons.len() == 1 { "" } else { "s" },
                reasons.join("; ")
            ),
            Refusal::NotTheSamePlan => f.write_str(
                "it is not the plan this workspace gives for the cluster as it is (was it edited, or the workspace changed?)",
            ),
        };
        text
    }
}

/// Whether a file read from disk is a saved plan this version can apply at all.
pub fn check_kind(saved: &SavedPlan) -> Result<(), Refusal> {
    if saved.kind == SAVED_PLAN_KIND
        && saved.plan.format_version == crate::plan::PLAN_FORMAT_VERSION
    {
        Ok(())
    } else {
        Err(Refusal::NotThisVersion)
    }
}

/// The policy of `apply --plan`: the saved plan is executed only on the
/// cluster it was made for (a plan that names no cluster only where the
/// cluster cannot be told either), only if nothing it assumed moved
/// ([`stale_reasons`]), and only if it is exactly the plan the workspace
/// gives now (`fresh`, planned from the same live state), so a hand-edited
/// file cannot widen what apply does.
pub fn accept(
    saved: &SavedPlan,
    workspace: &str,
    live: &crate::live::LiveState,
    fresh: &Plan,
    fresh_desired: &Desired,
) -> Result<(), Refusal> {
    check_kind(saved)?;
    if let Some(planned) = &saved.cluster {
        match &live.cluster {
            Some(now) if now != planned => {
                return Err(Refusal::OtherCluster {
                    planned: planned.kube_system_uid.clone(),
                    now: now.kube_system_uid.clone(),
                });
            }
            Some(_) => {}
            None => return Err(Refusal::UnknownCluster),
        }
    } else if let Some(now) = &live.cluster {
        return Err(Refusal::NoCluster {
            now: now.kube_system_uid.clone(),
        });
    }
    let reasons = stale_reasons(saved, workspace, live, fresh_desired);
    if !reasons.is_empty() {
        return Err(Refusal::Stale(reasons));
    }
    if fresh.changes != saved.plan.changes || fresh.errors != saved.plan.errors {
        return Err(Refusal::NotTheSamePlan);
    }
    Ok(())
}

pub const SAVED_PLAN_KIND: &str = "pullwarden saved plan";

/// What a saved plan of a fleet (a workspace naming clusters) says it is.
pub const SAVED_FLEET_PLAN_KIND: &str = "pullwarden saved fleet plan";

/// A saved plan of a fleet: one [`SavedPlan`] per cluster that was planned,
/// each with its own cluster identity, and the clusters that could not be
/// planned (`apply --plan` applies nothing there and fails).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedFleetPlan {
    pub kind: String,
    /// The workspace's name.
    pub workspace: String,
    /// In the workspace's order.
    pub clusters: Vec<SavedClusterPlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplanned: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedClusterPlan {
    /// The cluster's name in `spec.clusters`.
    pub name: String,
    pub saved: SavedPlan,
}

impl SavedFleetPlan {
    /// Whether a file read from disk is a fleet plan this version can apply:
    /// its kind, and every cluster's plan.
    pub fn check_kind(&self) -> Result<(), Refusal> {
        if self.kind != SAVED_FLEET_PLAN_KIND {
            return Err(Refusal::NotThisVersion);
        }
        self.clusters.iter().try_for_each(|c| check_kind(&c.saved))
    }
}

/// Builds the saved form of a plan made for `cluster`. Each distinct content
/// is digested once.
pub fn save(
    plan: &Plan,
    desired: &Desired,
    cluster: Option<&crate::live::ClusterId>,
    salt: &[u8],
    key: &DigestKey,
) -> SavedPlan {
    SavedPlan {
        cluster: cluster.cloned(),
        ..save_with_iterations(plan, desired, salt, key, SLOW_DIGEST_ITERATIONS)
    }
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
        cluster: None,
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
        let what = format!("{} {ns}/{name}", crate::render::kind_name(kind));
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
            "the namespaces the globs and label selectors match changed (new: {added:?}, gone: {removed:?})"
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

#[cfg(test)]
mod tests {

    #[test]
    fn a_refusal_prints_no_control_character_from_the_file_or_the_cluster() {
        let hostile = "0d5c\u{1b}[2J\n::error::forged";
        for refusal in [
            Refusal::OtherCluster {
                planned: hostile.to_owned(),
                now: "0d5c".to_owned(),
            },
            Refusal::NoCluster {
                now: hostile.to_owned(),
            },
            Refusal::Stale(vec![format!("Secret a/{hostile} no longer exists")]),
        ] {
            let text = refusal.to_string();
            assert!(!text.contains('\u{1b}') && !text.contains('\n'), "{text:?}");
            assert!(text.contains("0d5c?[2J?::error::forged"), "{text:?}");
        }
    }

    use super::*;
    use crate::live::{ClusterId, LiveState};
    use crate::plan::{Change, ObjectKind, PLAN_FORMAT_VERSION, Plan, Schedule};

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            format_version: PLAN_FORMAT_VERSION,
            workspace: "ws".into(),
            adopt: false,
            changes,
            errors: Vec::new(),
            warnings: Vec::new(),
            matched_namespaces: std::collections::BTreeSet::new(),
            schedule: Schedule::default(),
            access: None,
        }
    }

    fn cluster(uid: &str) -> ClusterId {
        ClusterId {
            kube_system_uid: uid.into(),
        }
    }

    fn saved(for_cluster: Option<ClusterId>) -> SavedPlan {
        SavedPlan {
            cluster: for_cluster,
            ..save_with_iterations(
                &plan(Vec::new()),
                &Desired::default(),
                b"salt",
                &DigestKey::from_bytes([1; 32]),
                1,
            )
        }
    }

    #[test]
    fn a_saved_plan_is_refused_by_another_cluster_or_an_unknown_one() {
        let fresh = plan(Vec::new());
        let live = |uid: Option<&str>| LiveState {
            cluster: uid.map(cluster),
            ..LiveState::default()
        };
        let made_for_a = saved(Some(cluster("a")));
        assert_eq!(
            accept(
                &made_for_a,
                "ws",
                &live(Some("a")),
                &fresh,
                &Desired::default()
            ),
            Ok(())
        );
        assert_eq!(
            accept(
                &made_for_a,
                "ws",
                &live(Some("b")),
                &fresh,
                &Desired::default()
            ),
            Err(Refusal::OtherCluster {
                planned: "a".into(),
                now: "b".into()
            })
        );
        assert_eq!(
            accept(&made_for_a, "ws", &live(None), &fresh, &Desired::default()),
            Err(Refusal::UnknownCluster)
        );
        // A plan that names no cluster (a snapshot without kube-system):
        // refused where the cluster can be told, since nothing binds it
        // there; accepted where it cannot be told either (credentials that
        // cannot list namespaces), guarded by the per-object checks only.
        let refused = accept(
            &saved(None),
            "ws",
            &live(Some("b")),
            &fresh,
            &Desired::default(),
        );
        assert_eq!(refused, Err(Refusal::NoCluster { now: "b".into() }));
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("it names no cluster"),
        );
        assert_eq!(
            accept(&saved(None), "ws", &live(None), &fresh, &Desired::default()),
            Ok(())
        );
    }

    #[test]
    fn an_edited_or_foreign_file_is_refused() {
        let mut other_kind = saved(None);
        other_kind.kind = "something else".into();
        assert_eq!(check_kind(&other_kind), Err(Refusal::NotThisVersion));
        let mut edited = saved(None);
        edited.plan.changes.push(Change {
            namespace: "a".into(),
            kind: ObjectKind::ServiceAccount,
            name: "x".into(),
            action: crate::plan::Action::Create,
            source: None,
            assumed: None,
            detail: crate::plan::Detail::ServiceAccount,
        });
        let refusal = accept(
            &edited,
            "ws",
            &LiveState::default(),
            &plan(Vec::new()),
            &Desired::default(),
        );
        assert_eq!(refusal, Err(Refusal::NotTheSamePlan));
        assert!(
            refusal
                .unwrap_err()
                .to_string()
                .contains("not the plan this workspace gives")
        );
    }
}
