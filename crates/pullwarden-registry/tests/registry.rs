//! The client against real registries (CNCF distribution v3.1.2, built by
//! `scripts/build-registry.sh`): htpasswd and token auth, every outcome.
//!
//! These tests need the registry binary; they fail, never skip, without it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use pullwarden_registry::{
    AuthServer, Client, ClientOptions, Credential, LoginOutcome, Missing, Outcome, SecretString,
    Step, Target,
};
use pullwarden_testenv::{AccessRule, Registry, User};

const ALICE_PASSWORD: &str = "alice-canary-7f3a9c";
const WRONG_PASSWORD: &str = "wrong-canary-91be2d";

fn users() -> Vec<User> {
    vec![User::new("alice", ALICE_PASSWORD)]
}

fn options(ca_pem: Option<&str>, plain_http_hosts: &[&str]) -> ClientOptions {
    ClientOptions {
        extra_ca_pem: ca_pem.map(|pem| pem.as_bytes().to_vec()),
        plain_http_hosts: plain_http_hosts.iter().map(|h| (*h).to_owned()).collect(),
        timeout: Duration::from_secs(10),
    }
}

fn client_for(registry: &Registry) -> Client {
    Client::new(&options(Some(registry.ca_pem()), &[])).expect("client")
}

fn alice() -> Credential {
    Credential::new("alice", SecretString::new(ALICE_PASSWORD))
}

fn wrong() -> Credential {
    Credential::new("alice", SecretString::new(WRONG_PASSWORD))
}

fn target(registry: &Registry, repository: &str, reference: &str) -> Target {
    Target::new(registry.host(), repository, reference).expect("target")
}

/// No password or token in any rendering of an outcome.
fn assert_no_secret(rendered: &[String]) {
    for text in rendered {
        for secret in [ALICE_PASSWORD, WRONG_PASSWORD] {
            assert!(!text.contains(secret), "secret in output: {text}");
        }
        // a JWT always starts with base64url of `{"`
        assert!(!text.contains("eyJ"), "token-like text in output: {text}");
    }
}

async fn probe(client: &Client, target: &Target, credential: Option<&Credential>) -> Outcome {
    let outcome = client.probe(target, credential).await;
    assert_no_secret(&[
        format!("{outcome}"),
        format!("{outcome:?}"),
        serde_json::to_string(&outcome).unwrap(),
        format!("{credential:?}"),
    ]);
    outcome
}

async fn login(client: &Client, registry: &str, credential: &Credential) -> LoginOutcome {
    let outcome = client
        .login(registry, credential)
        .await
        .expect("valid registry");
    assert_no_secret(&[
        format!("{outcome}"),
        format!("{outcome:?}"),
        serde_json::to_string(&outcome).unwrap(),
        format!("{credential:?}"),
    ]);
    outcome
}

async fn htpasswd_registry() -> Registry {
    Registry::start_htpasswd(&users())
        .await
        .expect("start the htpasswd registry")
}

async fn token_registry() -> Registry {
    Registry::start_token(
        &users(),
        &[AccessRule::pull("alice", "team-a/*")],
        Duration::from_secs(300),
    )
    .await
    .expect("start the token registry")
}

#[tokio::test]
async fn registry_htpasswd_outcomes() {
    let registry = htpasswd_registry().await;
    let digest = registry.push_tiny_image("team-a/app", "v1").await.unwrap();
    let client = client_for(&registry);
    let app = target(&registry, "team-a/app", "v1");

    assert_eq!(
        probe(&client, &app, Some(&alice())).await,
        Outcome::Pullable {
            digest: Some(digest.clone()),
            media_type: Some("application/vnd.oci.image.manifest.v1+json".to_owned()),
        }
    );
    let by_digest = target(&registry, "team-a/app", &digest);
    assert!(matches!(
        probe(&client, &by_digest, Some(&alice())).await,
        Outcome::Pullable { digest: Some(d), .. } if d == digest
    ));
    assert_eq!(
        probe(&client, &app, Some(&wrong())).await,
        Outcome::CredentialRejected {
            by: AuthServer::Registry
        }
    );
    assert_eq!(
        probe(&client, &app, None).await,
        Outcome::AuthenticationRequired
    );
    let unknown_tag = target(&registry, "team-a/app", "v2");
    assert_eq!(
        probe(&client, &unknown_tag, Some(&alice())).await,
        Outcome::NotFound {
            what: Missing::Manifest
        }
    );
    let unknown_repo = target(&registry, "team-a/nothing-here", "v1");
    assert_eq!(
        probe(&client, &unknown_repo, Some(&alice())).await,
        Outcome::NotFound {
            what: Missing::Repository
        }
    );
}

#[tokio::test]
async fn registry_htpasswd_login() {
    let registry = htpasswd_registry().await;
    let client = client_for(&registry);
    assert_eq!(
        login(&client, registry.host(), &alice()).await,
        LoginOutcome::Accepted
    );
    assert_eq!(
        login(&client, registry.host(), &wrong()).await,
        LoginOutcome::CredentialRejected {
            by: AuthServer::Registry
        }
    );
}

