//! Docker credential files: `config.json` (`{"auths": {...}}`) and the legacy
//! `.dockercfg` (the bare per-server map), read the way the kubelet reads them.
//!
//! Messages never quote file contents: a parse error names only its line and
//! column, and a bad entry only its server.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::secret::SecretString;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `config.json`: entries under `auths`.
    ConfigJson,
    /// `.dockercfg`: entries at the top level.
    Dockercfg,
}

/// One registry's credentials, as the kubelet would use them.
#[derive(Clone, Debug)]
pub struct Entry {
    pub server: String,
    pub username: SecretString,
    pub password: SecretString,
    pub email: Option<String>,
}

impl Entry {
    /// `base64(username:password)`, the `auth` field.
    pub fn auth(&self) -> SecretString {
        SecretString::new(STANDARD.encode(format!(
            "{}:{}",
            self.username.expose(),
            self.password.expose()
        )))
    }
}

/// Why a credential file cannot be used. Never contains file contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigProblem {
    /// Not JSON at all, at this 1-based line and column.
    NotJson { line: usize, column: usize },
    /// JSON, but not an object of the expected shape.
    WrongShape(String),
    /// Entries exist but all are empty because credentials live in a helper.
    OnlyCredentialHelpers,
    /// No entry with usable credentials.
    NoUsableEntry,
    /// The entry for this server has a username containing ':'.
    ColonInUsername { server: String },
    /// The entry for this server has an `auth` that is not base64 of `user:pass`.
    BadAuth { server: String },
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson { line, column } => {
                write!(
                    f,
                    "is not valid JSON (error at line {line}, column {column})"
                )
            }
            Self::WrongShape(what) => write!(f, "is not a docker credential file: {what}"),
            Self::OnlyCredentialHelpers => f.write_str(
                "holds no credentials: they live in a credential helper (credsStore / credHelpers)",
            ),
            Self::NoUsableEntry => {
                f.write_str("has no usable entry (each needs `auth`, or `username` and `password`)")
            }
            Self::ColonInUsername { server } => {
                write!(f, "has a username containing ':' for {server}")
            }
            Self::BadAuth { server } => write!(
                f,
                "has an `auth` for {server} that is not base64 of `username:password`"
            ),
        }
    }
}

