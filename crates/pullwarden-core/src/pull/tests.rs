//! Unit tests on plain data: the tables of upstream's `keyring_test.go` and
//! `secrets_test.go` (translated as data), and the pod-level rules.

use super::*;

/// A `.dockercfg` with `"key": {"username": .., "password": ..}` entries.
fn dockercfg(entries: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    for (key, user, pass) in entries {
        map.insert(
            (*key).to_string(),
            serde_json::json!({"username": user, "password": pass, "email": "x@example.com"}),
        );
    }
    serde_json::Value::Object(map).to_string().into_bytes()
}

fn config_json(entries: &[(&str, &str, &str)]) -> Vec<u8> {
    format!(
        r#"{{"auths": {}}}"#,
        String::from_utf8(dockercfg(entries)).unwrap()
    )
    .into_bytes()
}

/// (username, password) pairs of a keyring lookup of a raw repository string,
/// the way `keyring_test.go` calls `BasicDockerKeyring.Lookup` directly.
fn raw_lookup(config: &[u8], repository: &str) -> Vec<(String, String)> {
    let secret = SecretInput {
        name: "s",
        secret_type: TYPE_DOCKERCFG,
        docker_config: Some(config),
    };
    let mut notes = Vec::new();
    let entries = keyring_entries(&[secret], &mut notes).unwrap();
    lookup(&entries, repository)
        .into_iter()
        .map(|c| {
            (
                c.username.unwrap_or_default(),
                c.password.expose().to_string(),
            )
        })
        .collect()
}

fn pair(u: &str, p: &str) -> (String, String) {
    (u.into(), p.into())
}

/// `TestDockerKeyringForGlob`: each key finds its target + "/foo/bar".
#[test]
fn keyring_for_glob() {
    let table = [
        ("https://hello.kubernetes.io", "hello.kubernetes.io"),
        ("https://*.docker.io", "prefix.docker.io"),
        ("https://prefix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.*", "prefix.docker.io"),
        ("https://*.docker.io/path", "prefix.docker.io/path"),
        ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
        ("https://prefix.docker.*/path", "prefix.docker.io/path"),
        ("https://*.docker.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
        (
            "https://*.docker.io/path:1111",
            "prefix.docker.io/path:1111",
        ),
        ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
        ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
        (
            "https://prefix.docker.*/path:1111",
            "prefix.docker.io/path:1111",
        ),
        ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
        ("*.docker.io:1111", "prefix.docker.io:1111/path"),
    ];
    for (key, target) in table {
        let config = dockercfg(&[(key, "foo", "bar")]);
        assert_eq!(
            raw_lookup(&config, &format!("{target}/foo/bar")),
            vec![pair("foo", "bar")],
            "{key}"
        );
    }
}

/// `TestKeyringMiss`.
#[test]
fn keyring_miss() {
    let table = [
        ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
        ("https://*.docker.com", "prefix.docker.io"),
        ("https://suffix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.c*", "prefix.docker.io"),
        (
            "https://prefix.*.io/path:1111",
            "prefix.docker.io/path/subpath:1111",
        ),
        ("suffix.*.io", "prefix.docker.io"),
    ];
    for (key, target) in table {
        let config = dockercfg(&[(key, "foo", "bar")]);
        assert_eq!(
            raw_lookup(&config, &format!("{target}/foo/bar")),
            vec![],
            "{key}"
        );
    }
}

/// `TestKeyringMissWithDockerHubCredentials`, `TestKeyringHitWithUnqualifiedDockerHub`,
/// `…UnqualifiedLibraryDockerHub`, `…QualifiedDockerHub`.
#[test]
fn docker_hub_credentials() {
    let config = dockercfg(&[("https://index.docker.io/v1/", "foo", "bar")]);
    assert_eq!(raw_lookup(&config, "world.mesos.org/foo/bar"), vec![]);
    assert_eq!(
        raw_lookup(&config, "google/docker-registry"),
        vec![pair("foo", "bar")]
    );
    assert_eq!(raw_lookup(&config, "jenkins"), vec![pair("foo", "bar")]);
    assert_eq!(
        raw_lookup(&config, "index.docker.io/v1//google/docker-registry"),
        vec![pair("foo", "bar")]
    );
}

/// `TestIsDefaultRegistryMatch`.
#[test]
fn is_default_registry_match_table() {
    for (image, want) in [
        ("foo/bar", true),
        ("docker.io/foo/bar", true),
        ("index.docker.io/foo/bar", true),
        ("foo", true),
        ("", false),
        ("registry.tld/foo/bar", false),
        ("registry:5000/foo/bar", false),
        ("myhostdocker.io/foo/bar", false),
    ] {
        assert_eq!(keyring::is_default_registry_match(image), want, "{image}");
    }
}

/// `TestDockerKeyringLookup`: the more specific key first, string prefixes match.
#[test]
fn keyring_lookup_order() {
    let config = dockercfg(&[
        ("bar.example.com/pong", "grace", "squash"),
        ("bar.example.com", "ada", "smash"),
    ]);
    let ada = pair("ada", "smash");
    let grace = pair("grace", "squash");
    assert_eq!(raw_lookup(&config, "bar.example.com"), vec![ada.clone()]);
    assert_eq!(
        raw_lookup(&config, "bar.example.com/pong"),
        vec![grace.clone(), ada.clone()]
    );
    assert_eq!(
        raw_lookup(&config, "bar.example.com/ping"),
        vec![ada.clone()]
    );
    assert_eq!(
        raw_lookup(&config, "bar.example.com/pongz"),
        vec![grace.clone(), ada.clone()]
    );
    assert_eq!(
        raw_lookup(&config, "bar.example.com/pong/pang"),
        vec![grace, ada]
    );
    assert_eq!(raw_lookup(&config, "example.com"), vec![]);
    assert_eq!(raw_lookup(&config, "foo.example.com"), vec![]);
}

/// `TestIssue3797`: `/v1/` is the host.
#[test]
fn issue_3797() {
    let config = dockercfg(&[("https://quay.io/v1/", "rex", "tiny arms")]);
    for image in ["quay.io", "quay.io/foo", "quay.io/foo/bar"] {
        assert_eq!(
            raw_lookup(&config, image),
            vec![pair("rex", "tiny arms")],
            "{image}"
        );
    }
}

fn secret<'a>(name: &'a str, secret_type: &'a str, config: &'a [u8]) -> SecretInput<'a> {
    SecretInput {
        name,
        secret_type,
        docker_config: Some(config),
    }
}

