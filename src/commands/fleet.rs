//! Fleets: a workspace that names its clusters (`spec.clusters`). `plan`,
//! `apply`, `drift`, `snapshot` and `access` run the single-cluster work once
//! per cluster, each on its own connection, read, plan and preconditions, on
//! the workspace that cluster gets ([`Workspace::for_cluster`]), at most
//! [`CONCURRENCY`] clusters at once; then print every cluster's part grouped,
//! in the workspace's order, with one combined summary and one exit code.
//!
//! One cluster failing (unreachable, refused, a plan with errors) fails only
//! its own part: the others run to the end, and the exit code is 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use pullwarden_core::live::ClusterId;
use pullwarden_core::model::Workspace;
use pullwarden_core::render;

use super::Failed;
use crate::cli::ClusterArgs;
use crate::output::Output;

/// How many clusters are worked on at once.
pub const CONCURRENCY: usize = 4;

/// One cluster of a fleet, as a command reaches it.
#[derive(Clone)]
pub struct Target {
    /// Its name in `spec.clusters` (safe to print and to use as a file name).
    pub name: String,
    /// The connection flags for it: its kubeconfig (else `--kubeconfig`, else
    /// the usual lookup), its context, `--request-timeout`.
    pub cluster: ClusterArgs,
    /// With `--live DIR`: its snapshot, or why there is none.
    pub live: Option<Result<PathBuf, String>>,
    /// The workspace this cluster gets: the `PullSecrets` and `PullGrants` whose
    /// `clusters` choose it.
    pub ws: Workspace,
}

/// The names of the clusters a workspace declares, in its order.
pub fn names(ws: &Workspace) -> Vec<String> {
    ws.clusters.iter().map(|c| c.name.clone()).collect()
}

/// The clusters a command works on: `None` for a workspace without
/// `spec.clusters` (one cluster, from the kubeconfig flags, as always); else
/// every cluster, or the ones `--cluster` names. Refuses, printing why:
/// `--cluster` without `spec.clusters`, a name the workspace does not
/// declare, and `--context` with a fleet (each cluster names its own).
pub fn targets(
    ws: &Workspace,
    names: &[String],
    cluster: &ClusterArgs,
    live: Option<&Path>,
    out: &Output,
) -> Result<Option<Vec<Target>>, Failed> {
    if ws.clusters.is_empty() {
        if let Some(name) = names.first() {
            out.error(&format!(
                "pullwarden: --cluster {}: workspace {} names no clusters (spec.clusters); it is planned against the one cluster the kubeconfig flags name",
                render::safe(name),
                render::safe(&ws.name)
            ));
            return Err(Failed);
        }
        return Ok(None);
    }
    if cluster.context.is_some() {
        out.error(&format!(
            "pullwarden: --context cannot be used with workspace {}: it names its clusters (spec.clusters), and each names its own context; choose clusters with --cluster NAME",
            render::safe(&ws.name)
        ));
        return Err(Failed);
    }
    let known: Vec<&str> = ws.clusters.iter().map(|c| c.name.as_str()).collect();
    for name in names {
        if !known.contains(&name.as_str()) {
            out.error(&format!(
                "pullwarden: --cluster {}: workspace {} has no such cluster (it names {})",
                render::safe(name),
                render::safe(&ws.name),
                known.join(", ")
            ));
            return Err(Failed);
        }
    }
    if let Some(dir) = live
        && !dir.is_dir()
    {
        out.error(&format!(
            "pullwarden: --live {}: workspace {} names clusters, so --live is a directory with one snapshot per cluster ({}/<cluster>.json, .yaml, or a folder <cluster>/)",
            dir.display(),
            render::safe(&ws.name),
            dir.display()
        ));
        return Err(Failed);
    }
    // A kubeconfig the workspace names is as untrusted as the workspace (a
    // pull request can change both): its credential plugin is a program like
    // a `fromCommand`, so it runs only with --allow-commands. (`--live`
    // connects nowhere.)
    if live.is_none() && !pullwarden_spec::credentials::commands_allowed() {
        for c in &ws.clusters {
            let (name, context) = (&c.name, &c.context);
            let Some(path) = &c.kubeconfig else { continue };
            if !names.is_empty() && !names.contains(name) {
                continue;
            }
            if let Some(what) = pullwarden_kube::kubeconfig_runs_a_program(path, context) {
                out.error(&format!(
                    "pullwarden: cluster {}: the kubeconfig {} that workspace {} names runs {what} for context {}; a workspace may run programs only with --allow-commands (or PULLWARDEN_ALLOW_COMMANDS=true); nothing was done",
                    render::safe(name),
                    render::safe(&path.display().to_string()),
                    render::safe(&ws.name),
                    render::safe(context),
                ));
                return Err(Failed);
            }
        }
    }
    let targets = ws
        .clusters
        .iter()
        .filter(|c| names.is_empty() || names.contains(&c.name))
        .map(|c| Target {
            name: c.name.clone(),
            cluster: ClusterArgs {
                kubeconfig: c.kubeconfig.clone().or_else(|| cluster.kubeconfig.clone()),
                context: Some(c.context.clone()),
                request_timeout: cluster.request_timeout,
            },
            live: live.map(|dir| snapshot_of(dir, &c.name)),
            ws: ws.for_cluster(c),
        })
        .collect();
    Ok(Some(targets))
}

