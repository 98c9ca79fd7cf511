//! The decoder's public types: its options (limits against hostile headers), what a source is,
//! its tags and cover art, and why a file cannot be decoded (with the two constructors of that
//! error from symphonia: its error values and its panics).

use std::panic::{AssertUnwindSafe, catch_unwind};

use symphonia::core::errors::Error as SymError;

use crate::ingest::panic_message;

/// Limits that protect against hostile headers (checked before allocating).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeOptions {
    /// Largest accepted channel count.
    pub max_channels: u32,
    /// Highest accepted sample rate, in Hz.
    pub max_sample_rate: u32,
    /// Lowest accepted sample rate, in Hz.
    pub min_sample_rate: u32,
    /// Longest accepted duration, in seconds.
    pub max_duration_seconds: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        let max_duration_seconds = 6 * 3600;
        Self {
            max_channels: 32,
            max_sample_rate: 768_000,
            min_sample_rate: 8_000,
            max_duration_seconds,
        }
    }
}

/// What the source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// Short container name: "flac", "wav", "aiff", "mp3", "ogg", "mp4", "adts".
    pub container: String,
    /// Short lowercase codec name: "flac", "mp3", "aac", "alac", "vorbis", "pcm_s16le", ...
    pub codec: String,
    /// Sample rate, in Hz.
    pub sample_rate: u32,
    /// Channel count of the source (the output is always stereo).
    pub channels: u32,
    /// Bits per sample, for codecs that have them.
    pub bits_per_sample: Option<u32>,
    /// Frames (samples per channel) if the container says, after gapless trimming.
    pub total_frames: Option<u64>,
}

/// Tags read from the file (any metadata revision: container tags, ID3v2, Vorbis comments, ilst).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    /// Track title.
    pub title: Option<String>,
    /// Track artist.
    pub artist: Option<String>,
    /// Album title.
    pub album: Option<String>,
    /// Track number within its disc ("3/12" reads as 3).
    pub track_number: Option<u32>,
    /// Release or recording year.
    pub year: Option<i32>,
}

impl Tags {
    /// Fills the fields still empty from `other`.
    pub(super) fn fill_from(&mut self, other: Tags) {
        self.title = self.title.take().or(other.title);
        self.artist = self.artist.take().or(other.artist);
        self.album = self.album.take().or(other.album);
        self.track_number = self.track_number.or(other.track_number);
        self.year = self.year.or(other.year);
    }
}

/// Embedded cover art.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverArt {
    /// Media type, e.g. "image/jpeg" or "image/png".
    pub media_type: String,
    /// The encoded image.
    pub data: Vec<u8>,
}

/// Why a file cannot be decoded. None is recoverable for that file: after an error,
/// [`SourceDecoder::next_chunk`](super::SourceDecoder::next_chunk) returns `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file cannot be opened or read.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    /// The file has zero bytes.
    #[error("file is empty")]
    Empty,
    /// No demuxer recognises the content.
    #[error("not a recognized audio file")]
    UnrecognizedFormat,
    /// The container holds no audio track.
    #[error("the file contains no audio track")]
    NoAudioTrack,
    /// The audio codec (named) is not supported.
    #[error("unsupported audio codec or feature: {0}")]
    UnsupportedCodec(String),
    /// A header value is beyond the configured limits; the message names value and limit.
    #[error("{0}")]
    Limit(String),
    /// The stream is corrupt or truncated; carries symphonia's message.
    #[error("the audio stream is corrupt or truncated: {0}")]
    Malformed(String),
    /// symphonia panicked on this file (the panic was caught).
    #[error("the decoder crashed on this file: {0}")]
    Panicked(String),
}

impl DecodeOptions {
    /// Returns `channels` if within the limits.
    pub(super) fn check_channels(&self, channels: usize) -> Result<u32, DecodeError> {
        let max = self.max_channels;
        match u32::try_from(channels) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(DecodeError::Limit(format!(
                "channel count {channels} is outside the supported range 1 to {max}"
            ))),
        }
    }

    /// Returns `rate` (Hz) if within the limits. A `u64`, as an AIFF header's rate can exceed
    /// `u32`.
    pub(super) fn check_rate(&self, rate: u64) -> Result<u32, DecodeError> {
        let (min, max) = (self.min_sample_rate, self.max_sample_rate);
        match u32::try_from(rate) {
            Ok(rate) if (min..=max).contains(&rate) => Ok(rate),
            _ => Err(DecodeError::Limit(format!(
                "sample rate {rate} Hz is outside the supported range {min} to {max} Hz"
            ))),
        }
    }
}

/// Runs a symphonia call, turning a panic (known to happen on malformed input) into an error.
pub(super) fn guard<T>(f: impl FnOnce() -> T) -> Result<T, DecodeError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| DecodeError::Panicked(panic_message(&*panic)))
}

/// Maps a symphonia error onto [`DecodeError`].
pub(super) fn sym_error(e: SymError) -> DecodeError {
    match e {
        // Real I/O failures carry an OS error; symphonia's own "out of bounds" reads do not.
        SymError::IoError(e) if e.raw_os_error().is_some() => DecodeError::Io(e),
        SymError::Unsupported(m) => DecodeError::UnsupportedCodec(m.into()),
        SymError::LimitError(m) => {
            DecodeError::Limit(format!("a header value is beyond a limit: {m}"))
        }
        SymError::DecodeError(m) => DecodeError::Malformed(m.into()),
        e => DecodeError::Malformed(e.to_string()),
    }
}
