//! A real OCI registry (CNCF distribution) for the tests, started like the
//! control plane: TLS with a fresh test CA, a free loopback port, filesystem
//! storage in the state dir, and a supervisor that stops it when the test
//! process ends however it ends.
//!
//! Two flavours: [`Registry::start_htpasswd`] (bcrypt htpasswd file) and
//! [`Registry::start_token`] (token auth backed by the in-process
//! [`TokenServer`]: ES256 JWTs with a `kid` found in a JWKS file). A third,
//! [`Registry::start_plain_http`], serves htpasswd over plain HTTP, for tests
//! of what a client does when it is not allowed plain HTTP.
//!
//! Every registry has an admin user (random password) that may push anywhere;
//! [`Registry::push_tiny_image`] pushes a one-layer image through the HTTP API.

mod push;
mod supervised;
pub mod token_server;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pki::Pki;
use supervised::Supervised;
pub use token_server::{TokenRequest, TokenServer};

/// The distribution version `scripts/build-registry.sh` builds.
pub const REGISTRY_VERSION: &str = "v3.1.2";
/// Overrides the directory holding the `registry` binary (`scripts/test.sh` sets it).
pub const REGISTRY_BIN_ENV: &str = "PULLWARDEN_REGISTRY_BIN";
/// `service` of the token-auth registry: the token's audience.
pub const TOKEN_SERVICE: &str = "pullwarden-testenv-registry";
/// `issuer` of the token server's tokens.
pub const TOKEN_ISSUER: &str = "pullwarden-testenv-token-server";
/// Name of the admin user every registry has.
pub const ADMIN_USER: &str = "pullwarden-admin";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A registry user and its password (test data, not a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl User {
    pub fn new(name: &str, password: &str) -> User {
        User {
            name: name.to_owned(),
            password: password.to_owned(),
        }
    }
}

/// Token auth: `user` may do `actions` (`pull`, `push`, `*`) on the
/// repositories matching `repositories` (`*` matches anything, `/` included).
/// The anonymous user is `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub user: String,
    pub repositories: String,
    pub actions: Vec<String>,
}

impl AccessRule {
    /// `user` may pull the repositories matching `repositories`.
    pub fn pull(user: &str, repositories: &str) -> AccessRule {
        AccessRule {
            user: user.to_owned(),
            repositories: repositories.to_owned(),
            actions: vec!["pull".to_owned()],
        }
    }
}

enum Auth {
    Htpasswd,
    Token(TokenServer),
}

/// A running registry.
pub struct Registry {
    state_dir: PathBuf,
    host: String,
    tls: bool,
    ca_file: PathBuf,
    ca_pem: String,
    admin: User,
    auth: Auth,
    server: Supervised,
}

impl Registry {
    /// A registry with htpasswd auth (bcrypt) for `users` plus the admin.
    pub async fn start_htpasswd(users: &[User]) -> Result<Registry> {
        Self::start(users, None, true).await
    }

    /// A registry with token auth: the token server knows `users` plus the
    /// admin, grants by `rules` and issues tokens valid for `token_ttl`.
    ///
    /// distribution accepts a token up to 60 s after its `exp` (its `Leeway`),
    /// so a short lifetime shows at the token server first.
    pub async fn start_token(
        users: &[User],
        rules: &[AccessRule],
        token_ttl: Duration,
    ) -> Result<Registry> {
        Self::start(users, Some((rules, token_ttl)), true).await
    }

    /// A registry with htpasswd auth served over plain HTTP (no TLS).
    pub async fn start_plain_http(users: &[User]) -> Result<Registry> {
        Self::start(users, None, false).await
    }

