//! `pullwarden validate --check-registries` against real registries
//! (distribution v3.1.2, htpasswd and token auth): a wrong password is an
//! error at the Registry's line, a right one passes, each registry is asked
//! once, and no credential reaches the output.

use std::path::Path;
use std::process::Command;

use pullwarden_testenv::{AccessRule, Registry, User};

const PASSWORD: &str = "check-registries-canary-9d1e";
const WRONG: &str = "check-registries-wrong-4b7c";

fn workspace(dir: &Path, server: &str, user: &str, password: &str) {
    std::fs::write(dir.join("reg.password"), password).expect("write password");
    std::fs::write(
        dir.join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: check}}
spec: {{}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: reg}}
spec:
  server: \"{server}\"
  username: {user}
  password: {{fromFile: reg.password}}
"
        ),
    )
    .expect("write workspace");
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn validate(dir: &Path, ca: &Path, extra: &[&str]) -> Ran {
    let output = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .arg("validate")
        .arg(dir)
        .args(["--check-registries", "--registry-ca"])
        .arg(ca)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pullwarden");
    let ran = Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    for text in [&ran.stdout, &ran.stderr] {
        assert!(!text.contains(PASSWORD) && !text.contains(WRONG), "{text}");
    }
    ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_check_reports_a_rejected_password_at_its_line() {
    let registry = Registry::start_htpasswd(&[User::new("robot", PASSWORD)])
        .await
        .expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    workspace(dir.path(), registry.host(), "robot", PASSWORD);
    let good = validate(dir.path(), registry.ca_file(), &[]);
    assert_eq!(good.code, Some(0), "{}", good.stderr);

    workspace(dir.path(), registry.host(), "robot", WRONG);
    let bad = validate(dir.path(), registry.ca_file(), &["--format", "json"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    let report: serde_json::Value = serde_json::from_str(&bad.stdout).expect("JSON");
    let problem = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .find(|p| p["code"] == "pullwarden::registry::credential_rejected")
        .unwrap_or_else(|| panic!("no rejection in {report:#}"));
    assert!(
        problem["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("workspace.yaml")),
        "{problem:#}"
    );
    assert_eq!(
        problem["line"], 12,
        "at the Registry's password: {problem:#}"
    );

    // Without the CA the registry is not trusted: a warning, not a rejection.
    let untrusted = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .arg("validate")
        .arg(dir.path())
        .arg("--check-registries")
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("could not check the credential"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_check_asks_a_token_registry_once() {
    let registry = Registry::start_token(
        &[User::new("alice", PASSWORD)],
        &[AccessRule::pull("alice", "team-a/*")],
        std::time::Duration::from_secs(300),
    )
    .await
    .expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    workspace(dir.path(), registry.host(), "alice", WRONG);
    let bad = validate(dir.path(), registry.ca_file(), &[]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("the credential was rejected by"),
        "{}",
        bad.stderr
    );
    let requests = registry.token_server().expect("token server").requests();
    let alice: Vec<_> = requests
        .iter()
        .filter(|r| r.user.as_deref() == Some("alice"))
        .collect();
    assert_eq!(alice.len(), 1, "one attempt per registry: {requests:?}");
    assert_eq!(alice[0].status, 401);

    workspace(dir.path(), registry.host(), "alice", PASSWORD);
    let good = validate(dir.path(), registry.ca_file(), &[]);
    assert_eq!(good.code, Some(0), "{}", good.stderr);
}
