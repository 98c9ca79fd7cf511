//! Source decoding: any audio file symphonia understands becomes interleaved stereo `f32` PCM at
//! the source sample rate, plus its tags and cover art. Encoder delay and padding are trimmed
//! (MP3 LAME/Xing header, Ogg granule positions, MP4 `iTunSMPB` or edit list) so the output is
//! exactly the original samples: later stages count samples to keep tracks gapless, so a stray
//! 1105-sample MP3 priming gap would be audible and would break the segment arithmetic. Mono is
//! duplicated to both sides; more channels are downmixed with ITU-R BS.775 style coefficients,
//! scaled so the mix cannot clip. Hostile headers are rejected before anything allocates, and
//! symphonia panics are caught and reported as errors for that file.
//!
//! This module holds the packet loop; the public types are in `types`. The parts with a subject
//! of their own are submodules, in the order a file meets them: `header_check` (WAV/AIFF header
//! limits, before symphonia sees the file), `repair` (WAV and AIFF size fields that are not the
//! truth, tags after FLAC), `symphonia_glue` (probing, panic containment, error mapping, the
//! codec registry), `track_choice` (which audio track), `opus` (the Opus decoder symphonia
//! lacks: libopus, with the pre-skip), `fdk_aac` (HE-AAC, which symphonia's AAC decoder lacks:
//! fdk-aac; also AAC-LC at a low core rate, which may carry SBR signalled implicitly:
//! `implicit_sbr`), `mpa_layout` (MP3 whose channel mode changes mid-stream), `tags` (tags and
//! cover art), `mp4_gapless` (MP4 priming trim), `flac_end` (a wrong STREAMINFO total or a cut
//! file) and `downmix` (channels to stereo).

mod downmix;
mod fdk_aac;
#[cfg(test)]
mod fdk_aac_tests;
mod flac_end;
mod header_check;
mod implicit_sbr;
#[cfg(test)]
mod implicit_sbr_tests;
mod mp4_gapless;
mod mpa_layout;
mod opus;
#[cfg(test)]
mod opus_tests;
mod repair;
mod riff_info;
mod symphonia_glue;
mod tags;
#[cfg(test)]
mod tests;
mod track_choice;
mod types;

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use symphonia::core::audio::Channels;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::well_known as fmts;
use symphonia::core::formats::{FormatReader, TrackType};
use symphonia::core::packet::Packet;
use symphonia::core::units::{Duration, Timestamp};

use mp4_gapless::GaplessTrim;
use symphonia_glue::{audio_params, codec_name, make_decoder, probe, uses_fdk};
pub use types::{CoverArt, DecodeError, DecodeOptions, SourceInfo, Tags};
use types::{guard, sym_error};

/// Bytes read from the start of a file for its INFO tags and Ogg stream order: an INFO list is
/// a few hundred bytes, and Ogg puts every beginning-of-stream page first.
const HEAD_BYTES: u64 = 64 << 10;

/// Consecutive undecodable packets tolerated (each skipped with a warning) before giving up.
const MAX_BAD_PACKETS: u32 = 8;

