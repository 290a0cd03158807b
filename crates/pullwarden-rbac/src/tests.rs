//! Unit tests on plain data. The evaluator's agreement with the real API
//! server is `tests/cluster_rbac.rs`.

use std::collections::BTreeSet;

use crate::*;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: strings(groups),
        resources: strings(resources),
        resource_names: strings(names),
        non_resource_urls: Vec::new(),
    }
}

fn pull(project: &str, stream: &str) -> ResourceRequest {
    ResourceRequest::pull(project, Some(stream))
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        name: name.to_owned(),
        rules,
        aggregated: false,
    }
}

fn role_binding(ns: &str, name: &str, role_ref: RoleRef, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        role_ref,
        subjects,
    }
}

fn cluster_binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        name: name.to_owned(),
        role_ref: RoleRef::ClusterRole(role.to_owned()),
        subjects,
    }
}

fn sa(ns: &str, name: &str) -> UserInfo {
    UserInfo::service_account(ns, name)
}

/// Whether a single rule, bound by a `ClusterRoleBinding` to `a/sa`, lets
/// `a/sa` do `request`.
fn check_rule(rule: PolicyRule, request: &ResourceRequest) -> bool {
    let policy = Policy {
        cluster_roles: vec![cluster_role("r", vec![rule])],
        cluster_role_bindings: vec![cluster_binding(
            "b",
            "r",
            vec![Subject::service_account("a", "sa")],
        )],
        ..Policy::default()
    };
    Authorizer::new(&policy)
        .authorize(&sa("a", "sa"), request)
        .allowed()
}

#[test]
fn the_puller_rule_allows_a_pull_of_any_stream() {
    let puller = rule(
        &["get"],
        &["", "image.openshift.io"],
        &["imagestreams/layers"],
        &[],
    );
    assert!(check_rule(puller.clone(), &pull("p", "app")));
    assert!(check_rule(
        puller.clone(),
        &ResourceRequest::pull("p", None)
    ));
    let mut push = pull("p", "app");
    push.verb = "update".to_owned();
    assert!(!check_rule(puller, &push));
}

#[test]
fn wildcards_in_verbs_groups_and_resources() {
    let request = pull("p", "app");
    assert!(check_rule(
        rule(
            &["*"],
            &["image.openshift.io"],
            &["imagestreams/layers"],
            &[]
        ),
        &request
    ));
    assert!(check_rule(
        rule(&["get"], &["*"], &["imagestreams/layers"], &[]),
        &request
    ));
    assert!(check_rule(
        rule(&["get"], &["image.openshift.io"], &["*"], &[]),
        &request
    ));
    assert!(check_rule(
        rule(&["get"], &["image.openshift.io"], &["*/layers"], &[]),
        &request
    ));
    assert!(check_rule(rule(&["*"], &["*"], &["*"], &[]), &request));
}

#[test]
fn resource_slash_star_and_the_bare_resource_do_not_cover_a_subresource() {
    let request = pull("p", "app");
    for resources in [
        &["imagestreams/*"][..],
        &["imagestreams"],
        &["*/layer"],
        &["*/*"],
        &["layers"],
        &["imagestreams/layer"],
        &["imagestreamslayers"],
    ] {
        assert!(
            !check_rule(
                rule(&["get"], &["image.openshift.io"], resources, &[]),
                &request
            ),
            "{resources:?}"
        );
    }
    // `resource/*` is a literal: it matches a subresource named `*`.
    let mut star = request.clone();
    star.subresource = "*".to_owned();
    assert!(check_rule(
        rule(&["get"], &["image.openshift.io"], &["imagestreams/*"], &[]),
        &star
    ));
    // `*/subresource` does not match the resource itself.
    let mut streams = request;
    streams.subresource = String::new();
    assert!(!check_rule(
        rule(&["get"], &["image.openshift.io"], &["*/layers"], &[]),
        &streams
    ));
    assert!(check_rule(
        rule(&["get"], &["image.openshift.io"], &["imagestreams"], &[]),
        &streams
    ));
}

