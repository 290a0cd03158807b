//! The HTTP side: one hyper client (rustls, HTTP/1.1), a timeout on every
//! request, no redirects followed, and the auth flow of a container runtime.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pullwarden_core::secret::SecretString;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde::Deserialize;

use crate::MANIFEST_MEDIA_TYPES;
use crate::challenge::{self, Challenge};
use crate::outcome::{AuthServer, LoginOutcome, Missing, Outcome, Step, Stop};
use crate::target::{Target, TargetError, endpoint_host, valid_registry};

/// Per-request timeout when the caller has no better idea.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The most of a response body ever read (error documents, token answers).
const BODY_LIMIT: usize = 256 * 1024;

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// PEM certificates trusted in addition to the system's roots (`--registry-ca FILE`).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Registries (`host` or `host:port`, as written in image references)
    /// that are contacted over plain HTTP instead of HTTPS (`--insecure-registry`).
    /// A token realm on plain HTTP is refused unless its host is listed too.
    pub plain_http_hosts: Vec<String>,
    /// Timeout of each request, from connecting to the end of the body.
    pub timeout: Duration,
}

/// A username and password for one registry.
#[derive(Clone, Debug)]
pub struct Credential {
    pub username: String,
    pub password: SecretString,
}

impl Credential {
    pub fn new(username: impl Into<String>, password: SecretString) -> Credential {
        Credential {
            username: username.into(),
            password,
        }
    }

    fn basic_header(&self) -> HeaderValue {
        let encoded = STANDARD.encode(format!("{}:{}", self.username, self.password.expose()));
        sensitive(&format!("Basic {encoded}"))
    }
}

/// Why a [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the CA bundle holds no PEM certificate")]
    EmptyCaBundle,
    #[error("the CA bundle cannot be used: {0}")]
    Ca(String),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// Probes registries the way a container runtime pulls from them.
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    plain_http_hosts: BTreeSet<String>,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("plain_http_hosts", &self.plain_http_hosts)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a request's answer is worth to us.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// How the manifest request authenticates.
struct Authorization {
    header: Option<HeaderValue>,
    /// Whether a credential stands behind it (an anonymous token does not).
    authenticated: bool,
}

/// A token answer: the token is wrapped the moment it is read.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default, deserialize_with = "secret")]
    token: Option<SecretString>,
    #[serde(default, deserialize_with = "secret")]
    access_token: Option<SecretString>,
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::new))
}

#[derive(Deserialize)]
struct ErrorDocument {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
}