#[tokio::test]
async fn registry_tls_failure_without_the_ca() {
    let registry = htpasswd_registry().await;
    registry.push_tiny_image("team-a/app", "v1").await.unwrap();
    let client = Client::new(&options(None, &[])).unwrap();
    let app = target(&registry, "team-a/app", "v1");
    let outcome = probe(&client, &app, Some(&alice())).await;
    assert!(
        matches!(&outcome, Outcome::Tls { step: Step::Ping, reason } if reason.contains("UnknownIssuer")),
        "{outcome:?}"
    );
    let outcome = login(&client, registry.host(), &alice()).await;
    assert!(
        matches!(
            outcome,
            LoginOutcome::Tls {
                step: Step::Ping,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn registry_unreachable_on_a_closed_port() {
    // a port that was just free: nothing listens on it
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let client = Client::new(&options(None, &[])).unwrap();
    let app = Target::new(&host, "team-a/app", "v1").unwrap();
    let outcome = probe(&client, &app, Some(&alice())).await;
    assert!(
        matches!(&outcome, Outcome::Unreachable { step: Step::Ping, reason } if reason.contains("refused")),
        "{outcome:?}"
    );
    let outcome = login(&client, &host, &alice()).await;
    assert!(
        matches!(
            outcome,
            LoginOutcome::Unreachable {
                step: Step::Ping,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn registry_plain_http_only_when_allowed_for_that_host() {
    let registry = Registry::start_plain_http(&users()).await.unwrap();
    assert!(registry.url().starts_with("http://"));
    registry.push_tiny_image("team-a/app", "v1").await.unwrap();
    let app = target(&registry, "team-a/app", "v1");

    // by default the client speaks TLS to it, and the handshake fails
    let default = Client::new(&options(None, &[])).unwrap();
    let outcome = probe(&default, &app, Some(&alice())).await;
    assert!(
        matches!(
            outcome,
            Outcome::Tls {
                step: Step::Ping,
                ..
            }
        ),
        "{outcome:?}"
    );
    // allowing plain HTTP for another host changes nothing
    let other = Client::new(&options(None, &["127.0.0.1:1"])).unwrap();
    let outcome = probe(&other, &app, Some(&alice())).await;
    assert!(
        matches!(
            outcome,
            Outcome::Tls {
                step: Step::Ping,
                ..
            }
        ),
        "{outcome:?}"
    );
    let allowed = Client::new(&options(None, &[registry.host()])).unwrap();
    assert!(matches!(
        probe(&allowed, &app, Some(&alice())).await,
        Outcome::Pullable { .. }
    ));
}

#[tokio::test]
async fn registry_token_outcomes() {
    let registry = token_registry().await;
    let digest = registry.push_tiny_image("team-a/app", "v1").await.unwrap();
    registry.push_tiny_image("team-b/app", "v1").await.unwrap();
    let client = client_for(&registry);
    let team_a = target(&registry, "team-a/app", "v1");
    let team_b = target(&registry, "team-b/app", "v1");

    assert!(matches!(
        probe(&client, &team_a, Some(&alice())).await,
        Outcome::Pullable { digest: Some(d), .. } if d == digest
    ));
    // the token server issues a token without team-b access; the registry refuses the manifest
    assert_eq!(
        probe(&client, &team_b, Some(&alice())).await,
        Outcome::NoAccess { status: 401 }
    );
    assert_eq!(
        probe(&client, &team_a, Some(&wrong())).await,
        Outcome::CredentialRejected {
            by: AuthServer::TokenEndpoint
        }
    );
    // anonymous: a token with no access, then 401 on the manifest
    assert_eq!(
        probe(&client, &team_a, None).await,
        Outcome::AuthenticationRequired
    );
    assert_eq!(
        probe(
            &client,
            &target(&registry, "team-a/app", "v2"),
            Some(&alice())
        )
        .await,
        Outcome::NotFound {
            what: Missing::Manifest
        }
    );
    assert_eq!(
        probe(
            &client,
            &target(&registry, "team-a/none", "v1"),
            Some(&alice())
        )
        .await,
        Outcome::NotFound {
            what: Missing::Repository
        }
    );

    // what reached the token server: the runtime's scope, alice's name, and never team-b access
    let requests = registry.token_server().unwrap().requests();
    let alice_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.user.as_deref() == Some("alice"))
        .collect();
    assert!(
        alice_requests
            .iter()
            .any(|r| r.scopes == ["repository:team-b/app:pull"] && r.status == 200),
        "{requests:?}"
    );
    assert!(
        alice_requests.iter().any(|r| r.status == 401),
        "{requests:?}"
    );
    assert!(requests.iter().any(|r| r.user.is_none()), "{requests:?}");
}

#[tokio::test]
async fn registry_token_login_is_one_attempt() {
    let registry = token_registry().await;
    let client = client_for(&registry);
    let server = registry.token_server().unwrap();

    assert_eq!(
        login(&client, registry.host(), &alice()).await,
        LoginOutcome::Accepted
    );
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());

    assert_eq!(
        login(&client, registry.host(), &wrong()).await,
        LoginOutcome::CredentialRejected {
            by: AuthServer::TokenEndpoint
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].status, 401);
    assert_eq!(requests[1].user.as_deref(), Some("alice"));
    assert!(requests[1].scopes.is_empty());
}

#[tokio::test]
async fn registry_tls_failure_without_the_ca_on_the_token_registry() {
    let registry = token_registry().await;
    let client = Client::new(&options(None, &[])).unwrap();
    let outcome = probe(
        &client,
        &target(&registry, "team-a/app", "v1"),
        Some(&alice()),
    )
    .await;
    assert!(
        matches!(
            outcome,
            Outcome::Tls {
                step: Step::Ping,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[test]
fn registry_credential_debug_is_redacted() {
    let credential = alice();
    let rendered = format!("{credential:?}");
    assert!(rendered.contains("alice"), "{rendered}");
    assert_no_secret(&[rendered]);
}

/// A plain-HTTP server on loopback that answers every request with `answer`
/// (head only) and counts requests. For what a real registry will not do.
async fn fake_server(
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            counted.fetch_add(1, Ordering::SeqCst);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = request.split(' ').nth(1).unwrap_or("").to_owned();
            let head = format!(
                "{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                answer(&path)
            );
            let _ = stream.write_all(head.as_bytes()).await;
        }
    });
    (host, count)
}

#[tokio::test]
async fn registry_plain_http_token_realm_is_refused() {
    let (realm_host, realm_requests) = fake_server(|_| "HTTP/1.1 200 OK".to_owned()).await;
    let challenge = format!(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm_host}/token\",service=\"s\""
    );
    let (registry_host, _) = fake_server(move |_| challenge.clone()).await;
    // plain HTTP allowed for the registry, not for the realm's host
    let client = Client::new(&options(None, &[&registry_host])).unwrap();
    let app = Target::new(&registry_host, "team-a/app", "v1").unwrap();
    assert_eq!(
        probe(&client, &app, Some(&alice())).await,
        Outcome::PlainHttpRefused {
            step: Step::Token,
            host: realm_host.clone()
        }
    );
    assert_eq!(
        login(&client, &registry_host, &alice()).await,
        LoginOutcome::PlainHttpRefused {
            step: Step::Token,
            host: realm_host
        }
    );
    assert_eq!(realm_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn registry_redirects_are_not_followed() {
    let (elsewhere, elsewhere_requests) = fake_server(|_| "HTTP/1.1 200 OK".to_owned()).await;
    let redirect = format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere}/v2/x");
    let (registry_host, _) = fake_server(move |path| {
        if path == "/v2/" {
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"".to_owned()
        } else {
            redirect.clone()
        }
    })
    .await;
    let client = Client::new(&options(None, &[&registry_host, &elsewhere])).unwrap();
    let app = Target::new(&registry_host, "team-a/app", "v1").unwrap();
    // /v2/ refuses the Basic credential too: the fake has no accounts
    assert_eq!(
        probe(&client, &app, Some(&alice())).await,
        Outcome::CredentialRejected {
            by: AuthServer::Registry
        }
    );
    // anonymous /v2/ open, manifest redirected: reported, not followed
    let (open_host, _) = fake_server(move |path| {
        if path == "/v2/" {
            "HTTP/1.1 200 OK".to_owned()
        } else {
            format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere}/v2/x")
        }
    })
    .await;
    let client = Client::new(&options(None, &[&open_host])).unwrap();
    let app = Target::new(&open_host, "team-a/app", "v1").unwrap();
    assert_eq!(
        probe(&client, &app, Some(&alice())).await,
        Outcome::Unexpected {
            step: Step::Manifest,
            status: 307
        }
    );
    assert_eq!(elsewhere_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn registry_rate_limited_and_unexpected_statuses() {
    let (host, _) = fake_server(|path| {
        if path == "/v2/" {
            "HTTP/1.1 200 OK".to_owned()
        } else if path.contains("/limited/") {
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7".to_owned()
        } else {
            "HTTP/1.1 502 Bad Gateway".to_owned()
        }
    })
    .await;
    let client = Client::new(&options(None, &[&host])).unwrap();
    let limited = Target::new(&host, "limited/app", "v1").unwrap();
    assert_eq!(
        probe(&client, &limited, None).await,
        Outcome::RateLimited {
            step: Step::Manifest,
            retry_after_seconds: Some(7)
        }
    );
    let broken = Target::new(&host, "broken/app", "v1").unwrap();
    assert_eq!(
        probe(&client, &broken, None).await,
        Outcome::Unexpected {
            step: Step::Manifest,
            status: 502
        }
    );
}
