//! Credentials: checking credential files when they are present (validate),
//! and resolving every `fromEnv` / `fromFile` / credential file into values
//! (`validate --resolve`, plan, apply).
//!
//! Resolution reads the environment and files only through [`Environment`], so
//! tests pass plain data. Nothing here ever puts a credential into a message.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use pullwarden_input::InputError;

use pullwarden_core::dockerconfig::{self, ConfigFormat, Entry};
use pullwarden_core::model::{Located, Registry, RegistrySource, ValueSource, Workspace};
use pullwarden_core::secret::SecretString;

use crate::diag::Problem;
use crate::lower::normalize_server;

/// Where resolution reads variables and files from.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    /// A credential file's text: a regular file, at most
    /// [`pullwarden_input::Limit::CREDENTIAL_FILE`].
    fn read(&self, path: &Path) -> Result<String, InputError>;
    fn exists(&self, path: &Path) -> bool;
    /// Whether credential files may lie outside the workspace folder
    /// (`--allow-outside-files`). By default they may not: a workspace in a
    /// pull request could otherwise copy any file of the CI runner into a Secret.
    fn allow_outside_workspace(&self) -> bool {
        false
    }
}

static ALLOW_OUTSIDE_WORKSPACE: AtomicBool = AtomicBool::new(false);

/// Lets [`ProcessEnvironment`] read credential files outside the workspace
/// folder (the binary calls this for `--allow-outside-files`).
pub fn allow_files_outside_workspace() {
    ALLOW_OUTSIDE_WORKSPACE.store(true, Ordering::Relaxed);
}

/// The process environment and the real filesystem.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn read(&self, path: &Path) -> Result<String, InputError> {
        pullwarden_input::read_to_string(path, pullwarden_input::Limit::CREDENTIAL_FILE)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn allow_outside_workspace(&self) -> bool {
        ALLOW_OUTSIDE_WORKSPACE.load(Ordering::Relaxed)
    }
}

/// Credential files (`fromFile`, `dockerConfigFile`, `dockercfgFile`) that
/// resolve outside the workspace folder `root` (symlinks followed), as
/// errors at their place, unless the environment allows them.
pub fn check_outside_workspace(ws: &Workspace, root: &Path, env: &dyn Environment) -> Vec<Problem> {
    if env.allow_outside_workspace() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for registry in ws.registries.values() {
        let mut files = Vec::new();
        match &registry.source {
            RegistrySource::Login {
                username, password, ..
            } => {
                for value in [username, password] {
                    if let ValueSource::FromFile(path) = &value.value {
                        files.push((path, &value.origin));
                    }
                }
            }
            RegistrySource::DockerConfigFile(path) | RegistrySource::DockercfgFile(path) => {
                files.push((&path.value, &path.origin));
            }
        }
        for (path, origin) in files {
            if !pullwarden_input::resolves_inside(root, path) {
                problems.push(
                    Problem::error(
                        "pullwarden::spec::outside_workspace",
                        format!(
                            "Registry `{}`: `{}` is outside the workspace folder `{}`",
                            registry.name,
                            path.display(),
                            root.display()
                        ),
                    )
                    .at(origin, "outside the workspace")
                    .help("credential files must lie inside the workspace folder (symlinks resolved); to read this one anyway, pass --allow-outside-files or set PULLWARDEN_ALLOW_OUTSIDE_FILES=true"),
                );
            }
        }
    }
    problems
}

pub use pullwarden_core::model::ResolvedRegistry;

/// Checks credential files that exist (a missing one is only noted: a pull
/// request from a fork has no credentials), and then that no PullSecret merges
/// two registries for one server.
pub fn check_credential_files(ws: &Workspace, env: &dyn Environment) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut servers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for registry in ws.registries.values() {
        let (path, format) = match &registry.source {
            RegistrySource::Login { server, .. } => {
                servers.insert(&registry.name, vec![normalize_server(&server.value)]);
                continue;
            }
            RegistrySource::DockerConfigFile(path) => (path, ConfigFormat::ConfigJson),
            RegistrySource::DockercfgFile(path) => (path, ConfigFormat::Dockercfg),
        };
        if !env.exists(&path.value) {
            problems.push(
                Problem::note(
                    crate::diag::codes::CREDENTIAL_FILE_ABSENT,
                    format!(
                        "Registry `{}`: credential file not checked, it is absent here",
                        registry.name
                    ),
                )
                .at(&path.origin, "absent")
                .help("plan, apply and `validate --resolve` require it"),
            );
            continue;
        }
        match read_credential_file(registry, path, format, env) {
            Ok(entries) => {
                servers.insert(
                    &registry.name,
                    entries
                        .iter()
                        .map(|e| normalize_server(&e.server))
                        .collect(),
                );
            }
            Err(problem) => problems.push(problem),
        }
    }
    for secret in &ws.pull_secrets {
        let mut seen: BTreeMap<&str, &Located<String>> = BTreeMap::new();
        for reference in &secret.registries {
            // Login registries were already compared while lowering.
            if matches!(
                ws.registries.get(&reference.value).map(|r| &r.source),
                Some(RegistrySource::Login { .. })
            ) {
                continue;
            }
            let Some(list) = servers.get(reference.value.as_str()) else {
                continue;
            };
            for server in list {
                if let Some(first) = seen.get(server.as_str()) {
                    if first.value != reference.value {
                        problems.push(
                            Problem::error(
                                "pullwarden::spec::duplicate_server",
                                format!(
                                    "PullSecret `{}` merges registries `{}` and `{}`, which both hold server `{server}`",
                                    secret.name, first.value, reference.value
                                ),
                            )
                            .at(&reference.origin, "second registry for that server")
                            .also(&first.origin, "first one here")
                            .help("one secret holds one entry per server; keep one of them"),
                        );
                    }
                } else {
                    seen.insert(server, reference);
                }
            }
        }
        // Also compare file servers against login servers of the same secret.
        for reference in &secret.registries {
            if let Some(Registry {
                source: RegistrySource::Login { server, .. },
                ..
            }) = ws.registries.get(&reference.value)
                && let Some(first) = seen.get(normalize_server(&server.value).as_str())
                && first.value != reference.value
            {
                problems.push(
                    Problem::error(
                        "pullwarden::spec::duplicate_server",
                        format!(
                            "PullSecret `{}` merges registries `{}` and `{}`, which both hold server `{}`",
                            secret.name, first.value, reference.value, server.value
                        ),
                    )
                    .at(&reference.origin, "second registry for that server")
                    .also(&first.origin, "first one here")
                    .help("one secret holds one entry per server; keep one of them"),
                );
            }
        }
    }
    problems
}

