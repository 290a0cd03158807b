//! The planner: `plan(workspace, credentials, live) -> Plan`, pure and
//! deterministic. The plan is data: renderers read it, apply executes it, and
//! a saved plan is the same value on disk. It records what it assumed about
//! the cluster (UID and resourceVersion of every object it writes, deletes or
//! conflicts with), and it never holds a credential.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dockerconfig::{self, ConfigFormat, Entry};
use crate::live::{
    LINKS_ANNOTATION, LiveRoleBinding, LiveSecret, LiveServiceAccount, LiveState, Meta, Ownership,
    RbacSubject,
};
use crate::model::{IfMissing, ResolvedRegistry, SecretFormat, Subject, Workspace};
use crate::names::NamespacePattern;
use crate::secret::{DigestKey, SecretString};

/// Version of the plan's JSON shape (`--format json`, saved plans).
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Options the user chose when planning.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Take over unlabelled objects in the way instead of reporting conflicts.
    pub adopt: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub format_version: u32,
    pub workspace: String,
    pub adopt: bool,
    /// Sorted by namespace, then kind, then name.
    pub changes: Vec<Change>,
    /// Problems that make the plan unusable (conflicts, missing namespaces or
    /// service accounts). A plan with any is an error.
    pub errors: Vec<Finding>,
    /// Things worth knowing that change nothing (already-satisfied grants,
    /// globs that match nothing, skipped service accounts).
    pub warnings: Vec<Finding>,
    /// Every namespace a glob matched when planning.
    pub matched_namespaces: BTreeSet<String>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for change in &self.changes {
            match change.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
                Action::Adopt => s.adopt += 1,
                Action::Link => {}
            }
            if let Detail::Links(links) = &change.detail {
                s.link += links.pull_added.len() + links.mount_added.len();
                s.unlink += links.pull_removed.len() + links.mount_removed.len();
            }
        }
        s
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub adopt: usize,
    pub link: usize,
    pub unlink: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectKind {
    Secret,
    ServiceAccount,
    RoleBinding,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// An immutable field changes: delete + create (see the change's detail for the order).
    Replace,
    Delete,
    /// Take over an unlabelled object (`--adopt`), updating it to the desired content.
    Adopt,
    /// Edit a ServiceAccount's `imagePullSecrets` / `secrets` (link and/or unlink).
    Link,
}

/// What apply may assume of a live object; a saved plan is refused if it moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assumed {
    pub uid: String,
    pub resource_version: String,
}

