//! Prefetch hints: which files to fetch so a track starts at once (`GET /api/prefetch`, and the
//! control channel's `prefetch` message).
//!
//! A hint names one rendition, its init segment and the media segments that overlap the first
//! few seconds from a start position, with their sizes, so a player can fetch them in parallel
//! before it needs them (or the moment it does, without reading a playlist first). The server
//! loads the same files into its hot-file cache, so the fetch that follows is served from memory.
//!
//! Positions are track time (seconds of real audio, priming excluded); segment times in the hint
//! are media-timeline seconds (priming included), as in the playlists. All the arithmetic is in
//! samples at the track's rate.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::json_response;
use super::error::ApiError;
use super::files::FileStore;
use super::paths::MediaPath;
use crate::catalog::{RenditionRecord, TrackRecord};
use crate::store::is_track_id;
use crate::units::Ticks;

/// Seconds of audio a hint covers when the request does not say.
pub const DEFAULT_SECONDS: f64 = 3.0;
/// Most seconds a hint may cover.
pub const MAX_SECONDS: f64 = 30.0;
/// Most tracks in one `?tracks=` request.
pub const MAX_TRACKS: usize = 20;
/// Share of the measured bandwidth a rendition's peak bitrate may use.
pub const BANDWIDTH_SHARE: f64 = 0.5;

/// What to fetch to start one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefetchHint {
    /// Track id.
    pub track: String,
    /// Rendition id.
    pub rendition: String,
    /// RFC 6381 codec string of the rendition.
    pub codec: String,
    /// Start position the hint was made for, in track seconds.
    pub from: f64,
    /// The init segment.
    pub init: HintedFile,
    /// The media segments to fetch, in order.
    pub segments: Vec<HintedSegment>,
}

/// A file of a hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintedFile {
    /// Its URL on this server.
    pub url: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A media segment of a hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HintedSegment {
    /// Its URL on this server.
    pub url: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its 1-based number (`$Number$`, the N of `N.m4s`).
    pub number: u64,
    /// Media-timeline start, in seconds.
    pub start: f64,
    /// Duration in seconds.
    pub duration: f64,
}

/// What a hint is asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HintRequest {
    /// A rendition id to use.
    pub rendition: Option<String>,
    /// The client's measured bandwidth in bit/s, to choose a rendition.
    pub bandwidth: Option<u64>,
    /// Start position in track seconds.
    pub from: f64,
    /// Seconds of audio to cover from `from`.
    pub seconds: f64,
}

/// Why a hint cannot be made; the message is written for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HintError {
    /// The track has no rendition of that id.
    #[error("track {track} has no rendition {rendition:?}")]
    NoSuchRendition {
        /// Track id.
        track: String,
        /// The id asked for.
        rendition: String,
    },
    /// The track record lists no rendition or no segment (a damaged record).
    #[error("track {0} has no media")]
    NoMedia(String),
}

/// Chooses the rendition of `record` for a request: by id, else the highest whose peak
/// bitrate fits in [`BANDWIDTH_SHARE`] of the bandwidth, else the lowest.
pub fn choose_rendition<'a>(
    record: &'a TrackRecord,
    rendition: Option<&str>,
    bandwidth: Option<u64>,
) -> Result<&'a RenditionRecord, HintError> {
    if let Some(id) = rendition {
        return record
            .renditions
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| HintError::NoSuchRendition {
                track: record.id.clone(),
                rendition: id.to_string(),
            });
    }
    let lowest = record
        .renditions
        .iter()
        .min_by_key(|r| r.peak_bandwidth)
        .ok_or_else(|| HintError::NoMedia(record.id.clone()))?;
    let Some(bandwidth) = bandwidth else {
        return Ok(lowest);
    };
    let budget = bandwidth as f64 * BANDWIDTH_SHARE;
    Ok(record
        .renditions
        .iter()
        .filter(|r| r.peak_bandwidth as f64 <= budget)
        .max_by_key(|r| r.peak_bandwidth)
        .unwrap_or(lowest))
}

/// The hint for `record`, its URLs under `base` (`/media/ID` or its signed form): pure.
pub fn make_hint(
    record: &TrackRecord,
    base: &str,
    request: &HintRequest,
) -> Result<PrefetchHint, HintError> {
    let rendition = choose_rendition(record, request.rendition.as_deref(), request.bandwidth)?;
    if record.segment_durations.is_empty() {
        return Err(HintError::NoMedia(record.id.clone()));
    }
    let timescale = record.timescale();
    let valid = record.gapless.valid_samples;
    let from = request.from.clamp(0.0, timescale.seconds(Ticks(valid)));
    let seconds = request.seconds.clamp(0.0, MAX_SECONDS);
    // The window on the media timeline: priming, then track time.
    let start = record.gapless.priming_samples + timescale.ticks_from_seconds(from).0.min(valid);
    let end = start + timescale.ticks_from_seconds(seconds).0.max(1);
    let url = |name: &str| format!("{base}/{}/{name}", rendition.dir);
    let mut segments = Vec::new();
    let mut segment_start = 0u64;
    for (index, &duration) in record.segment_durations.iter().enumerate() {
        let segment_end = segment_start + duration;
        // The last segment always counts, so a start at the very end still gets one.
        let last = index + 1 == record.segment_durations.len();
        if segment_end > start && segment_start < end || (last && segments.is_empty()) {
            segments.push(HintedSegment {
                url: url(&RenditionRecord::segment_name(index)),
                bytes: rendition.segment_sizes.get(index).copied().unwrap_or(0),
                number: index as u64 + 1,
                start: timescale.seconds(Ticks(segment_start)),
                duration: timescale.seconds(Ticks(duration)),
            });
        }
        if segment_start >= end {
            break;
        }
        segment_start = segment_end;
    }
    Ok(PrefetchHint {
        track: record.id.clone(),
        rendition: rendition.id.clone(),
        codec: rendition.codec.clone(),
        from,
        init: HintedFile {
            url: url(&rendition.init),
            bytes: rendition.init_bytes,
        },
        segments,
    })
}

impl PrefetchHint {
    /// Every URL of the hint, init first.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.init.url.as_str()).chain(self.segments.iter().map(|s| s.url.as_str()))
    }
}

/// Fills in init sizes that the record does not know (tracks ingested before the record kept
/// them) by loading the init segment, which the warm-up would load anyway.
pub async fn fill_init_sizes(files: &Arc<FileStore>, hints: &mut [PrefetchHint]) {
    for hint in hints.iter_mut().filter(|h| h.init.bytes == 0) {
        let prefix = format!("/media/{}/", hint.track);
        let Some(path) = hint
            .init
            .url
            .split_once(&prefix)
            .and_then(|(_, rest)| MediaPath::parse(&hint.track, rest))
        else {
            continue;
        };
        if let Ok(entity) = files.load(path).await {
            hint.init.bytes = entity.body.len() as u64;
        }
    }
}

/// Loads every file of `hints` into the hot-file cache, in the background; failures are only
/// logged (the client's own fetch will report them).
pub fn warm(files: &Arc<FileStore>, hints: &[PrefetchHint]) {
    let paths: Vec<MediaPath> = hints
        .iter()
        .flat_map(|hint| {
            let prefix = format!("/media/{}/", hint.track);
            hint.urls()
                .filter_map(|url| MediaPath::parse(&hint.track, url.split_once(&prefix)?.1))
                .collect::<Vec<_>>()
        })
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
#[path = "prefetch_tests.rs"]
mod tests;
