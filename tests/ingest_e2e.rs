//! End to end: generated files of every supported format go through `segue ingest` (the real
//! binary), and ffmpeg/ffprobe check what it wrote.

mod common;

use std::path::PathBuf;

use common::*;
use segue::store::layout;

struct Case {
    name: &'static str,
    rate: u32,
    channels: u32,
    args: &'static [&'static str],
    /// Whether the file tells its exact length (lossless, or lossy with gapless info: LAME
    /// header, MP4 edit list, Ogg granule positions). ADTS carries none, so its decode keeps the
    /// source encoder's priming and padding.
    exact: bool,
}

const SECONDS: f64 = 2.5;

const CASES: &[Case] = &[
    Case {
        name: "pcm16.wav",
        rate: 48_000,
        channels: 2,
        args: &["-c:a", "pcm_s16le"],
        exact: true,
    },
    Case {
        name: "pcm24.wav",
        rate: 44_100,
        channels: 2,
        args: &["-c:a", "pcm_s24le"],
        exact: true,
    },
    Case {
        name: "pcm.aiff",
        rate: 44_100,
        channels: 2,
        args: &["-c:a", "pcm_s16be"],
        exact: true,
    },
    Case {
        name: "cd.flac",
        rate: 44_100,
        channels: 2,
        args: &["-c:a", "flac", "-sample_fmt", "s16"],
        exact: true,
    },
    Case {
        name: "hires.flac",
        rate: 96_000,
        channels: 2,
        args: &["-c:a", "flac", "-sample_fmt", "s32"],
        exact: true,
    },
    Case {
        name: "ultra.flac",
        rate: 192_000,
        channels: 2,
        args: &["-c:a", "flac", "-sample_fmt", "s32"],
        exact: true,
    },
    Case {
        name: "surround.flac",
        rate: 48_000,
        channels: 6,
        args: &["-c:a", "flac"],
        exact: true,
    },
    Case {
        name: "mono.wav",
        rate: 22_050,
        channels: 1,
        args: &["-c:a", "pcm_s16le"],
        exact: true,
    },
    Case {
        name: "alac.m4a",
        rate: 44_100,
        channels: 2,
        args: &["-c:a", "alac"],
        exact: true,
    },
    Case {
        name: "lame.mp3",
        rate: 44_100,
        channels: 2,
        args: &["-c:a", "libmp3lame", "-b:a", "192k"],
        exact: true,
    },
    Case {
        name: "vorbis.ogg",
        rate: 48_000,
        channels: 2,
        args: &["-c:a", "libvorbis", "-q:a", "5"],
        exact: true,
    },
    Case {
        name: "aac.m4a",
        rate: 44_100,
        channels: 2,
        args: &["-c:a", "aac", "-b:a", "192k"],
        exact: true,
    },
    Case {
        name: "adts.aac",
        rate: 48_000,
        channels: 2,
        args: &["-c:a", "aac", "-b:a", "160k", "-f", "adts"],
        exact: false,
    },
];

fn expected_output_rate(rate: u32) -> u32 {
    if rate == 44_100 || rate == 48_000 {
        rate
    } else if rate % 11_025 == 0 {
        44_100
    } else {
        48_000
    }
}

/// Counts the samples ffmpeg decodes from `input` (per channel).
fn ffmpeg_sample_count(input: &str) -> usize {
    decode_f32(&[], input).len() / 2
}

fn ffprobe_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&run_tool("ffprobe", &[&["-of", "json"], args].concat())).unwrap()
}

