//! `pullwarden snapshot`: what pullwarden reads, with credentials digested.

use std::process::ExitCode;

use pullwarden_core::secret::DigestKey;

use super::{
    LiveSource, connect, random_bytes, read_live, read_options, runtime, write_atomically,
};
use crate::output::Output;

/// `pullwarden snapshot`: the live state, credentials digested, as JSON.
pub fn snapshot(args: &crate::cli::SnapshotArgs, out: &Output) -> ExitCode {
    let Ok(rt) = runtime(out) else {
        return ExitCode::from(1);
    };
    let Ok(client) = connect(&rt, &args.cluster, out) else {
        return ExitCode::from(1);
    };
    // Every Secret, whatever its type: a snapshot stands in for the cluster
    // in `plan --live` for any workspace, so it cannot know which names matter.
    let options = pullwarden_kube::ReadOptions {
        secrets: pullwarden_kube::SecretSelection::All,
        ..read_options(&args.cluster)
    };
    let Ok(live) = read_live(&rt, LiveSource::Cluster(&client), &[], &options, out) else {
        return ExitCode::from(1);
    };
    let salt = random_bytes::<16>();
    let text = pullwarden_kube::snapshot::snapshot_json(
        &live,
        &salt,
        pullwarden_core::secret::SLOW_DIGEST_ITERATIONS,
        DigestKey::from_bytes(random_bytes::<32>()),
    );
    match &args.out {
        None => out.data(&text),
        Some(file) => {
            if let Err(e) = write_atomically(file, &text) {
                out.status(&format!("pullwarden: cannot write {}: {e}", file.display()));
                return ExitCode::from(1);
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
    ExitCode::SUCCESS
}
