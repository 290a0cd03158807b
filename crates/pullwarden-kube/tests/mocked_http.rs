//! Request shapes and error paths a healthy API server cannot be made to
//! produce on demand, against a scripted HTTP service (the real server is
//! the proof everywhere else): 503 and 429 on a LIST are retried, a 410 on a
//! continue token restarts the list from its first page without duplicates,
//! and a create whose response was lost (503, then 409 on the retry) counts
//! as done once the object there is ours with the planned content.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use kube::client::Body;
use pullwarden_core::dockerconfig::Entry;
use pullwarden_core::model::SecretFormat;
use pullwarden_core::plan::{
    Action, Change, Desired, DesiredSecret, Detail, ObjectKind, PLAN_FORMAT_VERSION, Plan,
    SecretDiff,
};
use pullwarden_core::secret::SecretString;
use pullwarden_kube::apply::{ApplyOptions, Hooks, OutcomeStatus};
use pullwarden_kube::{ReadOptions, RetryPolicy};

/// One scripted answer: status and JSON body.
type Reply = (StatusCode, String);

/// What the mock was asked (method and path with query), and what it answers.
#[derive(Default)]
struct Script {
    seen: Vec<(String, String)>,
    /// Answers by a key the test chooses from the request (see `route`).
    replies: BTreeMap<String, VecDeque<Reply>>,
    /// The body of every POST, in order.
    posted: Vec<Bytes>,
}

fn status(code: u16, reason: &str) -> Reply {
    (
        StatusCode::from_u16(code).expect("status"),
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "scripted", "reason": reason, "code": code
        })
        .to_string(),
    )
}

fn list(kind: &str, items: &[serde_json::Value], next: Option<&str>) -> Reply {
    let mut metadata = serde_json::json!({"resourceVersion": "1"});
    if let Some(token) = next {
        metadata["continue"] = token.into();
    }
    (
        StatusCode::OK,
        serde_json::json!({"kind": kind, "apiVersion": "v1", "metadata": metadata, "items": items})
            .to_string(),
    )
}

fn namespace(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": format!("uid-{name}")}})
}

/// The key a request is answered by: which collection, and the continue
/// token when there is one.
fn route(method: &str, path_and_query: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let token = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("continue="))
        .map(|t| format!(" continue={t}"))
        .unwrap_or_default();
    format!("{method} {path}{token}")
}

fn client(script: Arc<Mutex<Script>>) -> kube::Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let script = script.clone();
        async move {
            let method = request.method().to_string();
            let uri = request
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default();
            let body = request
                .into_body()
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            let key = route(&method, &uri);
            let (code, text) = {
                let mut script = script.lock().expect("script");
                script.seen.push((method.clone(), uri.clone()));
                if method == "POST" {
                    script.posted.push(body.clone());
                }
                let answer = script.replies.get_mut(&key).and_then(VecDeque::pop_front);
                // A GET of an object this script saw created answers it as
                // the first POST sent it, as a server that stored it would.
                let stored = || {
                    let first = script.posted.first()?;
                    let mut object: serde_json::Value = serde_json::from_slice(first).ok()?;
                    let name = object["metadata"]["name"].as_str()?.to_owned();
                    uri.ends_with(&format!("/{name}")).then(|| {
                        object["metadata"]["uid"] = "uid-1".into();
                        object["metadata"]["resourceVersion"] = "7".into();
                        (StatusCode::OK, object.to_string())
                    })
                };
                answer
                    .or_else(|| (method == "GET").then(stored).flatten())
                    .unwrap_or_else(|| panic!("no scripted answer for {key}"))
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(text)))
                    .expect("response"),
            )
        }
    });
    kube::Client::new(service, "default")
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        request_timeout: Duration::from_secs(5),
    }
}

fn empty_lists(script: &mut Script) {
    for (path, kind) in [
        ("/api/v1/secrets", "SecretList"),
        ("/api/v1/serviceaccounts", "ServiceAccountList"),
        (
            "/apis/rbac.authorization.k8s.io/v1/rolebindings",
            "RoleBindingList",
        ),
    ] {
        // Enough for every LIST the reader may send (one per Secret type).
        script.replies.insert(
            format!("GET {path}"),
            (0..4).map(|_| list(kind, &[], None)).collect(),
        );
    }
}

#[tokio::test]
async fn a_list_answered_503_then_429_is_retried_and_completes() {
    let mut script = Script::default();
    empty_lists(&mut script);
    script.replies.insert(
        "GET /api/v1/namespaces".into(),
        VecDeque::from([
            status(503, "ServiceUnavailable"),
            status(429, "TooManyRequests"),
            list("NamespaceList", &[namespace("team-a")], None),
        ]),
    );
    let script = Arc::new(Mutex::new(script));
    let live = pullwarden_kube::read_live(
        &client(script.clone()),
        &ReadOptions {
            retry: quick(),
            ..ReadOptions::default()
        },
    )
    .await
    .expect("the read completes after two transient failures");
    assert_eq!(live.namespaces.iter().collect::<Vec<_>>(), ["team-a"]);
    let asked = script
        .lock()
        .expect("script")
        .seen
        .iter()
        .filter(|(_, uri)| uri.starts_with("/api/v1/namespaces"))
        .count();
    assert_eq!(asked, 3, "two failures, one success");
}

