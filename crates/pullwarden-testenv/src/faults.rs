//! A fault-injecting HTTPS proxy between a client and kube-apiserver.
//!
//! It terminates TLS with a certificate of the test CA (valid for 127.0.0.1)
//! and forwards each request over TLS to kube-apiserver, headers included, so
//! a bearer token (a ServiceAccount token) passes through and the API server
//! attributes the request to that identity. Client certificates cannot pass
//! a TLS-terminating proxy: clients must use a token.
//!
//! What happens to each request is decided by a seeded [`Schedule`] from the
//! seed, the request's method and path (and whether it carries a `continue`
//! token) and how many requests with that key came before: the same seed
//! faults the same requests whatever order concurrent requests arrive in.
//!
//! The fault kinds ([`FaultKind`]): 429 with `Retry-After` (header and the
//! `details.retryAfterSeconds` the API server sets), 500 (a `Status`), 503
//! (a load balancer's plain-text page), the connection closed before the
//! request is forwarded, the connection closed after the server handled the
//! request (the response is lost), the response held past the client's
//! timeout, a body cut off half-way (`Content-Length` promises more), 410
//! `Expired` on a request carrying a `continue` token, and a response body
//! streamed slowly (within, or past, the client's timeout).
//!
//! [`Schedule::fixed_delay`] injects no fault: it holds every answer a fixed
//! time ([`FaultKind::Latency`]), as a remote cluster's network round trip
//! would (the benchmark's emulated fleet, `pullwarden-testenv proxy`).
//!
//! Forwarded requests run to completion even when the client gave up on them
//! (they are spawned): a write the client timed out on still lands, as it
//! does behind a real load balancer. [`FaultProxy::wait_idle`] waits for them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A kind of fault the proxy injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// 429 `TooManyRequests` with `Retry-After: 1`; not forwarded.
    TooManyRequests,
    /// 500 `InternalError` as a `Status`; not forwarded.
    InternalError,
    /// 503 with a load balancer's plain-text body; not forwarded.
    Unavailable,
    /// The connection is closed before the request is forwarded.
    ResetBeforeForward,
    /// The request is forwarded and handled; then the connection is closed
    /// instead of answering (a write landed, its response is lost).
    ResetAfterForward,
    /// The request is forwarded; the answer is held past the client's timeout.
    DelayPastTimeout,
    /// The request is forwarded; the answer's body stops half-way and the
    /// connection closes (`Content-Length` promised the whole body).
    Truncate,
    /// 410 `Expired` on a request carrying a `continue` token; not forwarded.
    ExpireContinue,
    /// The request is forwarded; the body is streamed in 8 pieces, in total
    /// within half the client's timeout or past it.
    SlowStream,
    /// Not a fault: the request is forwarded and its answer held a fixed
    /// time (an emulated round trip, [`Schedule::fixed_delay`]). Never drawn
    /// from a seed (not in [`FaultKind::ALL`]) nor listed in
    /// [`FaultProxy::injected`].
    Latency,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::TooManyRequests,
        FaultKind::InternalError,
        FaultKind::Unavailable,
        FaultKind::ResetBeforeForward,
        FaultKind::ResetAfterForward,
        FaultKind::DelayPastTimeout,
        FaultKind::Truncate,
        FaultKind::ExpireContinue,
        FaultKind::SlowStream,
    ];
}

/// Which requests get which fault. Deterministic in its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub seed: u64,
    /// Of every 1000 requests, about this many are faulted.
    pub rate_per_mille: u64,
    /// The kinds this schedule injects (empty: none).
    pub kinds: Vec<FaultKind>,
    /// Fault only GET requests (reads).
    pub reads_only: bool,
    /// The client's request timeout, which the delaying faults outlast.
    pub client_timeout: Duration,
    /// Faults for given requests, checked before the seeded draw.
    pub rules: Vec<Rule>,
    /// Every request that gets no fault has its answer held this long
    /// ([`FaultKind::Latency`]); `None`: answered as soon as the server answers.
    pub latency: Option<Duration>,
}

