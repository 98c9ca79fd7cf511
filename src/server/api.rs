//! The catalog as JSON: `GET /api/tracks?q=&offset=&limit=` and `GET /api/tracks/{id}`.
//!
//! Responses go through [`respond`] like media files: a content-hash ETag with
//! `Cache-Control: no-cache` (a cache may keep the JSON but must revalidate each use, which costs
//! a 304, so a newly ingested track shows up at once), gzip/br on request, HEAD and ranges.
//! The catalog is read on a blocking thread through one shared connection; SQLite's WAL mode lets
//! it see what a concurrent `segue ingest` commits without reopening.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::http::encoding::Effort;
use super::http::respond::{Entity, prepare, respond, select_coding};
use super::signing::Signer;
use crate::catalog::{RenditionRecord, TrackRecord};
use crate::store::is_track_id;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest accepted `limit`.
pub const MAX_LIMIT: u64 = 500;
/// Cache-Control of API responses.
pub const API_CACHE_CONTROL: &str = "no-cache";

/// A track as the API shows it: metadata, timing and the URLs of everything a player fetches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Track id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Artist, if tagged.
    pub artist: Option<String>,
    /// Album, if tagged.
    pub album: Option<String>,
    /// Track number, if tagged.
    pub track_number: Option<u32>,
    /// Release year, if tagged.
    pub year: Option<i32>,
    /// Duration of the real audio in seconds (valid samples / sample rate).
    pub duration: f64,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// URL of the HLS master playlist.
    pub hls: String,
    /// URL of the DASH MPD.
    pub dash: String,
    /// URL of the cover art, if any.
    pub cover: Option<String>,
    /// URL of the waveform peaks JSON.
    pub waveform: String,
    /// Loudness figures.
    pub loudness: TrackLoudness,
    /// Gapless figures, in samples at `sample_rate`.
    pub gapless: TrackGapless,
    /// Duration of each media segment in samples at `sample_rate` (the same in every rendition;
    /// priming included in the first, padding in the last), so a player knows every segment's
    /// place without fetching a playlist.
    pub segment_durations: Vec<u64>,
    /// The renditions, lowest bitrate first.
    pub renditions: Vec<Rendition>,
}

/// Loudness figures of a [`Track`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrackLoudness {
    /// Integrated loudness in LUFS.
    pub integrated_lufs: f64,
    /// True peak in dBTP.
    pub true_peak_dbtp: f64,
}

/// Gapless figures of a [`Track`], in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackGapless {
    /// Encoder priming samples at the start of each rendition's timeline.
    pub priming_samples: u64,
    /// Samples of real audio after the priming.
    pub valid_samples: u64,
}

/// One rendition of a [`Track`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    /// Rendition id, e.g. `aac-lc-128k`.
    pub id: String,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Target bitrate in bit/s.
    pub bitrate: u32,
    /// URL of the init segment.
    pub init: String,
    /// URL of the HLS media playlist.
    pub playlist: String,
    /// URL template of the media segments: `$Number$` (from 1) gives each one's URL.
    pub segment_template: String,
    /// Size in bytes of each media segment, in order.
    pub segment_sizes: Vec<u64>,
}

/// A page of tracks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackList {
    /// The tracks of this page.
    pub tracks: Vec<Track>,
    /// Matches across all pages.
    pub total: u64,
}

impl Track {
    /// The API view of a track record as this server hands it out: its URLs signed when the
    /// server signs URLs.
    pub fn for_client(r: &TrackRecord, signer: &Signer) -> Self {
        Track::from_record(r, &signer.media_base(&r.id, SystemTime::now()))
    }

    /// The API view of a track record, its URLs under `base` (`/media/ID`, or its signed form
    /// from [`Signer::media_base`](super::signing::Signer::media_base)).
    pub fn from_record(r: &TrackRecord, base: &str) -> Self {
        let media = |name: &str| format!("{base}/{name}");
        Track {
            id: r.id.clone(),
            title: r.title.clone(),
            artist: r.artist.clone(),
            album: r.album.clone(),
            track_number: r.track_number,
            year: r.year,
            duration: r.duration_seconds(),
            sample_rate: r.sample_rate,
            channels: r.channels,
            hls: media(&r.hls_master),
            dash: media(&r.dash_mpd),
            cover: r.cover.as_deref().map(media),
            waveform: media(&r.waveform),
            loudness: TrackLoudness {
                integrated_lufs: r.loudness.integrated_lufs,
                true_peak_dbtp: r.loudness.true_peak_dbtp,
            },
            gapless: TrackGapless {
                priming_samples: r.gapless.priming_samples,
                valid_samples: r.gapless.valid_samples,
            },
            segment_durations: r.segment_durations.clone(),
            renditions: r
                .renditions
                .iter()
                .map(|x| Rendition {
                    id: x.id.clone(),
                    codec: x.codec.clone(),
                    bitrate: x.bitrate,
                    init: media(&format!("{}/{}", x.dir, x.init)),
                    playlist: media(&format!("{}/{}", x.dir, x.playlist)),
                    segment_template: media(&format!(
                        "{}/{}",
                        x.dir,
                        RenditionRecord::SEGMENT_TEMPLATE
                    )),
                    segment_sizes: x.segment_sizes.clone(),
                })
                .collect(),
        }
    }
}

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

pub(super) async fn json_response(method: &Method, headers: &HeaderMap, json: Vec<u8>) -> Response {
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
        protocol: super::control::protocol::PROTOCOL.to_string(),
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
