//! segue: an audio-first HLS/DASH streaming server.
//!
//! # Layout
//!
//! The modules follow the data, top to bottom; every import points down this list or within a
//! module's own subtree (`tests/architecture.rs` checks that no two modules import each other):
//!
//! - [`cli`] raw command-line flags, and [`config`] the validated settings built from them
//!   (`TryFrom` the flags; [`config::ladder`] the ABR ladder, [`config::serve`] the origin's
//!   settings). An [`config::IngestConfig`] crosses the worker-process boundary whole.
//! - [`units`] time as integer ticks of an explicit timescale; every rescaling lives there.
//! - [`ingest`] audio file -> packaged track, one module per stage:
//!   [`ingest::decode`] (symphonia, fdk-aac, libopus: file -> PCM), [`ingest::resample`]
//!   (PCM -> PCM at the output rate), [`ingest::analyze`] (loudness, waveform),
//!   [`ingest::encode`] (PCM -> AAC access units), [`ingest::segment`] (access units -> aligned
//!   segments), [`ingest::fmp4`] (segments -> CMAF bytes); [`ingest::pipeline`] runs them for
//!   one file (its streaming part fans out to a thread per rendition), [`ingest::worker`] in a
//!   child process, [`ingest::batch`] for many files. [`ingest::error`] is what every stage
//!   reports, with a stable kind.
//! - [`manifest`] one presentation model -> HLS playlists and the DASH MPD (pure functions).
//! - [`catalog`] the track record (`track.json`, the truth) and its SQLite index.
//! - [`store`] where bytes live: a directory or an S3 bucket ([`store::location`]) behind one
//!   [`store::Library`]; [`store::layout`] names every file and id format (the one source for
//!   them), [`store::staging`] writes a track atomically (a directory: one rename, its liveness
//!   held by a lock; a bucket: create-only uploads while encoding, the record last).
//! - [`gc`] `segue gc`: deletes the objects under `tracks/` no committed record references
//!   (what killed ingests leave), past a grace period; the choice is a pure function.
//! - [`report`] how `segue ingest` reports progress and results (terminal bars, JSON lines).
//! - [`server`] the origin server (`segue serve`): media files, catalog JSON and prefetch hints
//!   (shapes in [`server::view`]), the WebSocket control channel, metrics, the player page; a
//!   bucket library's objects through a disk cache ([`server::bucket_files`]).
#![warn(missing_docs)]

pub mod catalog;
pub mod cli;
pub mod config;
pub mod gc;
pub mod ingest;
pub mod manifest;
pub mod report;
pub mod server;
pub mod store;
pub mod units;