fn candidates(selection: &Selection) -> Vec<(String, String, String)> {
    match &selection.verdict {
        Verdict::Candidates(candidates) => candidates
            .iter()
            .map(|c| {
                (
                    c.secret.clone(),
                    c.registry_key.clone(),
                    c.password.expose().to_string(),
                )
            })
            .collect(),
        Verdict::Anonymous => vec![],
        Verdict::Failed(failure) => panic!("failed: {failure:?}"),
    }
}

fn triple(s: &str, k: &str, p: &str) -> (String, String, String) {
    (s.into(), k.into(), p.into())
}

/// `Test_MakeDockerKeyring` of `secrets_test.go`: both formats, other types skipped.
#[test]
fn make_docker_keyring() {
    let json = config_json(&[("registry.example.com", "u1", "p1")]);
    let cfg = dockercfg(&[("registry.example.com", "u2", "p2")]);
    let opaque = json.clone();
    let secrets = [
        secret("json", TYPE_DOCKER_CONFIG_JSON, &json),
        secret("cfg", TYPE_DOCKERCFG, &cfg),
        secret("opaque", "Opaque", &opaque),
        // the right type with the other format's key: skipped
        SecretInput {
            name: "empty",
            secret_type: TYPE_DOCKERCFG,
            docker_config: None,
        },
    ];
    let selection = select(
        "registry.example.com/app:1",
        &["json", "opaque", "cfg", "empty", "gone", "", "json"],
        &secrets,
    );
    assert_eq!(
        candidates(&selection),
        vec![
            triple("json", "registry.example.com", "p1"),
            triple("cfg", "registry.example.com", "p2"),
            triple("json", "registry.example.com", "p1"),
        ]
    );
    assert_eq!(
        selection.notes,
        vec![
            Note::SecretNotFound {
                name: "gone".into()
            },
            Note::EmptySecretName { index: 5 },
            Note::SecretListedTwice {
                name: "json".into()
            },
            Note::SecretSkipped {
                name: "opaque".into(),
                reason: SkipReason::NotADockerConfigType {
                    secret_type: "Opaque".into()
                }
            },
            Note::SecretSkipped {
                name: "empty".into(),
                reason: SkipReason::NoDockerConfig { key: KEY_DOCKERCFG }
            },
        ]
    );
}

#[test]
fn keys_are_ordered_across_secrets_most_specific_first() {
    let a = config_json(&[("quay.io", "a", "pa"), ("quay.io/team", "a", "pa-team")]);
    let b = config_json(&[
        ("https://quay.io/team/app", "b", "pb-app"),
        ("quay.io", "b", "pb"),
    ]);
    let secrets = [
        secret("a", TYPE_DOCKER_CONFIG_JSON, &a),
        secret("b", TYPE_DOCKER_CONFIG_JSON, &b),
    ];
    let selection = select("quay.io/team/app:v1", &["a", "b"], &secrets);
    assert_eq!(
        candidates(&selection),
        vec![
            triple("b", "https://quay.io/team/app", "pb-app"),
            triple("a", "quay.io/team", "pa-team"),
            triple("a", "quay.io", "pa"),
            triple("b", "quay.io", "pb"),
        ]
    );
}

