//! `pullwarden drift`: how the cluster differs from the workspace, for CI.

use std::process::ExitCode;

use super::{live_state, load_resolved, make_plan, write_atomically};
use crate::cli::PlanFormat;
use crate::output::Output;

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
