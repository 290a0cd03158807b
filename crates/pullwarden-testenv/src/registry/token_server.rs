//! A small token server for distribution's `token` auth: Basic auth on
//! `GET /token?service=…&scope=…`, per-user access rules, ES256 JWTs with a
//! `kid` the registry finds in a JWKS file.
//!
//! It also issues short-lived passwords, as a cloud registry's token service
//! does (ECR's `GetAuthorizationToken`, say): `GET /issue?ttl=SECONDS` with a
//! known user's Basic auth answers `{"username", "password", "expiresAt"}`
//! (RFC 3339), and `/token` accepts that password for that user until
//! `expiresAt` and refuses it (401) from then on. distribution itself accepts
//! a bearer token up to 60 s past its `exp`, so an expired credential shows
//! here, where a client logs in.
//!
//! It runs on its own thread and runtime, so it outlives any one test's
//! runtime and stops when its [`TokenServer`] is dropped (or the process ends).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use super::{AccessRule, User};

/// One request the token server answered, for tests that count attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The Basic-auth user, `None` for an anonymous request.
    pub user: Option<String>,
    /// The `scope` parameters as sent.
    pub scopes: Vec<String>,
    /// The status answered (200, 400 or 401).
    pub status: u16,
}

struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

struct State {
    users: BTreeMap<String, String>,
    rules: Vec<AccessRule>,
    ttl: Duration,
    service: String,
    issuer: String,
    signer: Signer,
    log: Mutex<Vec<TokenRequest>>,
    /// Issued password → (user, valid until).
    issued: Mutex<BTreeMap<String, (String, SystemTime)>>,
}

