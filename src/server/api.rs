//! The catalog as JSON: `GET /api/tracks?q=&offset=&limit=` and `GET /api/tracks/{id}`.
//!
//! Responses go through [`json_response`] like media files: a content-hash ETag with
//! `Cache-Control: no-cache` (a cache may keep the JSON but must revalidate each use, which costs
//! a 304, so a newly ingested track shows up at once), gzip/br on request, HEAD and ranges.
//! The catalog is read on a blocking thread through one shared connection; SQLite's WAL mode lets
//! it see what a concurrent `segue ingest` commits without reopening.

use std::time::SystemTime;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::control::protocol::PROTOCOL;
use super::error::ApiError;
use super::http::respond::json_response;
use super::view::{Track, TrackList};
use crate::store::is_track_id;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest accepted `limit`.
pub const MAX_LIMIT: u64 = 500;

/// Query parameters of the track list, as text so bad numbers get our own 400 message.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// Search words (prefixes of words of title, artist or album).
    pub q: Option<String>,
    /// Tracks to skip.
    pub offset: Option<String>,
    /// Page size (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub limit: Option<String>,
}

fn number(name: &str, value: Option<&str>, default: u64, max: u64) -> Result<u64, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be a whole number from 0 to {max}"
        ))),
    }
}

/// `GET /api/tracks`.
pub async fn list_tracks(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let offset = number("offset", params.offset.as_deref(), 0, i64::MAX as u64)?;
    let limit = number("limit", params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let q = params.q.unwrap_or_default();
    let signer = state.signer().clone();
    let json = state
        .with_catalog(move |catalog| {
            let page = catalog.search(&q, offset, limit)?;
            let list = TrackList {
                tracks: page
                    .tracks
                    .iter()
                    .map(|r| Track::for_client(r, &signer))
                    .collect(),
                total: page.total,
            };
            Ok(serde_json::to_vec(&list)?)
        })
        .await?;
    Ok(json_response(&method, &headers, json).await)
}

/// `GET /api/tracks/{id}`.
pub async fn get_track(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(ApiError::NotFound);
    };
    if !is_track_id(&id) {
        return Err(ApiError::NotFound);
    }
    let signer = state.signer().clone();
    let json = state
        .with_catalog(move |catalog| {
            let Some(record) = catalog.get(&id)? else {
                return Ok(None);
            };
            Ok(Some(serde_json::to_vec(&Track::for_client(
                &record, &signer,
            ))?))
        })
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_response(&method, &headers, json).await)
}

/// Where the control channel is, as `GET /api/control` tells a player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlEndpoint {
    /// URL of the WebSocket (signed when the server signs URLs).
    pub ws: String,
    /// The subprotocol to offer.
    pub protocol: String,
}

/// `GET /api/control`: the control channel's URL (with a fresh token when URLs are signed).
pub async fn control(State(state): State<AppState>) -> Response {
    let endpoint = ControlEndpoint {
        ws: state.signer().control_url(SystemTime::now()),
        protocol: PROTOCOL.to_string(),
    };
    let mut response = axum::Json(endpoint).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_bounded() {
        assert_eq!(number("limit", None, 50, 500).unwrap(), 50);
        assert_eq!(number("limit", Some("500"), 50, 500).unwrap(), 500);
        for bad in ["501", "-1", "ten", "", "1e3"] {
            let e = number("limit", Some(bad), 50, 500).unwrap_err();
            assert!(
                matches!(e, ApiError::BadRequest(m) if m.contains("limit")),
                "{bad}"
            );
        }
    }
}
