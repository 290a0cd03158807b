//! Differential test: `pullwarden_core::pull::select` against the kubelet's
//! own code (`tools/kubelet-oracle`, built from k8s.io/kubernetes by
//! `scripts/build-kubelet-oracle.sh`) on upstream's table cases and on
//! generated cases. Zero disagreements required; a disagreement prints the
//! smallest failing case found (greedily shrunk) as JSON.
//!
//! The oracle binary comes from `PULLWARDEN_KUBELET_ORACLE`
//! (`scripts/test.sh` sets it); without it, the test runs the build script
//! itself (cached). It fails, never skips, when there is no oracle.
//! `PULLWARDEN_ORACLE_CASES` sets the number of generated cases (default
//! 12,000) and `PULLWARDEN_ORACLE_SEED` the seed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use pullwarden_core::pull::{self, PullFailure, SecretInput, Verdict};
use serde_json::{Value, json};

const ORACLE_ENV: &str = "PULLWARDEN_KUBELET_ORACLE";
const DEFAULT_CASES: usize = 12_000;

// ---------------------------------------------------------------- cases

/// A docker config, kept structured so that a failing case can be shrunk.
#[derive(Clone, Debug)]
enum Config {
    /// Entries rendered as JSON; `wrapper` is the name of the `auths` field
    /// (`None`: the bare map), `extra` more top-level members (raw JSON).
    Entries {
        wrapper: Option<String>,
        entries: Vec<(String, String)>,
        extra: Vec<String>,
    },
    /// Bytes as they are (malformed JSON, odd top-level values).
    Raw(Vec<u8>),
}

