//! PCM -> AAC access units with libfdk-aac, one encoder per rendition.
//!
//! The `fdk-aac` crate's safe `Encoder` cannot switch on the afterburner (fdk's best-quality
//! mode), cannot signal end of input (so the last frames would be lost) and hides the delay it
//! reports, so this module drives `fdk-aac-sys` directly through a small safe wrapper. The
//! encoder's delay (priming) is reported in [`EncoderInfo::delay`] so the pipeline can line up
//! every rendition of a ladder on one timeline.

use std::fmt;
use std::os::raw::{c_int, c_void};
use std::ptr;

use fdk_aac_sys as sys;

/// AAC profiles segue can encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AacProfile {
    /// MPEG-4 AAC Low Complexity (`mp4a.40.2`).
    AacLc,
    /// MPEG-4 HE-AAC v1: AAC-LC core at half rate plus SBR (`mp4a.40.5`).
    HeAac,
    /// MPEG-4 HE-AAC v2: HE-AAC plus parametric stereo (`mp4a.40.29`).
    HeAacV2,
}

impl AacProfile {
    /// The MPEG-4 audio object type (ISO/IEC 14496-3 1.5.1.1).
    pub fn object_type(self) -> u8 {
        match self {
            AacProfile::AacLc => 2,
            AacProfile::HeAac => 5,
            AacProfile::HeAacV2 => 29,
        }
    }

    /// The RFC 6381 codec string used in HLS `CODECS` and DASH `@codecs`.
    pub fn codec_string(self) -> String {
        format!("mp4a.40.{}", self.object_type())
    }

    /// The name used in ladder specs (`aac-lc`, `he-aac`, `he-aac-v2`).
    pub fn name(self) -> &'static str {
        match self {
            AacProfile::AacLc => "aac-lc",
            AacProfile::HeAac => "he-aac",
            AacProfile::HeAacV2 => "he-aac-v2",
        }
    }

    /// Parses a ladder-spec profile name.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "aac-lc" | "lc" | "aac" => Some(AacProfile::AacLc),
            "he-aac" | "he-aac-v1" | "heaac" | "he" => Some(AacProfile::HeAac),
            "he-aac-v2" | "heaacv2" | "he2" => Some(AacProfile::HeAacV2),
            _ => None,
        }
    }
}

impl fmt::Display for AacProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of one encoder instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// AAC profile.
    pub profile: AacProfile,
    /// Target bitrate in bit/s (constant bitrate mode).
    pub bitrate: u32,
    /// Input and output sample rate in Hz.
    pub sample_rate: u32,
    /// fdk's afterburner: better quality for more CPU.
    pub afterburner: bool,
}

/// What the encoder reports after configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderInfo {
    /// Samples per channel in one access unit, at the output rate (1024 for AAC-LC, 2048 for HE-AAC).
    pub frame_length: u32,
    /// Encoder delay in samples per channel at the output rate, as a decoder sees it.
    pub delay: u32,
    /// The AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) for the `esds` box.
    pub audio_specific_config: Vec<u8>,
}

/// Encoder errors; none are recoverable for the same encoder instance.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// libfdk-aac refused a call.
    #[error("AAC encoder ({config}) failed in {call}: {message} (code {code:#x})")]
    Fdk {
        /// The rendition being encoded, e.g. `aac-lc 128000 bit/s at 48000 Hz`.
        config: String,
        /// The fdk function or parameter that failed.
        call: &'static str,
        /// fdk's description of the error.
        message: &'static str,
        /// fdk's error code.
        code: u32,
    },
    /// libfdk-aac did not take a whole frame of input (the rest of the PCM would be lost).
    #[error("AAC encoder ({config}) stopped taking input with {remaining} samples left")]
    Stalled {
        /// The rendition being encoded.
        config: String,
        /// Interleaved samples not taken.
        remaining: usize,
    },
}

fn fdk_message(code: sys::AACENC_ERROR) -> &'static str {
    match code {
        sys::AACENC_ERROR_AACENC_INVALID_HANDLE => "invalid handle",
        sys::AACENC_ERROR_AACENC_MEMORY_ERROR => "memory allocation failed",
        sys::AACENC_ERROR_AACENC_UNSUPPORTED_PARAMETER => {
            "parameter not supported (bitrate, rate or profile out of range)"
        }
        sys::AACENC_ERROR_AACENC_INVALID_CONFIG => "invalid configuration",
        sys::AACENC_ERROR_AACENC_INIT_ERROR => "initialization error",
        sys::AACENC_ERROR_AACENC_INIT_AAC_ERROR => "AAC core initialization error",
        sys::AACENC_ERROR_AACENC_INIT_SBR_ERROR => {
            "SBR initialization error (bitrate or rate not supported for HE-AAC)"
        }
        sys::AACENC_ERROR_AACENC_INIT_TP_ERROR => "transport initialization error",
        sys::AACENC_ERROR_AACENC_ENCODE_ERROR => "encoding error",
        sys::AACENC_ERROR_AACENC_ENCODE_EOF => "end of stream",
        _ => "unknown error",
    }
}

