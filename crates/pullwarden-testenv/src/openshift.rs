//! OpenShift's pull behaviour, reproduced on a plain API server: its image
//! roles, its projects, and its service-account controller's dockercfg secrets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rand::Rng as _;
use serde_json::json;

pub const IMAGE_PULLER_ROLE: &str = "system:image-puller";
pub const IMAGE_PUSHER_ROLE: &str = "system:image-pusher";
pub const IMAGE_BUILDER_ROLE: &str = "system:image-builder";
/// Field manager of OpenShift's image-pull-secret service-account controller.
pub const OPENSHIFT_SA_CONTROLLER_MANAGER: &str =
    "openshift.io/image-registry-pull-secrets_service-account-controller";
/// ServiceAccount annotation naming its OpenShift dockercfg secret.
pub const PULL_SECRET_REF_ANNOTATION: &str = "openshift.io/internal-registry-pull-secret-ref";
/// Secret annotation naming the ServiceAccount an OpenShift dockercfg secret is for.
pub const SECRET_SA_ANNOTATION: &str = "openshift.io/internal-registry-auth-token.service-account";

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const REGISTRIES: [&str; 2] = [
    "image-registry.openshift-image-registry.svc:5000",
    "image-registry.openshift-image-registry.svc.cluster.local:5000",
];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// OpenShift's image ClusterRoles and their rules.
pub fn image_roles() -> Vec<ClusterRole> {
    let image = ["", "image.openshift.io"];
    let build = ["", "build.openshift.io"];
    let role = |name: &str, rules: Vec<PolicyRule>| ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        rules: Some(rules),
        ..Default::default()
    };
    vec![
        role(
            IMAGE_PULLER_ROLE,
            vec![rule(&image, &["imagestreams/layers"], &["get"])],
        ),
        role(
            IMAGE_PUSHER_ROLE,
            vec![rule(&image, &["imagestreams/layers"], &["get", "update"])],
        ),
        role(
            IMAGE_BUILDER_ROLE,
            vec![
                rule(&image, &["imagestreams/layers"], &["get", "update"]),
                rule(&image, &["imagestreams"], &["create"]),
                rule(&build, &["builds/details"], &["update"]),
                rule(&build, &["builds"], &["get"]),
            ],
        ),
    ]
}

/// Creates each image role only if absent; an existing one is left as it is.
pub async fn install_roles(admin: &Client) -> Result<()> {
    let api: Api<ClusterRole> = Api::all(admin.clone());
    for role in image_roles() {
        match api.create(&PostParams::default(), &role).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e).context(format!("creating ClusterRole {}", role.name_any())),
        }
    }
    Ok(())
}

fn object_meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

fn role_binding(name: &str, role: &str, subject: Subject) -> RoleBinding {
    RoleBinding {
        metadata: object_meta(name),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.to_owned()),
            kind: "ClusterRole".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(vec![subject]),
    }
}

/// Creates a project: the namespace, and when simulating OpenShift, what its
/// project template and controllers add.
pub async fn create_project(admin: &Client, ns: &str, simulate: bool) -> Result<()> {
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: object_meta(ns),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    if !simulate {
        return Ok(());
    }
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    for sa in ["default", "builder"] {
        sas.create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: object_meta(sa),
                ..Default::default()
            },
        )
        .await?;
    }
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), ns);
    let pullers = Subject {
        kind: "Group".to_owned(),
        name: format!("system:serviceaccounts:{ns}"),
        api_group: Some(RBAC_GROUP.to_owned()),
        namespace: None,
    };
    let builder = Subject {
        kind: "ServiceAccount".to_owned(),
        name: "builder".to_owned(),
        namespace: Some(ns.to_owned()),
        api_group: None,
    };
    for binding in [
        role_binding("system:image-pullers", IMAGE_PULLER_ROLE, pullers),
        role_binding("system:image-builders", IMAGE_BUILDER_ROLE, builder),
    ] {
        bindings.create(&PostParams::default(), &binding).await?;
    }
    Ok(())
}

