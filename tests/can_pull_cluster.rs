//! `pullwarden can-pull` against the real control plane and real registries
//! (distribution v3.1.2: htpasswd, and token auth with per-user rules): a
//! ServiceAccount linked through pullwarden pulls (`--probe`), a wrong
//! password, no access and not found are told apart, a pod created before
//! its ServiceAccount was linked is reported as such, and a cross-project
//! pull from OpenShift's integrated registry names the granting RoleBinding.
//! Every test is named `cluster_*`: `scripts/test.sh` counts them.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use pullwarden_testenv::{AccessRule, Registry, TestEnv, User, unique_name};
use serde_json::Value;

mod common;

use common::{Run, path_str};

const PASSWORD: &str = "can-pull-canary-password-7f3a";

async fn pullwarden(env: &TestEnv, args: &[&str]) -> Run {
    common::pullwarden_admin(env, args, &[]).await
}

async fn service_account(env: &TestEnv, ns: &str, name: &str) {
    let api: Api<ServiceAccount> = Api::namespaced(env.admin(), ns);
    if api.get_opt(name).await.expect("get sa").is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        api.create(&PostParams::default(), &sa)
            .await
            .expect("create sa");
    }
}

fn workspace(dir: &Path, name: &str, ns: &str, server: &str, user: &str, password: &str) {
    std::fs::write(dir.join("reg.password"), password).expect("write password");
    std::fs::write(
        dir.join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {name}}}
spec: {{prune: true}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: reg}}
spec:
  server: \"{server}\"
  username: {user}
  password: {{fromFile: reg.password}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: team-pull}}
spec:
  registries: [reg]
  namespaces: [{ns}]
  serviceAccounts: [{{name: default}}]
"
        ),
    )
    .expect("write workspace");
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run}"))
}

