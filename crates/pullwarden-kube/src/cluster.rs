//! Connecting to a cluster and reading its live state.

use std::io;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, ObjectList};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use pullwarden_core::live::{LiveRoleBinding, LiveSecret, LiveServiceAccount, LiveState};

use crate::convert::listed::{ListedRoleBinding, ListedSecret, ListedServiceAccount};
use crate::convert::{
    DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE, is_managed, live_namespace_meta, live_role_binding,
    live_secret, live_service_account, sort_live_state,
};
use crate::retry::{RetryPolicy, is_auth_failure, retry};

/// Page size of every LIST `read_live` sends.
pub const PAGE_SIZE: u32 = 500;

/// What pullwarden needs from RBAC to read a cluster, for people.
pub const READ_RBAC_HELP: &str = "pullwarden needs, cluster-wide (a ClusterRole bound by a ClusterRoleBinding): \
list on namespaces, secrets and serviceaccounts (API group \"\"), \
and list on rolebindings (API group rbac.authorization.k8s.io)";

/// Why talking to the cluster failed. Messages name the server, the context
/// or the denied request, never a credential.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ClusterError {
    #[error("cannot load the cluster configuration: {reason}")]
    #[diagnostic(
        code(pullwarden::cluster::kubeconfig),
        help(
            "pass --kubeconfig <path> and --context <name>, or set KUBECONFIG; \
             `kubectl config get-contexts` lists the contexts"
        )
    )]
    Kubeconfig { reason: String },

    #[error("cannot reach the Kubernetes API server{}: {reason}", at_server(.server.as_deref()))]
    #[diagnostic(
        code(pullwarden::cluster::unreachable),
        help(
            "check the server URL of the kubeconfig context, the network or VPN, and that the cluster is up"
        )
    )]
    Unreachable {
        /// The server URL, when known.
        server: Option<String>,
        reason: String,
    },

    #[error("the Kubernetes API server{} rejected the credentials (401 Unauthorized)", at_server(.server.as_deref()))]
    #[diagnostic(
        code(pullwarden::cluster::unauthorized),
        help(
            "log in again (for example `oc login` or your cloud CLI), or check the user of the kubeconfig context"
        )
    )]
    Unauthorized { server: Option<String> },

    #[error("the cluster does not allow pullwarden to {verb} {resource} at {scope}")]
    #[diagnostic(code(pullwarden::cluster::forbidden), help("{READ_RBAC_HELP}"))]
    Forbidden {
        verb: String,
        resource: String,
        /// `cluster scope`, or `namespace <ns>`.
        scope: String,
    },

    /// The server's own message is never quoted: it can echo the object
    /// (for a Secret, its data); the fields it names are.
    #[error("the Kubernetes API server refused to {verb} {resource}: HTTP {code} {reason}{}", fields_suffix(.fields))]
    #[diagnostic(
        code(pullwarden::cluster::api),
        help("retry; if it persists, check the API server's health and logs")
    )]
    Api {
        verb: String,
        resource: String,
        code: u16,
        reason: String,
        /// The fields the server's `details.causes` name, if any.
        fields: Vec<String>,
    },

    #[error("the server{} answered, but not as a Kubernetes API server: {reason}", at_server(.server.as_deref()))]
    #[diagnostic(
        code(pullwarden::cluster::not_kubernetes),
        help(
            "check the server URL of the kubeconfig context: a proxy, load balancer or web server may be answering in its place"
        )
    )]
    NotKubernetes {
        server: Option<String>,
        reason: String,
    },

    #[error("the kubeconfig's credential plugin failed: {reason}")]
    #[diagnostic(
        code(pullwarden::cluster::credential_plugin),
        help(
            "run the plugin's command by hand (see `users[].user.exec` in the kubeconfig) and log in again; its output is never shown, as it may hold a token"
        )
    )]
    CredentialPlugin { reason: String },

    #[error("{what} does not exist")]
    #[diagnostic(code(pullwarden::cluster::not_found))]
    NotFound { what: String },

    #[error("the Kubernetes API server{} did not answer within {timeout:?} (--request-timeout)", at_server(.server.as_deref()))]
    #[diagnostic(
        code(pullwarden::cluster::timeout),
        help(
            "check the cluster's health and the network; raise --request-timeout if the cluster is slow but answering"
        )
    )]
    Timeout {
        server: Option<String>,
        timeout: std::time::Duration,
    },
}

fn fields_suffix(fields: &[String]) -> String {
    if fields.is_empty() {
        String::new()
    } else {
        format!(" (fields: {})", fields.join(", "))
    }
}

