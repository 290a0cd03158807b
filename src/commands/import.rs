//! `pullwarden import`: a starting workspace from the cluster.

use std::process::ExitCode;

use pullwarden_core::secret::DigestKey;

use super::{live_state, random_bytes, write_atomically};
use crate::output::Output;

/// `pullwarden import`: writes a starting workspace; 0 on success.
pub fn import(args: &crate::cli::ImportArgs, out: &Output) -> ExitCode {
    use pullwarden_core::names::{NamespacePattern, dns_label_problem};

    if let Some(problem) = dns_label_problem(&args.name) {
        out.error(&format!("pullwarden: --name `{}` {problem}", args.name));
        return ExitCode::from(1);
    }
    let mut patterns = Vec::new();
    for pattern in &args.namespaces {
        match NamespacePattern::parse(pattern) {
            Ok(p) => patterns.push(p),
            Err(reason) => {
                out.error(&format!("pullwarden: --namespace `{pattern}` {reason}"));
                return ExitCode::from(1);
            }
        }
    }
    if args.out.exists() && std::fs::read_dir(&args.out).map_or(true, |mut d| d.next().is_some()) {
        out.error(&format!(
            "pullwarden: {} exists and is not an empty folder; nothing was written",
            args.out.display()
        ));
        return ExitCode::from(1);
    }
    let Ok(live) = live_state(args.live.as_deref(), &args.cluster, None, out) else {
        return ExitCode::from(1);
    };
    let imported = pullwarden_core::import::import(
        &live,
        &args.name,
        &patterns,
        &DigestKey::from_bytes(random_bytes::<32>()),
    );
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        out.error(&format!(
            "pullwarden: cannot create {}: {e}",
            args.out.display()
        ));
        return ExitCode::from(1);
    }
    let files = pullwarden_spec::emit::workspace_files(&imported.workspace, &imported.variables);
    for (name, text) in &files {
        if let Err(e) = write_atomically(&args.out.join(name), text) {
            out.error(&format!("pullwarden: cannot write {name}: {e}"));
            return ExitCode::from(1);
        }
    }
    for skipped in &imported.skipped {
        out.status(&format!("skipped: {skipped}"));
    }
    out.status(&format!(
        "wrote {} files to {}; set the {} variables listed in credentials.env.example, then run `pullwarden plan {} --adopt`",
        files.len(),
        args.out.display(),
        imported.variables.len(),
        args.out.display()
    ));
    ExitCode::SUCCESS
}
