//! MPEG audio whose channel mode changes mid-stream (a mono file and a stereo file joined, as MP3
//! joiners and `cat` make them): symphonia's MP1/2/3 decoder sizes its buffer by the first frame
//! and refuses any later frame with another layout ("invalid audio buffer signal spec for
//! packet"), where ffmpeg decodes every frame at its own layout. This wrapper reads each frame's
//! header (ISO/IEC 11172-3 2.4.1.3: the mode is bits 7-6 of the fourth byte, `11` single
//! channel) and makes a new symphonia decoder where the channel count changes; `SourceDecoder`
//! then mixes each chunk to stereo by its own layout. The new decoder starts without the old
//! one's bit reservoir and overlap: a layout change is where a new file begins, whose first frame
//! is its Xing/Info frame (no reservoir, silence), so only the last frame's overlap tail (near
//! silence in the old file's padding) differs from ffmpeg, which carries it over.
//!
//! Upstream report (symphonia-bundle-mp3 0.6.1, `MpaDecoder::decode_inner`): "An MP3 stream
//! that changes from mono to stereo (or back) mid-stream, e.g. `cat mono.mp3 stereo.mp3`, fails
//! at the first frame of the new mode with `mpa: invalid audio buffer signal spec for packet`
//! (the TODO there). ffmpeg decodes it, reporting the new layout per frame. Suggested fix:
//! re-create `self.buf` with `header.spec()` when the channels change, keeping the layer state
//! (the reservoir and per-channel overlap are already sized for two channels)."
//! Once that lands, this module can go.

use symphonia::core::codecs::CodecInfo;
use symphonia::core::codecs::audio::well_known::{CODEC_ID_MP1, CODEC_ID_MP2, CODEC_ID_MP3};
use symphonia::core::codecs::audio::{
    AudioCodecParameters, AudioDecoder, AudioDecoderOptions, FinalizeResult,
};
use symphonia::core::errors::Result;
use symphonia::core::packet::PacketRef;
use symphonia::default::codecs::MpaDecoder;

use symphonia::core::audio::GenericAudioBufferRef;

/// Whether the MPEG audio frame starting `packet` is single channel; `None` if the packet does
/// not start with a frame header (the inner decoder then reports it).
fn is_mono(packet: &[u8]) -> Option<bool> {
    match packet {
        [0xff, b1, _, b3, ..] if b1 & 0xe0 == 0xe0 => Some(b3 >> 6 == 0b11),
        _ => None,
    }
}

/// symphonia's MPEG audio decoder, made anew where the channel mode changes.
pub(super) struct MpaLayoutDecoder {
    params: AudioCodecParameters,
    opts: AudioDecoderOptions,
    inner: MpaDecoder,
    /// The channel mode of the frames the inner decoder has decoded (`None` before the first).
    mono: Option<bool>,
}

impl MpaLayoutDecoder {
    /// Wraps a symphonia MPEG audio decoder for `params`.
    fn try_new(params: &AudioCodecParameters, opts: &AudioDecoderOptions) -> Result<Self> {
        Ok(Self {
            params: params.clone(),
            opts: *opts,
            inner: MpaDecoder::try_new(params, opts)?,
            mono: None,
        })
    }
}

impl AudioDecoder for MpaLayoutDecoder {
    fn reset(&mut self) {
        self.inner.reset();
    }

    fn codec_info(&self) -> &CodecInfo {
        self.inner.codec_info()
    }

    fn codec_params(&self) -> &AudioCodecParameters {
        self.inner.codec_params()
    }

    fn decode_ref(&mut self, packet: &PacketRef<'_>) -> Result<GenericAudioBufferRef<'_>> {
        let mono = is_mono(packet.data);
        if let (Some(was), Some(now)) = (self.mono, mono)
            && was != now
        {
            tracing::debug!("MPEG audio changes channel mode mid-stream: a new decoder");
            self.inner = MpaDecoder::try_new(&self.params, &self.opts)?;
        }
        let decoded = self.inner.decode_ref(packet);
        if decoded.is_ok() {
            self.mono = mono.or(self.mono);
        }
        decoded
    }

    fn finalize(&mut self) -> FinalizeResult {
        self.inner.finalize()
    }

    fn last_decoded(&self) -> GenericAudioBufferRef<'_> {
        self.inner.last_decoded()
    }
}

/// Makes the decoder for `params`: the wrapper for MPEG audio, else `None`.
pub(super) fn make(
    params: &AudioCodecParameters,
    opts: &AudioDecoderOptions,
) -> Option<Result<Box<dyn AudioDecoder>>> {
    [CODEC_ID_MP1, CODEC_ID_MP2, CODEC_ID_MP3]
        .contains(&params.codec)
        .then(|| MpaLayoutDecoder::try_new(params, opts).map(|d| Box::new(d) as _))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decode, ffmpeg, ffmpeg_f32, ffmpeg_frames};

    #[test]
    fn mp3_that_changes_channel_mode_decodes_whole() {
        let dir = tempfile::tempdir().unwrap();
        let sine = |f| format!("-f lavfi -i sine=f={f}:r=44100:d=1 -c:a libmp3lame");
        let mono = ffmpeg(dir.path(), "mono.mp3", &sine(440), &["-ac", "1"]);
        let stereo = ffmpeg(dir.path(), "stereo.mp3", &sine(660), &["-ac", "2"]);
        let [mono, stereo] = [mono, stereo].map(|p| std::fs::read(p).unwrap());
        let cases = [("ms.mp3", [&mono, &stereo]), ("sm.mp3", [&stereo, &mono])];
        for (i, (name, parts)) in cases.into_iter().enumerate() {
            let path = dir.path().join(name);
            std::fs::write(&path, parts.map(|p| &p[..]).concat()).unwrap();
            let (info, pcm) = decode(&path);
            assert_eq!(pcm.len() as u64 / 2, ffmpeg_frames(&path), "{name}");
            // Equal to ffmpeg's samples but where the second file starts (after the first one's
            // 1 s and its padding, a few frames of near silence): ffmpeg carries the old frame's
            // overlap over, the new decoder starts from silence.
            let want = ffmpeg_f32(&path, &["-ac", "1"]);
            let join = 44_100;
            // segue's mid channel in ffmpeg's scale: its downmix (swresample) mixes a stereo frame
            // to (L + R) / sqrt(2).
            let stereo_part = |at: usize| (at >= join) == (i == 0);
            let scale = |at| if stereo_part(at) { 2f32.sqrt() } else { 1.0 };
            let got = pcm.chunks_exact(2).enumerate();
            let got = got.map(|(at, lr)| (lr[0] + lr[1]) / 2.0 * scale(at));
            for (at, (a, b)) in got.zip(&want).enumerate() {
                let near_join = (join..join + 3 * 1152).contains(&at);
                let tolerance = if near_join { 1e-3 } else { 1e-4 };
                assert!(
                    (a - b).abs() < tolerance,
                    "{name}: {a} != {b} at {at} ({info:?})"
                );
            }
        }
    }
}
