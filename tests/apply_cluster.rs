//! `pullwarden apply` against a real kube-apiserver (`pullwarden-testenv`):
//! the OpenShift example from scratch as a least-privileged CI identity, a
//! concurrent writer on a ServiceAccount, replaces / unlinks / conflicts, a
//! SIGKILL mid-apply, and a stale saved plan. Every test is named
//! `cluster_*`: `scripts/test.sh` counts them.
//!
//! Each test works in its own namespaces (`unique_name`) under its own
//! workspace name (prune only ever touches a workspace's own objects), except
//! the first, which needs the example's `project-a`/`-b`/`-c`: no other test
//! here may create a `project-*` namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use pullwarden_core::live::{LINKS_ANNOTATION, WORKSPACE_LABEL};
use pullwarden_core::plan::{self, Detail, PlanOptions};
use pullwarden_core::secret::DigestKey;
use pullwarden_kube::apply::{ApplyOptions, Hooks, OutcomeStatus, ServiceAccountHook};
use pullwarden_spec::credentials::{self, ProcessEnvironment};
mod common;

use common::{Run, binary, kubectl, path_str, repo, token_kubeconfig};
use pullwarden_testenv::{ADMIN_CONTEXT, PULL_SECRET_REF_ANNOTATION, TestEnv, unique_name};

async fn run(program: &Path, args: &[&str]) -> Run {
    common::run(program, args, &[]).await
}

/// `pullwarden ARGS` as the admin.
async fn pullwarden_admin(env: &TestEnv, args: &[&str]) -> Run {
    common::pullwarden_admin(env, args, &[]).await
}
use serde_json::Value;

const PROJECTS: [&str; 3] = ["project-a", "project-b", "project-c"];

async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..50 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn can_pull_eventually(env: &TestEnv, sa_ns: &str, sa: &str, image_ns: &str, want: bool) {
    let ok = eventually(|| async { env.can_pull(sa_ns, sa, image_ns).await.expect("SAR") == want })
        .await;
    assert!(
        ok,
        "can_pull({sa_ns}/{sa} from {image_ns}) should be {want} (waited 5 s)"
    );
}