#[test]
fn the_legacy_core_group_alone_grants_no_pull() {
    let legacy = rule(&["get"], &[""], &["imagestreams/layers"], &[]);
    assert!(!check_rule(legacy.clone(), &pull("p", "app")));
    let mut legacy_request = pull("p", "app");
    legacy_request.api_group = String::new();
    assert!(check_rule(legacy, &legacy_request));
    assert_eq!(
        pull_streams(&[rule(&["get"], &[""], &["imagestreams/layers"], &[])]),
        None
    );
}

#[test]
fn resource_names_limit_the_streams() {
    let named = rule(
        &["get"],
        &["image.openshift.io"],
        &["imagestreams/layers"],
        &["app", "web"],
    );
    assert!(check_rule(named.clone(), &pull("p", "app")));
    assert!(check_rule(named.clone(), &pull("p", "web")));
    assert!(!check_rule(named.clone(), &pull("p", "db")));
    // A request without a name is not allowed by a rule with names.
    assert!(!check_rule(
        named.clone(),
        &ResourceRequest::pull("p", None)
    ));
    assert_eq!(
        pull_streams(std::slice::from_ref(&named)),
        Some(Streams::Named(
            ["app", "web"].iter().map(|s| (*s).to_owned()).collect()
        ))
    );
    let all = rule(
        &["get"],
        &["image.openshift.io"],
        &["imagestreams/layers"],
        &[],
    );
    assert_eq!(pull_streams(&[named, all]), Some(Streams::All));
}

#[test]
fn service_account_subjects_and_groups() {
    let policy = |subject: Subject| Policy {
        cluster_roles: vec![cluster_role(
            "puller",
            vec![rule(
                &["get"],
                &["image.openshift.io"],
                &["imagestreams/layers"],
                &[],
            )],
        )],
        role_bindings: vec![role_binding(
            "p",
            "b",
            RoleRef::ClusterRole("puller".to_owned()),
            vec![subject],
        )],
        ..Policy::default()
    };
    let allowed = |subject: Subject, user: &UserInfo| {
        let policy = policy(subject);
        Authorizer::new(&policy)
            .authorize(user, &pull("p", "app"))
            .allowed()
    };
    let a_default = sa("a", "default");
    assert!(allowed(
        Subject::service_account("a", "default"),
        &a_default
    ));
    assert!(!allowed(
        Subject::service_account("a", "default"),
        &sa("b", "default")
    ));
    assert!(!allowed(
        Subject::service_account("a", "default"),
        &sa("a", "builder")
    ));
    // No namespace: the RoleBinding's.
    let local = Subject::ServiceAccount {
        namespace: None,
        name: "default".to_owned(),
    };
    assert!(allowed(local.clone(), &sa("p", "default")));
    assert!(!allowed(local, &a_default));
    let empty = Subject::ServiceAccount {
        namespace: Some(String::new()),
        name: "default".to_owned(),
    };
    assert!(allowed(empty, &sa("p", "default")));
    // The user name of a ServiceAccount.
    assert!(allowed(
        Subject::User("system:serviceaccount:a:default".to_owned()),
        &a_default
    ));
    assert!(!allowed(Subject::User("default".to_owned()), &a_default));
    // Its groups.
    assert!(allowed(
        Subject::Group("system:serviceaccounts".to_owned()),
        &a_default
    ));
    assert!(allowed(
        Subject::Group("system:serviceaccounts:a".to_owned()),
        &a_default
    ));
    assert!(!allowed(
        Subject::Group("system:serviceaccounts:b".to_owned()),
        &a_default
    ));
    assert!(allowed(
        Subject::Group("system:authenticated".to_owned()),
        &a_default
    ));
    assert!(!allowed(
        Subject::Group("system:unauthenticated".to_owned()),
        &a_default
    ));
    // A user with groups of its own.
    let alice = UserInfo::new("alice", &["devs"]);
    assert!(allowed(Subject::Group("devs".to_owned()), &alice));
    assert!(allowed(Subject::User("alice".to_owned()), &alice));
    assert!(!allowed(Subject::User("devs".to_owned()), &alice));
    assert!(!allowed(Subject::Group("alice".to_owned()), &alice));
    // Unknown kinds match nobody.
    assert!(!allowed(
        Subject::Other {
            kind: "Robot".to_owned(),
            name: "alice".to_owned()
        },
        &alice
    ));
}

