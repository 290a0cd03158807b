//! `pullwarden plan`: the plan, in text, markdown or JSON, optionally saved.

use std::process::ExitCode;

use pullwarden_core::render;
use pullwarden_core::saved;

use super::{live_state, load_resolved, make_plan, random_bytes, write_atomically};
use crate::cli::{PlanArgs, PlanFormat};
use crate::output::Output;

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
