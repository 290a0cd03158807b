//! Kubernetes Events pullwarden records on the objects it backs off from.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ManagedFieldsEntry, MicroTime, ObjectMeta, Time,
};
use kube::Api;
use kube::api::PostParams;
use pullwarden_core::live::{LiveState, Meta};
use pullwarden_core::plan::{Change, ObjectKind};
use pullwarden_kube::apply::FIELD_MANAGER;

/// The live object a change is about, if it exists.
pub(crate) fn live_meta<'a>(live: &'a LiveState, change: &Change) -> Option<&'a Meta> {
    let matches = |m: &Meta| m.namespace == change.namespace && m.name == change.name;
    match change.kind {
        ObjectKind::Secret => live.secrets.iter().map(|s| &s.meta).find(|m| matches(m)),
        ObjectKind::ServiceAccount => live
            .service_accounts
            .iter()
            .map(|s| &s.meta)
            .find(|m| matches(m)),
        ObjectKind::RoleBinding => live
            .role_bindings
            .iter()
            .map(|s| &s.meta)
            .find(|m| matches(m)),
    }
}

/// The top-level fields a change of this kind writes, as `managedFields`
/// name them: what another writer undid.
fn written_fields(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::ServiceAccount => &["f:imagePullSecrets", "f:secrets"],
        ObjectKind::Secret => &["f:data", "f:type"],
        ObjectKind::RoleBinding => &["f:subjects", "f:roleRef"],
    }
}

/// The field manager, other than pullwarden, that owns what the change
/// writes (for a link `imagePullSecrets` or `secrets`, for a Secret its
/// `data`, for a RoleBinding its `subjects`); the latest of them when
/// several do. That is who undid it: an Update takes the fields it changed
/// from every other manager. Read afresh with a metadata-only GET (the listed
/// state keeps no field sets; a Secret's data is not fetched).
///
/// `None` when the server recorded no such manager: a write that removes a
/// field altogether (a list emptied) leaves it owned by nobody, and an object
/// whose `managedFields` were empty is not tracked at all until a write
/// carries some (pullwarden's link writes do: `pullwarden-kube::apply`).
pub(crate) async fn other_writer(client: &kube::Client, change: &Change) -> Option<String> {
    let (ns, name) = (change.namespace.as_str(), change.name.as_str());
    let entries = match change.kind {
        ObjectKind::ServiceAccount => {
            Api::<ServiceAccount>::namespaced(client.clone(), ns)
                .get_metadata(name)
                .await
                .ok()?
                .metadata
                .managed_fields
        }
        ObjectKind::Secret => {
            Api::<Secret>::namespaced(client.clone(), ns)
                .get_metadata(name)
                .await
                .ok()?
                .metadata
                .managed_fields
        }
        ObjectKind::RoleBinding => {
            Api::<RoleBinding>::namespaced(client.clone(), ns)
                .get_metadata(name)
                .await
                .ok()?
                .metadata
                .managed_fields
        }
    };
    owner_of(
        entries.as_deref().unwrap_or_default(),
        written_fields(change.kind),
    )
}

/// The latest manager other than pullwarden owning one of `fields`.
fn owner_of(entries: &[ManagedFieldsEntry], fields: &[&str]) -> Option<String> {
    entries
        .iter()
        .filter(|e| e.manager.as_deref().is_some_and(|m| m != FIELD_MANAGER))
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| f.0.as_object())
                .is_some_and(|owned| fields.iter().any(|f| owned.contains_key(*f)))
        })
        .enumerate()
        .max_by_key(|(i, e)| (e.time.as_ref().map(|t| t.0), *i))
        .and_then(|(_, e)| e.manager.clone())
}

/// Records a `Warning` Event `BackingOff` on the object.
pub(crate) async fn backing_off(
    client: &kube::Client,
    change: &Change,
    meta: Option<&Meta>,
    message: String,
) -> Result<(), kube::Error> {
    let (api_version, kind) = match change.kind {
        ObjectKind::Secret => ("v1", "Secret"),
        ObjectKind::ServiceAccount => ("v1", "ServiceAccount"),
        ObjectKind::RoleBinding => ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", change.name)),
            namespace: Some(change.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
            name: Some(change.name.clone()),
            namespace: Some(change.namespace.clone()),
            uid: meta.map(|m| m.uid.clone()),
            resource_version: meta.map(|m| m.resource_version.clone()),
            ..ObjectReference::default()
        },
        reason: Some("BackingOff".to_owned()),
        message: Some(message),
        type_: Some("Warning".to_owned()),
        action: Some("Write".to_owned()),
        source: Some(EventSource {
            component: Some("pullwarden".to_owned()),
            ..EventSource::default()
        }),
        reporting_component: Some("pullwarden".to_owned()),
        reporting_instance: Some("pullwarden".to_owned()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        ..Event::default()
    };
    Api::<Event>::namespaced(client.clone(), &change.namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;

    fn entry(manager: &str, second: i64, fields: serde_json::Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some("Update".to_owned()),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second).unwrap(),
            )),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn names_the_latest_other_owner_of_the_undone_field() {
        let pulls = serde_json::json!({"f:imagePullSecrets": {}});
        let annotations = serde_json::json!({"f:metadata": {"f:annotations": {"f:a": {}}}});
        let fields = written_fields(ObjectKind::ServiceAccount);
        let entries = vec![
            entry("team-admin", 1, pulls.clone()),
            entry("stripper", 2, pulls.clone()),
            // later, but owns something else
            entry("annotator", 3, annotations.clone()),
            entry(FIELD_MANAGER, 4, pulls.clone()),
        ];
        assert_eq!(owner_of(&entries, fields).as_deref(), Some("stripper"));
        // Only pullwarden and a writer of other fields: nobody to name.
        assert_eq!(
            owner_of(
                &[
                    entry("annotator", 3, annotations),
                    entry(FIELD_MANAGER, 4, pulls)
                ],
                fields
            ),
            None
        );
        assert_eq!(owner_of(&[], fields), None);
        // Same second: the later entry.
        let data = serde_json::json!({"f:data": {}});
        assert_eq!(
            owner_of(
                &[entry("one", 5, data.clone()), entry("two", 5, data)],
                written_fields(ObjectKind::Secret)
            )
            .as_deref(),
            Some("two")
        );
    }
}
