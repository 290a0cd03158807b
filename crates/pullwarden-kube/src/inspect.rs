//! Reading what one pull depends on (`pullwarden can-pull`): a pod or a
//! ServiceAccount, the Secrets they name, and, for an image in OpenShift's
//! integrated registry, the API server's answer to "may this service account
//! pull from that project" (a SubjectAccessReview) with the bindings that
//! grant it. A handful of GETs, never a cluster-wide list. Never writes
//! anything but the SubjectAccessReview, which stores nothing.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use pullwarden_core::live::{LiveSecret, LiveServiceAccount};

use crate::cluster::{ClusterError, request_error};
use crate::convert::{live_secret, live_service_account};
use crate::retry::{RetryPolicy, retry};

/// What a pod says about its pulls.
#[derive(Clone, Debug)]
pub struct PodPulls {
    pub namespace: String,
    pub name: String,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
    /// `spec.imagePullSecrets`, in order.
    pub image_pull_secrets: Vec<String>,
    /// Every container image (init, regular, ephemeral).
    pub images: Vec<String>,
}

/// What one pull depends on, as read from the cluster.
#[derive(Clone, Debug, Default)]
pub struct PullContext {
    pub pod: Option<PodPulls>,
    /// The ServiceAccount, if it exists.
    pub service_account: Option<LiveServiceAccount>,
    /// The Secrets named by the pod or the ServiceAccount that exist.
    pub secrets: Vec<LiveSecret>,
}

async fn get_opt<K>(
    api: &Api<K>,
    name: &str,
    policy: &RetryPolicy,
    resource: &str,
    scope: &str,
) -> Result<Option<K>, ClusterError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match retry(policy, || api.get_opt(name)).await {
        Ok(found) => Ok(found),
        Err(e) => Err(request_error(&e, None, "get", resource, scope)),
    }
}

/// Reads a pod (when `pod` is given) or a ServiceAccount, and the Secrets
/// either names.
pub async fn pull_context(
    client: &Client,
    namespace: &str,
    service_account: Option<&str>,
    pod: Option<&str>,
    policy: &RetryPolicy,
) -> Result<PullContext, ClusterError> {
    let scope = format!("namespace {namespace}");
    let mut context = PullContext::default();
    if let Some(pod) = pod {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let Some(found) = get_opt(&pods, pod, policy, "pods", &scope).await? else {
            return Err(ClusterError::NotFound {
                what: format!("pod {namespace}/{pod}"),
            });
        };
        let spec = found.spec.unwrap_or_default();
        let images = spec
            .init_containers
            .iter()
            .flatten()
            .filter_map(|c| c.image.clone())
            .chain(spec.containers.iter().filter_map(|c| c.image.clone()))
            .chain(
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .filter_map(|c| c.image.clone()),
            )
            .collect();
        context.pod = Some(PodPulls {
            namespace: namespace.to_owned(),
            name: pod.to_owned(),
            service_account: spec
                .service_account_name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            image_pull_secrets: spec
                .image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .collect(),
            images,
        });
    }
    let sa_name = context
        .pod
        .as_ref()
        .map(|p| p.service_account.clone())
        .or_else(|| service_account.map(str::to_owned));
    if let Some(sa_name) = &sa_name {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        context.service_account = get_opt(&accounts, sa_name, policy, "serviceaccounts", &scope)
            .await?
            .map(live_service_account);
    }
    let mut names: Vec<String> = context
        .pod
        .iter()
        .flat_map(|p| p.image_pull_secrets.iter().cloned())
        .chain(
            context
                .service_account
                .iter()
                .flat_map(|sa| sa.image_pull_secrets.iter().cloned()),
        )
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in names {
        if let Some(secret) = get_opt(&secrets, &name, policy, "secrets", &scope).await? {
            context.secrets.push(live_secret(secret));
        }
    }
    Ok(context)
}

/// The API server's answer to "may `sa_namespace/sa_name` pull `stream`
/// from `project`" (verb `get` on `imagestreams/layers` in
/// `image.openshift.io`), and the bindings in `project` (and cluster-wide)
/// whose subjects include the service account and whose role allows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectAccess {
    pub allowed: bool,
    /// `RoleBinding project/name (ClusterRole system:image-puller)`, ...
    pub granted_by: Vec<String>,
}

pub async fn project_access(
    client: &Client,
    sa_namespace: &str,
    sa_name: &str,
    project: &str,
    stream: &str,
    policy: &RetryPolicy,
) -> Result<ProjectAccess, ClusterError> {
    let user = pullwarden_rbac::UserInfo::service_account(sa_namespace, sa_name);
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name),
            groups: Some(user.groups),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(project.to_owned()),
                verb: Some("get".to_owned()),
                group: Some("image.openshift.io".to_owned()),
                resource: Some("imagestreams".to_owned()),
                subresource: Some("layers".to_owned()),
                name: Some(stream.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let post = PostParams::default();
    let answer = retry(policy, || reviews.create(&post, &review))
        .await
        .map_err(|e| request_error(&e, None, "create", "subjectaccessreviews", "cluster scope"))?;
    let allowed = answer.status.is_some_and(|s| s.allowed);

    // Which bindings grant it: the RBAC evaluator (proven against real
    // SubjectAccessReviews) over the cluster's RBAC objects.
    let policy = crate::rbac::read_rbac(
        client,
        &crate::ReadOptions {
            retry: *policy,
            ..crate::ReadOptions::default()
        },
    )
    .await?;
    let mut granted_by = granting_bindings(&policy, sa_namespace, sa_name, project, stream);
    granted_by.sort();
    Ok(ProjectAccess {
        allowed,
        granted_by,
    })
}

/// The bindings of `policy` that let `sa_namespace/sa_name` pull `stream`
/// from `project`, as `RoleBinding ns/name (ClusterRole role)`.
pub fn granting_bindings(
    policy: &pullwarden_rbac::Policy,
    sa_namespace: &str,
    sa_name: &str,
    project: &str,
    stream: &str,
) -> Vec<String> {
    let decision = pullwarden_rbac::Authorizer::new(policy).authorize(
        &pullwarden_rbac::UserInfo::service_account(sa_namespace, sa_name),
        &pullwarden_rbac::ResourceRequest::pull(project, Some(stream)),
    );
    let mut granted: Vec<String> = decision
        .allowed_by
        .iter()
        .map(|allowed| {
            format!(
                "{} ({} {})",
                allowed.binding,
                allowed.role.kind(),
                allowed.role.name()
            )
        })
        .collect();
    granted.sort();
    granted.dedup();
    granted
}
