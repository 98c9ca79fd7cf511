//! `GET /media/{track_id}/{path}`: manifests, init and media segments, cover and waveform, at
//! the URLs the manifests give (their relative URLs resolve under the same prefix).
//!
//! Responses of rendition files also tell a CDN what comes next ([`Assist`]), and the CMCD of
//! the request is observed ([`super::cmcd`]); neither changes the body, the validators or the
//! caching headers, which [`respond`] builds first.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use bytes::Bytes;
use quick_cache::sync::Cache;

use super::AppState;
use super::bucket_files::Download;
use super::error::ApiError;
use super::files::cache_control;
use super::http::conditional::EntityTag;
use super::http::encoding::Coding;
use super::http::respond::{Entity, prepare, respond, select_coding};
use super::paths::MediaPath;
use crate::store::layout::{INIT_SEGMENT_FILE, MEDIA_PLAYLIST_FILE, segment_name};

/// `GET /media/{track_id}/{*path}`; anything refused or missing is the same 404.
pub async fn media(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    // The request itself rather than `Method` and `HeaderMap` extractors, which copy them.
    request: Request,
) -> Result<Response, ApiError> {
    // A rejection here is a path that is not UTF-8 once decoded: nothing we could serve.
    let Ok(Path((track_id, rest))) = path else {
        return Err(ApiError::NotFound);
    };
    let path = MediaPath::parse(&track_id, &rest).ok_or(ApiError::NotFound)?;
    let (method, headers) = (request.method(), request.headers());
    let query = request.uri().query();
    state
        .cmcd()
        .observe(&path.track_id, &path.relative, query, headers);
    // The CDN headers once the file is known to exist, so a request for a missing one never
    // costs a catalog query.
    let counts = state.segment_counts();
    if streamable(method, headers, &path)
        && let Some(download) = state.files().arriving(&path).await?
    {
        let mut response = stream(headers, &path, &download);
        counts.assist_of(&state, &path).await.apply(&mut response);
        return Ok(response);
    }
    let entity = state.files().load(path.clone()).await?;
    let coding = select_coding(headers, &entity);
    prepare(&entity, coding).await;
    let mut response = respond(method, headers, &entity, coding, SystemTime::now());
    counts.assist_of(&state, &path).await.apply(&mut response);
    Ok(response)
}

/// Akamai's origin-assist prefetch response header: the path of the object its edge should
/// fetch next (Akamai Adaptive Media Delivery, "Use the origin-assist scheme").
pub const PREFETCH_PATH: HeaderName = HeaderName::from_static("cdn-origin-assist-prefetch-path");

/// What a response of a rendition file tells a CDN about what comes next.
///
/// - An init or media segment names the next media segment of the same rendition in
///   `CDN-Origin-Assist-Prefetch-Path` (none after the last). The value is a path relative to
///   the request (`4.m4s`), which Akamai resolves against the URL the player asked its edge
///   for: so it stays right behind a CDN that maps the origin under another prefix, and keeps
///   the `/t/TOKEN/` of a signed URL without the origin writing the token into it. It is sent
///   whether or not the request carried `CDN-Origin-Assist-Prefetch-Enabled: 1`: it depends on
///   the URL alone, so caches may store it with the bytes without a `Vary`.
/// - A media playlist carries `Link: <init.mp4>; rel=preload, <1.m4s>; rel=preload` (RFC 8288,
///   relative to the playlist's URL as above): a player that loads the playlist fetches those
///   two next, so a CDN that turns preload links into early hints or edge prefetches (Cloudflare,
///   Fastly) starts them at once. Segments get no `Link`: browsers ignore preload links on
///   fetch responses, and the prefetch header above already covers edges. The master playlist
///   and the MPD get none either: they list every rendition and the player picks one, so
///   preloading all would fetch what is never played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assist {
    /// No header.
    Nothing,
    /// `CDN-Origin-Assist-Prefetch-Path` naming media segment `n` (1-based, as named).
    Prefetch(usize),
    /// The media playlist's `Link` preloads.
    Preload,
}

impl Assist {
    /// Adds the headers to `response` if it is a success or a 304 (RFC 9110 15.4.5: a 304
    /// sends the fields a 200 would, so a revalidating cache keeps them); errors get none.
    pub fn apply(self, response: &mut Response) {
        let status = response.status();
        if !(status.is_success() || status == axum::http::StatusCode::NOT_MODIFIED) {
            return;
        }
        let headers = response.headers_mut();
        match self {
            Assist::Nothing => {}
            Assist::Prefetch(n) => {
                if let Ok(value) = HeaderValue::from_str(&segment_name(n - 1)) {
                    headers.insert(PREFETCH_PATH, value);
                }
            }
            Assist::Preload => {
                let link = format!(
                    "<{INIT_SEGMENT_FILE}>; rel=preload; as=fetch; crossorigin, \
                     <{}>; rel=preload; as=fetch; crossorigin",
                    segment_name(0)
                );
                if let Ok(value) = HeaderValue::from_str(&link) {
                    headers.insert(header::LINK, value);
                }
            }
        }
    }
}

/// The number of media segments of each rendition, from the track's catalog record, asked once
/// per track (a rendition directory never changes, so neither does its count). Bounded: a
/// forgotten rendition is asked again.
#[derive(Debug)]
pub struct SegmentCounts {
    counts: Cache<String, usize>,
}

