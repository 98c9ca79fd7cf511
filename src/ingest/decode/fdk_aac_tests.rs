//! HE-AAC through fdk-aac: the access units segue's own encoder writes decode in step with the
//! source (the encoder's stated delay dropped, nothing more), and bad input is an error.
//! The path through an MP4 file (edit list trim at the SBR rate) is the same as AAC-LC's.

use symphonia::core::audio::GenericAudioBufferRef;
use symphonia::core::codecs::audio::AudioCodecParameters;
use symphonia::core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia::core::codecs::audio::well_known::profiles::{
    CODEC_PROFILE_AAC_HE, CODEC_PROFILE_AAC_HE_V2,
};
use symphonia::core::packet::Packet;
use symphonia::core::units::{Duration, Timestamp};

use super::fdk_aac::{FdkAacDecoder, is_he_aac};
use super::tests::best_lag;
use crate::ingest::encode::{AacEncoder, AacProfile, EncoderConfig, f32_to_i16};

/// Frames of the test chirp (1.3 s at 44.1 kHz, as `tests::CHIRP`).
const FRAMES: usize = 57330;

/// The chirp of `tests::CHIRP` on both channels, interleaved.
fn chirp() -> Vec<f32> {
    (0..FRAMES)
        .flat_map(|i| {
            let t = i as f64 / 44100.0;
            let s = (0.5 * (2.0 * std::f64::consts::PI * (200.0 * t + 900.0 * t * t)).sin()) as f32;
            [s, s]
        })
        .collect()
}

/// Encodes `pcm` with segue's encoder: the access units, the ASC and the encoder delay.
fn encode(profile: AacProfile, bitrate: u32, pcm: &[f32]) -> (Vec<Vec<u8>>, Vec<u8>, usize) {
    let config = EncoderConfig {
        profile,
        bitrate,
        sample_rate: 44100,
        afterburner: false,
    };
    let mut encoder = AacEncoder::new(config).unwrap();
    let (mut units, mut pcm16) = (Vec::new(), Vec::new());
    f32_to_i16(pcm, &mut pcm16);
    encoder
        .encode(&pcm16, |au| units.push(au.to_vec()))
        .unwrap();
    encoder.flush(|au| units.push(au.to_vec())).unwrap();
    let info = encoder.info();
    (
        units,
        info.audio_specific_config.clone(),
        info.delay as usize,
    )
}

fn params(profile: AacProfile, asc: Vec<u8>) -> AudioCodecParameters {
    let mut params = AudioCodecParameters::new();
    let profile = match profile {
        AacProfile::HeAacV2 => CODEC_PROFILE_AAC_HE_V2,
        _ => CODEC_PROFILE_AAC_HE,
    };
    params
        .for_codec(CODEC_ID_AAC)
        .with_profile(profile)
        .with_extra_data(asc.into());
    params
}

fn packet(data: Vec<u8>) -> Packet {
    Packet::new(0, Timestamp::ZERO, Duration::ZERO, data)
}

/// Appends the left channel of `buf` to `out`, as stereo pairs.
fn append(buf: GenericAudioBufferRef<'_>, out: &mut Vec<f32>, rate_channels: &mut (u32, usize)) {
    *rate_channels = (buf.spec().rate(), buf.spec().channels().count());
    let mut planes: Vec<Vec<f32>> = Vec::new();
    buf.copy_to_vecs_planar::<f32>(&mut planes);
    out.extend(planes[0].iter().flat_map(|&s| [s, s]));
}

