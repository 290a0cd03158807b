//! A real kube-apiserver + etcd for pullwarden's tests, and OpenShift's pull
//! behaviour reproduced on it.
//!
//! [`TestEnv::shared`] starts one control plane per test process, lazily, from
//! binaries that `scripts/build-controlplane.sh` builds from the Go module proxy
//! (cached by version). Tests share it and each work in their own namespaces
//! ([`TestEnv::unique_name`]): without a controller manager, namespaces never
//! finish deleting.
//!
//! With `PULLWARDEN_TEST_KUBECONFIG` set, the same tests run against that
//! cluster instead. There the OpenShift simulation is off and nothing the
//! cluster already has is created or overwritten.
//!
//! Architecture invariant: no server process outlives its owner. Each runs
//! under a supervisor that stops it by PID when the owner's pipe closes, which
//! the kernel does however the owner ends (see `controlplane`). This crate
//! never falls back to skipping: if the control plane cannot start, every
//! test that asked for it fails with the logs' paths.

pub mod audit;
mod controlplane;
pub mod faults;
mod fleet;
mod openshift;
mod pki;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::Subject;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub use audit::{AuditEvent, AuditLog};
pub use controlplane::{ControlPlane, Options, Server, process_is_running};
pub use faults::{FaultKind, FaultProxy, Rule, Schedule};
pub use fleet::Fleet;
pub use openshift::{
    IMAGE_BUILDER_ROLE, IMAGE_PULLER_ROLE, IMAGE_PUSHER_ROLE, OPENSHIFT_SA_CONTROLLER_MANAGER,
    OpenShiftSaController, PULL_SECRET_REF_ANNOTATION, RunningSaController, SECRET_SA_ANNOTATION,
};
pub use registry::{AccessRule, Registry, User};

/// The kube-apiserver and kubectl version the control plane is built at.
pub const KUBE_VERSION: &str = "v1.36.3";
/// The etcd version the control plane is built at.
pub const ETCD_VERSION: &str = "v3.6.16";
/// Points the tests at an existing cluster (a kubeconfig path) instead.
pub const EXTERNAL_KUBECONFIG_ENV: &str = "PULLWARDEN_TEST_KUBECONFIG";
/// Overrides the directory holding `etcd`, `kube-apiserver` and `kubectl`.
pub const BIN_DIR_ENV: &str = "PULLWARDEN_CONTROLPLANE_BIN";
/// Parent directory of the per-run state dirs (default: the temp dir).
pub const STATE_ROOT_ENV: &str = "PULLWARDEN_TESTENV_ROOT";
/// Kubeconfig context of the cluster admin (`system:masters`).
pub const ADMIN_CONTEXT: &str = "pullwarden-admin";
/// Kubeconfig context of the unprivileged user.
pub const USER_CONTEXT: &str = "pullwarden-user";
/// User name of the unprivileged user (client certificate CN, no groups).
pub const UNPRIVILEGED_USER: &str = "pullwarden-dev-user";

/// A cluster to test against: the local control plane or an external cluster.
pub struct TestEnv {
    admin_config: Config,
    user_config: Config,
    user_subject: Subject,
    kubeconfig: PathBuf,
    base_url: String,
    bin_dir: Option<PathBuf>,
    control_plane: Option<ControlPlane>,
}

static SHARED: tokio::sync::OnceCell<Result<TestEnv, String>> = tokio::sync::OnceCell::const_new();

