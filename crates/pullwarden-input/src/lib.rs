//! Reading files a user or a pull request supplies: regular files only,
//! bounded size, clear errors.
//!
//! Every file pullwarden reads on someone's say-so goes through [`read`] or
//! [`read_to_string`]: workspace files, credential files (`fromFile`,
//! `dockerConfigFile`, `dockercfgFile`), snapshots (`--live`) and saved plans
//! (`--plan`). A workspace in a pull request is untrusted input: a committed
//! symlink to `/dev/zero` must not fill the memory of the CI runner, and a FIFO
//! must not hang it. So:
//!
//! - symlinks are followed, and what they lead to must be a regular file: the
//!   type is checked *before* the file is opened (opening a FIFO blocks);
//! - at most [`Limit::bytes`] are read, whatever the file claims its size is
//!   (files under `/proc` report 0);
//! - errors name the path (through [`InputError::path`]) and, for a file that
//!   is too large, the limit.
//!
//! [`find_files`] lists the files of a folder with the same rules, and
//! [`resolves_inside`] tells whether a path stays inside a folder once
//! symlinks are resolved. [`YamlLimits`] holds the YAML parser budgets of the
//! two parsers (workspace files, snapshots), so that every limit pullwarden
//! sets on its input is written down here.
//!
//! This crate uses the standard library only.

use std::fmt;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

/// A size limit for one kind of file, and the words naming that kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    /// What the limit is for, in the plural: "workspace files".
    pub what: &'static str,
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

impl Limit {
    /// A workspace YAML file (`*.yaml` / `*.yml`): hand-written declarations.
    /// A workspace that names 10,000 namespaces one by one takes well under 1 MiB.
    pub const WORKSPACE_FILE: Limit = Limit {
        bytes: 16 * MIB,
        what: "workspace files",
    };
    /// A credential file: `fromFile`, `dockerConfigFile`, `dockercfgFile`.
    pub const CREDENTIAL_FILE: Limit = Limit {
        bytes: MIB,
        what: "credential files",
    };
    /// A snapshot file (`--live`): `pullwarden snapshot` or `kubectl get -o yaml`
    /// output. 100,000 objects as `kubectl get -o yaml` writes them (with
    /// `managedFields`) take a few hundred MB.
    pub const SNAPSHOT_FILE: Limit = Limit {
        bytes: GIB,
        what: "snapshot files",
    };
    /// A kubeconfig file a workspace names (`spec.clusters[].kubeconfig`).
    pub const KUBECONFIG: Limit = Limit {
        bytes: 16 * MIB,
        what: "kubeconfig files",
    };
    /// A saved plan (`apply --plan FILE`).
    pub const SAVED_PLAN: Limit = Limit {
        bytes: GIB,
        what: "saved plans",
    };
}

/// `1 MiB`, `16 MiB`, `1 GiB`, `512 bytes`.
pub fn human_size(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// Why a file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputErrorKind {
    NotFound,
    PermissionDenied,
    /// It exists but is not a regular file (after following symlinks).
    NotRegularFile {
        /// "a directory", "a FIFO (named pipe)", "a character device", ...
        is: &'static str,
    },
    TooLarge {
        limit: Limit,
    },
    NotUtf8,
    /// A symlink that leads back to itself, or a folder that contains itself.
    SymlinkLoop,
    Other(String),
}

/// A file that could not be read. `Display` gives the reason only (the
/// callers put the path where their message needs it); [`InputError::path`]
/// is the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    path: PathBuf,
    kind: InputErrorKind,
}

impl InputError {
    pub fn new(path: &Path, kind: InputErrorKind) -> Self {
        Self {
            path: path.to_path_buf(),
            kind,
        }
    }

    fn io(path: &Path, error: &std::io::Error) -> Self {
        let kind = match error.kind() {
            std::io::ErrorKind::NotFound => InputErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => InputErrorKind::PermissionDenied,
            _ if error.raw_os_error().is_some() && error.raw_os_error() == ELOOP => {
                InputErrorKind::SymlinkLoop
            }
            _ => InputErrorKind::Other(error.to_string()),
        };
        Self::new(path, kind)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> &InputErrorKind {
        &self.kind
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            InputErrorKind::NotFound => f.write_str("no such file or directory"),
            InputErrorKind::PermissionDenied => f.write_str("permission denied"),
            InputErrorKind::NotRegularFile { is } => {
                write!(f, "it is {is}, not a regular file")
            }
            InputErrorKind::TooLarge { limit } => write!(
                f,
                "it is larger than {}, the limit for {}",
                human_size(limit.bytes),
                limit.what
            ),
            InputErrorKind::NotUtf8 => f.write_str("it is not UTF-8 text"),
            InputErrorKind::SymlinkLoop => {
                f.write_str("a symlink loop (a link that leads back to itself)")
            }
            InputErrorKind::Other(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for InputError {}

/// "Too many levels of symbolic links" (`std::io::ErrorKind::FilesystemLoop`
/// is not stable yet).
#[cfg(target_os = "linux")]
const ELOOP: Option<i32> = Some(40);
#[cfg(any(target_os = "macos", target_os = "freebsd"))]
const ELOOP: Option<i32> = Some(62);
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "freebsd")))]
const ELOOP: Option<i32> = None;

