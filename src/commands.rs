//! The commands that talk to a cluster: loading, resolving, reading the live
//! state, planning, and printing. Exit codes are decided here.

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

/// Reads the live state from a snapshot or from the cluster.
pub fn read_live(
    live: Option<&Path>,
    cluster: &ClusterArgs,
    out: &Output,
) -> Result<LiveState, Failed> {
    if let Some(path) = live {
        return pullwarden_kube::read_live_files(path).map_err(|e| {
            out.report(&miette::Report::new(e));
            Failed
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            out.status(&format!("pullwarden: cannot start the async runtime: {e}"));
            Failed
        })?;
    runtime
        .block_on(async {
            let client =
                pullwarden_kube::connect(cluster.kubeconfig.as_deref(), cluster.context.as_deref())
                    .await?;
            pullwarden_kube::read_live(&client).await
        })
        .map_err(|e| {
            out.report(&miette::Report::new(e));
            Failed
        })
}

pub fn make_plan(
    path: &Path,
    live: Option<&Path>,
    cluster: &ClusterArgs,
    adopt: bool,
    out: &Output,
) -> Result<Planned, Failed> {
    let (ws, registries) = load_resolved(path, out)?;
    let live = read_live(live, cluster, out)?;
    let key = DigestKey::from_bytes(random_bytes::<32>());
    let desired = plan::desired(&ws, &registries, &live);
    let plan = plan::plan(&ws, &desired, &live, PlanOptions { adopt }, &key);
    Ok(Planned { plan, desired, key })
}

pub fn plan(args: &PlanArgs, out: &Output) -> ExitCode {
    let Ok(planned) = make_plan(
        &args.path,
        args.live.as_deref(),
        &args.cluster,
        args.adopt,
        out,
    ) else {
        return ExitCode::from(1);
    };
    let plan = &planned.plan;
    match args.format {
        PlanFormat::Text => out.data(&render::text(plan, out.style())),
        PlanFormat::Markdown => out.data(&render::markdown(plan)),
        PlanFormat::Json => out.data(&render::json(plan)),
    }
    if let Some(file) = &args.out {
        let salt = random_bytes::<16>();
        let saved = saved::save(plan, &planned.desired, &salt, &planned.key);
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
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("plan"),
        std::process::id()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