/// Decodes one file to interleaved stereo `f32` chunks.
pub struct SourceDecoder {
    reader: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    info: SourceInfo,
    tags: Tags,
    cover: Option<CoverArt>,
    /// Frames the stream must reach where the header is reliable (FLAC, WAV, AIFF).
    exact_frames: Option<u64>,
    /// For FLAC, the bytes of frames read: a whole file with a wrong total is read past.
    flac_end: Option<flac_end::FlacEnd>,
    /// The duration cap, in frames, enforced while decoding too (headers may not say).
    max_frames: u64,
    /// The channel cap, enforced on every decoded packet (a chained section may differ).
    max_channels: u32,
    /// Whether the packets' end trims are applied. symphonia's MP3 reader trims to a frame count
    /// (the Xing header's, or without one an estimate from the first frames' mean size, which cuts
    /// a VBR file short by any amount); MPEG audio is trimmed as ffmpeg trims it instead: the LAME
    /// tag's delay at the start, its padding at the real end of the stream ([`Self::held`]).
    packet_trims: bool,
    /// Frames held back from the end of the output: the LAME padding, dropped at the end if the
    /// stream ends where the Xing frame count says (as ffmpeg does), else released: a stream
    /// that goes on (files joined) or stops early (cut) has other frames at its end.
    hold: usize,
    /// Frames (after the start trim, padding included) the stream holds if its header is right.
    stated_end: Option<u64>,
    /// The interleaved frames held back so far (at most `hold`).
    held: Vec<f32>,
    /// Container-level gapless trim the decoder does not apply (MP4): frames to drop, to keep.
    skip: u64,
    remaining: Option<u64>,
    layout: Option<Channels>,
    /// Downmix coefficients `[left, right]` per decoded plane, for `layout`.
    matrix: Vec<[f32; 2]>,
    planes: Vec<Vec<f32>>,
    out: Vec<f32>,
    frames: u64,
    done: bool,
    /// Whether an empty packet goes to the decoder at the end (fdk-aac's delay line).
    drain: bool,
    /// A packet read ahead while opening (`implicit_sbr`), decoded first.
    pending: Option<Packet>,
}

impl SourceDecoder {
    /// Opens and probes `path`; validates limits before creating the decoder.
    pub fn open(path: &Path, options: &DecodeOptions) -> Result<Self, DecodeError> {
        let mut file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Err(DecodeError::Empty);
        }
        // symphonia's WAV reader overflows (a panic in debug builds) on absurd header values.
        header_check::check_header(&mut file, options)?;
        // The start of the file, where WAV INFO tags and Ogg beginning-of-stream pages are.
        let mut head = Vec::new();
        file.by_ref().take(HEAD_BYTES).read_to_end(&mut head)?;
        file.rewind()?;
        let wav_info = riff_info::parse(&head);
        let ogg_order = track_choice::bos_serials(&head);
        let flac_end = flac_end::FlacEnd::open(&mut file)?;
        let (source, shown_len) = repair::open(file, flac_end.is_some())?;
        let flac_end = flac_end.map(|f| f.with_file_len(shown_len));
        let mut reader = probe(source)?;
        let Some(track) = track_choice::choose_audio_track(reader.as_ref(), &ogg_order) else {
            let unknown = reader.first_track(TrackType::Audio).and_then(audio_params);
            let unknown = unknown.map(|p| DecodeError::UnsupportedCodec(codec_name(p.codec)));
            return Err(unknown.unwrap_or(DecodeError::NoAudioTrack));
        };
        let params = audio_params(&track).ok_or(DecodeError::NoAudioTrack)?;

