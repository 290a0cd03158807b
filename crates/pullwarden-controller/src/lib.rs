//! `pullwarden run`: a long-running reconciler over the same pure planner
//! (`pullwarden-core`) and executor (`pullwarden-kube::apply`) the batch
//! commands use.
//!
//! Watches on Namespaces, ServiceAccounts and pullwarden's managed Secrets
//! and RoleBindings (metadata only) trigger a reconcile, debounced so a burst
//! is one; a timer reconciles anyway (`resync`); the workspace folder is
//! polled and reloaded when its files change, a broken one keeping the last
//! good one. A reconcile after watch events reads and plans only the
//! namespaces they touched (`scoped`); the start, the timer, a workspace
//! change and anything not confined to known namespaces read the live state
//! and plan the whole workspace. A plan without changes writes nothing.
//!
//! This crate prints nothing: it hands [`Log`] lines to the caller.

mod backoff;
mod credentials;
mod events;
pub mod lease;
mod metrics;
mod scoped;
mod watch;
pub mod workspace;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pullwarden_core::plan::{self as planner, Action, ObjectKind, PlanOptions};
use pullwarden_core::secret::DigestKey;
use pullwarden_kube::apply::{ApplyOptions, Hooks, OutcomeStatus};
use rand::RngCore as _;
use tokio::sync::{mpsc, watch as signal_watch};

pub use metrics::Metrics;

/// How `run` behaves.
#[derive(Clone, Debug)]
pub struct Config {
    /// The workspace file or folder.
    pub path: PathBuf,
    /// A full reconcile at least this often.
    pub resync: Duration,
    /// How long a trigger waits for more before reconciling.
    pub debounce: Duration,
    /// How often the workspace files are checked for changes.
    pub workspace_poll: Duration,
    /// The percentage of a `fromCommand` credential's lifetime after which its
    /// command runs again (80 by default).
    pub credential_refresh_at: u8,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (none: not served).
    pub metrics_addr: Option<SocketAddr>,
    /// How the cluster is read (retries, Secret selection).
    pub read: pullwarden_kube::ReadOptions,
    /// Changes in flight at once within a phase.
    pub concurrency: usize,
    /// Take over unlabelled objects (`--adopt`).
    pub adopt: bool,
    /// Leader election: only the holder of this Lease writes (none: always writes).
    pub lease: Option<lease::LeaseConfig>,
}

/// How bad a [`Log`] line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// One line for the log: a message and fields. Never holds a credential:
/// messages name objects, codes, variables and paths.
#[derive(Clone, Debug)]
pub struct Log {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(&'static str, String)>,
}

impl Log {
    fn new(level: Level, message: impl Into<String>) -> Self {
        Self {
            level,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    fn field(mut self, key: &'static str, value: &impl ToString) -> Self {
        self.fields.push((key, value.to_string()));
        self
    }
}

/// Where log lines go (the binary prints them).
pub type Sink = Arc<dyn Fn(Log) + Send + Sync>;

/// Why `run` could not start.
#[derive(Debug)]
pub enum RunError {
    /// The workspace has errors at start (each problem a line); there is no last good one.
    Workspace(Vec<String>),
    /// The metrics address cannot be bound.
    Bind(SocketAddr, std::io::Error),
    /// The signal handlers cannot be installed.
    Signals(std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Workspace(problems) => write!(
                f,
                "the workspace has {} error(s); nothing was started",
                problems.len()
            ),
            Self::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            Self::Signals(e) => write!(f, "cannot install the signal handlers: {e}"),
        }
    }
}

/// Why a reconcile was started.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Trigger {
    Start,
    /// A watch event, and what it touched.
    Watch(watch::Touch),
    Workspace,
    Resync,
    Leader,
    Backoff,
    /// A `fromCommand` credential is due for a refresh.
    Credentials,
}

impl Trigger {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Watch(_) => "watch",
            Self::Workspace => "workspace",
            Self::Resync => "resync",
            Self::Leader => "leader",
            Self::Backoff => "backoff",
            Self::Credentials => "credentials",
        }
    }
}

pub(crate) fn kind_str(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Secret => "Secret",
        ObjectKind::ServiceAccount => "ServiceAccount",
        ObjectKind::RoleBinding => "RoleBinding",
    }
}

pub(crate) fn action_str(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Delete => "delete",
        Action::Adopt => "adopt",
        Action::Link => "link",
    }
}

