//! Regression tests of #16 that need the real API server: a create met by
//! an object with this workspace's labels but other content (a concurrent
//! apply with other credentials, or a forgery) fails instead of counting as
//! done, and a namespace being deleted (Terminating) is left alone instead of
//! being reported as missing, its objects as no longer declared. Every test
//! is named `cluster_*`: `scripts/test.sh` counts them.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use pullwarden_core::live::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCE_ANNOTATION, WORKSPACE_LABEL,
};
use pullwarden_core::plan::{self, Action, ObjectKind, PlanOptions};
use pullwarden_core::secret::DigestKey;
use pullwarden_kube::apply::{ApplyOptions, Hooks, OutcomeStatus};
use pullwarden_spec::credentials::{self, ProcessEnvironment};
use pullwarden_testenv::{TestEnv, unique_name};

mod common;

use common::path_str;

fn workspace(dir: &Path, workspace: &str, ns: &str) {
    std::fs::write(dir.join("reg.password"), "hostile-cluster-password\n").expect("write");
    std::fs::write(
        dir.join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {workspace}}}
spec: {{prune: true}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: reg}}
spec:
  server: registry.example.com
  username: robot
  password: {{fromFile: reg.password}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: team-pull}}
spec:
  registries: [reg]
  namespaces: [{ns}]
"
        ),
    )
    .expect("write workspace");
}

fn ours(workspace: &str, data: &[u8]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("team-pull".into()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (WORKSPACE_LABEL.to_string(), workspace.to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                SOURCE_ANNOTATION.to_string(),
                "PullSecret/team-pull".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(data.to_vec()),
        )])),
        ..Secret::default()
    }
}

/// #16.6: two applies with different credentials, or an object forged with
/// this workspace's labels between plan and apply: the create that meets it
/// fails and the object is left as it is; the same content counts as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_create_met_by_other_content_fails_and_the_same_content_is_done() {
    let env = TestEnv::shared().await;
    let ns = unique_name("pw-forged");
    let name = unique_name("pw-forged-ws");
    env.create_project(&ns).await.expect("project");
    let dir = tempfile::tempdir().expect("tempdir");
    workspace(dir.path(), &name, &ns);
    let loaded = pullwarden_spec::load(dir.path(), &ProcessEnvironment);
    assert!(!loaded.has_errors());
    let ws = loaded.workspace.expect("workspace");
    let (registries, problems) = credentials::resolve(&ws, &ProcessEnvironment);
    assert!(problems.is_empty());
    let client = env.admin();
    let live = pullwarden_kube::read_live(&client, &pullwarden_kube::ReadOptions::default())
        .await
        .expect("read_live");
    let desired = plan::desired(&ws, &registries, &live);
    let plan = plan::plan(
        &ws,
        &desired,
        &live,
        PlanOptions::default(),
        &DigestKey::from_bytes([3; 32]),
    );
    assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
    assert_eq!(
        (plan.changes[0].kind, plan.changes[0].action),
        (ObjectKind::Secret, Action::Create)
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let forged = br#"{"auths":{"evil.example.com":{"username":"x","password":"y","auth":"eDp5"}}}"#;
    secrets
        .create(&PostParams::default(), &ours(&name, forged))
        .await
        .expect("forge");
    let outcomes = pullwarden_kube::apply::apply(
        &client,
        &plan,
        &desired,
        &ApplyOptions::default(),
        &Hooks::default(),
        &|_| {},
    )
    .await;
    match &outcomes[0].status {
        OutcomeStatus::Failed(reason) => {
            assert!(reason.contains("other content"), "{reason}");
        }
        other => panic!("a create met by other content must fail: {other:?}"),
    }
    let left = secrets.get("team-pull").await.expect("get");
    assert_eq!(
        left.data.expect("data")[".dockerconfigjson"].0,
        forged.to_vec(),
        "the object in the way is left as it is"
    );

    // The same content (a concurrent apply of the same workspace): done.
    secrets
        .delete("team-pull", &DeleteParams::default())
        .await
        .expect("delete");
    let wanted = desired.secrets[&(ns.clone(), "team-pull".to_string())]
        .data()
        .expose()
        .as_bytes()
        .to_vec();
    secrets
        .create(&PostParams::default(), &ours(&name, &wanted))
        .await
        .expect("create the same");
    let outcomes = pullwarden_kube::apply::apply(
        &client,
        &plan,
        &desired,
        &ApplyOptions::default(),
        &Hooks::default(),
        &|_| {},
    )
    .await;
    assert_eq!(outcomes[0].status, OutcomeStatus::Done);
}