        // Limits, before any decoder sizes its buffers by these values. What the container leaves
        // out comes from the decoder: ffmpeg writes rate 0 for AAC above 65535 Hz in MP4, where
        // the rate is then only in the AudioSpecificConfig.
        let container_channels = params
            .channels
            .as_ref()
            .map(Channels::count)
            .filter(|&n| n > 0);
        let container_rate = params.sample_rate.filter(|&rate| rate > 0);
        if let Some(channels) = container_channels {
            options.check_channels(channels)?;
        }
        if let Some(rate) = container_rate {
            options.check_rate(rate.into())?;
        }
        let registry = symphonia_glue::codecs();
        if registry.get_audio_decoder(params.codec).is_none() {
            return Err(DecodeError::UnsupportedCodec(codec_name(params.codec)));
        }
        // Gapless on: the MP3 and Vorbis decoders then apply the packets' trim fields.
        let opts = AudioDecoderOptions::default().gapless(true);
        let decoder = make_decoder(params, &opts)?;
        let decoded = decoder.codec_params();
        // Implicit SBR: the output's rate is known once a frame is decoded (`implicit_sbr`).
        let (probed, pending) = match implicit_sbr::is_candidate(params) {
            true => implicit_sbr::probe_rate(reader.as_mut(), track.id, params),
            false => (None, None),
        };
        // HE-AAC: the container may state the core rate and a parametric stereo stream's mono
        // core; the output's rate and channels are the decoder's.
        let (container_channels, container_rate) = match (probed, fdk_aac::is_he_aac(params)) {
            (Some((rate, channels)), _) => (Some(channels), Some(rate)),
            (None, true) => (None, None),
            (None, false) => (container_channels, container_rate),
        };
        let channels = container_channels.or(decoded.channels.as_ref().map(Channels::count));
        // symphonia 0.6.1's MP4 reader states no channels for MP3 in MP4 (ffmpeg reads them from
        // the first frame): a known gap, refused with a message that says so.
        let channels = channels.filter(|&n| n > 0).ok_or_else(|| {
            let codec = codec_name(params.codec);
            DecodeError::UnsupportedCodec(format!("{codec} with no channel count in the container"))
        })?;
        let channels = options.check_channels(channels)?;
        let rate = container_rate.or(decoded.sample_rate);
        let rate =
            rate.ok_or_else(|| DecodeError::Limit("the sample rate is not specified".into()))?;
        let rate = options.check_rate(rate.into())?;
        let max_frames = options.max_duration_seconds.saturating_mul(u64::from(rate));
        if let Some(n) = track.num_frames.filter(|&n| n > max_frames) {
            let (secs, max) = (n / u64::from(rate), options.max_duration_seconds);
            let msg = format!("duration of {secs} s is above the limit of {max} s");
            return Err(DecodeError::Limit(msg));
        }

