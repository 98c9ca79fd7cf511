//! One static representation ([`Entity`]) turned into the right response for a request: content
//! coding, validators and caching headers, preconditions (304/412), and ranges (206/416).
//! Media files, API JSON and the player page all go through [`respond`], so every rule of RFC
//! 9110 is applied the same way everywhere.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use super::conditional::{self, EntityTag, Precondition, Validators};
use super::encoding::{self, Coding, Effort, Encodings};
use super::range::{self, RangePlan};
use crate::server::zerocopy::{FileRegion, HeldFile};

/// A complete representation held in memory, with its metadata.
#[derive(Debug)]
pub struct Entity {
    /// Media type sent as Content-Type.
    pub content_type: &'static str,
    /// Cache-Control sent with 200, 206 and 304.
    pub cache_control: &'static str,
    /// Strong tag of the identity body (each content coding appends its suffix).
    pub etag: EntityTag,
    /// Modification time, sent as Last-Modified and used by If-Modified-Since.
    pub last_modified: Option<SystemTime>,
    /// The identity body.
    pub body: Bytes,
    /// Compressed forms, for representations that may be compressed (text only).
    pub encodings: Option<Encodings>,
    /// The open file `body` was read from, when the body may be sent from it without a copy.
    pub file: Option<Arc<HeldFile>>,
    /// The identity ETag and the Last-Modified as field values, formatted once: every
    /// response of a hot segment sends them, so they are not re-formatted per request.
    etag_value: Option<HeaderValue>,
    last_modified_value: Option<HeaderValue>,
}

/// Cache-Control of the API's JSON: a cache may keep it but must revalidate each use (a 304),
/// so a newly ingested track shows up at once.
pub const API_CACHE_CONTROL: &str = "no-cache";

/// Hex of the first 128 bits of the BLAKE3 hash of `bytes`: an entity tag that depends on
/// nothing but the content, so it is the same after a restart and on every origin.
pub fn content_tag(bytes: &[u8]) -> EntityTag {
    EntityTag::strong(crate::store::layout::content_tag(bytes))
}

impl Entity {
    /// An entity of `body`, tagged by its content hash.
    pub fn new(
        content_type: &'static str,
        cache_control: &'static str,
        body: Bytes,
        last_modified: Option<SystemTime>,
    ) -> Self {
        let etag = content_tag(&body);
        Self::tagged(content_type, cache_control, body, last_modified, etag)
    }

    /// An entity of `body` whose entity tag is known already (`etag`, which must be the
    /// [`content_tag`] of the body: a bucket object's, read from its metadata).
    pub fn tagged(
        content_type: &'static str,
        cache_control: &'static str,
        body: Bytes,
        last_modified: Option<SystemTime>,
        etag: EntityTag,
    ) -> Self {
        Entity {
            content_type,
            cache_control,
            etag_value: HeaderValue::from_str(&etag.to_header()).ok(),
            last_modified_value: last_modified
                .and_then(|lm| HeaderValue::from_str(&httpdate::fmt_http_date(lm)).ok()),
            etag,
            last_modified,
            body,
            encodings: None,
            file: None,
        }
    }

    /// Notes that `body` is the content of `file` (see [`crate::server::zerocopy`]).
    pub fn sent_from(mut self, file: Option<Arc<HeldFile>>) -> Self {
        self.file = file;
        self
    }

    /// Marks the entity as compressible with gzip and br, compressed with `effort`.
    pub fn compressible(mut self, effort: Effort) -> Self {
        self.encodings = Some(Encodings::new(effort));
        self
    }

    /// Approximate memory held, in bytes: the body, plus room for its compressed forms (which
    /// are made later and are smaller than the body, or not kept).
    pub fn weight(&self) -> u64 {
        let body = self.body.len() as u64;
        let compressed = if self.encodings.is_some() { body } else { 0 };
        body + compressed + 256
    }
}

