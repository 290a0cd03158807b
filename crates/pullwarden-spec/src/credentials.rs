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
use pullwarden_core::model::{
    CommandSource, Located, Registry, RegistrySource, ValueSource, Workspace,
};
use pullwarden_core::secret::SecretString;

use crate::command::{self, CommandError, Printed};
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
    /// Runs a `fromCommand` and returns its stdout. By default commands do
    /// not run: only a trusted workspace may start programs.
    fn run_command(&self, command: &CommandSource) -> Result<Vec<u8>, CommandError> {
        let _ = command;
        Err(CommandError::NotAllowed)
    }
    /// Now, in seconds since the Unix epoch (whether an `expiresAt` passed).
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

static ALLOW_OUTSIDE_WORKSPACE: AtomicBool = AtomicBool::new(false);
static ALLOW_COMMANDS: AtomicBool = AtomicBool::new(false);

/// Lets [`ProcessEnvironment`] run `fromCommand` commands (the binary calls
/// this for `--allow-commands`).
pub fn allow_commands() {
    ALLOW_COMMANDS.store(true, Ordering::Relaxed);
}

/// Whether `--allow-commands` was given: the workspace may run programs
/// (its `fromCommand` credentials, the credential plugin of a kubeconfig it names).
pub fn commands_allowed() -> bool {
    ALLOW_COMMANDS.load(Ordering::Relaxed)
}

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
    fn run_command(&self, command: &CommandSource) -> Result<Vec<u8>, CommandError> {
        if ALLOW_COMMANDS.load(Ordering::Relaxed) {
            command::run(command)
        } else {
            Err(CommandError::NotAllowed)
        }
    }
}

/// [`ProcessEnvironment`] that never runs a command, whatever was allowed
/// (`diff` reads workspaces from other git revisions).
pub struct NoCommands;

