//! `pullwarden diff`: the workspace at a git revision (or in a folder)
//! against the workspace now, without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pullwarden_core::live::LiveState;
use pullwarden_core::model::{ResolvedRegistry, Workspace};
use pullwarden_core::plan::access::{
    self, AccessChanges, DeclarationChange, DeclarationDiff, Side,
};
use pullwarden_core::plan::{self as planner};
use pullwarden_core::render;
use pullwarden_spec::credentials;
use serde::Serialize;

use super::{Failed, LiveSource, read_live_for, read_options, runtime};
use crate::cli::{DiffArgs, PlanFormat};
use crate::output::Output;

/// The note every diff carries: what a diff without a cluster cannot see.
const WITHOUT_CLUSTER_NOTE: &str = "no cluster was read: project access is evaluated from the two \
workspaces' grants to OpenShift's image roles, registries from the pull links they declare; \
access granted outside the workspaces is not shown";
const NO_LIVE_NOTE: &str =
    "without --live, globs match only the namespaces the workspaces name exactly";

/// `pullwarden diff`.
pub fn diff(args: &DiffArgs, out: &Output) -> ExitCode {
    match diff_inner(args, out) {
        Ok(code) => code,
        Err(Failed) => ExitCode::from(1),
    }
}

#[derive(Serialize)]
struct Report<'a> {
    format_version: u32,
    base: String,
    declarations: &'a DeclarationDiff,
    namespaces: Namespaces,
    access: &'a AccessChanges,
}

