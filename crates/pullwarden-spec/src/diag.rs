//! Problems found in a workspace, and how they render: as miette reports
//! pointing at the source, or as plain data for `--format json`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    pub fn add(&mut self, path: &Path, display: String, text: String) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).expect("fewer than 4 billion files"));
        self.files.push(SourceFile {
            display,
            path: path.to_path_buf(),
            text: text.into(),
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
            message: message.into(),
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
            text: text.into(),
        });
        self
    }

    #[must_use]
    pub fn also(mut self, origin: &Origin, text: impl Into<String>) -> Self {
        self.secondary.push(Label {
            file: origin.file,
            span: origin.span.clone(),
            text: text.into(),
        });
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn in_file(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
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
    fn line_and_column_are_one_based_characters() {
        let text = "ab\nçd: x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        // 'ç' is two bytes; 'd' is the second character of line 2.
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(line_column(text, 999), (3, 1));
    }
}
