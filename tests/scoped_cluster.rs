//! Namespace-scoped credentials: an identity that may work only inside one
//! namespace cannot list the cluster, so pullwarden reads the namespaces the
//! workspace names, one by one, and still plans and applies there.

use std::path::Path;
use std::process::Stdio;

use pullwarden_testenv::{ADMIN_CONTEXT, TestEnv, unique_name};
use serde_json::json;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(program: &Path, args: &[&str]) -> Run {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(program)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("child finished in time")
    .expect("child ran");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn kubectl(env: &TestEnv, args: &[&str]) -> Run {
    let kubectl = env.kubectl().expect("kubectl");
    let kubeconfig = env.kubeconfig().to_str().expect("UTF-8 path");
    let mut all = vec!["--kubeconfig", kubeconfig, "--context", ADMIN_CONTEXT];
    all.extend(args);
    let result = run(&kubectl, &all).await;
    assert_eq!(result.code, Some(0), "kubectl {args:?}: {}", result.stderr);
    result
}

fn token_kubeconfig(env: &TestEnv, token: &str, path: &Path) {
    let config = kube::config::Kubeconfig::read_from(env.kubeconfig()).expect("kubeconfig");
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == ADMIN_CONTEXT)
        .and_then(|c| c.context.clone())
        .expect("admin context");
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .expect("admin cluster");
    let value = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "scoped", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "scoped"}}],
        "current-context": "c",
    });
    std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_namespace_scoped_credentials_read_the_named_namespaces() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let ns = unique_name("pw-scoped");
    kubectl(env, &["create", "namespace", &ns]).await;
    kubectl(env, &["-n", &ns, "create", "serviceaccount", "default"]).await;
    kubectl(env, &["-n", &ns, "create", "serviceaccount", "deployer"]).await;
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
    kubectl(env, &["apply", "-f", rbac_file.to_str().unwrap()]).await;
    let token = kubectl(env, &["-n", &ns, "create", "token", "deployer"]).await;
    let scoped = dir.path().join("kubeconfig");
    token_kubeconfig(env, token.stdout.trim(), &scoped);

    std::fs::write(dir.path().join("password"), "scoped-fake-password\n").unwrap();
    std::fs::write(
        dir.path().join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: scoped}}
spec:
  namespaces: {{include: [\"{ns}\"]}}
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
  namespaces: [\"{ns}\"]
  serviceAccounts: [{{name: default}}]
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata: {{name: default-pulls}}
spec:
  namespaces: [\"{ns}\"]
  to: [{{serviceAccount: {ns}/default}}]
"
        ),
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
    )
    .await;
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    assert!(
        env.can_pull(&ns, "default", &ns)
            .await
            .expect("SubjectAccessReview")
    );
}