/// The fields a failure status names (`details.causes[].field`), shown in
/// place of its message, which can quote the object.
pub(crate) fn status_fields(status: &kube::core::Status) -> Vec<String> {
    let mut fields: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| !c.field.is_empty())
        .map(|c| pullwarden_core::escape::text(&c.field))
        .collect();
    fields.sort();
    fields.dedup();
    fields.truncate(5);
    fields
}

/// Why a credential plugin failed, without its output (which may hold a
/// token): the command the kubeconfig names and how it ended.
pub(crate) fn credential_plugin_reason(error: &(dyn std::error::Error + 'static)) -> String {
    use kube::client::AuthError;
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(auth) = e.downcast_ref::<AuthError>() {
            return match auth {
                AuthError::AuthExecStart(io) => {
                    format!("its command could not be started ({})", io_reason(io))
                }
                // Only how it ended: its output, its arguments and its
                // environment (all in kube's message) may hold a token.
                AuthError::AuthExecRun { out, .. } => {
                    format!("its command exited with {}", out.status)
                }
                AuthError::AuthExecParse(_) => "its output is not an ExecCredential".to_owned(),
                _ => "it did not return a usable credential".to_owned(),
            };
        }
        current = e.source();
    }
    "it did not return a usable credential".to_owned()
}

fn at_server(server: Option<&str>) -> String {
    server.map(|s| format!(" at {s}")).unwrap_or_default()
}

/// A client for the cluster, after checking that the server answers and
/// accepts the credentials (one `GET /version`).
///
/// The configuration comes from `kubeconfig` when given; else from
/// `KUBECONFIG` (a list of paths, merged) or `~/.kube/config`; else, when
/// neither exists, from the in-cluster service account. `context` picks a
/// context of the kubeconfig (default: its current context). Exec plugins,
/// tokens and client certificates are kube's kubeconfig support.
///
/// Every request of the client is bounded by `request_timeout` (connecting,
/// each read and write, and, through [`crate::retry`], the whole attempt); so
/// is connecting itself, credential plugin included.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    request_timeout: Duration,
) -> Result<Client, ClusterError> {
    // On a blocking thread, not a runtime worker: kube runs an exec
    // credential plugin synchronously while building the client, and two
    // hung plugins (a fleet) would otherwise hold both workers, so no timer
    // would ever fire. The blocking thread has the runtime's context, so the
    // client's background tasks still run on the runtime's workers. A plugin
    // that never ends keeps its thread; the command's runtime does not wait
    // for it on exit.
    let kubeconfig = kubeconfig.map(Path::to_path_buf);
    let context = context.map(str::to_owned);
    let deadline = tokio::time::Instant::now() + request_timeout;
    let handle = tokio::runtime::Handle::current();
    // Only building the client runs there: what needs the runtime's timers
    // (the version probe) runs on the runtime, so a blocking thread left
    // behind by a hung plugin never touches a runtime that has shut down.
    let building = tokio::task::spawn_blocking(move || {
        handle.block_on(build_client(
            kubeconfig.as_deref(),
            context.as_deref(),
            request_timeout,
        ))
    });
    let timed_out = || ClusterError::Timeout {
        server: None,
        timeout: request_timeout,
    };
    let (client, server) = match tokio::time::timeout_at(deadline, building).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join)) => {
            return Err(ClusterError::Kubeconfig {
                reason: if join.is_panic() {
                    "connecting failed unexpectedly (a bug: please report it)".to_owned()
                } else {
                    "connecting was cancelled".to_owned()
                },
            });
        }
        Err(_) => return Err(timed_out()),
    };
    let policy = RetryPolicy {
        request_timeout,
        ..RetryPolicy::default()
    };
    match tokio::time::timeout_at(deadline, retry(&policy, || client.apiserver_version())).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(request_error(
            &e,
            Some(&server),
            "get",
            "the server version",
            "cluster scope",
        )),
        Err(_) => Err(timed_out()),
    }
}

/// What in the kubeconfig file `path` would run a program when pullwarden
/// connects through `context`: `Some("an exec credential plugin")` or
/// `Some("an auth-provider")` for the context's user, `None` when nothing
/// would (also when the file cannot be read or has no such context: connecting
/// reports that). A kubeconfig a *workspace* names is as untrusted as the
/// workspace: the binary refuses to run its plugin without `--allow-commands`.
pub fn kubeconfig_runs_a_program(path: &Path, context: &str) -> Option<&'static str> {
    let file = read_kubeconfig(path).ok()?;
    let user = file
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .user
        .clone()?;
    let auth = file
        .auth_infos
        .iter()
        .find(|a| a.name == user)?
        .auth_info
        .as_ref()?;
    if auth.exec.is_some() {
        Some("an exec credential plugin")
    } else if auth.auth_provider.is_some() {
        Some("an auth-provider")
    } else {
        None
    }
}

