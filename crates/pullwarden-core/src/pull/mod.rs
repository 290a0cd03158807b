//! "Which credentials will the kubelet try for this image?", answered with
//! the kubelet's own rules (Kubernetes v1.36.3), as plain data.
//!
//! The path the kubelet takes, and where each rule comes from:
//!
//! 1. `pkg/kubelet/kubelet_pods.go` `getPullSecretsForPod`: the pod's
//!    `spec.imagePullSecrets` in order; an entry with an empty name is
//!    ignored, a Secret that cannot be read is skipped (event
//!    `FailedToRetrieveImagePullSecret`), a name listed twice is used twice.
//! 2. `pkg/kubelet/images/image_manager.go`: the image is parsed with
//!    `parsers.ParseImageName` ([`image_ref`]); an invalid reference fails
//!    the container before any credential is looked at.
//! 3. `pkg/credentialprovider/secrets/secrets.go` `MakeDockerKeyring`: a
//!    Secret of type `kubernetes.io/dockerconfigjson` with a non-empty
//!    `.dockerconfigjson`, or of type `kubernetes.io/dockercfg` with a
//!    non-empty `.dockercfg`, adds its entries to **one** keyring shared by
//!    all the pod's secrets; any other Secret is skipped. A docker config
//!    that does not decode ([`docker_config`]) fails the whole lookup, and
//!    with it the pull: not even an anonymous pull is attempted.
//! 4. `pkg/credentialprovider/keyring.go` `Lookup` ([`keyring`]): every
//!    matching key contributes, most specific key first (reverse byte order
//!    of the normalised keys, across secrets), then, for one key, secret by
//!    secret in pod order. With no match, Docker Hub images fall back to keys
//!    normalised to `index.docker.io`.
//! 5. The container runtime tries the candidates in that order; with none,
//!    it pulls anonymously.
//!
//! What this cannot see: credentials on the node (`config.json` in the
//! kubelet's directories), credential-provider plugins, registry mirrors. The
//! kubelet looks credentials up only when it pulls (the image is absent, or
//! `imagePullPolicy: Always`, or the pull-credential verification of
//! `KubeletEnsureSecretPulledImages` asks for it).
//!
//! The ServiceAccount admission plugin decides which secrets a pod lists in
//! the first place: [`admission`].
//!
//! Every rule here is checked against the kubelet's own Go code on generated
//! cases: `tests/kubelet_oracle.rs` and `tools/kubelet-oracle/`.

pub mod admission;
pub mod docker_config;
mod go_url;
pub mod image_ref;
pub mod keyring;
pub mod project;

use std::collections::{BTreeMap, BTreeSet};

use crate::secret::SecretString;

pub use docker_config::DockerConfigProblem;
pub use image_ref::{ImageRef, ImageRefError};

/// `kubernetes.io/dockerconfigjson`, read from `.dockerconfigjson`.
pub const TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// `kubernetes.io/dockercfg`, read from `.dockercfg`.
pub const TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub const KEY_DOCKER_CONFIG_JSON: &str = ".dockerconfigjson";
/// The data key of a `kubernetes.io/dockercfg` Secret.
pub const KEY_DOCKERCFG: &str = ".dockercfg";

/// A Secret of the pod's namespace, as the kubelet reads it. Its `Debug`
/// does not show the docker config.
#[derive(Clone, Copy)]
pub struct SecretInput<'a> {
    pub name: &'a str,
    pub secret_type: &'a str,
    /// The Secret's docker config (`.dockerconfigjson` or `.dockercfg`,
    /// whichever the type reads), base64-decoded; `None` when the key is absent.
    pub docker_config: Option<&'a [u8]>,
}

impl<'a> SecretInput<'a> {
    /// Picks the data key the Secret's type reads from a full `data` map.
    pub fn from_data(
        name: &'a str,
        secret_type: &'a str,
        data: &'a BTreeMap<String, Vec<u8>>,
    ) -> Self {
        let key = if secret_type == TYPE_DOCKERCFG {
            KEY_DOCKERCFG
        } else {
            KEY_DOCKER_CONFIG_JSON
        };
        Self {
            name,
            secret_type,
            docker_config: data.get(key).map(Vec::as_slice),
        }
    }
}

impl<'a> SecretInput<'a> {
    /// A Secret as pullwarden read it (from the cluster or a snapshot).
    ///
    /// An audited `expose`: the docker config is handed, in memory, to the
    /// kubelet's rules, which never print it (see [`Candidate`]).
    pub fn from_live(secret: &'a crate::live::LiveSecret) -> Self {
        let key = if secret.type_ == TYPE_DOCKERCFG {
            KEY_DOCKERCFG
        } else {
            KEY_DOCKER_CONFIG_JSON
        };
        Self {
            name: &secret.meta.name,
            secret_type: &secret.type_,
            docker_config: secret.data.get(key).map(|v| v.expose().as_bytes()),
        }
    }
}

