//! `pullwarden validate`: load and check a workspace, every problem at once;
//! `--resolve` also resolves credentials, `--check-registries` logs in once
//! per registry.

use std::path::Path;
use std::process::ExitCode;

use pullwarden_spec::credentials::{self, ProcessEnvironment};
use pullwarden_spec::diag::ProblemData;
use serde::Serialize;

use crate::cli::{ValidateArgs, ValidateFormat};
use crate::output::Output;

/// `--format json` of `validate` (documented in the README).
#[derive(Serialize)]
struct ValidateReport {
    /// Version of this JSON shape.
    format_version: u32,
    valid: bool,
    errors: usize,
    warnings: usize,
    problems: Vec<ProblemData>,
}

pub fn validate(args: &ValidateArgs, out: &Output) -> ExitCode {
    let env = ProcessEnvironment;
    let mut loaded = pullwarden_spec::load(&args.path, &env);
    if (args.resolve || args.check_registries)
        && !loaded.has_errors()
        && let Some(ws) = &loaded.workspace
    {
        let (resolved, problems) = credentials::resolve(ws, &env);
        // Absent files were noted while loading; resolving makes them errors.
        loaded
            .problems
            .retain(|p| p.code != pullwarden_spec::diag::codes::CREDENTIAL_FILE_ABSENT);
        let resolved_cleanly = !problems
            .iter()
            .any(pullwarden_spec::diag::Problem::is_error);
        loaded.problems.extend(problems);
        if args.check_registries && resolved_cleanly {
            loaded.problems.extend(super::check_registries::check(
                ws,
                &resolved,
                &super::check_registries::Reach {
                    registry_ca: args.registry_ca.clone(),
                    insecure_registries: args.insecure_registry.clone(),
                    timeout: args.registry_timeout,
                },
            ));
        }
    }
    let errors = loaded.problems.iter().filter(|p| p.is_error()).count();
    let warnings = loaded
        .problems
        .iter()
        .filter(|p| p.severity == pullwarden_spec::Severity::Warning)
        .count();
    match args.format {
        ValidateFormat::Json => {
            let report = ValidateReport {
                format_version: 1,
                valid: errors == 0,
                errors,
                warnings,
                problems: loaded
                    .problems
                    .iter()
                    .map(|p| p.to_data(&loaded.sources))
                    .collect(),
            };
            out.json(&report);
        }
        ValidateFormat::Text => {
            for problem in &loaded.problems {
                if problem.is_error() || !out.quiet() {
                    out.report(&problem.to_report(&loaded.sources));
                }
            }
            out.status(&summary(&args.path, &loaded, errors, warnings));
        }
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn summary(
    path: &Path,
    loaded: &pullwarden_spec::Loaded,
    errors: usize,
    warnings: usize,
) -> String {
    let files = loaded.sources.len();
    let plural = |n: usize, word: &str| {
        let word = match (n, word) {
            (1, _) => word.to_string(),
            (_, "registry") => "registries".to_string(),
            _ => format!("{word}s"),
        };
        format!("{n} {word}")
    };
    if errors == 0 {
        let ws = loaded.workspace.as_ref();
        format!(
            "{} is valid: workspace `{}`, {}, {}, {} in {}{}{}",
            path.display(),
            ws.map_or("", |w| w.name.as_str()),
            plural(ws.map_or(0, |w| w.registries.len()), "registry"),
            plural(ws.map_or(0, |w| w.pull_secrets.len()), "pull secret"),
            plural(ws.map_or(0, |w| w.pull_grants.len()), "pull grant"),
            plural(files, "file"),
            ws.map_or_else(String::new, |w| clusters(&w.clusters)),
            if warnings > 0 {
                format!(" ({})", plural(warnings, "warning"))
            } else {
                String::new()
            },
        )
    } else {
        format!(
            "{} is invalid: {}{}",
            path.display(),
            plural(errors, "error"),
            if warnings > 0 {
                format!(", {}", plural(warnings, "warning"))
            } else {
                String::new()
            },
        )
    }
}

/// `; 3 clusters: prod-eu, prod-us, dev` for a fleet (the first ten names),
/// nothing for a single-cluster workspace.
fn clusters(clusters: &[pullwarden_core::model::Cluster]) -> String {
    const SHOWN: usize = 10;
    if clusters.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = clusters
        .iter()
        .take(SHOWN)
        .map(|c| c.name.as_str())
        .collect();
    let more = clusters.len().saturating_sub(SHOWN);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let count = clusters.len();
    let word = if count == 1 { "cluster" } else { "clusters" };
    format!("; {count} {word}: {}{more}", names.join(", "))
}
