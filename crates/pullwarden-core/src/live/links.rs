//! The record of what each workspace added to a ServiceAccount's lists: the
//! annotation `pullwarden.dev/links`, a JSON map `{workspace: {pull: [...],
//! mount: [...]}}`. Encoded and decoded here only. An entry that was present
//! before pullwarden linked it is never recorded, so it is never removed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::LINKS_ANNOTATION;

/// The entries a workspace added to one ServiceAccount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pull: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub mount: BTreeSet<String>,
}

impl LinkRecord {
    pub fn is_empty(&self) -> bool {
        self.pull.is_empty() && self.mount.is_empty()
    }
}

/// The annotation is there but is not pullwarden's JSON: it must never be
/// overwritten (it holds other workspaces' records too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable;

/// Every workspace's record, or [`Unreadable`].
pub fn decode(
    annotations: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, LinkRecord>, Unreadable> {
    match annotations.get(LINKS_ANNOTATION) {
        None => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(text).map_err(|_| Unreadable),
    }
}

/// Every workspace's record; an unreadable annotation reads as none.
pub fn records(annotations: &BTreeMap<String, String>) -> BTreeMap<String, LinkRecord> {
    decode(annotations).unwrap_or_default()
}

/// The annotation value with `workspace`'s record replaced (removed when
/// empty); `None` when no record is left.
pub fn encode_with(
    annotations: &BTreeMap<String, String>,
    workspace: &str,
    record: &LinkRecord,
) -> Option<String> {
    let mut all = records(annotations);
    if record.is_empty() {
        all.remove(workspace);
    } else {
        all.insert(workspace.to_string(), record.clone());
    }
    if all.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&all).expect("records serialize"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_broken_annotation_is_told() {
        let record = LinkRecord {
            pull: BTreeSet::from(["a".to_string()]),
            mount: BTreeSet::new(),
        };
        let mut annotations = BTreeMap::from([(
            LINKS_ANNOTATION.to_string(),
            r#"{"other":{"mount":["m"]}}"#.to_string(),
        )]);
        let value = encode_with(&annotations, "ws", &record).expect("two records");
        annotations.insert(LINKS_ANNOTATION.to_string(), value);
        let all = decode(&annotations).expect("readable");
        assert_eq!(all["ws"], record);
        assert_eq!(all["other"].mount, BTreeSet::from(["m".to_string()]));
        let emptied = encode_with(&annotations, "ws", &LinkRecord::default()).expect("other stays");
        assert!(!emptied.contains("\"ws\""), "{emptied}");
        annotations.insert(LINKS_ANNOTATION.to_string(), "not json".to_string());
        assert!(decode(&annotations).is_err());
        assert!(records(&annotations).is_empty());
    }
}
