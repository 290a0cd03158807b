//! The commands that talk to a cluster: loading, resolving, reading the live
//! state, planning, and printing. Exit codes are decided here.

pub mod access;
mod apply;
pub mod can_pull;
pub mod check_registries;
pub mod diff;
mod drift;
pub mod fleet;
mod import;
mod plan;
mod run;
mod snapshot;
mod validate;

pub use apply::apply;
pub use drift::drift;
pub use import::import;
pub use plan::plan;
pub use run::run;
pub use snapshot::snapshot;
pub use validate::validate;

use std::path::Path;

use pullwarden_core::live::LiveState;
use pullwarden_core::plan::{self as planner, Desired, Plan, PlanOptions};
use pullwarden_core::secret::DigestKey;
use pullwarden_spec::credentials::{self, ProcessEnvironment};
use rand::RngCore as _;

use crate::cli::ClusterArgs;
use crate::output::Output;

/// Where the live state comes from.
#[derive(Clone, Copy)]
pub enum LiveSource<'a> {
    /// Kubernetes objects saved as YAML/JSON (`--live FILE_OR_DIR`).
    Snapshot(&'a Path),
    /// The cluster, through this client.
    Cluster(&'a kube::Client),
}

/// The usual failure: already reported, exit 1.
pub struct Failed;

/// A workspace loaded, credentials resolved, the live state read: ready to plan.
pub struct Planned {
    pub plan: Plan,
    pub desired: Desired,
    pub key: DigestKey,
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Loads and resolves the workspace, printing every problem. `None` on errors.
pub fn load_resolved(
    path: &Path,
    out: &Output,
) -> Result<
    (
        pullwarden_core::model::Workspace,
        std::collections::BTreeMap<String, pullwarden_core::model::ResolvedRegistry>,
    ),
    Failed,
> {
    let env = ProcessEnvironment;
    let mut loaded = pullwarden_spec::load(path, &env);
    // Planning needs the credential files, so their absence is an error here.
    loaded
        .problems
        .retain(|p| p.code != pullwarden_spec::diag::codes::CREDENTIAL_FILE_ABSENT);
    let mut registries = std::collections::BTreeMap::default();
    if !loaded.has_errors()
        && let Some(ws) = &loaded.workspace
    {
        let (resolved, problems) = credentials::resolve(ws, &env);
        registries = resolved;
        loaded.problems.extend(problems);
    }
    for problem in &loaded.problems {
        if problem.is_error() || !out.quiet() {
            out.report(&problem.to_report(&loaded.sources));
        }
    }
    if loaded.has_errors() {
        let errors = loaded.problems.iter().filter(|p| p.is_error()).count();
        out.status(&format!(
            "{}: {errors} error{} in the workspace; nothing was planned",
            path.display(),
            if errors == 1 { "" } else { "s" }
        ));
        return Err(Failed);
    }
    match loaded.workspace {
        Some(ws) => Ok((ws, registries)),
        None => Err(Failed),
    }
}

/// Loads a workspace without resolving its credentials (for commands that
/// write no Secret, such as `snapshot`), printing every problem.
pub fn load_unresolved(
    path: &Path,
    out: &Output,
) -> Result<pullwarden_core::model::Workspace, Failed> {
    let mut loaded = pullwarden_spec::load(path, &ProcessEnvironment);
    loaded
        .problems
        .retain(|p| p.code != pullwarden_spec::diag::codes::CREDENTIAL_FILE_ABSENT);
    for problem in &loaded.problems {
        if problem.is_error() || !out.quiet() {
            out.report(&problem.to_report(&loaded.sources));
        }
    }
    if loaded.has_errors() {
        out.status(&format!(
            "{}: the workspace has errors; nothing was read",
            path.display()
        ));
        return Err(Failed);
    }
    loaded.workspace.ok_or(Failed)
}

/// The async runtime of one command (two workers: the work is I/O).
/// The async runtime of one command. Dropping it waits only briefly for
/// blocking tasks: a credential plugin that hangs past the request timeout
/// must not keep the process from exiting.
pub struct Runtime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Runtime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until dropped")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
        }
    }
}

pub fn runtime(out: &Output) -> Result<Runtime, Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map(|rt| Runtime(Some(rt)))
        .map_err(|e| {
            out.error(&format!("pullwarden: cannot start the async runtime: {e}"));
            Failed
        })
}

/// How the cluster is read: the one retry policy, bounded by `--request-timeout`;
/// only docker-config Secrets are listed (see [`read_live`] for the others).
pub(crate) fn read_options(cluster: &ClusterArgs) -> pullwarden_kube::ReadOptions {
    pullwarden_kube::ReadOptions {
        retry: retry_policy(cluster),
        secrets: pullwarden_kube::SecretSelection::PullSecrets,
        ..pullwarden_kube::ReadOptions::default()
    }
}

pub(crate) fn retry_policy(cluster: &ClusterArgs) -> pullwarden_kube::RetryPolicy {
    pullwarden_kube::RetryPolicy {
        request_timeout: cluster.request_timeout,
        ..pullwarden_kube::RetryPolicy::default()
    }
}

