//! Short-lived registry credentials (`fromCommand`) under `pullwarden run`,
//! against the real control plane and a real registry: a credential rotated by
//! changing what the command prints reaches every namespace, a failing
//! command keeps the Secrets as they are (with a metric and Events), and a
//! workspace reload that failed on the command is retried once it works; a
//! standby that takes the lease over refreshes before it writes, so it never
//! puts back the value it resolved at its start, nor when that refresh fails;
//! and a
//! token the test registry's token server stops accepting after 20 s is
//! refreshed before `can-pull --probe` ever fails. Every test is named
//! `cluster_*`: `scripts/test.sh` counts them.
#![allow(clippy::print_stderr)] // what was measured is reported

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Event, Secret, ServiceAccount};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

mod common;

use common::{binary, path_str};
use pullwarden_testenv::{ADMIN_CONTEXT, AccessRule, Registry, TestEnv, User, unique_name};

/// `pullwarden run --allow-commands` as a child process, its stderr kept.
struct Running {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(env: &TestEnv, dir: &Path) -> Running {
        Running::start_with(env, dir, &[])
    }

    fn start_with(env: &TestEnv, dir: &Path, extra: &[&str]) -> Running {
        let mut child = tokio::process::Command::new(binary())
            .args([
                "--allow-commands",
                "run",
                path_str(dir),
                "--kubeconfig",
                path_str(env.kubeconfig()),
                "--context",
                ADMIN_CONTEXT,
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .env_remove("PULLWARDEN_ALLOW_COMMANDS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pullwarden run");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Running { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn metrics_addr(&self) -> String {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .unwrap_or_else(|| panic!("no metrics line; log:\n{log}"));
        line.split("addr=")
            .nth(1)
            .expect("addr=")
            .split_whitespace()
            .next()
            .expect("address")
            .to_owned()
    }

    async fn metrics(&self) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.metrics_addr())
            .await
            .expect("connect /metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut body = String::new();
        stream.read_to_string(&mut body).await.expect("response");
        body
    }

    async fn wait_for(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("pid").to_string();
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await;
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("run exits after SIGTERM")
            .expect("wait");
        assert_eq!(status.code(), Some(0), "{}", self.log());
        self.log()
    }
}

/// The password of `server`'s entry in a docker-config Secret (test only:
/// compared, never printed).
fn password_in(secret: &Secret, server: &str) -> Option<String> {
    let data = secret.data.as_ref()?.get(".dockerconfigjson")?;
    let config: serde_json::Value = serde_json::from_slice(&data.0).ok()?;
    config["auths"][server]["password"]
        .as_str()
        .map(str::to_owned)
}

async fn passwords(
    env: &TestEnv,
    namespaces: &[String],
    name: &str,
    server: &str,
) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for ns in namespaces {
        let secret = Api::<Secret>::namespaced(env.admin(), ns)
            .get_opt(name)
            .await
            .expect("get secret");
        out.push(secret.and_then(|s| password_in(&s, server)));
    }
    out
}

/// Waits until every namespace's Secret holds `password`.
async fn wait_for_password(
    env: &TestEnv,
    running: &Running,
    namespaces: &[String],
    password: &str,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let now = passwords(env, namespaces, "cmd-pull", "registry.example.com").await;
        if now.iter().all(|p| p.as_deref() == Some(password)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every namespace got the value within {limit:?} ({} of {}); log:\n{}",
            now.iter()
                .filter(|p| p.as_deref() == Some(password))
                .count(),
            namespaces.len(),
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rfc3339_in(seconds: u64) -> (String, i64) {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds;
    let at = i64::try_from(at).unwrap();
    (
        k8s_openapi::jiff::Timestamp::from_second(at)
            .unwrap()
            .to_string(),
        at,
    )
}

/// A workspace over the namespaces `<prefix>-*` with one `PullSecret`
/// `cmd-pull` whose registry's credentials are what `cat TOKEN_FILE` prints.
fn write_command_workspace(dir: &Path, prefix: &str, token_file: &Path) {
    std::fs::write(
        dir.join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {prefix}}}
spec:
  namespaces: {{include: [\"{prefix}-*\"]}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: cmd}}
spec:
  server: registry.example.com
  password:
    fromCommand:
      command: [cat, \"{token}\"]
      timeout: 5s
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: cmd-pull}}
spec:
  registries: [cmd]
  namespaces: [\"{prefix}-*\"]
",
            token = path_str(token_file),
        ),
    )
    .unwrap();
}

fn write_token(dir: &Path, password: &str, expires: &str) {
    // Written whole, then renamed: the command never reads half a file.
    let tmp = dir.join(".token.json.tmp");
    std::fs::write(
        &tmp,
        format!(r#"{{"username": "robot", "password": "{password}", "expiresAt": "{expires}"}}"#),
    )
    .unwrap();
    std::fs::rename(tmp, dir.join("token.json")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_fans_a_rotated_command_credential_out_and_keeps_it_when_the_command_fails() {
    const FIRST: &str = "Cmd-Canary-First-5b1e";
    const ROTATED: &str = "Cmd-Canary-Rotated-9d3c";
    const THIRD: &str = "Cmd-Canary-Third-44e0";
    let env = TestEnv::shared().await;
    let prefix = unique_name("pw-cred");
    let namespaces: Vec<String> = (0..4).map(|i| format!("{prefix}-{i}")).collect();
    for ns in &namespaces {
        env.create_project(ns).await.expect("namespace");
    }
    let dir = tempfile::tempdir().unwrap();
    // What the command prints lives outside the workspace folder: a change
    // there is not a workspace change (which would reload and re-run it).
    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("token.json");
    write_command_workspace(dir.path(), &prefix, &token_file);
    // Valid 15 s: refreshed about 12 s after it was read.
    let (expires, _) = rfc3339_in(15);
    write_token(tokens.path(), FIRST, &expires);
    let running = Running::start(env, dir.path());
    wait_for_password(env, &running, &namespaces, FIRST, Duration::from_secs(30)).await;

    // The command now prints another password: it reaches every namespace at
    // the refresh, with no other trigger.
    let (expires, rotated_expiry) = rfc3339_in(15);
    write_token(tokens.path(), ROTATED, &expires);
    let rotated_at = Instant::now();
    wait_for_password(env, &running, &namespaces, ROTATED, Duration::from_secs(30)).await;
    let took = rotated_at.elapsed();
    assert!(
        running.log().contains("credential refreshed") && running.log().contains("changed=true"),
        "{}",
        running.log()
    );
    let metrics = running.metrics().await;
    assert!(
        metrics.contains(&format!(
            "pullwarden_credential_expiry_timestamp_seconds{{registry=\"cmd\"}} {rotated_expiry}"
        )),
        "{metrics}"
    );

    // The command fails from now on: the Secrets keep the rotated value, a
    // metric counts the failure and each Secret gets a Warning Event.
    std::fs::remove_file(&token_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = running.metrics().await;
        if metrics.contains("pullwarden_credential_refresh_failures_total{registry=\"cmd\"}") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed refresh within 30 s: {metrics}\nlog:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Past the rotated value's expiry and a few retries: still there, never blanked.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let kept = passwords(env, &namespaces, "cmd-pull", "registry.example.com").await;
    assert!(
        kept.iter().all(|p| p.as_deref() == Some(ROTATED)),
        "a failed refresh changed a Secret; log:\n{}",
        running.log()
    );
    let mut events = Vec::new();
    for ns in &namespaces {
        let listed = Api::<Event>::namespaced(env.admin(), ns)
            .list(&ListParams::default())
            .await
            .expect("events");
        let found: Vec<Event> = listed
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("CredentialRefreshFailed"))
            .collect();
        assert_eq!(found.len(), 1, "{ns}: {found:?}");
        let event = &found[0];
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.involved_object.kind.as_deref(), Some("Secret"));
        assert_eq!(event.involved_object.name.as_deref(), Some("cmd-pull"));
        events.push(event.message.clone().unwrap_or_default());
    }
    assert!(
        events[0].contains("Registry cmd") && events[0].contains("exit status 1"),
        "{}",
        events[0]
    );

    // A workspace change while the command fails cannot load (the last good
    // one stays); once the command works again the reload is retried without
    // any further file change, and the new PullSecret appears everywhere.
    let workspace = std::fs::read_to_string(dir.path().join("workspace.yaml")).unwrap();
    std::fs::write(
        dir.path().join("workspace.yaml"),
        format!(
            "{workspace}---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: cmd-pull-2}}
spec:
  registries: [cmd]
  namespaces: [\"{prefix}-*\"]
"
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running.log().contains("keeping the last good one") {
        assert!(
            Instant::now() < deadline,
            "the reload did not fail: {}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (expires, _) = rfc3339_in(600);
    write_token(tokens.path(), THIRD, &expires);
    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        let second = passwords(env, &namespaces, "cmd-pull-2", "registry.example.com").await;
        if second.iter().all(|p| p.as_deref() == Some(THIRD)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload was not retried: {second:?}; log:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_for_password(env, &running, &namespaces, THIRD, Duration::from_secs(5)).await;

    let final_metrics = running.metrics().await;
    let log = running.stop().await;
    assert!(log.contains("cannot refresh the credential"), "{log}");
    for line in log.lines().filter(|l| l.contains("credential")) {
        eprintln!("{line}");
    }
    for text in events.iter().chain([&log, &final_metrics]) {
        for secret in [FIRST, ROTATED, THIRD] {
            assert!(!text.contains(secret), "a password in the output:\n{text}");
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("robot:{secret}"));
            assert!(
                !text.contains(&encoded),
                "an auth value in the output:\n{text}"
            );
        }
    }
    eprintln!(
        "rotation reached {} namespaces {took:?} after the command's output changed",
        namespaces.len()
    );
}

async fn service_account(env: &TestEnv, ns: &str, name: &str) {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(env.admin(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create sa");
}

/// `can-pull IMAGE --service-account SA --probe`: its exit code and output.
async fn probe(env: &TestEnv, image: &str, sa: &str, ca: &str) -> common::Run {
    common::pullwarden_admin(
        env,
        &[
            "can-pull",
            image,
            "--service-account",
            sa,
            "--probe",
            "--registry-ca",
            ca,
        ],
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_refreshes_a_20s_token_before_can_pull_probe_fails() {
    const ROBOT_KEY: &str = "long-lived-robot-key-c0ffee";
    const TTL: u64 = 20;
    let env = TestEnv::shared().await;
    let registry = Registry::start_token(
        &[User::new("robot", ROBOT_KEY)],
        &[AccessRule::pull("robot", "team/*")],
        Duration::from_secs(60),
    )
    .await
    .expect("registry");
    registry
        .push_tiny_image("team/app", "v1")
        .await
        .expect("push");
    let issue_url = registry.token_server().expect("token auth").issue_url();
    let ca = path_str(registry.ca_file()).to_owned();
    let image = format!("{}/team/app:v1", registry.host());

    let ns = unique_name("pw-token");
    let control = unique_name("pw-token-ctl");
    for namespace in [&ns, &control] {
        env.create_project(namespace).await.expect("namespace");
        service_account(env, namespace, "app").await;
    }
    let dir = tempfile::tempdir().unwrap();
    // The command logs in with the long-lived key and prints a password valid
    // 20 s (JSON: username, password, expiresAt), as `aws ecr
    // get-authorization-token` does for 12 hours.
    std::fs::write(
        dir.path().join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {ns}}}
spec:
  namespaces: {{include: [\"{ns}\"]}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: short}}
spec:
  server: \"{host}\"
  password:
    fromCommand:
      command: [curl, --silent, --show-error, --fail, --cacert, \"{ca}\", --user, \"robot:{ROBOT_KEY}\", \"{issue_url}?ttl={TTL}\"]
      timeout: 10s
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: short-pull}}
spec:
  registries: [short]
  namespaces: [\"{ns}\"]
  serviceAccounts: [{{name: app}}]
",
            host = registry.host(),
        ),
    )
    .unwrap();
    let running = Running::start(env, dir.path());
    let secrets = Api::<Secret>::namespaced(env.admin(), &ns);
    let sa = format!("{ns}/app");
    // Linked and pullable.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let secret = secrets.get_opt("short-pull").await.expect("get");
        let linked = Api::<ServiceAccount>::namespaced(env.admin(), &ns)
            .get("app")
            .await
            .expect("sa")
            .image_pull_secrets
            .is_some_and(|l| l.iter().any(|r| r.name == "short-pull"));
        if let (Some(secret), true) = (secret, linked) {
            break secret;
        }
        assert!(
            Instant::now() < deadline,
            "not linked in 30 s; log:\n{}",
            running.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let started = Instant::now();
    let first_password = password_in(&first, registry.host()).expect("a password");

    // The control: the first credential, copied into another namespace where
    // nothing refreshes it. Once it expired, the same probe must fail there.
    let copy = Secret {
        metadata: ObjectMeta {
            name: Some("frozen-pull".into()),
            ..ObjectMeta::default()
        },
        type_: first.type_.clone(),
        data: first.data.clone(),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(env.admin(), &control)
        .create(&PostParams::default(), &copy)
        .await
        .expect("control secret");
    let mut app = Api::<ServiceAccount>::namespaced(env.admin(), &control)
        .get("app")
        .await
        .expect("control sa");
    app.image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference {
        name: "frozen-pull".into(),
    }]);
    Api::<ServiceAccount>::namespaced(env.admin(), &control)
        .replace("app", &PostParams::default(), &app)
        .await
        .expect("link control sa");
    let control_sa = format!("{control}/app");
    let before = probe(env, &image, &control_sa, &ca).await;
    assert_eq!(
        before.code,
        Some(0),
        "the control pulls while its credential is fresh: {before}"
    );

    // Probe every 2 s for 2.5 lifetimes: it must never fail.
    let mut seen = BTreeSet::from([first_password.clone()]);
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(TTL * 5 / 2) {
        let run = probe(env, &image, &sa, &ca).await;
        probes += 1;
        assert_eq!(
            run.code,
            Some(0),
            "can-pull --probe failed {:?} after the first token; {run}\nlog:\n{}",
            started.elapsed(),
            running.log()
        );
        if let Some(secret) = secrets.get_opt("short-pull").await.expect("get")
            && let Some(password) = password_in(&secret, registry.host())
        {
            seen.insert(password);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The control's credential is the first one, long expired: refused.
    let after = probe(env, &image, &control_sa, &ca).await;
    assert_eq!(
        after.code,
        Some(2),
        "an expired credential must not pull: {after}"
    );
    assert!(after.stdout.contains("rejected"), "{after}");
    // Refreshed at least twice in 50 s of 20 s tokens.
    assert!(
        seen.len() >= 3,
        "only {} distinct passwords in {:?}; log:\n{}",
        seen.len(),
        started.elapsed(),
        running.log()
    );
    let log = running.stop().await;
    for password in &seen {
        assert!(
            !log.contains(password.as_str()),
            "a password in the log:\n{log}"
        );
        assert!(
            !after.stdout.contains(password.as_str()) && !after.stderr.contains(password.as_str())
        );
    }
    assert!(!log.contains(ROBOT_KEY), "the key in the log");
    eprintln!(
        "{probes} probes over {:?} all pulled; {} distinct 20 s passwords; the frozen first one was refused",
        started.elapsed(),
        seen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_a_new_leader_refreshes_commands_before_it_writes() {
    const OLD: &str = "Cmd-Canary-Leader-Old-1a2b";
    const NEW: &str = "Cmd-Canary-Leader-New-3c4d";
    let env = TestEnv::shared().await;
    let prefix = unique_name("pw-credlead");
    let namespaces: Vec<String> = (0..2).map(|i| format!("{prefix}-{i}")).collect();
    for ns in &namespaces {
        env.create_project(ns).await.expect("namespace");
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("token.json");
    write_command_workspace(dir.path(), &prefix, &token_file);
    // Valid 15 s: the leader refreshes about 12 s after its start.
    let (expires, _) = rfc3339_in(15);
    write_token(tokens.path(), OLD, &expires);
    let lease = unique_name("pw-credlease");
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-name",
        lease.as_str(),
        "--lease-duration",
        "3s",
    ];
    let leader = Running::start_with(env, dir.path(), &flags);
    leader
        .wait_for("acquired the lease", Duration::from_secs(60))
        .await;
    wait_for_password(env, &leader, &namespaces, OLD, Duration::from_secs(30)).await;
    // The standby resolves the old value at its start, then waits.
    let standby = Running::start_with(env, dir.path(), &flags);
    standby
        .wait_for("standby: waiting for the lease", Duration::from_secs(60))
        .await;
    // The command now prints a new value; the leader refreshes and writes it.
    let (expires, _) = rfc3339_in(600);
    write_token(tokens.path(), NEW, &expires);
    wait_for_password(env, &leader, &namespaces, NEW, Duration::from_secs(30)).await;
    let secrets_before = secret_versions(env, &namespaces).await;

    // The leader dies: the new one refreshes before it writes anything, so
    // it never puts back the value it resolved at its start.
    leader.kill().await;
    standby
        .wait_for("acquired the lease", Duration::from_secs(15))
        .await;
    standby
        .wait_for("trigger=leader", Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = standby.log();
    assert!(
        log.contains("credential refreshed registry=cmd changed=true"),
        "{log}"
    );
    assert_eq!(
        secret_versions(env, &namespaces).await,
        secrets_before,
        "the new leader rewrote the Secrets; log:\n{log}"
    );
    let kept = passwords(env, &namespaces, "cmd-pull", "registry.example.com").await;
    assert!(
        kept.iter().all(|p| p.as_deref() == Some(NEW)),
        "log:\n{log}"
    );
    let log = standby.stop().await;
    for secret in [OLD, NEW] {
        assert!(!log.contains(secret), "a password in the log:\n{log}");
    }
}

/// Each namespace's `cmd-pull` resourceVersion.
async fn secret_versions(env: &TestEnv, namespaces: &[String]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for ns in namespaces {
        let secret = Api::<Secret>::namespaced(env.admin(), ns)
            .get("cmd-pull")
            .await
            .expect("get secret");
        out.push(secret.metadata.resource_version);
    }
    out
}

/// A new leader whose first refresh fails keeps the Secrets the last leader
/// wrote (it resolved an older value at its start); once the command works
/// again it writes what it prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_a_new_leader_whose_refresh_fails_never_writes_its_older_value() {
    const V1: &str = "Cmd-Canary-Stale-V1-71e2";
    const V2: &str = "Cmd-Canary-Stale-V2-8a05";
    const V3: &str = "Cmd-Canary-Stale-V3-c3d9";
    let env = TestEnv::shared().await;
    let prefix = unique_name("pw-credstale");
    let namespaces: Vec<String> = (0..2).map(|i| format!("{prefix}-{i}")).collect();
    for ns in &namespaces {
        env.create_project(ns).await.expect("namespace");
    }
    let dir = tempfile::tempdir().unwrap();
    // Outside the workspace folder: changing them is no workspace change.
    let tokens = tempfile::tempdir().unwrap();
    let pw = tokens.path().join("pw");
    let fail = tokens.path().join("fail");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {prefix}}}
spec:
  namespaces: {{include: [\"{prefix}-*\"]}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: cmd}}
spec:
  server: registry.example.com
  username: robot
  password:
    fromCommand:
      command: [sh, -c, \"test ! -e '{fail}' && cat '{pw}'\"]
      timeout: 5s
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: cmd-pull}}
spec:
  registries: [cmd]
  namespaces: [\"{prefix}-*\"]
",
            fail = path_str(&fail),
            pw = path_str(&pw),
        ),
    )
    .unwrap();
    let set_password = |value: &str| {
        let tmp = tokens.path().join(".pw.tmp");
        std::fs::write(&tmp, value).unwrap();
        std::fs::rename(&tmp, &pw).unwrap();
    };
    set_password(V1);
    let lease = unique_name("pw-credlease");
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-name",
        lease.as_str(),
        "--lease-duration",
        "3s",
        "--resync",
        "6s",
    ];
    let leader = Running::start_with(env, dir.path(), &flags);
    leader
        .wait_for("acquired the lease", Duration::from_secs(60))
        .await;
    wait_for_password(env, &leader, &namespaces, V1, Duration::from_secs(30)).await;
    // The standby resolves V1 at its start, then waits.
    let standby = Running::start_with(env, dir.path(), &flags);
    standby
        .wait_for("standby: waiting for the lease", Duration::from_secs(60))
        .await;
    // The command prints V2: the leader refreshes (every resync) and writes it.
    set_password(V2);
    wait_for_password(env, &leader, &namespaces, V2, Duration::from_secs(30)).await;

    // The command fails from now on, and the leader leaves.
    std::fs::write(&fail, "").unwrap();
    let _ = leader.stop().await;
    standby
        .wait_for("acquired the lease", Duration::from_secs(15))
        .await;
    standby
        .wait_for("cannot refresh the credential", Duration::from_secs(15))
        .await;
    // Past a resync and two retries: the Secrets still hold V2.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let now = passwords(env, &namespaces, "cmd-pull", "registry.example.com").await;
        assert!(
            now.iter().all(|p| p.as_deref() == Some(V2)),
            "the new leader wrote another value over V2 ({} of {} kept); log:\n{}",
            now.iter().filter(|p| p.as_deref() == Some(V2)).count(),
            namespaces.len(),
            standby.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        standby
            .log()
            .contains("its Secrets keep their current value until a refresh succeeds"),
        "{}",
        standby.log()
    );
    let metrics = standby.metrics().await;
    assert!(metrics.contains("reason=\"credential_stale\""), "{metrics}");

    // The command works again and prints V3: the new leader writes it.
    set_password(V3);
    std::fs::remove_file(&fail).unwrap();
    wait_for_password(env, &standby, &namespaces, V3, Duration::from_secs(30)).await;
    let log = standby.stop().await;
    eprintln!(
        "new leader: {} failed refresh(es) held its Secrets, then V3 was written",
        log.matches("cannot refresh the credential").count()
    );
    for secret in [V1, V2, V3] {
        assert!(!log.contains(secret), "a password in the log:\n{log}");
    }
}
