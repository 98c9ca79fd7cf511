//! CORS (Fetch standard, "CORS protocol"), so a player on another origin can fetch the media.
//!
//! Why not tower-http's `CorsLayer`: the same headers must come from two places, the router's
//! per-route layer (`server/edge.rs`, which also counts metrics, in one allocation-free
//! future) and the hot path (`server/hot.rs`), which answers cached segments without any tower
//! service; `CorsLayer` only exists as a service (and builds a `HeaderMap` per request),
//! so the hot path would need a second copy of the policy that could drift from the first. It
//! has no `Timing-Allow-Origin`, which a cross-origin player needs to measure its bandwidth, and
//! its default `Vary` (Origin and the preflight request headers; `.vary([])` removes it) would
//! split a CDN's cache of immutable segments by origin for no gain: the allowed origin is one
//! fixed value, so no response depends on the request's `Origin`. What is left is three headers
//! and a 204 preflight, below.
//!
//! Every response gets `Access-Control-Allow-Origin`, `Timing-Allow-Origin` (the same origin) and
//! `Access-Control-Expose-Headers` (listed by name: browsers do not expand `*` for Content-Range
//! and friends on every engine, and never for credentialed requests). Any OPTIONS request is answered here with 204, the methods and
//! request headers a player needs (Range and the conditional ones), and a max-age so browsers
//! cache the preflight.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Methods allowed everywhere.
pub const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";
/// Request headers a cross-origin player may send: the conditional and range fields, and the
/// four CMCD fields (CTA-5004 2.1) of players in header mode, whose preflight would otherwise
/// fail and stop playback ([`crate::server::cmcd`] reads them).
pub const ALLOW_HEADERS: &str = "Range, If-None-Match, If-Modified-Since, If-Range, \
    CMCD-Request, CMCD-Object, CMCD-Status, CMCD-Session";
/// Response headers a cross-origin script may read.
pub const EXPOSE_HEADERS: &str = "Content-Length, Content-Range, ETag, Accept-Ranges, Date";
/// `Timing-Allow-Origin` (W3C Resource Timing), not among `http`'s constants.
const TIMING_ALLOW_ORIGIN: header::HeaderName =
    header::HeaderName::from_static("timing-allow-origin");
/// How long a browser may cache a preflight answer, in seconds.
pub const MAX_AGE_SECONDS: u32 = 86_400;

/// The CORS policy: the one allowed origin.
#[derive(Debug, Clone)]
pub struct Cors {
    allow_origin: HeaderValue,
}

impl Cors {
    /// A policy allowing `origin` (`*` or one serialized origin, validated by the config).
    pub fn new(allow_origin: HeaderValue) -> Self {
        Cors { allow_origin }
    }

    /// Adds the CORS headers of a response that is not a preflight.
    pub fn decorate(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin.clone(),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        // Resource Timing (transfer sizes and times) for the same origins: what a player on
        // another origin measures its bandwidth with.
        headers.insert(TIMING_ALLOW_ORIGIN, self.allow_origin.clone());
    }

    /// The answer to a preflight (any OPTIONS request).
    pub fn preflight(&self) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin.clone(),
        );
        let stat = HeaderValue::from_static;
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, stat(ALLOW_METHODS));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, stat(ALLOW_HEADERS));
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(MAX_AGE_SECONDS),
        );
        headers.insert(header::ALLOW, stat(ALLOW_METHODS));
        response
    }
}

/// Middleware: answers OPTIONS, adds the CORS headers to every other response.
pub async fn cors(State(policy): State<Cors>, request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return policy.preflight();
    }
    let mut response = next.run(request).await;
    policy.decorate(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_allows_what_a_player_sends() {
        let r = Cors::new(HeaderValue::from_static("https://app.example")).preflight();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let h = r.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("Range")
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "86400");
        assert!(!h.contains_key(header::VARY));
    }

    #[test]
    fn responses_expose_headers_by_name() {
        let mut h = HeaderMap::new();
        Cors::new(HeaderValue::from_static("*")).decorate(&mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let exposed = h[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap();
        assert!(!exposed.contains('*') && exposed.contains("Content-Range"));
    }
}
