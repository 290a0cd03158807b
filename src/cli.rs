//! Command-line arguments and the commands they run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pullwarden_spec::credentials;

use crate::output::Output;

#[derive(Parser, Debug)]
#[command(
    name = "pullwarden",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PULLWARDEN_GIT_REVISION"), ")"),
    about = "Manage who may pull container images across a Kubernetes or OpenShift cluster, as code",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// When to use colour (`NO_COLOR` is honoured by `auto`).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more about what is happening (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Let credential files (`fromFile`, `dockerConfigFile`, `dockercfgFile`) lie outside the
    /// workspace folder. Off by default: a workspace from a pull request could otherwise copy
    /// any file of the machine it runs on into a Secret.
    #[arg(long, global = true, env = "PULLWARDEN_ALLOW_OUTSIDE_FILES", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_outside_files: bool,
    /// Let the workspace's `fromCommand` credentials run their commands (plan, apply, drift,
    /// run, `validate --resolve`, ...). Off by default: a workspace from a pull request could
    /// otherwise run any program on the machine it runs on. `diff` never runs them.
    #[arg(long, global = true, env = "PULLWARDEN_ALLOW_COMMANDS", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_commands: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load and check a workspace; exit 0 when valid, 1 otherwise.
    Validate(ValidateArgs),
    /// Diff the workspace against the cluster (or a snapshot) and print the plan.
    Plan(PlanArgs),
    /// Plan, show, confirm and execute; or execute a saved plan (`--plan FILE`).
    Apply(ApplyArgs),
    /// Report how the cluster differs from the workspace: exit 0 in sync, 2 drift or pending work, 1 error.
    Drift(DriftArgs),
    /// Export what pullwarden reads from the cluster (secret values as salted digests)
    /// into a file that `plan --live` and `drift --live` accept.
    Snapshot(SnapshotArgs),
    /// Write a starting workspace from the live cluster's pull secrets, links and image-role
    /// bindings (credentials become `fromEnv` placeholders, never values).
    Import(ImportArgs),
    /// Will this pod (or a pod of this ServiceAccount) pull that image? The kubelet's own
    /// credential rules: the secrets that apply and the entries it tries, in order; for
    /// OpenShift's integrated registry, whether RBAC lets the ServiceAccount pull from the
    /// project and which binding grants it. `--probe` asks the registry itself.
    /// Exit 0 it will pull (as far as the cluster can tell), 2 it will not, 1 error.
    CanPull(CanPullArgs),
    /// Who may pull what in the workspace's scope: for every ServiceAccount (and every
    /// `allServiceAccountsIn` group), the registries its pull secrets cover and the
    /// OpenShift projects whose images RBAC lets it pull. Exit 0, 1 on error or, with
    /// `--verify`, when the API server disagrees.
    Access(AccessArgs),
    /// The semantic difference between the workspace at a git revision (or a folder) and
    /// now, without a cluster: declarations added, removed and changed, namespaces newly
    /// matched (with `--live`) and the pull access that moves. Exit 0, 1 on error.
    Diff(DiffArgs),
    /// Keep the cluster converged continuously: watch namespaces, ServiceAccounts and
    /// pullwarden's objects, re-plan on every change (debounced) and on a timer, apply what
    /// the plan says (nothing when nothing changed). Serves `/metrics`, `/healthz` and
    /// `/readyz`; SIGTERM or SIGINT lets the writes in flight finish and exits 0.
    Run(RunArgs),
    /// Print the JSON Schema of the workspace format.
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The new workspace's name (its ownership id: a DNS label).
    #[arg(long)]
    pub name: String,
    /// The folder to write; it must not exist yet or be empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only these namespaces (names or globs; repeatable). Default: all.
    #[arg(long = "namespace", value_name = "GLOB")]
    pub namespaces: Vec<String>,
    /// Read a saved `kubectl get -o yaml` or `pullwarden snapshot` instead of the cluster.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub live: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct AccessArgs {
    /// A workspace file or directory (its scope and grants decide who is listed).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Read Kubernetes objects saved as YAML/JSON instead of the cluster. A snapshot holds
    /// no roles: project access is evaluated from its RoleBindings to OpenShift's image roles.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub live: Option<PathBuf>,
    /// Only subjects in these namespaces (a name or glob).
    #[arg(long, value_name = "GLOB")]
    pub namespace: Option<String>,
    /// Only this ServiceAccount, as `NAMESPACE/NAME`.
    #[arg(long, value_name = "NS/NAME")]
    pub service_account: Option<String>,
    /// Only registry access to this host (`quay.io`, `registry.example.com:5000`).
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,
    /// Output format (on stdout).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Name the granting objects (bindings, Secrets) of every line.
    #[arg(long)]
    pub explain: bool,
    /// Re-check every ServiceAccount's project line with a SubjectAccessReview; exit 1 on any
    /// disagreement.
    #[arg(long, conflicts_with = "live")]
    pub verify: bool,
    /// With a workspace that names clusters (`spec.clusters`): only this cluster (repeatable).
    /// Default: every cluster.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// A workspace file or directory (now).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// The git revision to compare with (`HEAD~1`, `origin/main`): the same path at that
    /// revision, read with `git ls-tree` and `git show` (no checkout).
    #[arg(
        long,
        value_name = "REV",
        required_unless_present = "base_path",
        conflicts_with = "base_path"
    )]
    pub base: Option<String>,
    /// A folder holding the workspace to compare with, instead of a git revision.
    #[arg(long, value_name = "DIR")]
    pub base_path: Option<PathBuf>,
    /// Kubernetes objects saved as YAML/JSON (or a `pullwarden snapshot`): expands globs,
    /// shows namespaces newly matched, and adds the ServiceAccounts and RoleBindings it holds.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub live: Option<PathBuf>,
    /// Output format (on stdout).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// A workspace file or directory naming clusters (`spec.clusters`): snapshot each of its
    /// clusters into `--out DIR`, one `DIR/<cluster>.json` each (what `--live DIR` reads).
    /// Without it, or for a workspace without clusters: the one cluster the kubeconfig flags name.
    pub workspace: Option<PathBuf>,
    /// Write to FILE instead of stdout (with a fleet: the directory to write into).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// With a workspace that names clusters (`spec.clusters`): only this cluster (repeatable).
    /// Default: every cluster.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct DriftArgs {
    /// A workspace file or directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Compare with Kubernetes objects saved as YAML/JSON instead of a cluster.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub live: Option<PathBuf>,
    /// Output format (on stdout). Under GitHub Actions, text output also carries annotations,
    /// and a markdown summary is appended to `GITHUB_STEP_SUMMARY`.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Also write a JUnit XML report: one failed test case per drifted or pending object.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// With a workspace that names clusters (`spec.clusters`): only this cluster (repeatable).
    /// Default: every cluster.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A workspace file or directory (it supplies the credentials, also for a saved plan).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Execute exactly this saved plan (`plan --out FILE`); refused, writing nothing,
    /// if anything it assumed has changed since.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation. Without a terminal, apply refuses unless this is given.
    #[arg(long)]
    pub auto_approve: bool,
    /// Take over unlabelled objects in the way instead of reporting conflicts.
    #[arg(long, conflicts_with = "plan")]
    pub adopt: bool,
    /// How many changes run at once within a phase.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// With a workspace that names clusters (`spec.clusters`): only this cluster (repeatable).
    /// Default: every cluster.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A workspace file or directory; reloaded when its files change.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// A full reconcile at least this often, events or not (`10m`, `30s`).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub resync: std::time::Duration,
    /// How long an event waits for more before reconciling (a burst is one reconcile).
    #[arg(long, value_name = "DURATION", default_value = "150ms", value_parser = parse_duration)]
    pub debounce: std::time::Duration,
    /// How often the workspace files are checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub workspace_poll: std::time::Duration,
    /// When a `fromCommand` credential's command runs again: at this percentage of the
    /// lifetime its `expiresAt` gave (never sooner than 5 s after the last run).
    #[arg(long, value_name = "PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u8).range(10..=95))]
    pub credential_refresh_at: u8,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`off`: not served).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// Log lines as text or as one JSON object per line (on stderr).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Take over unlabelled objects in the way instead of reporting conflicts.
    #[arg(long)]
    pub adopt: bool,
    /// How many changes run at once within a phase.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Write only while holding a `coordination.k8s.io/v1` Lease (run several replicas).
    #[arg(long)]
    pub leader_elect: bool,
    /// The Lease's namespace (default: `POD_NAMESPACE`, else `default`).
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// The Lease's name.
    #[arg(long, value_name = "NAME", default_value = "pullwarden-run")]
    pub lease_name: String,
    /// How long a holder that stops renewing keeps the lease; it renews every third of it
    /// and stops writing when it could not renew for two thirds.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: std::time::Duration,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the live state comes from.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Path to a kubeconfig (default: `KUBECONFIG`, then ~/.kube/config, then in-cluster).
    /// With a workspace that names clusters: the kubeconfig of every cluster that names none.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context). Refused with a workspace
    /// that names clusters: each cluster names its own (`--cluster NAME` chooses clusters).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The longest one request to the API server may take, credential plugin
    /// included (`30s`, `2m`, `500ms`); a request that times out is retried a
    /// few times, then the command fails.
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
}