/// Asks the authorizer whether `sa_ns/sa` may `get imagestreams/layers` in `image_ns`.
pub async fn can_pull(admin: &Client, sa_ns: &str, sa: &str, image_ns: &str) -> Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{sa_ns}:{sa}")),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{sa_ns}"),
                "system:authenticated".to_owned(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(image_ns.to_owned()),
                verb: Some("get".to_owned()),
                group: Some("image.openshift.io".to_owned()),
                resource: Some("imagestreams".to_owned()),
                subresource: Some("layers".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Plays OpenShift's service-account controller for image pull secrets: it
/// creates `<sa>-dockercfg-<id>` secrets with OpenShift's markers and links
/// them to the ServiceAccount the way OpenShift does, keeping every entry
/// others wrote.
pub struct OpenShiftSaController {
    admin: Client,
}

impl OpenShiftSaController {
    pub fn new(admin: Client) -> OpenShiftSaController {
        OpenShiftSaController { admin }
    }

    /// Ensures `ns/sa` has its dockercfg secret, linked from both
    /// `imagePullSecrets` and `secrets`. Returns the secret's name.
    pub async fn link_dockercfg(&self, ns: &str, sa: &str) -> Result<String> {
        self.ensure_linked(ns, sa).await.map(|(name, _)| name)
    }

    /// [`OpenShiftSaController::link_dockercfg`], and whether it wrote the
    /// ServiceAccount (not when it lists the secret in both lists already).
    async fn ensure_linked(&self, ns: &str, sa: &str) -> Result<(String, bool)> {
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(self.admin.clone(), ns);
        let account = sas
            .get(sa)
            .await
            .with_context(|| format!("reading {ns}/{sa}"))?;
        let existing = match account.annotations().get(PULL_SECRET_REF_ANNOTATION) {
            Some(name) => secrets.get_opt(name).await?.map(|s| s.name_any()),
            None => None,
        };
        let name = if let Some(name) = existing {
            name
        } else {
            let secret = dockercfg_secret(&account, sa)?;
            secrets
                .create(&PostParams::default(), &secret)
                .await?
                .name_any()
        };
        // Read, keep every entry, add ours, forced apply with preconditions;
        // on conflict re-read and redo.
        for _ in 0..10 {
            let account = sas.get(sa).await?;
            if is_linked(&account)
                && account.annotations().get(PULL_SECRET_REF_ANNOTATION) == Some(&name)
            {
                return Ok((name, false));
            }
            let mut pull: Vec<String> = account
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect();
            let mut mountable: Vec<String> = account
                .secrets
                .iter()
                .flatten()
                .filter_map(|r| r.name.clone())
                .collect();
            for list in [&mut pull, &mut mountable] {
                if !list.contains(&name) {
                    list.push(name.clone());
                }
            }
            let applied = json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": sa,
                    "namespace": ns,
                    "uid": account.uid(),
                    "resourceVersion": account.resource_version(),
                    "annotations": { PULL_SECRET_REF_ANNOTATION: name },
                },
                "imagePullSecrets": pull.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
                "secrets": mountable.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
            });
            let params = PatchParams::apply(OPENSHIFT_SA_CONTROLLER_MANAGER).force();
            match sas.patch(sa, &params, &Patch::Apply(&applied)).await {
                Ok(_) => return Ok((name, true)),
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!("linking {name} to {ns}/{sa}: still conflicting after 10 attempts")
    }

    /// Runs as OpenShift's controller does, continuously: watches every
    /// ServiceAccount and links its dockercfg secret to each one that lacks
    /// it (creating the secret when absent); a ServiceAccount that already
    /// lists it in both `imagePullSecrets` and `secrets` is not written.
    ///
    /// `lag` says which namespaces it serves (`None`: not this one) and how
    /// long it takes to act on a ServiceAccount there, as a busy controller's
    /// work queue does (it reads the ServiceAccount afresh after the lag).
    /// One ServiceAccount is handled by one task at a time; an event meanwhile
    /// makes it look again. It stops when the returned handle is dropped.
    pub fn run(
        &self,
        lag: impl Fn(&str) -> Option<Duration> + Send + 'static,
    ) -> RunningSaController {
        let writes = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let admin = self.admin.clone();
        let api: Api<ServiceAccount> = Api::all(self.admin.clone());
        let (count, failures) = (writes.clone(), errors.clone());
        let task = tokio::spawn(async move {
            // ns/name -> looked at again after the task in flight ends.
            let in_flight: Arc<Mutex<BTreeMap<(String, String), bool>>> = Arc::default();
            let mut tasks = tokio::task::JoinSet::new();
            let stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                while tasks.try_join_next().is_some() {}
                let Ok(sa) = event else { continue };
                let ns = sa.namespace().unwrap_or_default();
                let Some(delay) = lag(&ns) else { continue };
                if sa.metadata.deletion_timestamp.is_some() || is_linked(&sa) {
                    continue;
                }
                let key = (ns, sa.name_any());
                {
                    let mut flight = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(again) = flight.get_mut(&key) {
                        *again = true;
                        continue;
                    }
                    flight.insert(key.clone(), false);
                }
                let controller = OpenShiftSaController::new(admin.clone());
                let (count, failures, in_flight) =
                    (count.clone(), failures.clone(), in_flight.clone());
                tasks.spawn(async move {
                    loop {
                        tokio::time::sleep(delay).await;
                        match controller.ensure_linked(&key.0, &key.1).await {
                            Ok((_, wrote)) => {
                                count.fetch_add(usize::from(wrote), Ordering::SeqCst);
                            }
                            Err(e) => failures
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(format!("{}/{}: {e:#}", key.0, key.1)),
                        }
                        let mut flight = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
                        if flight.get(&key) == Some(&true) {
                            flight.insert(key.clone(), false);
                        } else {
                            flight.remove(&key);
                            return;
                        }
                    }
                });
            }
        });
        RunningSaController {
            task,
            writes,
            errors,
        }
    }

    /// Rewrites the data of `ns/sa`'s dockercfg secret (OpenShift refreshes
    /// its token every few hours). Returns the secret's name.
    pub async fn rotate_data(&self, ns: &str, sa: &str) -> Result<String> {
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(self.admin.clone(), ns);
        let account = sas.get(sa).await?;
        let name = account
            .annotations()
            .get(PULL_SECRET_REF_ANNOTATION)
            .with_context(|| format!("{ns}/{sa} has no {PULL_SECRET_REF_ANNOTATION}"))?
            .clone();
        let mut secret = secrets.get(&name).await?;
        secret.data = Some(dockercfg_data());
        secrets
            .replace(&name, &PostParams::default(), &secret)
            .await?;
        Ok(name)
    }
}

