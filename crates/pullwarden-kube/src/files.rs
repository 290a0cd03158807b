//! Offline snapshots: the live state read from what
//! `kubectl get ns,secrets,serviceaccounts,rolebindings -A -o yaml` (or
//! `-o json`) wrote, instead of from a cluster.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use pullwarden_core::live::LiveState;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::convert::{
    DROPPED_SECRET_ANNOTATIONS, live_namespace, live_role_binding, live_secret,
    live_service_account, sort_live_state,
};

/// Why a snapshot could not be read. Every message names the file, the
/// document (1-based, counting non-empty documents) and, once known, the
/// object; none quotes a Secret's data or its credential-bearing annotations.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LiveFileError {
    #[error("cannot read {}: {reason}", .path.display())]
    #[diagnostic(code(pullwarden::snapshot::io))]
    Io { path: PathBuf, reason: String },

    #[error("{} holds no *.yaml, *.yml or *.json file", .path.display())]
    #[diagnostic(
        code(pullwarden::snapshot::empty),
        help(
            "write one with `kubectl get ns,secrets,serviceaccounts,rolebindings -A -o yaml > cluster.yaml`"
        )
    )]
    NoFiles { path: PathBuf },

    #[error("{} holds no Namespace object, so it does not describe a cluster{}", .path.display(), describe_ignored(.ignored))]
    #[diagnostic(
        code(pullwarden::snapshot::no_namespaces),
        help(
            "a snapshot that says nothing must not read as a cluster with nothing (a failed `kubectl get > cluster.yaml` would then look in sync): write one with `pullwarden snapshot --out cluster.yaml` or `kubectl get ns,secrets,serviceaccounts,rolebindings -A -o yaml > cluster.yaml`"
        )
    )]
    NoNamespaces {
        path: PathBuf,
        /// Objects of other kinds that were found, by `<apiVersion> <kind>`.
        ignored: BTreeMap<String, usize>,
    },

    #[error("{}: document {document} (line {line}, column {column}) is not valid {format}: {reason}", .file.display())]
    #[diagnostic(code(pullwarden::snapshot::syntax))]
    Syntax {
        file: PathBuf,
        document: usize,
        line: u64,
        column: u64,
        format: &'static str,
        reason: String,
    },

    #[error("{}: document {document} (from line {line}) cannot be read: {reason}", .file.display())]
    #[diagnostic(
        code(pullwarden::snapshot::too_large),
        help(
            "the limits are set for clusters of well over 100,000 objects; split the snapshot into several files if one is reached"
        )
    )]
    OverLimit {
        file: PathBuf,
        document: usize,
        line: u64,
        reason: String,
    },

    #[error("{}: document {document}: {object}: {reason}", .file.display())]
    #[diagnostic(
        code(pullwarden::snapshot::invalid_object),
        help("the snapshot must hold Kubernetes objects as `kubectl get -o yaml` writes them")
    )]
    InvalidObject {
        file: PathBuf,
        document: usize,
        /// `Secret project-a/quay-pull`, `item 3 of the List`, ...
        object: String,
        reason: String,
    },

    #[error("{}: document {document}: {object} appears twice (first in {}, document {first_document})", .file.display(), .first_file.display())]
    #[diagnostic(
        code(pullwarden::snapshot::duplicate),
        help("a snapshot holds each object once; remove one of the copies")
    )]
    Duplicate {
        file: PathBuf,
        document: usize,
        object: String,
        first_file: PathBuf,
        first_document: usize,
    },
}

/// A loaded snapshot.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub live: LiveState,
    /// The files read, in the order read.
    pub files: Vec<PathBuf>,
    /// Objects of other kinds, skipped, by `<apiVersion> <kind>`.
    pub ignored: BTreeMap<String, usize>,
}

/// The live state held by a snapshot file, or by every `*.yaml`, `*.yml` and
/// `*.json` file under a directory (recursively, in sorted order).
pub fn read_live_files(path: &Path) -> Result<LiveState, LiveFileError> {
    load_snapshot(path).map(|snapshot| snapshot.live)
}

