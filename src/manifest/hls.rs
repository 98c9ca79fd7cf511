//! HLS playlists (RFC 8216) written with m3u8-rs, following Apple's HLS Authoring
//! Specification for audio: a master playlist with one variant per rendition of the first
//! switching set (BANDWIDTH, AVERAGE-BANDWIDTH, exact CODECS; why one set only: see
//! [`super`]) and a VOD media playlist per rendition with EXT-X-MAP.

use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, VariantStream};

use super::switching_sets;
use crate::catalog::{RenditionRecord, TrackRecord};
use crate::store::layout;
use crate::units::{Ticks, extinf_seconds};

/// Protocol version: EXT-X-MAP in a media playlist without I-frames needs version 6
/// (RFC 8216 7); 7 is what Apple's packagers write for fMP4.
const HLS_VERSION: usize = 7;

fn to_text(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    // Writing into a Vec<u8> cannot fail, and m3u8-rs writes only UTF-8 we gave it.
    let _ = write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The master playlist: one variant per rendition of the first switching set (AAC-LC), lowest
/// bitrate first (the first variant is where players without a bandwidth estimate start,
/// which favours a fast start). Variants of other profiles are left out: RFC 8216 4.3.4.2
/// makes every variant of a master playlist one switching set, and a profile change within
/// it costs VLC the first segment (see [`super`]).
pub fn render_master_playlist(track: &TrackRecord) -> String {
    let first_set = switching_sets(track).into_iter().next().unwrap_or_default();
    let playlist = MasterPlaylist {
        version: Some(HLS_VERSION),
        independent_segments: true,
        variants: first_set
            .into_iter()
            .map(|r| VariantStream {
                uri: format!("{}/{}", r.dir, r.playlist),
                bandwidth: r.peak_bandwidth,
                average_bandwidth: Some(r.average_bandwidth),
                codecs: Some(r.codec.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    to_text(|w| playlist.write_to(w))
}

/// The target duration: the longest segment rounded up to whole seconds, so no segment is
/// longer than it (RFC 8216 4.3.3.1 only requires the rounded EXTINF to be within it).
fn target_duration(track: &TrackRecord) -> u64 {
    let longest = track.segment_durations.iter().copied().max().unwrap_or(0);
    longest.div_ceil(u64::from(track.sample_rate.max(1))).max(1)
}

/// The media playlist of one rendition: VOD, EXT-X-MAP to its init segment, ENDLIST.
pub fn render_media_playlist(track: &TrackRecord, rendition: &RenditionRecord) -> String {
    let timescale = track.timescale();
    let segments = track
        .segment_durations
        .iter()
        .enumerate()
        .map(|(i, &d)| MediaSegment {
            uri: layout::segment_name(i),
            duration: extinf_seconds(Ticks(d), timescale) as f32,
            map: (i == 0).then(|| m3u8_rs::Map {
                uri: rendition.init.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let playlist = MediaPlaylist {
        version: Some(HLS_VERSION),
        target_duration: target_duration(track),
        media_sequence: 0,
        segments,
        end_list: true,
        playlist_type: Some(MediaPlaylistType::Vod),
        independent_segments: true,
        ..Default::default()
    };
    to_text(|w| playlist.write_to(w))
}
