//! `pullwarden apply`: plan, show, confirm, execute; or execute a saved plan.

use std::path::Path;
use std::process::ExitCode;

use pullwarden_core::plan;
use pullwarden_core::render;
use pullwarden_core::saved;

use super::fleet;
use super::{
    Failed, LiveSource, connect, load_resolved, make_plan, named_namespaces, read_live_for,
    read_options, retry_policy, runtime,
};
use crate::output::Output;

/// `pullwarden apply`: exit 0 when everything was applied or there was nothing
/// to do; 1 when anything failed, was refused or was not confirmed.
pub fn apply(args: &crate::cli::ApplyArgs, out: &Output) -> ExitCode {
    match apply_inner(args, out) {
        Ok(code) => code,
        Err(Failed) => ExitCode::from(1),
    }
}

/// A saved plan read from disk: of one cluster, or of a fleet.
enum Saved {
    One(Box<saved::SavedPlan>),
    Fleet(saved::SavedFleetPlan),
}

fn apply_inner(args: &crate::cli::ApplyArgs, out: &Output) -> Result<ExitCode, Failed> {
    let saved = match &args.plan {
        Some(file) => Some(read_saved_plan(file, out)?),
        None => None,
    };
    let (ws, registries) = load_resolved(&args.path, out)?;
    let targets = fleet::targets(&ws, &args.clusters, &args.cluster, None, out)?;
    let rt = runtime(out)?;
    if let Some(targets) = targets {
        let saved = match saved {
            None => None,
            Some(Saved::Fleet(saved)) => Some(saved),
            Some(Saved::One(_)) => {
                out.error(&format!(
                    "pullwarden: refusing the saved plan: it was made for one cluster, and workspace {} names clusters (spec.clusters); nothing was written. Plan again.",
                    render::safe(&ws.name)
                ));
                return Err(Failed);
            }
        };
        return apply_fleet(args, &ws, &registries, &rt, &targets, saved.as_ref(), out);
    }
    let saved = match saved {
        None => None,
        Some(Saved::One(saved)) => Some(*saved),
        Some(Saved::Fleet(_)) => {
            out.error(&format!(
                "pullwarden: refusing the saved plan: it was made for a fleet, and workspace {} names no clusters; nothing was written. Plan again.",
                render::safe(&ws.name)
            ));
            return Err(Failed);
        }
    };
    let prepared = prepare(
        &rt,
        &ws,
        &registries,
        &args.cluster,
        saved.as_ref(),
        args.adopt,
        out,
    )?;
    let plan = &prepared.plan;
    out.data(&render::text(plan, out.style()));
    if !plan.errors.is_empty() {
        out.error("pullwarden: the plan has errors; nothing was applied");
        return Err(Failed);
    }
    if !plan.has_changes() {
        out.status("nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    if args.plan.is_none() && !args.auto_approve && !confirmed(out) {
        return Err(Failed);
    }
    execute(&rt, &prepared, args, &args.cluster, out)?;
    Ok(ExitCode::SUCCESS)
}

/// Asks once on the terminal; without one, refuses (`--auto-approve`).
fn confirmed(out: &Output) -> bool {
    if !out.can_prompt() {
        out.error(
            "pullwarden: not applying: no terminal to confirm on; pass --auto-approve (e.g. in CI)",
        );
        return false;
    }
    if !out.confirm("Apply these changes? Only 'yes' is accepted: ") {
        out.error("apply cancelled: nothing was written");
        return false;
    }
    true
}

/// One cluster, read and planned (a saved plan checked against it): ready to apply.
struct Prepared {
    client: kube::Client,
    plan: plan::Plan,
    desired: plan::Desired,
    live: std::sync::Arc<pullwarden_core::live::LiveState>,
}

/// Connects, reads and plans one cluster; with a saved plan, checks that it
/// is exactly what this cluster gets now (its preconditions, its cluster).
fn prepare(
    rt: &tokio::runtime::Runtime,
    ws: &pullwarden_core::model::Workspace,
    registries: &std::collections::BTreeMap<String, pullwarden_core::model::ResolvedRegistry>,
    cluster: &crate::cli::ClusterArgs,
    saved: Option<&saved::SavedPlan>,
    adopt: bool,
    out: &Output,
) -> Result<Prepared, Failed> {
    let client = connect(rt, cluster, out)?;
    let policy_task = super::access::start_policy_read(rt, &client, cluster);
    let live = read_live_for(
        rt,
        LiveSource::Cluster(&client),
        &named_namespaces(ws),
        Some(ws),
        &read_options(cluster),
        out,
    )?;
    let (mut plan, desired) = if let Some(saved) = saved {
        let fresh = make_plan(ws, registries, &live, saved.plan.adopt);
        if let Err(refusal) = saved::accept(saved, &ws.name, &live, &fresh.plan, &fresh.desired) {
            if let saved::Refusal::Stale(reasons) = &refusal {
                for reason in reasons {
                    out.error(&format!("stale: {reason}"));
                }
            }
            out.error(&format!(
                "pullwarden: refusing the saved plan: {refusal}; nothing was written. Plan again."
            ));
            return Err(Failed);
        }
        // Accepted: the saved changes are exactly the fresh ones, so the fresh
        // plan (with its schedule) is what runs.
        (fresh.plan, fresh.desired)
    } else {
        let planned = make_plan(ws, registries, &live, adopt);
        (planned.plan, planned.desired)
    };
    let policy = super::access::finish_policy_read(rt, policy_task, out)?;
    super::access::attach_access(&mut plan, ws, &live, &policy, out);
    Ok(Prepared {
        client,
        plan,
        desired,
        live: std::sync::Arc::new(live),
    })
}

/// Writes a prepared plan, reporting each change as it ends. `Err` when any
/// change did not succeed.
fn execute(
    rt: &tokio::runtime::Runtime,
    prepared: &Prepared,
    args: &crate::cli::ApplyArgs,
    cluster: &crate::cli::ClusterArgs,
    out: &Output,
) -> Result<(), Failed> {
    use pullwarden_kube::apply::{ApplyOptions, Hooks, OutcomeStatus};

    let plan = &prepared.plan;
    let options = ApplyOptions {
        concurrency: usize::from(args.concurrency),
        listed: Some(prepared.live.clone()),
        retry: retry_policy(cluster),
        ..ApplyOptions::default()
    };
    let total = plan.changes.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Each change is reported the moment it ends, so a run cut short (killed,
    // a lost connection) still leaves a record of what was written.
    let progress = |outcome: &pullwarden_kube::apply::Outcome| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        out.progress_done();
        let line = outcome_line(&plan.changes[outcome.index], &outcome.status);
        if outcome.status == OutcomeStatus::Done {
            out.status(&line);
        } else {
            out.error(&line);
        }
        out.progress(n, total, &describe_change(&plan.changes[outcome.index]));
    };
    let outcomes = rt.block_on(pullwarden_kube::apply::apply(
        &prepared.client,
        plan,
        &prepared.desired,
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
        out.error(&format!(
            "apply incomplete: {failed} of {total} changes did not succeed; fix the cause and run apply again: it converges"
        ));
        return Err(Failed);
    }
    out.status(&format!(
        "apply complete: {}",
        render::summary_line(&plan.summary())
    ));
    Ok(())
}

/// `apply` over a fleet: every cluster read and planned at once (a saved
/// plan checked per cluster), the plans shown grouped, one confirmation,
/// then every cluster whose plan is clean and has changes written at once.
/// A cluster that could not be planned, whose plan has errors or whose saved
/// plan was refused gets nothing written; the others are applied; exit 1.
fn apply_fleet(
    args: &crate::cli::ApplyArgs,
    ws: &pullwarden_core::model::Workspace,
    registries: &std::collections::BTreeMap<String, pullwarden_core::model::ResolvedRegistry>,
    rt: &tokio::runtime::Runtime,
    targets: &[fleet::Target],
    saved: Option<&saved::SavedFleetPlan>,
    out: &Output,
) -> Result<ExitCode, Failed> {
    use super::plan::Section;

    if let Some(saved) = saved {
        let unknown: Vec<&str> = saved
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .chain(saved.unplanned.iter().map(String::as_str))
            .filter(|name| !fleet::names(ws).iter().any(|n| n == name))
            .collect();
        if saved.workspace != ws.name || !unknown.is_empty() {
            out.error(&format!(
                "pullwarden: refusing the saved plan: it was made for workspace {}{}, not for this one; nothing was written. Plan again.",
                render::safe(&saved.workspace),
                if unknown.is_empty() {
                    String::new()
                } else {
                    format!(" with clusters this workspace does not name ({})", render::safe(&unknown.join(", ")))
                }
            ));
            return Err(Failed);
        }
    }
    let mut runs = fleet::run_each(targets, out, |target, out| {
        let saved = match saved {
            None => None,
            Some(fleet_plan) => {
                let Some(entry) = fleet_plan.clusters.iter().find(|c| c.name == target.name) else {
                    out.error(&format!(
                        "pullwarden: the saved plan holds no plan for cluster {} ({}); nothing was written there. Plan again.",
                        target.name,
                        if fleet_plan.unplanned.contains(&target.name) {
                            "it could not be planned when the plan was saved"
                        } else {
                            "it was not chosen when the plan was saved"
                        }
                    ));
                    return Err(Failed);
                };
                Some(&entry.saved)
            }
        };
        prepare(
            rt,
            &target.ws,
            registries,
            &target.cluster,
            saved,
            args.adopt,
            out,
        )
    });
    // Before anything is written: two parts on one cluster apply nowhere.
    fleet::refuse_shared_clusters(
        &mut runs,
        |prepared| prepared.live.cluster.as_ref(),
        "applied",
        out,
    );
    let sections: Vec<Section<'_>> = runs
        .iter()
        .map(|run| Section {
            name: &run.name,
            plan: match &run.result {
                Ok(prepared) => Ok(&prepared.plan),
                Err(Failed) => Err(&run.messages),
            },
        })
        .collect();
    out.data(&super::plan::fleet_text(&ws.name, &sections, out.style()));
    let to_apply: Vec<&str> = sections
        .iter()
        .filter(|s| s.outcome() == fleet::Outcome::Changes)
        .map(|s| s.name)
        .collect();
    let failed: Vec<&str> = sections
        .iter()
        .filter(|s| s.outcome() == fleet::Outcome::Error)
        .map(|s| s.name)
        .collect();
    if !failed.is_empty() {
        out.error(&format!(
            "pullwarden: nothing will be applied on {}: {} (see above)",
            if failed.len() == 1 {
                "this cluster"
            } else {
                "these clusters"
            },
            failed.join(", ")
        ));
    }
    if to_apply.is_empty() {
        out.status("nothing to do");
        return Ok(fleet::exit_code(
            sections.iter().map(Section::outcome),
            false,
        ));
    }
    if args.plan.is_none() && !args.auto_approve && !confirmed(out) {
        return Err(Failed);
    }
    let chosen: Vec<fleet::Target> = targets
        .iter()
        .filter(|t| to_apply.contains(&t.name.as_str()))
        .cloned()
        .collect();
    let applied = fleet::run_each(&chosen, out, |target, out| {
        let prepared = runs
            .iter()
            .find(|run| run.name == target.name)
            .and_then(|run| run.result.as_ref().ok())
            .expect("only planned clusters are applied");
        execute(rt, prepared, args, &target.cluster, out)
    });
    let apply_failed: Vec<&str> = applied
        .iter()
        .filter(|run| run.result.is_err())
        .map(|run| run.name.as_str())
        .collect();
    let outcomes = sections.iter().map(|s| {
        if apply_failed.contains(&s.name) {
            fleet::Outcome::Error
        } else {
            s.outcome()
        }
    });
    let code = fleet::exit_code(outcomes, false);
    let ok = applied.len() - apply_failed.len();
    out.status(&format!(
        "fleet: applied on {} of {}{}{}",
        fleet::clusters(ok),
        sections.len(),
        if apply_failed.is_empty() {
            String::new()
        } else {
            format!("; apply incomplete on {}", apply_failed.join(", "))
        },
        if failed.is_empty() {
            String::new()
        } else {
            format!("; nothing applied on {}", failed.join(", "))
        }
    ));
    Ok(code)
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

/// The field that says which of the two forms a saved plan is.
#[derive(serde::Deserialize)]
struct Kind {
    #[serde(default)]
    kind: String,
}

fn read_saved_plan(file: &Path, out: &Output) -> Result<Saved, Failed> {
    let limit = pullwarden_input::Limit::SAVED_PLAN;
    let text = pullwarden_input::read_to_string(file, limit).map_err(|e| {
        out.error(&format!(
            "pullwarden: cannot read the saved plan {}: {e}",
            file.display()
        ));
        Failed
    })?;
    let not_a_plan = |e: &serde_json::Error| {
        out.error(&format!(
            "pullwarden: {} is not a saved plan (line {}, column {})",
            file.display(),
            e.line(),
            e.column()
        ));
        Failed
    };
    let kind: Kind = serde_json::from_str(&text).map_err(|e| not_a_plan(&e))?;
    let checked = if kind.kind == saved::SAVED_FLEET_PLAN_KIND {
        let saved: saved::SavedFleetPlan =
            serde_json::from_str(&text).map_err(|e| not_a_plan(&e))?;
        saved.check_kind().map(|()| Saved::Fleet(saved))
    } else {
        let saved: saved::SavedPlan = serde_json::from_str(&text).map_err(|e| not_a_plan(&e))?;
        saved::check_kind(&saved).map(|()| Saved::One(Box::new(saved)))
    };
    checked.map_err(|refusal| {
        out.error(&format!("pullwarden: {}: {refusal}", file.display()));
        Failed
    })
}