#[test]
fn cluster_role_bindings_apply_everywhere_role_bindings_in_their_namespace() {
    let puller = cluster_role(
        "puller",
        vec![rule(
            &["get"],
            &["image.openshift.io"],
            &["imagestreams/layers"],
            &[],
        )],
    );
    let cluster_wide = Policy {
        cluster_roles: vec![puller.clone()],
        cluster_role_bindings: vec![cluster_binding(
            "everywhere",
            "puller",
            vec![Subject::service_account("a", "x")],
        )],
        ..Policy::default()
    };
    let authorizer = Authorizer::new(&cluster_wide);
    for project in ["a", "b", "c"] {
        assert!(
            authorizer
                .authorize(&sa("a", "x"), &pull(project, "s"))
                .allowed()
        );
    }
    // A cluster-scoped request too.
    assert!(
        authorizer
            .authorize(&sa("a", "x"), &pull("", "s"))
            .allowed()
    );
    // A `ClusterRoleBinding`'s SA subject needs its namespace.
    let no_namespace = Policy {
        cluster_role_bindings: vec![cluster_binding(
            "b",
            "puller",
            vec![Subject::ServiceAccount {
                namespace: None,
                name: "x".to_owned(),
            }],
        )],
        ..cluster_wide.clone()
    };
    assert!(
        !Authorizer::new(&no_namespace)
            .authorize(&sa("a", "x"), &pull("a", "s"))
            .allowed()
    );

    let namespaced = Policy {
        cluster_roles: vec![puller],
        role_bindings: vec![role_binding(
            "b",
            "only-b",
            RoleRef::ClusterRole("puller".to_owned()),
            vec![Subject::service_account("a", "x")],
        )],
        ..Policy::default()
    };
    let authorizer = Authorizer::new(&namespaced);
    assert!(
        authorizer
            .authorize(&sa("a", "x"), &pull("b", "s"))
            .allowed()
    );
    assert!(
        !authorizer
            .authorize(&sa("a", "x"), &pull("a", "s"))
            .allowed()
    );
    assert!(
        !authorizer
            .authorize(&sa("a", "x"), &pull("", "s"))
            .allowed()
    );
}

#[test]
fn a_role_is_looked_up_in_the_binding_namespace_and_a_missing_role_grants_nothing() {
    let policy = Policy {
        roles: vec![Role {
            namespace: "b".to_owned(),
            name: "pull".to_owned(),
            rules: vec![rule(
                &["get"],
                &["image.openshift.io"],
                &["imagestreams/layers"],
                &[],
            )],
        }],
        role_bindings: vec![
            role_binding(
                "b",
                "uses-role",
                RoleRef::Role("pull".to_owned()),
                vec![Subject::service_account("a", "x")],
            ),
            // The Role exists in b, not in c.
            role_binding(
                "c",
                "role-elsewhere",
                RoleRef::Role("pull".to_owned()),
                vec![Subject::service_account("a", "x")],
            ),
            // A ClusterRole named like the Role does not exist.
            role_binding(
                "d",
                "no-cluster-role",
                RoleRef::ClusterRole("pull".to_owned()),
                vec![Subject::service_account("a", "x")],
            ),
        ],
        ..Policy::default()
    };
    let authorizer = Authorizer::new(&policy);
    let b = authorizer.authorize(&sa("a", "x"), &pull("b", "s"));
    assert_eq!(
        b.allowed_by,
        vec![Allowed {
            binding: BindingRef {
                namespace: Some("b".to_owned()),
                name: "uses-role".to_owned()
            },
            role: RoleRef::Role("pull".to_owned()),
            subject: Subject::service_account("a", "x"),
            rule: 0,
        }]
    );
    for ns in ["c", "d"] {
        let decision = authorizer.authorize(&sa("a", "x"), &pull(ns, "s"));
        assert!(!decision.allowed(), "{ns}");
        assert_eq!(decision.missing_roles.len(), 1, "{ns}");
    }
    // A missing role is only reported for a user the binding applies to.
    assert!(
        authorizer
            .authorize(&sa("a", "y"), &pull("c", "s"))
            .missing_roles
            .is_empty()
    );
    let index = PullIndex::new(&authorizer);
    let subject = PullSubject::service_account("a", "x");
    let matrix = AccessMatrix::compute(&index, [&subject], ["a", "b", "c", "d"]);
    let allowed: Vec<_> = matrix.pairs().map(|(_, p, _)| p.to_owned()).collect();
    assert_eq!(allowed, vec!["b".to_owned()]);
}

