//! Hostile and broken inputs (issue 16): what a fork PR, a tenant or a failed
//! CI step can hand pullwarden. Every run here has a deadline and a memory cap,
//! so that a regression fails the test instead of hanging or filling the machine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: Option<i32>,
    stdout: String,
    /// stderr with its line breaks and miette's margins folded into single
    /// spaces, so that assertions do not depend on where a message wraps.
    stderr: String,
}

fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| *word != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs pullwarden with `args` in `cwd` under a 2 GB address-space cap;
/// panics if it has not finished after `deadline`.
fn run_in(cwd: &Path, args: &[&str], envs: &[(&str, &str)], deadline: Duration) -> Run {
    // PULLWARDEN_TEST_BIN runs these tests against another build (to see
    // them fail before a fix).
    let binary = std::env::var("PULLWARDEN_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pullwarden").to_owned());
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -v 2000000; exec \"$0\" \"$@\"")
        .arg(binary)
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("PULLWARDEN_ALLOW_OUTSIDE_FILES")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run pullwarden");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pullwarden {args:?} still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: flat(&String::from_utf8_lossy(&output.stderr)),
    }
}

fn run(cwd: &Path, args: &[&str]) -> Run {
    run_in(cwd, args, &[], Duration::from_secs(30))
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

const WORKSPACE: &str = "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {name: hostile}
spec:
  namespaces: {include: [team-a]}
  prune: true
";

fn registry_with_config(path: &str) -> String {
    format!(
        "---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: quay}}
spec:
  dockerConfigFile: {path}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: quay-pull}}
spec:
  registries: [quay]
  namespaces: [team-a]
"
    )
}

fn registry_with_password_file(path: &str) -> String {
    format!(
        "---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: quay}}
spec:
  server: quay.io
  username: robot
  password: {{fromFile: {path}}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: quay-pull}}
spec:
  registries: [quay]
  namespaces: [team-a]
"
    )
}

/// A workspace folder `ws/` holding `workspace.yaml` and `registry.yaml`.
fn workspace(registry: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("creds")).unwrap();
    std::fs::write(ws.join("workspace.yaml"), WORKSPACE).unwrap();
    std::fs::write(ws.join("registry.yaml"), registry).unwrap();
    dir
}

const SNAPSHOT: &str = "apiVersion: v1
kind: Namespace
metadata: {name: team-a}
status: {phase: Active}
";

// ---------------------------------------------------------------- item 2

