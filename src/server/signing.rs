//! Signed URLs (`--signing-key`): media and the control channel only for holders of a token.
//!
//! A token is `EXPIRY.SIG`: the Unix time after which it is refused, and the hex HMAC-SHA256
//! (RFC 2104) of `EXPIRY` and a path prefix (the scope) under the server's key. It travels in the
//! path, `/t/EXPIRY.SIG/media/ID/master.m3u8`, not in the query: a playlist's relative URIs
//! (`aac-lc-128k.3f…/media.m3u8`, `1.m4s`) and a DASH SegmentTemplate resolve against the
//! playlist's own URL, so every player carries the token to every file of the track without any
//! client-side change, while a query string would be dropped (RFC 3986 5.2).
//!
//! Scopes: `/media/ID/` (every file of one track) and `/ws` (the control channel). Expiries are
//! rounded up to a whole [`EXPIRY_STEP`], so every token of one track issued in the same step is
//! the same string: a CDN keyed on the full path still shares its cache between listeners. (A
//! CDN that can rewrite its cache key should key on the path after the token; see README.)
//!
//! The key comes from the operator; nothing about it, or about why a token failed, reaches the
//! client: every refusal is the same 403.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::ApiError;
use super::metrics::Metrics;
use crate::store::is_track_id;

type HmacSha256 = Hmac<Sha256>;

/// Path prefix of signed URLs.
pub const SIGNED_PREFIX: &str = "/t/";
/// Granularity of expiry times.
pub const EXPIRY_STEP: Duration = Duration::from_secs(3600);

