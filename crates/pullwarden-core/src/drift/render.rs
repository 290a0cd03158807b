//! Drift reports for their media: text for people, markdown for a job
//! summary or an issue, JUnit XML for any CI, GitHub workflow commands.
//! Every text from the cluster goes through [`crate::escape`] for its medium.

use super::{DriftClass, DriftItem, DriftReport};
use crate::escape;
use crate::render::kind_name;

/// Text for people: one line per item, grouped by class.
pub fn text(report: &DriftReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for class in [DriftClass::Drift, DriftClass::Pending] {
        let items: Vec<&DriftItem> = report.items.iter().filter(|i| i.class == class).collect();
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "{}:",
            if class == DriftClass::Drift {
                "Drift (the cluster moved away from the workspace)"
            } else {
                "Pending work (the workspace asks for more than was applied)"
            }
        );
        for item in items {
            let _ = write!(
                out,
                "  {} {} {}/{}: {}",
                if class == DriftClass::Drift { "!" } else { "+" },
                kind_name(item.kind),
                escape::text(&item.namespace),
                escape::text(&item.name),
                escape::text(&item.what)
            );
            if !item.changed_by.is_empty() {
                let _ = write!(
                    out,
                    " (changed by {})",
                    escape::text(&item.changed_by.join(", "))
                );
            }
            out.push('\n');
        }
        out.push('\n');
    }
    for f in &report.missing {
        let _ = writeln!(out, "missing: {}", escape::text(&f.message));
    }
    for f in &report.errors {
        let _ = writeln!(out, "error: {}", escape::text(&f.message));
    }
    if report.in_sync {
        out.push_str("In sync: the cluster matches the workspace.\n");
    } else {
        let _ = writeln!(
            out,
            "{} drifted, {} pending{}. `pullwarden apply` repairs both.",
            report.drift,
            report.pending,
            if report.errors.is_empty() {
                String::new()
            } else {
                format!(", {} error(s)", report.errors.len())
            }
        );
    }
    out
}

/// Markdown for a job summary or an issue.
pub fn markdown(report: &DriftReport) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "### pullwarden drift: workspace {}\n\n",
        escape::markdown(&report.workspace)
    );
    if report.in_sync {
        out.push_str("**In sync.** The cluster matches the workspace.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "**{} drifted, {} pending, {} errors.**\n\n| class | object | what | changed by |\n|---|---|---|---|",
        report.drift,
        report.pending,
        report.errors.len()
    );
    for item in &report.items {
        let _ = writeln!(
            out,
            "| {:?} | {} {}/{} | {} | {} |",
            item.class,
            kind_name(item.kind),
            escape::markdown(&item.namespace),
            escape::markdown(&item.name),
            escape::markdown(&item.what),
            escape::markdown(&item.changed_by.join(", "))
        );
    }
    for f in report.missing.iter().chain(&report.errors) {
        let _ = writeln!(out, "\n:x: {}", escape::markdown(&f.message));
    }
    out
}

/// JUnit XML: one failed test case per drifted or pending object, so any CI shows them.
pub fn junit(report: &DriftReport) -> String {
    let (suite, tests, failures) = junit_suite(&format!("workspace {}", report.workspace), report);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pullwarden drift\" tests=\"{tests}\" failures=\"{failures}\">\n{suite}</testsuites>\n"
    )
}

/// JUnit XML of a fleet: a test suite per cluster (`cluster NAME`); a cluster
/// that could not be compared is one failed test case saying why.
pub fn junit_fleet(reports: &[(&str, Result<&DriftReport, String>)]) -> String {
    use std::fmt::Write as _;
    let mut suites = String::new();
    let (mut all_tests, mut all_failures) = (0, 0);
    for (name, report) in reports {
        let suite_name = format!("cluster {name}");
        let (suite, tests, failures) = match report {
            Ok(report) => junit_suite(&suite_name, report),
            Err(reason) => (
                format!(
                    "  <testsuite name=\"{}\" tests=\"1\" failures=\"1\">\n    <testcase classname=\"cluster\" name=\"compared\"><failure type=\"error\" message=\"{}\"/></testcase>\n  </testsuite>\n",
                    xml(&suite_name),
                    xml(reason)
                ),
                1,
                1,
            ),
        };
        suites.push_str(&suite);
        all_tests += tests;
        all_failures += failures;
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pullwarden drift\" tests=\"{all_tests}\" failures=\"{all_failures}\">\n{suites}</testsuites>\n"
    );
    out
}

/// One `<testsuite>` and its numbers of tests and failures.
fn junit_suite(name: &str, report: &DriftReport) -> (String, usize, usize) {
    use std::fmt::Write as _;
    let failures = report.items.len() + report.missing.len() + report.errors.len();
    let tests = failures.max(1);
    let mut out = format!(
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">\n",
        xml(name)
    );
    for item in &report.items {
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{} {}\"><failure type=\"{:?}\" message=\"{}\"/></testcase>",
            xml(&item.namespace),
            kind_name(item.kind),
            xml(&item.name),
            item.class,
            xml(&item.what)
        );
    }
    for f in report.missing.iter().chain(&report.errors) {
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\"><failure type=\"error\" message=\"{}\"/></testcase>",
            xml(f.namespace.as_deref().unwrap_or("cluster")),
            xml(f.code.as_str()),
            xml(&f.message)
        );
    }
    if failures == 0 {
        out.push_str("    <testcase classname=\"cluster\" name=\"in sync\"/>\n");
    }
    out.push_str("  </testsuite>\n");
    (out, tests, failures)
}

pub(super) fn xml(text: &str) -> String {
    escape::xml(text)
}

/// GitHub Actions workflow commands: one annotation per item.
pub fn github_annotations(report: &DriftReport) -> String {
    annotations(report, "")
}

/// [`github_annotations`] of one cluster of a fleet: its name in every title.
pub fn github_annotations_for_cluster(report: &DriftReport, cluster: &str) -> String {
    annotations(
        report,
        &format!(" (cluster {})", escape::workflow_property(cluster)),
    )
}

fn annotations(report: &DriftReport, suffix: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for item in &report.items {
        let level = if item.class == DriftClass::Drift {
            "error"
        } else {
            "warning"
        };
        let _ = writeln!(
            out,
            "::{level} title=pullwarden {:?}{suffix}::{} {}/{}: {}",
            item.class,
            kind_name(item.kind),
            gh_escape(&item.namespace),
            gh_escape(&item.name),
            gh_escape(&item.what)
        );
    }
    for f in report.missing.iter().chain(&report.errors) {
        let _ = writeln!(
            out,
            "::error title=pullwarden{suffix}::{}",
            gh_escape(&f.message)
        );
    }
    out
}

pub(super) fn gh_escape(text: &str) -> String {
    escape::workflow_message(text)
}
