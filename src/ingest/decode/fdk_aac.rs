//! HE-AAC (v1: SBR, v2: SBR + parametric stereo) for symphonia, whose AAC decoder has neither
//! and refuses such streams: an [`AudioDecoder`] over the Fraunhofer decoder (fdk-aac, which
//! segue links already for its encoder), fed raw access units (ISO/IEC 14496-3 1.6.2, transport
//! `TT_MP4_RAW`) and configured from the AudioSpecificConfig in the codec parameters' extra data.
//!
//! It is chosen where the ASC signals SBR ([`is_he_aac`]: audio object type 5 or 29, or the SBR
//! sync extension 0x2b7, both of which symphonia's MP4 reader reports as the HE-AAC profiles),
//! and for AAC-LC at a core rate that may carry implicit SBR (`implicit_sbr`), where fdk-aac
//! finds the SBR data as ffmpeg does; other AAC-LC stays with symphonia's decoder. The output is
//! at the SBR (doubled) rate, and parametric stereo turns a mono core into stereo: both are read
//! from the decoder's stream info, not the container. fdk-aac delays its output beyond the
//! codec's own delay (which the encoder counts in its priming and the edit list states): by its
//! PCM limiter, turned off here as ffmpeg has none, and by a delay line it states as
//! `outputDelay` (3010 frames at 44.1 kHz for HE-AAC v1), dropped from the start and drained at
//! the end of stream, when `SourceDecoder` hands over an empty packet. The output then lines up
//! with ffmpeg's, and `mp4_gapless` trims at the output rate as for AAC-LC. More than two
//! channels are downmixed to stereo by fdk-aac itself (`AAC_PCM_MAX_OUTPUT_CHANNELS`):
//! its output order for multichannel streams is not symphonia's.

use std::ffi::c_uint;
use std::ptr::NonNull;

use fdk_aac_sys as sys;
use symphonia::core::audio::{
    AsGenericAudioBufferRef, Audio, AudioBuffer, AudioMut, AudioSpec, Channels,
    GenericAudioBufferRef, Position,
};
use symphonia::core::codecs::CodecInfo;
use symphonia::core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia::core::codecs::audio::well_known::profiles::{
    CODEC_PROFILE_AAC_HE, CODEC_PROFILE_AAC_HE_V2,
};
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, FinalizeResult};
use symphonia::core::errors::{Result, decode_error, unsupported_error};
use symphonia::core::packet::PacketRef;

/// The most frames one access unit decodes to: 1024 core frames, doubled by SBR.
const MAX_FRAMES: usize = 2048;
/// Output channels asked of fdk-aac (it downmixes more).
const MAX_CHANNELS: usize = 2;

/// Whether `params` describe an AAC stream whose AudioSpecificConfig signals SBR explicitly,
/// which symphonia's AAC decoder refuses. symphonia's MP4 reader parses the ASC (object type 5
/// or 29, or the 0x2b7 sync extension after an AAC-LC config) into the profile.
pub(super) fn is_he_aac(params: &AudioCodecParameters) -> bool {
    params.codec == CODEC_ID_AAC
        && matches!(
            params.profile,
            Some(CODEC_PROFILE_AAC_HE | CODEC_PROFILE_AAC_HE_V2)
        )
}

/// An owned fdk-aac decoder handle.
#[derive(Debug)]
struct Handle(NonNull<sys::AAC_DECODER_INSTANCE>);

// SAFETY: the decoder state is owned exclusively by this value and fdk-aac keeps no global
// mutable state; it is only used through `&mut self`, so sharing `&Handle` is harmless.
unsafe impl Send for Handle {}
// SAFETY: as above, no method takes `&self`.
unsafe impl Sync for Handle {}

