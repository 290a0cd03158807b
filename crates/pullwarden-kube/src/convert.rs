//! Kubernetes objects (k8s-openapi types) into the plain data of
//! [`pullwarden_core::live`]. Shared by the cluster reader and the snapshot
//! loader, so both see a cluster the same way.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use pullwarden_core::live::{
    FieldManager, LAST_APPLIED, LiveRoleBinding, LiveSecret, LiveServiceAccount, LiveState,
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, Meta, OPENSHIFT_TOKEN_SECRET_VALUE, OwnerRef, RbacSubject,
    RoleRef,
};
use pullwarden_core::secret::SecretString;

/// `type` of a Secret holding a `.dockerconfigjson`.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// `type` of a Secret holding a legacy `.dockercfg`.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
/// Secret annotations dropped at conversion: they can hold credentials.
pub const DROPPED_SECRET_ANNOTATIONS: [&str; 2] = [LAST_APPLIED, OPENSHIFT_TOKEN_SECRET_VALUE];

/// The namespace's name, or `None` when it is terminating (or nameless).
pub fn live_namespace(namespace: &Namespace) -> Option<String> {
    if is_terminating(namespace) {
        return None;
    }
    namespace.metadata.name.clone()
}

/// Whether a namespace is being deleted (phase `Terminating`).
pub fn is_terminating(namespace: &Namespace) -> bool {
    namespace
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        == Some("Terminating")
}

/// The namespace's name and whether it is terminating (`None` when nameless).
pub fn live_namespace_phase(namespace: Namespace) -> Option<(String, bool)> {
    let terminating = is_terminating(&namespace);
    namespace.metadata.name.map(|name| (name, terminating))
}

/// A namespace listed as metadata only: its name and whether it is being
/// deleted. A namespace's `deletionTimestamp` is set in the same update that
/// sets its phase to `Terminating`, so it is the same signal without the
/// `status` a metadata-only list leaves out (`None` when nameless).
pub fn live_namespace_meta(namespace: PartialObjectMeta<Namespace>) -> Option<NamespaceMeta> {
    let terminating = namespace.metadata.deletion_timestamp.is_some();
    let uid = namespace.metadata.uid.unwrap_or_default();
    namespace.metadata.name.map(|name| NamespaceMeta {
        name,
        terminating,
        uid,
    })
}

/// What the planner uses of a namespace (its metadata only).
pub struct NamespaceMeta {
    pub name: String,
    /// Being deleted (`deletionTimestamp` set).
    pub terminating: bool,
    pub uid: String,
}

/// The metadata planning uses.
pub fn live_meta(meta: ObjectMeta) -> Meta {
    let mut managers: Vec<FieldManager> = meta
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|entry| FieldManager {
            manager: entry.manager.unwrap_or_default(),
            operation: entry.operation.unwrap_or_default(),
            time: entry.time.map(|t| t.0.to_string()),
        })
        .collect();
    managers.sort_by(|a, b| a.time.cmp(&b.time));
    Meta {
        managers,
        namespace: meta.namespace.unwrap_or_default(),
        name: meta.name.unwrap_or_default(),
        uid: meta.uid.unwrap_or_default(),
        resource_version: meta.resource_version.unwrap_or_default(),
        labels: meta.labels.unwrap_or_default(),
        annotations: meta.annotations.unwrap_or_default(),
        owner_references: meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|owner| OwnerRef {
                kind: owner.kind,
                name: owner.name,
                uid: owner.uid,
            })
            .collect(),
    }
}