/// Runs until SIGTERM or SIGINT: then the reconcile in flight finishes its
/// writes (a read in flight is dropped), nothing new starts, and `Ok` is
/// returned.
pub async fn run(client: kube::Client, config: Config, log: Sink) -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut current = workspace::load(&config.path).map_err(RunError::Workspace)?;
    for warning in &current.warnings {
        log(Log::new(Level::Warn, format!("workspace: {warning}")));
    }
    let metrics = Arc::new(Metrics::default());
    metrics.workspace(false);
    // Short-lived credentials: their commands run again before they expire.
    let mut refresher = credentials::Refresher::new(
        &current,
        config.resync,
        config.credential_refresh_at,
        &metrics,
    );

    // Shutdown: the first SIGTERM or SIGINT.
    let (stop_tx, stop_rx) = signal_watch::channel(false);
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    {
        let log = log.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            log(Log::new(
                Level::Info,
                format!("{name}: finishing the writes in flight, starting nothing new"),
            ));
            let _ = stop_tx.send(true);
        });
    }

    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| RunError::Bind(addr, e))?;
        let bound = listener.local_addr().unwrap_or(addr);
        log(Log::new(Level::Info, "serving /metrics, /healthz and /readyz").field("addr", &bound));
        let metrics = metrics.clone();
        tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    let metrics = metrics.clone();
                    tokio::spawn(async move { metrics::serve_one(stream, &metrics).await });
                }
            }
        });
    }

    let (mut leadership, election) = match &config.lease {
        Some(lease) => {
            let (leadership, handle) = lease::elect(
                &client,
                lease.clone(),
                log.clone(),
                stop_rx.clone(),
                metrics.clone(),
            );
            (leadership, Some(handle))
        }
        None => (lease::Leadership::always(), None),
    };

    let (trigger_tx, mut trigger_rx) = mpsc::unbounded_channel::<Trigger>();
    let namespaces = watch::SharedNamespaces::default();
    watch::start(
        &client,
        &trigger_tx,
        &log,
        &namespaces,
        config.read.retry.request_timeout,
    );
    {
        // The workspace folder, polled.
        let path = config.path.clone();
        let tx = trigger_tx.clone();
        let every = config.workspace_poll;
        tokio::spawn(async move {
            let mut last = workspace::fingerprint(&path);
            loop {
                tokio::time::sleep(every).await;
                let path2 = path.clone();
                let Ok(now) =
                    tokio::task::spawn_blocking(move || workspace::fingerprint(&path2)).await
                else {
                    continue;
                };
                if now != last {
                    last = now;
                    if tx.send(Trigger::Workspace).is_err() {
                        return;
                    }
                }
            }
        });
    }

    let mut stop = stop_rx;
    let mut backoff = backoff::Backoff::default();
    let mut wake: Option<Instant> = None;
    let mut next: Option<Trigger> = Some(Trigger::Start);
    // What the next reconcile must re-plan besides what events touch.
    let mut carry = scoped::Carry::Everything;
    let mut resync =
        tokio::time::interval_at(tokio::time::Instant::now() + config.resync, config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !leadership.holds() {
            log(Log::new(Level::Info, "standby: waiting for the lease"));
            metrics.set_ready();
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                () = leadership.acquired() => {}
            }
            // Triggers queued on standby are covered by the full reconcile
            // below, except a workspace change: the poller will not report
            // it again, so it is queued once more (reloaded before writing).
            let mut changed_on_disk = false;
            while let Ok(t) = trigger_rx.try_recv() {
                changed_on_disk |= t == Trigger::Workspace;
            }
            if changed_on_disk {
                let _ = trigger_tx.send(Trigger::Workspace);
            }
            // What this replica resolved may be older than what the last
            // leader wrote: refresh before writing.
            refresher.all_due();
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = refresher.refresh_due(&mut current, &client, &metrics, &log) => {}
            }
            next = Some(Trigger::Leader);
        }
        let trigger = if let Some(t) = next.take() {
            t
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                t = trigger_rx.recv() => match t { Some(t) => t, None => break },
                _ = resync.tick() => Trigger::Resync,
                () = sleep_until(wake), if wake.is_some() => Trigger::Backoff,
                () = sleep_until(refresher.next_due()), if refresher.next_due().is_some() => Trigger::Credentials,
            }
        };
        if *stop.borrow() {
            break;
        }
        if trigger == Trigger::Credentials {
            // A command may run up to its timeout: a stop does not wait for it.
            let round = tokio::select! {
                biased;
                _ = stop.changed() => break,
                round = refresher.refresh_due(&mut current, &client, &metrics, &log) => round,
            };
            if round.changed.is_empty() && round.recovered.is_empty() {
                // Unchanged, or kept after a failure: nothing to write.
                continue;
            }
        }
        // Debounce: a burst of events is one reconcile, of what they touched.
        let mut reload = trigger == Trigger::Workspace;
        let mut touched = scoped::Touched::default();
        let note = |t: &Trigger, touched: &mut scoped::Touched| match t {
            Trigger::Watch(touch) => touched.add(touch),
            _ => touched.everything = true,
        };
        note(&trigger, &mut touched);
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = tokio::time::sleep(config.debounce) => {}
        }
        while let Ok(t) = trigger_rx.try_recv() {
            reload |= t == Trigger::Workspace;
            note(&t, &mut touched);
        }
        let scope = match &carry {
            scoped::Carry::Everything => None,
            scoped::Carry::Namespaces(again) => {
                touched.namespaces.extend(again.iter().cloned());
                let view = namespaces
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                scoped::namespaces(&current.workspace, &view, &touched)
            }
        };
        if reload {
            match workspace::load(&config.path) {
                Ok(loaded) => {
                    log(Log::new(Level::Info, "workspace reloaded")
                        .field("workspace", &loaded.workspace.name));
                    for warning in &loaded.warnings {
                        log(Log::new(Level::Warn, format!("workspace: {warning}")));
                    }
                    current = loaded;
                    refresher.reset(&current, &metrics);
                    backoff.clear();
                    metrics.workspace(false);
                }
                Err(problems) => {
                    metrics.workspace(true);
                    metrics.failure("workspace");
                    for problem in &problems {
                        log(Log::new(Level::Error, format!("workspace: {problem}")));
                    }
                    log(Log::new(
                        Level::Warn,
                        "the workspace on disk has errors; keeping the last good one",
                    )
                    .field("workspace", &current.workspace.name));
                    // A credential command that failed may work later: the folder
                    // did not change, so nothing else would try again.
                    if credentials::transient(&problems) {
                        let tx = trigger_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(credentials::RELOAD_RETRY).await;
                            let _ = tx.send(Trigger::Workspace);
                        });
                    }
                }
            }
        }
        let held = refresher.held_pull_secrets(&current.workspace);
        let ok = reconcile(
            &client,
            &config,
            &current,
            &held,
            &metrics,
            &log,
            &trigger,
            scope.as_ref().map(|set| (set, &namespaces)),
            &mut stop,
            &mut leadership,
            &mut backoff,
        )
        .await;
        match ok {
            Reconciled::Stopped => break,
            Reconciled::Done(ok, next_wake) => {
                metrics.reconciled(ok);
                metrics.reconciled_scope(scope.is_some());
                carry = if ok {
                    scoped::Carry::Namespaces(std::collections::BTreeSet::new())
                } else {
                    scoped::Carry::Everything
                };
                wake = next_wake;
            }
            Reconciled::Refused(errors) => {
                metrics.reconciled(false);
                metrics.reconciled_scope(scope.is_some());
                carry = scoped::Carry::after_errors(scope.as_ref(), errors);
                wake = None;
            }
        }
        if *stop.borrow() {
            break;
        }
    }
    if let Some(election) = election {
        // It releases the lease when it held it.
        let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
    }
    log(Log::new(Level::Info, "stopped"));
    Ok(())
}