impl std::fmt::Debug for SecretInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretInput")
            .field("name", &self.name)
            .field("secret_type", &self.secret_type)
            .field(
                "docker_config",
                &self.docker_config.map(|_| crate::secret::REDACTED),
            )
            .finish()
    }
}

/// One credential the kubelet hands to the container runtime, in try order.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The pull secret it comes from.
    pub secret: String,
    /// The registry key exactly as written in the secret.
    pub registry_key: String,
    /// The key as the kubelet indexes it (see [`keyring::normalize_registry_key`]).
    pub normalized_key: String,
    /// The username, when the entry has one (from `auth` or `username`).
    pub username: Option<String>,
    /// The password (from `auth` or `password`); may be empty.
    pub password: SecretString,
    /// Matched only through the Docker Hub fallback to `index.docker.io`.
    pub via_docker_hub_fallback: bool,
    /// Same secret and same normalised key as the previous candidate (two
    /// spellings of one registry in one secret): the kubelet orders these by
    /// Go map iteration, which is random; pullwarden lists them by key.
    pub same_rank_as_previous: bool,
}

/// Something the kubelet does quietly that explains a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// `imagePullSecrets[index]` has an empty name; the kubelet ignores it.
    EmptySecretName { index: usize },
    /// The Secret does not exist (or cannot be read); the kubelet skips it
    /// and records the event `FailedToRetrieveImagePullSecret`.
    SecretNotFound { name: String },
    /// The pod lists this Secret more than once; its entries count each time.
    SecretListedTwice { name: String },
    /// The Secret is not used for pulls.
    SecretSkipped { name: String, reason: SkipReason },
    /// An entry whose registry key the kubelet cannot parse; it is ignored.
    EntryIgnored {
        secret: String,
        registry_key: String,
    },
}

/// Why a listed Secret contributes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Neither `kubernetes.io/dockerconfigjson` nor `kubernetes.io/dockercfg`.
    NotADockerConfigType { secret_type: String },
    /// The type's data key is missing or empty.
    NoDockerConfig { key: &'static str },
}

/// Why the kubelet will not pull at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullFailure {
    /// The image reference is invalid (`InvalidImageName`).
    InvalidImage(ImageRefError),
    /// A pull secret's docker config does not decode: the kubelet's keyring
    /// cannot be built, and the pull fails (`ErrImagePull`) before any
    /// registry is contacted. The first such secret in pod order is named.
    MalformedSecret {
        secret: String,
        problem: DockerConfigProblem,
    },
}

/// The answer for one image and one pod.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// The runtime tries these, in this order.
    Candidates(Vec<Candidate>),
    /// No credential applies: the pull is anonymous.
    Anonymous,
    /// The kubelet does not pull.
    Failed(PullFailure),
}

/// Which credentials the kubelet tries for an image, and why.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The normalised reference, when it parses.
    pub image: Option<ImageRef>,
    pub notes: Vec<Note>,
    pub verdict: Verdict,
}

/// One entry of the kubelet's keyring.
struct KeyringEntry<'a> {
    position: usize,
    secret: &'a str,
    raw_key: String,
    key: Vec<u8>,
    username: String,
    password: String,
}

