//! `pullwarden plan`: the plan, in text, markdown or JSON, optionally saved.
//! With a fleet: one plan per cluster, grouped, and one summary.

use std::path::Path;
use std::process::ExitCode;

use pullwarden_core::live::ClusterId;
use pullwarden_core::model::{ResolvedRegistry, Workspace};
use pullwarden_core::plan::{Plan, Summary};
use pullwarden_core::render;
use pullwarden_core::saved;

use super::access::{
    PolicyRead, attach_access, finish_policy_read, snapshot_policy, start_policy_read,
};
use super::fleet::{self, ClusterRun, Outcome, Target};
use super::{
    Failed, LiveSource, Planned, connect, load_resolved, make_plan, named_namespaces, random_bytes,
    read_live_for, read_options, runtime, write_atomically,
};
use crate::cli::{ClusterArgs, PlanArgs, PlanFormat};
use crate::output::Output;

type Registries = std::collections::BTreeMap<String, ResolvedRegistry>;

/// One cluster's plan, and the cluster it was made for (for a saved plan).
pub(crate) struct ClusterPlan {
    pub planned: Planned,
    pub cluster: Option<ClusterId>,
}

pub fn plan(args: &PlanArgs, out: &Output) -> ExitCode {
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
    let Ok(rt) = runtime(out) else {
        return ExitCode::from(1);
    };
    if let Some(targets) = targets {
        let mut runs = fleet::run_each(&targets, out, |target, out| {
            let live = fleet::live_of(target, out)?;
            plan_one(
                &rt,
                &target.ws,
                &registries,
                live,
                &target.cluster,
                args.adopt,
                out,
            )
        });
        drop(rt);
        fleet::refuse_shared_clusters(&mut runs, |made| made.cluster.as_ref(), "planned", out);
        return print_fleet(args, &ws, &targets, &runs, out);
    }
    let Ok(made) = plan_one(
        &rt,
        &ws,
        &registries,
        args.live.as_deref(),
        &args.cluster,
        args.adopt,
        out,
    ) else {
        return ExitCode::from(1);
    };
    drop(rt);
    let plan = &made.planned.plan;
    match args.format {
        PlanFormat::Text => out.data(&render::text(plan, out.style())),
        PlanFormat::Markdown => out.data(&render::markdown(plan)),
        PlanFormat::Json => out.data(&render::json(plan)),
    }
    if let Some(file) = &args.out {
        let saved = save(&made);
        let text = serde_json::to_string_pretty(&saved).expect("a saved plan serializes") + "\n";
        if let Err(e) = write_atomically(file, &text) {
            out.error(&format!("pullwarden: cannot write {}: {e}", file.display()));
            return ExitCode::from(1);
        }
        out.status(&format!("saved the plan to {}", file.display()));
    }
    if !plan.errors.is_empty() {
        report_errors(plan, out);
        return ExitCode::from(1);
    }
    if args.detailed_exitcode && plan.has_changes() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn report_errors(plan: &Plan, out: &Output) {
    out.error(&format!(
        "pullwarden: the plan has {} error{}; apply would refuse it",
        plan.errors.len(),
        if plan.errors.len() == 1 { "" } else { "s" }
    ));
}

fn save(made: &ClusterPlan) -> saved::SavedPlan {
    let salt = random_bytes::<16>();
    saved::save(
        &made.planned.plan,
        &made.planned.desired,
        made.cluster.as_ref(),
        &salt,
        &made.planned.key,
    )
}

/// One cluster's plan: its live state (and RBAC policy) from `live` or from
/// the cluster `cluster` names, planned with its access section.
pub(crate) fn plan_one(
    rt: &tokio::runtime::Runtime,
    ws: &Workspace,
    registries: &Registries,
    live: Option<&Path>,
    cluster: &ClusterArgs,
    adopt: bool,
    out: &Output,
) -> Result<ClusterPlan, Failed> {
    let (live, read) = live_and_policy(rt, live, cluster, ws, out)?;
    let mut planned = make_plan(ws, registries, &live, adopt);
    attach_access(&mut planned.plan, ws, &live, &read, out);
    if !planned.plan.errors.is_empty() && out.is_cluster() {
        report_errors(&planned.plan, out);
    }
    Ok(ClusterPlan {
        planned,
        cluster: live.cluster,
    })
}

/// The live state and the RBAC policy the access section is evaluated on:
/// from a snapshot, its RoleBindings; from the cluster, read alongside.
fn live_and_policy(
    rt: &tokio::runtime::Runtime,
    live: Option<&Path>,
    cluster: &ClusterArgs,
    ws: &Workspace,
    out: &Output,
) -> Result<(pullwarden_core::live::LiveState, PolicyRead), Failed> {
    let named = named_namespaces(ws);
    let options = read_options(cluster);
    if let Some(path) = live {
        let live = read_live_for(
            rt,
            LiveSource::Snapshot(path),
            &named,
            Some(ws),
            &options,
            out,
        )?;
        let read = snapshot_policy(&live);
        Ok((live, read))
    } else {
        let client = connect(rt, cluster, out)?;
        let task = start_policy_read(rt, &client, cluster);
        let live = read_live_for(
            rt,
            LiveSource::Cluster(&client),
            &named,
            Some(ws),
            &options,
            out,
        )?;
        let read = finish_policy_read(rt, task, out)?;
        Ok((live, read))
    }
}

/// One cluster's part of a fleet's plan: its plan, or the problems that
/// kept it from being planned.
pub(crate) struct Section<'a> {
    pub name: &'a str,
    pub plan: Result<&'a Plan, &'a [String]>,
}