#[test]
fn every_allowing_binding_is_named_with_the_first_subject_that_applies() {
    let puller = cluster_role(
        "puller",
        vec![
            rule(&["list"], &["*"], &["*"], &[]),
            rule(
                &["get"],
                &["image.openshift.io"],
                &["imagestreams/layers"],
                &[],
            ),
        ],
    );
    let policy = Policy {
        cluster_roles: vec![puller],
        role_bindings: vec![
            role_binding(
                "p",
                "z-by-group",
                RoleRef::ClusterRole("puller".to_owned()),
                vec![
                    Subject::User("someone".to_owned()),
                    Subject::Group("system:serviceaccounts:a".to_owned()),
                    Subject::service_account("a", "x"),
                ],
            ),
            role_binding(
                "p",
                "a-by-name",
                RoleRef::ClusterRole("puller".to_owned()),
                vec![Subject::service_account("a", "x")],
            ),
        ],
        cluster_role_bindings: vec![cluster_binding(
            "all-sas",
            "puller",
            vec![Subject::Group("system:serviceaccounts".to_owned())],
        )],
        ..Policy::default()
    };
    let authorizer = Authorizer::new(&policy);
    let decision = authorizer.authorize(&sa("a", "x"), &pull("p", "s"));
    let named: Vec<_> = decision
        .allowed_by
        .iter()
        .map(|a| (a.binding.to_string(), a.subject.clone(), a.rule))
        .collect();
    assert_eq!(
        named,
        vec![
            (
                "ClusterRoleBinding all-sas".to_owned(),
                Subject::Group("system:serviceaccounts".to_owned()),
                1
            ),
            (
                "RoleBinding p/a-by-name".to_owned(),
                Subject::service_account("a", "x"),
                1
            ),
            (
                "RoleBinding p/z-by-group".to_owned(),
                Subject::Group("system:serviceaccounts:a".to_owned()),
                1
            ),
        ]
    );
    // The matrix names the same bindings and subjects.
    let index = PullIndex::new(&authorizer);
    let subject = PullSubject::service_account("a", "x");
    let matrix = AccessMatrix::compute(&index, [&subject], ["p"]);
    let cell = matrix.cell(&subject, "p").expect("allowed");
    let via: Vec<_> = cell
        .grants
        .iter()
        .map(|g| (g.binding.to_string(), g.subject.clone()))
        .collect();
    let expected: Vec<_> = named.into_iter().map(|(b, s, _)| (b, s)).collect();
    assert_eq!(via, expected);
}

#[test]
fn all_service_accounts_of_a_namespace_count_only_group_grants() {
    let policy = Policy {
        cluster_roles: vec![cluster_role(
            "puller",
            vec![rule(
                &["get"],
                &["image.openshift.io"],
                &["imagestreams/layers"],
                &[],
            )],
        )],
        role_bindings: vec![
            role_binding(
                "b",
                "group",
                RoleRef::ClusterRole("puller".to_owned()),
                vec![Subject::Group("system:serviceaccounts:c".to_owned())],
            ),
            role_binding(
                "d",
                "one-sa",
                RoleRef::ClusterRole("puller".to_owned()),
                vec![Subject::service_account("c", "app")],
            ),
        ],
        ..Policy::default()
    };
    let index = PullIndex::new(&Authorizer::new(&policy));
    let all_c = PullSubject::AllServiceAccountsIn("c".to_owned());
    let app = PullSubject::service_account("c", "app");
    let matrix = AccessMatrix::compute(&index, [&all_c, &app], ["a", "b", "c", "d"]);
    let pairs: Vec<_> = matrix
        .pairs()
        .map(|(s, p, _)| (s.kubernetes_name(), p.to_owned()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("system:serviceaccount:c:app".to_owned(), "b".to_owned()),
            ("system:serviceaccount:c:app".to_owned(), "d".to_owned()),
            ("system:serviceaccounts:c".to_owned(), "b".to_owned()),
        ]
    );
}