/// [`read_live_files`], also telling which files were read and what was skipped.
///
/// Each file holds a `kind: List` with `items`, single objects as YAML
/// documents, or a mix. Namespaces, Secrets, ServiceAccounts and
/// RoleBindings are read (terminating namespaces skipped, as on a cluster);
/// other kinds are counted in [`Snapshot::ignored`]. A Secret may carry
/// `data` (base64) or `stringData`.
pub fn load_snapshot(path: &Path) -> Result<Snapshot, LiveFileError> {
    let io_error = |path: &Path, error: &dyn fmt::Display| LiveFileError::Io {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let metadata = std::fs::metadata(path).map_err(|e| io_error(path, &e))?;
    let files = if metadata.is_dir() {
        // Symlinks followed, hidden folders (a mounted ConfigMap's `..data`)
        // skipped, and nothing that could hold objects skipped silently.
        let files = pullwarden_input::find_files(path, &is_snapshot_file)
            .map_err(|e| io_error(e.path(), &e))?;
        if files.is_empty() {
            return Err(LiveFileError::NoFiles {
                path: path.to_owned(),
            });
        }
        files
    } else {
        vec![path.to_owned()]
    };
    let mut loader = Loader::default();
    for file in &files {
        let text = pullwarden_input::read_to_string(file, pullwarden_input::Limit::SNAPSHOT_FILE)
            .map_err(|e| io_error(file, &e))?;
        loader.load_text(file, &text)?;
    }
    // Every cluster has namespaces (`default`, `kube-system`), and both
    // `pullwarden snapshot` and `kubectl get ns,...` list them: a source
    // without any is an empty or wrong file, not an empty cluster. One that
    // lists namespaces but no Secrets or ServiceAccounts is a cluster.
    if loader.namespace_objects == 0 {
        return Err(LiveFileError::NoNamespaces {
            path: path.to_owned(),
            ignored: loader.ignored,
        });
    }
    let mut live = loader.live;
    sort_live_state(&mut live);
    Ok(Snapshot {
        live,
        files,
        ignored: loader.ignored,
    })
}

fn is_snapshot_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

#[derive(Default)]
struct Loader {
    live: LiveState,
    ignored: BTreeMap<String, usize>,
    /// (kind, namespace, name) -> where it was first seen.
    seen: BTreeMap<(String, String, String), (PathBuf, usize)>,
    /// Namespace objects read, terminating ones included.
    namespace_objects: usize,
}

/// Where an object sits: file and document.
struct At<'a> {
    file: &'a Path,
    document: usize,
}

impl At<'_> {
    fn invalid(&self, object: impl Into<String>, reason: impl Into<String>) -> LiveFileError {
        LiveFileError::InvalidObject {
            file: self.file.to_owned(),
            document: self.document,
            object: object.into(),
            reason: reason.into(),
        }
    }
}

impl Loader {
    fn load_text(&mut self, file: &Path, text: &str) -> Result<(), LiveFileError> {
        if file.extension().and_then(|e| e.to_str()) == Some("json") {
            let value: Value = serde_json::from_str(text).map_err(|e| LiveFileError::Syntax {
                file: file.to_owned(),
                document: 1,
                line: e.line() as u64,
                column: e.column() as u64,
                format: "JSON",
                reason: json_syntax_reason(&e),
            })?;
            return self.add(value, &At { file, document: 1 }, None);
        }
        for (index, document) in yaml_documents(text).into_iter().enumerate() {
            let at = At {
                file,
                document: index + 1,
            };
            let value: Value = serde_saphyr::from_str_with_options(&document.text, yaml_options())
                .map_err(|e| yaml_syntax_error(&e, &at, document.first_line))?;
            self.add(value, &at, None)?;
        }
        Ok(())
    }