/// Signs and checks tokens; without a key it signs nothing and lets everything through.
#[derive(Clone)]
pub struct Signer {
    key: Option<Vec<u8>>,
    ttl: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Signer")
            .field("enabled", &self.key.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Seconds since the Unix epoch.
fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Signer {
    /// A signer with `key` (none: signing off) whose tokens live at least `ttl`.
    pub fn new(key: Option<Vec<u8>>, ttl: Duration) -> Self {
        Signer { key, ttl }
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    fn mac(&self, key: &[u8], expiry: u64, scope: &str) -> HmacSha256 {
        // HMAC accepts keys of any length (RFC 2104 2), so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        mac.update(expiry.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(scope.as_bytes());
        mac
    }

    /// A token for `scope` valid from `now` for at least the TTL.
    pub fn token(&self, scope: &str, now: SystemTime) -> Option<String> {
        let key = self.key.as_deref()?;
        let step = EXPIRY_STEP.as_secs();
        let expiry = (unix(now) + self.ttl.as_secs()).div_ceil(step) * step;
        let sig = self.mac(key, expiry, scope).finalize().into_bytes();
        let hex: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("{expiry}.{hex}"))
    }

    /// Whether `token` is a valid, unexpired token for `scope` (constant-time comparison).
    pub fn verify(&self, token: &str, scope: &str, now: SystemTime) -> bool {
        let Some(key) = self.key.as_deref() else {
            return true;
        };
        let Some((expiry, sig)) = token.split_once('.') else {
            return false;
        };
        let (Ok(expiry), Some(sig)) = (expiry.parse::<u64>(), decode_hex(sig)) else {
            return false;
        };
        expiry >= unix(now) && self.mac(key, expiry, scope).verify_slice(&sig).is_ok()
    }

    /// The URL prefix of track `id`'s files: `/media/ID` or `/t/TOKEN/media/ID`.
    pub fn media_base(&self, id: &str, now: SystemTime) -> String {
        match self.token(&media_scope(id), now) {
            Some(token) => format!("{SIGNED_PREFIX}{token}/media/{id}"),
            None => format!("/media/{id}"),
        }
    }

    /// The URL of the control channel: `/ws` or `/t/TOKEN/ws`.
    pub fn control_url(&self, now: SystemTime) -> String {
        match self.token("/ws", now) {
            Some(token) => format!("{SIGNED_PREFIX}{token}/ws"),
            None => "/ws".to_string(),
        }
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The scope a path (after the token) belongs to, if it is one that can be signed.
fn scope_of(path: &str) -> Option<String> {
    if path == "/ws" {
        return Some("/ws".into());
    }
    let rest = path.strip_prefix("/media/")?;
    let (id, _) = rest.split_once('/')?;
    is_track_id(id).then(|| media_scope(id))
}

/// The scope of a token for track `id`'s files.
pub fn media_scope(id: &str) -> String {
    format!("/media/{id}/")
}

/// The route label of the requests the guard answers itself, in the request metrics.
pub const GUARD_ROUTE: &str = "token guard";

/// Middleware: with signing on, `/media/…` and `/ws` need a token; `/t/TOKEN/…` is checked and
/// routed as the path after the token. Without a key, `/t/…` is not found and the rest passes.
/// The answers it gives itself are counted in `metrics` under [`GUARD_ROUTE`] (the routes
/// count the rest).
pub async fn guard(
    State((signer, metrics)): State<(Signer, Arc<Metrics>)>,
    request: Request,
    next: Next,
) -> Response {
    let head = request.method() == Method::HEAD;
    match check(&signer, request) {
        Ok(request) => next.run(request).await,
        Err(error) => {
            let refusal = error.into_response();
            metrics.record_request(GUARD_ROUTE, &refusal, head);
            refusal
        }
    }
}

/// The request to route (its path the one after a valid token), or why it is refused.
fn check(signer: &Signer, mut request: Request) -> Result<Request, ApiError> {
    let path = request.uri().path();
    let forbidden = || ApiError::Forbidden("a valid token is required".into());
    if let Some(signed) = path.strip_prefix(SIGNED_PREFIX) {
        if !signer.enabled() {
            return Err(ApiError::NotFound);
        }
        let Some((token, rest)) = signed.split_once('/') else {
            return Err(forbidden());
        };
        let inner = format!("/{rest}");
        let ok =
            scope_of(&inner).is_some_and(|scope| signer.verify(token, &scope, SystemTime::now()));
        if !ok {
            return Err(forbidden());
        }
        let uri = match request.uri().query() {
            Some(q) => format!("{inner}?{q}"),
            None => inner,
        };
        match uri.parse::<Uri>() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return Err(ApiError::NotFound),
        }
        return Ok(request);
    }
    if signer.enabled() && (path.starts_with("/media/") || path == "/ws") {
        return Err(forbidden());
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabb";

    fn signer() -> Signer {
        Signer::new(Some(b"secret key".to_vec()), Duration::from_secs(7200))
    }

    #[test]
    fn tokens_verify_for_their_scope_until_they_expire() {
        let s = signer();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_100);
        let scope = format!("/media/{ID}/");
        let token = s.token(&scope, now).unwrap();
        assert!(s.verify(&token, &scope, now));
        assert!(!s.verify(&token, "/media/ffffffffffffffffffffffff/", now));
        assert!(!s.verify(&token, "/ws", now));
        // Valid at least the TTL, at most the TTL plus one step.
        assert!(s.verify(&token, &scope, now + Duration::from_secs(7200)));
        assert!(!s.verify(&token, &scope, now + Duration::from_secs(7200 + 3601)));
        // Same step, same token: CDN-friendly.
        assert_eq!(
            s.token(&scope, now + Duration::from_secs(1)).unwrap(),
            token
        );
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let s = signer();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_100);
        let scope = format!("/media/{ID}/");
        let token = s.token(&scope, now).unwrap();
        let (expiry, sig) = token.split_once('.').unwrap();
        let later = expiry.parse::<u64>().unwrap() + 86_400;
        for bad in [
            format!("{later}.{sig}"),
            format!("{expiry}.{}", "0".repeat(64)),
            format!("{expiry}.{}", &sig[..62]),
            format!("{expiry}{sig}"),
            "".into(),
            ".".into(),
            format!("-1.{sig}"),
        ] {
            assert!(!s.verify(&bad, &scope, now), "{bad}");
        }
        let other = Signer::new(Some(b"other key".to_vec()), Duration::from_secs(7200));
        assert!(!other.verify(&token, &scope, now));
    }

    #[test]
    fn scopes_cover_one_track_or_the_control_channel() {
        assert_eq!(
            scope_of(&format!("/media/{ID}/a.1/1.m4s")).unwrap(),
            format!("/media/{ID}/")
        );
        assert_eq!(scope_of("/ws").unwrap(), "/ws");
        assert_eq!(scope_of("/api/tracks"), None);
        assert_eq!(scope_of("/media/../x"), None);
        let off = Signer::new(None, Duration::ZERO);
        assert_eq!(
            off.media_base(ID, SystemTime::now()),
            format!("/media/{ID}")
        );
        assert_eq!(off.control_url(SystemTime::now()), "/ws");
    }
}
