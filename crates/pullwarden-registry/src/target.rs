//! What to probe: a registry host, a repository and a tag or digest, checked
//! before anything is sent so that no input can reshape a request URL.

use std::fmt;

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(String),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(s) | Reference::Digest(s) => f.write_str(s),
        }
    }
}

/// A manifest in a repository of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    registry: String,
    repository: String,
    reference: Reference,
}

/// Why a [`Target`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("invalid registry host {0:?}: expected host or host:port")]
    Registry(String),
    #[error("invalid repository name {0:?}")]
    Repository(String),
    #[error("invalid tag or digest {0:?}")]
    Reference(String),
}

impl Target {
    /// `registry` is `host` or `host:port` (no scheme, no path), `repository`
    /// the path within it (`team-a/app`), `reference` a tag or `algo:hex` digest.
    pub fn new(registry: &str, repository: &str, reference: &str) -> Result<Target, TargetError> {
        if !valid_registry(registry) {
            return Err(TargetError::Registry(registry.to_owned()));
        }
        if !valid_repository(repository) {
            return Err(TargetError::Repository(repository.to_owned()));
        }
        let reference = if reference.contains(':') {
            if !valid_digest(reference) {
                return Err(TargetError::Reference(reference.to_owned()));
            }
            Reference::Digest(reference.to_owned())
        } else {
            if !valid_tag(reference) {
                return Err(TargetError::Reference(reference.to_owned()));
            }
            Reference::Tag(reference.to_owned())
        };
        Ok(Target {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            reference,
        })
    }

    /// The registry as given (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = match self.reference {
            Reference::Tag(_) => ':',
            Reference::Digest(_) => '@',
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.registry, self.repository, self.reference
        )
    }
}

/// The host a runtime actually contacts for `registry`: Docker Hub's API lives
/// at `registry-1.docker.io`; every other registry at its own name.
pub fn endpoint_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

pub(crate) fn valid_registry(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    if let Some(rest) = host.strip_prefix('[') {
        // [ipv6] or [ipv6]:port
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        return addr.parse::<std::net::Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(':').is_some_and(valid_port));
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    port.is_none_or(valid_port)
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// The distribution grammar: `/`-separated components of lowercase
/// alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(b))
                && !component.contains("..")
                && !component.contains("___")
                && !component.contains("._")
                && !component.contains("_.")
                && !component.contains(".-")
                && !component.contains("-.")
                && !component.contains("_-")
                && !component.contains("-_")
        })
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        && encoded.len() >= 32
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_runtimes_accept() {
        let t = Target::new("127.0.0.1:5000", "team-a/app", "v1").unwrap();
        assert_eq!(t.reference(), &Reference::Tag("v1".into()));
        assert_eq!(t.to_string(), "127.0.0.1:5000/team-a/app:v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let t = Target::new("registry.example.com", "a/b/c", &digest).unwrap();
        assert_eq!(t.reference(), &Reference::Digest(digest.clone()));
        assert_eq!(
            t.to_string(),
            format!("registry.example.com/a/b/c@{digest}")
        );
        assert!(Target::new("[::1]:5000", "x", "latest").is_ok());
        assert!(Target::new("localhost", "a__b/c-d--e/f.g", "_x.y-Z").is_ok());
    }

    #[test]
    fn refuses_what_would_reshape_a_url() {
        for registry in [
            "",
            "https://x",
            "x/y",
            "user@x",
            "x:",
            "x:0",
            "x:99999",
            "x?y",
            "-x.io",
            "[::1",
        ] {
            assert!(
                matches!(
                    Target::new(registry, "a", "v1"),
                    Err(TargetError::Registry(_))
                ),
                "{registry}"
            );
        }
        for repository in [
            "", "A", "a//b", "/a", "a/", "a?b", "a#b", "a b", "-a", "a..b", "a/../b",
        ] {
            assert!(
                matches!(
                    Target::new("r.io", repository, "v1"),
                    Err(TargetError::Repository(_))
                ),
                "{repository}"
            );
        }
        for reference in [
            "",
            "-x",
            "a/b",
            "sha256:short",
            "sha256:",
            ":abc",
            "v1?x",
            &"x".repeat(129),
        ] {
            assert!(
                matches!(
                    Target::new("r.io", "a", reference),
                    Err(TargetError::Reference(_))
                ),
                "{reference}"
            );
        }
    }

    #[test]
    fn docker_hub_is_contacted_at_its_api_host() {
        assert_eq!(endpoint_host("docker.io"), "registry-1.docker.io");
        assert_eq!(endpoint_host("index.docker.io"), "registry-1.docker.io");
        assert_eq!(endpoint_host("quay.io"), "quay.io");
    }
}
