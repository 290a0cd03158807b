//! Plans for people and machines: text (terminal), markdown (a pull-request
//! comment) and JSON (versioned). Renderers only read the plan; they see no
//! credential because the plan holds none.

use std::fmt::Write as _;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use crate::plan::access::{AccessChanges, AccessLine};
use crate::plan::{
    Action, Change, Detail, EntryDiff, EntryStatus, Finding, LinkDiff, ObjectKind, Plan,
    RoleBindingDiff, SecretDiff, Summary,
};

/// How text is styled. Colour is never the only signal: every line has a word.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Text from the cluster made safe to print: no control characters (no
/// terminal escapes, no line breaks that could forge a CI workflow command).
pub fn safe(text: &str) -> String {
    crate::escape::text(text)
}

fn glyph(action: Action) -> (&'static str, &'static str, &'static str) {
    match action {
        Action::Create => ("+", "create", "32"),
        Action::Update => ("~", "update", "33"),
        Action::Replace => ("-/+", "replace", "35"),
        Action::Delete => ("-", "delete", "31"),
        Action::Adopt => ("~", "adopt", "36"),
        Action::Link => ("~", "link", "33"),
    }
}

/// How a kind is shown to people, everywhere.
pub fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Secret => "Secret",
        ObjectKind::ServiceAccount => "ServiceAccount",
        ObjectKind::RoleBinding => "RoleBinding",
    }
}

/// A change in a few words, for progress and apply's report:
/// `create Secret ns/name`, `unlink ServiceAccount ns/default`.
pub fn change_title(change: &Change) -> String {
    let action = match (change.action, &change.detail) {
        (Action::Link, Detail::Links(links)) => {
            let adds = !links.pull_added.is_empty() || !links.mount_added.is_empty();
            let removes = !links.pull_removed.is_empty() || !links.mount_removed.is_empty();
            match (adds, removes) {
                (false, true) => "unlink",
                (true, true) => "link and unlink",
                _ => "link",
            }
        }
        (action, _) => glyph(action).1,
    };
    safe(&format!(
        "{action} {} {}/{}",
        kind_name(change.kind),
        change.namespace,
        change.name
    ))
}

/// The one-line summary: "N to create, N to update, N to replace, N to delete".
pub fn summary_line(summary: &Summary) -> String {
    let mut line = format!(
        "{} to create, {} to update, {} to replace, {} to delete",
        summary.create, summary.update, summary.replace, summary.delete
    );
    if summary.adopt > 0 {
        let _ = write!(line, ", {} to adopt", summary.adopt);
    }
    let _ = write!(
        line,
        "; {} to link, {} to unlink",
        summary.link, summary.unlink
    );
    line
}

/// Human text, grouped by namespace.
pub fn text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let mut namespace: Option<&str> = None;
    for change in &plan.changes {
        if namespace != Some(change.namespace.as_str()) {
            if namespace.is_some() {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "{}",
                style.paint("1", &safe(&format!("namespace {}", change.namespace)))
            );
            namespace = Some(&change.namespace);
        }
        let (g, word, color) = glyph(change.action);
        let head = safe(&format!(
            "{g} {word:<7} {} {}",
            kind_name(change.kind),
            change.name
        ));
        let mut line = format!("  {}", style.paint(color, &head));
        if let Some(source) = &change.source {
            let _ = write!(line, "  (from {})", safe(source));
        }
        let _ = writeln!(out, "{line}");
        for detail in detail_lines(change) {
            let _ = writeln!(out, "      {}", safe(&detail));
        }
    }
    if !plan.changes.is_empty() {
        out.push('\n');
    }
    if let Some(access) = &plan.access {
        access_text(&mut out, access, style);
        out.push('\n');
    }
    for finding in &plan.errors {
        let _ = writeln!(
            out,
            "{} {}",
            style.paint("31", "error:"),
            finding_text(finding)
        );
    }
    for finding in &plan.warnings {
        let _ = writeln!(
            out,
            "{} {}",
            style.paint("33", "warning:"),
            finding_text(finding)
        );
    }
    if !plan.errors.is_empty() || !plan.warnings.is_empty() {
        out.push('\n');
    }
    if plan.changes.is_empty() && plan.errors.is_empty() {
        out.push_str("No changes: the cluster matches the workspace.\n");
    } else if plan.changes.is_empty() {
        out.push_str("No changes planned.\n");
    } else {
        let _ = writeln!(out, "Plan: {}.", summary_line(&plan.summary()));
    }
    if let Some(refusal) = refusal(plan) {
        let _ = writeln!(out, "{refusal}");
    }
    out
}

