//! Fleets against real control planes: three started at once by the test
//! environment ([`Fleet`]), one kubeconfig with a context per control plane.
//! A PullSecret limited to clusters labelled `env=prod` lands only there, one
//! limited by name only on those, a grant without `clusters` everywhere;
//! drift on one cluster is reported under its name; a namespace relabelled
//! into a selector on one cluster gets its secret on the next apply and is
//! pruned when relabelled out; a saved fleet plan is checked per cluster; one
//! cluster down fails only its own part (exit 1), the others are applied.

mod common;

use std::path::Path;

use common::{Run, binary, kubectl, kubectl_ok, path_str, run};
use pullwarden_testenv::{Fleet, TestEnv};

const PASSWORD: &str = "Fleet-Canary-Pw-51c0d3";
const WORKSPACE: &str = "acme-fleet";
const GRANT_BINDING: &str = "pullwarden:acme-fleet:everywhere:system:image-puller";

/// Clusters dev and staging through `--kubeconfig`, prod through its own
/// `kubeconfig` entry; `prod-pull` on clusters labelled env=prod,
/// `preprod-pull` on dev and staging by name, both in the namespaces
/// labelled `pull=quay`; the grant `everywhere` on every cluster.
fn workspace(fleet_kubeconfig: &Path) -> String {
    format!(
        "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {WORKSPACE}}}
spec:
  namespaces:
    include:
      - matchExpressions:
          - {{key: team, operator: Exists}}
      - shared-images
  prune: true
  clusters:
    - name: dev
      labels: {{env: dev}}
    - name: staging
      context: staging
      labels: {{env: staging}}
    - name: prod
      kubeconfig: {kubeconfig}
      labels: {{env: prod}}
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
metadata: {{name: prod-pull}}
spec:
  registries: [quay]
  clusters:
    - matchLabels: {{env: prod}}
  namespaces:
    - matchLabels: {{pull: quay}}
  serviceAccounts: [{{name: default}}]
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: preprod-pull}}
spec:
  registries: [quay]
  clusters: [dev, staging]
  namespaces:
    - matchLabels: {{pull: quay}}
  serviceAccounts: [{{name: default}}]
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata: {{name: everywhere}}
spec:
  namespaces: [shared-images]
  to: [{{serviceAccount: payments/default}}]
",
        kubeconfig = path_str(fleet_kubeconfig)
    )
}

/// The workspace folder (with its password file).
fn write_workspace(dir: &Path, fleet: &Fleet) {
    std::fs::write(dir.join("workspace.yaml"), workspace(fleet.kubeconfig())).expect("write");
    std::fs::write(dir.join("password"), PASSWORD).expect("write");
}

/// A namespace with `labels` and its `default` ServiceAccount (no
/// controller manager makes it here).
async fn namespace(env: &TestEnv, ns: &str, labels: &[&str]) {
    kubectl_ok(env, &["create", "namespace", ns]).await;
    if !labels.is_empty() {
        let mut args = vec!["label", "namespace", ns];
        args.extend(labels);
        kubectl_ok(env, &args).await;
    }
    kubectl_ok(env, &["-n", ns, "create", "serviceaccount", "default"]).await;
}

async fn prepare(fleet: &Fleet) {
    for name in fleet.names() {
        let env = fleet.env(name);
        namespace(env, "payments", &["team=payments", "pull=quay"]).await;
        namespace(env, "checkout", &["team=checkout"]).await;
        namespace(env, "shared-images", &[]).await;
    }
}

/// `pullwarden ARGS --kubeconfig <the fleet's kubeconfig>`.
async fn pullwarden(fleet: &Fleet, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend([
        "--kubeconfig",
        path_str(fleet.kubeconfig()),
        "--request-timeout",
        "5s",
    ]);
    run(binary(), &all, &[]).await
}

/// Whether `kind/name` exists in `ns`.
async fn exists(env: &TestEnv, ns: &str, kind: &str, name: &str) -> bool {
    let got = kubectl(env, &["-n", ns, "get", kind, name, "-o", "name"]).await;
    match got.code {
        Some(0) => true,
        _ if got.stderr.contains("NotFound") => false,
        _ => panic!("{got}"),
    }
}