/// Where the snapshot of cluster `name` is in a `--live` directory:
/// `DIR/<name>.json` (what `snapshot --out DIR` writes), `DIR/<name>.yaml`,
/// `DIR/<name>.yml`, or the folder `DIR/<name>/`; exactly one of them.
pub fn snapshot_of(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let found: Vec<PathBuf> = [
        format!("{name}.json"),
        format!("{name}.yaml"),
        format!("{name}.yml"),
        name.to_owned(),
    ]
    .into_iter()
    .map(|entry| dir.join(entry))
    .filter(|path| path.exists())
    .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no snapshot of cluster {name} in {}: expected {name}.json (as `pullwarden snapshot --out {}` writes), {name}.yaml or a folder {name}/",
            dir.display(),
            dir.display()
        )),
        several => Err(format!(
            "more than one snapshot of cluster {name} in {}: {}",
            dir.display(),
            several
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The snapshot of a target with `--live DIR`, reporting a missing one on
/// its output; `None` without `--live`.
pub fn live_of<'a>(target: &'a Target, out: &Output) -> Result<Option<&'a Path>, Failed> {
    match &target.live {
        None => Ok(None),
        Some(Ok(path)) => Ok(Some(path)),
        Some(Err(reason)) => {
            out.error(&format!("pullwarden: {reason}"));
            Err(Failed)
        }
    }
}

/// What one cluster's work came to.
pub struct ClusterRun<T> {
    pub name: String,
    pub result: Result<T, Failed>,
    /// The problems and status lines it printed, for its section if it failed.
    pub messages: Vec<String>,
}

/// Runs `work` once per target, at most [`CONCURRENCY`] at once (threads
/// sharing the command's runtime), each with its own [`Output`]; the results
/// in the targets' order.
pub fn run_each<T: Send>(
    targets: &[Target],
    out: &Output,
    work: impl Fn(&Target, &Output) -> Result<T, Failed> + Sync,
) -> Vec<ClusterRun<T>> {
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<ClusterRun<T>>>> =
        targets.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY.min(targets.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(target) = targets.get(i) else {
                        break;
                    };
                    let cluster_out = out.for_cluster(&target.name);
                    let result = work(target, &cluster_out);
                    let run = ClusterRun {
                        name: target.name.clone(),
                        result,
                        messages: cluster_out.messages(),
                    };
                    *slots[i]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(run);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .expect("every target is worked on")
        })
        .collect()
}

/// Refuses every part that reached the same cluster as another part: two
/// entries of `spec.clusters` whose contexts lead to one cluster (an alias
/// context, another kubeconfig), told by the `kube-system` Namespace's UID
/// each part read (`cluster_of`). Each such part would plan, and prune, as if
/// the cluster got only its own declarations, undoing the other's: both
/// become errors naming each other, so nothing is planned, written or
/// compared there; the parts on distinct clusters are untouched. Runs after
/// the reads and before anything is written. A part whose cluster cannot be
/// told (credentials that cannot list namespaces, a snapshot without
/// `kube-system`) is not compared. `what` says what is not done: `planned`,
/// `applied`, `compared`.
pub fn refuse_shared_clusters<T>(
    runs: &mut [ClusterRun<T>],
    cluster_of: impl Fn(&T) -> Option<&ClusterId>,
    what: &str,
    out: &Output,
) {
    let seen: Vec<(String, Option<String>)> = runs
        .iter()
        .map(|run| {
            let uid = run
                .result
                .as_ref()
                .ok()
                .and_then(&cluster_of)
                .map(|id| id.kube_system_uid.clone());
            (run.name.clone(), uid)
        })
        .collect();
    for run in runs.iter_mut() {
        let Some((_, Some(uid))) = seen.iter().find(|(name, _)| *name == run.name) else {
            continue;
        };
        let others: Vec<String> = seen
            .iter()
            .filter(|(name, other)| *name != run.name && other.as_ref() == Some(uid))
            .map(|(name, _)| render::safe(name))
            .collect();
        if others.is_empty() {
            continue;
        }
        let message = format!(
            "pullwarden: cluster {} and cluster {} of spec.clusters reach the same cluster (kube-system UID {}): each would be {what} as if that cluster got only its own PullSecrets and PullGrants, and prune the other's; nothing was {what} on {}. Give each entry of spec.clusters a cluster of its own (contexts that are aliases of one cluster are one entry)",
            render::safe(&run.name),
            others.join(", "),
            render::safe(uid),
            if others.len() == 1 {
                "either"
            } else {
                "any of them"
            },
        );
        out.for_cluster(&run.name).error(&message);
        run.result = Err(Failed);
        run.messages = vec![message];
    }
}

