//! The commands that talk to a cluster: loading, resolving, reading the live
//! state, planning, and printing. Exit codes are decided here.

pub mod can_pull;
pub mod check_registries;

use std::path::Path;
use std::process::ExitCode;

use pullwarden_core::live::LiveState;
use pullwarden_core::plan::{self, Desired, Plan, PlanOptions};
use pullwarden_core::render;
use pullwarden_core::saved;
use pullwarden_core::secret::DigestKey;
use pullwarden_spec::credentials::{self, ProcessEnvironment};
use rand::RngCore as _;

use crate::cli::{ClusterArgs, PlanArgs, PlanFormat};
use crate::output::Output;

/// The usual failure: already reported, exit 1.
pub struct Failed;

/// A workspace loaded, credentials resolved, the live state read: ready to plan.
pub struct Planned {
    pub plan: Plan,
    pub desired: Desired,
    pub key: DigestKey,
}

fn random_bytes<const N: usize>() -> [u8; N] {
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
        .retain(|p| p.code != "pullwarden::spec::credential_file_absent");
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
            out.status(&format!("pullwarden: cannot start the async runtime: {e}"));
            Failed
        })
}

/// How the cluster is read: the one retry policy, bounded by `--request-timeout`;
/// only docker-config Secrets are listed (see [`read_live`] for the others).
fn read_options(cluster: &ClusterArgs) -> pullwarden_kube::ReadOptions {
    pullwarden_kube::ReadOptions {
        retry: retry_policy(cluster),
        secrets: pullwarden_kube::SecretSelection::PullSecrets,
        ..pullwarden_kube::ReadOptions::default()
    }
}

fn retry_policy(cluster: &ClusterArgs) -> pullwarden_kube::RetryPolicy {
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
    live: Option<&Path>,
    client: Option<&kube::Client>,
    named: &[String],
    options: &pullwarden_kube::ReadOptions,
    out: &Output,
) -> Result<LiveState, Failed> {
    read_live_for(rt, live, client, named, None, options, out)
}