/// Reads the kubeconfig file `path` (the `--kubeconfig` flag, or one a fleet
/// workspace names) as every other input is read: a regular file, at most
/// [`pullwarden_input::Limit::KUBECONFIG`] (never a FIFO waited on or
/// `/dev/zero` read forever); then kube parses it, relative certificate and
/// token paths made relative to its folder.
fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, ClusterError> {
    // A file that is not there is reported by kube's read below, as before.
    if std::fs::metadata(path).is_ok() {
        pullwarden_input::read(path, pullwarden_input::Limit::KUBECONFIG).map_err(|e| {
            ClusterError::Kubeconfig {
                reason: format!(
                    "{}: {e}",
                    pullwarden_core::render::safe(&path.display().to_string())
                ),
            }
        })?;
    }
    Kubeconfig::read_from(path).map_err(|e| kubeconfig_error(&e))
}

/// The client for the kubeconfig and context, not yet used, and its server
/// URL. Runs the credential plugin, if any (see [`connect`]).
async fn build_client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    request_timeout: Duration,
) -> Result<(Client, String), ClusterError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = read_kubeconfig(path)?;
            from_kubeconfig(file, &options).await?
        }
        None => match Kubeconfig::read() {
            Ok(file) => from_kubeconfig(file, &options).await?,
            Err(e) if is_missing_kubeconfig(&e) && context.is_none() => {
                Config::incluster().map_err(|_| ClusterError::Kubeconfig {
                    reason: "no kubeconfig found (KUBECONFIG is unset or names no file, and ~/.kube/config does not exist) and not running inside a cluster".to_owned(),
                })?
            }
            Err(e) => return Err(kubeconfig_error(&e)),
        },
    };
    let mut config = config;
    config.read_timeout = Some(request_timeout);
    config.write_timeout = Some(request_timeout);
    config.connect_timeout = Some(
        config
            .connect_timeout
            .map_or(request_timeout, |t| t.min(request_timeout)),
    );
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| {
        if is_auth_failure(&e) {
            return ClusterError::CredentialPlugin {
                reason: credential_plugin_reason(&e),
            };
        }
        ClusterError::Kubeconfig {
            reason: format!(
                "cannot build a client for {server}: {}",
                client_build_reason(&e)
            ),
        }
    })?;
    Ok((client, server))
}

async fn from_kubeconfig(
    file: Kubeconfig,
    options: &KubeConfigOptions,
) -> Result<Config, ClusterError> {
    if let Some(context) = &options.context
        && !file.contexts.iter().any(|named| &named.name == context)
    {
        let mut known: Vec<&str> = file
            .contexts
            .iter()
            .map(|named| named.name.as_str())
            .collect();
        known.sort_unstable();
        return Err(ClusterError::Kubeconfig {
            reason: format!(
                "the kubeconfig has no context {context:?} (it has: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        });
    }
    Config::from_custom_kubeconfig(file, options)
        .await
        .map_err(|e| kubeconfig_error(&e))
}

fn is_missing_kubeconfig(error: &KubeconfigError) -> bool {
    match error {
        KubeconfigError::FindPath => true,
        KubeconfigError::ReadConfig(io, _) => io.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}

/// One sentence per kubeconfig problem. kube's own messages are used only
/// where they cannot quote the file (a parse error can show a snippet of it,
/// and the file may hold a token).
#[allow(
    clippy::match_wildcard_for_single_variants,
    reason = "the variants after ParseProxyUrl depend on kube features another crate may enable"
)]
fn kubeconfig_error(error: &KubeconfigError) -> ClusterError {
    let reason = match error {
        KubeconfigError::CurrentContextNotSet => {
            "the kubeconfig has no current-context; pass --context".to_owned()
        }
        KubeconfigError::ReadConfig(io, path) => {
            format!("cannot read {}: {}", path.display(), io_reason(io))
        }
        KubeconfigError::Parse(_) => "the kubeconfig is not valid YAML".to_owned(),
        KubeconfigError::FindPath => "cannot find the home directory for ~/.kube/config".to_owned(),
        KubeconfigError::LoadContext(name) => format!("the kubeconfig has no context {name:?}"),
        KubeconfigError::LoadClusterOfContext(name) => {
            format!("the kubeconfig has no cluster {name:?} for the context")
        }
        KubeconfigError::MissingClusterUrl => "the context's cluster has no server URL".to_owned(),
        KubeconfigError::ParseClusterUrl(_) => "the context's cluster server URL is not a valid URL".to_owned(),
        KubeconfigError::LoadCertificateAuthority(_) => {
            "cannot load the cluster's certificate authority".to_owned()
        }
        KubeconfigError::LoadClientCertificate(_) => "cannot load the client certificate".to_owned(),
        KubeconfigError::LoadClientKey(_) => "cannot load the client key".to_owned(),
        KubeconfigError::ParseCertificates(_) => "the certificates are not valid PEM".to_owned(),
        KubeconfigError::KindMismatch | KubeconfigError::ApiVersionMismatch => {
            "the kubeconfig files named by KUBECONFIG cannot be merged (different kind or apiVersion)".to_owned()
        }
        // The proxy URL (which can carry a password) and, depending on
        // kube's features, NO_PROXY: never quoted.
        _ => "the kubeconfig's proxy settings are invalid".to_owned(),
    };
    ClusterError::Kubeconfig { reason }
}

fn client_build_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Auth(_) => "the credentials of the context cannot be loaded".to_owned(),
        kube::Error::RustlsTls(_) => {
            "the TLS settings (certificates or keys) are invalid".to_owned()
        }
        other => first_line(&other.to_string()),
    }
}

fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => first_line(&error.to_string()),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// Maps an error of one request to a [`ClusterError`]; `verb`, `resource`
/// and `scope` describe the request for a 403.
pub(crate) fn request_error(
    error: &kube::Error,
    server: Option<&str>,
    verb: &str,
    resource: &str,
    scope: &str,
) -> ClusterError {
    match error {
        kube::Error::Api(status) if status.code == 401 => ClusterError::Unauthorized {
            server: server.map(str::to_owned),
        },
        kube::Error::Api(status) if status.code == 403 => ClusterError::Forbidden {
            verb: verb.to_owned(),
            resource: resource.to_owned(),
            scope: scope.to_owned(),
        },
        kube::Error::Api(status) => ClusterError::Api {
            verb: verb.to_owned(),
            resource: resource.to_owned(),
            code: status.code,
            reason: if status.reason.is_empty() {
                "(no reason given)".to_owned()
            } else {
                pullwarden_core::escape::text(&status.reason)
            },
            fields: status_fields(status),
        },
        // An exec plugin or token file failing: its output may hold a token,
        // so only the command and how it ended are reported (also when it
        // surfaces through the client's service stack, on a token refresh).
        other if is_auth_failure(other) => ClusterError::CredentialPlugin {
            reason: credential_plugin_reason(other),
        },
        other if crate::retry::is_timeout(other) => ClusterError::Timeout {
            server: server.map(str::to_owned),
            timeout: timeout_of(other),
        },
        // The server answered, but not with Kubernetes JSON (a web server,
        // a proxy's error page): never "cannot reach".
        kube::Error::SerdeError(_) => ClusterError::NotKubernetes {
            server: server.map(str::to_owned),
            reason: "its reply is not a Kubernetes JSON object".to_owned(),
        },
        other => ClusterError::Unreachable {
            server: server.map(str::to_owned),
            reason: innermost_reason(other),
        },
    }
}

/// The timeout an error's chain reports, for messages.
pub(crate) fn timeout_of(error: &(dyn std::error::Error + 'static)) -> Duration {
    std::iter::successors(Some(error), |e| e.source())
        .find_map(|e| e.downcast_ref::<crate::retry::TimedOut>())
        .map_or(crate::retry::DEFAULT_REQUEST_TIMEOUT, |t| t.0)
}

/// The innermost cause of a transport error ("Connection refused (os error
/// 111)", "invalid peer certificate: `UnknownIssuer`"), not the stack above it.
fn innermost_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    let reason = first_line(&current.to_string());
    if reason.is_empty() {
        "no answer".to_owned()
    } else {
        reason
    }
}

/// Which Secrets the LISTs of a read return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretSelection {
    /// Every Secret, whatever its type: one LIST, complete (a name held by a
    /// Secret of any type is seen), but it costs every Secret's bytes, Helm
    /// releases of hundreds of KB included.
    #[default]
    All,
    /// Only docker-config Secrets (`kubernetes.io/dockerconfigjson` and
    /// `kubernetes.io/dockercfg`), filtered by the server: one LIST per type
    /// with a `type=` field selector. Every Secret pullwarden manages has one
    /// of these types (it writes no other, and a Secret's type is immutable).
    /// A Secret of another type holding a name the workspace wants is not
    /// listed: [`lookup_secrets`] finds those.
    PullSecrets,
}

/// The Secret types [`SecretSelection::PullSecrets`] lists.
pub const PULL_SECRET_TYPES: [&str; 2] = [DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE];

/// How many name lookups [`lookup_secrets`] runs at once.
pub const LOOKUP_CONCURRENCY: usize = 16;

