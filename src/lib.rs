//! segue: an audio-first HLS/DASH streaming server.
//!
//! # Layout
//!
//! The modules follow the data, top to bottom:
//!
//! - [`cli`] raw command-line flags, and [`config`] the validated settings built from them.
//! - [`units`] time as integer ticks of an explicit timescale; every rescaling lives there.
//! - [`ingest`] audio file -> packaged track, one module per stage:
//!   [`ingest::decode`] (symphonia: file -> PCM), [`ingest::resample`] (PCM -> PCM at the output
//!   rate), [`ingest::analyze`] (loudness, waveform), [`ingest::encode`] (PCM -> AAC access
//!   units), [`ingest::segment`] (access units -> aligned segments), [`ingest::fmp4`]
//!   (segments -> CMAF bytes); [`ingest::pipeline`] runs them for one file and
//!   [`ingest::batch`] for many.
//! - [`manifest`] one presentation model -> HLS playlists and the DASH MPD (pure functions).
//! - [`catalog`] the track record (`track.json`, the truth) and its SQLite index.
//! - [`store`] the library directory: layout and atomic staging of tracks.
//! - [`report`] how `segue ingest` reports progress and results (terminal bars, JSON lines).
//! - [`server`] the origin server (`segue serve`): media files, catalog JSON, metrics over HTTP.
#![warn(missing_docs)]

pub mod catalog;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod manifest;
pub mod report;
pub mod server;
pub mod store;
pub mod units;