/// A small deterministic generator (no dependency): `SplitMix64`.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).expect("small")
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len())]
    }

    fn some(&mut self, list: &[&str], max: usize) -> Vec<String> {
        (0..=self.below(max))
            .map(|_| self.pick(list).to_owned())
            .collect()
    }
}

const NAMESPACES: &[&str] = &["n0", "n1", "n2", "n3"];
const SA_NAMES: &[&str] = &["default", "builder", "app"];
const STREAMS: &[&str] = &["app", "web", "db"];

fn random_rule(g: &mut Gen) -> PolicyRule {
    PolicyRule {
        verbs: g.some(&["get", "list", "*", "update"], 2),
        api_groups: g.some(&["image.openshift.io", "", "*", "apps"], 2),
        resources: g.some(
            &[
                "imagestreams/layers",
                "imagestreams",
                "*",
                "*/layers",
                "imagestreams/*",
            ],
            2,
        ),
        resource_names: if g.below(3) == 0 {
            g.some(STREAMS, 2)
        } else {
            Vec::new()
        },
        non_resource_urls: Vec::new(),
    }
}

fn random_subject(g: &mut Gen) -> Subject {
    match g.below(6) {
        0 => Subject::service_account(g.pick(NAMESPACES), g.pick(SA_NAMES)),
        1 => Subject::ServiceAccount {
            namespace: None,
            name: g.pick(SA_NAMES).to_owned(),
        },
        2 => Subject::User(service_account_user_name(
            g.pick(NAMESPACES),
            g.pick(SA_NAMES),
        )),
        3 => Subject::Group(format!("system:serviceaccounts:{}", g.pick(NAMESPACES))),
        4 => Subject::Group(
            g.pick(&["system:serviceaccounts", "system:authenticated", "other"])
                .to_owned(),
        ),
        _ => Subject::User("alice".to_owned()),
    }
}

fn random_role_ref(g: &mut Gen) -> RoleRef {
    let name = format!("r{}", g.below(6));
    if g.below(2) == 0 {
        RoleRef::Role(name)
    } else {
        RoleRef::ClusterRole(name)
    }
}

fn random_policy(g: &mut Gen) -> Policy {
    let mut policy = Policy::default();
    for i in 0..5 {
        let rules = (0..=g.below(2)).map(|_| random_rule(g)).collect();
        policy
            .cluster_roles
            .push(cluster_role(&format!("r{i}"), rules));
        let rules = (0..=g.below(2)).map(|_| random_rule(g)).collect();
        policy.roles.push(Role {
            namespace: g.pick(NAMESPACES).to_owned(),
            name: format!("r{i}"),
            rules,
        });
    }
    for i in 0..8 {
        let subjects = (0..=g.below(2)).map(|_| random_subject(g)).collect();
        policy.role_bindings.push(role_binding(
            g.pick(NAMESPACES),
            &format!("rb{i}"),
            random_role_ref(g),
            subjects,
        ));
    }
    for i in 0..2 {
        let subjects = (0..=g.below(2)).map(|_| random_subject(g)).collect();
        policy.cluster_role_bindings.push(ClusterRoleBinding {
            name: format!("crb{i}"),
            role_ref: RoleRef::ClusterRole(format!("r{}", g.below(6))),
            subjects,
        });
    }
    policy
}

