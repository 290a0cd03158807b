//! A pull secret's docker config, decoded the way the kubelet decodes it.
//!
//! The kubelet runs Go's `encoding/json` over the secret's bytes into
//! `credentialprovider.DockerConfigJSON` (`.dockerconfigjson`) or
//! `credentialprovider.DockerConfig` (`.dockercfg`), with a custom
//! `DockerConfigEntry.UnmarshalJSON` (`pkg/credentialprovider/config.go`).
//! That is more lenient *and* stricter than [`crate::dockerconfig`], which
//! checks files a human is about to publish:
//!
//! - entries without credentials are kept (with an empty username and password);
//! - a username may contain `:`; `identitytoken`, `registrytoken`, `email`
//!   and every unknown field are ignored;
//! - field names match case-insensitively (Go's rule, so `Auths`, `AUTH` or
//!   `authſ` all count), a repeated `auths` object is merged into the first;
//! - `null` is accepted where an object or string is expected;
//! - any JSON syntax error, a value of the wrong type in a known field
//!   (including `HttpHeaders` values that are not strings) or an `auth` that
//!   is not base64 of `user:password` fails the whole secret;
//! - invalid UTF-8 in strings is replaced by U+FFFD, byte by byte.
//!
//! So this module has its own small JSON reader, with Go's rules.

use std::collections::BTreeMap;

/// Why a docker config fails the kubelet's decoding. Never holds its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerConfigProblem {
    /// Not JSON (`encoding/json` syntax error), at this byte offset.
    Syntax { offset: usize },
    /// JSON, but a known field holds a value of the wrong type.
    WrongType { field: &'static str },
    /// The `auth` field of the entry for this registry key is not base64 of
    /// `username:password`.
    BadAuth { registry_key: String },
}

impl std::fmt::Display for DockerConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Syntax { offset } => write!(f, "is not valid JSON (error at byte {offset})"),
            Self::WrongType { field } => write!(f, "has a value of the wrong type in `{field}`"),
            Self::BadAuth { registry_key } => write!(
                f,
                "has an `auth` for {registry_key} that is not base64 of `username:password`"
            ),
        }
    }
}

/// One entry, as `DockerConfigEntry` holds it after decoding.
#[derive(Clone)]
pub(crate) struct RawEntry {
    pub username: String,
    pub password: String,
}

/// The entries of a docker config, by registry key (a JSON object's keys are
/// unique after decoding: a repeated key keeps its last value, as a Go map).
pub(crate) type RawConfig = BTreeMap<String, RawEntry>;

/// `.dockerconfigjson`: `{"auths": {...}}`.
pub(crate) fn decode_config_json(bytes: &[u8]) -> Result<RawConfig, DockerConfigProblem> {
    let value = parse(bytes)?;
    // entries are decoded (and fail) as they are met, even when a later
    // `"auths": null` drops them again
    let mut auths: Option<RawConfig> = None;
    match value {
        Json::Null => {}
        Json::Object(fields) => {
            for (name, value) in fields {
                if folded_eq(&name, "auths") {
                    match value {
                        Json::Null => auths = None,
                        // decoding into a non-nil Go map adds to it
                        Json::Object(members) => {
                            let decoded = entries(members)?;
                            auths.get_or_insert_with(RawConfig::new).extend(decoded);
                        }
                        _ => return Err(DockerConfigProblem::WrongType { field: "auths" }),
                    }
                } else if folded_eq(&name, "HttpHeaders") {
                    let ok = match value {
                        Json::Null => true,
                        Json::Object(headers) => headers
                            .iter()
                            .all(|(_, v)| matches!(v, Json::Null | Json::String(_))),
                        _ => false,
                    };
                    if !ok {
                        return Err(DockerConfigProblem::WrongType {
                            field: "HttpHeaders",
                        });
                    }
                }
            }
        }
        _ => {
            return Err(DockerConfigProblem::WrongType {
                field: "(top level)",
            });
        }
    }
    Ok(auths.unwrap_or_default())
}

/// `.dockercfg`: the bare map of registry key to entry.
pub(crate) fn decode_dockercfg(bytes: &[u8]) -> Result<RawConfig, DockerConfigProblem> {
    match parse(bytes)? {
        Json::Null => Ok(RawConfig::new()),
        Json::Object(entries_) => entries(entries_),
        _ => Err(DockerConfigProblem::WrongType {
            field: "(top level)",
        }),
    }
}