/// Whether pullwarden keeps a secret's data: docker-config secrets and
/// secrets labelled `app.kubernetes.io/managed-by: pullwarden`.
pub fn keeps_secret_data(type_: &str, labels: &BTreeMap<String, String>) -> bool {
    type_ == DOCKER_CONFIG_JSON_TYPE
        || type_ == DOCKERCFG_TYPE
        || labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// A Secret as planning sees it. Its data (decoded; `stringData` wins over
/// `data` as on the API server; values that are not UTF-8 are skipped) is kept
/// only when [`keeps_secret_data`] says so. The annotations in
/// [`DROPPED_SECRET_ANNOTATIONS`] are removed.
pub fn live_secret(secret: Secret) -> LiveSecret {
    let mut meta = live_meta(secret.metadata);
    for annotation in DROPPED_SECRET_ANNOTATIONS {
        meta.annotations.remove(annotation);
    }
    let type_ = secret.type_.unwrap_or_else(|| "Opaque".to_owned());
    let mut data = BTreeMap::new();
    if keeps_secret_data(&type_, &meta.labels) {
        for (key, bytes) in secret.data.unwrap_or_default() {
            if let Ok(text) = String::from_utf8(bytes.0) {
                data.insert(key, SecretString::new(text));
            }
        }
        for (key, text) in secret.string_data.unwrap_or_default() {
            data.insert(key, SecretString::new(text));
        }
    }
    LiveSecret {
        meta,
        from_snapshot_file: false,
        type_,
        immutable: secret.immutable.unwrap_or(false),
        data,
    }
}

/// A ServiceAccount's pull-secret and mountable-secret names.
pub fn live_service_account(service_account: ServiceAccount) -> LiveServiceAccount {
    LiveServiceAccount {
        meta: live_meta(service_account.metadata),
        image_pull_secrets: service_account
            .image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|reference| reference.name)
            .collect(),
        secrets: service_account
            .secrets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|reference| reference.name)
            .collect(),
    }
}

/// A RoleBinding's role and subjects.
pub fn live_role_binding(role_binding: RoleBinding) -> LiveRoleBinding {
    LiveRoleBinding {
        meta: live_meta(role_binding.metadata),
        role_ref: RoleRef {
            kind: role_binding.role_ref.kind,
            name: role_binding.role_ref.name,
        },
        subjects: role_binding
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|subject| RbacSubject {
                kind: subject.kind,
                name: subject.name,
                namespace: subject.namespace.filter(|ns| !ns.is_empty()),
            })
            .collect(),
    }
}

/// Sorts every list of a [`LiveState`] by namespace and name, so that two
/// reads of the same cluster give equal states whatever order they came in.
pub fn sort_live_state(live: &mut LiveState) {
    live.secrets.sort_by(|a, b| key(&a.meta).cmp(&key(&b.meta)));
    live.service_accounts
        .sort_by(|a, b| key(&a.meta).cmp(&key(&b.meta)));
    live.role_bindings
        .sort_by(|a, b| key(&a.meta).cmp(&key(&b.meta)));
}

