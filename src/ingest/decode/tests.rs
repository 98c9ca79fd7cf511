//! Behaviour of [`SourceDecoder`] on real files made by ffmpeg, and the helpers that make them.

use super::*;
use std::path::PathBuf;

pub(super) const SINE: &str = "-f lavfi -i sine=frequency=440:sample_rate=44100:duration=1";
/// Unlike a sine, a chirp cannot hide a wrong delay behind its period.
pub(super) const CHIRP: &str = "-f lavfi -i aevalsrc=0.5*sin(2*PI*(200*t+900*t*t)):s=44100:d=1.3";
const TAGS: &str = "-metadata title=Song -metadata artist=Someone -metadata album=Record \
                    -metadata track=3/12 -metadata date=2024";

/// Runs ffmpeg with `args` (split on whitespace) then `extra`, writing `dir/name`.
pub(super) fn ffmpeg(dir: &Path, name: &str, args: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"])
        .args(args.split_whitespace())
        .args(extra)
        .arg(&path);
    assert!(cmd.status().unwrap().success(), "ffmpeg failed for {name}");
    path
}

pub(super) fn decode_with(
    path: &Path,
    opts: &DecodeOptions,
) -> Result<(SourceInfo, Vec<f32>), DecodeError> {
    let mut decoder = SourceDecoder::open(path, opts)?;
    let mut pcm = Vec::new();
    while let Some(chunk) = decoder.next_chunk()? {
        pcm.extend_from_slice(chunk);
    }
    assert_eq!(decoder.frames_decoded(), pcm.len() as u64 / 2);
    Ok((decoder.info().clone(), pcm))
}

pub(super) fn decode(path: &Path) -> (SourceInfo, Vec<f32>) {
    decode_with(path, &DecodeOptions::default()).unwrap()
}

/// The offset in -1200..1200 frames at which `got` best matches `want` (left channel).
pub(super) fn best_lag(want: &[f32], got: &[f32]) -> i64 {
    let at = |pcm: &[f32], i: i64| f64::from(pcm.get(i as usize * 2).copied().unwrap_or(0.0));
    let err = |lag| {
        (10_000..14_000)
            .map(|i| (at(want, i) - at(got, i + lag)).powi(2))
            .sum::<f64>()
    };
    (-1200..1200)
        .min_by(|&a, &b| err(a).total_cmp(&err(b)))
        .unwrap()
}

#[test]
fn lossless_sources_decode_sample_exact() {
    let dir = tempfile::tempdir().unwrap();
    let wav = ffmpeg(dir.path(), "a.wav", &format!("{SINE} -ac 2"), &[]);
    let (info, reference) = decode(&wav);
    assert_eq!(
        (info.codec.as_str(), info.bits_per_sample),
        ("pcm_s16le", Some(16))
    );
    let input = format!("-i {}", wav.display());
    for (name, args, container, codec, bits) in [
        (
            "a.flac",
            "-c:a flac -sample_fmt s32",
            "flac",
            "flac",
            Some(24),
        ),
        ("a.aiff", "", "aiff", "pcm_s16be", Some(16)),
        ("a.m4a", "-c:a alac", "mp4", "alac", None),
    ] {
        let (info, pcm) = decode(&ffmpeg(dir.path(), name, &format!("{input} {args}"), &[]));
        assert_eq!(
            (info.container.as_str(), info.codec.as_str()),
            (container, codec)
        );
        assert_eq!(
            (info.sample_rate, info.channels, info.bits_per_sample),
            (44100, 2, bits)
        );
        assert_eq!(
            (info.total_frames, pcm.len()),
            (Some(44100), 2 * 44100),
            "{name}"
        );
        assert!(pcm == reference, "{name} differs from the source");
    }
}

#[test]
fn lossy_sources_are_trimmed_to_the_exact_source_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = decode(&ffmpeg(dir.path(), "a.wav", CHIRP, &[]));
    assert_eq!(reference.len(), 2 * 57330);
    // MP3 (LAME header), AAC in MP4 (edit list), Vorbis (granules): exact length, no offset.
    for (name, codec) in [
        ("a.mp3", "libmp3lame"),
        ("a.m4a", "aac"),
        ("a.ogg", "libvorbis"),
    ] {
        let (info, pcm) = decode(&ffmpeg(dir.path(), name, CHIRP, &["-c:a", codec]));
        assert_eq!(
            (info.total_frames, pcm.len()),
            (Some(57330), reference.len()),
            "{name}"
        );
        assert_eq!(best_lag(&reference, &pcm), 0, "{name}");
    }
    // ADTS carries no delay: the encoder's 1024 priming frames and the padding remain.
    let (info, pcm) = decode(&ffmpeg(dir.path(), "a.aac", CHIRP, &["-c:a", "aac"]));
    assert_eq!((info.container.as_str(), pcm.len() / 2), ("adts", 58368));
    assert_eq!(best_lag(&reference, &pcm), 1024);
}

