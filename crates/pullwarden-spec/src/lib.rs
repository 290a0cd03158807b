//! The `pullwarden.dev/v1alpha1` workspace format: finding the files, parsing
//! them with spans, lowering them into the validated domain model of
//! `pullwarden-core`, checking and resolving credentials, and describing every
//! problem as a diagnostic that points at the file, line and column.
//!
//! Architecture invariant: this crate reads the workspace's files and (through
//! [`credentials::Environment`]) credentials, and nothing else: no cluster, no
//! network. It never stops at the first problem, and no message it produces
//! contains a credential.

pub mod command;
pub mod credentials;
pub mod diag;
pub mod emit;
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

/// Validates one in-memory workspace file, as if read from `path` (used by
/// the fuzzer and by tests; relative credential paths start at `path`'s folder).
pub fn load_str(path: &Path, text: &str, env: &dyn credentials::Environment) -> Loaded {
    let mut sources = Sources::default();
    let file = sources.add(path, path.display().to_string(), text.to_string());
    let dir = path
        .parent()
        .map_or_else(std::path::PathBuf::new, Path::to_path_buf);
    let mut problems = Vec::new();
    let parsed = match yaml::parse_documents(text) {
        Ok(documents) => vec![lower::ParsedFile {
            file,
            dir,
            documents,
        }],
        Err(error) => {
            problems.push(load::syntax_problem(&mut sources, file, &error));
            return Loaded {
                sources,
                workspace: None,
                problems,
            };
        }
    };
    finish(sources, &parsed, problems, env, &workspace_folder(path))
}

/// The folder credential files must lie in: the workspace folder, or the
/// folder of a workspace given as one file.
fn workspace_folder(path: &Path) -> std::path::PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::path::PathBuf::from("."),
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
    let (parsed, problems) = load::read_files(path, &files, &mut sources);
    finish(sources, &parsed, problems, env, &workspace_folder(path))
}

fn finish(
    mut sources: Sources,
    parsed: &[lower::ParsedFile],
    mut problems: Vec<Problem>,
    env: &dyn credentials::Environment,
    root: &Path,
) -> Loaded {
    let lower::Lowered {
        workspace,
        problems: lowering,
        literal_secrets,
    } = lower::lower(parsed);
    problems.extend(lowering);
    if problems.iter().any(|p| {
        p.code == crate::diag::codes::YAML_SYNTAX
            || p.code == crate::diag::codes::YAML_LIMIT
            || p.code == crate::diag::codes::UNREADABLE
    }) {
        // The Workspace document may be in the file that could not be read.
        problems.retain(|p| p.code != crate::diag::codes::MISSING_WORKSPACE);
    }
    for origin in &literal_secrets {
        sources.redact(origin);
    }
    if let Some(ws) = &workspace {
        let outside = credentials::check_outside_workspace(ws, root, env);
        if outside.is_empty() {
            problems.extend(credentials::check_credential_files(ws, env));
        } else {
            // Not read: they are outside what this workspace may reference.
            problems.extend(outside);
        }
    }
    Loaded {
        sources,
        workspace,
        problems,
    }
}