fn read_credential_file(
    registry: &Registry,
    path: &Located<std::path::PathBuf>,
    format: ConfigFormat,
    env: &dyn Environment,
) -> Result<Vec<Entry>, Problem> {
    let text = env.read(&path.value).map_err(|e| {
        Problem::error(
            "pullwarden::spec::credential_file",
            format!(
                "Registry `{}`: cannot read `{}`: {}",
                registry.name,
                path.value.display(),
                e
            ),
        )
        .at(&path.origin, "unreadable")
    })?;
    dockerconfig::parse(&text, format).map_err(|problem| {
        let code = match problem {
            dockerconfig::ConfigProblem::OnlyCredentialHelpers => {
                "pullwarden::spec::credential_helpers"
            }
            _ => "pullwarden::spec::credential_file",
        };
        let mut out = Problem::error(
            code,
            format!("Registry `{}`: `{}` {problem}", registry.name, path.value.display()),
        )
        .at(&path.origin, "this file");
        if code.ends_with("credential_helpers") {
            out = out.help("a cluster cannot run credential helpers: write the credentials into the file (e.g. `docker login` with `credsStore` removed), or use server/username/password");
        }
        out
    })
}

/// Resolves every registry's credentials. Problems name the registry and the
/// variable or path, never a value.
pub fn resolve(
    ws: &Workspace,
    env: &dyn Environment,
) -> (BTreeMap<String, ResolvedRegistry>, Vec<Problem>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for registry in ws.registries.values() {
        let resolved = match &registry.source {
            RegistrySource::Login {
                server,
                username,
                password,
                email,
            } => {
                let user = resolve_value(registry, "username", username, env);
                let pass = resolve_value(registry, "password", password, env);
                match (user, pass) {
                    (Ok(user), Ok(pass)) => {
                        if user.expose().contains(':') {
                            problems.push(
                                Problem::error(
                                    "pullwarden::spec::colon_in_username",
                                    format!(
                                        "Registry `{}`: the username contains ':'",
                                        registry.name
                                    ),
                                )
                                .at(&username.origin, "resolved username contains ':'"),
                            );
                            continue;
                        }
                        Some(ResolvedRegistry {
                            name: registry.name.clone(),
                            entries: vec![Entry {
                                server: server.value.clone(),
                                username: user,
                                password: pass,
                                email: email.as_ref().map(|e| e.value.clone()),
                            }],
                            usernames_public: !username.value.is_sensitive(),
                        })
                    }
                    (user, pass) => {
                        problems.extend(user.err());
                        problems.extend(pass.err());
                        None
                    }
                }
            }
            RegistrySource::DockerConfigFile(path) | RegistrySource::DockercfgFile(path) => {
                let format = if matches!(registry.source, RegistrySource::DockerConfigFile(_)) {
                    ConfigFormat::ConfigJson
                } else {
                    ConfigFormat::Dockercfg
                };
                match read_credential_file(registry, path, format, env) {
                    Ok(entries) => Some(ResolvedRegistry {
                        name: registry.name.clone(),
                        entries,
                        usernames_public: false,
                    }),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                }
            }
        };
        if let Some(resolved) = resolved {
            out.insert(registry.name.clone(), resolved);
        }
    }
    (out, problems)
}

fn resolve_value(
    registry: &Registry,
    what: &str,
    value: &Located<ValueSource>,
    env: &dyn Environment,
) -> Result<SecretString, Problem> {
    match &value.value {
        ValueSource::Literal(text) => Ok(SecretString::new(text.clone())),
        ValueSource::FromEnv(var) => match env.var(var) {
            Some(text) if !text.is_empty() => Ok(SecretString::new(text)),
            found => Err(Problem::error(
                "pullwarden::spec::missing_credential",
                format!(
                    "Registry `{}`: the {what} comes from `{var}`, which is {}",
                    registry.name,
                    if found.is_some() { "empty" } else { "not set" }
                ),
            )
            .at(&value.origin, format!("needs ${var}"))
            .help(format!("export {var}=... before running pullwarden"))),
        },
        ValueSource::FromFile(path) => match env.read(path) {
            Ok(mut text) => {
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                if text.is_empty() {
                    Err(Problem::error(
                        "pullwarden::spec::missing_credential",
                        format!(
                            "Registry `{}`: the {what} file `{}` is empty",
                            registry.name,
                            path.display()
                        ),
                    )
                    .at(&value.origin, "empty file"))
                } else {
                    Ok(SecretString::new(text))
                }
            }
            Err(e) => Err(Problem::error(
                "pullwarden::spec::missing_credential",
                format!(
                    "Registry `{}`: cannot read the {what} file `{}`: {}",
                    registry.name,
                    path.display(),
                    e
                ),
            )
            .at(&value.origin, "unreadable")),
        },
    }
}