/// #16.11: a namespace being deleted keeps its objects until the namespace
/// controller removes them; pullwarden plans nothing there (no prune of
/// "no longer declared" objects, no create the server would refuse) and says
/// why, instead of reporting the namespace as missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_terminating_namespace_is_left_alone_and_said_so() {
    let env = TestEnv::shared().await;
    let ns = unique_name("pw-terminating");
    let name = unique_name("pw-terminating-ws");
    env.create_project(&ns).await.expect("project");
    let dir = tempfile::tempdir().expect("tempdir");
    workspace(dir.path(), &name, &ns);
    let ws = path_str(dir.path());
    let applied = common::pullwarden_admin(env, &["apply", ws, "--auto-approve"], &[]).await;
    assert_eq!(applied.code, Some(0), "{applied}");

    // The test control plane runs no namespace controller: a deleted
    // namespace stays Terminating, with its objects, as on a busy cluster.
    Api::<Namespace>::all(env.admin())
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete namespace");
    let phase = Api::<Namespace>::all(env.admin())
        .get(&ns)
        .await
        .expect("get namespace")
        .status
        .and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Terminating"));

    let planned = common::pullwarden_admin(env, &["plan", ws, "--detailed-exitcode"], &[]).await;
    assert_eq!(planned.code, Some(0), "nothing to do, no error: {planned}");
    let said = format!("{}{}", planned.stdout, planned.stderr);
    assert!(
        said.contains(&format!("namespace `{ns}` is being deleted (Terminating)")),
        "{planned}"
    );
    assert!(!said.contains("does not exist"), "{planned}");
    let drift = common::pullwarden_admin(env, &["drift", ws], &[]).await;
    assert_eq!(drift.code, Some(0), "{drift}");
    let apply = common::pullwarden_admin(env, &["apply", ws, "--auto-approve"], &[]).await;
    assert_eq!(apply.code, Some(0), "{apply}");
    assert!(
        Api::<Secret>::namespaced(env.admin(), &ns)
            .get_opt("team-pull")
            .await
            .expect("get")
            .is_some(),
        "nothing was deleted"
    );
}

/// #9: a saved plan records the cluster it was made for (the UID of its
/// `kube-system` namespace) and another cluster refuses it, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_saved_plan_is_refused_by_another_cluster() {
    let env = TestEnv::shared().await;
    let ns = unique_name("pw-othercluster");
    let name = unique_name("pw-othercluster-ws");
    env.create_project(&ns).await.expect("project");
    let dir = tempfile::tempdir().expect("tempdir");
    workspace(dir.path(), &name, &ns);
    let ws = path_str(dir.path()).to_owned();
    let saved_path = dir.path().join("plan.json");
    let saved = path_str(&saved_path).to_owned();
    let planned = common::pullwarden_admin(env, &["plan", &ws, "--out", &saved], &[]).await;
    assert_eq!(planned.code, Some(0), "{planned}");
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved_path).expect("read")).expect("JSON");
    let uid = file["cluster"]["kube_system_uid"]
        .as_str()
        .expect("the saved plan names its cluster")
        .to_owned();
    let kube_system = Api::<Namespace>::all(env.admin())
        .get("kube-system")
        .await
        .expect("kube-system");
    assert_eq!(Some(uid.as_str()), kube_system.metadata.uid.as_deref());

    file["cluster"]["kube_system_uid"] = serde_json::json!("another-cluster");
    std::fs::write(&saved_path, file.to_string()).expect("write");
    let refused = common::pullwarden_admin(
        env,
        &["apply", &ws, "--plan", &saved, "--auto-approve"],
        &[],
    )
    .await;
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(
        refused.stderr.contains("it was made for another cluster"),
        "{refused}"
    );
    assert!(
        Api::<Secret>::namespaced(env.admin(), &ns)
            .get_opt("team-pull")
            .await
            .expect("get")
            .is_none(),
        "nothing was written"
    );

    // The file as saved applies.
    file["cluster"]["kube_system_uid"] = serde_json::json!(uid);
    std::fs::write(&saved_path, file.to_string()).expect("write");
    let applied = common::pullwarden_admin(
        env,
        &["apply", &ws, "--plan", &saved, "--auto-approve"],
        &[],
    )
    .await;
    assert_eq!(applied.code, Some(0), "{applied}");
}
