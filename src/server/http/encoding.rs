//! Content codings (RFC 9110 8.4, 12.5.3): negotiate gzip or br from Accept-Encoding, and
//! compress a representation at most once per coding.
//!
//! Why not tower-http's `CompressionLayer`: it compresses every response as it streams, so a
//! playlist fetched a thousand times is compressed a thousand times, where an immutable one is
//! compressed here once and kept, in each coding, in the hot-file cache with its identity body.
//! It keeps the identity `ETag` on the compressed body, but a strong tag must differ per content
//! coding (8.8.3), or a 304 or an If-Range would mix the two representations; ours carry a
//! suffix per coding. It drops `Content-Length` and `Accept-Ranges`, and would bring
//! async-compression with it. Negotiation is the q-value rule of 12.5.3, a few lines; the
//! compression itself is the `flate2` and `brotli` crates.
//!
//! Only text (playlists, MPDs, JSON) is ever compressed; segments are already AAC and would not
//! shrink. Negotiation takes the highest q-value among `br` and `gzip` (an absent coding gets
//! the q of `*`, else 0; `br` wins ties as it is smaller), and keeps identity when the client
//! prefers it explicitly, refuses both, or sent no Accept-Encoding at all. A compressed body that
//! is not smaller than the identity one is not used.

use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;

/// A content coding the server can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// No content coding.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// Brotli (RFC 7932).
    Br,
}

impl Coding {
    /// The Content-Encoding token, `None` for identity.
    pub fn token(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some("gzip"),
            Coding::Br => Some("br"),
        }
    }

    /// What is appended to the identity entity tag to name this representation.
    pub fn etag_suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Gzip => "-gz",
            Coding::Br => "-br",
        }
    }
}

/// A q-value in thousandths (RFC 9110 12.4.2: at most three decimals, 0..=1); `None` if invalid.
fn qvalue(text: &str) -> Option<u16> {
    let text = text.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac),
        "1" if frac == 0 => Some(1000),
        _ => None,
    }
}

/// Chooses the coding of the response from an Accept-Encoding value (`None` if absent).
pub fn negotiate(accept_encoding: Option<&str>) -> Coding {
    let Some(value) = accept_encoding else {
        return Coding::Identity;
    };
    let (mut br, mut gzip, mut identity, mut any) = (None, None, None, None);
    for item in value.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = Some(1000);
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = qvalue(v);
            }
        }
        // An unparsable q-value makes the element unusable: treat it as "not acceptable".
        let q = q.unwrap_or(0);
        match name.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "identity" => identity = Some(q),
            "*" => any = Some(q),
            _ => {}
        }
    }
    let br = br.or(any).unwrap_or(0);
    let gzip = gzip.or(any).unwrap_or(0);
    let (best, q) = if br >= gzip {
        (Coding::Br, br)
    } else {
        (Coding::Gzip, gzip)
    };
    if q == 0 || identity.is_some_and(|i| i > q) {
        Coding::Identity
    } else {
        best
    }
}

/// How hard to compress: once for a representation that is kept, or fast for one per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    /// Best compression: the result is cached and served many times (manifests).
    Once,
    /// Quick compression for a body made for one response (API JSON).
    PerRequest,
}

/// Compresses `body` with `coding` (identity returns it as is).
pub fn compress(body: &[u8], coding: Coding, effort: Effort) -> std::io::Result<Vec<u8>> {
    match coding {
        Coding::Identity => Ok(body.to_vec()),
        Coding::Gzip => {
            let level = match effort {
                Effort::Once => 9,
                Effort::PerRequest => 6,
            };
            let mut enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            enc.write_all(body)?;
            enc.finish()
        }
        Coding::Br => {
            let quality = match effort {
                Effort::Once => 11,
                Effort::PerRequest => 5,
            };
            let mut enc = brotli::CompressorWriter::new(Vec::new(), 4096, quality, 22);
            enc.write_all(body)?;
            enc.flush()?;
            Ok(enc.into_inner())
        }
    }
}