#[derive(Serialize)]
struct Namespaces {
    /// Targeted now and not at the base.
    added: Vec<String>,
    /// Targeted at the base and not now.
    removed: Vec<String>,
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn diff_inner(args: &DiffArgs, out: &Output) -> Result<ExitCode, Failed> {
    let mut _checkout = None;
    let (base_path, base_label) = match (&args.base, &args.base_path) {
        (_, Some(dir)) => (dir.clone(), dir.display().to_string()),
        (Some(rev), None) => {
            let (dir, path) = checkout(rev, &args.path, out)?;
            _checkout = Some(dir);
            (path, rev.clone())
        }
        (None, None) => {
            out.error("pullwarden: diff needs --base REV or --base-path DIR");
            return Err(Failed);
        }
    };
    let (base, base_registries) = load(&base_path, &base_label, out)?;
    let (head, head_registries) = load(&args.path, "now", out)?;
    let mut notes = vec![WITHOUT_CLUSTER_NOTE.to_owned()];
    let live = if let Some(path) = &args.live {
        let rt = runtime(out)?;
        read_live_for(
            &rt,
            LiveSource::Snapshot(path),
            &[],
            None,
            &read_options(&crate::cli::ClusterArgs {
                kubeconfig: None,
                context: None,
                request_timeout: pullwarden_kube::DEFAULT_REQUEST_TIMEOUT,
            }),
            out,
        )?
    } else {
        notes.push(NO_LIVE_NOTE.to_owned());
        named_only(&[&base, &head])
    };
    let root = |path: &Path| {
        if path.is_file() {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            path.to_path_buf()
        }
    };
    let declarations = access::declaration_diff(&base, &root(&base_path), &head, &root(&args.path));
    let empty = BTreeMap::new();
    let base_desired = planner::desired(&base, &empty, &live);
    let head_desired = planner::desired(&head, &empty, &live);
    let (old_targets, new_targets) = (
        access::targeted_namespaces(&base_desired),
        access::targeted_namespaces(&head_desired),
    );
    let namespaces = Namespaces {
        added: new_targets.difference(&old_targets).cloned().collect(),
        removed: old_targets.difference(&new_targets).cloned().collect(),
    };
    let (base_hosts, head_hosts) = (
        access::registry_hosts(&base, &base_registries),
        access::registry_hosts(&head, &head_registries),
    );
    let mut changes = access::workspace_access(
        &Side {
            ws: &base,
            desired: &base_desired,
            hosts: &base_hosts,
        },
        &Side {
            ws: &head,
            desired: &head_desired,
            hosts: &head_hosts,
        },
        &live,
    );
    changes.notes = notes;
    let report = Report {
        format_version: 1,
        base: base_label,
        declarations: &declarations,
        namespaces,
        access: &changes,
    };
    match args.format {
        PlanFormat::Json => {
            let json = serde_json::to_string_pretty(&report).expect("the diff serializes");
            out.data(&(json + "\n"));
        }
        PlanFormat::Text => out.data(&text(&report)),
        PlanFormat::Markdown => out.data(&markdown(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A live state holding only the namespaces the workspaces name exactly.
fn named_only(workspaces: &[&Workspace]) -> LiveState {
    let mut live = LiveState::default();
    for ws in workspaces {
        live.namespaces.extend(super::named_namespaces(ws));
        for grant in &ws.pull_grants {
            for subject in &grant.to {
                if let pullwarden_core::model::Subject::ServiceAccount { namespace, .. } =
                    &subject.value
                {
                    live.namespaces.insert(namespace.clone());
                }
            }
        }
    }
    live
}

/// Loads a workspace and resolves what credentials it can (only the
/// registry hosts are used); prints problems only when it cannot load.
fn load(
    path: &Path,
    label: &str,
    out: &Output,
) -> Result<(Workspace, BTreeMap<String, ResolvedRegistry>), Failed> {
    // A workspace from another revision (a pull request's) runs no command.
    let env = credentials::NoCommands;
    let loaded = pullwarden_spec::load(path, &env);
    let errors: Vec<_> = loaded
        .problems
        .iter()
        .filter(|p| p.is_error() && p.code != pullwarden_spec::diag::codes::CREDENTIAL_FILE_ABSENT)
        .collect();
    if !errors.is_empty() || loaded.workspace.is_none() {
        for problem in &errors {
            out.report(&problem.to_report(&loaded.sources));
        }
        out.error(&format!(
            "pullwarden: the workspace ({}) does not load; nothing was compared",
            render::safe(label)
        ));
        return Err(Failed);
    }
    let ws = loaded.workspace.expect("checked above");
    let (resolved, _unresolved) = credentials::resolve(&ws, &env);
    Ok((ws, resolved))
}

/// Writes the files under `path` at `rev` into a new temporary folder;
/// returns it and the workspace path inside it.
fn checkout(rev: &str, path: &Path, out: &Output) -> Result<(TempDir, PathBuf), Failed> {
    let git = |dir: &Path, args: &[&str]| -> Result<Vec<u8>, Failed> {
        let output = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .map_err(|e| {
                out.error(&format!("pullwarden: cannot run git: {e}"));
                Failed
            })?;
        if !output.status.success() {
            out.error(&format!(
                "pullwarden: git {} failed: {}",
                render::safe(&args.join(" ")),
                render::safe(String::from_utf8_lossy(&output.stderr).trim())
            ));
            return Err(Failed);
        }
        Ok(output.stdout)
    };
    let is_file = path.is_file();
    let dir = if is_file {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    } else {
        path
    };
    let prefix = String::from_utf8_lossy(&git(dir, &["rev-parse", "--show-prefix"])?)
        .trim()
        .to_owned();
    let listed = git(
        dir,
        &[
            "ls-tree",
            "-r",
            "-z",
            "--full-tree",
            "--name-only",
            rev,
            "--",
            &prefix,
        ],
    )?;
    let tmp = TempDir(std::env::temp_dir().join(format!(
        "pullwarden-diff-{}-{}",
        std::process::id(),
        pullwarden_core::secret::hex(&super::random_bytes::<6>())
    )));
    std::fs::create_dir(&tmp.0).map_err(|e| {
        out.error(&format!(
            "pullwarden: cannot create a temporary folder: {e}"
        ));
        Failed
    })?;
    let top = String::from_utf8_lossy(&git(dir, &["rev-parse", "--show-toplevel"])?)
        .trim()
        .to_owned();
    let mut count = 0;
    for name in listed.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let blob = git(Path::new(&top), &["show", &format!("{rev}:{name}")])?;
        let target = tmp.0.join(&name);
        if let Some(parent) = target.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&target, blob).map_err(|e| {
            out.error(&format!(
                "pullwarden: cannot write {}: {e}",
                target.display()
            ));
            Failed
        })?;
        count += 1;
    }
    if count == 0 {
        out.error(&format!(
            "pullwarden: {} holds no files at {}",
            render::safe(&path.display().to_string()),
            render::safe(rev)
        ));
        return Err(Failed);
    }
    out.info(&format!("read {count} files at {rev}"));
    let mut inside = tmp.0.join(&prefix);
    if is_file && let Some(file) = path.file_name() {
        inside = inside.join(file);
    }
    Ok((tmp, inside))
}

fn declaration_lines(diff: &DeclarationDiff) -> Vec<String> {
    let name = |d: &DeclarationChange| format!("{}/{}", d.kind, d.name);
    let mut lines = Vec::new();
    for d in &diff.added {
        lines.push(format!("+ {}", name(d)));
    }
    for d in &diff.removed {
        lines.push(format!("- {}", name(d)));
    }
    for d in &diff.changed {
        lines.push(format!("~ {}", name(d)));
        for f in &d.fields {
            lines.push(format!("    {}: {} -> {}", f.field, f.before, f.after));
        }
    }
    lines.into_iter().map(|l| render::safe(&l)).collect()
}

fn access_lines(access: &AccessChanges) -> Vec<String> {
    access
        .gained
        .iter()
        .map(|l| format!("+ {}", render::access_line(l, true)))
        .chain(
            access
                .lost
                .iter()
                .map(|l| format!("- {}", render::access_line(l, false))),
        )
        .collect()
}

fn text(report: &Report<'_>) -> String {
    let mut out = format!(
        "workspace diff: {} -> now\n\nDeclarations:\n",
        render::safe(&report.base)
    );
    let lines = declaration_lines(report.declarations);
    if lines.is_empty() {
        out.push_str("  no declaration changed\n");
    }
    for line in lines {
        let _ = writeln!(out, "  {line}");
    }
    out.push_str("\nNamespaces:\n");
    if report.namespaces.added.is_empty() && report.namespaces.removed.is_empty() {
        out.push_str("  no namespace newly matched or left\n");
    }
    for ns in &report.namespaces.added {
        let _ = writeln!(out, "  + {} (newly matched)", render::safe(ns));
    }
    for ns in &report.namespaces.removed {
        let _ = writeln!(out, "  - {} (no longer matched)", render::safe(ns));
    }
    let lines = access_lines(report.access);
    let _ = writeln!(
        out,
        "\nAccess: {}",
        if lines.is_empty() {
            "no access change.".to_owned()
        } else {
            format!(
                "{} gained, {} lost.",
                report.access.gained.len(),
                report.access.lost.len()
            )
        }
    );
    for line in lines {
        let _ = writeln!(out, "  {line}");
    }
    for note in &report.access.notes {
        let _ = writeln!(out, "  note: {}", render::safe(note));
    }
    out
}

fn fenced(body: &str) -> String {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}diff\n{body}{fence}\n")
}

fn markdown(report: &Report<'_>) -> String {
    let md = |s: &str| pullwarden_core::escape::markdown(&render::safe(s));
    let mut out = format!("### pullwarden diff: `{}` → now\n\n", md(&report.base));
    let sections: [(&str, Vec<String>); 3] = [
        ("Declarations", declaration_lines(report.declarations)),
        (
            "Namespaces newly matched or left",
            report
                .namespaces
                .added
                .iter()
                .map(|n| format!("+ {}", render::safe(n)))
                .chain(
                    report
                        .namespaces
                        .removed
                        .iter()
                        .map(|n| format!("- {}", render::safe(n))),
                )
                .collect(),
        ),
        ("Access", access_lines(report.access)),
    ];
    let mut seen = BTreeSet::new();
    for (title, lines) in sections {
        seen.insert(title);
        if lines.is_empty() {
            let _ = writeln!(out, "**{title}:** none.\n");
            continue;
        }
        let body: String = lines.iter().fold(String::new(), |mut body, l| {
            let _ = writeln!(body, "{l}");
            body
        });
        let _ = writeln!(
            out,
            "<details><summary>{title}: {}</summary>\n\n{}\n</details>\n",
            lines.len(),
            fenced(&body)
        );
    }
    for note in &report.access.notes {
        let _ = writeln!(out, "_note: {}_\n", md(note));
    }
    out
}
