//! One presentation model -> HLS playlists and the DASH MPD (pure functions).
//!
//! The model is the [`TrackRecord`](crate::catalog::TrackRecord): manifests are views of it,
//! never written by the muxer. Every duration comes from integer sample counts.

pub mod dash;
pub mod hls;

pub use dash::render_mpd;
pub use hls::{render_master_playlist, render_media_playlist};
