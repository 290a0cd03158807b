//! `pullwarden import`: a starting workspace written from a live cluster.
//!
//! Existing docker-config pull secrets, their ServiceAccount links and the
//! image-puller/-pusher/-builder RoleBindings become `Registry`, `PullSecret`
//! and `PullGrant` documents. Credentials become `{fromEnv: VAR}` placeholders
//! and are never written out. OpenShift's own objects (its `<sa>-dockercfg-*`
//! secrets and `system:*` bindings) and other workspaces' objects are left
//! out. What cannot be expressed (one Secret name with different contents or
//! links in different namespaces) is skipped and said so.
//!
//! Planning the result (with the variables set) shows adoptions of the
//! secrets, and the grants as already satisfied by the existing bindings.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerconfig::{self, ConfigFormat, Entry};
use crate::live::{LiveSecret, LiveState, Ownership, RbacSubject};
use crate::names::NamespacePattern;
use crate::secret::{Digest, DigestKey};

/// The image roles whose bindings become grants.
pub const IMAGE_ROLES: [&str; 3] = [
    "system:image-puller",
    "system:image-pusher",
    "system:image-builder",
];

/// What import found: a workspace as domain values (the spec crate writes it
/// as YAML: `pullwarden_spec::emit`), the variables it reads, and what was
/// left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub workspace: ImportedWorkspace,
    /// Environment variables the workspace reads, with what each must hold.
    pub variables: Vec<(String, String)>,
    /// What was left out, and why.
    pub skipped: Vec<String>,
}

/// A starting workspace. Every text in it that came from the cluster is as
/// the cluster had it: the writer escapes it for YAML and comments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportedWorkspace {
    pub name: String,
    /// The namespaces in scope, exactly; `["*"]` when nothing was imported.
    pub include: Vec<String>,
    pub prune: bool,
    pub registries: Vec<ImportedRegistry>,
    pub pull_secrets: Vec<ImportedPullSecret>,
    pub grants: Vec<ImportedGrant>,
}

/// A Registry whose username and password come from environment variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedRegistry {
    pub name: String,
    pub server: String,
    pub username_variable: String,
    pub password_variable: String,
    pub email: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedPullSecret {
    pub name: String,
    /// Where it was found, for a comment.
    pub found_in: Vec<String>,
    pub format: crate::model::SecretFormat,
    pub registries: Vec<String>,
    pub namespaces: Vec<String>,
    /// Service accounts linked, with (pull, mount); `ifMissing: skip`.
    pub service_accounts: Vec<(String, bool, bool)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedGrant {
    pub name: String,
    /// The binding it was found as, for a comment.
    pub found_as: String,
    pub role: String,
    pub namespaces: Vec<String>,
    pub to: Vec<ImportedSubject>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportedSubject {
    ServiceAccount { namespace: String, name: String },
    AllServiceAccountsIn(String),
    Group(String),
    User(String),
}

/// A registry credential, identified without its values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CredentialKey {
    server: String,
    username: Digest,
    password: Digest,
    email: Option<String>,
}

/// Secrets of one name group by (type, credentials, pull links, mount links).
type GroupKey = (String, Vec<CredentialKey>, Vec<String>, Vec<String>);

struct Candidate<'a> {
    secret: &'a LiveSecret,
    format: ConfigFormat,
    entries: Vec<Entry>,
    pull: BTreeSet<String>,
    mount: BTreeSet<String>,
}

/// Text safe inside a `#` comment (of YAML or of the shell-sourced
/// `credentials.env.example`) or a message: no line breaks or control characters.
fn plain(text: &str) -> String {
    crate::escape::text(text)
}

/// A DNS-subdomain-safe name from arbitrary text.
fn sanitize(text: &str) -> String {
    let mut out: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    if out.is_empty() {
        "imported".into()
    } else {
        out
    }
}

/// The stem of a Registry's variables (`PW_QUAY_IO`), unique among
/// `taken`: registries `quay.io` and `quay-io` must not share a credential.
fn env_stem(registry: &str, taken: &mut BTreeSet<String>) -> String {
    let base: String = registry
        .to_ascii_uppercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    unique_with(format!("PW_{base}"), '_', taken)
}

/// `name`, or `name-2`, `name-3`, ...: the first not in `taken` (now taken).
fn unique(name: String, taken: &mut BTreeSet<String>) -> String {
    unique_with(name, '-', taken)
}

