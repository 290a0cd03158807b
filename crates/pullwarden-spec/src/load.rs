//! Finding and reading workspace files.

use std::path::{Path, PathBuf};

use crate::diag::{Problem, Sources};
use crate::lower::ParsedFile;
use crate::yaml;

/// The workspace's YAML files: `path` itself when it is not a folder;
/// otherwise every `*.yaml` / `*.yml` below it in sorted path order, following
/// symlinks (to files and to folders) and skipping hidden folders (see
/// [`pullwarden_input::find_files`]). Anything that could hold workspace
/// documents and cannot be read is an error, never skipped: with prune on, a
/// skipped file would turn into deletions.
pub fn workspace_files(path: &Path) -> Result<Vec<PathBuf>, Problem> {
    let files = pullwarden_input::find_files(path, &is_yaml).map_err(|e| {
        let what = if e.path() == path {
            format!("cannot read workspace `{}`", path.display())
        } else {
            format!("cannot read `{}` in the workspace", e.path().display())
        };
        let problem = Problem::error("pullwarden::spec::unreadable", format!("{what}: {e}"));
        match e.kind() {
            pullwarden_input::InputErrorKind::SymlinkLoop => problem
                .help("a symlink in the workspace leads back to itself or to a folder above it"),
            pullwarden_input::InputErrorKind::NotFound if e.path() != path => problem.help(
                "a broken symlink: fix or remove it (its documents would otherwise count as deleted)",
            ),
            _ => problem,
        }
    })?;
    if files.is_empty() {
        return Err(Problem::error(
            "pullwarden::spec::no_files",
            format!("no *.yaml or *.yml files in `{}`", path.display()),
        )
        .help("point pullwarden at a workspace file or a directory that holds one"));
    }
    Ok(files)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
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
        let bytes = match pullwarden_input::read(path, pullwarden_input::Limit::WORKSPACE_FILE) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(
                    Problem::error("pullwarden::spec::unreadable", format!("cannot read: {e}"))
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
        // The sources keep the text as shown (control characters masked);
        // the parser reads it as written.
        let file = sources.add(path, display, text.clone());
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
    let problem = if error.over_limit {
        Problem::error(
            "pullwarden::spec::yaml_limit",
            format!("cannot read this file: {}", error.message),
        )
        .help("docs/workspace-format.md lists the limits of a workspace file; split it into several files")
    } else {
        Problem::error(
            "pullwarden::spec::yaml_syntax",
            format!("invalid YAML: {}", error.message),
        )
    };
    problem.at(
        &pullwarden_core::model::Origin {
            file,
            span: offset..offset,
        },
        "here",
    )
}
