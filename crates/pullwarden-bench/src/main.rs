//! `pullwarden-bench-gen --namespaces N --out DIR [--chunks K] [--noise M]`:
//! writes the benchmark's inputs for `scripts/bench.sh`:
//!
//! - `DIR/workspace/`: a pullwarden workspace (one Workspace scoped to
//!   `bench-*`, two Registries with fake `fromFile` credentials in
//!   `creds/`, two `PullSecret`s on every `bench-*` namespace linked to
//!   `default`, `builder` (pull + mount) and `deployer`, two `PullGrant`s into
//!   every `bench-*` namespace: one to a ServiceAccount, one to a Group);
//! - `DIR/fixture/`: the cluster before pullwarden (`00-cluster.yaml`: the
//!   image-puller ClusterRole and N namespaces; `objects-*.yaml`: per
//!   namespace 3 ServiceAccounts, each with an OpenShift-like
//!   `<sa>-dockercfg-xxxxx` Secret linked from both lists, 2 unrelated
//!   Opaque Secrets and 1 unrelated RoleBinding), split in K files so they
//!   can be loaded in parallel;
//! - `DIR/fixture/noise-*.yaml` (with `--noise M`, M > 0): what a real
//!   cluster holds beside pull secrets and pullwarden never uses, per
//!   namespace: M Helm-release Secrets (`helm.sh/release.v1`, ~100 KB of
//!   incompressible release data each, like Helm's gzipped release records),
//!   M TLS Secrets, M Opaque Secrets and 2M unrelated RoleBindings; loaded
//!   after the fixture, so that one control plane is measured without and
//!   with it;
//! - `DIR/equivalent.yaml`: plain manifests of what pullwarden writes (its
//!   Secrets with the same data, labels and annotation, its RoleBindings, and
//!   the ServiceAccounts with the same lists and link record), for
//!   `kubectl apply --server-side` / `kubectl diff`;
//! - `DIR/drift.yaml`: full objects for `kubectl replace` after the apply:
//!   1% of the managed Secrets with another password, 1% of the
//!   ServiceAccounts with one link removed;
//! - `DIR/expected.env`: the object and change counts, for the script's checks.
//!
//! Every document is one line of JSON after `---` (valid YAML, fast to parse).
//! The credentials are fake.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

const WORKSPACE: &str = "bench";
const SERVICE_ACCOUNTS: [&str; 3] = ["builder", "default", "deployer"];
const ROLE: &str = "system:image-puller";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const WORKSPACE_LABEL: &str = "pullwarden.dev/workspace";
const SOURCE_ANNOTATION: &str = "pullwarden.dev/source";
const LINKS_ANNOTATION: &str = "pullwarden.dev/links";
const SA_PULL_SECRET_REF: &str = "openshift.io/internal-registry-pull-secret-ref";
const SECRET_SA_ANNOTATION: &str = "openshift.io/internal-registry-auth-token.service-account";

/// One registry's fake credentials.
struct Registry {
    name: &'static str,
    server: &'static str,
    username: &'static str,
    password: &'static str,
    email: Option<&'static str>,
}

const QUAY: Registry = Registry {
    name: "quay",
    server: "quay.example.com",
    username: "bench+robot",
    password: "fake-quay-password-not-a-secret-0123456789",
    email: None,
};
const INTERNAL: Registry = Registry {
    name: "internal",
    server: "registry.bench.example:5000",
    username: "bench-internal-user",
    password: "fake-internal-token-not-a-secret-9876543210",
    email: Some("bench@example.com"),
};

