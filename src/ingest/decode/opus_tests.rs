//! Behaviour of [`SourceDecoder`] on Ogg Opus and Opus in MP4 files made by ffmpeg (libopus):
//! lengths to ffmpeg's sample, alignment with the source, pre-skip, gain and channel order.

use super::tests::{CHIRP, best_lag, decode, ffmpeg, ffmpeg_frames};
use std::path::Path;

#[test]
fn ogg_opus_decodes_to_ffmpegs_sample_count() {
    let dir = tempfile::tempdir().unwrap();
    let tone = "-f lavfi -i sine=f=440:r=48000:d=1";
    let cases = [
        ("stereo.opus", format!("{tone} -ac 2"), 2),
        ("mono.opus", format!("{tone} -ac 1"), 1),
        // A 44.1 kHz source, resampled to 48 kHz for the encoder.
        ("resampled.opus", format!("{CHIRP} -ac 2"), 2),
        // Pre-skip 120 instead of 312 (the low-delay mode has less lookahead).
        ("lowdelay.opus", format!("{tone} -application lowdelay"), 1),
        // 2.5 ms packets (and a pre-skip of one packet).
        (
            "short-packets.opus",
            format!("{tone} -frame_duration 2.5"),
            1,
        ),
        // Channel mapping family 1: two coupled streams and two mono ones.
        ("surround.opus", format!("{tone} -ac 6"), 6),
        // Not a whole number of packets: the final granule position cuts the last one.
        ("odd.opus", "-f lavfi -i sine=r=48000:d=0.7777".into(), 1),
    ];
    for (name, args, channels) in cases {
        let path = ffmpeg(dir.path(), name, &format!("{args} -c:a libopus"), &[]);
        let (info, pcm) = decode(&path);
        assert_eq!(
            (info.container.as_str(), info.codec.as_str()),
            ("ogg", "opus"),
            "{name}"
        );
        assert_eq!(
            (info.sample_rate, info.channels),
            (48000, channels),
            "{name}"
        );
        let frames = ffmpeg_frames(&path);
        assert_eq!(pcm.len() as u64 / 2, frames, "{name}");
        assert_eq!(info.total_frames, Some(frames), "{name}");
    }
}

#[test]
fn ogg_opus_starts_where_its_source_starts() {
    let dir = tempfile::tempdir().unwrap();
    let chirp = CHIRP.replace("s=44100", "s=48000");
    let (_, reference) = decode(&ffmpeg(dir.path(), "a.wav", &chirp, &[]));
    let (_, pcm) = decode(&ffmpeg(dir.path(), "a.opus", &chirp, &["-c:a", "libopus"]));
    assert_eq!(pcm.len(), reference.len());
    assert_eq!(best_lag(&reference, &pcm), 0);
}

#[test]
fn opus_in_mp4_is_trimmed_by_its_edit_list_alone() {
    let dir = tempfile::tempdir().unwrap();
    // The edit list skips the pre-skip (312) and ends at the source's length; ffmpeg 5.1
    // skips the pre-skip but ignores the edit's end (48648 samples), so the source is the
    // reference here.
    let chirp = CHIRP.replace("s=44100", "s=48000");
    let (_, reference) = decode(&ffmpeg(dir.path(), "a.wav", &chirp, &[]));
    let (info, pcm) = decode(&ffmpeg(dir.path(), "a.mp4", &chirp, &["-c:a", "libopus"]));
    assert_eq!(
        (info.container.as_str(), info.codec.as_str()),
        ("mp4", "opus")
    );
    assert_eq!(pcm.len(), reference.len());
    assert_eq!(best_lag(&reference, &pcm), 0);
}

#[test]
fn opus_surround_channels_reach_their_sides() {
    let dir = tempfile::tempdir().unwrap();
    // ffmpeg's 5.1 order is FL FR FC LFE BL BR; Ogg Opus stores FL FC FR BL BR LFE. A tone in
    // the centre only must come out equal on both sides, a tone in the LFE not at all.
    let centre = "-f lavfi -i aevalsrc=0|0|0.5*sin(2*PI*440*t)|0.5*sin(2*PI*60*t)|0|0:s=48000:\
                  d=0.5:c=5.1 -c:a libopus";
    let (info, pcm) = decode(&ffmpeg(dir.path(), "c.opus", centre, &[]));
    assert_eq!(info.channels, 6);
    let (mut left, mut right, mut diff) = (0f64, 0f64, 0f64);
    for f in pcm.chunks_exact(2) {
        let (l, r) = (f64::from(f[0]), f64::from(f[1]));
        (left, right, diff) = (left + l * l, right + r * r, diff + (l - r) * (l - r));
    }
    assert!(left > 1.0 && right > 1.0, "left {left}, right {right}");
    assert!(
        diff < left / 100.0,
        "left {left}, right {right}, difference {diff}"
    );
}

/// Rewrites the OpusHead of the Ogg Opus file `path` (RFC 7845 5.1) with `pre_skip` (samples)
/// and output `gain` (Q7.8 dB), and the first page's CRC (RFC 3533 6: polynomial 0x04c11db7,
/// computed with the CRC field zeroed).
fn patch_opus_head(path: &Path, pre_skip: u16, gain: i16) {
    let mut bytes = std::fs::read(path).unwrap();
    let head = bytes.windows(8).position(|w| w == b"OpusHead").unwrap();
    bytes[head + 10..head + 12].copy_from_slice(&pre_skip.to_le_bytes());
    bytes[head + 16..head + 18].copy_from_slice(&gain.to_le_bytes());
    let page_len = 27
        + usize::from(bytes[26])
        + bytes[27..27 + usize::from(bytes[26])]
            .iter()
            .map(|&s| usize::from(s))
            .sum::<usize>();
    bytes[22..26].fill(0);
    let crc = super::track_choice::tests::ogg_crc(&bytes[..page_len]);
    bytes[22..26].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn opus_pre_skip_longer_than_packets_and_output_gain_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let tone = "-f lavfi -i sine=f=440:r=48000:d=1 -c:a libopus";
    let (_, plain) = decode(&ffmpeg(dir.path(), "plain.opus", tone, &[]));
    // 2000 samples: two whole 960-sample packets and part of a third. -1541/256 dB is one half.
    let path = ffmpeg(dir.path(), "patched.opus", tone, &[]);
    patch_opus_head(&path, 2000, -1541);
    let (_, pcm) = decode(&path);
    assert_eq!(pcm.len() as u64 / 2, ffmpeg_frames(&path));
    assert_eq!(pcm.len() / 2, 48312 - 2000);
    // The same samples, from 1688 samples later (2000 - 312), at half the level.
    let offset = 2 * (2000 - 312);
    for (i, (&got, &want)) in pcm.iter().zip(&plain[offset..]).enumerate() {
        assert!(
            (got - want / 2.0).abs() < 1e-3,
            "sample {i}: {got} vs {want}"
        );
    }
}
