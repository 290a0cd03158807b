//! `pullwarden-bench-latency --kubeconfig FILE [--context NAME] --prefix P
//! [--count N] [--rate R] [--service-accounts a,b] [--secrets x,y]
//! [--role-bindings K] [--timeout-s S] [--out FILE]`: for `scripts/bench.sh`,
//! how long after a namespace and its ServiceAccounts appear its pull
//! secrets, links and bindings are in place, whatever puts them there
//! (`pullwarden run`, or a polling loop).
//!
//! It creates N namespaces `P-0000`, … at a steady R per second (default 200
//! at 4/s), each followed at once by its ServiceAccounts (the test control
//! plane runs no ServiceAccount controller; these creates stand in for it).
//! A namespace is *ready* when its last ServiceAccount create returned, and
//! *done* when watches (cluster-wide, on Secrets and RoleBindings labelled
//! `app.kubernetes.io/managed-by=pullwarden` and on ServiceAccounts) have
//! shown every Secret of `--secrets`, every ServiceAccount listing each of
//! them in `imagePullSecrets`, and at least K managed RoleBindings. The
//! latency is done − ready, taken when the watch event arrives (so it
//! includes the watch's delivery, a few milliseconds). Prints one line:
//! `count=N done=D rate=R median_ms=… p90_ms=… p99_ms=… max_ms=…`, and with
//! `--out` every latency in ms, one per line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt as _};

const MANAGED: &str = "app.kubernetes.io/managed-by=pullwarden";

struct Args {
    kubeconfig: String,
    context: Option<String>,
    prefix: String,
    count: usize,
    rate: f64,
    service_accounts: Vec<String>,
    secrets: Vec<String>,
    role_bindings: usize,
    timeout: Duration,
    out: Option<String>,
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: pullwarden-bench-latency --kubeconfig FILE [--context NAME] --prefix P [--count N (200)] [--rate R per second (4)] [--service-accounts a,b (default)] [--secrets x,y] [--role-bindings K (0)] [--timeout-s S (120)] [--out FILE]";
    let mut args = Args {
        kubeconfig: String::new(),
        context: None,
        prefix: String::new(),
        count: 200,
        rate: 4.0,
        service_accounts: vec!["default".to_owned()],
        secrets: Vec::new(),
        role_bindings: 0,
        timeout: Duration::from_secs(120),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        match flag.as_str() {
            "--kubeconfig" => args.kubeconfig = value,
            "--context" => args.context = Some(value),
            "--prefix" => args.prefix = value,
            "--count" => args.count = value.parse().map_err(|_| usage)?,
            "--rate" => args.rate = value.parse().map_err(|_| usage)?,
            "--service-accounts" => args.service_accounts = list(&value),
            "--secrets" => args.secrets = list(&value),
            "--role-bindings" => args.role_bindings = value.parse().map_err(|_| usage)?,
            "--timeout-s" => {
                args.timeout = Duration::from_secs(value.parse().map_err(|_| usage)?);
            }
            "--out" => args.out = Some(value),
            _ => return Err(usage.into()),
        }
    }
    if args.kubeconfig.is_empty() || args.prefix.is_empty() || args.rate <= 0.0 {
        return Err(usage.into());
    }
    Ok(args)
}

/// What the watches have shown of one namespace.
#[derive(Default)]
struct Seen {
    secrets: BTreeSet<String>,
    /// ServiceAccount -> its `imagePullSecrets`.
    links: BTreeMap<String, BTreeSet<String>>,
    role_bindings: BTreeSet<String>,
    ready: Option<Instant>,
    done: Option<Instant>,
}

struct State {
    by_namespace: BTreeMap<String, Seen>,
    wanted_secrets: Vec<String>,
    wanted_service_accounts: Vec<String>,
    wanted_role_bindings: usize,
}

impl State {
    fn complete(&self, seen: &Seen) -> bool {
        self.wanted_secrets.iter().all(|s| seen.secrets.contains(s))
            && self.wanted_service_accounts.iter().all(|sa| {
                seen.links
                    .get(sa)
                    .is_some_and(|l| self.wanted_secrets.iter().all(|s| l.contains(s)))
            })
            && seen.role_bindings.len() >= self.wanted_role_bindings
    }

