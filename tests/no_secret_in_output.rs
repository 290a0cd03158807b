//! Canary test: plan in every format and verbosity, with `--out`, and
//! validate, on a workspace holding canary credentials. No output and no file
//! may hold a canary: raw, base64 at any of the three alignments, base64 of
//! base64, or in the `auth` form `base64(user:pass)`.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const PASSWORD: &str = "Canary-Pw-7f3a9c1e55";
const ENV_USER: &str = "canary-user-d41d8c";
const FILE_PASSWORD: &str = "Canary-File-Pw-0b7d2e";
const OLD_PASSWORD: &str = "Canary-Old-Pw-9a8b7c";

/// Every encoding of `value` that must never appear.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    for pad in 0..3 {
        let padded = format!("{}{value}", "\0".repeat(pad));
        let encoded = STANDARD.encode(padded.as_bytes());
        // Drop the characters that also encode the padding and the tail.
        let skip = (pad * 4).div_ceil(3);
        let core: String = encoded.chars().skip(skip + 1).collect();
        let core = core.trim_end_matches('=');
        let core = &core[..core.len().saturating_sub(3)];
        if core.len() >= 8 {
            out.push(core.to_string());
        }
    }
    out.push(STANDARD.encode(STANDARD.encode(value)));
    out
}

fn forbidden() -> Vec<String> {
    let mut all = Vec::new();
    for value in [PASSWORD, ENV_USER, FILE_PASSWORD, OLD_PASSWORD] {
        all.extend(forms(value));
    }
    for (user, pass) in [
        (ENV_USER, PASSWORD),
        ("file-user", FILE_PASSWORD),
        ("old-user", OLD_PASSWORD),
    ] {
        let auth = STANDARD.encode(format!("{user}:{pass}"));
        all.push(auth.clone());
        all.extend(forms(&auth));
    }
    all
}

