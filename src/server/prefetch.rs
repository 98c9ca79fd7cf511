//! The prefetch flow: which files to fetch so a track starts at once, and warming the server's
//! hot-file cache with them. One flow ([`hints`]: catalog -> hint -> sizes -> warm) serves both
//! `GET /api/prefetch` (here) and the control channel's `prefetch` message.
//!
//! The hint itself is built by [`view::make_hint`](super::view::make_hint), a pure function of
//! the track record. The server loads the same files into its hot-file cache, so the fetch that
//! follows is served from memory.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::files::FileStore;
use super::http::respond::json_response;
use super::paths::MediaPath;
use super::view::{DEFAULT_SECONDS, HintRequest, MAX_SECONDS, PrefetchHint, make_hint};
use crate::store::is_track_id;

/// Most tracks in one `?tracks=` request.
pub const MAX_TRACKS: usize = 20;

/// The hints for the tracks `ids` (in order), their URLs signed when the server signs URLs, with
/// the init sizes the records lack filled in; their files are then loaded into the hot-file
/// cache in the background. A missing track is [`ApiError::NotFound`], a hint that cannot be
/// made (no such rendition, no media) is [`ApiError::BadRequest`] with the reason.
pub async fn hints(
    state: &AppState,
    ids: Vec<String>,
    request: HintRequest,
) -> Result<Vec<PrefetchHint>, ApiError> {
    let signer = state.signer().clone();
    let mut hints = state
        .with_catalog(move |catalog| {
            let mut hints = Vec::with_capacity(ids.len());
            for id in &ids {
                let Some(record) = catalog.get(id)? else {
                    return Ok(Err(ApiError::NotFound));
                };
                let base = signer.media_base(id, SystemTime::now());
                match make_hint(&record, &base, &request) {
                    Ok(hint) => hints.push(hint),
                    Err(e) => return Ok(Err(ApiError::BadRequest(e.to_string()))),
                }
            }
            Ok(Ok(hints))
        })
        .await??;
    fill_init_sizes(state.files(), &mut hints).await;
    warm(state.files(), &hints);
    Ok(hints)
}

/// Fills in init sizes that the record does not know (tracks ingested before the record kept
/// them) by loading the init segment, which the warm-up would load anyway.
async fn fill_init_sizes(files: &Arc<FileStore>, hints: &mut [PrefetchHint]) {
    for hint in hints.iter_mut().filter(|h| h.init.bytes == 0) {
        let Some(path) = media_path(&hint.track, &hint.init.url) else {
            continue;
        };
        if let Ok(entity) = files.load(path).await {
            hint.init.bytes = entity.body.len() as u64;
        }
    }
}

/// Loads every file of `hints` into the hot-file cache, in the background; failures are only
/// logged (the client's own fetch will report them).
fn warm(files: &Arc<FileStore>, hints: &[PrefetchHint]) {
    let paths: Vec<MediaPath> = hints
        .iter()
        .flat_map(|hint| hint.urls().filter_map(|url| media_path(&hint.track, url)))
        .collect();
    let files = Arc::clone(files);
    tokio::spawn(async move {
        for path in paths {
            if let Err(e) = files.load(path.clone()).await {
                tracing::debug!(file = %path.key(), error = %e, "prefetch warm-up failed");
            }
        }
    });
}

/// The file a hint's URL names (plain or signed: the part after `/media/TRACK/`).
fn media_path(track: &str, url: &str) -> Option<MediaPath> {
    let (_, relative) = url.split_once(&format!("/media/{track}/"))?;
    MediaPath::parse(track, relative)
}

/// Query parameters of `GET /api/prefetch`, as text so bad values get our own 400 message.
#[derive(Debug, Default, Deserialize)]
pub struct PrefetchParams {
    /// One track id.
    pub track: Option<String>,
    /// Several track ids, comma-separated (a queue).
    pub tracks: Option<String>,
    /// Rendition id.
    pub rendition: Option<String>,
    /// Measured bandwidth in bit/s.
    pub bandwidth: Option<String>,
    /// Start position in seconds.
    pub from: Option<String>,
    /// Seconds to cover.
    pub seconds: Option<String>,
}

/// The answer of `GET /api/prefetch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefetchResponse {
    /// One hint per requested track, in request order.
    pub hints: Vec<PrefetchHint>,
}

fn seconds_param(name: &str, value: Option<&str>, default: f64) -> Result<f64, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be a number of seconds, 0 or more"
        ))),
    }
}

/// Validates the parameters into track ids and a request.
fn parse_params(params: PrefetchParams) -> Result<(Vec<String>, HintRequest), ApiError> {
    let ids: Vec<String> = match (params.track, params.tracks) {
        (Some(one), None) => vec![one],
        (None, Some(many)) => many.split(',').map(str::to_string).collect(),
        _ => {
            return Err(ApiError::BadRequest(
                "give either track=ID or tracks=ID,ID,...".into(),
            ));
        }
    };
    if ids.len() > MAX_TRACKS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_TRACKS} tracks per request"
        )));
    }
    if let Some(bad) = ids.iter().find(|id| !is_track_id(id)) {
        return Err(ApiError::BadRequest(format!(
            "{:?} is not a track id",
            bad.chars().take(64).collect::<String>()
        )));
    }
    let bandwidth = match params.bandwidth.as_deref().map(str::trim) {
        None => None,
        Some(b) => Some(b.parse::<u64>().map_err(|_| {
            ApiError::BadRequest("bandwidth must be a whole number of bit/s".into())
        })?),
    };
    let request = HintRequest {
        rendition: params.rendition,
        bandwidth,
        from: seconds_param("from", params.from.as_deref(), 0.0)?,
        seconds: seconds_param("seconds", params.seconds.as_deref(), DEFAULT_SECONDS)?
            .min(MAX_SECONDS),
    };
    Ok((ids, request))
}

/// `GET /api/prefetch`.
pub async fn prefetch(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<PrefetchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let (ids, request) = parse_params(params)?;
    let hints = hints(&state, ids, request).await?;
    let links: Vec<HeaderValue> = hints
        .iter()
        .flat_map(PrefetchHint::urls)
        .filter_map(|url| {
            HeaderValue::from_str(&format!("<{url}>; rel=preload; as=fetch; crossorigin")).ok()
        })
        .collect();
    let json = serde_json::to_vec(&PrefetchResponse { hints }).map_err(ApiError::internal)?;
    let mut response = json_response(&method, &headers, json).await;
    for link in links {
        response.headers_mut().append(header::LINK, link);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_validated_with_a_message() {
        let bad = |p: PrefetchParams| match parse_params(p) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        };
        let id = "00112233445566778899aabb".to_string();
        assert!(bad(PrefetchParams::default()).contains("track=ID"));
        assert!(
            bad(PrefetchParams {
                track: Some("../etc".into()),
                ..Default::default()
            })
            .contains("not a track id")
        );
        assert!(
            bad(PrefetchParams {
                tracks: Some(vec![id.clone(); 21].join(",")),
                ..Default::default()
            })
            .contains("at most 20")
        );
        for from in ["-1", "NaN", "inf", "x"] {
            assert!(
                bad(PrefetchParams {
                    track: Some(id.clone()),
                    from: Some(from.into()),
                    ..Default::default()
                })
                .contains("from"),
                "{from}"
            );
        }
        let (ids, req) = parse_params(PrefetchParams {
            tracks: Some(format!("{id},{id}")),
            bandwidth: Some("800000".into()),
            seconds: Some("100".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(req.bandwidth, Some(800_000));
        assert_eq!(req.seconds, MAX_SECONDS);
    }
}