/// The part of a fleet's text output under `=== cluster NAME ===`.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_fleet_places_by_cluster_reports_drift_by_cluster_and_follows_labels() {
    let fleet = Fleet::start(&["dev", "staging", "prod"])
        .await
        .expect("three control planes");
    prepare(&fleet).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_workspace(dir.path(), &fleet);
    let ws = path_str(dir.path());

    let applied = pullwarden(&fleet, &["apply", ws, "--auto-approve"]).await;
    assert_eq!(applied.code, Some(0), "{applied}");
    for name in ["dev", "staging", "prod"] {
        assert!(
            section(&applied.stdout, name).contains("create  RoleBinding"),
            "{applied}"
        );
    }
    assert!(!applied.stdout.contains(PASSWORD) && !applied.stderr.contains(PASSWORD));
    // env=prod only on prod; dev and staging by name; the grant everywhere.
    let prod = fleet.env("prod");
    assert!(exists(prod, "payments", "secret", "prod-pull").await);
    assert!(!exists(prod, "payments", "secret", "preprod-pull").await);
    for name in ["dev", "staging"] {
        let env = fleet.env(name);
        assert!(
            !exists(env, "payments", "secret", "prod-pull").await,
            "{name}"
        );
        assert!(
            exists(env, "payments", "secret", "preprod-pull").await,
            "{name}"
        );
    }
    for name in ["dev", "staging", "prod"] {
        let env = fleet.env(name);
        assert!(
            exists(env, "shared-images", "rolebinding", GRANT_BINDING).await,
            "{name}"
        );
        // Nothing where no selector chose it.
        assert!(
            !exists(env, "checkout", "secret", "prod-pull").await,
            "{name}"
        );
    }
    let again = pullwarden(&fleet, &["plan", ws, "--detailed-exitcode"]).await;
    assert_eq!(again.code, Some(0), "{again}");
    assert!(
        again.stdout.contains(
            "Plan: 0 to create, 0 to update, 0 to replace, 0 to delete; 0 to link, 0 to unlink."
        ),
        "{again}"
    );

    // Drift on staging only, reported under its name.
    kubectl_ok(
        fleet.env("staging"),
        &[
            "-n",
            "shared-images",
            "delete",
            "rolebinding",
            GRANT_BINDING,
        ],
    )
    .await;
    let drift = pullwarden(&fleet, &["drift", ws]).await;
    assert_eq!(drift.code, Some(2), "{drift}");
    let staging = section(&drift.stdout, "staging");
    assert!(
        staging.contains(&format!("RoleBinding shared-images/{GRANT_BINDING}")),
        "{drift}"
    );
    for name in ["dev", "prod"] {
        assert!(
            section(&drift.stdout, name).contains("In sync"),
            "{name}: {drift}"
        );
    }
    let md = pullwarden(&fleet, &["drift", ws, "--format", "markdown"]).await;
    assert_eq!(md.code, Some(2), "{md}");
    assert!(md.stdout.contains("#### cluster `staging`"), "{md}");
    let repaired = pullwarden(&fleet, &["apply", ws, "--auto-approve"]).await;
    assert_eq!(repaired.code, Some(0), "{repaired}");
    assert!(
        exists(
            fleet.env("staging"),
            "shared-images",
            "rolebinding",
            GRANT_BINDING
        )
        .await
    );

    // Relabelled into the selector on prod: its secret on the next apply,
    // there only; relabelled out: pruned.
    kubectl_ok(prod, &["label", "namespace", "checkout", "pull=quay"]).await;
    let into = pullwarden(&fleet, &["apply", ws, "--auto-approve"]).await;
    assert_eq!(into.code, Some(0), "{into}");
    assert!(
        section(&into.stdout, "prod").contains("namespace checkout"),
        "{into}"
    );
    assert!(exists(prod, "checkout", "secret", "prod-pull").await);
    assert!(!exists(fleet.env("dev"), "checkout", "secret", "preprod-pull").await);
    kubectl_ok(prod, &["label", "namespace", "checkout", "pull-"]).await;
    let out_of = pullwarden(&fleet, &["apply", ws, "--auto-approve"]).await;
    assert_eq!(out_of.code, Some(0), "{out_of}");
    assert!(
        section(&out_of.stdout, "prod").contains("delete  Secret prod-pull"),
        "{out_of}"
    );
    assert!(!exists(prod, "checkout", "secret", "prod-pull").await);

    // A saved fleet plan: checked per cluster. A namespace on every cluster,
    // then dev's ServiceAccount moves after the plan was saved: dev is
    // refused, staging and prod are applied, exit 1.
    for name in ["dev", "staging", "prod"] {
        namespace(fleet.env(name), "orders", &["team=orders", "pull=quay"]).await;
    }
    let saved = dir.path().join("fleet.plan.json");
    let planned = pullwarden(&fleet, &["plan", ws, "--out", path_str(&saved)]).await;
    assert_eq!(planned.code, Some(0), "{planned}");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("saved plan")).expect("JSON");
    assert_eq!(file["kind"], "pullwarden saved fleet plan");
    let uids: Vec<&str> = file["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| {
            c["saved"]["cluster"]["kube_system_uid"]
                .as_str()
                .expect("uid")
        })
        .collect();
    assert_eq!(uids.len(), 3, "{file}");
    assert!(
        uids[0] != uids[1] && uids[1] != uids[2] && uids[0] != uids[2],
        "{uids:?}"
    );
    assert!(
        !std::fs::read_to_string(&saved)
            .expect("saved")
            .contains(PASSWORD)
    );
    kubectl_ok(
        fleet.env("dev"),
        &[
            "-n",
            "orders",
            "label",
            "serviceaccount",
            "default",
            "moved=yes",
        ],
    )
    .await;
    let applied = pullwarden(&fleet, &["apply", ws, "--plan", path_str(&saved)]).await;
    assert_eq!(applied.code, Some(1), "{applied}");
    assert!(
        applied
            .stderr
            .contains("[dev] pullwarden: refusing the saved plan"),
        "{applied}"
    );
    assert!(!exists(fleet.env("dev"), "orders", "secret", "preprod-pull").await);
    assert!(exists(fleet.env("staging"), "orders", "secret", "preprod-pull").await);
    assert!(exists(prod, "orders", "secret", "prod-pull").await);

    // Each cluster's part of a saved plan names its cluster (kube-system
    // UID): with dev's and staging's contexts swapped after the plan was
    // saved, both parts are refused as made for another cluster; prod's
    // part is applied.
    for name in ["dev", "staging", "prod"] {
        namespace(fleet.env(name), "billing", &["team=billing", "pull=quay"]).await;
    }
    let saved = dir.path().join("billing.plan.json");
    let planned = pullwarden(&fleet, &["plan", ws, "--out", path_str(&saved)]).await;
    assert_eq!(planned.code, Some(0), "{planned}");
    let swapped = workspace(fleet.kubeconfig())
        .replace(
            "    - name: dev\n      labels",
            "    - name: dev\n      context: staging\n      labels",
        )
        .replace(
            "      context: staging\n      labels: {env: staging}",
            "      context: dev\n      labels: {env: staging}",
        );
    assert!(
        swapped.contains("context: dev\n")
            && swapped.contains("- name: dev\n      context: staging"),
        "{swapped}"
    );
    std::fs::write(dir.path().join("workspace.yaml"), &swapped).expect("write");
    let applied = pullwarden(&fleet, &["apply", ws, "--plan", path_str(&saved)]).await;
    assert_eq!(applied.code, Some(1), "{applied}");
    for name in ["dev", "staging"] {
        assert!(
            applied.stderr.contains(&format!(
                "[{name}] pullwarden: refusing the saved plan: it was made for another cluster"
            )),
            "{name}: {applied}"
        );
        assert!(
            !exists(fleet.env(name), "billing", "secret", "preprod-pull").await,
            "{name}"
        );
    }
    assert!(exists(prod, "billing", "secret", "prod-pull").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_fleet_one_cluster_down_fails_its_part_and_the_others_are_applied() {
    let mut fleet = Fleet::start(&["dev", "staging", "prod"])
        .await
        .expect("three control planes");
    prepare(&fleet).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_workspace(dir.path(), &fleet);
    let ws = path_str(dir.path());
    fleet.stop("staging");

    let planned = pullwarden(&fleet, &["plan", ws, "--detailed-exitcode"]).await;
    assert_eq!(planned.code, Some(1), "{planned}");
    let staging = section(&planned.stdout, "staging");
    assert!(staging.contains("error: "), "{planned}");
    assert!(
        staging.contains("Nothing was planned on this cluster."),
        "{planned}"
    );
    assert!(
        section(&planned.stdout, "dev").contains("create  Secret preprod-pull"),
        "{planned}"
    );
    assert!(
        section(&planned.stdout, "prod").contains("create  Secret prod-pull"),
        "{planned}"
    );
    assert!(
        planned.stdout.contains("staging  error: not planned"),
        "{planned}"
    );
    assert!(
        planned.stderr.contains("1 cluster of 3 failed: staging"),
        "{planned}"
    );

    let json = pullwarden(&fleet, &["plan", ws, "--format", "json"]).await;
    assert_eq!(json.code, Some(1), "{json}");
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let status: Vec<&str> = doc["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| c["status"].as_str().expect("status"))
        .collect();
    assert_eq!(status, ["planned", "error", "planned"], "{json}");

    let applied = pullwarden(&fleet, &["apply", ws, "--auto-approve"]).await;
    assert_eq!(applied.code, Some(1), "{applied}");
    assert!(
        applied.stderr.contains("nothing applied on staging"),
        "{applied}"
    );
    assert!(exists(fleet.env("dev"), "payments", "secret", "preprod-pull").await);
    assert!(exists(fleet.env("prod"), "payments", "secret", "prod-pull").await);
    assert!(
        exists(
            fleet.env("prod"),
            "shared-images",
            "rolebinding",
            GRANT_BINDING
        )
        .await
    );

    // Narrowed to the clusters that answer: exit 0, nothing left to do.
    let narrowed = pullwarden(
        &fleet,
        &[
            "plan",
            ws,
            "--cluster",
            "dev",
            "--cluster",
            "prod",
            "--detailed-exitcode",
        ],
    )
    .await;
    assert_eq!(narrowed.code, Some(0), "{narrowed}");
    assert!(
        !narrowed.stdout.contains("=== cluster staging"),
        "{narrowed}"
    );
    // Snapshots of the fleet: one file per cluster that answers, read back
    // by --live DIR as the clusters themselves (nothing left to do).
    let snapshots = dir.path().join("snapshots");
    let snapped = pullwarden(&fleet, &["snapshot", ws, "--out", path_str(&snapshots)]).await;
    assert_eq!(snapped.code, Some(1), "{snapped}");
    assert!(
        snapped
            .stderr
            .contains("no snapshot of 1 cluster (staging)"),
        "{snapped}"
    );
    assert!(snapshots.join("dev.json").is_file() && snapshots.join("prod.json").is_file());
    assert!(!snapshots.join("staging.json").exists());
    assert!(
        !std::fs::read_to_string(snapshots.join("dev.json"))
            .expect("snapshot")
            .contains(PASSWORD)
    );
    let from_snapshots = pullwarden(
        &fleet,
        &[
            "plan",
            ws,
            "--live",
            path_str(&snapshots),
            "--cluster",
            "dev",
            "--cluster",
            "prod",
            "--detailed-exitcode",
        ],
    )
    .await;
    assert_eq!(from_snapshots.code, Some(0), "{from_snapshots}");
    let all_from_snapshots =
        pullwarden(&fleet, &["plan", ws, "--live", path_str(&snapshots)]).await;
    assert_eq!(all_from_snapshots.code, Some(1), "{all_from_snapshots}");
    assert!(
        section(&all_from_snapshots.stdout, "staging")
            .contains("error: no snapshot of cluster staging"),
        "{all_from_snapshots}"
    );

    // Access, per cluster, on the declarations each gets.
    let access = pullwarden(
        &fleet,
        &["access", ws, "--cluster", "dev", "--cluster", "prod"],
    )
    .await;
    assert_eq!(access.code, Some(0), "{access}");
    for name in ["dev", "prod"] {
        assert!(
            section(&access.stdout, name).contains("registry quay.io"),
            "{name}: {access}"
        );
    }
    let access_all = pullwarden(&fleet, &["access", ws]).await;
    assert_eq!(access_all.code, Some(1), "{access_all}");
    assert!(
        section(&access_all.stdout, "staging").contains("error: "),
        "{access_all}"
    );
}

/// The fleet's kubeconfig with one more context, `alias`: the same cluster
/// and user as context `of` (two names for one cluster, as people keep).
fn kubeconfig_with_alias(fleet: &Fleet, of: &str, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fleet.kubeconfig()).expect("fleet kubeconfig");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("kubeconfig JSON");
    let contexts = config["contexts"].as_array_mut().expect("contexts");
    let mut alias = contexts
        .iter()
        .find(|c| c["name"] == of)
        .expect("the context")
        .clone();
    alias["name"] = "alias".into();
    contexts.push(alias);
    let path = dir.join("kubeconfig-with-alias");
    std::fs::write(&path, config.to_string()).expect("write");
    path
}

/// `pullwarden ARGS --kubeconfig KUBECONFIG`.
async fn with_kubeconfig(kubeconfig: &Path, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend([
        "--kubeconfig",
        path_str(kubeconfig),
        "--request-timeout",
        "5s",
    ]);
    run(binary(), &all, &[]).await
}

/// Clusters `a` (context one) and `b` (context alias: the same cluster) and
/// `c` (context two); `only-a` limited to a, `only-b` to b, `everywhere` on
/// every cluster; prune on.
fn alias_workspace() -> &'static str {
    "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {name: acme-alias}
spec:
  namespaces:
    include: [payments]
  prune: true
  clusters:
    - {name: a, context: one}
    - {name: b, context: alias}
    - {name: c, context: two}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {name: quay}
spec:
  server: quay.io
  username: robot
  password: {fromFile: password}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {name: only-a}
spec:
  registries: [quay]
  clusters: [a]
  namespaces: [payments]
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {name: only-b}
spec:
  registries: [quay]
  clusters: [b]
  namespaces: [payments]
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {name: everywhere}
spec:
  registries: [quay]
  namespaces: [payments]
"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_fleet_two_entries_reaching_one_cluster_are_refused_and_the_others_run() {
    let fleet = Fleet::start(&["one", "two"])
        .await
        .expect("two control planes");
    for name in fleet.names() {
        namespace(fleet.env(name), "payments", &[]).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("workspace.yaml"), alias_workspace()).expect("write");
    std::fs::write(dir.path().join("password"), PASSWORD).expect("write");
    let ws = path_str(dir.path());
    let kubeconfig = kubeconfig_with_alias(&fleet, "one", dir.path());
    let (one, two) = (fleet.env("one"), fleet.env("two"));
    // Cluster a alone: it cannot see that b is the same cluster.
    let only_a = with_kubeconfig(
        &kubeconfig,
        &["apply", ws, "--cluster", "a", "--auto-approve"],
    )
    .await;
    assert_eq!(only_a.code, Some(0), "{only_a}");
    assert!(exists(one, "payments", "secret", "only-a").await);

    let refused = |stderr: &str, what: &str| {
        for (me, other) in [("a", "b"), ("b", "a")] {
            assert!(
                stderr.contains(&format!(
                    "[{me}] pullwarden: cluster {me} and cluster {other} of spec.clusters reach the same cluster (kube-system UID "
                )) && stderr.contains(&format!("nothing was {what} on either")),
                "{me}: {stderr}"
            );
        }
    };
    let planned = with_kubeconfig(&kubeconfig, &["plan", ws]).await;
    assert_eq!(planned.code, Some(1), "{planned}");
    refused(&planned.stderr, "planned");
    for name in ["a", "b"] {
        let part = section(&planned.stdout, name);
        assert!(
            part.contains("reach the same cluster") && part.contains("Nothing was planned"),
            "{name}: {planned}"
        );
    }
    assert!(
        section(&planned.stdout, "c").contains("create  Secret everywhere"),
        "{planned}"
    );
    assert!(
        planned.stderr.contains("2 clusters of 3 failed: a, b"),
        "{planned}"
    );

    // apply: nothing written on the shared cluster (only-b not created,
    // only-a not pruned); c applied; exit 1.
    let applied = with_kubeconfig(&kubeconfig, &["apply", ws, "--auto-approve"]).await;
    assert_eq!(applied.code, Some(1), "{applied}");
    refused(&applied.stderr, "applied");
    assert!(
        applied.stderr.contains("nothing applied on a, b"),
        "{applied}"
    );
    assert!(exists(one, "payments", "secret", "only-a").await);
    assert!(!exists(one, "payments", "secret", "only-b").await);
    assert!(exists(two, "payments", "secret", "everywhere").await);
    assert!(!exists(two, "payments", "secret", "only-a").await);

    let drift = with_kubeconfig(&kubeconfig, &["drift", ws]).await;
    assert_eq!(drift.code, Some(1), "{drift}");
    refused(&drift.stderr, "compared");
    assert!(section(&drift.stdout, "c").contains("In sync"), "{drift}");

    // apply --plan: a and b planned one at a time (each alone cannot see
    // the other) and put in one file: both parts refused before anything
    // is written (b's part would prune only-a).
    let mut parts = Vec::new();
    for name in ["a", "b"] {
        let file = dir.path().join(format!("{name}.plan.json"));
        let planned = with_kubeconfig(
            &kubeconfig,
            &["plan", ws, "--cluster", name, "--out", path_str(&file)],
        )
        .await;
        assert_eq!(planned.code, Some(0), "{planned}");
        let text = std::fs::read_to_string(&file).expect("saved");
        let saved: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        parts.push(saved["clusters"][0].clone());
    }
    assert!(
        parts[1]["saved"]["plan"]["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["action"] == "delete" && c["name"] == "only-a"),
        "{}",
        parts[1]
    );
    let both = dir.path().join("both.plan.json");
    let document = serde_json::json!({
        "kind": "pullwarden saved fleet plan",
        "workspace": "acme-alias",
        "clusters": parts,
    });
    std::fs::write(&both, document.to_string()).expect("write");
    let applied = with_kubeconfig(
        &kubeconfig,
        &[
            "apply",
            ws,
            "--plan",
            path_str(&both),
            "--cluster",
            "a",
            "--cluster",
            "b",
        ],
    )
    .await;
    assert_eq!(applied.code, Some(1), "{applied}");
    refused(&applied.stderr, "applied");
    assert!(exists(one, "payments", "secret", "only-a").await);
    assert!(!exists(one, "payments", "secret", "only-b").await);

    // Snapshots of the two entries are snapshots of one cluster (the
    // kube-system UID is in them): planned from them, refused the same way.
    let snaps = dir.path().join("snaps");
    let snapped = with_kubeconfig(&kubeconfig, &["snapshot", ws, "--out", path_str(&snaps)]).await;
    assert_eq!(snapped.code, Some(0), "{snapped}");
    let offline = with_kubeconfig(&kubeconfig, &["plan", ws, "--live", path_str(&snaps)]).await;
    assert_eq!(offline.code, Some(1), "{offline}");
    refused(&offline.stderr, "planned");
    assert!(
        section(&offline.stdout, "c").contains("No changes: the cluster matches the workspace."),
        "{offline}"
    );
}

/// A fleet of one cluster, `prod`, reached through `context`.
fn bound_workspace(context: &str) -> String {
    format!(
        "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: acme-bound}}
spec:
  namespaces:
    include: [payments]
  clusters:
    - {{name: prod, context: {context}}}
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
  namespaces: [payments]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_plan_saved_from_a_snapshot_is_bound_to_the_snapshot_s_cluster() {
    let fleet = Fleet::start(&["one", "two"])
        .await
        .expect("two control planes");
    for name in fleet.names() {
        namespace(fleet.env(name), "payments", &[]).await;
    }
    let (one, two) = (fleet.env("one"), fleet.env("two"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("password"), PASSWORD).expect("write");
    let ws = path_str(dir.path());
    let workspace = dir.path().join("workspace.yaml");
    std::fs::write(&workspace, bound_workspace("one")).expect("write");

    // A fleet: prod's snapshot taken of cluster one, planned offline.
    let snaps = dir.path().join("snaps");
    let snapped = pullwarden(&fleet, &["snapshot", ws, "--out", path_str(&snaps)]).await;
    assert_eq!(snapped.code, Some(0), "{snapped}");
    let saved = dir.path().join("fleet.plan.json");
    let planned = pullwarden(
        &fleet,
        &[
            "plan",
            ws,
            "--live",
            path_str(&snaps),
            "--out",
            path_str(&saved),
        ],
    )
    .await;
    assert_eq!(planned.code, Some(0), "{planned}");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("saved")).expect("JSON");
    assert!(
        file["clusters"][0]["saved"]["cluster"]["kube_system_uid"].is_string(),
        "{file}"
    );
    // prod now reaches cluster two: refused there, nothing written.
    std::fs::write(&workspace, bound_workspace("two")).expect("write");
    let other = pullwarden(&fleet, &["apply", ws, "--plan", path_str(&saved)]).await;
    assert_eq!(other.code, Some(1), "{other}");
    assert!(
        other.stderr.contains(
            "[prod] pullwarden: refusing the saved plan: it was made for another cluster"
        ),
        "{other}"
    );
    assert!(!exists(two, "payments", "secret", "quay-pull").await);
    // Back on cluster one: accepted.
    std::fs::write(&workspace, bound_workspace("one")).expect("write");
    let same = pullwarden(&fleet, &["apply", ws, "--plan", path_str(&saved)]).await;
    assert_eq!(same.code, Some(0), "{same}");
    assert!(exists(one, "payments", "secret", "quay-pull").await);

    // One cluster (no spec.clusters): the same, with --context.
    let single = dir.path().join("single");
    std::fs::create_dir(&single).expect("mkdir");
    std::fs::write(single.join("password"), PASSWORD).expect("write");
    std::fs::write(
        single.join("workspace.yaml"),
        bound_workspace("unused")
            .replace("acme-bound", "acme-single")
            .replace("quay-pull", "single-pull")
            .replace("  clusters:\n    - {name: prod, context: unused}\n", ""),
    )
    .expect("write");
    let single_ws = path_str(&single);
    let snap = dir.path().join("two.json");
    let snapped = pullwarden(
        &fleet,
        &["snapshot", "--context", "two", "--out", path_str(&snap)],
    )
    .await;
    assert_eq!(snapped.code, Some(0), "{snapped}");
    let one_plan = dir.path().join("one.plan.json");
    let planned = pullwarden(
        &fleet,
        &[
            "plan",
            single_ws,
            "--live",
            path_str(&snap),
            "--out",
            path_str(&one_plan),
        ],
    )
    .await;
    assert_eq!(planned.code, Some(0), "{planned}");
    let other = pullwarden(
        &fleet,
        &[
            "apply",
            single_ws,
            "--plan",
            path_str(&one_plan),
            "--context",
            "one",
        ],
    )
    .await;
    assert_eq!(other.code, Some(1), "{other}");
    assert!(
        other
            .stderr
            .contains("refusing the saved plan: it was made for another cluster"),
        "{other}"
    );
    assert!(!exists(one, "payments", "secret", "single-pull").await);
    let same = pullwarden(
        &fleet,
        &[
            "apply",
            single_ws,
            "--plan",
            path_str(&one_plan),
            "--context",
            "two",
        ],
    )
    .await;
    assert_eq!(same.code, Some(0), "{same}");
    assert!(exists(two, "payments", "secret", "single-pull").await);

    // A snapshot without kube-system still plans; its saved plan names no
    // cluster, so a cluster that can be told refuses it.
    let text = std::fs::read_to_string(&snap).expect("snapshot");
    let mut list: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    list["items"]
        .as_array_mut()
        .expect("items")
        .retain(|item| !(item["kind"] == "Namespace" && item["metadata"]["name"] == "kube-system"));
    let bare = dir.path().join("bare.json");
    std::fs::write(&bare, list.to_string()).expect("write");
    let unbound = dir.path().join("unbound.plan.json");
    let planned = pullwarden(
        &fleet,
        &[
            "plan",
            single_ws,
            "--live",
            path_str(&bare),
            "--out",
            path_str(&unbound),
        ],
    )
    .await;
    assert_eq!(planned.code, Some(0), "{planned}");
    let refused = pullwarden(
        &fleet,
        &[
            "apply",
            single_ws,
            "--plan",
            path_str(&unbound),
            "--context",
            "two",
        ],
    )
    .await;
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(
        refused
            .stderr
            .contains("refusing the saved plan: it names no cluster"),
        "{refused}"
    );
}