/// One targeted fault: the `attempt`-th (from 0) `method` request whose path
/// ends with `path_suffix` gets `kind` (`ExpireContinue`: only a request
/// carrying a `continue` token; attempts of those are counted apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub method: String,
    pub path_suffix: String,
    pub attempt: u64,
    pub kind: FaultKind,
}

impl Schedule {
    /// No faults: every request is forwarded untouched.
    pub fn none() -> Schedule {
        Schedule {
            seed: 0,
            rate_per_mille: 0,
            kinds: Vec::new(),
            reads_only: false,
            client_timeout: Duration::from_secs(1),
            rules: Vec::new(),
            latency: None,
        }
    }

    /// No faults; every request is forwarded and its answer held `delay`
    /// (an emulated network round trip; zero: no delay).
    pub fn fixed_delay(delay: Duration) -> Schedule {
        Schedule {
            latency: Some(delay).filter(|d| !d.is_zero()),
            ..Schedule::none()
        }
    }

    /// Only the faults `rules` name, for a client with `client_timeout`.
    pub fn targeted(rules: Vec<Rule>, client_timeout: Duration) -> Schedule {
        Schedule {
            client_timeout,
            rules,
            ..Schedule::none()
        }
    }

    /// The schedule of `seed`: a fault rate of 5, 10, 15 or 25 % and a
    /// subset of the kinds (every kind in one seed of four), all drawn from
    /// the seed.
    pub fn from_seed(seed: u64, client_timeout: Duration) -> Schedule {
        let mut rng = SplitMix64(seed);
        let rate_per_mille = [50, 100, 150, 250][rng.below(4)];
        let kinds = if rng.below(4) == 0 {
            FaultKind::ALL.to_vec()
        } else {
            let kinds: Vec<FaultKind> = FaultKind::ALL
                .into_iter()
                .filter(|_| rng.below(2) == 0)
                .collect();
            if kinds.is_empty() {
                FaultKind::ALL.to_vec()
            } else {
                kinds
            }
        };
        Schedule {
            seed,
            rate_per_mille,
            kinds,
            reads_only: false,
            client_timeout,
            rules: Vec::new(),
            latency: None,
        }
    }

    /// The same schedule, faulting reads only.
    #[must_use]
    pub fn reads_only(mut self) -> Schedule {
        self.reads_only = true;
        self
    }

    /// What happens to the `attempt`-th (from 0) request with `key`: a
    /// fault, else the schedule's latency, if any.
    fn decide(
        &self,
        method: &Method,
        key: &str,
        attempt: u64,
        has_continue: bool,
    ) -> Option<Fault> {
        self.fault(method, key, attempt, has_continue)
            .or(self.latency.map(Fault::Latency))
    }

    /// The fault for the `attempt`-th (from 0) request with `key`, if any.
    fn fault(&self, method: &Method, key: &str, attempt: u64, has_continue: bool) -> Option<Fault> {
        let path = key.split(['?', ' ']).nth(1).unwrap_or_default();
        if let Some(rule) = self.rules.iter().find(|r| {
            r.method == method.as_str()
                && r.attempt == attempt
                && path.ends_with(&r.path_suffix)
                && (r.kind != FaultKind::ExpireContinue || has_continue)
        }) {
            return Some(self.timed(rule.kind, false));
        }
        if self.kinds.is_empty() || (self.reads_only && method != Method::GET) {
            return None;
        }
        let mut rng =
            SplitMix64(self.seed ^ fnv1a(key) ^ attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let roll = rng.below(1000);
        let expire = has_continue && self.kinds.contains(&FaultKind::ExpireContinue);
        // A continuation is rare (one per page): expire it at twice the rate.
        let rate = if expire {
            self.rate_per_mille * 2
        } else {
            self.rate_per_mille
        };
        if roll >= rate {
            return None;
        }
        let applicable: Vec<FaultKind> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| *k != FaultKind::ExpireContinue || has_continue)
            .collect();
        let kind = if expire && rng.below(2) == 0 {
            FaultKind::ExpireContinue
        } else {
            *applicable.get(rng.below(applicable.len()))?
        };
        Some(self.timed(kind, rng.below(2) == 0))
    }