impl Environment for NoCommands {
    fn var(&self, name: &str) -> Option<String> {
        ProcessEnvironment.var(name)
    }
    fn read(&self, path: &Path) -> Result<String, InputError> {
        ProcessEnvironment.read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        ProcessEnvironment.exists(path)
    }
    fn allow_outside_workspace(&self) -> bool {
        ProcessEnvironment.allow_outside_workspace()
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
/// variable, path or program, never a value. A `fromCommand` runs once per
/// registry.
pub fn resolve(
    ws: &Workspace,
    env: &dyn Environment,
) -> (BTreeMap<String, ResolvedRegistry>, Vec<Problem>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for registry in ws.registries.values() {
        match resolve_registry(registry, env) {
            Ok(resolved) => {
                out.insert(registry.name.clone(), resolved);
            }
            Err(found) => problems.extend(found),
        }
    }
    (out, problems)
}

/// Whether a registry's credentials come from a command (`run` refreshes them).
pub fn from_command(registry: &Registry) -> bool {
    matches!(
        &registry.source,
        RegistrySource::Login { password, .. } if matches!(password.value, ValueSource::FromCommand(_))
    )
}

/// Resolves one registry's credentials (its command, if any, runs once).
pub fn resolve_registry(
    registry: &Registry,
    env: &dyn Environment,
) -> Result<ResolvedRegistry, Vec<Problem>> {
    match &registry.source {
        RegistrySource::Login {
            server,
            username,
            password,
            email,
        } => {
            let printed = match &password.value {
                ValueSource::FromCommand(command) => Some(
                    run_command(registry, command, &password.origin, env).map_err(|p| vec![p])?,
                ),
                _ => None,
            };
            let from_command = printed.is_some();
            let (printed_user, pass, expires_at) = match printed {
                Some(Printed {
                    username,
                    password,
                    expires_at,
                }) => (username, Ok(password), expires_at),
                None => (
                    None,
                    resolve_value(registry, "password", password, env),
                    None,
                ),
            };
            let user = match (&username.value, printed_user) {
                (ValueSource::FromCommand(_), Some(user)) => Ok(user),
                (ValueSource::FromCommand(_), None) => Err(Problem::error(
                    "pullwarden::spec::credential_command",
                    format!(
                        "Registry `{}`: the password command printed no username, and the workspace gives none",
                        registry.name
                    ),
                )
                .at(&username.origin, "no username")
                .help("print JSON {\"username\": ..., \"password\": ...}, or write `username` in the Registry")),
                (_, Some(_)) => Err(Problem::error(
                    "pullwarden::spec::credential_command",
                    format!(
                        "Registry `{}`: the password command printed a username, and the workspace gives one too",
                        registry.name
                    ),
                )
                .at(&username.origin, "username given here")
                .help("leave `username` out of the Registry, or print no `username`")),
                (_, None) => resolve_value(registry, "username", username, env),
            };
            match (user, pass) {
                (Ok(user), Ok(pass)) => {
                    if user.expose().contains(':') {
                        return Err(vec![
                            Problem::error(
                                "pullwarden::spec::colon_in_username",
                                format!("Registry `{}`: the username contains ':'", registry.name),
                            )
                            .at(&username.origin, "resolved username contains ':'"),
                        ]);
                    }
                    Ok(ResolvedRegistry {
                        name: registry.name.clone(),
                        entries: vec![Entry {
                            server: server.value.clone(),
                            username: user,
                            password: pass,
                            email: email.as_ref().map(|e| e.value.clone()),
                        }],
                        usernames_public: !username.value.is_sensitive(),
                        expires_at,
                        from_command,
                    })
                }
                (user, pass) => Err(user.err().into_iter().chain(pass.err()).collect()),
            }
        }
        RegistrySource::DockerConfigFile(path) | RegistrySource::DockercfgFile(path) => {
            let format = if matches!(registry.source, RegistrySource::DockerConfigFile(_)) {
                ConfigFormat::ConfigJson
            } else {
                ConfigFormat::Dockercfg
            };
            let entries = read_credential_file(registry, path, format, env).map_err(|p| vec![p])?;
            Ok(ResolvedRegistry {
                name: registry.name.clone(),
                entries,
                usernames_public: false,
                expires_at: None,
                from_command: false,
            })
        }
    }
}

/// Runs a registry's password command and reads its output; the problem
/// names the registry and the program, never what it printed.
fn run_command(
    registry: &Registry,
    command: &CommandSource,
    origin: &pullwarden_core::model::Origin,
    env: &dyn Environment,
) -> Result<Printed, Problem> {
    let stdout = env.run_command(command).map_err(|error| {
        let code = if matches!(error, CommandError::NotAllowed) {
            "pullwarden::spec::command_not_allowed"
        } else {
            "pullwarden::spec::credential_command"
        };
        Problem::error(
            code,
            format!(
                "Registry `{}`: the password command: {error}",
                registry.name
            ),
        )
        .at(origin, "this command")
    })?;
    command::parse_output(&stdout, env.now()).map_err(|error| {
        Problem::error(
            "pullwarden::spec::credential_command",
            format!(
                "Registry `{}`: the password command `{}` {error}",
                registry.name, command.argv[0]
            ),
        )
        .at(origin, "this command")
        .help("print the password alone, or JSON {\"username\": ..., \"password\": ..., \"expiresAt\": \"2026-01-02T15:04:05Z\"} (username and expiresAt optional)")
    })
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
        // Handled by the caller: the command runs once for the registry.
        ValueSource::FromCommand(_) => Err(Problem::error(
            "pullwarden::spec::credential_command",
            format!(
                "Registry `{}`: the {what} cannot come from a command here",
                registry.name
            ),
        )
        .at(&value.origin, "fromCommand")),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;

    use pullwarden_core::model::CommandSource;
    use pullwarden_input::InputError;

    use super::{Environment, resolve};
    use crate::command::CommandError;

    const NOW: i64 = 1_800_000_000;

    /// Plain data: what each command prints (or how it fails), and a log of
    /// the commands run.
    struct Commands {
        printed: Result<&'static str, &'static str>,
        ran: RefCell<Vec<Vec<String>>>,
    }

    impl Environment for Commands {
        fn var(&self, name: &str) -> Option<String> {
            (name == "USER_VAR").then(|| "from-env".to_owned())
        }
        fn read(&self, path: &Path) -> Result<String, InputError> {
            Err(InputError::new(
                path,
                pullwarden_input::InputErrorKind::NotFound,
            ))
        }
        fn exists(&self, _: &Path) -> bool {
            false
        }
        fn run_command(&self, command: &CommandSource) -> Result<Vec<u8>, CommandError> {
            self.ran.borrow_mut().push(command.argv.clone());
            match self.printed {
                Ok(text) => Ok(text.as_bytes().to_vec()),
                Err(status) => Err(CommandError::Exit {
                    program: command.argv[0].clone(),
                    status: status.to_owned(),
                }),
            }
        }
        fn now(&self) -> i64 {
            NOW
        }
    }

    fn workspace(login: &str) -> String {
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: ws}}
spec: {{namespaces: {{include: [\"team-*\"]}}}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: ecr}}
spec:
  server: 1.dkr.ecr.eu-west-1.amazonaws.com
{login}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: ecr-pull}}
spec:
  registries: [ecr]
  namespaces: [team-a]
"
        )
    }

    /// Loads and resolves; the resolved registry or the problems' codes and messages.
    fn resolved(
        login: &str,
        env: &Commands,
    ) -> Result<super::ResolvedRegistry, Vec<(String, String)>> {
        let loaded = crate::load_str(Path::new("/ws/workspace.yaml"), &workspace(login), env);
        let errors: Vec<_> = loaded
            .problems
            .iter()
            .filter(|p| p.is_error())
            .map(|p| (p.code.to_owned(), p.message.clone()))
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let ws = loaded.workspace.expect("workspace");
        let (mut out, problems) = resolve(&ws, env);
        if problems.is_empty() {
            Ok(out.remove("ecr").expect("resolved"))
        } else {
            Err(problems
                .iter()
                .map(|p| (p.code.to_owned(), p.message.clone()))
                .collect())
        }
    }

    fn env(printed: Result<&'static str, &'static str>) -> Commands {
        Commands {
            printed,
            ran: RefCell::new(Vec::new()),
        }
    }

    const JSON_LOGIN: &str = "  password:\n    fromCommand:\n      command: [./token.sh, --ttl, '20']\n      timeout: 5s";

    #[test]
    fn a_json_command_gives_username_password_and_expiry_and_runs_once() {
        let env = env(Ok(
            r#"{"username": "AWS", "password": "s3cret-pw", "expiresAt": "2027-01-15T10:00:00Z"}"#,
        ));
        let registry = resolved(JSON_LOGIN, &env).unwrap();
        assert_eq!(registry.entries[0].username.expose(), "AWS");
        assert_eq!(registry.entries[0].password.expose(), "s3cret-pw");
        assert_eq!(registry.expires_at, Some(1_800_007_200));
        assert!(!registry.usernames_public);
        assert_eq!(*env.ran.borrow(), [vec!["./token.sh", "--ttl", "20"]]);
    }

    #[test]
    fn a_plain_command_gives_the_password_beside_a_workspace_username() {
        let env = env(Ok("s3cret-pw\n"));
        let login = "  username: 00000000-0000-0000-0000-000000000000\n  password: {fromCommand: {command: [az, acr, login]}}";
        let registry = resolved(login, &env).unwrap();
        assert_eq!(
            registry.entries[0].username.expose(),
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(registry.entries[0].password.expose(), "s3cret-pw");
        assert!(registry.usernames_public);
        assert_eq!(registry.expires_at, None);
    }

    #[test]
    fn username_conflicts_and_absences_are_errors_naming_the_registry() {
        let errors = resolved(JSON_LOGIN, &env(Ok("s3cret-pw\n"))).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "pullwarden::spec::credential_command");
        assert!(errors[0].1.contains("`ecr`") && errors[0].1.contains("no username"));
        let login = "  username: {fromEnv: USER_VAR}\n  password: {fromCommand: {command: [x]}}";
        let errors = resolved(
            login,
            &env(Ok(r#"{"username": "u", "password": "s3cret-pw"}"#)),
        )
        .unwrap_err();
        assert!(errors[0].1.contains("gives one too"), "{errors:?}");
    }

    #[test]
    fn a_failed_or_unreadable_command_names_registry_program_and_status_never_output() {
        let cases = [
            (
                Err("exit status 3"),
                "the password command: `./token.sh` failed (exit status 3)",
            ),
            (Ok("line one\ns3cret-pw\n"), "printed several lines"),
            (
                Ok(r#"{"password": "s3cret-pw", "expiresAt": "2020-01-01T00:00:00Z"}"#),
                "expired already",
            ),
            (
                Ok(r#"{"password": "s3cret-pw", "expiresAt": "soon"}"#),
                "neither an RFC 3339 time",
            ),
            (Ok(r#"{"password": "s3cret-pw""#), "line 1, column"),
        ];
        for (printed, expected) in cases {
            let errors = resolved(JSON_LOGIN, &env(printed)).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            let (code, message) = &errors[0];
            assert_eq!(code, "pullwarden::spec::credential_command");
            assert!(message.starts_with("Registry `ecr`: "), "{message}");
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    #[test]
    fn commands_do_not_run_unless_allowed() {
        struct Default;
        impl Environment for Default {
            fn var(&self, _: &str) -> Option<String> {
                None
            }
            fn read(&self, path: &Path) -> Result<String, InputError> {
                Err(InputError::new(
                    path,
                    pullwarden_input::InputErrorKind::NotFound,
                ))
            }
            fn exists(&self, _: &Path) -> bool {
                false
            }
        }
        let loaded = crate::load_str(Path::new("/ws/w.yaml"), &workspace(JSON_LOGIN), &Default);
        let (resolved, problems) = resolve(loaded.workspace.as_ref().unwrap(), &Default);
        assert!(resolved.is_empty());
        assert_eq!(problems[0].code, "pullwarden::spec::command_not_allowed");
        assert!(problems[0].message.contains("--allow-commands"));
    }
}
