//! Problems found in a workspace, and how they render: as miette reports
//! pointing at the source, or as plain data for `--format json`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The problem codes other code decides on, defined once (every other code
/// is written where the problem is raised).
pub mod codes {
    pub const YAML_SYNTAX: &str = "pullwarden::spec::yaml_syntax";
    pub const YAML_LIMIT: &str = "pullwarden::spec::yaml_limit";
    pub const UNREADABLE: &str = "pullwarden::spec::unreadable";
    pub const MISSING_WORKSPACE: &str = "pullwarden::spec::missing_workspace";
    pub const CREDENTIAL_FILE_ABSENT: &str = "pullwarden::spec::credential_file_absent";
    /// Two `Workspace.spec.clusters` entries with one name.
    pub const DUPLICATE_CLUSTER: &str = "pullwarden::spec::duplicate_cluster";
    /// Two `Workspace.spec.clusters` entries with the same context and kubeconfig.
    pub const DUPLICATE_CLUSTER_CONTEXT: &str = "pullwarden::spec::duplicate_cluster_context";
    /// `clusters` on a `PullSecret` or `PullGrant` of a workspace without `spec.clusters`.
    pub const CLUSTERS_WITHOUT_FLEET: &str = "pullwarden::spec::clusters_without_fleet";
    /// A cluster limit names a cluster the workspace does not declare.
    pub const UNKNOWN_CLUSTER: &str = "pullwarden::spec::unknown_cluster";
    /// A cluster glob or selector that chooses no declared cluster (warning).
    pub const CLUSTER_PATTERN_MATCHES_NOTHING: &str =
        "pullwarden::spec::cluster_pattern_matches_nothing";
    /// A `PullSecret` or `PullGrant` whose cluster limits choose no cluster (warning).
    pub const NO_CLUSTER_CHOSEN: &str = "pullwarden::spec::no_cluster_chosen";
}

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use pullwarden_core::model::{FileId, Origin};
use serde::Serialize;

/// Every file the loader read, by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as it should be shown (relative to where the user pointed).
    pub display: String,
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl Sources {
    /// Adds a file's text as it will be shown: control characters and
    /// escape sequences replaced byte for byte by `?` (so every span stays
    /// valid), so that no snippet can drive the terminal. Parse the original
    /// text, not this one.
    pub fn add(&mut self, path: &Path, display: String, text: String) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).expect("fewer than 4 billion files"));
        self.files.push(SourceFile {
            display: if display.chars().any(pullwarden_input::is_unsafe_char)
                || display.len() > MAX_QUOTED_CHARS * 2
            {
                pullwarden_input::shown(&display, MAX_QUOTED_CHARS * 2)
            } else {
                display
            },
            path: path.to_path_buf(),
            text: printable_source(text).into(),
        });
        id
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Masks a span of a file's text with `*` (same byte length, so every other
    /// span stays valid). Used for literal secrets, so that no source snippet
    /// shown later can print them.
    pub fn redact(&mut self, origin: &Origin) {
        let file = &mut self.files[origin.file.0 as usize];
        let text = &file.text;
        let start = floor_char_boundary(text, origin.span.start.min(text.len()));
        let end = floor_char_boundary(text, origin.span.end.min(text.len()));
        let mut masked = String::with_capacity(text.len());
        masked.push_str(&text[..start]);
        for c in text[start..end].chars() {
            if c == '\n' {
                masked.push('\n');
            } else {
                masked.extend(std::iter::repeat_n('*', c.len_utf8()));
            }
        }
        masked.push_str(&text[end..]);
        file.text = masked.into();
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, id: FileId, offset: usize) -> (usize, usize) {
        line_column(&self.get(id).text, offset)
    }
}

/// How much of a value from a file a message quotes (characters).
pub const MAX_QUOTED_CHARS: usize = 200;

/// Lines longer than this (bytes) are not shown as snippets: miette cannot
/// point past column 65,535, and a 20 MB line is not a snippet. The problem
/// then names its file, line and column in its message.
pub const MAX_SNIPPET_LINE: usize = 1_000;

