//! `connect` and `read_live` against a real kube-apiserver
//! (`pullwarden-testenv`). Every test is named `cluster_*`: `scripts/test.sh`
//! counts them.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use miette::Diagnostic;
use pullwarden_core::live::{
    LAST_APPLIED, LiveState, MANAGED_BY_LABEL, MANAGED_BY_VALUE, RbacSubject,
};
use pullwarden_kube::{ClusterError, DEFAULT_REQUEST_TIMEOUT, ReadOptions, connect, read_live};
use pullwarden_testenv::{ADMIN_CONTEXT, TestEnv, USER_CONTEXT, unique_name};

const CANARY: &str = "canary-cluster-token-51e2";

async fn namespace(env: &TestEnv, prefix: &str) -> String {
    let name = unique_name(prefix);
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    Api::<Namespace>::all(env.admin())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

fn secret(name: &str, type_: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> Secret {
    let mut secret = Secret {
        type_: Some(type_.to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_owned());
    secret.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    secret
}

async fn create_secrets(env: &TestEnv, ns: &str, secrets: &[Secret]) {
    let api: Api<Secret> = Api::namespaced(env.admin(), ns);
    for secret in secrets {
        api.create(&PostParams::default(), secret)
            .await
            .expect("create secret");
    }
}

async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..50 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn secret_names(live: &LiveState, ns: &str) -> Vec<String> {
    live.secrets
        .iter()
        .filter(|s| s.meta.namespace == ns)
        .map(|s| s.meta.name.clone())
        .collect()
}

#[tokio::test]
async fn cluster_read_live_sees_objects_and_keeps_data_only_where_expected() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-kube-read").await;
    let docker_json = format!(r#"{{"auths":{{"quay.io":{{"auth":"{CANARY}"}}}}}}"#);
    let mut applied = secret("applied", "Opaque", &[], &[("password", CANARY)]);
    applied.metadata.annotations = Some(BTreeMap::from([
        (
            LAST_APPLIED.to_owned(),
            format!(r#"{{"data":{{"password":"{CANARY}"}}}}"#),
        ),
        ("kept".to_owned(), "yes".to_owned()),
    ]));
    create_secrets(
        env,
        &ns,
        &[
            secret(
                "quay-pull",
                "kubernetes.io/dockerconfigjson",
                &[],
                &[(".dockerconfigjson", &docker_json)],
            ),
            secret(
                "legacy-pull",
                "kubernetes.io/dockercfg",
                &[],
                &[(".dockercfg", "{}")],
            ),
            secret(
                "ours",
                "Opaque",
                &[(MANAGED_BY_LABEL, MANAGED_BY_VALUE)],
                &[("token", CANARY)],
            ),
            secret("not-ours", "Opaque", &[], &[("token", CANARY)]),
            applied,
        ],
    )
    .await;
    let mut sa = ServiceAccount {
        image_pull_secrets: Some(vec![LocalObjectReference {
            name: "quay-pull".to_owned(),
        }]),
        ..ServiceAccount::default()
    };
    sa.metadata.name = Some("builder".to_owned());
    Api::<ServiceAccount>::namespaced(env.admin(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create service account");
    let mut binding = RoleBinding {
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: "view".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: "builder".to_owned(),
            namespace: Some(ns.clone()),
            api_group: None,
        }]),
        ..RoleBinding::default()
    };
    binding.metadata.name = Some("builder-view".to_owned());
    Api::<RoleBinding>::namespaced(env.admin(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create role binding");
    // a namespace being deleted never finishes here (no controller manager):
    // it stays Terminating, and read_live leaves it out
    let doomed = namespace(env, "pw-kube-doomed").await;
    Api::<Namespace>::all(env.admin())
        .delete(&doomed, &DeleteParams::default())
        .await
        .expect("delete namespace");

    let client = connect(
        Some(env.kubeconfig()),
        Some(ADMIN_CONTEXT).filter(|_| env.simulates_openshift()),
        DEFAULT_REQUEST_TIMEOUT,
    )
    .await
    .expect("connect");
    let live = read_live(&client, &ReadOptions::default())
        .await
        .expect("read_live");

    assert!(live.namespaces.contains(&ns));
    assert!(
        !live.namespaces.contains(&doomed),
        "a terminating namespace is left out"
    );
    let data: BTreeMap<&str, Vec<&str>> = live
        .secrets
        .iter()
        .filter(|s| s.meta.namespace == ns)
        .map(|s| {
            (
                s.meta.name.as_str(),
                s.data.keys().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        data,
        BTreeMap::from([
            ("applied", vec![]),
            ("legacy-pull", vec![".dockercfg"]),
            ("not-ours", vec![]),
            ("ours", vec!["token"]),
            ("quay-pull", vec![".dockerconfigjson"]),
        ])
    );
    let by_name = |name: &str| {
        live.secrets
            .iter()
            .find(|s| s.meta.namespace == ns && s.meta.name == name)
            .expect(name)
    };
    assert_eq!(
        by_name("quay-pull").data[".dockerconfigjson"].expose(),
        docker_json
    );
    assert_eq!(by_name("quay-pull").type_, "kubernetes.io/dockerconfigjson");
    assert_eq!(by_name("ours").data["token"].expose(), CANARY);
    assert_eq!(
        by_name("applied").meta.annotations,
        BTreeMap::from([("kept".to_owned(), "yes".to_owned())])
    );
    assert!(!by_name("applied").meta.uid.is_empty());
    assert!(!by_name("applied").meta.resource_version.is_empty());

    let sa = live
        .service_accounts
        .iter()
        .find(|s| s.meta.namespace == ns && s.meta.name == "builder")
        .expect("service account");
    assert_eq!(sa.image_pull_secrets, ["quay-pull"]);
    let rb = live
        .role_bindings
        .iter()
        .find(|b| b.meta.namespace == ns && b.meta.name == "builder-view")
        .expect("role binding");
    assert_eq!(rb.role_ref.name, "view");
    assert_eq!(rb.subjects, [RbacSubject::service_account(&ns, "builder")]);

    // nothing that reaches output holds the canary
    assert!(!format!("{live:?}").contains(CANARY));
}

#[tokio::test]
async fn cluster_read_live_follows_continue_tokens() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-kube-pages").await;
    let secrets: Vec<Secret> = (0..7)
        .map(|i| {
            secret(
                &format!("s{i}"),
                "kubernetes.io/dockercfg",
                &[],
                &[(".dockercfg", "{}")],
            )
        })
        .collect();
    create_secrets(env, &ns, &secrets).await;

    // the server does paginate at this size
    let page = Api::<Secret>::namespaced(env.admin(), &ns)
        .list(&ListParams::default().limit(2))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 2);
    assert!(page.metadata.continue_.is_some_and(|c| !c.is_empty()));

    let live = read_live(
        &env.admin(),
        &ReadOptions {
            page_size: 2,
            ..ReadOptions::default()
        },
    )
    .await
    .expect("read_live");
    assert_eq!(
        secret_names(&live, &ns),
        ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]
    );
    let all = read_live(&env.admin(), &ReadOptions::default())
        .await
        .expect("read_live");
    assert!(all.namespaces.contains(&ns));
    assert!(live.namespaces.contains(&ns));
    assert_eq!(secret_names(&all, &ns), secret_names(&live, &ns));
}

#[tokio::test]
async fn cluster_read_live_as_unprivileged_user_is_forbidden_and_names_the_denial() {
    let env = TestEnv::shared().await;
    if !env.simulates_openshift() {
        // the unprivileged kubeconfig context exists on the local control plane only
        return;
    }
    let client = connect(
        Some(env.kubeconfig()),
        Some(USER_CONTEXT),
        DEFAULT_REQUEST_TIMEOUT,
    )
    .await
    .expect("an unprivileged user may still connect (GET /version)");
    let error = read_live(&client, &ReadOptions::default())
        .await
        .expect_err("the user may list nothing");
    assert!(matches!(error, ClusterError::Forbidden { .. }), "{error:?}");
    assert_eq!(
        error.code().map(|c| c.to_string()).as_deref(),
        Some("pullwarden::cluster::forbidden")
    );
    let help = error.help().map(|h| h.to_string()).unwrap_or_default();
    for needed in [
        "namespaces",
        "secrets",
        "serviceaccounts",
        "rolebindings",
        "list",
    ] {
        assert!(help.contains(needed), "{help}");
    }

    // grant everything but secrets: the denial names exactly what is missing
    let name = unique_name("pw-kube-read-most");
    let mut role = ClusterRole {
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["namespaces".to_owned(), "serviceaccounts".to_owned()]),
                verbs: vec!["list".to_owned()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec!["rbac.authorization.k8s.io".to_owned()]),
                resources: Some(vec!["rolebindings".to_owned()]),
                verbs: vec!["list".to_owned()],
                ..PolicyRule::default()
            },
        ]),
        ..ClusterRole::default()
    };
    role.metadata.name = Some(name.clone());
    Api::<ClusterRole>::all(env.admin())
        .create(&PostParams::default(), &role)
        .await
        .expect("create cluster role");
    let mut binding = ClusterRoleBinding {
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: name.clone(),
        },
        subjects: Some(vec![env.user_subject().clone()]),
        ..ClusterRoleBinding::default()
    };
    binding.metadata.name = Some(name.clone());
    Api::<ClusterRoleBinding>::all(env.admin())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create cluster role binding");

    let denied_secrets_only = eventually(|| async {
        matches!(
            read_live(&client, &ReadOptions::default()).await,
            Err(ClusterError::Forbidden { ref resource, .. }) if resource == "secrets"
        )
    })
    .await;
    assert!(denied_secrets_only, "the grant did not take effect");
    let error = read_live(&client, &ReadOptions::default())
        .await
        .expect_err("secrets are still denied");
    assert_eq!(
        error.to_string(),
        "the cluster does not allow pullwarden to list secrets at cluster scope"
    );
}

