//! Writing workspace YAML (`pullwarden_spec::emit`): what is written loads
//! back as what was meant (`load(emit(x)) == x`), and nothing a cluster
//! holds can forge a line of any written file.

use std::collections::BTreeMap;

use pullwarden_core::import::{
    ImportedGrant, ImportedPullSecret, ImportedRegistry, ImportedSubject, ImportedWorkspace,
};
use pullwarden_core::live::{LiveRoleBinding, LiveSecret, LiveState, Meta, RbacSubject, RoleRef};
use pullwarden_core::model::{RegistrySource, SecretFormat, Subject, ValueSource, Workspace};
use pullwarden_core::secret::{DigestKey, SecretString};
use pullwarden_spec::credentials::ProcessEnvironment;
use pullwarden_spec::emit::workspace_files;

fn write(files: &BTreeMap<String, String>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

fn load(files: &BTreeMap<String, String>) -> Workspace {
    let dir = write(files);
    let loaded = pullwarden_spec::load(dir.path(), &ProcessEnvironment);
    let problems: Vec<&str> = loaded
        .problems
        .iter()
        .filter(|p| p.is_error())
        .map(|p| p.message.as_str())
        .collect();
    assert!(problems.is_empty(), "{problems:?}\n{files:#?}");
    loaded.workspace.expect("a workspace")
}

/// The loaded workspace in the shape import describes (what emit must keep).
fn project(ws: &Workspace) -> ImportedWorkspace {
    let env = |source: &ValueSource| match source {
        ValueSource::FromEnv(var) => var.clone(),
        other => panic!("not a variable: {other:?}"),
    };
    ImportedWorkspace {
        name: ws.name.clone(),
        include: ws
            .scope
            .include
            .iter()
            .map(|p| p.value.as_str().to_owned())
            .collect(),
        prune: ws.prune,
        registries: ws
            .registries
            .values()
            .map(|r| match &r.source {
                RegistrySource::Login {
                    server,
                    username,
                    password,
                    email,
                } => ImportedRegistry {
                    name: r.name.clone(),
                    server: server.value.clone(),
                    username_variable: env(&username.value),
                    password_variable: env(&password.value),
                    email: email.as_ref().map(|e| e.value.clone()),
                },
                other => panic!("not a login registry: {other:?}"),
            })
            .collect(),
        pull_secrets: ws
            .pull_secrets
            .iter()
            .map(|s| ImportedPullSecret {
                name: s.name.clone(),
                found_in: s
                    .namespaces
                    .iter()
                    .map(|n| n.value.as_str().to_owned())
                    .collect(),
                format: s.format,
                registries: s.registries.iter().map(|r| r.value.clone()).collect(),
                namespaces: s
                    .namespaces
                    .iter()
                    .map(|n| n.value.as_str().to_owned())
                    .collect(),
                service_accounts: s
                    .service_accounts
                    .iter()
                    .map(|l| (l.name.value.clone(), l.pull, l.mount))
                    .collect(),
            })
            .collect(),
        grants: ws
            .pull_grants
            .iter()
            .map(|g| ImportedGrant {
                name: g.name.clone(),
                found_as: String::new(),
                role: g.role.value.clone(),
                namespaces: g
                    .namespaces
                    .iter()
                    .map(|n| n.value.as_str().to_owned())
                    .collect(),
                to: g
                    .to
                    .iter()
                    .map(|s| match &s.value {
                        Subject::ServiceAccount { namespace, name } => {
                            ImportedSubject::ServiceAccount {
                                namespace: namespace.clone(),
                                name: name.clone(),
                            }
                        }
                        Subject::AllServiceAccountsIn(p) => {
                            ImportedSubject::AllServiceAccountsIn(p.as_str().to_owned())
                        }
                        Subject::Group(g) => ImportedSubject::Group(g.clone()),
                        Subject::User(u) => ImportedSubject::User(u.clone()),
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[test]
fn what_is_written_loads_back_as_what_was_meant() {
    let x = ImportedWorkspace {
        name: "acme".into(),
        include: vec!["team-a".into(), "team-b".into(), "shared".into()],
        prune: true,
        registries: vec![
            ImportedRegistry {
                name: "ghcr.io".into(),
                server: "ghcr.io".into(),
                username_variable: "PW_GHCR_IO_USERNAME".into(),
                password_variable: "PW_GHCR_IO_PASSWORD".into(),
                email: None,
            },
            ImportedRegistry {
                name: "quay.io".into(),
                server: "quay.io".into(),
                username_variable: "PW_QUAY_IO_USERNAME".into(),
                password_variable: "PW_QUAY_IO_PASSWORD".into(),
                email: Some("ci@example.com".into()),
            },
        ],
        pull_secrets: vec![
            ImportedPullSecret {
                name: "legacy-pull".into(),
                found_in: vec!["team-b".into()],
                format: SecretFormat::Dockercfg,
                registries: vec!["ghcr.io".into()],
                namespaces: vec!["team-b".into()],
                service_accounts: Vec::new(),
            },
            ImportedPullSecret {
                name: "quay-pull".into(),
                found_in: vec!["team-a".into(), "team-b".into()],
                format: SecretFormat::DockerConfigJson,
                registries: vec!["quay.io".into(), "ghcr.io".into()],
                namespaces: vec!["team-a".into(), "team-b".into()],
                service_accounts: vec![
                    ("builder".into(), false, true),
                    ("default".into(), true, false),
                    ("deployer".into(), true, true),
                ],
            },
        ],
        grants: vec![ImportedGrant {
            name: "shared-pullers".into(),
            found_as: String::new(),
            role: "system:image-puller".into(),
            namespaces: vec!["shared".into()],
            to: vec![
                ImportedSubject::AllServiceAccountsIn("team-a".into()),
                ImportedSubject::Group("platform".into()),
                ImportedSubject::ServiceAccount {
                    namespace: "team-b".into(),
                    name: "default".into(),
                },
                ImportedSubject::User("alice".into()),
            ],
        }],
    };
    let files = workspace_files(&x, &[]);
    let mut back = project(&load(&files));
    // Load order is by name; compare as sets where the format has no order.
    back.registries.sort_by(|a, b| a.name.cmp(&b.name));
    back.pull_secrets.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back, x, "{files:#?}");
}

fn meta(ns: &str, name: &str) -> Meta {
    Meta {
        namespace: ns.into(),
        name: name.into(),
        ..Meta::default()
    }
}

fn docker_secret(ns: &str, name: &str, server: &str) -> LiveSecret {
    let json =
        serde_json::json!({"auths": {server: {"username": "u", "password": "p"}}}).to_string();
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
/// sources), nor a line of any YAML file, nor reach a terminal raw; a
/// binding's name cannot start a YAML line either. What was hostile stays
/// data: it loads back as the same string.
#[test]
fn text_from_a_cluster_cannot_forge_a_line_of_any_written_file() {
    let hostile_server = "registry.example.com\ntouch /tmp/PWNED #";
    let mut live = LiveState::default();
    live.secrets
        .push(docker_secret("a", "team-pull", hostile_server));
    live.secrets.push(docker_secret("b", "dots", "quay.io"));
    live.secrets.push(docker_secret("c", "dashes", "quay-io"));
    live.secrets
        .push(docker_secret("d", "sep", "r.example\u{2028}id\r$(id)"));
    live.role_bindings.push(LiveRoleBinding {
        meta: meta("b", "evil\napiVersion: x"),
        role_ref: RoleRef {
            kind: "ClusterRole".into(),
            name: "system:image-puller".into(),
        },
        subjects: vec![RbacSubject::group("system:serviceaccounts:a")],
    });
    let imported =
        pullwarden_core::import::import(&live, "ws", &[], &DigestKey::from_bytes([1; 32]));
    let files = workspace_files(&imported.workspace, &imported.variables);
    let env = &files["credentials.env.example"];
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
    for (name, text) in &files {
        for line in text.lines() {
            assert!(!line.starts_with("touch"), "{name}: {text}");
            assert!(!line.starts_with("apiVersion: x"), "{name}: {text}");
        }
        assert!(
            !pullwarden_core::escape::needs_escaping(&text.replace('\n', "")),
            "{name}: {text:?}"
        );
    }
    // Hostile, but data: the YAML holds exactly the server the cluster had.
    let registries =
        pullwarden_spec::yaml::parse_documents(&files["registries.yaml"]).expect("valid YAML");
    let servers: Vec<String> = registries
        .iter()
        .filter_map(|doc| match &doc.value {
            pullwarden_spec::yaml::Value::Map(entries) => entries.iter().find_map(|(k, v)| {
                (k.value == pullwarden_spec::yaml::Value::String("spec".into())).then_some(v)
            }),
            _ => None,
        })
        .filter_map(|spec| match &spec.value {
            pullwarden_spec::yaml::Value::Map(entries) => {
                entries
                    .iter()
                    .find_map(|(k, v)| match (&k.value, &v.value) {
                        (
                            pullwarden_spec::yaml::Value::String(key),
                            pullwarden_spec::yaml::Value::String(server),
                        ) if key == "server" => Some(server.clone()),
                        _ => None,
                    })
            }
            _ => None,
        })
        .collect();
    assert!(servers.iter().any(|s| s == hostile_server), "{servers:?}");
    assert!(
        servers.iter().any(|s| s == "r.example\u{2028}id\r$(id)"),
        "{servers:?}"
    );
}