    async fn start(
        users: &[User],
        token: Option<(&[AccessRule], Duration)>,
        tls: bool,
    ) -> Result<Registry> {
        let bin_dir = registry_bin_dir()?;
        let root =
            std::env::var_os(crate::STATE_ROOT_ENV).map_or_else(std::env::temp_dir, PathBuf::from);
        std::fs::create_dir_all(&root)?;
        let state_dir = tempfile::Builder::new()
            .prefix("pullwarden-registry-")
            .tempdir_in(&root)?
            .keep()
            .canonicalize()?;
        let pki = Pki::generate(
            &state_dir.join("pki"),
            "pullwarden-admin",
            "pullwarden-user",
        )?;
        let ca_pem = pki.ca_pem.clone();
        let admin = User::new(ADMIN_USER, &format!("{:032x}", rand::random::<u128>()));
        let mut all_users = users.to_vec();
        all_users.push(admin.clone());

        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let storage = state_dir.join("storage");
        std::fs::create_dir_all(&storage)?;
        let file = |p: &Path| p.display().to_string();

        let (auth, auth_yaml) = match token {
            None => {
                let htpasswd = state_dir.join("htpasswd");
                let mut text = String::new();
                for user in &all_users {
                    // cost 4, bcrypt's minimum: the registry accepts any cost, and tests stay fast
                    let hash = bcrypt::hash(&user.password, 4)?;
                    writeln!(text, "{}:{hash}", user.name)?;
                }
                std::fs::write(&htpasswd, text)?;
                let yaml = format!(
                    "  htpasswd:\n    realm: pullwarden-testenv\n    path: {}\n",
                    file(&htpasswd)
                );
                (Auth::Htpasswd, yaml)
            }
            Some((rules, ttl)) => {
                let jwks = state_dir.join("jwks.json");
                let serving_cert = std::fs::read_to_string(&pki.serving_cert_file)?;
                let serving_key = std::fs::read_to_string(&pki.serving_key_file)?;
                let mut rules = rules.to_vec();
                rules.push(AccessRule {
                    user: ADMIN_USER.to_owned(),
                    repositories: "*".to_owned(),
                    actions: vec!["*".to_owned()],
                });
                let server = TokenServer::start(
                    (&serving_cert, &serving_key),
                    &jwks,
                    TOKEN_SERVICE,
                    TOKEN_ISSUER,
                    &all_users,
                    &rules,
                    ttl,
                )?;
                let yaml = format!(
                    "  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    jwks: {}\n    signingalgorithms:\n      - ES256\n",
                    server.url(),
                    file(&jwks)
                );
                (Auth::Token(server), yaml)
            }
        };
        let tls_yaml = if tls {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                file(&pki.serving_cert_file),
                file(&pki.serving_key_file)
            )
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {host}\n  secret: {secret:032x}\n  draintimeout: 1s\n{tls_yaml}auth:\n{auth_yaml}",
            storage = file(&storage),
            secret = rand::random::<u128>(),
        );
        let config_file = state_dir.join("config.yml");
        std::fs::write(&config_file, config)?;
        let server = Supervised::spawn(
            "registry",
            &state_dir,
            &bin_dir.join("registry"),
            &["serve".to_owned(), file(&config_file)],
            // the OTLP trace exporter would otherwise try localhost:4318
            &[("OTEL_TRACES_EXPORTER", "none")],
        )?;
        let registry = Registry {
            state_dir,
            host,
            tls,
            ca_file: pki.ca_file.clone(),
            ca_pem,
            admin,
            auth,
            server,
        };
        registry.wait_ready().await?;
        Ok(registry)
    }

    async fn wait_ready(&self) -> Result<()> {
        let client = push::HttpClient::new(&self.ca_pem)?;
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last;
        loop {
            if !self.server.is_running() {
                bail!(
                    "the registry exited during start-up; its log is {}:\n{}",
                    self.server.log_file.display(),
                    self.server.log_tail()
                );
            }
            match client.send("GET", &url, None, None, Vec::new()).await {
                Ok(answer) if answer.status == 200 || answer.status == 401 => return Ok(()),
                Ok(answer) => last = format!("HTTP {}", answer.status),
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                bail!(
                    "the registry did not answer /v2/ within {} s (last: {last}); log: {}",
                    STARTUP_TIMEOUT.as_secs(),
                    self.server.log_file.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `https://127.0.0.1:PORT` (`http://` for [`Registry::start_plain_http`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The test CA that signed the registry's (and token server's) certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The user that may push anywhere.
    pub fn admin(&self) -> &User {
        &self.admin
    }

    /// The token server of a token-auth registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        match &self.auth {
            Auth::Token(server) => Some(server),
            Auth::Htpasswd => None,
        }
    }

    /// Config, htpasswd or JWKS, PKI, storage and `registry.log`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn log_file(&self) -> &Path {
        &self.server.log_file
    }

    /// The registry's PID, once its supervisor has recorded it.
    pub fn pid(&self) -> Option<i32> {
        self.server.pid()
    }

    /// Pushes a one-layer image to `repository:tag` as the admin (blob
    /// uploads, then the OCI manifest). Returns the manifest digest.
    pub async fn push_tiny_image(&self, repository: &str, tag: &str) -> Result<String> {
        let authorization = match &self.auth {
            Auth::Htpasswd => push::basic(&self.admin),
            Auth::Token(server) => format!(
                "Bearer {}",
                server.mint(ADMIN_USER, repository, &["pull", "push"])?
            ),
        };
        let client = push::HttpClient::new(&self.ca_pem)?;
        push::tiny_image(&client, &self.url(), repository, tag, &authorization)
            .await
            .with_context(|| format!("pushing {repository}:{tag} to {}", self.host))
    }

    /// Stops the registry (and its token server) and waits for it to exit.
    pub fn stop(&mut self) {
        self.server.stop();
        if let Auth::Token(server) = &mut self.auth {
            server.stop();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds (when missing) and locates the `registry` binary's directory.
///
/// With `PULLWARDEN_REGISTRY_BIN` set, that directory must hold it: an error,
/// never a skip, when it does not.
pub fn registry_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(REGISTRY_BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.join("registry").is_file() {
            bail!(
                "{REGISTRY_BIN_ENV}={} holds no registry binary",
                dir.display()
            );
        }
        return Ok(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-registry.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("PULLWARDEN_REGISTRY_VERSION", REGISTRY_VERSION)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed: {}", script.display(), output.status);
    }
    let dir = PathBuf::from(String::from_utf8(output.stdout)?.trim());
    if !dir.join("registry").is_file() {
        bail!("{} did not produce registry", dir.display());
    }
    Ok(dir)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
