//! The only place that prints. stdout carries data (schemas, JSON, plans);
//! everything for people (diagnostics, summaries) goes to stderr.
//!
//! No write here ever panics: a closed pipe (`pullwarden ... 2>&1 | true`)
//! or a closed stream is the reader's choice, and the exit code must still
//! be the command's (`eprintln!` would panic, and the panic hook printing
//! again would abort the process with 134).

use std::io::{IsTerminal, Write as _};

use miette::{GraphicalReportHandler, GraphicalTheme};
use serde::Serialize;

use crate::cli::ColorChoice;

pub struct Output {
    /// Colour on stderr.
    color: bool,
    choice: ColorChoice,
    quiet: bool,
    verbose: u8,
    /// Set for one cluster of a fleet ([`Output::for_cluster`]).
    cluster: Option<ClusterScope>,
}

/// One cluster's share of a fleet command: its lines for people go to stderr
/// at once, each prefixed `[NAME] ` (clusters run concurrently, so their lines
/// interleave), and its problems are kept, for the cluster's section of the
/// report when it fails. A cluster's work prints no data: it returns it, and
/// the command prints every cluster's grouped, in the workspace's order.
struct ClusterScope {
    name: String,
    messages: std::sync::Mutex<Vec<String>>,
}

impl Output {
    pub fn new(choice: ColorChoice, quiet: bool, verbose: u8) -> Self {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
            }
        };
        Self {
            color,
            choice,
            quiet,
            verbose,
            cluster: None,
        }
    }

    /// The output of one cluster of a fleet, named `name` (see [`ClusterScope`]).
    pub fn for_cluster(&self, name: &str) -> Output {
        Output {
            color: self.color,
            choice: self.choice,
            quiet: self.quiet,
            verbose: self.verbose,
            cluster: Some(ClusterScope {
                name: name.to_owned(),
                messages: std::sync::Mutex::default(),
            }),
        }
    }

    /// The problems and status lines a cluster's output printed, one each,
    /// without colour or prefix.
    pub fn messages(&self) -> Vec<String> {
        self.cluster.as_ref().map_or_else(Vec::new, |scope| {
            scope
                .messages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }

    fn keep(&self, message: String) {
        if let Some(scope) = &self.cluster {
            scope
                .messages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(message);
        }
    }

    /// Text for people on stderr, each line prefixed with the cluster's name.
    fn to_stderr(&self, text: &str) {
        match &self.cluster {
            None => to_stderr(text),
            Some(scope) => {
                let mut prefixed = String::with_capacity(text.len() + 16);
                for line in text.lines() {
                    prefixed.push('[');
                    prefixed.push_str(&scope.name);
                    prefixed.push_str("] ");
                    prefixed.push_str(line);
                    prefixed.push('\n');
                }
                to_stderr(&prefixed);
            }
        }
    }

    /// Whether this is the output of one cluster of a fleet.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// How plans are styled on stdout: colour only on a terminal, `NO_COLOR` unset.
    pub fn style(&self) -> pullwarden_core::render::Style {
        pullwarden_core::render::Style {
            color: match self.choice {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => {
                    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                        && std::io::stdout().is_terminal()
                }
            },
        }
    }

    /// A diagnostic, rendered with its source snippet, on stderr.
    pub fn report(&self, report: &miette::Report) {
        let theme = if self.color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
        let mut text = String::new();
        if handler.render_report(&mut text, report.as_ref()).is_err() {
            text = format!("{report}");
        }
        if self.cluster.is_some() {
            let chain: Vec<String> = report.chain().map(ToString::to_string).collect();
            let mut message = chain.join(": ");
            if let Some(help) = report.help() {
                message = format!("{message} ({help})");
            }
            self.keep(message);
        }
        self.to_stderr(&format!("{text}\n"));
    }

    /// A detail for `-v`, on stderr.
    pub fn info(&self, line: &str) {
        if self.verbose > 0 && !self.quiet {
            self.to_stderr(&format!("pullwarden: {line}\n"));
        }
    }

    /// A one-line status for people, on stderr (suppressed by `-q`).
    pub fn status(&self, line: &str) {
        self.keep(line.to_owned());
        if !self.quiet {
            self.to_stderr(&format!("{line}\n"));
        }
    }

    /// A line about a failure, on stderr: printed under `-q` too (`-q`
    /// prints only errors).
    pub fn error(&self, line: &str) {
        self.keep(line.to_owned());
        self.to_stderr(&format!("{line}\n"));
    }

    /// Whether a question can be asked (stdin and stderr are terminals).
    #[allow(clippy::unused_self)] // a method, so that all terminal I/O goes through `Output`
    pub fn can_prompt(&self) -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    /// Asks on stderr; true only for the answer `yes`.
    #[allow(clippy::unused_self)] // a method, so that all terminal I/O goes through `Output`
    pub fn confirm(&self, question: &str) -> bool {
        to_stderr(question);
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
    }

    /// One finished change of a long apply, on a terminal only (overwritten in place).
    /// Not for a cluster of a fleet: clusters run at once, so one line cannot
    /// be overwritten in place.
    pub fn progress(&self, done: usize, total: usize, what: &str) {
        if self.cluster.is_none() && !self.quiet && std::io::stderr().is_terminal() {
            to_stderr(&format!("\r\x1b[2K[{done}/{total}] {what}"));
        }
    }

    pub fn progress_done(&self) {
        if self.cluster.is_none() && !self.quiet && std::io::stderr().is_terminal() {
            to_stderr("\r\x1b[2K");
        }
    }

    /// Data on stdout, as is.
    #[allow(clippy::unused_self)] // a method, so that all output goes through `Output`
    pub fn data(&self, text: &str) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    /// Data on stdout, as pretty JSON.
    pub fn json<T: Serialize>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => self.data(&(text + "\n")),
            Err(e) => self.to_stderr(&format!(
                "pullwarden: cannot encode the output as JSON: {e}\n"
            )),
        }
    }
}

/// Text for people on stderr; a closed or broken stream is ignored.
fn to_stderr(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// A panic is a bug. Its message could quote data, so it is not printed:
/// only where it happened, and how to report it. The hook itself never
/// panics (a second panic would abort with 134 and lose the exit code).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map_or_else(
            || "an unknown place".to_string(),
            |l| format!("{}:{}", l.file(), l.line()),
        );
        let _ = writeln!(
            std::io::stderr().lock(),
            "pullwarden: internal error at {location}; this is a bug, please report it (the message is withheld because it could contain data)"
        );
        std::process::exit(1);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clusters_output_keeps_its_problems_for_its_section() {
        let out = Output::new(ColorChoice::Never, true, 0);
        assert!(!out.is_cluster() && out.messages().is_empty());
        let cluster = out.for_cluster("prod");
        assert!(cluster.is_cluster());
        cluster.status("pullwarden: a status");
        cluster.error("pullwarden: an error");
        cluster.info("only with -v");
        cluster.report(
            &miette::miette!(help = "check the server", "cannot reach the server")
                .wrap_err("cannot read the cluster"),
        );
        assert_eq!(
            cluster.messages(),
            [
                "pullwarden: a status",
                "pullwarden: an error",
                "cannot read the cluster: cannot reach the server (check the server)",
            ]
        );
        // Each cluster's output is its own.
        assert!(out.for_cluster("dev").messages().is_empty());
    }
}