async fn service_account(env: &TestEnv, ns: &str, name: &str) -> ServiceAccount {
    Api::<ServiceAccount>::namespaced(env.admin(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get ServiceAccount {ns}/{name}: {e}"))
}

fn pulls(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

fn mounts(sa: &ServiceAccount) -> Vec<String> {
    sa.secrets
        .iter()
        .flatten()
        .filter_map(|r| r.name.clone())
        .collect()
}

/// The entries `workspace` recorded as its own on `sa` (pull, mount).
fn recorded(sa: &ServiceAccount, workspace: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let records: BTreeMap<String, plan::LinkRecord> = sa
        .annotations()
        .get(LINKS_ANNOTATION)
        .map(|text| serde_json::from_str(text).expect("links annotation is JSON"))
        .unwrap_or_default();
    let record = records.get(workspace).cloned().unwrap_or_default();
    (record.pull, record.mount)
}

async fn secret_opt(env: &TestEnv, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(env.admin(), ns)
        .get_opt(name)
        .await
        .expect("get secret")
}

async fn role_binding_opt(env: &TestEnv, ns: &str, name: &str) -> Option<RoleBinding> {
    Api::<RoleBinding>::namespaced(env.admin(), ns)
        .get_opt(name)
        .await
        .expect("get rolebinding")
}

/// A workspace folder with the registry password file `reg.password`.
fn workspace_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("reg.password"), "s3cret-registry-token\n").expect("write");
    dir
}

fn write_workspace(dir: &Path, text: &str) {
    std::fs::write(dir.join("workspace.yaml"), text).expect("write workspace");
}

fn header(workspace: &str) -> String {
    format!(
        "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {{name: {workspace}}}
spec: {{prune: true}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {{name: reg}}
spec:
  server: registry.example.com
  username: robot
  password: {{fromFile: reg.password}}
  email: ci@example.com
"
    )
}

fn pull_secret(name: &str, format: &str, namespaces: &str, links: &str) -> String {
    format!(
        "---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata: {{name: {name}}}
spec:
  format: {format}
  registries: [reg]
  namespaces: {namespaces}
  serviceAccounts: {links}
"
    )
}

fn pull_grant(name: &str, role: &str, namespace: &str, subject: &str) -> String {
    format!(
        "---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata: {{name: {name}}}
spec:
  role: {role}
  namespaces: [{namespace}]
  to:
    - {subject}
"
    )
}

/// Makes sure `ns/name` exists and lists `pull` in its `imagePullSecrets`
/// (created here on the local control plane, which has no controller
/// manager; on a real cluster its controller may create it first).
async fn ensure_service_account(env: &TestEnv, ns: &str, name: &str, pull: &[&str]) {
    let api: Api<ServiceAccount> = Api::namespaced(env.admin(), ns);
    for _ in 0..10 {
        let result = match api.get_opt(name).await.expect("get sa") {
            None => {
                let mut account = ServiceAccount::default();
                account.metadata.name = Some(name.to_owned());
                add_pulls(&mut account, pull);
                api.create(&PostParams::default(), &account).await
            }
            Some(mut account) => {
                if pull.iter().all(|p| pulls(&account).iter().any(|n| n == p)) {
                    return;
                }
                add_pulls(&mut account, pull);
                api.replace(name, &PostParams::default(), &account).await
            }
        };
        match result {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => panic!("ServiceAccount {ns}/{name}: {e}"),
        }
    }
    panic!("ServiceAccount {ns}/{name}: still conflicting");
}

fn add_pulls(account: &mut ServiceAccount, pull: &[&str]) {
    let list = account.image_pull_secrets.get_or_insert_with(Vec::new);
    for name in pull {
        if !list.iter().any(|r| r.name == *name) {
            list.push(LocalObjectReference {
                name: (*name).to_owned(),
            });
        }
    }
}

/// `(kind, name) -> resourceVersion` of every Secret, ServiceAccount and RoleBinding in `ns`.
async fn resource_versions(env: &TestEnv, ns: &str) -> BTreeMap<(String, String), String> {
    let lp = ListParams::default();
    let mut out = BTreeMap::new();
    let client = env.admin();
    for s in Api::<Secret>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.insert(
            ("Secret".into(), s.name_any()),
            s.resource_version().unwrap_or_default(),
        );
    }
    for s in Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.insert(
            ("ServiceAccount".into(), s.name_any()),
            s.resource_version().unwrap_or_default(),
        );
    }
    for s in Api::<RoleBinding>::namespaced(client, ns)
        .list(&lp)
        .await
        .expect("list")
    {
        out.insert(
            ("RoleBinding".into(), s.name_any()),
            s.resource_version().unwrap_or_default(),
        );
    }
    out
}