/// One configured libfdk-aac encoder producing raw AAC access units.
///
/// fdk is only ever handed whole frames (`frame_length` samples per channel), and the end of
/// input is padded here rather than by fdk's own flush (`numInSamples == -1`). The reason is a
/// bug in the fdk-aac bundled by `fdk-aac-sys` 0.5 (`aacEncEncode`, aacenc_lib.cpp) that only
/// shows with parametric stereo (HE-AAC v2), where the input is stereo but the core is mono:
/// - new input is copied to `inputBuffer + (inputBufferOffset + nSamplesRead) /
///   aacConfig.nChannels`, where `nSamplesRead` counts interleaved *input* samples (2 channels)
///   but is divided by the *core* channel count (1). With a frame topped up over several calls
///   (`nSamplesRead > 0`) each channel is written up to a frame past where it should be: past
///   the end of fdk's heap buffer (3685 samples per channel), hence the SIGSEGV in
///   `FDKaacEnc_EncodeFrame` or glibc's "double free or corruption" in the ingest worker. A unit
///   test feeding whole buffers never topped up a frame, so it never crashed.
/// - the flush zero-fill writes at `(inputBufferOffset + nSamplesRead) / extParam.nChannels`,
///   dividing the core offset (in core samples: 463 for v2 at 44.1 kHz) by the input channel
///   count (2), so its zeros land half an offset early: they overwrite the last real samples and
///   leave stale samples in the padded frames.
///
/// With whole frames `nSamplesRead` is 0 at every copy, where both formulas are right for every
/// profile; zeros that segue appends itself go through the same copy. For AAC-LC and HE-AAC v1
/// the bytes are unchanged (fdk gets the same samples in the same frames; see the tests).
pub struct AacEncoder {
    handle: sys::HANDLE_AACENCODER,
    config: EncoderConfig,
    info: EncoderInfo,
    out_buf: Vec<u8>,
    /// Interleaved samples of one frame (`frame_length` x 2 channels).
    frame_samples: usize,
    /// Input carried over to the next call: fewer than `frame_samples` interleaved samples.
    pending: Vec<i16>,
    /// fdk's own delay (`nDelay`, samples per channel): as many zeros as its flush would append.
    flush_zeros: u64,
    finished: bool,
}

// SAFETY: the fdk handle is owned exclusively by this value and fdk keeps no thread-local state;
// moving it to another thread is sound (it is never shared: all methods take `&mut self`).
unsafe impl Send for AacEncoder {}