enum Reconciled {
    /// Whether it converged, and when a held-back change may be written.
    Done(bool, Option<Instant>),
    /// The plan had errors (nothing was applied): the namespaces they name
    /// and those with changes (`None` when an error names no namespace).
    Refused(Option<std::collections::BTreeSet<String>>),
    Stopped,
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads, plans and applies once. A stop during the read drops it; a stop
/// during apply lets the writes finish; a lost lease drops them at once.
#[allow(clippy::too_many_arguments)]
async fn reconcile(
    client: &kube::Client,
    config: &Config,
    current: &workspace::Loaded,
    held_pull_secrets: &std::collections::BTreeSet<String>,
    metrics: &Metrics,
    log: &Sink,
    trigger: &Trigger,
    scope: Option<(
        &std::collections::BTreeSet<String>,
        &watch::SharedNamespaces,
    )>,
    stop: &mut signal_watch::Receiver<bool>,
    leadership: &mut lease::Leadership,
    backoff: &mut backoff::Backoff,
) -> Reconciled {
    let started = Instant::now();
    let ws = &current.workspace;
    let read = async {
        let options = pullwarden_kube::ReadOptions {
            data_only_for: Some(Arc::new(
                ws.pull_secrets.iter().map(|s| s.name.clone()).collect(),
            )),
            ..config.read.clone()
        };
        let mut state = match scope {
            None => {
                pullwarden_kube::read_live_or_namespaces(client, &named_namespaces(ws), &options)
                    .await?
                    .0
            }
            Some((set, view)) => {
                let list: Vec<String> = set.iter().cloned().collect();
                let fresh =
                    pullwarden_kube::read_live_of_namespaces(client, &list, &options).await?;
                let view = view
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                scoped::merge(&view, fresh, set)
            }
        };
        let mut wanted = planner::desired(ws, &std::collections::BTreeMap::new(), &state);
        if let Some((set, _)) = scope {
            scoped::restrict(&mut wanted, set);
        }
        let wanted: Vec<(String, String)> = wanted.secrets.into_keys().collect();
        pullwarden_kube::lookup_secrets(client, &mut state, &wanted, &options).await?;
        Ok::<_, pullwarden_kube::ClusterError>(state)
    };
    let live = tokio::select! {
        biased;
        _ = stop.changed() => return Reconciled::Stopped,
        live = read => live,
    };
    let live = match live {
        Ok(live) => live,
        Err(e) => {
            metrics.failure("read");
            log(Log::new(
                Level::Error,
                format!("cannot read the cluster: {e}"),
            ));
            return Reconciled::Done(false, None);
        }
    };
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let key = DigestKey::from_bytes(key);
    let mut desired = planner::desired(ws, &current.registries, &live);
    if let Some((set, _)) = scope {
        scoped::restrict(&mut desired, set);
    }
    let scope_field = scope.map_or_else(
        || "full".to_owned(),
        |(set, _)| format!("{} namespace(s)", set.len()),
    );
    let plan = planner::plan(
        ws,
        &desired,
        &live,
        PlanOptions {
            adopt: config.adopt,
        },
        &key,
    );
    if !plan.errors.is_empty() {
        metrics.failure("plan_errors");
        for finding in &plan.errors {
            log(Log::new(
                Level::Error,
                pullwarden_core::escape::text(&finding.message),
            )
            .field("code", &finding.code.as_str()));
        }
        log(
            Log::new(Level::Error, "the plan has errors; nothing was applied")
                .field("trigger", &trigger.as_str())
                .field("scope", &scope_field),
        );
        return Reconciled::Refused(scoped::pending(&plan));
    }
    // Changes to objects another writer keeps undoing wait their turn.
    let now = Instant::now();
    backoff.expire(now);
    let mut plan = plan;
    let mut wake: Option<Instant> = None;
    let mut held = 0usize;
    let mut held_stale = 0usize;
    let changes = std::mem::take(&mut plan.changes);
    for change in changes {
        if writes_stale_credential(&change, held_pull_secrets) {
            held_stale += 1;
            continue;
        }
        match backoff.decide(&change, now) {
            backoff::Decision::Write => plan.changes.push(change),
            backoff::Decision::Wait {
                until,
                delay,
                first,
            } => {
                held += 1;
                metrics.held_back(kind_str(change.kind));
                if first {
                    let meta = events::live_meta(&live, &change);
                    let writer = events::other_writer(client, &change).await;
                    let writer = writer.as_deref().unwrap_or("unknown");
                    let title = pullwarden_core::render::change_title(&change);
                    log(Log::new(
                        Level::Warn,
                        format!("another writer keeps undoing this change; backing off: {title}"),
                    )
                    .field("writer", &writer)
                    .field("delay_s", &delay.as_secs()));
                    let message = format!(
                        "another writer ({writer}) keeps undoing pullwarden's change ({title}); the next write waits {}s",
                        delay.as_secs()
                    );
                    if let Err(e) = events::backing_off(client, &change, meta, message).await {
                        log(Log::new(
                            Level::Warn,
                            format!("cannot record an Event: {e}"),
                        ));
                    }
                }
                wake = Some(wake.map_or(until, |w: Instant| w.min(until)));
            }
        }
    }
    if held_stale > 0 {
        metrics.failure("credential_stale");
        let names = held_pull_secrets
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
        log(Log::new(
            Level::Warn,
            "a credential was not refreshed since taking the lease or since a failed refresh: its Secrets keep their current value until a refresh succeeds",
        )
        .field("pull_secrets", &names)
        .field("held", &held_stale));
        held += held_stale;
    }
    if held > 0 {
        plan.schedule = planner::schedule::schedule(&plan.changes);
    }
    if !plan.has_changes() && held > 0 {
        log(
            Log::new(Level::Info, "nothing to write now; changes held back")
                .field("held", &held)
                .field("trigger", &trigger.as_str()),
        );
        return Reconciled::Done(false, wake);
    }
    if !plan.has_changes() {
        log(Log::new(Level::Info, "in sync")
            .field("trigger", &trigger.as_str())
            .field("scope", &scope_field)
            .field("namespaces", &live.namespaces.len())
            .field("ms", &started.elapsed().as_millis()));
        return Reconciled::Done(true, None);
    }
    let options = ApplyOptions {
        concurrency: config.concurrency,
        retry: config.read.retry,
        listed: Some(Arc::new(live)),
        ..ApplyOptions::default()
    };
    let done = std::sync::Mutex::new(Vec::new());
    let progress = |outcome: &pullwarden_kube::apply::Outcome| {
        let change = &plan.changes[outcome.index];
        let kind = kind_str(change.kind);
        let action = action_str(change.action);
        let title = pullwarden_core::render::change_title(change);
        match &outcome.status {
            OutcomeStatus::Done => {
                done.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(outcome.index);
                metrics.change(kind, action, "done");
                log(Log::new(Level::Info, format!("done {title}")));
            }
            OutcomeStatus::Failed(reason) => {
                metrics.change(kind, action, "failed");
                log(Log::new(
                    Level::Error,
                    format!("FAILED {title}: {}", pullwarden_core::escape::text(reason)),
                ));
            }
            OutcomeStatus::Skipped(reason) => {
                metrics.change(kind, action, "skipped");
                log(Log::new(
                    Level::Warn,
                    format!("skipped {title}: {}", pullwarden_core::escape::text(reason)),
                ));
            }
        }
    };
    if !leadership.holds() {
        log(Log::new(
            Level::Warn,
            "lost the lease before applying: nothing written",
        ));
        return Reconciled::Done(false, None);
    }
    // Not raced against the stop signal: writes in flight finish. Raced
    // against losing the lease: another replica may be writing already.
    let hooks = Hooks::default();
    let applying =
        pullwarden_kube::apply::apply(client, &plan, &desired, &options, &hooks, &progress);
    let outcomes = tokio::select! {
        outcomes = applying => outcomes,
        () = leadership.lost() => {
            metrics.failure("lease_lost");
            log(Log::new(Level::Error, "lost the lease while applying: stopped writing at once"));
            return Reconciled::Done(false, None);
        }
    };
    let written = Instant::now();
    for index in done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        let change = &plan.changes[index];
        if backoff.written(change, written) {
            metrics.rewrite(kind_str(change.kind));
        }
    }
    let failed = outcomes
        .iter()
        .filter(|o| o.status != OutcomeStatus::Done)
        .count();
    if failed > 0 {
        metrics.failure("apply");
    }
    log(Log::new(
        if failed > 0 {
            Level::Error
        } else {
            Level::Info
        },
        format!(
            "applied: {}",
            pullwarden_core::render::summary_line(&plan.summary())
        ),
    )
    .field("trigger", &trigger.as_str())
    .field("scope", &scope_field)
    .field("changes", &plan.changes.len())
    .field("failed", &failed)
    .field("ms", &started.elapsed().as_millis()));
    Reconciled::Done(failed == 0 && held == 0, wake)
}

/// Whether `change` writes a Secret of one of the `PullSecret`s in `stale`
/// (a delete writes no value: it is left to the plan).
fn writes_stale_credential(
    change: &planner::Change,
    stale: &std::collections::BTreeSet<String>,
) -> bool {
    change.kind == ObjectKind::Secret
        && change.action != Action::Delete
        && change
            .source
            .as_deref()
            .and_then(|s| s.strip_prefix("PullSecret/"))
            .is_some_and(|name| stale.contains(name))
}

/// The namespaces a workspace names exactly (targets inside its scope): what
/// namespace-scoped credentials can still read.
fn named_namespaces(ws: &pullwarden_core::model::Workspace) -> Vec<String> {
    use pullwarden_core::names::NamespacePattern;
    let mut names = std::collections::BTreeSet::new();
    let patterns = ws
        .scope
        .include
        .iter()
        .chain(ws.pull_secrets.iter().flat_map(|s| s.namespaces.iter()))
        .chain(ws.pull_grants.iter().flat_map(|g| g.namespaces.iter()));
    for pattern in patterns {
        if let NamespacePattern::Exact(name) = &pattern.value
            && ws.scope.contains(name)
        {
            names.insert(name.clone());
        }
    }
    names.into_iter().collect()
}
