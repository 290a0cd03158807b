//! The evaluator against the real RBAC authorizer: a control plane of its
//! own (`pullwarden-testenv`) with random Roles, ClusterRoles and bindings,
//! then random questions asked both as a SubjectAccessReview and of
//! `pullwarden_rbac`, fed from what the server lists back (through
//! `pullwarden_kube::rbac::read_rbac`, paginated). Named `cluster_*`:
//! `scripts/test.sh` counts it.
//!
//! `PULLWARDEN_RBAC_SEED` replays a run (the seed is printed).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1 as k8s;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use pullwarden_kube::ReadOptions;
use pullwarden_rbac::{
    AccessMatrix, Authorizer, Policy, PolicyRule, PullIndex, PullSubject, ResourceRequest,
    UserInfo, subject_applies,
};
use pullwarden_testenv::{Options, TestEnv};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};

/// Written to the stderr handle, not through `eprintln!`, so that it shows
/// in `just test` too (the harness captures only the print macros).
fn report(text: &str) {
    writeln!(std::io::stderr(), "{text}").expect("stderr");
}

const SEED_ENV: &str = "PULLWARDEN_RBAC_SEED";
const NAMESPACES: usize = 30;
const QUESTIONS: usize = 1_500;
const SA_NAMES: &[&str] = &["default", "builder", "app", "deployer"];
const STREAMS: &[&str] = &["app", "web", "db", "cache"];
const USERS: &[&str] = &["alice", "bob"];
const ROLE_NAMES: &[&str] = &["r0", "r1", "r2", "r3", "r4"];
const CLUSTER_ROLE_NAMES: &[&str] = &[
    "rbac-diff-c0",
    "rbac-diff-c1",
    "rbac-diff-c2",
    "rbac-diff-c3",
    "rbac-diff-c4",
    "rbac-diff-c5",
    "rbac-diff-c6",
    "rbac-diff-c7",
    "rbac-diff-c8",
    "rbac-diff-c9",
    // Never created: bindings to it grant nothing.
    "rbac-diff-missing",
    // OpenShift's, installed by the test environment.
    "system:image-puller",
    "system:image-pusher",
];
const SENTINEL: &str = "rbac-diff-sentinel";

fn namespace_name(i: usize) -> String {
    format!("rbac-diff-{i:02}")
}

fn some(rng: &mut StdRng, pool: &[&str], max: usize) -> Vec<String> {
    let n = rng.random_range(1..=max);
    let mut picked: Vec<String> = (0..n)
        .map(|_| (*pool.choose(rng).expect("pool")).to_owned())
        .collect();
    picked.dedup();
    picked
}

fn random_rule(rng: &mut StdRng) -> k8s::PolicyRule {
    k8s::PolicyRule {
        verbs: some(rng, &["get", "list", "*", "update", "watch"], 2),
        api_groups: Some(some(rng, &["image.openshift.io", "", "*", "apps"], 2)),
        resources: Some(some(
            rng,
            &[
                "imagestreams/layers",
                "imagestreams",
                "*",
                "*/layers",
                "imagestreams/*",
                "pods",
            ],
            2,
        )),
        resource_names: rng.random_bool(0.3).then(|| some(rng, STREAMS, 2)),
        non_resource_urls: None,
    }
}

fn random_rules(rng: &mut StdRng) -> Vec<k8s::PolicyRule> {
    (0..rng.random_range(1..=3))
        .map(|_| random_rule(rng))
        .collect()
}