    fn timed(&self, kind: FaultKind, within: bool) -> Fault {
        let past = self.client_timeout + Duration::from_millis(500);
        match kind {
            FaultKind::DelayPastTimeout => Fault::Delay(past),
            FaultKind::SlowStream if within => Fault::SlowStream(self.client_timeout / 2),
            FaultKind::SlowStream => Fault::SlowStream(past),
            other => Fault::Plain(other),
        }
    }
}

/// A fault with its timing.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Plain(FaultKind),
    Delay(Duration),
    SlowStream(Duration),
    /// Not a fault: the answer held a fixed time.
    Latency(Duration),
}

impl Fault {
    fn kind(self) -> FaultKind {
        match self {
            Fault::Plain(kind) => kind,
            Fault::Delay(_) => FaultKind::DelayPastTimeout,
            Fault::SlowStream(_) => FaultKind::SlowStream,
            Fault::Latency(_) => FaultKind::Latency,
        }
    }
}

/// One fault the proxy injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    /// `METHOD /path?query` (the query without its continue token; ` (continue)`
    /// marks a continuation).
    pub key: String,
    /// How many requests with that key came before it.
    pub attempt: u64,
    pub kind: FaultKind,
    /// The upstream status, when the request was forwarded.
    pub upstream_status: Option<u16>,
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on {} #{}", self.kind, self.key, self.attempt)?;
        if let Some(status) = self.upstream_status {
            write!(f, " (server answered {status})")?;
        }
        Ok(())
    }
}