fn write_workspace(dir: &Path) {
    std::fs::create_dir_all(dir.join("ws/creds")).unwrap();
    std::fs::write(
        dir.join("ws/workspace.yaml"),
        r#"apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {name: canary}
spec: {}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {name: env}
spec:
  server: quay.io
  username: {fromEnv: CANARY_USER}
  password: {fromEnv: CANARY_PASSWORD}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {name: file}
spec:
  dockerConfigFile: creds/config.json
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {name: canary-pull}
spec:
  registries: [env, file]
  namespaces: [team-a, "team-*"]
  serviceAccounts: [{name: default}]
"#,
    )
    .unwrap();
    let auth = STANDARD.encode(format!("file-user:{FILE_PASSWORD}"));
    std::fs::write(
        dir.join("ws/creds/config.json"),
        format!(r#"{{"auths": {{"ghcr.io": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    // A live Secret, managed by this workspace, holding an older password.
    let old = format!(
        r#"{{"auths":{{"quay.io":{{"username":"old-user","password":"{OLD_PASSWORD}","auth":"{}"}}}}}}"#,
        STANDARD.encode(format!("old-user:{OLD_PASSWORD}"))
    );
    std::fs::write(
        dir.join("live.yaml"),
        format!(
            r#"apiVersion: v1
kind: List
items:
- {{apiVersion: v1, kind: Namespace, metadata: {{name: team-a, uid: n1, resourceVersion: "1"}}}}
- {{apiVersion: v1, kind: Namespace, metadata: {{name: team-b, uid: n2, resourceVersion: "1"}}}}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {{name: default, namespace: team-a, uid: s1, resourceVersion: "2"}}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {{name: default, namespace: team-b, uid: s2, resourceVersion: "2"}}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {{name: puller, namespace: team-a, uid: s3, resourceVersion: "2"}}
  imagePullSecrets: [{{name: canary-pull}}]
- apiVersion: v1
  kind: Secret
  type: kubernetes.io/dockerconfigjson
  metadata:
    name: canary-pull
    namespace: team-a
    uid: x1
    resourceVersion: "3"
    labels: {{app.kubernetes.io/managed-by: pullwarden, pullwarden.dev/workspace: canary}}
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: '{{"data":{{"password":"{OLD_PASSWORD}"}}}}'
  data:
    .dockerconfigjson: {}
"#,
            STANDARD.encode(old)
        ),
    )
    .unwrap();
}

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args(args)
        .current_dir(dir)
        .env("CANARY_USER", ENV_USER)
        .env("CANARY_PASSWORD", PASSWORD)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pullwarden");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn no_canary_reaches_any_output_or_saved_plan() {
    let dir = tempfile::tempdir().unwrap();
    write_workspace(dir.path());
    let forbidden = forbidden();
    let mut outputs = Vec::new();
    for format in ["text", "markdown", "json"] {
        for verbosity in [None, Some("-v"), Some("-vv"), Some("-q")] {
            let mut args = vec!["plan", "ws", "--live", "live.yaml", "--format", format];
            args.extend(verbosity);
            let (code, text) = run(dir.path(), &args);
            assert_eq!(code, 0, "{args:?}: {text}");
            outputs.push((format!("plan {args:?}"), text));
        }
    }
    let (code, text) = run(
        dir.path(),
        &[
            "plan",
            "ws",
            "--live",
            "live.yaml",
            "--out",
            "saved.json",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(code, 2, "{text}");
    outputs.push(("plan --out".into(), text));
    let saved = std::fs::read_to_string(dir.path().join("saved.json")).unwrap();
    assert!(saved.contains("secret_digests"), "{saved}");
    outputs.push(("saved plan file".into(), saved));
    for args in [
        vec!["validate", "ws", "--resolve"],
        vec!["validate", "ws", "--format", "json", "--resolve"],
    ] {
        let (code, text) = run(dir.path(), &args);
        assert_eq!(code, 0, "{text}");
        outputs.push((format!("{args:?}"), text));
    }
    // can-pull names the entry the kubelet tries, never its password.
    for format in ["text", "json"] {
        let args = [
            "can-pull",
            "quay.io/team/app:v1",
            "--service-account",
            "team-a/puller",
            "--live",
            "live.yaml",
            "--format",
            format,
        ];
        let (code, text) = run(dir.path(), &args);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert!(
            text.contains("canary-pull") && text.contains("old-user"),
            "{text}"
        );
        outputs.push((format!("{args:?}"), text));
    }
    // access names the registries and Secrets, never a credential.
    for format in ["text", "markdown", "json"] {
        let args = [
            "access",
            "ws",
            "--live",
            "live.yaml",
            "--explain",
            "--format",
            format,
        ];
        let (code, text) = run(dir.path(), &args);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert!(text.contains("canary-pull"), "{args:?}: {text}");
        outputs.push((format!("{args:?}"), text));
    }
    // diff (against itself, and with the credentials changed) shows where a
    // credential comes from, never its value.
    for format in ["text", "markdown", "json"] {
        let args = [
            "diff",
            "ws",
            "--base-path",
            "ws",
            "--live",
            "live.yaml",
            "--format",
            format,
        ];
        let (code, text) = run(dir.path(), &args);
        assert_eq!(code, 0, "{args:?}: {text}");
        outputs.push((format!("{args:?}"), text));
    }
    // The plan shows the change without its values.
    let text_plan = &outputs[0].1;
    assert!(text_plan.contains("(sensitive, changed)"), "{text_plan}");
    assert!(text_plan.contains("ghcr.io: added"), "{text_plan}");
    for (what, text) in &outputs {
        for bad in &forbidden {
            assert!(
                !text.contains(bad.as_str()),
                "{what} holds a canary form `{bad}`"
            );
        }
    }
    // The check itself can fail: a canary form is found where one is planted.
    let planted = format!("x{}y", STANDARD.encode(format!("{ENV_USER}:{PASSWORD}")));
    assert!(forbidden.iter().any(|bad| planted.contains(bad.as_str())));
    let planted = format!("zz{}", STANDARD.encode(format!("ab{PASSWORD}cd")));
    assert!(forbidden.iter().any(|bad| planted.contains(bad.as_str())));
}

/// Credentials written in shapes the format rejects (a typo'd key, a second
/// `password`, a list, an extra key in a value source, a broken quote) are
/// masked in every snippet too.
#[test]
fn malformed_literal_credentials_are_masked_in_diagnostics() {
    let forms = [
        "passwd: LEAK-CANARY-1",
        "password: {fromEnv: X}\n  password: LEAK-CANARY-2",
        "password: [LEAK-CANARY-3]",
        "password: {fromEnv: V, value: LEAK-CANARY-4}",
        "password: \"LEAK-CANARY-5",
        "password: {fromEnv: [LEAK-CANARY-6]}",
        "password: LEAK-CANARY-7",
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, form) in forms.iter().enumerate() {
        let file = dir.path().join(format!("ws{i}.yaml"));
        std::fs::write(
            &file,
            format!(
                "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: w}}\nspec: {{}}\n---\napiVersion: pullwarden.dev/v1alpha1\nkind: Registry\nmetadata: {{name: r}}\nspec:\n  server: quay.io\n  username: u\n  {form}\n"
            ),
        )
        .unwrap();
        for format in ["text", "json"] {
            let (code, text) = run(
                dir.path(),
                &["validate", file.to_str().unwrap(), "--format", format],
            );
            assert_eq!(code, 1, "{form}: {text}");
            assert!(
                !text.contains("LEAK-CANARY"),
                "{form} leaked in {format}:\n{text}"
            );
        }
    }
}

const CMD_USER: &str = "canary-cmd-user-5e2f";
const CMD_PASSWORD: &str = "Canary-Cmd-Pw-31c8d4";
const CMD_ROTATED: &str = "Canary-Cmd-Rotated-Pw-77a0e9";

/// A workspace whose one registry's credentials come from `fromCommand`
/// (`sh -c SCRIPT`, in the workspace folder), and a live state whose managed
/// Secret holds what the command printed first.
fn write_command_workspace(dir: &Path, script: &str) {
    std::fs::create_dir_all(dir.join("ws/creds")).unwrap();
    std::fs::write(
        dir.join("ws/workspace.yaml"),
        format!(
            r"apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: canary}}
spec: {{}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: cmd}}
spec:
  server: registry.example.com
  password:
    fromCommand:
      command: [sh, -c, '{script}']
      timeout: 10s
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: cmd-pull}}
spec:
  registries: [cmd]
  namespaces: [team-a]
"
        ),
    )
    .unwrap();
    let data = format!(
        r#"{{"auths":{{"registry.example.com":{{"username":"{CMD_USER}","password":"{CMD_PASSWORD}","auth":"{}"}}}}}}"#,
        STANDARD.encode(format!("{CMD_USER}:{CMD_PASSWORD}"))
    );
    std::fs::write(
        dir.join("live.yaml"),
        format!(
            r#"apiVersion: v1
kind: List
items:
- {{apiVersion: v1, kind: Namespace, metadata: {{name: team-a, uid: n1, resourceVersion: "1"}}}}
- apiVersion: v1
  kind: Secret
  type: kubernetes.io/dockerconfigjson
  metadata:
    name: cmd-pull
    namespace: team-a
    uid: x1
    resourceVersion: "3"
    labels: {{app.kubernetes.io/managed-by: pullwarden, pullwarden.dev/workspace: canary}}
    annotations: {{pullwarden.dev/source: PullSecret/cmd-pull}}
  data:
    .dockerconfigjson: {}
"#,
            STANDARD.encode(data)
        ),
    )
    .unwrap();
}

