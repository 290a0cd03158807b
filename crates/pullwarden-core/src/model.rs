//! The validated workspace: what the user declared, with every reference
//! resolved and every name checked. Built by `pullwarden-spec` from the YAML
//! files; consumed by the planner. Values that may point back at the YAML
//! carry an [`Origin`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use crate::names::{ClusterPattern, Labels, NamespacePattern};

/// Which loaded file a value came from (an index into the loader's source map).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// Where in the workspace a value was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: FileId,
    pub span: Range<usize>,
}

/// A value and where it was written.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Clone, Debug)]
pub struct Workspace {
    /// The ownership id written into every managed object's labels.
    pub name: String,
    pub scope: Scope,
    pub prune: bool,
    /// By name.
    pub registries: BTreeMap<String, Registry>,
    /// In workspace order (sorted files, then document order).
    pub pull_secrets: Vec<PullSecret>,
    pub pull_grants: Vec<PullGrant>,
    /// The clusters the workspace is applied to, in declaration order; empty
    /// for a single-cluster workspace (the kubeconfig's current context).
    pub clusters: Vec<Cluster>,
}

impl Workspace {
    /// The workspace as one cluster sees it: only the `PullSecret`s and
    /// `PullGrant`s whose cluster limits choose `cluster` (by name, glob or
    /// label selector); `clusters` and everything else kept.
    #[must_use]
    pub fn for_cluster(&self, cluster: &Cluster) -> Workspace {
        Workspace {
            name: self.name.clone(),
            scope: self.scope.clone(),
            prune: self.prune,
            registries: self.registries.clone(),
            pull_secrets: self
                .pull_secrets
                .iter()
                .filter(|s| cluster.is_chosen_by(&s.clusters))
                .cloned()
                .collect(),
            pull_grants: self
                .pull_grants
                .iter()
                .filter(|g| cluster.is_chosen_by(&g.clusters))
                .cloned()
                .collect(),
            clusters: self.clusters.clone(),
        }
    }

    /// The declared clusters a document's cluster limits choose (every
    /// cluster when there are no limits), in declaration order.
    pub fn clusters_chosen_by<'a>(
        &'a self,
        limits: &'a [Located<ClusterPattern>],
    ) -> impl Iterator<Item = &'a Cluster> + 'a {
        self.clusters.iter().filter(|c| c.is_chosen_by(limits))
    }
}

/// One cluster of a fleet (`Workspace.spec.clusters[]`).
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Unique in the workspace, a DNS-1123 label.
    pub name: String,
    /// Where the entry was written.
    pub origin: Origin,
    /// The kubeconfig context; defaults to `name`.
    pub context: String,
    /// The kubeconfig file, already made relative to the workspace file that
    /// names it (absolute when that file's path was); `None`: the usual
    /// lookup (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Matched by the label selectors of cluster limits.
    pub labels: Labels,
}

impl Cluster {
    /// Whether a document with these cluster limits applies to this cluster:
    /// no limits choose every cluster, otherwise any one entry must choose
    /// it (a name or glob by the cluster's name, a selector by its labels).
    pub fn is_chosen_by(&self, limits: &[Located<ClusterPattern>]) -> bool {
        limits.is_empty()
            || limits
                .iter()
                .any(|p| p.value.matches_labeled(&self.name, &self.labels))
    }
}

/// The namespaces a workspace may write to: names, globs and label selectors.
#[derive(Clone, Debug)]
pub struct Scope {
    pub include: Vec<Located<NamespacePattern>>,
    pub exclude: Vec<Located<NamespacePattern>>,
}

impl Scope {
    /// Whether the scope may hold a namespace, judging by its name alone
    /// (what validation and a namespace-scoped read can know): an include
    /// selector may choose it, an exclude selector is not known to leave it
    /// out. [`Self::contains_labeled`] decides with the labels.
    pub fn contains(&self, namespace: &str) -> bool {
        self.include
            .iter()
            .any(|p| p.value.is_selector() || p.value.matches(namespace))
            && !self.exclude.iter().any(|p| p.value.matches(namespace))
    }