/// How one cluster ended, for the combined exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Nothing to do, in sync.
    Clean,
    /// Changes, drift or pending work.
    Changes,
    /// An error: unreachable, refused, a plan with errors, a failed write.
    Error,
}

/// The combined exit code: 1 if any cluster ended in an error, else 2 if any
/// has changes and `changes_exit_2` (`plan --detailed-exitcode`, `drift`),
/// else 0.
pub fn exit_code(outcomes: impl IntoIterator<Item = Outcome>, changes_exit_2: bool) -> ExitCode {
    match outcomes.into_iter().max() {
        Some(Outcome::Error) => ExitCode::from(1),
        Some(Outcome::Changes) if changes_exit_2 => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    }
}

/// A text section's heading: `=== cluster prod-eu ===`.
pub fn text_heading(name: &str) -> String {
    format!("=== cluster {} ===\n", render::safe(name))
}

/// The lines of a failed cluster's section in text: what went wrong.
pub fn text_failure(messages: &[String], nothing: &str) -> String {
    let mut out = String::new();
    for message in error_lines(messages) {
        out.push_str("error: ");
        out.push_str(&render::safe(&message));
        out.push('\n');
    }
    out.push_str(nothing);
    out.push('\n');
    out
}

/// The same in markdown.
pub fn markdown_failure(messages: &[String], nothing: &str) -> String {
    let mut out = String::new();
    for message in error_lines(messages) {
        out.push_str("- :x: ");
        out.push_str(&pullwarden_core::escape::markdown(&render::safe(&message)));
        out.push('\n');
    }
    out.push_str("\n**");
    out.push_str(nothing);
    out.push_str("**\n");
    out
}

/// A failed cluster's problems, one line each (a cluster that failed
/// without a message still says so).
pub fn error_lines(messages: &[String]) -> Vec<String> {
    let lines: Vec<String> = messages
        .iter()
        .map(|m| {
            m.strip_prefix("pullwarden: ")
                .unwrap_or(m)
                .replace('\n', " ")
        })
        .collect();
    if lines.is_empty() {
        vec!["failed (see the messages above)".to_owned()]
    } else {
        lines
    }
}

/// Makes a heading of this level the first line of a rendered section
/// (a single-cluster document starts with its own `### ...` line).
pub fn replace_first_line(text: &str, heading: &str) -> String {
    let body = text.split_once('\n').map_or("", |(_, rest)| rest);
    format!("{heading}\n{body}")
}

/// `1 cluster` / `3 clusters`.
pub fn clusters(n: usize) -> String {
    format!("{n} cluster{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_is_the_worst_outcome() {
        let code = |outcomes: &[Outcome], detailed| {
            format!("{:?}", exit_code(outcomes.iter().copied(), detailed))
        };
        let one = format!("{:?}", ExitCode::from(1));
        let two = format!("{:?}", ExitCode::from(2));
        let zero = format!("{:?}", ExitCode::SUCCESS);
        assert_eq!(
            code(&[Outcome::Changes, Outcome::Error, Outcome::Clean], true),
            one
        );
        assert_eq!(code(&[Outcome::Error], false), one);
        assert_eq!(code(&[Outcome::Clean, Outcome::Changes], true), two);
        assert_eq!(code(&[Outcome::Clean, Outcome::Changes], false), zero);
        assert_eq!(code(&[Outcome::Clean, Outcome::Clean], true), zero);
        assert_eq!(code(&[], true), zero);
    }

    #[test]
    fn a_snapshot_directory_holds_one_snapshot_per_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("prod.json"), "{}").expect("write");
        std::fs::create_dir(dir.path().join("dev")).expect("mkdir");
        std::fs::write(dir.path().join("both.json"), "{}").expect("write");
        std::fs::write(dir.path().join("both.yaml"), "").expect("write");
        assert_eq!(
            snapshot_of(dir.path(), "prod").expect("prod"),
            dir.path().join("prod.json")
        );
        assert_eq!(
            snapshot_of(dir.path(), "dev").expect("dev"),
            dir.path().join("dev")
        );
        let missing = snapshot_of(dir.path(), "staging").expect_err("staging");
        assert!(
            missing.contains("no snapshot of cluster staging"),
            "{missing}"
        );
        let both = snapshot_of(dir.path(), "both").expect_err("both");
        assert!(both.contains("more than one snapshot"), "{both}");
    }

    #[test]
    fn a_failed_section_names_its_errors() {
        let text = text_failure(
            &["pullwarden: cannot connect to https://127.0.0.1:1".to_owned()],
            "nothing was planned on this cluster",
        );
        assert_eq!(
            text,
            "error: cannot connect to https://127.0.0.1:1\nnothing was planned on this cluster\n"
        );
        assert!(text_failure(&[], "x").starts_with("error: failed"));
    }
}
