//! Why one file could not be ingested: [`IngestError`], shared by every stage of the pipeline,
//! and its serializable form ([`ErrorReport`], a stable [`IngestErrorKind`] plus the message)
//! that crosses the worker-process boundary and goes into `segue ingest --json` lines.

use serde::{Deserialize, Serialize};

use super::analyze::AnalyzeError;
use super::decode::DecodeError;
use super::encode::EncodeError;
use super::fmp4::Fmp4Error;
use super::resample::ResampleError;
use crate::store::StoreError;

/// Why one file could not be ingested. The file is left out of the library (but for
/// [`IngestError::Index`]); other files go on. None is recoverable for that file: a re-run
/// tries it again from the start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Reading the source failed.
    #[error("cannot read file: {0}")]
    Read(#[source] std::io::Error),
    /// The source could not be decoded.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// Resampling failed.
    #[error("resampling failed: {0}")]
    Resample(#[from] ResampleError),
    /// An encoder failed.
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// Loudness analysis failed.
    #[error("loudness analysis failed: {0}")]
    Analyze(#[from] AnalyzeError),
    /// Packaging failed.
    #[error("packaging failed: {0}")]
    Fmp4(#[from] Fmp4Error),
    /// Writing the library failed.
    #[error("library write failed: {0}")]
    Store(#[from] StoreError),
    /// The source holds no audio samples.
    #[error("no audio samples in the file")]
    NoSamples,
    /// The worker process that ingested the file failed (its error, as it reported it) or died
    /// (the kind is [`IngestErrorKind::WorkerDied`] and the message says how).
    #[error("{0}")]
    Worker(ErrorReport),
    /// A stage stopped because another stage of the same file failed first (its input or its
    /// consumer went away); that other failure is the one reported, never this.
    #[error("internal error: {0} stopped early")]
    Stopped(&'static str),
    /// The track was written into the library but the catalog could not index it (a full
    /// disk, say); the files are complete and the next ingest or `segue reindex` indexes them.
    #[error(
        "track {id} was written but not indexed: {source}; the next ingest or `segue reindex` indexes it"
    )]
    Index {
        /// The track id.
        id: String,
        /// Why the catalog refused it.
        #[source]
        source: crate::catalog::CatalogError,
    },
    /// An internal invariant broke (a bug): reported for this file instead of aborting.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure an [`IngestError`] is, as a stable snake_case name for scripts (the
/// `kind` of a `segue ingest --json` line) and for the worker protocol. New kinds may be added;
/// existing names do not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestErrorKind {
    /// The source cannot be opened or read (missing, no permission, I/O error).
    Read,
    /// The source has zero bytes.
    EmptyFile,
    /// No demuxer recognises the content.
    UnrecognizedFormat,
    /// The container holds no audio track.
    NoAudioTrack,
    /// The codec or one of its features is not supported.
    UnsupportedCodec,
    /// A header value (channels, sample rate, duration) is beyond the configured limits.
    BeyondLimits,
    /// The stream is corrupt or truncated.
    Malformed,
    /// The decoder crashed on the file (a caught panic).
    DecoderCrashed,
    /// Resampling failed.
    Resample,
    /// The AAC encoder failed.
    Encode,
    /// Loudness analysis failed.
    Analyze,
    /// Writing the CMAF boxes failed.
    Package,
    /// Writing the library failed.
    Store,
    /// The source holds no audio samples.
    NoSamples,
    /// The worker process died without a result (a signal, an abort, an exit).
    WorkerDied,
    /// The track was written but the catalog could not index it.
    Index,
    /// A bug: an internal invariant broke.
    Internal,
}

impl IngestErrorKind {
    /// The stable snake_case name (as serialized).
    pub fn name(self) -> &'static str {
        match self {
            IngestErrorKind::Read => "read",
            IngestErrorKind::EmptyFile => "empty_file",
            IngestErrorKind::UnrecognizedFormat => "unrecognized_format",
            IngestErrorKind::NoAudioTrack => "no_audio_track",
            IngestErrorKind::UnsupportedCodec => "unsupported_codec",
            IngestErrorKind::BeyondLimits => "beyond_limits",
            IngestErrorKind::Malformed => "malformed",
            IngestErrorKind::DecoderCrashed => "decoder_crashed",
            IngestErrorKind::Resample => "resample",
            IngestErrorKind::Encode => "encode",
            IngestErrorKind::Analyze => "analyze",
            IngestErrorKind::Package => "package",
            IngestErrorKind::Store => "store",
            IngestErrorKind::NoSamples => "no_samples",
            IngestErrorKind::WorkerDied => "worker_died",
            IngestErrorKind::Index => "index",
            IngestErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for IngestErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An [`IngestError`] in a form that serializes: its kind, and its message as context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// What kind of failure.
    pub kind: IngestErrorKind,
    /// The full message, as [`IngestError`]'s `Display` gives it.
    pub message: String,
}

impl std::fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IngestError {
    /// What kind of failure this is.
    pub fn kind(&self) -> IngestErrorKind {
        use IngestErrorKind as K;
        match self {
            IngestError::Read(_) => K::Read,
            IngestError::Decode(e) => match e {
                DecodeError::Io(_) => K::Read,
                DecodeError::Empty => K::EmptyFile,
                DecodeError::UnrecognizedFormat => K::UnrecognizedFormat,
                DecodeError::NoAudioTrack => K::NoAudioTrack,
                DecodeError::UnsupportedCodec(_) => K::UnsupportedCodec,
                DecodeError::Limit(_) => K::BeyondLimits,
                DecodeError::Malformed(_) => K::Malformed,
                DecodeError::Panicked(_) => K::DecoderCrashed,
            },
            IngestError::Resample(_) => K::Resample,
            IngestError::Encode(_) => K::Encode,
            IngestError::Analyze(_) => K::Analyze,
            IngestError::Fmp4(_) => K::Package,
            IngestError::Store(_) => K::Store,
            IngestError::NoSamples => K::NoSamples,
            IngestError::Worker(report) => report.kind,
            IngestError::Index { .. } => K::Index,
            IngestError::Stopped(_) | IngestError::Internal(_) => K::Internal,
        }
    }

    /// The serializable form: kind and message.
    pub fn report(&self) -> ErrorReport {
        ErrorReport {
            kind: self.kind(),
            message: self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_match_their_serialized_form() {
        use IngestErrorKind as K;
        for kind in [
            K::Read,
            K::EmptyFile,
            K::UnrecognizedFormat,
            K::NoAudioTrack,
            K::UnsupportedCodec,
            K::BeyondLimits,
            K::Malformed,
            K::DecoderCrashed,
            K::Resample,
            K::Encode,
            K::Analyze,
            K::Package,
            K::Store,
            K::NoSamples,
            K::WorkerDied,
            K::Index,
            K::Internal,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
    }

    #[test]
    fn a_worker_error_keeps_the_kind_and_the_message_it_was_sent_with() {
        let original = IngestError::Decode(DecodeError::Empty);
        let json = serde_json::to_string(&original.report()).unwrap();
        let back = IngestError::Worker(serde_json::from_str(&json).unwrap());
        assert_eq!(back.kind(), IngestErrorKind::EmptyFile);
        assert_eq!(back.to_string(), original.to_string());
    }
}