/// The seed, end to end: OpenShift's projects with their own dockercfg
/// secrets, pullwarden's least-privilege CI RBAC, a TokenRequest token, and
/// the real binary applying the example workspace. The OpenShift entries
/// survive, pull access is exactly what the grants say, and a second plan is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_openshift_example_applies_from_scratch_as_least_privileged_ci() {
    let env = TestEnv::shared().await;
    // Against an external cluster project-a.. may exist and nothing is simulated.
    let Ok(controller) = env.openshift_sa_controller() else {
        return;
    };
    env.install_openshift_roles().await.expect("roles");
    let mut openshift: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for project in PROJECTS {
        env.create_project(project).await.expect("create project");
        for sa in ["default", "builder"] {
            let name = controller
                .link_dockercfg(project, sa)
                .await
                .expect("link dockercfg");
            assert!(name.starts_with(&format!("{sa}-dockercfg-")), "{name}");
            openshift.insert((project, sa), name);
        }
    }
    // Only the project's own service accounts may pull (system:image-pullers).
    assert!(
        !env.can_pull("project-a", "default", "project-b")
            .await
            .unwrap()
    );
    assert!(
        !env.can_pull("project-c", "default", "project-b")
            .await
            .unwrap()
    );

    let rbac = repo().join("examples/rbac/pullwarden-ci.yaml");
    let applied = kubectl(env, &["apply", "--server-side", "-f", path_str(&rbac)]).await;
    assert_eq!(applied.code, Some(0), "{applied}");
    let token = kubectl(
        env,
        &[
            "create",
            "token",
            "pullwarden-ci",
            "-n",
            "pullwarden-system",
        ],
    )
    .await;
    assert_eq!(token.code, Some(0), "{token}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let ci_kubeconfig = tmp.path().join("ci-kubeconfig");
    token_kubeconfig(env, token.stdout.trim(), &ci_kubeconfig);
    let ci = path_str(&ci_kubeconfig);

    // The CI identity really is least-privileged (and RBAC is in effect).
    let kubectl_bin = env.kubectl().expect("kubectl");
    for (verb, resource, ns) in [
        ("delete", "serviceaccounts", "project-a"),
        ("get", "pods", "project-a"),
        ("bind", "clusterroles/cluster-admin", "project-a"),
        ("patch", "secrets", "project-a"),
    ] {
        let can = run(
            &kubectl_bin,
            &[
                "--kubeconfig",
                ci,
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                ns,
            ],
        )
        .await;
        assert_eq!(can.stdout.trim(), "no", "{can}");
    }

    let workspace = repo().join("examples/openshift-image-pull-secrets");
    // The first plan lists everything to create, and says so with exit 2.
    let first = run(
        binary(),
        &[
            "plan",
            path_str(&workspace),
            "--detailed-exitcode",
            "--kubeconfig",
            ci,
        ],
    )
    .await;
    assert_eq!(first.code, Some(2), "{first}");
    assert!(
        first.stdout.contains(
            "Plan: 5 to create, 0 to update, 0 to replace, 0 to delete; 4 to link, 0 to unlink."
        ),
        "{first}"
    );
    let apply = run(
        binary(),
        &[
            "apply",
            path_str(&workspace),
            "--auto-approve",
            "--kubeconfig",
            ci,
        ],
    )
    .await;
    assert_eq!(apply.code, Some(0), "{apply}");

    // The secrets, labelled for the example's workspace.
    for (ns, name, type_) in [
        ("project-a", "quay-pull", "kubernetes.io/dockerconfigjson"),
        (
            "project-a",
            "internal-pull",
            "kubernetes.io/dockerconfigjson",
        ),
        ("project-c", "legacy-pull", "kubernetes.io/dockercfg"),
    ] {
        let secret = secret_opt(env, ns, name)
            .await
            .unwrap_or_else(|| panic!("Secret {ns}/{name} missing\n{apply}"));
        assert_eq!(secret.type_.as_deref(), Some(type_), "{ns}/{name}");
        assert_eq!(
            secret.labels().get(WORKSPACE_LABEL).map(String::as_str),
            Some("openshift-docs")
        );
    }
    // Every link, and OpenShift's entries still on every ServiceAccount.
    let want_pull: BTreeMap<(&str, &str), &[&str]> = BTreeMap::from([
        (
            ("project-a", "default"),
            &["quay-pull", "internal-pull"][..],
        ),
        (("project-c", "default"), &["legacy-pull"][..]),
    ]);
    let want_mount: BTreeMap<(&str, &str), &[&str]> =
        BTreeMap::from([(("project-a", "builder"), &["quay-pull"][..])]);
    for ((ns, sa_name), dockercfg) in &openshift {
        let sa = service_account(env, ns, sa_name).await;
        let (pull, mount) = (pulls(&sa), mounts(&sa));
        assert!(pull.contains(dockercfg), "{ns}/{sa_name} pulls {pull:?}");
        assert!(mount.contains(dockercfg), "{ns}/{sa_name} mounts {mount:?}");
        let wanted_pull = want_pull.get(&(*ns, *sa_name)).copied().unwrap_or(&[]);
        let wanted_mount = want_mount.get(&(*ns, *sa_name)).copied().unwrap_or(&[]);
        let mut expected_pull: Vec<String> = vec![dockercfg.clone()];
        expected_pull.extend(wanted_pull.iter().map(|s| (*s).to_owned()));
        let mut expected_mount: Vec<String> = vec![dockercfg.clone()];
        expected_mount.extend(wanted_mount.iter().map(|s| (*s).to_owned()));
        assert_eq!(
            pull.iter().collect::<BTreeSet<_>>(),
            expected_pull.iter().collect::<BTreeSet<_>>(),
            "{ns}/{sa_name}"
        );
        assert_eq!(
            mount.iter().collect::<BTreeSet<_>>(),
            expected_mount.iter().collect::<BTreeSet<_>>(),
            "{ns}/{sa_name}"
        );
        // Only pullwarden's own entries are recorded as pullwarden's.
        let (rec_pull, rec_mount) = recorded(&sa, "openshift-docs");
        assert_eq!(
            rec_pull,
            wanted_pull.iter().map(|s| (*s).to_owned()).collect(),
            "{ns}/{sa_name}"
        );
        assert_eq!(
            rec_mount,
            wanted_mount.iter().map(|s| (*s).to_owned()).collect(),
            "{ns}/{sa_name}"
        );
    }
    // The grants, as the authorizer sees them.
    can_pull_eventually(env, "project-a", "default", "project-b", true).await;
    can_pull_eventually(env, "project-c", "default", "project-b", true).await;
    can_pull_eventually(env, "project-c", "builder", "project-b", true).await;
    assert!(
        !env.can_pull("project-a", "builder", "project-b")
            .await
            .unwrap()
    );
    assert!(
        !env.can_pull("project-c", "default", "project-a")
            .await
            .unwrap()
    );
    assert!(
        !env.can_pull("project-b", "default", "project-a")
            .await
            .unwrap()
    );

    let again = run(
        binary(),
        &[
            "plan",
            path_str(&workspace),
            "--detailed-exitcode",
            "--kubeconfig",
            ci,
        ],
    )
    .await;
    assert_eq!(again.code, Some(0), "a second plan has no changes\n{again}");
}

