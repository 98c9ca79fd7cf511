//! Our fMP4 re-parsed by independent parsers: Mozilla's mp4parse (the init segment, as Firefox
//! reads it) and the `mp4` crate (init + every media segment, fragment by fragment).

mod common;

use std::io::Cursor;

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