impl Handle {
    /// Sets an integer decoder parameter; `failure` is the error's message if fdk refuses it.
    fn set_param(
        &self,
        param: sys::AACDEC_PARAM,
        value: i32,
        failure: &'static str,
    ) -> symphonia::core::errors::Result<()> {
        // SAFETY: a valid handle (owned by `self`); the parameter takes an integer.
        let code = unsafe { sys::aacDecoder_SetParam(self.0.as_ptr(), param, value) };
        match code {
            sys::AAC_DECODER_ERROR_AAC_DEC_OK => Ok(()),
            _ => unsupported_error(failure),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from aacDecoder_Open and is closed once.
        unsafe { sys::aacDecoder_Close(self.0.as_ptr()) }
    }
}

/// Decodes HE-AAC access units to `f32` at the SBR rate.
pub(super) struct FdkAacDecoder {
    /// The parameters, with the output rate and channels once known.
    params: AudioCodecParameters,
    handle: Handle,
    /// The copy of each packet handed to fdk-aac (its API takes a mutable pointer).
    input: Vec<u8>,
    /// fdk-aac output, interleaved `i16`, room for the longest access unit.
    pcm: Vec<i16>,
    buf: AudioBuffer<f32>,
    /// Leading frames of the decoder's output delay still to drop; `None` before the first
    /// frame (fdk-aac states the delay once it has decoded one).
    delay_left: Option<usize>,
    /// Frames dropped so far at the start, to drain from the delay line at the end.
    dropped: usize,
}

impl FdkAacDecoder {
    /// Opens a decoder for `params`, whose extra data must be the AudioSpecificConfig.
    pub(super) fn try_new(params: &AudioCodecParameters) -> Result<Self> {
        let Some(asc) = params.extra_data.as_deref() else {
            return unsupported_error("aac (fdk): no AudioSpecificConfig");
        };
        // SAFETY: opening allocates a decoder for one layer of raw access units; a null
        // return (allocation failure) is checked.
        let raw = unsafe { sys::aacDecoder_Open(sys::TRANSPORT_TYPE_TT_MP4_RAW, 1) };
        let Some(raw) = NonNull::new(raw) else {
            return decode_error("aac (fdk): cannot open the decoder");
        };
        let handle = Handle(raw);
        let mut config = asc.to_vec();
        let mut conf_ptr = config.as_mut_ptr();
        let Ok(conf_len) = c_uint::try_from(config.len()) else {
            return decode_error("aac (fdk): AudioSpecificConfig too large");
        };
        // SAFETY: one layer: `conf_ptr` points at `conf_len` bytes that live across the call;
        // fdk-aac parses (copies) them and reports a bad config through the return code.
        let code =
            unsafe { sys::aacDecoder_ConfigRaw(handle.0.as_ptr(), &mut conf_ptr, &conf_len) };
        if code != sys::AAC_DECODER_ERROR_AAC_DEC_OK {
            return unsupported_error("aac (fdk): AudioSpecificConfig not supported");
        }
        handle.set_param(
            sys::AACDEC_PARAM_AAC_PCM_MAX_OUTPUT_CHANNELS,
            MAX_CHANNELS as i32,
            "aac (fdk): cannot limit the output channels",
        )?;
        // The limiter (on by default) delays the output; ffmpeg's decoder has none.
        handle.set_param(
            sys::AACDEC_PARAM_AAC_PCM_LIMITER_ENABLE,
            0,
            "aac (fdk): cannot turn the limiter off",
        )?;
        let ps = params.profile == Some(CODEC_PROFILE_AAC_HE_V2);
        let (rate, channels) = Self::stream_info(&handle, ps)?;
        let mut params = params.clone();
        params
            .with_sample_rate(rate)
            .with_channels(channels.clone());
        let spec = AudioSpec::new(rate, channels);
        Ok(Self {
            params,
            handle,
            input: Vec::new(),
            pcm: vec![0; MAX_FRAMES * MAX_CHANNELS],
            buf: AudioBuffer::new(spec, 2 * MAX_FRAMES),
            delay_left: None,
            dropped: 0,
        })
    }

    /// The output rate (Hz) and channels the decoder states (after configuring, and updated by
    /// each decoded frame).
    /// `ps` says that the config signals parametric stereo (fdk-aac's info may not say so
    /// before the first frame, when the PS signal is in the config's 0x548 extension).
    fn stream_info(handle: &Handle, ps: bool) -> Result<(u32, Channels)> {
        // SAFETY: a valid handle; the info lives as long as the handle and is only read here.
        let info = unsafe { sys::aacDecoder_GetStreamInfo(handle.0.as_ptr()).as_ref() };
        let Some(info) = info else {
            return decode_error("aac (fdk): no stream info");
        };
        // Before the first frame, fdk-aac states the core rate and the extension's rate.
        let rate = match info.sampleRate {
            rate if rate > 0 => rate,
            _ => info.extSamplingRate.max(info.aacSampleRate),
        };
        let mut channels = match info.numChannels {
            n if n > 0 => n,
            _ => info.channelConfig,
        };
        // Parametric stereo makes stereo of a mono core (the info states the core until a frame
        // is decoded).
        if ps
            || info.aot == sys::AUDIO_OBJECT_TYPE_AOT_PS
            || info.extAot == sys::AUDIO_OBJECT_TYPE_AOT_PS
        {
            channels = channels.max(2);
        }
        let layout = match channels {
            1 => Position::FRONT_CENTER,
            2.. => Position::FRONT_LEFT | Position::FRONT_RIGHT,
            _ => return unsupported_error("aac (fdk): unknown channel count"),
        };
        match u32::try_from(rate) {
            Ok(rate) if rate > 0 => Ok((rate, Channels::Positioned(layout))),
            _ => unsupported_error("aac (fdk): unknown sample rate"),
        }
    }

