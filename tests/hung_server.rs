//! #16.4: a server that answers `/version` and then never answers, a server
//! that hangs on writes, and a credential plugin that hangs: every command
//! exits 1 within the request timeout (plus a little), never hangs.
//!
//! The server is a few lines of HTTP/1.1 on loopback: what is tested is the
//! client's behaviour when a real server stops answering, which a healthy
//! kube-apiserver cannot be made to do.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WORKSPACE: &str = "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata:
  name: ws
spec:
  namespaces:
    include: [team-a]
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata:
  name: quay
spec:
  server: quay.io
  username: robot
  password: {fromEnv: HUNG_TEST_PASSWORD}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata:
  name: pull
spec:
  registries: [quay]
  namespaces: [team-a]
";

/// What the fake server does with requests other than `GET /version`.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Never answers.
    HangAfterVersion,
    /// Answers LISTs (one namespace, nothing else), never answers a write.
    HangOnWrites,
}

fn serve(behaviour: Behaviour) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || handle(stream, behaviour));
        }
    });
    port
}

fn handle(stream: TcpStream, behaviour: Behaviour) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let reply = match (behaviour, method) {
            _ if path.starts_with("/version") => Some(
                r#"{"major":"1","minor":"36","gitVersion":"v1.36.3","platform":"linux/amd64"}"#
                    .to_string(),
            ),
            (Behaviour::HangOnWrites, "GET") => Some(list_reply(path)),
            _ => None,
        };
        let Some(reply) = reply else {
            // Never answer; keep the connection open until the client gives up.
            std::thread::sleep(Duration::from_secs(600));
            return;
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn list_reply(path: &str) -> String {
    let (kind, items) = if path.starts_with("/api/v1/namespaces?") || path == "/api/v1/namespaces" {
        (
            "NamespaceList",
            r#"[{"metadata":{"name":"team-a","uid":"u1","resourceVersion":"1"},"status":{"phase":"Active"}}]"#,
        )
    } else if path.contains("serviceaccounts") {
        ("ServiceAccountList", "[]")
    } else if path.contains("rolebindings") {
        ("RoleBindingList", "[]")
    } else {
        ("SecretList", "[]")
    };
    let api_version = if kind == "RoleBindingList" {
        "rbac.authorization.k8s.io/v1"
    } else {
        "v1"
    };
    format!(
        r#"{{"kind":"{kind}","apiVersion":"{api_version}","metadata":{{"resourceVersion":"1"}},"items":{items}}}"#
    )
}

fn kubeconfig(dir: &Path, port: u16, exec: Option<&str>) -> std::path::PathBuf {
    let user = match exec {
        None => "{}".to_string(),
        Some(script) => format!(
            "{{exec: {{apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, {script:?}], interactiveMode: Never}}}}"
        ),
    };
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: 'http://127.0.0.1:{port}'}}
users:
- name: u
  user: {user}
contexts:
- name: x
  context: {{cluster: c, user: u}}
current-context: x
"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

struct Ran {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

fn pullwarden(args: &[&str]) -> Ran {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("HUNG_TEST_PASSWORD", "hung-test-password-canary")
        .env_remove("KUBECONFIG")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pullwarden");
    // A hang is the defect under test: never wait for it unboundedly.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("read stderr");
            return Ran {
                code: status.code(),
                stderr,
                took: started.elapsed(),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pullwarden {} hung for 60 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn workspace(dir: &Path) -> String {
    let path = dir.join("ws.yaml");
    std::fs::write(&path, WORKSPACE).expect("write workspace");
    path.to_str().expect("utf-8").to_string()
}

/// The bound the commands below must meet with `--request-timeout 2s`: one
/// timeout, plus the process start and the backoff of a few quick failures.
const BOUND: Duration = Duration::from_secs(12);

#[test]
fn plan_and_apply_exit_1_when_the_server_hangs_after_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve(Behaviour::HangAfterVersion);
    let config = kubeconfig(dir.path(), port, None);
    let ws = workspace(dir.path());
    let config = config.to_str().expect("utf-8");
    for command in [
        vec!["plan", &ws],
        vec!["apply", &ws, "--auto-approve"],
        vec!["drift", &ws],
        vec!["snapshot"],
    ] {
        let mut args = command.clone();
        args.extend(["--kubeconfig", config, "--request-timeout", "2s"]);
        let ran = pullwarden(&args);
        assert_eq!(ran.code, Some(1), "{command:?}: {}", ran.stderr);
        assert!(ran.took < BOUND, "{command:?} took {:?}", ran.took);
        assert!(
            ran.stderr.contains("did not answer within 2s"),
            "{command:?}: {}",
            ran.stderr
        );
    }
}

#[test]
fn apply_exits_1_when_writes_hang_and_says_what_it_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve(Behaviour::HangOnWrites);
    let config = kubeconfig(dir.path(), port, None);
    let ws = workspace(dir.path());
    let ran = pullwarden(&[
        "apply",
        &ws,
        "--auto-approve",
        "--kubeconfig",
        config.to_str().expect("utf-8"),
        "--request-timeout",
        "2s",
    ]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.took < BOUND, "took {:?}", ran.took);
    assert!(
        ran.stderr.contains(
            "FAILED   create Secret team-a/pull: the API server did not answer within 2s"
        ),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("hung-test-password-canary"));
}

#[test]
fn a_credential_plugin_that_hangs_is_a_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve(Behaviour::HangAfterVersion);
    let config = kubeconfig(dir.path(), port, Some("sleep 15"));
    let ws = workspace(dir.path());
    let ran = pullwarden(&[
        "plan",
        &ws,
        "--kubeconfig",
        config.to_str().expect("utf-8"),
        "--request-timeout",
        "2s",
    ]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.took < BOUND, "took {:?}", ran.took);
    assert!(
        ran.stderr.contains("did not answer within 2s"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_credential_plugin_that_fails_is_named_without_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = serve(Behaviour::HangAfterVersion);
    let config = kubeconfig(
        dir.path(),
        port,
        Some("echo token-canary-from-plugin; echo token-canary-on-stderr >&2; exit 3"),
    );
    let ws = workspace(dir.path());
    let ran = pullwarden(&[
        "plan",
        &ws,
        "--kubeconfig",
        config.to_str().expect("utf-8"),
        "--request-timeout",
        "2s",
    ]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("credential plugin failed") && ran.stderr.contains("exit status: 3"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("token-canary"), "{}", ran.stderr);
}