fn unique_with(name: String, separator: char, taken: &mut BTreeSet<String>) -> String {
    if taken.insert(name.clone()) {
        return name;
    }
    let mut n = 2;
    loop {
        let candidate = format!("{name}{separator}{n}");
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

/// Builds a workspace named `workspace` from `live`, limited to namespaces
/// matching `namespaces` (every namespace when empty).
pub fn import(
    live: &LiveState,
    workspace: &str,
    namespaces: &[NamespacePattern],
    key: &DigestKey,
) -> Imported {
    let mut out = Imported::default();
    let in_scope = |ns: &str| namespaces.is_empty() || namespaces.iter().any(|p| p.matches(ns));

    // 1. Docker-config secrets that are nobody else's.
    let mut by_name: BTreeMap<&str, Vec<Candidate<'_>>> = BTreeMap::new();
    for secret in &live.secrets {
        let meta = &secret.meta;
        if !in_scope(&meta.namespace) {
            continue;
        }
        let (format, data_key) = match secret.type_.as_str() {
            "kubernetes.io/dockerconfigjson" => (ConfigFormat::ConfigJson, ".dockerconfigjson"),
            "kubernetes.io/dockercfg" => (ConfigFormat::Dockercfg, ".dockercfg"),
            _ => continue,
        };
        let what = format!("Secret {}/{}", meta.namespace, meta.name);
        if secret.is_openshift_owned() {
            continue;
        }
        if let Ownership::OtherWorkspace(other) = meta.ownership(workspace) {
            out.skipped
                .push(plain(&format!("{what}: managed by workspace `{other}`")));
            continue;
        }
        let Some(Ok(entries)) = secret
            .data
            .get(data_key)
            .map(|d| dockerconfig::parse(d.expose(), format))
        else {
            out.skipped.push(plain(&format!(
                "{what}: its data is not a usable docker config"
            )));
            continue;
        };
        let (mut pull, mut mount) = (BTreeSet::new(), BTreeSet::new());
        for sa in &live.service_accounts {
            if sa.meta.namespace != meta.namespace {
                continue;
            }
            if sa.image_pull_secrets.contains(&meta.name) {
                pull.insert(sa.meta.name.clone());
            }
            if sa.secrets.contains(&meta.name) {
                mount.insert(sa.meta.name.clone());
            }
        }
        by_name
            .entry(meta.name.as_str())
            .or_default()
            .push(Candidate {
                secret,
                format,
                entries,
                pull,
                mount,
            });
    }

    // 2. Registries, one per distinct credential.
    let mut registry_of: BTreeMap<CredentialKey, String> = BTreeMap::new();
    let mut registry_names = BTreeSet::new();
    let mut variable_stems = BTreeSet::new();
    let credential = |entry: &Entry| CredentialKey {
        server: entry.server.clone(),
        username: entry.username.digest(key),
        password: entry.password.digest(key),
        email: entry.email.clone(),
    };

    // 3. One PullSecret per name: the largest group of namespaces with the same
    //    content and the same links; the others are skipped.
    let mut targets: BTreeSet<String> = BTreeSet::new();
    for (name, candidates) in &by_name {
        let mut groups: BTreeMap<GroupKey, Vec<&Candidate<'_>>> = BTreeMap::new();
        for c in candidates {
            let mut creds: Vec<CredentialKey> = c.entries.iter().map(credential).collect();
            creds.sort();
            groups
                .entry((
                    c.secret.type_.clone(),
                    creds,
                    c.pull.iter().cloned().collect(),
                    c.mount.iter().cloned().collect(),
                ))
                .or_default()
                .push(c);
        }
        let Some(chosen_key) = groups
            .iter()
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))
            .map(|(k, _)| k.clone())
        else {
            continue;
        };
        let chosen = &groups[&chosen_key];
        let (_, _, pull, mount) = &chosen_key;
        for (other_key, others) in &groups {
            if *other_key == chosen_key {
                continue;
            }
            for c in others {
                out.skipped.push(plain(&format!(
                    "Secret {}/{}: same name as in {} but other content or links; a PullSecret has one of each",
                    c.secret.meta.namespace, name, chosen[0].secret.meta.namespace
                )));
            }
        }
        let first = chosen[0];
        let mut registry_list = Vec::new();
        for entry in &first.entries {
            let cred = credential(entry);
            let registry = registry_of.entry(cred).or_insert_with(|| {
                let registry = unique(sanitize(&entry.server), &mut registry_names);
                let stem = env_stem(&registry, &mut variable_stems);
                let user_var = format!("{stem}_USERNAME");
                let pass_var = format!("{stem}_PASSWORD");
                // Every value from the cluster lands in comments and messages
                // only through `plain`: `credentials.env.example` is sourced by a shell.
                let source = plain(&format!("{}/{}", first.secret.meta.namespace, name));
                let server = plain(&entry.server);
                out.variables.push((
                    user_var.clone(),
                    format!("the username for {server} (as in Secret {source})"),
                ));
                out.variables.push((
                    pass_var.clone(),
                    format!("the password for {server} (as in Secret {source})"),
                ));
                out.workspace.registries.push(ImportedRegistry {
                    name: registry.clone(),
                    server: entry.server.clone(),
                    username_variable: user_var,
                    password_variable: pass_var,
                    email: entry.email.clone(),
                });
                registry
            });
            registry_list.push(registry.clone());
        }
        let namespaces: Vec<String> = chosen
            .iter()
            .map(|c| c.secret.meta.namespace.clone())
            .collect();
        targets.extend(namespaces.iter().cloned());
        let accounts: BTreeSet<&String> = pull.iter().chain(mount.iter()).collect();
        out.workspace.pull_secrets.push(ImportedPullSecret {
            name: (*name).to_string(),
            found_in: namespaces.clone(),
            format: if first.format == ConfigFormat::Dockercfg {
                crate::model::SecretFormat::Dockercfg
            } else {
                crate::model::SecretFormat::DockerConfigJson
            },
            registries: registry_list,
            namespaces,
            service_accounts: accounts
                .into_iter()
                .map(|sa| (sa.clone(), pull.contains(sa), mount.contains(sa)))
                .collect(),
        });
    }

    // 4. Grants from the image-role bindings that are not OpenShift's.
    let mut grants: BTreeMap<(String, Vec<RbacSubject>), (String, Vec<String>)> = BTreeMap::new();
    for rb in &live.role_bindings {
        let meta = &rb.meta;
        if !in_scope(&meta.namespace)
            || rb.role_ref.kind != "ClusterRole"
            || !IMAGE_ROLES.contains(&rb.role_ref.name.as_str())
            || meta.name.starts_with("system:")
        {
            continue;
        }
        if meta.ownership(workspace) != Ownership::Unmanaged {
            out.skipped.push(plain(&format!(
                "RoleBinding {}/{}: already managed by pullwarden",
                meta.namespace, meta.name
            )));
            continue;
        }
        let mut subjects = rb.subjects.clone();
        subjects.sort();
        let entry = grants
            .entry((rb.role_ref.name.clone(), subjects))
            .or_insert_with(|| (meta.name.clone(), Vec::new()));
        entry.1.push(meta.namespace.clone());
    }
    let mut grant_names = BTreeSet::new();
    for ((role, subjects), (first_name, namespaces)) in &grants {
        let mut to = Vec::new();
        for s in subjects {
            let subject = match (s.kind.as_str(), &s.namespace) {
                ("ServiceAccount", Some(ns)) => ImportedSubject::ServiceAccount {
                    namespace: ns.clone(),
                    name: s.name.clone(),
                },
                ("Group", _) => match s.name.strip_prefix("system:serviceaccounts:") {
                    Some(ns) if !ns.is_empty() => {
                        ImportedSubject::AllServiceAccountsIn(ns.to_string())
                    }
                    _ => ImportedSubject::Group(s.name.clone()),
                },
                ("User", _) => ImportedSubject::User(s.name.clone()),
                _ => {
                    out.skipped.push(plain(&format!(
                        "RoleBinding {}/{first_name}: subject {} cannot be expressed",
                        namespaces[0],
                        s.display()
                    )));
                    continue;
                }
            };
            to.push(subject);
        }
        if to.is_empty() {
            continue;
        }
        targets.extend(namespaces.iter().cloned());
        out.workspace.grants.push(ImportedGrant {
            name: unique(sanitize(first_name), &mut grant_names),
            found_as: first_name.clone(),
            role: role.clone(),
            namespaces: namespaces.clone(),
            to,
        });
    }

    out.workspace.name = workspace.to_string();
    out.workspace.prune = true;
    out.workspace.include = if targets.is_empty() {
        vec!["*".to_string()]
    } else {
        targets.into_iter().collect()
    };
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::live::{LiveRoleBinding, LiveServiceAccount, Meta, RoleRef};
    use crate::secret::SecretString;

    fn meta(ns: &str, name: &str) -> Meta {
        Meta {
            namespace: ns.into(),
            name: name.into(),
            ..Meta::default()
        }
    }

    fn docker_secret(ns: &str, name: &str, password: &str) -> LiveSecret {
        let json =
            format!(r#"{{"auths":{{"quay.io":{{"username":"robot","password":"{password}"}}}}}}"#);
        LiveSecret {
            meta: meta(ns, name),
            from_snapshot_file: false,
            type_: "kubernetes.io/dockerconfigjson".into(),
            immutable: false,
            data: BTreeMap::from([(".dockerconfigjson".to_string(), SecretString::new(json))]),
        }
    }

    /// #16.1: a registry key chosen by whoever can create a Secret is kept
    /// as data (the writer escapes it; `pullwarden-spec`'s `tests/emit.rs`
    /// proves no line of any written file can be forged); the messages and
    /// variable descriptions hold no control character; `quay.io` and
    /// `quay-io` must not share variables.
    #[test]
    fn hostile_registry_keys_stay_data_and_never_share_a_credential() {
        let secret = |ns: &str, name: &str, server: &str| {
            let json = serde_json::json!({"auths": {server: {"username": "u", "password": "p"}}})
                .to_string();
            LiveSecret {
                meta: meta(ns, name),
                from_snapshot_file: false,
                type_: "kubernetes.io/dockerconfigjson".into(),
                immutable: false,
                data: BTreeMap::from([(".dockerconfigjson".to_string(), SecretString::new(json))]),
            }
        };
        let mut live = LiveState::default();
        live.secrets.push(secret(
            "a",
            "team-pull",
            "registry.example.com\ntouch /tmp/PWNED #",
        ));
        live.secrets.push(secret("b", "dots", "quay.io"));
        live.secrets.push(secret("c", "dashes", "quay-io"));
        live.secrets
            .push(secret("d", "sep", "r.example\u{2028}id\r$(id)"));
        let imported = import(&live, "ws", &[], &DigestKey::from_bytes([1; 32]));
        let vars: Vec<&String> = imported.variables.iter().map(|(v, _)| v).collect();
        let distinct: BTreeSet<&String> = vars.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            vars.len(),
            "no two registries share a variable: {vars:?}"
        );
        assert_eq!(vars.len(), 8);
        for (var, what) in &imported.variables {
            assert!(
                var.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{var}"
            );
            assert!(!crate::escape::needs_escaping(what), "{what:?}");
        }
        let servers: BTreeSet<&str> = imported
            .workspace
            .registries
            .iter()
            .map(|r| r.server.as_str())
            .collect();
        assert!(
            servers.contains("registry.example.com\ntouch /tmp/PWNED #"),
            "kept as data"
        );
        for registry in &imported.workspace.registries {
            assert!(
                registry
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "a registry's name is a DNS name: {:?}",
                registry.name
            );
        }
    }

    #[test]
    fn writes_placeholders_leaves_openshift_out_and_cannot_be_injected() {
        let mut live = LiveState::default();
        live.secrets
            .push(docker_secret("a", "regcred", "PW-CANARY-1"));
        live.secrets
            .push(docker_secret("b", "regcred", "PW-CANARY-1"));
        live.secrets
            .push(docker_secret("c", "regcred", "PW-CANARY-2"));
        live.secrets
            .push(docker_secret("a", "default-dockercfg-x7k2p", "PW-CANARY-3"));
        live.service_accounts.push(LiveServiceAccount {
            meta: meta("a", "default"),
            image_pull_secrets: vec!["regcred".into(), "default-dockercfg-x7k2p".into()],
            secrets: Vec::new(),
        });
        live.service_accounts.push(LiveServiceAccount {
            meta: meta("b", "default"),
            image_pull_secrets: vec!["regcred".into()],
            secrets: Vec::new(),
        });
        live.role_bindings.push(LiveRoleBinding {
            meta: meta("b", "evil\napiVersion: x"),
            role_ref: RoleRef {
                kind: "ClusterRole".into(),
                name: "system:image-puller".into(),
            },
            subjects: vec![RbacSubject::group("system:serviceaccounts:a")],
        });
        live.role_bindings.push(LiveRoleBinding {
            meta: meta("b", "system:image-pullers"),
            role_ref: RoleRef {
                kind: "ClusterRole".into(),
                name: "system:image-puller".into(),
            },
            subjects: vec![RbacSubject::group("system:serviceaccounts:b")],
        });
        let imported = import(&live, "ws", &[], &DigestKey::from_bytes([1; 32]));
        let all = format!("{imported:?}");
        assert!(!all.contains("PW-CANARY"), "{all}");
        assert!(
            !all.contains("dockercfg-x7k2p"),
            "OpenShift's secret left out: {all}"
        );
        assert!(
            !all.contains("system:image-pullers"),
            "OpenShift's binding left out"
        );
        let ws = &imported.workspace;
        assert_eq!(ws.registries.len(), 1);
        assert_eq!(ws.registries[0].password_variable, "PW_QUAY_IO_PASSWORD");
        // a and b share content and links: one PullSecret; c differs: skipped.
        assert_eq!(ws.pull_secrets.len(), 1);
        assert_eq!(ws.pull_secrets[0].namespaces, ["a", "b"]);
        assert_eq!(imported.skipped.len(), 1, "{:?}", imported.skipped);
        assert!(imported.skipped[0].contains("c/regcred"));
        // The binding name's line break stays data; the grant's own name is a DNS name.
        assert_eq!(ws.grants.len(), 1);
        assert_eq!(ws.grants[0].found_as, "evil\napiVersion: x");
        assert!(
            ws.grants[0]
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{:?}",
            ws.grants[0].name
        );
        assert_eq!(
            ws.grants[0].to,
            [ImportedSubject::AllServiceAccountsIn("a".into())]
        );
        assert_eq!(imported.variables.len(), 2);
    }
}
