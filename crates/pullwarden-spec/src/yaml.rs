//! The one place that parses YAML: text in, a tree of spanned nodes out.
//!
//! Everything after this works on [`Node`]s, which remember the byte range of
//! the value they came from, so any later check can point at it. The parser is
//! `serde-saphyr` (maintained, panic-free, keeps locations); swapping it out
//! means rewriting only this file.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML value with the byte range it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Range<usize>,
}

/// The shapes a YAML value can take once parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer or float, kept as the text serde saw, so a numeric-looking
    /// namespace such as `123` can still be read as a name.
    Number(String),
    String(String),
    Seq(Vec<Node>),
    /// Entries in document order; duplicate keys are kept for the caller to report.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// A word for error messages: "a string", "a list", ...
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error, with the byte offset where the parser stopped.
#[derive(Clone, Debug)]
pub struct SyntaxError {
    pub message: String,
    pub offset: Option<usize>,
    /// Not a syntax error: a parser limit was reached (`message` says which).
    pub over_limit: bool,
}

/// Parses every document of `source`. Empty documents are dropped.
pub fn parse_documents(source: &str) -> Result<Vec<Node>, SyntaxError> {
    let limits = pullwarden_input::YamlLimits::WORKSPACE;
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        budget: Some(limits.budget()),
    };
    let docs: Vec<SpannedValue> = serde_saphyr::from_multiple_with_options(source, options)
        .map_err(|err| {
            let over_limit = limits.breach_message(&err);
            SyntaxError {
                over_limit: over_limit.is_some(),
                message: over_limit.unwrap_or_else(|| first_line(&err.to_string())),
                offset: err
                    .location()
                    .and_then(|loc| byte_offset_of(source, loc.line(), loc.column())),
            }
        })?;
    Ok(docs
        .into_iter()
        .map(|doc| doc.into_node(source))
        .filter(|node| node.value != Value::Null)
        .collect())
}

/// The parser's message without its own "error: line N column M:" prefix
/// (the location is shown by the diagnostic).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.strip_prefix("error:").map_or(line, str::trim_start);
    if line.starts_with("line ")
        && let Some((_, rest)) = line.split_once(": ")
    {
        return rest.to_string();
    }
    line.to_string()
}

/// Converts a 1-based line and column (in characters) into a byte offset.
fn byte_offset_of(source: &str, line: u64, column: u64) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let line_index = usize::try_from(line - 1).ok()?;
    let mut offset = 0;
    for (index, text) in source.split_inclusive('\n').enumerate() {
        if index == line_index {
            let column = usize::try_from(column.saturating_sub(1)).ok()?;
            let within = text
                .char_indices()
                .nth(column)
                .map_or(text.trim_end_matches('\n').len(), |(byte, _)| byte);
            return Some(offset + within);
        }
        offset += text.len();
    }
    Some(source.len())
}

/// What serde-saphyr hands us: a value plus its location.
struct SpannedValue(Spanned<RawValue>);

enum RawValue {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Seq(Vec<SpannedValue>),
    Map(Vec<(SpannedValue, SpannedValue)>),
}

impl SpannedValue {
    fn into_node(self, source: &str) -> Node {
        let Spanned {
            value, referenced, ..
        } = self.0;
        let span = referenced.span();
        let start = span.byte_offset().map_or_else(
            || byte_offset_of(source, referenced.line(), referenced.column()).unwrap_or(0),
            |offset| usize::try_from(offset).unwrap_or(0),
        );
        let len = span
            .byte_len()
            .and_then(|len| usize::try_from(len).ok())
            .unwrap_or(0);
        let start = start.min(source.len());
        let end = (start + len).min(source.len());
        let value = match value {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Number(n) => Value::Number(n),
            RawValue::String(s) => Value::String(s),
            RawValue::Seq(items) => {
                Value::Seq(items.into_iter().map(|i| i.into_node(source)).collect())
            }
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into_node(source), v.into_node(source)))
                    .collect(),
            ),
        };
        // A mapping or list reports a zero-length span at its start; widen it
        // to its first key so a label has something to underline.
        let span = if end > start {
            start..end
        } else {
            match &value {
                Value::Map(entries) => entries
                    .first()
                    .map_or(start..start, |(k, _)| start.min(k.span.start)..k.span.end),
                Value::Seq(items) => items
                    .first()
                    .map_or(start..start, |i| start.min(i.span.start)..i.span.end),
                _ => start..end,
            }
        };
        Node { value, span }
    }
}

impl<'de> Deserialize<'de> for SpannedValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Spanned::<RawValue>::deserialize(deserializer).map(SpannedValue)
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Number(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue::Number(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
        Ok(RawValue::Number(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawValue, E> {
        Ok(RawValue::Number(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Number(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::String(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawValue, E> {
        Ok(RawValue::String(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<SpannedValue>()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<SpannedValue, SpannedValue>()? {
            entries.push((k, v));
        }
        Ok(RawValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(source: &'a str, node: &Node) -> &'a str {
        &source[node.span.clone()]
    }

    #[test]
    fn spans_point_at_values_in_every_document() {
        let source = "a: 1\nb:\n  c: hello\n---\n---\nlist: [x, \"y\"]\n";
        let docs = parse_documents(source).unwrap();
        assert_eq!(docs.len(), 2, "the empty middle document is dropped");
        let Value::Map(entries) = &docs[0].value else {
            panic!("not a map")
        };
        assert_eq!(text(source, &entries[0].0), "a");
        assert_eq!(entries[0].1.value, Value::Number("1".into()));
        let Value::Map(inner) = &entries[1].1.value else {
            panic!("not a map")
        };
        assert_eq!(text(source, &inner[0].1), "hello");
        let Value::Map(second) = &docs[1].value else {
            panic!("not a map")
        };
        let Value::Seq(items) = &second[0].1.value else {
            panic!("not a list")
        };
        assert_eq!(text(source, &items[0]), "x");
        assert!(text(source, &items[1]).contains('y'));
    }

    #[test]
    fn syntax_errors_carry_an_offset() {
        let source = "a: 1\nb: [unclosed\nc: 2\n";
        let err = parse_documents(source).unwrap_err();
        assert!(err.offset.is_some(), "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn more_than_the_parser_default_budget_parses() {
        // serde-saphyr's defaults: 250,000 nodes and 1,024 documents.
        let list = format!("list: [{}]\n", vec!["n"; 260_000].join(", "));
        let docs = parse_documents(&list).unwrap();
        let Value::Map(entries) = &docs[0].value else {
            panic!("not a map")
        };
        assert!(matches!(&entries[0].1.value, Value::Seq(items) if items.len() == 260_000));
        let many = "---\na: 1\n".repeat(1_100);
        assert_eq!(parse_documents(&many).unwrap().len(), 1_100);
    }

    #[test]
    fn a_reached_limit_is_said_for_people() {
        // On a thread with the main thread's 8 MiB stack: 64 levels of
        // spanned values take more than a test thread's 2 MiB in a debug build.
        let deep = format!("x: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let err = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || parse_documents(&deep))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        assert!(err.over_limit, "{err:?}");
        assert_eq!(
            err.message,
            "it holds more than 64 levels of nesting, the limit for a workspace file"
        );
        let syntax = parse_documents("a: [oops\n").unwrap_err();
        assert!(!syntax.over_limit);
    }

    #[test]
    fn duplicate_keys_are_kept_for_the_caller() {
        let source = "a: 1\na: 2\n";
        let docs = parse_documents(source).unwrap();
        let Value::Map(entries) = &docs[0].value else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 2);
    }
}
