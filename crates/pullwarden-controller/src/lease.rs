//! Leader election on a `coordination.k8s.io/v1` Lease: every write is
//! guarded by the resourceVersion read just before (a create by the name not
//! existing), so two candidates never both hold it. A lease held by another
//! is taken only after its record has not changed for a whole lease duration
//! as observed here (no comparison with the holder's clock).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::{Level, Log, Sink};

/// Where the lease lives and how long it lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (`hostname-pid-random`).
    pub identity: String,
    /// How long a holder that stops renewing keeps the lease.
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the holder renews (a third of the duration).
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// A holder that could not renew for this long stops writing: before
    /// anyone else may take the lease.
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }
}

/// Whether this process may write, updated by [`elect`]. Writing also
/// requires the last renewal to be younger than the renew deadline, checked
/// where it is read ([`Leadership::holds`]).
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<Option<Instant>>,
    deadline: Duration,
}

impl Leadership {
    /// Always the leader (no election).
    pub fn always() -> Leadership {
        let (_, rx) = watch::channel(None);
        Leadership {
            rx,
            deadline: Duration::MAX,
        }
    }

    pub fn holds(&self) -> bool {
        if self.deadline == Duration::MAX {
            return true;
        }
        self.rx
            .borrow()
            .is_some_and(|renewed| renewed.elapsed() < self.deadline)
    }

    /// Resolves when leadership is (or already was) lost.
    pub async fn lost(&mut self) {
        if self.deadline == Duration::MAX {
            return std::future::pending().await;
        }
        loop {
            let remaining = match *self.rx.borrow_and_update() {
                Some(renewed) => self.deadline.saturating_sub(renewed.elapsed()),
                None => return,
            };
            if remaining.is_zero() {
                return;
            }
            tokio::select! {
                changed = self.rx.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(remaining) => {}
            }
        }
    }

    /// Resolves when leadership is held.
    pub async fn acquired(&mut self) {
        while !self.holds() {
            if self.rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Starts the election task; it runs until `stop` turns true, then releases
/// the lease if it holds it.
pub fn elect(
    client: &kube::Client,
    config: LeaseConfig,
    log: Sink,
    mut stop: watch::Receiver<bool>,
    metrics: std::sync::Arc<crate::Metrics>,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None::<Instant>);
    let leadership = Leadership {
        rx,
        deadline: config.renew_deadline(),
    };
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let handle = tokio::spawn(async move {
        // The other holder's record and when it was first seen unchanged.
        let mut observed: Option<(String, Instant)> = None;
        let mut leading = false;
        loop {
            let attempt = Instant::now();
            match try_acquire_or_renew(&api, &config, &mut observed).await {
                Ok(true) => {
                    let _ = tx.send(Some(attempt));
                    if !leading {
                        leading = true;
                        metrics.leader(true);
                        log(Log::new(Level::Info, "acquired the lease: writing")
                            .field("lease", &format!("{}/{}", config.namespace, config.name))
                            .field("identity", &config.identity));
                    }
                }
                Ok(false) => {
                    if leading {
                        leading = false;
                        let _ = tx.send(None);
                        metrics.leader(false);
                        log(Log::new(Level::Warn, "lost the lease: not writing")
                            .field("lease", &format!("{}/{}", config.namespace, config.name)));
                    }
                }
                Err(e) => {
                    log(Log::new(Level::Warn, format!("lease: {e}"))
                        .field("lease", &format!("{}/{}", config.namespace, config.name)));
                    // Leadership lapses by itself at the renew deadline.
                }
            }
            if leading && !leadership_fresh(&tx, config.renew_deadline()) {
                leading = false;
                let _ = tx.send(None);
                metrics.leader(false);
                log(Log::new(
                    Level::Warn,
                    "could not renew the lease in time: not writing",
                ));
            }
            let wait = if leading {
                config.renew_every()
            } else {
                config.renew_every().min(Duration::from_secs(2))
            };
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if leading {
            let _ = tx.send(None);
            metrics.leader(false);
            if release(&api, &config).await {
                log(Log::new(Level::Info, "released the lease"));
            }
        }
    });
    (leadership, handle)
}

fn leadership_fresh(tx: &watch::Sender<Option<Instant>>, deadline: Duration) -> bool {
    tx.borrow().is_some_and(|r| r.elapsed() < deadline)
}

/// One round: `Ok(true)` when this candidate holds the lease now.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Option<(String, Instant)>,
) -> Result<bool, kube::Error> {
    let seconds = i32::try_from(config.duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mine = holder == config.identity;
    if !mine && !holder.is_empty() {
        // Someone else's: free only once its record stood still for a whole
        // duration (theirs, if longer) as seen from here.
        let record = format!(
            "{holder}/{}",
            lease
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or_default()
        );
        let theirs = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(config.duration, Duration::from_secs)
            .max(config.duration);
        match observed {
            Some((seen, since)) if *seen == record => {
                if since.elapsed() < theirs {
                    return Ok(false);
                }
            }
            _ => {
                *observed = Some((record, Instant::now()));
                return Ok(false);
            }
        }
    }
    if !mine {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(config.identity.clone());
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now());
    // The resourceVersion read above is the precondition.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => {
            *observed = None;
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the lease up (holder cleared), so a standby takes over at once.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> bool {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return false;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return false;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return false;
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .is_ok()
}