/// A running token server.
pub struct TokenServer {
    url: String,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    /// Starts on a free loopback port with TLS (`serving`: certificate and key PEM) and
    /// writes the JWKS the registry verifies with to `jwks_file`.
    pub(crate) fn start(
        serving: (&str, &str),
        jwks_file: &Path,
        service: &str,
        issuer: &str,
        users: &[User],
        rules: &[AccessRule],
        ttl: Duration,
    ) -> Result<TokenServer> {
        let signer = Signer::generate()?;
        std::fs::write(jwks_file, signer.jwks().to_string())
            .with_context(|| format!("writing {}", jwks_file.display()))?;
        let state = Arc::new(State {
            users: users
                .iter()
                .map(|u| (u.name.clone(), u.password.clone()))
                .collect(),
            rules: rules.to_vec(),
            ttl,
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            signer,
            log: Mutex::new(Vec::new()),
            issued: Mutex::new(BTreeMap::new()),
        });
        let tls = tls_acceptor(serving.0, serving.1)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let (shutdown, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("pullwarden-token-server".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("token server runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("token server listener");
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let tls = tls.clone();
                                let state = Arc::clone(&served);
                                tokio::spawn(async move {
                                    let Ok(stream) = tls.accept(stream).await else { return };
                                    let service = service_fn(move |request| {
                                        let state = Arc::clone(&state);
                                        async move { Ok::<_, std::convert::Infallible>(state.answer(&request)) }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })?;
        Ok(TokenServer {
            url: format!("https://{addr}/token"),
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The token endpoint, the registry's `realm`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The endpoint issuing short-lived passwords (`GET ?ttl=SECONDS`, a
    /// known user's Basic auth).
    pub fn issue_url(&self) -> String {
        self.url.replace("/token", "/issue")
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.log.lock().expect("token log").clone()
    }

    /// A token for `subject` granting `actions` on `repository`, signed like
    /// the ones the endpoint issues (for the test environment's own pushes).
    pub(crate) fn mint(&self, subject: &str, repository: &str, actions: &[&str]) -> Result<String> {
        let access = vec![json!({"type": "repository", "name": repository, "actions": actions})];
        self.state.token(subject, &access)
    }

    pub fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl State {
    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let mut scopes = Vec::new();
        let mut service = None;
        for (key, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
            match &*key {
                "scope" => scopes.extend(
                    value
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                "service" => service = Some(value.into_owned()),
                _ => {}
            }
        }
        let basic = basic_auth(request);
        let user = basic.as_ref().map(|(u, _)| u.clone());
        if request.uri().path() == "/issue" {
            return self.issue(request);
        }
        let (status, body) = if request.uri().path() != "/token" {
            (
                StatusCode::NOT_FOUND,
                error_body("NOT_FOUND", "no such endpoint"),
            )
        } else if service.as_deref() != Some(&self.service) {
            (
                StatusCode::BAD_REQUEST,
                error_body("INVALID_REQUEST", "unknown service"),
            )
        } else if let Some((name, password)) = &basic
            && self.users.get(name) != Some(password)
            && !self.issued_valid(name, password)
        {
            (
                StatusCode::UNAUTHORIZED,
                error_body("UNAUTHORIZED", "authentication failed"),
            )
        } else {
            let subject = user.clone().unwrap_or_default();
            let access = self.granted(&subject, &scopes);
            match self.token(&subject, &access) {
                Ok(token) => (
                    StatusCode::OK,
                    json!({
                        "token": token,
                        "access_token": token,
                        "expires_in": self.ttl.as_secs(),
                    })
                    .to_string(),
                ),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    error_body("UNKNOWN", "signing failed"),
                ),
            }
        };
        self.log.lock().expect("token log").push(TokenRequest {
            user,
            scopes,
            status: status.as_u16(),
        });
        let mut response = Response::builder()
            .status(status)
            .header("content-type", "application/json");
        if status == StatusCode::UNAUTHORIZED {
            response = response.header(
                "www-authenticate",
                r#"Basic realm="pullwarden-testenv-token""#,
            );
        }
        response
            .body(Full::new(Bytes::from(body)))
            .expect("token response")
    }

    /// Whether `password` was issued to `user` and has not expired.
    fn issued_valid(&self, user: &str, password: &str) -> bool {
        self.issued
            .lock()
            .expect("issued passwords")
            .get(password)
            .is_some_and(|(owner, until)| owner == user && SystemTime::now() < *until)
    }

    /// `GET /issue?ttl=SECONDS`: a new password for the Basic-auth user,
    /// valid `ttl` seconds (default 20).
    fn issue(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let ttl = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "ttl")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(20);
        let (status, body) = match basic_auth(request) {
            Some((name, password)) if self.users.get(&name) == Some(&password) => {
                let until = SystemTime::now() + Duration::from_secs(ttl);
                let issued = format!("issued-{:032x}", rand::random::<u128>());
                self.issued
                    .lock()
                    .expect("issued passwords")
                    .insert(issued.clone(), (name.clone(), until));
                let expires = until
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .and_then(|d| i64::try_from(d.as_secs()).ok())
                    .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                (
                    StatusCode::OK,
                    json!({"username": name, "password": issued, "expiresAt": expires}).to_string(),
                )
            }
            _ => (
                StatusCode::UNAUTHORIZED,
                error_body("UNAUTHORIZED", "authentication failed"),
            ),
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("issue response")
    }

    /// The access entries `subject` gets for `scopes`: each requested
    /// repository action that a rule for the subject allows; nothing else.
    fn granted(&self, subject: &str, scopes: &[String]) -> Vec<serde_json::Value> {
        let mut access = Vec::new();
        for scope in scopes {
            let mut parts = scope.splitn(3, ':');
            let (Some("repository"), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let allowed: Vec<&str> = actions
                .split(',')
                .filter(|action| {
                    self.rules.iter().any(|rule| {
                        rule.user == subject
                            && glob_matches(&rule.repositories, name)
                            && rule.actions.iter().any(|a| a == action || a == "*")
                    })
                })
                .collect();
            if !allowed.is_empty() {
                access.push(json!({"type": "repository", "name": name, "actions": allowed}));
            }
        }
        access
    }

    fn token(&self, subject: &str, access: &[serde_json::Value]) -> Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.signer.kid});
        let claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl.as_secs(),
            "jti": format!("{:032x}", rand::random::<u128>()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .signer
            .key
            .sign(&self.signer.rng, signing_input.as_bytes())
            .map_err(|_| anyhow!("ES256 signing failed"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

impl Signer {
    fn generate() -> Result<Signer> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow!("generating the token signing key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow!("loading the token signing key"))?;
        let kid = format!("pullwarden-testenv-{:016x}", rand::random::<u64>());
        Ok(Signer { key, kid, rng })
    }

    /// The public key as a JSON Web Key Set: uncompressed point 0x04 || x || y.
    fn jwks(&self) -> serde_json::Value {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "use": "sig",
            "alg": "ES256",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
    }
}

fn tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<tokio_rustls::TlsAcceptor> {
    let certs =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn basic_auth(request: &Request<Incoming>) -> Option<(String, String)> {
    let value = request.headers().get("authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn error_body(code: &str, message: &str) -> String {
    json!({"errors": [{"code": code, "message": message}]}).to_string()
}

/// `*` matches any run of characters, `/` included; everything else itself.
pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(tail) = name.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_matches(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn globs() {
        assert!(glob_matches("team-a/*", "team-a/app"));
        assert!(glob_matches("team-a/*", "team-a/x/y"));
        assert!(!glob_matches("team-a/*", "team-b/app"));
        assert!(!glob_matches("team-a/*", "team-a"));
        assert!(glob_matches("*", "anything/at/all"));
        assert!(glob_matches("a/*/c", "a/b/c"));
        assert!(!glob_matches("a/*/c", "a/b/d"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
    }
}
