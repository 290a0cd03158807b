//! `pullwarden run` re-plans only what a watch event touched, against a real
//! kube-apiserver with an audit log of every request (reads included): a new
//! namespace is read, planned and written by itself, with no cluster-wide
//! LIST, and the result is what a full plan gives. Every test is named
//! `cluster_*`: `scripts/test.sh` counts them.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, PostParams};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

mod common;

use common::{binary, path_str, pullwarden_admin};
use pullwarden_testenv::{
    AuditEvent, Options, TestEnv, UNPRIVILEGED_USER, USER_CONTEXT, unique_name,
};

const PASSWORD: &str = "Scoped-Canary-Pw-41c9";

/// Scope `<p>-*`; `quay-pull` in every `<p>-team-*` namespace, linked to
/// `default`; a grant in `<p>-ci` to every ServiceAccount of every
/// `<p>-team-*` namespace (a glob: its subjects follow the namespaces).
fn workspace(name: &str, p: &str) -> String {
    format!(
        "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {name}}}
spec:
  namespaces: {{include: [\"{p}-*\"]}}
  prune: true
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: quay}}
spec:
  server: quay.io
  username: robot
  password: {{fromEnv: PULLWARDEN_SCOPED_TEST_PASSWORD}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: quay-pull}}
spec:
  registries: [quay]
  namespaces: [\"{p}-team-*\"]
  serviceAccounts: [{{name: default}}]
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata: {{name: teams}}
spec:
  role: system:image-puller
  namespaces: [\"{p}-ci\"]
  to:
    - allServiceAccountsIn: \"{p}-team-*\"
"
    )
}

/// `pullwarden run` as a child process, its stderr collected line by line.
struct Running {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(env: &TestEnv, dir: &std::path::Path, context: &str) -> Running {
        let mut child = tokio::process::Command::new(binary())
            .args([
                "run",
                path_str(dir),
                "--kubeconfig",
                path_str(env.kubeconfig()),
                "--context",
                context,
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .env("NO_COLOR", "1")
            .env("PULLWARDEN_SCOPED_TEST_PASSWORD", PASSWORD)
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

    async fn wait_for(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` line within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn metrics_addr(&self) -> String {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .unwrap_or_else(|| panic!("no metrics line; log:\n{log}"));
        line.split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address")
            .to_owned()
    }

    async fn terminate(mut self) -> String {
        let pid = self.child.id().expect("pid").to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(kill.success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits within 10 s of SIGTERM")
            .expect("wait");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(status.code(), Some(0), "log:\n{}", self.log());
        self.log()
    }
}

/// The metrics endpoint's text.
async fn metrics(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics endpoint");
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .expect("HTTP response")
}

/// The value of one sample line (`name{labels}`) of Prometheus text.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series}:\n{text}"))
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

/// Whether `ns` has `quay-pull` and `default` lists it.
async fn has_pull_access(env: &TestEnv, ns: &str) -> bool {
    let client = env.admin();
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt("quay-pull")
        .await
        .expect("get secret");
    let sa = Api::<ServiceAccount>::namespaced(client, ns)
        .get_opt("default")
        .await
        .expect("get service account");
    secret.is_some()
        && sa.is_some_and(|sa| {
            sa.image_pull_secrets
                .iter()
                .flatten()
                .any(|r| r.name == "quay-pull")
        })
}

/// The Groups the grant's RoleBinding in `ns` lists.
async fn grant_groups(env: &TestEnv, ns: &str, workspace: &str) -> Vec<String> {
    let name = format!("pullwarden:{workspace}:teams:system:image-puller");
    Api::<RoleBinding>::namespaced(env.admin(), ns)
        .get_opt(&name)
        .await
        .expect("get role binding")
        .map(|rb| {
            rb.subjects
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.name)
                .collect()
        })
        .unwrap_or_default()
}

async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// pullwarden's requests since `offset`, one per request (a watch counted
/// when it started, anything else when it completed).
fn requests_of_pullwarden(env: &TestEnv, offset: u64) -> Vec<AuditEvent> {
    env.audit_log()
        .expect("audit log")
        .events_since(offset)
        .expect("audit")
        .into_iter()
        .filter(|e| e.username == UNPRIVILEGED_USER)
        .filter(|e| {
            if e.verb == "watch" {
                e.stage == "ResponseStarted"
            } else {
                e.stage == "ResponseComplete"
            }
        })
        .collect()
}

fn describe(events: &[AuditEvent]) -> String {
    events
        .iter()
        .map(|e| format!("{} {} {} {}", e.verb, e.code, e.namespace, e.request_uri))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A namespace created beside 40 others: only it (and the project whose
/// grant lists every team namespace's Group) is read, planned and written;
/// no cluster-wide LIST of Secrets, ServiceAccounts, RoleBindings or
/// Namespaces is sent (the API server's audit log of pullwarden's user says
/// so), the metric counts scoped reconciles and no full one, and a full
/// `pullwarden plan --detailed-exitcode` afterwards finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_run_a_new_namespace_is_replanned_alone_without_a_cluster_list() {
    let env = TestEnv::dedicated(Options {
        audit: true,
        audit_reads: true,
    })
    .await
    .expect("a control plane of its own, with an audit log of reads");
    // pullwarden runs as the unprivileged user, made cluster-admin: its
    // requests are told apart from the test's in the audit log.
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "scoped-test-pullwarden"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": UNPRIVILEGED_USER}],
    }))
    .expect("binding");
    Api::<ClusterRoleBinding>::all(env.admin())
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind cluster-admin");
    env.install_openshift_roles().await.expect("image roles");

    let p = unique_name("sc");
    let name = unique_name("scoped");
    create_namespace_with_default_sa(&env, &format!("{p}-ci")).await;
    for i in 0..40 {
        create_namespace_with_default_sa(&env, &format!("{p}-team-{i:02}")).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("workspace.yaml"), workspace(&name, &p)).expect("workspace");
    let running = Running::start(&env, dir.path(), USER_CONTEXT);
    running.wait_for("applied:", Duration::from_secs(60)).await;
    for i in 0..40 {
        let ns = format!("{p}-team-{i:02}");
        eventually(
            &format!("pull access in {ns}"),
            Duration::from_secs(30),
            async || has_pull_access(&env, &ns).await,
        )
        .await;
    }
    // The events of its own writes settle (each a scoped reconcile that writes nothing).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let addr = running.metrics_addr();
    let before = metrics(&addr).await;
    let full_before = sample(
        &before,
        "pullwarden_reconciles_by_scope_total{scope=\"full\"}",
    );
    let scoped_before = sample(
        &before,
        "pullwarden_reconciles_by_scope_total{scope=\"namespaces\"}",
    );
    let audit = env.audit_log().expect("audit log");
    let offset = audit.offset();

    let new = format!("{p}-team-new");
    create_namespace_with_default_sa(&env, &new).await;
    eventually(
        "pull access in the new namespace",
        Duration::from_secs(10),
        async || has_pull_access(&env, &new).await,
    )
    .await;
    let group = format!("system:serviceaccounts:{new}");
    eventually(
        "the grant lists the new namespace's Group",
        Duration::from_secs(10),
        async || {
            grant_groups(&env, &format!("{p}-ci"), &name)
                .await
                .contains(&group)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let requests = requests_of_pullwarden(&env, offset);
    assert!(
        !requests.is_empty(),
        "no request of pullwarden's in the audit log"
    );
    // Reads: namespaced LISTs, and LISTs of namespaces by name; no cluster-wide LIST.
    let cluster_wide: Vec<AuditEvent> = requests
        .iter()
        .filter(|e| e.verb == "list" && e.namespace.is_empty())
        .filter(|e| !(e.resource == "namespaces" && e.request_uri.contains("metadata.name")))
        .cloned()
        .collect();
    assert!(
        cluster_wide.is_empty(),
        "cluster-wide LISTs after a namespace event:\n{}\nall requests:\n{}",
        describe(&cluster_wide),
        describe(&requests)
    );
    let lists: Vec<&AuditEvent> = requests.iter().filter(|e| e.verb == "list").collect();
    assert!(
        lists.iter().any(|e| e.namespace == new),
        "the new namespace was not read:\n{}",
        describe(&requests)
    );
    let read_elsewhere: Vec<&&AuditEvent> = lists
        .iter()
        .filter(|e| {
            !e.namespace.is_empty() && e.namespace != new && e.namespace != format!("{p}-ci")
        })
        .collect();
    assert!(
        read_elsewhere.is_empty(),
        "namespaces other than the new one and the grant's project were read:\n{}",
        describe(&requests)
    );
    // Writes: the Secret and the link in the new namespace, the binding in the project.
    let writes: Vec<&AuditEvent> = requests
        .iter()
        .filter(|e| pullwarden_testenv::audit::WRITE_VERBS.contains(&e.verb.as_str()))
        .collect();
    assert!(
        writes
            .iter()
            .all(|e| e.namespace == new || e.namespace == format!("{p}-ci")),
        "writes outside the touched namespaces:\n{}",
        describe(&requests)
    );
    assert!(
        writes
            .iter()
            .any(|e| e.namespace == new && e.resource == "secrets" && e.verb == "create"),
        "{}",
        describe(&requests)
    );

    let after = metrics(&addr).await;
    assert_eq!(
        sample(
            &after,
            "pullwarden_reconciles_by_scope_total{scope=\"full\"}"
        ),
        full_before,
        "a full reconcile ran after the namespace event; log:\n{}",
        running.log()
    );
    assert!(
        sample(
            &after,
            "pullwarden_reconciles_by_scope_total{scope=\"namespaces\"}"
        ) > scoped_before,
        "{after}"
    );

    // What the scoped reconciles left is what a full plan wants.
    let plan = pullwarden_admin(
        &env,
        &["plan", path_str(dir.path()), "--detailed-exitcode"],
        &[("PULLWARDEN_SCOPED_TEST_PASSWORD", PASSWORD)],
    )
    .await;
    assert_eq!(plan.code, Some(0), "{plan}");
    let log = running.terminate().await;
    assert!(!log.contains(PASSWORD), "the log holds the password");
}