    /// Adds one object, or the items of a list. `item` names the object's
    /// place in its list, for messages; `list_kind` is the item kind a typed
    /// list (`SecretList`) implies.
    fn add(
        &mut self,
        value: Value,
        at: &At,
        item: Option<(usize, &str)>,
    ) -> Result<(), LiveFileError> {
        let Value::Object(mut object) = value else {
            if value.is_null() {
                return Ok(());
            }
            let place =
                item.map_or_else(|| "the document".to_owned(), |(i, _)| format!("item {i}"));
            return Err(at.invalid(
                place,
                "not a Kubernetes object (a mapping with apiVersion, kind and metadata)",
            ));
        };
        let implied_kind = item
            .and_then(|(_, list_kind)| list_kind.strip_suffix("List"))
            .filter(|k| !k.is_empty());
        let kind = match object.get("kind") {
            Some(Value::String(kind)) => kind.clone(),
            None if implied_kind.is_some() => implied_kind.unwrap_or_default().to_owned(),
            _ => return Err(at.invalid(describe(&object, "object", item), "has no kind")),
        };
        let api_version = match object.get("apiVersion") {
            Some(Value::String(v)) => Some(v.clone()),
            None => None,
            Some(_) => {
                return Err(
                    at.invalid(describe(&object, &kind, item), "apiVersion is not a string")
                );
            }
        };
        if kind.ends_with("List") && object.contains_key("items") {
            let Some(Value::Array(items)) = object.remove("items") else {
                return Err(at.invalid(describe(&object, &kind, item), "items is not a list"));
            };
            for (index, entry) in items.into_iter().enumerate() {
                self.add(entry, at, Some((index + 1, kind.as_str())))?;
            }
            return Ok(());
        }
        let core = matches!(api_version.as_deref(), None | Some("v1"));
        let rbac = matches!(
            api_version.as_deref(),
            None | Some("rbac.authorization.k8s.io/v1")
        );
        let description = describe(&object, &kind, item);
        match kind.as_str() {
            "Namespace" if core => {
                let namespace: Namespace = typed(object, at, &description)?;
                self.check_unique(&kind, &namespace.metadata, at, &description)?;
                self.namespace_objects += 1;
                // kube-system's UID identifies the cluster (as when read
                // from it), so a plan saved from the snapshot is bound to it.
                if namespace.metadata.name.as_deref() == Some("kube-system")
                    && let Some(uid) = namespace.metadata.uid.as_ref().filter(|u| !u.is_empty())
                {
                    self.live.cluster = Some(pullwarden_core::live::ClusterId {
                        kube_system_uid: uid.clone(),
                    });
                }
                if let Some(name) = live_namespace(&namespace) {
                    let labels = namespace.metadata.labels.unwrap_or_default();
                    self.live.namespace_labels.insert(name.clone(), labels);
                    self.live.namespaces.insert(name);
                }
            }
            "Secret" if core => {
                let secret = secret_from_value(object, at, &description)?;
                self.check_unique(&kind, &secret.metadata, at, &description)?;
                let mut secret = live_secret(secret);
                secret.from_snapshot_file = true;
                self.live.secrets.push(secret);
            }
            "ServiceAccount" if core => {
                let service_account: ServiceAccount = typed(object, at, &description)?;
                self.check_unique(&kind, &service_account.metadata, at, &description)?;
                self.live
                    .service_accounts
                    .push(live_service_account(service_account));
            }
            "RoleBinding" if rbac => {
                let role_binding: RoleBinding = typed(object, at, &description)?;
                self.check_unique(&kind, &role_binding.metadata, at, &description)?;
                self.live
                    .role_bindings
                    .push(live_role_binding(role_binding));
            }
            _ => {
                let key = format!("{} {kind}", api_version.as_deref().unwrap_or("v1"));
                *self.ignored.entry(key).or_default() += 1;
            }
        }
        Ok(())
    }

