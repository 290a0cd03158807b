//! The small commands: version, completions, man page, and the exit codes of
//! commands whose input is wrong.

use std::process::Command;

fn pullwarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pullwarden")
}

#[test]
fn version_names_the_git_revision() {
    let out = pullwarden(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let revision = text
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(rev, _)| rev.trim_end_matches("-dirty"))
        .expect("`pullwarden X.Y.Z (revision)`");
    assert!(
        revision == "unknown revision"
            || (revision.len() == 12 && revision.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn completions_and_man_page_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = pullwarden(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        for command in [
            "validate", "plan", "apply", "drift", "snapshot", "import", "schema",
        ] {
            assert!(text.contains(command), "{shell} completions lack {command}");
        }
    }
    let man = pullwarden(&["man"]);
    assert!(man.status.success());
    let text = String::from_utf8(man.stdout).unwrap();
    assert!(
        text.starts_with(".ie") || text.contains(".TH"),
        "not roff: {}",
        &text[..80.min(text.len())]
    );
    assert!(text.contains("pullwarden"));
}

#[test]
fn plan_and_drift_fail_cleanly_on_bad_input() {
    // A missing snapshot: exit 1, no panic (101), a message naming the file.
    let out = pullwarden(&[
        "plan",
        "examples/openshift-image-pull-secrets",
        "--live",
        "does-not-exist.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist.yaml"));
    // An invalid workspace: exit 1 before any cluster is contacted.
    let out = pullwarden(&[
        "drift",
        "tests/fixtures/invalid/literal-password",
        "--live",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("literal_password"));
    // An unreachable cluster: exit 1 and one clear sentence.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\nusers:\n- name: u\n  user: {token: not-a-real-token}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .unwrap();
    let out = pullwarden(&[
        "plan",
        "examples/openshift-image-pull-secrets",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("not-a-real-token"), "{stderr}");
}

#[test]
fn quick_start_plans_the_example_against_its_snapshot() {
    let out = pullwarden(&[
        "plan",
        "examples/openshift-image-pull-secrets",
        "--live",
        "examples/live/openshift-image-pull-secrets.yaml",
        "--detailed-exitcode",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "Plan: 5 to create, 0 to update, 0 to replace, 0 to delete; 4 to link, 0 to unlink."
        ),
        "{text}"
    );
    // OpenShift's own entries are never touched.
    assert!(!text.contains("dockercfg-"), "{text}");
}
