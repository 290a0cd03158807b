//! Finding and reading workspace files.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::diag::{Problem, Sources};
use crate::lower::ParsedFile;
use crate::yaml;

/// The workspace's YAML files: `path` itself when it is a file; otherwise every
/// `*.yaml` / `*.yml` below it in sorted path order, skipping hidden directories.
pub fn workspace_files(path: &Path) -> Result<Vec<PathBuf>, Problem> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Problem::error(
            "pullwarden::spec::unreadable",
            format!(
                "cannot read workspace `{}`: {}",
                path.display(),
                io_reason(&e)
            ),
        )
    })?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let walker = WalkDir::new(path)
        .sort_by_file_name()
        .into_iter()
        // Hidden directories are skipped (the contract); files are read even
        // when they are symlinks (a ConfigMap mounted as a folder is made of them).
        .filter_entry(|entry| {
            entry.depth() == 0 || !(is_hidden(entry.file_name()) && is_dir(entry))
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            Problem::error(
                "pullwarden::spec::unreadable",
                format!("cannot read the workspace directory: {e}"),
            )
        })?;
        let is_file = entry.file_type().is_file()
            || (entry.file_type().is_symlink() && entry.path().is_file());
        if is_file && is_yaml(entry.path()) {
            files.push(entry.into_path());
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Problem::error(
            "pullwarden::spec::no_files",
            format!("no *.yaml or *.yml files in `{}`", path.display()),
        )
        .help("point pullwarden at a workspace file or a directory that holds one"));
    }
    Ok(files)
}

fn is_dir(entry: &walkdir::DirEntry) -> bool {
    entry.file_type().is_dir() || (entry.file_type().is_symlink() && entry.path().is_dir())
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| n.starts_with('.'))
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

pub(crate) fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}

/// Reads and parses every file; syntax errors and unreadable files become problems.
pub fn read_files(
    root: &Path,
    files: &[PathBuf],
    sources: &mut Sources,
) -> (Vec<ParsedFile>, Vec<Problem>) {
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    let base = if root.is_dir() {
        Some(root)
    } else {
        root.parent()
    };
    for path in files {
        let display = display_path(root, base, path);
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(
                    Problem::error(
                        "pullwarden::spec::unreadable",
                        format!("cannot read: {}", io_reason(&e)),
                    )
                    .in_file(display),
                );
                continue;
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            problems.push(
                Problem::error("pullwarden::spec::not_utf8", "the file is not UTF-8 text")
                    .in_file(display),
            );
            continue;
        };
        let file = sources.add(path, display, text);
        let text = sources.get(file).text.clone();
        let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        match yaml::parse_documents(&text) {
            Ok(documents) => parsed.push(ParsedFile {
                file,
                dir,
                documents,
            }),
            Err(error) => problems.push(syntax_problem(sources, file, &error)),
        }
    }
    (parsed, problems)
}

/// How a file is named in messages: as the user named it (the workspace path
/// joined with the file's path below it), so it works from the user's shell.
fn display_path(root: &Path, base: Option<&Path>, path: &Path) -> String {
    if root.is_file() {
        return root.display().to_string();
    }
    match base.and_then(|b| path.strip_prefix(b).ok()) {
        Some(rel) => root.join(rel).display().to_string(),
        None => path.display().to_string(),
    }
}

/// The byte range of what follows `key:` on the line holding `offset`.
pub(crate) fn value_on_line(text: &str, offset: usize) -> Option<std::ops::Range<usize>> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let colon = text[start..end].find(": ").map(|i| start + i + 2)?;
    (colon < end).then_some(colon..end)
}

/// A YAML syntax error as a problem at its place. The line may hold a
/// half-written credential: its value is masked, its key stays readable.
pub(crate) fn syntax_problem(
    sources: &mut Sources,
    file: pullwarden_core::model::FileId,
    error: &yaml::SyntaxError,
) -> Problem {
    let text = sources.get(file).text.clone();
    let mut offset = error.offset.unwrap_or(0).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    if let Some(value) = value_on_line(&text, offset) {
        sources.redact(&pullwarden_core::model::Origin { file, span: value });
    }
    Problem::error(
        "pullwarden::spec::yaml_syntax",
        format!("invalid YAML: {}", error.message),
    )
    .at(
        &pullwarden_core::model::Origin {
            file,
            span: offset..offset,
        },
        "here",
    )
}
