//! Helpers shared by the root package's cluster tests: running the real
//! `pullwarden` binary and the kubectl built at the server's version against
//! the test control plane, and kubeconfigs for ServiceAccount tokens.
#![allow(dead_code)] // each test binary uses its own subset

use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pullwarden_testenv::{ADMIN_CONTEXT, TestEnv};
use serde_json::json;

pub const CHILD_TIMEOUT: Duration = Duration::from_secs(180);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A finished child process.
pub struct Run {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs a program to completion (no terminal, no colour, no inherited
/// `KUBECONFIG` or GitHub Actions environment), with extra variables.
pub async fn run(program: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
    let what = format!(
        "{} {}",
        program.file_name().unwrap_or_default().to_string_lossy(),
        args.join(" ")
    );
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(CHILD_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("`{what}` did not finish in {CHILD_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    Run {
        what,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The `pullwarden` binary under test.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pullwarden"))
}

/// `pullwarden ARGS --kubeconfig <admin kubeconfig> --context pullwarden-admin`.
pub async fn pullwarden_admin(env: &TestEnv, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
    let mut all = args.to_vec();
    all.extend([
        "--kubeconfig",
        path_str(env.kubeconfig()),
        "--context",
        ADMIN_CONTEXT,
    ]);
    run(binary(), &all, extra_env).await
}

/// The kubectl built at the server's version, as the admin.
pub async fn kubectl(env: &TestEnv, args: &[&str]) -> Run {
    let kubectl = env.kubectl().expect("kubectl");
    let mut all = vec![
        "--kubeconfig",
        path_str(env.kubeconfig()),
        "--context",
        ADMIN_CONTEXT,
    ];
    all.extend(args);
    run(&kubectl, &all, &[]).await
}

/// `kubectl ARGS` as the admin; must succeed.
pub async fn kubectl_ok(env: &TestEnv, args: &[&str]) -> Run {
    let result = kubectl(env, args).await;
    assert_eq!(result.code, Some(0), "{result}");
    result
}

/// A kubeconfig for the admin context's server and CA, authenticating with `token`.
pub fn token_kubeconfig(env: &TestEnv, token: &str, path: &Path) {
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
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "token-user", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": "cluster", "user": "token-user"}}],
        "current-context": "token",
    });
    std::fs::write(path, serde_json::to_string_pretty(&value).expect("json")).expect("write");
}

/// A workspace scoped to one namespace: a Registry `quay` whose password is
/// `password` (a YAML value such as `{fromFile: password}`), a PullSecret
/// `quay-pull` linked to `default`, and, when `grant_to` names a service
/// account of that namespace, a `PullGrant` `<grant_to>-pulls` of
/// `system:image-puller` to it.
pub fn one_namespace_workspace(
    name: &str,
    ns: &str,
    password: &str,
    grant_to: Option<&str>,
) -> String {
    let mut text = format!(
        "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {name}}}
spec:
  namespaces: {{include: [\"{ns}\"]}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: quay}}
spec:
  server: quay.io
  username: robot
  password: {password}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: quay-pull}}
spec:
  registries: [quay]
  namespaces: [\"{ns}\"]
  serviceAccounts: [{{name: default}}]
"
    );
    if let Some(sa) = grant_to {
        let _ = write!(
            text,
            "---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata: {{name: {sa}-pulls}}
spec:
  namespaces: [\"{ns}\"]
  to: [{{serviceAccount: {ns}/{sa}}}]
"
        );
    }
    text
}