#[test]
fn aac_above_65535_hz_in_mp4_takes_its_rate_from_the_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let tone = "-f lavfi -i sine=sample_rate=96000:duration=0.5 -c:a aac";
    let (info, pcm) = decode(&ffmpeg(dir.path(), "hi.m4a", tone, &[]));
    assert_eq!((info.sample_rate, pcm.len()), (96000, 2 * 48000));
}

#[test]
fn tags_are_read_from_every_container() {
    let dir = tempfile::tempdir().unwrap();
    let want = Tags {
        title: Some("Song".into()),
        artist: Some("Someone".into()),
        album: Some("Record".into()),
        track_number: Some(3),
        year: Some(2024),
    };
    for (name, codec) in [
        ("t.flac", "flac"),
        ("t.mp3", "libmp3lame"),
        ("t.m4a", "aac"),
        ("t.ogg", "libvorbis"),
    ] {
        let path = ffmpeg(
            dir.path(),
            name,
            &format!("{SINE} {TAGS} -c:a {codec}"),
            &[],
        );
        let decoder = SourceDecoder::open(&path, &DecodeOptions::default()).unwrap();
        assert_eq!(decoder.tags(), &want, "{name}");
    }
}

#[test]
fn front_cover_is_extracted_from_mp3() {
    let dir = tempfile::tempdir().unwrap();
    let png = ffmpeg(
        dir.path(),
        "cover.png",
        "-f lavfi -i color=red:s=16x16 -frames:v 1",
        &[],
    );
    let wav = ffmpeg(dir.path(), "in.wav", SINE, &[]);
    let args = format!(
        "-i {} -i {} -map 0 -map 1 -c:a libmp3lame -id3v2_version 3",
        wav.display(),
        png.display()
    );
    let mp3 = ffmpeg(
        dir.path(),
        "c.mp3",
        &args,
        &["-metadata:s:v", "comment=Cover (front)"],
    );
    let decoder = SourceDecoder::open(&mp3, &DecodeOptions::default()).unwrap();
    let cover = decoder.cover().expect("cover art");
    assert_eq!(cover.media_type, "image/png");
    assert_eq!(cover.data, std::fs::read(&png).unwrap());
}

#[test]
fn channels_are_mixed_to_stereo_without_clipping() {
    let dir = tempfile::tempdir().unwrap();
    // Six near-full-scale channels: a plain sum would reach 3.4.
    let tone = "-f lavfi -i aevalsrc=0.99*sin(2*PI*440*t):s=44100:d=0.5:c=5.1 -c:a flac";
    let (info, pcm) = decode(&ffmpeg(dir.path(), "six.flac", tone, &[]));
    assert_eq!((info.channels, pcm.len()), (6, 2 * 22050));
    let peak = pcm.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.98 && peak <= 0.99 + 1e-4, "peak {peak}");
    assert!(pcm.chunks_exact(2).all(|f| (f[0] - f[1]).abs() < 1e-6));

    // Mono is duplicated at full level (the sine source has amplitude 1/8).
    let (info, pcm) = decode(&ffmpeg(dir.path(), "m.wav", &format!("{SINE} -ac 1"), &[]));
    assert_eq!((info.channels, pcm.len()), (1, 2 * 44100));
    assert!(pcm.chunks_exact(2).all(|f| f[0] == f[1]));
    assert!((pcm.iter().fold(0f32, |m, s| m.max(s.abs())) - 0.125).abs() < 1e-3);
}

/// A 44-byte PCM WAV header (plus 400 bytes of data) claiming `channels` and `rate`.
pub(super) fn wav_header(channels: u16, rate: u32) -> Vec<u8> {
    let mut h = [
        &b"RIFF"[..],
        &436u32.to_le_bytes(),
        b"WAVEfmt ",
        &16u32.to_le_bytes(),
    ]
    .concat();
    h.extend([1, channels].iter().flat_map(|v: &u16| v.to_le_bytes()));
    h.extend(
        [rate, rate.wrapping_mul(u32::from(channels) * 2)]
            .iter()
            .flat_map(|v| v.to_le_bytes()),
    );
    h.extend(
        [channels.wrapping_mul(2), 16]
            .iter()
            .flat_map(|v| v.to_le_bytes()),
    );
    h.extend([&b"data"[..], &400u32.to_le_bytes(), &[0; 400]].concat());
    h
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let flac = std::fs::read(ffmpeg(dir.path(), "full.flac", SINE, &[])).unwrap();
    let mut next = noise(0x1234_5678);
    let noise = (0..100_000).map(|_| next());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.mp3", vec![]),
        ("text.mp3", b"this is not audio\n".repeat(50)),
        ("noise.mp3", noise.collect()),
        ("half.flac", flac[..flac.len() / 2].to_vec()),
        ("tenth.flac", flac[..flac.len() / 10].to_vec()),
        ("rate.wav", wav_header(2, 4_000_000_000)),
        ("channels.wav", wav_header(65535, 44100)),
        ("channels1000.wav", wav_header(1000, 44100)),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = decode_with(&path, &DecodeOptions::default()).expect_err(name);
        let expected = match name {
            "empty.mp3" => matches!(err, DecodeError::Empty),
            "text.mp3" | "noise.mp3" => matches!(err, DecodeError::UnrecognizedFormat),
            "half.flac" | "tenth.flac" => matches!(err, DecodeError::Malformed(_)),
            "rate.wav" => err.to_string().contains("4000000000 Hz is outside"),
            // Rejected by the header check before symphonia's u16 math can overflow.
            _ => matches!(&err, DecodeError::Limit(m) if m.contains("channel count")),
        };
        assert!(expected, "{name}: {err:?}");
    }
    // A WAV cut short is read to its end, as ffmpeg reads it (iff_repair.rs).
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &wav_header(2, 44100)[..60]).unwrap();
    assert_eq!(
        decode_with(&cut, &DecodeOptions::default())
            .unwrap()
            .1
            .len(),
        8
    );
    let missing = SourceDecoder::open(&dir.path().join("missing.flac"), &Default::default());
    assert!(matches!(missing, Err(DecodeError::Io(_))));
}

