//! A credential that cannot reach output.
//!
//! [`SecretString`] redacts itself in `Debug`, `Display` and `Serialize`, and
//! deliberately implements neither `PartialEq` nor `Deserialize`: the only
//! comparisons are through a keyed digest, and the only way to the bytes is
//! [`SecretString::expose`]. Grep for `expose(` to audit every place a value
//! is read: the cluster writer building the object it sends
//! (`pullwarden-kube/apply.rs`), the registry client sending a credential to
//! its own registry (`pullwarden-registry`, and `validate --check-registries`
//! handing it one), the docker-config reader and writer and the kubelet's rules
//! (`dockerconfig.rs`, `pull/`), and the digests.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Serialize, Serializer};
use sha2::Sha256;

/// What every rendering of a secret shows instead of its value.
pub const REDACTED: &str = "<redacted>";

/// A credential (password, token, sensitive username, docker config).
#[derive(Clone)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value. Only code that writes the value to the cluster may call this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A keyed digest, for comparing two values without showing either.
    pub fn digest(&self, key: &DigestKey) -> Digest {
        Digest(key.mac(self.0.as_bytes()))
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// The key of a keyed digest. Within one run a random key is enough (the
/// digests are compared and dropped); artefacts written to disk use
/// [`slow_digest`] with a stored salt instead.
#[derive(Clone)]
pub struct DigestKey([u8; 32]);

impl DigestKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey(<redacted>)")
    }
}

/// A keyed digest of a secret: equal values under one key give equal digests.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex(&self.0[..6]))
    }
}

/// Iterations of PBKDF2-HMAC-SHA256 for digests stored in artefacts (saved
/// plans, snapshots). Deliberately slow, so that a leaked artefact does not
/// make guessing weak passwords cheap; about a tenth of a second per value.
pub const SLOW_DIGEST_ITERATIONS: u32 = 100_000;

/// A salted, deliberately slow digest for values that must be compared across
/// runs. Returns lowercase hex.
pub fn slow_digest(secret: &SecretString, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(secret.expose().as_bytes(), salt, iterations, &mut out);
    hex(&out)
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The bytes of lowercase or uppercase hex text; `None` unless it is whole bytes of hex digits.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "hunter2-canary-9f8e7d";

    #[test]
    fn debug_display_and_serialize_redact() {
        let secret = SecretString::new(CANARY);
        let debug = format!("{secret:?}");
        let display = format!("{secret}");
        let json = serde_json::to_string(&secret).unwrap();
        let nested = format!("{:?}", Some(vec![secret.clone()]));
        for out in [&debug, &display, &json, &nested] {
            assert!(!out.contains(CANARY), "leaked in {out}");
            assert!(out.contains(REDACTED), "{out}");
        }
        assert_eq!(secret.expose(), CANARY);
    }

    #[test]
    fn keyed_digests_compare_values_without_showing_them() {
        let key = DigestKey::from_bytes([7; 32]);
        let other_key = DigestKey::from_bytes([8; 32]);
        let a = SecretString::new(CANARY);
        let b = SecretString::new(CANARY);
        let c = SecretString::new("something else");
        assert_eq!(a.digest(&key), b.digest(&key));
        assert_ne!(a.digest(&key), c.digest(&key));
        assert_ne!(a.digest(&key), a.digest(&other_key));
        assert!(!format!("{:?}", a.digest(&key)).contains(CANARY));
    }

    #[test]
    fn slow_digest_is_salted() {
        let a = SecretString::new(CANARY);
        let d1 = slow_digest(&a, b"salt-one", 10);
        let d2 = slow_digest(&a, b"salt-two", 10);
        assert_ne!(d1, d2);
        assert_eq!(d1, slow_digest(&SecretString::new(CANARY), b"salt-one", 10));
        assert_eq!(d1.len(), 64);
        assert!(!d1.contains(CANARY));
    }
}
