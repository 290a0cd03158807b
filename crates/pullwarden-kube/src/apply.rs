//! The writing half: executes a [`Plan`] against the cluster.
//!
//! Invariants: it writes only what the plan says; every update and delete is
//! guarded by the UID and resourceVersion the plan saw (a moved object fails
//! that change, it is never overwritten); ServiceAccount lists are edited by
//! read-modify-write with the resourceVersion precondition, keeping every
//! entry pullwarden did not add, re-reading and redoing on 409 Conflict. No
//! client-side apply (no `last-applied-configuration` holding secret data).
//!
//! Order: Secrets, then created ServiceAccounts, then links and unlinks, then
//! RoleBindings (a role change creates the new binding before deleting the old
//! one, so access never lapses), then prune deletes. Within a phase changes run
//! concurrently, bounded by [`ApplyOptions::concurrency`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{LocalObjectReference, ObjectReference, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, Resource};

/// The field manager of every write, so `managedFields` tell pullwarden's
/// writes from others' (plain create/replace, never client-side apply).
pub const FIELD_MANAGER: &str = "pullwarden";

static POST: std::sync::LazyLock<PostParams> = std::sync::LazyLock::new(|| PostParams {
    dry_run: false,
    field_manager: Some(FIELD_MANAGER.to_string()),
});
use pullwarden_core::live::{
    LINKS_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, RbacSubject, SOURCE_ANNOTATION,
    WORKSPACE_LABEL,
};
use pullwarden_core::plan::links::edit_list;
use pullwarden_core::plan::{
    self, Action, Assumed, Change, Desired, Detail, LinkDiff, ObjectKind, Plan, RoleBindingDiff,
    SecretDiff,
};

/// How apply runs.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Changes in flight at once within a phase.
    pub concurrency: usize,
    /// How often a ServiceAccount edit is redone after a 409 Conflict.
    pub max_conflict_retries: u32,
    /// Attempts of one request on 429, 5xx, transport errors and timeouts
    /// (with backoff), and the bound on each attempt.
    pub retry: crate::retry::RetryPolicy,
    /// The state the plan was computed from. When given, a link edit first
    /// tries a merge patch built from the listed ServiceAccount, guarded by its
    /// resourceVersion (no GET); a 409 falls back to read-modify-write.
    pub listed: Option<std::sync::Arc<pullwarden_core::live::LiveState>>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_conflict_retries: 8,
            retry: crate::retry::RetryPolicy::default(),
            listed: None,
        }
    }
}

type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Called with (namespace, name) between reading a ServiceAccount and writing it.
pub type ServiceAccountHook = Arc<dyn Fn(String, String) -> HookFuture + Send + Sync>;

/// Test seams. A hook runs between pullwarden's read and its write, so tests
/// can force another writer into exactly that window.
#[derive(Clone, Default)]
pub struct Hooks {
    pub before_service_account_write: Option<ServiceAccountHook>,
}

/// What happened to one change of the plan (by its index in `plan.changes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub index: usize,
    pub status: OutcomeStatus,
    /// 409 Conflicts met on ServiceAccount writes and redone.
    pub conflicts_retried: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeStatus {
    Done,
    /// With the API's reason; never a credential.
    Failed(String),
    /// Not attempted because a change it depends on failed.
    Skipped(String),
}

