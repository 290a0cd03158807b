//! Image references, normalised as the kubelet does before it looks up
//! credentials: `parsers.ParseImageName` (`pkg/util/parsers/parsers.go`) over
//! `reference.ParseNormalizedNamed` of `github.com/distribution/reference`
//! v0.6.0 (`normalize.go`, `reference.go`, `regexp.go`) and
//! `github.com/opencontainers/go-digest` v1.0.0.
//!
//! - The first path component is a host when it contains `.` or `:`, is
//!   `localhost`, or has an upper-case letter; otherwise the host is
//!   `docker.io`. `index.docker.io` becomes `docker.io`; a Docker Hub name
//!   with one component gets `library/`.
//! - The repository (the part after the host up to the first `:`) must be
//!   lower case; the whole must match the reference grammar; a digest must
//!   be a known algorithm (`sha256`, `sha384`, `sha512`) with the right
//!   number of lower-case hex digits; the path is at most 255 bytes; a bare
//!   64-hex-digit string is refused.
//! - Tag and digest are dropped from the name the keyring sees.

use std::fmt;

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]/path`, what the kubelet's keyring is asked about
    /// (`docker.io/library/nginx`).
    pub repository: String,
    /// The host (with port) the name was normalised to.
    pub domain: String,
    /// The tag, if the reference has one (not defaulted to `latest`).
    pub tag: Option<String>,
    /// The digest, if the reference has one.
    pub digest: Option<String>,
}

/// Why an image reference is not one the kubelet accepts. The kubelet fails
/// the container with `InvalidImageName` before it looks at any credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRefError {
    /// 64 hex digits alone: an image ID, not a name.
    HexIdentifier,
    /// The repository part has upper-case letters.
    Uppercase,
    /// Does not match the reference grammar (empty, bad characters, bad tag…).
    InvalidFormat,
    /// The repository path is longer than 255 bytes.
    NameTooLong,
    /// The digest is malformed or of an unsupported algorithm.
    InvalidDigest,
}

impl fmt::Display for ImageRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HexIdentifier => "is a 64-digit hexadecimal image ID, not a repository name",
            Self::Uppercase => "has upper-case letters in its repository name",
            Self::InvalidFormat => "is not a valid image reference",
            Self::NameTooLong => "has a repository name longer than 255 characters",
            Self::InvalidDigest => "has an invalid or unsupported digest",
        })
    }
}

impl std::error::Error for ImageRefError {}

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Parses and normalises an image reference as the kubelet does.
pub fn parse(image: &str) -> Result<ImageRef, ImageRefError> {
    if image.len() == 64
        && image
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ImageRefError::HexIdentifier);
    }
    let (domain, remainder) = split_docker_domain(image);
    let remote = remainder.split(':').next().unwrap_or_default();
    if remote.to_lowercase() != remote {
        return Err(ImageRefError::Uppercase);
    }
    let full = format!("{domain}/{remainder}");
    parse_reference(&full)
}

/// `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN, format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    let (domain, remote) = if maybe_domain == "localhost"
        || maybe_domain.contains(['.', ':'])
        || maybe_domain.to_lowercase() != maybe_domain
    {
        if maybe_domain == LEGACY_DEFAULT_DOMAIN {
            (DEFAULT_DOMAIN, maybe_remote)
        } else {
            (maybe_domain, maybe_remote)
        }
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"));
    }
    (domain, remote.to_string())
}

