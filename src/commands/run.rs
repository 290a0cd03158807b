//! `pullwarden run`: the reconciler of `pullwarden-controller`, with its log
//! lines printed through [`Output`].

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use pullwarden_controller::{Config, Log, RunError};

use super::{Failed, connect, read_options, runtime};
use crate::cli::{LogFormat, RunArgs};
use crate::output::Output;

/// `pullwarden run`: exit 0 after SIGTERM or SIGINT, 1 when it cannot start.
pub fn run(args: &RunArgs, out: &Output) -> ExitCode {
    match run_inner(args, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed) => ExitCode::from(1),
    }
}

fn run_inner(args: &RunArgs, out: &Output) -> Result<(), Failed> {
    let metrics_addr = if args.metrics_addr == "off" {
        None
    } else {
        Some(args.metrics_addr.parse().map_err(|_| {
            out.error(&format!(
                "pullwarden: --metrics-addr: `{}` is not an address such as 127.0.0.1:9464 (or `off`)",
                args.metrics_addr
            ));
            Failed
        })?)
    };
    let config = Config {
        path: args.path.clone(),
        resync: args.resync,
        debounce: args.debounce,
        workspace_poll: args.workspace_poll,
        credential_refresh_at: args.credential_refresh_at,
        metrics_addr,
        read: read_options(&args.cluster),
        concurrency: usize::from(args.concurrency),
        adopt: args.adopt,
        lease: args
            .leader_elect
            .then(|| pullwarden_controller::lease::LeaseConfig {
                namespace: args
                    .lease_namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
                name: args.lease_name.clone(),
                identity: identity(),
                duration: args.lease_duration,
            }),
    };
    // A fleet is refused before connecting (the controller refuses it too,
    // on every reload); any other problem is the controller's to report.
    let loaded = pullwarden_spec::load(
        &args.path,
        &pullwarden_spec::credentials::ProcessEnvironment,
    );
    if let Some(ws) = loaded.workspace.filter(|ws| !ws.clusters.is_empty()) {
        out.error(&format!(
            "pullwarden: workspace {} names clusters (spec.clusters); pullwarden run keeps one cluster and cannot tell which of them it is: use `pullwarden apply` for a fleet, or give run a workspace without spec.clusters",
            pullwarden_core::render::safe(&ws.name)
        ));
        return Err(Failed);
    }
    let rt = runtime(out)?;
    let client = connect(&rt, &args.cluster, out)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Log>();
    let sink: pullwarden_controller::Sink = Arc::new(move |log| {
        let _ = tx.send(log);
    });
    let format = args.log_format;
    let result = rt.block_on(async {
        let mut running = std::pin::pin!(pullwarden_controller::run(client, config, sink));
        loop {
            tokio::select! {
                result = &mut running => {
                    while let Ok(log) = rx.try_recv() {
                        print(out, format, &log);
                    }
                    break result;
                }
                Some(log) = rx.recv() => print(out, format, &log),
            }
        }
    });
    match result {
        Ok(()) => Ok(()),
        Err(RunError::Workspace(problems)) => {
            // The full reports, with their snippets; a workspace that loads
            // but that run refuses (a fleet) has only its reasons.
            if super::load_resolved(&args.path, out).is_ok() {
                for problem in &problems {
                    out.error(&format!("pullwarden: {problem}"));
                }
            } else if problems.is_empty() {
                out.error("pullwarden: the workspace cannot be loaded");
            }
            Err(Failed)
        }
        Err(e) => {
            out.error(&format!("pullwarden: {e}"));
            Err(Failed)
        }
    }
}

/// This replica's name in the Lease: the host (the pod's name in a
/// Deployment), the process id and a random suffix.
fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "pullwarden".to_owned());
    let suffix = super::random_bytes::<4>();
    format!(
        "{host}-{}-{:02x}{:02x}{:02x}{:02x}",
        std::process::id(),
        suffix[0],
        suffix[1],
        suffix[2],
        suffix[3]
    )
}

/// One log line on stderr. `-q` prints only errors, as in every command:
/// info and warning lines are dropped, error lines always printed.
fn print(out: &Output, format: LogFormat, log: &Log) {
    let write = |line: &str| {
        if log.level == pullwarden_controller::Level::Error {
            out.error(line);
        } else {
            out.status(line);
        }
    };
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    match format {
        LogFormat::Text => {
            let mut line = format!(
                "pullwarden run: {} {}",
                log.level.as_str(),
                pullwarden_core::escape::text(&log.message)
            );
            for (key, value) in &log.fields {
                let _ = write!(line, " {key}={}", pullwarden_core::escape::text(value));
            }
            write(&line);
        }
        LogFormat::Json => {
            let mut object = serde_json::Map::new();
            object.insert("ts".into(), serde_json::json!(seconds));
            object.insert("level".into(), log.level.as_str().into());
            object.insert("msg".into(), log.message.clone().into());
            for (key, value) in &log.fields {
                object.insert((*key).into(), value.clone().into());
            }
            write(&serde_json::Value::Object(object).to_string());
        }
    }
}