/// Parses a credential file. Entries come back sorted by server.
pub fn parse(text: &str, format: ConfigFormat) -> Result<Vec<Entry>, ConfigProblem> {
    let root: Value = serde_json::from_str(text).map_err(|e| ConfigProblem::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(root) = root else {
        return Err(ConfigProblem::WrongShape(
            "the top level is not an object".into(),
        ));
    };
    let has_helpers = root.contains_key("credsStore") || root.contains_key("credHelpers");
    let entries = match format {
        ConfigFormat::ConfigJson => match root.get("auths") {
            Some(Value::Object(auths)) => auths.clone(),
            Some(_) => {
                return Err(ConfigProblem::WrongShape("`auths` is not an object".into()));
            }
            None if has_helpers => return Err(ConfigProblem::OnlyCredentialHelpers),
            None => {
                return Err(ConfigProblem::WrongShape(
                    "there is no `auths` object (a legacy .dockercfg file? use dockercfgFile)"
                        .into(),
                ));
            }
        },
        ConfigFormat::Dockercfg => {
            if root.contains_key("auths") {
                return Err(ConfigProblem::WrongShape(
                    "it has an `auths` object, so it is a config.json (use dockerConfigFile)"
                        .into(),
                ));
            }
            root.clone()
        }
    };
    let mut out = BTreeMap::new();
    let mut saw_empty = false;
    for (server, value) in &entries {
        let Value::Object(fields) = value else {
            return Err(ConfigProblem::WrongShape(format!(
                "the entry for {server} is not an object"
            )));
        };
        let text_field = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or("");
        let (username, password) = if !text_field("auth").is_empty() {
            let decoded = STANDARD
                .decode(text_field("auth").trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ConfigProblem::BadAuth {
                    server: server.clone(),
                })?;
            let Some((user, pass)) = decoded.split_once(':') else {
                return Err(ConfigProblem::BadAuth {
                    server: server.clone(),
                });
            };
            (user.to_string(), pass.to_string())
        } else if !text_field("username").is_empty() && !text_field("password").is_empty() {
            let user = text_field("username");
            if user.contains(':') {
                return Err(ConfigProblem::ColonInUsername {
                    server: server.clone(),
                });
            }
            (user.to_string(), text_field("password").to_string())
        } else {
            saw_empty = true;
            continue;
        };
        let email = Some(text_field("email"))
            .filter(|e| !e.is_empty())
            .map(str::to_string);
        out.insert(
            server.clone(),
            Entry {
                server: server.clone(),
                username: SecretString::new(username),
                password: SecretString::new(password),
                email,
            },
        );
    }
    if out.is_empty() {
        return Err(if has_helpers && (saw_empty || entries.is_empty()) {
            ConfigProblem::OnlyCredentialHelpers
        } else {
            ConfigProblem::NoUsableEntry
        });
    }
    Ok(out.into_values().collect())
}

/// Renders entries as `{"auths": {...}}` or the bare `.dockercfg` map, with
/// `username`, `password`, `email` and `auth`, like `kubectl create secret docker-registry`.
pub fn render(entries: &[Entry], format: crate::model::SecretFormat) -> SecretString {
    let mut map = serde_json::Map::new();
    for entry in entries {
        let mut fields = serde_json::Map::new();
        fields.insert("username".into(), entry.username.expose().into());
        fields.insert("password".into(), entry.password.expose().into());
        if let Some(email) = &entry.email {
            fields.insert("email".into(), email.clone().into());
        }
        fields.insert("auth".into(), entry.auth().expose().into());
        map.insert(entry.server.clone(), serde_json::Value::Object(fields));
    }
    let value = match format {
        crate::model::SecretFormat::DockerConfigJson => {
            let mut root = serde_json::Map::new();
            root.insert("auths".into(), serde_json::Value::Object(map));
            serde_json::Value::Object(root)
        }
        crate::model::SecretFormat::Dockercfg => serde_json::Value::Object(map),
    };
    SecretString::new(serde_json::to_string(&value).expect("JSON serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "s3cr3t-canary";

    #[test]
    fn reads_auth_and_username_password_entries() {
        let auth = STANDARD.encode(format!("robot:{PASS}"));
        let text = format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{auth}"}}, "ghcr.io": {{"username": "u", "password": "{PASS}", "email": "e@x"}}}}}}"#
        );
        let entries = parse(&text, ConfigFormat::ConfigJson).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].server, "ghcr.io");
        assert_eq!(entries[0].email.as_deref(), Some("e@x"));
        assert_eq!(entries[1].username.expose(), "robot");
        assert_eq!(entries[1].password.expose(), PASS);
        assert_eq!(entries[1].auth().expose(), auth);
    }

    #[test]
    fn rejects_what_a_cluster_cannot_use() {
        let helpers = r#"{"auths": {"quay.io": {}}, "credsStore": "desktop"}"#;
        assert_eq!(
            parse(helpers, ConfigFormat::ConfigJson).unwrap_err(),
            ConfigProblem::OnlyCredentialHelpers
        );
        let only_helpers = r#"{"credHelpers": {"gcr.io": "gcloud"}}"#;
        assert_eq!(
            parse(only_helpers, ConfigFormat::ConfigJson).unwrap_err(),
            ConfigProblem::OnlyCredentialHelpers
        );
        let colon = format!(r#"{{"a.io": {{"username": "x:y", "password": "{PASS}"}}}}"#);
        assert!(matches!(
            parse(&colon, ConfigFormat::Dockercfg).unwrap_err(),
            ConfigProblem::ColonInUsername { .. }
        ));
        let broken = format!(r#"{{"auths": {{"a.io": {{"password": "{PASS}"#);
        let err = parse(&broken, ConfigFormat::ConfigJson).unwrap_err();
        assert!(matches!(err, ConfigProblem::NotJson { .. }));
        assert!(!err.to_string().contains(PASS));
        let wrong_type = format!(r#"{{"auths": "{PASS}"}}"#);
        assert!(
            !parse(&wrong_type, ConfigFormat::ConfigJson)
                .unwrap_err()
                .to_string()
                .contains(PASS)
        );
        assert_eq!(
            parse(
                r#"{"auths": {"a.io": {"email": "x"}}}"#,
                ConfigFormat::ConfigJson
            )
            .unwrap_err(),
            ConfigProblem::NoUsableEntry
        );
        assert!(matches!(
            parse(r#"{"auths": {}}"#, ConfigFormat::Dockercfg).unwrap_err(),
            ConfigProblem::WrongShape(_)
        ));
    }
}