fn key(meta: &Meta) -> (&str, &str) {
    (&meta.namespace, &meta.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{LocalObjectReference, NamespaceStatus, ObjectReference};
    use k8s_openapi::api::rbac::v1::{RoleRef as K8sRoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    const CANARY: &str = "canary-token-4b1d";

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("42".into()),
            ..ObjectMeta::default()
        }
    }

    fn secret(type_: &str, labels: &[(&str, &str)]) -> Secret {
        let mut metadata = meta("ns", "s");
        metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        metadata.annotations = Some(BTreeMap::from([
            (
                LAST_APPLIED.to_owned(),
                format!("{{\"data\":\"{CANARY}\"}}"),
            ),
            (OPENSHIFT_TOKEN_SECRET_VALUE.to_owned(), CANARY.to_owned()),
            ("keep".to_owned(), "me".to_owned()),
        ]));
        Secret {
            metadata,
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([
                ("k".to_owned(), ByteString(CANARY.as_bytes().to_vec())),
                ("binary".to_owned(), ByteString(vec![0xff, 0xfe, 0x00])),
            ])),
            ..Secret::default()
        }
    }

    #[test]
    fn data_is_kept_for_docker_types_and_managed_secrets_only() {
        for (type_, labels, kept) in [
            (DOCKER_CONFIG_JSON_TYPE, &[][..], true),
            (DOCKERCFG_TYPE, &[][..], true),
            ("Opaque", &[(MANAGED_BY_LABEL, MANAGED_BY_VALUE)][..], true),
            ("Opaque", &[(MANAGED_BY_LABEL, "helm")][..], false),
            ("Opaque", &[][..], false),
            ("kubernetes.io/service-account-token", &[][..], false),
        ] {
            let live = live_secret(secret(type_, labels));
            assert_eq!(live.type_, type_);
            if kept {
                let keys: Vec<_> = live.data.keys().map(String::as_str).collect();
                assert_eq!(keys, ["k"], "{type_}: non-UTF-8 values are skipped");
                assert_eq!(live.data["k"].expose(), CANARY);
            } else {
                assert!(live.data.is_empty(), "{type_} {labels:?}");
            }
        }
    }

    #[test]
    fn credential_bearing_annotations_are_dropped() {
        let live = live_secret(secret(DOCKERCFG_TYPE, &[]));
        assert_eq!(
            live.meta.annotations,
            BTreeMap::from([("keep".to_owned(), "me".to_owned())])
        );
        assert!(!format!("{live:?}").contains(CANARY));
    }

    #[test]
    fn string_data_wins_over_data() {
        let mut s = secret(DOCKERCFG_TYPE, &[]);
        s.string_data = Some(BTreeMap::from([("k".to_owned(), "plain".to_owned())]));
        assert_eq!(live_secret(s).data["k"].expose(), "plain");
    }

    #[test]
    fn secret_type_defaults_to_opaque_and_immutable_is_read() {
        let mut s = secret(DOCKERCFG_TYPE, &[]);
        s.type_ = None;
        s.immutable = Some(true);
        let live = live_secret(s);
        assert_eq!(live.type_, "Opaque");
        assert!(live.immutable);
        assert!(live.data.is_empty());
    }

    #[test]
    fn terminating_namespaces_are_skipped() {
        let mut ns = Namespace {
            metadata: meta("", "a"),
            ..Namespace::default()
        };
        assert_eq!(live_namespace(&ns).as_deref(), Some("a"));
        ns.status = Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..NamespaceStatus::default()
        });
        assert_eq!(live_namespace(&ns).as_deref(), Some("a"));
        ns.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            ..NamespaceStatus::default()
        });
        assert_eq!(live_namespace(&ns), None);
    }

    #[test]
    fn service_accounts_keep_secret_names_and_owner_references() {
        let mut metadata = meta("ns", "builder");
        metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Thing".into(),
            name: "owner".into(),
            uid: "u1".into(),
            ..OwnerReference::default()
        }]);
        let live = live_service_account(ServiceAccount {
            metadata,
            image_pull_secrets: Some(vec![LocalObjectReference {
                name: "pull".into(),
            }]),
            secrets: Some(vec![
                ObjectReference {
                    name: Some("mount".into()),
                    ..ObjectReference::default()
                },
                ObjectReference::default(),
            ]),
            ..ServiceAccount::default()
        });
        assert_eq!(live.image_pull_secrets, ["pull"]);
        assert_eq!(live.secrets, ["mount"]);
        assert_eq!(
            live.meta.owner_references,
            [OwnerRef {
                kind: "Thing".into(),
                name: "owner".into(),
                uid: "u1".into()
            }]
        );
        assert_eq!(live.meta.namespace, "ns");
        assert_eq!(live.meta.resource_version, "42");
    }

    #[test]
    fn role_bindings_keep_role_and_subjects() {
        let live = live_role_binding(RoleBinding {
            metadata: meta("ns", "system:image-pullers"),
            role_ref: K8sRoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "system:image-puller".into(),
            },
            subjects: Some(vec![
                Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Group".into(),
                    name: "system:serviceaccounts:ns".into(),
                    namespace: Some(String::new()),
                },
                Subject {
                    api_group: None,
                    kind: "ServiceAccount".into(),
                    name: "builder".into(),
                    namespace: Some("ns".into()),
                },
            ]),
        });
        assert_eq!(
            live.role_ref,
            RoleRef {
                kind: "ClusterRole".into(),
                name: "system:image-puller".into()
            }
        );
        assert_eq!(
            live.subjects,
            [
                RbacSubject::group("system:serviceaccounts:ns"),
                RbacSubject::service_account("ns", "builder")
            ]
        );
    }
}