/// `30s`, `2m`, `500ms`, `1h`, or a number of seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 2m or 500ms"))?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(format!("`{text}` has an unknown unit (use ms, s, m or h)")),
    };
    if duration.is_zero() {
        return Err("the request timeout must be more than zero".into());
    }
    Ok(duration)
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A workspace file or directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Plan against Kubernetes objects saved as YAML/JSON (a file or directory,
    /// e.g. `kubectl get ns,secrets,serviceaccounts,rolebindings -A -o yaml`) instead of a cluster.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub live: Option<PathBuf>,
    /// Output format of the plan (on stdout).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Also save the plan to FILE (JSON, no credentials), for `apply --plan FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Take over unlabelled objects in the way instead of reporting conflicts.
    #[arg(long)]
    pub adopt: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error (as Terraform).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// With a workspace that names clusters (`spec.clusters`): only this cluster (repeatable).
    /// Default: every cluster.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["service_account", "pod"]))]
pub struct CanPullArgs {
    /// The image, as a pod spec names it (`quay.io/team/app:v1`, `nginx`).
    pub image: String,
    /// A ServiceAccount, as `NAMESPACE/NAME`: the question is asked for a pod created
    /// now that lists no pull secrets of its own (it gets the ServiceAccount's).
    #[arg(long, value_name = "NS/NAME")]
    pub service_account: Option<String>,
    /// An existing pod, as `NAMESPACE/NAME`: its own pull secrets (fixed when it was
    /// created); says when its ServiceAccount now lists secrets the pod never got.
    #[arg(long, value_name = "NS/NAME", conflicts_with = "live")]
    pub pod: Option<String>,
    /// Answer from Kubernetes objects saved as YAML/JSON instead of a cluster.
    #[arg(long, value_name = "FILE_OR_DIR")]
    pub live: Option<std::path::PathBuf>,
    /// Ask the registry: try each candidate in the kubelet's order, as a container
    /// runtime does (`GET /v2/`, Basic or Bearer token, `HEAD` of the manifest).
    #[arg(long)]
    pub probe: bool,
    /// Where OpenShift's integrated registry answers: images there are checked with a
    /// SubjectAccessReview (`get imagestreams/layers` in the image's project).
    #[arg(long, value_name = "HOST", default_value = pullwarden_core::pull::project::DEFAULT_INTERNAL_REGISTRY)]
    pub internal_registry: String,
    /// PEM certificates to trust, besides the system's, when probing.
    #[arg(long, value_name = "FILE", requires = "probe")]
    pub registry_ca: Option<std::path::PathBuf>,
    /// A registry (`host[:port]`) to probe over plain HTTP (repeatable); HTTPS otherwise.
    #[arg(long, value_name = "HOST", requires = "probe")]
    pub insecure_registry: Vec<String>,
    /// Output format (on stdout).
    #[arg(long, value_enum, default_value_t = CanPullFormat::Text)]
    pub format: CanPullFormat,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CanPullFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// A workspace file or directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Also resolve credentials (`fromEnv`, `fromFile`, credential files) and report what is missing.
    #[arg(long)]
    pub resolve: bool,
    /// Also log in to every Registry once (implies `--resolve`): a rejected credential is an
    /// error at the Registry's line. At most one attempt per registry: registries lock accounts.
    #[arg(long)]
    pub check_registries: bool,
    /// PEM certificates to trust, besides the system's, when checking registries.
    #[arg(long, value_name = "FILE", requires = "check_registries")]
    pub registry_ca: Option<PathBuf>,
    /// A registry (`host[:port]`) to check over plain HTTP (repeatable); HTTPS otherwise.
    #[arg(long, value_name = "HOST", requires = "check_registries")]
    pub insecure_registry: Vec<String>,
    /// The longest one registry request may take.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration, requires = "check_registries")]
    pub registry_timeout: std::time::Duration,
    /// Output format: `text` reports on stderr; `json` prints the diagnostics as data on stdout.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

pub fn run(cli: &Cli, out: &Output) -> ExitCode {
    if cli.global.allow_outside_files {
        credentials::allow_files_outside_workspace();
    }
    if cli.global.allow_commands {
        credentials::allow_commands();
    }
    match &cli.command {
        Command::Validate(args) => crate::commands::validate(args, out),
        Command::Plan(args) => crate::commands::plan(args, out),
        Command::Apply(args) => crate::commands::apply(args, out),
        Command::Drift(args) => crate::commands::drift(args, out),
        Command::Snapshot(args) => crate::commands::snapshot(args, out),
        Command::Import(args) => crate::commands::import(args, out),
        Command::CanPull(args) => crate::commands::can_pull::can_pull(args, out),
        Command::Access(args) => crate::commands::access::access(args, out),
        Command::Diff(args) => crate::commands::diff::diff(args, out),
        Command::Run(args) => crate::commands::run(args, out),
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "pullwarden",
                &mut text,
            );
            out.data(&String::from_utf8_lossy(&text));
            ExitCode::SUCCESS
        }
        Command::Man => {
            let mut text = Vec::new();
            match clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut text)
            {
                Ok(()) => {
                    out.data(&String::from_utf8_lossy(&text));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    out.error(&format!("pullwarden: cannot render the man page: {e}"));
                    ExitCode::from(1)
                }
            }
        }
        Command::Schema => {
            out.data(&pullwarden_spec::format::json_schema());
            ExitCode::SUCCESS
        }
    }
}
