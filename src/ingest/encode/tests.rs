//! Unit tests of the AAC encoder wrapper.

use super::*;

fn encode_sine(config: EncoderConfig, seconds: u32) -> (EncoderInfo, Vec<Vec<u8>>) {
    let mut enc = AacEncoder::new(config).unwrap();
    let n = (config.sample_rate * seconds) as usize;
    let pcm: Vec<i16> = (0..n)
        .flat_map(|i| {
            let v = ((i as f32 * 440.0 * std::f32::consts::TAU / config.sample_rate as f32).sin()
                * 8000.0) as i16;
            [v, v]
        })
        .collect();
    let mut frames = Vec::new();
    enc.encode(&pcm, |f| frames.push(f.to_vec())).unwrap();
    enc.flush(|f| frames.push(f.to_vec())).unwrap();
    (enc.info().clone(), frames)
}

#[test]
fn lc_encoder_reports_frame_and_delay_and_emits_every_frame() {
    let config = EncoderConfig {
        profile: AacProfile::AacLc,
        bitrate: 128_000,
        sample_rate: 48_000,
        afterburner: true,
    };
    let (info, frames) = encode_sine(config, 1);
    assert_eq!(info.frame_length, 1024);
    assert!(info.delay > 0 && info.delay < 4096, "delay {}", info.delay);
    assert_eq!(info.audio_specific_config[0] >> 3, 2, "ASC names AAC-LC");
    let covered = frames.len() as u32 * info.frame_length;
    assert!(
        covered >= 48_000 + info.delay,
        "frames cover input plus delay: {covered}"
    );
}

#[test]
fn he_aac_signals_sbr_explicitly() {
    let config = EncoderConfig {
        profile: AacProfile::HeAac,
        bitrate: 64_000,
        sample_rate: 44_100,
        afterburner: true,
    };
    let (info, frames) = encode_sine(config, 1);
    assert_eq!(info.frame_length, 2048);
    assert_eq!(
        info.audio_specific_config[0] >> 3,
        5,
        "ASC names SBR: {:02x?}",
        info.audio_specific_config
    );
    assert!(!frames.is_empty());
}

/// `n` samples per channel of interleaved stereo: 440 Hz left, 660 Hz right.
fn two_tones(n: usize, rate: u32) -> Vec<i16> {
    (0..n)
        .flat_map(|i| {
            let t = i as f32 * std::f32::consts::TAU / rate as f32;
            [
                ((t * 440.0).sin() * 8000.0) as i16,
                ((t * 660.0).sin() * 6000.0) as i16,
            ]
        })
        .collect()
}

/// Encodes `pcm` handing it to the encoder `chunk` interleaved samples at a time.
fn encode_chunked(config: EncoderConfig, pcm: &[i16], chunk: usize) -> Vec<Vec<u8>> {
    let mut enc = AacEncoder::new(config).unwrap();
    let mut frames = Vec::new();
    for part in pcm.chunks(chunk) {
        enc.encode(part, |f| frames.push(f.to_vec())).unwrap();
    }
    enc.flush(|f| frames.push(f.to_vec())).unwrap();
    frames
}

#[test]
fn he_aac_v2_takes_input_in_any_chunk_size() {
    let config = EncoderConfig {
        profile: AacProfile::HeAacV2,
        bitrate: 32_000,
        sample_rate: 44_100,
        afterburner: true,
    };
    let pcm = two_tones(44_100 + 777, 44_100);
    let whole = encode_chunked(config, &pcm, pcm.len());
    for chunk in [2, 1000, 2 * 1152, 4095 * 2, 4096 * 2] {
        assert_eq!(
            encode_chunked(config, &pcm, chunk),
            whole,
            "chunks of {chunk} samples"
        );
    }
}

#[test]
fn unsupported_rate_is_a_clear_error() {
    let config = EncoderConfig {
        profile: AacProfile::HeAac,
        bitrate: 64_000,
        sample_rate: 12_345,
        afterburner: true,
    };
    let err = AacEncoder::new(config)
        .err()
        .expect("12345 Hz must be refused");
    assert!(err.to_string().contains("he-aac"), "{err}");
}

/// What fdk makes of `pcm` handed over in one call and flushed by fdk itself
/// (`numInSamples == -1`): how segue drove it before it fed whole frames.
fn encode_with_fdk_flush(config: EncoderConfig, pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc = AacEncoder::new(config).unwrap();
    let mut frames = Vec::new();
    let mut rest = pcm;
    loop {
        let num_in = if rest.is_empty() {
            -1
        } else {
            rest.len() as c_int
        };
        let (code, out_args) = enc.raw_encode(rest, num_in);
        if code == sys::AACENC_ERROR_AACENC_ENCODE_EOF {
            return frames;
        }
        assert_eq!(code, sys::AACENC_ERROR_AACENC_OK);
        rest = &rest[out_args.numInSamples as usize..];
        if out_args.numOutBytes > 0 {
            frames.push(enc.out_buf[..out_args.numOutBytes as usize].to_vec());
        }
    }
}

#[test]
fn lc_and_he_aac_bytes_match_fdks_own_flush() {
    for (profile, bitrate) in [(AacProfile::AacLc, 128_000), (AacProfile::HeAac, 64_000)] {
        for rate in [44_100, 48_000] {
            let config = EncoderConfig {
                profile,
                bitrate,
                sample_rate: rate,
                afterburner: true,
            };
            for n in [rate as usize, rate as usize + 777, 2048 * 10] {
                let pcm = two_tones(n, rate);
                assert_eq!(
                    encode_chunked(config, &pcm, 1000),
                    encode_with_fdk_flush(config, &pcm),
                    "{profile} at {rate} Hz, {n} samples"
                );
            }
        }
    }
}
