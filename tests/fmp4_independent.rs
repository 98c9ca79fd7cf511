//! Our fMP4 re-parsed by independent parsers: Mozilla's mp4parse (the init segment, as Firefox
//! reads it), the `mp4` crate (init + every media segment, fragment by fragment), and mp4-atom
//! box by box in strict mode (`common::fmp4`: every box decodes and re-encodes to its bytes).

mod common;

use std::io::Cursor;

use common::fmp4::{strict_init, strict_segment};
use common::*;

#[test]
fn init_and_media_segments_parse_with_independent_parsers() {
    let (lib, _, id, record) = ingest_generated_wav(44_100, 6.5);
    let track_dir = lib.layout().track_dir(&id);
    for (index, r) in record.renditions.iter().enumerate() {
        let init = std::fs::read(track_dir.join(&r.dir).join(&r.init)).unwrap();
        let ctx = mp4parse::read_mp4(&mut Cursor::new(&init))
            .unwrap_or_else(|e| panic!("{}: mp4parse: {e:?}", r.id));
        assert!(ctx.mvex.is_some(), "fragmented: mvex present");
        assert_eq!(ctx.tracks.len(), 1);
        let track = &ctx.tracks[0];
        assert_eq!(track.timescale.map(|t| t.0), Some(44_100));
        assert_eq!(
            track.media_time.map(|t| t.0),
            Some(record.gapless.priming_samples),
            "edit list media_time = priming"
        );
        let stsd = track.stsd.as_ref().unwrap();
        let mp4parse::SampleEntry::Audio(audio) = &stsd.descriptions[0] else {
            panic!("audio sample entry")
        };
        assert_eq!(audio.channelcount, 2);
        let mp4parse::AudioCodecSpecific::ES_Descriptor(esds) = &audio.codec_specific else {
            panic!("esds")
        };
        // mp4parse reports the core object type (2) and, for explicit SBR signalling, the
        // extension type (5) separately.
        let he = r.codec == "mp4a.40.5";
        assert_eq!(esds.audio_object_type, Some(2), "{}", r.id);
        assert_eq!(esds.extended_audio_object_type, he.then_some(5), "{}", r.id);
        let aot = if he { 5 } else { 2 };
        check_strictly(&track_dir, &record, index);

        let file = lib.dir.path().join(format!("{}.mp4", r.id));
        concat_rendition(&track_dir, &record, index, &file);
        let bytes = std::fs::read(&file).unwrap();
        let size = bytes.len() as u64;
        let reader = mp4::Mp4Reader::read_header(Cursor::new(bytes), size)
            .unwrap_or_else(|e| panic!("{}: mp4: {e}", r.id));
        assert_eq!(reader.moofs.len(), record.segment_durations.len());
        let frame = if aot == 5 { 2048 } else { 1024 };
        let mut t = 0u64;
        for (i, moof) in reader.moofs.iter().enumerate() {
            assert_eq!(moof.mfhd.sequence_number as usize, i + 1);
            let traf = &moof.trafs[0];
            assert_eq!(
                traf.tfdt.as_ref().unwrap().base_media_decode_time,
                t,
                "{} segment {i} tfdt",
                r.id
            );
            let count = u64::from(traf.trun.as_ref().unwrap().sample_count);
            assert_eq!(
                count * frame,
                record.segment_durations[i],
                "{} segment {i} duration",
                r.id
            );
            t += count * frame;
        }
        assert_eq!(t, record.gapless.total_samples());
    }
}

