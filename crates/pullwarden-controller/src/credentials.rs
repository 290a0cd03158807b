//! Short-lived credentials under `run`: the `fromCommand` registries' commands
//! run again before what they printed expires (at 80 % of its lifetime, never
//! sooner than [`FLOOR`] after the last run; at every resync when it printed
//! no `expiresAt`), and a changed value is handed to the loop, which
//! reconciles so it reaches every namespace.
//!
//! A failed refresh keeps the value in use (the Secrets keep theirs: nothing
//! is deleted or blanked, and they are not written until a refresh succeeds,
//! nor after taking the lease until the first one did), is retried with a doubling delay, counted on
//! `/metrics`, logged, and recorded as a `Warning` Event
//! `CredentialRefreshFailed` on each managed Secret that holds the registry
//! (once per run of failures). The command's output never leaves
//! `pullwarden-spec`: what reaches a log line or an Event is the problem's
//! message (registry, program, exit status).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::{ListParams, PostParams};
use pullwarden_core::live::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCE_ANNOTATION, WORKSPACE_LABEL,
};
use pullwarden_core::model::Workspace;
use pullwarden_spec::credentials::{self, ProcessEnvironment};

use crate::workspace::Loaded;
use crate::{Level, Log, Metrics, Sink};

/// The earliest a command runs again after its last run.
pub(crate) const FLOOR: Duration = Duration::from_secs(5);
/// Retries after a failed refresh: 2 s, doubling, at most this.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// When a credential resolved at Unix second `now` that expires at
/// `expires_at` is refreshed: at `percent` % of its remaining lifetime (80 by
/// default), at least [`FLOOR`] later; without an expiry, after `resync`.
pub(crate) fn refresh_after(
    now: i64,
    expires_at: Option<i64>,
    resync: Duration,
    percent: u8,
) -> Duration {
    match expires_at {
        Some(at) => {
            let lifetime = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
            let after = Duration::from_millis(
                lifetime
                    .saturating_mul(10)
                    .saturating_mul(u64::from(percent)),
            );
            after.max(FLOOR)
        }
        None => resync.max(FLOOR),
    }
}

/// The delay before retry number `failures` (1 = the first retry).
pub(crate) fn retry_after(failures: u32) -> Duration {
    let doubled = Duration::from_secs(2).saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_RETRY)
}

/// How long a reload that failed on a credential command waits to try again.
pub(crate) const RELOAD_RETRY: Duration = Duration::from_secs(30);

