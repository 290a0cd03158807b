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
        let problem = Problem::error(crate::diag::codes::UNREADABLE, format!("{what}: {e}"));
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
                    Problem::error(crate::diag::codes::UNREADABLE, format!("cannot read: {e}"))
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

/// Keys whose values are credentials (compared without case): a Registry's
/// `password`, and what docker config files and tokens call them.
const CREDENTIAL_KEYS: &[&str] = &[
    "password",
    "auth",
    "identitytoken",
    "registrytoken",
    "token",
    "secret",
];

/// The byte ranges of every value under a credential key in `text`, found
/// without parsing (the text may not parse): in block style the rest of the
/// line and every following line indented deeper than the key (block
/// scalars, continued scalars), never the next key's line; in flow style
/// (`{user: u, password: p}`) up to the next `,` or `}` outside quotes.
pub(crate) fn credential_values(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut line_start = 0;
    // (column of the credential key) while masking its deeper lines
    let mut masking_deeper_than: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let indent = content.len() - content.trim_start().len();
        if let Some(key_indent) = masking_deeper_than {
            if content.trim().is_empty() || indent > key_indent {
                spans.push(line_start..line_start + content.len());
                line_start += line.len();
                continue;
            }
            masking_deeper_than = None;
        }
        for (key_at, value) in credential_keys_in_line(content) {
            let value_start = line_start + value.start;
            let value_end = line_start + value.end;
            if value_end > value_start {
                spans.push(value_start..value_end);
            }
            // A key that starts its line (after `- ` at most) owns the deeper lines.
            let before = content[..key_at].trim_start();
            if before.is_empty()
                || before == "-"
                || before.starts_with("- ") && before[2..].trim().is_empty()
            {
                // The key's column: `- auth: x` owns lines deeper than `auth`.
                masking_deeper_than = Some(key_at);
            }
        }
        line_start += line.len();
    }
    spans
}

/// In one line: for each credential key, where the key starts and the range
/// of its value within the line.
fn credential_keys_in_line(line: &str) -> Vec<(usize, std::ops::Range<usize>)> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // A key starts the line (after spaces and `- `) or follows `{`, `,` or a space.
        let at_boundary = i == 0 || matches!(bytes[i - 1], b'{' | b',' | b' ' | b'\t' | b'-');
        if !at_boundary {
            i += 1;
            continue;
        }
        let quote = matches!(bytes[i], b'"' | b'\'').then_some(bytes[i]);
        let key_start = i + usize::from(quote.is_some());
        let key = CREDENTIAL_KEYS.iter().find(|k| {
            line.get(key_start..key_start + k.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(k))
        });
        let Some(key) = key else {
            i += 1;
            continue;
        };
        let mut j = key_start + key.len();
        if let Some(q) = quote {
            if bytes.get(j) != Some(&q) {
                i += 1;
                continue;
            }
            j += 1;
        }
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if bytes.get(j) != Some(&b':') || !matches!(bytes.get(j + 1), None | Some(b' ' | b'\t')) {
            i += 1;
            continue;
        }
        j += 1;
        while j < bytes.len() && matches!(bytes[j], b' ' | b'\t') {
            j += 1;
        }
        let value_start = j;
        let value_end = value_end(bytes, value_start);
        found.push((i, value_start..value_end));
        i = value_end.max(i + 1);
    }
    found
}

/// Where a value starting at `start` ends: its closing quote, or the next
/// `,` / `}` / `]` when it sits in a flow collection, or the end of the line.
fn value_end(bytes: &[u8], start: usize) -> usize {
    if let Some(&q @ (b'"' | b'\'')) = bytes.get(start) {
        let mut k = start + 1;
        while k < bytes.len() {
            if bytes[k] == b'\\' && q == b'"' {
                k += 2;
                continue;
            }
            if bytes[k] == q {
                return k + 1;
            }
            k += 1;
        }
        return bytes.len();
    }
    let in_flow = bytes[..start].iter().any(|b| matches!(b, b'{' | b'['));
    if in_flow {
        bytes[start..]
            .iter()
            .position(|b| matches!(b, b',' | b'}' | b']'))
            .map_or(bytes.len(), |k| start + k)
    } else {
        bytes.len()
    }
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
    // The file was not parsed, so which values are credentials is not known:
    // every value under a credential-looking key is masked, wherever it is.
    for span in credential_values(&text) {
        sources.redact(&pullwarden_core::model::Origin { file, span });
    }
    let problem = if error.over_limit {
        Problem::error(
            crate::diag::codes::YAML_LIMIT,
            format!("cannot read this file: {}", error.message),
        )
        .help("docs/workspace-format.md lists the limits of a workspace file; split it into several files")
    } else {
        Problem::error(
            crate::diag::codes::YAML_SYNTAX,
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

#[cfg(test)]
mod tests {
    use super::credential_values;

    fn masked(text: &str) -> Vec<&str> {
        credential_values(text)
            .into_iter()
            .map(|span| &text[span])
            .collect()
    }

    #[test]
    fn credential_values_cover_block_flow_and_quoted_shapes_and_stop_at_the_next_key() {
        assert_eq!(
            masked("spec:\n  password: |\n    s1\n\n    s2\n  email: e\n"),
            ["|", "    s1", "", "    s2"]
        );
        assert_eq!(masked("a: {username: u, password: p1, email: e}\n"), ["p1"]);
        assert_eq!(masked("a: {\"Password\": \"p, 2\", x: 1}\n"), ["\"p, 2\""]);
        assert_eq!(masked("- auth: abc\n  other: 1\n"), ["abc"]);
        assert_eq!(
            masked("username: u\npasswords: no\nmytoken: no\n"),
            Vec::<&str>::new()
        );
    }
}
