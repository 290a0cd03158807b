//! The watches that trigger a reconcile: metadata only, cluster-wide, with
//! the filters of the batch read (docker-config Secrets by type, pullwarden's
//! RoleBindings by label). Each event names what it touched (a namespace, or
//! objects in one), so that the loop re-plans only that; the Namespace watch
//! also keeps every namespace's labels and state ([`NamespaceView`]), which a
//! re-plan of a few namespaces needs for what depends on all of them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc::UnboundedSender;

use crate::{Level, Log, Sink, Trigger};

/// What one watch event touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Touch {
    /// A Namespace was created, changed (labels, deletion) or deleted.
    Namespace(String),
    /// An object in this namespace.
    In(String),
    /// Unknown: a watch re-listed after it expired or failed (events may
    /// have been missed), or an object without a namespace.
    Everything,
}

/// One namespace as the Namespace watch last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NamespaceInfo {
    pub labels: BTreeMap<String, String>,
    pub terminating: bool,
}

/// Every namespace as the Namespace watch last saw it; `ready` once it has
/// listed them all and while it is not failing.
#[derive(Debug, Default)]
pub(crate) struct NamespaceView {
    pub ready: bool,
    pub namespaces: BTreeMap<String, NamespaceInfo>,
}

pub(crate) type SharedNamespaces = Arc<Mutex<NamespaceView>>;

/// How long the server keeps one watch request open: less than the client's
/// `request_timeout`, which bounds every read, so that a watch with no event
/// for that long ends cleanly (and is resumed from where it was) instead of
/// failing on a read timeout (which delayed events by the retry backoff).
pub(crate) fn watch_timeout(request_timeout: std::time::Duration) -> u32 {
    u32::try_from(request_timeout.as_secs().saturating_sub(5).clamp(1, 290)).unwrap_or(290)
}

/// Starts one task per watch. Managed Secrets always have one of the two
/// docker-config types, so the two type-filtered Secret watches also cover
/// them (and catch a foreign Secret taking a wanted name).
pub(crate) fn start(
    client: &kube::Client,
    tx: &UnboundedSender<Trigger>,
    log: &Sink,
    namespaces: &SharedNamespaces,
    request_timeout: std::time::Duration,
) {
    let config = watcher::Config::default().timeout(watch_timeout(request_timeout));
    let managed = format!(
        "{}={}",
        pullwarden_core::live::MANAGED_BY_LABEL,
        pullwarden_core::live::MANAGED_BY_VALUE
    );
    spawn::<Namespace>(
        "namespaces",
        meta(client),
        config.clone(),
        tx,
        log,
        Some(namespaces.clone()),
        false,
    );
    spawn::<ServiceAccount>(
        "serviceaccounts",
        meta(client),
        config.clone(),
        tx,
        log,
        None,
        true,
    );
    for kind in pullwarden_kube::PULL_SECRET_TYPES {
        spawn::<Secret>(
            "secrets",
            meta(client),
            config.clone().fields(&format!("type={kind}")),
            tx,
            log,
            None,
            true,
        );
    }
    spawn::<RoleBinding>(
        "rolebindings",
        meta(client),
        config.labels(&managed),
        tx,
        log,
        None,
        true,
    );
}

/// A metadata-only client of `K`, cluster-wide.
fn meta<K>(client: &kube::Client) -> Api<PartialObjectMeta<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    Api::all(client.clone())
}

/// What an event on `object` touched (`namespaced`: `K` lives in namespaces).
fn touch<K>(object: &PartialObjectMeta<K>, namespaced: bool) -> Touch {
    let meta = &object.metadata;
    if namespaced {
        meta.namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .map_or(Touch::Everything, Touch::In)
    } else {
        meta.name
            .clone()
            .filter(|name| !name.is_empty())
            .map_or(Touch::Everything, Touch::Namespace)
    }
}

fn info<K>(object: &PartialObjectMeta<K>) -> Option<(String, NamespaceInfo)> {
    let meta = &object.metadata;
    Some((
        meta.name.clone()?,
        NamespaceInfo {
            labels: meta.labels.clone().unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
        },
    ))
}

fn update(view: Option<&SharedNamespaces>, f: impl FnOnce(&mut NamespaceView)) {
    if let Some(view) = view {
        f(&mut view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }
}

fn spawn<K>(
    what: &'static str,
    api: Api<PartialObjectMeta<K>>,
    config: watcher::Config,
    tx: &UnboundedSender<Trigger>,
    log: &Sink,
    view: Option<SharedNamespaces>,
    namespaced: bool,
) where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let tx = tx.clone();
    let log = log.clone();
    tokio::spawn(async move {
        let stream = watcher::watcher(api, config).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut listed_once = false;
        let mut failing = false;
        // The namespaces of a (re-)list in progress, swapped in when it is done.
        let mut listing: BTreeMap<String, NamespaceInfo> = BTreeMap::new();
        while let Some(event) = stream.next().await {
            let touched = match event {
                Ok(Event::Apply(object)) => {
                    if let Some((name, info)) = info(&object) {
                        update(view.as_ref(), |v| {
                            v.namespaces.insert(name, info);
                            // A watch that resumed where it stopped missed nothing.
                            v.ready = listed_once;
                        });
                    }
                    Some(touch(&object, namespaced))
                }
                Ok(Event::Delete(object)) => {
                    if let Some(name) = &object.metadata.name {
                        update(view.as_ref(), |v| {
                            v.namespaces.remove(name);
                            v.ready = listed_once;
                        });
                    }
                    Some(touch(&object, namespaced))
                }
                // After a re-list (a watch that expired), events may have
                // been missed: reconcile everything. The first list is the start's.
                Ok(Event::InitDone) => {
                    let listed = std::mem::take(&mut listing);
                    update(view.as_ref(), |v| {
                        v.namespaces = listed;
                        v.ready = true;
                    });
                    std::mem::replace(&mut listed_once, true).then_some(Touch::Everything)
                }
                Ok(Event::Init) => {
                    listing.clear();
                    update(view.as_ref(), |v| v.ready = false);
                    None
                }
                Ok(Event::InitApply(object)) => {
                    if let Some((name, info)) = info(&object) {
                        listing.insert(name, info);
                    }
                    None
                }
                Err(e) => {
                    if !failing {
                        log(
                            Log::new(Level::Warn, format!("watch failed (retrying): {e}"))
                                .field("watch", &what),
                        );
                    }
                    failing = true;
                    // Until it has listed again, the namespaces it knows may be stale.
                    update(view.as_ref(), |v| v.ready = false);
                    continue;
                }
            };
            if failing {
                log(Log::new(Level::Info, "watch resumed").field("watch", &what));
                failing = false;
            }
            if let Some(touched) = touched
                && tx.send(Trigger::Watch(touched)).is_err()
            {
                return;
            }
        }
    });
}
