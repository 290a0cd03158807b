//! Text from outside (the cluster, snapshot files, workspace files) made safe
//! for the medium it is written into.
//!
//! Anyone who can create a Secret chooses its registry keys, and anyone who
//! can hand pullwarden a snapshot chooses every name in it. Such text reaches
//! terminals, CI logs (where a line starting with `::` is a workflow
//! command), pull-request comments (markdown with HTML), JUnit files (XML)
//! and shell-sourced files. Every renderer passes such text through the one
//! function here for its medium; `tests` feeds each one hostile strings and
//! parses the result.

/// Characters that must never reach a terminal, a log line or a file raw:
/// control characters (C0, DEL, C1: escape sequences, line breaks, NUL), the
/// Unicode line and paragraph separators, and the bidirectional controls that
/// make text display other than it reads ("Trojan Source").
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fffe}'
                | '\u{ffff}'
        )
}

/// Plain text for a terminal, a log or a `#` comment: one line, with every
/// unsafe character shown as `?`.
pub fn text(raw: &str) -> String {
    raw.chars()
        .map(|c| if is_unsafe(c) { '?' } else { c })
        .collect()
}

/// Whether `raw` holds a character [`text`] would replace.
pub fn needs_escaping(raw: &str) -> bool {
    raw.chars().any(is_unsafe)
}

/// Inline markdown (a table cell, a sentence of a PR comment or a job
/// summary): [`text`], then markdown and HTML syntax escaped, so the text
/// cannot open or close an element (`</details>`), a table cell, a link, an
/// emphasis or a code span, and cannot mention anyone (`@team`).
pub fn markdown(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in text(raw).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("&#64;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// XML character data or an attribute value (double- or single-quoted):
/// [`text`], then the five XML specials as entities. The result holds only
/// characters XML 1.0 allows.
pub fn xml(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in text(raw).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// The message of a GitHub Actions workflow command (`::error::MESSAGE`):
/// `%` and line breaks encoded as the runner decodes them (so no line break
/// can start another command), then every other unsafe character as in [`text`].
pub fn workflow_message(raw: &str) -> String {
    text(
        &raw.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A"),
    )
}

/// A property value of a workflow command (`::error title=VALUE::`): as
/// [`workflow_message`], plus `:` and `,`, which end a property.
pub fn workflow_property(raw: &str) -> String {
    workflow_message(raw)
        .replace(':', "%3A")
        .replace(',', "%2C")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Strings an attacker would choose: terminal escapes, forged workflow
    /// commands, markup that closes what the renderer opened, XML breakers,
    /// bidi overrides, NUL, Unicode line separators.
    pub(crate) const HOSTILE: &[&str] = &[
        "registry.example.com\ntouch /tmp/PWNED #",
        "\u{1b}[31mred\u{1b}[0m\u{1b}]0;title\u{7}",
        "x\n::error::forged",
        "x\r\n::add-mask::y",
        "</details><details open><summary>@security-team",
        "| a | b |\n|---|",
        "<![CDATA[ ]]> </failure> & \" ' <",
        "a\u{0}b\u{8}c\u{7f}d\u{85}e",
        "abc\u{202e}gpj.exe",
        "line\u{2028}sep\u{2029}par",
        "`` ``` ~~~ [link](javascript:alert(1)) ![img](http://x/y)",
        "%0A::error::encoded",
        "$(touch /tmp/PWNED) `id` ; rm -rf /",
    ];

    #[test]
    fn text_is_one_line_without_control_characters() {
        for raw in HOSTILE {
            let out = text(raw);
            assert!(!needs_escaping(&out), "{out:?}");
            assert!(!out.contains('\n') && !out.contains('\r') && !out.contains('\u{1b}'));
            assert_eq!(out.chars().count(), raw.chars().count(), "one for one");
        }
        assert_eq!(text("quay.io"), "quay.io");
    }

    #[test]
    fn markdown_cannot_open_or_close_anything() {
        for raw in HOSTILE {
            let out = markdown(raw);
            for forbidden in ["<", ">", "\n", "@", "](", "``"] {
                assert!(!out.contains(forbidden), "{forbidden:?} in {out:?}");
            }
            // every markdown special is escaped: none stands without a backslash
            let chars: Vec<char> = out.chars().collect();
            for (i, c) in chars.iter().enumerate() {
                if matches!(c, '|' | '`' | '*' | '_' | '[' | ']') {
                    assert!(i > 0 && chars[i - 1] == '\\', "bare {c:?} in {out:?}");
                }
            }
        }
    }

    #[test]
    fn xml_escapes_and_drops_what_xml_forbids() {
        for raw in HOSTILE {
            let out = xml(raw);
            assert!(!out.contains('<') && !out.contains('>') && !out.contains('"'));
            assert!(
                out.chars().all(|c| !c.is_control()),
                "XML 1.0 forbids most control characters: {out:?}"
            );
            // every & starts an entity we wrote
            for (i, _) in out.match_indices('&') {
                let rest = &out[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                        .iter()
                        .any(|e| rest.starts_with(e)),
                    "{out:?}"
                );
            }
        }
    }

    #[test]
    fn workflow_commands_cannot_be_forged() {
        for raw in HOSTILE {
            let message = workflow_message(raw);
            assert!(
                !needs_escaping(&message),
                "one line, nothing raw: {message:?}"
            );
            let property = workflow_property(raw);
            assert!(!property.contains(':') && !property.contains(','));
        }
        // a literal `%0A` in the input stays literal (the runner decodes `%25`
        // to `%`, not to a line break); a real line break is encoded
        assert_eq!(workflow_message("%0A::x"), "%250A::x");
        assert_eq!(workflow_message("a\n::x"), "a%0A::x");
    }
}