fn random_subject(rng: &mut StdRng, in_role_binding: bool) -> k8s::Subject {
    let rbac = Some("rbac.authorization.k8s.io".to_owned());
    let ns = namespace_name(rng.random_range(0..NAMESPACES));
    let sa_name = (*SA_NAMES.choose(rng).expect("pool")).to_owned();
    match rng.random_range(0..8) {
        0 | 1 => k8s::Subject {
            kind: "ServiceAccount".to_owned(),
            name: sa_name,
            namespace: Some(ns),
            api_group: None,
        },
        // Only a RoleBinding may leave the namespace out (its own).
        2 if in_role_binding => k8s::Subject {
            kind: "ServiceAccount".to_owned(),
            name: sa_name,
            namespace: None,
            api_group: None,
        },
        2 | 3 => k8s::Subject {
            kind: "User".to_owned(),
            name: if rng.random_bool(0.7) {
                format!("system:serviceaccount:{ns}:{sa_name}")
            } else {
                (*USERS.choose(rng).expect("pool")).to_owned()
            },
            namespace: None,
            api_group: rbac,
        },
        4 | 5 => k8s::Subject {
            kind: "Group".to_owned(),
            name: format!("system:serviceaccounts:{ns}"),
            namespace: None,
            api_group: rbac,
        },
        _ => k8s::Subject {
            kind: "Group".to_owned(),
            name: (*[
                "system:serviceaccounts",
                "system:authenticated",
                "devs",
                "system:unauthenticated",
            ]
            .choose(rng)
            .expect("pool"))
            .to_owned(),
            namespace: None,
            api_group: rbac,
        },
    }
}

fn random_subjects(rng: &mut StdRng, in_role_binding: bool) -> Vec<k8s::Subject> {
    (0..rng.random_range(1..=3))
        .map(|_| random_subject(rng, in_role_binding))
        .collect()
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: namespace.map(str::to_owned),
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

fn role_ref(kind: &str, name: &str) -> k8s::RoleRef {
    k8s::RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// The random objects, as the requests that create them.
#[derive(Default)]
struct Objects {
    roles: Vec<k8s::Role>,
    cluster_roles: Vec<k8s::ClusterRole>,
    role_bindings: Vec<k8s::RoleBinding>,
    cluster_role_bindings: Vec<k8s::ClusterRoleBinding>,
}

fn random_cluster(rng: &mut StdRng) -> Objects {
    let mut cluster = Objects::default();
    for name in &CLUSTER_ROLE_NAMES[..10] {
        // Some carry an aggregationRule: the server keeps the rules written
        // (no aggregation controller runs here), and so must the evaluator.
        let aggregation_rule = rng.random_bool(0.2).then(|| k8s::AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "rbac-diff/aggregate-to".to_owned(),
                    (*name).to_owned(),
                )])),
                ..LabelSelector::default()
            }]),
        });
        cluster.cluster_roles.push(k8s::ClusterRole {
            metadata: meta(None, name),
            aggregation_rule,
            rules: Some(random_rules(rng)),
        });
    }
    for i in 0..NAMESPACES {
        let ns = namespace_name(i);
        // r0..r3 may exist; r4 never does.
        for name in &ROLE_NAMES[..4] {
            if rng.random_bool(0.4) {
                cluster.roles.push(k8s::Role {
                    metadata: meta(Some(&ns), name),
                    rules: Some(random_rules(rng)),
                });
            }
        }
        for j in 0..rng.random_range(2..=8) {
            let role_ref = if rng.random_bool(0.35) {
                role_ref("Role", ROLE_NAMES.choose(rng).expect("pool"))
            } else {
                role_ref("ClusterRole", CLUSTER_ROLE_NAMES.choose(rng).expect("pool"))
            };
            cluster.role_bindings.push(k8s::RoleBinding {
                metadata: meta(Some(&ns), &format!("rb{j}")),
                role_ref,
                subjects: Some(random_subjects(rng, true)),
            });
        }
    }
    for j in 0..5 {
        cluster.cluster_role_bindings.push(k8s::ClusterRoleBinding {
            metadata: meta(None, &format!("rbac-diff-crb{j}")),
            role_ref: role_ref("ClusterRole", CLUSTER_ROLE_NAMES.choose(rng).expect("pool")),
            subjects: Some(random_subjects(rng, false)),
        });
    }
    cluster
}

