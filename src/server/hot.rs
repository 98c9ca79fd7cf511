//! The hot path: a GET of a segment already in the memory cache is answered before routing.
//!
//! Such requests are nearly all of an origin's traffic, and for them the router's generic
//! machinery cost more than the answer: matching and percent-decoding the path into owned
//! strings, boxing and cloning each layer's service, boxing the handler's future and the
//! response body (about a quarter of the server's CPU per request under wrk, by `perf`). Here
//! the same request is answered by the same parts, without that machinery: the path checks
//! of [`MediaPath::parse`], the cache of [`super::files`], the RFC 9110 answer of
//! [`super::http::respond`], the CORS headers and the request metrics of [`super::edge`], and the same
//! access-log line as tower-http's `TraceLayer`.
//!
//! With signed URLs, it answers `/t/TOKEN/media/…` when the token is valid for that track, as
//! the token guard ([`super::signing::guard`]) would let it through.
//!
//! Anything else goes to the router, which gives the same answer the slow way: a method other
//! than GET, a percent-encoded path, a file not in the cache or not immutable, a coding not
//! yet compressed, and, with signed URLs, any path without a valid token (the guard refuses it).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::http::{Method, Request};
use axum::response::Response;

use super::AppState;
use super::cmcd::CmcdObserver;
use super::files::FileStore;
use super::http::cors::Cors;
use super::http::respond::{respond_from_file, select_coding};
use super::media::SegmentCounts;
use super::metrics::RouteMetrics;
use super::paths::MediaPath;
use super::signing::{SIGNED_PREFIX, Signer, media_scope};
use super::zerocopy::FileRegion;

/// The route template the router gives these requests, for the metrics.
const MEDIA_ROUTE: &str = "/media/{track_id}/{*path}";

/// Answers cached segments before routing (see the module doc).
#[derive(Debug)]
pub struct HotPath {
    files: Arc<FileStore>,
    cors: Cors,
    requests: RouteMetrics,
    signer: Signer,
    cmcd: Arc<CmcdObserver>,
    segment_counts: Arc<SegmentCounts>,
}

impl HotPath {
    /// The hot path of a server.
    pub fn new(state: &AppState) -> Self {
        HotPath {
            files: Arc::clone(state.files()),
            cors: state.inner.cors.clone(),
            requests: RouteMetrics::new(Arc::clone(state.metrics()), MEDIA_ROUTE),
            signer: state.signer().clone(),
            cmcd: Arc::clone(state.cmcd()),
            segment_counts: Arc::clone(state.segment_counts()),
        }
    }

    /// The response to `request` if it is a GET of a cached segment, with the file region its
    /// body may be sent from; `None` sends the request to the router.
    pub fn answer<B>(&self, request: &Request<B>) -> Option<(Response, Option<FileRegion>)> {
        if request.method() != Method::GET {
            return None;
        }
        // With signing on, the path after a token; the token is checked below, once the path
        // names a file this path may answer.
        let (token, media) = match self.signer.enabled() {
            true => {
                let signed = request.uri().path().strip_prefix(SIGNED_PREFIX)?;
                let (token, media) = signed.split_once('/')?;
                (Some(token), media)
            }
            false => (None, request.uri().path().strip_prefix('/')?),
        };
        // Unencoded, `track_id/path` is both what the router would decode the URL to and the
        // file's cache key (`MediaPath::key`).
        let key = media.strip_prefix("media/")?;
        if key.contains('%') {
            return None;
        }
        let (track_id, path) = key.split_once('/')?;
        if !MediaPath::names_immutable_file(track_id, path) {
            return None;
        }
        if let Some(token) = token
            && !self
                .signer
                .verify(token, &media_scope(track_id), SystemTime::now())
        {
            return None;
        }
        // The CDN headers of the answer; a segment count not known yet is read by the router.
        let assist = self.segment_counts.assist(key)?;
        let entity = self.files.cached_at(key)?;
        let headers = request.headers();
        let coding = select_coding(headers, &entity);
        if !entity.encodings.as_ref().is_none_or(|e| e.is_ready(coding)) {
            return None;
        }
        // The span and event of tower-http's TraceLayer as `app` configures it (INFO, the same
        // targets, names and fields), so the access log reads the same whichever path answers.
        let span = tracing::info_span!(
            target: "tower_http::trace::make_span",
            "request",
            method = %request.method(),
            uri = %request.uri(),
            version = ?request.version(),
        );
        let _entered = span.enter();
        let started = Instant::now();
        let (mut response, region) = respond_from_file(
            request.method(),
            headers,
            &entity,
            coding,
            SystemTime::now(),
        );
        assist.apply(&mut response);
        self.cors.decorate(response.headers_mut());
        self.requests.record(&response);
        self.cmcd
            .observe(track_id, path, request.uri().query(), headers);
        tracing::info!(
            target: "tower_http::trace::on_response",
            latency = %format_args!("{} ms", started.elapsed().as_millis()),
            status = i32::from(response.status().as_u16()),
            "finished processing request"
        );
        Some((response, region))
    }
}