#[test]
fn every_input_format_ingests_sample_exact_and_decodes_with_ffmpeg() {
    let lib = TempLibrary::new();
    let inputs: Vec<PathBuf> = CASES
        .iter()
        .map(|c| make_input(&lib.inputs(), c.name, c.rate, SECONDS, c.channels, c.args))
        .collect();
    let refs: Vec<&std::path::Path> = inputs.iter().map(PathBuf::as_path).collect();
    let (code, lines) = ingest_json(&lib.library(), &["--jobs", "2"], &refs);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.len(), CASES.len());
    for case in CASES {
        // With --jobs the lines come in completion order: match them by file.
        let line = lines
            .iter()
            .find(|l| l["file"].as_str().unwrap().ends_with(case.name))
            .unwrap_or_else(|| panic!("no report for {}", case.name));
        assert_eq!(line["status"], "ok", "{}: {line}", case.name);
        let id = line["id"].as_str().unwrap();
        let record = lib.record(id);
        let out_rate = expected_output_rate(case.rate);
        assert_eq!(record.sample_rate, out_rate, "{}", case.name);
        // What the source holds: the generated length where the file records it, else what
        // ffmpeg decodes from it.
        let source_samples = if case.exact {
            (SECONDS * f64::from(case.rate)) as usize
        } else {
            ffmpeg_sample_count(&lib.inputs().join(case.name).to_string_lossy())
        };
        let expected = (source_samples as u64 * u64::from(out_rate)).div_ceil(u64::from(case.rate));
        assert_eq!(
            record.gapless.valid_samples, expected,
            "{}: valid samples",
            case.name
        );
        assert_eq!(
            record.source.samples, source_samples as u64,
            "{}: source samples",
            case.name
        );

        // Every rendition decodes through its HLS media playlist to the whole timeline.
        let track_dir = lib.layout().track_dir(id);
        let total = record.gapless.total_samples() as usize;
        assert_eq!(record.segment_durations.iter().sum::<u64>() as usize, total);
        for r in &record.renditions {
            let playlist = track_dir.join(&r.dir).join(&r.playlist);
            let decoded = ffmpeg_sample_count(&playlist.to_string_lossy());
            assert!(
                decoded == total || decoded == record.gapless.valid_samples as usize,
                "{} {}: ffmpeg decoded {decoded} samples, timeline {total}, valid {}",
                case.name,
                r.id,
                record.gapless.valid_samples
            );
        }
    }
}

#[test]
fn renditions_have_exact_codecs_and_aligned_segments() {
    let (lib, _, id, record) = ingest_generated_wav(48_000, 9.0);
    let track_dir = lib.layout().track_dir(&id);
    assert_eq!(
        record
            .renditions
            .iter()
            .map(|r| (r.codec.as_str(), r.bitrate))
            .collect::<Vec<_>>(),
        vec![
            ("mp4a.40.5", 64_000),
            ("mp4a.40.2", 128_000),
            ("mp4a.40.2", 256_000)
        ]
    );
    // First segment about a second, the rest at most 4 s, none empty.
    let rate = f64::from(record.sample_rate);
    let first = record.segment_durations[0] as f64 / rate;
    assert!((0.5..=1.0).contains(&first), "first segment {first} s");
    assert!(
        record
            .segment_durations
            .iter()
            .all(|&d| d > 0 && d as f64 / rate <= 4.0)
    );

    let mut starts_per_rendition = Vec::new();
    for r in &record.renditions {
        let dir = track_dir.join(&r.dir);
        let probe = ffprobe_json(&["-show_streams", &dir.join(&r.playlist).to_string_lossy()]);
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "aac");
        let profile = if r.codec == "mp4a.40.5" {
            "HE-AAC"
        } else {
            "LC"
        };
        assert_eq!(stream["profile"], profile, "{}", r.id);
        assert_eq!(stream["channels"], 2);
        assert_eq!(stream["sample_rate"], "48000");
        // Packet timestamps of each segment, read by ffprobe from the segment itself.
        let mut starts = Vec::new();
        for (i, _) in record.segment_durations.iter().enumerate() {
            let mut file = std::fs::read(dir.join(&r.init)).unwrap();
            file.extend(std::fs::read(dir.join(layout::segment_name(i))).unwrap());
            let tmp = lib.dir.path().join(format!("{}-{i}.mp4", r.id));
            std::fs::write(&tmp, file).unwrap();
            let probe = ffprobe_json(&[
                "-show_packets",
                "-show_entries",
                "packet=dts",
                &tmp.to_string_lossy(),
            ]);
            let packets = probe["packets"].as_array().unwrap();
            let frame = if r.codec == "mp4a.40.5" { 2048 } else { 1024 };
            assert_eq!(
                packets.len() as u64 * frame,
                record.segment_durations[i],
                "{} segment {i} duration",
                r.id
            );
            starts.push(packets[0]["dts"].as_i64().unwrap());
        }
        starts_per_rendition.push(starts);
    }
    assert!(
        starts_per_rendition.windows(2).all(|w| w[0] == w[1]),
        "segment starts differ: {starts_per_rendition:?}"
    );
}