/// Whether a failed load may succeed without any file changing: a
/// credential command failed (the lines are `workspace::load`'s).
pub(crate) fn transient(problems: &[String]) -> bool {
    problems
        .iter()
        .any(|p| p.starts_with("pullwarden::spec::credential_command:"))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

struct Entry {
    due: Instant,
    /// Failed refreshes in a row.
    failures: u32,
}

/// The refresh schedule of the workspace's `fromCommand` registries.
pub(crate) struct Refresher {
    entries: BTreeMap<String, Entry>,
    /// Registries whose value may be older than the one on the cluster: not
    /// refreshed since this replica took the lease, or their last refresh
    /// failed. Their Secrets are not written until a refresh succeeds.
    stale: BTreeSet<String>,
    resync: Duration,
    /// Percent of a lifetime after which a credential is refreshed.
    percent: u8,
}

/// What a round of refreshes did.
pub(crate) struct Refreshed {
    /// Registries whose value changed (the loop reconciles).
    pub changed: Vec<String>,
    /// Registries that were stale and were refreshed (the loop reconciles:
    /// their Secrets were held back).
    pub recovered: Vec<String>,
}

impl Refresher {
    /// The schedule for a workspace just loaded (its commands just ran).
    pub(crate) fn new(loaded: &Loaded, resync: Duration, percent: u8, metrics: &Metrics) -> Self {
        let mut refresher = Self {
            entries: BTreeMap::new(),
            stale: BTreeSet::new(),
            resync,
            percent,
        };
        refresher.reset(loaded, metrics);
        refresher
    }

    /// Starts over after a (re)load: every command just ran.
    pub(crate) fn reset(&mut self, loaded: &Loaded, metrics: &Metrics) {
        let now = Instant::now();
        let unix = unix_now();
        self.entries.clear();
        self.stale.clear();
        for registry in loaded.workspace.registries.values() {
            if !credentials::from_command(registry) {
                continue;
            }
            let expires_at = loaded
                .registries
                .get(&registry.name)
                .and_then(|r| r.expires_at);
            metrics.credential_expiry(&registry.name, expires_at);
            self.entries.insert(
                registry.name.clone(),
                Entry {
                    due: now + refresh_after(unix, expires_at, self.resync, self.percent),
                    failures: 0,
                },
            );
        }
    }

    /// When the next command is due (none: nothing to refresh).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.due).min()
    }

    /// Makes every command due now (a replica that just became the leader
    /// may hold values older than the ones the last leader wrote).
    /// Until each command has run again successfully, the Secrets holding
    /// its registry are not written ([`Self::held_pull_secrets`]).
    pub(crate) fn all_due(&mut self) {
        let now = Instant::now();
        for (name, entry) in &mut self.entries {
            entry.due = now;
            self.stale.insert(name.clone());
        }
    }

    /// The `PullSecret`s whose Secrets must not be written now: they merge
    /// a registry whose value may be older than the one on the cluster.
    pub(crate) fn held_pull_secrets(&self, ws: &Workspace) -> BTreeSet<String> {
        self.stale
            .iter()
            .flat_map(|registry| secrets_of(ws, registry))
            .collect()
    }

    /// Runs the commands that are due, one per registry, off the async
    /// threads; a new value replaces the one in `loaded`, a failure keeps it.
    pub(crate) async fn refresh_due(
        &mut self,
        loaded: &mut Loaded,
        client: &kube::Client,
        metrics: &Metrics,
        log: &Sink,
    ) -> Refreshed {
        let now = Instant::now();
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.due <= now)
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = Vec::new();
        let mut recovered = Vec::new();
        for name in due {
            let Some(registry) = loaded.workspace.registries.get(&name).cloned() else {
                self.entries.remove(&name);
                continue;
            };
            let outcome = tokio::task::spawn_blocking(move || {
                credentials::resolve_registry(&registry, &ProcessEnvironment)
            })
            .await;
            let outcome = match outcome {
                Ok(Ok(fresh)) => Ok(fresh),
                Ok(Err(problems)) => Err(problems
                    .iter()
                    .map(|p| format!("{}: {}", p.code, p.message))
                    .collect::<Vec<_>>()),
                Err(_) => Err(vec!["the command's task failed".to_owned()]),
            };
            let entry = self.entries.get_mut(&name).expect("due entries exist");
            match outcome {
                Ok(fresh) => {
                    metrics.credential_refresh(&name, "ok");
                    metrics.credential_expiry(&name, fresh.expires_at);
                    entry.failures = 0;
                    if self.stale.remove(&name) {
                        recovered.push(name.clone());
                    }
                    entry.due = Instant::now()
                        + refresh_after(unix_now(), fresh.expires_at, self.resync, self.percent);
                    let same = loaded
                        .registries
                        .get(&name)
                        .is_some_and(|old| same_entries(old, &fresh));
                    let mut line = Log::new(Level::Info, "credential refreshed")
                        .field("registry", &name)
                        .field("changed", &!same);
                    if let Some(at) = fresh.expires_at {
                        line = line.field("expires_at", &at);
                    }
                    log(line);
                    if !same {
                        changed.push(name.clone());
                    }
                    loaded.registries.insert(name.clone(), fresh);
                }
                Err(problems) => {
                    entry.failures += 1;
                    self.stale.insert(name.clone());
                    let delay = retry_after(entry.failures);
                    entry.due = Instant::now() + delay;
                    metrics.credential_refresh(&name, "failed");
                    let reason = problems.join("; ");
                    log(Log::new(
                        Level::Warn,
                        format!("cannot refresh the credential; the Secrets keep their current value: {reason}"),
                    )
                    .field("registry", &name)
                    .field("failures", &entry.failures)
                    .field("retry_s", &delay.as_secs()));
                    if entry.failures == 1 {
                        let expires = loaded.registries.get(&name).and_then(|r| r.expires_at);
                        let message = event_message(&name, &reason, expires, delay);
                        let secrets = secrets_of(&loaded.workspace, &name);
                        let client = client.clone();
                        let workspace = loaded.workspace.name.clone();
                        let log = log.clone();
                        tokio::spawn(async move {
                            if let Err(e) =
                                record_failure(&client, &workspace, &secrets, &message).await
                            {
                                log(Log::new(
                                    Level::Warn,
                                    format!("cannot record an Event: {e}"),
                                ));
                            }
                        });
                    }
                }
            }
        }
        Refreshed { changed, recovered }
    }
}

/// Whether two resolutions hold the same entries (compared in memory, never
/// printed).
fn same_entries(
    a: &pullwarden_core::model::ResolvedRegistry,
    b: &pullwarden_core::model::ResolvedRegistry,
) -> bool {
    a.entries.len() == b.entries.len()
        && a.entries.iter().zip(&b.entries).all(|(x, y)| {
            x.server == y.server
                && x.email == y.email
                && x.username.expose() == y.username.expose()
                && x.password.expose() == y.password.expose()
        })
}