    fn check_unique(
        &mut self,
        kind: &str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        at: &At,
        description: &str,
    ) -> Result<(), LiveFileError> {
        let Some(name) = meta.name.clone().filter(|n| !n.is_empty()) else {
            return Err(at.invalid(description, "has no metadata.name"));
        };
        let key = (
            kind.to_owned(),
            meta.namespace.clone().unwrap_or_default(),
            name,
        );
        if let Some((first_file, first_document)) = self.seen.get(&key) {
            return Err(LiveFileError::Duplicate {
                file: at.file.to_owned(),
                document: at.document,
                object: description.to_owned(),
                first_file: first_file.clone(),
                first_document: *first_document,
            });
        }
        self.seen.insert(key, (at.file.to_owned(), at.document));
        Ok(())
    }
}

/// ` (other objects in it: 3 × pullwarden.dev/v1alpha1 Registry)`, for
/// [`LiveFileError::NoNamespaces`]: what the file held instead.
fn describe_ignored(ignored: &BTreeMap<String, usize>) -> String {
    if ignored.is_empty() {
        return String::new();
    }
    let mut kinds: Vec<String> = ignored
        .iter()
        .take(4)
        .map(|(kind, count)| format!("{count} × {}", pullwarden_input::shown(kind, 100)))
        .collect();
    if ignored.len() > 4 {
        kinds.push("…".to_owned());
    }
    format!(" (other objects in it: {})", kinds.join(", "))
}

/// `Secret ns/name`, `Namespace name`, with the list item when inside one.
fn describe(object: &Map<String, Value>, kind: &str, item: Option<(usize, &str)>) -> String {
    let metadata = object.get("metadata");
    let field = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut text = match (field("namespace"), field("name")) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        (_, None) => format!("{kind} without a name"),
    };
    if let Some((index, list_kind)) = item {
        let _ = write!(text, " (item {index} of the {list_kind})");
    }
    text
}

fn typed<K: DeserializeOwned>(
    object: Map<String, Value>,
    at: &At,
    description: &str,
) -> Result<K, LiveFileError> {
    typed_with(object, at, description, ToString::to_string)
}

fn typed_with<K: DeserializeOwned>(
    mut object: Map<String, Value>,
    at: &At,
    description: &str,
    message: impl Fn(&serde_json::Error) -> String,
) -> Result<K, LiveFileError> {
    // Items of typed lists carry no apiVersion/kind; the dispatch checked them.
    object.remove("apiVersion");
    object.remove("kind");
    serde_json::from_value(Value::Object(object)).map_err(|e| at.invalid(description, message(&e)))
}

/// A Secret from its JSON form. `data`, `stringData` and the
/// credential-bearing annotations are taken out before serde sees the
/// object, and quoted values are cut from serde's messages about the rest
/// (a credential pasted at the wrong indentation); the data is
/// decoded here, with messages that name keys only.
fn secret_from_value(
    mut object: Map<String, Value>,
    at: &At,
    description: &str,
) -> Result<Secret, LiveFileError> {
    let data = object.remove("data");
    let string_data = object.remove("stringData");
    if let Some(Value::Object(annotations)) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        for annotation in DROPPED_SECRET_ANNOTATIONS {
            annotations.remove(annotation);
        }
    }
    let mut secret: Secret =
        typed_with(object, at, description, |e| without_quoted(&e.to_string()))?;
    secret.data = secret_map(data, "data", at, description, |key, text| {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(ByteString)
            .map_err(|_| format!("data key {key:?} is not valid base64"))
    })?;
    secret.string_data = secret_map(string_data, "stringData", at, description, |_, text| {
        Ok(text.to_owned())
    })?;
    Ok(secret)
}

fn secret_map<T>(
    value: Option<Value>,
    field: &str,
    at: &At,
    description: &str,
    decode: impl Fn(&str, &str) -> Result<T, String>,
) -> Result<Option<BTreeMap<String, T>>, LiveFileError> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(at.invalid(description, format!("{field} is not a mapping"))),
    };
    let mut map = BTreeMap::new();
    for (key, value) in entries {
        let decoded = match &value {
            Value::String(text) => decode(&key, text),
            Value::Null => decode(&key, ""),
            _ => Err(format!("{field} key {key:?} is not a string")),
        }
        .map_err(|reason| at.invalid(description, reason))?;
        map.insert(key, decoded);
    }
    Ok(Some(map))
}