/// Executes `plan`. `desired` supplies the Secret contents (the plan holds none).
/// `progress` is called once per finished change.
pub async fn apply(
    client: &Client,
    plan: &Plan,
    desired: &Desired,
    options: &ApplyOptions,
    hooks: &Hooks,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> Vec<Outcome> {
    let cx = Cx {
        client: client.clone(),
        workspace: plan.workspace.clone(),
        options: options.clone(),
        hooks: hooks.clone(),
    };
    // The planner decided the order and the dependencies; apply only follows them.
    let computed;
    let schedule = if plan.schedule.phases.iter().map(Vec::len).sum::<usize>() == plan.changes.len()
    {
        &plan.schedule
    } else {
        // A plan built by hand (not by the planner): schedule it the planner's way.
        computed = pullwarden_core::plan::schedule::schedule(&plan.changes);
        &computed
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    for phase in &schedule.phases {
        let mut runnable = Vec::new();
        for &index in phase {
            let failed_need = schedule.needs.get(&index).and_then(|needs| {
                needs.iter().find(|need| {
                    outcomes
                        .iter()
                        .any(|o| o.index == **need && o.status != OutcomeStatus::Done)
                })
            });
            if let Some(&need) = failed_need {
                let outcome = Outcome {
                    index,
                    status: OutcomeStatus::Skipped(format!(
                        "{} did not succeed",
                        pullwarden_core::render::change_title(&plan.changes[need])
                    )),
                    conflicts_retried: 0,
                };
                progress(&outcome);
                outcomes.push(outcome);
            } else {
                runnable.push(index);
            }
        }
        let results: Vec<Outcome> = futures::stream::iter(runnable)
            .map(|index| {
                let cx = &cx;
                async move {
                    let (status, conflicts_retried) =
                        cx.execute(&plan.changes[index], desired).await;
                    let outcome = Outcome {
                        index,
                        status,
                        conflicts_retried,
                    };
                    progress(&outcome);
                    outcome
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        outcomes.extend(results);
    }
    outcomes.sort_by_key(|o| o.index);
    outcomes
}

struct Cx {
    client: Client,
    workspace: String,
    options: ApplyOptions,
    hooks: Hooks,
}

/// The listed version of an object was not the current one (409).
struct Conflicted;

/// A failed request, already reduced to something to print.
struct Failure(String);

impl From<kube::Error> for Failure {
    fn from(error: kube::Error) -> Self {
        Failure(describe(&error))
    }
}

/// A failed request in words. Only the status code and reason of an API
/// error are shown (a webhook's message can echo the object it refused, and
/// for a Secret that is its data); other failures are classified, never
/// printed (a credential plugin's output can hold a token).
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status)
            if status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .any(|c| c.reason == "NamespaceTerminating") =>
        {
            "the namespace is being deleted (Terminating): nothing new can be created in it"
                .to_string()
        }
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                "no reason given".to_string()
            } else {
                pullwarden_core::escape::text(&status.reason)
            };
            let fields = crate::cluster::status_fields(status);
            let fields = if fields.is_empty() {
                String::new()
            } else {
                format!(" (fields: {})", fields.join(", "))
            };
            format!(
                "the API server refused it: HTTP {} {reason}{fields}",
                status.code
            )
        }
        other if crate::retry::is_auth_failure(other) => format!(
            "the kubeconfig's credential plugin failed: {}",
            crate::cluster::credential_plugin_reason(other)
        ),
        other if crate::retry::is_timeout(other) => format!(
            "the API server did not answer within {:?} (--request-timeout); the write may or may not have landed: plan again",
            crate::cluster::timeout_of(other)
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "the API server could not be reached or did not answer".to_string()
        }
        _ => "the request failed before reaching the API server".to_string(),
    }
}

