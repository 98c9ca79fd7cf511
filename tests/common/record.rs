//! The one fixed track record of the tests: a track of 10 s at 48 kHz in three renditions of
//! four segments, with a title that needs escaping in every manifest format and bandwidths that
//! are not round numbers. The golden manifests (tests/golden/) are rendered from it.
//!
//! It names the catalog types unqualified (`use super::*`), so the crate's own unit tests share
//! it too: src/catalog/model.rs, where those types are defined, includes this file with
//! `#[path]` as its `test_record`.

use super::*;

/// The fixed record (id `00112233445566778899aabb`, renditions he-aac-64k, aac-lc-128k,
/// aac-lc-256k, segments of 47 104, 190 464, 190 464 and 56 512 samples).
pub fn test_record() -> TrackRecord {
    let rendition =
        |id: &str, codec: &str, profile: &str, bitrate: u32, peak: u64, avg: u64| RenditionRecord {
            id: id.into(),
            dir: format!("{id}.0123456789ab"),
            codec: codec.into(),
            profile: profile.into(),
            bitrate,
            average_bandwidth: avg,
            peak_bandwidth: peak,
            init: "init.mp4".into(),
            init_bytes: 700,
            playlist: "media.m3u8".into(),
            segment_sizes: vec![1000, 2000, 2000, 500],
        };
    TrackRecord {
        version: TRACK_RECORD_VERSION,
        id: "00112233445566778899aabb".into(),
        title: "Nocturne <in> \"A\" & B".into(),
        artist: Some("segue samples".into()),
        album: Some("Segue Demo".into()),
        track_number: Some(4),
        year: Some(2026),
        source: SourceRecord {
            file_name: "04.ogg".into(),
            container: "ogg".into(),
            codec: "vorbis".into(),
            sample_rate: 48_000,
            channels: 2,
            bits_per_sample: None,
            samples: 480_000,
            bytes: 96_925,
        },
        sample_rate: 48_000,
        channels: 2,
        gapless: Gapless {
            priming_samples: 3_200,
            valid_samples: 480_000,
            padding_samples: 1_344,
        },
        loudness: Loudness {
            integrated_lufs: -16.2,
            true_peak_dbtp: -1.5,
            loudness_range_lu: 4.0,
        },
        cover: None,
        waveform: "waveform.json".into(),
        hls_master: "master.m3u8".into(),
        dash_mpd: "manifest.mpd".into(),
        // 0.981333 s, then 3.968 s segments, then the tail: 484544 samples in all.
        segment_durations: vec![47_104, 190_464, 190_464, 56_512],
        renditions: vec![
            rendition("he-aac-64k", "mp4a.40.5", "he-aac", 64_000, 70_123, 66_000),
            rendition(
                "aac-lc-128k",
                "mp4a.40.2",
                "aac-lc",
                128_000,
                140_456,
                131_000,
            ),
            rendition(
                "aac-lc-256k",
                "mp4a.40.2",
                "aac-lc",
                256_000,
                270_789,
                259_000,
            ),
        ],
        packaging: PackagingRecord {
            ladder: "he-aac:64k,aac-lc:128k,aac-lc:256k".into(),
            segment_seconds: 4.0,
            segue_version: "0.1.0".into(),
        },
    }
}