#[tokio::test]
async fn cluster_connect_to_a_closed_port_is_unreachable() {
    let env = TestEnv::shared().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let closed_url = format!("https://127.0.0.1:{closed}");
    let text = std::fs::read_to_string(env.kubeconfig()).expect("read kubeconfig");
    let server = env.base_url().trim_end_matches('/');
    assert!(text.contains(server), "the kubeconfig names {server}");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("kubeconfig");
    std::fs::write(&copy, text.replace(server, &closed_url)).expect("write kubeconfig");

    let started = Instant::now();
    let error = connect(Some(&copy), None, DEFAULT_REQUEST_TIMEOUT)
        .await
        .err()
        .expect("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let ClusterError::Unreachable {
        server: Some(named),
        ..
    } = &error
    else {
        panic!("expected Unreachable with the server, got {error:?}");
    };
    assert!(named.starts_with(&closed_url), "{named}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot reach the Kubernetes API server at {closed_url}"
        )),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[tokio::test]
async fn cluster_connect_names_a_missing_context_and_the_ones_there_are() {
    let env = TestEnv::shared().await;
    let error = connect(
        Some(env.kubeconfig()),
        Some("no-such-context"),
        DEFAULT_REQUEST_TIMEOUT,
    )
    .await
    .err()
    .expect("no such context");
    assert!(
        matches!(error, ClusterError::Kubeconfig { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("\"no-such-context\""), "{message}");
    if env.simulates_openshift() {
        assert!(
            message.contains(ADMIN_CONTEXT) && message.contains(USER_CONTEXT),
            "{message}"
        );
    }
}

#[tokio::test]
async fn cluster_connect_with_a_rejected_token_is_unauthorized_and_hides_the_token() {
    let env = TestEnv::shared().await;
    let file = kube::config::Kubeconfig::read_from(env.kubeconfig()).expect("kubeconfig");
    let cluster = file
        .clusters
        .iter()
        .find_map(|named| named.cluster.clone())
        .expect("a cluster");
    let trust = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => format!("certificate-authority-data: {data}"),
        (None, Some(path)) => format!("certificate-authority: {path}"),
        (None, None) => "insecure-skip-tls-verify: true".to_owned(),
    };
    let token = format!("{CANARY}-bearer");
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: c\n  cluster:\n    server: {}\n    {trust}\n\
         users:\n- name: u\n  user:\n    token: {token}\n\
         contexts:\n- name: x\n  context: {{cluster: c, user: u}}\n\
         current-context: x\n",
        env.base_url()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");

    let error = connect(Some(&path), None, DEFAULT_REQUEST_TIMEOUT)
        .await
        .err()
        .expect("the token is unknown to the server");
    assert!(
        matches!(error, ClusterError::Unauthorized { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.code().map(|c| c.to_string()).as_deref(),
        Some("pullwarden::cluster::unauthorized")
    );
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(CANARY), "{shown}");
    }
}
