//! `pullwarden drift`: how the cluster differs from the workspace, for CI.
//! With a fleet: one report per cluster, grouped, and one exit code.

use std::process::ExitCode;

use pullwarden_core::drift::{self, DriftReport};
use pullwarden_core::render;

use super::fleet::{self, Outcome};
use super::{Failed, live_state, load_resolved, make_plan, write_atomically};
use crate::cli::PlanFormat;
use crate::output::Output;

/// `pullwarden drift`: 0 in sync, 2 drift or pending work, 1 error.
pub fn drift(args: &crate::cli::DriftArgs, out: &Output) -> ExitCode {
    let Ok((ws, registries)) = load_resolved(&args.path, out) else {
        return ExitCode::from(1);
    };
    let Ok(targets) = fleet::targets(
        &ws,
        &args.clusters,
        &args.cluster,
        args.live.as_deref(),
        out,
    ) else {
        return ExitCode::from(1);
    };
    if let Some(targets) = targets {
        let mut runs = fleet::run_each(&targets, out, |target, out| {
            let live = fleet::live_of(target, out)?;
            let live = live_state(live, &target.cluster, Some(&target.ws), out)?;
            let planned = make_plan(&target.ws, &registries, &live, false);
            let mut report = drift::classify(&planned.plan, &live);
            // Every medium names the workspace: there, it names the cluster too.
            report.workspace = format!("{} (cluster {})", report.workspace, target.name);
            Ok((report, live.cluster))
        });
        fleet::refuse_shared_clusters(&mut runs, |(_, cluster)| cluster.as_ref(), "compared", out);
        let reports: Vec<(&str, Result<&DriftReport, &[String]>)> = runs
            .iter()
            .map(|run| {
                (
                    run.name.as_str(),
                    match &run.result {
                        Ok((report, _)) => Ok(report),
                        Err(Failed) => Err(run.messages.as_slice()),
                    },
                )
            })
            .collect();
        return print(args, &ws.name, &reports, out);
    }
    let Ok(live) = live_state(args.live.as_deref(), &args.cluster, Some(&ws), out) else {
        return ExitCode::from(1);
    };
    let planned = make_plan(&ws, &registries, &live, false);
    let report = drift::classify(&planned.plan, &live);
    print(args, &ws.name, &[("", Ok(&report))], out)
}

fn outcome(report: Result<&DriftReport, &[String]>) -> Outcome {
    match report {
        Err(_) => Outcome::Error,
        Ok(report) if !report.errors.is_empty() => Outcome::Error,
        Ok(report) if report.in_sync => Outcome::Clean,
        Ok(_) => Outcome::Changes,
    }
}

const NOTHING_COMPARED: &str = "This cluster could not be compared with the workspace.";

