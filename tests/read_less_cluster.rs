//! #13: pullwarden lists only docker-config Secrets, yet a Secret of another
//! type holding a name the workspace wants is still found (looked up by
//! name) and is a conflict at plan time, which nothing writes to; a saved
//! plan that would create that name is refused once such a Secret appears.

use std::path::Path;

mod common;

use common::{kubectl, kubectl_ok, one_namespace_workspace, path_str, pullwarden_admin};
use pullwarden_testenv::{TestEnv, unique_name};
use serde_json::Value;

/// A workspace for `ns` (PullSecret `quay-pull` linked to `default`) in `dir`.
async fn workspace_for(env: &TestEnv, dir: &Path, ns: &str) {
    kubectl_ok(env, &["create", "namespace", ns]).await;
    kubectl_ok(env, &["-n", ns, "create", "serviceaccount", "default"]).await;
    std::fs::write(dir.join("password"), "read-less-fake-password\n").unwrap();
    std::fs::write(
        dir.join("workspace.yaml"),
        one_namespace_workspace(&unique_name("pw-rl-ws"), ns, "{fromFile: password}", None),
    )
    .unwrap();
}

/// An Opaque Secret `quay-pull` (the name the workspace wants) in `ns`, as
/// `kubectl get -o json` shows it.
async fn opaque_quay_pull(env: &TestEnv, ns: &str) -> Value {
    kubectl_ok(
        env,
        &[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "quay-pull",
            "--from-literal=config=not-a-docker-config",
        ],
    )
    .await;
    let got = kubectl_ok(env, &["-n", ns, "get", "secret", "quay-pull", "-o", "json"]).await;
    let secret: Value = serde_json::from_str(&got.stdout).expect("JSON");
    assert_eq!(secret["type"], "Opaque");
    secret
}

async fn get_quay_pull(env: &TestEnv, ns: &str) -> Value {
    let got = kubectl(env, &["-n", ns, "get", "secret", "quay-pull", "-o", "json"]).await;
    assert_eq!(got.code, Some(0), "{got}");
    serde_json::from_str(&got.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_an_opaque_secret_holding_a_wanted_name_is_a_conflict() {
    let env = TestEnv::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let ns = unique_name("pw-read-less");
    workspace_for(env, dir.path(), &ns).await;
    let before = opaque_quay_pull(env, &ns).await;
    let ws = path_str(dir.path());
    let conflict = format!("Secret {ns}/quay-pull exists and is not managed by pullwarden");

    let plan = pullwarden_admin(env, &["plan", ws, "-v"], &[]).await;
    assert_eq!(plan.code, Some(1), "{plan}");
    assert!(plan.stdout.contains(&conflict), "{plan}");
    assert!(
        plan.stderr.contains("(1 secret names looked up)"),
        "exactly the one wanted name the filtered read did not find: {plan}"
    );
    let json = pullwarden_admin(env, &["plan", ws, "--format", "json"], &[]).await;
    assert_eq!(json.code, Some(1), "{json}");
    let json: Value = serde_json::from_str(&json.stdout).expect("plan JSON");
    let errors = json["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|e| e["code"] == "pullwarden::plan::conflict"
                && e["message"].as_str().is_some_and(|m| m.contains(&conflict))),
        "{errors:?}"
    );

    let drift = pullwarden_admin(env, &["drift", ws], &[]).await;
    assert_eq!(
        drift.code,
        Some(1),
        "drift reports the conflict as an error: {drift}"
    );

    let apply = pullwarden_admin(env, &["apply", ws, "--auto-approve"], &[]).await;
    assert_eq!(apply.code, Some(1), "{apply}");
    assert!(apply.stdout.contains(&conflict), "{apply}");
    assert_eq!(
        get_quay_pull(env, &ns).await,
        before,
        "the Opaque Secret is byte-identical"
    );

    // --adopt sees its type: taking it over means replacing it
    let adopt = pullwarden_admin(env, &["plan", ws, "--adopt", "--format", "json"], &[]).await;
    assert_eq!(adopt.code, Some(0), "{adopt}");
    let adopt: Value = serde_json::from_str(&adopt.stdout).expect("plan JSON");
    let secret_change = adopt["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["kind"] == "Secret" && c["name"] == "quay-pull")
        .cloned()
        .expect("a change for quay-pull");
    assert_eq!(secret_change["action"], "replace", "{secret_change}");
    assert_eq!(get_quay_pull(env, &ns).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_saved_create_is_refused_once_an_opaque_secret_takes_the_name() {
    let env = TestEnv::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let ns = unique_name("pw-read-less-saved");
    workspace_for(env, dir.path(), &ns).await;
    let ws = path_str(dir.path());
    let saved = dir.path().join("plan.json");

    let plan = pullwarden_admin(env, &["plan", ws, "--out", path_str(&saved)], &[]).await;
    assert_eq!(plan.code, Some(0), "{plan}");
    assert!(plan.stdout.contains("create  Secret quay-pull"), "{plan}");
    let before = opaque_quay_pull(env, &ns).await;

    let apply = pullwarden_admin(env, &["apply", ws, "--plan", path_str(&saved)], &[]).await;
    assert_eq!(apply.code, Some(1), "{apply}");
    assert!(apply.stderr.contains("refusing the saved plan"), "{apply}");
    assert_eq!(
        get_quay_pull(env, &ns).await,
        before,
        "the Opaque Secret is byte-identical"
    );
}
