//! Snapshots of large clusters read back (issue 16, item 5): the YAML parser's
//! default budget (250,000 nodes, 1,024 documents) stopped at about 12,000
//! objects; pullwarden's own limits fit well over 100,000.

use std::fmt::Write as _;
use std::path::Path;

use pullwarden_kube::{LiveFileError, load_snapshot};

/// A `kind: List` as `pullwarden snapshot` writes it: per namespace, the
/// Namespace, a docker-config Secret, a ServiceAccount and a RoleBinding.
fn cluster_list(namespaces: usize) -> String {
    let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..namespaces {
        let ns = format!("team-{i:06}");
        let _ = write!(
            text,
            "- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: {ns}\n    uid: u-{i}\n    resourceVersion: \"{i}\"\n  status:\n    phase: Active\n\
             - apiVersion: v1\n  kind: Secret\n  type: kubernetes.io/dockerconfigjson\n  metadata:\n    name: pull\n    namespace: {ns}\n    uid: s-{i}\n    resourceVersion: \"{i}\"\n    labels:\n      app.kubernetes.io/managed-by: pullwarden\n      pullwarden.dev/workspace: big\n  data:\n    .dockerconfigjson: eyJhdXRocyI6e319\n\
             - apiVersion: v1\n  kind: ServiceAccount\n  metadata:\n    name: default\n    namespace: {ns}\n    uid: a-{i}\n    resourceVersion: \"{i}\"\n  imagePullSecrets:\n  - name: pull\n  secrets:\n  - name: pull\n\
             - apiVersion: rbac.authorization.k8s.io/v1\n  kind: RoleBinding\n  metadata:\n    name: pullers\n    namespace: {ns}\n    uid: r-{i}\n    resourceVersion: \"{i}\"\n  roleRef:\n    apiGroup: rbac.authorization.k8s.io\n    kind: ClusterRole\n    name: system:image-puller\n  subjects:\n  - apiGroup: rbac.authorization.k8s.io\n    kind: Group\n    name: system:serviceaccounts:{ns}\n"
        );
    }
    text
}

fn read_back(objects: usize) {
    let namespaces = objects / 4;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.yaml");
    std::fs::write(&file, cluster_list(namespaces)).unwrap();
    let snapshot = load_snapshot(&file).unwrap_or_else(|e| panic!("{e}"));
    let live = snapshot.live;
    assert_eq!(live.namespaces.len(), namespaces);
    assert_eq!(live.secrets.len(), namespaces);
    assert_eq!(live.service_accounts.len(), namespaces);
    assert_eq!(live.role_bindings.len(), namespaces);
}

#[test]
fn a_snapshot_of_30000_objects_reads_back() {
    read_back(30_000);
}

/// The size the product promises: about 16 s in a debug build on a shared
/// 2-core machine (measured), so it runs by default.
#[test]
fn a_snapshot_of_100000_objects_reads_back() {
    read_back(100_000);
}

#[test]
fn more_than_1024_documents_in_one_file_read_back() {
    let mut text = String::new();
    for i in 0..2_000 {
        let _ = write!(
            text,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{i}}}\n"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.yaml");
    std::fs::write(&file, text).unwrap();
    let snapshot = load_snapshot(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snapshot.live.namespaces.len(), 2_000);
}

#[test]
fn a_limit_that_is_reached_is_said_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.yaml");
    let deep = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\nx: {}1{}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    std::fs::write(&file, deep).unwrap();
    let error = load_snapshot(Path::new(&file)).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, LiveFileError::OverLimit { .. }),
        "{message}"
    );
    assert_eq!(
        message,
        format!(
            "{}: document 2 (from line 4) cannot be read: it holds more than 64 levels of nesting, the limit for a snapshot document",
            file.display()
        )
    );
    assert!(!message.contains('{'), "no Rust Debug output: {message}");
}
