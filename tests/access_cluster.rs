//! `pullwarden access` and the access section of plans against a real
//! kube-apiserver (`pullwarden-testenv`) with OpenShift's image roles
//! simulated: the OpenShift example applied as the least-privileged CI
//! identity, then its project-c grant removed. Named `cluster_*`:
//! `scripts/test.sh` counts them.
//!
//! The example needs `project-a`/`-b`/`-c`, which `tests/apply_cluster.rs`
//! creates too: this test runs on a control plane of its own.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

mod common;

use common::{Run, binary, kubectl, path_str, repo, token_kubeconfig};
use pullwarden_testenv::{Options, TestEnv};

async fn run(args: &[&str]) -> Run {
    common::run(binary(), args, &[]).await
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

/// (subject, target) of every line of `kind` in an access JSON list.
fn pairs(lines: &Value, kind: &str) -> BTreeSet<(String, String)> {
    lines
        .as_array()
        .expect("a list")
        .iter()
        .filter(|l| l["kind"] == kind)
        .map(|l| {
            (
                l["subject"].as_str().unwrap().to_owned(),
                l["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn sa(ns: &str, name: &str) -> String {
    format!("system:serviceaccount:{ns}:{name}")
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_access_shows_the_openshift_examples_grants_and_the_plan_their_loss() {
    let env = TestEnv::dedicated(Options::default())
        .await
        .expect("a control plane of its own");
    let controller = env.openshift_sa_controller().expect("OpenShift simulated");
    env.install_openshift_roles().await.expect("roles");
    for project in ["project-a", "project-b", "project-c"] {
        env.create_project(project).await.expect("create project");
        for name in ["default", "builder"] {
            controller
                .link_dockercfg(project, name)
                .await
                .expect("link dockercfg");
        }
    }
    let rbac = repo().join("examples/rbac/pullwarden-ci.yaml");
    let applied = kubectl(&env, &["apply", "--server-side", "-f", path_str(&rbac)]).await;
    assert_eq!(applied.code, Some(0), "{applied}");
    let token = kubectl(
        &env,
        &[
            "create",
            "token",
            "pullwarden-ci",
            "-n",
            "pullwarden-system",
        ],
    )
    .await;
    assert_eq!(token.code, Some(0), "{token}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ci_kubeconfig = tmp.path().join("ci-kubeconfig");
    token_kubeconfig(&env, token.stdout.trim(), &ci_kubeconfig);
    let ci = path_str(&ci_kubeconfig);
    let workspace = tmp.path().join("workspace");
    copy_dir(
        &repo().join("examples/openshift-image-pull-secrets"),
        &workspace,
    );
    let ws = path_str(&workspace);

    // The first plan, as the CI identity: its access section lists the grants.
    let first = run(&["plan", ws, "--format", "json", "--kubeconfig", ci]).await;
    assert_eq!(first.code, Some(0), "{first}");
    let first_plan: Value = serde_json::from_str(&first.stdout).expect("JSON plan");
    let gained = pairs(&first_plan["access"]["gained"], "project");
    let to_b: BTreeSet<(String, String)> = [
        sa("project-a", "default"),
        sa("project-c", "builder"),
        sa("project-c", "default"),
        "system:serviceaccounts:project-c".to_owned(),
    ]
    .into_iter()
    .map(|s| (s, "project-b".to_owned()))
    .collect();
    assert_eq!(gained, to_b, "{first}");
    assert!(first_plan["access"]["lost"].as_array().unwrap().is_empty());

    let apply = run(&["apply", ws, "--auto-approve", "--kubeconfig", ci]).await;
    assert_eq!(apply.code, Some(0), "{apply}");
    assert!(
        apply.stdout.contains("Access: 7 gained, 0 lost."),
        "apply shows the access section\n{apply}"
    );

    // access: who may pull from project-b. Besides the grants, project-b's
    // own ServiceAccounts (OpenShift's system:image-pullers binding); nobody else.
    let access = run(&["access", ws, "--format", "json", "--kubeconfig", ci]).await;
    assert_eq!(access.code, Some(0), "{access}");
    let report: Value = serde_json::from_str(&access.stdout).expect("JSON access");
    assert_eq!(report["format_version"], 1);
    let from_b: BTreeSet<(String, String)> = pairs(&report["pulls"], "project")
        .into_iter()
        .filter(|(_, target)| target == "project-b")
        .collect();
    let mut expected = to_b.clone();
    // (Groups are listed only when the workspace names them: project-c's.)
    for own in [sa("project-b", "default"), sa("project-b", "builder")] {
        expected.insert((own, "project-b".to_owned()));
    }
    assert_eq!(from_b, expected, "{access}");
    // Every project line names its binding.
    for line in report["pulls"].as_array().unwrap() {
        assert!(
            !line["via"].as_array().unwrap().is_empty(),
            "{line} has no granting object"
        );
    }
    // Registries: project-a/default's two pull secrets, project-c/default's one.
    let registries = pairs(&report["pulls"], "registry");
    assert!(
        registries.contains(&(sa("project-a", "default"), "quay.io".to_owned())),
        "{access}"
    );
    assert!(
        !registries
            .iter()
            .any(|(s, _)| *s == sa("project-a", "builder")),
        "a mount link gives no pull: {access}"
    );
    // --explain names the grant's binding; filters narrow.
    let explained = run(&[
        "access",
        ws,
        "--explain",
        "--service-account",
        "project-a/default",
        "--kubeconfig",
        ci,
    ])
    .await;
    assert_eq!(explained.code, Some(0), "{explained}");
    assert!(
        explained.stdout.contains(
            "project-b  (via RoleBinding project-b/pullwarden:openshift-docs:project-a-default-pulls-from-b:system:image-puller)"
        ),
        "{explained}"
    );
    assert!(!explained.stdout.contains("project-c"), "{explained}");
    // --verify: the API server agrees with every project line of every
    // ServiceAccount (as the admin: the CI identity may not create reviews).
    let verified = common::pullwarden_admin(&env, &["access", ws, "--verify"], &[]).await;
    assert_eq!(verified.code, Some(0), "{verified}");
    let checked = pairs(&report["pulls"], "project")
        .iter()
        .filter(|(s, _)| s.starts_with("system:serviceaccount:"))
        .count();
    assert!(checked >= 5, "{checked}");
    assert!(
        verified
            .stderr
            .contains(&format!("verify: {checked} SubjectAccessReview requests"))
            && verified.stderr.contains(", 0 disagreements"),
        "{verified}"
    );

    // Remove the project-c grant: the plan's access section says exactly
    // that project-c's ServiceAccounts lose project-b.
    let grants = workspace.join("grants.yaml");
    let text = std::fs::read_to_string(&grants).unwrap();
    let kept: Vec<&str> = text
        .split("\n---\n")
        .filter(|doc| !doc.contains("name: project-c-pulls-from-b"))
        .collect();
    assert_eq!(kept.len(), 1, "one grant left");
    std::fs::write(&grants, kept.join("\n---\n")).unwrap();
    let removed = run(&["plan", ws, "--format", "json", "--kubeconfig", ci]).await;
    assert_eq!(removed.code, Some(0), "{removed}");
    let plan: Value = serde_json::from_str(&removed.stdout).expect("JSON plan");
    assert!(
        plan["access"]["gained"].as_array().unwrap().is_empty(),
        "{removed}"
    );
    let lost = pairs(&plan["access"]["lost"], "project");
    let project_c: BTreeSet<(String, String)> = to_b
        .iter()
        .filter(|(s, _)| s.contains("project-c"))
        .cloned()
        .collect();
    assert_eq!(lost, project_c, "{removed}");
    assert!(pairs(&plan["access"]["lost"], "registry").is_empty());
    for line in plan["access"]["lost"].as_array().unwrap() {
        assert_eq!(
            line["declarations"][0], "PullGrant/project-c-pulls-from-b (no longer declared)",
            "{line}"
        );
    }
    let text_plan = run(&["plan", ws, "--kubeconfig", ci]).await;
    assert!(
        text_plan.stdout.contains("Access: 0 gained, 3 lost."),
        "{text_plan}"
    );
    assert!(
        text_plan.stdout.contains(
            "- system:serviceaccount:project-c:default may no longer pull from project project-b"
        ),
        "{text_plan}"
    );

    // Credentials that may not list roles: the plan works, the section says why.
    let narrow = tmp.path().join("narrow.yaml");
    std::fs::write(
        &narrow,
        std::fs::read_to_string(&rbac).unwrap().replace(
            "resources: [roles, clusterroles, clusterrolebindings]",
            "resources: [roles]",
        ),
    )
    .unwrap();
    let applied = kubectl(
        &env,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            path_str(&narrow),
        ],
    )
    .await;
    assert_eq!(applied.code, Some(0), "{applied}");
    let unavailable = run(&["plan", ws, "--kubeconfig", ci]).await;
    assert_eq!(unavailable.code, Some(0), "{unavailable}");
    assert!(
        unavailable
            .stdout
            .contains("Access: unavailable: the credentials may not list the RBAC objects"),
        "{unavailable}"
    );
}
