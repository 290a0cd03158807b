//! `WWW-Authenticate` challenges (RFC 7235): a scheme followed by
//! comma-separated `key=value` or `key="quoted value"` parameters. Several
//! challenges may share one header; we keep the first Basic or Bearer one.

use std::collections::BTreeMap;

/// A challenge a registry sent with a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// `error="insufficient_scope"` and the like (RFC 6750).
        error: Option<String>,
    },
    /// A scheme no container runtime speaks, or a Bearer challenge without a realm.
    Unsupported(String),
}

/// The first usable challenge in the header values, if any header was sent.
pub(crate) fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut first_unsupported = None;
    for value in values {
        for (scheme, params) in split_challenges(value) {
            match scheme.to_ascii_lowercase().as_str() {
                "basic" => return Some(Challenge::Basic),
                "bearer" => match params.get("realm") {
                    Some(realm) if !realm.is_empty() => {
                        return Some(Challenge::Bearer {
                            realm: realm.clone(),
                            service: params.get("service").cloned(),
                            error: params.get("error").cloned(),
                        });
                    }
                    _ => {
                        first_unsupported.get_or_insert_with(|| "Bearer without realm".to_owned());
                    }
                },
                _ => {
                    first_unsupported.get_or_insert(scheme);
                }
            }
        }
    }
    first_unsupported.map(Challenge::Unsupported)
}

/// Splits one header value into (scheme, params) challenges.
fn split_challenges(value: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        // a token: either a new scheme (followed by space or end) or a param name (followed by '=')
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        let after = rest[end..].trim_start();
        if token.is_empty() {
            rest = rest[1..].trim_start();
            continue;
        }
        if let Some(after_eq) = after.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            let (val, remaining) = if let Some(quoted) = after_eq.strip_prefix('"') {
                read_quoted(quoted)
            } else {
                let end = after_eq.find(',').unwrap_or(after_eq.len());
                (after_eq[..end].trim().to_owned(), &after_eq[end..])
            };
            if let Some((_, params)) = out.last_mut() {
                params.insert(token.to_ascii_lowercase(), val);
            }
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        } else {
            out.push((token.to_owned(), BTreeMap::new()));
            rest = after.trim_start_matches(',').trim_start();
        }
    }
    out
}

/// Reads a quoted-string body (after the opening quote): the unescaped value
/// and what follows the closing quote.
fn read_quoted(s: &str) -> (String, &str) {
    let mut val = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    val.push(next);
                }
            }
            '"' => return (val, &s[i + 1..]),
            c => val.push(c),
        }
    }
    (val, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, expected: Option<Challenge>) {
        let actual: Vec<Challenge> = parse([header]).into_iter().collect();
        let expected: Vec<Challenge> = expected.into_iter().collect();
        assert_eq!(actual, expected, "{header}");
    }

    fn bearer(realm: &str, service: Option<&str>, error: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.to_owned(),
            service: service.map(str::to_owned),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn distribution_token_challenge() {
        check(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
            Some(bearer(
                "https://auth.example.com/token",
                Some("registry.example.com"),
                None,
            )),
        );
        check(
            r#"Bearer realm="https://a/t",service="s",scope="repository:x:pull",error="insufficient_scope""#,
            Some(bearer("https://a/t", Some("s"), Some("insufficient_scope"))),
        );
    }

    #[test]
    fn spacing_case_and_escapes() {
        check(
            r#"bearer  realm = "https://a/t?x=\"y\"" , service=svc"#,
            Some(bearer(r#"https://a/t?x="y""#, Some("svc"), None)),
        );
        check(r#"Basic realm="Registry Realm""#, Some(Challenge::Basic));
        check("Basic", Some(Challenge::Basic));
    }

    #[test]
    fn first_usable_of_several() {
        check(
            r#"Negotiate, Basic realm="r", Bearer realm="https://a/t""#,
            Some(Challenge::Basic),
        );
        check(
            r#"Negotiate abc, Bearer realm="https://a/t",service="s""#,
            Some(bearer("https://a/t", Some("s"), None)),
        );
    }

    #[test]
    fn unusable() {
        check(
            "Negotiate",
            Some(Challenge::Unsupported("Negotiate".into())),
        );
        check(
            r#"Bearer service="s""#,
            Some(Challenge::Unsupported("Bearer without realm".into())),
        );
        check("", None);
        assert_eq!(parse([]), None);
    }
}
