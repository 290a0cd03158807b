//! Cluster I/O: the one crate of pullwarden that talks to the Kubernetes API
//! server or reads Kubernetes object files.
//!
//! [`connect`] turns a kubeconfig (or the in-cluster service account) into a
//! [`kube::Client`]; [`read_live`] lists the namespaces, secrets, service
//! accounts and role bindings of a cluster; [`read_live_files`] reads the
//! same from a snapshot written by `kubectl get -o yaml`. Both produce
//! [`pullwarden_core::live::LiveState`] through the same conversion
//! functions ([`convert`]), so a plan from a snapshot and a plan from the
//! cluster see the same world.
//!
//! Architecture invariant: the reading half never writes. It sends only
//! `GET /version` and paginated LISTs (never a GET per object); with
//! [`SecretSelection::PullSecrets`] it lists only docker-config Secrets, and
//! [`lookup_secrets`] then LISTs, by name, only the Secret names the plan
//! would create.
//! Secret data is kept, as [`pullwarden_core::secret::SecretString`], only for
//! docker-config secrets and secrets pullwarden manages, and annotations that
//! can hold credentials are dropped on the way in. No error message of this
//! crate contains a token, a Secret's data or a kubeconfig's content.

pub mod apply;
mod cluster;
pub mod convert;
mod files;
pub mod inspect;
pub mod rbac;
pub mod retry;
pub mod snapshot;

pub use cluster::{
    ClusterError, LOOKUP_CONCURRENCY, PAGE_SIZE, PULL_SECRET_TYPES, READ_RBAC_HELP, ReadOptions,
    SecretSelection, connect, kubeconfig_runs_a_program, lookup_secrets, read_live,
    read_live_in_namespaces, read_live_of_namespaces, read_live_or_namespaces,
};
pub use files::{LiveFileError, Snapshot, load_snapshot, read_live_files};
pub use retry::{DEFAULT_REQUEST_TIMEOUT, RetryPolicy};