#[test]
fn credential_files_outside_the_workspace_are_refused_unless_allowed() {
    for reference in ["/dev/zero", "../outside.json", "creds/escape.json"] {
        let dir = workspace(&registry_with_config(reference));
        std::fs::write(dir.path().join("outside.json"), "{\"auths\": {}}").unwrap();
        symlink("/dev/zero", dir.path().join("ws/creds/escape.json"));
        let out = run(dir.path(), &["validate", "ws"]);
        assert_eq!(out.code, Some(1), "{reference}: {}", out.stderr);
        assert!(
            out.stderr.contains("outside the workspace"),
            "{reference}: {}",
            out.stderr
        );
        // At the YAML location.
        assert!(
            out.stderr.contains("ws/registry.yaml:6:"),
            "{reference}: {}",
            out.stderr
        );
    }
    // Allowed: /dev/zero is then refused for what it is, and quickly.
    let dir = workspace(&registry_with_config("/dev/zero"));
    for (args, envs) in [
        (
            vec!["validate", "ws", "--allow-outside-files"],
            vec![] as Vec<(&str, &str)>,
        ),
        (
            vec!["validate", "ws"],
            vec![("PULLWARDEN_ALLOW_OUTSIDE_FILES", "true")],
        ),
    ] {
        let out = run_in(dir.path(), &args, &envs, Duration::from_secs(30));
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(
            out.stderr
                .contains("it is a character device, not a regular file"),
            "{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("outside the workspace"),
            "{}",
            out.stderr
        );
    }
    // An allowed file outside that is fine is read.
    let dir = workspace(&registry_with_password_file("../password"));
    std::fs::write(dir.path().join("password"), "s3cr3t\n").unwrap();
    let out = run(dir.path(), &["validate", "ws", "--resolve"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let out = run(
        dir.path(),
        &["validate", "ws", "--resolve", "--allow-outside-files"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn a_fifo_or_an_oversized_credential_file_is_an_error_not_a_hang() {
    let dir = workspace(&registry_with_config("creds/config.json"));
    mkfifo(&dir.path().join("ws/creds/config.json"));
    let out = run(dir.path(), &["validate", "ws"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "", "stdout carries data only");
    assert!(
        out.stderr
            .contains("a FIFO (named pipe), not a regular file"),
        "{}",
        out.stderr
    );

    let dir = workspace(&registry_with_password_file("creds/password"));
    mkfifo(&dir.path().join("ws/creds/password"));
    let out = run(dir.path(), &["validate", "ws", "--resolve"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("a FIFO (named pipe)"), "{}", out.stderr);

    let dir = workspace(&registry_with_password_file("creds/password"));
    std::fs::write(
        dir.path().join("ws/creds/password"),
        vec![b'x'; 2 * 1024 * 1024],
    )
    .unwrap();
    let out = run(dir.path(), &["validate", "ws", "--resolve"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("larger than 1 MiB, the limit for credential files"),
        "{}",
        out.stderr
    );
}

#[test]
fn live_and_saved_plan_files_must_be_regular_files() {
    let dir = workspace(&registry_with_password_file("creds/password"));
    std::fs::write(dir.path().join("ws/creds/password"), "pw\n").unwrap();
    mkfifo(&dir.path().join("fifo.yaml"));
    for args in [
        vec!["plan", "ws", "--live", "fifo.yaml"],
        vec!["drift", "ws", "--live", "/dev/zero"],
        vec!["apply", "ws", "--plan", "fifo.yaml", "--auto-approve"],
        vec!["apply", "ws", "--plan", "/dev/zero", "--auto-approve"],
    ] {
        let out = run(dir.path(), &args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("not a regular file"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------- item 3

/// A workspace whose `team.yaml` declares a PullSecret: the file whose silent
/// loss would turn, with prune on, into deleting that secret.
fn workspace_with_team_file() -> tempfile::TempDir {
    let dir = workspace(&registry_with_password_file("creds/password"));
    std::fs::write(dir.path().join("ws/creds/password"), "pw\n").unwrap();
    dir
}

const TEAM: &str = "apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {name: team-pull}
spec:
  registries: [quay]
  namespaces: [team-a]
";

#[test]
fn workspace_entries_that_cannot_be_read_are_errors_not_skipped() {
    type Setup = fn(&Path);
    let cases: [(&str, Setup); 4] = [
        ("a dangling symlink", |ws| {
            symlink("../gone/team.yaml", ws.join("team.yaml"));
        }),
        ("a looping symlink", |ws| {
            symlink("team.yaml", ws.join("team.yaml"));
        }),
        ("a FIFO", |ws| mkfifo(&ws.join("team.yaml"))),
        ("a folder that contains itself", |ws| {
            std::fs::create_dir(ws.join("teams")).unwrap();
            symlink("..", ws.join("teams/up"));
        }),
    ];
    for (what, setup) in cases {
        let dir = workspace_with_team_file();
        setup(&dir.path().join("ws"));
        let out = run(dir.path(), &["validate", "ws"]);
        assert_eq!(out.code, Some(1), "{what}: {}", out.stderr);
        assert!(out.stderr.contains("unreadable"), "{what}: {}", out.stderr);
        let out = run(dir.path(), &["plan", "ws", "--live", "/nonexistent"]);
        assert_eq!(out.code, Some(1), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("nothing was planned"),
            "{what}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_symlinked_folder_of_the_workspace_is_read() {
    let dir = workspace_with_team_file();
    std::fs::create_dir(dir.path().join("shared")).unwrap();
    std::fs::write(dir.path().join("shared/team.yaml"), TEAM).unwrap();
    symlink("../shared", dir.path().join("ws/teams"));
    let out = run(dir.path(), &["validate", "ws"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("2 pull secrets, 0 pull grants in 3 files"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_mounted_config_map_is_read_once() {
    // What the kubelet writes for a ConfigMap volume: a hidden timestamped
    // folder, a hidden `..data` link to it, visible links through `..data`.
    let dir = workspace_with_team_file();
    let ws = dir.path().join("ws");
    let stamp = ws.join("..2026_11_29_10_00_00.123456789");
    std::fs::create_dir(&stamp).unwrap();
    std::fs::write(stamp.join("team.yaml"), TEAM).unwrap();
    symlink("..2026_11_29_10_00_00.123456789", ws.join("..data"));
    symlink("..data/team.yaml", ws.join("team.yaml"));
    let out = run(dir.path(), &["validate", "ws"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("2 pull secrets, 0 pull grants in 3 files"),
        "{}",
        out.stderr
    );
}

#[test]
fn snapshot_folders_follow_the_same_rules() {
    let dir = workspace_with_team_file();
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    std::fs::write(live.join("namespaces.yaml"), SNAPSHOT).unwrap();
    // A ConfigMap-style mount: read once (no "appears twice").
    let stamp = live.join("..2026_11_29");
    std::fs::create_dir(&stamp).unwrap();
    std::fs::write(
        stamp.join("sa.yaml"),
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: team-a}\n",
    )
    .unwrap();
    symlink("..2026_11_29", live.join("..data"));
    symlink("..data/sa.yaml", live.join("sa.yaml"));
    let out = run(dir.path(), &["plan", "ws", "--live", "live"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // A dangling link among snapshot files is an error, not a smaller cluster.
    symlink("gone.yaml", live.join("secrets.yaml"));
    let out = run(dir.path(), &["plan", "ws", "--live", "live"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("secrets.yaml"), "{}", out.stderr);
}

// ---------------------------------------------------------------- item 10

#[test]
fn a_live_source_without_namespaces_is_an_error_not_an_empty_cluster() {
    let dir = workspace_with_team_file();
    std::fs::write(dir.path().join("empty.yaml"), "").unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: team-a}\n",
    )
    .unwrap();
    for live in ["empty.yaml", "cm.yaml", "ws/workspace.yaml"] {
        for args in [
            vec!["drift", "ws", "--live", live],
            vec!["plan", "ws", "--live", live, "--detailed-exitcode"],
            vec!["import", "--name", "x", "--out", "imported", "--live", live],
        ] {
            let out = run(dir.path(), &args);
            assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
            assert!(
                out.stderr
                    .contains("holds no Namespace object, so it does not describe a cluster"),
                "{args:?}: {}",
                out.stderr
            );
            assert!(out.stderr.contains("pullwarden snapshot"), "{}", out.stderr);
            assert!(!out.stdout.contains("in sync"), "{args:?}: {}", out.stdout);
        }
    }
    // A cluster that has namespaces but nothing pullwarden manages is fine.
    std::fs::write(dir.path().join("ns.yaml"), SNAPSHOT).unwrap();
    let out = run(dir.path(), &["plan", "ws", "--live", "ns.yaml"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

// ---------------------------------------------------------------- item 9

/// Runs pullwarden with stderr (and stdout) connected to pipes whose reading
/// ends are closed before it writes: `pullwarden ... 2>&1 | true`.
fn run_with_closed_pipes(cwd: &Path, args: &[&str]) -> Option<i32> {
    let binary = std::env::var("PULLWARDEN_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pullwarden").to_owned());
    let mut child = Command::new(binary)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pullwarden");
    drop(child.stdout.take());
    drop(child.stderr.take());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A workspace file with one wrong namespace name after `padding`.
fn workspace_with_bad_namespace(padding: &str, bad: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ws.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: w}}\nspec:\n  namespaces: {{include: [{padding}\"{bad}\"]}}\n"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn a_huge_single_line_list_is_reported_without_a_crash() {
    let padding = (0..250_000)
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join(", ")
        + ", ";
    let dir = workspace_with_bad_namespace(&padding, "Not_A_Name");
    let out = run(dir.path(), &["validate", "ws.yaml"]);
    assert_eq!(
        out.code,
        Some(1),
        "{}",
        &out.stderr[..out.stderr.len().min(2000)]
    );
    assert!(
        !out.stderr.contains("internal error"),
        "{}",
        &out.stderr[..2000.min(out.stderr.len())]
    );
    assert!(!out.stderr.contains("panicked"));
    // Where the problem is, even without a snippet.
    assert!(
        out.stderr.contains("ws.yaml:5:"),
        "{}",
        &out.stderr[..2000.min(out.stderr.len())]
    );
    assert!(
        out.stderr.len() < 64 * 1024,
        "{} bytes of stderr",
        out.stderr.len()
    );
}

#[test]
fn closed_output_pipes_keep_the_exit_code() {
    let dir = workspace_with_bad_namespace("", "Not_A_Name");
    // Invalid: 1, not 134 (abort) nor 101 (panic).
    assert_eq!(
        run_with_closed_pipes(dir.path(), &["validate", "ws.yaml"]),
        Some(1)
    );
    let good = tempfile::tempdir().unwrap();
    std::fs::write(good.path().join("ws.yaml"), WORKSPACE).unwrap();
    assert_eq!(
        run_with_closed_pipes(good.path(), &["validate", "ws.yaml"]),
        Some(0)
    );
    // stderr closed outright (`2>&-`).
    let status = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" validate ws.yaml 2>&-")
        .arg(
            std::env::var("PULLWARDEN_TEST_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pullwarden").to_owned()),
        )
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn long_values_are_capped_in_what_is_echoed() {
    // 12 MiB: the 20 MB name is now refused by the 16 MiB file limit.
    let name = "N".repeat(12 * 1024 * 1024);
    let dir = workspace_with_bad_namespace("", &name);
    let out = run(dir.path(), &["validate", "ws.yaml"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.len() < 64 * 1024,
        "{} bytes of stderr",
        out.stderr.len()
    );
    assert!(
        out.stderr.contains("ws.yaml:5:"),
        "{}",
        &out.stderr[..2000.min(out.stderr.len())]
    );
    let out = run(dir.path(), &["validate", "ws.yaml", "--format", "json"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.len() < 64 * 1024,
        "{} bytes of JSON",
        out.stdout.len()
    );
}

#[test]
fn control_characters_never_reach_the_output_raw() {
    // A NUL and an escape sequence in a value, and an escape sequence in a
    // comment next to it (shown as snippet context).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ws.yaml"),
        "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: {name: w}\n# \u{1b}]0;pwned\u{7} \u{1b}[31mred\nspec:\n  namespaces: {include: [\"bad\\0name\\e[2J\"]}\n",
    )
    .unwrap();
    for format in ["text", "json"] {
        let binary = std::env::var("PULLWARDEN_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pullwarden").to_owned());
        let output = Command::new(binary)
            .args(["validate", "ws.yaml", "--format", format])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        for stream in [&output.stdout, &output.stderr] {
            assert!(!stream.contains(&0), "{format}: a NUL byte was echoed");
            assert!(
                !stream.contains(&0x1b),
                "{format}: an escape sequence was echoed: {}",
                String::from_utf8_lossy(stream)
            );
            assert!(!stream.contains(&0x07), "{format}: a BEL was echoed");
        }
    }
}

// ---------------------------------------------------------------- item 8

#[test]
fn no_credential_is_shown_next_to_a_yaml_syntax_error() {
    const CANARY: &str = "hunter2-c4n4ry";
    let head = "apiVersion: pullwarden.dev/v1alpha1\nkind: Registry\nmetadata: {name: quay}\nspec:\n  server: quay.io\n  username: robot\n";
    let shapes = [
        // The line before the error.
        format!("{head}  password: {CANARY}\n  email: [oops\n"),
        // The line after the error.
        format!("{head}  email: [oops\n  password: {CANARY}\n"),
        // A block scalar: every line of it, and not the next key.
        format!("{head}  password: |\n    {CANARY}\n    {CANARY}-2\n  email: [oops\n"),
        format!("{head}  password: >-\n    {CANARY}\n  email: [oops\n"),
        // A plain scalar continued on the next line.
        format!("{head}  password:\n    {CANARY}\n  email: [oops\n"),
        // Flow mappings, quoted keys and values, other credential fields.
        format!("{head}  creds: {{username: u, password: {CANARY}}}\n  email: [oops\n"),
        format!("{head}  creds: {{\"password\": \"{CANARY}, still\", x: 1}}\n  email: [oops\n"),
        format!("{head}  auths: {{q: {{auth: {CANARY}}}}}\n  email: [oops\n"),
        format!("{head}  identitytoken: {CANARY}\n  email: [oops\n"),
        format!("{head}  Token: '{CANARY}'\n  email: [oops\n"),
        format!("{head}  - password: {CANARY}\n  email: [oops\n"),
    ];
    for (index, text) in shapes.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ws.yaml"), text).unwrap();
        for format in ["text", "json"] {
            let out = run(dir.path(), &["validate", "ws.yaml", "--format", format]);
            assert_eq!(out.code, Some(1), "shape {index}: {}", out.stderr);
            assert!(
                !out.stderr.contains("c4n4ry") && !out.stdout.contains("c4n4ry"),
                "shape {index} ({format}) shows the password:\n{text}\n{}{}",
                out.stdout,
                out.stderr
            );
            if format == "text" {
                assert!(
                    out.stderr.contains("yaml_syntax"),
                    "shape {index}: {}",
                    out.stderr
                );
            }
        }
    }
    // Masking a block scalar does not bleed into the next key.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ws.yaml"),
        format!("{head}  password: |\n    {CANARY}\n  email: [oops\n"),
    )
    .unwrap();
    let out = run(dir.path(), &["validate", "ws.yaml"]);
    // (the value on the error line itself is masked, its key stays readable)
    assert!(out.stderr.contains(" 9 email: *"), "{}", out.stderr);
}