/// `SplitMix64`: a small, fast, well-mixed PRNG; a seed replays exactly.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the bias is negligible for small `n`).
    fn below<T: TryFrom<u64> + TryInto<u64> + Copy>(&mut self, n: T) -> T
    where
        <T as TryFrom<u64>>::Error: fmt::Debug,
        <T as TryInto<u64>>::Error: fmt::Debug,
    {
        let n: u64 = n.try_into().expect("n fits u64");
        T::try_from(self.next() % n.max(1)).expect("below n")
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

type Upstream = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

struct State {
    upstream_url: String,
    upstream: Upstream,
    schedule: Mutex<Schedule>,
    counts: Mutex<HashMap<String, u64>>,
    injected: Mutex<Vec<Injected>>,
    in_flight: AtomicUsize,
    requests: AtomicUsize,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    url: String,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts the proxy on a loopback port, in front of `upstream_url`
    /// (trusted through `ca_pem`), serving `cert_pem`/`key_pem`, with no
    /// faults until [`FaultProxy::set_schedule`].
    pub fn start(
        upstream_url: &str,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<FaultProxy> {
        let acceptor = tls_acceptor(cert_pem, key_pem)?;
        let upstream = upstream_client(ca_pem)?;
        let state = Arc::new(State {
            upstream_url: upstream_url.trim_end_matches('/').to_owned(),
            upstream,
            schedule: Mutex::new(Schedule::none()),
            counts: Mutex::new(HashMap::new()),
            injected: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let (shutdown, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("pullwarden-fault-proxy".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fault proxy runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("fault proxy listener");
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let acceptor = acceptor.clone();
                                let state = Arc::clone(&served);
                                tokio::spawn(async move {
                                    let Ok(stream) = acceptor.accept(stream).await else { return };
                                    let service = service_fn(move |request| {
                                        handle(Arc::clone(&state), request)
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
                // Dropping the runtime cancels the sleeping and forwarding tasks.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(FaultProxy {
            url: format!("https://{addr}"),
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces the schedule and forgets what was counted and injected.
    pub fn set_schedule(&self, schedule: Schedule) {
        *lock(&self.state.schedule) = schedule;
        lock(&self.state.counts).clear();
        lock(&self.state.injected).clear();
    }

    /// The faults injected since the schedule was set.
    pub fn injected(&self) -> Vec<Injected> {
        lock(&self.state.injected).clone()
    }

    /// Requests received since the proxy started.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Waits until no forwarded request is still in flight to the API server
    /// (a client that gave up may have left some), at most `limit`.
    pub async fn wait_idle(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.state.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() > deadline {
                bail!("forwarded requests still in flight after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The connection is closed instead of answering.
#[derive(Debug)]
struct Dropped(&'static str);

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Dropped {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<FaultBody>, BoxError> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let has_continue =
        form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "continue" && !v.is_empty());
    // The query without the continue token (which changes with the data):
    // two LISTs of one path with other selectors are counted apart.
    let stable: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "continue")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let key = format!(
        "{method} {path}{}{}",
        if stable.is_empty() {
            String::new()
        } else {
            format!("?{}", stable.join("&"))
        },
        if has_continue { " (continue)" } else { "" }
    );
    let attempt = {
        let mut counts = lock(&state.counts);
        let count = counts.entry(key.clone()).or_insert(0);
        *count += 1;
        *count - 1
    };
    let fault = lock(&state.schedule).decide(&method, &key, attempt, has_continue);
    let record = |upstream_status: Option<u16>| {
        if let Some(fault) = fault.filter(|f| !matches!(f, Fault::Latency(_))) {
            lock(&state.injected).push(Injected {
                key: key.clone(),
                attempt,
                kind: fault.kind(),
                upstream_status,
            });
        }
    };

    // Faults that answer instead of the server.
    match fault.map(Fault::kind) {
        Some(FaultKind::ResetBeforeForward) => {
            record(None);
            return Err(Box::new(Dropped("closed before forwarding")));
        }
        Some(FaultKind::TooManyRequests) => {
            record(None);
            let mut response = status_response(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                Some(1),
            );
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return Ok(response);
        }
        Some(FaultKind::InternalError) => {
            record(None);
            return Ok(status_response(
                500,
                "InternalError",
                "Internal error occurred: injected",
                None,
            ));
        }
        Some(FaultKind::Unavailable) => {
            record(None);
            let mut response = Response::new(FaultBody::whole(Bytes::from_static(
                b"503 Service Unavailable\nno healthy upstream\n",
            )));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain"));
            return Ok(response);
        }
        Some(FaultKind::ExpireContinue) => {
            record(None);
            return Ok(status_response(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result.",
                None,
            ));
        }
        _ => {}
    }

    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path_and_query}", state.upstream_url));
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name.as_str())
            && name != http::header::HOST
            && name != http::header::CONTENT_LENGTH
        {
            upstream = upstream.header(name, value);
        }
    }
    let upstream = upstream.body(Full::new(body))?;
    // Spawned: a request the client gave up on still reaches the server.
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let forwarding = Arc::clone(&state);
    let answer = tokio::spawn(async move {
        let answer = async {
            let response = forwarding.upstream.request(upstream).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>((parts, body))
        }
        .await;
        forwarding.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer
    })
    .await??;
    let (parts, body) = answer;
    record(Some(parts.status.as_u16()));

    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name.as_str()) && name != http::header::CONTENT_LENGTH {
            headers.append(name, value.clone());
        }
    }
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let respond = |body: FaultBody| {
        let mut response = Response::new(body);
        *response.status_mut() = parts.status;
        *response.headers_mut() = headers.clone();
        response
    };
    match fault {
        Some(Fault::Plain(FaultKind::ResetAfterForward)) => {
            Err(Box::new(Dropped("closed after forwarding")))
        }
        Some(Fault::Plain(FaultKind::Truncate)) => {
            let half = body.slice(..body.len() / 2);
            Ok(respond(FaultBody::chunks(vec![half], Duration::ZERO, true)))
        }
        Some(Fault::Delay(delay) | Fault::Latency(delay)) => {
            tokio::time::sleep(delay).await;
            Ok(respond(FaultBody::whole(body)))
        }
        Some(Fault::SlowStream(total)) => {
            let piece = body.len().div_ceil(8).max(1);
            let chunks = (0..body.len())
                .step_by(piece)
                .map(|at| body.slice(at..(at + piece).min(body.len())))
                .collect();
            Ok(respond(FaultBody::chunks(chunks, total / 8, false)))
        }
        _ => Ok(respond(FaultBody::whole(body))),
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
    )
}

/// A `Status` answer as kube-apiserver writes it.
fn status_response(
    code: u16,
    reason: &str,
    message: &str,
    retry_after: Option<u32>,
) -> Response<FaultBody> {
    let mut status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(seconds) = retry_after {
        status["details"] = serde_json::json!({ "retryAfterSeconds": seconds });
    }
    let body = Bytes::from(status.to_string());
    let mut response = Response::new(FaultBody::whole(body.clone()));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

/// A response body sent in pieces, with a pause before each, optionally
/// failing (closing the connection) after the last.
struct FaultBody {
    chunks: VecDeque<Bytes>,
    pause: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    fail_at_end: bool,
}

impl FaultBody {
    fn whole(body: Bytes) -> FaultBody {
        FaultBody::chunks(vec![body], Duration::ZERO, false)
    }

    fn chunks(chunks: Vec<Bytes>, pause: Duration, fail_at_end: bool) -> FaultBody {
        FaultBody {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            pause,
            sleep: None,
            fail_at_end,
        }
    }
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.chunks.is_empty() {
            if this.fail_at_end {
                this.fail_at_end = false;
                return Poll::Ready(Some(Err(std::io::Error::other("body cut off"))));
            }
            return Poll::Ready(None);
        }
        if !this.pause.is_zero() {
            let pause = this.pause;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        Poll::Ready(this.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && !self.fail_at_end
    }
}

fn tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<tokio_rustls::TlsAcceptor> {
    let certs =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn upstream_client(ca_pem: &str) -> Result<Upstream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("the test CA")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_exactly_and_seeds_differ() {
        let timeout = Duration::from_secs(2);
        let a = Schedule::from_seed(7, timeout);
        assert_eq!(a, Schedule::from_seed(7, timeout));
        let decisions = |s: &Schedule| {
            (0..200)
                .map(|n| {
                    s.decide(&Method::PUT, "PUT /api/v1/namespaces/a/secrets/x", n, false)
                        .map(Fault::kind)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(decisions(&a), decisions(&Schedule::from_seed(7, timeout)));
        let distinct: std::collections::BTreeSet<Vec<Option<FaultKind>>> = (0..20)
            .map(|seed| decisions(&Schedule::from_seed(seed, timeout)))
            .collect();
        assert!(distinct.len() > 15, "{}", distinct.len());
    }

    #[test]
    fn faults_at_about_the_rate_and_only_what_applies() {
        let mut schedule = Schedule::from_seed(1, Duration::from_secs(1));
        schedule.kinds = FaultKind::ALL.to_vec();
        schedule.rate_per_mille = 250;
        let faults: Vec<FaultKind> = (0..4000)
            .filter_map(|n| schedule.decide(&Method::GET, "GET /api/v1/secrets", n, false))
            .map(Fault::kind)
            .collect();
        assert!((800..1200).contains(&faults.len()), "{}", faults.len());
        assert!(
            !faults.contains(&FaultKind::ExpireContinue),
            "410 only on a continuation"
        );
        for kind in FaultKind::ALL
            .iter()
            .filter(|k| **k != FaultKind::ExpireContinue)
        {
            assert!(faults.contains(kind), "{kind:?} never drawn");
        }
        let expired = (0..400)
            .filter_map(|n| {
                schedule.decide(&Method::GET, "GET /api/v1/secrets (continue)", n, true)
            })
            .filter(|f| f.kind() == FaultKind::ExpireContinue)
            .count();
        assert!(expired > 50, "{expired}");
        let reads = schedule.clone().reads_only();
        assert!((0..400).all(|n| reads.decide(&Method::POST, "POST /x", n, false).is_none()));
        assert!(
            Schedule::none()
                .decide(&Method::GET, "GET /x", 0, false)
                .is_none()
        );
    }

    #[test]
    fn a_fixed_delay_holds_every_request_that_long_and_faults_none() {
        let delay = Duration::from_millis(25);
        let schedule = Schedule::fixed_delay(delay);
        let requests = [
            (Method::GET, "GET /api/v1/secrets?limit=500", false),
            (
                Method::GET,
                "GET /api/v1/secrets?limit=500 (continue)",
                true,
            ),
            (Method::GET, "GET /api", false),
            (Method::POST, "POST /api/v1/namespaces/a/secrets", false),
            (Method::PUT, "PUT /api/v1/namespaces/a/secrets/x", false),
            (
                Method::PATCH,
                "PATCH /api/v1/namespaces/a/serviceaccounts/y",
                false,
            ),
            (
                Method::DELETE,
                "DELETE /api/v1/namespaces/a/secrets/x",
                false,
            ),
        ];
        for (method, key, has_continue) in &requests {
            for attempt in 0..2000 {
                match schedule.decide(method, key, attempt, *has_continue) {
                    Some(Fault::Latency(held)) => assert_eq!(held, delay, "{key} #{attempt}"),
                    other => panic!("{key} #{attempt}: {other:?}, expected Latency({delay:?})"),
                }
            }
        }
        // zero: nothing at all; a seed never draws a latency
        assert!(
            Schedule::fixed_delay(Duration::ZERO)
                .decide(&Method::GET, "GET /x", 0, false)
                .is_none()
        );
        assert!(!FaultKind::ALL.contains(&FaultKind::Latency));
        for seed in 0..50 {
            let seeded = Schedule::from_seed(seed, Duration::from_secs(1));
            assert!((0..200).all(|n| {
                seeded
                    .decide(&Method::GET, "GET /api/v1/secrets", n, false)
                    .is_none_or(|f| f.kind() != FaultKind::Latency)
            }));
        }
    }

    /// The proxy itself, in front of a small HTTPS server answering each
    /// request with its method and path: with a fixed delay every answer is
    /// the server's, untouched, at least that much later, and nothing is
    /// listed as injected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fixed_delay_proxy_answers_what_the_server_answered_that_much_later() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = crate::pki::Pki::generate(dir.path(), "admin", "user")?;
        let cert = std::fs::read_to_string(&pki.serving_cert_file)?;
        let key = std::fs::read_to_string(&pki.serving_key_file)?;
        let acceptor = tls_acceptor(&cert, &key)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let upstream_url = format!("https://{}", listener.local_addr()?);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(|request: Request<Incoming>| async move {
                        let text = format!("{} {}", request.method(), request.uri().path());
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            text,
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let proxy = FaultProxy::start(&upstream_url, &pki.ca_pem, &cert, &key)?;
        let delay = Duration::from_millis(300);
        proxy.set_schedule(Schedule::fixed_delay(delay));
        let client = upstream_client(&pki.ca_pem)?;
        let requests = [
            (Method::GET, "/api/v1/secrets"),
            (Method::POST, "/api/v1/namespaces/a/secrets"),
            (Method::DELETE, "/api/v1/namespaces/a/secrets/x"),
        ];
        for (method, path) in &requests {
            let started = Instant::now();
            let response = client
                .request(
                    Request::builder()
                        .method(method.clone())
                        .uri(format!("{}{path}", proxy.url()))
                        .body(Full::new(Bytes::new()))?,
                )
                .await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            let took = started.elapsed();
            assert_eq!(status, StatusCode::OK, "{method} {path}");
            assert_eq!(body, format!("{method} {path}").as_bytes());
            assert!(took >= delay, "{method} {path} answered after {took:?}");
        }
        assert_eq!(proxy.requests(), requests.len());
        assert!(proxy.injected().is_empty(), "{:?}", proxy.injected());
        Ok(())
    }
}