/// The matrix is the authorizer asked once per (subject, project, stream):
/// same allowed pairs, same streams, same bindings.
#[test]
fn the_matrix_agrees_with_the_authorizer_on_random_policies() {
    let mut g = Gen(11);
    let mut allowed_cells = 0;
    let mut denied_cells = 0;
    for _ in 0..300 {
        let policy = random_policy(&mut g);
        let authorizer = Authorizer::new(&policy);
        let index = PullIndex::new(&authorizer);
        let mut subjects: Vec<PullSubject> = NAMESPACES
            .iter()
            .map(|ns| PullSubject::AllServiceAccountsIn((*ns).to_owned()))
            .collect();
        for ns in NAMESPACES {
            for name in SA_NAMES {
                subjects.push(PullSubject::service_account(ns, name));
            }
        }
        let matrix = AccessMatrix::compute(&index, &subjects, NAMESPACES.iter().copied());
        for subject in &subjects {
            let user = match subject {
                PullSubject::ServiceAccount { namespace, name } => sa(namespace, name),
                // A name no binding holds: only the groups count.
                PullSubject::AllServiceAccountsIn(ns) => UserInfo {
                    name: "system:serviceaccount:-:-".to_owned(),
                    groups: service_account_groups(ns).to_vec(),
                },
            };
            for project in NAMESPACES {
                let cell = matrix.cell(subject, project);
                for stream in STREAMS {
                    let decision = authorizer.authorize(&user, &pull(project, stream));
                    let by_matrix: BTreeSet<_> = cell
                        .iter()
                        .flat_map(|c| &c.grants)
                        .filter(|g| g.streams.contains(stream))
                        .map(|g| (g.binding.clone(), g.subject.clone()))
                        .collect();
                    let by_authorizer: BTreeSet<_> = decision
                        .allowed_by
                        .iter()
                        .map(|a| (a.binding.clone(), a.subject.clone()))
                        .collect();
                    assert_eq!(
                        by_matrix, by_authorizer,
                        "{subject:?} {project} {stream} {policy:#?}"
                    );
                }
                let whole = authorizer.authorize(&user, &ResourceRequest::pull(project, None));
                assert_eq!(
                    cell.as_ref().is_some_and(PullAccess::whole_project),
                    whole.allowed(),
                    "{subject:?} {project} {policy:#?}"
                );
                if cell.is_some() {
                    allowed_cells += 1;
                } else {
                    denied_cells += 1;
                }
            }
        }
    }
    // Both answers occur often enough for the comparison to mean something.
    assert!(
        allowed_cells > 1_000 && denied_cells > 1_000,
        "{allowed_cells} {denied_cells}"
    );
}

fn puller_policy(bindings: Vec<RoleBinding>, cluster: Vec<ClusterRoleBinding>) -> Policy {
    Policy {
        cluster_roles: vec![
            cluster_role(
                "puller",
                vec![rule(
                    &["get"],
                    &["image.openshift.io"],
                    &["imagestreams/layers"],
                    &[],
                )],
            ),
            cluster_role(
                "app-only",
                vec![rule(
                    &["get"],
                    &["image.openshift.io"],
                    &["imagestreams/layers"],
                    &["app"],
                )],
            ),
        ],
        role_bindings: bindings,
        cluster_role_bindings: cluster,
        ..Policy::default()
    }
}

fn matrix_of(policy: &Policy, subjects: &[PullSubject], projects: &[&str]) -> AccessMatrix {
    AccessMatrix::compute(
        &PullIndex::new(&Authorizer::new(policy)),
        subjects,
        projects.iter().copied(),
    )
}

fn pairs(changes: &[AccessChange]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|c| (c.subject.kubernetes_name(), c.project.clone()))
        .collect()
}

