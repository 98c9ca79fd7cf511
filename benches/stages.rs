//! One criterion benchmark per ingest stage, on 10 s of a synthesized stereo signal, so the
//! stages' CPU costs can be compared with each other and with the whole pipeline
//! (`benches/compare_ffmpeg.sh`). Throughput is reported in input samples (frames).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use segue::ingest::analyze::{LoudnessMeter, WaveformBuilder};
use segue::ingest::decode::{DecodeOptions, SourceDecoder};
use segue::ingest::encode::{AacEncoder, AacProfile, EncoderConfig, f32_to_i16};
use segue::ingest::fmp4::write_media_segment;
use segue::ingest::resample::Resampler;
use segue::ingest::segment::{SegmentPlan, Segmenter};
use segue::units::Timescale;

const SECONDS: usize = 10;

fn signal(rate: usize) -> Vec<f32> {
    (0..rate * SECONDS)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            let l = 0.3 * (std::f32::consts::TAU * 220.0 * t).sin()
                + 0.1 * (std::f32::consts::TAU * 3520.0 * t).sin();
            let r = 0.3 * (std::f32::consts::TAU * 277.0 * t).sin()
                + 0.1 * (std::f32::consts::TAU * 1760.0 * t).sin();
            [l, r]
        })
        .collect()
}

fn flac_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("bench.flac");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "sine=frequency=220:sample_rate=44100:duration={SECONDS}"
        ))
        .args(["-ac", "2", "-c:a", "flac"])
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    path
}

fn stages(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("stage");
    group.sample_size(10);
    group.throughput(Throughput::Elements((44_100 * SECONDS) as u64));

    let flac = flac_file(tmp.path());
    group.bench_function("decode_flac_44k", |b| {
        b.iter(|| {
            let mut d = SourceDecoder::open(&flac, &DecodeOptions::default()).unwrap();
            while let Some(chunk) = d.next_chunk().unwrap() {
                black_box(chunk);
            }
        })
    });

    let pcm96 = signal(96_000);
    group.throughput(Throughput::Elements((96_000 * SECONDS) as u64));
    group.bench_function("resample_96k_to_48k", |b| {
        b.iter(|| {
            let mut r = Resampler::new(96_000, 48_000).unwrap();
            let mut out = Vec::new();
            for chunk in pcm96.chunks(8192) {
                r.process(chunk, &mut out).unwrap();
                out.clear();
            }
            r.finish(&mut out).unwrap();
        })
    });

    let pcm = signal(48_000);
    group.throughput(Throughput::Elements((48_000 * SECONDS) as u64));
    group.bench_function("loudness_r128_true_peak", |b| {
        b.iter(|| {
            let mut m = LoudnessMeter::new(48_000).unwrap();
            for chunk in pcm.chunks(8192) {
                m.push(chunk).unwrap();
            }
            black_box(m.finish().unwrap());
        })
    });
    group.bench_function("waveform_peaks", |b| {
        b.iter(|| {
            let mut w = WaveformBuilder::new(48_000, 2000);
            for chunk in pcm.chunks(8192) {
                w.push(chunk);
            }
            black_box(w.finish());
        })
    });
    let mut ints = Vec::new();
    f32_to_i16(&pcm, &mut ints);
    for (profile, bitrate) in [
        (AacProfile::HeAac, 64_000),
        (AacProfile::AacLc, 128_000),
        (AacProfile::AacLc, 256_000),
    ] {
        for afterburner in [true, false] {
            let name = format!(
                "encode_{}_{}k{}",
                profile,
                bitrate / 1000,
                if afterburner { "_afterburner" } else { "" }
            );
            group.bench_function(name, |b| {
                b.iter(|| {
                    let config = EncoderConfig {
                        profile,
                        bitrate,
                        sample_rate: 48_000,
                        afterburner,
                    };
                    let mut e = AacEncoder::new(config).unwrap();
                    let mut bytes = 0;
                    for chunk in ints.chunks(8192) {
                        e.encode(chunk, |au| bytes += au.len()).unwrap();
                    }
                    e.flush(|au| bytes += au.len()).unwrap();
                    black_box(bytes);
                })
            });
        }
    }
    // Segmenting and fMP4 writing of 10 s of 128 kbit/s access units.
    let au = vec![0x5au8; 380];
    group.bench_function("segment_and_fmp4", |b| {
        b.iter(|| {
            let plan = SegmentPlan::new(Timescale(48_000), 1.0, 4.0);
            let mut s = Segmenter::new(plan, 1024, (48_000 * SECONDS) as u64 / 2048 * 2048);
            let mut bytes = 0;
            for _ in 0..(48_000 * SECONDS / 1024) {
                if let Some(seg) = s.push(&au) {
                    bytes += write_media_segment(&seg).unwrap().len();
                }
            }
            black_box(bytes);
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
