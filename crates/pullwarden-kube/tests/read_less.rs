//! Reading only what planning needs (#13), against a real kube-apiserver
//! (`pullwarden-testenv`): Secrets filtered by type on the server, Secret
//! names the workspace wants looked up by name, namespaces as metadata only.
//! Every test is named `cluster_*`: `scripts/test.sh` counts them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use pullwarden_core::live::LiveState;
use pullwarden_kube::{
    PULL_SECRET_TYPES, ReadOptions, SecretSelection, lookup_secrets, read_live,
    read_live_in_namespaces,
};
use pullwarden_testenv::{TestEnv, unique_name};

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

fn secret(name: &str, type_: &str, data: &[(&str, &str)]) -> Secret {
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
    secret
}

/// One Secret of every type the tests need, in `ns`: two docker-config
/// Secrets and three that pullwarden never uses.
async fn mixed_secrets(env: &TestEnv, ns: &str) {
    let api: Api<Secret> = Api::namespaced(env.admin(), ns);
    for secret in [
        secret(
            "json-pull",
            "kubernetes.io/dockerconfigjson",
            &[(".dockerconfigjson", r#"{"auths":{}}"#)],
        ),
        secret(
            "cfg-pull",
            "kubernetes.io/dockercfg",
            &[(".dockercfg", "{}")],
        ),
        secret("opaque", "Opaque", &[("k", "v")]),
        secret(
            "sh.helm.release.v1.web.v1",
            "helm.sh/release.v1",
            &[("release", "H4sI")],
        ),
        secret(
            "tls",
            "kubernetes.io/tls",
            &[("tls.crt", "crt"), ("tls.key", "key")],
        ),
    ] {
        api.create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
}

fn secrets_in(live: &LiveState, ns: &str) -> BTreeMap<String, String> {
    live.secrets
        .iter()
        .filter(|s| s.meta.namespace == ns)
        .map(|s| (s.meta.name.clone(), s.type_.clone()))
        .collect()
}

fn pull_secrets_only() -> ReadOptions {
    ReadOptions {
        secrets: SecretSelection::PullSecrets,
        ..ReadOptions::default()
    }
}

/// `type` is a field selector the server supports for Secrets (it filters,
/// it does not ignore), and an unsupported one is refused: so a filtered
/// read cannot silently turn into a read of everything.
#[tokio::test]
async fn cluster_secret_type_is_a_supported_field_selector() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-read-less-fs").await;
    mixed_secrets(env, &ns).await;
    let api: Api<Secret> = Api::namespaced(env.admin(), &ns);
    for (type_, expected) in [
        ("kubernetes.io/dockerconfigjson", vec!["json-pull"]),
        ("kubernetes.io/dockercfg", vec!["cfg-pull"]),
        ("Opaque", vec!["opaque"]),
    ] {
        let listed = api
            .list(&ListParams::default().fields(&format!("type={type_}")))
            .await
            .unwrap_or_else(|e| panic!("type={type_} refused: {e}"));
        let names: Vec<String> = listed
            .items
            .iter()
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, expected, "type={type_}");
    }
    let everything = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(everything.items.len(), 5);
    let error = api
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .expect_err("a field the server does not index is refused");
    match error {
        kube::Error::Api(status) => assert_eq!(status.code, 400, "{status:?}"),
        other => panic!("expected a 400, got {other:?}"),
    }
}

/// With `SecretSelection::PullSecrets`, cluster-wide and per namespace, only
/// docker-config Secrets are read (the default still reads them all); the
/// names a workspace wants are then looked up by name: a Secret of another
/// type holding one is added, with its type; a name already read, a name
/// nobody holds and a name in a namespace that does not exist add nothing.
#[tokio::test]
async fn cluster_pull_secret_read_then_lookup_finds_other_types_by_name() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-read-less").await;
    mixed_secrets(env, &ns).await;
    let client = env.admin();

    let all = read_live(&client, &ReadOptions::default())
        .await
        .expect("read_live");
    assert_eq!(
        secrets_in(&all, &ns).len(),
        5,
        "the default reads every Secret"
    );

    let options = pull_secrets_only();
    let expected_pull = BTreeMap::from([
        ("cfg-pull".to_owned(), PULL_SECRET_TYPES[1].to_owned()),
        ("json-pull".to_owned(), PULL_SECRET_TYPES[0].to_owned()),
    ]);
    let mut live = read_live(&client, &options).await.expect("read_live");
    assert_eq!(secrets_in(&live, &ns), expected_pull);
    assert!(live.namespaces.contains(&ns));
    assert!(
        all.secrets.len() > live.secrets.len(),
        "secrets of other types exist elsewhere in the cluster too"
    );
    let scoped = read_live_in_namespaces(&client, std::slice::from_ref(&ns), &options)
        .await
        .expect("read_live_in_namespaces");
    assert_eq!(secrets_in(&scoped, &ns), expected_pull);
    let has_data = |live: &LiveState, name: &str| {
        live.secrets
            .iter()
            .find(|s| s.meta.namespace == ns && s.meta.name == name)
            .is_some_and(|s| !s.data.is_empty())
    };
    assert!(has_data(&live, "json-pull") && has_data(&live, "cfg-pull"));
    let only_json_pull = ReadOptions {
        data_only_for: Some(std::sync::Arc::new(["json-pull".to_owned()].into())),
        ..pull_secrets_only()
    };
    let lean = read_live(&client, &only_json_pull)
        .await
        .expect("read_live");
    assert_eq!(secrets_in(&lean, &ns), expected_pull);
    assert!(has_data(&lean, "json-pull"), "a wanted name keeps its data");
    assert!(!has_data(&lean, "cfg-pull"), "other data is not kept");

    let missing_ns = unique_name("pw-read-less-absent");
    let wanted = [
        (ns.clone(), "opaque".to_owned()),
        (ns.clone(), "json-pull".to_owned()),
        (ns.clone(), "nobody-has-it".to_owned()),
        (ns.clone(), "sh.helm.release.v1.web.v1".to_owned()),
        (missing_ns.clone(), "opaque".to_owned()),
    ];
    let looked_up = lookup_secrets(&client, &mut live, &wanted, &options)
        .await
        .expect("lookup_secrets");
    assert_eq!(
        looked_up, 3,
        "only names not read yet, in namespaces that exist"
    );
    let mut expected = expected_pull.clone();
    expected.insert("opaque".to_owned(), "Opaque".to_owned());
    expected.insert(
        "sh.helm.release.v1.web.v1".to_owned(),
        "helm.sh/release.v1".to_owned(),
    );
    assert_eq!(secrets_in(&live, &ns), expected);
    let opaque = live
        .secrets
        .iter()
        .find(|s| s.meta.namespace == ns && s.meta.name == "opaque")
        .expect("opaque");
    assert!(!opaque.meta.uid.is_empty() && !opaque.meta.resource_version.is_empty());
    assert!(opaque.data.is_empty(), "data of other types is not kept");
    assert!(
        live.secrets
            .windows(2)
            .all(|w| (&w[0].meta.namespace, &w[0].meta.name)
                <= (&w[1].meta.namespace, &w[1].meta.name)),
        "still sorted"
    );

    // after a read of every Secret there is nothing to look up
    let mut all = all;
    let before = all.secrets.len();
    let looked_up = lookup_secrets(&client, &mut all, &wanted, &ReadOptions::default())
        .await
        .expect("lookup_secrets");
    assert_eq!((looked_up, all.secrets.len()), (0, before));

    // the per-namespace state looks up the same way
    let mut scoped = scoped;
    let looked_up = lookup_secrets(&client, &mut scoped, &wanted, &options)
        .await
        .expect("lookup_secrets");
    assert_eq!(looked_up, 3);
    assert_eq!(secrets_in(&scoped, &ns), expected);
}