/// The `PullSecret`s, by name, with their registry. Sorted by name (the order
/// pullwarden adds links in).
const PULL_SECRETS: [(&str, &Registry); 2] = [("bench-internal", &INTERNAL), ("bench-quay", &QUAY)];
/// The ServiceAccount linked for `mount` too.
const MOUNT_SA: &str = "builder";
/// The `PullGrant`s, by name.
const GRANTS: [&str; 2] = ["bench-ci-pull", "bench-release-pull"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pullwarden-bench-gen: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    namespaces: usize,
    out: PathBuf,
    chunks: usize,
    noise: usize,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: pullwarden-bench-gen --out DIR [--namespaces N (2000)] [--chunks K (4)] [--noise M (0)]";
    let mut args = Args {
        namespaces: 2000,
        out: PathBuf::new(),
        chunks: 4,
        noise: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        match flag.as_str() {
            "--namespaces" => args.namespaces = value.parse().map_err(|_| usage)?,
            "--chunks" => args.chunks = value.parse().map_err(|_| usage)?,
            "--noise" => args.noise = value.parse().map_err(|_| usage)?,
            "--out" => args.out = PathBuf::from(value),
            _ => return Err(usage.into()),
        }
    }
    if args.out.as_os_str().is_empty() || args.namespaces == 0 || args.chunks == 0 {
        return Err(usage.into());
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    std::fs::create_dir_all(args.out.join("workspace/creds")).map_err(io(&args.out))?;
    std::fs::create_dir_all(args.out.join("fixture")).map_err(io(&args.out))?;
    let write = |rel: &str, text: &str| {
        let path = args.out.join(rel);
        std::fs::write(&path, text).map_err(io(&path))
    };

    write("workspace/workspace.yaml", &workspace_yaml())?;
    // fromFile values: one trailing newline is dropped by pullwarden.
    write(
        "workspace/creds/quay-password",
        &format!("{}\n", QUAY.password),
    )?;
    write(
        "workspace/creds/internal-username",
        &format!("{}\n", INTERNAL.username),
    )?;
    write(
        "workspace/creds/internal-password",
        &format!("{}\n", INTERNAL.password),
    )?;

    let names: Vec<String> = (0..args.namespaces)
        .map(|i| format!("bench-{i:05}"))
        .collect();

    let mut cluster = String::new();
    push(&mut cluster, &image_puller_role());
    for ns in &names {
        push(
            &mut cluster,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
    }
    write("fixture/00-cluster.yaml", &cluster)?;

    let per_chunk = names.len().div_ceil(args.chunks);
    for (k, chunk) in names.chunks(per_chunk).enumerate() {
        let mut text = String::new();
        for ns in chunk {
            for doc in fixture_objects(ns) {
                push(&mut text, &doc);
            }
        }
        write(&format!("fixture/objects-{k}.yaml"), &text)?;
        if args.noise > 0 {
            // Written chunk by chunk: at N=2000 and M=2 the noise is ~400 MB.
            let path = args.out.join(format!("fixture/noise-{k}.yaml"));
            let mut file =
                std::io::BufWriter::new(std::fs::File::create(&path).map_err(io(&path))?);
            for ns in chunk {
                for doc in noise_objects(ns, args.noise) {
                    let mut text = String::new();
                    push(&mut text, &doc);
                    file.write_all(text.as_bytes()).map_err(io(&path))?;
                }
            }
            file.flush().map_err(io(&path))?;
        }
    }

    let mut equivalent = String::new();
    let mut drift = String::new();
    let (mut drift_secrets, mut drift_links) = (0, 0);
    for (i, ns) in names.iter().enumerate() {
        for (name, registry) in PULL_SECRETS {
            push(&mut equivalent, &managed_secret(ns, name, registry, None));
        }
        for grant in GRANTS {
            push(&mut equivalent, &managed_role_binding(ns, grant));
        }
        for sa in SERVICE_ACCOUNTS {
            push(&mut equivalent, &linked_service_account(ns, sa, None));
        }
        // 1% of the 2N managed Secrets: one in 50 namespaces, its bench-quay.
        if i % 50 == 1 {
            push(
                &mut drift,
                &managed_secret(ns, "bench-quay", &QUAY, Some("drifted-password")),
            );
            drift_secrets += 1;
        }
        // 1% of the 3N ServiceAccounts: deployer in one of 33 namespaces loses a link.
        if i % 33 == 2 {
            push(
                &mut drift,
                &linked_service_account(ns, "deployer", Some("bench-internal")),
            );
            drift_links += 1;
        }
    }
    write("equivalent.yaml", &equivalent)?;
    write("drift.yaml", &drift)?;

    let n = args.namespaces;
    let expected = format!(
        "NAMESPACES={n}\n\
         FIXTURE_OBJECTS={fixture}\n\
         EQUIVALENT_OBJECTS={equiv}\n\
         APPLY_CHANGES={apply}\n\
         DRIFT_SECRETS={drift_secrets}\n\
         DRIFT_LINKS={drift_links}\n\
         DRIFT_CHANGES={drift_changes}\n\
         NOISE_OBJECTS={noise_objects}\n\
         NOISE_BYTES={noise_bytes}\n",
        fixture = 1 + n * (1 + 3 * 2 + 2 + 1),
        noise_objects = n * args.noise * 5,
        noise_bytes = noise_bytes(&args.out)?,
        equiv = n * (PULL_SECRETS.len() + GRANTS.len() + SERVICE_ACCOUNTS.len()),
        apply = n * (PULL_SECRETS.len() + GRANTS.len() + SERVICE_ACCOUNTS.len()),
        drift_changes = drift_secrets + drift_links,
    );
    write("expected.env", &expected)?;
    Ok(())
}

/// The size of the noise files written.
fn noise_bytes(out: &Path) -> Result<u64, String> {
    let dir = out.join("fixture");
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with("noise-") {
            total += entry
                .metadata()
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .len();
        }
    }
    Ok(total)
}

fn push(out: &mut String, doc: &Value) {
    out.push_str("---\n");
    out.push_str(&doc.to_string());
    out.push('\n');
}

fn workspace_yaml() -> String {
    let mut y = String::new();
    let _ = write!(
        y,
        "# Generated by pullwarden-bench-gen. Fake credentials.
apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata:
  name: {WORKSPACE}
spec:
  namespaces:
    include: [\"bench-*\"]
  prune: true
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata:
  name: {quay}
spec:
  server: {quay_server}
  username: {quay_user}
  password: {{fromFile: creds/quay-password}}
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata:
  name: {internal}
spec:
  server: \"{internal_server}\"
  username: {{fromFile: creds/internal-username}}
  password: {{fromFile: creds/internal-password}}
  email: {internal_email}
",
        quay = QUAY.name,
        quay_server = QUAY.server,
        quay_user = QUAY.username,
        internal = INTERNAL.name,
        internal_server = INTERNAL.server,
        internal_email = INTERNAL.email.unwrap_or_default(),
    );
    for (name, registry) in PULL_SECRETS {
        let _ = write!(
            y,
            "---
apiVersion: pullwarden.dev/v1alpha1
kind: PullSecret
metadata:
  name: {name}
spec:
  registries: [{registry}]
  namespaces: [\"bench-*\"]
  serviceAccounts:
    - name: default
    - name: builder
      for: [pull, mount]
    - name: deployer
      for: [pull]
",
            registry = registry.name
        );
    }
    let _ = write!(
        y,
        "---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata:
  name: {ci}
spec:
  role: {ROLE}
  namespaces: [\"bench-*\"]
  to:
    - serviceAccount: ci/builder
---
apiVersion: pullwarden.dev/v1alpha1
kind: PullGrant
metadata:
  name: {release}
spec:
  role: {ROLE}
  namespaces: [\"bench-*\"]
  to:
    - group: release-engineers
",
        ci = GRANTS[0],
        release = GRANTS[1]
    );
    y
}

fn grant_subject(grant: &str) -> Value {
    if grant == GRANTS[0] {
        json!({"kind": "ServiceAccount", "name": "builder", "namespace": "ci"})
    } else {
        json!({"kind": "Group", "name": "release-engineers", "apiGroup": "rbac.authorization.k8s.io"})
    }
}

fn image_puller_role() -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE},
        "rules": [{
            "apiGroups": ["", "image.openshift.io"],
            "resources": ["imagestreams/layers"],
            "verbs": ["get"],
        }],
    })
}

/// A stable pseudo-random suffix, like OpenShift's `<sa>-dockercfg-xxxxx`.
fn suffix(ns: &str, sa: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ns.bytes().chain([b'/']).chain(sa.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..5)
        .map(|_| {
            let c = ALPHABET[usize::try_from(h % 27).unwrap_or(0)];
            h /= 27;
            char::from(c)
        })
        .collect()
}

fn dockercfg_name(ns: &str, sa: &str) -> String {
    format!("{sa}-dockercfg-{}", suffix(ns, sa))
}

fn b64(text: &str) -> String {
    STANDARD.encode(text.as_bytes())
}

/// A fake token the size of a real service-account JWT.
fn fake_token(ns: &str, sa: &str) -> String {
    let seed = format!("{ns}.{sa}.{}", suffix(ns, sa));
    let mut token = String::from("eyJhbGciOiJSUzI1NiJ9.");
    while token.len() < 900 {
        token.push_str(&b64(&seed).replace('=', ""));
    }
    token
}

/// What is in the cluster before pullwarden, per namespace.
fn fixture_objects(ns: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for sa in SERVICE_ACCOUNTS {
        let dockercfg = dockercfg_name(ns, sa);
        let token = fake_token(ns, sa);
        let mut registries = serde_json::Map::new();
        for server in [
            "image-registry.openshift-image-registry.svc:5000",
            "image-registry.openshift-image-registry.svc.cluster.local:5000",
        ] {
            registries.insert(
                server.into(),
                json!({
                    "username": "<token>",
                    "password": token,
                    "auth": b64(&format!("<token>:{token}")),
                }),
            );
        }
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockercfg",
            "metadata": {
                "name": dockercfg,
                "namespace": ns,
                "annotations": {SECRET_SA_ANNOTATION: sa},
            },
            "data": {".dockercfg": b64(&Value::Object(registries).to_string())},
        }));
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": sa,
                "namespace": ns,
                "annotations": {SA_PULL_SECRET_REF: dockercfg},
            },
            "imagePullSecrets": [{"name": dockercfg}],
            "secrets": [{"name": dockercfg}],
        }));
    }
    for k in 1..=2 {
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": format!("app-config-{k}"),
                "namespace": ns,
                "labels": {"app": "web"},
            },
            "data": {
                "database-url": b64(&format!("postgres://app:{}@db.{ns}.svc:5432/app", suffix(ns, "db"))),
                "api-key": b64(&fake_token(ns, "api")[..128]),
            },
        }));
    }
    docs.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "system:image-pullers", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
        "subjects": [{
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Group",
            "name": format!("system:serviceaccounts:{ns}"),
        }],
    }));
    docs
}

