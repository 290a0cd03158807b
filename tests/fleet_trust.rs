//! A kubeconfig that a fleet workspace names is as untrusted as the
//! workspace (a pull request can change both): its credential plugin is a
//! program, so it runs only with `--allow-commands`, like `fromCommand`.

use std::process::Command;

const WORKSPACE: &str = r#"apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {name: fleet}
spec:
  namespaces: {include: ["team-*"]}
  clusters:
    - {name: trusted, context: ops}
    - {name: from-the-pr, context: pr, kubeconfig: kubeconfig}
"#;

/// A kubeconfig whose user runs `plugin`, which leaves `marker` behind.
fn kubeconfig(plugin: &std::path::Path) -> String {
    format!(
        r"apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {{server: 'https://127.0.0.1:1'}}
users:
  - name: plugin
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1
        command: {}
        interactiveMode: Never
contexts:
  - name: pr
    context: {{cluster: nowhere, user: plugin}}
current-context: pr
",
        plugin.display()
    )
}

fn pullwarden(dir: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .arg("plan")
        .arg(dir.join("ws"))
        .args(["--cluster", "from-the-pr", "--request-timeout", "5s"])
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .env_remove("PULLWARDEN_ALLOW_COMMANDS")
        .output()
        .expect("run pullwarden");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn a_workspace_named_kubeconfig_runs_its_plugin_only_with_allow_commands() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("plugin-ran");
    let plugin = dir.path().join("plugin.sh");
    std::fs::write(
        &plugin,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .expect("write plugin");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::create_dir(dir.path().join("ws")).expect("mkdir");
    std::fs::write(dir.path().join("ws/workspace.yaml"), WORKSPACE).expect("write workspace");
    std::fs::write(dir.path().join("ws/kubeconfig"), kubeconfig(&plugin))
        .expect("write kubeconfig");

    let (code, output) = pullwarden(dir.path(), &[]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("cluster from-the-pr: the kubeconfig")
            && output.contains("runs an exec credential plugin for context pr")
            && output.contains("--allow-commands"),
        "{output}"
    );
    assert!(!marker.exists(), "the plugin ran without --allow-commands");

    // Allowed, the plugin runs (and fails: nothing answers at 127.0.0.1:1).
    let (code, output) = pullwarden(dir.path(), &["--allow-commands"]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        marker.exists(),
        "the plugin did not run with --allow-commands:\n{output}"
    );
    assert!(
        !output.contains("runs an exec credential plugin"),
        "{output}"
    );
}
