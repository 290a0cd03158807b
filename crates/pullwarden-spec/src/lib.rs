//! The `pullwarden.dev/v1alpha1` workspace format: finding the files, parsing
//! them with spans, lowering them into the validated domain model of
//! `pullwarden-core`, checking and resolving credentials, and describing every
//! problem as a diagnostic that points at the file, line and column.
//!
//! Architecture invariant: this crate reads the workspace's files and (through
//! [`credentials::Environment`]) credentials, and nothing else: no cluster, no
//! network. It never stops at the first problem, and no message it produces
//! contains a credential.

pub mod credentials;
pub mod diag;
pub mod format;
pub mod load;
pub mod lower;
pub mod yaml;

use std::path::Path;

use pullwarden_core::model::Workspace;

pub use diag::{Problem, Severity, Sources};

/// A loaded workspace: its sources, the model (when one could be built) and every problem.
pub struct Loaded {
    pub sources: Sources,
    pub workspace: Option<Workspace>,
    pub problems: Vec<Problem>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }
}

/// Reads and validates the workspace at `path` (a file or a directory),
/// checking credential files that are present. Credentials are not resolved.
pub fn load(path: &Path, env: &dyn credentials::Environment) -> Loaded {
    let mut sources = Sources::default();
    let files = match load::workspace_files(path) {
        Ok(files) => files,
        Err(problem) => {
            return Loaded {
                sources,
                workspace: None,
                problems: vec![problem],
            };
        }
    };
    let (parsed, mut problems) = load::read_files(path, &files, &mut sources);
    let lower::Lowered {
        workspace,
        problems: lowering,
        literal_secrets,
    } = lower::lower(&parsed);
    problems.extend(lowering);
    if problems.iter().any(|p| {
        p.code == "pullwarden::spec::yaml_syntax" || p.code == "pullwarden::spec::unreadable"
    }) {
        // The Workspace document may be in the file that could not be read.
        problems.retain(|p| p.code != "pullwarden::spec::missing_workspace");
    }
    for origin in &literal_secrets {
        sources.redact(origin);
    }
    if let Some(ws) = &workspace {
        problems.extend(credentials::check_credential_files(ws, env));
    }
    Loaded {
        sources,
        workspace,
        problems,
    }
}
