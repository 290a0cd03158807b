//! Facts pullwarden relies on, checked against a real kube-apiserver.
//!
//! Every test here is named `cluster_*`: `scripts/test.sh` counts how many of
//! them passed and fails when that number is zero or below the committed
//! minimum (`crates/pullwarden-testenv/tests/cluster-test-count.min`).

mod facts;
mod lifetime;
mod openshift;
mod rbac;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use pullwarden_testenv::{ADMIN_CONTEXT, KUBE_VERSION, TestEnv, USER_CONTEXT, unique_name};

/// Creates a namespace with a unique name (they never finish deleting here).
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

/// Polls `check` until it returns true (RBAC changes reach the authorizer
/// through an informer, so they take a moment). Returns the last answer.
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

/// The HTTP status of an API error, for asserting on refusals.
fn status_code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn cluster_version_is_the_pinned_version() {
    let env = TestEnv::shared().await;
    let version = env.admin().apiserver_version().await.expect("/version");
    if env.control_plane().is_some() {
        assert_eq!(version.git_version, KUBE_VERSION);
    } else {
        assert!(!version.git_version.is_empty(), "{version:?}");
    }
}

#[tokio::test]
async fn cluster_kubectl_auth_can_i_answers_differently_for_the_two_users() {
    let env = TestEnv::shared().await;
    if env.control_plane().is_none() {
        // an external kubeconfig has no unprivileged context of ours
        return;
    }
    let ns = namespace(env, "pw-cani").await;
    let can_i = |context: &str| {
        let output = std::process::Command::new(env.kubectl().expect("kubectl"))
            .arg("--kubeconfig")
            .arg(env.kubeconfig())
            .args([
                "--context",
                context,
                "auth",
                "can-i",
                "create",
                "secrets",
                "-n",
                &ns,
            ])
            .output()
            .expect("run kubectl");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )
    };
    assert_eq!(can_i(ADMIN_CONTEXT), (Some(0), "yes".to_owned()));
    assert_eq!(can_i(USER_CONTEXT), (Some(1), "no".to_owned()));

    let version = std::process::Command::new(env.kubectl().expect("kubectl"))
        .args(["version", "--client", "-o", "json"])
        .output()
        .expect("run kubectl");
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        text.contains(KUBE_VERSION),
        "kubectl is not at {KUBE_VERSION}: {text}"
    );
}