/// `reference.Parse` of `domain/remainder`, keeping what `Named` exposes.
fn parse_reference(full: &str) -> Result<ImageRef, ImageRefError> {
    let lower = full.to_lowercase();
    let invalid = || {
        if full.is_empty() {
            ImageRefError::InvalidFormat
        } else if matches_reference(&lower) {
            ImageRefError::Uppercase
        } else {
            ImageRefError::InvalidFormat
        }
    };
    if !matches_reference(full) {
        return Err(invalid());
    }
    let (before_digest, digest) = match full.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (full, None),
    };
    let last_slash = before_digest.rfind('/').unwrap_or(0);
    let (name, tag) = match before_digest[last_slash..].find(':') {
        Some(at) => (
            &before_digest[..last_slash + at],
            Some(&before_digest[last_slash + at + 1..]),
        ),
        None => (before_digest, None),
    };
    let (domain, path) = split_name(name);
    if path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ImageRefError::NameTooLong);
    }
    if let Some(digest) = digest
        && !valid_digest(digest)
    {
        return Err(ImageRefError::InvalidDigest);
    }
    Ok(ImageRef {
        repository: name.to_string(),
        domain: domain.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// The grammar `^name(:tag)?(@digest)?$`.
fn matches_reference(s: &str) -> bool {
    let (before_digest, digest) = match s.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (s, None),
    };
    if digest.is_some_and(|d| !digest_pattern(d)) {
        return false;
    }
    let last_slash = before_digest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match before_digest[last_slash..].find(':') {
        Some(at) => (
            &before_digest[..last_slash + at],
            Some(&before_digest[last_slash + at + 1..]),
        ),
        None => (before_digest, None),
    };
    if tag.is_some_and(|t| !tag_pattern(t)) {
        return false;
    }
    name_pattern(name)
}

/// `(domainAndPort/)?remoteName`: the domain and the path (empty domain when
/// the first component is not a domain).
fn split_name(name: &str) -> (&str, &str) {
    if let Some((first, rest)) = name.split_once('/')
        && domain_and_port(first)
        && remote_name(rest)
    {
        return (first, rest);
    }
    ("", name)
}

fn name_pattern(name: &str) -> bool {
    let (domain, path) = split_name(name);
    !domain.is_empty() || remote_name(path)
}

fn remote_name(s: &str) -> bool {
    s.split('/').all(path_component)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `host(:[0-9]+)?` where host is a domain name or `[ipv6]`.
fn domain_and_port(s: &str) -> bool {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(close) => (&s[..=close], &s[close + 1..]),
            None => return false,
        }
    } else {
        match s.find(':') {
            Some(colon) => (&s[..colon], &s[colon..]),
            None => (s, ""),
        }
    };
    let port_ok = port.is_empty()
        || (port.len() > 1
            && port.starts_with(':')
            && port[1..].bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or_default();
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
    };
    port_ok && host_ok
}

