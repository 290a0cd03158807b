//! Writing workspace YAML: the one place pullwarden produces the format it
//! reads (`pullwarden import`). The text is built so that `load(emit(x))`
//! gives back `x` (tested in `tests/emit.rs`), and so that nothing taken
//! from a cluster can escape its place: every value is a double-quoted YAML
//! scalar, every comment one line of [`pullwarden_core::escape::text`], and
//! `credentials.env.example`, which people source in a shell, holds only
//! comments and `NAME=` lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pullwarden_core::escape;
use pullwarden_core::import::{ImportedSubject, ImportedWorkspace};
use pullwarden_core::model::SecretFormat;

use crate::format::API_VERSION;

/// A YAML double-quoted scalar holding `text` exactly: JSON's escapes, and
/// `\uXXXX` for what JSON leaves raw but a terminal or editor would act on.
fn quoted(text: &str) -> String {
    let json = serde_json::to_string(text).expect("strings serialize");
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if escape::is_unsafe(c) {
            let _ = write!(out, "\\u{:04X}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|item| quoted(item))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files of a workspace (file name → text): `workspace.yaml`,
/// `registries.yaml`, `pull-secrets.yaml`, `grants.yaml` (each only when it
/// has documents) and `credentials.env.example` listing `variables`.
pub fn workspace_files(
    ws: &ImportedWorkspace,
    variables: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert(
        "workspace.yaml".to_string(),
        format!(
            "# Written by `pullwarden import`. Review it, commit it, then set the variables\n# listed in credentials.env.example and run `pullwarden plan --adopt`.\napiVersion: {API_VERSION}\nkind: Workspace\nmetadata:\n  name: {}\nspec:\n  namespaces:\n    include: [{}]\n  prune: {}\n",
            quoted(&ws.name),
            quoted_list(&ws.include),
            ws.prune
        ),
    );
    let mut registries = String::new();
    for registry in &ws.registries {
        let _ = write!(
            registries,
            "---\napiVersion: {API_VERSION}\nkind: Registry\nmetadata:\n  name: {}\nspec:\n  server: {}\n  username: {{fromEnv: {}}}\n  password: {{fromEnv: {}}}\n",
            quoted(&registry.name),
            quoted(&registry.server),
            registry.username_variable,
            registry.password_variable,
        );
        if let Some(email) = &registry.email {
            let _ = writeln!(registries, "  email: {}", quoted(email));
        }
    }
    let mut secrets = String::new();
    for secret in &ws.pull_secrets {
        let _ = write!(
            secrets,
            "---\n# imported from Secret {} in {}\napiVersion: {API_VERSION}\nkind: PullSecret\nmetadata:\n  name: {}\nspec:\n",
            escape::text(&secret.name),
            escape::text(&secret.found_in.join(", ")),
            quoted(&secret.name)
        );
        if secret.format == SecretFormat::Dockercfg {
            secrets.push_str("  format: dockercfg\n");
        }
        let _ = writeln!(
            secrets,
            "  registries: [{}]",
            quoted_list(&secret.registries)
        );
        let _ = writeln!(
            secrets,
            "  namespaces: [{}]",
            quoted_list(&secret.namespaces)
        );
        if !secret.service_accounts.is_empty() {
            secrets.push_str("  serviceAccounts:\n");
            for (name, pull, mount) in &secret.service_accounts {
                let purposes: Vec<&str> = [("pull", *pull), ("mount", *mount)]
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(p, _)| *p)
                    .collect();
                let _ = writeln!(
                    secrets,
                    "    - name: {}\n      for: [{}]\n      ifMissing: skip",
                    quoted(name),
                    purposes.join(", ")
                );
            }
        }
    }
    let mut grants = String::new();
    for grant in &ws.grants {
        let _ = write!(
            grants,
            "---\n# imported from RoleBinding {} in {}\napiVersion: {API_VERSION}\nkind: PullGrant\nmetadata:\n  name: {}\nspec:\n  role: {}\n  namespaces: [{}]\n  to:\n",
            escape::text(&grant.found_as),
            escape::text(&grant.namespaces.join(", ")),
            quoted(&grant.name),
            quoted(&grant.role),
            quoted_list(&grant.namespaces)
        );
        for subject in &grant.to {
            let line = match subject {
                ImportedSubject::ServiceAccount { namespace, name } => {
                    format!("serviceAccount: {}", quoted(&format!("{namespace}/{name}")))
                }
                ImportedSubject::AllServiceAccountsIn(ns) => {
                    format!("allServiceAccountsIn: {}", quoted(ns))
                }
                ImportedSubject::Group(name) => format!("group: {}", quoted(name)),
                ImportedSubject::User(name) => format!("user: {}", quoted(name)),
            };
            let _ = writeln!(grants, "    - {line}");
        }
    }
    for (name, text) in [
        ("registries.yaml", registries),
        ("pull-secrets.yaml", secrets),
        ("grants.yaml", grants),
    ] {
        if !text.is_empty() {
            files.insert(
                name.to_string(),
                text.trim_start_matches("---\n").to_string(),
            );
        }
    }
    let mut env = String::from(
        "# The variables the imported workspace reads. Values are never written by pullwarden.\n",
    );
    for (var, what) in variables {
        let _ = writeln!(env, "# {}\n{var}=", escape::text(what));
    }
    files.insert("credentials.env.example".to_string(), env);
    files
}
