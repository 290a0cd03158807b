//! `pullwarden import` against the real control plane: a cluster populated
//! with the kubectl equivalents of the seed's `oc` commands is imported; the
//! plan shows only adoptions (the grants are already satisfied by the existing
//! bindings); after `apply --adopt` the plan is empty and the secrets' data,
//! the ServiceAccount lists and the bindings' subjects are byte-identical.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
mod common;

use pullwarden_testenv::{TestEnv, unique_name};

/// `kubectl ARGS` as the admin; must succeed; its stdout.
async fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    common::kubectl_ok(env, args).await.stdout
}

/// `pullwarden ARGS` as the admin, with the workspace's variables set.
async fn pullwarden(env: &TestEnv, args: &[&str], vars: &[(String, String)]) -> common::Run {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::pullwarden_admin(env, args, &vars).await
}

const QUAY_PASSWORD: &str = "Import-Canary-Quay-3c9e";
const INTERNAL_PASSWORD: &str = "Import-Canary-Internal-8d1b";
const LEGACY_PASSWORD: &str = "Import-Canary-Legacy-5a7f";

/// What must not change: secret data, SA lists, binding subjects, by object.
async fn contents(env: &TestEnv, namespaces: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        for (kind, fields) in [
            ("secrets", "{.data}"),
            ("serviceaccounts", "{.imagePullSecrets}{.secrets}"),
            ("rolebindings", "{.roleRef}{.subjects}"),
        ] {
            let names = kubectl(env, &["-n", ns, "get", kind, "-o", "name"]).await;
            for name in names.lines() {
                let value = kubectl(
                    env,
                    &["-n", ns, "get", name, "-o", &format!("jsonpath={fields}")],
                )
                .await;
                out.insert(format!("{ns}/{name}"), value);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_import_then_adopt_leaves_every_object_as_it_was() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let prefix = unique_name("pw-imp");
    let (a, b, c) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}-c"),
    );
    for ns in [&a, &b, &c] {
        env.create_project(ns).await.expect("project");
        if env.simulates_openshift() {
            let controller = env.openshift_sa_controller().expect("controller");
            for sa in ["default", "builder"] {
                controller.link_dockercfg(ns, sa).await.expect("dockercfg");
            }
        }
    }
    // oc secrets new-dockercfg quay-pull --docker-server=quay.io ...
    kubectl(
        env,
        &[
            "-n",
            &a,
            "create",
            "secret",
            "docker-registry",
            "quay-pull",
            "--docker-server=quay.io",
            "--docker-username=acme+ci",
            &format!("--docker-password={QUAY_PASSWORD}"),
            "--docker-email=ci@example.com",
        ],
    )
    .await;
    // oc secrets new internal-pull .dockerconfigjson=config.json
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"registry.internal.example.com:5000":{{"auth":"{}"}}}}}}"#,
            STANDARD.encode(format!("builder:{INTERNAL_PASSWORD}"))
        ),
    )
    .unwrap();
    kubectl(
        env,
        &[
            "-n",
            &a,
            "create",
            "secret",
            "generic",
            "internal-pull",
            "--type=kubernetes.io/dockerconfigjson",
            &format!("--from-file=.dockerconfigjson={}", config.display()),
        ],
    )
    .await;
    // oc secrets new legacy-pull .dockercfg=legacy
    let legacy = dir.path().join("legacy");
    std::fs::write(&legacy, format!(
        r#"{{"registry.legacy.example.com":{{"username":"legacy","password":"{LEGACY_PASSWORD}","email":"legacy@example.com"}}}}"#
    )).unwrap();
    kubectl(
        env,
        &[
            "-n",
            &c,
            "create",
            "secret",
            "generic",
            "legacy-pull",
            "--type=kubernetes.io/dockercfg",
            &format!("--from-file=.dockercfg={}", legacy.display()),
        ],
    )
    .await;
    // oc secrets link default quay-pull internal-pull --for=pull; oc secrets link builder quay-pull (mount)
    for (ns, sa, secret, field) in [
        (&a, "default", "quay-pull", "imagePullSecrets"),
        (&a, "default", "internal-pull", "imagePullSecrets"),
        (&a, "builder", "quay-pull", "secrets"),
        (&c, "default", "legacy-pull", "imagePullSecrets"),
    ] {
        kubectl(
            env,
            &[
                "-n",
                ns,
                "patch",
                "serviceaccount",
                sa,
                "--type=json",
                "-p",
                &format!(r#"[{{"op":"add","path":"/{field}/-","value":{{"name":"{secret}"}}}}]"#),
            ],
        )
        .await;
    }
    // oc policy add-role-to-user system:image-puller system:serviceaccount:A:default -n B
    kubectl(
        env,
        &[
            "-n",
            &b,
            "create",
            "rolebinding",
            "image-puller-a-default",
            "--clusterrole=system:image-puller",
            &format!("--serviceaccount={a}:default"),
        ],
    )
    .await;
    // oc policy add-role-to-group system:image-puller system:serviceaccounts:C -n B
    kubectl(
        env,
        &[
            "-n",
            &b,
            "create",
            "rolebinding",
            "image-puller-c",
            "--clusterrole=system:image-puller",
            &format!("--group=system:serviceaccounts:{c}"),
        ],
    )
    .await;

    let namespaces = vec![a.clone(), b.clone(), c.clone()];
    let before = contents(env, &namespaces).await;

    let ws = dir.path().join("imported");
    let ws_arg = ws.to_str().unwrap();
    let imported = pullwarden(
        env,
        &[
            "import",
            "--name",
            "imported",
            "--out",
            ws_arg,
            "--namespace",
            &format!("{prefix}-*"),
        ],
        &[],
    )
    .await;
    assert_eq!(imported.code, Some(0), "{}", imported.stderr);
    let written: String = [
        "workspace.yaml",
        "registries.yaml",
        "pull-secrets.yaml",
        "grants.yaml",
        "credentials.env.example",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(ws.join(f)).unwrap_or_else(|_| panic!("{f} written")))
    .collect();
    for secret in [QUAY_PASSWORD, INTERNAL_PASSWORD, LEGACY_PASSWORD] {
        assert!(
            !written.contains(secret) && !written.contains(&STANDARD.encode(secret)),
            "a credential was written"
        );
    }
    assert!(
        !written.contains("dockercfg-"),
        "OpenShift's own secrets are left out:\n{written}"
    );
    assert!(
        !written.contains("system:image-pullers"),
        "OpenShift's bindings are left out"
    );

    // The variables, set from what the test knows.
    let vars: Vec<(String, String)> = std::fs::read_to_string(ws.join("credentials.env.example"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_suffix('='))
        .map(|var| {
            let value = match (
                var.contains("QUAY"),
                var.contains("INTERNAL"),
                var.ends_with("USERNAME"),
            ) {
                (true, _, true) => "acme+ci",
                (true, _, false) => QUAY_PASSWORD,
                (_, true, true) => "builder",
                (_, true, false) => INTERNAL_PASSWORD,
                (_, _, true) => "legacy",
                (_, _, false) => LEGACY_PASSWORD,
            };
            (var.to_string(), value.to_string())
        })
        .collect();
    assert_eq!(vars.len(), 6, "two variables per registry: {vars:?}");

    let plan = pullwarden(env, &["plan", ws_arg, "--adopt", "--format", "json"], &vars).await;
    assert_eq!(plan.code, Some(0), "{}{}", plan.stdout, plan.stderr);
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let actions: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["adopt", "adopt", "adopt"],
        "only adoptions: {}",
        plan.stdout
    );
    for change in json["changes"].as_array().unwrap() {
        for entry in change["detail"]["entries"].as_array().unwrap() {
            assert_eq!(
                entry["status"], "unchanged",
                "content is not rewritten: {change}"
            );
        }
    }
    let satisfied = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "pullwarden::plan::already_satisfied")
        .count();
    assert_eq!(
        satisfied, 2,
        "both grants are satisfied by the existing bindings: {}",
        plan.stdout
    );

    let applied = pullwarden(env, &["apply", ws_arg, "--adopt", "--auto-approve"], &vars).await;
    assert_eq!(
        applied.code,
        Some(0),
        "{}{}",
        applied.stdout,
        applied.stderr
    );
    let again = pullwarden(env, &["plan", ws_arg, "--detailed-exitcode"], &vars).await;
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    let after = contents(env, &namespaces).await;
    assert_eq!(before, after, "data, lists and subjects are byte-identical");
    let labels = kubectl(
        env,
        &[
            "-n",
            &a,
            "get",
            "secret",
            "quay-pull",
            "-o",
            "jsonpath={.metadata.labels.pullwarden\\.dev/workspace}",
        ],
    )
    .await;
    assert_eq!(
        labels, "imported",
        "the adopted secret carries pullwarden's labels"
    );
}
