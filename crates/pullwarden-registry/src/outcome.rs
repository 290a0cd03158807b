//! What a probe or a login found, as data. Nothing here can hold a secret:
//! statuses, media types, digests and transport error texts only.

use std::fmt;

use serde::Serialize;

/// Which server refused the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthServer {
    /// The registry itself (Basic auth).
    Registry,
    /// The token endpoint the registry named (Bearer auth).
    TokenEndpoint,
}

/// The request during which something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// `GET /v2/`.
    Ping,
    /// `GET <realm>?service=…&scope=…`.
    Token,
    /// `HEAD /v2/<name>/manifests/<reference>`.
    Manifest,
}

/// What was not found, from distribution's error code when the registry gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Missing {
    /// `NAME_UNKNOWN`: no such repository.
    Repository,
    /// `MANIFEST_UNKNOWN`: the repository exists, the tag or digest does not.
    Manifest,
    /// A 404 without a recognised error code.
    Unknown,
}

/// The outcome of [`crate::Client::probe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Outcome {
    /// The manifest answered `200`: a runtime with this credential would pull it.
    Pullable {
        /// `Docker-Content-Digest`, when sent.
        digest: Option<String>,
        /// `Content-Type` of the manifest, when sent.
        media_type: Option<String>,
    },
    /// The credential was refused: by the registry (Basic) or by its token endpoint.
    CredentialRejected { by: AuthServer },
    /// No credential was given and the registry wants one.
    AuthenticationRequired,
    /// Authenticated, but not authorised for the repository (`401` with a
    /// token that was issued, `insufficient_scope`, or `403`/`DENIED`).
    NoAccess { status: u16 },
    /// Repository or tag unknown (`404`).
    NotFound { what: Missing },
    /// `429`, with `Retry-After` in seconds when the registry sent delta-seconds.
    RateLimited {
        step: Step,
        retry_after_seconds: Option<u64>,
    },
    /// Connection refused, DNS failure or timeout.
    Unreachable { step: Step, reason: String },
    /// The TLS handshake failed (unknown CA, wrong name, not TLS at all…).
    Tls { step: Step, reason: String },
    /// A plain-HTTP URL (the token realm) for a host not allowed plain HTTP.
    PlainHttpRefused { step: Step, host: String },
    /// A status a runtime would not pull past.
    Unexpected { step: Step, status: u16 },
    /// An answer a runtime cannot use (no challenge, unknown scheme, no token).
    Protocol { step: Step, reason: String },
}

/// The outcome of [`crate::Client::login`]: one authentication attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "outcome",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum LoginOutcome {
    /// The registry (Basic) or its token endpoint (Bearer) accepted the credential.
    Accepted,
    /// `GET /v2/` answered `200` without authentication: the credential was not sent.
    NotRequired,
    CredentialRejected {
        by: AuthServer,
    },
    RateLimited {
        step: Step,
        retry_after_seconds: Option<u64>,
    },
    Unreachable {
        step: Step,
        reason: String,
    },
    Tls {
        step: Step,
        reason: String,
    },
    PlainHttpRefused {
        step: Step,
        host: String,
    },
    Unexpected {
        step: Step,
        status: u16,
    },
    Protocol {
        step: Step,
        reason: String,
    },
}

impl fmt::Display for AuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthServer::Registry => "the registry",
            AuthServer::TokenEndpoint => "the registry's token endpoint",
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Ping => "GET /v2/",
            Step::Token => "the token request",
            Step::Manifest => "HEAD of the manifest",
        })
    }
}