/// Connects to the cluster named by the kubeconfig flags.
pub fn connect(
    rt: &tokio::runtime::Runtime,
    cluster: &ClusterArgs,
    out: &Output,
) -> Result<kube::Client, Failed> {
    rt.block_on(pullwarden_kube::connect(
        cluster.kubeconfig.as_deref(),
        cluster.context.as_deref(),
        cluster.request_timeout,
    ))
    .map_err(|e| {
        out.report(&miette::Report::new(e));
        Failed
    })
}

/// Reads the live state from a snapshot, or from the cluster through `client`
/// (falling back to the `named` namespaces for namespace-scoped credentials),
/// with no workspace to look Secret names up for: see [`read_live_for`].
pub fn read_live(
    rt: &tokio::runtime::Runtime,
    source: LiveSource<'_>,
    named: &[String],
    options: &pullwarden_kube::ReadOptions,
    out: &Output,
) -> Result<LiveState, Failed> {
    read_live_for(rt, source, named, None, options, out)
}

/// [`read_live`], and, from the cluster with a workspace `ws`: after the read
/// (which lists only docker-config Secrets), the Secret names the workspace
/// wants that the read did not find are looked up by name
/// ([`pullwarden_kube::lookup_secrets`]), so a Secret of another type holding
/// one is still a conflict. Without a workspace (snapshot, import) only the
/// docker-config Secrets are read.
pub(crate) fn read_live_for(
    rt: &tokio::runtime::Runtime,
    source: LiveSource<'_>,
    named: &[String],
    ws: Option<&pullwarden_core::model::Workspace>,
    options: &pullwarden_kube::ReadOptions,
    out: &Output,
) -> Result<LiveState, Failed> {
    let started = std::time::Instant::now();
    let mut looked_up = 0;
    let result = match source {
        LiveSource::Snapshot(path) => {
            pullwarden_kube::read_live_files(path).map_err(miette::Report::new)
        }
        LiveSource::Cluster(client) => rt
            .block_on(async {
                // Planning reads the data of no Secret but its own and the
                // ones holding a PullSecret's name.
                let options = &pullwarden_kube::ReadOptions {
                    data_only_for: ws.map(|ws| {
                        std::sync::Arc::new(ws.pull_secrets.iter().map(|s| s.name.clone()).collect())
                    }),
                    ..options.clone()
                };
                let (mut state, scoped) =
                    pullwarden_kube::read_live_or_namespaces(client, named, options).await?;
                if let Some(ws) = ws {
                    // Only the keys matter: they do not depend on credentials.
                    let wanted: Vec<(String, String)> =
                        planner::desired(ws, &std::collections::BTreeMap::new(), &state)
                            .secrets
                            .into_keys()
                            .collect();
                    looked_up =
                        pullwarden_kube::lookup_secrets(client, &mut state, &wanted, options)
                            .await?;
                }
                Ok((state, scoped))
            })
            .map(|(state, scoped)| {
                if scoped {
                    out.status(&format!(
                        "pullwarden: these credentials cannot read the cluster as a whole; read only the {} namespace(s) the workspace names ({}); globs are not expanded",
                        named.len(),
                        named.join(", ")
                    ));
                }
                state
            })
            .map_err(|e: pullwarden_kube::ClusterError| miette::Report::new(e)),
    };
    let state = result.map_err(|report| {
        out.report(&report);
        Failed
    })?;
    out.info(&format!(
        "read {} namespaces, {} secrets, {} service accounts, {} role bindings from {} in {:.2?} ({looked_up} secret names looked up)",
        state.namespaces.len(),
        state.secrets.len(),
        state.service_accounts.len(),
        state.role_bindings.len(),
        match source {
            LiveSource::Snapshot(path) => path.display().to_string(),
            LiveSource::Cluster(_) => "the cluster".to_string(),
        },
        started.elapsed()
    ));
    Ok(state)
}

/// The live state from a snapshot (`--live`) or from the cluster the
/// kubeconfig flags name, for commands that do not write.
pub(crate) fn live_state(
    live: Option<&Path>,
    cluster: &ClusterArgs,
    ws: Option<&pullwarden_core::model::Workspace>,
    out: &Output,
) -> Result<LiveState, Failed> {
    let rt = runtime(out)?;
    let named = ws.map(named_namespaces).unwrap_or_default();
    let options = read_options(cluster);
    if let Some(path) = live {
        read_live_for(&rt, LiveSource::Snapshot(path), &named, ws, &options, out)
    } else {
        let client = connect(&rt, cluster, out)?;
        read_live_for(&rt, LiveSource::Cluster(&client), &named, ws, &options, out)
    }
}

/// The namespaces a workspace names exactly (targets inside its scope): what
/// namespace-scoped credentials can still read.
pub(crate) fn named_namespaces(ws: &pullwarden_core::model::Workspace) -> Vec<String> {
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

pub fn make_plan(
    ws: &pullwarden_core::model::Workspace,
    registries: &std::collections::BTreeMap<String, pullwarden_core::model::ResolvedRegistry>,
    live: &LiveState,
    adopt: bool,
) -> Planned {
    let key = DigestKey::from_bytes(random_bytes::<32>());
    let desired = planner::desired(ws, registries, live);
    let plan = planner::plan(ws, &desired, live, PlanOptions { adopt }, &key);
    Planned { plan, desired, key }
}

/// Writes through a temporary file in the same folder and renames it, so a
/// reader never sees half a file.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("plan"),
        std::process::id()
    ));
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // Owner-only, and never through a file (or link) that is already there.
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