impl<'a> Section<'a> {
    pub fn of(run: &'a ClusterRun<ClusterPlan>) -> Section<'a> {
        Section {
            name: &run.name,
            plan: match &run.result {
                Ok(made) => Ok(&made.planned.plan),
                Err(Failed) => Err(&run.messages),
            },
        }
    }

    /// How it ended, for the exit code.
    pub fn outcome(&self) -> Outcome {
        match self.plan {
            Err(_) => Outcome::Error,
            Ok(plan) if !plan.errors.is_empty() => Outcome::Error,
            Ok(plan) if plan.has_changes() => Outcome::Changes,
            Ok(_) => Outcome::Clean,
        }
    }

    /// Its result in a word.
    fn word(&self) -> &'static str {
        match (self.plan, self.outcome()) {
            (Err(_), _) => "error: not planned",
            (Ok(_), Outcome::Error) => "plan has errors",
            (Ok(_), Outcome::Changes) => "changes",
            (Ok(_), Outcome::Clean) => "no changes",
        }
    }
}

fn print_fleet(
    args: &PlanArgs,
    ws: &Workspace,
    targets: &[Target],
    runs: &[ClusterRun<ClusterPlan>],
    out: &Output,
) -> ExitCode {
    let sections: Vec<Section<'_>> = runs.iter().map(Section::of).collect();
    match args.format {
        PlanFormat::Text => out.data(&fleet_text(&ws.name, &sections, out.style())),
        PlanFormat::Markdown => out.data(&fleet_markdown(&ws.name, &sections)),
        PlanFormat::Json => out.data(&fleet_json(&ws.name, targets, &sections)),
    }
    let mut code = fleet::exit_code(
        sections.iter().map(Section::outcome),
        args.detailed_exitcode,
    );
    if let Some(file) = &args.out {
        let saved = saved::SavedFleetPlan {
            kind: saved::SAVED_FLEET_PLAN_KIND.to_owned(),
            workspace: ws.name.clone(),
            clusters: runs
                .iter()
                .filter_map(|run| {
                    let made = run.result.as_ref().ok()?;
                    Some(saved::SavedClusterPlan {
                        name: run.name.clone(),
                        saved: save(made),
                    })
                })
                .collect(),
            unplanned: runs
                .iter()
                .filter(|run| run.result.is_err())
                .map(|run| run.name.clone())
                .collect(),
        };
        let text = serde_json::to_string_pretty(&saved).expect("a saved plan serializes") + "\n";
        if let Err(e) = write_atomically(file, &text) {
            out.error(&format!("pullwarden: cannot write {}: {e}", file.display()));
            return ExitCode::from(1);
        }
        out.status(&format!(
            "saved the plan of {} to {}{}",
            fleet::clusters(saved.clusters.len()),
            file.display(),
            if saved.unplanned.is_empty() {
                String::new()
            } else {
                format!(
                    " (not planned, so not in it: {})",
                    saved.unplanned.join(", ")
                )
            }
        ));
    }
    let failed: Vec<&str> = sections
        .iter()
        .filter(|s| s.outcome() == Outcome::Error)
        .map(|s| s.name)
        .collect();
    if !failed.is_empty() {
        out.error(&format!(
            "pullwarden: {} of {} failed: {}",
            fleet::clusters(failed.len()),
            sections.len(),
            failed.join(", ")
        ));
        code = ExitCode::from(1);
    }
    code
}