/// Another writer (OpenShift's controller) edits a ServiceAccount between
/// pullwarden's read and its write: the write gets 409, is redone from a
/// fresh read, and both writers' entries survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_concurrent_writer_on_service_account_is_retried() {
    let env = TestEnv::shared().await;
    let Ok(controller) = env.openshift_sa_controller() else {
        return;
    };
    let ns = unique_name("pw-race");
    let workspace = unique_name("pw-race-ws");
    env.create_project(&ns).await.expect("project");
    let dir = workspace_dir();
    write_workspace(
        dir.path(),
        &(header(&workspace)
            + &pull_secret(
                "race-pull",
                "dockerconfigjson",
                &format!("[{ns}]"),
                "[{name: default, for: [pull]}, {name: builder, for: [pull, mount]}]",
            )),
    );
    let loaded = pullwarden_spec::load(dir.path(), &ProcessEnvironment);
    assert!(
        !loaded.has_errors(),
        "{:?}",
        loaded
            .problems
            .iter()
            .map(|p| &p.message)
            .collect::<Vec<_>>()
    );
    let ws = loaded.workspace.expect("workspace");
    let (registries, problems) = credentials::resolve(&ws, &ProcessEnvironment);
    assert!(problems.is_empty(), "credentials do not resolve");
    let client = env.admin();
    let live = pullwarden_kube::read_live(&client, &pullwarden_kube::ReadOptions::default())
        .await
        .expect("read_live");
    let desired = plan::desired(&ws, &registries, &live);
    let key = DigestKey::from_bytes([7; 32]);
    let plan = plan::plan(&ws, &desired, &live, PlanOptions::default(), &key);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let links: Vec<usize> = (0..plan.changes.len())
        .filter(|&i| matches!(plan.changes[i].detail, Detail::Links(_)))
        .collect();
    assert_eq!(links.len(), 2, "default and builder are linked");

    let controller = Arc::new(controller);
    let seen: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let hook: ServiceAccountHook = Arc::new(
        move |ns: String, sa: String| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            let controller = controller.clone();
            let first = seen.lock().unwrap().insert((ns.clone(), sa.clone()));
            Box::pin(async move {
                if first {
                    controller
                        .link_dockercfg(&ns, &sa)
                        .await
                        .expect("the controller links its dockercfg");
                }
            })
        },
    );
    let hooks = Hooks {
        before_service_account_write: Some(hook),
    };
    // With the listed state: the first write is a merge patch carrying the
    // listed resourceVersion (no GET), which the hook's write turns into a 409.
    let options = ApplyOptions {
        listed: Some(std::sync::Arc::new(live.clone())),
        ..ApplyOptions::default()
    };
    let outcomes =
        pullwarden_kube::apply::apply(&client, &plan, &desired, &options, &hooks, &|_| {}).await;
    assert_eq!(outcomes.len(), plan.changes.len());
    for outcome in &outcomes {
        assert_eq!(
            outcome.status,
            OutcomeStatus::Done,
            "{:?}",
            plan.changes[outcome.index]
        );
    }
    for &index in &links {
        let outcome = outcomes.iter().find(|o| o.index == index).unwrap();
        assert!(
            outcome.conflicts_retried >= 1,
            "the controller's write in between is a 409, retried: {outcome:?}"
        );
    }

    for (sa_name, mount) in [("default", false), ("builder", true)] {
        let sa = service_account(env, &ns, sa_name).await;
        let dockercfg = sa
            .annotations()
            .get(PULL_SECRET_REF_ANNOTATION)
            .cloned()
            .expect("the controller's annotation survived");
        let pull = pulls(&sa);
        assert!(pull.contains(&"race-pull".to_owned()), "{pull:?}");
        assert!(pull.contains(&dockercfg), "{pull:?}");
        assert_eq!(pull.len(), 2, "{pull:?}");
        let mount_list = mounts(&sa);
        assert!(mount_list.contains(&dockercfg), "{mount_list:?}");
        assert_eq!(
            mount_list.contains(&"race-pull".to_owned()),
            mount,
            "{mount_list:?}"
        );
        let (rec_pull, rec_mount) = recorded(&sa, &workspace);
        assert_eq!(rec_pull, BTreeSet::from(["race-pull".to_owned()]));
        assert_eq!(rec_mount.contains("race-pull"), mount);
        assert!(!rec_mount.contains(&dockercfg) && !rec_pull.contains(&dockercfg));
    }
    // Converged: nothing left to do, OpenShift's entries are not ours to touch.
    let live = pullwarden_kube::read_live(&client, &pullwarden_kube::ReadOptions::default())
        .await
        .expect("read_live");
    let desired = plan::desired(&ws, &registries, &live);
    let again = plan::plan(&ws, &desired, &live, PlanOptions::default(), &key);
    assert!(again.changes.is_empty(), "{:?}", again.changes);
}

