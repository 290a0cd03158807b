//! Kubernetes Events pullwarden records on the objects it backs off from.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;
use pullwarden_core::live::{LiveState, Meta};
use pullwarden_core::plan::{Change, ObjectKind};

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

/// The field manager that wrote the object last other than pullwarden.
pub(crate) fn other_writer(meta: Option<&Meta>) -> Option<&str> {
    meta?
        .managers
        .iter()
        .rev()
        .find(|m| m.manager != "pullwarden")
        .map(|m| m.manager.as_str())
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