        let (mut tags, cover, itunes_gapless) = tags::read_metadata(reader.as_mut(), track.id);
        tags.fill_from(wav_info);
        let format = reader.format_info().format;
        let (mut skip, mut remaining, mut total_frames) = (0, None, track.num_frames);
        // An Ogg Opus stream's final granule position counts the pre-skip too (RFC 7845 4.2).
        if format == fmts::FORMAT_ID_OGG && params.codec == CODEC_ID_OPUS {
            total_frames = total_frames.map(|n| n.saturating_sub(track.delay.unwrap_or(0).into()));
        }
        // symphonia's MP4 reader ignores the encoder delay (AAC priming): trim it here.
        if format == fmts::FORMAT_ID_ISOMP4
            && let Some(GaplessTrim { skip: delay, keep }) =
                itunes_gapless.or_else(|| mp4_gapless::edit_list_trim(path, &track, rate))
        {
            (skip, remaining, total_frames) = (delay, Some(keep), Some(keep));
        }
        // Gapless trimming comes only from what the file states. For MPEG audio that is the LAME
        // tag's delay and padding, which ffmpeg applies too; a frame count is not a trim.
        let mpeg_audio = [
            fmts::FORMAT_ID_MP1,
            fmts::FORMAT_ID_MP2,
            fmts::FORMAT_ID_MP3,
        ];
        // Implicit SBR doubles the rate the packets' durations and trims count in: none apply.
        let sbr = probed.is_some_and(|(rate, _)| Some(rate) != params.sample_rate);
        let mpeg_audio = mpeg_audio.contains(&format);
        let packet_trims = !mpeg_audio && !sbr;
        let hold = match mpeg_audio {
            true => track.padding.unwrap_or(0) as usize,
            false => 0,
        };
        let stated_end = track.num_frames.map(|n| n + hold as u64);
        let exact = matches!(
            format,
            fmts::FORMAT_ID_FLAC | fmts::FORMAT_ID_WAVE | fmts::FORMAT_ID_AIFF
        );
        let container = match format {
            fmts::FORMAT_ID_WAVE => "wav".into(),
            fmts::FORMAT_ID_ISOMP4 => "mp4".into(),
            fmts::FORMAT_ID_ADTS => "adts".into(),
            _ => reader.format_info().short_name.to_ascii_lowercase(),
        };
        let codec = codec_name(params.codec);
        let bits_per_sample = params.bits_per_sample;
        let info = SourceInfo {
            container,
            codec,
            sample_rate: rate,
            channels,
            bits_per_sample,
            total_frames,
        };
        Ok(Self {
            reader,
            decoder,
            track_id: track.id,
            info,
            tags,
            cover,
            exact_frames: track.num_frames.filter(|&n| exact && n > 0),
            flac_end: flac_end.filter(|_| format == fmts::FORMAT_ID_FLAC),
            max_frames,
            max_channels: options.max_channels,
            packet_trims,
            hold,
            stated_end,
            held: Vec::new(),
            skip,
            remaining,
            layout: None,
            matrix: Vec::new(),
            planes: Vec::new(),
            out: Vec::new(),
            frames: 0,
            done: false,
            drain: uses_fdk(params),
            pending,
        })
    }

    /// What the source is.
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Tags read from the file.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// Largest front cover (or the largest visual if there is no front cover).
    pub fn cover(&self) -> Option<&CoverArt> {
        self.cover.as_ref()
    }

    /// Total frames (samples per channel) returned so far.
    pub fn frames_decoded(&self) -> u64 {
        self.frames
    }

    /// The next chunk of interleaved stereo `f32` (L,R,L,R...), nominal range [-1, 1], at the
    /// source rate; `Ok(None)` at the end. The slice is valid until the next call.
    pub fn next_chunk(&mut self) -> Result<Option<&[f32]>, DecodeError> {
        if self.done {
            return Ok(None);
        }
        let more = self.decode_next();
        self.done = !matches!(more, Ok(true));
        more.map(|more| more.then_some(self.out.as_slice()))
    }

    /// Decodes packets until one yields audio (`true`) or the stream ends (`false`).
    fn decode_next(&mut self) -> Result<bool, DecodeError> {
        let mut bad = 0;
        while self.remaining != Some(0) {
            let next = match self.pending.take() {
                Some(packet) => Ok(Some(packet)),
                None => guard(|| self.reader.next_packet())?,
            };
            let mut packet = match next {
                Ok(Some(packet)) => packet,
                // HE-AAC: an empty packet drains the decoder's delay line (`fdk_aac`).
                Ok(None) if self.drain => {
                    self.drain = false;
                    let track = self.track_id;
                    Packet::new(track, Timestamp::ZERO, Duration::ZERO, Vec::new())
                }
                Ok(None) => return self.end_of_stream(),
                Err(SymError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof
                        && self
                            .flac_end
                            .as_ref()
                            .is_some_and(flac_end::FlacEnd::is_whole) =>
                {
                    let stated = self.exact_frames.take().unwrap_or_default();
                    tracing::warn!(
                        "STREAMINFO states {stated} samples but the whole file holds {}: \
                         the header is wrong, every frame is kept",
                        self.frames
                    );
                    return self.end_of_stream();
                }
                Err(SymError::ResetRequired) => {
                    self.next_section()?;
                    continue;
                }
                Err(e) => return Err(sym_error(e)),
            };
            if let Some(flac) = self.flac_end.as_mut() {
                flac.count(packet.data.len());
            }
            if packet.track_id != self.track_id {
                continue;
            }
            if !self.packet_trims {
                packet.trim_end = Duration::ZERO;
            }
            let (decoder, planes) = (&mut self.decoder, &mut self.planes);
            let decoded = guard(|| {
                let buf = decoder.decode(&packet)?;
                buf.copy_to_vecs_planar::<f32>(planes);
                Ok((
                    buf.frames(),
                    buf.spec().rate(),
                    buf.spec().channels().clone(),
                ))
            })?;
            let (frames, rate, layout) = match decoded {
                Ok(decoded) => decoded,
                // One bad packet is skipped (the decoder docs call these recoverable); a run is not.
                Err(e @ (SymError::DecodeError(_) | SymError::IoError(_)))
                    if bad < MAX_BAD_PACKETS =>
                {
                    bad += 1;
                    tracing::warn!("skipping an undecodable packet: {e}");
                    continue;
                }
                Err(e) => return Err(sym_error(e)),
            };
            bad = 0;
            let n = self.planes.len();
            if rate != self.info.sample_rate || n == 0 || n > self.max_channels as usize {
                let msg = format!("the stream changes to {rate} Hz, {n} channels mid-way");
                return Err(DecodeError::Malformed(msg));
            }
            if self.layout.as_ref() != Some(&layout) || self.matrix.len() != n {
                self.matrix = downmix::mix_matrix(&layout, n);
                self.layout = Some(layout);
            }

            // Trims the decoder left to us. A decoder that ignores the packet's trim fields returns
            // more frames than `packet.dur`; the MP4 reader also marks a short final AAC frame only
            // through its duration. Then the container's delay and length.
            let (dur, trim) = (packet.dur.get() as usize, packet.trim_start.get() as usize);
            let (mut start, mut end) = (0, frames);
            if self.packet_trims
                && frames > dur
                && (dur > 0 || trim > 0 || !packet.trim_end.is_zero())
            {
                start = trim.min(frames - dur);
                end = start + dur;
            }
            let skip = self.skip.min((end - start) as u64);
            self.skip -= skip;
            start += skip as usize;
            if let Some(left) = self.remaining.as_mut() {
                end = start + (end - start).min(*left as usize);
                *left -= (end - start) as u64;
            }
            if end == start {
                continue;
            }
            downmix::mix(&self.planes, &self.matrix, start..end, &mut self.out);
            if self.hold > 0 {
                self.held.extend_from_slice(&self.out);
                let release = self.held.len().saturating_sub(2 * self.hold);
                self.out.clear();
                self.out.extend(self.held.drain(..release));
                if self.out.is_empty() {
                    continue;
                }
            }
            self.frames += self.out.len() as u64 / 2;
            if self.frames > self.max_frames {
                let max = self.max_frames / u64::from(self.info.sample_rate);
                return Err(DecodeError::Limit(format!(
                    "duration is above the limit of {max} s"
                )));
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// A chained Ogg file (RFC 3533 4: complete streams one after another, each with its own
    /// headers) makes symphonia ask for a reset where a new section starts. The section joins the
    /// track, as ffmpeg joins it: the decoder is made anew for the section's first decodable audio
    /// stream. A section at another sample rate cannot (the track has one rate): that is an error
    /// naming both rates, where ffmpeg would resample it.
    fn next_section(&mut self) -> Result<(), DecodeError> {
        let track = track_choice::choose_audio_track(self.reader.as_ref(), &[]);
        let params = track.as_ref().and_then(audio_params);
        let (Some(track), Some(params)) = (track.as_ref(), params) else {
            let msg = "a chained section of the file has no audio stream".to_string();
            return Err(DecodeError::Malformed(msg));
        };
        let rate = self.info.sample_rate;
        if let Some(other) = params.sample_rate.filter(|&r| r != rate) {
            return Err(DecodeError::Malformed(format!(
                "a chained section of the file changes the sample rate from {rate} to {other} Hz"
            )));
        }
        let opts = AudioDecoderOptions::default().gapless(true);
        self.decoder = make_decoder(params, &opts)?;
        self.track_id = track.id;
        Ok(())
    }

    /// End of stream: the held-back frames are padding only if the stream ends where its header
    /// says; otherwise they are released as the last chunk. Then [`Self::finish`].
    fn end_of_stream(&mut self) -> Result<bool, DecodeError> {
        let held = self.held.len() as u64 / 2;
        if held == 0 || Some(self.frames + held) == self.stated_end {
            self.held.clear();
            return self.finish();
        }
        std::mem::swap(&mut self.out, &mut self.held);
        self.held.clear();
        self.hold = 0;
        self.frames += held;
        Ok(true)
    }

    /// End of stream: a stream shorter than its reliable header announced is truncated.
    fn finish(&mut self) -> Result<bool, DecodeError> {
        match self.exact_frames {
            Some(n) if self.frames < n => {
                let msg = format!("truncated: decoded {} of {n} samples", self.frames);
                Err(DecodeError::Malformed(msg))
            }
            _ => Ok(false),
        }
    }
}
