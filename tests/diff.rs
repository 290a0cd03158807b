//! `pullwarden diff`: the workspace at a git revision (a temporary
//! repository) or in a folder against now, without a cluster.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;

use common::{binary, path_str, repo};

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn pullwarden(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("pullwarden");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A repository holding the OpenShift example (`ws/`) and its snapshot plus
/// a namespace `project-d` with one ServiceAccount (`live/`).
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    copy_dir(
        &repo().join("examples/openshift-image-pull-secrets"),
        &dir.path().join("ws"),
    );
    std::fs::create_dir(dir.path().join("live")).unwrap();
    std::fs::copy(
        repo().join("examples/live/openshift-image-pull-secrets.yaml"),
        dir.path().join("live/openshift.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("live/project-d.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: project-d, uid: u-d, resourceVersion: '1'}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: project-d, uid: u-sa, resourceVersion: '1'}\n",
    )
    .unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "base"]);
    dir
}

#[test]
fn diff_base_head_1_lists_the_namespaces_a_widened_glob_matches_and_the_access_they_gain() {
    let dir = repository();
    let grants = dir.path().join("ws/grants.yaml");
    let text = std::fs::read_to_string(&grants).unwrap();
    let widened = text.replace(
        "  namespaces: [project-b]\n  to:\n    - allServiceAccountsIn: project-c",
        "  namespaces: [\"project-[bd]\"]\n  to:\n    - allServiceAccountsIn: project-c",
    );
    assert_ne!(widened, text, "the grant was widened");
    std::fs::write(&grants, widened).unwrap();
    git(dir.path(), &["commit", "-q", "-am", "widen"]);

    let (code, stdout, stderr) = pullwarden(
        dir.path(),
        &[
            "diff", "--base", "HEAD~1", "ws", "--live", "live", "--format", "json",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["base"], "HEAD~1");
    assert_eq!(
        report["namespaces"]["added"],
        serde_json::json!(["project-d"])
    );
    assert_eq!(report["namespaces"]["removed"], serde_json::json!([]));
    let changed = &report["declarations"]["changed"];
    assert_eq!(changed.as_array().unwrap().len(), 1, "{stdout}");
    assert_eq!(changed[0]["kind"], "PullGrant");
    assert_eq!(changed[0]["name"], "project-c-pulls-from-b");
    assert_eq!(changed[0]["fields"][0]["field"], "namespaces");
    assert_eq!(changed[0]["fields"][0]["after"], "[project-[bd]]");
    let gained: Vec<(String, String, String)> = report["access"]["gained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["subject"].as_str().unwrap().to_owned(),
                l["kind"].as_str().unwrap().to_owned(),
                l["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Every ServiceAccount of project-c in the snapshot, and the group.
    let mut expected: Vec<(String, String, String)> = ["builder", "default", "deployer"]
        .iter()
        .map(|sa| format!("system:serviceaccount:project-c:{sa}"))
        .chain(["system:serviceaccounts:project-c".to_owned()])
        .map(|s| (s, "project".to_owned(), "project-d".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(gained, expected, "{stdout}");
    assert_eq!(
        report["access"]["gained"][0]["declarations"],
        serde_json::json!(["PullGrant/project-c-pulls-from-b"])
    );
    assert_eq!(report["access"]["lost"], serde_json::json!([]));

    // The text says the same.
    let (code, text, _) = pullwarden(
        dir.path(),
        &["diff", "--base", "HEAD~1", "ws", "--live", "live"],
    );
    assert_eq!(code, 0);
    assert!(text.contains("+ project-d (newly matched)"), "{text}");
    assert!(
        text.contains(
            "+ system:serviceaccount:project-c:default may now pull from project project-d"
        ),
        "{text}"
    );
}

#[test]
fn diff_of_a_removed_pull_secret_loses_its_registries_and_an_unchanged_workspace_moves_nothing() {
    let dir = repository();
    let (code, same, _) = pullwarden(dir.path(), &["diff", "--base", "HEAD", "ws"]);
    assert_eq!(code, 0, "{same}");
    assert!(same.contains("no declaration changed"), "{same}");
    assert!(same.contains("Access: no access change."), "{same}");

    let secrets = dir.path().join("ws/pull-secrets.yaml");
    let text = std::fs::read_to_string(&secrets).unwrap();
    let kept: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| !doc.contains("name: quay-pull"))
        .collect();
    std::fs::write(&secrets, kept.join("\n---\n")).unwrap();
    let base = dir.path().join("base");
    copy_dir(&repo().join("examples/openshift-image-pull-secrets"), &base);
    let (code, stdout, stderr) = pullwarden(
        dir.path(),
        &[
            "diff",
            "--base-path",
            path_str(&base),
            "ws",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["declarations"]["removed"],
        serde_json::json!([{"kind": "PullSecret", "name": "quay-pull"}])
    );
    let lost = &report["access"]["lost"];
    assert_eq!(lost.as_array().unwrap().len(), 1, "{stdout}");
    assert_eq!(
        lost[0]["subject"],
        "system:serviceaccount:project-a:default"
    );
    assert_eq!(lost[0]["kind"], "registry");
    assert_eq!(lost[0]["target"], "quay.io");
    assert_eq!(
        lost[0]["via"],
        serde_json::json!(["Secret project-a/quay-pull"])
    );
}
