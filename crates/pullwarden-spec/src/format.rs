//! The serde/JSON Schema description of `pullwarden.dev/v1alpha1`.
//!
//! These types are the documentation of the format: their doc comments become
//! the JSON Schema's descriptions (`pullwarden schema`, and the committed
//! `schemas/pullwarden.v1alpha1.schema.json` that editors use). Decoding is done
//! by [`crate::lower`] over spanned YAML nodes, so that every problem can be
//! reported at once with its location; a test checks that the field names the
//! decoder accepts are exactly the ones this schema declares.

#![allow(dead_code)] // the types exist to generate the schema

use std::collections::BTreeMap;

use schemars::JsonSchema;

/// The only `apiVersion` of the format.
pub const API_VERSION: &str = "pullwarden.dev/v1alpha1";

/// One YAML document of a pullwarden workspace.
#[derive(JsonSchema)]
#[serde(tag = "kind", deny_unknown_fields)]
#[schemars(title = "pullwarden workspace document (pullwarden.dev/v1alpha1)")]
pub enum Document {
    /// The workspace itself: its ownership id, scope and prune policy. Exactly one per workspace.
    Workspace {
        #[serde(rename = "apiVersion")]
        api_version: ApiVersion,
        metadata: Metadata,
        spec: WorkspaceSpec,
    },
    /// One set of registry credentials.
    Registry {
        #[serde(rename = "apiVersion")]
        api_version: ApiVersion,
        metadata: Metadata,
        spec: RegistrySpec,
    },
    /// A registry secret placed in namespaces and linked to service accounts.
    PullSecret {
        #[serde(rename = "apiVersion")]
        api_version: ApiVersion,
        metadata: Metadata,
        spec: PullSecretSpec,
    },
    /// Cross-project image access: one RoleBinding per target namespace.
    PullGrant {
        #[serde(rename = "apiVersion")]
        api_version: ApiVersion,
        metadata: Metadata,
        spec: PullGrantSpec,
    },
}

#[derive(JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "pullwarden.dev/v1alpha1")]
    V1alpha1,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Unique per kind across the workspace. For a Workspace: a DNS label of at most
    /// 63 characters, written as a label value on every managed object.
    pub name: String,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    /// Optional scope: every target namespace must fall inside it.
    #[serde(default)]
    pub namespaces: Option<NamespaceScope>,
    /// Delete/unlink what this workspace manages but no longer declares. Default true.
    #[serde(default)]
    pub prune: Option<bool>,
    /// The clusters (kubeconfig contexts) the workspace is applied to, each on its own.
    /// Absent: one cluster, the kubeconfig's current context (or `--context`).
    #[serde(default)]
    pub clusters: Option<Vec<Cluster>>,
}

/// One cluster of a fleet.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Unique in the workspace; a DNS label (lowercase letters, digits and `-`, at most 63
    /// characters). Named by the `clusters` of `PullSecret`s and `PullGrant`s.
    pub name: String,
    /// The kubeconfig context. Default: the cluster's `name`.
    #[serde(default)]
    pub context: Option<String>,
    /// The kubeconfig file, relative to this file. Default: the usual lookup
    /// (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// Labels that the label selectors in `clusters` limits match (keys and values as
    /// Kubernetes labels).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// One way of choosing clusters: a name or glob (a string) matched against the declared
/// cluster names, or a label selector matched against their `labels`.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum ClusterEntry {
    /// A declared cluster's name, or a glob (`*`, `?`, `[abc]`) matched against whole cluster names.
    Name(String),
    /// The clusters whose `labels` match.
    Selector(LabelSelector),
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceScope {
    /// Names, glob patterns (`*`, `?`, `[abc]`, matched against whole namespace names) or
    /// label selectors. Default `["*"]`.
    #[serde(default)]
    pub include: Option<Vec<NamespaceEntry>>,
    /// Names, globs or label selectors removed from the scope, e.g. the opt-out
    /// `{matchLabels: {pullwarden.dev/exclude: "true"}}`.
    #[serde(default)]
    pub exclude: Option<Vec<NamespaceEntry>>,
}

/// One way of choosing namespaces: a name or glob (a string), or a label selector (a mapping).
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum NamespaceEntry {
    /// A namespace name, or a glob (`*`, `?`, `[abc]`) matched against whole namespace names.
    Name(String),
    /// The namespaces whose labels match.
    Selector(LabelSelector),
}