    /// Hands one access unit to fdk-aac.
    fn fill(&mut self, data: &[u8]) -> Result<()> {
        self.input.clear();
        self.input.extend_from_slice(data);
        let Ok(len) = c_uint::try_from(self.input.len()) else {
            return decode_error("aac (fdk): packet too large");
        };
        let mut ptr = self.input.as_mut_ptr();
        let mut left = len;
        // SAFETY: `ptr` points at `len` bytes owned by `self.input`, alive across the call;
        // fdk-aac copies what fits into its own buffer and says in `left` what it did not take.
        let code =
            unsafe { sys::aacDecoder_Fill(self.handle.0.as_ptr(), &mut ptr, &len, &mut left) };
        if code != sys::AAC_DECODER_ERROR_AAC_DEC_OK || left != 0 {
            return decode_error("aac (fdk): cannot take the packet");
        }
        Ok(())
    }

    /// Decodes one frame (`flags` 0) or flushes the delayed output (`AACDEC_FLUSH`) into
    /// `pcm`; returns its output delay and frames.
    fn decode_frame(&mut self, flags: u32) -> Result<(usize, usize)> {
        // SAFETY: `pcm` has room for `pcm.len()` samples, the size passed; fdk-aac writes at
        // most that (it reports a too-small buffer as an error) and the channels are capped
        // at MAX_CHANNELS.
        let code = unsafe {
            sys::aacDecoder_DecodeFrame(
                self.handle.0.as_ptr(),
                self.pcm.as_mut_ptr(),
                self.pcm.len() as i32,
                flags,
            )
        };
        if code != sys::AAC_DECODER_ERROR_AAC_DEC_OK {
            return decode_error("aac (fdk): corrupt packet");
        }
        let (rate, channels) = Self::stream_info(&self.handle, false)?;
        // SAFETY: a valid handle; see `stream_info`.
        let info = unsafe { sys::aacDecoder_GetStreamInfo(self.handle.0.as_ptr()).as_ref() };
        let (delay, frames) = info.map_or((0, 0), |info| (info.outputDelay, info.frameSize));
        let frames = usize::try_from(frames).unwrap_or(0).min(MAX_FRAMES);
        if rate != self.buf.spec().rate() || &channels != self.buf.spec().channels() {
            // The first frame may correct what the config stated.
            self.buf = AudioBuffer::new(AudioSpec::new(rate, channels.clone()), 2 * MAX_FRAMES);
            self.params.with_sample_rate(rate).with_channels(channels);
        }
        Ok((delay as usize, frames))
    }

    /// Appends `frames` frames of `pcm` from frame `from` to the output buffer.
    fn append(&mut self, from: usize, frames: usize) {
        let (n, start) = (self.buf.num_planes(), self.buf.frames());
        self.buf.render_uninit(Some(frames - from));
        let scale = 1.0 / 32768.0;
        for (ch, plane) in self.buf.iter_planes_mut().enumerate() {
            for (i, s) in plane[start..].iter_mut().enumerate() {
                *s = f32::from(self.pcm[(from + i) * n + ch]) * scale;
            }
        }
    }

    fn decode_inner(&mut self, packet: &PacketRef<'_>) -> Result<()> {
        self.buf.clear();
        if packet.data.is_empty() {
            return self.drain();
        }
        self.fill(packet.data)?;
        let (delay, frames) = self.decode_frame(0)?;
        // The decoder's own delay (its output delay line) is dropped from the start and
        // drained at the end, so the output lines up with the input as ffmpeg's does.
        let skip = *self.delay_left.get_or_insert(delay.min(MAX_FRAMES));
        let skip = skip.min(frames);
        self.delay_left = Some(self.delay_left.unwrap_or(0) - skip);
        self.dropped += skip;
        self.append(skip, frames);
        Ok(())
    }

    /// End of stream (an empty packet): the frames held in the decoder's delay line.
    fn drain(&mut self) -> Result<()> {
        while self.dropped > 0 {
            let (_, frames) = self.decode_frame(sys::AACDEC_FLUSH)?;
            let frames = frames.min(self.dropped);
            if frames == 0 {
                break;
            }
            self.dropped -= frames;
            self.append(0, frames);
        }
        Ok(())
    }
}

impl AudioDecoder for FdkAacDecoder {
    fn reset(&mut self) {
        // A flush clears the decoder's history, as after a seek.
        // SAFETY: a valid handle and buffer of the stated size; the result is discarded.
        unsafe {
            sys::aacDecoder_DecodeFrame(
                self.handle.0.as_ptr(),
                self.pcm.as_mut_ptr(),
                self.pcm.len() as i32,
                sys::AACDEC_FLUSH | sys::AACDEC_INTR | sys::AACDEC_CLRHIST,
            )
        };
    }

    fn codec_info(&self) -> &CodecInfo {
        const INFO: CodecInfo = CodecInfo {
            short_name: "aac",
            long_name: "Advanced Audio Coding (HE-AAC, fdk-aac)",
            profiles: &[],
        };
        &INFO
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