/// One access line for people: `system:serviceaccount:a:default may pull from project b`.
pub fn access_line(line: &AccessLine, gained: bool) -> String {
    let verb = if gained {
        "may now pull from"
    } else {
        "may no longer pull from"
    };
    let mut text = format!(
        "{} {verb} {} {}",
        line.subject,
        line.kind.as_str(),
        line.target
    );
    if !line.via.is_empty() {
        let _ = write!(
            text,
            " ({} {})",
            if gained { "via" } else { "was via" },
            line.via.join(", ")
        );
    }
    if !line.declarations.is_empty() {
        let _ = write!(text, "; declared by {}", line.declarations.join(", "));
    }
    safe(&text)
}

/// The heading line of the access section.
fn access_heading(access: &AccessChanges) -> String {
    if let Some(reason) = &access.unavailable {
        return safe(&format!("Access: unavailable: {reason}"));
    }
    if access.is_unchanged() {
        return "Access: no access change.".to_owned();
    }
    format!(
        "Access: {} gained, {} lost.",
        access.gained.len(),
        access.lost.len()
    )
}

fn access_text(out: &mut String, access: &AccessChanges, style: Style) {
    let _ = writeln!(out, "{}", style.paint("1", &access_heading(access)));
    for line in &access.gained {
        let _ = writeln!(
            out,
            "  {} {}",
            style.paint("32", "+"),
            access_line(line, true)
        );
    }
    for line in &access.lost {
        let _ = writeln!(
            out,
            "  {} {}",
            style.paint("31", "-"),
            access_line(line, false)
        );
    }
    for note in &access.notes {
        let _ = writeln!(out, "  note: {}", safe(note));
    }
}

fn access_markdown(out: &mut String, access: &AccessChanges) {
    if access.unavailable.is_some() || access.is_unchanged() {
        let _ = writeln!(out, "\n**{}**", escape_md(&access_heading(access)));
        for note in &access.notes {
            let _ = writeln!(out, "\n_note: {}_", escape_md(&safe(note)));
        }
        return;
    }
    let mut body = String::new();
    for line in &access.gained {
        let _ = writeln!(body, "+ {}", access_line(line, true));
    }
    for line in &access.lost {
        let _ = writeln!(body, "- {}", access_line(line, false));
    }
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = write!(
        out,
        "\n<details><summary>Access: {} gained, {} lost</summary>\n\n{fence}diff\n{body}{fence}\n",
        access.gained.len(),
        access.lost.len()
    );
    for note in &access.notes {
        let _ = writeln!(out, "\n_note: {}_", escape_md(&safe(note)));
    }
    out.push_str("\n</details>\n");
}

/// With errors, the plan is not the cluster's way to the workspace: say so
/// next to the summary, not only in the list of errors above it.
fn refusal(plan: &Plan) -> Option<String> {
    let n = plan.errors.len();
    (n > 0).then(|| {
        format!(
            "The plan has {n} error{}: apply would refuse it.",
            if n == 1 { "" } else { "s" }
        )
    })
}

fn finding_text(finding: &Finding) -> String {
    let code = finding.code.short();
    safe(&format!("[{code}] {}", finding.message))
}

/// The indented lines under a change.
fn detail_lines(change: &Change) -> Vec<String> {
    match &change.detail {
        Detail::Secret(diff) => secret_lines(change.action, diff),
        Detail::RoleBinding(diff) => role_binding_lines(change.action, diff),
        Detail::Links(diff) => link_lines(diff),
        Detail::ServiceAccount => {
            vec!["created by ifMissing: create (labelled; prune never deletes it)".into()]
        }
        Detail::Pruned if change.kind == ObjectKind::RoleBinding && change.source.is_some() => {
            vec!["finishes an interrupted replace: the binding of the grant's previous role".into()]
        }
        Detail::Pruned => vec!["pruned: managed by this workspace, no longer declared".into()],
    }
}

