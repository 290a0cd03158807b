//! The committed offline snapshot of the README's quick start loads, and
//! holds what OpenShift gives three fresh projects.

use std::path::Path;

use pullwarden_core::live::{OPENSHIFT_SA_PULL_SECRET_REF, RbacSubject};
use pullwarden_kube::load_snapshot;

const SNAPSHOT: &str = "../../examples/live/openshift-image-pull-secrets.yaml";
const PROJECTS: [&str; 3] = ["project-a", "project-b", "project-c"];
const SERVICE_ACCOUNTS: [&str; 3] = ["builder", "default", "deployer"];
const REGISTRY: &str = "image-registry.openshift-image-registry.svc:5000";

#[test]
fn the_openshift_example_snapshot_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);
    let snapshot = load_snapshot(&path).expect("the example snapshot loads");
    assert!(snapshot.ignored.is_empty(), "{:?}", snapshot.ignored);
    let live = snapshot.live;
    assert_eq!(live.namespaces.iter().collect::<Vec<_>>(), PROJECTS);
    assert_eq!(live.secrets.len(), 9);
    assert_eq!(live.service_accounts.len(), 9);
    assert_eq!(live.role_bindings.len(), 9);

    for ns in PROJECTS {
        for sa_name in SERVICE_ACCOUNTS {
            let sa = live
                .service_accounts
                .iter()
                .find(|s| s.meta.namespace == ns && s.meta.name == sa_name)
                .unwrap_or_else(|| panic!("{ns}/{sa_name}"));
            let secret_name = &sa.meta.annotations[OPENSHIFT_SA_PULL_SECRET_REF];
            assert!(secret_name.starts_with(&format!("{sa_name}-dockercfg-")));
            assert_eq!(secret_name.len(), format!("{sa_name}-dockercfg-").len() + 5);
            assert_eq!(sa.image_pull_secrets, [secret_name.as_str()]);
            assert_eq!(sa.secrets, [secret_name.as_str()]);

            let secret = live
                .secrets
                .iter()
                .find(|s| s.meta.namespace == ns && &s.meta.name == secret_name)
                .unwrap_or_else(|| panic!("{ns}/{secret_name}"));
            assert_eq!(secret.type_, "kubernetes.io/dockercfg");
            assert!(secret.is_openshift_owned());
            assert_eq!(secret.meta.owner_references[0].uid, sa.meta.uid);
            let config: serde_json::Value =
                serde_json::from_str(secret.data[".dockercfg"].expose()).expect("JSON");
            let token = config[REGISTRY]["password"].as_str().expect("a token");
            assert!(token.starts_with("FAKE-"), "only fake tokens are committed");
        }
        let bindings: Vec<_> = live
            .role_bindings
            .iter()
            .filter(|b| b.meta.namespace == ns)
            .map(|b| {
                (
                    b.meta.name.as_str(),
                    b.role_ref.name.as_str(),
                    b.subjects.clone(),
                )
            })
            .collect();
        assert_eq!(
            bindings,
            [
                (
                    "system:deployers",
                    "system:deployer",
                    vec![RbacSubject::service_account(ns, "deployer")]
                ),
                (
                    "system:image-builders",
                    "system:image-builder",
                    vec![RbacSubject::service_account(ns, "builder")]
                ),
                (
                    "system:image-pullers",
                    "system:image-puller",
                    vec![RbacSubject::group(&format!("system:serviceaccounts:{ns}"))]
                ),
            ]
        );
    }
}