/// Namespaces are listed as metadata only, which has no `status.phase`: a
/// namespace being deleted is told by its `deletionTimestamp`, which the
/// server sets in the same update as the `Terminating` phase.
#[tokio::test]
async fn cluster_a_terminating_namespace_has_a_deletion_timestamp() {
    let env = TestEnv::shared().await;
    let active = namespace(env, "pw-read-less-active").await;
    let doomed = namespace(env, "pw-read-less-doomed").await;
    // keeps the namespace Terminating even where a controller would finish the deletion
    let held = secret("held", "Opaque", &[]);
    let mut held = held;
    held.metadata.finalizers = Some(vec!["pullwarden.dev/test-hold".to_owned()]);
    Api::<Secret>::namespaced(env.admin(), &doomed)
        .create(&PostParams::default(), &held)
        .await
        .expect("create secret");
    let namespaces: Api<Namespace> = Api::all(env.admin());
    namespaces
        .delete(&doomed, &DeleteParams::default())
        .await
        .expect("delete namespace");

    let full = namespaces.get(&doomed).await.expect("get namespace");
    assert_eq!(
        full.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert!(full.metadata.deletion_timestamp.is_some());
    let full = namespaces.get(&active).await.expect("get namespace");
    assert_eq!(full.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    assert!(full.metadata.deletion_timestamp.is_none());
    let metadata = namespaces
        .list_metadata(&ListParams::default())
        .await
        .expect("list metadata");
    let stamped = |name: &str| {
        metadata
            .items
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .map(|n| n.metadata.deletion_timestamp.is_some())
    };
    assert_eq!(stamped(&doomed), Some(true));
    assert_eq!(stamped(&active), Some(false));

    let live = read_live(&env.admin(), &pull_secrets_only())
        .await
        .expect("read_live");
    assert!(live.namespaces.contains(&active));
    assert!(!live.terminating.contains(&active));
    assert!(live.terminating.contains(&doomed));
    assert!(!live.namespaces.contains(&doomed));

    // release the namespace (where a controller finishes deletions)
    let _ = Api::<Secret>::namespaced(env.admin(), &doomed)
        .patch(
            "held",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await;
}