/// Immutable fields become replaces (Secret type, RoleBinding role), a removed
/// PullSecret is unlinked and deleted and nothing else is, and an unmanaged
/// Secret with a managed name is a conflict that nothing writes to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replaces_unlinks_and_conflicts() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let ns = unique_name("pw-replace");
    let puller_ns = unique_name("pw-replace-sub");
    let workspace = unique_name("pw-replace-ws");
    env.create_project(&ns).await.expect("project");
    env.create_project(&puller_ns).await.expect("project");
    for sa in ["default", "builder"] {
        ensure_service_account(env, &ns, sa, &[]).await;
    }
    let foreign = match env.openshift_sa_controller() {
        Ok(controller) => Some(
            controller
                .link_dockercfg(&ns, "default")
                .await
                .expect("link"),
        ),
        Err(_) => None,
    };
    let dir = workspace_dir();
    let ws_path = path_str(dir.path()).to_owned();
    let version = |format: &str, role: &str, extra: bool, taken: bool| {
        let mut text = header(&workspace);
        text += &pull_secret(
            "main-pull",
            format,
            &format!("[{ns}]"),
            "[{name: default, for: [pull]}, {name: builder, for: [mount]}]",
        );
        if extra {
            text += &pull_secret(
                "extra-pull",
                "dockerconfigjson",
                &format!("[{ns}]"),
                "[{name: default, for: [pull]}]",
            );
        }
        if taken {
            text += &pull_secret(
                "taken-pull",
                "dockerconfigjson",
                &format!("[{ns}]"),
                "[{name: default, for: [pull]}]",
            );
        }
        text += &pull_grant(
            "sub-pulls",
            role,
            &ns,
            &format!("serviceAccount: {puller_ns}/default"),
        );
        text
    };
    let puller_binding = format!("pullwarden:{workspace}:sub-pulls:system:image-puller");
    let pusher_binding = format!("pullwarden:{workspace}:sub-pulls:system:image-pusher");

    // 1. From scratch.
    write_workspace(
        dir.path(),
        &version("dockerconfigjson", "system:image-puller", true, false),
    );
    let first = pullwarden_admin(env, &["apply", &ws_path, "--auto-approve"]).await;
    assert_eq!(first.code, Some(0), "{first}");
    let main = secret_opt(env, &ns, "main-pull").await.expect("main-pull");
    assert_eq!(
        main.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert!(role_binding_opt(env, &ns, &puller_binding).await.is_some());
    can_pull_eventually(env, &puller_ns, "default", &ns, true).await;
    let default_sa = service_account(env, &ns, "default").await;
    assert!(pulls(&default_sa).contains(&"extra-pull".to_owned()));

    // 2. Secret type and RoleBinding role change: both are replaces.
    write_workspace(
        dir.path(),
        &version("dockercfg", "system:image-pusher", true, false),
    );
    let json_plan = pullwarden_admin(env, &["plan", &ws_path, "--format", "json"]).await;
    assert_eq!(json_plan.code, Some(0), "{json_plan}");
    let value: Value = serde_json::from_str(&json_plan.stdout).expect("JSON plan");
    let changes = value["changes"].as_array().expect("changes");
    let find = |kind: &str, name: &str| {
        changes
            .iter()
            .find(|c| c["kind"] == kind && c["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {changes:#?}"))
    };
    let secret_change = find("Secret", "main-pull");
    assert_eq!(secret_change["action"], "replace", "{secret_change:#}");
    assert_eq!(
        secret_change["detail"]["previous_type"],
        "kubernetes.io/dockerconfigjson"
    );
    let binding_change = find("RoleBinding", &pusher_binding);
    assert_eq!(binding_change["action"], "replace", "{binding_change:#}");
    assert_eq!(
        binding_change["detail"]["replaces"]["name"], puller_binding,
        "{binding_change:#}"
    );
    let detailed = pullwarden_admin(env, &["plan", &ws_path, "--detailed-exitcode"]).await;
    assert_eq!(detailed.code, Some(2), "{detailed}");
    let apply = pullwarden_admin(env, &["apply", &ws_path, "--auto-approve"]).await;
    assert_eq!(apply.code, Some(0), "{apply}");
    let replaced = secret_opt(env, &ns, "main-pull").await.expect("main-pull");
    assert_eq!(replaced.type_.as_deref(), Some("kubernetes.io/dockercfg"));
    assert_ne!(replaced.uid(), main.uid(), "a new object");
    let data = replaced.data.clone().unwrap_or_default();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        vec![".dockercfg"],
        "legacy key only"
    );
    let dockercfg: Value = serde_json::from_slice(&data[".dockercfg"].0).expect("JSON");
    assert!(
        dockercfg.get("registry.example.com").is_some(),
        "bare map, no `auths`"
    );
    let default_sa = service_account(env, &ns, "default").await;
    assert!(pulls(&default_sa).contains(&"main-pull".to_owned()));
    assert!(mounts(&service_account(env, &ns, "builder").await).contains(&"main-pull".to_owned()));
    let new_binding = role_binding_opt(env, &ns, &pusher_binding)
        .await
        .expect("new binding");
    assert_eq!(new_binding.role_ref.name, "system:image-pusher");
    assert!(
        role_binding_opt(env, &ns, &puller_binding).await.is_none(),
        "the old binding is gone"
    );
    can_pull_eventually(env, &puller_ns, "default", &ns, true).await;
    let settled = pullwarden_admin(env, &["plan", &ws_path, "--detailed-exitcode"]).await;
    assert_eq!(settled.code, Some(0), "{settled}");

    // 3. A PullSecret leaves the workspace: unlinked, deleted, nothing else.
    let before_secrets: BTreeSet<String> = Api::<Secret>::namespaced(env.admin(), &ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let before_pulls = pulls(&service_account(env, &ns, "default").await);
    write_workspace(
        dir.path(),
        &version("dockercfg", "system:image-pusher", false, false),
    );
    let prune = pullwarden_admin(env, &["apply", &ws_path, "--auto-approve"]).await;
    assert_eq!(prune.code, Some(0), "{prune}");
    let after_secrets: BTreeSet<String> = Api::<Secret>::namespaced(env.admin(), &ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let mut expected = before_secrets.clone();
    assert!(expected.remove("extra-pull"));
    assert_eq!(after_secrets, expected, "exactly extra-pull was deleted");
    let default_sa = service_account(env, &ns, "default").await;
    let expected_pulls: Vec<String> = before_pulls
        .into_iter()
        .filter(|n| n != "extra-pull")
        .collect();
    assert_eq!(
        pulls(&default_sa),
        expected_pulls,
        "unlinked, others intact in order"
    );
    if let Some(foreign) = &foreign {
        assert!(pulls(&default_sa).contains(foreign));
        assert!(mounts(&default_sa).contains(foreign));
    }
    let (rec_pull, _) = recorded(&default_sa, &workspace);
    assert_eq!(rec_pull, BTreeSet::from(["main-pull".to_owned()]));

    // 4. An unmanaged Secret with a managed name: a conflict, left untouched.
    let created = kubectl(
        env,
        &[
            "create",
            "secret",
            "docker-registry",
            "taken-pull",
            "-n",
            &ns,
            "--docker-server=other.example.com",
            "--docker-username=someone",
            "--docker-password=not-ours",
        ],
    )
    .await;
    assert_eq!(created.code, Some(0), "{created}");
    let get_taken = ["get", "secret", "taken-pull", "-n", &ns, "-o", "json"];
    let before = kubectl(env, &get_taken).await;
    assert_eq!(before.code, Some(0), "{before}");
    let before: Value = serde_json::from_str(&before.stdout).expect("JSON");
    let rvs_before = resource_versions(env, &ns).await;
    write_workspace(
        dir.path(),
        &version("dockercfg", "system:image-pusher", false, true),
    );
    let conflict_plan = pullwarden_admin(env, &["plan", &ws_path]).await;
    assert_eq!(conflict_plan.code, Some(1), "{conflict_plan}");
    let output = format!("{}{}", conflict_plan.stdout, conflict_plan.stderr);
    assert!(
        output.contains(&format!("Secret {ns}/taken-pull exists and is not managed")),
        "{conflict_plan}"
    );
    let conflict_apply = pullwarden_admin(env, &["apply", &ws_path, "--auto-approve"]).await;
    assert_eq!(conflict_apply.code, Some(1), "{conflict_apply}");
    let after: Value = serde_json::from_str(&kubectl(env, &get_taken).await.stdout).expect("JSON");
    assert_eq!(after, before, "the unmanaged Secret is byte-identical");
    assert_eq!(
        resource_versions(env, &ns).await,
        rvs_before,
        "a refused apply writes nothing"
    );
    assert!(!pulls(&service_account(env, &ns, "default").await).contains(&"taken-pull".to_owned()));
}

/// SIGKILL in the middle of an apply leaves the cluster half done; the next
/// apply converges, with no duplicate entries and the foreign ones kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_sigkill_mid_apply_then_rerun_converges() {
    const COUNT: usize = 40;
    let env = TestEnv::shared().await;
    let client = env.admin();
    let base = unique_name("pw-kill");
    let workspace = unique_name("pw-kill-ws");
    let namespaces: Vec<String> = (0..COUNT).map(|i| format!("{base}-{i:02}")).collect();
    for ns in &namespaces {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(ns.clone());
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
        ensure_service_account(env, ns, "default", &["foreign-pull"]).await;
    }
    let dir = workspace_dir();
    let ws_path = path_str(dir.path()).to_owned();
    write_workspace(
        dir.path(),
        &(header(&workspace)
            + &pull_secret(
                "kill-pull",
                "dockerconfigjson",
                &format!("[\"{base}-*\"]"),
                "[{name: default, for: [pull]}]",
            )),
    );

    let secrets: Api<Secret> = Api::all(client.clone());
    let selector = format!("{WORKSPACE_LABEL}={workspace}");
    let lp = ListParams::default().labels(&selector);
    let managed = || async { secrets.list(&lp).await.expect("list").items.len() };
    let start = secrets.list(&lp).await.expect("list");
    assert!(start.items.is_empty());
    let version = start.metadata.resource_version.unwrap_or_default();
    let mut events = secrets
        .watch(&WatchParams::default().labels(&selector), &version)
        .await
        .expect("watch")
        .boxed();

    let log = dir.path().join("killed-apply.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let kubeconfig = path_str(env.kubeconfig());
    let mut child = tokio::process::Command::new(binary())
        .args([
            "apply",
            &ws_path,
            "--auto-approve",
            "--concurrency",
            "1",
            "--kubeconfig",
            kubeconfig,
            "--context",
            ADMIN_CONTEXT,
        ])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone"))
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn apply");
    // Kill as soon as the first managed Secret is seen (a watch, not a slow poll).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.try_next())
            .await
            .expect("a managed Secret appears in time")
            .expect("watch event")
            .expect("watch open");
        if let WatchEvent::Added(_) = event {
            break;
        }
    }
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.expect("wait");
    drop(events);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL, not finished: {status:?}\n{log_text}"
    );
    let partial = managed().await;
    assert!(
        partial > 0 && partial < COUNT,
        "partly applied: {partial} of {COUNT} managed Secrets\n{log_text}"
    );

    let rerun = pullwarden_admin(env, &["apply", &ws_path, "--auto-approve"]).await;
    assert_eq!(rerun.code, Some(0), "{rerun}");
    let settled = pullwarden_admin(env, &["plan", &ws_path, "--detailed-exitcode"]).await;
    assert_eq!(settled.code, Some(0), "{settled}");
    assert_eq!(managed().await, COUNT);
    for ns in &namespaces {
        let sa = service_account(env, ns, "default").await;
        let pull = pulls(&sa);
        assert_eq!(
            pull.iter().filter(|n| *n == "kill-pull").count(),
            1,
            "{ns}: {pull:?}"
        );
        assert_eq!(
            pull.iter().filter(|n| *n == "foreign-pull").count(),
            1,
            "{ns}: {pull:?}"
        );
        assert_eq!(pull.len(), 2, "{ns}: {pull:?}");
        let (rec_pull, _) = recorded(&sa, &workspace);
        assert_eq!(rec_pull, BTreeSet::from(["kill-pull".to_owned()]), "{ns}");
    }
}

