//! The kubelet's keyring: `BasicDockerKeyring.Add` and `Lookup` of
//! `pkg/credentialprovider/keyring.go`.
//!
//! - A registry key is normalised by `Add`: `https://` is prepended unless it
//!   starts with `https://` or `http://`; Go's `url.Parse` must accept it
//!   (otherwise the entry is ignored); the key becomes `Host` (userinfo, query
//!   and fragment dropped, `%XX` decoded) followed by `Path` with a leading
//!   `/v1/` or `/v2/` cut to `/`; a path of `/` is dropped, any other path
//!   (including a trailing `/`) is kept.
//! - A key matches an image's repository (`URLsMatchStr`) when both parse as
//!   schemeless URLs, their ports are equal (`""` when absent), their hosts
//!   have the same number of dot-separated labels, each label of the key
//!   matches the image's as a `filepath.Match` pattern, and the key's path is
//!   a string prefix of the image's path (`quay.io/team` matches
//!   `quay.io/teams/x`).
//! - All matching keys contribute, in reverse byte order of the normalised
//!   keys (the index is de-duplicated and reverse-sorted); the credentials
//!   under one normalised key are in the order they were added: pull secrets
//!   in the pod's order, and within one secret Go's map iteration order,
//!   which is random.
//! - Only when no key matches, an image whose first component has no `.` or
//!   `:` or is `docker.io` / `index.docker.io` (`isDefaultRegistryMatch`) gets
//!   the credentials stored under exactly `index.docker.io`.

use super::go_url::{self, GoUrl};

/// Go's `ParseSchemelessURL`: `url.Parse("https://" + s)`.
fn parse_schemeless(s: &[u8]) -> Option<GoUrl> {
    let mut raw = b"https://".to_vec();
    raw.extend_from_slice(s);
    go_url::parse(&raw)
}

/// A registry key as `BasicDockerKeyring.Add` indexes it (bytes, as Go keeps
/// them: `%FF` decodes to a byte that is not UTF-8); `None` when the kubelet
/// ignores the entry ("Entry … in dockercfg invalid, ignoring").
pub(crate) fn normalize_key_bytes(raw: &str) -> Option<Vec<u8>> {
    let value = if raw.starts_with("https://") || raw.starts_with("http://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let parsed = go_url::parse(value.as_bytes())?;
    let mut path: &[u8] = &parsed.path;
    if path.starts_with(b"/v2/") || path.starts_with(b"/v1/") {
        path = &path[3..];
    }
    let mut key = parsed.host;
    if !path.is_empty() && path != b"/" {
        key.extend_from_slice(path);
    }
    Some(key)
}

/// A registry key as the kubelet indexes it (`quay.io/team`), or `None` when
/// the kubelet ignores the entry. Bytes that are not UTF-8 (from `%XX`) show
/// as U+FFFD.
pub fn normalize_registry_key(raw: &str) -> Option<String> {
    normalize_key_bytes(raw).map(|key| String::from_utf8_lossy(&key).into_owned())
}

/// `URLsMatchStr(key, repository)`, with errors as no match (as `Lookup` does).
pub(crate) fn key_matches_bytes(key: &[u8], repository: &[u8]) -> bool {
    let (Some(glob), Some(target)) = (parse_schemeless(key), parse_schemeless(repository)) else {
        return false;
    };
    let (glob_parts, glob_port) = go_url::split_host(&glob.host);
    let (target_parts, target_port) = go_url::split_host(&target.host);
    glob_port == target_port
        && glob_parts.len() == target_parts.len()
        && target.path.starts_with(&glob.path)
        && glob_parts
            .iter()
            .zip(&target_parts)
            .all(|(pattern, label)| go_url::glob_match(pattern, label))
}

/// Whether a registry key, as written in a secret, matches a normalised
/// repository (`docker.io/library/nginx`), as the kubelet decides.
pub fn key_matches(raw_key: &str, repository: &str) -> bool {
    normalize_key_bytes(raw_key).is_some_and(|key| key_matches_bytes(&key, repository.as_bytes()))
}

/// `isDefaultRegistryMatch`: whether credentials for `index.docker.io` apply
/// to this normalised repository when no key matched.
pub fn is_default_registry_match(repository: &str) -> bool {
    let first = repository.split('/').next().unwrap_or_default();
    if first.is_empty() {
        return false;
    }
    if !repository.contains('/') || first == "docker.io" || first == "index.docker.io" {
        return true;
    }
    !first.contains(['.', ':'])
}

/// The normalised key the Docker Hub fallback reads.
pub(crate) const DEFAULT_REGISTRY_KEY: &[u8] = b"index.docker.io";

#[cfg(test)]
mod tests {
    use super::*;

    /// `TestURLsMatch` of `pkg/credentialprovider/keyring_test.go`.
    #[test]
    fn urls_match_table() {
        let table: &[(&str, &str, bool)] = &[
            // match when there is no path component
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            // match with path components
            ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
            ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
            // match with path components and ports
            (
                "*.kubernetes.io:1111/blah",
                "prefix.kubernetes.io:1111/blah",
                true,
            ),
            (
                "prefix.*.io:1111/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                true,
            ),
            // no match when number of parts mismatch
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
            ("*.*.kubernetes.io", "kubernetes.io", false),
            // no match when some parts mismatch
            ("kubernetes.io", "kubernetes.com", false),
            ("k*.io", "quay.io", false),
            // no match when ports mismatch
            (
                "*.kubernetes.io:1234/blah",
                "prefix.kubernetes.io:1111/blah",
                false,
            ),
            (
                "prefix.*.io/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                false,
            ),
        ];
        for (glob, target, want) in table {
            assert_eq!(
                key_matches_bytes(glob.as_bytes(), target.as_bytes()),
                *want,
                "{glob} {target}"
            );
        }
    }

    #[test]
    fn keys_normalise_as_add_does() {
        let table: &[(&str, Option<&str>)] = &[
            ("quay.io", Some("quay.io")),
            ("https://quay.io", Some("quay.io")),
            ("http://quay.io/", Some("quay.io")),
            ("https://index.docker.io/v1/", Some("index.docker.io")),
            ("index.docker.io/v2/", Some("index.docker.io")),
            ("quay.io/v1", Some("quay.io/v1")),
            ("quay.io/v2/team", Some("quay.io/team")),
            ("quay.io/team/", Some("quay.io/team/")),
            ("user:pass@quay.io:443/a?x#y", Some("quay.io:443/a")),
            ("HTTPS://quay.io", Some("HTTPS://quay.io")),
            ("Quay.IO", Some("Quay.IO")),
            ("quay.io:port", None),
            ("quay io", None),
            ("a:1:2", None),
            ("quay.io/%zz", None),
        ];
        for (raw, want) in table {
            assert_eq!(normalize_registry_key(raw).as_deref(), *want, "{raw}");
        }
    }

    #[test]
    fn docker_hub_fallback_applies_to_hosts_without_dot_or_colon() {
        assert!(is_default_registry_match("docker.io/library/nginx"));
        assert!(
            is_default_registry_match("localhost/x"),
            "localhost has neither . nor :"
        );
        assert!(!is_default_registry_match("localhost:5000/x"));
        assert!(!is_default_registry_match("quay.io/x"));
        assert!(!is_default_registry_match("registry-1.docker.io/x"));
    }
}