/// Prints the reports: one (`name` empty) as always, or a fleet's, a
/// section per cluster.
fn print(
    args: &crate::cli::DriftArgs,
    workspace: &str,
    reports: &[(&str, Result<&DriftReport, &[String]>)],
    out: &Output,
) -> ExitCode {
    let single = match reports {
        [("", Ok(report))] => Some(*report),
        _ => None,
    };
    let github = std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true");
    let markdown = || match single {
        Some(report) => drift::markdown(report),
        None => fleet_markdown(workspace, reports),
    };
    match (args.format, single) {
        (PlanFormat::Text, Some(report)) => {
            out.data(&drift::text(report));
            if github {
                out.data(&drift::github_annotations(report));
            }
        }
        (PlanFormat::Text, None) => {
            out.data(&fleet_text(workspace, reports));
            if github {
                for (name, report) in reports {
                    if let Ok(report) = report {
                        out.data(&drift::github_annotations_for_cluster(report, name));
                    }
                }
            }
        }
        (PlanFormat::Markdown, _) => out.data(&markdown()),
        (PlanFormat::Json, Some(report)) => out.json(report),
        (PlanFormat::Json, None) => out.json(&fleet_json(workspace, reports)),
    }
    if github && let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write as _;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .and_then(|mut f| f.write_all(markdown().as_bytes()));
        if let Err(e) = written {
            out.error(&format!("pullwarden: cannot write the job summary: {e}"));
        }
    }
    if let Some(file) = &args.junit {
        let xml = match single {
            Some(report) => drift::junit(report),
            None => drift::junit_fleet(
                &reports
                    .iter()
                    .map(|(name, report)| {
                        (
                            *name,
                            report.map_err(|messages| fleet::error_lines(messages).join("; ")),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
        };
        if let Err(e) = write_atomically(file, &xml) {
            out.error(&format!("pullwarden: cannot write {}: {e}", file.display()));
            return ExitCode::from(1);
        }
    }
    fleet::exit_code(reports.iter().map(|(_, report)| outcome(*report)), true)
}

fn fleet_text(workspace: &str, reports: &[(&str, Result<&DriftReport, &[String]>)]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for (name, report) in reports {
        text.push_str(&fleet::text_heading(name));
        match report {
            Ok(report) => text.push_str(&drift::text(report)),
            Err(messages) => text.push_str(&fleet::text_failure(messages, NOTHING_COMPARED)),
        }
        text.push('\n');
    }
    let _ = writeln!(
        text,
        "Fleet: workspace {}, {}",
        render::safe(workspace),
        fleet::clusters(reports.len())
    );
    let width = reports
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    for (name, report) in reports {
        let _ = writeln!(
            text,
            "  {:<width$}  {}",
            render::safe(name),
            summary_word(*report)
        );
    }
    text
}

fn summary_word(report: Result<&DriftReport, &[String]>) -> String {
    match report {
        Err(_) => "error: not compared".to_owned(),
        Ok(report) if report.in_sync => "in sync".to_owned(),
        Ok(report) => format!(
            "{} drifted, {} pending{}",
            report.drift,
            report.pending,
            if report.errors.is_empty() {
                String::new()
            } else {
                format!(", {} error(s)", report.errors.len())
            }
        ),
    }
}

fn fleet_markdown(workspace: &str, reports: &[(&str, Result<&DriftReport, &[String]>)]) -> String {
    use std::fmt::Write as _;
    let md = |s: &str| pullwarden_core::escape::markdown(&render::safe(s));
    let mut text = format!(
        "### pullwarden drift: workspace {}, {}\n\n| cluster | result |\n|---|---|\n",
        md(workspace),
        fleet::clusters(reports.len())
    );
    for (name, report) in reports {
        let icon = if outcome(*report) == Outcome::Error {
            ":x: "
        } else {
            ""
        };
        let _ = writeln!(
            text,
            "| `{}` | {icon}{} |",
            md(name),
            md(&summary_word(*report))
        );
    }
    for (name, report) in reports {
        let heading = format!("#### cluster `{}`", md(name));
        text.push('\n');
        match report {
            Ok(report) => {
                text.push_str(&fleet::replace_first_line(
                    &drift::markdown(report),
                    &heading,
                ));
            }
            Err(messages) => {
                text.push_str(&heading);
                text.push_str("\n\n");
                text.push_str(&fleet::markdown_failure(messages, NOTHING_COMPARED));
            }
        }
    }
    text
}

/// `--format json` with a fleet: an object per cluster (its report, or its
/// errors) and whether the fleet is in sync.
fn fleet_json(
    workspace: &str,
    reports: &[(&str, Result<&DriftReport, &[String]>)],
) -> serde_json::Value {
    let clusters: Vec<serde_json::Value> = reports
        .iter()
        .map(|(name, report)| match report {
            Ok(report) => serde_json::json!({"name": name, "status": "compared", "report": report}),
            Err(messages) => serde_json::json!({
                "name": name,
                "status": "error",
                "errors": fleet::error_lines(messages),
            }),
        })
        .collect();
    serde_json::json!({
        "format_version": 1,
        "workspace": workspace,
        "clusters": clusters,
        "in_sync": reports.iter().all(|(_, r)| outcome(*r) == Outcome::Clean),
        "has_errors": reports.iter().any(|(_, r)| outcome(*r) == Outcome::Error),
    })
}
