//! Namespace-scoped credentials: an identity that may work only inside one
//! namespace cannot list the cluster, so pullwarden reads the namespaces the
//! workspace names, one by one, and still plans and applies there.

use std::path::Path;

mod common;

use common::{kubectl_ok, run, token_kubeconfig};
use pullwarden_testenv::{TestEnv, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_namespace_scoped_credentials_read_the_named_namespaces() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let ns = unique_name("pw-scoped");
    kubectl_ok(env, &["create", "namespace", &ns]).await;
    kubectl_ok(env, &["-n", &ns, "create", "serviceaccount", "default"]).await;
    kubectl_ok(env, &["-n", &ns, "create", "serviceaccount", "deployer"]).await;
    let rbac = format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pullwarden, namespace: {ns}}}
rules:
- apiGroups: [""]
  resources: [secrets, serviceaccounts]
  verbs: [get, list, create, update, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  verbs: [get, list, create, update, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  verbs: [bind]
  resourceNames: [system:image-puller]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: pullwarden, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pullwarden}}
subjects: [{{kind: ServiceAccount, name: deployer, namespace: {ns}}}]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let rbac_file = dir.path().join("rbac.yaml");
    std::fs::write(&rbac_file, rbac).unwrap();
    kubectl_ok(env, &["apply", "-f", rbac_file.to_str().unwrap()]).await;
    let token = kubectl_ok(env, &["-n", &ns, "create", "token", "deployer"]).await;
    let scoped = dir.path().join("kubeconfig");
    token_kubeconfig(env, token.stdout.trim(), &scoped);

    std::fs::write(dir.path().join("password"), "scoped-fake-password\n").unwrap();
    std::fs::write(
        dir.path().join("workspace.yaml"),
        common::one_namespace_workspace("scoped", &ns, "{fromFile: password}", Some("default")),
    )
    .unwrap();
    let ws = dir.path().join("workspace.yaml");
    let ws_arg = ws.to_str().unwrap();
    let kubeconfig = scoped.to_str().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_pullwarden"));

    let plan = run(
        binary,
        &[
            "plan",
            ws_arg,
            "--detailed-exitcode",
            "--kubeconfig",
            kubeconfig,
        ],
        &[],
    )
    .await;
    assert_eq!(plan.code, Some(2), "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stderr.contains("cannot read the cluster as a whole"),
        "{}",
        plan.stderr
    );
    assert!(plan.stdout.contains("Plan: 2 to create"), "{}", plan.stdout);
    let apply = run(
        binary,
        &[
            "apply",
            ws_arg,
            "--auto-approve",
            "--kubeconfig",
            kubeconfig,
        ],
        &[],
    )
    .await;
    assert_eq!(apply.code, Some(0), "{}{}", apply.stdout, apply.stderr);
    let again = run(
        binary,
        &[
            "plan",
            ws_arg,
            "--detailed-exitcode",
            "--kubeconfig",
            kubeconfig,
        ],
        &[],
    )
    .await;
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    assert!(
        env.can_pull(&ns, "default", &ns)
            .await
            .expect("SubjectAccessReview")
    );
}