impl Client {
    pub fn new(options: &ClientOptions) -> Result<Client, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // a broken system certificate is skipped, as the platform verifier does
            let _ = roots.add(cert);
        }
        if let Some(pem) = &options.extra_ca_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::Ca(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Ca(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(ClientError::EmptyCaBundle);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(options.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = HyperClient::builder(TokioExecutor::new()).build(https);
        Ok(Client {
            http,
            plain_http_hosts: options.plain_http_hosts.iter().cloned().collect(),
            timeout: options.timeout,
        })
    }

    /// Whether a runtime with `credential` (or none) could pull `target`'s manifest.
    pub async fn probe(&self, target: &Target, credential: Option<&Credential>) -> Outcome {
        match self.probe_steps(target, credential).await {
            Ok(outcome) => outcome,
            Err(stop) => stop.into(),
        }
    }

    /// Logs in to `registry` (`host[:port]`): `GET /v2/`, then exactly one
    /// authentication attempt (Basic on `/v2/`, or one token request without a
    /// scope, followed by `GET /v2/` with that token).
    pub async fn login(
        &self,
        registry: &str,
        credential: &Credential,
    ) -> Result<LoginOutcome, TargetError> {
        if !valid_registry(registry) {
            return Err(TargetError::Registry(registry.to_owned()));
        }
        Ok(match self.login_steps(registry, credential).await {
            Ok(outcome) => outcome,
            Err(stop) => stop.into(),
        })
    }

    async fn probe_steps(
        &self,
        target: &Target,
        credential: Option<&Credential>,
    ) -> Result<Outcome, Stop> {
        let registry = target.registry();
        let scope = format!("repository:{}:pull", target.repository());
        let mut authorization = match self.ping(registry).await? {
            None => None,
            Some(challenge) => Some(
                self.authenticate(registry, &challenge, credential, Some(&scope))
                    .await?,
            ),
        };
        loop {
            let answer = self
                .head_manifest(target, authorization.as_ref(), Method::HEAD)
                .await?;
            match answer.status.as_u16() {
                200..=299 => {
                    let header = |name: &str| {
                        answer
                            .headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    return Ok(Outcome::Pullable {
                        digest: header("docker-content-digest"),
                        media_type: header(CONTENT_TYPE.as_str()),
                    });
                }
                // /v2/ was open but the repository is not: authenticate once, retry once
                401 if authorization.is_none() => {
                    let challenge = challenge_of(&answer, Step::Manifest)?;
                    authorization = Some(
                        self.authenticate(registry, &challenge, credential, Some(&scope))
                            .await?,
                    );
                }
                status @ (401 | 403) => {
                    let authenticated = authorization.as_ref().is_some_and(|a| a.authenticated);
                    return Ok(if authenticated {
                        Outcome::NoAccess { status }
                    } else {
                        Outcome::AuthenticationRequired
                    });
                }
                404 => {
                    let what = self.missing(target, authorization.as_ref()).await;
                    return Ok(Outcome::NotFound { what });
                }
                429 => {
                    return Err(Stop::RateLimited(Step::Manifest, retry_after(&answer)));
                }
                status => return Err(Stop::Unexpected(Step::Manifest, status)),
            }
        }
    }

    async fn login_steps(
        &self,
        registry: &str,
        credential: &Credential,
    ) -> Result<LoginOutcome, Stop> {
        let Some(challenge) = self.ping(registry).await? else {
            return Ok(LoginOutcome::NotRequired);
        };
        let authorization = self
            .authenticate(registry, &challenge, Some(credential), None)
            .await?;
        if matches!(challenge, Challenge::Bearer { .. }) {
            // the token endpoint accepted the credential; check the registry takes its token
            let answer = self
                .send(
                    Step::Ping,
                    Method::GET,
                    &self.v2_url(registry, "")?,
                    authorization.header,
                    None,
                )
                .await?;
            match answer.status.as_u16() {
                200..=299 => {}
                429 => return Err(Stop::RateLimited(Step::Ping, retry_after(&answer))),
                status => return Err(Stop::Unexpected(Step::Ping, status)),
            }
        }
        Ok(LoginOutcome::Accepted)
    }

    /// `GET /v2/` without credentials: `None` when open, else the challenge.
    async fn ping(&self, registry: &str) -> Result<Option<Challenge>, Stop> {
        let url = self.v2_url(registry, "")?;
        let answer = self.send(Step::Ping, Method::GET, &url, None, None).await?;
        match answer.status.as_u16() {
            200..=299 => Ok(None),
            401 => challenge_of(&answer, Step::Ping).map(Some),
            429 => Err(Stop::RateLimited(Step::Ping, retry_after(&answer))),
            status => Err(Stop::Unexpected(Step::Ping, status)),
        }
    }

    /// Answers `challenge` with `credential`: Basic (checked on `/v2/`, so a
    /// wrong password is told from a missing grant) or a Bearer token.
    async fn authenticate(
        &self,
        registry: &str,
        challenge: &Challenge,
        credential: Option<&Credential>,
        scope: Option<&str>,
    ) -> Result<Authorization, Stop> {
        match challenge {
            Challenge::Basic => {
                let Some(credential) = credential else {
                    return Err(Stop::AuthenticationRequired);
                };
                let header = credential.basic_header();
                let url = self.v2_url(registry, "")?;
                let answer = self
                    .send(Step::Ping, Method::GET, &url, Some(header.clone()), None)
                    .await?;
                match answer.status.as_u16() {
                    200..=299 => Ok(Authorization {
                        header: Some(header),
                        authenticated: true,
                    }),
                    401 | 403 => Err(Stop::CredentialRejected(AuthServer::Registry)),
                    429 => Err(Stop::RateLimited(Step::Ping, retry_after(&answer))),
                    status => Err(Stop::Unexpected(Step::Ping, status)),
                }
            }
            Challenge::Bearer { realm, service, .. } => {
                let token = self
                    .fetch_token(realm, service.as_deref(), scope, credential)
                    .await?;
                Ok(Authorization {
                    header: Some(sensitive(&format!("Bearer {}", token.expose()))),
                    authenticated: credential.is_some(),
                })
            }
            Challenge::Unsupported(scheme) => Err(Stop::Protocol(
                Step::Ping,
                format!("unsupported authentication challenge: {scheme}"),
            )),
        }
    }

    /// `GET <realm>?service=…&scope=…` with Basic auth when there is a credential.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        credential: Option<&Credential>,
    ) -> Result<SecretString, Stop> {
        let realm_uri: Uri = realm
            .parse()
            .map_err(|_| Stop::Protocol(Step::Token, "the token realm is not a URL".to_owned()))?;
        let authority = match (realm_uri.scheme_str(), realm_uri.authority()) {
            (Some("https" | "http"), Some(authority)) if !authority.as_str().contains('@') => {
                authority.as_str().to_owned()
            }
            _ => {
                return Err(Stop::Protocol(
                    Step::Token,
                    "the token realm is not an http(s) URL with a host".to_owned(),
                ));
            }
        };
        if realm_uri.scheme_str() == Some("http") && !self.plain_http_hosts.contains(&authority) {
            return Err(Stop::PlainHttpRefused(Step::Token, authority));
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        if let Some(scope) = scope {
            query.append_pair("scope", scope);
        }
        if let Some(credential) = credential {
            query.append_pair("account", &credential.username);
        }
        let query = query.finish();
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url: Uri = if query.is_empty() {
            realm_uri
        } else {
            format!("{realm}{separator}{query}").parse().map_err(|_| {
                Stop::Protocol(Step::Token, "the token realm is not a URL".to_owned())
            })?
        };
        let answer = self
            .send(
                Step::Token,
                Method::GET,
                &url,
                credential.map(Credential::basic_header),
                None,
            )
            .await?;
        match answer.status.as_u16() {
            200..=299 => {
                // never quote the body: it holds the token
                let parsed: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|_| {
                    Stop::Protocol(Step::Token, "the token answer is not JSON".to_owned())
                })?;
                parsed
                    .token
                    .filter(|t| !t.is_empty())
                    .or(parsed.access_token.filter(|t| !t.is_empty()))
                    .ok_or_else(|| {
                        Stop::Protocol(Step::Token, "the token answer holds no token".to_owned())
                    })
            }
            401 | 403 if credential.is_some() => {
                Err(Stop::CredentialRejected(AuthServer::TokenEndpoint))
            }
            401 | 403 => Err(Stop::AuthenticationRequired),
            429 => Err(Stop::RateLimited(Step::Token, retry_after(&answer))),
            status => Err(Stop::Unexpected(Step::Token, status)),
        }
    }

    async fn head_manifest(
        &self,
        target: &Target,
        authorization: Option<&Authorization>,
        method: Method,
    ) -> Result<Answer, Stop> {
        let path = format!("{}/manifests/{}", target.repository(), target.reference());
        let url = self.v2_url(target.registry(), &path)?;
        self.send(
            Step::Manifest,
            method,
            &url,
            authorization.and_then(|a| a.header.clone()),
            Some(&MANIFEST_MEDIA_TYPES.join(", ")),
        )
        .await
    }

    /// After a 404 on `HEAD` (which has no body): `GET` the manifest for
    /// distribution's error code. `NAME_UNKNOWN` names a missing repository;
    /// `MANIFEST_UNKNOWN` is also what distribution answers for a tag in a
    /// repository that does not exist, so the tag list decides: its
    /// `NAME_UNKNOWN` means the repository is missing, a `200` that only the
    /// tag or digest is.
    async fn missing(&self, target: &Target, authorization: Option<&Authorization>) -> Missing {
        let Ok(answer) = self.head_manifest(target, authorization, Method::GET).await else {
            return Missing::Unknown;
        };
        match error_codes(&answer, StatusCode::NOT_FOUND) {
            Some(codes) if codes.iter().any(|c| c == "NAME_UNKNOWN") => return Missing::Repository,
            Some(codes) if codes.iter().any(|c| c == "MANIFEST_UNKNOWN") => {}
            _ => return Missing::Unknown,
        }
        let path = format!("{}/tags/list?n=1", target.repository());
        let Ok(url) = self.v2_url(target.registry(), &path) else {
            return Missing::Unknown;
        };
        let header = authorization.and_then(|a| a.header.clone());
        let Ok(tags) = self
            .send(Step::Manifest, Method::GET, &url, header, None)
            .await
        else {
            return Missing::Manifest;
        };
        if tags.status.is_success() {
            return Missing::Manifest;
        }
        match error_codes(&tags, StatusCode::NOT_FOUND) {
            Some(codes) if codes.iter().any(|c| c == "NAME_UNKNOWN") => Missing::Repository,
            _ => Missing::Manifest,
        }
    }

    /// `<scheme>://<endpoint host>/v2/<path>`: HTTPS unless plain HTTP was allowed.
    fn v2_url(&self, registry: &str, path: &str) -> Result<Uri, Stop> {
        let host = endpoint_host(registry);
        let scheme =
            if self.plain_http_hosts.contains(registry) || self.plain_http_hosts.contains(host) {
                "http"
            } else {
                "https"
            };
        format!("{scheme}://{host}/v2/{path}")
            .parse()
            .map_err(|_| Stop::Protocol(Step::Ping, "cannot build the registry URL".to_owned()))
    }

    /// Sends one request with the client's timeout over connect, headers and
    /// body (GET bodies only, at most [`BODY_LIMIT`]). Never follows redirects.
    async fn send(
        &self,
        step: Step,
        method: Method,
        url: &Uri,
        authorization: Option<HeaderValue>,
        accept: Option<&str>,
    ) -> Result<Answer, Stop> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(url.clone())
            .header(
                USER_AGENT,
                concat!("pullwarden/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = request
            .body(Empty::new())
            .map_err(|_| Stop::Protocol(step, "cannot build the request".to_owned()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| transport_stop(step, &e))?;
            let (parts, body) = response.into_parts();
            let body = if method == Method::HEAD {
                Bytes::new()
            } else {
                Limited::new(body, BODY_LIMIT)
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .map_err(|e| Stop::Unreachable(step, format!("reading the answer: {e}")))?
            };
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Stop::Unreachable(
                    step,
                    format!("no answer within {} s", self.timeout.as_secs_f32()),
                ))
            })
    }
}

