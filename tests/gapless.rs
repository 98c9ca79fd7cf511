//! Gapless: a decoder that honours the edit list gets exactly the source's samples, aligned
//! with the source at lag 0, in every rendition.
//!
//! ffmpeg decodes our output. Its mov demuxer honours an edit list fully only in progressive
//! MP4; in fragmented MP4 it applies the edit's start as a timestamp offset (the first sample
//! gets pts = -media_time) but neither drops the priming nor cuts at the edit's end. So the
//! test reads the edit list with an independent parser (mp4parse) and has ffmpeg keep exactly
//! the edit's span, [0, segment_duration), with `-copyts` and `atrim` on those timestamps.
//! mp4-atom, in strict mode, must read the same edit.

mod common;

use common::fmp4::strict_init;
use common::*;

#[test]
fn every_rendition_decodes_to_the_source_length_at_lag_zero_at_48k() {
    check_gapless(48_000, 3.3);
}

#[test]
fn every_rendition_decodes_to_the_source_length_at_lag_zero_at_44k1() {
    check_gapless(44_100, 2.9);
}

fn check_gapless(rate: u32, seconds: f64) {
    let (lib, input, id, record) = ingest_generated_wav(rate, seconds);
    let source = decode_f32(&[], &input.to_string_lossy());
    assert_eq!(record.gapless.valid_samples as usize, source.len() / 2);
    let track_dir = lib.layout().track_dir(&id);
    for (i, r) in record.renditions.iter().enumerate() {
        let file = lib.dir.path().join(format!("{}.mp4", r.id));
        concat_rendition(&track_dir, &record, i, &file);
        let init = std::fs::read(track_dir.join(&r.dir).join(&r.init)).unwrap();
        let ctx = mp4parse::read_mp4(&mut std::io::Cursor::new(&init)).unwrap();
        let edit_start = ctx.tracks[0].media_time.unwrap().0;
        let edit_duration = ctx.tracks[0].edited_duration.unwrap().0;
        assert_eq!(edit_start, record.gapless.priming_samples);
        assert_eq!(edit_duration, record.gapless.valid_samples);
        // mp4-atom, strictly, reads the same single edit.
        let strict = strict_init(&init, &r.id);
        let elst = strict.moov.trak[0]
            .edts
            .as_ref()
            .and_then(|e| e.elst.as_ref());
        let edits: Vec<_> = elst
            .unwrap()
            .entries
            .iter()
            .map(|e| (e.media_time, e.segment_duration))
            .collect();
        assert_eq!(edits, [(Some(edit_start), edit_duration)], "{}", r.id);
        let decoded = decode_f32_filtered(
            &["-copyts"],
            &file.to_string_lossy(),
            &format!("atrim=start_pts=0:end_pts={edit_duration}"),
        );
        assert_eq!(
            decoded.len() / 2,
            record.gapless.valid_samples as usize,
            "{}: ffmpeg honours the edit list and outputs exactly the source's samples",
            r.id
        );
        // Skip the first 0.2 s (encoder ramp-up) and compare 1 s of audio around lag 0.
        let skip = 2 * (rate as usize / 5);
        let window = 2 * rate as usize;
        let (lag, corr) = best_lag(
            &source[skip..skip + window],
            &decoded[skip..skip + window],
            64,
        );
        assert_eq!(lag, 0, "{}: best lag {lag} (corr {corr:.4})", r.id);
        assert!(corr > 0.95, "{}: correlation at lag 0 is {corr:.4}", r.id);
    }
}
