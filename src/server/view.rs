//! What the server tells clients about the library: the catalog's [`Track`] view and the
//! prefetch [`PrefetchHint`], with their builders from a [`TrackRecord`]. No axum and no I/O
//! here (the builders are functions of the record and a URL base), so the HTTP API and the
//! control channel share them, every wire type has one home, and the module graph points from
//! the handlers down to it.
//!
//! A hint names one rendition, its init segment and the media segments that overlap the first
//! few seconds from a start position, with their sizes, so a player can fetch them in parallel
//! before it needs them (or the moment it does, without reading a playlist first).
//! Positions are track time (seconds of real audio, priming excluded); segment times in the hint
//! are media-timeline seconds (priming included), as in the playlists. All the arithmetic is in
//! samples at the track's rate.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::signing::Signer;
use crate::catalog::{RenditionRecord, TrackRecord};
use crate::store::layout;
use crate::units::Ticks;

/// Seconds of audio a hint covers when the request does not say.
pub const DEFAULT_SECONDS: f64 = 3.0;
/// Most seconds a hint may cover.
pub const MAX_SECONDS: f64 = 30.0;
/// Share of the measured bandwidth a rendition's peak bitrate may use (the player's ABR rule
/// too: it reads this value from the server).
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
                url: url(&layout::segment_name(index)),
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
                    segment_template: media(&format!("{}/{}", x.dir, layout::SEGMENT_TEMPLATE)),
                    segment_sizes: x.segment_sizes.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
