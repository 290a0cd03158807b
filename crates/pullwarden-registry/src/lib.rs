//! The OCI distribution client side of pullwarden: "would a container runtime
//! be able to pull this manifest with this credential?", asked of the real
//! registry over HTTP.
//!
//! [`Client::probe`] does what containerd and CRI-O do before a pull:
//! `GET /v2/`; on `401` it reads `WWW-Authenticate` and either retries with
//! Basic auth or fetches a Bearer token from the realm the registry names
//! (`scope=repository:NAME:pull`); then it sends `HEAD` for the manifest with
//! the OCI and Docker manifest media types in `Accept`. The answer is an
//! [`Outcome`], never an error string to parse. [`Client::login`] is the
//! ping + authentication half alone, with exactly one authentication attempt
//! per call (registries lock accounts).
//!
//! Architecture invariants:
//! - a credential is sent only to its registry's own host and to the token
//!   realm that registry names in its challenge; redirects are never followed
//!   (we only `HEAD` manifests, and never need a blob redirect);
//! - HTTPS only, unless the caller allowed plain HTTP for that very host;
//! - every request has a timeout;
//! - no password or token reaches an outcome, error, `Debug` or log: they are
//!   [`SecretString`]s, and outcomes hold only statuses, media types, digests
//!   and transport error texts.

mod challenge;
mod client;
mod outcome;
mod target;

pub use client::{Client, ClientError, ClientOptions, Credential, DEFAULT_TIMEOUT};
pub use outcome::{AuthServer, LoginOutcome, Missing, Outcome, Step};
pub use pullwarden_core::secret::SecretString;
pub use target::{Reference, Target, TargetError, endpoint_host};

/// The manifest media types sent in `Accept`, as a container runtime does:
/// OCI index and manifest, Docker manifest list and schema 2 manifest.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
