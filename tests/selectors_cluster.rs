//! Label selectors against the real control plane: a namespace relabelled
//! into a PullSecret's selector gets its pull secret on the next apply;
//! relabelled out of it, or opted out by the Workspace's exclude selector
//! (`pullwarden.dev/exclude=true`), its secret is pruned. A snapshot keeps
//! the labels, so `plan --live` chooses the same namespaces as the cluster.

mod common;

use common::{kubectl, kubectl_ok, pullwarden_admin};
use pullwarden_testenv::{TestEnv, unique_name};

const PASSWORD: &str = "Selector-Canary-Pw-9b2e71";
const LABEL: &str = "pullwarden-test/pull";

fn workspace(name: &str, a: &str, b: &str, value: &str) -> String {
    format!(
        "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {name}}}
spec:
  namespaces:
    include: [\"{a}\", \"{b}\"]
    exclude:
      - matchLabels: {{pullwarden.dev/exclude: \"true\"}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: quay}}
spec:
  server: quay.io
  username: robot
  password: {{fromFile: password}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: quay-pull}}
spec:
  registries: [quay]
  namespaces:
    - matchLabels: {{{LABEL}: \"{value}\"}}
"
    )
}

/// Whether `quay-pull` exists in `ns`.
async fn has_secret(env: &TestEnv, ns: &str) -> bool {
    let got = kubectl(env, &["-n", ns, "get", "secret", "quay-pull", "-o", "name"]).await;
    match got.code {
        Some(0) => true,
        _ if got.stderr.contains("NotFound") => false,
        _ => panic!("{got}"),
    }
}

async fn apply(env: &TestEnv, ws: &str) {
    let applied = pullwarden_admin(env, &["apply", ws, "--auto-approve"], &[]).await;
    assert_eq!(applied.code, Some(0), "{applied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_selectors_follow_namespace_labels_in_and_out() {
    let env = TestEnv::shared().await;
    let a = unique_name("pw-sel-a");
    let b = unique_name("pw-sel-b");
    // A value of this run's own: namespaces of other tests never match.
    let value = unique_name("v");
    for ns in [&a, &b] {
        kubectl_ok(env, &["create", "namespace", ns]).await;
    }
    let selected = format!("{LABEL}={value}");
    kubectl_ok(env, &["label", "namespace", &a, &selected]).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
    let name = unique_name("sel");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        workspace(&name, &a, &b, &value),
    )
    .unwrap();
    let ws = dir.path().to_str().unwrap();

    // Only the labelled namespace is chosen.
    apply(env, ws).await;
    assert!(has_secret(env, &a).await, "labelled namespace {a}");
    assert!(!has_secret(env, &b).await, "unlabelled namespace {b}");

    // b relabelled into the selector: the next plan has work, and a
    // snapshot (which keeps namespace labels) plans the same.
    kubectl_ok(env, &["label", "namespace", &b, &selected]).await;
    let plan = pullwarden_admin(
        env,
        &["plan", ws, "--format", "json", "--detailed-exitcode"],
        &[],
    )
    .await;
    assert_eq!(plan.code, Some(2), "{plan}");
    let snapshot = dir.path().join("snapshot.json");
    let snap = pullwarden_admin(
        env,
        &["snapshot", "--out", common::path_str(&snapshot)],
        &[],
    )
    .await;
    assert_eq!(snap.code, Some(0), "{snap}");
    let from_snapshot = common::run(
        common::binary(),
        &[
            "plan",
            ws,
            "--live",
            common::path_str(&snapshot),
            "--format",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(from_snapshot.code, Some(0), "{from_snapshot}");
    let creates = |json: &str| -> Vec<(String, String)> {
        let plan: serde_json::Value = serde_json::from_str(json).expect("a JSON plan");
        let mut out: Vec<(String, String)> = plan["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| {
                (
                    c["namespace"].as_str().unwrap_or_default().to_owned(),
                    c["action"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(creates(&plan.stdout), [(b.clone(), "create".to_owned())]);
    assert_eq!(creates(&from_snapshot.stdout), creates(&plan.stdout));
    apply(env, ws).await;
    assert!(
        has_secret(env, &b).await,
        "relabelled into the selector: {b}"
    );

    // a relabelled out of the selector: pruned.
    kubectl_ok(env, &["label", "namespace", &a, &format!("{LABEL}-")]).await;
    apply(env, ws).await;
    assert!(
        !has_secret(env, &a).await,
        "relabelled out of the selector: {a}"
    );
    assert!(has_secret(env, &b).await, "still selected: {b}");

    // b opts out through the Workspace's exclude selector: pruned too.
    kubectl_ok(
        env,
        &["label", "namespace", &b, "pullwarden.dev/exclude=true"],
    )
    .await;
    apply(env, ws).await;
    assert!(!has_secret(env, &b).await, "opted out: {b}");

    // Nothing is left to do, and no output showed the password.
    let settled = pullwarden_admin(env, &["plan", ws, "--detailed-exitcode"], &[]).await;
    assert_eq!(settled.code, Some(0), "{settled}");
    assert!(!settled.stdout.contains(PASSWORD) && !plan.stdout.contains(PASSWORD));
}