fn no_canary(run: &Run) {
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(PASSWORD), "a password in the output: {run}");
        assert!(
            !text.contains("wrong-password"),
            "a password in the output: {run}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_can_pull_probes_a_linked_account_and_tells_outcomes_apart() {
    let env = TestEnv::shared().await;
    let registry = Registry::start_htpasswd(&[User::new("robot", PASSWORD)])
        .await
        .expect("registry");
    registry
        .push_tiny_image("team-a/app", "v1")
        .await
        .expect("push");
    let ns = unique_name("pw-canpull");
    let name = unique_name("pw-canpull-ws");
    env.create_project(&ns).await.expect("project");
    service_account(env, &ns, "default").await;
    let image = format!("{}/team-a/app:v1", registry.host());
    // A pod created before pullwarden links the ServiceAccount.
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("early".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.clone()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    Api::<Pod>::namespaced(env.admin(), &ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");

    let dir = tempfile::tempdir().expect("tempdir");
    let ws = path_str(dir.path()).to_owned();
    workspace(dir.path(), &name, &ns, registry.host(), "robot", PASSWORD);
    let applied = pullwarden(env, &["apply", &ws, "--auto-approve"]).await;
    assert_eq!(applied.code, Some(0), "{applied}");

    let sa = format!("{ns}/default");
    let ca = path_str(registry.ca_file()).to_owned();
    let probe = |image: String, who: &'static str, whom: String| {
        let ca = ca.clone();
        async move {
            pullwarden(
                env,
                &[
                    "can-pull",
                    &image,
                    who,
                    &whom,
                    "--probe",
                    "--registry-ca",
                    &ca,
                    "--format",
                    "json",
                ],
            )
            .await
        }
    };

    // Linked through pullwarden: pulls.
    let pulls = probe(image.clone(), "--service-account", sa.clone()).await;
    assert_eq!(pulls.code, Some(0), "{pulls}");
    let answer = json(&pulls);
    assert_eq!(answer["verdict"], "pull", "{answer:#}");
    assert_eq!(answer["pullSecrets"], serde_json::json!(["team-pull"]));
    assert_eq!(answer["candidates"][0]["secret"], "team-pull");
    assert_eq!(answer["candidates"][0]["registryKey"], registry.host());
    assert_eq!(answer["candidates"][0]["probe"]["outcome"], "pullable");
    no_canary(&pulls);

    // The text form says the same, without a password.
    let text = pullwarden(env, &["can-pull", &image, "--service-account", &sa]).await;
    assert_eq!(text.code, Some(0), "{text}");
    assert!(text.stdout.contains("1. Secret team-pull"), "{text}");
    assert!(text.stdout.contains("not visible to pullwarden"), "{text}");
    no_canary(&text);

    // Not found is not "no access" nor "rejected".
    let missing = probe(
        format!("{}/team-a/app:nope", registry.host()),
        "--service-account",
        sa.clone(),
    )
    .await;
    assert_eq!(missing.code, Some(2), "{missing}");
    assert_eq!(
        json(&missing)["candidates"][0]["probe"]["outcome"],
        "notFound"
    );

    // The pod created before the link never got the secret, and says why.
    let early = probe(image.clone(), "--pod", format!("{ns}/early")).await;
    assert_eq!(early.code, Some(2), "{early}");
    let answer = json(&early);
    assert_eq!(answer["pullSecrets"], serde_json::json!([]), "{answer:#}");
    let reasons = answer["reasons"].to_string();
    assert!(
        reasons.contains("now lists team-pull, which this pod does not have"),
        "{answer:#}"
    );
    assert_eq!(
        answer["anonymousProbe"]["outcome"],
        "authenticationRequired"
    );
    let early_text = pullwarden(
        env,
        &[
            "can-pull",
            &image,
            "--pod",
            &format!("{ns}/early"),
            "--probe",
            "--registry-ca",
            &ca,
        ],
    )
    .await;
    assert_eq!(early_text.code, Some(2), "{early_text}");
    for line in [
        "note: no credential applies: the runtime pulls anonymously",
        "anonymous pull: authentication required",
        "verdict: it will NOT pull",
    ] {
        assert!(early_text.stdout.contains(line), "{line:?} in {early_text}");
    }

    // A wrong password rolled out: the registry rejects it.
    workspace(
        dir.path(),
        &name,
        &ns,
        registry.host(),
        "robot",
        "wrong-password",
    );
    let applied = pullwarden(env, &["apply", &ws, "--auto-approve"]).await;
    assert_eq!(applied.code, Some(0), "{applied}");
    let rejected = probe(image.clone(), "--service-account", sa.clone()).await;
    assert_eq!(rejected.code, Some(2), "{rejected}");
    assert_eq!(
        json(&rejected)["candidates"][0]["probe"]["outcome"],
        "credentialRejected"
    );
    no_canary(&rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_can_pull_tells_no_access_from_not_found_on_a_token_registry() {
    let env = TestEnv::shared().await;
    let registry = Registry::start_token(
        &[User::new("alice", PASSWORD)],
        &[AccessRule::pull("alice", "team-a/*")],
        std::time::Duration::from_secs(300),
    )
    .await
    .expect("registry");
    for repo in ["team-a/app", "team-b/app"] {
        registry.push_tiny_image(repo, "v1").await.expect("push");
    }
    let ns = unique_name("pw-canpull-token");
    let name = unique_name("pw-canpull-token-ws");
    env.create_project(&ns).await.expect("project");
    service_account(env, &ns, "default").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = path_str(dir.path()).to_owned();
    workspace(dir.path(), &name, &ns, registry.host(), "alice", PASSWORD);
    let applied = pullwarden(env, &["apply", &ws, "--auto-approve"]).await;
    assert_eq!(applied.code, Some(0), "{applied}");
    let sa = format!("{ns}/default");
    let ca = path_str(registry.ca_file()).to_owned();
    let outcome = |repo_tag: &str| {
        let image = format!("{}/{repo_tag}", registry.host());
        let sa = sa.clone();
        let ca = ca.clone();
        async move {
            let run = pullwarden(
                env,
                &[
                    "can-pull",
                    &image,
                    "--service-account",
                    &sa,
                    "--probe",
                    "--registry-ca",
                    &ca,
                    "--format",
                    "json",
                ],
            )
            .await;
            no_canary(&run);
            let answer = json(&run);
            (
                run.code,
                answer["candidates"][0]["probe"]["outcome"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    assert_eq!(outcome("team-a/app:v1").await, (Some(0), "pullable".into()));
    assert_eq!(outcome("team-b/app:v1").await, (Some(2), "noAccess".into()));
    assert_eq!(outcome("team-a/app:v9").await, (Some(2), "notFound".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_can_pull_from_another_project_names_the_granting_binding() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let images = unique_name("pw-canpull-images");
    let granted = unique_name("pw-canpull-granted");
    let other = unique_name("pw-canpull-other");
    let name = unique_name("pw-canpull-grant-ws");
    for ns in [&images, &granted, &other] {
        env.create_project(ns).await.expect("project");
        service_account(env, ns, "default").await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {name}}}
spec: {{prune: true}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata: {{name: shared}}
spec:
  namespaces: [{images}]
  to: [{{serviceAccount: {granted}/default}}]
"
        ),
    )
    .expect("write workspace");
    let ws = path_str(dir.path()).to_owned();
    let applied = pullwarden(env, &["apply", &ws, "--auto-approve"]).await;
    assert_eq!(applied.code, Some(0), "{applied}");
    let image = format!("image-registry.openshift-image-registry.svc:5000/{images}/app:latest");
    let ask = |who: String| {
        let image = image.clone();
        async move {
            pullwarden(
                env,
                &[
                    "can-pull",
                    &image,
                    "--service-account",
                    &who,
                    "--format",
                    "json",
                ],
            )
            .await
        }
    };
    let mut allowed = None;
    for _ in 0..50 {
        let run = ask(format!("{granted}/default")).await;
        if run.code == Some(0) {
            allowed = Some(run);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let allowed = allowed.expect("the granted ServiceAccount may pull within 5 s");
    let answer = json(&allowed);
    assert_eq!(answer["project"]["allowed"], true, "{answer:#}");
    let grants = answer["project"]["grantedBy"].to_string();
    assert!(
        grants.contains(&format!(
            "RoleBinding {images}/pullwarden:{name}:shared:system:image-puller"
        )),
        "{answer:#}"
    );
    let denied = ask(format!("{other}/default")).await;
    assert_eq!(denied.code, Some(2), "{denied}");
    let answer = json(&denied);
    assert_eq!(answer["project"]["allowed"], false, "{answer:#}");
    assert_eq!(answer["project"]["grantedBy"], serde_json::json!([]));
}