    /// Whether the scope holds a namespace with these labels; `None` when
    /// only its labels could tell and they are not known.
    pub fn contains_labeled(&self, namespace: &str, labels: Option<&Labels>) -> Option<bool> {
        let include = any_match(&self.include, namespace, labels);
        let exclude = any_match(&self.exclude, namespace, labels);
        match (include, exclude) {
            (Some(false), _) | (_, Some(true)) => Some(false),
            (Some(true), Some(false)) => Some(true),
            _ => None,
        }
    }

    /// Whether any entry of the scope is a label selector.
    pub fn has_selectors(&self) -> bool {
        self.include
            .iter()
            .chain(&self.exclude)
            .any(|p| p.value.is_selector())
    }
}

/// Whether any pattern chooses the namespace: `Some(true)` as soon as one
/// does, `None` if none does but one could not tell (labels unknown).
pub fn any_match(
    patterns: &[Located<NamespacePattern>],
    namespace: &str,
    labels: Option<&Labels>,
) -> Option<bool> {
    let mut unknown = false;
    for pattern in patterns {
        match pattern.value.matches_namespace(namespace, labels) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(false)
}

#[derive(Clone, Debug)]
pub struct Registry {
    pub name: String,
    pub origin: Origin,
    pub source: RegistrySource,
}

#[derive(Clone, Debug)]
pub enum RegistrySource {
    /// server + username + password (`oc secrets new-dockercfg`).
    Login {
        server: Located<String>,
        username: Located<ValueSource>,
        password: Located<ValueSource>,
        email: Option<Located<String>>,
    },
    /// An existing docker `config.json` (`{"auths": {...}}`).
    DockerConfigFile(Located<PathBuf>),
    /// An existing legacy `.dockercfg` (the bare per-server map).
    DockercfgFile(Located<PathBuf>),
}

/// Where a value comes from. Paths are already made relative to the
/// workspace file that names them (absolute when that file's path was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSource {
    /// Written in the workspace; only allowed where the value is not secret.
    Literal(String),
    FromEnv(String),
    FromFile(PathBuf),
    /// What a command prints (`{fromCommand: {command, timeout}}`), only for
    /// a `password`. As a `username` (written by the loader when the
    /// workspace leaves `username` out): the `username` of that same
    /// command's JSON output; the command still runs once.
    FromCommand(Box<CommandSource>),
}

/// A command that prints a credential: an argument list run without a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSource {
    /// The program and its arguments. A program given as a relative path
    /// (one with a `/`) is already joined to `dir`.
    pub argv: Vec<String>,
    /// How long it may run before it (and its process group) is killed.
    pub timeout: std::time::Duration,
    /// Its working directory: the folder of the workspace file naming it.
    pub dir: PathBuf,
}

