//! Loading the workspace (with its credentials resolved) and noticing when
//! its files change.

use std::collections::BTreeMap;
use std::path::Path;

use pullwarden_core::model::{ResolvedRegistry, Workspace};
use pullwarden_spec::credentials::{self, ProcessEnvironment};
use sha2::{Digest as _, Sha256};

/// A workspace ready to plan with.
pub struct Loaded {
    pub workspace: Workspace,
    pub registries: BTreeMap<String, ResolvedRegistry>,
    /// The warnings of the load, one line each (code and message, never a value).
    pub warnings: Vec<String>,
}

/// Loads and resolves the workspace at `path`; on errors, every problem as
/// one line (code and message: problems name variables and paths, never values).
pub fn load(path: &Path) -> Result<Loaded, Vec<String>> {
    let env = ProcessEnvironment;
    let mut loaded = pullwarden_spec::load(path, &env);
    loaded
        .problems
        .retain(|p| p.code != pullwarden_spec::diag::codes::CREDENTIAL_FILE_ABSENT);
    let mut registries = BTreeMap::new();
    if !loaded.has_errors()
        && let Some(ws) = &loaded.workspace
    {
        let (resolved, problems) = credentials::resolve(ws, &env);
        registries = resolved;
        loaded.problems.extend(problems);
    }
    let line = |p: &pullwarden_spec::diag::Problem| match &p.path {
        Some(file) => format!("{}: {} ({file})", p.code, p.message),
        None => format!("{}: {}", p.code, p.message),
    };
    if loaded.has_errors() {
        return Err(loaded
            .problems
            .iter()
            .filter(|p| p.is_error())
            .map(line)
            .collect());
    }
    let warnings = loaded.problems.iter().map(line).collect();
    match loaded.workspace {
        // One controller keeps one cluster: it cannot tell which of a
        // fleet's clusters it runs in, so it would place every cluster's
        // declarations here.
        Some(workspace) if !workspace.clusters.is_empty() => Err(vec![format!(
            "fleet_not_supported: workspace {} names clusters (spec.clusters); pullwarden run keeps one cluster and cannot tell which of them it is: use `pullwarden apply` for a fleet, or give run a workspace without spec.clusters",
            workspace.name
        )]),
        Some(workspace) => Ok(Loaded {
            workspace,
            registries,
            warnings,
        }),
        None => Err(vec!["no workspace was found".to_owned()]),
    }
}

/// A digest of every file under `path` (following symbolic links, so a
/// mounted `ConfigMap`'s `..data` swap changes it): names and contents.
/// Unreadable entries count by their name, so a change to them is noticed too.
pub fn fingerprint(path: &Path) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let walk = walkdir::WalkDir::new(path)
        .follow_links(true)
        .sort_by_file_name()
        .max_depth(8);
    for entry in walk {
        match entry {
            Ok(entry) if entry.file_type().is_file() => {
                hasher.update(entry.path().as_os_str().as_encoded_bytes());
                hasher.update([0]);
                match std::fs::read(entry.path()) {
                    Ok(bytes) => {
                        hasher.update((bytes.len() as u64).to_le_bytes());
                        hasher.update(&bytes);
                    }
                    Err(e) => hasher.update(format!("unreadable {e}").as_bytes()),
                }
            }
            Ok(_) => {}
            Err(e) => hasher.update(format!("error {e}").as_bytes()),
        }
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn a_changed_file_changes_the_fingerprint() {
        let dir = std::env::temp_dir().join(format!("pw-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "one").unwrap();
        let first = fingerprint(&dir);
        assert_eq!(first, fingerprint(&dir));
        std::fs::write(dir.join("a.yaml"), "two").unwrap();
        assert_ne!(first, fingerprint(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