fn entries(fields: Vec<(String, Json)>) -> Result<RawConfig, DockerConfigProblem> {
    let mut out = RawConfig::new();
    for (key, value) in fields {
        let entry = entry(&key, value)?;
        out.insert(key, entry);
    }
    Ok(out)
}

/// `DockerConfigEntry.UnmarshalJSON`: the four string fields, then `auth`
/// (when not empty) replaces username and password.
fn entry(key: &str, value: Json) -> Result<RawEntry, DockerConfigProblem> {
    let mut username = String::new();
    let mut password = String::new();
    let mut auth = String::new();
    match value {
        Json::Null => {}
        Json::Object(fields) => {
            for (name, value) in fields {
                let (slot, field) = if folded_eq(&name, "username") {
                    (&mut username, "username")
                } else if folded_eq(&name, "password") {
                    (&mut password, "password")
                } else if folded_eq(&name, "auth") {
                    (&mut auth, "auth")
                } else if folded_eq(&name, "email") {
                    // decoded (so its type is checked) and then ignored
                    match value {
                        Json::Null | Json::String(_) => continue,
                        _ => return Err(DockerConfigProblem::WrongType { field: "email" }),
                    }
                } else {
                    continue;
                };
                match value {
                    // null into a Go string leaves it as it was
                    Json::Null => {}
                    Json::String(text) => *slot = text,
                    _ => return Err(DockerConfigProblem::WrongType { field }),
                }
            }
        }
        _ => return Err(DockerConfigProblem::WrongType { field: "auths" }),
    }
    if !auth.is_empty() {
        let bad = || DockerConfigProblem::BadAuth {
            registry_key: key.to_string(),
        };
        // config.go decodeDockerConfigFieldAuth: padded when the trimmed
        // field ends in '=', unpadded otherwise; the untrimmed field is decoded
        let decoded = base64_decode(auth.as_bytes(), auth.trim().ends_with('=')).ok_or_else(bad)?;
        let colon = decoded.iter().position(|&b| b == b':').ok_or_else(bad)?;
        username = go_string(&decoded[..colon]);
        password = go_string(&decoded[colon + 1..]);
    }
    Ok(RawEntry { username, password })
}

/// Go's `encoding/json` field-name match: exact, or equal after folding each
/// rune to upper case (so `ſ` matches `s` and `ı` matches `i`).
fn folded_eq(name: &str, field: &str) -> bool {
    // Go's unicode.ToUpper is the simple (one rune to one rune) mapping
    fn fold(text: &str) -> Vec<char> {
        text.chars()
            .map(|c| {
                let mut upper = c.to_uppercase();
                match (upper.next(), upper.next()) {
                    (Some(one), None) => one,
                    _ => c,
                }
            })
            .collect()
    }
    name == field || fold(name) == fold(field)
}

/// A Go string (bytes) as Rust text: each byte that is not part of valid
/// UTF-8 becomes U+FFFD, as `encoding/json` does.
pub(crate) fn go_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                out.push_str(text);
                return out;
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let invalid = error.error_len().unwrap_or(after.len());
                for _ in 0..invalid {
                    out.push('\u{FFFD}');
                }
                rest = &after[invalid..];
            }
        }
    }
}

/// Go's `base64.StdEncoding` (`padded`) or `RawStdEncoding` `DecodeString`,
/// non-strict: `\r` and `\n` are skipped anywhere, trailing bits are allowed.
fn base64_decode(input: &[u8], padded: bool) -> Option<Vec<u8>> {
    fn value(byte: u8) -> Option<u8> {
        match byte {
            b'A'..=b'Z' => Some(byte - b'A'),
            b'a'..=b'z' => Some(byte - b'a' + 26),
            b'0'..=b'9' => Some(byte - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let newline = |b: u8| b == b'\n' || b == b'\r';
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let mut quantum = [0u8; 4];
        let mut len = 0;
        let mut end = false;
        while len < 4 {
            if at == input.len() {
                if len == 0 {
                    return Some(out);
                }
                if len == 1 || padded {
                    return None;
                }
                end = true;
                break;
            }
            let byte = input[at];
            at += 1;
            if let Some(v) = value(byte) {
                quantum[len] = v;
                len += 1;
                continue;
            }
            if newline(byte) {
                continue;
            }
            if !padded || byte != b'=' || len < 2 {
                return None;
            }
            if len == 2 {
                while at < input.len() && newline(input[at]) {
                    at += 1;
                }
                if at == input.len() || input[at] != b'=' {
                    return None;
                }
                at += 1;
            }
            while at < input.len() && newline(input[at]) {
                at += 1;
            }
            if at < input.len() {
                return None;
            }
            end = true;
            break;
        }
        let bits = (u32::from(quantum[0]) << 18)
            | (u32::from(quantum[1]) << 12)
            | (u32::from(quantum[2]) << 6)
            | u32::from(quantum[3]);
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..len]);
        if end {
            return Some(out);
        }
    }
}