fn describe_type(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
    }
    "not a regular file"
}

/// The bytes of the regular file at `path` (symlinks followed), at most
/// `limit.bytes` of them.
pub fn read(path: &Path, limit: Limit) -> Result<Vec<u8>, InputError> {
    // The type is checked before opening: opening a FIFO blocks until a
    // writer comes, and a device can be read forever.
    let metadata = std::fs::metadata(path).map_err(|e| InputError::io(path, &e))?;
    if !metadata.is_file() {
        return Err(InputError::new(
            path,
            InputErrorKind::NotRegularFile {
                is: describe_type(metadata.file_type()),
            },
        ));
    }
    if metadata.len() > limit.bytes {
        return Err(InputError::new(path, InputErrorKind::TooLarge { limit }));
    }
    let file = std::fs::File::open(path).map_err(|e| InputError::io(path, &e))?;
    // Replaced between the check and the open: check what was opened.
    let opened = file.metadata().map_err(|e| InputError::io(path, &e))?;
    if !opened.is_file() {
        return Err(InputError::new(
            path,
            InputErrorKind::NotRegularFile {
                is: describe_type(opened.file_type()),
            },
        ));
    }
    let capacity = usize::try_from(opened.len().min(limit.bytes)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    // One byte more than the limit tells a file that grew (or lied about its
    // size) from one that fits.
    file.take(limit.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| InputError::io(path, &e))?;
    if bytes.len() as u64 > limit.bytes {
        return Err(InputError::new(path, InputErrorKind::TooLarge { limit }));
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_to_string(path: &Path, limit: Limit) -> Result<String, InputError> {
    String::from_utf8(read(path, limit)?)
        .map_err(|_| InputError::new(path, InputErrorKind::NotUtf8))
}

/// The files under `root` that `wanted` accepts (by path), in sorted order;
/// `root` itself when it is not a folder (then [`read`] tells what it is).
///
/// Symlinks are followed, to files and to folders; hidden folders (name
/// starting with `.`) are skipped, which also skips the `..data` and
/// `..2026_11_29_…` folders of a mounted `ConfigMap` (its visible files are symlinks
/// through `..data` and are read). Nothing that could hold a wanted file is
/// skipped silently: a wanted entry that is not a regular file, a folder that
/// cannot be read, a folder that contains itself through a symlink, and a
/// broken or looping symlink that is not hidden and not named like an unwanted
/// file (`notes.txt`) are errors.
pub fn find_files(root: &Path, wanted: &dyn Fn(&Path) -> bool) -> Result<Vec<PathBuf>, InputError> {
    let metadata = std::fs::metadata(root).map_err(|e| InputError::io(root, &e))?;
    if !metadata.is_dir() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut ancestors = Vec::new();
    walk(root, wanted, &mut ancestors, &mut files)?;
    files.sort();
    Ok(files)
}

fn walk(
    dir: &Path,
    wanted: &dyn Fn(&Path) -> bool,
    ancestors: &mut Vec<PathBuf>,
    files: &mut Vec<PathBuf>,
) -> Result<(), InputError> {
    let canonical = std::fs::canonicalize(dir).map_err(|e| InputError::io(dir, &e))?;
    if ancestors.contains(&canonical) {
        return Err(InputError::new(dir, InputErrorKind::SymlinkLoop));
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| InputError::io(dir, &e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InputError::io(dir, &e))?;
    entries.sort();
    ancestors.push(canonical);
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {
                if !hidden {
                    walk(&path, wanted, ancestors, files)?;
                }
            }
            // A wanted entry that is not a regular file is listed: reading it
            // gives the error that says what it is.
            Ok(_) => {
                if wanted(&path) {
                    files.push(path);
                }
            }
            Err(error) => {
                let named_otherwise = path.extension().is_some() && !wanted(&path);
                if !hidden && !named_otherwise {
                    return Err(InputError::io(&path, &error));
                }
            }
        }
    }
    ancestors.pop();
    Ok(())
}

/// Whether `path` stays inside `root` once symlinks are resolved. A path that
/// does not exist (yet) is judged by its deepest existing ancestor and must
/// not climb out with `..` after it.
pub fn resolves_inside(root: &Path, path: &Path) -> bool {
    let Ok(root) = std::fs::canonicalize(if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    }) else {
        return false;
    };
    let path = if path.is_relative() {
        match std::env::current_dir() {
            Ok(dir) => dir.join(path),
            Err(_) => return false,
        }
    } else {
        path.to_path_buf()
    };
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            return canonical.starts_with(&root)
                && rest.iter().all(|c| matches!(c, Component::Normal(_)));
        }
        let Some(parent) = existing.parent() else {
            return false;
        };
        if let Some(last) = existing.components().next_back() {
            rest.push(last);
        }
        existing = parent;
    }
}

