//! Opus (RFC 6716) for symphonia, which has no Opus decoder of its own: an [`AudioDecoder`]
//! over libopus, registered beside symphonia's codecs (`symphonia_glue::codecs`).
//!
//! symphonia's Ogg reader demuxes Opus and sets each packet's end trim from the final page's
//! granule position (RFC 7845 4.5), but it trims nothing at the start: the granule positions
//! count the pre-skip (RFC 7845 4.2), so the decoder drops the first `pre_skip` decoded samples
//! itself, across as many packets as they span (a pre-skip may be longer than one packet), as
//! ffmpeg and libopusfile do. In MP4 the edit list holds the pre-skip instead, and
//! `mp4_gapless` applies it. The header's output gain (RFC 7845 5.1, Q7.8 dB) is applied by
//! libopus. Every channel mapping family symphonia's reader accepts is decoded through the
//! multistream decoder (family 0 is one stream, RFC 7845 5.1.1.1); the channels come out in
//! symphonia's order (its `Position` bits ascending), not in the Vorbis order of family 1
//! (RFC 7845 5.1.1.2), by permuting the mapping table libopus reads.

use std::ffi::c_int;
use std::ptr::NonNull;

use opusic_sys as sys;
use symphonia::core::audio::{
    AsGenericAudioBufferRef, Audio, AudioBuffer, AudioMut, AudioSpec, Channels,
    GenericAudioBufferRef, Position,
};
use symphonia::core::codecs::CodecInfo;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{
    AudioCodecParameters, AudioDecoder, AudioDecoderOptions, FinalizeResult,
};
use symphonia::core::codecs::registry::{RegisterableAudioDecoder, SupportedAudioCodec};
use symphonia::core::errors::{Result, decode_error, unsupported_error};
use symphonia::core::packet::PacketRef;

/// Opus always decodes at 48 kHz here (RFC 7845 4: granule positions count 48 kHz samples).
const RATE: u32 = 48_000;
/// The longest packet, 120 ms at 48 kHz (RFC 6716 3.2.5), in frames.
const MAX_PACKET_FRAMES: usize = 5760;

/// The identification header: RFC 7845 5.1 (Ogg, little-endian, version 1), or the `dOps` box
/// of MP4 (Opus in ISOBMFF 4.3.2: the same fields big-endian, version 0), which symphonia's MP4
/// reader hands over behind an `OpusHead` signature.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpusHead {
    channels: usize,
    /// Samples at 48 kHz to drop from the start of the decoded stream: the header's pre-skip in
    /// Ogg; none in MP4, where the edit list holds it (Opus in ISOBMFF 4.4) and
    /// `mp4_gapless` applies it with the rest of the edit.
    pre_skip: usize,
    /// Output gain, Q7.8 dB.
    gain: i16,
    streams: u8,
    coupled: u8,
    /// Decoded channel (stream channel index, 255 for silence) of each output channel, in the
    /// header's order.
    mapping: Vec<u8>,
}

