//! `pullwarden apply`: plan, show, confirm, execute; or execute a saved plan.

use std::path::Path;
use std::process::ExitCode;

use pullwarden_core::plan;
use pullwarden_core::render;
use pullwarden_core::saved;

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

fn apply_inner(args: &crate::cli::ApplyArgs, out: &Output) -> Result<ExitCode, Failed> {
    use pullwarden_kube::apply::{ApplyOptions, Hooks, OutcomeStatus};

    let saved = match &args.plan {
        Some(file) => Some(read_saved_plan(file, out)?),
        None => None,
    };
    let (ws, registries) = load_resolved(&args.path, out)?;
    let rt = runtime(out)?;
    let client = connect(&rt, &args.cluster, out)?;
    let policy_task = super::access::start_policy_read(&rt, &client, &args.cluster);
    let live = read_live_for(
        &rt,
        LiveSource::Cluster(&client),
        &named_namespaces(&ws),
        Some(&ws),
        &read_options(&args.cluster),
        out,
    )?;
    let (mut plan, desired) = if let Some(saved) = saved {
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
    let policy = super::access::finish_policy_read(&rt, policy_task, out)?;
    super::access::attach_access(&mut plan, &ws, &live, &policy, out);
    out.data(&render::text(&plan, out.style()));
    if !plan.errors.is_empty() {
        out.status("pullwarden: the plan has errors; nothing was applied");
        return Err(Failed);
    }
    if !plan.has_changes() {
        out.status("nothing to do");
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
            out.status("apply cancelled: nothing was written");
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
            "apply incomplete: {failed} of {total} changes did not succeed; fix the cause and run apply again: it converges"
        ));
        return Err(Failed);
    }
    out.status(&format!(
        "apply complete: {}",
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