/// The coding to send `entity` in: identity when it is not compressible or a Range is asked
/// (ranges are served from the identity representation only), else what Accept-Encoding prefers.
pub fn select_coding(headers: &HeaderMap, entity: &Entity) -> Coding {
    if entity.encodings.is_none() || headers.contains_key(header::RANGE) {
        return Coding::Identity;
    }
    encoding::negotiate(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Makes sure the `coding` form of `entity` exists, compressing on a blocking thread if not.
pub async fn prepare(entity: &Arc<Entity>, coding: Coding) {
    let Some(encodings) = &entity.encodings else {
        return;
    };
    if encodings.is_ready(coding) {
        return;
    }
    let entity = Arc::clone(entity);
    let compressed = tokio::task::spawn_blocking(move || {
        if let Some(e) = &entity.encodings {
            e.get(coding, &entity.body);
        }
    });
    if let Err(e) = compressed.await {
        tracing::warn!(error = %e, "compression task failed; compressing inline");
    }
}

fn put(headers: &mut HeaderMap, name: HeaderName, value: impl AsRef<str>) {
    match HeaderValue::from_str(value.as_ref()) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => tracing::error!(%name, "invalid header value not sent"),
    }
}

fn response(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Builds the response to a GET or HEAD of `entity` in `coding` (see [`select_coding`]);
/// `now` is the time the response is generated (its Date). For HEAD the body is stripped later
/// by the router, after Content-Length is set from it, so both methods get the same headers.
pub fn respond(
    method: &Method,
    request: &HeaderMap,
    entity: &Entity,
    coding: Coding,
    now: SystemTime,
) -> Response {
    let (mut response, region) = respond_from_file(method, request, entity, coding, now);
    if let Some(region) = region {
        response.extensions_mut().insert(region);
    }
    response
}

/// [`respond`], with the file region apart rather than in the response's extensions (where
/// [`respond`] puts it for the connection to find): the caller hands it to the connection.
pub fn respond_from_file(
    method: &Method,
    request: &HeaderMap,
    entity: &Entity,
    coding: Coding,
    now: SystemTime,
) -> (Response, Option<FileRegion>) {
    let encoded = entity
        .encodings
        .as_ref()
        .and_then(|e| e.get(coding, &entity.body));
    let (coding, body) = match encoded {
        Some(body) => (coding, body),
        None => (Coding::Identity, entity.body.clone()),
    };
    let suffixed;
    let etag = if coding == Coding::Identity {
        &entity.etag
    } else {
        suffixed = entity.etag.with_suffix(coding.etag_suffix());
        &suffixed
    };
    let validators = Validators {
        etag,
        last_modified: entity.last_modified,
    };

    // Sent with 200, 206 and 304 alike (RFC 9110 15.4.5 for 304).
    let mut h = HeaderMap::with_capacity(12);
    match (&entity.etag_value, coding) {
        (Some(value), Coding::Identity) => drop(h.insert(header::ETAG, value.clone())),
        _ => put(&mut h, header::ETAG, etag.to_header()),
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(entity.cache_control),
    );
    if let Some(lm) = &entity.last_modified_value {
        h.insert(header::LAST_MODIFIED, lm.clone());
    }
    if entity.encodings.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );

    match conditional::evaluate(method, request, validators, now) {
        Precondition::NotModified => {
            return (response(StatusCode::NOT_MODIFIED, h, Bytes::new()), None);
        }
        Precondition::Failed => {
            let failed = response(
                StatusCode::PRECONDITION_FAILED,
                HeaderMap::new(),
                Bytes::new(),
            );
            return (failed, None);
        }
        Precondition::Proceed => {}
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(entity.content_type),
    );
    if let Some(token) = coding.token() {
        put(&mut h, header::CONTENT_ENCODING, token);
    }

    // Range handling is defined for GET only (RFC 9110 14.2); HEAD mirrors GET's headers.
    let ranged = method == Method::GET || method == Method::HEAD;
    let ranges = request.get_all(header::RANGE).iter().collect::<Vec<_>>();
    let plan = match ranges.as_slice() {
        [value] if ranged && conditional::if_range_allows_range(request, validators, now) => value
            .to_str()
            .map_or(RangePlan::Full, |v| range::plan(v, body.len() as u64)),
        _ => RangePlan::Full,
    };
    let len = body.len() as u64;
    // A GET of the identity body, whole or one range, may be sent from the file.
    let from_file = |response: Response| {
        let region = entity
            .file
            .as_ref()
            .filter(|_| method == Method::GET && coding == Coding::Identity)
            .map(|file| FileRegion {
                bytes: entity.body.clone(),
                file: Arc::clone(file),
            });
        (response, region)
    };
    match plan {
        RangePlan::Full => from_file(response(StatusCode::OK, h, body)),
        RangePlan::Unsatisfiable => {
            let mut h416 = HeaderMap::new();
            put(
                &mut h416,
                header::CONTENT_RANGE,
                range::unsatisfied_range(len),
            );
            put(&mut h416, header::ACCEPT_RANGES, "bytes");
            (
                response(StatusCode::RANGE_NOT_SATISFIABLE, h416, Bytes::new()),
                None,
            )
        }
        RangePlan::Single(r) => {
            put(&mut h, header::CONTENT_RANGE, r.content_range(len));
            let part = range::single_part(&body, r);
            from_file(response(StatusCode::PARTIAL_CONTENT, h, part))
        }
        RangePlan::Multiple(rs) => {
            // The content tag is hex, so it never meets the boundary's "segue-byteranges-"
            // prefix by chance in a part's header; in the binary data a 47-character boundary
            // turning up is as likely as a hash collision.
            let boundary = format!("segue-byteranges-{}", etag.opaque());
            let multipart = range::multipart(&body, &rs, entity.content_type, &boundary);
            let media_type = format!("multipart/byteranges; boundary={boundary}");
            put(&mut h, header::CONTENT_TYPE, media_type);
            (response(StatusCode::PARTIAL_CONTENT, h, multipart), None)
        }
    }
}

/// The response for a JSON body of the API (`no-cache`, compressed per request), through
/// [`respond`] like every other body.
pub async fn json_response(method: &Method, headers: &HeaderMap, json: Vec<u8>) -> Response {
    let entity = Entity::new(
        "application/json",
        API_CACHE_CONTROL,
        Bytes::from(json),
        None,
    )
    .compressible(Effort::PerRequest);
    let entity = Arc::new(entity);
    let coding = select_coding(headers, &entity);
    prepare(&entity, coding).await;
    respond(method, headers, &entity, coding, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn entity() -> Entity {
        let lm = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Entity::new(
            "audio/mp4",
            "immutable",
            Bytes::from_static(b"0123456789"),
            Some(lm),
        )
    }

    fn get(pairs: &[(HeaderName, &str)], e: &Entity) -> Response {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(n, HeaderValue::from_str(v).unwrap());
        }
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        respond(&Method::GET, &h, e, select_coding(&h, e), now)
    }

    #[test]
    fn not_modified_repeats_the_caching_headers() {
        let e = entity();
        let etag = e.etag.to_header();
        let r = get(&[(header::IF_NONE_MATCH, &etag)], &e);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        for name in [header::ETAG, header::CACHE_CONTROL, header::LAST_MODIFIED] {
            assert!(r.headers().contains_key(&name), "{name}");
        }
        assert!(!r.headers().contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn ranges_become_206_and_416() {
        let e = entity();
        let r = get(&[(header::RANGE, "bytes=-3")], &e);
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes 7-9/10");
        let r = get(&[(header::RANGE, "bytes=10-")], &e);
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
        let r = get(
            &[(header::RANGE, "bytes=0-1"), (header::RANGE, "bytes=2-3")],
            &e,
        );
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "two Range fields are invalid: ignored"
        );
        let r = get(
            &[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"old\"")],
            &e,
        );
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn compressed_representations_have_their_own_tag_and_vary() {
        let body = Bytes::from("#EXTM3U\n".repeat(100));
        let e = Entity::new("application/vnd.apple.mpegurl", "x", body, None)
            .compressible(Effort::Once);
        let r = get(&[(header::ACCEPT_ENCODING, "gzip")], &e);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::VARY], "Accept-Encoding");
        let tag = r.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(tag, e.etag.with_suffix("-gz").to_header());
        // The identity tag does not validate the gzip representation, and vice versa.
        let r = get(
            &[
                (header::ACCEPT_ENCODING, "gzip"),
                (header::IF_NONE_MATCH, &tag),
            ],
            &e,
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = get(&[(header::IF_NONE_MATCH, &tag)], &e);
        assert_eq!(r.status(), StatusCode::OK);
        // A Range gets the identity representation.
        let r = get(
            &[
                (header::ACCEPT_ENCODING, "br"),
                (header::RANGE, "bytes=0-0"),
            ],
            &e,
        );
        assert!(!r.headers().contains_key(header::CONTENT_ENCODING));
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    }
}