impl OpusHead {
    /// Parses `extra_data`. Mapping families 0 and 1 (the ones with defined speaker positions).
    fn parse(extra_data: &[u8]) -> Result<Self> {
        let head = match extra_data {
            [b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', head @ ..] if head.len() >= 11 => head,
            _ => return decode_error("opus: the identification header is missing or short"),
        };
        let big_endian = match head[0] {
            0 => true,
            1..=15 => false,
            _ => return unsupported_error("opus: unsupported identification header version"),
        };
        let u16_at = |i: usize| match big_endian {
            true => u16::from_be_bytes([head[i], head[i + 1]]),
            false => u16::from_le_bytes([head[i], head[i + 1]]),
        };
        let channels = usize::from(head[1]);
        let pre_skip = if big_endian {
            0
        } else {
            usize::from(u16_at(2))
        };
        let (gain, family) = (u16_at(8) as i16, head[10]);
        let (streams, coupled, mapping) = match family {
            0 if (1..=2).contains(&channels) => (1, head[1] - 1, (0..head[1]).collect()),
            1 if (1..=8).contains(&channels) => match &head[11..] {
                [streams, coupled, mapping @ ..] if mapping.len() >= channels => {
                    (*streams, *coupled, mapping[..channels].to_vec())
                }
                _ => return decode_error("opus: the channel mapping table is short"),
            },
            0 | 1 => return decode_error("opus: channel count invalid for its mapping family"),
            _ => return unsupported_error("opus: unsupported channel mapping family"),
        };
        Ok(Self {
            channels,
            pre_skip,
            gain,
            streams,
            coupled,
            mapping,
        })
    }
}

/// Speaker positions of each channel in the Vorbis order of mapping family 1 (RFC 7845
/// 5.1.1.2), for 1 to 8 channels; family 0 is the same for 1 and 2 channels. The positions are
/// symphonia's reading of the same header (its Ogg and MP4 readers state these channels).
fn vorbis_positions(channels: usize) -> &'static [Position] {
    use Position as P;
    const FL: P = P::FRONT_LEFT;
    const FR: P = P::FRONT_RIGHT;
    const FC: P = P::FRONT_CENTER;
    const RL: P = P::REAR_LEFT;
    const RR: P = P::REAR_RIGHT;
    const SL: P = P::SIDE_LEFT;
    const SR: P = P::SIDE_RIGHT;
    const LFE: P = P::LFE1;
    match channels {
        1 => &[FL],
        2 => &[FL, FR],
        3 => &[FL, FC, FR],
        4 => &[FL, FR, RL, RR],
        5 => &[FL, FC, FR, RL, RR],
        6 => &[FL, FC, FR, RL, RR, LFE],
        7 => &[FL, FC, FR, SL, SR, P::REAR_CENTER, LFE],
        _ => &[FL, FC, FR, SL, SR, RL, RR, LFE],
    }
}

/// An owned libopus multistream decoder.
#[derive(Debug)]
struct MsDecoder(NonNull<sys::OpusMSDecoder>);

// SAFETY: the decoder state is owned exclusively by this value and libopus keeps no global or
// thread-local state; it is only used through `&mut self`, so sharing `&MsDecoder` is harmless.
unsafe impl Send for MsDecoder {}
// SAFETY: as above, no method takes `&self`.
unsafe impl Sync for MsDecoder {}

impl Drop for MsDecoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from opus_multistream_decoder_create and is freed once.
        unsafe { sys::opus_multistream_decoder_destroy(self.0.as_ptr()) }
    }
}

/// Decodes Opus packets to 48 kHz `f32`, dropping the pre-skip and the packets' trims.
pub(super) struct OpusDecoder {
    params: AudioCodecParameters,
    decoder: MsDecoder,
    /// Whether the pre-skip and the packets' trims are applied (symphonia's gapless option).
    gapless: bool,
    /// Samples of the pre-skip still to drop.
    pre_skip_left: usize,
    /// libopus output, interleaved, room for the longest packet.
    pcm: Vec<f32>,
    buf: AudioBuffer<f32>,
}

impl OpusDecoder {
    fn try_new(params: &AudioCodecParameters, opts: &AudioDecoderOptions) -> Result<Self> {
        let Some(extra_data) = params.extra_data.as_deref() else {
            return unsupported_error("opus: no identification header");
        };
        let head = OpusHead::parse(extra_data)?;
        let positions = vorbis_positions(head.channels);
        // Output channel k is the header's channel order[k]: symphonia's planes go in the order
        // of the `Position` bits.
        let mut order: Vec<usize> = (0..head.channels).collect();
        order.sort_by_key(|&i| positions[i].bits());
        let mapping: Vec<u8> = order.iter().map(|&i| head.mapping[i]).collect();
        let layout = positions.iter().fold(Position::empty(), |all, &p| all | p);

        let mut error = 0;
        // SAFETY: `mapping` holds `channels` entries, as libopus reads; it validates the layout
        // (streams, coupled streams and every entry) and reports a bad one through `error`.
        let raw = unsafe {
            sys::opus_multistream_decoder_create(
                RATE as i32,
                head.channels as c_int,
                c_int::from(head.streams),
                c_int::from(head.coupled),
                mapping.as_ptr(),
                &mut error,
            )
        };
        let decoder = match NonNull::new(raw) {
            Some(raw) if error == sys::OPUS_OK => MsDecoder(raw),
            Some(raw) => {
                drop(MsDecoder(raw));
                return decode_error("opus: invalid channel mapping");
            }
            None => return decode_error("opus: invalid channel mapping"),
        };
        if head.gain != 0 {
            // SAFETY: a valid decoder; OPUS_SET_GAIN takes one opus_int32 argument.
            let code = unsafe {
                sys::opus_multistream_decoder_ctl(
                    decoder.0.as_ptr(),
                    sys::OPUS_SET_GAIN_REQUEST,
                    i32::from(head.gain),
                )
            };
            if code != sys::OPUS_OK {
                return decode_error("opus: the output gain is out of range");
            }
        }
        let spec = AudioSpec::new(RATE, Channels::Positioned(layout));
        Ok(Self {
            params: params.clone(),
            decoder,
            gapless: opts.gapless,
            pre_skip_left: head.pre_skip,
            pcm: vec![0.0; MAX_PACKET_FRAMES * head.channels],
            buf: AudioBuffer::new(spec, MAX_PACKET_FRAMES),
        })
    }