/// [`read_live`], and, from the cluster with a workspace `ws`: after the read
/// (which lists only docker-config Secrets), the Secret names the workspace
/// wants that the read did not find are looked up by name
/// ([`pullwarden_kube::lookup_secrets`]), so a Secret of another type holding
/// one is still a conflict. Without a workspace (snapshot, import) only the
/// docker-config Secrets are read.
fn read_live_for(
    rt: &tokio::runtime::Runtime,
    live: Option<&Path>,
    client: Option<&kube::Client>,
    named: &[String],
    ws: Option<&pullwarden_core::model::Workspace>,
    options: &pullwarden_kube::ReadOptions,
    out: &Output,
) -> Result<LiveState, Failed> {
    let started = std::time::Instant::now();
    let mut looked_up = 0;
    let result = match (live, client) {
        (Some(path), _) => pullwarden_kube::read_live_files(path).map_err(miette::Report::new),
        (None, Some(client)) => rt
            .block_on(async {
                let (mut state, scoped) =
                    pullwarden_kube::read_live_or_namespaces(client, named, options).await?;
                if let Some(ws) = ws {
                    // Only the keys matter: they do not depend on credentials.
                    let wanted: Vec<(String, String)> =
                        plan::desired(ws, &std::collections::BTreeMap::new(), &state)
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
        (None, None) => unreachable!("a client or a snapshot is given"),
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
        live.map_or_else(|| "the cluster".to_string(), |p| p.display().to_string()),
        started.elapsed()
    ));
    Ok(state)
}

/// The live state from a snapshot (`--live`) or from the cluster the
/// kubeconfig flags name, for commands that do not write.
fn live_state(
    live: Option<&Path>,
    cluster: &ClusterArgs,
    ws: Option<&pullwarden_core::model::Workspace>,
    out: &Output,
) -> Result<LiveState, Failed> {
    let rt = runtime(out)?;
    let client = match live {
        None => Some(connect(&rt, cluster, out)?),
        Some(_) => None,
    };
    let named = ws.map(named_namespaces).unwrap_or_default();
    read_live_for(
        &rt,
        live,
        client.as_ref(),
        &named,
        ws,
        &read_options(cluster),
        out,
    )
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

pub fn make_plan(
    ws: &pullwarden_core::model::Workspace,
    registries: &std::collections::BTreeMap<String, pullwarden_core::model::ResolvedRegistry>,
    live: &LiveState,
    adopt: bool,
) -> Planned {
    let key = DigestKey::from_bytes(random_bytes::<32>());
    let desired = plan::desired(ws, registries, live);
    let plan = plan::plan(ws, &desired, live, PlanOptions { adopt }, &key);
    Planned { plan, desired, key }
}

pub fn plan(args: &PlanArgs, out: &Output) -> ExitCode {
    let Ok((ws, registries)) = load_resolved(&args.path, out) else {
        return ExitCode::from(1);
    };
    let Ok(live) = live_state(args.live.as_deref(), &args.cluster, Some(&ws), out) else {
        return ExitCode::from(1);
    };
    let planned = make_plan(&ws, &registries, &live, args.adopt);
    let plan = &planned.plan;
    match args.format {
        PlanFormat::Text => out.data(&render::text(plan, out.style())),
        PlanFormat::Markdown => out.data(&render::markdown(plan)),
        PlanFormat::Json => out.data(&render::json(plan)),
    }
    if let Some(file) = &args.out {
        let salt = random_bytes::<16>();
        let saved = saved::save(
            plan,
            &planned.desired,
            live.cluster.as_ref(),
            &salt,
            &planned.key,
        );
        let text = serde_json::to_string_pretty(&saved).expect("a saved plan serializes") + "\n";
        if let Err(e) = write_atomically(file, &text) {
            out.status(&format!("pullwarden: cannot write {}: {e}", file.display()));
            return ExitCode::from(1);
        }
        out.status(&format!("Saved the plan to {}.", file.display()));
    }
    if !plan.errors.is_empty() {
        out.status(&format!(
            "pullwarden: the plan has {} error{}; apply would refuse it",
            plan.errors.len(),
            if plan.errors.len() == 1 { "" } else { "s" }
        ));
        return ExitCode::from(1);
    }
    if args.detailed_exitcode && plan.has_changes() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
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

/// `pullwarden apply`: exit 0 when everything was applied or there was nothing
/// to do; 1 when anything failed, was refused or was not confirmed.
pub fn apply(args: &crate::cli::ApplyArgs, out: &Output) -> ExitCode {
    match apply_inner(args, out) {
        Ok(code) => code,
        Err(Failed) => ExitCode::from(1),
    }
}

fn apply_inner(args: &crate::cli::ApplyArgs, out: &Output) -> Result<ExitCode, Failed> {
    use pullwarden_kube::apply::{ApplyOptions, Hooks, OutcomeStatus};

    let saved = match &args.plan {
        Some(file) => Some(read_saved_plan(file, out)?),
        None => None,
    };
    let (ws, registries) = load_resolved(&args.path, out)?;
    let rt = runtime(out)?;
    let client = connect(&rt, &args.cluster, out)?;
    let live = read_live_for(
        &rt,
        None,
        Some(&client),
        &named_namespaces(&ws),
        Some(&ws),
        &read_options(&args.cluster),
        out,
    )?;
    let (plan, desired) = if let Some(saved) = saved {
        let fresh = make_plan(&ws, &registries, &live, saved.plan.adopt);
        if let Err(refusal) = saved::accept(&saved, &ws.name, &live, &fresh.plan, &fresh.desired) {
            if let saved::Refusal::Stale(reasons) = &refusal {
                for reason in reasons {
                    out.status(&format!("stale: {reason}"));
                }
            }
            out.status(&format!(
                "pullwarden: refusing the saved plan: {refusal}; nothing was written. Plan again."
            ));
            return Err(Failed);
        }
        // Accepted: the saved changes are exactly the fresh ones, so the fresh
        // plan (with its schedule) is what runs.
        (fresh.plan, fresh.desired)
    } else {
        let planned = make_plan(&ws, &registries, &live, args.adopt);
        (planned.plan, planned.desired)
    };
    out.data(&render::text(&plan, out.style()));
    if !plan.errors.is_empty() {
        out.status("pullwarden: the plan has errors; nothing was applied");
        return Err(Failed);
    }
    if !plan.has_changes() {
        out.status("Nothing to do.");
        return Ok(ExitCode::SUCCESS);
    }
    if args.plan.is_none() && !args.auto_approve {
        if !out.can_prompt() {
            out.status(
                "pullwarden: not applying: no terminal to confirm on; pass --auto-approve (e.g. in CI)",
            );
            return Err(Failed);
        }
        if !out.confirm("Apply these changes? Only 'yes' is accepted: ") {
            out.status("Apply cancelled; nothing was written.");
            return Err(Failed);
        }
    }
    let options = ApplyOptions {
        concurrency: usize::from(args.concurrency),
        listed: Some(std::sync::Arc::new(live)),
        retry: retry_policy(&args.cluster),
        ..ApplyOptions::default()
    };
    let total = plan.changes.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Each change is reported the moment it ends, so a run cut short (killed,
    // a lost connection) still leaves a record of what was written.
    let progress = |outcome: &pullwarden_kube::apply::Outcome| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        out.progress_done();
        out.status(&outcome_line(&plan.changes[outcome.index], &outcome.status));
        out.progress(n, total, &describe_change(&plan.changes[outcome.index]));
    };
    let outcomes = rt.block_on(pullwarden_kube::apply::apply(
        &client,
        &plan,
        &desired,
        &options,
        &Hooks::default(),
        &progress,
    ));
    out.progress_done();
    let failed = outcomes
        .iter()
        .filter(|o| o.status != OutcomeStatus::Done)
        .count();
    if failed > 0 {
        out.status(&format!(
            "Apply incomplete: {failed} of {total} changes did not succeed. Fix the cause and run apply again: it converges."
        ));
        return Err(Failed);
    }
    out.status(&format!(
        "Apply complete: {}.",
        render::summary_line(&plan.summary())
    ));
    Ok(ExitCode::SUCCESS)
}

fn describe_change(change: &plan::Change) -> String {
    render::change_title(change)
}

/// The line apply prints when a change ends.
fn outcome_line(change: &plan::Change, status: &pullwarden_kube::apply::OutcomeStatus) -> String {
    use pullwarden_kube::apply::OutcomeStatus;
    match status {
        OutcomeStatus::Done => format!("done     {}", describe_change(change)),
        OutcomeStatus::Failed(reason) => {
            format!("FAILED   {}: {reason}", describe_change(change))
        }
        OutcomeStatus::Skipped(reason) => {
            format!("skipped  {}: {reason}", describe_change(change))
        }
    }
}

fn read_saved_plan(file: &Path, out: &Output) -> Result<saved::SavedPlan, Failed> {
    let limit = pullwarden_input::Limit::SAVED_PLAN;
    let text = pullwarden_input::read_to_string(file, limit).map_err(|e| {
        out.status(&format!(
            "pullwarden: cannot read the saved plan {}: {e}",
            file.display()
        ));
        Failed
    })?;
    let saved: saved::SavedPlan = serde_json::from_str(&text).map_err(|e| {
        out.status(&format!(
            "pullwarden: {} is not a saved plan (line {}, column {})",
            file.display(),
            e.line(),
            e.column()
        ));
        Failed
    })?;
    if let Err(refusal) = saved::check_kind(&saved) {
        out.status(&format!("pullwarden: {}: {refusal}", file.display()));
        return Err(Failed);
    }
    Ok(saved)
}

/// `pullwarden drift`: 0 in sync, 2 drift or pending work, 1 error.
pub fn drift(args: &crate::cli::DriftArgs, out: &Output) -> ExitCode {
    use pullwarden_core::drift;

    let Ok((ws, registries)) = load_resolved(&args.path, out) else {
        return ExitCode::from(1);
    };
    let Ok(live) = live_state(args.live.as_deref(), &args.cluster, Some(&ws), out) else {
        return ExitCode::from(1);
    };
    let planned = make_plan(&ws, &registries, &live, false);
    let report = drift::classify(&planned.plan, &live);
    let github = std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true");
    match args.format {
        PlanFormat::Text => {
            out.data(&drift::text(&report));
            if github {
                out.data(&drift::github_annotations(&report));
            }
        }
        PlanFormat::Markdown => out.data(&drift::markdown(&report)),
        PlanFormat::Json => out.json(&report),
    }
    if github && let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .and_then(|mut f| f.write_all(drift::markdown(&report).as_bytes()));
        if let Err(e) = written {
            out.status(&format!("pullwarden: cannot write the job summary: {e}"));
        }
    }
    if let Some(file) = &args.junit
        && let Err(e) = write_atomically(file, &drift::junit(&report))
    {
        out.status(&format!("pullwarden: cannot write {}: {e}", file.display()));
        return ExitCode::from(1);
    }
    if !report.errors.is_empty() {
        return ExitCode::from(1);
    }
    if report.in_sync {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// `pullwarden snapshot`: the live state, credentials digested, as JSON.
pub fn snapshot(args: &crate::cli::SnapshotArgs, out: &Output) -> ExitCode {
    let Ok(rt) = runtime(out) else {
        return ExitCode::from(1);
    };
    let Ok(client) = connect(&rt, &args.cluster, out) else {
        return ExitCode::from(1);
    };
    // Every Secret, whatever its type: a snapshot stands in for the cluster
    // in `plan --live` for any workspace, so it cannot know which names matter.
    let options = pullwarden_kube::ReadOptions {
        secrets: pullwarden_kube::SecretSelection::All,
        ..read_options(&args.cluster)
    };
    let Ok(live) = read_live(&rt, None, Some(&client), &[], &options, out) else {
        return ExitCode::from(1);
    };
    let salt = random_bytes::<16>();
    let text = pullwarden_kube::snapshot::snapshot_json(
        &live,
        &salt,
        pullwarden_core::secret::SLOW_DIGEST_ITERATIONS,
        DigestKey::from_bytes(random_bytes::<32>()),
    );
    match &args.out {
        None => out.data(&text),
        Some(file) => {
            if let Err(e) = write_atomically(file, &text) {
                out.status(&format!("pullwarden: cannot write {}: {e}", file.display()));
                return ExitCode::from(1);
            }
            out.status(&format!(
                "Wrote {} namespaces, {} secrets, {} service accounts, {} role bindings to {}.",
                live.namespaces.len(),
                live.secrets.len(),
                live.service_accounts.len(),
                live.role_bindings.len(),
                file.display()
            ));
        }
    }
    ExitCode::SUCCESS
}

/// `pullwarden import`: writes a starting workspace; 0 on success.
pub fn import(args: &crate::cli::ImportArgs, out: &Output) -> ExitCode {
    use pullwarden_core::names::{NamespacePattern, dns_label_problem};

    if let Some(problem) = dns_label_problem(&args.name) {
        out.status(&format!("pullwarden: --name `{}` {problem}", args.name));
        return ExitCode::from(1);
    }
    let mut patterns = Vec::new();
    for pattern in &args.namespaces {
        match NamespacePattern::parse(pattern) {
            Ok(p) => patterns.push(p),
            Err(reason) => {
                out.status(&format!("pullwarden: --namespace `{pattern}` {reason}"));
                return ExitCode::from(1);
            }
        }
    }
    if args.out.exists() && std::fs::read_dir(&args.out).map_or(true, |mut d| d.next().is_some()) {
        out.status(&format!(
            "pullwarden: {} exists and is not an empty folder; nothing was written",
            args.out.display()
        ));
        return ExitCode::from(1);
    }
    let Ok(live) = live_state(args.live.as_deref(), &args.cluster, None, out) else {
        return ExitCode::from(1);
    };
    let imported = pullwarden_core::import::import(
        &live,
        &args.name,
        &patterns,
        &DigestKey::from_bytes(random_bytes::<32>()),
    );
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        out.status(&format!(
            "pullwarden: cannot create {}: {e}",
            args.out.display()
        ));
        return ExitCode::from(1);
    }
    for (name, text) in &imported.files {
        if let Err(e) = write_atomically(&args.out.join(name), text) {
            out.status(&format!("pullwarden: cannot write {name}: {e}"));
            return ExitCode::from(1);
        }
    }
    for skipped in &imported.skipped {
        out.status(&format!("skipped: {skipped}"));
    }
    out.status(&format!(
        "Wrote {} files to {}. Set the {} variables listed in credentials.env.example, then run `pullwarden plan {} --adopt`.",
        imported.files.len(),
        args.out.display(),
        imported.variables.len(),
        args.out.display()
    ));
    ExitCode::SUCCESS
}