async fn create_all<K>(api: impl Fn(&K) -> Api<K>, objects: &[K])
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let results: Vec<_> = futures::stream::iter(objects)
        .map(|object| {
            let api = api(object);
            async move { api.create(&PostParams::default(), object).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result.expect("create an RBAC object");
    }
}

/// Creates everything; returns once the authorizer's caches hold it all.
async fn create(env: &TestEnv, cluster: &Objects) {
    let admin = env.admin();
    let namespaces: Vec<Namespace> = (0..NAMESPACES)
        .map(|i| Namespace {
            metadata: meta(None, &namespace_name(i)),
            ..Namespace::default()
        })
        .collect();
    create_all(|_| Api::all(admin.clone()), &namespaces).await;
    let namespace_of = |ns: &ObjectMeta| ns.namespace.clone().expect("namespaced");
    tokio::join!(
        create_all(|_| Api::all(admin.clone()), &cluster.cluster_roles),
        create_all(
            |r: &k8s::Role| Api::namespaced(admin.clone(), &namespace_of(&r.metadata)),
            &cluster.roles
        ),
        create_all(
            |b: &k8s::RoleBinding| Api::namespaced(admin.clone(), &namespace_of(&b.metadata)),
            &cluster.role_bindings
        ),
        create_all(|_| Api::all(admin.clone()), &cluster.cluster_role_bindings),
    );
    // One object of each kind, created last, that lets the sentinel user do
    // a sentinel verb: the authorizer's informers deliver each kind in
    // order, so once both answers are "allowed", everything above is in.
    let ns = namespace_name(0);
    let rule = k8s::PolicyRule {
        verbs: vec![SENTINEL.to_owned()],
        api_groups: Some(vec![SENTINEL.to_owned()]),
        resources: Some(vec![SENTINEL.to_owned()]),
        ..k8s::PolicyRule::default()
    };
    let user = k8s::Subject {
        kind: "User".to_owned(),
        name: SENTINEL.to_owned(),
        namespace: None,
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
    };
    Api::<k8s::ClusterRole>::all(admin.clone())
        .create(
            &PostParams::default(),
            &k8s::ClusterRole {
                metadata: meta(None, SENTINEL),
                rules: Some(vec![rule.clone()]),
                aggregation_rule: None,
            },
        )
        .await
        .expect("sentinel ClusterRole");
    Api::<k8s::Role>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &k8s::Role {
                metadata: meta(Some(&ns), SENTINEL),
                rules: Some(vec![rule]),
            },
        )
        .await
        .expect("sentinel Role");
    Api::<k8s::ClusterRoleBinding>::all(admin.clone())
        .create(
            &PostParams::default(),
            &k8s::ClusterRoleBinding {
                metadata: meta(None, SENTINEL),
                role_ref: role_ref("ClusterRole", SENTINEL),
                subjects: Some(vec![user.clone()]),
            },
        )
        .await
        .expect("sentinel ClusterRoleBinding");
    Api::<k8s::RoleBinding>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &k8s::RoleBinding {
                metadata: meta(Some(&ns), SENTINEL),
                role_ref: role_ref("Role", SENTINEL),
                subjects: Some(vec![user]),
            },
        )
        .await
        .expect("sentinel RoleBinding");
    let sentinel = |namespace: &str| Question {
        user: UserInfo::new(SENTINEL, &[]),
        request: ResourceRequest {
            verb: SENTINEL.to_owned(),
            api_group: SENTINEL.to_owned(),
            resource: SENTINEL.to_owned(),
            subresource: String::new(),
            name: String::new(),
            namespace: namespace.to_owned(),
        },
    };
    // A namespace with no sentinel RoleBinding: only the ClusterRoleBinding.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cluster_wide = review(&admin, &sentinel(&namespace_name(1))).await;
        let by_role = review(&admin, &sentinel(&ns)).await;
        if cluster_wide && by_role {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the authorizer never saw the sentinel bindings"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Clone, Debug)]
struct Question {
    user: UserInfo,
    request: ResourceRequest,
}

/// The API server's answer, by a SubjectAccessReview.
async fn review(admin: &Client, question: &Question) -> bool {
    let request = &question.request;
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(question.user.name.clone()),
            groups: Some(question.user.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(request.namespace.clone()).filter(|n| !n.is_empty()),
                verb: Some(request.verb.clone()),
                group: Some(request.api_group.clone()),
                resource: Some(request.resource.clone()),
                subresource: Some(request.subresource.clone()).filter(|s| !s.is_empty()),
                name: Some(request.name.clone()).filter(|n| !n.is_empty()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &sar)
        .await
        .expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

/// Mostly the pull question for a ServiceAccount; some for plain users
/// with groups, and some other verbs and resources.
fn random_question(rng: &mut StdRng) -> Question {
    let ns = namespace_name(rng.random_range(0..NAMESPACES));
    let user = if rng.random_bool(0.85) {
        UserInfo::service_account(
            &namespace_name(rng.random_range(0..NAMESPACES)),
            SA_NAMES.choose(rng).expect("pool"),
        )
    } else {
        let groups: Vec<&str> = ["devs", "system:serviceaccounts", "system:authenticated"]
            .into_iter()
            .filter(|_| rng.random_bool(0.5))
            .collect();
        UserInfo::new(USERS.choose(rng).expect("pool"), &groups)
    };
    let stream = rng
        .random_bool(0.8)
        .then(|| *STREAMS.choose(rng).expect("pool"));
    let mut request = ResourceRequest::pull(&ns, stream);
    if rng.random_bool(0.2) {
        let (resource, subresource) = *[
            ("imagestreams", "layers"),
            ("imagestreams", ""),
            ("imagestreams", "*"),
            ("pods", ""),
            ("pods", "log"),
        ]
        .choose(rng)
        .expect("pool");
        request = ResourceRequest {
            verb: (*["get", "list", "update"].choose(rng).expect("pool")).to_owned(),
            api_group: (*["image.openshift.io", "", "apps"]
                .choose(rng)
                .expect("pool"))
            .to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            ..request
        };
    }
    if rng.random_bool(0.03) {
        // Cluster scope: ClusterRoleBindings only.
        request.namespace = String::new();
    }
    Question { user, request }
}

/// What the evaluator saw for a disagreeing question: the bindings that
/// apply to the user where the request is made and whose roles have a rule
/// for the request's resource (or a wildcard), with those rules; the
/// others are counted.
fn explain(policy: &Policy, question: &Question) -> String {
    let authorizer = Authorizer::new(policy);
    let request = &question.request;
    let relevant = |rule: &PolicyRule| {
        rule.resources
            .iter()
            .any(|r| r.starts_with('*') || r.split('/').next() == Some(request.resource.as_str()))
    };
    let ns = request.namespace.as_str();
    let cluster_wide = policy
        .cluster_role_bindings
        .iter()
        .map(|b| (format!("{b:?}"), &b.subjects, &b.role_ref, ""));
    let namespaced = policy
        .role_bindings
        .iter()
        .filter(|b| !ns.is_empty() && b.namespace == ns)
        .map(|b| (format!("{b:?}"), &b.subjects, &b.role_ref, ns));
    let mut out = String::new();
    let mut others = 0;
    for (binding, subjects, role_ref, binding_ns) in cluster_wide.chain(namespaced) {
        if !subjects
            .iter()
            .any(|s| subject_applies(s, &question.user, binding_ns))
        {
            continue;
        }
        match authorizer.role_rules(role_ref, binding_ns) {
            None => writeln!(out, "  {binding}\n    (role missing)"),
            Some(rules) if rules.iter().any(relevant) => {
                let rules: Vec<_> = rules.iter().filter(|r| relevant(r)).collect();
                writeln!(out, "  {binding}\n    rules: {rules:?}")
            }
            Some(_) => {
                others += 1;
                Ok(())
            }
        }
        .expect("write to a String");
    }
    writeln!(
        out,
        "  ({others} more apply, with rules for other resources only)"
    )
    .expect("write to a String");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_rbac_evaluator_agrees_with_subject_access_reviews() {
    let started = Instant::now();
    let seed: u64 = match std::env::var(SEED_ENV) {
        Ok(value) => value.parse().expect("PULLWARDEN_RBAC_SEED is a u64"),
        Err(_) => rand::random(),
    };
    report(&format!(
        "rbac differential test: seed {seed} (replay with {SEED_ENV}={seed})"
    ));
    let mut rng = StdRng::seed_from_u64(seed);

    let env = TestEnv::dedicated(Options::default())
        .await
        .expect("a control plane of its own");
    env.install_openshift_roles().await.expect("image roles");
    let cluster = random_cluster(&mut rng);
    create(&env, &cluster).await;
    let created = started.elapsed();

    // What the evaluator sees is what the server lists back, in small pages.
    let options = ReadOptions {
        page_size: 50,
        ..ReadOptions::default()
    };
    let policy = pullwarden_kube::rbac::read_rbac(&env.admin(), &options)
        .await
        .expect("list RBAC");
    assert!(
        policy.role_bindings.len() >= cluster.role_bindings.len()
            && policy.cluster_roles.len() >= cluster.cluster_roles.len(),
        "the lists hold what was created"
    );
    let authorizer = Authorizer::new(&policy);
    let index = PullIndex::new(&authorizer);
    let mut subjects = Vec::new();
    for i in 0..NAMESPACES {
        for name in SA_NAMES {
            subjects.push(PullSubject::service_account(&namespace_name(i), name));
        }
    }
    let project_names: Vec<String> = (0..NAMESPACES).map(namespace_name).collect();
    let matrix = AccessMatrix::compute(&index, &subjects, project_names.iter().map(String::as_str));

    let questions: Vec<Question> = (0..QUESTIONS).map(|_| random_question(&mut rng)).collect();
    let admin = env.admin();
    let answers: Vec<(usize, bool)> = futures::stream::iter(questions.iter().enumerate())
        .map(|(i, q)| {
            let admin = admin.clone();
            async move { (i, review(&admin, q).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    let mut allowed = 0;
    let mut disagreements = Vec::new();
    let mut matrix_checked = 0;
    for (i, server) in answers {
        let question = &questions[i];
        let decision = authorizer.authorize(&question.user, &question.request);
        if server {
            allowed += 1;
        }
        // The matrix answers the pull question for ServiceAccounts.
        let request = &question.request;
        let pull_shape = ResourceRequest::pull(&request.namespace, Some(&request.name)) == *request;
        let by_matrix = match question.user.name.strip_prefix("system:serviceaccount:") {
            Some(sa) if pull_shape && !request.namespace.is_empty() => {
                let (ns, name) = sa.split_once(':').expect("ns:name");
                matrix_checked += 1;
                let cell = matrix.cell(&PullSubject::service_account(ns, name), &request.namespace);
                Some(cell.is_some_and(|c| {
                    if request.name.is_empty() {
                        c.whole_project()
                    } else {
                        c.allows(&request.name)
                    }
                }))
            }
            _ => None,
        };
        if decision.allowed() != server || by_matrix.is_some_and(|m| m != server) {
            disagreements.push((question.clone(), server, decision, by_matrix));
        }
    }
    report(&format!(
        "rbac differential test: {QUESTIONS} questions ({matrix_checked} also of the matrix), \
         {allowed} allowed, {} disagreements; {} roles, {} cluster roles, {} role bindings, \
         {} cluster role bindings listed; setup {:.1?}, total {:.1?}",
        disagreements.len(),
        policy.roles.len(),
        policy.cluster_roles.len(),
        policy.role_bindings.len(),
        policy.cluster_role_bindings.len(),
        created,
        started.elapsed(),
    ));
    // The smallest disagreeing case: the fewest bindings involved.
    if let Some((question, server, decision, by_matrix)) = disagreements
        .iter()
        .min_by_key(|(q, ..)| explain(&policy, q).len())
    {
        report(&format!(
            "disagreement (seed {seed}): {:?} {:?}\n  server: {server}, evaluator: {}, matrix: {by_matrix:?}\n  evaluator's grants: {:?}\n  missing roles: {:?}\nbindings that apply:\n{}",
            question.user,
            question.request,
            decision.allowed(),
            decision.allowed_by,
            decision.missing_roles,
            explain(&policy, question),
        ));
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements",
        disagreements.len()
    );
    // Both answers occur often enough for agreement to mean something.
    assert!(
        allowed >= QUESTIONS / 20 && QUESTIONS - allowed >= QUESTIONS / 20,
        "{allowed} of {QUESTIONS} allowed: the random cluster is too one-sided"
    );
    assert!(matrix_checked >= QUESTIONS / 2, "{matrix_checked}");
}