impl AacEncoder {
    /// Opens and configures an encoder (stereo input, raw access units, CBR).
    pub fn new(config: EncoderConfig) -> Result<Self, EncodeError> {
        let mut handle: sys::HANDLE_AACENCODER = ptr::null_mut();
        // SAFETY: aacEncOpen writes a fresh handle into `handle`.
        let code = unsafe { sys::aacEncOpen(&mut handle, 0, 2) };
        let mut encoder = AacEncoder {
            handle,
            config,
            info: EncoderInfo {
                frame_length: 0,
                delay: 0,
                audio_specific_config: Vec::new(),
            },
            out_buf: Vec::new(),
            frame_samples: 0,
            pending: Vec::new(),
            flush_zeros: 0,
            finished: false,
        };
        encoder.check(code, "aacEncOpen")?;
        let aot = match config.profile {
            AacProfile::AacLc => sys::AUDIO_OBJECT_TYPE_AOT_AAC_LC,
            AacProfile::HeAac => sys::AUDIO_OBJECT_TYPE_AOT_SBR,
            AacProfile::HeAacV2 => sys::AUDIO_OBJECT_TYPE_AOT_PS,
        } as u32;
        // Explicit hierarchical signalling for SBR/PS: the AudioSpecificConfig names the
        // extension object type, so `mp4a.40.5` in manifests matches what decoders see.
        let signaling = if config.profile == AacProfile::AacLc {
            0
        } else {
            2
        };
        let params: [(sys::AACENC_PARAM, u32, &'static str); 9] = [
            (sys::AACENC_PARAM_AACENC_AOT, aot, "AACENC_AOT"),
            (
                sys::AACENC_PARAM_AACENC_SAMPLERATE,
                config.sample_rate,
                "AACENC_SAMPLERATE",
            ),
            (
                sys::AACENC_PARAM_AACENC_CHANNELMODE,
                sys::CHANNEL_MODE_MODE_2 as u32,
                "AACENC_CHANNELMODE",
            ),
            (
                sys::AACENC_PARAM_AACENC_CHANNELORDER,
                1,
                "AACENC_CHANNELORDER",
            ),
            (
                sys::AACENC_PARAM_AACENC_BITRATEMODE,
                0,
                "AACENC_BITRATEMODE",
            ),
            (
                sys::AACENC_PARAM_AACENC_BITRATE,
                config.bitrate,
                "AACENC_BITRATE",
            ),
            (sys::AACENC_PARAM_AACENC_TRANSMUX, 0, "AACENC_TRANSMUX"),
            (
                sys::AACENC_PARAM_AACENC_SIGNALING_MODE,
                signaling,
                "AACENC_SIGNALING_MODE",
            ),
            (
                sys::AACENC_PARAM_AACENC_AFTERBURNER,
                u32::from(config.afterburner),
                "AACENC_AFTERBURNER",
            ),
        ];
        for (param, value, name) in params {
            // SAFETY: the handle is valid (checked above) and the parameter ids come from fdk.
            let code = unsafe { sys::aacEncoder_SetParam(encoder.handle, param, value) };
            encoder.check(code, name)?;
        }
        // SAFETY: a call with all-null buffers initializes the encoder (aacenc_lib.h).
        let code = unsafe {
            sys::aacEncEncode(
                encoder.handle,
                ptr::null(),
                ptr::null(),
                ptr::null(),
                ptr::null_mut(),
            )
        };
        encoder.check(code, "aacEncEncode(init)")?;
        let mut raw = std::mem::MaybeUninit::<sys::AACENC_InfoStruct>::zeroed();
        // SAFETY: aacEncInfo fills the struct; zeroed memory is a valid AACENC_InfoStruct.
        let code = unsafe { sys::aacEncInfo(encoder.handle, raw.as_mut_ptr()) };
        encoder.check(code, "aacEncInfo")?;
        // SAFETY: initialized by the zeroing and by aacEncInfo.
        let raw = unsafe { raw.assume_init() };
        let conf_len = (raw.confSize as usize).min(raw.confBuf.len());
        // nDelay includes the SBR decoder's delay, which is what a decoder's output shows. With
        // SBR, FFmpeg's AAC decoder (the one Chromium and Firefox use) outputs the signal one
        // sample earlier than fdk's figure: measured by cross-correlation at 44.1 and 48 kHz
        // (tests/gapless.rs), so that sample is taken off to line up at lag 0.
        let delay = match config.profile {
            AacProfile::AacLc => raw.nDelay,
            AacProfile::HeAac | AacProfile::HeAacV2 => raw.nDelay.saturating_sub(1),
        };
        encoder.info = EncoderInfo {
            frame_length: raw.frameLength,
            delay,
            audio_specific_config: raw.confBuf[..conf_len].to_vec(),
        };
        encoder.out_buf = vec![0; (raw.maxOutBufBytes as usize).max(8192)];
        encoder.frame_samples = raw.frameLength as usize * 2;
        encoder.pending = Vec::with_capacity(encoder.frame_samples);
        encoder.flush_zeros = u64::from(raw.nDelay);
        Ok(encoder)
    }

    /// What the encoder reported after configuration.
    pub fn info(&self) -> &EncoderInfo {
        &self.info
    }

    /// The configuration the encoder was opened with.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    fn check(&self, code: sys::AACENC_ERROR, call: &'static str) -> Result<(), EncodeError> {
        if code == sys::AACENC_ERROR_AACENC_OK {
            return Ok(());
        }
        Err(EncodeError::Fdk {
            config: self.describe(),
            call,
            message: fdk_message(code),
            code,
        })
    }

    /// The rendition this encoder makes, for error messages.
    fn describe(&self) -> String {
        format!(
            "{} {} bit/s at {} Hz",
            self.config.profile, self.config.bitrate, self.config.sample_rate
        )
    }

    /// Encodes interleaved stereo PCM; calls `on_frame` with each access unit completed.
    ///
    /// Input that does not fill a frame is kept for the next call (or for [`Self::flush`]).
    pub fn encode(
        &mut self,
        pcm: &[i16],
        mut on_frame: impl FnMut(&[u8]),
    ) -> Result<(), EncodeError> {
        let mut pcm = pcm;
        if !self.pending.is_empty() {
            let take = (self.frame_samples - self.pending.len()).min(pcm.len());
            self.pending.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.pending.len() < self.frame_samples {
                return Ok(());
            }
            let frame = std::mem::take(&mut self.pending);
            self.encode_frame(&frame, &mut on_frame)?;
            self.pending = frame;
            self.pending.clear();
        }
        let mut frames = pcm.chunks_exact(self.frame_samples);
        for frame in frames.by_ref() {
            self.encode_frame(frame, &mut on_frame)?;
        }
        self.pending.extend_from_slice(frames.remainder());
        Ok(())
    }