impl Config {
    fn render(&self) -> Vec<u8> {
        match self {
            Config::Raw(bytes) => bytes.clone(),
            Config::Entries {
                wrapper,
                entries,
                extra,
            } => {
                let map = entries
                    .iter()
                    .map(|(key, value)| format!("{}: {value}", json!(key)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut members = extra.clone();
                match wrapper {
                    Some(name) => members.insert(0, format!("{}: {{{map}}}", json!(name))),
                    None => members.insert(0, map),
                }
                let members: Vec<String> = members.into_iter().filter(|m| !m.is_empty()).collect();
                format!("{{{}}}", members.join(", ")).into_bytes()
            }
        }
    }
}

#[derive(Clone, Debug)]
struct SecretCase {
    name: String,
    secret_type: String,
    /// The data key and the docker config under it; `None`: no data.
    data: Option<(String, Config)>,
}

#[derive(Clone, Debug)]
struct Case {
    image: String,
    secrets: Vec<SecretCase>,
    pod_secrets: Vec<String>,
}

impl Case {
    fn to_json(&self) -> Value {
        let secrets: Vec<Value> = self
            .secrets
            .iter()
            .map(|s| {
                let mut data = serde_json::Map::new();
                if let Some((key, config)) = &s.data {
                    data.insert(key.clone(), json!(STANDARD.encode(config.render())));
                }
                json!({"name": s.name, "type": s.secret_type, "data": data})
            })
            .collect();
        json!({"image": self.image, "secrets": secrets, "pod_secrets": self.pod_secrets})
    }

    /// The answer through pullwarden, in the oracle's shape.
    fn pullwarden(&self) -> Answer {
        let rendered: Vec<(String, String, BTreeMap<String, Vec<u8>>)> = self
            .secrets
            .iter()
            .map(|s| {
                let mut data = BTreeMap::new();
                if let Some((key, config)) = &s.data {
                    data.insert(key.clone(), config.render());
                }
                (s.name.clone(), s.secret_type.clone(), data)
            })
            .collect();
        let inputs: Vec<SecretInput<'_>> = rendered
            .iter()
            .map(|(name, secret_type, data)| SecretInput::from_data(name, secret_type, data))
            .collect();
        let selection = pull::select(&self.image, &self.pod_secrets, &inputs);
        let repository = selection
            .image
            .as_ref()
            .map(|i| i.repository.clone())
            .unwrap_or_default();
        match selection.verdict {
            Verdict::Failed(PullFailure::InvalidImage(_)) => Answer::error("image", ""),
            Verdict::Failed(PullFailure::MalformedSecret { .. }) => {
                Answer::error("keyring", &repository)
            }
            Verdict::Anonymous => Answer {
                error: String::new(),
                repository,
                candidates: vec![],
            },
            Verdict::Candidates(candidates) => Answer {
                error: String::new(),
                repository,
                candidates: candidates
                    .iter()
                    .map(|c| {
                        (
                            c.same_rank_as_previous,
                            [
                                c.secret.clone(),
                                c.username.clone().unwrap_or_default(),
                                // the comparison needs the value; it never leaves the test
                                c.password.expose().to_string(),
                            ],
                        )
                    })
                    .collect(),
            },
        }
    }
}

/// An answer: error kind (`""`, `image`, `keyring`), repository, and the
/// candidates (secret, username, password), each marked when it ties with
/// the previous one (the kubelet's order between those is Go map order).
#[derive(Debug)]
struct Answer {
    error: String,
    repository: String,
    candidates: Vec<(bool, [String; 3])>,
}

impl Answer {
    fn error(kind: &str, repository: &str) -> Self {
        Self {
            error: kind.into(),
            repository: repository.into(),
            candidates: vec![],
        }
    }

    fn from_oracle(value: &Value) -> Self {
        let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
        Self {
            error: text(value, "error"),
            repository: text(value, "repository"),
            candidates: value["candidates"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|c| {
                            (
                                false,
                                [text(c, "secret"), text(c, "username"), text(c, "password")],
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether `kubelet` agrees with this (pullwarden's) answer: same error
    /// kind and repository, same candidates in the same order, except that
    /// candidates of one tie group may come in any order.
    fn agrees_with(&self, kubelet: &Answer) -> bool {
        if self.error != kubelet.error
            || self.repository != kubelet.repository
            || self.candidates.len() != kubelet.candidates.len()
        {
            return false;
        }
        let mut start = 0;
        while start < self.candidates.len() {
            let mut end = start + 1;
            while end < self.candidates.len() && self.candidates[end].0 {
                end += 1;
            }
            let mut ours: Vec<&[String; 3]> =
                self.candidates[start..end].iter().map(|c| &c.1).collect();
            let mut theirs: Vec<&[String; 3]> = kubelet.candidates[start..end]
                .iter()
                .map(|c| &c.1)
                .collect();
            ours.sort();
            theirs.sort();
            if ours != theirs {
                return false;
            }
            start = end;
        }
        true
    }
}

// ---------------------------------------------------------------- oracle

fn oracle_path() -> PathBuf {
    if let Some(path) = std::env::var_os(ORACLE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-kubelet-oracle.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{ORACLE_ENV} is not set and {} cannot run: {e}; run `just test` or scripts/build-kubelet-oracle.sh", script.display()));
    assert!(
        output.status.success(),
        "{ORACLE_ENV} is not set and {} failed ({}); run `just test` or scripts/build-kubelet-oracle.sh",
        script.display(),
        output.status
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn ask_oracle(oracle: &Path, cases: &[Case]) -> Vec<Answer> {
    let input = Value::Array(cases.iter().map(Case::to_json).collect()).to_string();
    let mut child = Command::new(oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", oracle.display()));
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "the oracle failed: {}",
        output.status
    );
    let answers: Value = serde_json::from_slice(&output.stdout).expect("the oracle's JSON");
    let answers: Vec<Answer> = answers
        .as_array()
        .expect("an array")
        .iter()
        .map(Answer::from_oracle)
        .collect();
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    answers
}

fn disagrees(oracle: &Path, case: &Case) -> bool {
    let kubelet = ask_oracle(oracle, std::slice::from_ref(case));
    !case.pullwarden().agrees_with(&kubelet[0])
}

/// Greedy shrinking: drop pod references, secrets, entries and extra
/// members while the case still disagrees.
fn shrink(oracle: &Path, mut case: Case) -> Case {
    loop {
        let mut smaller: Vec<Case> = Vec::new();
        for i in 0..case.pod_secrets.len() {
            let mut c = case.clone();
            c.pod_secrets.remove(i);
            smaller.push(c);
        }
        for i in 0..case.secrets.len() {
            let mut c = case.clone();
            c.secrets.remove(i);
            smaller.push(c);
        }
        for (s, secret) in case.secrets.iter().enumerate() {
            if let Some((_, Config::Entries { entries, extra, .. })) = &secret.data {
                for i in 0..entries.len() {
                    let mut c = case.clone();
                    if let Some((_, Config::Entries { entries, .. })) = &mut c.secrets[s].data {
                        entries.remove(i);
                    }
                    smaller.push(c);
                }
                for i in 0..extra.len() {
                    let mut c = case.clone();
                    if let Some((_, Config::Entries { extra, .. })) = &mut c.secrets[s].data {
                        extra.remove(i);
                    }
                    smaller.push(c);
                }
            }
        }
        match smaller.into_iter().find(|c| disagrees(oracle, c)) {
            Some(c) => case = c,
            None => return case,
        }
    }
}

// ---------------------------------------------------------------- generator

/// splitmix64: a seeded generator, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap()
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const HOSTS: &[&str] = &[
    "quay.io",
    "registry.example.com",
    "a.b.example.com",
    "example.com",
    "localhost",
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "127.0.0.1",
    "Registry.Example.com",
    "my-registry",
    "[::1]",
];
const PORTS: &[&str] = &["", "", "", ":5000", ":443"];
const COMPONENTS: &[&str] = &[
    "team", "teams", "app", "library", "nginx", "x-y", "a_b", "a.b", "v1", "v2",
];
const SHA: &str = "sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b";

fn image(rng: &mut Rng) -> String {
    if rng.chance(4) {
        return (rng.pick(&[
            "",
            "Nginx",
            "quay.io/Team/app",
            "quay.io//x",
            "-x",
            ":tag",
            "quay.io/app@sha256:abc",
            "quay.io/app@md5:0123456789abcdef0123456789abcdef",
            "e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b",
            "quay.io:5000",
            "a_b.com/x",
            "[::1]:5000/x",
            "[:::::]:5000/x",
            "localhost/x",
            "Foo/bar",
        ]))
        .to_string();
    }
    let mut out = String::new();
    if rng.chance(75) {
        out.push_str(rng.pick(HOSTS));
        out.push_str(rng.pick(PORTS));
        out.push('/');
    }
    let n = 1 + rng.below(3);
    let parts: Vec<&str> = (0..n).map(|_| rng.pick(COMPONENTS)).collect();
    out.push_str(&parts.join("/"));
    if rng.chance(40) {
        out.push_str(rng.pick(&[":v1", ":latest", ":1.25-alpine"]));
    }
    if rng.chance(20) {
        out.push('@');
        out.push_str(SHA);
    }
    out
}

/// A key written for the image's own registry (as people do), with a
/// random variation: a prefix of its path, a glob label, scheme, port.
fn derived_key(rng: &mut Rng, image: &str) -> String {
    let (host, rest) = match image.split_once('/') {
        Some((h, r)) if h.contains(['.', ':']) || h == "localhost" => (h.to_string(), r),
        _ => ("docker.io".to_string(), image),
    };
    let rest = rest.split('@').next().unwrap_or_default();
    let components: Vec<&str> = rest
        .split('/')
        .map(|c| c.split(':').next().unwrap_or_default())
        .collect();
    let k = rng.below(components.len() + 1);
    let mut host = host;
    if rng.chance(15) && !host.starts_with('[') {
        let mut labels: Vec<String> = host.split('.').map(str::to_string).collect();
        let i = rng.below(labels.len());
        labels[i] = "*".into();
        host = labels.join(".");
    }
    if rng.chance(10) {
        host = match host.split_once(':') {
            Some((h, _)) => h.to_string(),
            None => format!("{host}:5000"),
        };
    }
    let scheme = rng.pick(&["", "", "https://", "http://"]);
    let mut path = String::new();
    for c in &components[..k] {
        path.push('/');
        path.push_str(c);
    }
    let suffix = rng.pick(&["", "", "", "/", "/v1/", "/v2/"]);
    if rng.chance(10) && !path.is_empty() {
        path.pop();
    }
    format!("{scheme}{host}{path}{suffix}")
}

fn registry_key(rng: &mut Rng, image: &str) -> String {
    if rng.chance(50) {
        return derived_key(rng, image);
    }
    if rng.chance(15) {
        return (rng.pick(&[
            "https://index.docker.io/v1/",
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io/v2/",
            "*.docker.io",
            "*.io",
            "*",
            "quay.io:x",
            "a:1:2",
            "user:pw@quay.io",
            "quay.io?x=1",
            "quay.io#frag",
            "quay.io/%zz",
            "qu%61y.io",
            "quay.io/t%65am",
            "",
            "quay io",
            "q*.io",
            "[a-z]uay.io",
            "[q-",
            "localhost",
            "quay.io:",
            "http://[::1]:5000",
            "quay.io/",
            "HTTPS://quay.io",
        ]))
        .to_string();
    }
    let mut host = (rng.pick(HOSTS)).to_string();
    if rng.chance(20) && !host.starts_with('[') {
        let mut labels: Vec<String> = host.split('.').map(str::to_string).collect();
        let i = rng.below(labels.len());
        labels[i] = (rng.pick(&["*", "*y", "q*", "?uay", "[a-z]*"])).to_string();
        host = labels.join(".");
    }
    let scheme = rng.pick(&["", "", "https://", "http://"]);
    let port = rng.pick(PORTS);
    let path = rng.pick(&[
        "",
        "",
        "",
        "/team",
        "/team/app",
        "/teams",
        "/library",
        "/library/nginx",
        "/v1/",
        "/v2/",
        "/v2/team",
        "/team/",
        "/",
        "/v1",
    ]);
    format!("{scheme}{host}{port}{path}")
}

fn entry(rng: &mut Rng, serial: &mut usize) -> String {
    *serial += 1;
    let user = format!("user{}", rng.below(3));
    let pass = format!("pw-{serial}");
    let auth_plain = format!("{user}:{pass}");
    let mut fields: Vec<String> = Vec::new();
    match rng.below(100) {
        0..=34 => fields.push(format!(r#""auth": "{}""#, STANDARD.encode(&auth_plain))),
        35..=39 => fields.push(format!(
            r#""auth": "{}""#,
            STANDARD_NO_PAD.encode(&auth_plain)
        )),
        40..=69 => {
            fields.push(format!(r#""username": {}"#, json!(user)));
            fields.push(format!(r#""password": {}"#, json!(pass)));
        }
        70..=79 => {
            // auth overrides the fields
            fields.push(r#""username": "other""#.to_string());
            fields.push(format!(r#""password": "other-{serial}""#));
            fields.push(format!(r#""auth": "{}""#, STANDARD.encode(&auth_plain)));
        }
        80..=83 => fields.push(format!(r#""identitytoken": "tok-{serial}""#)),
        84..=85 => fields.push(format!(r#""Username": "u", "PASSWORD": "{pass}""#)),
        86 => return "null".into(),
        87 => return r#""not an entry""#.into(),
        88 => fields.push(r#""auth": "not base64!""#.into()),
        89 => fields.push(format!(r#""auth": "{}""#, STANDARD.encode("nocolon"))),
        90 => fields.push(r#""username": 42"#.into()),
        91 => fields.push(format!(r#""auth": "{}\n""#, STANDARD.encode(&auth_plain))),
        92 => fields.push(format!(r#""username": "u:x", "password": "{pass}""#)),
        93 => fields.push(format!(
            r#""auth": "{}", "auth": null"#,
            STANDARD.encode(&auth_plain)
        )),
        _ => {}
    }
    if rng.chance(30) {
        fields.push(r#""email": "e@example.com""#.into());
    }
    if rng.chance(10) {
        fields.push(format!(r#""registrytoken": "rt-{serial}""#));
    }
    format!("{{{}}}", fields.join(", "))
}

fn config(rng: &mut Rng, image: &str, bare: bool, serial: &mut usize) -> Config {
    if rng.chance(5) {
        return Config::Raw(
            rng.pick::<&[u8]>(&[
                &b"{\"auths\": {\"quay.io\": {\"auth\": \"dTpw\"}"[..],
                b"",
                b"null",
                b"[]",
                b"{}",
                b"{\"auths\": []}",
                b"{\"auths\": null}",
                b"\"text\"",
                b"{\"auths\": {\"quay.io\": {}}} trailing",
                b"{\"auths\": {\"quay.io\": {\"username\": \"\xff\xfe\", \"password\": \"\\ud800\"}}}",
            ])
            .to_vec(),
        );
    }
    let n = rng.below(5);
    let entries = (0..n)
        .map(|_| (registry_key(rng, image), entry(rng, serial)))
        .collect();
    // now and then the other format's shape
    let bare = if rng.chance(8) { !bare } else { bare };
    let wrapper =
        (!bare).then(|| (rng.pick(&["auths", "auths", "auths", "Auths", "AUTHS"])).to_string());
    let mut extra = Vec::new();
    if rng.chance(10) {
        extra.push(
            (rng.pick(&[
                r#""HttpHeaders": {"User-Agent": "x"}"#,
                r#""HttpHeaders": {"n": 1}"#,
                r#""credsStore": "desktop""#,
                r#""auths": {"dup.example.com": {"auth": "ZHVwOmR1cA=="}}"#,
                r#""auths": null"#,
            ]))
            .to_string(),
        );
    }
    Config::Entries {
        wrapper,
        entries,
        extra,
    }
}

fn secret(rng: &mut Rng, image: &str, name: String, serial: &mut usize) -> SecretCase {
    let (secret_type, key, bare) = match rng.below(100) {
        0..=54 => (
            pull::TYPE_DOCKER_CONFIG_JSON,
            pull::KEY_DOCKER_CONFIG_JSON,
            false,
        ),
        55..=84 => (pull::TYPE_DOCKERCFG, pull::KEY_DOCKERCFG, true),
        85..=89 => ("Opaque", pull::KEY_DOCKER_CONFIG_JSON, false),
        90..=92 => ("kubernetes.io/basic-auth", pull::KEY_DOCKERCFG, true),
        // the right type under the other format's key
        93..=96 => (pull::TYPE_DOCKER_CONFIG_JSON, pull::KEY_DOCKERCFG, true),
        _ => (pull::TYPE_DOCKERCFG, pull::KEY_DOCKER_CONFIG_JSON, false),
    };
    let data = match rng.below(100) {
        0..=2 => None,
        3..=4 => Some((key.to_string(), Config::Raw(Vec::new()))),
        _ => Some((key.to_string(), config(rng, image, bare, serial))),
    };
    SecretCase {
        name,
        secret_type: secret_type.into(),
        data,
    }
}

fn generate(rng: &mut Rng) -> Case {
    let mut serial = 0;
    let image = image(rng);
    let n = rng.below(4);
    let secrets: Vec<SecretCase> = (0..n)
        .map(|i| secret(rng, &image, format!("s{i}"), &mut serial))
        .collect();
    let mut pod_secrets: Vec<String> = Vec::new();
    for s in &secrets {
        if rng.chance(85) {
            pod_secrets.push(s.name.clone());
        }
    }
    // shuffle, then maybe a missing name, an empty one, a repeat
    for i in (1..pod_secrets.len()).rev() {
        let j = rng.below(i + 1);
        pod_secrets.swap(i, j);
    }
    if rng.chance(10) {
        pod_secrets.insert(rng.below(pod_secrets.len() + 1), "missing".into());
    }
    if rng.chance(5) {
        pod_secrets.push(String::new());
    }
    if rng.chance(5) && !pod_secrets.is_empty() {
        let repeat = pod_secrets[0].clone();
        pod_secrets.push(repeat);
    }
    Case {
        image,
        secrets,
        pod_secrets,
    }
}

/// Upstream's table cases (`keyring_test.go`, `secrets_test.go`,
/// `parsers_test.go`), as pod-level cases: one secret holding the key, the
/// target (+ `/foo/bar` as upstream does) as the image.
fn table_cases() -> Vec<Case> {
    let one = |key: &str, image: &str| Case {
        image: image.into(),
        secrets: vec![SecretCase {
            name: "table".into(),
            secret_type: pull::TYPE_DOCKERCFG.into(),
            data: Some((
                pull::KEY_DOCKERCFG.into(),
                Config::Entries {
                    wrapper: None,
                    entries: vec![(
                        key.into(),
                        format!(
                            r#"{{"email": "foo@bar.baz", "auth": "{}"}}"#,
                            STANDARD.encode("foo:bar")
                        ),
                    )],
                    extra: vec![],
                },
            )),
        }],
        pod_secrets: vec!["table".into()],
    };
    let mut cases = Vec::new();
    // TestURLsMatch
    for (glob, target) in [
        ("*.kubernetes.io", "prefix.kubernetes.io"),
        ("prefix.*.io", "prefix.kubernetes.io"),
        ("prefix.kubernetes.*", "prefix.kubernetes.io"),
        ("*-good.kubernetes.io", "prefix-good.kubernetes.io"),
        ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah"),
        ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar"),
        (
            "*.kubernetes.io:1111/blah",
            "prefix.kubernetes.io:1111/blah",
        ),
        ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar"),
        ("*.kubernetes.io", "kubernetes.io"),
        ("*.*.kubernetes.io", "prefix.kubernetes.io"),
        ("*.*.kubernetes.io", "kubernetes.io"),
        ("*kubernetes.io", "a.kubernetes.io"),
        ("*kubernetes.io", "kubernetes.io"),
        ("*.*.*.kubernetes.io", "a.b.c.kubernetes.io"),
        ("kubernetes.io", "kubernetes.com"),
        ("k*.io", "quay.io"),
        (
            "*.kubernetes.io:1234/blah",
            "prefix.kubernetes.io:1111/blah",
        ),
        ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar"),
    ] {
        cases.push(one(glob, target));
    }
    // TestDockerKeyringForGlob and TestKeyringMiss
    for (key, target) in [
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
        ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
        ("https://*.docker.com", "prefix.docker.io"),
        ("https://suffix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.c*", "prefix.docker.io"),
        (
            "https://prefix.*.io/path:1111",
            "prefix.docker.io/path/subpath:1111",
        ),
        ("suffix.*.io", "prefix.docker.io"),
    ] {
        cases.push(one(key, &format!("{target}/foo/bar")));
    }
    // Docker Hub tests, TestIsDefaultRegistryMatch, TestDockerKeyringLookup, TestIssue3797
    for image in [
        "world.mesos.org/foo/bar",
        "google/docker-registry",
        "jenkins",
        "index.docker.io/google/docker-registry",
        "foo/bar",
        "docker.io/foo/bar",
        "index.docker.io/foo/bar",
        "foo",
        "registry.tld/foo/bar",
        "registry:5000/foo/bar",
        "myhostdocker.io/foo/bar",
    ] {
        cases.push(one("https://index.docker.io/v1/", image));
    }
    for image in [
        "bar.example.com",
        "bar.example.com/pong",
        "bar.example.com/ping",
        "bar.example.com/pongz",
        "bar.example.com/pong/pang",
        "example.com",
        "foo.example.com",
    ] {
        let mut case = one("bar.example.com/pong", image);
        if let Some((_, Config::Entries { entries, .. })) = &mut case.secrets[0].data {
            entries.push((
                "bar.example.com".into(),
                r#"{"username": "ada", "password": "smash"}"#.into(),
            ));
        }
        cases.push(case);
    }
    for image in ["quay.io", "quay.io/foo", "quay.io/foo/bar"] {
        cases.push(one("https://quay.io/v1/", image));
    }
    // TestParseImageName
    let d = "sha256:e2b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for image in [
        "docker.io/library/busybox".to_string(),
        "docker.io/busybox".into(),
        "busybox".into(),
        "busybox:mytag".into(),
        "docker.io/library/busybox:mytag".into(),
        format!("docker.io/library/busybox@{d}"),
        format!("docker.io/library/busybox:mytag@{d}"),
        format!("docker.io/library/busybox@{d}:tagnotallowedafterdigest"),
        format!("docker.io/library/busybox@{d}@{d}"),
        format!("docker.io/library/busybox:mytag@{d}@{d}"),
        format!("docker.io/library/busybox@{d}/otherrepo"),
        "docker.io/library/busybox:mytag/otherrepo".into(),
    ] {
        cases.push(one("docker.io", &image));
    }
    cases
}

#[test]
fn pullwarden_agrees_with_the_kubelet() {
    let oracle = oracle_path();
    let count: usize = std::env::var("PULLWARDEN_ORACLE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("PULLWARDEN_ORACLE_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x7075_6c6c_7761_7264);
    let mut rng = Rng(seed);
    let tables = table_cases();
    let table_count = tables.len();
    let mut cases = tables;
    cases.extend((0..count).map(|_| generate(&mut rng)));
    let answers = ask_oracle(&oracle, &cases);

    let mut disagreements = Vec::new();
    let (mut with_candidates, mut failed, mut anonymous) = (0, 0, 0);
    for (case, kubelet) in cases.iter().zip(&answers) {
        match (kubelet.error.as_str(), kubelet.candidates.len()) {
            ("", 0) => anonymous += 1,
            ("", _) => with_candidates += 1,
            _ => failed += 1,
        }
        if !case.pullwarden().agrees_with(kubelet) {
            disagreements.push(case.clone());
        }
    }
    // written to the stderr handle, not through eprintln!, so that the count
    // shows in `just test` too (the test harness captures only the print macros)
    writeln!(
        std::io::stderr(),
        "kubelet oracle: {} cases ({table_count} from upstream's tables, {count} generated, seed {seed}): \
         {with_candidates} with candidates, {anonymous} anonymous, {failed} failing; {} disagreements",
        cases.len(),
        disagreements.len()
    )
    .unwrap();
    if let Some(first) = disagreements
        .iter()
        .min_by_key(|c| c.to_json().to_string().len())
    {
        let small = shrink(&oracle, first.clone());
        let kubelet = ask_oracle(&oracle, std::slice::from_ref(&small));
        panic!(
            "{} disagreements with the kubelet; smallest case found:\n{}\npullwarden: {:?}\nkubelet:    {:?}",
            disagreements.len(),
            serde_json::to_string_pretty(&small.to_json()).unwrap(),
            small.pullwarden(),
            kubelet[0]
        );
    }
    // the generator must reach every kind of outcome, or the comparison proves little
    assert!(
        with_candidates > cases.len() / 4
            && anonymous > cases.len() / 20
            && failed > cases.len() / 20,
        "the generated cases do not cover every outcome"
    );
}