fn secret_lines(action: Action, diff: &SecretDiff) -> Vec<String> {
    let mut lines = Vec::new();
    match (&diff.previous_type, action) {
        (Some(previous), _) => lines.push(format!(
            "type {previous} -> {} (immutable: deleted, then created; pods starting in between cannot pull with it)",
            diff.secret_type
        )),
        (None, Action::Replace) if diff.immutable => lines.push(
            "immutable Secret: deleted, then created; pods starting in between cannot pull with it"
                .into(),
        ),
        (None, Action::Create) => lines.push(format!("type {}", diff.secret_type)),
        (None, Action::Adopt) => {
            lines.push("adopted: pullwarden's labels are added".into());
        }
        _ => {}
    }
    if diff.unreadable_live_data {
        lines.push("the live data is not a readable docker config; it is rewritten".into());
    }
    for entry in &diff.entries {
        lines.push(entry_line(entry));
    }
    lines
}

fn entry_line(entry: &EntryDiff) -> String {
    let sensitive = |changed: bool| {
        if changed {
            "(sensitive, changed)"
        } else {
            "(sensitive, unchanged)"
        }
    };
    let username = match (&entry.username, entry.username_sensitive) {
        (Some(name), false) if entry.username_changed && entry.status != EntryStatus::Added => {
            format!("username {name} (changed)")
        }
        (Some(name), false) => format!("username {name}"),
        _ => format!("username {}", sensitive(entry.username_changed)),
    };
    match entry.status {
        EntryStatus::Added => format!(
            "+ {}: added; {}, password (sensitive){}",
            entry.server,
            match (&entry.username, entry.username_sensitive) {
                (Some(name), false) => format!("username {name}"),
                _ => "username (sensitive)".to_string(),
            },
            if entry.email_changed { ", email" } else { "" }
        ),
        EntryStatus::Removed => format!("- {}: removed", entry.server),
        EntryStatus::Changed => format!(
            "~ {}: {username}, password {}{}",
            entry.server,
            sensitive(entry.password_changed),
            if entry.email_changed {
                ", email changed"
            } else {
                ""
            }
        ),
        EntryStatus::Unchanged => format!("  {}: unchanged", entry.server),
    }
}

fn role_binding_lines(action: Action, diff: &RoleBindingDiff) -> Vec<String> {
    let mut lines = vec![format!("role ClusterRole {}", diff.role)];
    if let Some(old) = &diff.replaces {
        lines.push(format!(
            "replaces {} (role {}): the new binding is created first, then the old one deleted, so access never lapses",
            old.name, old.role
        ));
    }
    let before: Vec<String> = if action == Action::Create || action == Action::Replace {
        Vec::new()
    } else {
        let mut old: Vec<String> = diff
            .subjects
            .iter()
            .filter(|s| !diff.subjects_added.contains(s))
            .chain(diff.subjects_removed.iter())
            .map(crate::live::RbacSubject::display)
            .collect();
        old.sort();
        old
    };
    let mut after: Vec<String> = diff
        .subjects
        .iter()
        .map(crate::live::RbacSubject::display)
        .collect();
    after.sort();
    let old_text = before.join("\n") + "\n";
    let new_text = after.join("\n") + "\n";
    let text_diff = TextDiff::from_lines(&old_text, &new_text);
    for change in text_diff.iter_all_changes() {
        let value = change.value().trim_end();
        if value.is_empty() {
            continue;
        }
        let sign = match change.tag() {
            ChangeTag::Insert => "+",
            ChangeTag::Delete => "-",
            ChangeTag::Equal => " ",
        };
        lines.push(format!("{sign} {value}"));
    }
    lines
}

fn link_lines(diff: &LinkDiff) -> Vec<String> {
    let mut lines = Vec::new();
    for s in &diff.pull_added {
        lines.push(format!("+ imagePullSecrets: {s}"));
    }
    for s in &diff.mount_added {
        lines.push(format!("+ secrets: {s}"));
    }
    for s in &diff.pull_removed {
        lines.push(format!("- imagePullSecrets: {s}"));
    }
    for s in &diff.mount_removed {
        lines.push(format!("- secrets: {s}"));
    }
    if lines.is_empty() {
        lines.push("record of pullwarden's links updated".into());
    }
    lines
}