fn write_token(dir: &Path, password: &str) {
    std::fs::write(
        dir.join("ws/creds/token.json"),
        format!(
            r#"{{"username": "{CMD_USER}", "password": "{password}", "expiresAt": "2099-01-01T00:00:00Z"}}"#
        ),
    )
    .unwrap();
}

fn run_allowed(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut full = vec!["--allow-commands"];
    full.extend(args);
    run(dir, &full)
}

/// `fromCommand`: a rotated value plans as an update shown
/// `(sensitive, changed)`, and nothing the command printed reaches any
/// output, saved plan or error, also when the command fails or prints
/// something unusable.
#[test]
fn command_credentials_plan_a_rotation_as_sensitive_changed_and_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_command_workspace(root, "cat creds/token.json");
    write_token(root, CMD_PASSWORD);
    let mut forbidden = Vec::new();
    for value in [CMD_USER, CMD_PASSWORD, CMD_ROTATED] {
        forbidden.extend(forms(value));
    }
    for pass in [CMD_PASSWORD, CMD_ROTATED] {
        forbidden.extend(forms(&STANDARD.encode(format!("{CMD_USER}:{pass}"))));
        forbidden.push(STANDARD.encode(format!("{CMD_USER}:{pass}")));
    }
    let mut outputs = Vec::new();

    // Not allowed: refused, naming the flag; nothing ran.
    let (code, text) = run(root, &["plan", "ws", "--live", "live.yaml"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("command_not_allowed") && text.contains("--allow-commands"),
        "{text}"
    );
    outputs.push(("plan without --allow-commands".to_owned(), text));

    // The live Secret holds what the command prints: nothing to do.
    let (code, text) = run_allowed(
        root,
        &["plan", "ws", "--live", "live.yaml", "--detailed-exitcode"],
    );
    assert_eq!(code, 0, "{text}");
    outputs.push(("plan, in sync".to_owned(), text));

    // Rotated: the command now prints another password.
    write_token(root, CMD_ROTATED);
    for format in ["text", "markdown", "json"] {
        for verbosity in [None, Some("-vv")] {
            let mut args = vec![
                "plan",
                "ws",
                "--live",
                "live.yaml",
                "--detailed-exitcode",
                "--format",
                format,
            ];
            args.extend(verbosity);
            let (code, text) = run_allowed(root, &args);
            assert_eq!(code, 2, "{args:?}: {text}");
            outputs.push((format!("rotated plan {args:?}"), text));
        }
    }
    let text_plan = &outputs[2].1;
    assert!(
        text_plan.contains("~ update  Secret cmd-pull")
            && text_plan.contains("username (sensitive, unchanged)")
            && text_plan.contains("password (sensitive, changed)"),
        "{text_plan}"
    );
    // drift: the command reissued the value; nobody edited the Secret.
    for format in ["text", "json"] {
        let (code, text) = run_allowed(
            root,
            &["drift", "ws", "--live", "live.yaml", "--format", format],
        );
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains("credentials reissued by their command"),
            "{text}"
        );
        outputs.push((format!("drift --format {format}"), text));
    }
    let (code, text) = run_allowed(root, &["drift", "ws", "--live", "live.yaml"]);
    assert!(code == 2 && text.contains("0 drifted, 1 pending"), "{text}");
    let (code, text) = run_allowed(
        root,
        &["plan", "ws", "--live", "live.yaml", "--out", "saved.json"],
    );
    assert_eq!(code, 0, "{text}");
    outputs.push(("plan --out".to_owned(), text));
    let saved = std::fs::read_to_string(root.join("saved.json")).unwrap();
    assert!(saved.contains("secret_digests"), "{saved}");
    outputs.push(("saved plan".to_owned(), saved));
    for args in [
        vec!["validate", "ws", "--resolve"],
        vec!["validate", "ws", "--resolve", "--format", "json"],
    ] {
        let (code, text) = run_allowed(root, &args);
        assert_eq!(code, 0, "{args:?}: {text}");
        outputs.push((format!("{args:?}"), text));
    }

    // Failing or unusable commands: an error naming the registry, never the output.
    let failing = [
        ("cat creds/token.json; exit 3", "exit status 3"),
        ("echo junk; cat creds/token.json", "printed several lines"),
        ("head -c 60 creds/token.json", "line 1, column"),
        ("cat creds/token.json >&2; exit 1", "exit status 1"),
    ];
    for (script, expected) in failing {
        write_command_workspace(root, script);
        for format in ["text", "json"] {
            let (code, text) =
                run_allowed(root, &["validate", "ws", "--resolve", "--format", format]);
            assert_eq!(code, 1, "{script}: {text}");
            assert!(
                text.contains("Registry `cmd`") && text.contains(expected),
                "{script}: {text}"
            );
            outputs.push((format!("validate --resolve with `{script}`"), text));
        }
        let (code, text) = run_allowed(root, &["plan", "ws", "--live", "live.yaml", "-vv"]);
        assert_eq!(code, 1, "{script}: {text}");
        outputs.push((format!("plan with `{script}`"), text));
    }

    for (what, text) in &outputs {
        for bad in &forbidden {
            assert!(
                !text.contains(bad.as_str()),
                "{what} holds a canary form `{bad}`:\n{text}"
            );
        }
    }
    // The check can fail: the token file itself holds the canary.
    let token = std::fs::read_to_string(root.join("ws/creds/token.json")).unwrap();
    assert!(forbidden.iter().any(|bad| token.contains(bad.as_str())));
}
