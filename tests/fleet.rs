//! Fleets without a cluster: examples/fleet planned and drift-checked
//! against its committed per-cluster snapshots (examples/live/fleet/), the
//! way the CI examples run it. The same behaviour against real control
//! planes is in `fleet_cluster.rs`.

use std::process::Command;

fn pullwarden(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env("QUAY_PROD_TOKEN", "FAKE-prod-token")
        .env("QUAY_PREPROD_TOKEN", "FAKE-preprod-token")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run pullwarden");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The text between `=== cluster NAME ===` and the next heading or the summary.
fn section<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("=== cluster {name} ===\n"))
        .unwrap_or_else(|| panic!("no section for {name}:\n{text}"));
    let rest = &text[start + 1..];
    let end = rest
        .find("=== cluster ")
        .or_else(|| rest.find("Fleet: "))
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn the_fleet_example_plans_a_section_per_cluster_from_its_snapshots() {
    let (code, stdout, stderr) = pullwarden(&[
        "plan",
        "examples/fleet",
        "--live",
        "examples/live/fleet",
        "--detailed-exitcode",
    ]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    for name in ["dev", "staging"] {
        let part = section(&stdout, name);
        assert!(part.contains("Secret quay-preprod"), "{name}:\n{part}");
        assert!(!part.contains("quay-prod "), "{name}:\n{part}");
    }
    let prod = section(&stdout, "prod-eu");
    assert!(prod.contains("Secret quay-prod "), "{prod}");
    assert!(!prod.contains("quay-preprod"), "{prod}");
    // The grant names no clusters: every cluster gets it.
    for name in ["dev", "staging", "prod-eu"] {
        assert!(
            section(&stdout, name).contains("payments-pull-shared-images"),
            "{name}"
        );
    }
    // Opted out by its label on dev.
    assert!(!stdout.contains("payments-sandbox"), "{stdout}");
    assert!(
        stdout.contains(
            "Plan: 9 to create, 0 to update, 0 to replace, 0 to delete; 6 to link, 0 to unlink."
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("FAKE-"), "a credential in the plan");
}

#[test]
fn the_cluster_flag_narrows_and_an_unknown_name_or_context_is_refused() {
    let (code, stdout, stderr) = pullwarden(&[
        "plan",
        "examples/fleet",
        "--live",
        "examples/live/fleet",
        "--cluster",
        "prod-eu",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let clusters = doc["clusters"].as_array().expect("clusters");
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0]["name"], "prod-eu");
    assert_eq!(clusters[0]["context"], "prod-eu-admin");
    assert_eq!(clusters[0]["status"], "planned");
    assert_eq!(doc["summary"]["create"], 3);

    let (code, _, stderr) = pullwarden(&["plan", "examples/fleet", "--cluster", "qa"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--cluster qa: workspace acme-fleet has no such cluster (it names dev, staging, prod-eu)"),
        "{stderr}"
    );
    let (code, _, stderr) = pullwarden(&["plan", "examples/fleet", "--context", "dev"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--context cannot be used"), "{stderr}");
    let (code, _, stderr) = pullwarden(&[
        "plan",
        "tests/fixtures/plan/create-fresh/workspace",
        "--cluster",
        "dev",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("names no clusters"), "{stderr}");
}

#[test]
fn a_missing_snapshot_fails_its_cluster_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["dev", "prod-eu"] {
        std::fs::copy(
            format!("examples/live/fleet/{name}.yaml"),
            dir.path().join(format!("{name}.yaml")),
        )
        .expect("copy");
    }
    let live = dir.path().to_str().expect("UTF-8");
    let (code, stdout, stderr) = pullwarden(&["plan", "examples/fleet", "--live", live]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let staging = section(&stdout, "staging");
    assert!(
        staging.contains("error: no snapshot of cluster staging"),
        "{staging}"
    );
    assert!(
        staging.contains("Nothing was planned on this cluster."),
        "{staging}"
    );
    assert!(section(&stdout, "prod-eu").contains("Secret quay-prod "));
    assert!(
        stderr.contains("[staging] pullwarden: no snapshot"),
        "{stderr}"
    );

    let (code, stdout, _) = pullwarden(&[
        "plan",
        "examples/fleet",
        "--live",
        live,
        "--format",
        "markdown",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("| `staging` | :x: error: not planned |"),
        "{stdout}"
    );
    assert!(stdout.contains("#### cluster `prod-eu`"), "{stdout}");
}

#[test]
fn drift_of_the_fleet_example_names_every_cluster_in_junit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("drift.xml");
    let (code, stdout, stderr) = pullwarden(&[
        "drift",
        "examples/fleet",
        "--live",
        "examples/live/fleet",
        "--junit",
        junit.to_str().expect("UTF-8"),
    ]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    for name in ["dev", "staging", "prod-eu"] {
        assert!(
            xml.contains(&format!("<testsuite name=\"cluster {name}\"")),
            "{xml}"
        );
        assert!(section(&stdout, name).contains("Pending work"), "{stdout}");
    }
}