/// Bytes of release data per Helm-release Secret (base64 of them is ~100 KB,
/// the `data.release` value the API server stores and lists).
const HELM_RELEASE_BYTES: usize = 75 * 1024;

/// Deterministic incompressible bytes (`SplitMix64`), like gzip output.
fn noise_bytes_for(seed: &str, len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in seed.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a real cluster holds beside pull secrets, per namespace: `m` Helm
/// releases (one Secret per revision, ~100 KB each), `m` TLS and `m` Opaque
/// Secrets, and `2m` RoleBindings pullwarden does not manage.
fn noise_objects(ns: &str, m: usize) -> Vec<Value> {
    let mut docs = Vec::new();
    for k in 1..=m {
        let release = format!("app{k}");
        // Helm stores base64(gzip(json)) in `data.release`, itself base64 in the API.
        let record = STANDARD.encode(noise_bytes_for(
            &format!("{ns}/{release}"),
            HELM_RELEASE_BYTES * 3 / 4,
        ));
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "helm.sh/release.v1",
            "metadata": {
                "name": format!("sh.helm.release.v1.{release}.v1"),
                "namespace": ns,
                "labels": {"name": release, "owner": "helm", "status": "deployed", "version": "1"},
            },
            "data": {"release": b64(&record)},
        }));
        let pem = STANDARD.encode(noise_bytes_for(&format!("{ns}/tls{k}"), 1200));
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": format!("{release}-tls"), "namespace": ns},
            "data": {
                "tls.crt": b64(&format!("-----BEGIN CERTIFICATE-----\n{pem}\n-----END CERTIFICATE-----\n")),
                "tls.key": b64(&format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", &pem[..1200])),
            },
        }));
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": format!("{release}-env"), "namespace": ns, "labels": {"app": release}},
            "data": {"DATABASE_URL": b64(&format!("postgres://{release}:{}@db:5432/{release}", suffix(ns, &release)))},
        }));
        for role in ["view", "edit"] {
            docs.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": format!("{release}-{role}"), "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": release, "namespace": ns}],
            }));
        }
    }
    docs
}