    fn decode_inner(&mut self, packet: &PacketRef<'_>) -> Result<()> {
        self.buf.clear();
        // A zero-length packet would ask libopus to conceal a lost one (RFC 6716 4.4); Ogg Opus
        // has no lost packets.
        let len = match i32::try_from(packet.data.len()) {
            Ok(0) => return decode_error("opus: empty packet"),
            Ok(len) => len,
            Err(_) => return decode_error("opus: packet too large"),
        };
        // SAFETY: `data` holds `len` bytes and `pcm` room for MAX_PACKET_FRAMES frames of every
        // channel; libopus writes at most that many and returns the count or a negative error.
        let frames = unsafe {
            sys::opus_multistream_decode_float(
                self.decoder.0.as_ptr(),
                packet.data.as_ptr(),
                len,
                self.pcm.as_mut_ptr(),
                MAX_PACKET_FRAMES as c_int,
                0,
            )
        };
        let Ok(frames) = usize::try_from(frames) else {
            return decode_error("opus: corrupt packet");
        };
        self.buf.render_uninit(Some(frames));
        let channels = self.buf.num_planes();
        self.buf
            .copy_from_slice_interleaved(&&self.pcm[..frames * channels]);
        if self.gapless {
            let pre_skip = self.pre_skip_left.min(frames);
            self.pre_skip_left -= pre_skip;
            let start = pre_skip + packet.trim_start.get() as usize;
            self.buf.trim(start, packet.trim_end.get() as usize);
        }
        Ok(())
    }
}

impl AudioDecoder for OpusDecoder {
    fn reset(&mut self) {
        // SAFETY: a valid decoder; OPUS_RESET_STATE takes no argument.
        unsafe {
            sys::opus_multistream_decoder_ctl(self.decoder.0.as_ptr(), sys::OPUS_RESET_STATE)
        };
    }

    fn codec_info(&self) -> &CodecInfo {
        &Self::supported_codecs()[0].info
    }

    fn codec_params(&self) -> &AudioCodecParameters {
        &self.params
    }

    fn decode_ref(&mut self, packet: &PacketRef<'_>) -> Result<GenericAudioBufferRef<'_>> {
        match self.decode_inner(packet) {
            Ok(()) => Ok(self.buf.as_generic_audio_buffer_ref()),
            Err(e) => {
                self.buf.clear();
                Err(e)
            }
        }
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> GenericAudioBufferRef<'_> {
        self.buf.as_generic_audio_buffer_ref()
    }
}

impl RegisterableAudioDecoder for OpusDecoder {
    fn try_registry_new(
        params: &AudioCodecParameters,
        opts: &AudioDecoderOptions,
    ) -> Result<Box<dyn AudioDecoder>> {
        Ok(Box::new(Self::try_new(params, opts)?))
    }