impl Assumed {
    fn of(meta: &Meta) -> Self {
        Self {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub namespace: String,
    pub kind: ObjectKind,
    pub name: String,
    pub action: Action,
    /// The document that wants this (`PullSecret/quay-pull`), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// The live object this change was computed against (none for a create).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub assumed: Option<Assumed>,
    pub detail: Detail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Detail {
    Secret(SecretDiff),
    RoleBinding(RoleBindingDiff),
    Links(LinkDiff),
    /// A ServiceAccount created by `ifMissing: create` (labelled; never deleted by prune).
    ServiceAccount,
    /// A managed object removed by prune.
    Pruned,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretDiff {
    /// `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`.
    pub secret_type: String,
    /// The live type when it differs (a replace).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_type: Option<String>,
    /// Registry entries, by server, with what changed. Values never appear.
    pub entries: Vec<EntryDiff>,
    /// The live data could not be read as a docker config (it will be rewritten).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub unreadable_live_data: bool,
    /// The live Secret is `immutable: true` (so a content change is a replace).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub immutable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)] // flat flags read best in the JSON plan
pub struct EntryDiff {
    pub server: String,
    pub status: EntryStatus,
    /// The desired username when it is a literal from the workspace; otherwise none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    pub username_sensitive: bool,
    pub username_changed: bool,
    pub password_changed: bool,
    pub email_changed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    Added,
    Removed,
    Changed,
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleBindingDiff {
    pub role: String,
    /// The full desired subject list (what apply writes).
    pub subjects: Vec<RbacSubject>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub subjects_added: Vec<RbacSubject>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub subjects_removed: Vec<RbacSubject>,
    /// For a replace: the binding (of the old role) deleted after this one is created,
    /// so that access never lapses.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replaces: Option<Replaced>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub name: String,
    pub role: String,
    pub assumed: Assumed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDiff {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pull_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pull_removed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mount_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mount_removed: Vec<String>,
    /// What this workspace's record on the SA becomes.
    pub record: LinkRecord,
}

/// The entries a workspace added to one ServiceAccount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pull: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub mount: BTreeSet<String>,
}

impl LinkRecord {
    fn is_empty(&self) -> bool {
        self.pull.is_empty() && self.mount.is_empty()
    }
}

/// Reads every workspace's record from a ServiceAccount's annotation.
pub fn link_records(meta: &Meta) -> BTreeMap<String, LinkRecord> {
    meta.annotations
        .get(LINKS_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The annotation value with `workspace`'s record replaced (removed when empty).
pub fn links_annotation(meta: &Meta, workspace: &str, record: &LinkRecord) -> Option<String> {
    let mut records = link_records(meta);
    if record.is_empty() {
        records.remove(workspace);
    } else {
        records.insert(workspace.to_string(), record.clone());
    }
    if records.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&records).expect("records serialize"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code: `pullwarden::plan::conflict`, ...
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    pub message: String,
    /// The object in the way, for conflicts (recorded so apply can check it did not move).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub assumed: Option<Assumed>,
}

/// The deterministic name of a managed RoleBinding. It starts with
/// `pullwarden:` (never `system:`), and holds the workspace and grant, so it
/// cannot collide with OpenShift's or another workspace's; it holds the role
/// too, so that a role change creates the new binding before deleting the old.
pub fn role_binding_name(workspace: &str, grant: &str, role: &str) -> String {
    format!("pullwarden:{workspace}:{grant}:{role}")
}

/// A Secret pullwarden wants, with its content (never serialized).
#[derive(Clone, Debug)]
pub struct DesiredSecret {
    pub namespace: String,
    pub name: String,
    pub format: SecretFormat,
    pub source: String,
    pub entries: Vec<Entry>,
    pub usernames_public: Vec<bool>,
}

impl DesiredSecret {
    /// The Secret's data value (`.dockerconfigjson` / `.dockercfg`), as the
    /// kubelet reads it. Only the cluster writer and digests may use it.
    pub fn data(&self) -> SecretString {
        render_docker_config(&self.entries, self.format)
    }
}

/// Renders entries as `{"auths": {...}}` or the bare `.dockercfg` map, with
/// `username`, `password`, `email` and `auth`, like `kubectl create secret docker-registry`.
pub fn render_docker_config(entries: &[Entry], format: SecretFormat) -> SecretString {
    let mut map = serde_json::Map::new();
    for entry in entries {
        let mut fields = serde_json::Map::new();
        fields.insert("username".into(), entry.username.expose().into());
        fields.insert("password".into(), entry.password.expose().into());
        if let Some(email) = &entry.email {
            fields.insert("email".into(), email.clone().into());
        }
        fields.insert("auth".into(), entry.auth().expose().into());
        map.insert(entry.server.clone(), serde_json::Value::Object(fields));
    }
    let value = match format {
        SecretFormat::DockerConfigJson => {
            let mut root = serde_json::Map::new();
            root.insert("auths".into(), serde_json::Value::Object(map));
            serde_json::Value::Object(root)
        }
        SecretFormat::Dockercfg => serde_json::Value::Object(map),
    };
    SecretString::new(serde_json::to_string(&value).expect("JSON serializes"))
}

/// Everything the workspace wants on the cluster, given the live namespaces.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub secrets: BTreeMap<(String, String), DesiredSecret>,
    /// (namespace, service account) -> secret -> purposes.
    pub links: BTreeMap<(String, String), BTreeMap<String, Purposes>>,
    pub role_bindings: BTreeMap<(String, String), DesiredRoleBinding>,
    pub matched_namespaces: BTreeSet<String>,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purposes {
    pub pull: bool,
    pub mount: bool,
    pub if_missing: Option<IfMissing>,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRoleBinding {
    pub namespace: String,
    pub name: String,
    pub grant: String,
    pub role: String,
    pub subjects: Vec<RbacSubject>,
}

fn finding(code: &str, namespace: Option<&str>, message: String) -> Finding {
    Finding {
        code: format!("pullwarden::plan::{code}"),
        namespace: namespace.map(str::to_string),
        message,
        assumed: None,
    }
}

fn terminating_warning(namespace: &str) -> Finding {
    finding(
        "namespace_terminating",
        Some(namespace),
        format!(
            "namespace `{namespace}` is being deleted (Terminating): nothing is planned in it; plan again once it is gone or recreated"
        ),
    )
}

/// The live namespaces inside the scope that a glob matches (recorded for
/// saved plans); none is a warning naming `what`.
fn expand_glob(
    ws: &Workspace,
    live: &LiveState,
    glob: &NamespacePattern,
    what: &str,
    desired: &mut Desired,
) -> Vec<String> {
    let matched: Vec<String> = live
        .namespaces
        .iter()
        .filter(|ns| glob.matches(ns) && ws.scope.contains(ns))
        .cloned()
        .collect();
    if matched.is_empty() {
        desired.warnings.push(finding(
            "glob_matches_nothing",
            None,
            format!(
                "{what} `{}` matches no namespace inside the workspace's scope",
                glob.as_str()
            ),
        ));
    }
    desired.matched_namespaces.extend(matched.iter().cloned());
    matched
}

/// Expands a target list: exact names (which must exist) and globs matched
/// against the live namespaces inside the scope, minus the exclusions.
fn expand_targets(
    ws: &Workspace,
    live: &LiveState,
    patterns: &[crate::model::Located<NamespacePattern>],
    exclude: &[crate::model::Located<NamespacePattern>],
    owner: &str,
    desired: &mut Desired,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for pattern in patterns {
        match &pattern.value {
            NamespacePattern::Exact(name) => {
                if live.namespaces.contains(name) {
                    out.insert(name.clone());
                } else if live.terminating.contains(name) {
                    desired.warnings.push(terminating_warning(name));
                } else {
                    desired.errors.push(finding(
                        "missing_namespace",
                        Some(name),
                        format!("{owner} targets namespace `{name}`, which does not exist"),
                    ));
                }
            }
            glob @ NamespacePattern::Glob { .. } => {
                out.extend(expand_glob(ws, live, glob, &format!("{owner}:"), desired));
            }
        }
    }
    out.retain(|ns| !exclude.iter().any(|p| p.value.matches(ns)));
    out
}

/// Computes what the workspace wants, given resolved credentials and the live namespaces.
pub fn desired(
    ws: &Workspace,
    registries: &BTreeMap<String, ResolvedRegistry>,
    live: &LiveState,
) -> Desired {
    let mut desired = Desired::default();
    for secret in &ws.pull_secrets {
        let owner = format!("PullSecret/{}", secret.name);
        let targets = expand_targets(
            ws,
            live,
            &secret.namespaces,
            &secret.exclude_namespaces,
            &owner,
            &mut desired,
        );
        let mut entries = Vec::new();
        let mut public = Vec::new();
        for name in &secret.registries {
            if let Some(registry) = registries.get(&name.value) {
                for entry in &registry.entries {
                    entries.push(entry.clone());
                    public.push(registry.usernames_public);
                }
            }
        }
        for ns in targets {
            desired.secrets.insert(
                (ns.clone(), secret.name.clone()),
                DesiredSecret {
                    namespace: ns.clone(),
                    name: secret.name.clone(),
                    format: secret.format,
                    source: owner.clone(),
                    entries: entries.clone(),
                    usernames_public: public.clone(),
                },
            );
            for link in &secret.service_accounts {
                let purposes = desired
                    .links
                    .entry((ns.clone(), link.name.value.clone()))
                    .or_default()
                    .entry(secret.name.clone())
                    .or_default();
                purposes.pull |= link.pull;
                purposes.mount |= link.mount;
                purposes.if_missing = Some(
                    purposes
                        .if_missing
                        .map_or(link.if_missing, |m| m.max(link.if_missing)),
                );
                purposes.source.clone_from(&owner);
            }
        }
    }
    for grant in &ws.pull_grants {
        let owner = format!("PullGrant/{}", grant.name);
        let targets = expand_targets(ws, live, &grant.namespaces, &[], &owner, &mut desired);
        let mut subjects = Vec::new();
        for subject in &grant.to {
            match &subject.value {
                Subject::ServiceAccount { namespace, name } => {
                    subjects.push(RbacSubject::service_account(namespace, name));
                }
                Subject::Group(g) => subjects.push(RbacSubject::group(g)),
                Subject::User(u) => subjects.push(RbacSubject::user(u)),
                Subject::AllServiceAccountsIn(NamespacePattern::Exact(ns)) => {
                    subjects.push(RbacSubject::group(&format!("system:serviceaccounts:{ns}")));
                }
                Subject::AllServiceAccountsIn(glob) => {
                    let what = format!("{owner}: allServiceAccountsIn");
                    for ns in expand_glob(ws, live, glob, &what, &mut desired) {
                        subjects.push(RbacSubject::group(&format!("system:serviceaccounts:{ns}")));
                    }
                }
            }
        }
        let mut seen = BTreeSet::new();
        subjects.retain(|s| seen.insert(s.clone()));
        for ns in targets {
            let name = role_binding_name(&ws.name, &grant.name, &grant.role.value);
            desired.role_bindings.insert(
                (ns.clone(), name.clone()),
                DesiredRoleBinding {
                    namespace: ns,
                    name,
                    grant: grant.name.clone(),
                    role: grant.role.value.clone(),
                    subjects: subjects.clone(),
                },
            );
        }
    }
    desired
}

/// Plans the changes that make `live` match `desired`.
pub fn plan(
    ws: &Workspace,
    desired: &Desired,
    live: &LiveState,
    options: PlanOptions,
    key: &DigestKey,
) -> Plan {
    let mut changes = Vec::new();
    let mut errors = desired.errors.clone();
    let mut warnings = desired.warnings.clone();
    let mut blocked_secrets: BTreeSet<(String, String)> = BTreeSet::new();

    plan_secrets(
        ws,
        desired,
        live,
        options,
        key,
        &mut changes,
        &mut errors,
        &mut warnings,
        &mut blocked_secrets,
    );
    plan_links(
        ws,
        desired,
        live,
        &blocked_secrets,
        &mut changes,
        &mut errors,
        &mut warnings,
    );
    plan_role_bindings(
        ws,
        desired,
        live,
        options,
        &mut changes,
        &mut errors,
        &mut warnings,
    );

    // A namespace being deleted takes everything in it along and refuses
    // anything new: no change there is planned, and no conflict there blocks
    // the rest (its objects are not "no longer declared", its creates would be refused).
    if !live.terminating.is_empty() {
        let mut held: BTreeSet<String> = BTreeSet::new();
        changes.retain(|c| {
            let keep = !live.terminating.contains(&c.namespace);
            if !keep {
                held.insert(c.namespace.clone());
            }
            keep
        });
        errors.retain(|f| match &f.namespace {
            Some(ns) if live.terminating.contains(ns) => {
                held.insert(ns.clone());
                false
            }
            _ => true,
        });
        warnings.extend(held.iter().map(|ns| terminating_warning(ns)));
    }
    changes.sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
    errors.sort_by(|a, b| (&a.namespace, &a.message).cmp(&(&b.namespace, &b.message)));
    warnings.sort_by(|a, b| (&a.namespace, &a.message).cmp(&(&b.namespace, &b.message)));
    warnings.dedup();
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        workspace: ws.name.clone(),
        adopt: options.adopt,
        changes,
        errors,
        warnings,
        matched_namespaces: desired.matched_namespaces.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_secrets(
    ws: &Workspace,
    desired: &Desired,
    live: &LiveState,
    options: PlanOptions,
    key: &DigestKey,
    changes: &mut Vec<Change>,
    errors: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
    blocked: &mut BTreeSet<(String, String)>,
) {
    let cache = DigestCache::default();
    let live_by_key: BTreeMap<(&str, &str), &LiveSecret> = live
        .secrets
        .iter()
        .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
        .collect();
    for ((ns, name), want) in &desired.secrets {
        let Some(have) = live_by_key.get(&(ns.as_str(), name.as_str())) else {
            changes.push(Change {
                namespace: ns.clone(),
                kind: ObjectKind::Secret,
                name: name.clone(),
                action: Action::Create,
                source: Some(want.source.clone()),
                assumed: None,
                detail: Detail::Secret(secret_diff(want, None, key)),
            });
            continue;
        };
        let ownership = have.meta.ownership(&ws.name);
        let adopting = match &ownership {
            Ownership::Ours => false,
            Ownership::OtherWorkspace(other) => {
                blocked.insert((ns.clone(), name.clone()));
                errors.push(Finding {
                    assumed: Some(Assumed::of(&have.meta)),
                    ..finding(
                        "conflict",
                        Some(ns),
                        if other.is_empty() {
                            format!(
                                "Secret {ns}/{name} is labelled as pullwarden's but names no workspace; {} wants the same name (never adopted: fix its labels by hand)",
                                want.source
                            )
                        } else {
                            format!(
                                "Secret {ns}/{name} belongs to workspace `{other}`; {} wants the same name (never adopted across workspaces)",
                                want.source
                            )
                        },
                    )
                });
                continue;
            }
            Ownership::Unmanaged if have.is_openshift_owned() || !options.adopt => {
                blocked.insert((ns.clone(), name.clone()));
                let hint = if have.is_openshift_owned() {
                    " (it is OpenShift's own; rename the PullSecret)"
                } else {
                    "; rerun with --adopt to take it over"
                };
                errors.push(Finding {
                    assumed: Some(Assumed::of(&have.meta)),
                    ..finding(
                        "conflict",
                        Some(ns),
                        format!("Secret {ns}/{name} exists and is not managed by pullwarden{hint}"),
                    )
                });
                continue;
            }
            Ownership::Unmanaged => true,
        };
        let diff = secret_diff_cached(want, Some(have), key, &cache);
        let content_same = diff.previous_type.is_none()
            && !diff.unreadable_live_data
            && diff
                .entries
                .iter()
                .all(|e| e.status == EntryStatus::Unchanged);
        let action = if diff.previous_type.is_some() || (have.immutable && !content_same) {
            Action::Replace
        } else if adopting {
            Action::Adopt
        } else if content_same {
            continue;
        } else {
            Action::Update
        };
        changes.push(Change {
            namespace: ns.clone(),
            kind: ObjectKind::Secret,
            name: name.clone(),
            action,
            source: Some(want.source.clone()),
            assumed: Some(Assumed::of(&have.meta)),
            detail: Detail::Secret(diff),
        });
    }
    if !ws.prune {
        return;
    }
    for have in &live.secrets {
        let key = (have.meta.namespace.clone(), have.meta.name.clone());
        if have.meta.ownership(&ws.name) == Ownership::Ours && !desired.secrets.contains_key(&key) {
            // Service accounts that still name it through an entry this workspace
            // did not add (so will not unlink) lose it: say so.
            let still_used: Vec<String> = live
                .service_accounts
                .iter()
                .filter(|sa| sa.meta.namespace == key.0)
                .filter(|sa| {
                    let ours = link_records(&sa.meta).remove(&ws.name).unwrap_or_default();
                    (sa.image_pull_secrets.contains(&key.1) && !ours.pull.contains(&key.1))
                        || (sa.secrets.contains(&key.1) && !ours.mount.contains(&key.1))
                })
                .map(|sa| sa.meta.name.clone())
                .collect();
            if !still_used.is_empty() {
                warnings.push(finding(
                    "pruned_secret_still_referenced",
                    Some(&key.0),
                    format!(
                        "Secret {}/{} is pruned but ServiceAccount(s) {} still list it (entries pullwarden did not add)",
                        key.0,
                        key.1,
                        still_used.join(", ")
                    ),
                ));
            }
            changes.push(Change {
                namespace: key.0,
                kind: ObjectKind::Secret,
                name: key.1,
                action: Action::Delete,
                source: None,
                assumed: Some(Assumed::of(&have.meta)),
                detail: Detail::Pruned,
            });
        }
    }
}

/// Slow digests computed while planning against a snapshot, by (value, salt):
/// the same credential in thousands of namespaces is digested once.
type DigestCache = std::cell::RefCell<BTreeMap<(crate::secret::Digest, Vec<u8>, u32), String>>;

/// The salt and rounds of a snapshot Secret whose values are digests.
fn snapshot_digest_params(have: &LiveSecret) -> Option<(Vec<u8>, u32)> {
    if !have.from_snapshot_file {
        // On a live cluster the annotation means nothing: anyone who can edit
        // the Secret could otherwise make drift look like no change.
        return None;
    }
    let value = have
        .meta
        .annotations
        .get(crate::live::SNAPSHOT_DIGEST_ANNOTATION)?;
    let mut parts = value.split(';');
    if parts.next()? != "pbkdf2-sha256" {
        return None;
    }
    let iterations: u32 = parts.next()?.parse().ok()?;
    if !(1..=10_000_000).contains(&iterations) {
        return None;
    }
    let hex = parts.next()?;
    let salt = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((salt, iterations))
}

/// Whether a live value (plain, or a snapshot digest) equals a desired one.
fn same_value(
    live: &SecretString,
    want: &SecretString,
    key: &DigestKey,
    params: Option<&(Vec<u8>, u32)>,
    cache: &DigestCache,
) -> bool {
    match params {
        None => live.digest(key) == want.digest(key),
        Some((salt, iterations)) => {
            let Some(stored) = live.expose().strip_prefix(crate::live::DIGEST_VALUE_PREFIX) else {
                return false;
            };
            let mut cache = cache.borrow_mut();
            let computed = cache
                .entry((want.digest(key), salt.clone(), *iterations))
                .or_insert_with(|| crate::secret::slow_digest(want, salt, *iterations));
            computed == stored
        }
    }
}

fn secret_diff(want: &DesiredSecret, have: Option<&LiveSecret>, key: &DigestKey) -> SecretDiff {
    secret_diff_cached(want, have, key, &DigestCache::default())
}

fn secret_diff_cached(
    want: &DesiredSecret,
    have: Option<&LiveSecret>,
    key: &DigestKey,
    cache: &DigestCache,
) -> SecretDiff {
    let params = have.and_then(snapshot_digest_params);
    let secret_type = want.format.secret_type().to_string();
    let mut diff = SecretDiff {
        secret_type: secret_type.clone(),
        previous_type: None,
        entries: Vec::new(),
        unreadable_live_data: false,
        immutable: have.is_some_and(|h| h.immutable),
    };
    let live_entries: Vec<Entry> = match have {
        None => Vec::new(),
        Some(have) => {
            if have.type_ != secret_type {
                diff.previous_type = Some(have.type_.clone());
            }
            let format = if have.type_ == "kubernetes.io/dockercfg" {
                ConfigFormat::Dockercfg
            } else {
                ConfigFormat::ConfigJson
            };
            let data_key = if format == ConfigFormat::Dockercfg {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            if let Some(Ok(entries)) = have
                .data
                .get(data_key)
                .map(|d| dockerconfig::parse(d.expose(), format))
            {
                entries
            } else {
                diff.unreadable_live_data = true;
                Vec::new()
            }
        }
    };
    let live_map: BTreeMap<&str, &Entry> = live_entries
        .iter()
        .map(|e| (e.server.as_str(), e))
        .collect();
    let mut seen = BTreeSet::new();
    for (entry, public) in want.entries.iter().zip(&want.usernames_public) {
        seen.insert(entry.server.as_str());
        let username = public.then(|| entry.username.expose().to_string());
        let diff_entry = match live_map.get(entry.server.as_str()) {
            None => EntryDiff {
                server: entry.server.clone(),
                status: EntryStatus::Added,
                username,
                username_sensitive: !public,
                username_changed: true,
                password_changed: true,
                email_changed: entry.email.is_some(),
            },
            Some(old) => {
                let username_changed =
                    !same_value(&old.username, &entry.username, key, params.as_ref(), cache);
                let password_changed =
                    !same_value(&old.password, &entry.password, key, params.as_ref(), cache);
                let email_changed = old.email != entry.email;
                EntryDiff {
                    server: entry.server.clone(),
                    status: if username_changed || password_changed || email_changed {
                        EntryStatus::Changed
                    } else {
                        EntryStatus::Unchanged
                    },
                    username,
                    username_sensitive: !public,
                    username_changed,
                    password_changed,
                    email_changed,
                }
            }
        };
        diff.entries.push(diff_entry);
    }
    for old in &live_entries {
        if !seen.contains(old.server.as_str()) {
            diff.entries.push(EntryDiff {
                server: old.server.clone(),
                status: EntryStatus::Removed,
                username: None,
                username_sensitive: true,
                username_changed: true,
                password_changed: true,
                email_changed: old.email.is_some(),
            });
        }
    }
    diff
}

fn plan_links(
    ws: &Workspace,
    desired: &Desired,
    live: &LiveState,
    blocked: &BTreeSet<(String, String)>,
    changes: &mut Vec<Change>,
    errors: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) {
    let live_sas: BTreeMap<(&str, &str), &LiveServiceAccount> = live
        .service_accounts
        .iter()
        .map(|sa| ((sa.meta.namespace.as_str(), sa.meta.name.as_str()), sa))
        .collect();
    // Every SA that is wanted or carries a record of ours.
    let mut keys: BTreeSet<(String, String)> = desired.links.keys().cloned().collect();
    for sa in &live.service_accounts {
        if link_records(&sa.meta).contains_key(&ws.name) {
            keys.insert((sa.meta.namespace.clone(), sa.meta.name.clone()));
        }
    }
    let empty = BTreeMap::new();
    for (ns, sa_name) in keys {
        let wanted = desired
            .links
            .get(&(ns.clone(), sa_name.clone()))
            .unwrap_or(&empty);
        let wanted: BTreeMap<&String, &Purposes> = wanted
            .iter()
            .filter(|(secret, _)| !blocked.contains(&(ns.clone(), (*secret).clone())))
            .collect();
        let Some(sa) = live_sas.get(&(ns.as_str(), sa_name.as_str())) else {
            if wanted.is_empty() {
                continue;
            }
            let if_missing = wanted
                .values()
                .filter_map(|p| p.if_missing)
                // The most permissive wins: one document asking to create it is enough.
                .max()
                .unwrap_or(IfMissing::Error);
            let sources: BTreeSet<&str> = wanted.values().map(|p| p.source.as_str()).collect();
            let sources = sources.into_iter().collect::<Vec<_>>().join(", ");
            match if_missing {
                IfMissing::Error => errors.push(finding(
                    "missing_service_account",
                    Some(&ns),
                    format!(
                        "ServiceAccount {ns}/{sa_name} does not exist ({sources} links it; set `ifMissing: skip` or `create` to allow this)"
                    ),
                )),
                IfMissing::Skip => warnings.push(finding(
                    "skipped_service_account",
                    Some(&ns),
                    format!("ServiceAccount {ns}/{sa_name} does not exist; {sources} skips it"),
                )),
                IfMissing::Create => {
                    changes.push(Change {
                        namespace: ns.clone(),
                        kind: ObjectKind::ServiceAccount,
                        name: sa_name.clone(),
                        action: Action::Create,
                        source: Some(sources.clone()),
                        assumed: None,
                        detail: Detail::ServiceAccount,
                    });
                    let mut links = LinkDiff::default();
                    for (secret, p) in &wanted {
                        if p.pull {
                            links.pull_added.push((*secret).clone());
                            links.record.pull.insert((*secret).clone());
                        }
                        if p.mount {
                            links.mount_added.push((*secret).clone());
                            links.record.mount.insert((*secret).clone());
                        }
                    }
                    changes.push(Change {
                        namespace: ns.clone(),
                        kind: ObjectKind::ServiceAccount,
                        name: sa_name.clone(),
                        action: Action::Link,
                        source: Some(sources),
                        assumed: None,
                        detail: Detail::Links(links),
                    });
                }
            }
            continue;
        };
        if sa
            .meta
            .annotations
            .get(LINKS_ANNOTATION)
            .is_some_and(|text| serde_json::from_str::<BTreeMap<String, LinkRecord>>(text).is_err())
        {
            // Never overwrite what cannot be read: it holds other workspaces' records too.
            errors.push(finding(
                "broken_links_annotation",
                Some(&ns),
                format!(
                    "ServiceAccount {ns}/{sa_name}: the annotation {LINKS_ANNOTATION} is not pullwarden's JSON; fix or remove it by hand"
                ),
            ));
            continue;
        }
        let old_record = link_records(&sa.meta).remove(&ws.name).unwrap_or_default();
        let want_pull: BTreeSet<String> = wanted
            .iter()
            .filter(|(_, p)| p.pull)
            .map(|(s, _)| (*s).clone())
            .collect();
        let want_mount: BTreeSet<String> = wanted
            .iter()
            .filter(|(_, p)| p.mount)
            .map(|(s, _)| (*s).clone())
            .collect();
        let (pull_added, pull_removed, pull_record) = relink(
            &sa.image_pull_secrets,
            &old_record.pull,
            &want_pull,
            ws.prune,
        );
        let (mount_added, mount_removed, mount_record) =
            relink(&sa.secrets, &old_record.mount, &want_mount, ws.prune);
        let record = LinkRecord {
            pull: pull_record,
            mount: mount_record,
        };
        if pull_added.is_empty()
            && pull_removed.is_empty()
            && mount_added.is_empty()
            && mount_removed.is_empty()
        {
            // Nothing to link or unlink: a stale record is tidied with the next real change.
            continue;
        }
        let sources: BTreeSet<&str> = wanted.values().map(|p| p.source.as_str()).collect();
        changes.push(Change {
            namespace: ns.clone(),
            kind: ObjectKind::ServiceAccount,
            name: sa_name.clone(),
            action: Action::Link,
            source: (!sources.is_empty())
                .then(|| sources.into_iter().collect::<Vec<_>>().join(", ")),
            assumed: Some(Assumed::of(&sa.meta)),
            detail: Detail::Links(LinkDiff {
                pull_added,
                pull_removed,
                mount_added,
                mount_removed,
                record,
            }),
        });
    }
}

/// One list of a ServiceAccount: what to add, what to remove, and the new record.
/// Entries present but not recorded were there before pullwarden: never
/// recorded, never removed.
fn relink(
    current: &[String],
    recorded: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
    prune: bool,
) -> (Vec<String>, Vec<String>, BTreeSet<String>) {
    let present: BTreeSet<&String> = current.iter().collect();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut record = BTreeSet::new();
    for name in wanted {
        if !present.contains(name) {
            added.push(name.clone());
            record.insert(name.clone());
        } else if recorded.contains(name) {
            record.insert(name.clone());
        }
    }
    for name in recorded {
        if wanted.contains(name) {
            continue;
        }
        if !prune {
            if present.contains(name) {
                record.insert(name.clone());
            }
            continue;
        }
        if present.contains(name) {
            removed.push(name.clone());
        }
    }
    (added, removed, record)
}

fn plan_role_bindings(
    ws: &Workspace,
    desired: &Desired,
    live: &LiveState,
    options: PlanOptions,
    changes: &mut Vec<Change>,
    errors: &mut Vec<Finding>,
    warnings: &mut Vec<Finding>,
) {
    let by_ns: BTreeMap<&str, Vec<&LiveRoleBinding>> =
        live.role_bindings
            .iter()
            .fold(BTreeMap::new(), |mut m, rb| {
                m.entry(rb.meta.namespace.as_str()).or_default().push(rb);
                m
            });
    let no_bindings = Vec::new();
    let mut kept: BTreeSet<(String, String)> = BTreeSet::new();
    for ((ns, name), want) in &desired.role_bindings {
        let bindings = by_ns.get(ns.as_str()).unwrap_or(&no_bindings);
        // Subjects that a binding not of this workspace already grants the role to.
        // A binding with our name is not one of those: it is in the way (a
        // conflict, or adopted and rewritten), so it cannot vouch for a subject.
        let mut subjects = Vec::new();
        for subject in &want.subjects {
            let satisfied_by = bindings.iter().find(|rb| {
                // Only an unmanaged binding vouches: another workspace may drop it.
                rb.meta.ownership(&ws.name) == Ownership::Unmanaged
                    && rb.meta.name != *name
                    && rb.role_ref.kind == "ClusterRole"
                    && rb.role_ref.name == want.role
                    && rb.subjects.contains(subject)
            });
            match satisfied_by {
                Some(rb) => warnings.push(finding(
                    "already_satisfied",
                    Some(ns),
                    format!(
                        "PullGrant/{}: RoleBinding {ns}/{} already grants {} to {}",
                        want.grant,
                        rb.meta.name,
                        want.role,
                        subject.display()
                    ),
                )),
                None => subjects.push(subject.clone()),
            }
        }
        if subjects.is_empty() {
            continue;
        }
        let source = Some(format!("PullGrant/{}", want.grant));
        let existing = bindings.iter().find(|rb| rb.meta.name == *name);
        match existing {
            Some(rb) if options.adopt && rb.meta.ownership(&ws.name) == Ownership::Unmanaged => {
                kept.insert((ns.clone(), name.clone()));
                let have: BTreeSet<&RbacSubject> = rb.subjects.iter().collect();
                let wanted: BTreeSet<&RbacSubject> = subjects.iter().collect();
                changes.push(Change {
                    namespace: ns.clone(),
                    kind: ObjectKind::RoleBinding,
                    name: name.clone(),
                    action: Action::Adopt,
                    source,
                    assumed: Some(Assumed::of(&rb.meta)),
                    detail: Detail::RoleBinding(RoleBindingDiff {
                        role: want.role.clone(),
                        subjects_added: wanted.difference(&have).map(|s| (*s).clone()).collect(),
                        subjects_removed: have.difference(&wanted).map(|s| (*s).clone()).collect(),
                        subjects,
                        replaces: None,
                    }),
                });
            }
            Some(rb) if rb.meta.ownership(&ws.name) != Ownership::Ours => {
                errors.push(Finding {
                    assumed: Some(Assumed::of(&rb.meta)),
                    ..finding(
                        "conflict",
                        Some(ns),
                        format!(
                            "RoleBinding {ns}/{name} exists and is not this workspace's{}",
                            if rb.meta.ownership(&ws.name) == Ownership::Unmanaged {
                                "; rerun with --adopt to take it over"
                            } else {
                                ""
                            }
                        ),
                    )
                });
            }
            Some(rb) => {
                kept.insert((ns.clone(), name.clone()));
                let have: BTreeSet<&RbacSubject> = rb.subjects.iter().collect();
                let wanted: BTreeSet<&RbacSubject> = subjects.iter().collect();
                if have == wanted && rb.role_ref.name == want.role {
                    continue;
                }
                changes.push(Change {
                    namespace: ns.clone(),
                    kind: ObjectKind::RoleBinding,
                    name: name.clone(),
                    action: Action::Update,
                    source,
                    assumed: Some(Assumed::of(&rb.meta)),
                    detail: Detail::RoleBinding(RoleBindingDiff {
                        role: want.role.clone(),
                        subjects_added: wanted.difference(&have).map(|s| (*s).clone()).collect(),
                        subjects_removed: have.difference(&wanted).map(|s| (*s).clone()).collect(),
                        subjects,
                        replaces: None,
                    }),
                });
            }
            None => {
                // The same grant bound under another role: replace it, new binding first.
                let previous = bindings.iter().find(|rb| {
                    rb.meta.ownership(&ws.name) == Ownership::Ours
                        && rb.meta.name != *name
                        && rb.meta.annotations.get(crate::live::SOURCE_ANNOTATION)
                            == Some(&format!("PullGrant/{}", want.grant))
                });
                if let Some(old) = previous {
                    kept.insert((ns.clone(), old.meta.name.clone()));
                }
                changes.push(Change {
                    namespace: ns.clone(),
                    kind: ObjectKind::RoleBinding,
                    name: name.clone(),
                    action: if previous.is_some() {
                        Action::Replace
                    } else {
                        Action::Create
                    },
                    source,
                    assumed: None,
                    detail: Detail::RoleBinding(RoleBindingDiff {
                        role: want.role.clone(),
                        subjects_added: subjects.clone(),
                        subjects_removed: Vec::new(),
                        subjects,
                        replaces: previous.map(|old| Replaced {
                            name: old.meta.name.clone(),
                            role: old.role_ref.name.clone(),
                            assumed: Assumed::of(&old.meta),
                        }),
                    }),
                });
            }
        }
    }
    // The old-role binding left by an interrupted replace (the new one exists,
    // the old one was not deleted yet): finish the replace, prune or not.
    for rb in &live.role_bindings {
        let key = (rb.meta.namespace.clone(), rb.meta.name.clone());
        if rb.meta.ownership(&ws.name) != Ownership::Ours || kept.contains(&key) {
            continue;
        }
        let Some(grant) = rb
            .meta
            .annotations
            .get(crate::live::SOURCE_ANNOTATION)
            .and_then(|s| s.strip_prefix("PullGrant/"))
        else {
            continue;
        };
        let replaced = desired
            .role_bindings
            .iter()
            .any(|((ns, name), want)| *ns == key.0 && *name != key.1 && want.grant == grant);
        if replaced {
            kept.insert(key.clone());
            changes.push(Change {
                namespace: key.0,
                kind: ObjectKind::RoleBinding,
                name: key.1,
                action: Action::Delete,
                source: Some(format!("PullGrant/{grant}")),
                assumed: Some(Assumed::of(&rb.meta)),
                detail: Detail::Pruned,
            });
        }
    }
    if !ws.prune {
        return;
    }
    for rb in &live.role_bindings {
        let key = (rb.meta.namespace.clone(), rb.meta.name.clone());
        if rb.meta.ownership(&ws.name) == Ownership::Ours && !kept.contains(&key) {
            changes.push(Change {
                namespace: key.0,
                kind: ObjectKind::RoleBinding,
                name: key.1,
                action: Action::Delete,
                source: None,
                assumed: Some(Assumed::of(&rb.meta)),
                detail: Detail::Pruned,
            });
        }
    }
}
