//! `pullwarden validate --check-registries`: one login per registry of the
//! workspace, before apply rolls a bad password into every namespace.
//!
//! At most one authentication attempt per (Registry, server) per run:
//! registries lock accounts after a few failures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use pullwarden_core::escape;
use pullwarden_core::model::{RegistrySource, ResolvedRegistry, Workspace};
use pullwarden_registry::{Client, ClientOptions, Credential, LoginOutcome};
use pullwarden_spec::diag::Problem;

/// How registries are reached (the same flags as `can-pull --probe`).
pub struct Reach {
    pub registry_ca: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    pub timeout: std::time::Duration,
}

/// The host (and port) a docker-config server key names: `quay.io`,
/// `registry.example.com:5000`; `https://index.docker.io/v1/` is `index.docker.io`.
fn host_of(server: &str) -> &str {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    rest.split('/').next().unwrap_or(rest)
}

/// Logs in to every registry once; a rejected credential is an error at the
/// Registry's place in the YAML, a registry that could not be asked a warning.
pub fn check(
    ws: &Workspace,
    resolved: &BTreeMap<String, ResolvedRegistry>,
    reach: &Reach,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let extra_ca_pem = match &reach.registry_ca {
        Some(path) => {
            match pullwarden_input::read(path, pullwarden_input::Limit::CREDENTIAL_FILE) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    problems.push(Problem::error(
                        "pullwarden::registry::ca",
                        format!("--registry-ca: {e}"),
                    ));
                    return problems;
                }
            }
        }
        None => None,
    };
    let client = match Client::new(&ClientOptions {
        extra_ca_pem,
        plain_http_hosts: reach.insecure_registries.clone(),
        timeout: reach.timeout,
    }) {
        Ok(client) => client,
        Err(e) => {
            problems.push(Problem::error(
                "pullwarden::registry::client",
                format!("cannot set up the registry client: {e}"),
            ));
            return problems;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            problems.push(Problem::error(
                "pullwarden::registry::client",
                format!("cannot start the async runtime: {e}"),
            ));
            return problems;
        }
    };
    let mut tried: BTreeSet<(String, String)> = BTreeSet::new();
    for registry in ws.registries.values() {
        let Some(resolved) = resolved.get(&registry.name) else {
            continue;
        };
        for entry in &resolved.entries {
            let host = host_of(&entry.server).to_owned();
            if !tried.insert((registry.name.clone(), host.clone())) {
                continue;
            }
            // An audited use: the username and password leave the process
            // for the registry they belong to, and nowhere else.
            let credential =
                Credential::new(entry.username.expose().to_owned(), entry.password.clone());
            let outcome = runtime.block_on(client.login(&host, &credential));
            let shown_server = escape::text(&entry.server);
            match outcome {
                Ok(LoginOutcome::Accepted | LoginOutcome::NotRequired) => {}
                Ok(LoginOutcome::CredentialRejected { by }) => problems.push(
                    Problem::error(
                        "pullwarden::registry::credential_rejected",
                        format!(
                            "Registry `{}`: the credential was rejected by {by} of {shown_server}",
                            registry.name
                        ),
                    )
                    .at(
                        match &registry.source {
                            RegistrySource::Login { password, .. } => &password.origin,
                            RegistrySource::DockerConfigFile(file)
                            | RegistrySource::DockercfgFile(file) => &file.origin,
                        },
                        "rejected",
                    )
                    .help("fix the username or password (or the variable or file it comes from) before applying: apply would roll it into every namespace"),
                ),
                Ok(other) => problems.push(
                    Problem::warning(
                        "pullwarden::registry::unchecked",
                        format!(
                            "Registry `{}`: could not check the credential with {shown_server}: {}",
                            registry.name,
                            escape::text(&other.to_string())
                        ),
                    )
                    .at(&registry.origin, "not checked"),
                ),
                Err(e) => problems.push(
                    Problem::warning(
                        "pullwarden::registry::unchecked",
                        format!(
                            "Registry `{}`: cannot check {shown_server}: {}",
                            registry.name,
                            escape::text(&e.to_string())
                        ),
                    )
                    .at(&registry.origin, "not checked"),
                ),
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts_of_server_keys() {
        assert_eq!(host_of("quay.io"), "quay.io");
        assert_eq!(host_of("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(
            host_of("registry.example.com:5000/team"),
            "registry.example.com:5000"
        );
        assert_eq!(host_of("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
