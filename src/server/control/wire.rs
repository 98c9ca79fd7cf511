//! What crosses the bus (`--bus`): a session's stored value and the notices published when one
//! changes, each sealed with an HMAC-SHA256 (RFC 2104) under the fleet's shared key
//! (`SEGUE_BUS_KEY`), and bound to the name it is stored or published under, so a value
//! copied to another key or a message forged by someone who can reach Redis is rejected.
//!
//! Sealed text: `v1.HEXMAC.JSON`. Every value is size-capped before it is even verified, then
//! parsed strictly; a session is checked again by [`Session::check`]. Without a key the MAC
//! still detects corruption but not forgery; `segue serve` warns about it at startup.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::session::{PrefetchNeed, Session};

type HmacSha256 = Hmac<Sha256>;

/// Largest sealed session accepted (a full queue of 1000 entries and 32 devices is ~100 KiB).
pub const MAX_SESSION_BYTES: usize = 256 * 1024;
/// Largest sealed notice accepted.
pub const MAX_NOTICE_BYTES: usize = 4 * 1024;
/// The key used when the operator set none: the MAC then only catches corruption.
const UNKEYED: &[u8] = b"segue bus: no SEGUE_BUS_KEY set";
/// Version tag of sealed text.
const TAG: &str = "v1";

/// A notice on the bus's event channel: "look again", never the state itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// Session `session` was stored at `version` by `origin`.
    Session {
        /// The writer.
        origin: String,
        /// Session id.
        session: String,
        /// The version stored.
        version: u64,
        /// A prefetch hint the change calls for, for the device (on whichever origin holds it).
        prefetch: Option<PrefetchNeed>,
    },
    /// `origin` found tracks new to the library: rescan now.
    Library {
        /// The finder.
        origin: String,
    },
}

/// Why a value from the bus was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Over the size cap.
    #[error("{0} bytes, over the cap")]
    TooBig(usize),
    /// Not `v1.MAC.JSON`.
    #[error("not sealed bus text")]
    Malformed,
    /// The MAC does not match: forged, corrupt, or sealed with another key.
    #[error("bad MAC (forged, corrupt, or another SEGUE_BUS_KEY)")]
    BadMac,
    /// Sealed right, but not a valid value.
    #[error("invalid content: {0}")]
    Invalid(String),
}

/// Seals and opens bus values under one key.
#[derive(Clone)]
pub struct Sealer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// A sealer with the fleet's key (`None`: the unkeyed fallback).
    pub fn new(key: Option<Vec<u8>>) -> Self {
        Sealer {
            key: key.unwrap_or_else(|| UNKEYED.to_vec()),
        }
    }

    fn mac(&self, name: &str, json: &str) -> HmacSha256 {
        // HMAC takes a key of any length (RFC 2104 2): this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(name.as_bytes());
        mac.update(b"\n");
        mac.update(json.as_bytes());
        mac
    }

    /// `value` as sealed text, bound to `name` (the key or channel it goes to).
    pub fn seal<T: Serialize>(&self, name: &str, value: &T) -> String {
        // These types serialize without failure (no maps with non-string keys).
        let json = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        let mac = self.mac(name, &json).finalize().into_bytes();
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        format!("{TAG}.{hex}.{json}")
    }

    /// Opens sealed `text` read from `name`, at most `cap` bytes.
    pub fn open<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
        text: &[u8],
        cap: usize,
    ) -> Result<T, WireError> {
        if text.len() > cap {
            return Err(WireError::TooBig(text.len()));
        }
        let text = std::str::from_utf8(text).map_err(|_| WireError::Malformed)?;
        let mut parts = text.splitn(3, '.');
        let (Some(TAG), Some(hex), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(WireError::Malformed);
        };
        let mac = decode_hex(hex).ok_or(WireError::Malformed)?;
        self.mac(name, json)
            .verify_slice(&mac)
            .map_err(|_| WireError::BadMac)?;
        serde_json::from_str(json).map_err(|e| WireError::Invalid(e.to_string()))
    }

    /// Opens a sealed session stored under `name`, checked to be session `id`.
    pub fn open_session(&self, name: &str, id: &str, text: &[u8]) -> Result<Session, WireError> {
        let session: Session = self.open(name, text, MAX_SESSION_BYTES)?;
        session.check(id).map_err(WireError::Invalid)?;
        Ok(session)
    }
}

/// Hex to bytes (64 hex digits for a SHA-256 MAC), `None` if not hex.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::control::session::Stamp;

    fn notice() -> Notice {
        Notice::Session {
            origin: "o1".into(),
            session: "abc".into(),
            version: 7,
            prefetch: None,
        }
    }

    #[test]
    fn sealed_values_open_under_the_same_key_and_name_only() {
        let sealer = Sealer::new(Some(b"0123456789abcdef".to_vec()));
        let text = sealer.seal("events", &notice());
        let back: Notice = sealer
            .open("events", text.as_bytes(), MAX_NOTICE_BYTES)
            .unwrap();
        assert_eq!(back, notice());
        let other = Sealer::new(Some(b"another key of 16".to_vec()));
        let r: Result<Notice, _> = other.open("events", text.as_bytes(), MAX_NOTICE_BYTES);
        assert_eq!(r.unwrap_err(), WireError::BadMac);
        let r: Result<Notice, _> = sealer.open("elsewhere", text.as_bytes(), MAX_NOTICE_BYTES);
        assert_eq!(r.unwrap_err(), WireError::BadMac);
    }

    #[test]
    fn forged_oversized_and_malformed_text_is_refused() {
        let sealer = Sealer::new(Some(b"0123456789abcdef".to_vec()));
        let text = sealer.seal("events", &notice());
        let forged = text.replace("\"version\":7", "\"version\":8");
        let r: Result<Notice, _> = sealer.open("events", forged.as_bytes(), MAX_NOTICE_BYTES);
        assert_eq!(r.unwrap_err(), WireError::BadMac);
        let big = "x".repeat(MAX_NOTICE_BYTES + 1);
        let r: Result<Notice, _> = sealer.open("events", big.as_bytes(), MAX_NOTICE_BYTES);
        assert_eq!(r.unwrap_err(), WireError::TooBig(MAX_NOTICE_BYTES + 1));
        for bad in ["", "v1", "v1.zz.{}", "v2.00.{}", "\u{0}\u{1}", "v1..{}"] {
            let r: Result<Notice, _> = sealer.open("events", bad.as_bytes(), MAX_NOTICE_BYTES);
            assert_eq!(r.unwrap_err(), WireError::Malformed, "{bad:?}");
        }
        let r: Result<Notice, _> = sealer.open("events", &[0xff, 0xfe], MAX_NOTICE_BYTES);
        assert_eq!(r.unwrap_err(), WireError::Malformed);
        // Authentic but not a notice.
        let odd = sealer.seal("events", &serde_json::json!({"kind": "nope"}));
        let r: Result<Notice, _> = sealer.open("events", odd.as_bytes(), MAX_NOTICE_BYTES);
        assert!(matches!(r.unwrap_err(), WireError::Invalid(_)));
    }

    #[test]
    fn a_stored_session_must_be_the_one_its_key_names() {
        let sealer = Sealer::new(None);
        let session = Session::new("abc".into(), Stamp::now());
        let text = sealer.seal("k:abc", &session);
        assert_eq!(
            sealer
                .open_session("k:abc", "abc", text.as_bytes())
                .unwrap(),
            session
        );
        let r = sealer.open_session("k:abc", "abd", text.as_bytes());
        assert!(matches!(r.unwrap_err(), WireError::Invalid(_)));
    }
}
