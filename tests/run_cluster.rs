//! `pullwarden run` against a real kube-apiserver (`pullwarden-testenv`): the
//! binary runs as a child process on a workspace with a namespace glob; a
//! namespace created afterwards gets its pull secret and link within a second,
//! an idle cluster gets no writes, a broken workspace keeps the last good one,
//! and SIGTERM exits 0. Every test is named `cluster_*`: `scripts/test.sh`
//! counts them.
#![allow(clippy::print_stderr)] // the measured latency is reported

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

mod common;

use common::{binary, kubectl_ok, path_str, repo, token_kubeconfig};
use pullwarden_testenv::{ADMIN_CONTEXT, TestEnv, unique_name};

const PASSWORD: &str = "Run-Canary-Pw-7c41d2";

/// A workspace whose scope and `PullSecret` are the glob `<prefix>-*`.
fn glob_workspace(name: &str, prefix: &str) -> String {
    format!(
        "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {name}}}
spec:
  namespaces: {{include: [\"{prefix}-*\"]}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: quay}}
spec:
  server: quay.io
  username: robot
  password: {{fromEnv: PULLWARDEN_RUN_TEST_PASSWORD}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: quay-pull}}
spec:
  registries: [quay]
  namespaces: [\"{prefix}-*\"]
  serviceAccounts: [{{name: default}}]
"
    )
}

/// `pullwarden run` as a child process, its stderr collected line by line.
struct Running {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(env: &TestEnv, dir: &std::path::Path) -> Running {
        Running::start_with(env, dir, &[])
    }

    fn start_with(env: &TestEnv, dir: &std::path::Path, extra: &[&str]) -> Running {
        let mut args = vec!["--context", ADMIN_CONTEXT];
        args.extend(extra);
        Running::start_as(env.kubeconfig(), dir, &args)
    }

    /// With this kubeconfig (its current context unless `extra` names one).
    fn start_as(kubeconfig: &std::path::Path, dir: &std::path::Path, extra: &[&str]) -> Running {
        let mut child = tokio::process::Command::new(binary())
            .args([
                "run",
                path_str(dir),
                "--kubeconfig",
                path_str(kubeconfig),
                "--metrics-addr",
                "127.0.0.1:0",
                "--workspace-poll",
                "200ms",
            ])
            .args(extra)
            .env("NO_COLOR", "1")
            .env("PULLWARDEN_RUN_TEST_PASSWORD", PASSWORD)
            .env_remove("KUBECONFIG")
            .env_remove("GITHUB_ACTIONS")
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

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `needle` has appeared in more than `already` lines.
    async fn wait_for(&self, needle: &str, already: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count(needle) <= already {
            assert!(
                Instant::now() < deadline,
                "no new `{needle}` line within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The metrics address from the log line that announced it.
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

    async fn terminate(self) -> (Option<i32>, Duration, String) {
        self.signal("-TERM").await
    }

    async fn signal(mut self, signal: &str) -> (Option<i32>, Duration, String) {
        let pid = self.child.id().expect("pid").to_string();
        let started = Instant::now();
        let kill = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(kill.success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("did not exit within 10 s of {signal}; log:\n{}", self.log())
            })
            .expect("wait");
        // Let the reader take the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status.code(), started.elapsed(), self.log())
    }
}

/// `GET path` on the metrics endpoint: (status line, body).
async fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics endpoint");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The sum of every sample of the counter or 0/1 gauge `name` (any labels) in
/// Prometheus text.
fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("not an integer sample: {l}"))
        })
        .sum()
}

async fn create_namespace_with_default_sa(env: &TestEnv, ns: &str) {
    let client = env.admin();
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(ns.to_owned());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
    // The test control plane runs no ServiceAccount controller.
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some("default".to_owned());
    Api::<ServiceAccount>::namespaced(client, ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create the default ServiceAccount");
}

/// The `quay-pull` Secret's resourceVersion and the `default` ServiceAccount's
/// (when it lists `quay-pull`), once both are in place.
async fn pull_access(env: &TestEnv, ns: &str) -> Option<(String, String)> {
    let client = env.admin();
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt("quay-pull")
        .await
        .expect("get secret")?;
    let sa = Api::<ServiceAccount>::namespaced(client, ns)
        .get_opt("default")
        .await
        .expect("get service account")?;
    let linked = sa
        .image_pull_secrets
        .iter()
        .flatten()
        .any(|r| r.name == "quay-pull");
    linked.then(|| {
        (
            secret.metadata.resource_version.unwrap_or_default(),
            sa.metadata.resource_version.unwrap_or_default(),
        )
    })
}

/// Polls until the namespace has its pull secret and link; the time it took.
async fn wait_for_pull_access(env: &TestEnv, ns: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if pull_access(env, ns).await.is_some() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_new_namespace_gets_pull_access_within_a_second_idle_writes_nothing_sigterm_exits_0()
 {
    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let name = unique_name("run");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        glob_workspace(&name, &prefix),
    )
    .expect("workspace");

    let running = Running::start(env, dir.path());
    // The first reconcile: the glob matches nothing yet.
    running
        .wait_for("in sync", 0, Duration::from_secs(60))
        .await;
    let addr = running.metrics_addr();
    let (ready, _) = http_get(&addr, "/readyz").await;
    assert!(ready.contains("200"), "{ready}");

    // 1. A new namespace matching the glob gets its pull secret and link.
    let ns = format!("{prefix}-a");
    let created = Instant::now();
    create_namespace_with_default_sa(env, &ns).await;
    let creating = created.elapsed();
    let latency = wait_for_pull_access(env, &ns, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no pull access in {ns} after 10 s; log:\n{}", running.log()));
    let total = created.elapsed();
    eprintln!(
        "pullwarden run: pull secret and link in place {latency:?} after the namespace and its ServiceAccount existed ({total:?} from the namespace create call; the creates took {creating:?})"
    );
    assert!(
        latency <= Duration::from_secs(1),
        "pull access took {latency:?}; log:\n{}",
        running.log()
    );
    let secret = Api::<Secret>::namespaced(env.admin(), &ns)
        .get("quay-pull")
        .await
        .expect("secret");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let log = running.log();
    assert!(
        !log.contains(PASSWORD),
        "the log holds the password:\n{log}"
    );

    // 2. Idle: the events of its own writes settle; then an unrelated change
    // (an annotation on the namespace) triggers a reconcile that writes nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = pull_access(env, &ns).await.expect("pull access");
    let (_, metrics) = http_get(&addr, "/metrics").await;
    let reconciles = metric_sum(&metrics, "pullwarden_reconciles_total");
    let changes = metric_sum(&metrics, "pullwarden_changes_total");
    assert!(changes >= 2, "a create and a link were counted:\n{metrics}");
    let in_sync = running.count("in sync");
    Api::<Namespace>::all(env.admin())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"annotations": {"example.com/touched": "yes"}}}),
            ),
        )
        .await
        .expect("annotate the namespace");
    running
        .wait_for("in sync", in_sync, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pull_access(env, &ns).await.expect("pull access");
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert!(
        metric_sum(&metrics, "pullwarden_reconciles_total") > reconciles,
        "the annotation triggered a reconcile:\n{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "pullwarden_changes_total"),
        changes,
        "an idle reconcile wrote:\n{metrics}\nlog:\n{}",
        running.log()
    );
    assert_eq!(before, after, "the managed objects were written while idle");
    assert!(metrics.contains("pullwarden_last_reconcile_timestamp_seconds "));

    // 3. SIGTERM: exit 0, promptly.
    let (code, took, log) = running.terminate().await;
    eprintln!("pullwarden run: exited {code:?} {took:?} after SIGTERM");
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_reloads_the_workspace_and_keeps_the_last_good_one_when_broken() {
    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let other = unique_name("squad");
    let name = unique_name("run");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("workspace.yaml");
    std::fs::write(&file, glob_workspace(&name, &prefix)).expect("workspace");

    let running = Running::start(env, dir.path());
    running
        .wait_for("in sync", 0, Duration::from_secs(60))
        .await;
    let addr = running.metrics_addr();

    // A broken workspace: reported, the last good one kept.
    std::fs::write(
        &file,
        "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: [",
    )
    .expect("broken");
    running
        .wait_for("keeping the last good one", 0, Duration::from_secs(10))
        .await;
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(
        metric_sum(&metrics, "pullwarden_workspace_broken"),
        1,
        "{metrics}"
    );
    let ns = format!("{prefix}-b");
    create_namespace_with_default_sa(env, &ns).await;
    assert!(
        wait_for_pull_access(env, &ns, Duration::from_secs(10))
            .await
            .is_some(),
        "the last good workspace was not used; log:\n{}",
        running.log()
    );

    // A fixed workspace with another glob: reloaded, its namespaces served.
    std::fs::write(&file, glob_workspace(&name, &other)).expect("fixed");
    running
        .wait_for("workspace reloaded", 0, Duration::from_secs(10))
        .await;
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(
        metric_sum(&metrics, "pullwarden_workspace_broken"),
        0,
        "{metrics}"
    );
    let ns = format!("{other}-a");
    create_namespace_with_default_sa(env, &ns).await;
    assert!(
        wait_for_pull_access(env, &ns, Duration::from_secs(10))
            .await
            .is_some(),
        "the reloaded workspace was not used; log:\n{}",
        running.log()
    );

    let (code, _, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_leader_election_only_the_leader_writes_and_a_standby_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;

    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let name = unique_name("run");
    let lease = unique_name("lease");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        glob_workspace(&name, &prefix),
    )
    .expect("workspace");
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-name",
        lease.as_str(),
        "--lease-duration",
        "3s",
    ];

    let first = Running::start_with(env, dir.path(), &flags);
    first
        .wait_for("acquired the lease", 0, Duration::from_secs(60))
        .await;
    first.wait_for("in sync", 0, Duration::from_secs(30)).await;
    let second = Running::start_with(env, dir.path(), &flags);
    second
        .wait_for("standby: waiting for the lease", 0, Duration::from_secs(60))
        .await;

    // Only the leader writes.
    let ns = format!("{prefix}-a");
    create_namespace_with_default_sa(env, &ns).await;
    assert!(
        wait_for_pull_access(env, &ns, Duration::from_secs(10))
            .await
            .is_some(),
        "no pull access; leader log:\n{}",
        first.log()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, leader) = http_get(&first.metrics_addr(), "/metrics").await;
    let (ready, _) = http_get(&second.metrics_addr(), "/readyz").await;
    assert!(ready.contains("200"), "a standby is ready: {ready}");
    let (_, standby) = http_get(&second.metrics_addr(), "/metrics").await;
    assert!(
        metric_sum(&leader, "pullwarden_changes_total") >= 2,
        "{leader}"
    );
    assert_eq!(metric_sum(&leader, "pullwarden_leader"), 1, "{leader}");
    assert_eq!(
        metric_sum(&standby, "pullwarden_changes_total"),
        0,
        "{standby}"
    );
    assert_eq!(
        metric_sum(&standby, "pullwarden_reconciles_total"),
        0,
        "{standby}"
    );
    assert_eq!(metric_sum(&standby, "pullwarden_leader"), 0, "{standby}");

    // SIGKILL of the leader: the standby takes over and converges.
    let (code, _, _) = first.signal("-KILL").await;
    assert_eq!(code, None, "killed by a signal");
    let killed = Instant::now();
    second
        .wait_for("acquired the lease", 0, Duration::from_secs(15))
        .await;
    let takeover = killed.elapsed();
    eprintln!(
        "pullwarden run: the standby took the lease over {takeover:?} after the leader was killed (lease duration 3 s)"
    );
    assert!(
        takeover <= Duration::from_secs(6),
        "takeover took {takeover:?}; log:\n{}",
        second.log()
    );
    let ns = format!("{prefix}-b");
    create_namespace_with_default_sa(env, &ns).await;
    assert!(
        wait_for_pull_access(env, &ns, Duration::from_secs(10))
            .await
            .is_some(),
        "the new leader did not converge; log:\n{}",
        second.log()
    );

    // SIGTERM releases the lease.
    let (code, _, log) = second.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
    let held = Api::<Lease>::namespaced(env.admin(), "default")
        .get(&lease)
        .await
        .expect("lease");
    assert_eq!(
        held.spec.and_then(|s| s.holder_identity),
        None,
        "the lease was not released; log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_in_cluster_example_rbac_is_enough() {
    let env = TestEnv::shared().await;
    let dir = repo().join("examples/in-cluster");
    let mut manifests: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/in-cluster")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    assert_eq!(manifests.len(), 4, "{manifests:?}");
    // Every manifest is accepted by the API server (schema, admission); no
    // controller runs the Deployment here.
    for manifest in &manifests {
        kubectl_ok(env, &["apply", "--server-side", "-f", path_str(manifest)]).await;
    }
    // The ConfigMap's workspace is valid.
    let configmap = kubectl_ok(
        env,
        &[
            "get",
            "configmap",
            "pullwarden-run-workspace",
            "-n",
            "pullwarden-system",
            "-o",
            "jsonpath={.data.workspace\\.yaml}",
        ],
    )
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let example = tmp.path().join("example.yaml");
    std::fs::write(&example, &configmap.stdout).expect("write");
    let validate = common::run(binary(), &["validate", path_str(&example)], &[]).await;
    assert_eq!(validate.code, Some(0), "{validate}");

    // `pullwarden run --leader-elect` as the example's ServiceAccount: its
    // RBAC lets it watch, take the Lease and converge a new namespace.
    let token = kubectl_ok(
        env,
        &[
            "create",
            "token",
            "pullwarden-run",
            "-n",
            "pullwarden-system",
        ],
    )
    .await;
    let kubeconfig = tmp.path().join("run-kubeconfig");
    token_kubeconfig(env, token.stdout.trim(), &kubeconfig);
    let prefix = unique_name("team");
    let workspace = tmp.path().join("workspace");
    std::fs::create_dir(&workspace).expect("mkdir");
    std::fs::write(
        workspace.join("workspace.yaml"),
        glob_workspace(&unique_name("run"), &prefix),
    )
    .expect("workspace");
    let lease = unique_name("lease");
    let running = Running::start_as(
        &kubeconfig,
        &workspace,
        &[
            "--leader-elect",
            "--lease-namespace",
            "pullwarden-system",
            "--lease-name",
            &lease,
            "--log-format",
            "json",
        ],
    );
    running
        .wait_for("acquired the lease", 0, Duration::from_secs(60))
        .await;
    running
        .wait_for("in sync", 0, Duration::from_secs(30))
        .await;
    let ns = format!("{prefix}-a");
    create_namespace_with_default_sa(env, &ns).await;
    assert!(
        wait_for_pull_access(env, &ns, Duration::from_secs(10))
            .await
            .is_some(),
        "no pull access as the example's ServiceAccount; log:\n{}",
        running.log()
    );
    let log = running.log();
    assert!(!log.contains("forbidden"), "{log}");
    let (code, _, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
    // `--log-format json` (as the Deployment runs it): one object per line.
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["msg"].is_string(),
            "{line}"
        );
        assert!(value["ts"].is_number(), "{line}");
    }
    assert!(log.contains("\"msg\":\"stopped\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_backs_off_from_a_writer_that_keeps_undoing_its_link() {
    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        glob_workspace(&unique_name("run"), &prefix),
    )
    .expect("workspace");
    let running = Running::start(env, dir.path());
    running
        .wait_for("in sync", 0, Duration::from_secs(60))
        .await;
    let ns = format!("{prefix}-a");
    create_namespace_with_default_sa(env, &ns).await;
    assert!(
        wait_for_pull_access(env, &ns, Duration::from_secs(10))
            .await
            .is_some(),
        "no pull access; log:\n{}",
        running.log()
    );

    // The ServiceAccount was created bare: the API server tracks no Update of
    // an object without managedFields, so pullwarden's link write carried
    // its own entry, and from then on every writer is recorded.
    let accounts = Api::<ServiceAccount>::namespaced(env.admin(), &ns);
    let managers = |sa: &ServiceAccount| -> Vec<String> {
        sa.metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect()
    };
    let linked = accounts.get("default").await.expect("get");
    assert_eq!(managers(&linked), ["pullwarden"], "{:?}", linked.metadata);
    // A team adds its own entry (and owns the list for a moment).
    accounts
        .patch(
            "default",
            &PatchParams {
                field_manager: Some("team-admin".to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({
                "imagePullSecrets": [{"name": "quay-pull"}, {"name": "team-registry"}]
            })),
        )
        .await
        .expect("add the team's entry");

    // A hostile writer strips pullwarden's entry whenever it sees it, for 20 s.
    let stripper = PostParams {
        field_manager: Some("pull-secret-stripper".to_owned()),
        ..PostParams::default()
    };
    let started = Instant::now();
    let mut strips = 0u32;
    while started.elapsed() < Duration::from_secs(20) {
        let mut sa = accounts.get("default").await.expect("get");
        let before = sa.image_pull_secrets.as_ref().map_or(0, Vec::len);
        if let Some(list) = sa.image_pull_secrets.as_mut() {
            list.retain(|r| r.name != "quay-pull");
        }
        if sa.image_pull_secrets.as_ref().map_or(0, Vec::len) != before
            && accounts.replace("default", &stripper, &sa).await.is_ok()
        {
            strips += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = http_get(&running.metrics_addr(), "/metrics").await;
    eprintln!(
        "pullwarden run: a writer stripping the link for 20 s removed it {strips} times (pullwarden re-linked {} times)",
        metric_sum(&metrics, "pullwarden_rewrites_total")
    );
    // Without a backoff pullwarden re-links within a reconcile (~0.2 s) each
    // time: dozens of rounds. With it: after 2, 4, 8 s...
    assert!(
        strips >= 3,
        "pullwarden stopped re-linking: {strips}; log:\n{}",
        running.log()
    );
    assert!(
        strips <= 8,
        "no backoff: {strips} rounds; log:\n{}",
        running.log()
    );
    assert!(
        metric_sum(&metrics, "pullwarden_backoff_held_total") >= 1,
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "pullwarden_rewrites_total") >= 2,
        "{metrics}"
    );
    let log = running.log();
    let warning = log
        .lines()
        .find(|l| l.contains("backing off"))
        .unwrap_or_else(|| panic!("no backoff warning:\n{log}"));
    // It names the writer that owns the undone field (`imagePullSecrets`):
    // the stripper, not the team that wrote the list before it.
    let writer = warning
        .split("writer=")
        .nth(1)
        .and_then(|w| w.split_whitespace().next())
        .unwrap_or_else(|| panic!("no writer in: {warning}"));
    let now = accounts.get("default").await.expect("get");
    eprintln!(
        "pullwarden run: backoff warning names writer={writer} (managedFields: {:?})",
        managers(&now)
    );
    assert_eq!(writer, "pull-secret-stripper", "{warning}");
    // And a Warning Event on the ServiceAccount says so.
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(env.admin(), &ns)
        .list(&kube::api::ListParams::default())
        .await
        .expect("events");
    let event = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("BackingOff"))
        .unwrap_or_else(|| panic!("no BackingOff Event in {ns}; log:\n{log}"));
    assert_eq!(event.involved_object.name.as_deref(), Some("default"));
    assert_eq!(
        event.involved_object.kind.as_deref(),
        Some("ServiceAccount")
    );
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("another writer (pull-secret-stripper) keeps undoing"),
        "{:?}",
        event.message
    );
    eprintln!("pullwarden run: backoff Event: {:?}", event.message);
    let (code, _, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_sigterm_during_a_burst_exits_0_and_a_restart_converges_without_duplicates() {
    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        glob_workspace(&unique_name("run"), &prefix),
    )
    .expect("workspace");
    let running = Running::start(env, dir.path());
    running
        .wait_for("in sync", 0, Duration::from_secs(60))
        .await;
    // A burst of 20 namespaces; SIGTERM as soon as the first writes land.
    let names: Vec<String> = (0..20).map(|i| format!("{prefix}-{i}")).collect();
    for ns in &names {
        create_namespace_with_default_sa(env, ns).await;
    }
    running.wait_for("done ", 0, Duration::from_secs(10)).await;
    let (code, took, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let before = {
        let mut n = 0;
        for ns in &names {
            n += usize::from(pull_access(env, ns).await.is_some());
        }
        n
    };
    eprintln!(
        "pullwarden run: SIGTERM during a burst of 20 namespaces: exited 0 in {took:?} with {before} of them converged"
    );

    // A restart converges every namespace, each link listed once.
    let running = Running::start(env, dir.path());
    for ns in &names {
        assert!(
            wait_for_pull_access(env, ns, Duration::from_secs(30))
                .await
                .is_some(),
            "{ns} did not converge after the restart; log:\n{}",
            running.log()
        );
        let sa = Api::<ServiceAccount>::namespaced(env.admin(), ns)
            .get("default")
            .await
            .expect("sa");
        let links = sa
            .image_pull_secrets
            .iter()
            .flatten()
            .filter(|r| r.name == "quay-pull")
            .count();
        assert_eq!(links, 1, "{ns}: {:?}", sa.image_pull_secrets);
    }
    let (code, _, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_a_lost_lease_stops_writing_until_it_is_taken_back() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let lease = unique_name("lease");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        glob_workspace(&unique_name("run"), &prefix),
    )
    .expect("workspace");
    let running = Running::start_with(
        env,
        dir.path(),
        &[
            "--leader-elect",
            "--lease-namespace",
            "default",
            "--lease-name",
            lease.as_str(),
            "--lease-duration",
            "3s",
        ],
    );
    running
        .wait_for("in sync", 0, Duration::from_secs(60))
        .await;

    // Another holder takes the Lease (as a replica with a skewed view would)
    // and keeps renewing it.
    let leases = Api::<Lease>::namespaced(env.admin(), "default");
    let intrude = |leases: Api<Lease>, lease: String| async move {
        for _ in 0..20 {
            let Ok(mut held) = leases.get(&lease).await else {
                continue;
            };
            if let Some(spec) = held.spec.as_mut() {
                spec.holder_identity = Some("intruder".to_owned());
                spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            }
            if leases
                .replace(&lease, &PostParams::default(), &held)
                .await
                .is_ok()
            {
                return;
            }
        }
        panic!("could not write the Lease");
    };
    let stolen = Instant::now();
    intrude(leases.clone(), lease.clone()).await;
    running
        .wait_for("lost the lease", 0, Duration::from_secs(5))
        .await;
    eprintln!(
        "pullwarden run: stopped writing {:?} after the Lease was taken",
        stolen.elapsed()
    );
    let (_, metrics) = http_get(&running.metrics_addr(), "/metrics").await;
    assert_eq!(metric_sum(&metrics, "pullwarden_leader"), 0, "{metrics}");
    let changes = metric_sum(&metrics, "pullwarden_changes_total");

    // While the intruder renews, a new namespace gets nothing.
    let ns = format!("{prefix}-a");
    create_namespace_with_default_sa(env, &ns).await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        intrude(leases.clone(), lease.clone()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        pull_access(env, &ns).await.is_none(),
        "written without the lease; log:\n{}",
        running.log()
    );
    let (_, metrics) = http_get(&running.metrics_addr(), "/metrics").await;
    assert_eq!(
        metric_sum(&metrics, "pullwarden_changes_total"),
        changes,
        "{metrics}"
    );

    // The intruder stops renewing: pullwarden takes the Lease back and converges.
    running
        .wait_for("acquired the lease", 1, Duration::from_secs(15))
        .await;
    assert!(
        wait_for_pull_access(env, &ns, Duration::from_secs(10))
            .await
            .is_some(),
        "no convergence after the Lease came back; log:\n{}",
        running.log()
    );
    let (code, _, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_latency_over_30_namespaces_and_prune_when_a_label_stops_matching() {
    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let value = unique_name("on");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {name}}}
spec:
  namespaces: {{include: [\"{prefix}-*\"]}}
  prune: true
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: quay}}
spec:
  server: quay.io
  username: robot
  password: {{fromEnv: PULLWARDEN_RUN_TEST_PASSWORD}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: quay-pull}}
spec:
  registries: [quay]
  namespaces:
    - matchLabels: {{example.com/pull: {value}}}
  serviceAccounts: [{{name: default}}]
",
            name = unique_name("run")
        ),
    )
    .expect("workspace");
    let running = Running::start(env, dir.path());
    running
        .wait_for("in sync", 0, Duration::from_secs(60))
        .await;
    let namespaces = Api::<Namespace>::all(env.admin());

    // 30 labelled namespaces, one after the other: the time from the
    // namespace and its ServiceAccount existing to the secret and link.
    let mut latencies = Vec::new();
    for i in 0..30 {
        let ns = format!("{prefix}-{i}");
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(ns.clone());
        namespace.metadata.labels = Some([("example.com/pull".to_owned(), value.clone())].into());
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create namespace");
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some("default".to_owned());
        Api::<ServiceAccount>::namespaced(env.admin(), &ns)
            .create(&PostParams::default(), &sa)
            .await
            .expect("create sa");
        latencies.push(
            wait_for_pull_access(env, &ns, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("no pull access in {ns}; log:\n{}", running.log())),
        );
    }
    latencies.sort();
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    eprintln!(
        "pullwarden run: latency over {} namespaces: min {:?}, median {:?}, p90 {:?}, max {:?}",
        latencies.len(),
        latencies[0],
        at(50),
        at(90),
        latencies[latencies.len() - 1]
    );
    assert!(at(90) <= Duration::from_secs(1), "{latencies:?}");

    // A namespace whose label stops matching is cleaned up (prune on).
    let ns = format!("{prefix}-0");
    let unlabelled = Instant::now();
    namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"example.com/pull": null}}})),
        )
        .await
        .expect("unlabel");
    let secrets = Api::<Secret>::namespaced(env.admin(), &ns);
    let mut pruned = None;
    while unlabelled.elapsed() < Duration::from_secs(10) {
        let sa = Api::<ServiceAccount>::namespaced(env.admin(), &ns)
            .get("default")
            .await
            .expect("sa");
        let linked = sa
            .image_pull_secrets
            .iter()
            .flatten()
            .any(|r| r.name == "quay-pull");
        if secrets.get_opt("quay-pull").await.expect("get").is_none() && !linked {
            pruned = Some(unlabelled.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pruned =
        pruned.unwrap_or_else(|| panic!("not cleaned up in 10 s; log:\n{}", running.log()));
    eprintln!("pullwarden run: secret and link removed {pruned:?} after the label was removed");
    assert!(pruned <= Duration::from_secs(1), "{pruned:?}");
    // The others are untouched.
    assert!(pull_access(env, &format!("{prefix}-1")).await.is_some());
    let (code, _, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
}

/// The value of one sample of Prometheus text (`name{labels}` exactly as
/// printed), 0 when absent.
fn metric_sample(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("not an integer sample: {sample} {v}"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_beside_the_openshift_sa_controller_no_fight_both_entries_present() {
    use futures::StreamExt as _;
    use kube::runtime::watcher;
    use pullwarden_testenv::PULL_SECRET_REF_ANNOTATION;

    type History = std::collections::BTreeMap<String, Vec<(u64, Vec<String>)>>;

    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        glob_workspace(&unique_name("run"), &prefix).replace(
            "serviceAccounts: [{name: default}]",
            "serviceAccounts: [{name: default}, {name: builder}]",
        ),
    )
    .expect("workspace");
    // Three groups of namespaces: OpenShift's controller links `a` before
    // pullwarden runs, lags 1.5 s behind on `b` (pullwarden links first),
    // and races pullwarden on `c`.
    let group = |g: &str| -> Vec<String> { (0..2).map(|i| format!("{prefix}-{g}{i}")).collect() };
    let (first, lagging, racing) = (group("a"), group("b"), group("c"));
    let lag = {
        let b = format!("{prefix}-b");
        let ours = format!("{prefix}-");
        move |ns: &str| {
            if ns.starts_with(&b) {
                Some(Duration::from_millis(1500))
            } else {
                ns.starts_with(&ours).then_some(Duration::ZERO)
            }
        }
    };

    // The server's own record of every ServiceAccount write in these
    // namespaces: each resourceVersion a watch delivers is one write, with
    // the `imagePullSecrets` it left.
    let history: Arc<Mutex<History>> = Arc::default();
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    let recorder = {
        let history = history.clone();
        let ours = format!("{prefix}-");
        let api = Api::<ServiceAccount>::all(env.admin());
        tokio::spawn(async move {
            let mut listed = Some(listed_tx);
            let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(sa) | watcher::Event::InitApply(sa)) => {
                        let ns = sa.metadata.namespace.clone().unwrap_or_default();
                        if !ns.starts_with(&ours) {
                            continue;
                        }
                        let rv: u64 = sa
                            .metadata
                            .resource_version
                            .as_deref()
                            .and_then(|v| v.parse().ok())
                            .expect("numeric resourceVersion");
                        let pulls = sa
                            .image_pull_secrets
                            .iter()
                            .flatten()
                            .map(|r| r.name.clone())
                            .collect();
                        let mut history = history.lock().unwrap();
                        let versions = history
                            .entry(format!("{ns}/{}", sa.metadata.name.unwrap_or_default()))
                            .or_default();
                        if !versions.iter().any(|(v, _)| *v == rv) {
                            versions.push((rv, pulls));
                            versions.sort();
                        }
                    }
                    _ => {}
                }
            }
        })
    };
    listed_rx.await.expect("the ServiceAccount watch listed");

    let create = |names: Vec<String>| async move {
        for ns in &names {
            create_namespace_with_default_sa(env, ns).await;
            let mut builder = ServiceAccount::default();
            builder.metadata.name = Some("builder".to_owned());
            Api::<ServiceAccount>::namespaced(env.admin(), ns)
                .create(&PostParams::default(), &builder)
                .await
                .expect("create builder");
        }
    };
    let accounts = |names: &[String]| -> Vec<(String, &'static str)> {
        names
            .iter()
            .flat_map(|ns| [(ns.clone(), "default"), (ns.clone(), "builder")])
            .collect()
    };
    // Whether the ServiceAccount lists both pullwarden's and OpenShift's entry.
    let both = |sa: &ServiceAccount| {
        let pulls: Vec<&str> = sa
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.as_str())
            .collect();
        let dockercfg = sa
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PULL_SECRET_REF_ANNOTATION));
        pulls.contains(&"quay-pull") && dockercfg.is_some_and(|d| pulls.contains(&d.as_str()))
    };
    let wait_until = |accounts: Vec<(String, &'static str)>,
                      check: fn(&ServiceAccount) -> bool,
                      what: &'static str| async move {
        let started = Instant::now();
        loop {
            let mut done = 0;
            for (ns, sa) in &accounts {
                let sa = Api::<ServiceAccount>::namespaced(env.admin(), ns)
                    .get(sa)
                    .await
                    .expect("get sa");
                done += usize::from(check(&sa));
            }
            if done == accounts.len() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{done} of {} ServiceAccounts {what} after 20 s",
                accounts.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    // OpenShift's controller runs the whole time, as on a real cluster
    // (simulated on the local control plane only: against another cluster
    // the test returns here).
    let Ok(controller) = env.openshift_sa_controller() else {
        assert!(!env.simulates_openshift());
        recorder.abort();
        return;
    };
    let openshift = controller.run(lag);
    create(first.clone()).await;
    wait_until(
        accounts(&first),
        |sa| {
            sa.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(PULL_SECRET_REF_ANNOTATION))
        },
        "linked by OpenShift's controller",
    )
    .await;

    // pullwarden starts on those, then new namespaces appear.
    let running = Running::start(env, dir.path());
    running
        .wait_for("in sync", 0, Duration::from_secs(60))
        .await;
    create(lagging.clone()).await;
    create(racing.clone()).await;
    let all: Vec<(String, &str)> = [&first, &lagging, &racing]
        .into_iter()
        .flat_map(|g| accounts(g))
        .collect();
    let converged = wait_until(all.clone(), both, "have both entries").await;

    // OpenShift refreshes its token secrets by itself: pullwarden's watch
    // sees the change and writes nothing.
    let rotated = controller
        .rotate_data(&racing[0], "default")
        .await
        .expect("rotate");
    let in_sync = running.count("in sync");
    running
        .wait_for("in sync", in_sync, Duration::from_secs(10))
        .await;
    // Settle, then nothing may move for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = history.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = history.lock().unwrap().clone();
    assert_eq!(
        settled,
        history,
        "ServiceAccounts were still written after converging; log:\n{}",
        running.log()
    );

    let (_, metrics) = http_get(&running.metrics_addr(), "/metrics").await;
    let log = running.log();
    let links = metric_sample(
        &metrics,
        "pullwarden_changes_total{kind=\"ServiceAccount\",action=\"link\",result=\"done\"}",
    );
    eprintln!(
        "pullwarden run beside the OpenShift SA controller: {} ServiceAccounts with both entries {converged:?} after the last create; pullwarden link writes {links}, OpenShift controller writes {}, its token Secret {rotated} rotated without a write after it",
        all.len(),
        openshift.links()
    );
    assert!(openshift.errors().is_empty(), "{:?}", openshift.errors());
    let mut pullwarden_first = 0;
    for (ns, sa) in &all {
        let account = Api::<ServiceAccount>::namespaced(env.admin(), ns)
            .get(sa)
            .await
            .expect("get sa");
        assert!(
            both(&account),
            "{ns}/{sa}: {:?}",
            account.image_pull_secrets
        );
        let pulls: Vec<&str> = account
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(pulls.len(), 2, "each entry once in {ns}/{sa}: {pulls:?}");
        // pullwarden linked it once: one `done link` line per ServiceAccount.
        let title = format!("done link ServiceAccount {ns}/{sa}");
        assert_eq!(
            log.lines().filter(|l| l.ends_with(&title)).count(),
            1,
            "{title}; log:\n{log}"
        );
        // The server saw the create and exactly two writes: OpenShift's
        // link and pullwarden's, in the order the group says.
        let versions = &history[&format!("{ns}/{sa}")];
        assert_eq!(
            versions.len(),
            3,
            "{ns}/{sa}: the create plus each write: {versions:?}; log:\n{log}"
        );
        let first_write = &versions[1].1;
        let by_pullwarden = first_write == &["quay-pull".to_owned()];
        pullwarden_first += usize::from(by_pullwarden);
        if first.contains(ns) {
            assert!(
                first_write.len() == 1 && first_write[0].starts_with(&format!("{sa}-dockercfg-")),
                "{ns}/{sa}: OpenShift's controller wrote first: {versions:?}"
            );
        }
        if lagging.contains(ns) {
            assert!(
                by_pullwarden,
                "{ns}/{sa}: pullwarden wrote first: {versions:?}"
            );
        }
    }
    eprintln!(
        "pullwarden run beside the OpenShift SA controller: pullwarden wrote first on {pullwarden_first} of {} ServiceAccounts",
        all.len()
    );
    assert_eq!(links, all.len() as u64, "{metrics}");
    assert_eq!(openshift.links(), all.len(), "one write per ServiceAccount");
    assert_eq!(
        metric_sum(&metrics, "pullwarden_backoff_held_total"),
        0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "pullwarden_rewrites_total"),
        0,
        "{metrics}"
    );
    assert!(!log.contains("backing off"), "{log}");
    drop(openshift);
    recorder.abort();
    let (code, _, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_quiet_prints_only_errors() {
    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("workspace.yaml");
    std::fs::write(&file, glob_workspace(&unique_name("run"), &prefix)).expect("workspace");
    let running = Running::start_with(env, dir.path(), &["-q"]);
    // It works as without -q (a new namespace converges) ...
    let ns = format!("{prefix}-a");
    create_namespace_with_default_sa(env, &ns).await;
    assert!(
        wait_for_pull_access(env, &ns, Duration::from_secs(30))
            .await
            .is_some(),
        "no pull access; log:\n{}",
        running.log()
    );
    // ... an error is printed (a broken workspace: one error line per problem) ...
    std::fs::write(
        &file,
        "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: [",
    )
    .expect("broken");
    running
        .wait_for(
            "pullwarden run: error workspace:",
            0,
            Duration::from_secs(10),
        )
        .await;
    let (code, _, log) = running.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
    // ... and nothing else: no info line (serving, in sync, done, stopped) and
    // no warning (keeping the last good one).
    assert!(
        log.lines().all(|l| l.starts_with("pullwarden run: error ")),
        "-q printed more than errors:\n{log}"
    );
}

/// A workspace change the standby noticed while it waited is applied when it
/// takes the lease over: it does not prune by the workspace of its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_a_standby_that_takes_over_applies_the_workspace_changed_while_it_waited() {
    let env = TestEnv::shared().await;
    let prefix = unique_name("team");
    let name = unique_name("run");
    let lease = unique_name("lease");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("workspace.yaml"),
        glob_workspace(&name, &prefix),
    )
    .expect("workspace");
    let ns = format!("{prefix}-a");
    create_namespace_with_default_sa(env, &ns).await;
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        "default",
        "--lease-name",
        lease.as_str(),
        "--lease-duration",
        "3s",
    ];
    let first = Running::start_with(env, dir.path(), &flags);
    first
        .wait_for("acquired the lease", 0, Duration::from_secs(60))
        .await;
    first.wait_for("in sync", 0, Duration::from_secs(30)).await;
    let second = Running::start_with(env, dir.path(), &flags);
    second
        .wait_for("standby: waiting for the lease", 0, Duration::from_secs(60))
        .await;

    // A new file with a new PullSecret: the leader reloads and creates it.
    std::fs::write(
        dir.path().join("extra.yaml"),
        format!(
            "apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: extra-pull}}
spec:
  registries: [quay]
  namespaces: [\"{prefix}-*\"]
"
        ),
    )
    .expect("extra.yaml");
    first
        .wait_for("workspace reloaded", 0, Duration::from_secs(10))
        .await;
    let secrets = Api::<Secret>::namespaced(env.admin(), &ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    while secrets.get_opt("extra-pull").await.expect("get").is_none() {
        assert!(
            Instant::now() < deadline,
            "the leader did not create extra-pull; log:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The standby's poller (every 200 ms) has seen the change too.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The leader leaves: the standby takes over with the workspace on disk.
    let (code, _, _) = first.terminate().await;
    assert_eq!(code, Some(0));
    second
        .wait_for("acquired the lease", 0, Duration::from_secs(15))
        .await;
    second
        .wait_for("trigger=leader", 0, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = second.log();
    assert!(
        secrets.get_opt("extra-pull").await.expect("get").is_some(),
        "the new leader pruned extra-pull; log:\n{log}"
    );
    assert!(log.contains("workspace reloaded"), "{log}");
    assert!(!log.contains("delete Secret"), "{log}");
    let (code, _, log) = second.terminate().await;
    assert_eq!(code, Some(0), "log:\n{log}");
    eprintln!("pullwarden run: the new leader kept extra-pull and reloaded the workspace");
}
