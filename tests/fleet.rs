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

#[test]
fn run_refuses_a_workspace_that_names_clusters() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A server nobody answers on: run must refuse before it matters.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: not-a-credential}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .expect("write");
    let (code, stdout, stderr) = pullwarden(&[
        "run",
        "examples/fleet",
        "--metrics-addr",
        "off",
        "--kubeconfig",
        kubeconfig.to_str().expect("UTF-8"),
        "--request-timeout",
        "2s",
    ]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "workspace acme-fleet names clusters (spec.clusters); pullwarden run keeps one cluster"
        ),
        "{stderr}"
    );
}

#[test]
fn a_saved_fleet_plan_covers_every_cluster_and_is_refused_by_the_wrong_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet_plan = dir.path().join("fleet.plan.json");
    let fleet_plan_str = fleet_plan.to_str().expect("UTF-8");
    let (code, stdout, stderr) = pullwarden(&[
        "plan",
        "examples/fleet",
        "--live",
        "examples/live/fleet",
        "--out",
        fleet_plan_str,
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("saved the plan of 3 clusters to"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&fleet_plan).expect("saved plan");
    assert!(!text.contains("FAKE-"), "a credential in the saved plan");
    let saved: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(saved["kind"], "pullwarden saved fleet plan");
    assert_eq!(saved["workspace"], "acme-fleet");
    let names: Vec<&str> = saved["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["dev", "staging", "prod-eu"]);
    for cluster in saved["clusters"].as_array().expect("clusters") {
        assert_eq!(cluster["saved"]["kind"], "pullwarden saved plan");
        assert_eq!(
            cluster["saved"]["secret_digests"]
                .as_object()
                .expect("digests")
                .len(),
            2,
            "{cluster}"
        );
    }

    // A fleet's plan for a workspace without clusters, and the other way round.
    let single = "tests/fixtures/plan/create-fresh/workspace";
    let (code, _, stderr) = pullwarden(&["apply", single, "--plan", fleet_plan_str]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("it was made for a fleet, and workspace"),
        "{stderr}"
    );
    let one_plan = dir.path().join("one.plan.json");
    let (code, _, stderr) = pullwarden(&[
        "plan",
        single,
        "--live",
        "tests/fixtures/plan/create-fresh/live.yaml",
        "--out",
        one_plan.to_str().expect("UTF-8"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let one: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&one_plan).expect("saved")).expect("JSON");
    assert_eq!(
        one["kind"], "pullwarden saved plan",
        "the single-cluster format"
    );
    let (code, _, stderr) = pullwarden(&[
        "apply",
        "examples/fleet",
        "--plan",
        one_plan.to_str().expect("UTF-8"),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("it was made for one cluster, and workspace acme-fleet names clusters"),
        "{stderr}"
    );

    // Another workspace's fleet plan, or one naming a cluster this workspace does not.
    let other = dir.path().join("other.plan.json");
    std::fs::write(&other, text.replace("\"prod-eu\"", "\"prod-us\"")).expect("write");
    let (code, _, stderr) = pullwarden(&[
        "apply",
        "examples/fleet",
        "--plan",
        other.to_str().expect("UTF-8"),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("with clusters this workspace does not name (prod-us)"),
        "{stderr}"
    );
}