/// How the live state is read.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Objects per page of every LIST.
    pub page_size: u32,
    /// Each page is retried on 429, 5xx, transport errors and timeouts.
    pub retry: RetryPolicy,
    /// Which Secrets are listed (default: all of them).
    pub secrets: SecretSelection,
    /// When set, the data of a Secret is kept only if pullwarden manages it
    /// or its name is one of these (the workspace's PullSecret names):
    /// planning reads no other Secret's data, and the service-account token
    /// Secrets of a large OpenShift cluster are most of a read's memory.
    /// `None` (the default) keeps the data of every docker-config Secret.
    pub data_only_for: Option<std::sync::Arc<std::collections::BTreeSet<String>>>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            page_size: PAGE_SIZE,
            retry: RetryPolicy::default(),
            secrets: SecretSelection::All,
            data_only_for: None,
        }
    }
}

/// Reads the live state, cluster-wide where permitted. When the credentials
/// are namespace-scoped (a cluster-wide list is forbidden) and `namespaces` is
/// not empty, reads those namespaces one by one instead: the second value is
/// then `true`, and only those namespaces are known to the planner.
pub async fn read_live_or_namespaces(
    client: &Client,
    namespaces: &[String],
    options: &ReadOptions,
) -> Result<(LiveState, bool), ClusterError> {
    match read_live(client, options).await {
        Ok(live) => Ok((live, false)),
        Err(ClusterError::Forbidden { .. }) if !namespaces.is_empty() => {
            read_live_in_namespaces(client, namespaces, options)
                .await
                .map(|live| (live, true))
        }
        Err(e) => Err(e),
    }
}

/// One namespace's secrets, service accounts and role bindings.
type NamespaceObjects = (
    Vec<LiveSecret>,
    Vec<LiveServiceAccount>,
    Vec<LiveRoleBinding>,
);