    /// Signals the end of input and emits every remaining access unit.
    ///
    /// Pads with zeros as fdk's own flush would (the partial frame, then whole frames until at
    /// least fdk's delay has been appended), but through whole-frame input: see [`AacEncoder`].
    pub fn flush(&mut self, mut on_frame: impl FnMut(&[u8])) -> Result<(), EncodeError> {
        if self.finished {
            return Ok(());
        }
        let mut frame = std::mem::take(&mut self.pending);
        let mut appended = (self.frame_samples - frame.len()) as u64 / 2;
        frame.resize(self.frame_samples, 0);
        self.encode_frame(&frame, &mut on_frame)?;
        frame.fill(0);
        while appended < self.flush_zeros {
            self.encode_frame(&frame, &mut on_frame)?;
            appended += self.frame_samples as u64 / 2;
        }
        self.finished = true;
        Ok(())
    }

    /// Encodes exactly one frame of interleaved samples (fdk holds nothing back between calls).
    fn encode_frame(
        &mut self,
        frame: &[i16],
        on_frame: &mut impl FnMut(&[u8]),
    ) -> Result<(), EncodeError> {
        let (consumed, produced) = self.call(frame)?;
        if consumed != frame.len() {
            return Err(EncodeError::Stalled {
                config: self.describe(),
                remaining: frame.len() - consumed.min(frame.len()),
            });
        }
        if produced > 0 {
            on_frame(&self.out_buf[..produced]);
        }
        Ok(())
    }

    /// One `aacEncEncode` call with `pcm` (at most one frame, so its size fits a c_int). Returns
    /// (samples consumed, bytes produced).
    fn call(&mut self, pcm: &[i16]) -> Result<(usize, usize), EncodeError> {
        let (code, out_args) = self.raw_encode(pcm, pcm.len() as c_int);
        self.check(code, "aacEncEncode")?;
        Ok((
            out_args.numInSamples.max(0) as usize,
            out_args.numOutBytes.max(0) as usize,
        ))
    }

    /// `aacEncEncode` as is: `pcm` with `num_in_samples` (-1 asks fdk to flush), the output into
    /// `out_buf`.
    fn raw_encode(
        &mut self,
        pcm: &[i16],
        num_in_samples: c_int,
    ) -> (sys::AACENC_ERROR, sys::AACENC_OutArgs) {
        let mut in_ptr = pcm.as_ptr() as *mut c_void;
        let mut in_id: c_int = sys::AACENC_BufferIdentifier_IN_AUDIO_DATA as c_int;
        let mut in_size: c_int = (pcm.len() * 2) as c_int;
        let mut in_el: c_int = 2;
        let in_desc = sys::AACENC_BufDesc {
            numBufs: 1,
            bufs: &mut in_ptr,
            bufferIdentifiers: &mut in_id,
            bufSizes: &mut in_size,
            bufElSizes: &mut in_el,
        };
        let mut out_ptr = self.out_buf.as_mut_ptr() as *mut c_void;
        let mut out_id: c_int = sys::AACENC_BufferIdentifier_OUT_BITSTREAM_DATA as c_int;
        let mut out_size: c_int = self.out_buf.len() as c_int;
        let mut out_el: c_int = 1;
        let out_desc = sys::AACENC_BufDesc {
            numBufs: 1,
            bufs: &mut out_ptr,
            bufferIdentifiers: &mut out_id,
            bufSizes: &mut out_size,
            bufElSizes: &mut out_el,
        };
        let in_args = sys::AACENC_InArgs {
            numInSamples: num_in_samples,
            numAncBytes: 0,
        };
        // SAFETY: zeroed AACENC_OutArgs is valid plain data.
        let mut out_args: sys::AACENC_OutArgs = unsafe { std::mem::zeroed() };
        // SAFETY: every descriptor points at live buffers of the stated sizes for this call.
        let code =
            unsafe { sys::aacEncEncode(self.handle, &in_desc, &out_desc, &in_args, &mut out_args) };
        (code, out_args)
    }
}

impl Drop for AacEncoder {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: the handle came from aacEncOpen and is closed exactly once.
            unsafe { sys::aacEncClose(&mut self.handle) };
        }
    }
}

/// Converts float PCM in [-1, 1] to 16-bit with rounding and clipping.
pub fn f32_to_i16(input: &[f32], out: &mut Vec<i16>) {
    out.clear();
    out.extend(
        input
            .iter()
            .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
    );
}

#[cfg(test)]
mod tests;