/// Whether a ServiceAccount lists the dockercfg secret its annotation names
/// in both `imagePullSecrets` and `secrets`.
fn is_linked(sa: &ServiceAccount) -> bool {
    let Some(name) = sa.annotations().get(PULL_SECRET_REF_ANNOTATION) else {
        return false;
    };
    sa.image_pull_secrets
        .iter()
        .flatten()
        .any(|r| &r.name == name)
        && sa
            .secrets
            .iter()
            .flatten()
            .any(|r| r.name.as_ref() == Some(name))
}

/// [`OpenShiftSaController::run`] in the background: stopped (with every
/// link in flight) when dropped.
pub struct RunningSaController {
    task: tokio::task::JoinHandle<()>,
    writes: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl RunningSaController {
    /// ServiceAccount writes it made (each a link of its secret).
    pub fn links(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// The links that failed, one line each.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for RunningSaController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_suffix() -> String {
    // the alphabet of Kubernetes' utilrand.String
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn dockercfg_data() -> BTreeMap<String, ByteString> {
    let token = STANDARD.encode(rand::random::<[u8; 32]>());
    let entry = json!({
        "username": "<token>",
        "password": token,
        "email": "serviceaccount@example.org",
        "auth": STANDARD.encode(format!("<token>:{token}")),
    });
    let config: serde_json::Map<String, serde_json::Value> = REGISTRIES
        .iter()
        .map(|r| ((*r).to_owned(), entry.clone()))
        .collect();
    BTreeMap::from([(
        ".dockercfg".to_owned(),
        ByteString(serde_json::to_vec(&config).expect("json")),
    )])
}

fn dockercfg_secret(account: &ServiceAccount, sa: &str) -> Result<Secret> {
    let uid = account.uid().context("ServiceAccount without uid")?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(format!("{sa}-dockercfg-{}", random_suffix())),
            annotations: Some(BTreeMap::from([(
                SECRET_SA_ANNOTATION.to_owned(),
                sa.to_owned(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "ServiceAccount".to_owned(),
                name: sa.to_owned(),
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        type_: Some("kubernetes.io/dockercfg".to_owned()),
        data: Some(dockercfg_data()),
        ..Default::default()
    })
}
