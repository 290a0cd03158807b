//! The controller's counters and their Prometheus text, and the loopback
//! HTTP endpoint serving `/metrics`, `/healthz` and `/readyz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[derive(Default)]
struct Counters {
    reconciles: u64,
    /// Reconciles that read and planned only the namespaces events touched.
    scoped_reconciles: u64,
    /// (kind, action, result) → count.
    changes: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    /// reason → count.
    failures: BTreeMap<&'static str, u64>,
    last_reconcile: f64,
    last_success: f64,
    workspace_loads: u64,
    workspace_broken: bool,
    /// kind → changes held back by the per-object backoff.
    held: BTreeMap<&'static str, u64>,
    /// kind → writes of an object another writer had undone.
    rewrites: BTreeMap<&'static str, u64>,
    /// None without leader election.
    leader: Option<bool>,
    /// Registry → when its `fromCommand` credential expires (Unix seconds).
    credential_expiry: BTreeMap<String, i64>,
    /// Registry → refreshes of its `fromCommand` credential, by result.
    credential_refreshes: BTreeMap<(String, &'static str), u64>,
}

/// Shared between the loop and the HTTP endpoint.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    /// Set after the first reconcile that read the cluster and planned.
    ready: AtomicBool,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Counters) -> T) -> T {
        let mut guard = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    pub fn reconciled(&self, ok: bool) {
        self.with(|c| {
            c.reconciles += 1;
            c.last_reconcile = now();
            if ok {
                c.last_success = c.last_reconcile;
            }
        });
        if ok {
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    /// Counts a reconcile as scoped (only touched namespaces) or full.
    pub fn reconciled_scope(&self, scoped: bool) {
        if scoped {
            self.with(|c| c.scoped_reconciles += 1);
        }
    }

    pub fn change(&self, kind: &'static str, action: &'static str, result: &'static str) {
        self.with(|c| *c.changes.entry((kind, action, result)).or_default() += 1);
    }

    pub fn failure(&self, reason: &'static str) {
        self.with(|c| *c.failures.entry(reason).or_default() += 1);
    }

    pub fn workspace(&self, broken: bool) {
        self.with(|c| {
            if !broken {
                c.workspace_loads += 1;
            }
            c.workspace_broken = broken;
        });
    }

    pub fn held_back(&self, kind: &'static str) {
        self.with(|c| *c.held.entry(kind).or_default() += 1);
    }

    pub fn rewrite(&self, kind: &'static str) {
        self.with(|c| *c.rewrites.entry(kind).or_default() += 1);
    }

    pub fn leader(&self, leader: bool) {
        self.with(|c| c.leader = Some(leader));
    }

    /// Ready without a reconcile: a standby replica.
    /// A `fromCommand` credential's expiry (`None`: it printed none).
    pub fn credential_expiry(&self, registry: &str, expires_at: Option<i64>) {
        self.with(|c| match expires_at {
            Some(at) => {
                c.credential_expiry.insert(registry.to_owned(), at);
            }
            None => {
                c.credential_expiry.remove(registry);
            }
        });
    }

    /// A refresh of a `fromCommand` credential: `ok`, or `failed`.
    pub fn credential_refresh(&self, registry: &str, result: &'static str) {
        self.with(|c| {
            *c.credential_refreshes
                .entry((registry.to_owned(), result))
                .or_default() += 1;
        });
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        self.with(|c| {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "# HELP pullwarden_reconciles_total Reconciles run (read, plan, apply).\n# TYPE pullwarden_reconciles_total counter\npullwarden_reconciles_total {}",
                c.reconciles
            );
            let _ = writeln!(
                out,
                "# HELP pullwarden_reconciles_by_scope_total Reconciles by what they read and planned: every namespace (full) or only those watch events touched (namespaces).\n# TYPE pullwarden_reconciles_by_scope_total counter\npullwarden_reconciles_by_scope_total{{scope=\"full\"}} {}\npullwarden_reconciles_by_scope_total{{scope=\"namespaces\"}} {}",
                c.reconciles.saturating_sub(c.scoped_reconciles),
                c.scoped_reconciles
            );
            out.push_str("# HELP pullwarden_changes_total Changes executed, by kind, action and result.\n# TYPE pullwarden_changes_total counter\n");
            for ((kind, action, result), n) in &c.changes {
                let _ = writeln!(
                    out,
                    "pullwarden_changes_total{{kind=\"{kind}\",action=\"{action}\",result=\"{result}\"}} {n}"
                );
            }
            out.push_str("# HELP pullwarden_reconcile_failures_total Reconciles that did not converge, by reason.\n# TYPE pullwarden_reconcile_failures_total counter\n");
            for (reason, n) in &c.failures {
                let _ = writeln!(
                    out,
                    "pullwarden_reconcile_failures_total{{reason=\"{reason}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP pullwarden_last_reconcile_timestamp_seconds When the last reconcile ended.\n# TYPE pullwarden_last_reconcile_timestamp_seconds gauge\npullwarden_last_reconcile_timestamp_seconds {:.3}",
                c.last_reconcile
            );
            let _ = writeln!(
                out,
                "# HELP pullwarden_last_success_timestamp_seconds When the last reconcile without a failure ended.\n# TYPE pullwarden_last_success_timestamp_seconds gauge\npullwarden_last_success_timestamp_seconds {:.3}",
                c.last_success
            );
            let _ = writeln!(
                out,
                "# HELP pullwarden_workspace_loads_total Workspace versions loaded.\n# TYPE pullwarden_workspace_loads_total counter\npullwarden_workspace_loads_total {}",
                c.workspace_loads
            );
            let _ = writeln!(
                out,
                "# HELP pullwarden_workspace_broken 1 while the workspace on disk has errors (the last good one is used).\n# TYPE pullwarden_workspace_broken gauge\npullwarden_workspace_broken {}",
                u8::from(c.workspace_broken)
            );
            out.push_str("# HELP pullwarden_backoff_held_total Changes held back because another writer keeps undoing them, by kind.\n# TYPE pullwarden_backoff_held_total counter\n");
            for (kind, n) in &c.held {
                let _ = writeln!(out, "pullwarden_backoff_held_total{{kind=\"{kind}\"}} {n}");
            }
            out.push_str("# HELP pullwarden_rewrites_total Writes of an object pullwarden had written shortly before (another writer undid it), by kind.\n# TYPE pullwarden_rewrites_total counter\n");
            for (kind, n) in &c.rewrites {
                let _ = writeln!(out, "pullwarden_rewrites_total{{kind=\"{kind}\"}} {n}");
            }
            out.push_str("# HELP pullwarden_credential_expiry_timestamp_seconds When a registry's fromCommand credential in use expires (the expiresAt it printed), in Unix seconds.\n# TYPE pullwarden_credential_expiry_timestamp_seconds gauge\n");
            for (registry, at) in &c.credential_expiry {
                let _ = writeln!(
                    out,
                    "pullwarden_credential_expiry_timestamp_seconds{{registry=\"{registry}\"}} {at}"
                );
            }
            out.push_str("# HELP pullwarden_credential_refreshes_total Refreshes of fromCommand credentials (the command run again), by registry and result.\n# TYPE pullwarden_credential_refreshes_total counter\n");
            for ((registry, result), n) in &c.credential_refreshes {
                let _ = writeln!(
                    out,
                    "pullwarden_credential_refreshes_total{{registry=\"{registry}\",result=\"{result}\"}} {n}"
                );
            }
            out.push_str("# HELP pullwarden_credential_refresh_failures_total Failed refreshes of fromCommand credentials (the Secrets kept their value), by registry.\n# TYPE pullwarden_credential_refresh_failures_total counter\n");
            for ((registry, result), n) in &c.credential_refreshes {
                if *result == "failed" {
                    let _ = writeln!(
                        out,
                        "pullwarden_credential_refresh_failures_total{{registry=\"{registry}\"}} {n}"
                    );
                }
            }
            if let Some(leader) = c.leader {
                let _ = writeln!(
                    out,
                    "# HELP pullwarden_leader 1 while this replica holds the lease and may write.\n# TYPE pullwarden_leader gauge\npullwarden_leader {}",
                    u8::from(leader)
                );
            }
            out
        })
    }
}

/// Serves one connection: a GET of `/metrics`, `/healthz` or `/readyz`.
pub async fn serve_one(mut stream: tokio::net::TcpStream, metrics: &Metrics) {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let read = async {
        while len < buf.len() {
            match stream.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") if metrics.is_ready() => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "not yet reconciled\n".to_owned(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn counters_appear_in_the_text() {
        let m = Metrics::default();
        assert!(!m.is_ready());
        m.reconciled(true);
        m.change("Secret", "create", "done");
        m.change("Secret", "create", "done");
        m.failure("read");
        let text = m.render();
        assert!(m.is_ready());
        assert!(text.contains("pullwarden_reconciles_total 1\n"), "{text}");
        assert!(
            text.contains(
                "pullwarden_changes_total{kind=\"Secret\",action=\"create\",result=\"done\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("pullwarden_reconcile_failures_total{reason=\"read\"} 1\n"),
            "{text}"
        );
    }
}
