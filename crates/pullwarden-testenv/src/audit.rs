//! The API server's audit log, read back by tests as an oracle of what was
//! written, by whom.
//!
//! The policy ([`AUDIT_POLICY`]) records every write (create, update, patch,
//! delete, deletecollection) at `Metadata` level, at every stage: a
//! `RequestReceived` line when the request arrives (so a write the server
//! took in and then crashed on is still seen), a `ResponseComplete` line
//! with the status code when it was handled, including writes whose
//! response never reached the client.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// The audit policy the control plane runs with when audit is on.
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
";

/// [`AUDIT_POLICY`] that also records reads (get, list, watch) at
/// `Metadata` level, without their `RequestReceived` stage: a get or list is
/// one `ResponseComplete` line, a watch a `ResponseStarted` line when it
/// starts and a `ResponseComplete` line when it ends. For counting what a
/// client reads ([`crate::controlplane::Options::audit_reads`]).
pub const AUDIT_POLICY_WITH_READS: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: Metadata
  verbs: [get, list, watch]
  omitStages: [RequestReceived]
- level: None
";

/// The verbs the policy records.
pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// One audited request, reduced to what the oracles compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub audit_id: String,
    pub stage: String,
    pub verb: String,
    /// `user.username` (for a ServiceAccount token: `system:serviceaccount:<ns>:<name>`).
    pub username: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// `requestURI`: the path and query (selectors, `watch=true`).
    pub request_uri: String,
    /// `responseStatus.code` (0 when absent).
    pub code: u16,
}

impl AuditEvent {
    fn from_json(value: &Value) -> Option<AuditEvent> {
        let text = |v: &Value, path: &[&str]| {
            let mut v = v;
            for key in path {
                v = v.get(key)?;
            }
            Some(v.as_str().unwrap_or_default().to_owned())
        };
        let or_empty = |path: &[&str]| text(value, path).unwrap_or_default();
        Some(AuditEvent {
            audit_id: text(value, &["auditID"])?,
            stage: or_empty(&["stage"]),
            verb: text(value, &["verb"])?,
            username: or_empty(&["user", "username"]),
            resource: or_empty(&["objectRef", "resource"]),
            subresource: or_empty(&["objectRef", "subresource"]),
            namespace: or_empty(&["objectRef", "namespace"]),
            name: or_empty(&["objectRef", "name"]),
            request_uri: or_empty(&["requestURI"]),
            code: value
                .get("responseStatus")
                .and_then(|s| s.get("code"))
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
        })
    }
}

/// The audit log file of a control plane (JSON lines, appended to; a
/// restarted kube-apiserver appends to the same file).
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub(crate) fn new(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current end of the log: pass it to [`AuditLog::events_since`]
    /// to read only what was recorded afterwards.
    pub fn offset(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Every complete event recorded after `offset` (a line still being
    /// written at the end is left out).
    pub fn events_since(&self, offset: u64) -> Result<Vec<AuditEvent>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let mut events = Vec::new();
        for line in bytes[start..].split_inclusive(|b| *b == b'\n') {
            if line.last() != Some(&b'\n') {
                break;
            }
            let value: Value = serde_json::from_slice(line)
                .with_context(|| format!("an audit line of {} is not JSON", self.path.display()))?;
            if let Some(event) = AuditEvent::from_json(&value) {
                events.push(event);
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_after_an_offset_and_skips_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let line = |verb: &str, name: &str| {
            format!(
                "{{\"auditID\":\"a-{name}\",\"stage\":\"ResponseComplete\",\"verb\":\"{verb}\",\"user\":{{\"username\":\"u\"}},\"objectRef\":{{\"resource\":\"secrets\",\"namespace\":\"ns\",\"name\":\"{name}\"}},\"responseStatus\":{{\"code\":201}}}}\n"
            )
        };
        std::fs::write(&path, line("create", "one")).unwrap();
        let log = AuditLog::new(&path);
        let offset = log.offset();
        let mut text = line("create", "one");
        text.push_str(&line("delete", "two"));
        text.push_str("{\"auditID\":\"partial");
        std::fs::write(&path, text).unwrap();
        let events = log.events_since(offset).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].verb, "delete");
        assert_eq!(events[0].name, "two");
        assert_eq!(events[0].code, 201);
        assert_eq!(log.events_since(0).unwrap().len(), 2);
    }
}