/// A JSON value; objects keep their members in order, duplicates included.
#[derive(Debug)]
enum Json {
    Null,
    Scalar,
    String(String),
    Array,
    Object(Vec<(String, Json)>),
}

/// Go's `encoding/json` nesting limit.
const MAX_DEPTH: usize = 10_000;

fn parse(bytes: &[u8]) -> Result<Json, DockerConfigProblem> {
    let mut reader = Reader { bytes, at: 0 };
    reader.space();
    let value = reader.value(0)?;
    reader.space();
    if reader.at != bytes.len() {
        return Err(reader.error());
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self) -> DockerConfigProblem {
        DockerConfigProblem::Syntax { offset: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), DockerConfigProblem> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, DockerConfigProblem> {
        match self.peek() {
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error());
                }
                self.at += 1;
                let mut members = Vec::new();
                self.space();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.space();
                    self.expect(b':')?;
                    self.space();
                    let value = self.value(depth + 1)?;
                    members.push((key, value));
                    self.space();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(members));
                        }
                        _ => return Err(self.error()),
                    }
                }
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error());
                }
                self.at += 1;
                self.space();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::Array);
                }
                loop {
                    self.space();
                    self.value(depth + 1)?;
                    self.space();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Array);
                        }
                        _ => return Err(self.error()),
                    }
                }
            }
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.literal(b"true").map(|()| Json::Scalar),
            Some(b'f') => self.literal(b"false").map(|()| Json::Scalar),
            Some(b'n') => self.literal(b"null").map(|()| Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| Json::Scalar),
            _ => Err(self.error()),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), DockerConfigProblem> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<(), DockerConfigProblem> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error()),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error());
            }
        }
        Ok(())
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.bytes.get(at..at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    }

    /// A string, unquoted as Go does: bad UTF-8 and lone surrogates become U+FFFD.
    fn string(&mut self) -> Result<String, DockerConfigProblem> {
        self.expect(b'"')?;
        let mut raw: Vec<u8> = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error());
            };
            match byte {
                b'"' => {
                    self.at += 1;
                    return Ok(go_string(&raw));
                }
                0..=0x1f => return Err(self.error()),
                b'\\' => {
                    self.at += 1;
                    let Some(escape) = self.peek() else {
                        return Err(self.error());
                    };
                    self.at += 1;
                    let simple = match escape {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => return Err(self.error()),
                    };
                    if let Some(byte) = simple {
                        raw.push(byte);
                        continue;
                    }
                    let unit = self.hex4(self.at).ok_or_else(|| self.error())?;
                    self.at += 4;
                    let mut ch = char::from_u32(unit);
                    if (0xD800..0xDC00).contains(&unit)
                        && self.bytes.get(self.at..self.at + 2) == Some(b"\\u")
                        && let Some(low) = self.hex4(self.at + 2)
                        && (0xDC00..0xE000).contains(&low)
                    {
                        self.at += 6;
                        ch = char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00));
                    }
                    let mut buffer = [0u8; 4];
                    raw.extend_from_slice(
                        ch.unwrap_or('\u{FFFD}').encode_utf8(&mut buffer).as_bytes(),
                    );
                }
                _ => {
                    raw.push(byte);
                    self.at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_json(text: &str) -> Result<Vec<(String, String, String)>, DockerConfigProblem> {
        decode_config_json(text.as_bytes()).map(|config| {
            config
                .into_iter()
                .map(|(k, e)| (k, e.username, e.password))
                .collect()
        })
    }

    fn triple(k: &str, u: &str, p: &str) -> (String, String, String) {
        (k.into(), u.into(), p.into())
    }

    #[test]
    fn auth_overrides_fields_and_empty_entries_are_kept() {
        // "dTpw" is base64 of "u:p"
        let text = r#"{"auths": {"a.io": {"auth": "dTpw", "username": "x", "password": "y"},
            "b.io": {"username": "x:y", "password": "z", "email": "e", "identitytoken": "t"},
            "c.io": {}, "d.io": null}}"#;
        assert_eq!(
            config_json(text).unwrap(),
            vec![
                triple("a.io", "u", "p"),
                triple("b.io", "x:y", "z"),
                triple("c.io", "", ""),
                triple("d.io", "", "")
            ]
        );
    }

    #[test]
    fn go_json_rules() {
        // field names fold case; repeated auths objects merge; null leaves a field alone
        let text = r#"{"Auths": {"a.io": {"USERNAME": "u", "Password": "p", "password": null}},
            "auths": {"b.io": {"username": "v"}}}"#;
        assert_eq!(
            config_json(text).unwrap(),
            vec![triple("a.io", "u", "p"), triple("b.io", "v", "")]
        );
        assert_eq!(
            config_json(r#"{"auths": {"a.io": {"username": "u"}}, "auths": null}"#).unwrap(),
            vec![]
        );
        assert_eq!(config_json("null").unwrap(), vec![]);
        assert_eq!(config_json("{}").unwrap(), vec![]);
        // the long s folds to S, as Go's unicode.ToUpper does
        assert_eq!(config_json(r#"{"authſ": {"a.io": {}}}"#).unwrap().len(), 1);
        assert_eq!(
            config_json(r#"{"auths": {"a.io": {"username": "x"}, "a.io": {"password": "y"}}}"#)
                .unwrap(),
            vec![triple("a.io", "", "y")]
        );
        for bad in [
            "",
            "[]",
            r#"{"auths": []}"#,
            r#"{"auths": {"a.io": "x"}}"#,
            r#"{"auths": {"a.io": {"username": 1}}}"#,
            r#"{"auths": {"a.io": {"email": true}}}"#,
            r#"{"HttpHeaders": {"x": 1}}"#,
            r#"{"auths": {}} x"#,
            r#"{"auths": {"a.io": {"auth": "not base64!"}}}"#,
            r#"{"auths": {"a.io": {"auth": "bm9jb2xvbg=="}}}"#,
            "{\"a\": \"\u{1}\"}",
            r#"{"a": 01}"#,
        ] {
            assert!(config_json(bad).is_err(), "{bad}");
        }
        // in a .dockercfg, `auths` is just a registry key with an empty entry
        assert_eq!(decode_dockercfg(br#"{"auths": {}}"#).unwrap().len(), 1);
        assert!(decode_dockercfg(br#"{"auths": []}"#).is_err());
        assert_eq!(decode_dockercfg(b"null").unwrap().len(), 0);
    }

    #[test]
    fn strings_are_unquoted_as_go_does() {
        let text =
            b"{\"auths\": {\"a.io\": {\"username\": \"\\ud83d\\ude00 \\ud800 \xff\xe2\x82\"}}}";
        let config = decode_config_json(text).unwrap();
        assert_eq!(
            config["a.io"].username,
            "\u{1F600} \u{FFFD} \u{FFFD}\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn base64_as_go_decodes_it() {
        let d = |s: &str, padded| base64_decode(s.as_bytes(), padded);
        assert_eq!(d("dTpw", false).unwrap(), b"u:p");
        assert_eq!(d("dTpw", true).unwrap(), b"u:p");
        assert_eq!(d("dTo=", true).unwrap(), b"u:");
        assert_eq!(d("dQ==", true).unwrap(), b"u");
        assert_eq!(d("dQ", false).unwrap(), b"u");
        assert_eq!(d("dR", false).unwrap(), b"u", "trailing bits are allowed");
        assert_eq!(d("dT\npw\r\n", false).unwrap(), b"u:p");
        assert_eq!(d("dQ=\n=", true).unwrap(), b"u");
        assert!(d("dTo", true).is_none(), "padding required");
        assert!(d("dTo=", false).is_none(), "no padding allowed");
        assert!(d("d", false).is_none());
        assert!(d("dQ=", true).is_none());
        assert!(d("dQ==x", true).is_none());
        assert!(d("dTpw ", false).is_none());
    }
}
