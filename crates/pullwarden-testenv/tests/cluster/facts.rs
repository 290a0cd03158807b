//! API-server behaviour that decides how pullwarden must write.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use pullwarden_testenv::TestEnv;
use serde_json::json;

use crate::{namespace, status_code};

fn refs(names: &[&str]) -> Vec<LocalObjectReference> {
    names
        .iter()
        .map(|n| LocalObjectReference {
            name: (*n).to_owned(),
        })
        .collect()
}

fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

async fn service_account(sas: &Api<ServiceAccount>, name: &str, pull: &[&str]) -> ServiceAccount {
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(name.to_owned());
    sa.image_pull_secrets = Some(refs(pull));
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("create sa")
}

#[tokio::test]
async fn cluster_forced_apply_of_image_pull_secrets_wipes_other_entries() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-atomic").await;
    let sas: Api<ServiceAccount> = Api::namespaced(env.admin(), &ns);
    service_account(&sas, "app", &["theirs-a", "theirs-b"]).await;

    let applied = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "app", "namespace": ns},
        "imagePullSecrets": [{"name": "ours"}],
    });
    let params = PatchParams::apply("second-manager").force();
    let after = sas
        .patch("app", &params, &Patch::Apply(&applied))
        .await
        .expect("forced apply");
    // listType=atomic: the applier now owns the whole list, the others are gone
    assert_eq!(pull_secret_names(&after), ["ours"]);
}

#[tokio::test]
async fn cluster_read_keep_add_with_resource_version_loses_nothing() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-keep").await;
    let sas: Api<ServiceAccount> = Api::namespaced(env.admin(), &ns);
    service_account(&sas, "app", &["theirs-a"]).await;

    // we read; meanwhile someone else adds an entry
    let ours_read = sas.get("app").await.expect("get");
    let mut theirs = sas.get("app").await.expect("get");
    theirs
        .image_pull_secrets
        .get_or_insert_with(Vec::new)
        .push(LocalObjectReference {
            name: "theirs-b".to_owned(),
        });
    sas.replace("app", &PostParams::default(), &theirs)
        .await
        .expect("their write");

    // our write from the stale read is refused, not applied over theirs
    let mut stale = ours_read.clone();
    stale
        .image_pull_secrets
        .get_or_insert_with(Vec::new)
        .push(LocalObjectReference {
            name: "ours".to_owned(),
        });
    let (code, _) = status_code(sas.replace("app", &PostParams::default(), &stale).await);
    assert_eq!(code, 409);

    // re-read, keep every entry, add ours, write with the new resourceVersion
    let mut fresh = sas.get("app").await.expect("get");
    fresh
        .image_pull_secrets
        .get_or_insert_with(Vec::new)
        .push(LocalObjectReference {
            name: "ours".to_owned(),
        });
    let after = sas
        .replace("app", &PostParams::default(), &fresh)
        .await
        .expect("write");
    assert_eq!(pull_secret_names(&after), ["theirs-a", "theirs-b", "ours"]);
}

#[tokio::test]
async fn cluster_apply_with_stale_resource_version_or_wrong_uid_is_refused() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-precond").await;
    let sas: Api<ServiceAccount> = Api::namespaced(env.admin(), &ns);
    let created = service_account(&sas, "app", &[]).await;
    let mut changed = created.clone();
    changed.image_pull_secrets = Some(refs(&["x"]));
    sas.replace("app", &PostParams::default(), &changed)
        .await
        .expect("write");

    let apply = |resource_version: Option<String>, uid: Option<String>| {
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "app", "namespace": ns, "resourceVersion": resource_version, "uid": uid},
            "imagePullSecrets": [{"name": "x"}, {"name": "y"}],
        })
    };
    let params = PatchParams::apply("precondition-test").force();
    let stale_rv = apply(created.resource_version(), created.uid());
    let (code, message) = status_code(sas.patch("app", &params, &Patch::Apply(&stale_rv)).await);
    assert_eq!(code, 409, "{message}");

    // a UID that does not match is refused too: 422, since uid is immutable
    let current = sas.get("app").await.expect("get");
    let wrong_uid = apply(
        current.resource_version(),
        Some("00000000-0000-0000-0000-000000000000".to_owned()),
    );
    let (code, message) = status_code(sas.patch("app", &params, &Patch::Apply(&wrong_uid)).await);
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("metadata.uid"), "{message}");

    let good = apply(current.resource_version(), current.uid());
    let after = sas
        .patch("app", &params, &Patch::Apply(&good))
        .await
        .expect("apply with matching preconditions");
    assert_eq!(pull_secret_names(&after), ["x", "y"]);
}

#[tokio::test]
async fn cluster_rolebinding_role_ref_cannot_change() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-roleref").await;
    let bindings: Api<RoleBinding> = Api::namespaced(env.admin(), &ns);
    let role_ref = |name: &str| RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: "ClusterRole".to_owned(),
        name: name.to_owned(),
    };
    let mut binding = RoleBinding {
        role_ref: role_ref("view"),
        subjects: Some(vec![Subject {
            kind: "Group".to_owned(),
            name: format!("system:serviceaccounts:{ns}"),
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            namespace: None,
        }]),
        ..Default::default()
    };
    binding.metadata.name = Some("pull".to_owned());
    let mut created = bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create");
    created.role_ref = role_ref("edit");
    let (code, message) = status_code(
        bindings
            .replace("pull", &PostParams::default(), &created)
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("cannot change roleRef"), "{message}");
}

#[tokio::test]
async fn cluster_secret_type_cannot_change() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-sectype").await;
    let secrets: Api<Secret> = Api::namespaced(env.admin(), &ns);
    let config = |key: &str| {
        std::collections::BTreeMap::from([(key.to_owned(), ByteString(b"{\"auths\":{}}".to_vec()))])
    };
    let mut secret = Secret {
        type_: Some("kubernetes.io/dockerconfigjson".to_owned()),
        data: Some(config(".dockerconfigjson")),
        ..Default::default()
    };
    secret.metadata.name = Some("registry".to_owned());
    let mut created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create");
    created.type_ = Some("kubernetes.io/dockercfg".to_owned());
    created.data = Some(config(".dockercfg"));
    let (code, message) = status_code(
        secrets
            .replace("registry", &PostParams::default(), &created)
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("field is immutable"), "{message}");
}