fn managed_labels() -> Value {
    json!({MANAGED_BY_LABEL: "pullwarden", WORKSPACE_LABEL: WORKSPACE})
}

/// The Secret pullwarden writes for `name` in `ns` (with another password
/// when `drifted` is given).
fn managed_secret(ns: &str, name: &str, registry: &Registry, drifted: Option<&str>) -> Value {
    let password = drifted.unwrap_or(registry.password);
    let mut entry = json!({
        "username": registry.username,
        "password": password,
        "auth": b64(&format!("{}:{password}", registry.username)),
    });
    if let Some(email) = registry.email {
        entry["email"] = json!(email);
    }
    let config = json!({"auths": {registry.server: entry}});
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": managed_labels(),
            "annotations": {SOURCE_ANNOTATION: format!("PullSecret/{name}")},
        },
        "data": {".dockerconfigjson": b64(&config.to_string())},
    })
}

fn managed_role_binding(ns: &str, grant: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": format!("pullwarden:{WORKSPACE}:{grant}:{ROLE}"),
            "namespace": ns,
            "labels": managed_labels(),
            "annotations": {SOURCE_ANNOTATION: format!("PullGrant/{grant}")},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ROLE},
        "subjects": [grant_subject(grant)],
    })
}

/// The ServiceAccount after pullwarden linked it: OpenShift's entry first,
/// then pullwarden's in name order, and the link record. `unlinked` drops one
/// pull entry (drift) but keeps the record.
fn linked_service_account(ns: &str, sa: &str, unlinked: Option<&str>) -> Value {
    let dockercfg = dockercfg_name(ns, sa);
    let ours: Vec<&str> = PULL_SECRETS.iter().map(|(name, _)| *name).collect();
    let pull: Vec<Value> = std::iter::once(dockercfg.as_str())
        .chain(ours.iter().copied().filter(|n| Some(*n) != unlinked))
        .map(|n| json!({"name": n}))
        .collect();
    let mut mount = vec![json!({"name": dockercfg})];
    let mut record = json!({"pull": ours});
    if sa == MOUNT_SA {
        mount.extend(ours.iter().map(|n| json!({"name": n})));
        record["mount"] = json!(ours);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": sa,
            "namespace": ns,
            "annotations": {
                SA_PULL_SECRET_REF: dockercfg,
                LINKS_ANNOTATION: json!({WORKSPACE: record}).to_string(),
            },
        },
        "imagePullSecrets": pull,
        "secrets": mount,
    })
}
