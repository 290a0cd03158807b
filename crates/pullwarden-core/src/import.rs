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
use std::fmt::Write as _;

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

#[derive(Clone, Debug, Default)]
pub struct Imported {
    /// File name -> YAML text.
    pub files: BTreeMap<String, String>,
    /// Environment variables the workspace reads, with what each must hold.
    pub variables: Vec<(String, String)>,
    /// What was left out, and why.
    pub skipped: Vec<String>,
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

/// A YAML double-quoted scalar holding `text` exactly: JSON's escapes, and
/// `\\uXXXX` for what JSON leaves raw but a terminal or editor would act on.
fn yaml_string(text: &str) -> String {
    let json = serde_json::to_string(text).expect("strings serialize");
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if crate::escape::is_unsafe(c) {
            let _ = write!(out, "\\u{:04X}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
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
    let stem = format!("PW_{base}");
    if taken.insert(stem.clone()) {
        return stem;
    }
    let mut n = 2;
    loop {
        let candidate = format!("{stem}_{n}");
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

fn unique(name: String, taken: &mut BTreeSet<String>) -> String {
    if taken.insert(name.clone()) {
        return name;
    }
    let mut n = 2;
    loop {
        let candidate = format!("{name}-{n}");
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
    let mut registries_yaml = String::new();
    let credential = |entry: &Entry| CredentialKey {
        server: entry.server.clone(),
        username: entry.username.digest(key),
        password: entry.password.digest(key),
        email: entry.email.clone(),
    };

    // 3. One PullSecret per name: the largest group of namespaces with the same
    //    content and the same links; the others are skipped.
    let mut secrets_yaml = String::new();
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
                out.variables.push((user_var.clone(), format!("the username for {server} (as in Secret {source})")));
                out.variables.push((pass_var.clone(), format!("the password for {server} (as in Secret {source})")));
                let _ = write!(
                    registries_yaml,
                    "---\napiVersion: pullwarden.dev/v1alpha1\nkind: Registry\nmetadata:\n  name: {}\nspec:\n  server: {}\n  username: {{fromEnv: {user_var}}}\n  password: {{fromEnv: {pass_var}}}\n",
                    yaml_string(&registry),
                    yaml_string(&entry.server),
                );
                if let Some(email) = &entry.email {
                    let _ = writeln!(registries_yaml, "  email: {}", yaml_string(email));
                }
                registry
            });
            registry_list.push(yaml_string(registry));
        }
        let namespaces: Vec<String> = chosen
            .iter()
            .map(|c| c.secret.meta.namespace.clone())
            .collect();
        targets.extend(namespaces.iter().cloned());
        let _ = write!(
            secrets_yaml,
            "---\n# imported from Secret {} in {}\napiVersion: pullwarden.dev/v1alpha1\nkind: PullSecret\nmetadata:\n  name: {}\nspec:\n",
            plain(name),
            plain(&namespaces.join(", ")),
            yaml_string(name)
        );
        if first.format == ConfigFormat::Dockercfg {
            secrets_yaml.push_str("  format: dockercfg\n");
        }
        let _ = writeln!(secrets_yaml, "  registries: [{}]", registry_list.join(", "));
        let _ = writeln!(
            secrets_yaml,
            "  namespaces: [{}]",
            namespaces
                .iter()
                .map(|n| yaml_string(n))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let accounts: BTreeSet<&String> = pull.iter().chain(mount.iter()).collect();
        if !accounts.is_empty() {
            secrets_yaml.push_str("  serviceAccounts:\n");
            for sa in accounts {
                let purposes: Vec<&str> =
                    [("pull", pull.contains(sa)), ("mount", mount.contains(sa))]
                        .iter()
                        .filter(|(_, on)| *on)
                        .map(|(p, _)| *p)
                        .collect();
                let _ = writeln!(
                    secrets_yaml,
                    "    - name: {}\n      for: [{}]\n      ifMissing: skip",
                    yaml_string(sa),
                    purposes.join(", ")
                );
            }
        }
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
    let mut grants_yaml = String::new();
    for ((role, subjects), (first_name, namespaces)) in &grants {
        let mut to = Vec::new();
        for s in subjects {
            let subject_line = match (s.kind.as_str(), &s.namespace) {
                ("ServiceAccount", Some(ns)) => format!(
                    "serviceAccount: {}",
                    yaml_string(&format!("{ns}/{}", s.name))
                ),
                ("Group", _) => match s.name.strip_prefix("system:serviceaccounts:") {
                    Some(ns) if !ns.is_empty() => {
                        format!("allServiceAccountsIn: {}", yaml_string(ns))
                    }
                    _ => format!("group: {}", yaml_string(&s.name)),
                },
                ("User", _) => format!("user: {}", yaml_string(&s.name)),
                _ => {
                    out.skipped.push(plain(&format!(
                        "RoleBinding {}/{first_name}: subject {} cannot be expressed",
                        namespaces[0],
                        s.display()
                    )));
                    continue;
                }
            };
            to.push(subject_line);
        }
        if to.is_empty() {
            continue;
        }
        targets.extend(namespaces.iter().cloned());
        let name = unique(sanitize(first_name), &mut grant_names);
        let _ = write!(
            grants_yaml,
            "---\n# imported from RoleBinding {} in {}\napiVersion: pullwarden.dev/v1alpha1\nkind: PullGrant\nmetadata:\n  name: {}\nspec:\n  role: {}\n  namespaces: [{}]\n  to:\n",
            plain(first_name),
            plain(&namespaces.join(", ")),
            yaml_string(&name),
            yaml_string(role),
            namespaces
                .iter()
                .map(|n| yaml_string(n))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for line in to {
            let _ = writeln!(grants_yaml, "    - {line}");
        }
    }

    let include: Vec<String> = if targets.is_empty() {
        vec![yaml_string("*")]
    } else {
        targets.iter().map(|t| yaml_string(t)).collect()
    };
    out.files.insert(
        "workspace.yaml".into(),
        format!(
            "# Written by `pullwarden import`. Review it, commit it, then set the variables\n# listed in credentials.env.example and run `pullwarden plan --adopt`.\napiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: {}\nspec:\n  namespaces:\n    include: [{}]\n  prune: true\n",
            yaml_string(workspace),
            include.join(", ")
        ),
    );
    if !registries_yaml.is_empty() {
        out.files.insert(
            "registries.yaml".into(),
            registries_yaml.trim_start_matches("---\n").to_string(),
        );
    }
    if !secrets_yaml.is_empty() {
        out.files.insert(
            "pull-secrets.yaml".into(),
            secrets_yaml.trim_start_matches("---\n").to_string(),
        );
    }
    if !grants_yaml.is_empty() {
        out.files.insert(
            "grants.yaml".into(),
            grants_yaml.trim_start_matches("---\n").to_string(),
        );
    }
    let mut env = String::from(
        "# The variables the imported workspace reads. Values are never written by pullwarden.\n",
    );
    for (var, what) in &out.variables {
        let _ = writeln!(env, "# {}\n{var}=", plain(what));
    }
    out.files.insert("credentials.env.example".into(), env);
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

    /// #16.1: a registry key chosen by whoever can create a Secret must not
    /// become a shell command in `credentials.env.example` (which the README
    /// sources), nor a line of any YAML file; `quay.io` and `quay-io` must
    /// not share variables.
    #[test]
    fn hostile_registry_keys_cannot_run_code_or_share_a_credential() {
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
        let env = &imported.files["credentials.env.example"];
        for line in env.lines() {
            let is_comment = line.starts_with("# ");
            let is_assignment = line.strip_suffix('=').is_some_and(|var| {
                !var.is_empty()
                    && var
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            });
            assert!(
                is_comment || is_assignment,
                "a line a shell would run: {line:?}\n{env}"
            );
        }
        assert!(
            !crate::escape::needs_escaping(&env.replace('\n', "")),
            "{env:?}"
        );
        let vars: Vec<&String> = imported.variables.iter().map(|(v, _)| v).collect();
        let distinct: BTreeSet<&String> = vars.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            vars.len(),
            "no two registries share a variable: {vars:?}"
        );
        assert_eq!(vars.len(), 8);
        for (name, text) in &imported.files {
            for line in text.lines() {
                assert!(!line.starts_with("touch"), "{name}: {text}");
            }
            assert!(
                !crate::escape::needs_escaping(&text.replace('\n', "")),
                "{name}: {text:?}"
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
        let all: String = imported.files.values().cloned().collect();
        assert!(!all.contains("PW-CANARY"), "{all}");
        assert!(
            !all.contains("dockercfg-x7k2p"),
            "OpenShift's secret left out: {all}"
        );
        assert!(
            !all.contains("system:image-pullers"),
            "OpenShift's binding left out"
        );
        assert!(all.contains("{fromEnv: PW_QUAY_IO_PASSWORD}"), "{all}");
        // a and b share content and links: one PullSecret; c differs: skipped.
        assert!(all.contains("namespaces: [\"a\", \"b\"]"), "{all}");
        assert_eq!(imported.skipped.len(), 1, "{:?}", imported.skipped);
        assert!(imported.skipped[0].contains("c/regcred"));
        // The binding name's line break cannot start a new YAML line.
        let grants = &imported.files["grants.yaml"];
        assert!(
            !grants.lines().any(|l| l.starts_with("apiVersion: x")),
            "{grants}"
        );
        assert!(grants.contains("allServiceAccountsIn: \"a\""), "{grants}");
        assert_eq!(imported.variables.len(), 2);
    }
}