/// Renditions whose segment count is remembered.
const COUNTED_RENDITIONS: usize = 16_384;

impl Default for SegmentCounts {
    fn default() -> Self {
        SegmentCounts {
            counts: Cache::new(COUNTED_RENDITIONS),
        }
    }
}

impl SegmentCounts {
    /// The [`Assist`] of the file at `key` (a [`MediaPath::key`], `track/dir/name`), or `None`
    /// when it depends on a segment count not known yet (then ask [`Self::assist_of`]).
    /// Allocates nothing: the hot path asks it for every cached segment it answers.
    pub fn assist(&self, key: &str) -> Option<Assist> {
        let Some((rendition, name)) = key.rsplit_once('/') else {
            return Some(Assist::Nothing);
        };
        if !rendition.contains('/') {
            // `track/name`: a file of the track directory (playlists, MPD, cover, waveform).
            return Some(Assist::Nothing);
        }
        let next = match name {
            MEDIA_PLAYLIST_FILE => return Some(Assist::Preload),
            INIT_SEGMENT_FILE => 1,
            _ => match name.strip_suffix(".m4s").map(str::parse::<usize>) {
                Some(Ok(n)) if n >= 1 => n + 1,
                _ => return Some(Assist::Nothing),
            },
        };
        let count = self.counts.get(rendition)?;
        Some(match next <= count {
            true => Assist::Prefetch(next),
            false => Assist::Nothing,
        })
    }

    /// The [`Assist`] of `path`, asking the catalog for its track's segment counts if needed
    /// (the record lists every rendition's segments; no file is read, so the file caches and
    /// their counters see nothing); a track the catalog cannot give gets [`Assist::Nothing`].
    pub async fn assist_of(&self, state: &AppState, path: &MediaPath) -> Assist {
        let key = path.key();
        if let Some(assist) = self.assist(&key) {
            return assist;
        }
        let id = path.track_id.clone();
        let Ok(Some(record)) = state.with_catalog(move |c| Ok(c.get(&id)?)).await else {
            return Assist::Nothing;
        };
        for rendition in &record.renditions {
            let key = rendition_key(&path.track_id, &rendition.dir);
            self.counts.insert(key, rendition.segment_sizes.len());
        }
        self.assist(&key).unwrap_or(Assist::Nothing)
    }
}

/// The key of a rendition in [`SegmentCounts`].
fn rendition_key(track_id: &str, dir: &str) -> String {
    format!("{track_id}/{dir}")
}

/// Whether the answer is the whole body as is, so it may be streamed from a bucket as it
/// arrives: a GET with no range and no precondition, of a file that is never compressed
/// (segments, init segments, covers). Anything else is answered from the whole object.
fn streamable(method: &Method, headers: &HeaderMap, path: &MediaPath) -> bool {
    let conditional = [
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ];
    method == Method::GET
        && !path.kind.compressible()
        && !conditional.iter().any(|name| headers.contains_key(name))
}

/// The 200 of a bucket object as it arrives: the headers [`respond`] gives the whole entity
/// (built from the object's head: its content tag, size and date), then the body chunk by
/// chunk. A body cut short ends the stream with an error, which aborts the response.
fn stream(headers: &HeaderMap, path: &MediaPath, download: &Arc<Download>) -> Response {
    let head = &download.head;
    let tag = head.content_tag.clone().unwrap_or_default();
    let stub = Entity::tagged(
        path.kind.content_type(),
        cache_control(path),
        Bytes::new(),
        Some(head.last_modified),
        EntityTag::strong(tag),
    );
    let response = respond(
        &Method::GET,
        headers,
        &stub,
        Coding::Identity,
        SystemTime::now(),
    );
    let (mut parts, _) = response.into_parts();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(head.size));
    Response::from_parts(parts, Body::from_stream(download.chunks()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn each_file_names_what_follows_it() {
        let counts = SegmentCounts::default();
        counts.counts.insert(rendition_key("t", "d"), 3);
        for (key, assist) in [
            ("t/d/init.mp4", Some(Assist::Prefetch(1))),
            ("t/d/1.m4s", Some(Assist::Prefetch(2))),
            ("t/d/2.m4s", Some(Assist::Prefetch(3))),
            ("t/d/3.m4s", Some(Assist::Nothing)),
            ("t/d/0.m4s", Some(Assist::Nothing)),
            ("t/d/x.m4s", Some(Assist::Nothing)),
            ("t/d/media.m3u8", Some(Assist::Preload)),
            ("t/master.m3u8", Some(Assist::Nothing)),
            ("t/cover.jpg", Some(Assist::Nothing)),
            ("t/other/1.m4s", None),
        ] {
            assert_eq!(counts.assist(key), assist, "{key}");
        }
        let headers = |assist: Assist, status: StatusCode| {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            assist.apply(&mut response);
            response.headers().clone()
        };
        let ok = headers(Assist::Prefetch(4), StatusCode::PARTIAL_CONTENT);
        assert_eq!(ok[&PREFETCH_PATH], "4.m4s");
        let not_modified = headers(Assist::Preload, StatusCode::NOT_MODIFIED);
        let link = not_modified[header::LINK].to_str().unwrap();
        assert!(link.starts_with("<init.mp4>; rel=preload") && link.contains("<1.m4s>"));
        assert!(headers(Assist::Prefetch(4), StatusCode::RANGE_NOT_SATISFIABLE).is_empty());
    }
}