#[test]
fn same_registry_twice_in_one_secret_is_a_tie() {
    let a = config_json(&[("quay.io", "a", "1"), ("https://quay.io", "a", "2")]);
    let secrets = [secret("a", TYPE_DOCKER_CONFIG_JSON, &a)];
    let Verdict::Candidates(found) = select("quay.io/x", &["a"], &secrets).verdict else {
        panic!("expected candidates");
    };
    assert_eq!(found.len(), 2);
    assert!(!found[0].same_rank_as_previous);
    assert!(found[1].same_rank_as_previous);
}

#[test]
fn docker_hub_spellings() {
    let hub = config_json(&[
        ("docker.io", "u", "docker.io"),
        ("https://index.docker.io/v1/", "u", "index"),
        ("registry-1.docker.io", "u", "registry-1"),
    ]);
    let secrets = [secret("hub", TYPE_DOCKER_CONFIG_JSON, &hub)];
    // docker.io matches directly, so the index.docker.io fallback is not used
    assert_eq!(
        candidates(&select("nginx", &["hub"], &secrets)),
        vec![triple("hub", "docker.io", "docker.io")]
    );
    let index_only = config_json(&[
        ("https://index.docker.io/v1/", "u", "index"),
        ("registry-1.docker.io", "u", "r1"),
    ]);
    let secrets = [secret("hub", TYPE_DOCKER_CONFIG_JSON, &index_only)];
    let selection = select("library/nginx:1", &["hub"], &secrets);
    assert_eq!(
        candidates(&selection),
        vec![triple("hub", "https://index.docker.io/v1/", "index")]
    );
    let Verdict::Candidates(found) = selection.verdict else {
        unreachable!()
    };
    assert!(found[0].via_docker_hub_fallback);
    // registry-1.docker.io never matches a docker.io image
    let r1 = config_json(&[("registry-1.docker.io", "u", "r1")]);
    let secrets = [secret("hub", TYPE_DOCKER_CONFIG_JSON, &r1)];
    assert!(matches!(
        select("nginx", &["hub"], &secrets).verdict,
        Verdict::Anonymous
    ));
    // localhost/x is a Docker Hub match for the fallback (no '.' or ':')
    let secrets = [secret("hub", TYPE_DOCKER_CONFIG_JSON, &index_only)];
    assert_eq!(
        candidates(&select("localhost/x", &["hub"], &secrets)).len(),
        1
    );
}

#[test]
fn ports_and_labels_must_agree() {
    let config = config_json(&[
        ("registry.example.com", "u", "no-port"),
        ("*.example.com:5000", "u", "glob-port"),
    ]);
    let secrets = [secret("s", TYPE_DOCKER_CONFIG_JSON, &config)];
    assert_eq!(
        candidates(&select("registry.example.com:5000/a", &["s"], &secrets)),
        vec![triple("s", "*.example.com:5000", "glob-port")]
    );
    assert_eq!(
        candidates(&select("registry.example.com/a", &["s"], &secrets)),
        vec![triple("s", "registry.example.com", "no-port")]
    );
    assert!(matches!(
        select("a.b.example.com:5000/a", &["s"], &secrets).verdict,
        Verdict::Anonymous
    ));
}

#[test]
fn a_malformed_secret_fails_the_pull_and_an_invalid_image_fails_first() {
    let good = config_json(&[("quay.io", "u", "p")]);
    let bad = b"{\"auths\": ".to_vec();
    let secrets = [
        secret("good", TYPE_DOCKER_CONFIG_JSON, &good),
        secret("bad", TYPE_DOCKERCFG, &bad),
    ];
    let selection = select("quay.io/x", &["good", "bad"], &secrets);
    assert!(matches!(
        selection.verdict,
        Verdict::Failed(PullFailure::MalformedSecret { ref secret, problem: DockerConfigProblem::Syntax { .. } }) if secret == "bad"
    ));
    // a secret the pod does not list cannot fail it
    assert_eq!(
        candidates(&select("quay.io/x", &["good"], &secrets)).len(),
        1
    );
    assert!(matches!(
        select("Quay.io/X", &["good", "bad"], &secrets).verdict,
        Verdict::Failed(PullFailure::InvalidImage(ImageRefError::Uppercase))
    ));
}

#[test]
fn unparsable_keys_are_ignored_with_a_note_and_secrets_never_debug_print() {
    let config = config_json(&[("quay.io:x", "u", "p"), ("quay.io", "u", "s3cr3t-canary")]);
    let secrets = [secret("s", TYPE_DOCKER_CONFIG_JSON, &config)];
    let selection = select("quay.io/a", &["s"], &secrets);
    assert_eq!(
        selection.notes,
        vec![Note::EntryIgnored {
            secret: "s".into(),
            registry_key: "quay.io:x".into()
        }]
    );
    let debug = format!("{selection:?} {secrets:?}");
    assert!(!debug.contains("s3cr3t-canary"), "{debug}");
    assert_eq!(candidates(&selection).len(), 1);
}