fn retry_after(f: &mut fmt::Formatter<'_>, seconds: Option<u64>) -> fmt::Result {
    match seconds {
        Some(s) => write!(f, " (retry after {s} s)"),
        None => Ok(()),
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pullable { digest, .. } => {
                f.write_str("pullable")?;
                match digest {
                    Some(d) => write!(f, " ({d})"),
                    None => Ok(()),
                }
            }
            Outcome::CredentialRejected { by } => write!(f, "credential rejected by {by}"),
            Outcome::AuthenticationRequired => {
                f.write_str("authentication required: the registry refuses anonymous pulls")
            }
            Outcome::NoAccess { status } => write!(
                f,
                "no access: authenticated, but not authorised to pull this repository (HTTP {status})"
            ),
            Outcome::NotFound { what } => f.write_str(match what {
                Missing::Repository => "not found: no such repository",
                Missing::Manifest => "not found: no such tag or digest in the repository",
                Missing::Unknown => "not found: repository, tag or digest unknown",
            }),
            Outcome::RateLimited {
                step,
                retry_after_seconds,
            } => {
                write!(f, "rate limited during {step}")?;
                retry_after(f, *retry_after_seconds)
            }
            Outcome::Unreachable { step, reason } => {
                write!(f, "unreachable during {step}: {reason}")
            }
            Outcome::Tls { step, reason } => write!(f, "TLS failure during {step}: {reason}"),
            Outcome::PlainHttpRefused { step, host } => write!(
                f,
                "refused plain HTTP to {host} during {step}: not allowed for that host"
            ),
            Outcome::Unexpected { step, status } => {
                write!(f, "unexpected HTTP {status} during {step}")
            }
            Outcome::Protocol { step, reason } => write!(f, "unusable answer to {step}: {reason}"),
        }
    }
}

impl fmt::Display for LoginOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginOutcome::Accepted => f.write_str("credential accepted"),
            LoginOutcome::NotRequired => {
                f.write_str("the registry asks for no authentication; the credential was not sent")
            }
            LoginOutcome::CredentialRejected { by } => write!(f, "credential rejected by {by}"),
            LoginOutcome::RateLimited {
                step,
                retry_after_seconds,
            } => {
                write!(f, "rate limited during {step}")?;
                retry_after(f, *retry_after_seconds)
            }
            LoginOutcome::Unreachable { step, reason } => {
                write!(f, "unreachable during {step}: {reason}")
            }
            LoginOutcome::Tls { step, reason } => write!(f, "TLS failure during {step}: {reason}"),
            LoginOutcome::PlainHttpRefused { step, host } => write!(
                f,
                "refused plain HTTP to {host} during {step}: not allowed for that host"
            ),
            LoginOutcome::Unexpected { step, status } => {
                write!(f, "unexpected HTTP {status} during {step}")
            }
            LoginOutcome::Protocol { step, reason } => {
                write!(f, "unusable answer to {step}: {reason}")
            }
        }
    }
}

/// Why a probe or login stopped early; converts into both outcome types.
#[derive(Debug)]
pub(crate) enum Stop {
    CredentialRejected(AuthServer),
    AuthenticationRequired,
    RateLimited(Step, Option<u64>),
    Unreachable(Step, String),
    Tls(Step, String),
    PlainHttpRefused(Step, String),
    Unexpected(Step, u16),
    Protocol(Step, String),
}

impl From<Stop> for Outcome {
    fn from(early: Stop) -> Outcome {
        match early {
            Stop::CredentialRejected(by) => Outcome::CredentialRejected { by },
            Stop::AuthenticationRequired => Outcome::AuthenticationRequired,
            Stop::RateLimited(step, retry_after_seconds) => Outcome::RateLimited {
                step,
                retry_after_seconds,
            },
            Stop::Unreachable(step, reason) => Outcome::Unreachable { step, reason },
            Stop::Tls(step, reason) => Outcome::Tls { step, reason },
            Stop::PlainHttpRefused(step, host) => Outcome::PlainHttpRefused { step, host },
            Stop::Unexpected(step, status) => Outcome::Unexpected { step, status },
            Stop::Protocol(step, reason) => Outcome::Protocol { step, reason },
        }
    }
}

impl From<Stop> for LoginOutcome {
    fn from(early: Stop) -> LoginOutcome {
        match early {
            Stop::CredentialRejected(by) => LoginOutcome::CredentialRejected { by },
            // login always sends a credential; a token endpoint that still asks
            // for one has refused it
            Stop::AuthenticationRequired => LoginOutcome::CredentialRejected {
                by: AuthServer::TokenEndpoint,
            },
            Stop::RateLimited(step, retry_after_seconds) => LoginOutcome::RateLimited {
                step,
                retry_after_seconds,
            },
            Stop::Unreachable(step, reason) => LoginOutcome::Unreachable { step, reason },
            Stop::Tls(step, reason) => LoginOutcome::Tls { step, reason },
            Stop::PlainHttpRefused(step, host) => LoginOutcome::PlainHttpRefused { step, host },
            Stop::Unexpected(step, status) => LoginOutcome::Unexpected { step, status },
            Stop::Protocol(step, reason) => LoginOutcome::Protocol { step, reason },
        }
    }
}