/// The credentials the kubelet would try for `image` in a pod that lists
/// `pod_pull_secrets` (`spec.imagePullSecrets` names, in order), given the
/// Secrets of its namespace.
pub fn select<S: AsRef<str>>(
    image: &str,
    pod_pull_secrets: &[S],
    secrets: &[SecretInput<'_>],
) -> Selection {
    let mut notes = Vec::new();
    let by_name: BTreeMap<&str, &SecretInput<'_>> = secrets.iter().map(|s| (s.name, s)).collect();
    let mut listed = BTreeSet::new();
    let mut pull_secrets = Vec::new();
    for (index, name) in pod_pull_secrets.iter().enumerate() {
        let name = name.as_ref();
        if name.is_empty() {
            notes.push(Note::EmptySecretName { index });
            continue;
        }
        if !listed.insert(name) {
            notes.push(Note::SecretListedTwice {
                name: name.to_string(),
            });
        }
        match by_name.get(name) {
            Some(secret) => pull_secrets.push(**secret),
            None => notes.push(Note::SecretNotFound {
                name: name.to_string(),
            }),
        }
    }
    let image_ref = match image_ref::parse(image) {
        Ok(image_ref) => image_ref,
        Err(error) => {
            return Selection {
                image: None,
                notes,
                verdict: Verdict::Failed(PullFailure::InvalidImage(error)),
            };
        }
    };
    let entries = match keyring_entries(&pull_secrets, &mut notes) {
        Ok(entries) => entries,
        Err(failure) => {
            return Selection {
                image: Some(image_ref),
                notes,
                verdict: Verdict::Failed(failure),
            };
        }
    };
    let candidates = lookup(&entries, &image_ref.repository);
    let verdict = if candidates.is_empty() {
        Verdict::Anonymous
    } else {
        Verdict::Candidates(candidates)
    };
    Selection {
        image: Some(image_ref),
        notes,
        verdict,
    }
}

/// `secretsToTrackedDockerConfigs` + `BasicDockerKeyring.Add`, in pod order.
fn keyring_entries<'a>(
    pull_secrets: &[SecretInput<'a>],
    notes: &mut Vec<Note>,
) -> Result<Vec<KeyringEntry<'a>>, PullFailure> {
    let mut entries = Vec::new();
    let mut skipped = BTreeSet::new();
    let mut ignored = BTreeSet::new();
    for (position, secret) in pull_secrets.iter().enumerate() {
        let config = match (secret.secret_type, secret.docker_config) {
            (TYPE_DOCKER_CONFIG_JSON, Some(bytes)) if !bytes.is_empty() => {
                docker_config::decode_config_json(bytes)
            }
            (TYPE_DOCKERCFG, Some(bytes)) if !bytes.is_empty() => {
                docker_config::decode_dockercfg(bytes)
            }
            (secret_type, _) => {
                let reason = match secret_type {
                    TYPE_DOCKER_CONFIG_JSON => SkipReason::NoDockerConfig {
                        key: KEY_DOCKER_CONFIG_JSON,
                    },
                    TYPE_DOCKERCFG => SkipReason::NoDockerConfig { key: KEY_DOCKERCFG },
                    other => SkipReason::NotADockerConfigType {
                        secret_type: other.to_string(),
                    },
                };
                if skipped.insert(secret.name) {
                    notes.push(Note::SecretSkipped {
                        name: secret.name.to_string(),
                        reason,
                    });
                }
                continue;
            }
        };
        let config = config.map_err(|problem| PullFailure::MalformedSecret {
            secret: secret.name.to_string(),
            problem,
        })?;
        for (raw_key, entry) in config {
            let Some(key) = keyring::normalize_key_bytes(&raw_key) else {
                if ignored.insert((secret.name, raw_key.clone())) {
                    notes.push(Note::EntryIgnored {
                        secret: secret.name.to_string(),
                        registry_key: raw_key,
                    });
                }
                continue;
            };
            entries.push(KeyringEntry {
                position,
                secret: secret.name,
                raw_key,
                key,
                username: entry.username,
                password: entry.password,
            });
        }
    }
    Ok(entries)
}

/// `BasicDockerKeyring.Lookup` of a normalised repository.
fn lookup(entries: &[KeyringEntry<'_>], repository: &str) -> Vec<Candidate> {
    let index: BTreeSet<&[u8]> = entries.iter().map(|e| e.key.as_slice()).collect();
    let mut matched: Vec<&KeyringEntry<'_>> = Vec::new();
    for key in index.into_iter().rev() {
        if keyring::key_matches_bytes(key, repository.as_bytes()) {
            matched.extend(entries.iter().filter(|e| e.key == key));
        }
    }
    let fallback = matched.is_empty() && keyring::is_default_registry_match(repository);
    if fallback {
        matched.extend(
            entries
                .iter()
                .filter(|e| e.key == keyring::DEFAULT_REGISTRY_KEY),
        );
    }
    let mut candidates: Vec<Candidate> = Vec::with_capacity(matched.len());
    let mut previous: Option<(usize, &[u8])> = None;
    for entry in matched {
        let rank = (entry.position, entry.key.as_slice());
        candidates.push(Candidate {
            secret: entry.secret.to_string(),
            registry_key: entry.raw_key.clone(),
            normalized_key: String::from_utf8_lossy(&entry.key).into_owned(),
            username: Some(entry.username.clone()).filter(|u| !u.is_empty()),
            password: SecretString::new(entry.password.clone()),
            via_docker_hub_fallback: fallback,
            same_rank_as_previous: previous == Some(rank),
        });
        previous = Some(rank);
    }
    candidates
}

#[cfg(test)]
mod tests;