#[tokio::test]
async fn a_list_that_keeps_failing_fails_the_read_instead_of_returning_part_of_it() {
    let mut script = Script::default();
    empty_lists(&mut script);
    script.replies.insert(
        "GET /api/v1/namespaces".into(),
        (0..5).map(|_| status(500, "InternalError")).collect(),
    );
    let script = Arc::new(Mutex::new(script));
    let error = pullwarden_kube::read_live(
        &client(script),
        &ReadOptions {
            retry: quick(),
            ..ReadOptions::default()
        },
    )
    .await
    .expect_err("no partial state");
    assert!(error.to_string().contains("HTTP 500"), "{error}");
}

#[tokio::test]
async fn an_expired_continue_token_restarts_the_list_without_duplicates() {
    let mut script = Script::default();
    empty_lists(&mut script);
    script.replies.insert(
        "GET /api/v1/namespaces".into(),
        VecDeque::from([
            list("NamespaceList", &[namespace("a")], Some("t1")),
            list("NamespaceList", &[namespace("a")], Some("t2")),
        ]),
    );
    script.replies.insert(
        "GET /api/v1/namespaces continue=t1".into(),
        VecDeque::from([status(410, "Expired")]),
    );
    script.replies.insert(
        "GET /api/v1/namespaces continue=t2".into(),
        VecDeque::from([list("NamespaceList", &[namespace("b")], None)]),
    );
    let script = Arc::new(Mutex::new(script));
    let live = pullwarden_kube::read_live(
        &client(script.clone()),
        &ReadOptions {
            page_size: 1,
            retry: quick(),
            ..ReadOptions::default()
        },
    )
    .await
    .expect("restarted");
    assert_eq!(live.namespaces.iter().collect::<Vec<_>>(), ["a", "b"]);
    let first_pages = script
        .lock()
        .expect("script")
        .seen
        .iter()
        .filter(|(_, uri)| uri.starts_with("/api/v1/namespaces?") && !uri.contains("continue="))
        .count();
    assert_eq!(first_pages, 2, "the list started over once");
}

#[tokio::test]
async fn a_create_whose_response_was_lost_is_done_when_our_object_is_there() {
    let entry = Entry {
        server: "quay.io".into(),
        username: SecretString::new("robot"),
        password: SecretString::new("mocked-password"),
        email: None,
    };
    let mut desired = Desired::default();
    desired.secrets.insert(
        ("team-a".into(), "pull".into()),
        DesiredSecret {
            namespace: "team-a".into(),
            name: "pull".into(),
            format: SecretFormat::DockerConfigJson,
            source: "PullSecret/pull".into(),
            entries: vec![entry],
            usernames_public: vec![true],
            from_command: vec![false],
        },
    );
    let plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        workspace: "ws".into(),
        adopt: false,
        changes: vec![Change {
            namespace: "team-a".into(),
            kind: ObjectKind::Secret,
            name: "pull".into(),
            action: Action::Create,
            source: Some("PullSecret/pull".into()),
            assumed: None,
            detail: Detail::Secret(SecretDiff {
                secret_type: "kubernetes.io/dockerconfigjson".into(),
                previous_type: None,
                entries: Vec::new(),
                unreadable_live_data: false,
                immutable: false,
            }),
        }],
        errors: Vec::new(),
        warnings: Vec::new(),
        matched_namespaces: std::collections::BTreeSet::new(),
        schedule: pullwarden_core::plan::Schedule::default(),
        access: None,
    };
    let mut script = Script::default();
    // The first create lands but its answer is lost (503); the retry meets
    // the object (409); the GET finds it as the first POST sent it.
    script.replies.insert(
        "POST /api/v1/namespaces/team-a/secrets".into(),
        VecDeque::from([
            status(503, "ServiceUnavailable"),
            status(409, "AlreadyExists"),
        ]),
    );
    let script = Arc::new(Mutex::new(script));
    let mock = client(script.clone());
    let hooks = Hooks::default();
    let options = ApplyOptions {
        retry: quick(),
        ..ApplyOptions::default()
    };
    let outcomes =
        pullwarden_kube::apply::apply(&mock, &plan, &desired, &options, &hooks, &|_| {}).await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].status, OutcomeStatus::Done, "{outcomes:?}");
    let seen = script.lock().expect("script").seen.clone();
    let methods: Vec<&str> = seen.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods, ["POST", "POST", "GET"], "{seen:?}");
}
