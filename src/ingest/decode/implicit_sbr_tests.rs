//! HE-AAC with implicit signalling: ADTS files whose headers state AAC-LC at the core rate.

use super::tests::{best_lag, decode, ffmpeg, ffmpeg_f32, ffmpeg_frames};
use crate::ingest::encode::{AacEncoder, AacProfile, EncoderConfig, f32_to_i16};

/// Access units of a 440 Hz tone (1 s, stereo) from segue's encoder.
fn encode(profile: AacProfile, sample_rate: u32) -> Vec<Vec<u8>> {
    let config = EncoderConfig {
        profile,
        bitrate: 64_000,
        sample_rate,
        afterburner: false,
    };
    let pcm: Vec<f32> = (0..sample_rate as usize)
        .flat_map(|i| {
            let s = (0.5
                * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(sample_rate)).sin())
                as f32;
            [s, s]
        })
        .collect();
    let mut encoder = AacEncoder::new(config).unwrap();
    let (mut units, mut pcm16) = (Vec::new(), Vec::new());
    f32_to_i16(&pcm, &mut pcm16);
    encoder
        .encode(&pcm16, |au| units.push(au.to_vec()))
        .unwrap();
    encoder.flush(|au| units.push(au.to_vec())).unwrap();
    units
}

/// `units` in ADTS frames (ISO/IEC 14496-3 1.A.2) that state AAC-LC, stereo, at sampling
/// frequency index `sfi`.
fn adts(units: &[Vec<u8>], sfi: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for unit in units {
        let len = unit.len() + 7;
        out.extend([
            0xff,
            0xf1,
            (1 << 6) | (sfi << 2),
            (2 << 6) | ((len >> 11) & 3) as u8,
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1f,
            0xfc,
        ]);
        out.extend_from_slice(unit);
    }
    out
}

#[test]
fn implicit_sbr_decodes_at_the_sbr_rate_as_ffmpeg_does() {
    let dir = tempfile::tempdir().unwrap();
    // HE-AAC from segue's encoder at 44.1 kHz in ADTS headers stating AAC-LC at 22.05 kHz
    // (index 7), and plain AAC-LC at 22.05 kHz, which must stay at its rate.
    for (name, profile, rate, want_rate) in [
        ("he", AacProfile::HeAac, 44100, 44100),
        ("lc", AacProfile::AacLc, 22050, 22050),
    ] {
        let aac = dir.path().join(format!("{name}.aac"));
        std::fs::write(&aac, adts(&encode(profile, rate), 7)).unwrap();
        // The same stream in MP4, whose AudioSpecificConfig ffmpeg copies from the ADTS header.
        let input = format!("-i {} -c:a copy", aac.display());
        let m4a = ffmpeg(dir.path(), &format!("{name}.m4a"), &input, &[]);
        for path in [aac, m4a] {
            let (info, pcm) = decode(&path);
            assert_eq!(
                (info.sample_rate, info.channels),
                (want_rate, 2),
                "{path:?}"
            );
            assert_eq!(pcm.len() as u64 / 2, ffmpeg_frames(&path), "{path:?}");
            // In step with ffmpeg's decode and close to it (fdk-aac's SBR is another
            // implementation: an RMS difference of 1e-4 against a tone of amplitude 0.5).
            let want = ffmpeg_f32(&path, &[]);
            assert_eq!(best_lag(&want, &pcm), 0, "{path:?}");
            let squares = pcm.iter().zip(&want).map(|(a, b)| f64::from(a - b).powi(2));
            let rms = (squares.sum::<f64>() / pcm.len() as f64).sqrt();
            assert!(rms < 5e-4, "{path:?}: RMS difference {rms}");
        }
    }
}