fn event_message(registry: &str, reason: &str, expires: Option<i64>, retry: Duration) -> String {
    let expiry = match expires.and_then(|at| k8s_openapi::jiff::Timestamp::from_second(at).ok()) {
        Some(at) => format!("; the value in use expires at {at}"),
        None => String::new(),
    };
    format!(
        "pullwarden could not refresh the credentials of Registry {registry} ({reason}); this Secret keeps its current value{expiry}; retrying in {}s",
        retry.as_secs()
    )
}

/// The `PullSecret`s that merge the registry: their Secrets hold it.
fn secrets_of(ws: &Workspace, registry: &str) -> BTreeSet<String> {
    ws.pull_secrets
        .iter()
        .filter(|s| s.registries.iter().any(|r| r.value == registry))
        .map(|s| s.name.clone())
        .collect()
}

/// A `Warning` Event `CredentialRefreshFailed` on every Secret this
/// workspace manages for one of `pull_secrets`.
async fn record_failure(
    client: &kube::Client,
    workspace: &str,
    pull_secrets: &BTreeSet<String>,
    message: &str,
) -> Result<(), kube::Error> {
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{WORKSPACE_LABEL}={workspace}");
    let listed = Api::<Secret>::all(client.clone())
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    for secret in listed.items {
        let meta = &secret.metadata;
        let source = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(SOURCE_ANNOTATION));
        let Some(name) = source.and_then(|s| s.strip_prefix("PullSecret/")) else {
            continue;
        };
        if !pull_secrets.contains(name) {
            continue;
        }
        let (Some(namespace), Some(secret_name)) = (&meta.namespace, &meta.name) else {
            continue;
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{secret_name}.")),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Secret".to_owned()),
                name: Some(secret_name.clone()),
                namespace: Some(namespace.clone()),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..ObjectReference::default()
            },
            reason: Some("CredentialRefreshFailed".to_owned()),
            message: Some(message.to_owned()),
            type_: Some("Warning".to_owned()),
            action: Some("Refresh".to_owned()),
            source: Some(EventSource {
                component: Some("pullwarden".to_owned()),
                ..EventSource::default()
            }),
            reporting_component: Some("pullwarden".to_owned()),
            reporting_instance: Some("pullwarden".to_owned()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            ..Event::default()
        };
        Api::<Event>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_refreshed_at_80_percent_of_its_lifetime_never_sooner_than_the_floor() {
        let resync = Duration::from_secs(600);
        assert_eq!(
            refresh_after(1_000, Some(1_020), resync, 80),
            Duration::from_secs(16)
        );
        assert_eq!(
            refresh_after(0, Some(12 * 3600), resync, 80),
            Duration::from_secs(34_560)
        );
        // --credential-refresh-at 50
        assert_eq!(
            refresh_after(0, Some(3600), resync, 50),
            Duration::from_secs(1800)
        );
        // A token of 3 s, or one already past: not before the floor.
        assert_eq!(refresh_after(1_000, Some(1_003), resync, 80), FLOOR);
        assert_eq!(refresh_after(1_000, Some(900), resync, 80), FLOOR);
        // No expiry: at every resync.
        assert_eq!(refresh_after(1_000, None, resync, 80), resync);
        assert_eq!(
            refresh_after(1_000, None, Duration::from_secs(1), 80),
            FLOOR
        );
    }

    #[test]
    fn failed_refreshes_are_retried_with_a_doubling_delay_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=10).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_after(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn only_a_failed_command_makes_a_failed_reload_worth_retrying() {
        assert!(transient(&[
            "pullwarden::spec::yaml_syntax: x (w.yaml)".to_owned(),
            "pullwarden::spec::credential_command: Registry `ecr`: the password command: `aws` failed (exit status 1); its output is not shown (w.yaml)".to_owned(),
        ]));
        assert!(!transient(&[
            "pullwarden::spec::yaml_syntax: x (w.yaml)".to_owned()
        ]));
        assert!(!transient(&[
            "pullwarden::spec::command_not_allowed: Registry `ecr`: ... (w.yaml)".to_owned()
        ]));
    }

    #[test]
    fn the_event_names_registry_reason_and_expiry() {
        let message = event_message(
            "ecr",
            "pullwarden::spec::credential_command: Registry `ecr`: the password command: `aws` failed (exit status 255); its output is not shown",
            Some(1_800_000_000),
            Duration::from_secs(4),
        );
        assert!(message.contains("Registry ecr"), "{message}");
        assert!(message.contains("exit status 255"), "{message}");
        assert!(
            message.contains("expires at 2027-01-15T08:00:00Z"),
            "{message}"
        );
        assert!(message.contains("retrying in 4s"), "{message}");
    }
}