    /// Records what `change` did to namespace `ns` and whether it is done now.
    fn update(&mut self, ns: &str, now: Instant, change: impl FnOnce(&mut Seen)) {
        let mut seen = self.by_namespace.remove(ns).unwrap_or_default();
        change(&mut seen);
        if seen.done.is_none() && seen.ready.is_some() && self.complete(&seen) {
            seen.done = Some(now);
        }
        self.by_namespace.insert(ns.to_owned(), seen);
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Watches `K` cluster-wide; `apply` records an object of a namespace with
/// the prefix. Sends () once the first list is done.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    prefix: String,
    state: Shared,
    listed: tokio::sync::mpsc::UnboundedSender<()>,
    apply: fn(&mut Seen, &K, bool),
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(api, config));
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            let (object, present) = match event {
                Ok(Event::Apply(o) | Event::InitApply(o)) => (o, true),
                Ok(Event::Delete(o)) => (o, false),
                Ok(Event::InitDone) => {
                    let _ = listed.send(());
                    continue;
                }
                Ok(Event::Init) | Err(_) => continue,
            };
            let ns = object.namespace().unwrap_or_default();
            if !ns.starts_with(&prefix) {
                continue;
            }
            lock(&state).update(&ns, now, |seen| apply(seen, &object, present));
        }
    });
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig).map_err(|e| e.to_string())?;
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| e.to_string())?;
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let state: Shared = Arc::new(Mutex::new(State {
        by_namespace: BTreeMap::new(),
        wanted_secrets: args.secrets.clone(),
        wanted_service_accounts: args.service_accounts.clone(),
        wanted_role_bindings: args.role_bindings,
    }));
    let prefix = format!("{}-", args.prefix);
    let (listed_tx, mut listed_rx) = tokio::sync::mpsc::unbounded_channel();
    watch::<Secret>(
        Api::all(client.clone()),
        watcher::Config::default().labels(MANAGED),
        prefix.clone(),
        state.clone(),
        listed_tx.clone(),
        |seen, s, present| {
            let name = s.name_any();
            if present {
                seen.secrets.insert(name);
            } else {
                seen.secrets.remove(&name);
            }
        },
    );
    watch::<ServiceAccount>(
        Api::all(client.clone()),
        watcher::Config::default(),
        prefix.clone(),
        state.clone(),
        listed_tx.clone(),
        |seen, sa, present| {
            let links: BTreeSet<String> = sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect();
            if present {
                seen.links.insert(sa.name_any(), links);
            } else {
                seen.links.remove(&sa.name_any());
            }
        },
    );
    watch::<RoleBinding>(
        Api::all(client.clone()),
        watcher::Config::default().labels(MANAGED),
        prefix.clone(),
        state.clone(),
        listed_tx,
        |seen, rb, present| {
            let name = rb.name_any();
            if present {
                seen.role_bindings.insert(name);
            } else {
                seen.role_bindings.remove(&name);
            }
        },
    );
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(120), listed_rx.recv())
            .await
            .map_err(|_| "the watches did not list within 120 s".to_owned())?;
    }

    // Create the namespaces at a steady rate, each with its ServiceAccounts.
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut creates = Vec::new();
    for i in 0..args.count {
        tokio::time::sleep_until((started + period * u32::try_from(i).unwrap_or(u32::MAX)).into())
            .await;
        let client = client.clone();
        let state = state.clone();
        let ns = format!("{prefix}{i:04}");
        let sas = args.service_accounts.clone();
        creates.push(tokio::spawn(async move {
            let mut namespace = Namespace::default();
            namespace.metadata.name = Some(ns.clone());
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &namespace)
                .await
                .map_err(|e| format!("create namespace {ns}: {e}"))?;
            let api = Api::<ServiceAccount>::namespaced(client, &ns);
            let results = futures::future::join_all(sas.iter().map(|name| {
                let mut sa = ServiceAccount::default();
                sa.metadata.name = Some(name.clone());
                let api = api.clone();
                async move { api.create(&PostParams::default(), &sa).await }
            }))
            .await;
            for result in results {
                result.map_err(|e| format!("create a ServiceAccount in {ns}: {e}"))?;
            }
            let now = Instant::now();
            lock(&state).update(&ns, now, |seen| seen.ready = Some(now));
            Ok::<_, String>(())
        }));
    }
    for create in creates {
        create.await.map_err(|e| e.to_string())??;
    }
    let created_in = started.elapsed();
    let deadline = Instant::now() + args.timeout;
    loop {
        let pending = lock(&state)
            .by_namespace
            .values()
            .filter(|s| s.ready.is_some() && s.done.is_none())
            .count();
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = lock(&state);
    let mut latencies: Vec<f64> = state
        .by_namespace
        .values()
        .filter_map(|s| Some(s.done?.saturating_duration_since(s.ready?).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    if let Some(out) = &args.out {
        let mut text = String::new();
        for l in &latencies {
            let _ = writeln!(text, "{l:.1}");
        }
        std::fs::write(out, text).map_err(|e| format!("{out}: {e}"))?;
    }
    let line = format!(
        "count={} done={} rate={}/s created_in_s={:.1} median_ms={:.0} p90_ms={:.0} p99_ms={:.0} max_ms={:.0}",
        args.count,
        latencies.len(),
        args.rate,
        created_in.as_secs_f64(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    let _ = writeln!(std::io::stdout(), "{line}");
    if latencies.len() < args.count {
        return Err(format!(
            "{} of {} namespaces were not done within {:?}",
            args.count - latencies.len(),
            args.count,
            args.timeout
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pullwarden-bench-latency: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pullwarden-bench-latency: {e}");
            ExitCode::FAILURE
        }
    }
}