impl TestEnv {
    /// The control plane of this test process, started on first use.
    ///
    /// Panics (fails the test) when it cannot start; never skips.
    pub async fn shared() -> &'static TestEnv {
        let env = SHARED
            .get_or_init(|| async { TestEnv::start().await.map_err(|e| format!("{e:#}")) })
            .await;
        match env {
            Ok(env) => env,
            Err(e) => panic!("cannot start the test control plane: {e}"),
        }
    }

    /// Starts a new environment: the external cluster named by
    /// `PULLWARDEN_TEST_KUBECONFIG`, or a fresh local control plane.
    pub async fn start() -> Result<TestEnv> {
        match std::env::var_os(EXTERNAL_KUBECONFIG_ENV) {
            Some(path) if !path.is_empty() => Self::external(PathBuf::from(path)).await,
            _ => {
                let root =
                    std::env::var_os(STATE_ROOT_ENV).map_or_else(std::env::temp_dir, PathBuf::from);
                std::fs::create_dir_all(&root)?;
                let state_dir = tempfile::Builder::new()
                    .prefix("pullwarden-testenv-")
                    .tempdir_in(&root)?
                    .keep();
                Self::local(&state_dir).await
            }
        }
    }

    /// A local control plane of its own (never the external cluster), with
    /// `options`: for tests that need the audit log or restart servers,
    /// which must not share a control plane with other tests.
    pub async fn dedicated(options: Options) -> Result<TestEnv> {
        let root = std::env::var_os(STATE_ROOT_ENV).map_or_else(std::env::temp_dir, PathBuf::from);
        std::fs::create_dir_all(&root)?;
        let state_dir = tempfile::Builder::new()
            .prefix("pullwarden-testenv-")
            .tempdir_in(&root)?
            .keep();
        Self::local_with(&state_dir, options).await
    }

    /// Starts a local control plane with its state (PKI, logs, kubeconfig) in `state_dir`.
    pub async fn local(state_dir: &Path) -> Result<TestEnv> {
        Self::local_with(state_dir, Options::default()).await
    }

    /// [`TestEnv::local`] with options.
    pub async fn local_with(state_dir: &Path, options: Options) -> Result<TestEnv> {
        let bin_dir = controlplane_bin_dir()?;
        let plane = ControlPlane::start_with(&bin_dir, state_dir, options).await?;
        let admin_config = config_for(&plane.kubeconfig, ADMIN_CONTEXT).await?;
        let user_config = config_for(&plane.kubeconfig, USER_CONTEXT).await?;
        Ok(TestEnv {
            admin_config,
            user_config,
            user_subject: Subject {
                kind: "User".to_owned(),
                name: UNPRIVILEGED_USER.to_owned(),
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                namespace: None,
            },
            kubeconfig: plane.kubeconfig.clone(),
            base_url: plane.base_url.clone(),
            bin_dir: Some(bin_dir),
            control_plane: Some(plane),
        })
    }

    /// Uses an existing cluster. The unprivileged identity is a ServiceAccount
    /// token in a namespace created for this run.
    async fn external(kubeconfig: PathBuf) -> Result<TestEnv> {
        let config = Kubeconfig::read_from(&kubeconfig)
            .with_context(|| format!("reading {}", kubeconfig.display()))?;
        let admin_config =
            Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
        let admin = Client::try_from(admin_config.clone())?;
        let ns = unique_name("pw-testenv-user");
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &named(&ns))
            .await?;
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
        sas.create(&PostParams::default(), &named(UNPRIVILEGED_USER))
            .await?;
        let token = sas
            .create_token_request(
                UNPRIVILEGED_USER,
                &PostParams::default(),
                &TokenRequest::default(),
            )
            .await?
            .status
            .context("TokenRequest without status")?
            .token
            .filter(|t| !t.is_empty())
            .context("TokenRequest returned no token")?;
        let mut user_config = admin_config.clone();
        user_config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        Ok(TestEnv {
            base_url: admin_config.cluster_url.to_string(),
            admin_config,
            user_config,
            user_subject: Subject {
                kind: "ServiceAccount".to_owned(),
                name: UNPRIVILEGED_USER.to_owned(),
                namespace: Some(ns),
                api_group: None,
            },
            kubeconfig,
            bin_dir: controlplane_bin_dir().ok(),
            control_plane: None,
        })
    }

    /// A client acting as cluster admin. Made per call, so that each test's
    /// runtime owns its connections.
    pub fn admin(&self) -> Client {
        Client::try_from(self.admin_config.clone()).expect("admin client")
    }

    /// A client acting as the unprivileged user: only what RBAC grants it.
    pub fn user(&self) -> Client {
        Client::try_from(self.user_config.clone()).expect("user client")
    }

    /// The unprivileged user as an RBAC subject.
    pub fn user_subject(&self) -> &Subject {
        &self.user_subject
    }

    /// Kubeconfig with contexts [`ADMIN_CONTEXT`] and [`USER_CONTEXT`] (local
    /// control plane), or the external cluster's kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Where `etcd`, `kube-apiserver` and `kubectl` were built, if known.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    /// The kubectl built at the server's version.
    pub fn kubectl(&self) -> Result<PathBuf> {
        let dir = self.bin_dir().context("no control-plane bin dir")?;
        Ok(dir.join("kubectl"))
    }

    /// The local control plane, `None` against an external cluster.
    pub fn control_plane(&self) -> Option<&ControlPlane> {
        self.control_plane.as_ref()
    }

    /// The local control plane, to kill and restart its servers.
    pub fn control_plane_mut(&mut self) -> Option<&mut ControlPlane> {
        self.control_plane.as_mut()
    }

    /// The audit log (local control plane started with [`Options::audit`]).
    pub fn audit_log(&self) -> Option<AuditLog> {
        self.control_plane.as_ref()?.audit_log()
    }

    /// Starts a fault-injecting HTTPS proxy in front of the local control
    /// plane's API server (see [`faults`]), serving the API server's own
    /// certificate (signed by the test CA, valid for 127.0.0.1).
    pub fn fault_proxy(&self) -> Result<FaultProxy> {
        let plane = self
            .control_plane
            .as_ref()
            .context("the fault proxy needs the local control plane")?;
        let pki = plane.state_dir.join("pki");
        let read = |name: &str| {
            std::fs::read_to_string(pki.join(name))
                .with_context(|| format!("reading {}", pki.join(name).display()))
        };
        FaultProxy::start(
            &plane.base_url,
            &read("ca.crt")?,
            &read("serving.crt")?,
            &read("serving.key")?,
        )
    }

    /// Whether OpenShift's roles, projects and controllers are simulated (local only).
    pub fn simulates_openshift(&self) -> bool {
        self.control_plane.is_some()
    }

    /// Stops the local control plane and waits for its processes to exit.
    pub fn stop(&mut self) {
        if let Some(mut plane) = self.control_plane.take() {
            plane.stop();
        }
    }

    /// Creates the ClusterRoles `system:image-puller`, `-pusher` and `-builder`
    /// with OpenShift's rules, each only if absent (never overwritten).
    pub async fn install_openshift_roles(&self) -> Result<()> {
        openshift::install_roles(&self.admin()).await
    }

    /// Creates a "project": the namespace and, when OpenShift is simulated,
    /// its `default` and `builder` ServiceAccounts and the
    /// `system:image-pullers` / `system:image-builders` RoleBindings.
    pub async fn create_project(&self, ns: &str) -> Result<()> {
        openshift::create_project(&self.admin(), ns, self.simulates_openshift()).await
    }

    /// OpenShift's service-account controller, played on the local control plane.
    pub fn openshift_sa_controller(&self) -> Result<OpenShiftSaController> {
        if !self.simulates_openshift() {
            bail!("the OpenShift simulation is off against an external cluster");
        }
        Ok(OpenShiftSaController::new(self.admin()))
    }

    /// Whether ServiceAccount `sa_ns/sa` may pull images from `image_ns`,
    /// answered by a SubjectAccessReview (`get imagestreams/layers`).
    pub async fn can_pull(&self, sa_ns: &str, sa: &str, image_ns: &str) -> Result<bool> {
        openshift::can_pull(&self.admin(), sa_ns, sa, image_ns).await
    }
}

