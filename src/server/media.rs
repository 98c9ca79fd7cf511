//! `GET /media/{track_id}/{path}`: manifests, init and media segments, cover and waveform, at
//! the URLs the manifests give (their relative URLs resolve under the same prefix).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use bytes::Bytes;

use super::AppState;
use super::bucket_files::Download;
use super::error::ApiError;
use super::files::cache_control;
use super::http::conditional::EntityTag;
use super::http::encoding::Coding;
use super::http::respond::{Entity, prepare, respond, select_coding};
use super::paths::MediaPath;

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
    if streamable(method, headers, &path)
        && let Some(download) = state.files().arriving(&path).await?
    {
        return Ok(stream(headers, &path, &download));
    }
    let entity = state.files().load(path).await?;
    let coding = select_coding(headers, &entity);
    prepare(&entity, coding).await;
    Ok(respond(method, headers, &entity, coding, SystemTime::now()))
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