/// The YAML parser budgets: how much of each thing one parse may hold.
/// The two parsers of pullwarden (workspace files in `pullwarden-spec`,
/// snapshots in `pullwarden-kube`) build their options from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YamlLimits {
    /// Nodes: mappings, lists and scalars.
    pub nodes: usize,
    /// Parser events (about two per node: a mapping opens and closes).
    pub events: usize,
    /// Documents in one parse.
    pub documents: usize,
    /// Nesting of lists and mappings.
    pub depth: usize,
    /// Total bytes of scalar text.
    pub scalar_bytes: usize,
    /// What is parsed, for messages: "a workspace file", "a snapshot document".
    pub what: &'static str,
}

impl YamlLimits {
    /// A workspace file (one parse per file). At most 16 MiB, so a node
    /// budget of 4 million is about one node per 4 bytes; the benchmark's
    /// 10,000-namespace workspace uses a few hundred nodes, a workspace
    /// listing 100,000 namespaces by name about 100,000.
    pub const WORKSPACE: YamlLimits = YamlLimits {
        nodes: 4_000_000,
        events: 10_000_000,
        documents: 100_000,
        depth: 64,
        scalar_bytes: 16 * 1024 * 1024,
        what: "a workspace file",
    };

    /// One document of a snapshot (`kind: List` of a whole cluster is one
    /// document): 100,000 objects as `kubectl get -o yaml` writes them, with
    /// `managedFields`, take about 60 nodes each; 100 million nodes is
    /// headroom for a 1 GiB file. Aliases and anchors keep the parser's
    /// defaults (alias bombs are refused).
    pub const SNAPSHOT: YamlLimits = YamlLimits {
        nodes: 100_000_000,
        events: 250_000_000,
        documents: 1,
        depth: 64,
        scalar_bytes: 1024 * 1024 * 1024,
        what: "a snapshot document",
    };

    /// A message for people when `limit` was exceeded.
    pub fn exceeded(&self, limit: YamlLimit) -> String {
        let (count, noun) = match limit {
            YamlLimit::Nodes => (self.nodes, "YAML nodes (mappings, lists and values)"),
            YamlLimit::Events => (self.events, "YAML parser events"),
            YamlLimit::Documents => (self.documents, "YAML documents"),
            YamlLimit::Depth => (self.depth, "levels of nesting"),
            YamlLimit::ScalarBytes => (self.scalar_bytes, "bytes of text in values"),
        };
        format!(
            "it holds more than {} {noun}, the limit for {}",
            thousands(count),
            self.what
        )
    }
}

impl YamlLimits {
    /// The YAML parser's budget from these limits (the rest of its defaults
    /// stay: aliases, anchors, merge keys). Both parsers use it.
    pub fn budget(&self) -> serde_saphyr::Budget {
        let mut budget = serde_saphyr::Budget::default();
        budget.max_nodes = self.nodes;
        budget.max_events = self.events;
        budget.max_documents = self.documents;
        budget.max_depth = self.depth;
        budget.max_total_scalar_bytes = self.scalar_bytes;
        budget
    }

    /// A breached budget said for people ("it holds more than 4,000,000 YAML
    /// nodes ..., the limit for a workspace file"), instead of the parser's
    /// `Nodes { nodes: N }`; `None` when the error is not a breached budget.
    pub fn breach_message(&self, error: &serde_saphyr::Error) -> Option<String> {
        use serde_saphyr::budget::BudgetBreach;
        let mut error = error;
        while let serde_saphyr::Error::WithSnippet { error: inner, .. }
        | serde_saphyr::Error::AliasError { error: inner, .. } = error
        {
            error = inner;
        }
        let serde_saphyr::Error::Budget { breach, .. } = error else {
            return None;
        };
        let limit = match breach {
            BudgetBreach::Nodes { .. } => YamlLimit::Nodes,
            BudgetBreach::Events { .. } => YamlLimit::Events,
            BudgetBreach::Documents { .. } => YamlLimit::Documents,
            BudgetBreach::Depth { .. } => YamlLimit::Depth,
            BudgetBreach::ScalarBytes { .. } => YamlLimit::ScalarBytes,
            BudgetBreach::Aliases { .. }
            | BudgetBreach::Anchors { .. }
            | BudgetBreach::AliasAnchorRatio { .. } => {
                return Some("it uses more aliases (`*name`) than the parser accepts".to_owned());
            }
            _ => return Some("it exceeds a limit of the YAML parser".to_owned()),
        };
        Some(self.exceeded(limit))
    }
}

/// Which [`YamlLimits`] field was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YamlLimit {
    Nodes,
    Events,
    Documents,
    Depth,
    ScalarBytes,
}

/// A value from a file, fit to be quoted in a message: control characters
/// (escape sequences, NUL, line breaks) replaced by `?`, and at most
/// `max_chars` characters, then `…`. Messages quote names and kinds from
/// files someone else wrote; a terminal or a CI log must not interpret them,
/// and a 20 MB name must not become 20 MB of output.
pub fn shown(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (index, c) in text.chars().enumerate() {
        if index == max_chars {
            out.push('…');
            break;
        }
        out.push(if is_unsafe_char(c) { '?' } else { c });
    }
    out
}

/// Characters a terminal may act on: C0 and C1 controls, DEL, and the
/// bidirectional overrides that reorder what is shown.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