/// A Kubernetes label selector (`metav1.LabelSelector`), matched against namespace labels:
/// every `matchLabels` entry and every `matchExpressions` requirement must hold. At least
/// one requirement (`"*"` means every namespace).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1))]
pub struct LabelSelector {
    /// Label key to value; each entry is a requirement `key In [value]`.
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Requirements on label keys and values.
    #[serde(default)]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// One requirement: `In`/`NotIn` need a non-empty `values`, `Exists`/`DoesNotExist` take none.
/// `NotIn` and `DoesNotExist` match namespaces without the key.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
    pub key: String,
    pub operator: SelectorOperator,
    /// Label values (each empty or at most 63 characters).
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

#[derive(JsonSchema)]
pub enum SelectorOperator {
    /// The label is present with one of `values`.
    In,
    /// The label is absent, or present with none of `values`.
    NotIn,
    /// The label is present (any value).
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// Exactly one of three shapes: server/username/password, `dockerConfigFile`, or `dockercfgFile`.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum RegistrySpec {
    Login(LoginRegistry),
    DockerConfig(DockerConfigRegistry),
    Dockercfg(DockercfgRegistry),
}

/// Like `oc secrets new-dockercfg --docker-server --docker-username --docker-password`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
// `username` may be left out only when the password comes from a command.
#[schemars(extend(
    "if" = {"required": ["password"], "properties": {"password": {"required": ["fromCommand"]}}},
    "else" = {"required": ["username"]}
))]
pub struct LoginRegistry {
    /// The registry host, e.g. `quay.io`.
    pub server: String,
    /// A literal (shown in plans), or `{fromEnv}` / `{fromFile}` (treated as sensitive).
    /// Required, except with a `password` from `fromCommand`: left out, it is the
    /// `username` the command prints in its JSON output.
    #[serde(default)]
    pub username: Option<ValueSource>,
    /// Never a literal: `{fromEnv: VAR}`, `{fromFile: path}` or `{fromCommand: {...}}`.
    pub password: PasswordSource,
    /// Optional, written into the entry.
    #[serde(default)]
    pub email: Option<String>,
}

/// An existing docker `config.json` (`oc secrets new NAME .dockerconfigjson=path`).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DockerConfigRegistry {
    /// Path relative to this file.
    pub docker_config_file: String,
}

/// An existing legacy `.dockercfg` (`oc secrets new NAME .dockercfg=path`).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DockercfgRegistry {
    /// Path relative to this file.
    pub dockercfg_file: String,
}

#[derive(JsonSchema)]
#[serde(untagged)]
pub enum ValueSource {
    Literal(String),
    Secret(SecretSource),
}

/// Where a secret comes from, resolved when planning.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum SecretSource {
    Env(FromEnv),
    File(FromFile),
}