/// `[\w][\w.-]{0,127}`
fn tag_pattern(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
fn digest_pattern(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    let component = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    };
    algorithm.split(['-', '_', '+', '.']).all(component)
        && encoded.len() >= 32
        && encoded.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `digest.Parse`: the algorithm must be one the kubelet links in.
fn valid_digest(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    encoded.len() == length
        && encoded
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b";

    fn repo(image: &str) -> Result<String, ImageRefError> {
        parse(image).map(|r| r.repository)
    }

    /// `TestParseImageName` of `pkg/util/parsers/parsers_test.go`.
    #[test]
    #[allow(clippy::type_complexity)]
    fn parsers_test_table() {
        let d = "sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases: &[(&str, Option<&str>, Option<&str>, Option<&str>)] = &[
            (
                "docker.io/library/busybox",
                Some("docker.io/library/busybox"),
                Some("latest"),
                None,
            ),
            (
                "docker.io/busybox",
                Some("docker.io/library/busybox"),
                Some("latest"),
                None,
            ),
            (
                "busybox",
                Some("docker.io/library/busybox"),
                Some("latest"),
                None,
            ),
            (
                "busybox:mytag",
                Some("docker.io/library/busybox"),
                Some("mytag"),
                None,
            ),
            (
                "docker.io/library/busybox:mytag",
                Some("docker.io/library/busybox"),
                Some("mytag"),
                None,
            ),
            (
                "docker.io/library/busybox@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                Some("docker.io/library/busybox"),
                None,
                Some(d),
            ),
            (
                "docker.io/library/busybox:mytag@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                Some("docker.io/library/busybox"),
                Some("mytag"),
                Some(d),
            ),
            (
                "docker.io/library/busybox@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:tagnotallowedafterdigest",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:tagnotallowedafterdigest@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox:mytag@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox:mytag@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:tagnotallowedafterdigest",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/otherrepo",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:tagnotallowedafterdigest/otherrepo",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox:mytag/otherrepo",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox:mytag@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/otherrepo",
                None,
                None,
                None,
            ),
            (
                "docker.io/library/busybox:mytag@sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:tagnotallowedafterdigest/otherrepo",
                None,
                None,
                None,
            ),
        ];
        for (image, want_repo, want_tag, want_digest) in cases {
            match (parse(image), want_repo) {
                (Ok(r), Some(want)) => {
                    assert_eq!(&r.repository, want, "{image}");
                    // parsers defaults the tag to latest when there is neither
                    let tag = r
                        .tag
                        .clone()
                        .or_else(|| r.digest.is_none().then(|| "latest".into()));
                    assert_eq!(tag.as_deref(), *want_tag, "{image}");
                    assert_eq!(r.digest.as_deref(), *want_digest, "{image}");
                }
                (Err(_), None) => {}
                (got, want) => panic!("{image}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// From `distribution/reference`'s `normalize_test.go` (`TestParseNormalizedNamed`,
    /// `TestValidateReferenceName`, `TestValidateRemoteName`) and more.
    #[test]
    fn normalises_like_distribution_reference() {
        let ok: &[(&str, &str)] = &[
            ("nginx", "docker.io/library/nginx"),
            ("nginx:1.25", "docker.io/library/nginx"),
            (&format!("nginx@{SHA}"), "docker.io/library/nginx"),
            ("index.docker.io/nginx", "docker.io/library/nginx"),
            ("index.docker.io/a/b", "docker.io/a/b"),
            ("docker.io/a/b/c", "docker.io/a/b/c"),
            ("user/repo", "docker.io/user/repo"),
            ("localhost/repo", "localhost/repo"),
            ("localhost:5000/repo:tag", "localhost:5000/repo"),
            ("quay.io/a/b", "quay.io/a/b"),
            ("registry-1.docker.io/nginx", "registry-1.docker.io/nginx"),
            ("Foo/bar", "Foo/bar"),
            ("QUAY.IO:443/a", "QUAY.IO:443/a"),
            ("[::1]:5000/a", "[::1]:5000/a"),
            ("a_b.com/x", "a_b.com/x"),
            (
                "my.registry:5000/a/b__c/d-e/f.g:v1",
                "my.registry:5000/a/b__c/d-e/f.g",
            ),
            ("docker/docker", "docker.io/docker/docker"),
            ("library/debian", "docker.io/library/debian"),
            ("debian", "docker.io/library/debian"),
            ("docker.io/docker/docker", "docker.io/docker/docker"),
            ("docker.io/library/debian", "docker.io/library/debian"),
            ("docker.io/debian", "docker.io/library/debian"),
            ("index.docker.io/docker/docker", "docker.io/docker/docker"),
            ("index.docker.io/library/debian", "docker.io/library/debian"),
            ("index.docker.io/debian", "docker.io/library/debian"),
            (
                "127.0.0.1:5000/docker/docker",
                "127.0.0.1:5000/docker/docker",
            ),
            (
                "127.0.0.1:5000/library/debian",
                "127.0.0.1:5000/library/debian",
            ),
            ("127.0.0.1:5000/debian", "127.0.0.1:5000/debian"),
            ("192.168.0.1", "docker.io/library/192.168.0.1"),
            ("192.168.0.1:80", "docker.io/library/192.168.0.1"),
            ("192.168.0.1:8/debian", "192.168.0.1:8/debian"),
            ("192.168.0.2:25000/debian", "192.168.0.2:25000/debian"),
            (
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            ),
            (
                "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
                "docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            ),
            ("foo_bar.com:8080", "docker.io/library/foo_bar.com"),
            ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com"),
            ("a-b.com:8080/c", "a-b.com:8080/c"),
            ("xn--n3h.com/myimage", "xn--n3h.com/myimage"),
            (
                "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c/x",
                "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c/x",
            ),
        ];
        for (image, want) in ok {
            assert_eq!(repo(image).as_deref(), Ok(*want), "{image}");
        }
        let bad: &[(&str, ImageRefError)] = &[
            ("", ImageRefError::InvalidFormat),
            ("Nginx", ImageRefError::Uppercase),
            ("quay.io/Foo", ImageRefError::Uppercase),
            (
                "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
                ImageRefError::HexIdentifier,
            ),
            ("quay.io/a:", ImageRefError::InvalidFormat),
            ("quay.io/a:-x", ImageRefError::InvalidFormat),
            ("a..b/c", ImageRefError::InvalidFormat),
            ("quay.io//a", ImageRefError::InvalidFormat),
            ("quay.io/a/", ImageRefError::InvalidFormat),
            ("quay.io:/a", ImageRefError::InvalidFormat),
            ("-quay.io/a", ImageRefError::InvalidFormat),
            ("quay.io/a@sha256:abc", ImageRefError::InvalidFormat),
            (
                "quay.io/a@md5:0123456789abcdef0123456789abcdef",
                ImageRefError::InvalidDigest,
            ),
            (
                "quay.io/a@sha256:0123456789abcdef0123456789abcdef",
                ImageRefError::InvalidDigest,
            ),
            ("[fe80::1%eth0]:5000/x", ImageRefError::InvalidFormat),
            ("-docker", ImageRefError::InvalidFormat),
            ("docker/", ImageRefError::InvalidFormat),
            ("docker///docker", ImageRefError::InvalidFormat),
            ("docker.io/docker/Docker", ImageRefError::Uppercase),
            ("docker.io/docker///docker", ImageRefError::InvalidFormat),
            ("aa/asdf$$^/aa", ImageRefError::InvalidFormat),
        ];
        for (image, want) in bad {
            assert_eq!(repo(image), Err(want.clone()), "{image}");
        }
        let long = format!("quay.io/{}", "a".repeat(256));
        assert_eq!(repo(&long), Err(ImageRefError::NameTooLong));
        assert!(repo(&format!("quay.io/{}", "a".repeat(255))).is_ok());
    }
}
