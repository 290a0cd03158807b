//! One retry policy and one classifier for every request pullwarden sends,
//! reads and writes alike.
//!
//! Each attempt is bounded by the request timeout (a server or load balancer
//! that accepts a request and never answers, or a credential plugin that
//! hangs, fails the request instead of hanging the run); 429, 5xx and
//! transport errors are retried with exponential backoff, a bounded number of
//! times.

use std::future::Future;
use std::time::Duration;

/// How long one request may take when the user does not say
/// (`--request-timeout`); kubectl has no default, client-go's is none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How requests are retried and bounded.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts of one request on 429, 5xx and transport errors.
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled after each, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// The bound on one attempt.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The error an attempt that outlived the request timeout fails with.
#[derive(Debug, thiserror::Error)]
#[error("the API server did not answer within {0:?}")]
pub struct TimedOut(pub Duration);

/// Whether a failed request may succeed if sent again: 429, 500, 502, 503,
/// 504, or a transport error (a reset connection). Not a timeout: a server
/// that did not answer within the request timeout fails the request at once,
/// so a hung server costs one timeout, not one per attempt.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            !is_auth_failure(error) && !is_timeout(error)
        }
        _ => false,
    }
}

/// The wait a 429 (or 503) asks for. kube's `Error::Api` carries no
/// headers, so the `Retry-After` header itself is out of reach; the API
/// server puts the same number in the `Status` it sends with a 429
/// (`details.retryAfterSeconds`), and that is what is read here.
pub fn retry_after(error: &kube::Error) -> Option<Duration> {
    match error {
        kube::Error::Api(status) if matches!(status.code, 429 | 503) => status
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s))),
        _ => None,
    }
}

/// Whether an error's chain holds a timeout of ours.
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    chain(error).any(|e| {
        e.downcast_ref::<TimedOut>().is_some()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// Whether an error's chain holds a credential-plugin failure, whose text may
/// quote a token and must never be shown.
pub fn is_auth_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    chain(error).any(|e| {
        e.downcast_ref::<kube::client::AuthError>().is_some()
            || matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Auth(_)))
    })
}

fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// Runs `call`, each attempt bounded by the request timeout, retrying
/// transient failures with backoff.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = policy.first_delay;
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout(policy.request_timeout, call()).await {
            // A timeout of the client's own (connecting, reading) is reported
            // as ours, with the bound the user set.
            Ok(Err(e)) if is_timeout(&e) => Err(kube::Error::Service(Box::new(TimedOut(
                policy.request_timeout,
            )))),
            Ok(result) => result,
            Err(_) => Err(kube::Error::Service(Box::new(TimedOut(
                policy.request_timeout,
            )))),
        };
        match result {
            Err(e) if is_transient(&e) && attempt < policy.max_attempts => {
                // A server that says how long to wait is believed, within
                // `max_delay`: the run stays bounded.
                let wait = retry_after(&e).map_or(delay, |after| after.max(delay));
                tokio::time::sleep(wait.min(policy.max_delay)).await;
                delay = (delay * 2).min(policy.max_delay);
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("m", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            request_timeout: Duration::from_millis(50),
        }
    }

    #[test]
    fn classifies_what_may_succeed_when_sent_again() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&status(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 410, 422] {
            assert!(!is_transient(&status(code)), "{code}");
        }
        let timeout = kube::Error::Service(Box::new(TimedOut(Duration::from_secs(1))));
        assert!(is_timeout(&timeout) && !is_transient(&timeout));
        let reset = kube::Error::Service(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(is_transient(&reset) && !is_timeout(&reset));
    }

    #[tokio::test]
    async fn retries_transient_failures_a_bounded_number_of_times() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(&quick(3), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(status(503))
        })
        .await;
        assert!(matches!(result, Err(kube::Error::Api(s)) if s.code == 503));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let result = retry(&quick(5), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(status(429))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(&quick(5), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(status(409))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a 409 is never retried blindly"
        );
    }

    /// #15: a 429 whose Status says `retryAfterSeconds` waits that long
    /// (not the shorter backoff), within `max_delay`.
    #[tokio::test]
    async fn a_429_waits_as_long_as_the_server_asks_within_the_bound() {
        let too_many = |seconds: u32| {
            let mut status = kube::core::Status::failure("m", "TooManyRequests").with_code(429);
            status.details = Some(kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds: seconds,
            });
            kube::Error::Api(status.boxed())
        };
        assert_eq!(retry_after(&too_many(1)), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(&too_many(0)), None);
        assert_eq!(retry_after(&status(500)), None);
        let policy = RetryPolicy {
            max_delay: Duration::from_millis(1500),
            ..quick(3)
        };
        let calls = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let result = retry(&policy, || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(too_many(1))
            } else {
                Ok(1)
            }
        })
        .await;
        assert_eq!(result.ok(), Some(1));
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // Asked for 60 s, waits at most max_delay.
        let calls = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let _ = retry(&policy, || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(too_many(60))
            } else {
                Ok(1)
            }
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_attempt_that_never_answers_times_out() {
        let started = std::time::Instant::now();
        let result: Result<(), _> = retry(&quick(2), std::future::pending).await;
        let error = result.expect_err("timed out");
        assert!(is_timeout(&error), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