#[test]
fn he_aac_v1_and_v2_decode_whole_and_in_step_with_the_source() {
    use symphonia::core::codecs::audio::AudioDecoder;
    let source = chirp();
    // The lag left after dropping the encoder's stated delay. That delay is fdk's figure less
    // the one sample by which FFmpeg's SBR decoder leads fdk's (measured in tests/gapless.rs);
    // fdk-aac's decoder shows the same lead for HE-AAC v1 (lag 0) but not with parametric
    // stereo, whose output comes one sample later, exactly at fdk's own figure. FFmpeg decodes
    // segue's v2 rung at lag 0 (tests/he_aac_v2.rs, 44.1 and 48 kHz): its PS decoder leads
    // fdk-aac's by that sample, so the stated delay is right for the players (FFmpeg's decoder
    // is Chromium's and Firefox's) and this lag of 1 is fdk-aac's decoder, not the encoder.
    for (profile, bitrate, lag) in [
        (AacProfile::HeAac, 64_000, 0),
        (AacProfile::HeAacV2, 32_000, 1),
    ] {
        let (units, asc, delay) = encode(profile, bitrate, &source);
        let params = params(profile, asc);
        assert!(is_he_aac(&params));
        let mut decoder = FdkAacDecoder::try_new(&params).unwrap();
        let (mut pcm, mut format) = (Vec::new(), (0, 0));
        for unit in units {
            append(
                decoder.decode(&packet(unit)).unwrap(),
                &mut pcm,
                &mut format,
            );
        }
        // The end of stream: the decoder's own delay line is drained.
        append(
            decoder.decode(&packet(Vec::new())).unwrap(),
            &mut pcm,
            &mut format,
        );
        // PS: a mono core decodes to stereo.
        assert_eq!(format, (44100, 2), "{profile}");
        // The encoder's delay is all the priming: the source is whole, at lag 0.
        assert!(
            pcm.len() / 2 >= delay + FRAMES,
            "{profile}: {} frames",
            pcm.len() / 2
        );
        let pcm = &pcm[2 * delay..2 * (delay + FRAMES)];
        assert_eq!(best_lag(&source, pcm), lag, "{profile}");
    }
}

#[test]
fn corrupt_packets_are_errors_not_panics() {
    use symphonia::core::codecs::audio::AudioDecoder;
    let (units, asc, _) = encode(AacProfile::HeAac, 64_000, &chirp()[..2 * 8192]);
    let mut decoder = FdkAacDecoder::try_new(&params(AacProfile::HeAac, asc)).unwrap();
    let mut noise = super::tests::noise(0x9e37_79b9);
    let mut errors = 0;
    for len in 1..300 {
        let data: Vec<u8> = (0..len).map(|_| noise()).collect();
        errors += usize::from(decoder.decode(&packet(data)).is_err());
    }
    assert!(errors > 0, "random bytes are not HE-AAC");
    // The decoder recovers: a good access unit after the noise decodes.
    let good = units
        .iter()
        .skip(2)
        .take(3)
        .filter(|u| decoder.decode(&packet(u.to_vec())).is_ok());
    assert!(good.count() > 0);
    // An AudioSpecificConfig fdk-aac cannot read is refused.
    assert!(FdkAacDecoder::try_new(&params(AacProfile::HeAac, vec![0xff, 0xff])).is_err());
}

/// Writes `units` as an HE-AAC fMP4 file as segue packages it (init segment, then one media
/// segment), its edit list stating `delay` priming and `FRAMES` valid samples.
fn write_fmp4(
    path: &std::path::Path,
    profile: AacProfile,
    units: &[Vec<u8>],
    asc: Vec<u8>,
    delay: usize,
) {
    use crate::ingest::fmp4::{InitConfig, write_init_segment, write_media_segment};
    use crate::ingest::segment::SegmentData;
    let init = InitConfig {
        sample_rate: 44100,
        channels: 2,
        object_type: profile.object_type(),
        audio_specific_config: asc,
        avg_bitrate: 64_000,
        max_bitrate: 64_000,
        buffer_size: 6144,
        priming: delay as u64,
        valid_samples: FRAMES as u64,
        loudness: None,
    };
    let segment = SegmentData {
        index: 0,
        base_decode_time: 0,
        sample_duration: 2048,
        sample_sizes: units.iter().map(|u| u.len() as u32).collect(),
        data: units.concat(),
    };
    let mut file = write_init_segment(&init).unwrap();
    file.extend(write_media_segment(&segment).unwrap());
    std::fs::write(path, file).unwrap();
}

#[test]
fn he_aac_in_mp4_decodes_to_the_source_length_at_the_sbr_rate() {
    let dir = tempfile::tempdir().unwrap();
    let source = chirp();
    // v2: fdk-aac's decoder is one sample later than FFmpeg's (see the test above).
    for (profile, bitrate, lag) in [
        (AacProfile::HeAac, 64_000, 0),
        (AacProfile::HeAacV2, 32_000, 1),
    ] {
        let (units, asc, delay) = encode(profile, bitrate, &source);
        let path = dir.path().join(format!("{profile}.mp4"));
        write_fmp4(&path, profile, &units, asc, delay);
        let (info, pcm) = super::tests::decode(&path);
        assert_eq!((info.sample_rate, info.channels), (44100, 2), "{profile}");
        // The edit list's length, reached only if the decoder's delay line is drained.
        assert_eq!(
            (info.total_frames, pcm.len() / 2),
            (Some(FRAMES as u64), FRAMES),
            "{profile}"
        );
        assert_eq!(best_lag(&source, &pcm), lag, "{profile}");
    }
}
