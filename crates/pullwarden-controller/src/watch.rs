//! The watches that trigger a reconcile: metadata only, cluster-wide.

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc::UnboundedSender;

use crate::{Level, Log, Sink, Trigger};

/// Starts one task per watch. Managed Secrets always have one of the two
/// docker-config types, so the two type-filtered Secret watches also cover
/// them (and catch a foreign Secret taking a wanted name).
pub(crate) fn start(client: &kube::Client, tx: &UnboundedSender<Trigger>, log: &Sink) {
    let managed = format!(
        "{}={}",
        pullwarden_core::live::MANAGED_BY_LABEL,
        pullwarden_core::live::MANAGED_BY_VALUE
    );
    spawn::<Namespace>(
        "namespaces",
        meta(client),
        watcher::Config::default(),
        tx,
        log,
    );
    spawn::<ServiceAccount>(
        "serviceaccounts",
        meta(client),
        watcher::Config::default(),
        tx,
        log,
    );
    for kind in ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"] {
        spawn::<Secret>(
            "secrets",
            meta(client),
            watcher::Config::default().fields(&format!("type={kind}")),
            tx,
            log,
        );
    }
    spawn::<RoleBinding>(
        "rolebindings",
        meta(client),
        watcher::Config::default().labels(&managed),
        tx,
        log,
    );
}

/// A metadata-only client of `K`, cluster-wide.
fn meta<K>(client: &kube::Client) -> Api<PartialObjectMeta<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    Api::all(client.clone())
}

fn spawn<K>(
    what: &'static str,
    api: Api<PartialObjectMeta<K>>,
    config: watcher::Config,
    tx: &UnboundedSender<Trigger>,
    log: &Sink,
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
        while let Some(event) = stream.next().await {
            let fire = match event {
                Ok(Event::Apply(_) | Event::Delete(_)) => true,
                // After a re-list (a watch that expired), events may have
                // been missed: reconcile. The first list is the start's.
                Ok(Event::InitDone) => std::mem::replace(&mut listed_once, true),
                Ok(Event::Init | Event::InitApply(_)) => false,
                Err(e) => {
                    if !failing {
                        log(
                            Log::new(Level::Warn, format!("watch failed (retrying): {e}"))
                                .field("watch", &what),
                        );
                    }
                    failing = true;
                    continue;
                }
            };
            if failing {
                log(Log::new(Level::Info, "watch resumed").field("watch", &what));
                failing = false;
            }
            if fire && tx.send(Trigger::Watch).is_err() {
                return;
            }
        }
    });
}