/// A DNS-label name unique to this process and call: `<prefix>-<pid>-<n>-<rand>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix: u16 = rand::random();
    format!("{prefix}-{}-{n}-{suffix:04x}", std::process::id())
}

/// Builds (when missing) and locates the control-plane binaries.
pub fn controlplane_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-controlplane.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("PULLWARDEN_KUBE_VERSION", KUBE_VERSION)
        .env("PULLWARDEN_ETCD_VERSION", ETCD_VERSION)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed: {}", script.display(), output.status);
    }
    let dir = PathBuf::from(String::from_utf8(output.stdout)?.trim());
    for bin in ["etcd", "kube-apiserver", "kubectl"] {
        if !dir.join(bin).is_file() {
            bail!("{} did not produce {bin}", dir.display());
        }
    }
    Ok(dir)
}

/// A client for `context` of the kubeconfig at `path`.
pub async fn client_for(path: &Path, context: &str) -> Result<Client> {
    Ok(Client::try_from(config_for(path, context).await?)?)
}

async fn config_for(path: &Path, context: &str) -> Result<Config> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    Ok(Config::from_custom_kubeconfig(kubeconfig, &options).await?)
}

fn named<K: kube::Resource<DynamicType = ()> + Default>(name: &str) -> K {
    let mut object = K::default();
    object.meta_mut().name = Some(name.to_owned());
    object
}