fn sensitive(value: &str) -> HeaderValue {
    // credentials are ASCII after base64; a token with other bytes is refused by the header type
    let mut header = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    header.set_sensitive(true);
    header
}

fn challenge_of(answer: &Answer, step: Step) -> Result<Challenge, Stop> {
    let values = answer
        .headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    challenge::parse(values)
        .ok_or_else(|| Stop::Protocol(step, "401 without a WWW-Authenticate challenge".to_owned()))
}

/// The `errors[].code`s of an answer with `status`, `None` for another status.
fn error_codes(answer: &Answer, status: StatusCode) -> Option<Vec<String>> {
    if answer.status != status {
        return None;
    }
    Some(
        serde_json::from_slice::<ErrorDocument>(&answer.body)
            .map(|doc| doc.errors.into_iter().map(|e| e.code).collect())
            .unwrap_or_default(),
    )
}

fn retry_after(answer: &Answer) -> Option<u64> {
    answer
        .headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A failed exchange: TLS when a rustls error is anywhere in the chain, else unreachable.
fn transport_stop(step: Step, error: &hyper_util::client::legacy::Error) -> Stop {
    if let Some(tls) = find_tls(error) {
        return Stop::Tls(step, tls.to_string());
    }
    let mut reasons = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        reasons.push(e.to_string());
        current = e.source();
    }
    // the outermost texts ("client error (Connect)") say little; keep the innermost
    let reason = reasons
        .into_iter()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .join(" <- ");
    Stop::Unreachable(step, reason)
}

/// The rustls error in `error`'s chain. `io::Error` hides a wrapped error from
/// `source()` (hyper-rustls wraps tokio-rustls' `io::Error(rustls::Error)` in
/// another `io::Error`), so wrapped errors are searched through `get_ref()`.
fn find_tls<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && let Some(tls) = find_tls(inner)
    {
        return Some(tls);
    }
    error.source().and_then(find_tls)
}
