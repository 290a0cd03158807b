//! `-q` prints only errors: every failure still says why, on stderr, and
//! nothing else is printed.

use std::process::Command;

fn pullwarden(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env("QUAY_PROD_TOKEN", "FAKE-prod-token")
        .env("QUAY_PREPROD_TOKEN", "FAKE-preprod-token")
        .env_remove("KUBECONFIG")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("run pullwarden");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn quiet_failures_still_say_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("plan.json");
    std::fs::write(&garbage, "not json").expect("write");
    let garbage = garbage.to_str().expect("utf-8 path");
    let (code, stderr) = pullwarden(&[
        "-q",
        "apply",
        "examples/openshift-image-pull-secrets",
        "--plan",
        garbage,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is not a saved plan"), "{stderr:?}");

    let (code, stderr) = pullwarden(&[
        "-q",
        "plan",
        "examples/fleet",
        "--live",
        "examples/live/fleet",
        "--cluster",
        "nope",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("has no such cluster"), "{stderr:?}");
}

#[test]
fn quiet_success_prints_nothing_on_stderr() {
    let (code, stderr) = pullwarden(&[
        "-q",
        "plan",
        "examples/fleet",
        "--live",
        "examples/live/fleet",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
}