/// Secrets, service accounts and role bindings of the given namespaces (each
/// listed, paginated), for credentials without cluster-wide read access. The
/// namespaces are taken to exist: such credentials cannot list namespaces.
/// Secrets are selected as `options.secrets` says.
pub async fn read_live_in_namespaces(
    client: &Client,
    namespaces: &[String],
    options: &ReadOptions,
) -> Result<LiveState, ClusterError> {
    use futures::StreamExt as _;
    let results: Vec<Result<NamespaceObjects, ClusterError>> =
        futures::stream::iter(namespaces.iter().cloned())
            .map(|ns| async move {
                let scope = format!("namespace {ns}");
                let ns = Some(ns.as_str());
                tokio::try_join!(
                    list_secrets(client, ns, options, &scope),
                    list_pages(
                        |p| list_as::<ServiceAccount, ListedServiceAccount>(client, ns, p),
                        ListParams::default(),
                        options,
                        "serviceaccounts",
                        &scope,
                        |sa| Some(live_service_account(sa.into()))
                    ),
                    list_pages(
                        |p| list_as::<RoleBinding, ListedRoleBinding>(client, ns, p),
                        ListParams::default(),
                        options,
                        "rolebindings",
                        &scope,
                        |rb| Some(live_role_binding(rb.into()))
                    ),
                )
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let mut live = LiveState {
        namespaces: namespaces.iter().cloned().collect(),
        ..LiveState::default()
    };
    for result in results {
        let (secrets, service_accounts, role_bindings) = result?;
        live.secrets.extend(secrets);
        live.service_accounts.extend(service_accounts);
        live.role_bindings.extend(role_bindings);
    }
    sort_live_state(&mut live);
    Ok(live)
}

/// The live state of some namespaces only, for a reconcile that re-plans
/// what an event touched (`pullwarden run`): each Namespace by a LIST of
/// namespaces restricted to its name (`fieldSelector=metadata.name=<name>`,
/// metadata only: the `list` permission [`read_live`] already needs), and
/// beside it the Secrets, ServiceAccounts and RoleBindings of each, listed
/// as [`read_live_in_namespaces`] lists them (same filters as a full read).
/// `namespaces`, `terminating` and `namespace_labels` of the result describe
/// exactly these namespaces (one that does not exist is in neither set); its
/// objects are theirs only, so a plan over it must be restricted to them.
/// Never writes.
pub async fn read_live_of_namespaces(
    client: &Client,
    namespaces: &[String],
    options: &ReadOptions,
) -> Result<LiveState, ClusterError> {
    use futures::StreamExt as _;
    let api: Api<Namespace> = Api::all(client.clone());
    let api = &api;
    let metas = async {
        let found: Vec<Result<Vec<crate::convert::NamespaceMeta>, ClusterError>> =
            futures::stream::iter(namespaces.iter())
                .map(|name| async move {
                    list_pages(
                        |p| async move { api.list_metadata(&p).await },
                        ListParams::default().fields(&format!("metadata.name={name}")),
                        options,
                        "namespaces",
                        "cluster scope",
                        live_namespace_meta,
                    )
                    .await
                })
                .buffer_unordered(LOOKUP_CONCURRENCY)
                .collect()
                .await;
        let mut metas = Vec::new();
        for result in found {
            metas.extend(result?);
        }
        Ok::<_, ClusterError>(metas)
    };
    let (metas, mut live) =
        tokio::try_join!(metas, read_live_in_namespaces(client, namespaces, options))?;
    live.namespaces.clear();
    for namespace in metas {
        if namespace.terminating {
            live.terminating.insert(namespace.name);
        } else {
            live.namespace_labels
                .insert(namespace.name.clone(), namespace.labels);
            live.namespaces.insert(namespace.name);
        }
    }
    Ok(live)
}

/// Reads namespaces (except terminating ones), secrets, service accounts
/// and role bindings of the whole cluster: paginated LISTs, run
/// concurrently, each page retried on transient failures. Namespaces are
/// listed as metadata only (a namespace being deleted has a
/// `deletionTimestamp`); Secrets as `options.secrets` says (with
/// [`SecretSelection::PullSecrets`], one LIST per docker-config type).
/// Either every page of every list is read, or it fails: a partial read
/// never becomes a live state (a prune computed from it would delete what it
/// should keep). Never writes.
pub async fn read_live(client: &Client, options: &ReadOptions) -> Result<LiveState, ClusterError> {
    let scope = "cluster scope";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespaces = &namespaces;
    let (namespaces, secrets, service_accounts, role_bindings) = tokio::try_join!(
        list_pages(
            |p| async move { namespaces.list_metadata(&p).await },
            ListParams::default(),
            options,
            "namespaces",
            scope,
            live_namespace_meta,
        ),
        list_secrets(client, None, options, scope),
        list_pages(
            |p| list_as::<ServiceAccount, ListedServiceAccount>(client, None, p),
            ListParams::default(),
            options,
            "serviceaccounts",
            scope,
            |sa| Some(live_service_account(sa.into())),
        ),
        list_pages(
            |p| list_as::<RoleBinding, ListedRoleBinding>(client, None, p),
            ListParams::default(),
            options,
            "rolebindings",
            scope,
            |rb| Some(live_role_binding(rb.into())),
        ),
    )?;
    let mut live = LiveState {
        secrets,
        service_accounts,
        role_bindings,
        ..LiveState::default()
    };
    for namespace in namespaces {
        if namespace.name == "kube-system" && !namespace.uid.is_empty() {
            live.cluster = Some(pullwarden_core::live::ClusterId {
                kube_system_uid: namespace.uid.clone(),
            });
        }
        if namespace.terminating {
            live.terminating.insert(namespace.name);
        } else {
            live.namespace_labels
                .insert(namespace.name.clone(), namespace.labels);
            live.namespaces.insert(namespace.name);
        }
    }
    sort_live_state(&mut live);
    Ok(live)
}

/// A LIST of `K`'s resource in `namespace` (cluster-wide when `None`),
/// answered as `T`: a [`crate::convert::listed`] type that deserializes only
/// what planning uses.
pub(crate) async fn list_as<K, T>(
    client: &Client,
    namespace: Option<&str>,
    params: ListParams,
) -> Result<ObjectList<T>, kube::Error>
where
    K: kube::Resource<DynamicType = ()>,
    T: Clone + serde::de::DeserializeOwned,
{
    let request = kube::core::Request::new(K::url_path(&(), namespace))
        .list(&params)
        .map_err(kube::Error::BuildRequest)?;
    client.request::<ObjectList<T>>(request).await
}

/// The Secrets in `namespace` (cluster-wide when `None`) that
/// `options.secrets` selects: one LIST, or one per docker-config type,
/// concurrently.
async fn list_secrets(
    client: &Client,
    namespace: Option<&str>,
    options: &ReadOptions,
    scope: &str,
) -> Result<Vec<LiveSecret>, ClusterError> {
    let list = |params: ListParams| {
        list_pages(
            move |p| list_as::<Secret, ListedSecret>(client, namespace, p),
            params,
            options,
            "secrets",
            scope,
            |s| Some(live_secret_kept(s.into(), options)),
        )
    };
    match options.secrets {
        SecretSelection::All => list(ListParams::default()).await,
        SecretSelection::PullSecrets => {
            let [json, cfg] =
                PULL_SECRET_TYPES.map(|t| ListParams::default().fields(&format!("type={t}")));
            let (mut secrets, more) = tokio::try_join!(list(json), list(cfg))?;
            secrets.extend(more);
            Ok(secrets)
        }
    }
}

/// Finds the Secrets, of any type, that hold one of the `wanted` (namespace,
/// name) pairs and that `live` does not have, and adds them to `live`: after
/// a read with [`SecretSelection::PullSecrets`], this is what makes a Secret
/// of another type (an Opaque one, a Helm release) holding a name the
/// workspace wants visible to the planner, which reports it as a conflict.
///
/// Only pairs missing from `live.secrets` in a namespace of
/// `live.namespaces` are looked up (nothing is planned in a namespace that
/// is absent or terminating), each with a LIST of its namespace restricted by
/// `fieldSelector=metadata.name=<name>` (the `list` permission the read
/// already needs; a 0- or 1-item answer), [`LOOKUP_CONCURRENCY`] at a time,
/// under the read's retry policy. After a read of every Secret
/// ([`SecretSelection::All`]) nothing is missing that exists: no request is
/// sent. Returns how many names were looked up. Never writes.
pub async fn lookup_secrets(
    client: &Client,
    live: &mut LiveState,
    wanted: &[(String, String)],
    options: &ReadOptions,
) -> Result<usize, ClusterError> {
    use futures::StreamExt as _;
    if options.secrets == SecretSelection::All {
        return Ok(0);
    }
    let known: std::collections::BTreeSet<(&str, &str)> = live
        .secrets
        .iter()
        .map(|s| (s.meta.namespace.as_str(), s.meta.name.as_str()))
        .collect();
    let mut missing: Vec<&(String, String)> = wanted
        .iter()
        .filter(|(ns, name)| {
            live.namespaces.contains(ns) && !known.contains(&(ns.as_str(), name.as_str()))
        })
        .collect();
    missing.sort();
    missing.dedup();
    let looked_up = missing.len();
    let found: Vec<Result<Vec<LiveSecret>, ClusterError>> = futures::stream::iter(missing)
        .map(|(ns, name)| async move {
            let namespace = Some(ns.as_str());
            list_pages(
                |p| list_as::<Secret, ListedSecret>(client, namespace, p),
                ListParams::default().fields(&format!("metadata.name={name}")),
                options,
                "secrets",
                &format!("namespace {ns}"),
                |s| Some(live_secret_kept(s.into(), options)),
            )
            .await
        })
        .buffer_unordered(LOOKUP_CONCURRENCY)
        .collect()
        .await;
    let mut added = false;
    for result in found {
        let secrets = result?;
        added |= !secrets.is_empty();
        live.secrets.extend(secrets);
    }
    if added {
        sort_live_state(live);
    }
    Ok(looked_up)
}

/// A listed Secret as planning sees it, its data dropped unless
/// `options.data_only_for` allows it.
fn live_secret_kept(mut secret: Secret, options: &ReadOptions) -> LiveSecret {
    if let Some(names) = &options.data_only_for
        && !secret
            .metadata
            .name
            .as_ref()
            .is_some_and(|name| names.contains(name))
        && !is_managed(secret.metadata.labels.as_ref())
    {
        secret.data = None;
        secret.string_data = None;
    }
    live_secret(secret)
}

/// Times a listing restarts from the first page when its continue token
/// expired (410 Gone) before giving up.
const EXPIRED_LIST_RESTARTS: u32 = 2;

/// Every object `list` returns for `params` (a LIST of one kind in one scope,
/// full objects or metadata only), page by page, each page converted as it
/// arrives.
pub(crate) async fn list_pages<K, T, L, Fut>(
    list: L,
    params: ListParams,
    options: &ReadOptions,
    resource: &str,
    scope: &str,
    convert: impl Fn(K) -> Option<T>,
) -> Result<Vec<T>, ClusterError>
where
    L: Fn(ListParams) -> Fut,
    Fut: Future<Output = Result<ObjectList<K>, kube::Error>>,
    K: Clone,
{
    let mut restarts = 0;
    'listing: loop {
        let mut objects = Vec::new();
        let mut params = params.clone().limit(options.page_size);
        loop {
            let page = match retry(&options.retry, || list(params.clone())).await {
                Ok(page) => page,
                Err(kube::Error::Api(status))
                    if status.code == 410
                        && params.continue_token.is_some()
                        && restarts < EXPIRED_LIST_RESTARTS =>
                {
                    restarts += 1;
                    continue 'listing;
                }
                Err(e) => return Err(request_error(&e, None, "list", resource, scope)),
            };
            // Converted page by page: only one page of raw objects is held at a time.
            objects.extend(page.items.into_iter().filter_map(&convert));
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(objects),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With `data_only_for`, a Secret's data is kept only for those names
    /// and for Secrets pullwarden manages; without it, as `live_secret` keeps it.
    #[test]
    fn data_is_kept_only_for_named_and_managed_secrets_when_asked() {
        use k8s_openapi::ByteString;
        let secret = |name: &str, managed: bool| {
            let mut s = Secret {
                type_: Some(crate::convert::DOCKERCFG_TYPE.into()),
                data: Some(std::collections::BTreeMap::from([(
                    ".dockercfg".to_owned(),
                    ByteString(b"{}".to_vec()),
                )])),
                ..Secret::default()
            };
            s.metadata.name = Some(name.into());
            if managed {
                s.metadata.labels = Some(std::collections::BTreeMap::from([(
                    pullwarden_core::live::MANAGED_BY_LABEL.to_owned(),
                    pullwarden_core::live::MANAGED_BY_VALUE.to_owned(),
                )]));
            }
            s
        };
        let only = ReadOptions {
            data_only_for: Some(std::sync::Arc::new(["wanted".to_owned()].into())),
            ..ReadOptions::default()
        };
        for (name, managed, options, kept) in [
            ("wanted", false, &only, true),
            ("builder-dockercfg-x", false, &only, false),
            ("old-pull", true, &only, true),
            ("builder-dockercfg-x", false, &ReadOptions::default(), true),
        ] {
            let live = live_secret_kept(secret(name, managed), options);
            assert_eq!(!live.data.is_empty(), kept, "{name} managed={managed}");
        }
    }

    #[test]
    fn messages_are_one_clear_sentence() {
        let forbidden = ClusterError::Forbidden {
            verb: "list".into(),
            resource: "secrets".into(),
            scope: "cluster scope".into(),
        };
        assert_eq!(
            forbidden.to_string(),
            "the cluster does not allow pullwarden to list secrets at cluster scope"
        );
        let unreachable = ClusterError::Unreachable {
            server: Some("https://127.0.0.1:1/".into()),
            reason: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the Kubernetes API server at https://127.0.0.1:1/: Connection refused (os error 111)"
        );
        let unknown = ClusterError::Unauthorized { server: None };
        assert_eq!(
            unknown.to_string(),
            "the Kubernetes API server rejected the credentials (401 Unauthorized)"
        );
    }

    fn failure(code: u16, reason: &str, message: &str, fields: &[&str]) -> kube::Error {
        let mut status = kube::core::Status::failure(message, reason).with_code(code);
        status.details = Some(kube::core::response::StatusDetails {
            causes: fields
                .iter()
                .map(|f| kube::core::response::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: message.into(),
                    field: (*f).into(),
                })
                .collect(),
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            retry_after_seconds: 0,
        });
        kube::Error::Api(status.boxed())
    }

    /// #16.11: a 5xx never quotes the server's message (it can echo an
    /// object); a 422 names the fields; a reply that is not Kubernetes JSON
    /// is not "cannot reach".
    #[test]
    fn read_errors_name_fields_not_messages_and_tell_a_foreign_server() {
        let error = request_error(
            &failure(500, "InternalError", "etcd said: password=canary-5xx", &[]),
            None,
            "list",
            "secrets",
            "cluster scope",
        );
        let text = error.to_string();
        assert!(!text.contains("canary-5xx"), "{text}");
        assert_eq!(
            text,
            "the Kubernetes API server refused to list secrets: HTTP 500 InternalError"
        );
        let error = request_error(
            &failure(
                422,
                "Invalid",
                "Secret \"x\" is invalid: data: canary-422",
                &["data[.dockerconfigjson]"],
            ),
            None,
            "create",
            "secrets",
            "namespace a",
        );
        let text = error.to_string();
        assert!(!text.contains("canary-422"), "{text}");
        assert!(
            text.ends_with("HTTP 422 Invalid (fields: data[.dockerconfigjson])"),
            "{text}"
        );
        let not_json = serde_json::from_str::<serde_json::Value>("<html>").unwrap_err();
        let error = request_error(
            &kube::Error::SerdeError(not_json),
            Some("https://lb.example:6443/"),
            "list",
            "secrets",
            "cluster scope",
        );
        assert!(
            matches!(error, ClusterError::NotKubernetes { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("answered, but not as a Kubernetes API server"),
            "{error}"
        );
    }

    #[test]
    fn kubeconfig_parse_errors_do_not_quote_the_file() {
        let token = "sha256~canary-token-value";
        let text = format!("apiVersion: v1\nusers:\n- name: u\n  user: {{token: {token}\n");
        let error = Kubeconfig::from_yaml(&text).expect_err("invalid YAML");
        let message = kubeconfig_error(&error).to_string();
        assert!(!message.contains(token), "{message}");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_file_is_named() {
        let dir = std::env::temp_dir().join("pullwarden-kube-no-such-dir");
        let path = dir.join("kubeconfig");
        let Err(error) = connect(Some(&path), None, crate::retry::DEFAULT_REQUEST_TIMEOUT).await
        else {
            panic!("connected without a kubeconfig");
        };
        assert!(
            matches!(error, ClusterError::Kubeconfig { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "cannot load the cluster configuration: cannot read {}: no such file",
                path.display()
            )
        );
    }
}
