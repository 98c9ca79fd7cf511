//! The format of one disk cache file, and its check: a fixed header, the key, the body.
//!
//! The header holds everything needed to tell a whole, right file from a damaged or misplaced
//! one without trusting its name: magic, format version, key and body lengths, and the blake3 of
//! the body. All integers are little-endian.

use bytes::Bytes;

/// First bytes of every cache file.
const MAGIC: [u8; 8] = *b"SEGUEDC\0";
/// Format version; a file of another version is treated as corrupt (and so replaced).
const VERSION: u32 = 1;
/// Magic (8) + version (4) + key length (4) + body length (8) + blake3 of the body (32).
pub(super) const HEADER_LEN: usize = 56;

/// The header and key that precede `body` in its cache file.
pub(super) fn head(key: &str, key_len: u32, body: &[u8]) -> Vec<u8> {
    let mut head = Vec::with_capacity(HEADER_LEN + key.len());
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&key_len.to_le_bytes());
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    head.extend_from_slice(blake3::hash(body).as_bytes());
    head.extend_from_slice(key.as_bytes());
    head
}

/// Why a cache file was rejected.
#[derive(Debug, thiserror::Error)]
pub(super) enum Defect {
    #[error("{len} bytes, shorter than the header")]
    Short { len: usize },
    #[error("not a segue cache file (bad magic)")]
    Magic,
    #[error("format version {0}, expected {VERSION}")]
    Version(u32),
    #[error("{actual} bytes, the header says {expected}")]
    Length { expected: u64, actual: u64 },
    #[error("stored for another key")]
    Key,
    #[error("body does not match its blake3")]
    Hash,
}

/// Checks a whole cache file against `key`; the body on success (a view of `raw`, no copy).
pub(super) fn verify(key: &str, raw: Vec<u8>) -> Result<Bytes, Defect> {
    let Some(head) = raw.get(..HEADER_LEN) else {
        return Err(Defect::Short { len: raw.len() });
    };
    let field = |at: usize, len: usize| &head[at..at + len];
    if field(0, 8) != MAGIC {
        return Err(Defect::Magic);
    }
    let version = u32::from_le_bytes(array(field(8, 4)));
    if version != VERSION {
        return Err(Defect::Version(version));
    }
    let key_len = u64::from(u32::from_le_bytes(array(field(12, 4))));
    let body_len = u64::from_le_bytes(array(field(16, 8)));
    let hash = blake3::Hash::from_bytes(array(field(24, 32)));
    let expected = (HEADER_LEN as u64)
        .saturating_add(key_len)
        .saturating_add(body_len);
    if expected != raw.len() as u64 {
        return Err(Defect::Length {
            expected,
            actual: raw.len() as u64,
        });
    }
    // Fits: key_len <= raw.len(), checked just above.
    let body_start = HEADER_LEN + key_len as usize;
    if &raw[HEADER_LEN..body_start] != key.as_bytes() {
        return Err(Defect::Key);
    }
    let body = Bytes::from(raw).slice(body_start..);
    // blake3::Hash compares in constant time; not needed here, but harmless.
    if blake3::hash(&body) != hash {
        return Err(Defect::Hash);
    }
    Ok(body)
}

/// Copies a slice of known length into an array; the callers' lengths are literals.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}
