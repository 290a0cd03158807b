//! `pullwarden snapshot`: what pullwarden reads, with credentials digested.
//! With a workspace naming clusters: one snapshot per cluster, in a directory
//! that `plan --live DIR` and `drift --live DIR` read back.

use std::path::Path;
use std::process::ExitCode;

use pullwarden_core::secret::DigestKey;

use super::fleet;
use super::{
    Failed, LiveSource, connect, random_bytes, read_live, read_options, runtime, write_atomically,
};
use crate::cli::ClusterArgs;
use crate::output::Output;

/// `pullwarden snapshot`: the live state, credentials digested, as JSON.
pub fn snapshot(args: &crate::cli::SnapshotArgs, out: &Output) -> ExitCode {
    let targets = match &args.workspace {
        None if !args.clusters.is_empty() => {
            out.error("pullwarden: --cluster chooses clusters of a workspace: name the workspace (`pullwarden snapshot WORKSPACE --out DIR --cluster NAME`)");
            return ExitCode::from(1);
        }
        None => None,
        Some(path) => {
            let Ok(ws) = super::load_unresolved(path, out) else {
                return ExitCode::from(1);
            };
            match fleet::targets(&ws, &args.clusters, &args.cluster, None, out) {
                Ok(targets) => targets,
                Err(Failed) => return ExitCode::from(1),
            }
        }
    };
    let Ok(rt) = runtime(out) else {
        return ExitCode::from(1);
    };
    let Some(targets) = targets else {
        return match snapshot_one(&rt, &args.cluster, args.out.as_deref(), out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failed) => ExitCode::from(1),
        };
    };
    let Some(dir) = &args.out else {
        out.error("pullwarden: the workspace names clusters: write their snapshots into a directory with --out DIR (one DIR/<cluster>.json each)");
        return ExitCode::from(1);
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        out.error(&format!("pullwarden: cannot create {}: {e}", dir.display()));
        return ExitCode::from(1);
    }
    let runs = fleet::run_each(&targets, out, |target, out| {
        let file = dir.join(format!("{}.json", target.name));
        snapshot_one(&rt, &target.cluster, Some(&file), out)
    });
    let failed: Vec<&str> = runs
        .iter()
        .filter(|run| run.result.is_err())
        .map(|run| run.name.as_str())
        .collect();
    if failed.is_empty() {
        out.status(&format!(
            "wrote the snapshots of {} to {}",
            fleet::clusters(runs.len()),
            dir.display()
        ));
        ExitCode::SUCCESS
    } else {
        out.error(&format!(
            "pullwarden: no snapshot of {} ({}); the others are in {}",
            fleet::clusters(failed.len()),
            failed.join(", "),
            dir.display()
        ));
        ExitCode::from(1)
    }
}

/// Snapshots the cluster `cluster` names into `file` (stdout without one).
fn snapshot_one(
    rt: &tokio::runtime::Runtime,
    cluster: &ClusterArgs,
    file: Option<&Path>,
    out: &Output,
) -> Result<(), Failed> {
    let client = connect(rt, cluster, out)?;
    // Every Secret, whatever its type: a snapshot stands in for the cluster
    // in `plan --live` for any workspace, so it cannot know which names matter.
    let options = pullwarden_kube::ReadOptions {
        secrets: pullwarden_kube::SecretSelection::All,
        ..read_options(cluster)
    };
    let live = read_live(rt, LiveSource::Cluster(&client), &[], &options, out)?;
    let salt = random_bytes::<16>();
    let text = pullwarden_kube::snapshot::snapshot_json(
        &live,
        &salt,
        pullwarden_core::secret::SLOW_DIGEST_ITERATIONS,
        DigestKey::from_bytes(random_bytes::<32>()),
    );
    match file {
        None => out.data(&text),
        Some(file) => {
            if let Err(e) = write_atomically(file, &text) {
                out.error(&format!("pullwarden: cannot write {}: {e}", file.display()));
                return Err(Failed);
            }
            out.status(&format!(
                "wrote {} namespaces, {} secrets, {} service accounts, {} role bindings to {}",
                live.namespaces.len(),
                live.secrets.len(),
                live.service_accounts.len(),
                live.role_bindings.len(),
                file.display()
            ));
        }
    }
    Ok(())
}
