//! The in-cluster drift `CronJob` of `examples/ci/cronjob/` against a real
//! kube-apiserver: its manifests are accepted (the `CronJob` by the API
//! server's validation; no controller runs it here), and its ServiceAccount,
//! with a TokenRequest token, may run `pullwarden drift` but may not write.
//! Named `cluster_*`: `scripts/test.sh` counts it.

use std::path::PathBuf;
use std::time::Duration;

mod common;

use common::{binary, kubectl, kubectl_ok, path_str, repo, run, token_kubeconfig};
use pullwarden_testenv::{ADMIN_CONTEXT, TestEnv, unique_name};
use serde_json::Value;

const NAMESPACE: &str = "pullwarden-system";
const SERVICE_ACCOUNT: &str = "pullwarden-drift";
const PASSWORD: &str = "Cronjob-Canary-Pw-5b3e91";

/// `kubectl auth can-i VERB RESOURCE [-n NS | -A]` as the `CronJob`'s `ServiceAccount`
/// (impersonated by the admin): "yes" or "no".
async fn can_i(env: &TestEnv, verb: &str, resource: &str, ns: Option<&str>) -> String {
    let subject = format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    let mut args = vec!["auth", "can-i", verb, resource, "--as", &subject];
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("-A"),
    }
    let result = kubectl(env, &args).await;
    let answer = result.stdout.trim().to_owned();
    assert!(answer == "yes" || answer == "no", "{result}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_cronjob_manifests_apply_and_their_identity_runs_drift() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let dir = repo().join("examples/ci/cronjob");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ci/cronjob")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    let names: Vec<String> = manifests
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "01-namespace-and-rbac.yaml",
            "02-workspace-configmap.yaml",
            "03-cronjob.yaml"
        ],
        "the README and this test name these files"
    );

    // 1. Every manifest is accepted by the API server (schema validation,
    // admission). Against an external cluster the CronJob is only
    // dry-run on the server: a real controller would run its (unpublished) image.
    let local = env.control_plane().is_some();
    for manifest in &manifests {
        let mut args = vec!["apply", "--server-side", "-f", path_str(manifest)];
        if !local && manifest.ends_with("03-cronjob.yaml") {
            args.push("--dry-run=server");
        }
        kubectl_ok(env, &args).await;
    }
    if local {
        let cronjob = kubectl_ok(
            env,
            &[
                "-n",
                NAMESPACE,
                "get",
                "cronjob",
                "pullwarden-drift",
                "-o",
                "json",
            ],
        )
        .await;
        let cronjob: Value = serde_json::from_str(&cronjob.stdout).expect("CronJob JSON");
        let job = &cronjob["spec"]["jobTemplate"]["spec"];
        let pod = &job["template"]["spec"];
        assert_eq!(job["backoffLimit"], 0, "{cronjob}");
        assert!(
            cronjob["spec"]["failedJobsHistoryLimit"].as_i64() >= Some(1),
            "{cronjob}"
        );
        assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid", "{cronjob}");
        assert_eq!(pod["restartPolicy"], "Never", "{cronjob}");
        assert_eq!(pod["serviceAccountName"], SERVICE_ACCOUNT, "{cronjob}");
        let args = &pod["containers"][0]["args"];
        assert_eq!(args[0], "drift", "{cronjob}");
        assert_eq!(args[1], "/workspace/workspace.yaml", "{cronjob}");
        // The Job the controller would create from it passes validation too
        // (dry run: nothing is stored, nothing would run).
        kubectl_ok(
            env,
            &[
                "-n",
                NAMESPACE,
                "create",
                "job",
                "--from=cronjob/pullwarden-drift",
                "pullwarden-drift-manual",
                "--dry-run=server",
            ],
        )
        .await;
    }

    // 2. The ServiceAccount may read what drift reads, cluster-wide, and write nothing.
    let mut granted = false;
    for _ in 0..50 {
        if can_i(env, "list", "secrets", None).await == "yes" {
            granted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(granted, "the ClusterRoleBinding took effect within 5 s");
    for resource in [
        "namespaces",
        "secrets",
        "serviceaccounts",
        "rolebindings.rbac.authorization.k8s.io",
    ] {
        assert_eq!(
            can_i(env, "list", resource, None).await,
            "yes",
            "{resource}"
        );
    }
    let ns = unique_name("pw-cronjob");
    kubectl_ok(env, &["create", "namespace", &ns]).await;
    kubectl_ok(env, &["-n", &ns, "create", "serviceaccount", "default"]).await;
    for (verb, resource) in [
        ("create", "secrets"),
        ("update", "secrets"),
        ("patch", "secrets"),
        ("delete", "secrets"),
        ("update", "serviceaccounts"),
        ("create", "serviceaccounts"),
        ("create", "serviceaccounts/token"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("delete", "rolebindings.rbac.authorization.k8s.io"),
        ("bind", "clusterroles/system:image-puller"),
        ("watch", "secrets"),
        ("get", "pods"),
    ] {
        assert_eq!(
            can_i(env, verb, resource, Some(&ns)).await,
            "no",
            "{verb} {resource}"
        );
    }

    // 3. A TokenRequest token for it, in a kubeconfig of its own.
    let token = kubectl_ok(env, &["create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE]).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let sa_kubeconfig = tmp.path().join("drift-kubeconfig");
    token_kubeconfig(env, token.stdout.trim(), &sa_kubeconfig);
    let sa = path_str(&sa_kubeconfig);
    let kubectl_bin = env.kubectl().expect("kubectl");
    let can = run(
        &kubectl_bin,
        &[
            "--kubeconfig",
            sa,
            "auth",
            "can-i",
            "create",
            "secrets",
            "-n",
            &ns,
        ],
        &[],
    )
    .await;
    assert_eq!(can.stdout.trim(), "no", "{can}");
    let whoami = run(&kubectl_bin, &["--kubeconfig", sa, "auth", "whoami"], &[]).await;
    assert!(
        whoami.stdout.contains(&format!(
            "system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
        )),
        "{whoami}"
    );

    // 4. The ConfigMap's own workspace, as stored, drifts-checks as that identity:
    // allowed to read (0 in sync or 2 drift/pending, never 1).
    let stored = kubectl_ok(
        env,
        &[
            "-n",
            NAMESPACE,
            "get",
            "configmap",
            "pullwarden-workspace",
            "-o",
            "json",
        ],
    )
    .await;
    let stored: Value = serde_json::from_str(&stored.stdout).expect("ConfigMap JSON");
    let example = tmp.path().join("workspace.yaml");
    std::fs::write(
        &example,
        stored["data"]["workspace.yaml"]
            .as_str()
            .expect("data.workspace.yaml"),
    )
    .expect("write");
    let quay_token = [("QUAY_TOKEN", PASSWORD)];
    let drift = run(
        binary(),
        &["drift", path_str(&example), "--kubeconfig", sa],
        &quay_token,
    )
    .await;
    assert!(matches!(drift.code, Some(0 | 2)), "{drift}");

    // 5. A small workspace in a unique namespace, applied by the admin: in sync
    // for the drift identity (exit 0); a pull secret deleted out of band is a
    // drift (exit 2, the failed Job); the drift identity cannot repair it.
    let ws_dir = tmp.path().join("ws");
    std::fs::create_dir(&ws_dir).expect("mkdir");
    std::fs::write(
        ws_dir.join("workspace.yaml"),
        common::one_namespace_workspace(
            "cronjob-test",
            &ns,
            "{fromEnv: QUAY_TOKEN}",
            Some("default"),
        ),
    )
    .expect("write");
    let ws = path_str(&ws_dir);
    let admin_kubeconfig = path_str(env.kubeconfig());
    let applied = run(
        binary(),
        &[
            "apply",
            ws,
            "--auto-approve",
            "--kubeconfig",
            admin_kubeconfig,
            "--context",
            ADMIN_CONTEXT,
        ],
        &quay_token,
    )
    .await;
    assert_eq!(applied.code, Some(0), "{applied}");

    let in_sync = run(binary(), &["drift", ws, "--kubeconfig", sa], &quay_token).await;
    assert_eq!(in_sync.code, Some(0), "{in_sync}");
    assert!(in_sync.stdout.contains("In sync"), "{in_sync}");

    kubectl_ok(env, &["-n", &ns, "delete", "secret", "quay-pull"]).await;
    let drifted = run(binary(), &["drift", ws, "--kubeconfig", sa], &quay_token).await;
    assert_eq!(drifted.code, Some(2), "{drifted}");
    assert!(
        drifted.stdout.contains(&format!("Secret {ns}/quay-pull")),
        "{drifted}"
    );

    let refused = run(
        binary(),
        &["apply", ws, "--auto-approve", "--kubeconfig", sa],
        &quay_token,
    )
    .await;
    assert_eq!(refused.code, Some(1), "{refused}");
    let said = format!("{}{}", refused.stdout, refused.stderr).to_lowercase();
    assert!(
        said.contains("forbidden") || said.contains("does not allow"),
        "{refused}"
    );
    let gone = kubectl(env, &["-n", &ns, "get", "secret", "quay-pull"]).await;
    assert_ne!(
        gone.code,
        Some(0),
        "the drift identity wrote a Secret\n{gone}"
    );

    for result in [&drift, &in_sync, &drifted, &refused] {
        let all = format!("{}{}", result.stdout, result.stderr);
        assert!(!all.contains(PASSWORD), "a password in {}", result.what);
    }
}