#[test]
fn limits_from_options_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let wav = ffmpeg(dir.path(), "a.wav", &format!("{SINE} -ac 2"), &[]);
    let defaults = DecodeOptions::default();
    for (options, needle) in [
        (
            DecodeOptions {
                max_channels: 1,
                ..defaults
            },
            "channel count 2",
        ),
        (
            DecodeOptions {
                min_sample_rate: 48_000,
                ..defaults
            },
            "44100 Hz",
        ),
        (
            DecodeOptions {
                max_duration_seconds: 0,
                ..defaults
            },
            "limit of 0 s",
        ),
    ] {
        match SourceDecoder::open(&wav, &options) {
            Err(DecodeError::Limit(msg)) => assert!(msg.contains(needle), "{msg}"),
            other => panic!("expected a limit error, got {:?}", other.err()),
        }
    }
}

#[test]
fn a_corrupt_packet_mid_file_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = ffmpeg(dir.path(), "a.mp3", SINE, &["-c:a", "libmp3lame"]);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 300].fill(0x55);
    std::fs::write(&path, bytes).unwrap();
    let (_, pcm) = decode(&path);
    assert!(
        (pcm.len() / 2).abs_diff(44100) <= 3 * 1152,
        "{} frames",
        pcm.len() / 2
    );
}

/// A deterministic stream of noise bytes (xorshift32 from `seed`), for corrupt inputs.
pub(super) fn noise(mut seed: u32) -> impl FnMut() -> u8 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as u8
    }
}

/// Frames (samples per channel) ffmpeg decodes from `path`, with its gapless handling.
pub(super) fn ffmpeg_frames(path: &Path) -> u64 {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            "-f",
            "s16le",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg cannot decode {path:?}");
    out.stdout.len() as u64 / 2
}

/// Interleaved `f32` as ffmpeg decodes `path` at its own rate, with output options `args`
/// (for example `-ac 1`).
pub(super) fn ffmpeg_f32(path: &Path, args: &[&str]) -> Vec<f32> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(args)
        .args(["-f", "f32le", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg cannot decode {path:?}");
    let samples = out.stdout.chunks_exact(4);
    samples
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn mp3_is_trimmed_only_as_its_lame_tag_states() {
    let dir = tempfile::tempdir().unwrap();
    // Loud noise then a quiet tone: the first frames are large, so symphonia's estimate of the
    // frame count from their mean size is far too low. Its estimate must not cut the file.
    let vbr_input = "-f lavfi -i anoisesrc=d=1:c=white:r=44100:a=0.5 \
                     -f lavfi -i sine=f=440:r=44100:d=5 \
                     -filter_complex [1]volume=0.01[q];[0][q]concat=n=2:v=0:a=1 -ac 2";
    let cases = [
        ("vbr-no-xing.mp3", vbr_input, "-q:a 2 -write_xing 0"),
        ("cbr-no-xing.mp3", CHIRP, "-b:a 128k -write_xing 0"),
        ("vbr-lame.mp3", vbr_input, "-q:a 2"),
        ("cbr-lame.mp3", CHIRP, "-b:a 128k"),
    ];
    let mut made = Vec::new();
    for (name, input, codec) in cases {
        let args = format!("{input} -c:a libmp3lame {codec} -id3v2_version 0");
        made.push(ffmpeg(dir.path(), name, &args, &[]));
    }
    // Two files joined (as MP3 joiners do): the first one's LAME tag is no end for the whole.
    let joined = dir.path().join("joined.mp3");
    let [first, second] = [&made[2], &made[0]].map(|p| std::fs::read(p).unwrap());
    std::fs::write(&joined, [first, second].concat()).unwrap();
    made.push(joined);
    for path in made {
        let (_, pcm) = decode(&path);
        assert_eq!(pcm.len() as u64 / 2, ffmpeg_frames(&path), "{path:?}");
    }
}
