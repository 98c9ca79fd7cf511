//! HE-AAC with implicit signalling (ISO/IEC 14496-3 1.6.5.2, "implicit signalling"): the
//! AudioSpecificConfig (or the ADTS header) states plain AAC-LC at the core rate, and the SBR
//! data is only in the access units' fill elements. symphonia's AAC decoder ignores it and
//! decodes the core at half the rate; ffmpeg finds the SBR data in the first frame and outputs at
//! the doubled rate, and so does fdk-aac (`fdk_aac`) when given the core config. So an AAC-LC
//! stream whose core rate could carry SBR (at most 24 kHz, half of 48 kHz: ffmpeg's and the
//! common encoders' range) goes to fdk-aac, which decodes plain LC at the core rate too, with the
//! same sample count as ffmpeg. Faster streams stay with symphonia (no common encoder makes
//! implicit SBR above a 24 kHz core, and fdk-aac's decode costs more).
//!
//! The output rate is known only once a frame is decoded, while `SourceDecoder` fixes its rate on
//! opening: [`probe_rate`] decodes the first access unit with a decoder of its own, thrown away,
//! and hands the packet back to be decoded again by the real one.
//!
//! Upstream report (symphonia-codec-aac 0.6.1): "AAC-LC streams at a core rate of 24 kHz or less
//! that carry SBR data with implicit signalling (ADTS files from HE-AAC encoders, MP4 files whose
//! ASC is plain AAC-LC) decode at the core rate without SBR, where ffmpeg and fdk-aac output the
//! SBR rate. ffmpeg: `ffmpeg -i he-implicit.aac` reports 44100 Hz for an ADTS header at 22050."

use symphonia::core::audio::Channels;
use symphonia::core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder};
use symphonia::core::formats::FormatReader;
use symphonia::core::packet::Packet;

use super::fdk_aac::{FdkAacDecoder, is_he_aac};
use super::types::guard;

/// Sampling frequencies by index (ISO/IEC 14496-3 1.6.3.4, `samplingFrequencyIndex`).
const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The highest core rate (Hz) whose stream is taken to possibly carry implicit SBR.
const MAX_CORE_RATE: u32 = 24000;

/// Packets read while looking for the track's first access unit.
const MAX_PROBE_PACKETS: usize = 64;

/// The core rate (Hz) of plain AAC `params`: its AudioSpecificConfig's, or without one (ADTS)
/// the stated rate; `None` for a config that is not AAC-LC (object type 2).
fn lc_core_rate(params: &AudioCodecParameters) -> Option<u32> {
    let Some(asc) = params.extra_data.as_deref() else {
        return params.sample_rate;
    };
    let [a, b, rest @ ..] = asc else {
        return None;
    };
    // 5 bits object type, 4 bits sampling frequency index (15: an explicit 24-bit rate).
    let object_type = a >> 3;
    let index = ((a & 7) << 1) | (b >> 7);
    match (object_type, index) {
        (2, 15) => {
            let [c, d, e, ..] = rest else {
                return None;
            };
            let [b, c, d, e] = [b & 0x7f, *c, *d, *e].map(u32::from);
            Some((b << 17) | (c << 9) | (d << 1) | (e >> 7))
        }
        (2, i) => RATES.get(usize::from(i)).copied(),
        _ => None,
    }
}

/// Whether `params` are AAC-LC at a core rate that may carry implicit SBR.
pub(super) fn is_candidate(params: &AudioCodecParameters) -> bool {
    params.codec == CODEC_ID_AAC
        && !is_he_aac(params)
        && lc_core_rate(params).is_some_and(|rate| rate <= MAX_CORE_RATE)
}

/// `params` with an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) for fdk-aac: the stream's
/// own, or (ADTS, which has none) AAC-LC at the stated rate and channels; `None` if those are
/// not expressible (a rate without an index, more than 7 channels or none).
pub(super) fn with_config(params: &AudioCodecParameters) -> Option<AudioCodecParameters> {
    if params.extra_data.is_some() {
        return Some(params.clone());
    }
    let rate = params.sample_rate?;
    let index = RATES.iter().position(|&r| r == rate)? as u8;
    let channels = params.channels.as_ref().map(Channels::count)?;
    let channels = u8::try_from(channels)
        .ok()
        .filter(|n| (1..=7).contains(n))?;
    // 5 bits object type 2, 4 bits index, 4 bits channel configuration, 3 bits GASpecificConfig
    // (1024-sample frames, no core coder delay, no extension).
    let asc = [
        (2 << 3) | (index >> 1),
        ((index & 1) << 7) | (channels << 3),
    ];
    let mut params = params.clone();
    params.with_extra_data(asc.to_vec().into());
    Some(params)
}

/// The output rate (Hz) and channels of the implicit-SBR candidate `params`, from decoding the
/// track's first access unit with a decoder thrown away after, and that packet, to decode again.
/// `None` for the format if the first unit does not decode (the core's is then kept).
pub(super) fn probe_rate(
    reader: &mut dyn FormatReader,
    track_id: u32,
    params: &AudioCodecParameters,
) -> (Option<(u32, usize)>, Option<Packet>) {
    let mut first = None;
    for _ in 0..MAX_PROBE_PACKETS {
        match guard(|| reader.next_packet()) {
            Ok(Ok(Some(packet))) if packet.track_id == track_id => {
                first = Some(packet);
                break;
            }
            Ok(Ok(Some(_))) => continue,
            _ => break,
        }
    }
    let Some(packet) = first else {
        return (None, None);
    };
    let format = with_config(params).and_then(|params| {
        let mut decoder = FdkAacDecoder::try_new(&params).ok()?;
        decoder.decode(&packet).ok()?;
        let decoded = decoder.codec_params();
        let channels = decoded.channels.as_ref().map(Channels::count)?;
        Some((decoded.sample_rate?, channels))
    });
    (format, Some(packet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_rates_are_read_from_the_config() {
        let mut params = AudioCodecParameters::new();
        params.for_codec(CODEC_ID_AAC).with_sample_rate(22050);
        assert_eq!(lc_core_rate(&params), Some(22050));
        params.with_extra_data(vec![0x13, 0x90].into());
        assert_eq!(lc_core_rate(&params), Some(22050));
        // HE-AAC (object type 5) and AAC-LC at 44.1 kHz are not candidates.
        params.with_extra_data(vec![0x2b, 0x92, 0x08, 0x00].into());
        assert!(!is_candidate(&params));
        params.with_extra_data(vec![0x12, 0x10].into());
        assert!(!is_candidate(&params));
        // An explicit rate (index 15): 16000 Hz.
        let rate = 16000u32;
        let asc = [
            (2 << 3) | 7,
            0x80 | (rate >> 17) as u8,
            (rate >> 9) as u8,
            (rate >> 1) as u8,
            ((rate & 1) << 7) as u8 | (2 << 3),
        ];
        params.with_extra_data(asc.to_vec().into());
        assert_eq!(lc_core_rate(&params), Some(16000));
    }
}