/// Markdown for a pull-request comment: a summary table, then one collapsible
/// section per namespace.
pub fn markdown(plan: &Plan) -> String {
    let s = plan.summary();
    let mut out = format!("### pullwarden plan: workspace `{}`\n\n", plan.workspace);
    if let Some(refusal) = refusal(plan) {
        let _ = writeln!(out, "**{refusal}**\n");
    }
    if plan.changes.is_empty() && plan.errors.is_empty() {
        out.push_str("**No changes.** The cluster matches the workspace.\n");
    } else if plan.changes.is_empty() {
        out.push_str("**No changes planned.**\n");
    } else {
        out.push_str("| create | update | replace | delete | adopt | link | unlink |\n");
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.create, s.update, s.replace, s.delete, s.adopt, s.link, s.unlink
        );
    }
    if !plan.errors.is_empty() {
        out.push_str("\n**Errors**\n\n");
        for f in &plan.errors {
            let _ = writeln!(out, "- :x: {}", escape_md(&finding_text(f)));
        }
    }
    if !plan.warnings.is_empty() {
        out.push_str("\n**Warnings**\n\n");
        for f in &plan.warnings {
            let _ = writeln!(out, "- :warning: {}", escape_md(&finding_text(f)));
        }
    }
    if let Some(access) = &plan.access {
        access_markdown(&mut out, access);
    }
    let mut namespaces: Vec<&str> = plan.changes.iter().map(|c| c.namespace.as_str()).collect();
    namespaces.dedup();
    for ns in namespaces {
        let changes: Vec<&Change> = plan.changes.iter().filter(|c| c.namespace == ns).collect();
        let mut body = String::new();
        for change in &changes {
            let (g, word, _) = glyph(change.action);
            let sign = match change.action {
                Action::Create => "+",
                Action::Delete => "-",
                _ => "!",
            };
            let _ = writeln!(
                body,
                "{sign} {g} {word} {} {}",
                kind_name(change.kind),
                safe(&change.name)
            );
            for line in detail_lines(change) {
                let _ = writeln!(body, "    {}", safe(&line));
            }
        }
        // A fence longer than any run of backticks in the content, so a name
        // from the cluster cannot close it.
        let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let fence = "`".repeat(longest.max(2) + 1);
        let _ = write!(
            out,
            "\n<details><summary><code>{}</code>: {} change{}</summary>\n\n{fence}diff\n{body}{fence}\n\n</details>\n",
            escape_md(&safe(ns)),
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        );
    }
    out
}

fn escape_md(text: &str) -> String {
    crate::escape::markdown(text)
}

/// `--format json`: the plan with its summary (`format_version` 1: the `Plan` fields, plus `summary` and `has_changes`).
#[derive(Serialize)]
struct JsonPlan<'a> {
    #[serde(flatten)]
    plan: &'a Plan,
    summary: Summary,
    has_changes: bool,
}

pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(&JsonPlan {
        plan,
        summary: plan.summary(),
        has_changes: plan.has_changes(),
    })
    .expect("a plan serializes")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::LinkDiff;

    fn link_change(links: LinkDiff) -> Change {
        Change {
            namespace: "team-a".into(),
            kind: ObjectKind::ServiceAccount,
            name: "default".into(),
            action: Action::Link,
            source: None,
            assumed: None,
            detail: Detail::Links(links),
        }
    }

    /// #16.11: apply's report names an unlink an unlink.
    #[test]
    fn change_titles_tell_link_from_unlink() {
        let removed = link_change(LinkDiff {
            pull_removed: vec!["old".into()],
            ..LinkDiff::default()
        });
        assert_eq!(
            change_title(&removed),
            "unlink ServiceAccount team-a/default"
        );
        let added = link_change(LinkDiff {
            mount_added: vec!["new".into()],
            ..LinkDiff::default()
        });
        assert_eq!(change_title(&added), "link ServiceAccount team-a/default");
        let both = link_change(LinkDiff {
            pull_added: vec!["new".into()],
            pull_removed: vec!["old".into()],
            ..LinkDiff::default()
        });
        assert_eq!(
            change_title(&both),
            "link and unlink ServiceAccount team-a/default"
        );
        let mut hostile = added;
        hostile.name = "x\u{1b}[2J\n::error::y".into();
        assert!(!crate::escape::needs_escaping(&change_title(&hostile)));
    }
}
