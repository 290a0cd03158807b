//! `pullwarden plan`: the plan, in text, markdown or JSON, optionally saved.

use std::process::ExitCode;

use pullwarden_core::render;
use pullwarden_core::saved;

use super::access::{
    PolicyRead, attach_access, finish_policy_read, snapshot_policy, start_policy_read,
};
use super::{
    Failed, LiveSource, connect, load_resolved, make_plan, named_namespaces, random_bytes,
    read_live_for, read_options, runtime, write_atomically,
};
use crate::cli::{PlanArgs, PlanFormat};
use crate::output::Output;

pub fn plan(args: &PlanArgs, out: &Output) -> ExitCode {
    let Ok((ws, registries)) = load_resolved(&args.path, out) else {
        return ExitCode::from(1);
    };
    let Ok((live, read)) = live_and_policy(args, &ws, out) else {
        return ExitCode::from(1);
    };
    let mut planned = make_plan(&ws, &registries, &live, args.adopt);
    attach_access(&mut planned.plan, &ws, &live, &read, out);
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
        out.status(&format!("saved the plan to {}", file.display()));
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

/// The live state and the RBAC policy the access section is evaluated on:
/// from a snapshot, its RoleBindings; from the cluster, read alongside.
fn live_and_policy(
    args: &PlanArgs,
    ws: &pullwarden_core::model::Workspace,
    out: &Output,
) -> Result<(pullwarden_core::live::LiveState, PolicyRead), Failed> {
    let rt = runtime(out)?;
    let named = named_namespaces(ws);
    let options = read_options(&args.cluster);
    if let Some(path) = &args.live {
        let live = read_live_for(
            &rt,
            LiveSource::Snapshot(path),
            &named,
            Some(ws),
            &options,
            out,
        )?;
        let read = snapshot_policy(&live);
        Ok((live, read))
    } else {
        let client = connect(&rt, &args.cluster, out)?;
        let task = start_policy_read(&rt, &client, &args.cluster);
        let live = read_live_for(
            &rt,
            LiveSource::Cluster(&client),
            &named,
            Some(ws),
            &options,
            out,
        )?;
        let read = finish_policy_read(&rt, task, out)?;
        Ok((live, read))
    }
}