/// A saved plan whose assumptions no longer hold is refused, names what
/// moved, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_stale_saved_plan_is_refused_and_writes_nothing() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let ns = unique_name("pw-stale");
    let workspace = unique_name("pw-stale-ws");
    env.create_project(&ns).await.expect("project");
    ensure_service_account(env, &ns, "default", &[]).await;
    let dir = workspace_dir();
    let ws_path = path_str(dir.path()).to_owned();
    write_workspace(
        dir.path(),
        &(header(&workspace)
            + &pull_secret(
                "stale-pull",
                "dockerconfigjson",
                &format!("[{ns}]"),
                "[{name: default, for: [pull]}]",
            )
            + &pull_grant("alice-pulls", "system:image-puller", &ns, "user: alice")),
    );
    let saved = dir.path().join("plan.json");
    let plan = pullwarden_admin(env, &["plan", &ws_path, "--out", path_str(&saved)]).await;
    assert_eq!(plan.code, Some(0), "{plan}");
    let saved_text = std::fs::read_to_string(&saved).expect("saved plan");
    assert!(saved_text.contains(&format!("\"namespace\": \"{ns}\"")));

    let annotate = kubectl(
        env,
        &[
            "annotate",
            "serviceaccount",
            "default",
            "-n",
            &ns,
            "example.com/touched=yes",
        ],
    )
    .await;
    assert_eq!(annotate.code, Some(0), "{annotate}");
    let before = resource_versions(env, &ns).await;

    let apply = pullwarden_admin(env, &["apply", &ws_path, "--plan", path_str(&saved)]).await;
    assert_eq!(apply.code, Some(1), "{apply}");
    assert!(
        apply.stderr.contains(&format!(
            "ServiceAccount {ns}/default changed since the plan"
        )),
        "{apply}"
    );
    assert!(apply.stderr.contains("nothing was written"), "{apply}");
    assert_eq!(
        resource_versions(env, &ns).await,
        before,
        "no object changed, none was created"
    );
    assert!(secret_opt(env, &ns, "stale-pull").await.is_none());

    // The refusal is about staleness: a fresh saved plan of the same workspace applies.
    let replan = pullwarden_admin(env, &["plan", &ws_path, "--out", path_str(&saved)]).await;
    assert_eq!(replan.code, Some(0), "{replan}");
    let fresh = pullwarden_admin(env, &["apply", &ws_path, "--plan", path_str(&saved)]).await;
    assert_eq!(fresh.code, Some(0), "{fresh}");
    assert!(secret_opt(env, &ns, "stale-pull").await.is_some());
    let sa = service_account(env, &ns, "default").await;
    assert!(pulls(&sa).contains(&"stale-pull".to_owned()));
    assert_eq!(
        sa.annotations()
            .get("example.com/touched")
            .map(String::as_str),
        Some("yes"),
        "the other writer's change is kept"
    );
}