impl ValueSource {
    /// Whether the value is shown in plans (only literals are).
    pub fn is_sensitive(&self) -> bool {
        !matches!(self, Self::Literal(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretFormat {
    /// `kubernetes.io/dockerconfigjson`, key `.dockerconfigjson`.
    DockerConfigJson,
    /// `kubernetes.io/dockercfg`, key `.dockercfg`.
    Dockercfg,
}

impl SecretFormat {
    pub fn secret_type(self) -> &'static str {
        match self {
            Self::DockerConfigJson => "kubernetes.io/dockerconfigjson",
            Self::Dockercfg => "kubernetes.io/dockercfg",
        }
    }

    pub fn data_key(self) -> &'static str {
        match self {
            Self::DockerConfigJson => ".dockerconfigjson",
            Self::Dockercfg => ".dockercfg",
        }
    }

    /// The format of a Secret of type `secret_type`; `None` for other types.
    pub fn of_type(secret_type: &str) -> Option<Self> {
        [Self::DockerConfigJson, Self::Dockercfg]
            .into_iter()
            .find(|f| f.secret_type() == secret_type)
    }

    /// How the data value is laid out (`auths` wrapper or not).
    pub fn config_format(self) -> crate::dockerconfig::ConfigFormat {
        match self {
            Self::DockerConfigJson => crate::dockerconfig::ConfigFormat::ConfigJson,
            Self::Dockercfg => crate::dockerconfig::ConfigFormat::Dockercfg,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PullSecret {
    /// The Secret's name in every target namespace.
    pub name: String,
    pub origin: Origin,
    pub format: SecretFormat,
    /// Registry names, in merge order; each names an entry of `Workspace::registries`.
    pub registries: Vec<Located<String>>,
    pub namespaces: Vec<Located<NamespacePattern>>,
    pub exclude_namespaces: Vec<Located<NamespacePattern>>,
    pub service_accounts: Vec<ServiceAccountLink>,
    /// The clusters it is placed in (names, globs, label selectors over the
    /// clusters' labels); empty: every cluster.
    pub clusters: Vec<Located<ClusterPattern>>,
}

#[derive(Clone, Debug)]
pub struct ServiceAccountLink {
    pub name: Located<String>,
    /// `imagePullSecrets`.
    pub pull: bool,
    /// The SA's `secrets` list.
    pub mount: bool,
    pub if_missing: IfMissing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IfMissing {
    Error,
    Skip,
    Create,
}

#[derive(Clone, Debug)]
pub struct PullGrant {
    pub name: String,
    pub origin: Origin,
    /// A ClusterRole name.
    pub role: Located<String>,
    pub namespaces: Vec<Located<NamespacePattern>>,
    pub to: Vec<Located<Subject>>,
    /// The clusters it is placed in; empty: every cluster.
    pub clusters: Vec<Located<ClusterPattern>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    ServiceAccount {
        namespace: String,
        name: String,
    },
    /// The group `system:serviceaccounts:<ns>` for the namespace, or for
    /// every namespace inside the scope a glob or label selector chooses.
    AllServiceAccountsIn(NamespacePattern),
    Group(String),
    User(String),
}

/// One registry's credentials after resolution, ready to be merged into a Secret.
#[derive(Clone, Debug)]
pub struct ResolvedRegistry {
    pub name: String,
    pub entries: Vec<crate::dockerconfig::Entry>,
    /// Whether usernames may be shown (only a literal `username` is public).
    pub usernames_public: bool,
    /// When the credential stops working, in seconds since the Unix epoch:
    /// the `expiresAt` a `fromCommand` printed; `None` when not known.
    pub expires_at: Option<i64>,
    /// Whether the credentials come from a `fromCommand` (a new value is the
    /// command reissuing them, not someone editing the cluster).
    pub from_command: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{LabelSelector, SelectorOperator, SelectorRequirement};

    fn at<T>(value: T) -> Located<T> {
        Located {
            value,
            origin: Origin {
                file: FileId(0),
                span: 0..0,
            },
        }
    }

    fn cluster(name: &str, labels: &[(&str, &str)]) -> Cluster {
        Cluster {
            name: name.into(),
            origin: at(()).origin,
            context: name.into(),
            kubeconfig: None,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    fn name(pattern: &str) -> Located<ClusterPattern> {
        at(ClusterPattern::parse(pattern).unwrap())
    }

    fn env_in(values: &[&str]) -> Located<ClusterPattern> {
        at(ClusterPattern::Selector(LabelSelector::new([
            SelectorRequirement {
                key: "env".into(),
                operator: SelectorOperator::In,
                values: values.iter().map(ToString::to_string).collect(),
            },
        ])))
    }

    fn secret(secret_name: &str, clusters: Vec<Located<ClusterPattern>>) -> PullSecret {
        PullSecret {
            name: secret_name.into(),
            origin: at(()).origin,
            format: SecretFormat::DockerConfigJson,
            registries: vec![at("quay".into())],
            namespaces: vec![at(NamespacePattern::parse("team-*").unwrap())],
            exclude_namespaces: Vec::new(),
            service_accounts: Vec::new(),
            clusters,
        }
    }

    fn grant(grant_name: &str, clusters: Vec<Located<ClusterPattern>>) -> PullGrant {
        PullGrant {
            name: grant_name.into(),
            origin: at(()).origin,
            role: at("system:image-puller".into()),
            namespaces: vec![at(NamespacePattern::parse("images").unwrap())],
            to: vec![at(Subject::Group("devs".into()))],
            clusters,
        }
    }

    fn fleet() -> Workspace {
        Workspace {
            name: "ws".into(),
            scope: Scope {
                include: vec![at(NamespacePattern::parse("*").unwrap())],
                exclude: Vec::new(),
            },
            prune: true,
            registries: BTreeMap::new(),
            pull_secrets: vec![
                secret("everywhere", Vec::new()),
                secret("eu-only", vec![name("prod-eu")]),
                secret("prod-glob", vec![name("prod-*")]),
                secret("dev-or-us", vec![env_in(&["dev"]), name("prod-us")]),
            ],
            pull_grants: vec![
                grant("all", Vec::new()),
                grant("prod", vec![env_in(&["prod"])]),
                grant("nowhere", vec![name("qa-?")]),
            ],
            clusters: vec![
                cluster("prod-eu", &[("env", "prod")]),
                cluster("prod-us", &[("env", "prod")]),
                cluster("dev", &[("env", "dev")]),
                cluster("bare", &[]),
            ],
        }
    }

    fn names(ws: &Workspace) -> (Vec<&str>, Vec<&str>) {
        (
            ws.pull_secrets.iter().map(|s| s.name.as_str()).collect(),
            ws.pull_grants.iter().map(|g| g.name.as_str()).collect(),
        )
    }

    #[test]
    fn for_cluster_keeps_what_the_cluster_limits_choose() {
        let ws = fleet();
        let view = |n: &str| {
            let c = ws.clusters.iter().find(|c| c.name == n).unwrap();
            ws.for_cluster(c)
        };
        let eu = view("prod-eu");
        assert_eq!(
            names(&eu),
            (
                vec!["everywhere", "eu-only", "prod-glob"],
                vec!["all", "prod"]
            )
        );
        assert_eq!(
            names(&view("prod-us")),
            (
                vec!["everywhere", "prod-glob", "dev-or-us"],
                vec!["all", "prod"]
            )
        );
        assert_eq!(
            names(&view("dev")),
            (vec!["everywhere", "dev-or-us"], vec!["all"])
        );
        // No labels: a name or glob may choose it, a selector needing `env` cannot.
        assert_eq!(names(&view("bare")), (vec!["everywhere"], vec!["all"]));
        // Everything else is the workspace's own, unchanged.
        assert_eq!(eu.name, "ws");
        assert_eq!(eu.clusters.len(), 4);
        assert_eq!(eu.scope.include.len(), 1);
        assert!(eu.prune);
    }

    #[test]
    fn without_limits_every_cluster_is_chosen_and_order_is_kept() {
        let ws = fleet();
        let chosen: Vec<&str> = ws
            .clusters_chosen_by(&[])
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(chosen, ["prod-eu", "prod-us", "dev", "bare"]);
        let chosen: Vec<&str> = ws
            .clusters_chosen_by(&ws.pull_secrets[3].clusters)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(chosen, ["prod-us", "dev"]);
        assert_eq!(
            ws.clusters_chosen_by(&ws.pull_grants[2].clusters).count(),
            0
        );
        // A cluster without labels: chosen by its name, not by a selector on `env`.
        let unlabeled = cluster("prod", &[]);
        assert!(!unlabeled.is_chosen_by(&[env_in(&["prod"])]));
        assert!(unlabeled.is_chosen_by(&[env_in(&["prod"]), name("prod")]));
    }

    #[test]
    fn a_single_cluster_workspace_is_unchanged_by_any_view() {
        let mut ws = fleet();
        ws.clusters.clear();
        for secret in &mut ws.pull_secrets {
            secret.clusters.clear();
        }
        for grant in &mut ws.pull_grants {
            grant.clusters.clear();
        }
        let view = ws.for_cluster(&cluster("any", &[]));
        assert_eq!(names(&view), names(&ws));
        assert!(view.clusters.is_empty());
    }
}
