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
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
            let entry = entry.map_err(|e| io_error(path, &e))?;
            if entry.file_type().is_file() && is_snapshot_file(entry.path()) {
                files.push(entry.into_path());
            }
        }
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
        let text = std::fs::read_to_string(file).map_err(|e| io_error(file, &e))?;
        loader.load_text(file, &text)?;
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
            let value: Value = serde_saphyr::from_str(&document.text)
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
                if let Some(name) = live_namespace(&namespace) {
                    self.live.namespaces.insert(name);
                }
            }
            "Secret" if core => {
                let secret = secret_from_value(object, at, &description)?;
                self.check_unique(&kind, &secret.metadata, at, &description)?;
                self.live.secrets.push(live_secret(secret));
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
    mut object: Map<String, Value>,
    at: &At,
    description: &str,
) -> Result<K, LiveFileError> {
    // Items of typed lists carry no apiVersion/kind; the dispatch checked them.
    object.remove("apiVersion");
    object.remove("kind");
    serde_json::from_value(Value::Object(object))
        .map_err(|e| at.invalid(description, e.to_string()))
}

/// A Secret from its JSON form. `data`, `stringData` and the
/// credential-bearing annotations are taken out before serde sees the
/// object, so no deserialization message can quote them; the data is
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
    let mut secret: Secret = typed(object, at, description)?;
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
        reason: syntax_reason(&error.to_string()),
    }
}

fn json_syntax_reason(error: &serde_json::Error) -> String {
    // serde_json appends " at line L column C", already in the message.
    let text = error.to_string();
    let reason = text.split(" at line ").next().unwrap_or_default();
    syntax_reason(reason)
}

/// The first line of a parser message, without anything quoted in it: a
/// quoted fragment could be part of a Secret.
fn syntax_reason(message: &str) -> String {
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