/// Rendition `index` decoded box by box with mp4-atom in strict mode, its fields checked against
/// the record: the edit list, the timescale, the loudness box, and in each media segment the
/// sequence number, the decode time, the sample count and sizes and where `trun` points.
fn check_strictly(track_dir: &std::path::Path, record: &segue::catalog::TrackRecord, index: usize) {
    let r = &record.renditions[index];
    let dir = track_dir.join(&r.dir);
    let what = format!("{} init", r.id);
    let init = strict_init(&std::fs::read(dir.join(&r.init)).unwrap(), &what);
    assert_eq!(init.moov.trak.len(), 1, "{what}");
    let trak = &init.moov.trak[0];
    assert_eq!(trak.mdia.mdhd.timescale, record.sample_rate, "{what}");
    let elst = trak.edts.as_ref().and_then(|e| e.elst.as_ref()).unwrap();
    assert_eq!(elst.entries.len(), 1, "{what}: one edit");
    assert_eq!(
        elst.entries[0].media_time,
        Some(record.gapless.priming_samples),
        "{what}: edit starts after the priming"
    );
    assert!(init.tlou.is_some(), "{what}: loudness box");
    assert!(init.moov.mvex.is_some(), "{what}: fragmented");

    let mut t = 0u64;
    for (i, &duration) in record.segment_durations.iter().enumerate() {
        let what = format!("{} segment {i}", r.id);
        let name = segue::store::layout::segment_name(i);
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(bytes.len() as u64, r.segment_sizes[i], "{what}: size");
        let seg = strict_segment(&bytes, &what);
        assert_eq!(seg.moof.mfhd.sequence_number as usize, i + 1, "{what}");
        assert_eq!(seg.moof.traf.len(), 1, "{what}: one traf");
        let traf = &seg.moof.traf[0];
        assert_eq!(
            traf.tfdt.as_ref().unwrap().base_media_decode_time,
            t,
            "{what}"
        );
        assert_eq!(traf.trun.len(), 1, "{what}: one trun");
        let trun = &traf.trun[0];
        let frame = traf.tfhd.default_sample_duration.map(u64::from);
        let durations: u64 = trun
            .samples
            .iter()
            .map(|e| e.duration.map(u64::from).or(frame).unwrap())
            .sum();
        assert_eq!(durations, duration, "{what}: duration in samples");
        let sizes: u64 = trun
            .samples
            .iter()
            .map(|e| u64::from(e.size.unwrap()))
            .sum();
        assert_eq!(
            sizes,
            seg.mdat.data.len() as u64,
            "{what}: sample sizes fill mdat"
        );
        assert_eq!(
            trun.data_offset.map(|o| o as usize),
            Some(seg.payload_offset),
            "{what}: trun points at mdat's payload"
        );
        t += duration;
    }
}

#[test]
fn strict_decoding_fails_on_a_trailing_byte_or_a_box_mp4_atom_drops() {
    let (lib, _, id, record) = ingest_generated_wav(48_000, 1.0);
    let r = &record.renditions[0];
    let dir = lib.layout().track_dir(&id).join(&r.dir);
    let init = std::fs::read(dir.join(&r.init)).unwrap();
    let segment = std::fs::read(dir.join(segue::store::layout::segment_name(0))).unwrap();
    strict_init(&init, "as written");
    strict_segment(&segment, "as written");
    let fails = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();

    let mut trailing = init.clone();
    trailing.push(0);
    assert!(fails(&|| drop(strict_init(&trailing, "a trailing byte"))));
    let mut trailing = segment.clone();
    trailing.extend_from_slice(b"\0\0\0\x08free");
    assert!(fails(&|| drop(strict_segment(&trailing, "a trailing box"))));

    // An 8-byte box of a type mp4-atom does not know, last in `moov` (the last top-level box):
    // mp4-atom skips it with a warning, so it is missing when `moov` is written again.
    let moov_at = usize::try_from(u32::from_be_bytes(init[..4].try_into().unwrap())).unwrap();
    let mut unknown = init.clone();
    let moov_size = u32::from_be_bytes(unknown[moov_at..moov_at + 4].try_into().unwrap());
    unknown[moov_at..moov_at + 4].copy_from_slice(&(moov_size + 8).to_be_bytes());
    unknown.extend_from_slice(b"\0\0\0\x08xtra");
    assert!(fails(&|| drop(strict_init(&unknown, "an unknown box"))));
}