#[test]
fn the_diff_lists_pairs_gained_and_lost_with_their_bindings() {
    let x = PullSubject::service_account("a", "x");
    let y = PullSubject::service_account("a", "y");
    let subjects = [x.clone(), y.clone()];
    let projects = ["a", "b", "c"];
    let bind = |ns: &str, name: &str, role: &str, who: &str| {
        role_binding(
            ns,
            name,
            RoleRef::ClusterRole(role.to_owned()),
            vec![Subject::service_account("a", who)],
        )
    };
    let before = puller_policy(
        vec![
            bind("b", "x-b", "puller", "x"),
            bind("c", "y-c", "puller", "y"),
        ],
        Vec::new(),
    );
    let after = puller_policy(
        vec![
            // Same access through another binding: no change.
            bind("b", "x-b-renamed", "puller", "x"),
            // New.
            bind("c", "x-c", "puller", "x"),
            // Narrowed to one stream.
            bind("c", "y-c", "app-only", "y"),
        ],
        Vec::new(),
    );
    let old = matrix_of(&before, &subjects, &projects);
    let new = matrix_of(&after, &subjects, &projects);
    let diff = AccessDiff::between(&old, &new);
    assert_eq!(
        pairs(&diff.gained),
        vec![("system:serviceaccount:a:x".to_owned(), "c".to_owned())]
    );
    assert_eq!(
        diff.gained[0].after.as_ref().expect("after").grants[0]
            .binding
            .to_string(),
        "RoleBinding c/x-c"
    );
    assert!(diff.gained[0].before.is_none());
    assert_eq!(
        pairs(&diff.lost),
        vec![("system:serviceaccount:a:y".to_owned(), "c".to_owned())]
    );
    assert_eq!(diff.lost[0].streams_before(), Some(Streams::All));
    assert_eq!(
        diff.lost[0].streams_after(),
        Some(Streams::Named(BTreeSet::from(["app".to_owned()])))
    );
    // Backwards, the same pairs swap sides.
    let back = AccessDiff::between(&new, &old);
    assert_eq!(pairs(&back.gained), pairs(&diff.lost));
    assert_eq!(pairs(&back.lost), pairs(&diff.gained));
    assert!(AccessDiff::between(&old, &old).is_empty());
}

#[test]
fn the_diff_of_a_cluster_wide_grant_and_of_new_projects() {
    let x = PullSubject::service_account("a", "x");
    let subjects = [x.clone()];
    let everywhere = vec![cluster_binding(
        "x-everywhere",
        "puller",
        vec![Subject::service_account("a", "x")],
    )];
    let none = puller_policy(Vec::new(), Vec::new());
    let wide = puller_policy(Vec::new(), everywhere);
    let old = matrix_of(&none, &subjects, &["a", "b"]);
    let new = matrix_of(&wide, &subjects, &["a", "b"]);
    let diff = AccessDiff::between(&old, &new);
    assert_eq!(
        pairs(&diff.gained),
        vec![
            ("system:serviceaccount:a:x".to_owned(), "a".to_owned()),
            ("system:serviceaccount:a:x".to_owned(), "b".to_owned())
        ]
    );
    assert!(diff.lost.is_empty());
    // Same policy, one more project: the cluster-wide grant reaches it.
    let more = matrix_of(&wide, &subjects, &["a", "b", "c"]);
    let diff = AccessDiff::between(&new, &more);
    assert_eq!(
        pairs(&diff.gained),
        vec![("system:serviceaccount:a:x".to_owned(), "c".to_owned())]
    );
    let diff = AccessDiff::between(&more, &new);
    assert_eq!(
        pairs(&diff.lost),
        vec![("system:serviceaccount:a:x".to_owned(), "c".to_owned())]
    );
    assert_eq!(new.pairs().count(), 2);
    assert_eq!(more.pairs().count(), 3);
}

#[test]
fn streams_moving_both_ways_are_gained_and_lost() {
    let x = PullSubject::service_account("a", "x");
    let subjects = [x.clone()];
    let only = |stream: &str| Policy {
        cluster_roles: vec![cluster_role(
            "one",
            vec![rule(
                &["get"],
                &["image.openshift.io"],
                &["imagestreams/layers"],
                &[stream],
            )],
        )],
        role_bindings: vec![role_binding(
            "b",
            "rb",
            RoleRef::ClusterRole("one".to_owned()),
            vec![Subject::service_account("a", "x")],
        )],
        ..Policy::default()
    };
    let diff = AccessDiff::between(
        &matrix_of(&only("app"), &subjects, &["b"]),
        &matrix_of(&only("web"), &subjects, &["b"]),
    );
    assert_eq!(diff.gained.len(), 1);
    assert_eq!(diff.lost.len(), 1);
    let cell = diff.gained[0].after.as_ref().expect("after");
    assert!(cell.allows("web") && !cell.allows("app") && !cell.whole_project());
}
