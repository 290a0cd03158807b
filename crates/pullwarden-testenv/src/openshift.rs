//! OpenShift's pull behaviour, reproduced on a plain API server: its image
//! roles, its projects, and its service-account controller's dockercfg secrets.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
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
                Ok(_) => return Ok(name),
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!("linking {name} to {ns}/{sa}: still conflicting after 10 attempts")
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
