//! `GET /media/{track_id}/{path}`: manifests, init and media segments, cover and waveform, at
//! the URLs the manifests give (their relative URLs resolve under the same prefix).

use std::time::SystemTime;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use super::http::respond::{prepare, respond, select_coding};
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
    let entity = state.files().load(path).await?;
    let (method, headers) = (request.method(), request.headers());
    let coding = select_coding(headers, &entity);
    prepare(&entity, coding).await;
    Ok(respond(method, headers, &entity, coding, SystemTime::now()))
}