/// Where a password comes from: a secret source, or a command.
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum PasswordSource {
    Env(FromEnv),
    File(FromFile),
    Command(FromCommand),
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FromCommand {
    /// A command printing the password alone, or JSON `{"username", "password",
    /// "expiresAt"}` (`username` and `expiresAt` optional; `expiresAt` an RFC 3339
    /// time or seconds since 1970). Runs once per registry per run, and again
    /// before `expiresAt` under `pullwarden run`; needs `--allow-commands`.
    pub from_command: CommandSpec,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandSpec {
    /// The program and its arguments, run without a shell in the folder of this
    /// file (a relative program path with a `/` is taken from there).
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// How long it may run before it and its process group are killed: `30s`
    /// (default), `2m`, `500ms`; between 1s and 10m.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m)$"))]
    pub timeout: Option<String>,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FromEnv {
    /// An environment variable; missing or empty is an error.
    pub from_env: String,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FromFile {
    /// A file path relative to this file; one trailing newline is dropped.
    pub from_file: String,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullSecretSpec {
    /// The Secret type. Default `dockerconfigjson`.
    #[serde(default)]
    pub format: Option<SecretFormat>,
    /// Registry names, merged into one secret in this order.
    pub registries: Vec<String>,
    /// Names, globs or label selectors; a name must exist, a glob or selector that matches
    /// nothing is a warning.
    pub namespaces: Vec<NamespaceEntry>,
    /// Names, globs or label selectors to leave out.
    #[serde(default)]
    pub exclude_namespaces: Option<Vec<NamespaceEntry>>,
    /// Service accounts to link the secret to (`oc secrets link`).
    #[serde(default)]
    pub service_accounts: Option<Vec<ServiceAccountLink>>,
    /// Only in a workspace with `spec.clusters`: the clusters to place the secret in (names,
    /// globs or label selectors). Default: every cluster.
    #[serde(default)]
    pub clusters: Option<Vec<ClusterEntry>>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretFormat {
    /// `kubernetes.io/dockerconfigjson`, key `.dockerconfigjson`.
    Dockerconfigjson,
    /// The legacy `kubernetes.io/dockercfg`, key `.dockercfg`.
    Dockercfg,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceAccountLink {
    /// The ServiceAccount's name in each target namespace.
    pub name: String,
    /// `pull`: imagePullSecrets; `mount`: the SA's `secrets` list. Default `[pull]`.
    #[serde(default, rename = "for")]
    pub for_: Option<Vec<LinkPurpose>>,
    /// What to do where the ServiceAccount does not exist. Default `error`.
    #[serde(default)]
    pub if_missing: Option<IfMissing>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkPurpose {
    Pull,
    Mount,
}

#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IfMissing {
    Error,
    Skip,
    Create,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullGrantSpec {
    /// A ClusterRole. Default `system:image-puller`; also `system:image-pusher`, `system:image-builder`.
    #[serde(default)]
    pub role: Option<String>,
    /// Where the images live: one RoleBinding in each (names, globs or label selectors).
    pub namespaces: Vec<NamespaceEntry>,
    /// Who may pull.
    pub to: Vec<Subject>,
    /// Only in a workspace with `spec.clusters`: the clusters to place the RoleBindings in
    /// (names, globs or label selectors). Default: every cluster.
    #[serde(default)]
    pub clusters: Option<Vec<ClusterEntry>>,
}

/// Exactly one key.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Subject {
    /// `namespace/name`: `add-role-to-user system:serviceaccount:namespace:name`.
    ServiceAccount(String),
    /// A namespace, glob or label selector: the group `system:serviceaccounts:<ns>` for each
    /// namespace it chooses (globs and selectors: inside the scope).
    AllServiceAccountsIn(NamespaceEntry),
    /// An RBAC group.
    Group(String),
    /// An RBAC user.
    User(String),
}

/// The JSON Schema of the format, pretty-printed with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Document);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use crate::lower::fields;

    fn properties(schema: &Value, def: &str) -> BTreeSet<String> {
        schema["$defs"][def]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no properties for {def}"))
            .keys()
            .cloned()
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(ToString::to_string).collect()
    }

    /// The decoder and the schema describe the same fields.
    #[test]
    fn decoder_fields_match_the_schema() {
        let schema: Value = serde_json::from_str(&super::json_schema()).unwrap();
        for (def, decoder) in [
            ("Metadata", fields::METADATA),
            ("WorkspaceSpec", fields::WORKSPACE_SPEC),
            ("Cluster", fields::CLUSTER),
            ("NamespaceScope", fields::NAMESPACE_SCOPE),
            ("LoginRegistry", fields::LOGIN_REGISTRY),
            ("DockerConfigRegistry", fields::DOCKER_CONFIG_REGISTRY),
            ("DockercfgRegistry", fields::DOCKERCFG_REGISTRY),
            ("PullSecretSpec", fields::PULL_SECRET_SPEC),
            ("ServiceAccountLink", fields::SERVICE_ACCOUNT_LINK),
            ("PullGrantSpec", fields::PULL_GRANT_SPEC),
            ("LabelSelector", fields::LABEL_SELECTOR),
            ("LabelSelectorRequirement", fields::SELECTOR_REQUIREMENT),
        ] {
            assert_eq!(properties(&schema, def), set(decoder), "{def}");
        }
        let mut sources = properties(&schema, "FromEnv");
        sources.extend(properties(&schema, "FromFile"));
        sources.extend(properties(&schema, "FromCommand"));
        assert_eq!(sources, set(fields::SECRET_SOURCE));
        assert_eq!(
            properties(&schema, "CommandSpec"),
            set(fields::COMMAND_SOURCE)
        );
        let subjects: BTreeSet<String> = schema["$defs"]["Subject"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| v["required"].as_array().unwrap().iter())
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(subjects, set(fields::SUBJECT));
        let operators: BTreeSet<String> = schema["$defs"]["SelectorOperator"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["const"].as_str().unwrap().to_string())
            .collect();
        let decoded: Vec<&str> = pullwarden_core::names::SelectorOperator::ALL
            .iter()
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(operators, set(&decoded));
        let kinds: BTreeSet<String> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                v["properties"]["kind"]["const"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(kinds, set(fields::KINDS));
        for variant in schema["oneOf"].as_array().unwrap() {
            let keys: BTreeSet<String> = variant["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert_eq!(keys, set(fields::DOCUMENT));
        }
    }
}