fn total(sections: &[Section<'_>]) -> Summary {
    let mut total = Summary::default();
    for plan in sections.iter().filter_map(|s| s.plan.ok()) {
        let s = plan.summary();
        total.create += s.create;
        total.update += s.update;
        total.replace += s.replace;
        total.delete += s.delete;
        total.adopt += s.adopt;
        total.link += s.link;
        total.unlink += s.unlink;
    }
    total
}

const NOTHING_PLANNED: &str = "Nothing was planned on this cluster.";

/// A fleet's plan for people: a section per cluster, then a line per
/// cluster and the combined summary.
pub(crate) fn fleet_text(
    workspace: &str,
    sections: &[Section<'_>],
    style: render::Style,
) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for section in sections {
        text.push_str(&fleet::text_heading(section.name));
        match section.plan {
            Ok(plan) => text.push_str(&render::text(plan, style)),
            Err(messages) => text.push_str(&fleet::text_failure(messages, NOTHING_PLANNED)),
        }
        text.push('\n');
    }
    let _ = writeln!(
        text,
        "Fleet: workspace {}, {}",
        render::safe(workspace),
        fleet::clusters(sections.len())
    );
    let width = sections.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for section in sections {
        let detail = match section.plan {
            Ok(plan) if plan.has_changes() => {
                format!(" ({})", render::summary_line(&plan.summary()))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "  {:<width$}  {}{detail}",
            render::safe(section.name),
            section.word()
        );
    }
    let _ = writeln!(text, "Plan: {}.", render::summary_line(&total(sections)));
    text
}

/// A fleet's plan in markdown (the CI plan comment): a table of the
/// clusters, then a section per cluster.
fn fleet_markdown(workspace: &str, sections: &[Section<'_>]) -> String {
    use std::fmt::Write as _;
    let md = |s: &str| pullwarden_core::escape::markdown(&render::safe(s));
    let mut text = format!(
        "### pullwarden plan: workspace `{}`, {}\n\n",
        md(workspace),
        fleet::clusters(sections.len())
    );
    text.push_str(
        "| cluster | result | create | update | replace | delete | adopt | link | unlink |\n",
    );
    text.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for section in sections {
        let icon = if section.outcome() == Outcome::Error {
            ":x: "
        } else {
            ""
        };
        match section.plan {
            Ok(plan) => {
                let s = plan.summary();
                let _ = writeln!(
                    text,
                    "| `{}` | {icon}{} | {} | {} | {} | {} | {} | {} | {} |",
                    md(section.name),
                    section.word(),
                    s.create,
                    s.update,
                    s.replace,
                    s.delete,
                    s.adopt,
                    s.link,
                    s.unlink
                );
            }
            Err(_) => {
                let _ = writeln!(
                    text,
                    "| `{}` | {icon}{} | | | | | | | |",
                    md(section.name),
                    section.word()
                );
            }
        }
    }
    let s = total(sections);
    let _ = writeln!(
        text,
        "| **total** | | {} | {} | {} | {} | {} | {} | {} |",
        s.create, s.update, s.replace, s.delete, s.adopt, s.link, s.unlink
    );
    for section in sections {
        let heading = format!("#### cluster `{}`", md(section.name));
        text.push('\n');
        match section.plan {
            Ok(plan) => text.push_str(&fleet::replace_first_line(
                &render::markdown(plan),
                &heading,
            )),
            Err(messages) => {
                text.push_str(&heading);
                text.push_str("\n\n");
                text.push_str(&fleet::markdown_failure(messages, NOTHING_PLANNED));
            }
        }
    }
    text
}

/// `--format json` with a fleet: one document, an object per cluster (its
/// plan as `--format json` prints it for one cluster, or its errors), and
/// the combined summary.
fn fleet_json(workspace: &str, targets: &[Target], sections: &[Section<'_>]) -> String {
    let clusters: Vec<serde_json::Value> = sections
        .iter()
        .zip(targets)
        .map(|(section, target)| {
            let mut value = serde_json::json!({
                "name": section.name,
                "context": target.cluster.context,
            });
            match section.plan {
                Ok(plan) => {
                    value["status"] = "planned".into();
                    value["plan"] =
                        serde_json::from_str(&render::json(plan)).expect("a rendered plan is JSON");
                }
                Err(messages) => {
                    value["status"] = "error".into();
                    value["errors"] = fleet::error_lines(messages).into();
                }
            }
            value
        })
        .collect();
    let document = serde_json::json!({
        "format_version": pullwarden_core::plan::PLAN_FORMAT_VERSION,
        "workspace": workspace,
        "clusters": clusters,
        "summary": total(sections),
        "has_changes": sections.iter().any(|s| s.plan.is_ok_and(Plan::has_changes)),
        "has_errors": sections.iter().any(|s| s.outcome() == Outcome::Error),
    });
    serde_json::to_string_pretty(&document).expect("a fleet plan serializes") + "\n"
}