/// A `managedFields` entry for pullwarden, sent with a link write to a
/// ServiceAccount that has none (`None` when the write leaves nothing of
/// pullwarden's to own).
///
/// The API server tracks no Update of an object whose `managedFields` are
/// empty: apimachinery's `managedfields/internal/skipnonapplied.go` ("If the
/// operation is update, skip tracking managed fields, since we already know
/// managed fields is empty"). A ServiceAccount created without fields (the
/// `default` one kube-controller-manager creates, for one) has none, so
/// without this no writer of it would ever be recorded and the one that keeps
/// undoing a link could not be named. A request that carries `managedFields`
/// is tracked from then on, for every later writer too.
fn seed_managed_fields(pulls: bool, annotated: bool) -> Option<ManagedFieldsEntry> {
    let mut fields = serde_json::Map::new();
    if pulls {
        fields.insert("f:imagePullSecrets".into(), serde_json::json!({}));
    }
    if annotated {
        fields.insert(
            "f:metadata".into(),
            serde_json::json!({ "f:annotations": { format!("f:{LINKS_ANNOTATION}"): {} } }),
        );
    }
    (!fields.is_empty()).then(|| ManagedFieldsEntry {
        manager: Some(FIELD_MANAGER.to_owned()),
        operation: Some("Update".to_owned()),
        api_version: Some("v1".to_owned()),
        fields_type: Some("FieldsV1".to_owned()),
        fields_v1: Some(FieldsV1(serde_json::Value::Object(fields))),
        ..ManagedFieldsEntry::default()
    })
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

impl Cx {
    /// Runs one request under the one retry policy ([`crate::retry`]).
    async fn retry<T, F, Fut>(&self, call: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        crate::retry::retry(&self.options.retry, call).await
    }

    /// One attempt, bounded by the request timeout, for loops that decide
    /// themselves what to redo.
    async fn once<T, F, Fut>(&self, call: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let policy = crate::retry::RetryPolicy {
            max_attempts: 1,
            ..self.options.retry
        };
        crate::retry::retry(&policy, call).await
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
            (WORKSPACE_LABEL.to_string(), self.workspace.clone()),
        ])
    }

    fn mark(&self, meta: &mut ObjectMeta, source: Option<&String>) {
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .extend(self.labels());
        if let Some(source) = source {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(SOURCE_ANNOTATION.to_string(), source.clone());
        }
    }

    async fn execute(&self, change: &Change, desired: &Desired) -> (OutcomeStatus, u32) {
        let result = match (&change.detail, change.action) {
            (_, Action::Delete) => self.delete(change).await.map(|()| 0),
            (Detail::Secret(diff), _) => self.write_secret(change, diff, desired).await.map(|()| 0),
            (Detail::ServiceAccount, _) => self.create_service_account(change).await.map(|()| 0),
            (Detail::Links(links), _) => self.relink(change, links).await,
            (Detail::RoleBinding(diff), _) => {
                self.write_role_binding(change, diff).await.map(|()| 0)
            }
            (Detail::Pruned, _) => Err(Failure("a pruned object with no delete".into())),
        };
        match result {
            Ok(conflicts) => (OutcomeStatus::Done, conflicts),
            Err(Failure(reason)) => (OutcomeStatus::Failed(reason), 0),
        }
    }

    /// Fails unless the live object is the one the plan saw.
    fn check_assumed(meta: &ObjectMeta, assumed: Option<&Assumed>) -> Result<(), Failure> {
        let Some(assumed) = assumed else {
            return Ok(());
        };
        let uid = meta.uid.as_deref().unwrap_or("");
        let rv = meta.resource_version.as_deref().unwrap_or("");
        if uid != assumed.uid || rv != assumed.resource_version {
            return Err(Failure(
                "changed since it was planned (UID or resourceVersion differs); plan again".into(),
            ));
        }
        Ok(())
    }

    async fn write_secret(
        &self,
        change: &Change,
        diff: &SecretDiff,
        desired: &Desired,
    ) -> Result<(), Failure> {
        let want = desired
            .secrets
            .get(&(change.namespace.clone(), change.name.clone()))
            .ok_or_else(|| Failure("no desired content for this Secret".into()))?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &change.namespace);
        let data = BTreeMap::from([(
            want.format.data_key().to_string(),
            // The one place a credential leaves the process: into the API request.
            ByteString(want.data().expose().as_bytes().to_vec()),
        )]);
        let fresh = || {
            let mut meta = ObjectMeta {
                name: Some(change.name.clone()),
                namespace: Some(change.namespace.clone()),
                ..ObjectMeta::default()
            };
            self.mark(&mut meta, change.source.as_ref());
            Secret {
                metadata: meta,
                type_: Some(diff.secret_type.clone()),
                data: Some(data.clone()),
                ..Secret::default()
            }
        };
        match change.action {
            Action::Create => {
                let secret = fresh();
                self.create_ours(&api, &secret, &change.name, same_secret)
                    .await?;
            }
            Action::Replace => {
                self.delete_guarded(&api, &change.name, change.assumed.as_ref())
                    .await?;
                let secret = fresh();
                if let Err(e) = self
                    .create_ours(&api, &secret, &change.name, same_secret)
                    .await
                {
                    return Err(Failure(format!(
                        "DELETED BUT NOT RECREATED ({}): pods cannot pull with it until apply is run again",
                        e.0
                    )));
                }
            }
            _ => {
                let mut live = self.retry(|| api.get(&change.name)).await?;
                Self::check_assumed(live.meta(), change.assumed.as_ref())?;
                let content_changed = diff.unreadable_live_data
                    || diff.previous_type.is_some()
                    || diff
                        .entries
                        .iter()
                        .any(|e| e.status != plan::EntryStatus::Unchanged);
                self.mark(&mut live.metadata, change.source.as_ref());
                if content_changed {
                    live.data = Some(data.clone());
                    live.string_data = None;
                }
                self.replace_ours(&api, &change.name, &live, same_secret)
                    .await?;
            }
        }
        Ok(())
    }

    async fn create_service_account(&self, change: &Change) -> Result<(), Failure> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &change.namespace);
        let mut meta = ObjectMeta {
            name: Some(change.name.clone()),
            namespace: Some(change.namespace.clone()),
            ..ObjectMeta::default()
        };
        self.mark(&mut meta, change.source.as_ref());
        let sa = ServiceAccount {
            metadata: meta,
            ..ServiceAccount::default()
        };
        match self.retry(|| api.create(&POST, &sa)).await {
            Ok(_) => Ok(()),
            // Created meanwhile (by a rerun or someone else): linking works on it.
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Read, keep every entry pullwarden did not add, add/remove only ours,
    /// record ours, write with the resourceVersion; on 409 redo from the read.
    async fn relink(&self, change: &Change, links: &LinkDiff) -> Result<u32, Failure> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &change.namespace);
        let mut conflicts = 0;
        let mut transient = 0;
        match self.relink_listed(&api, change, links).await {
            Some(Ok(())) => return Ok(0),
            Some(Err(Conflicted)) => conflicts += 1,
            None => {}
        }
        loop {
            let mut sa = match self.retry(|| api.get(&change.name)).await {
                Ok(sa) => sa,
                Err(e) if status_code(&e) == Some(404) => {
                    return Err(Failure("the ServiceAccount no longer exists".into()));
                }
                Err(e) => return Err(e.into()),
            };
            // The plan was computed against this ServiceAccount: a recreated one
            // (another UID) is not the one it saw.
            if let Some(assumed) = &change.assumed
                && sa.metadata.uid.as_deref() != Some(assumed.uid.as_str())
            {
                return Err(Failure(
                    "the ServiceAccount was deleted and recreated since it was planned; plan again"
                        .into(),
                ));
            }
            if let Some(hook) = &self.hooks.before_service_account_write {
                hook(change.namespace.clone(), change.name.clone()).await;
            }
            let annotations_read = sa.metadata.annotations.clone().unwrap_or_default();
            let previous = pullwarden_core::live::links::records(&annotations_read)
                .remove(&self.workspace)
                .unwrap_or_default();
            let current: Vec<String> = sa
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect();
            let (pull_names, pull_record) = edit_list(
                &current,
                &links.pull_added,
                &links.pull_removed,
                &previous.pull,
                &links.record.pull,
            );
            sa.image_pull_secrets = Some(
                pull_names
                    .into_iter()
                    .map(|name| LocalObjectReference { name })
                    .collect(),
            );
            // `secrets` entries are full object references: keep them as they are.
            let current: Vec<String> = sa
                .secrets
                .iter()
                .flatten()
                .filter_map(|r| r.name.clone())
                .collect();
            let (mount_names, mount_record) = edit_list(
                &current,
                &links.mount_added,
                &links.mount_removed,
                &previous.mount,
                &links.record.mount,
            );
            let mounts = sa.secrets.get_or_insert_with(Vec::new);
            mounts.retain(|r| r.name.as_ref().is_none_or(|n| mount_names.contains(n)));
            for name in mount_names.iter().filter(|n| !current.contains(n)) {
                mounts.push(ObjectReference {
                    name: Some(name.clone()),
                    ..ObjectReference::default()
                });
            }
            let record = plan::LinkRecord {
                pull: pull_record,
                mount: mount_record,
            };

            let annotations = sa.metadata.annotations.get_or_insert_with(BTreeMap::new);
            match pullwarden_core::live::links::encode_with(
                &annotations_read,
                &self.workspace,
                &record,
            ) {
                Some(value) => {
                    annotations.insert(LINKS_ANNOTATION.to_string(), value);
                }
                None => {
                    annotations.remove(LINKS_ANNOTATION);
                }
            }
            if sa
                .metadata
                .managed_fields
                .as_ref()
                .is_none_or(Vec::is_empty)
            {
                let pulls = sa
                    .image_pull_secrets
                    .as_ref()
                    .is_some_and(|l| !l.is_empty());
                let annotated = sa
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(LINKS_ANNOTATION));
                sa.metadata.managed_fields = seed_managed_fields(pulls, annotated).map(|e| vec![e]);
            }
            // `replace` sends the resourceVersion we read: a write in between is a 409.
            match self.once(|| api.replace(&change.name, &POST, &sa)).await {
                Ok(_) => return Ok(conflicts),
                Err(e)
                    if status_code(&e) == Some(409)
                        && conflicts < self.options.max_conflict_retries =>
                {
                    conflicts += 1;
                }
                Err(e)
                    if crate::retry::is_transient(&e)
                        && transient < self.options.retry.max_attempts =>
                {
                    // Not a conflict: back off exponentially, like every other request.
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(transient)).await;
                    transient += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The first attempt of a link edit without a GET: a JSON merge patch of
    /// `imagePullSecrets` (replaced whole: it is atomic) and of this
    /// workspace's record, built from the ServiceAccount as listed for the plan
    /// and carrying its resourceVersion, so the server refuses it (409) if the
    /// object moved. `None` when not applicable (no listed state, another
    /// version listed, `secrets` entries to edit: those are full object
    /// references this state does not keep); then read-modify-write runs.
    async fn relink_listed(
        &self,
        api: &Api<ServiceAccount>,
        change: &Change,
        links: &LinkDiff,
    ) -> Option<Result<(), Conflicted>> {
        let listed = self.options.listed.as_ref()?;
        let assumed = change.assumed.as_ref()?;
        if !links.mount_added.is_empty() || !links.mount_removed.is_empty() {
            return None;
        }
        let sa = listed.service_accounts.iter().find(|sa| {
            sa.meta.namespace == change.namespace
                && sa.meta.name == change.name
                && sa.meta.uid == assumed.uid
                && sa.meta.resource_version == assumed.resource_version
        })?;
        if let Some(hook) = &self.hooks.before_service_account_write {
            hook(change.namespace.clone(), change.name.clone()).await;
        }
        let previous = plan::link_records(&sa.meta)
            .remove(&self.workspace)
            .unwrap_or_default();
        let (pulls, pull_record) = edit_list(
            &sa.image_pull_secrets,
            &links.pull_added,
            &links.pull_removed,
            &previous.pull,
            &links.record.pull,
        );
        let record = plan::LinkRecord {
            pull: pull_record,
            mount: links
                .record
                .mount
                .intersection(&previous.mount)
                .cloned()
                .collect(),
        };
        let annotation = plan::links_annotation(&sa.meta, &self.workspace, &record);
        let seed = if sa.meta.managers.is_empty() {
            seed_managed_fields(!pulls.is_empty(), annotation.is_some())
        } else {
            None
        };
        let mut patch = serde_json::json!({
            "metadata": {
                "resourceVersion": assumed.resource_version,
                "annotations": { LINKS_ANNOTATION: annotation },
            },
            "imagePullSecrets": pulls.iter().map(|n| serde_json::json!({ "name": n })).collect::<Vec<_>>(),
        });
        if let Some(seed) = seed.and_then(|e| serde_json::to_value(e).ok()) {
            patch["metadata"]["managedFields"] = serde_json::json!([seed]);
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        match api
            .patch(&change.name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Some(Ok(())),
            Err(e) if status_code(&e) == Some(409) => Some(Err(Conflicted)),
            // Anything else: the read-modify-write path decides, with its retries.
            Err(_) => None,
        }
    }

    async fn write_role_binding(
        &self,
        change: &Change,
        diff: &RoleBindingDiff,
    ) -> Result<(), Failure> {
        let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &change.namespace);
        let subjects: Vec<Subject> = diff.subjects.iter().map(rbac_subject).collect();
        match change.action {
            Action::Create | Action::Replace => {
                let mut meta = ObjectMeta {
                    name: Some(change.name.clone()),
                    namespace: Some(change.namespace.clone()),
                    ..ObjectMeta::default()
                };
                self.mark(&mut meta, change.source.as_ref());
                let binding = RoleBinding {
                    metadata: meta,
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "ClusterRole".into(),
                        name: diff.role.clone(),
                    },
                    subjects: Some(subjects),
                };
                self.create_ours(&api, &binding, &change.name, same_binding)
                    .await?;
                // The new binding exists; only now is the old one removed.
                if let Some(old) = &diff.replaces {
                    self.delete_guarded(&api, &old.name, Some(&old.assumed))
                        .await?;
                }
            }
            _ => {
                let mut live = self.retry(|| api.get(&change.name)).await?;
                Self::check_assumed(live.meta(), change.assumed.as_ref())?;
                self.mark(&mut live.metadata, change.source.as_ref());
                live.subjects = Some(subjects);
                self.replace_ours(&api, &change.name, &live, same_binding)
                    .await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, change: &Change) -> Result<(), Failure> {
        match change.kind {
            ObjectKind::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &change.namespace);
                self.delete_guarded(&api, &change.name, change.assumed.as_ref())
                    .await
            }
            ObjectKind::RoleBinding => {
                let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &change.namespace);
                self.delete_guarded(&api, &change.name, change.assumed.as_ref())
                    .await
            }
            ObjectKind::ServiceAccount => {
                Err(Failure("pullwarden never deletes ServiceAccounts".into()))
            }
        }
    }

    /// Creates an object. A 409 `AlreadyExists` may be our own first attempt
    /// having landed (its response lost), or a concurrent apply of the same
    /// workspace: it counts as done only when the object there carries this
    /// workspace's labels *and* the content this plan wants (`same_content`).
    /// Anything else (other content, forged labels, another registry) fails
    /// the change: reporting it created would be a lie.
    async fn create_ours<K>(
        &self,
        api: &Api<K>,
        object: &K,
        name: &str,
        same_content: fn(&K, &K) -> bool,
    ) -> Result<(), Failure>
    where
        K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match self.retry(|| api.create(&POST, object)).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => {
                let existing = self.retry(|| api.get(name)).await?;
                let labels = existing.meta().labels.clone().unwrap_or_default();
                let ours = labels.get(MANAGED_BY_LABEL).map(String::as_str)
                    == Some(MANAGED_BY_VALUE)
                    && labels.get(WORKSPACE_LABEL) == Some(&self.workspace)
                    && object.meta().labels.as_ref() == Some(&labels);
                let source = |k: &K| {
                    k.meta()
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(SOURCE_ANNOTATION).cloned())
                };
                if !ours {
                    Err(Failure(
                        "it was created by someone else since it was planned; plan again".into(),
                    ))
                } else if source(&existing) != source(object) || !same_content(&existing, object) {
                    Err(Failure(
                        "it already exists with this workspace's labels but other content (another apply running at the same time?); plan again".into(),
                    ))
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Updates an object to `object`, which carries the resourceVersion it
    /// was read at. A 409 Conflict may be this write's own earlier attempt
    /// having landed with its response lost (a connection reset, a cut-off
    /// body), the retry then refused because the version moved: the object is
    /// read again and the change counts as done only when it holds exactly
    /// what this write wanted (same UID, labels, annotations and
    /// `same_content`). Anything else is someone else's write since the read:
    /// the change fails, nothing is overwritten.
    async fn replace_ours<K>(
        &self,
        api: &Api<K>,
        name: &str,
        object: &K,
        same_content: fn(&K, &K) -> bool,
    ) -> Result<(), Failure>
    where
        K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match self.retry(|| api.replace(name, &POST, object)).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => {
                let live = self.retry(|| api.get(name)).await?;
                if is_written(&live, object, same_content) {
                    Ok(())
                } else {
                    Err(Failure(
                        "changed since it was read (409 Conflict on update); plan again".into(),
                    ))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes only the object the plan saw (UID and resourceVersion
    /// preconditions). Already gone counts as done.
    async fn delete_guarded<K>(
        &self,
        api: &Api<K>,
        name: &str,
        assumed: Option<&Assumed>,
    ) -> Result<(), Failure>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let params = DeleteParams {
            preconditions: assumed.map(|a| Preconditions {
                uid: Some(a.uid.clone()),
                resource_version: Some(a.resource_version.clone()),
            }),
            ..DeleteParams::default()
        };
        match self.retry(|| api.delete(name, &params)).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Err(Failure(
                "changed since it was planned (delete precondition failed); plan again".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `live` is `written` as the server stores it: same object (UID),
/// same labels and annotations, same content.
fn is_written<K: Resource>(live: &K, written: &K, same_content: fn(&K, &K) -> bool) -> bool {
    let (l, w) = (live.meta(), written.meta());
    l.uid.is_some()
        && l.uid == w.uid
        && l.labels.clone().unwrap_or_default() == w.labels.clone().unwrap_or_default()
        && l.annotations.clone().unwrap_or_default() == w.annotations.clone().unwrap_or_default()
        && same_content(live, written)
}

/// Whether a Secret found in place of one we create holds what we would
/// have written (type and data; compared, never printed).
fn same_secret(existing: &Secret, wanted: &Secret) -> bool {
    existing.type_ == wanted.type_
        && existing.data.clone().unwrap_or_default() == wanted.data.clone().unwrap_or_default()
        && existing.string_data.is_none()
}

/// Whether a RoleBinding found in place of one we create grants what ours
/// would (role and subjects).
fn same_binding(existing: &RoleBinding, wanted: &RoleBinding) -> bool {
    let subjects = |rb: &RoleBinding| {
        let mut list: Vec<(String, String, Option<String>)> = rb
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.clone(), s.name.clone(), s.namespace.clone()))
            .collect();
        list.sort();
        list
    };
    existing.role_ref.kind == wanted.role_ref.kind
        && existing.role_ref.name == wanted.role_ref.name
        && subjects(existing) == subjects(wanted)
}

fn rbac_subject(subject: &RbacSubject) -> Subject {
    let api_group =
        (subject.kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".to_string());
    Subject {
        kind: subject.kind.clone(),
        name: subject.name.clone(),
        namespace: subject.namespace.clone(),
        api_group,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, cause: Option<(&str, &str)>) -> kube::Error {
        let mut status = kube::core::Status::failure("webhook said: password=canary-apply", reason)
            .with_code(code);
        if let Some((cause_reason, field)) = cause {
            status.details = Some(kube::core::response::StatusDetails {
                causes: vec![kube::core::response::StatusCause {
                    reason: cause_reason.into(),
                    message: "canary-apply-cause".into(),
                    field: field.into(),
                }],
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                retry_after_seconds: 0,
            });
        }
        kube::Error::Api(status.boxed())
    }

    /// #16.11: a create in a namespace being deleted says so (not "403
    /// Forbidden"); an admission denial names the fields; no message of the
    /// server is quoted.
    #[test]
    fn refusals_say_why_without_quoting_the_server() {
        let terminating = describe(&api_error(
            403,
            "Forbidden",
            Some(("NamespaceTerminating", "")),
        ));
        assert!(
            terminating.contains("being deleted (Terminating)"),
            "{terminating}"
        );
        let invalid = describe(&api_error(
            422,
            "Invalid",
            Some(("FieldValueInvalid", "subjects[0].name")),
        ));
        assert_eq!(
            invalid,
            "the API server refused it: HTTP 422 Invalid (fields: subjects[0].name)"
        );
        for text in [
            terminating,
            invalid,
            describe(&api_error(500, "InternalError", None)),
        ] {
            assert!(!text.contains("canary"), "{text}");
        }
    }

    #[test]
    fn a_409_create_is_done_only_with_the_same_content() {
        let secret = |data: &[u8], ty: &str| Secret {
            type_: Some(ty.into()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(data.to_vec()),
            )])),
            ..Secret::default()
        };
        let ours = secret(b"{}", "kubernetes.io/dockerconfigjson");
        assert!(same_secret(
            &secret(b"{}", "kubernetes.io/dockerconfigjson"),
            &ours
        ));
        assert!(!same_secret(
            &secret(b"{\"auths\":{}}", "kubernetes.io/dockerconfigjson"),
            &ours
        ));
        assert!(!same_secret(
            &secret(b"{}", "kubernetes.io/dockercfg"),
            &ours
        ));
        let binding = |role: &str, subject: &str| RoleBinding {
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "Group".into(),
                name: subject.into(),
                ..Subject::default()
            }]),
            ..RoleBinding::default()
        };
        let wanted = binding("system:image-puller", "system:serviceaccounts:a");
        assert!(same_binding(
            &binding("system:image-puller", "system:serviceaccounts:a"),
            &wanted
        ));
        assert!(!same_binding(
            &binding("system:image-pusher", "system:serviceaccounts:a"),
            &wanted
        ));
        assert!(!same_binding(
            &binding("system:image-puller", "system:authenticated"),
            &wanted
        ));
    }

    /// #15: an update whose response was lost counts as done only when the
    /// object holds exactly what it wrote.
    #[test]
    fn an_update_met_by_409_is_done_only_when_the_object_holds_what_it_wrote() {
        let secret = |uid: &str, data: &[u8], label: &str| {
            let mut s = Secret {
                type_: Some("kubernetes.io/dockerconfigjson".into()),
                data: Some(BTreeMap::from([(
                    ".dockerconfigjson".to_string(),
                    ByteString(data.to_vec()),
                )])),
                ..Secret::default()
            };
            s.metadata.uid = Some(uid.into());
            s.metadata.labels = Some(BTreeMap::from([(
                WORKSPACE_LABEL.to_string(),
                label.into(),
            )]));
            s.metadata.resource_version = Some("1".into());
            s
        };
        let written = secret("u1", b"{}", "w");
        let mut landed = written.clone();
        landed.metadata.resource_version = Some("2".into());
        assert!(is_written(&landed, &written, same_secret));
        assert!(!is_written(
            &secret("u2", b"{}", "w"),
            &written,
            same_secret
        ));
        assert!(!is_written(
            &secret("u1", b"{\"a\":1}", "w"),
            &written,
            same_secret
        ));
        assert!(!is_written(
            &secret("u1", b"{}", "other"),
            &written,
            same_secret
        ));
        let mut annotated = landed.clone();
        annotated.metadata.annotations = Some(BTreeMap::from([("x".into(), "y".into())]));
        assert!(!is_written(&annotated, &written, same_secret));
    }
}
