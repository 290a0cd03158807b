//! The real authorizer: RBAC grants, escalation prevention, SubjectAccessReview.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ListParams, PostParams};
use pullwarden_testenv::{IMAGE_PULLER_ROLE, TestEnv};

use crate::{eventually, namespace, status_code};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn role(name: &str, resources: &[&str], verbs: &[&str]) -> Role {
    let mut role = Role {
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![if resources.iter().any(|r| r.starts_with("role")) {
                RBAC_GROUP.to_owned()
            } else {
                String::new()
            }]),
            resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    role.metadata.name = Some(name.to_owned());
    role
}

fn binding(name: &str, kind: &str, role: &str, subject: Subject) -> RoleBinding {
    let mut binding = RoleBinding {
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.to_owned()),
            kind: kind.to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(vec![subject]),
        ..Default::default()
    };
    binding.metadata.name = Some(name.to_owned());
    binding
}

#[tokio::test]
async fn cluster_unprivileged_user_is_denied_until_rbac_grants_it() {
    let env = TestEnv::shared().await;
    let ns = namespace(env, "pw-deny").await;
    let as_user: Api<Secret> = Api::namespaced(env.user(), &ns);
    let (code, message) = status_code(as_user.list(&ListParams::default()).await);
    assert_eq!(code, 403, "{message}");

    Api::<Role>::namespaced(env.admin(), &ns)
        .create(
            &PostParams::default(),
            &role("secret-reader", &["secrets"], &["list"]),
        )
        .await
        .expect("role");
    Api::<RoleBinding>::namespaced(env.admin(), &ns)
        .create(
            &PostParams::default(),
            &binding(
                "secret-reader",
                "Role",
                "secret-reader",
                env.user_subject().clone(),
            ),
        )
        .await
        .expect("binding");
    assert!(
        eventually(|| async { as_user.list(&ListParams::default()).await.is_ok() }).await,
        "the user still cannot list secrets after the grant"
    );
}

#[tokio::test]
async fn cluster_escalation_prevention_stops_binding_a_role_not_held() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let ns = namespace(env, "pw-escalate").await;
    let roles: Api<Role> = Api::namespaced(env.admin(), &ns);
    let admin_bindings: Api<RoleBinding> = Api::namespaced(env.admin(), &ns);
    // the user may manage RoleBindings and read secrets, nothing more
    roles
        .create(
            &PostParams::default(),
            &role("binder", &["rolebindings"], &["create", "get"]),
        )
        .await
        .expect("role");
    roles
        .create(
            &PostParams::default(),
            &role("secret-reader", &["secrets"], &["list"]),
        )
        .await
        .expect("role");
    for name in ["binder", "secret-reader"] {
        admin_bindings
            .create(
                &PostParams::default(),
                &binding(name, "Role", name, env.user_subject().clone()),
            )
            .await
            .expect("binding");
    }
    let user_bindings: Api<RoleBinding> = Api::namespaced(env.user(), &ns);
    let group = Subject {
        kind: "Group".to_owned(),
        name: format!("system:serviceaccounts:{ns}"),
        api_group: Some(RBAC_GROUP.to_owned()),
        namespace: None,
    };
    // a role it holds: allowed (retry while the grant reaches the authorizer)
    let held = binding("readers", "Role", "secret-reader", group.clone());
    assert!(
        eventually(|| async {
            user_bindings
                .create(&PostParams::default(), &held)
                .await
                .is_ok()
        })
        .await,
        "binding a role the user holds was refused"
    );
    // a role it does not hold: refused as escalation
    let not_held = binding("pullers", "ClusterRole", IMAGE_PULLER_ROLE, group);
    let (code, message) = status_code(
        user_bindings
            .create(&PostParams::default(), &not_held)
            .await,
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("not currently held"), "{message}");
}

#[tokio::test]
async fn cluster_subject_access_review_flips_after_image_puller_binding() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let images = namespace(env, "pw-images").await;
    let app = namespace(env, "pw-app").await;
    assert!(!env.can_pull(&app, "default", &images).await.expect("sar"));

    let group = Subject {
        kind: "Group".to_owned(),
        name: format!("system:serviceaccounts:{app}"),
        api_group: Some(RBAC_GROUP.to_owned()),
        namespace: None,
    };
    Api::<RoleBinding>::namespaced(env.admin(), &images)
        .create(
            &PostParams::default(),
            &binding("pull-from-app", "ClusterRole", IMAGE_PULLER_ROLE, group),
        )
        .await
        .expect("binding");
    assert!(
        eventually(|| async { env.can_pull(&app, "default", &images).await.expect("sar") }).await,
        "SubjectAccessReview still denies after the binding"
    );
    // the grant is for that namespace's service accounts only
    let other = namespace(env, "pw-other").await;
    assert!(!env.can_pull(&other, "default", &images).await.expect("sar"));
}
