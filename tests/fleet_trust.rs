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

/// Runs `pullwarden` with `args` in `dir`, killing it after `deadline`.
fn pullwarden_within(
    dir: &std::path::Path,
    args: &[&str],
    deadline: std::time::Duration,
) -> (Option<i32>, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pullwarden");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
                .expect("read stderr");
            return (status.code(), stderr, started.elapsed());
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pullwarden {args:?} still running after {deadline:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn hung_credential_plugins_of_several_clusters_end_at_the_request_timeout() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("plugin.sh");
    // Waits like a plugin asking for a browser login (bounded, so no
    // process outlives the test for long).
    std::fs::write(&plugin, "#!/bin/sh\nexec sleep 40\n").expect("write plugin");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::create_dir(dir.path().join("ws")).expect("mkdir");
    std::fs::write(
        dir.path().join("ws/workspace.yaml"),
        "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: {name: hung}\nspec:\n  namespaces: {include: [\"team-*\"]}\n  clusters:\n    - {name: one, context: pr, kubeconfig: kubeconfig}\n    - {name: two, context: pr, kubeconfig: kubeconfig-2}\n    - {name: three, context: pr, kubeconfig: kubeconfig-3}\n",
    )
    .expect("write workspace");
    for name in ["kubeconfig", "kubeconfig-2", "kubeconfig-3"] {
        std::fs::write(dir.path().join("ws").join(name), kubeconfig(&plugin))
            .expect("write kubeconfig");
    }
    let (code, stderr, took) = pullwarden_within(
        dir.path(),
        &["plan", "ws", "--allow-commands", "--request-timeout", "2s"],
        std::time::Duration::from_secs(30),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        took < std::time::Duration::from_secs(15),
        "took {took:?}:\n{stderr}"
    );
    for name in ["one", "two", "three"] {
        assert!(stderr.contains(&format!("[{name}]")), "{name}:\n{stderr}");
    }
}

#[test]
fn a_kubeconfig_that_is_not_a_regular_file_is_refused_not_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("ws")).expect("mkdir");
    std::fs::write(
        dir.path().join("ws/workspace.yaml"),
        "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: {name: zero}\nspec:\n  namespaces: {include: [\"team-*\"]}\n  clusters:\n    - {name: zero, context: z, kubeconfig: /dev/zero}\n",
    )
    .expect("write workspace");
    let (code, stderr, _) = pullwarden_within(
        dir.path(),
        &["plan", "ws", "--request-timeout", "2s"],
        std::time::Duration::from_secs(20),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/dev/zero"), "{stderr}");
}
