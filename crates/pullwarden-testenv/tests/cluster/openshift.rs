//! The OpenShift simulation behaves as OpenShift does.

use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use pullwarden_testenv::{
    OPENSHIFT_SA_CONTROLLER_MANAGER, PULL_SECRET_REF_ANNOTATION, SECRET_SA_ANNOTATION, TestEnv,
    unique_name,
};

fn names(refs: Option<&Vec<LocalObjectReference>>) -> Vec<String> {
    refs.into_iter().flatten().map(|r| r.name.clone()).collect()
}

#[tokio::test]
async fn cluster_project_service_accounts_can_pull_from_their_own_project_only() {
    let env = TestEnv::shared().await;
    env.install_openshift_roles().await.expect("roles");
    let project = unique_name("pw-project");
    let other = unique_name("pw-project");
    env.create_project(&project).await.expect("project");
    env.create_project(&other).await.expect("project");
    if !env.simulates_openshift() {
        return;
    }
    assert!(
        env.can_pull(&project, "default", &project)
            .await
            .expect("sar")
    );
    assert!(
        env.can_pull(&project, "builder", &project)
            .await
            .expect("sar")
    );
    assert!(
        !env.can_pull(&project, "default", &other)
            .await
            .expect("sar")
    );
}

#[tokio::test]
async fn cluster_openshift_controller_links_its_secret_and_keeps_every_entry() {
    let env = TestEnv::shared().await;
    let Ok(controller) = env.openshift_sa_controller() else {
        assert!(!env.simulates_openshift());
        return;
    };
    let ns = unique_name("pw-osctl");
    env.create_project(&ns).await.expect("project");
    let sas: Api<ServiceAccount> = Api::namespaced(env.admin(), &ns);
    let mut sa = sas.get("default").await.expect("get");
    sa.image_pull_secrets = Some(vec![LocalObjectReference {
        name: "pullwarden-registry".to_owned(),
    }]);
    sas.replace("default", &PostParams::default(), &sa)
        .await
        .expect("ours");

    let name = controller
        .link_dockercfg(&ns, "default")
        .await
        .expect("link");
    assert!(name.starts_with("default-dockercfg-"), "{name}");
    let sa = sas.get("default").await.expect("get");
    assert_eq!(
        names(sa.image_pull_secrets.as_ref()),
        ["pullwarden-registry".to_owned(), name.clone()]
    );
    let mountable: Vec<String> = sa
        .secrets
        .iter()
        .flatten()
        .filter_map(|r| r.name.clone())
        .collect();
    assert_eq!(mountable, std::slice::from_ref(&name));
    assert_eq!(
        sa.annotations().get(PULL_SECRET_REF_ANNOTATION),
        Some(&name)
    );
    assert!(
        sa.managed_fields().iter().any(|f| f.manager.as_deref()
            == Some(OPENSHIFT_SA_CONTROLLER_MANAGER)
            && f.operation.as_deref() == Some("Apply")),
        "{:?}",
        sa.managed_fields()
    );

    let secret = Api::<Secret>::namespaced(env.admin(), &ns)
        .get(&name)
        .await
        .expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockercfg"));
    assert_eq!(
        secret
            .annotations()
            .get(SECRET_SA_ANNOTATION)
            .map(String::as_str),
        Some("default")
    );
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("ServiceAccount", sa.uid().unwrap().as_str())
    );
    assert!(
        secret
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key(".dockercfg"))
    );

    // a second pass changes nothing
    assert_eq!(
        controller
            .link_dockercfg(&ns, "default")
            .await
            .expect("relink"),
        name
    );
    let again = sas.get("default").await.expect("get");
    assert_eq!(
        names(again.image_pull_secrets.as_ref()),
        names(sa.image_pull_secrets.as_ref())
    );
}

#[tokio::test]
async fn cluster_openshift_controller_rewrites_secret_data_in_place() {
    let env = TestEnv::shared().await;
    let Ok(controller) = env.openshift_sa_controller() else {
        assert!(!env.simulates_openshift());
        return;
    };
    let ns = unique_name("pw-osrot");
    env.create_project(&ns).await.expect("project");
    let name = controller
        .link_dockercfg(&ns, "builder")
        .await
        .expect("link");
    let secrets: Api<Secret> = Api::namespaced(env.admin(), &ns);
    let before = secrets.get(&name).await.expect("secret");
    assert_eq!(
        controller
            .rotate_data(&ns, "builder")
            .await
            .expect("rotate"),
        name
    );
    let after = secrets.get(&name).await.expect("secret");
    assert_ne!(before.data, after.data);
    assert_eq!(before.uid(), after.uid());
}