/// YAML 1.2 booleans only (`true`/`false`): under YAML 1.1 rules a
/// namespace named `n` or a label value `on` would turn into a boolean.
/// The budget fits a whole cluster in one document (`kind: List`):
/// [`pullwarden_input::YamlLimits::SNAPSHOT`].
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.budget = Some(pullwarden_input::YamlLimits::SNAPSHOT.budget());
    options
}

/// A YAML document of a file and the line (1-based) its text starts on.
struct YamlDocument {
    text: String,
    first_line: u64,
}

/// Splits a YAML stream at its document markers (`---`, `...` at the start
/// of a line, which YAML forbids inside any scalar), dropping documents that
/// hold only blanks and comments, so that document numbers count real ones.
fn yaml_documents(text: &str) -> Vec<YamlDocument> {
    let mut documents = Vec::new();
    let mut current = YamlDocument {
        text: String::new(),
        first_line: 1,
    };
    for (index, line) in text.lines().enumerate() {
        let line_number = index as u64 + 1;
        let marker = ["---", "..."].into_iter().find(|marker| {
            line.strip_prefix(marker)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        });
        if let Some(marker) = marker {
            documents.push(std::mem::replace(
                &mut current,
                YamlDocument {
                    text: String::new(),
                    first_line: line_number,
                },
            ));
            // `--- {inline: content}` keeps its content, on the same line.
            if marker == "---" {
                current.text.push_str(&" ".repeat(3));
                current.text.push_str(&line[3..]);
            }
            current.text.push('\n');
            continue;
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    documents.push(current);
    documents.retain(|document| {
        document.text.lines().any(|line| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        })
    });
    documents
}

/// A YAML syntax error, located in the file. The parser's message names the
/// problem ("did not find expected key"); its source snippet, which could
/// show a Secret's data, is never used.
fn yaml_syntax_error(error: &serde_saphyr::Error, at: &At, first_line: u64) -> LiveFileError {
    if let Some(reason) = pullwarden_input::YamlLimits::SNAPSHOT.breach_message(error) {
        return LiveFileError::OverLimit {
            file: at.file.to_owned(),
            document: at.document,
            line: first_line,
            reason,
        };
    }
    let error = error.without_snippet();
    let (line, column) = error
        .location()
        .map_or((first_line, 0), |l| (l.line() + first_line - 1, l.column()));
    LiveFileError::Syntax {
        file: at.file.to_owned(),
        document: at.document,
        line,
        column,
        format: "YAML",
        reason: without_location(&error.to_string()),
    }
}

fn json_syntax_reason(error: &serde_json::Error) -> String {
    without_location(&error.to_string())
}

/// A parser's message without its own " at line L, column C" (relative to
/// the document, and already in [`LiveFileError::Syntax`]) and without quotes.
fn without_location(message: &str) -> String {
    let reason = message.split(" at line ").next().unwrap_or_default();
    without_quoted(reason)
}

/// The first line of a parser message, without anything quoted in it: a
/// quoted fragment could be part of a Secret.
fn without_quoted(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut reason = String::new();
    let mut quote = None;
    for c in first.chars() {
        match quote {
            Some(open) if c == open => {
                reason.push('…');
                reason.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' || c == '\'' => {
                reason.push(c);
                quote = Some(c);
            }
            None => reason.push(c),
        }
    }
    if quote.is_some() {
        reason.push('…');
    }
    reason.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pullwarden_core::secret::SecretString;

    const CANARY: &str = "canary-s3cr3t-7f1e";
    const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n";

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_error(text: &str) -> (PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "bad.yaml", text);
        let error = read_live_files(&file).expect_err("must fail");
        let message = error.to_string();
        assert!(!message.contains(CANARY), "leaked: {message}");
        assert!(!message.contains(&b64(CANARY)), "leaked base64: {message}");
        assert!(
            !format!("{error:?}").contains(CANARY),
            "leaked in Debug: {error:?}"
        );
        (file, message)
    }

    #[test]
    fn reads_lists_and_multi_document_files_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "b/objects.yaml",
            "# a comment before the first marker\n---\n\
             apiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: v1\n  kind: Namespace\n  metadata: {name: team-a}\n  status: {phase: Active}\n\
             - apiVersion: v1\n  kind: Namespace\n  metadata: {name: going}\n  status: {phase: Terminating}\n\
             - apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cm, namespace: team-a}\n\
             ---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: team-a\n\
             imagePullSecrets:\n- name: quay-pull\nsecrets:\n- name: quay-pull\n\
             ---\n# only a comment\n...\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
             metadata: {name: pullers, namespace: team-a}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:image-puller}\n\
             subjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'system:serviceaccounts:team-a'}\n\
             ---\n\
             apiVersion: authorization.openshift.io/v1\nkind: RoleBinding\nmetadata: {name: legacy, namespace: team-a}\n",
        );
        write(
            dir.path(),
            "a/secrets.json",
            &serde_json::json!({
                "apiVersion": "v1",
                "kind": "SecretList",
                "items": [
                    {"metadata": {"name": "quay-pull", "namespace": "team-a"},
                     "type": "kubernetes.io/dockerconfigjson",
                     "data": {".dockerconfigjson": b64(CANARY)}},
                    {"metadata": {"name": "tls", "namespace": "team-a"},
                     "type": "kubernetes.io/tls",
                     "data": {"tls.key": b64(CANARY)}}
                ]
            })
            .to_string(),
        );
        write(dir.path(), "notes.txt", "not a snapshot");

        let snapshot = load_snapshot(dir.path()).unwrap();
        assert_eq!(
            snapshot.files,
            [
                dir.path().join("a/secrets.json"),
                dir.path().join("b/objects.yaml")
            ]
        );
        assert_eq!(
            snapshot.live.namespaces.iter().collect::<Vec<_>>(),
            ["team-a"]
        );
        let secrets: Vec<_> = snapshot
            .live
            .secrets
            .iter()
            .map(|s| (s.meta.name.as_str(), s.data.len()))
            .collect();
        assert_eq!(secrets, [("quay-pull", 1), ("tls", 0)]);
        assert_eq!(
            snapshot.live.secrets[0].data[".dockerconfigjson"].expose(),
            CANARY
        );
        let sa = &snapshot.live.service_accounts[0];
        assert_eq!(
            (sa.meta.name.as_str(), &sa.image_pull_secrets, &sa.secrets),
            (
                "default",
                &vec!["quay-pull".to_owned()],
                &vec!["quay-pull".to_owned()]
            )
        );
        let rb = &snapshot.live.role_bindings[0];
        assert_eq!(rb.meta.name, "pullers");
        assert_eq!(rb.role_ref.name, "system:image-puller");
        assert_eq!(
            snapshot.ignored,
            BTreeMap::from([
                ("authorization.openshift.io/v1 RoleBinding".to_owned(), 1),
                ("v1 ConfigMap".to_owned(), 1)
            ])
        );
    }

    #[test]
    fn data_is_kept_for_docker_types_and_managed_secrets_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = NAMESPACE.to_owned();
        for (name, type_, labels) in [
            ("json", "kubernetes.io/dockerconfigjson", "{}"),
            ("cfg", "kubernetes.io/dockercfg", "{}"),
            (
                "managed",
                "Opaque",
                "{app.kubernetes.io/managed-by: pullwarden}",
            ),
            ("other", "Opaque", "{app.kubernetes.io/managed-by: helm}"),
            ("token", "kubernetes.io/service-account-token", "{}"),
        ] {
            let _ = write!(
                text,
                "---\napiVersion: v1\nkind: Secret\ntype: {type_}\n\
                 metadata: {{name: {name}, namespace: ns, labels: {labels}}}\n\
                 data: {{key: {}}}\n",
                b64(CANARY)
            );
        }
        // stringData counts too, and wins over data
        let _ = write!(
            text,
            "---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/dockercfg\n\
             metadata: {{name: string-data, namespace: ns}}\n\
             data: {{key: {}}}\nstringData: {{key: plain}}\n",
            b64(CANARY)
        );
        let file = write(dir.path(), "secrets.yml", &text);
        let live = read_live_files(&file).unwrap();
        let kept: Vec<_> = live
            .secrets
            .iter()
            .map(|s| {
                (
                    s.meta.name.as_str(),
                    s.data.get("key").map(SecretString::expose),
                )
            })
            .collect();
        assert_eq!(
            kept,
            [
                ("cfg", Some(CANARY)),
                ("json", Some(CANARY)),
                ("managed", Some(CANARY)),
                ("other", None),
                ("string-data", Some("plain")),
                ("token", None),
            ]
        );
    }

    #[test]
    fn credential_bearing_annotations_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "s.yaml",
            &format!(
                "{NAMESPACE}---\napiVersion: v1\nkind: Secret\ntype: Opaque\n\
                 metadata:\n  name: s\n  namespace: ns\n  annotations:\n\
                 \x20   kubectl.kubernetes.io/last-applied-configuration: '{{\"data\":{{\"k\":\"{CANARY}\"}}}}'\n\
                 \x20   openshift.io/token-secret.value: {CANARY}\n\
                 \x20   keep: me\n"
            ),
        );
        let live = read_live_files(&file).unwrap();
        assert_eq!(
            live.secrets[0].meta.annotations,
            BTreeMap::from([("keep".to_owned(), "me".to_owned())])
        );
        assert!(!format!("{live:?}").contains(CANARY));
    }

    #[test]
    fn a_yaml_syntax_error_names_file_document_and_line_but_not_the_value() {
        let (file, message) = load_error(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: a}}\n\
             data:\n  key: \"{CANARY}\n  : [\n"
        ));
        assert!(
            message.starts_with(&format!("{}: document 2 (line ", file.display())),
            "{message}"
        );
        assert!(message.contains("is not valid YAML"), "{message}");
    }

    #[test]
    fn a_malformed_secret_names_file_document_object_and_key_but_not_the_value() {
        let (file, message) = load_error(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: a}}\n\
             data:\n  .dockercfg: \"{CANARY}!\"\n"
        ));
        assert_eq!(
            message,
            format!(
                "{}: document 2: Secret a/s: data key \".dockercfg\" is not valid base64",
                file.display()
            )
        );
        let (_, message) = load_error(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: a}}\n\
             immutable: \"{CANARY}\"\ndata: {{k: {}}}\n",
            b64(CANARY)
        ));
        assert!(message.contains("document 1: Secret a/s: "), "{message}");
        let (_, message) = load_error(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: a}}\n\
             stringData: {{k: [\"{CANARY}\"]}}\n"
        ));
        assert!(
            message.ends_with("stringData key \"k\" is not a string"),
            "{message}"
        );
    }

    #[test]
    fn list_items_are_located() {
        let (file, message) = load_error(
            "apiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: a, namespace: n}\n\
             - apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: b, namespace: n}\n  secrets: 7\n",
        );
        assert!(
            message.starts_with(&format!(
                "{}: document 1: ServiceAccount n/b (item 2 of the List): ",
                file.display()
            )),
            "{message}"
        );
    }

    #[test]
    fn an_object_listed_twice_is_an_error() {
        let (_, message) = load_error(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: n}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: n}\n",
        );
        assert!(
            message.contains("document 2: ServiceAccount n/a appears twice"),
            "{message}"
        );
        assert!(message.ends_with("document 1)"), "{message}");
    }

    #[test]
    fn a_directory_without_snapshot_files_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "README.md", "# nothing");
        let error = read_live_files(dir.path()).unwrap_err();
        assert!(matches!(error, LiveFileError::NoFiles { .. }), "{error}");
    }

    #[test]
    fn a_snapshot_without_namespaces_is_an_error_not_an_empty_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("empty.yaml", String::new()),
            ("comments.yaml", "# kubectl failed\n---\n".to_owned()),
            ("empty-list.yaml", "apiVersion: v1\nkind: List\nitems: []\n".to_owned()),
            (
                "workspace.yaml",
                "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: {name: w}\nspec: {}\n"
                    .to_owned(),
            ),
            (
                "secrets-only.yaml",
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: ns}\n"
                    .to_owned(),
            ),
            ("empty.json", "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": []}".to_owned()),
        ];
        for (name, text) in cases {
            let file = write(dir.path(), name, &text);
            let error = load_snapshot(&file).expect_err(name);
            assert!(
                matches!(error, LiveFileError::NoNamespaces { .. }),
                "{name}: {error}"
            );
            let message = error.to_string();
            assert!(
                message.starts_with(&format!(
                    "{} holds no Namespace object, so it does not describe a cluster",
                    file.display()
                )),
                "{message}"
            );
        }
        let error = load_snapshot(&dir.path().join("workspace.yaml")).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("(other objects in it: 1 × pullwarden.dev/v1alpha1 Workspace)"),
            "{error}"
        );
        // Namespaces without any Secret or ServiceAccount: a cluster with nothing to manage.
        let file = write(dir.path(), "bare.yaml", NAMESPACE);
        let snapshot = load_snapshot(&file).unwrap();
        assert_eq!(snapshot.live.namespaces.len(), 1);
        assert!(snapshot.live.secrets.is_empty());
        // Only terminating namespaces: still namespaces, read as on a cluster.
        let file = write(
            dir.path(),
            "terminating.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\nstatus: {phase: Terminating}\n",
        );
        assert!(load_snapshot(&file).unwrap().live.namespaces.is_empty());
    }

    #[test]
    fn the_kube_system_uid_identifies_the_snapshot_s_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "kubectl.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system, uid: 0d5c-ks}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, uid: 77aa-team}\n",
        );
        let live = read_live_files(&file).unwrap();
        assert_eq!(
            live.cluster.map(|c| c.kube_system_uid).as_deref(),
            Some("0d5c-ks")
        );
        // Without kube-system (or without its UID) the cluster is unknown,
        // and the snapshot is still read.
        let file = write(dir.path(), "bare.yaml", NAMESPACE);
        assert_eq!(read_live_files(&file).unwrap().cluster, None);
        let file = write(
            dir.path(),
            "no-uid.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n",
        );
        assert_eq!(read_live_files(&file).unwrap().cluster, None);
        // `pullwarden snapshot` writes it, and reading the snapshot back
        // gives the same cluster.
        let mut taken = LiveState::default();
        taken.namespaces.insert("kube-system".into());
        taken.namespaces.insert("team-a".into());
        taken.cluster = Some(pullwarden_core::live::ClusterId {
            kube_system_uid: "4e1f-ks".into(),
        });
        let text = crate::snapshot::snapshot_json(
            &taken,
            b"salt",
            1,
            pullwarden_core::secret::DigestKey::from_bytes([1; 32]),
        );
        let file = write(dir.path(), "snapshot.json", &text);
        assert_eq!(read_live_files(&file).unwrap().cluster, taken.cluster);
    }

    #[test]
    fn document_markers_split_only_at_line_starts() {
        let documents = yaml_documents("a: 1\n--- \nb: '---'\n  ---\n...\n---\n# c\n--- {d: 1}\n");
        let texts: Vec<_> = documents
            .iter()
            .map(|d| (d.first_line, d.text.trim()))
            .collect();
        assert_eq!(texts, [(1, "a: 1"), (2, "b: '---'\n  ---"), (8, "{d: 1}")]);
    }
}
