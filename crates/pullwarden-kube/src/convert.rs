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
    let labels = namespace.metadata.labels.unwrap_or_default();
    namespace.metadata.name.map(|name| NamespaceMeta {
        name,
        terminating,
        uid,
        labels,
    })
}

/// What the planner uses of a namespace (its metadata only).
pub struct NamespaceMeta {
    pub name: String,
    /// Being deleted (`deletionTimestamp` set).
    pub terminating: bool,
    pub uid: String,
    /// For label selectors.
    pub labels: std::collections::BTreeMap<String, String>,
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
    type_ == DOCKER_CONFIG_JSON_TYPE || type_ == DOCKERCFG_TYPE || is_managed(Some(labels))
}

/// Whether labels say `app.kubernetes.io/managed-by: pullwarden`.
pub fn is_managed(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|labels| labels.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY_VALUE)
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

/// Objects as the cluster reader lists them: only the fields planning uses
/// are deserialized (not, for instance, each `managedFields[].fieldsV1`, a
/// JSON tree per object). Each converts into its k8s-openapi type with those
/// fields moved over and the rest left empty, so the conversion functions
/// above (shared with the snapshot loader) are the only ones.
pub mod listed {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        LocalObjectReference, ObjectReference, Secret, ServiceAccount,
    };
    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
    };
    use serde::Deserialize;

    /// The metadata [`super::live_meta`] reads.
    #[derive(Clone, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Meta {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        annotations: Option<BTreeMap<String, String>>,
        owner_references: Option<Vec<Owner>>,
        managed_fields: Option<Vec<ManagedEntry>>,
    }

    #[derive(Clone, Deserialize)]
    pub struct Owner {
        #[serde(default)]
        kind: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        uid: String,
    }

    #[derive(Clone, Deserialize)]
    pub struct ManagedEntry {
        manager: Option<String>,
        operation: Option<String>,
        time: Option<Time>,
    }

    impl From<Meta> for ObjectMeta {
        fn from(meta: Meta) -> Self {
            ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                labels: meta.labels,
                annotations: meta.annotations,
                owner_references: meta.owner_references.map(|owners| {
                    owners
                        .into_iter()
                        .map(|o| OwnerReference {
                            kind: o.kind,
                            name: o.name,
                            uid: o.uid,
                            ..OwnerReference::default()
                        })
                        .collect()
                }),
                managed_fields: meta.managed_fields.map(|managers| {
                    managers
                        .into_iter()
                        .map(|m| ManagedFieldsEntry {
                            manager: m.manager,
                            operation: m.operation,
                            time: m.time,
                            ..ManagedFieldsEntry::default()
                        })
                        .collect()
                }),
                ..ObjectMeta::default()
            }
        }
    }

    /// A listed Secret (its data is a credential: no `Debug`).
    #[derive(Clone, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ListedSecret {
        #[serde(default)]
        metadata: Meta,
        #[serde(rename = "type")]
        type_: Option<String>,
        data: Option<BTreeMap<String, ByteString>>,
        string_data: Option<BTreeMap<String, String>>,
        immutable: Option<bool>,
    }

    impl From<ListedSecret> for Secret {
        fn from(s: ListedSecret) -> Self {
            Secret {
                metadata: s.metadata.into(),
                type_: s.type_,
                data: s.data,
                string_data: s.string_data,
                immutable: s.immutable,
            }
        }
    }

    #[derive(Clone, Deserialize)]
    pub struct Name {
        name: Option<String>,
    }

    #[derive(Clone, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ListedServiceAccount {
        #[serde(default)]
        metadata: Meta,
        image_pull_secrets: Option<Vec<Name>>,
        secrets: Option<Vec<Name>>,
    }

    impl From<ListedServiceAccount> for ServiceAccount {
        fn from(sa: ListedServiceAccount) -> Self {
            ServiceAccount {
                metadata: sa.metadata.into(),
                image_pull_secrets: sa.image_pull_secrets.map(|refs| {
                    refs.into_iter()
                        .map(|r| LocalObjectReference {
                            name: r.name.unwrap_or_default(),
                        })
                        .collect()
                }),
                secrets: sa.secrets.map(|refs| {
                    refs.into_iter()
                        .map(|r| ObjectReference {
                            name: r.name,
                            ..ObjectReference::default()
                        })
                        .collect()
                }),
                automount_service_account_token: None,
            }
        }
    }

    #[derive(Clone, Deserialize)]
    pub struct ListedRoleRef {
        #[serde(default)]
        kind: String,
        #[serde(default)]
        name: String,
    }

    #[derive(Clone, Deserialize)]
    pub struct ListedSubject {
        #[serde(default)]
        kind: String,
        #[serde(default)]
        name: String,
        namespace: Option<String>,
    }

    #[derive(Clone, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ListedRoleBinding {
        #[serde(default)]
        metadata: Meta,
        role_ref: ListedRoleRef,
        subjects: Option<Vec<ListedSubject>>,
    }

    impl From<ListedRoleBinding> for RoleBinding {
        fn from(rb: ListedRoleBinding) -> Self {
            RoleBinding {
                metadata: rb.metadata.into(),
                role_ref: RoleRef {
                    api_group: None,
                    kind: rb.role_ref.kind,
                    name: rb.role_ref.name,
                },
                subjects: rb.subjects.map(|subjects| {
                    subjects
                        .into_iter()
                        .map(|s| Subject {
                            api_group: None,
                            kind: s.kind,
                            name: s.name,
                            namespace: s.namespace,
                        })
                        .collect()
                }),
            }
        }
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

    /// The listed types give the planner exactly what the full k8s-openapi
    /// objects give, from the same JSON (what a LIST answers).
    #[test]
    fn listed_objects_convert_like_full_ones() {
        use serde_json::json;
        let meta = json!({
            "name": "n", "namespace": "ns", "uid": "u", "resourceVersion": "7",
            "creationTimestamp": "2026-11-30T00:00:00Z", "generation": 3,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, "a": "b"},
            "annotations": {LAST_APPLIED: "{}", OPENSHIFT_TOKEN_SECRET_VALUE: CANARY, "k": "v"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "o", "uid": "ou", "controller": true}],
            "managedFields": [
                {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2026-11-30T00:00:02Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {".": {}, "f:k": {}}}},
                {"manager": "pullwarden", "operation": "Update", "time": "2026-11-30T00:00:01Z"},
                {"manager": "x"}
            ],
        });
        let b64 = |t: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(t)
        };
        let secrets = [
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta.clone(),
                   "type": DOCKERCFG_TYPE, "data": {".dockercfg": b64(CANARY), "bin": "//4A"},
                   "stringData": {"s": "plain"}, "immutable": true}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bare"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta.clone(), "type": "Opaque",
                   "data": {"k": b64(CANARY)}}),
        ];
        for value in secrets {
            let full = live_secret(serde_json::from_value::<Secret>(value.clone()).unwrap());
            let listed: Secret = serde_json::from_value::<listed::ListedSecret>(value)
                .unwrap()
                .into();
            let listed = live_secret(listed);
            assert_eq!(listed.meta, full.meta);
            assert_eq!(
                (&listed.type_, listed.immutable),
                (&full.type_, full.immutable)
            );
            let data = |s: &LiveSecret| -> Vec<(String, String)> {
                s.data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect()
            };
            assert_eq!(data(&listed), data(&full));
        }
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta.clone(),
            "imagePullSecrets": [{"name": "p"}, {}], "secrets": [{"name": "m", "kind": "Secret"}, {"kind": "Secret"}],
            "automountServiceAccountToken": false});
        let full = live_service_account(serde_json::from_value(sa.clone()).unwrap());
        let listed = live_service_account(
            serde_json::from_value::<listed::ListedServiceAccount>(sa)
                .unwrap()
                .into(),
        );
        assert_eq!(
            (listed.meta, listed.image_pull_secrets, listed.secrets),
            (full.meta, full.image_pull_secrets, full.secrets)
        );
        let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "g", "namespace": ""},
                         {"kind": "ServiceAccount", "name": "s", "namespace": "ns"}]});
        let full = live_role_binding(serde_json::from_value(rb.clone()).unwrap());
        let listed = live_role_binding(
            serde_json::from_value::<listed::ListedRoleBinding>(rb)
                .unwrap()
                .into(),
        );
        assert_eq!(
            (listed.meta, listed.role_ref, listed.subjects),
            (full.meta, full.role_ref, full.subjects)
        );
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
