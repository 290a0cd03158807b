//! `pullwarden drift` against the real control plane: three out-of-band edits
//! with kubectl (a link removed, a pull secret's data changed, a RoleBinding
//! deleted) are each reported, in every format, with exit 2 and no secret
//! bytes; one apply repairs all three; drift then exits 0.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
mod common;

use common::{kubectl_ok, pullwarden_admin};
use pullwarden_testenv::{TestEnv, unique_name};

const PASSWORD: &str = "Drift-Canary-Pw-4e1f0a";
const INTRUDER_PASSWORD: &str = "Drift-Intruder-Pw-77c2d9";

fn forbidden() -> Vec<String> {
    let mut out = Vec::new();
    for value in [PASSWORD, INTRUDER_PASSWORD] {
        out.push(value.to_string());
        out.push(STANDARD.encode(value));
        out.push(STANDARD.encode(format!("robot:{value}")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_drift_reports_out_of_band_edits_and_apply_repairs_them() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let ns = unique_name("pw-drift");
    kubectl_ok(env, &["create", "namespace", &ns]).await;
    kubectl_ok(env, &["-n", &ns, "create", "serviceaccount", "default"]).await;
    kubectl_ok(env, &["-n", &ns, "create", "serviceaccount", "builder"]).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(
        dir.path().join("workspace.yaml"),
        common::one_namespace_workspace("drift-test", &ns, "{fromFile: password}", Some("builder")),
    )
    .unwrap();
    let ws = dir.path().to_str().unwrap();

    let applied = pullwarden_admin(env, &["apply", ws, "--auto-approve"], &[]).await;
    assert_eq!(
        applied.code,
        Some(0),
        "{}{}",
        applied.stdout,
        applied.stderr
    );
    let in_sync = pullwarden_admin(env, &["drift", ws], &[]).await;
    assert_eq!(
        in_sync.code,
        Some(0),
        "{}{}",
        in_sync.stdout,
        in_sync.stderr
    );
    assert!(in_sync.stdout.contains("In sync"), "{}", in_sync.stdout);

    // 1. a link removed from the ServiceAccount
    kubectl_ok(
        env,
        &[
            "-n",
            &ns,
            "patch",
            "serviceaccount",
            "default",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/imagePullSecrets","value":[]}]"#,
        ],
    )
    .await;
    // 2. the pull secret's data changed
    let intruder = STANDARD.encode(format!(
        r#"{{"auths":{{"quay.io":{{"username":"robot","password":"{INTRUDER_PASSWORD}","auth":"{}"}}}}}}"#,
        STANDARD.encode(format!("robot:{INTRUDER_PASSWORD}"))
    ));
    kubectl_ok(
        env,
        &[
            "-n",
            &ns,
            "patch",
            "secret",
            "quay-pull",
            "--type=merge",
            "-p",
            &format!(r#"{{"data":{{".dockerconfigjson":"{intruder}"}}}}"#),
        ],
    )
    .await;
    // 3. the RoleBinding deleted
    let bindings = kubectl_ok(env, &["-n", &ns, "get", "rolebindings", "-o", "name"]).await;
    let binding = bindings
        .stdout
        .lines()
        .find(|l| l.contains("pullwarden:drift-test:builder-pulls"))
        .expect("the managed binding exists")
        .to_string();
    kubectl_ok(env, &["-n", &ns, "delete", &binding]).await;

    let junit = dir.path().join("drift.xml");
    let summary = dir.path().join("summary.md");
    let junit_arg = junit.to_str().unwrap();
    let mut outputs = Vec::new();
    let mut json_stdout = String::new();
    for format in ["text", "markdown", "json"] {
        let result = pullwarden_admin(
            env,
            &["drift", ws, "--format", format, "--junit", junit_arg],
            &[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
            ],
        )
        .await;
        assert_eq!(
            result.code,
            Some(2),
            "{format}: {}{}",
            result.stdout,
            result.stderr
        );
        if format == "json" {
            json_stdout.clone_from(&result.stdout);
        }
        outputs.push((format, format!("{}{}", result.stdout, result.stderr)));
    }
    let text = &outputs[0].1;
    assert!(
        text.contains(&format!(
            "ServiceAccount {ns}/default: imagePullSecrets entry quay-pull removed out of band"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Secret {ns}/quay-pull: data differs: quay.io password differ"
        )),
        "{text}"
    );
    assert!(text.contains("changed by kubectl-patch"), "{text}");
    assert!(
        text.contains(&format!(
            "RoleBinding {ns}/pullwarden:drift-test:builder-pulls"
        )),
        "{text}"
    );
    assert!(
        text.contains("::error title=pullwarden"),
        "GitHub annotations: {text}"
    );
    let json: serde_json::Value = serde_json::from_str(&json_stdout).expect("JSON report");
    assert_eq!(json["items"].as_array().unwrap().len(), 3, "{json}");
    let junit_text = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(junit_text.matches("<failure").count(), 3, "{junit_text}");
    let summary_text = std::fs::read_to_string(&summary).unwrap();
    assert!(summary_text.contains("pullwarden drift"), "{summary_text}");
    outputs.push(("junit", junit_text));
    outputs.push(("summary", summary_text));
    for (what, output) in &outputs {
        for bad in forbidden() {
            assert!(!output.contains(&bad), "{what} output holds a secret form");
        }
    }

    let repaired = pullwarden_admin(env, &["apply", ws, "--auto-approve"], &[]).await;
    assert_eq!(
        repaired.code,
        Some(0),
        "{}{}",
        repaired.stdout,
        repaired.stderr
    );
    let after = pullwarden_admin(env, &["drift", ws], &[]).await;
    assert_eq!(after.code, Some(0), "{}{}", after.stdout, after.stderr);
    for bad in forbidden() {
        assert!(!repaired.stdout.contains(&bad) && !repaired.stderr.contains(&bad));
    }
}

/// The parts of a JSON plan that must agree between a cluster and its snapshot.
fn plan_shape(json: &str) -> (serde_json::Value, Vec<(String, String, String)>) {
    let plan: serde_json::Value = serde_json::from_str(json).expect("JSON plan");
    let changes = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["namespace"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (plan["summary"].clone(), changes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_snapshot_plans_like_the_cluster_and_holds_no_credential() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let ns = unique_name("pw-snap");
    kubectl_ok(env, &["create", "namespace", &ns]).await;
    kubectl_ok(env, &["-n", &ns, "create", "serviceaccount", "default"]).await;
    // An unrelated Secret with a credential in its data and in a client-side-apply annotation.
    kubectl_ok(
        env,
        &[
            "-n",
            &ns,
            "create",
            "secret",
            "generic",
            "app-token",
            &format!("--from-literal=token={INTRUDER_PASSWORD}"),
        ],
    )
    .await;
    kubectl_ok(
        env,
        &["-n", &ns, "annotate", "secret", "app-token",
          &format!("kubectl.kubernetes.io/last-applied-configuration={{\"data\":{{\"token\":\"{INTRUDER_PASSWORD}\"}}}}")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(
        dir.path().join("workspace.yaml"),
        common::one_namespace_workspace("snap-test", &ns, "{fromFile: password}", None),
    )
    .unwrap();
    let ws = dir.path().to_str().unwrap();
    let applied = pullwarden_admin(env, &["apply", ws, "--auto-approve"], &[]).await;
    assert_eq!(
        applied.code,
        Some(0),
        "{}{}",
        applied.stdout,
        applied.stderr
    );

    let snap = dir.path().join("snapshot.json");
    let snap_arg = snap.to_str().unwrap();
    let taken = pullwarden_admin(env, &["snapshot", "--out", snap_arg], &[]).await;
    assert_eq!(taken.code, Some(0), "{}", taken.stderr);
    // Same credentials: the digests match, so the snapshot shows no change.
    let offline = pullwarden_admin(
        env,
        &["plan", ws, "--live", snap_arg, "--detailed-exitcode"],
        &[],
    )
    .await;
    assert_eq!(
        offline.code,
        Some(0),
        "{}{}",
        offline.stdout,
        offline.stderr
    );

    // The cluster moves: another password in the pull secret.
    let intruder = STANDARD.encode(format!(
        r#"{{"auths":{{"quay.io":{{"username":"robot","password":"{INTRUDER_PASSWORD}"}}}}}}"#
    ));
    kubectl_ok(
        env,
        &[
            "-n",
            &ns,
            "patch",
            "secret",
            "quay-pull",
            "--type=merge",
            "-p",
            &format!(r#"{{"data":{{".dockerconfigjson":"{intruder}"}}}}"#),
        ],
    )
    .await;
    let taken = pullwarden_admin(env, &["snapshot", "--out", snap_arg], &[]).await;
    assert_eq!(taken.code, Some(0), "{}", taken.stderr);
    let online = pullwarden_admin(env, &["plan", ws, "--format", "json"], &[]).await;
    let offline = pullwarden_admin(
        env,
        &["plan", ws, "--format", "json", "--live", snap_arg],
        &[],
    )
    .await;
    assert_eq!(online.code, Some(0), "{}", online.stderr);
    assert_eq!(offline.code, Some(0), "{}", offline.stderr);
    let (online_summary, online_changes) = plan_shape(&online.stdout);
    let (offline_summary, offline_changes) = plan_shape(&offline.stdout);
    assert_eq!(online_summary, offline_summary);
    assert_eq!(online_changes, offline_changes);
    assert_eq!(
        online_changes,
        [(ns.clone(), "quay-pull".to_string(), "update".to_string())]
    );
    assert!(
        offline.stdout.contains("\"password_changed\": true"),
        "{}",
        offline.stdout
    );
    assert!(
        offline.stdout.contains("\"username_changed\": false"),
        "{}",
        offline.stdout
    );

    let text = std::fs::read_to_string(&snap).unwrap();
    assert!(
        text.contains("pullwarden.dev/snapshot-digest"),
        "digests are marked"
    );
    assert!(
        text.contains("\"name\": \"app-token\""),
        "unrelated secrets are listed"
    );
    for bad in forbidden() {
        assert!(!text.contains(&bad), "the snapshot holds a credential form");
    }
    assert!(
        !text.contains("last-applied-configuration"),
        "credential-bearing annotation kept"
    );
}