/// `text` with every control character except line feed and tab, and every
/// bidirectional override, replaced by as many `?` as it has bytes.
fn printable_source(text: String) -> String {
    if !text
        .chars()
        .any(|c| c != '\n' && c != '\t' && pullwarden_input::is_unsafe_char(c))
    {
        return text;
    }
    text.chars()
        .map(|c| {
            if c != '\n' && c != '\t' && pullwarden_input::is_unsafe_char(c) {
                "?".repeat(c.len_utf8())
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A message for people, safe to print: each `backquoted` value at most
/// [`MAX_QUOTED_CHARS`] characters, no control characters but line breaks
/// outside quotes (help texts use them), and at most 4,000 characters.
fn printable_message(text: String) -> String {
    let unsafe_outside = |c: char| c != '\n' && pullwarden_input::is_unsafe_char(c);
    let mut quoted = 0usize;
    let needs_work = text.chars().any(unsafe_outside)
        || text.len() > MAX_QUOTED_CHARS
            && text
                .split('`')
                .skip(1)
                .step_by(2)
                .any(|q| q.chars().count() > MAX_QUOTED_CHARS);
    if !needs_work && text.len() <= 4_000 {
        return text;
    }
    let mut out = String::new();
    let mut inside = false;
    for c in text.chars() {
        if c == '`' {
            inside = !inside;
            quoted = 0;
            out.push(c);
            continue;
        }
        if inside {
            quoted += 1;
            if quoted == MAX_QUOTED_CHARS + 1 {
                out.push('…');
            }
            if quoted > MAX_QUOTED_CHARS {
                continue;
            }
            out.push(if pullwarden_input::is_unsafe_char(c) {
                '?'
            } else {
                c
            });
        } else {
            out.push(if unsafe_outside(c) { '?' } else { c });
        }
        if out.len() > 4_000 {
            out.push('…');
            break;
        }
    }
    out
}

/// Whether a snippet of `text` around `span` would show a line longer than
/// [`MAX_SNIPPET_LINE`] (the label's lines and one line of context each side).
fn too_wide_for_a_snippet(text: &str, span: &Range<usize>) -> bool {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let end = floor_char_boundary(text, span.end.min(text.len()));
    // One line before the span and one after.
    let from = text[..start]
        .rfind('\n')
        .and_then(|i| text[..i].rfind('\n').map(|j| j + 1).or(Some(0)))
        .unwrap_or(0);
    let to = text[end..].find('\n').map_or(text.len(), |i| {
        let after = end + i + 1;
        text[after..].find('\n').map_or(text.len(), |j| after + j)
    });
    text[from..to]
        .split('\n')
        .any(|line| line.len() > MAX_SNIPPET_LINE)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Information that changes nothing (e.g. a credential file not checked).
    Note,
}

/// A place in a file, with what to say there.
#[derive(Clone, Debug)]
pub struct Label {
    pub file: FileId,
    pub span: Range<usize>,
    pub text: String,
}

/// One problem. `code` is stable (`pullwarden::spec::unknown_field`) and is
/// what tests and scripts match on; `message` is for people.
#[derive(Clone, Debug)]
pub struct Problem {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
    pub primary: Option<Label>,
    pub secondary: Vec<Label>,
    /// A file the problem is about when there is no span (an unreadable file).
    pub path: Option<String>,
}

impl Problem {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message: printable_message(message.into()),
            help: None,
            primary: None,
            secondary: Vec::new(),
            path: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn note(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Note,
            ..Self::error(code, message)
        }
    }

    #[must_use]
    pub fn at(mut self, origin: &Origin, text: impl Into<String>) -> Self {
        self.primary = Some(Label {
            file: origin.file,
            span: origin.span.clone(),
            text: printable_message(text.into()),
        });
        self
    }

    #[must_use]
    pub fn also(mut self, origin: &Origin, text: impl Into<String>) -> Self {
        self.secondary.push(Label {
            file: origin.file,
            span: origin.span.clone(),
            text: printable_message(text.into()),
        });
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(printable_message(help.into()));
        self
    }

    #[must_use]
    pub fn in_file(mut self, path: impl Into<String>) -> Self {
        self.path = Some(pullwarden_input::shown(&path.into(), MAX_QUOTED_CHARS * 2));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The problem as data: what `--format json` prints.
    pub fn to_data(&self, sources: &Sources) -> ProblemData {
        let (file, line, column) = match &self.primary {
            Some(label) => {
                let (line, column) = sources.line_column(label.file, label.span.start);
                (
                    Some(sources.get(label.file).display.clone()),
                    Some(line),
                    Some(column),
                )
            }
            None => (self.path.clone(), None, None),
        };
        ProblemData {
            severity: self.severity,
            code: self.code,
            message: self.message.clone(),
            help: self.help.clone(),
            file,
            line,
            column,
            related: self
                .secondary
                .iter()
                .map(|label| {
                    let (line, column) = sources.line_column(label.file, label.span.start);
                    RelatedData {
                        file: sources.get(label.file).display.clone(),
                        line,
                        column,
                        message: label.text.clone(),
                    }
                })
                .collect(),
        }
    }

    /// The problem as a miette report over its sources.
    pub fn to_report(&self, sources: &Sources) -> miette::Report {
        miette::Report::new(Rendered::new(self, sources))
    }
}

/// `--format json`'s shape of a problem (documented in the README).
#[derive(Clone, Debug, Serialize)]
pub struct ProblemData {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<RelatedData>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RelatedData {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A problem bound to its source text, as miette wants it. Labels in the
/// primary file are drawn there; labels in other files become related reports.
#[derive(Debug)]
struct Rendered {
    code: &'static str,
    severity: miette::Severity,
    message: String,
    help: Option<String>,
    source: Option<NamedSource<Arc<str>>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Rendered>,
}

impl Rendered {
    fn new(problem: &Problem, sources: &Sources) -> Self {
        let severity = match problem.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Note => miette::Severity::Advice,
        };
        let mut message = problem.message.clone();
        if let (None, Some(path)) = (&problem.primary, &problem.path) {
            message = format!("{path}: {message}");
        }
        let Some(primary) = &problem.primary else {
            return Self {
                code: problem.code,
                severity,
                message,
                help: problem.help.clone(),
                source: None,
                labels: Vec::new(),
                related: Vec::new(),
            };
        };
        let file = sources.get(primary.file);
        let wide = std::iter::once(primary)
            .chain(problem.secondary.iter())
            .any(|label| too_wide_for_a_snippet(&sources.get(label.file).text, &label.span));
        if wide {
            // No snippet: the place, and what the labels say, in words.
            let (line, column) = sources.line_column(primary.file, primary.span.start);
            let mut message = format!("{}:{line}:{column}: {message}", file.display);
            if !primary.text.is_empty() {
                message = format!("{message} ({})", primary.text);
            }
            let related = problem
                .secondary
                .iter()
                .map(|label| {
                    let (line, column) = sources.line_column(label.file, label.span.start);
                    Self {
                        code: problem.code,
                        severity: miette::Severity::Advice,
                        message: format!(
                            "{}:{line}:{column}: {}",
                            sources.get(label.file).display,
                            label.text
                        ),
                        help: None,
                        source: None,
                        labels: Vec::new(),
                        related: Vec::new(),
                    }
                })
                .collect();
            return Self {
                code: problem.code,
                severity,
                message,
                help: problem.help.clone(),
                source: None,
                labels: Vec::new(),
                related,
            };
        }
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(primary.text.clone()).filter(|t| !t.is_empty()),
            primary.span.clone(),
        )];
        let mut related = Vec::new();
        for label in &problem.secondary {
            if label.file == primary.file {
                labels.push(LabeledSpan::new_with_span(
                    Some(label.text.clone()),
                    label.span.clone(),
                ));
            } else {
                let other = sources.get(label.file);
                related.push(Self {
                    code: problem.code,
                    severity: miette::Severity::Advice,
                    message: label.text.clone(),
                    help: None,
                    source: Some(NamedSource::new(&other.display, other.text.clone())),
                    labels: vec![LabeledSpan::new_primary_with_span(None, label.span.clone())],
                    related: Vec::new(),
                });
            }
        }
        Self {
            code: problem.code,
            severity,
            message,
            help: problem.help.clone(),
            source: Some(NamedSource::new(&file.display, file.text.clone())),
            labels,
            related,
        }
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_sources_keep_every_offset_and_lose_control_characters() {
        let text = "a: \u{1b}[31mx\0\u{85}\u{202e}ç\n\tb: 1\r\n";
        let shown = printable_source(text.to_owned());
        assert_eq!(shown.len(), text.len());
        assert_eq!(shown, "a: ?[31mx??????ç\n\tb: 1?\n");
    }

    #[test]
    fn messages_cap_quoted_values_and_drop_control_characters() {
        let long = "x".repeat(10_000);
        let message = printable_message(format!("`{long}` is wrong\nsee `a\u{1b}b`"));
        assert_eq!(
            message,
            format!("`{}…` is wrong\nsee `a?b`", "x".repeat(MAX_QUOTED_CHARS))
        );
    }

    #[test]
    fn line_and_column_are_one_based_characters() {
        let text = "ab\nçd: x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        // 'ç' is two bytes; 'd' is the second character of line 2.
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(line_column(text, 999), (3, 1));
    }
}