/// The compressed forms of one representation, each made on first use and then kept.
#[derive(Debug)]
pub struct Encodings {
    effort: Effort,
    gzip: OnceLock<Option<Bytes>>,
    br: OnceLock<Option<Bytes>>,
}

impl Encodings {
    /// No compressed form yet; they will be made with `effort`.
    pub fn new(effort: Effort) -> Self {
        Encodings {
            effort,
            gzip: OnceLock::new(),
            br: OnceLock::new(),
        }
    }

    fn slot(&self, coding: Coding) -> Option<&OnceLock<Option<Bytes>>> {
        match coding {
            Coding::Identity => None,
            Coding::Gzip => Some(&self.gzip),
            Coding::Br => Some(&self.br),
        }
    }

    /// Whether `coding` of this representation is known without compressing anything.
    pub fn is_ready(&self, coding: Coding) -> bool {
        self.slot(coding).is_none_or(|s| s.get().is_some())
    }

    /// The body in `coding`, compressing `identity` on first use (CPU work: call
    /// [`Encodings::is_ready`] first from async code). `None` for identity, or when compression
    /// failed or would not make the body smaller.
    pub fn get(&self, coding: Coding, identity: &Bytes) -> Option<Bytes> {
        let slot = self.slot(coding)?;
        slot.get_or_init(|| match compress(identity, coding, self.effort) {
            Ok(out) if out.len() < identity.len() => Some(Bytes::from(out)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, ?coding, "compression failed; sending identity");
                None
            }
        })
        .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn negotiation_honours_q_values() {
        let n = |v: &str| negotiate(Some(v));
        assert_eq!(negotiate(None), Coding::Identity);
        assert_eq!(n(""), Coding::Identity);
        assert_eq!(n("gzip, deflate, br"), Coding::Br);
        assert_eq!(n("gzip"), Coding::Gzip);
        assert_eq!(n("GZIP;Q=0.8, br;q=0.5"), Coding::Gzip);
        assert_eq!(n("br;q=0, gzip;q=0.001"), Coding::Gzip);
        assert_eq!(n("br;q=0, gzip;q=0"), Coding::Identity);
        assert_eq!(n("*"), Coding::Br);
        assert_eq!(n("*;q=0.5, br;q=0"), Coding::Gzip);
        assert_eq!(
            n("gzip;q=0.5, identity"),
            Coding::Identity,
            "identity preferred"
        );
        assert_eq!(
            n("deflate, identity;q=0"),
            Coding::Identity,
            "nothing better to send"
        );
        assert_eq!(n("x-gzip"), Coding::Gzip);
        assert_eq!(
            n("br;q=1.5, gzip;q=0.2"),
            Coding::Gzip,
            "invalid q is not acceptable"
        );
        assert_eq!(n("br;q=0.1234"), Coding::Identity);
    }

    #[test]
    fn q_values_parse_per_rfc_9110_12_4_2() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0."), Some(0));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue("2"), None);
        assert_eq!(qvalue("-0"), None);
    }

    #[test]
    fn compression_round_trips_and_is_made_once() {
        let text = Bytes::from("#EXTINF:3.993832,\nsegment.m4s\n".repeat(50));
        let enc = Encodings::new(Effort::Once);
        assert!(!enc.is_ready(Coding::Gzip) && enc.is_ready(Coding::Identity));
        let gz = enc.get(Coding::Gzip, &text).unwrap();
        assert!(enc.is_ready(Coding::Gzip));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, text);
        let br = enc.get(Coding::Br, &text).unwrap();
        let mut back = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, text);
        // Same bytes again: the kept copy, not a new compression.
        assert_eq!(enc.get(Coding::Br, &text).unwrap().as_ptr(), br.as_ptr());
        assert_eq!(enc.get(Coding::Identity, &text), None);
    }

    #[test]
    fn incompressible_bodies_stay_identity() {
        let tiny = Bytes::from_static(b"{}");
        assert_eq!(
            Encodings::new(Effort::PerRequest).get(Coding::Gzip, &tiny),
            None
        );
    }
}