    fn supported_codecs() -> &'static [SupportedAudioCodec] {
        // By hand: symphonia's `support_audio_codec!` names the `symphonia_core` crate.
        const OPUS: SupportedAudioCodec = SupportedAudioCodec {
            id: CODEC_ID_OPUS,
            info: CodecInfo {
                short_name: "opus",
                long_name: "Opus",
                profiles: &[],
            },
        };
        &[OPUS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphonia::core::packet::Packet;
    use symphonia::core::units::{Duration, Timestamp};

    /// An Ogg identification header (RFC 7845 5.1): `family` 0 for 1 or 2 channels, else the
    /// `streams`, `coupled` and `mapping` that follow.
    fn ogg_head(channels: u8, pre_skip: u16, family: u8, table: &[u8]) -> Vec<u8> {
        let mut h = b"OpusHead".to_vec();
        h.extend([1, channels]);
        h.extend(pre_skip.to_le_bytes());
        h.extend(48000u32.to_le_bytes());
        h.extend([0, 0, family]);
        h.extend(table);
        h
    }

    fn params(extra_data: Vec<u8>) -> AudioCodecParameters {
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_OPUS)
            .with_extra_data(extra_data.into());
        params
    }

    #[test]
    fn headers_of_both_byte_orders_are_read() {
        let ogg = OpusHead::parse(&ogg_head(2, 312, 0, &[])).unwrap();
        assert_eq!(
            (ogg.channels, ogg.pre_skip, ogg.streams, ogg.coupled),
            (2, 312, 1, 1)
        );
        assert_eq!(ogg.mapping, [0, 1]);
        // dOps, big-endian: the pre-skip is the edit list's business.
        let mut dops = b"OpusHead".to_vec();
        dops.extend([
            0, 6, 1, 56, 0, 0, 187, 128, 0xff, 0x00, 1, 4, 2, 0, 4, 1, 2, 3, 5,
        ]);
        let mp4 = OpusHead::parse(&dops).unwrap();
        assert_eq!((mp4.channels, mp4.pre_skip, mp4.gain), (6, 0, -256));
        assert_eq!((mp4.streams, mp4.coupled, mp4.mapping.len()), (4, 2, 6));
    }

    #[test]
    fn bad_headers_are_errors() {
        let surround = [4, 2, 0, 4, 1, 2, 3, 5];
        for (name, head) in [
            ("short", b"OpusHead\x01\x02".to_vec()),
            (
                "no signature",
                b"OpusHeaD\x01\x02\0\0\0\0\0\0\0\0\0".to_vec(),
            ),
            ("no channels", ogg_head(0, 0, 0, &[])),
            ("3 channels, family 0", ogg_head(3, 0, 0, &[])),
            (
                "9 channels, family 1",
                ogg_head(9, 0, 1, &[4, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
            ),
            ("short mapping table", ogg_head(6, 0, 1, &surround[..5])),
            ("family 2", ogg_head(4, 0, 2, &[1, 0, 0, 1, 2, 3])),
            // libopus checks the layout: more coupled streams than streams, a channel of none.
            (
                "coupled > streams",
                ogg_head(6, 0, 1, &[2, 4, 0, 4, 1, 2, 3, 5]),
            ),
            (
                "mapping past streams",
                ogg_head(6, 0, 1, &[4, 2, 0, 4, 1, 2, 3, 9]),
            ),
        ] {
            let made = OpusDecoder::try_new(&params(head), &AudioDecoderOptions::default());
            assert!(made.is_err(), "{name}");
        }
        let ok = ogg_head(6, 0, 1, &surround);
        assert!(OpusDecoder::try_new(&params(ok), &AudioDecoderOptions::default()).is_ok());
    }

    #[test]
    fn corrupt_packets_are_errors_not_panics() {
        let opts = AudioDecoderOptions::default().gapless(true);
        let mut decoder = OpusDecoder::try_new(&params(ogg_head(2, 312, 0, &[])), &opts).unwrap();
        let mut noise = super::super::tests::noise(0x9e37_79b9);
        let packet = |data: Vec<u8>| Packet::new(0, Timestamp::ZERO, Duration::ZERO, data);
        assert!(decoder.decode(&packet(Vec::new())).is_err());
        // Code 3 with no frame count byte, then with 48 frames of 2.5 ms (over 120 ms).
        assert!(decoder.decode(&packet(vec![0xfb])).is_err());
        assert!(decoder.decode(&packet(vec![0xfb, 0x30, 0, 0])).is_err());
        let mut decoded = 0;
        for len in 1..400 {
            let data: Vec<u8> = (0..len).map(|_| noise()).collect();
            if let Ok(buf) = decoder.decode(&packet(data)) {
                decoded += buf.frames();
            }
        }
        assert!(decoded > 0, "random bytes are often valid Opus");
    }
}
