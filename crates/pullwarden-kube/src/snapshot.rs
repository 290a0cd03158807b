//! `pullwarden snapshot`: the live state as a kubectl-style `List` that
//! `plan --live` / `drift --live` read back, with no credential in it.
//!
//! Docker-config Secrets keep their shape (servers, emails) but every username
//! and password becomes `pwdigest-<hex>`, a salted PBKDF2-HMAC-SHA256 digest,
//! with the salt and rounds in the annotation
//! [`SNAPSHOT_DIGEST_ANNOTATION`]; the planner compares desired values against
//! those digests. Other Secrets carry no data at all. The annotations that can
//! hold credentials were already dropped when the state was read.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    LocalObjectReference, Namespace, ObjectReference, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use pullwarden_core::dockerconfig::{self, ConfigFormat};
use pullwarden_core::live::{DIGEST_VALUE_PREFIX, LiveState, Meta, SNAPSHOT_DIGEST_ANNOTATION};
use pullwarden_core::secret::{DigestKey, SecretString, slow_digest};
use serde_json::{Value, json};

use crate::convert::{DOCKER_CONFIG_JSON_TYPE, DOCKERCFG_TYPE};

fn object_meta(meta: &Meta) -> ObjectMeta {
    ObjectMeta {
        name: Some(meta.name.clone()),
        namespace: (!meta.namespace.is_empty()).then(|| meta.namespace.clone()),
        uid: (!meta.uid.is_empty()).then(|| meta.uid.clone()),
        resource_version: (!meta.resource_version.is_empty())
            .then(|| meta.resource_version.clone()),
        labels: (!meta.labels.is_empty()).then(|| meta.labels.clone()),
        annotations: (!meta.annotations.is_empty()).then(|| meta.annotations.clone()),
        owner_references: (!meta.owner_references.is_empty()).then(|| {
            meta.owner_references
                .iter()
                .map(|o| OwnerReference {
                    api_version: "v1".into(),
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    uid: o.uid.clone(),
                    ..OwnerReference::default()
                })
                .collect()
        }),
        ..ObjectMeta::default()
    }
}

/// Digests values once per distinct value.
struct Digester<'a> {
    key: DigestKey,
    salt: &'a [u8],
    iterations: u32,
    cache: BTreeMap<pullwarden_core::secret::Digest, String>,
}

impl Digester<'_> {
    fn digest(&mut self, value: &SecretString) -> String {
        let (salt, iterations) = (self.salt, self.iterations);
        let hex = self
            .cache
            .entry(value.digest(&self.key))
            .or_insert_with(|| slow_digest(value, salt, iterations));
        format!("{DIGEST_VALUE_PREFIX}{hex}")
    }
}

/// The snapshot as pretty JSON (`kind: List`). `key` only groups equal values.
pub fn snapshot_json(live: &LiveState, salt: &[u8], iterations: u32, key: DigestKey) -> String {
    let mut digester = Digester {
        key,
        salt,
        iterations,
        cache: BTreeMap::new(),
    };
    let mut items: Vec<Value> = Vec::new();
    for name in &live.namespaces {
        // kube-system keeps its UID: it identifies the cluster, so a plan
        // saved from the snapshot is bound to the cluster it was taken of.
        let uid = live
            .cluster
            .as_ref()
            .filter(|_| name == "kube-system")
            .map(|id| id.kube_system_uid.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: live.namespace_labels.get(name).cloned(),
                uid,
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        items.push(with_kind(&ns, "v1", "Namespace"));
    }
    for secret in &live.secrets {
        let mut metadata = object_meta(&secret.meta);
        let format = match secret.type_.as_str() {
            DOCKER_CONFIG_JSON_TYPE => Some((ConfigFormat::ConfigJson, ".dockerconfigjson")),
            DOCKERCFG_TYPE => Some((ConfigFormat::Dockercfg, ".dockercfg")),
            _ => None,
        };
        let mut data = None;
        if let Some((format, data_key)) = format
            && let Some(value) = secret.data.get(data_key)
            && let Ok(entries) = dockerconfig::parse(value.expose(), format)
        {
            let mut map = serde_json::Map::new();
            for entry in &entries {
                let mut fields = serde_json::Map::new();
                fields.insert("username".into(), digester.digest(&entry.username).into());
                fields.insert("password".into(), digester.digest(&entry.password).into());
                if let Some(email) = &entry.email {
                    fields.insert("email".into(), email.clone().into());
                }
                map.insert(entry.server.clone(), Value::Object(fields));
            }
            let body = match format {
                ConfigFormat::ConfigJson => json!({ "auths": map }),
                ConfigFormat::Dockercfg => Value::Object(map),
            };
            data = Some(BTreeMap::from([(
                data_key.to_string(),
                ByteString(body.to_string().into_bytes()),
            )]));
            metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(
                    SNAPSHOT_DIGEST_ANNOTATION.to_string(),
                    pullwarden_core::live::snapshot_digest::encode(salt, iterations),
                );
        }
        let object = Secret {
            metadata,
            type_: Some(secret.type_.clone()),
            immutable: secret.immutable.then_some(true),
            data,
            ..Secret::default()
        };
        items.push(with_kind(&object, "v1", "Secret"));
    }
    for sa in &live.service_accounts {
        let object = ServiceAccount {
            metadata: object_meta(&sa.meta),
            image_pull_secrets: (!sa.image_pull_secrets.is_empty()).then(|| {
                sa.image_pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.clone() })
                    .collect()
            }),
            secrets: (!sa.secrets.is_empty()).then(|| {
                sa.secrets
                    .iter()
                    .map(|n| ObjectReference {
                        name: Some(n.clone()),
                        ..ObjectReference::default()
                    })
                    .collect()
            }),
            ..ServiceAccount::default()
        };
        items.push(with_kind(&object, "v1", "ServiceAccount"));
    }
    for rb in &live.role_bindings {
        let object = RoleBinding {
            metadata: object_meta(&rb.meta),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: rb.role_ref.kind.clone(),
                name: rb.role_ref.name.clone(),
            },
            subjects: Some(
                rb.subjects
                    .iter()
                    .map(|s| Subject {
                        api_group: (s.kind != "ServiceAccount")
                            .then(|| "rbac.authorization.k8s.io".to_string()),
                        kind: s.kind.clone(),
                        name: s.name.clone(),
                        namespace: s.namespace.clone(),
                    })
                    .collect(),
            ),
        };
        items.push(with_kind(
            &object,
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
        ));
    }
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {
            "annotations": {
                "pullwarden.dev/snapshot": "secret values are salted PBKDF2-HMAC-SHA256 digests; other secret data is omitted"
            }
        },
        "items": items,
    });
    serde_json::to_string_pretty(&list).expect("a snapshot serializes") + "\n"
}

fn with_kind<T: serde::Serialize>(object: &T, api_version: &str, kind: &str) -> Value {
    let mut value = serde_json::to_value(object).expect("k8s objects serialize");
    if let Value::Object(map) = &mut value {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
    }
    value
}
