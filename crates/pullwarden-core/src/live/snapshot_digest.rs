//! The annotation `pullwarden.dev/snapshot-digest` of a snapshot Secret whose
//! usernames and passwords were replaced by salted slow digests:
//! `pbkdf2-sha256;<iterations>;<salt as hex>`. Written by `pullwarden
//! snapshot`, read by the planner; encoded and decoded here only.

use crate::secret::{hex, unhex};

const SCHEME: &str = "pbkdf2-sha256";

/// The annotation value for `salt` and `iterations`.
pub fn encode(salt: &[u8], iterations: u32) -> String {
    format!("{SCHEME};{iterations};{}", hex(salt))
}

/// The salt and iterations of an annotation value; `None` for anything else
/// (another scheme, a round count outside 1..=10,000,000, bad hex).
pub fn decode(value: &str) -> Option<(Vec<u8>, u32)> {
    let mut parts = value.split(';');
    if parts.next()? != SCHEME {
        return None;
    }
    let iterations: u32 = parts.next()?.parse().ok()?;
    if !(1..=10_000_000).contains(&iterations) {
        return None;
    }
    let salt = unhex(parts.next()?)?;
    parts.next().is_none().then_some((salt, iterations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_did_not_write() {
        let value = encode(&[0xab, 0x01], 100_000);
        assert_eq!(value, "pbkdf2-sha256;100000;ab01");
        assert_eq!(decode(&value), Some((vec![0xab, 0x01], 100_000)));
        for bad in [
            "sha1;1;00",
            "pbkdf2-sha256;0;00",
            "pbkdf2-sha256;99999999;00",
            "pbkdf2-sha256;10;0",
            "pbkdf2-sha256;10;zz",
            "pbkdf2-sha256;10;00;extra",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
