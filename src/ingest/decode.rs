//! Source decoding: any audio file symphonia understands becomes interleaved stereo `f32` PCM at
//! the source sample rate, plus its tags and cover art. Encoder delay and padding are trimmed
//! (MP3 LAME/Xing header, Ogg granule positions, MP4 `iTunSMPB` or edit list) so the output is
//! exactly the original samples: later stages count samples to keep tracks gapless, so a stray
//! 1105-sample MP3 priming gap would be audible and would break the segment arithmetic. Mono is
//! duplicated to both sides; more channels are downmixed with ITU-R BS.775 style coefficients,
//! scaled so the mix cannot clip. Hostile headers are rejected before anything allocates, and
//! symphonia panics are caught and reported as errors for that file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use symphonia::core::audio::{ChannelLabel, Channels, Position};
use symphonia::core::codecs::audio::well_known as ids;
use symphonia::core::codecs::audio::{AudioCodecId, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::well_known as fmts;
use symphonia::core::formats::{FormatOptions, FormatReader, Track, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{MetadataOptions, MetadataRevision, RawValue, StandardTag, Tag};
use symphonia::core::meta::{StandardVisualKey, Visual};

/// Limits that protect against hostile headers (checked before allocating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Largest accepted channel count.
    pub max_channels: u32,
    /// Highest accepted sample rate, in Hz.
    pub max_sample_rate: u32,
    /// Lowest accepted sample rate, in Hz.
    pub min_sample_rate: u32,
    /// Longest accepted duration, in seconds.
    pub max_duration_seconds: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        let max_duration_seconds = 6 * 3600;
        Self {
            max_channels: 32,
            max_sample_rate: 768_000,
            min_sample_rate: 8_000,
            max_duration_seconds,
        }
    }
}

/// What the source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// Short container name: "flac", "wav", "aiff", "mp3", "ogg", "mp4", "adts".
    pub container: String,
    /// Short lowercase codec name: "flac", "mp3", "aac", "alac", "vorbis", "pcm_s16le", ...
    pub codec: String,
    /// Sample rate, in Hz.
    pub sample_rate: u32,
    /// Channel count of the source (the output is always stereo).
    pub channels: u32,
    /// Bits per sample, for codecs that have them.
    pub bits_per_sample: Option<u32>,
    /// Frames (samples per channel) if the container says, after gapless trimming.
    pub total_frames: Option<u64>,
}

/// Tags read from the file (any metadata revision: container tags, ID3v2, Vorbis comments, ilst).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    /// Track title.
    pub title: Option<String>,
    /// Track artist.
    pub artist: Option<String>,
    /// Album title.
    pub album: Option<String>,
    /// Track number within its disc ("3/12" reads as 3).
    pub track_number: Option<u32>,
    /// Release or recording year.
    pub year: Option<i32>,
}

/// Embedded cover art.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverArt {
    /// Media type, e.g. "image/jpeg" or "image/png".
    pub media_type: String,
    /// The encoded image.
    pub data: Vec<u8>,
}

/// Why a file cannot be decoded. None is recoverable for that file: after an error,
/// [`SourceDecoder::next_chunk`] returns `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file cannot be opened or read.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    /// The file has zero bytes.
    #[error("file is empty")]
    Empty,
    /// No demuxer recognises the content.
    #[error("not a recognized audio file")]
    UnrecognizedFormat,
    /// The container holds no audio track.
    #[error("the file contains no audio track")]
    NoAudioTrack,
    /// The audio codec (named) is not supported.
    #[error("unsupported audio codec or feature: {0}")]
    UnsupportedCodec(String),
    /// A header value is beyond the configured limits; the message names value and limit.
    #[error("{0}")]
    Limit(String),
    /// The stream is corrupt or truncated; carries symphonia's message.
    #[error("the audio stream is corrupt or truncated: {0}")]
    Malformed(String),
    /// symphonia panicked on this file (the panic was caught).
    #[error("the decoder crashed on this file: {0}")]
    Panicked(String),
}

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
    /// The duration cap, in frames, enforced while decoding too (headers may not say).
    max_frames: u64,
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
}

impl DecodeOptions {
    /// Returns `channels` if within the limits.
    fn check_channels(&self, channels: usize) -> Result<u32, DecodeError> {
        let max = self.max_channels;
        match u32::try_from(channels) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(DecodeError::Limit(format!(
                "channel count {channels} is outside the supported range 1 to {max}"
            ))),
        }
    }

    /// Returns `rate` (Hz) if within the limits.
    fn check_rate(&self, rate: u32) -> Result<u32, DecodeError> {
        let (min, max) = (self.min_sample_rate, self.max_sample_rate);
        match rate {
            0 => Err(DecodeError::Limit(
                "the sample rate is not specified".into(),
            )),
            rate if (min..=max).contains(&rate) => Ok(rate),
            _ => Err(DecodeError::Limit(format!(
                "sample rate {rate} Hz is outside the supported range {min} to {max} Hz"
            ))),
        }
    }
}

impl SourceDecoder {
    /// Opens and probes `path`; validates limits before creating the decoder.
    pub fn open(path: &Path, options: &DecodeOptions) -> Result<Self, DecodeError> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Err(DecodeError::Empty);
        }
        let mut reader = probe(file)?;
        let Some(track) = reader.default_track(TrackType::Audio).cloned() else {
            let unknown = reader.first_track(TrackType::Audio).and_then(audio_params);
            let unknown = unknown.map(|p| DecodeError::UnsupportedCodec(codec_name(p.codec)));
            return Err(unknown.unwrap_or(DecodeError::NoAudioTrack));
        };
        let params = audio_params(&track).ok_or(DecodeError::NoAudioTrack)?;

        // Limits, before any decoder sizes its buffers by these values. What the container leaves
        // out comes from the decoder: ffmpeg writes rate 0 for AAC above 65535 Hz in MP4, where
        // the rate is then only in the AudioSpecificConfig.
        let container_channels = params.channels.as_ref().map(Channels::count);
        let container_rate = params.sample_rate.filter(|&rate| rate > 0);
        if let Some(channels) = container_channels {
            options.check_channels(channels)?;
        }
        if let Some(rate) = container_rate {
            options.check_rate(rate)?;
        }
        let registry = symphonia::default::get_codecs();
        if registry.get_audio_decoder(params.codec).is_none() {
            return Err(DecodeError::UnsupportedCodec(codec_name(params.codec)));
        }
        // Gapless on: the MP3 and Vorbis decoders then apply the packets' trim fields.
        let opts = AudioDecoderOptions::default().gapless(true);
        let decoder = guard(|| registry.make_audio_decoder(params, &opts))?.map_err(sym_error)?;
        let decoded = decoder.codec_params();
        let channels = container_channels.or(decoded.channels.as_ref().map(Channels::count));
        let channels = options.check_channels(channels.unwrap_or(0))?;
        let rate = options.check_rate(container_rate.or(decoded.sample_rate).unwrap_or(0))?;
        let max_frames = options.max_duration_seconds.saturating_mul(u64::from(rate));
        if let Some(n) = track.num_frames.filter(|&n| n > max_frames) {
            let (secs, max) = (n / u64::from(rate), options.max_duration_seconds);
            let msg = format!("duration of {secs} s is above the limit of {max} s");
            return Err(DecodeError::Limit(msg));
        }

        let (tags, cover, itunes_gapless) = read_metadata(reader.as_mut(), track.id);
        let format = reader.format_info().format;
        let (mut skip, mut remaining, mut total_frames) = (0, None, track.num_frames);
        // symphonia's MP4 reader ignores the encoder delay (AAC priming): trim it here.
        if format == fmts::FORMAT_ID_ISOMP4 {
            if let Some((delay, keep)) = itunes_gapless.or_else(|| mp4_edit(path, &track, rate)) {
                (skip, remaining, total_frames) = (delay, Some(keep), Some(keep));
            }
        }
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
            max_frames,
            skip,
            remaining,
            layout: None,
            matrix: Vec::new(),
            planes: Vec::new(),
            out: Vec::new(),
            frames: 0,
            done: false,
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
            let packet = match guard(|| self.reader.next_packet())? {
                Ok(Some(packet)) => packet,
                Ok(None) => return self.finish(),
                Err(SymError::ResetRequired) => {
                    return Err(DecodeError::Malformed(
                        "the stream changes format mid-way".into(),
                    ));
                }
                Err(e) => return Err(sym_error(e)),
            };
            if packet.track_id != self.track_id {
                continue;
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
            if rate != self.info.sample_rate || n == 0 || n > self.info.channels as usize {
                let msg = format!("the stream changes to {rate} Hz, {n} channels mid-way");
                return Err(DecodeError::Malformed(msg));
            }
            if self.layout.as_ref() != Some(&layout) || self.matrix.len() != n {
                self.matrix = mix_matrix(&layout, n);
                self.layout = Some(layout);
            }

            // Trims the decoder left to us. A decoder that ignores the packet's trim fields returns
            // more frames than `packet.dur`; the MP4 reader also marks a short final AAC frame only
            // through its duration. Then the container's delay and length.
            let (dur, trim) = (packet.dur.get() as usize, packet.trim_start.get() as usize);
            let (mut start, mut end) = (0, frames);
            if frames > dur && (dur > 0 || trim > 0 || !packet.trim_end.is_zero()) {
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
            self.out.clear();
            self.out.resize((end - start) * 2, 0.0);
            for (plane, [l, r]) in self.planes.iter().zip(&self.matrix) {
                for (o, s) in self.out.chunks_exact_mut(2).zip(&plane[start..end]) {
                    (o[0], o[1]) = (o[0] + s * l, o[1] + s * r);
                }
            }
            self.frames += (end - start) as u64;
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

/// Probes the file's content (symphonia 0.6 ignores hints). Metadata ahead of the stream (ID3v2)
/// is handed to the format reader and comes first in its metadata log.
fn probe(file: File) -> Result<Box<dyn FormatReader>, DecodeError> {
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let (probe, fmt_opts) = (symphonia::default::get_probe(), FormatOptions::default());
    let probed = guard(|| probe.probe(&Hint::new(), mss, fmt_opts, MetadataOptions::default()))?;
    probed.map_err(|e| match e {
        SymError::Unsupported(m) if m.contains("no suitable format reader") => {
            DecodeError::UnrecognizedFormat
        }
        e => sym_error(e),
    })
}

/// Runs a symphonia call, turning a panic (known to happen on malformed input) into an error.
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, DecodeError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let msg = panic.downcast_ref::<&str>().map(|s| s.to_string());
        let msg = msg.or_else(|| panic.downcast_ref::<String>().cloned());
        DecodeError::Panicked(msg.unwrap_or_else(|| "unknown panic".into()))
    })
}

fn sym_error(e: SymError) -> DecodeError {
    match e {
        // Real I/O failures carry an OS error; symphonia's own "out of bounds" reads do not.
        SymError::IoError(e) if e.raw_os_error().is_some() => DecodeError::Io(e),
        SymError::Unsupported(m) => DecodeError::UnsupportedCodec(m.into()),
        SymError::LimitError(m) => {
            DecodeError::Limit(format!("a header value is beyond a limit: {m}"))
        }
        SymError::DecodeError(m) => DecodeError::Malformed(m.into()),
        e => DecodeError::Malformed(e.to_string()),
    }
}

fn audio_params(track: &Track) -> Option<&symphonia::core::codecs::audio::AudioCodecParameters> {
    track.codec_params.as_ref().and_then(|p| p.audio())
}

fn codec_name(id: AudioCodecId) -> String {
    if let Some(registered) = symphonia::default::get_codecs().get_audio_decoder(id) {
        return registered.codec.info.short_name.to_ascii_lowercase();
    }
    // Codecs met in music libraries that this build cannot decode.
    let name = match id {
        ids::CODEC_ID_OPUS => "opus",
        ids::CODEC_ID_MP2 => "mp2",
        ids::CODEC_ID_AC3 => "ac3",
        ids::CODEC_ID_EAC3 => "eac3",
        ids::CODEC_ID_WAVPACK => "wavpack",
        _ => return format!("codec id {id}"),
    };
    name.into()
}

/// Stereo downmix coefficients `[left, right]` for each of `n` decoded planes (ITU-R BS.775:
/// centre and surrounds at -3 dB, LFE dropped), scaled so neither side's sum exceeds 1.
fn mix_matrix(layout: &Channels, n: usize) -> Vec<[f32; 2]> {
    use Position as P;
    const H: f32 = std::f32::consts::FRAC_1_SQRT_2;
    if n == 1 {
        return vec![[1.0, 1.0]];
    }
    let positions: Vec<Option<Position>> = match layout {
        Channels::Positioned(p) => (0..64)
            .filter(|b| (p.bits() >> b) & 1 == 1)
            .map(|b| Some(P::from_bits_retain(1 << b)))
            .collect(),
        Channels::Custom(labels) => labels
            .iter()
            .map(|l| {
                if let ChannelLabel::Positioned(p) = l {
                    Some(*p)
                } else {
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let left = P::FRONT_LEFT_CENTER | P::REAR_LEFT | P::SIDE_LEFT | P::TOP_FRONT_LEFT;
    let left =
        left | P::TOP_REAR_LEFT | P::TOP_SIDE_LEFT | P::BOTTOM_FRONT_LEFT | P::FRONT_LEFT_WIDE;
    let right = P::FRONT_RIGHT_CENTER | P::REAR_RIGHT | P::SIDE_RIGHT | P::TOP_FRONT_RIGHT;
    let right =
        right | P::TOP_REAR_RIGHT | P::TOP_SIDE_RIGHT | P::BOTTOM_FRONT_RIGHT | P::FRONT_RIGHT_WIDE;
    let by_position = |p: Position| match p {
        p if p.intersects(P::LFE1 | P::LFE2) => [0.0, 0.0],
        P::FRONT_LEFT => [1.0, 0.0],
        P::FRONT_RIGHT => [0.0, 1.0],
        p if p.intersects(left) => [H, 0.0],
        p if p.intersects(right) => [0.0, H],
        _ => [H, H],
    };
    // Unknown positions: even channels left, odd right.
    let parity = |i: usize| {
        if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] }
    };
    let by_index = |i| {
        positions
            .get(i)
            .copied()
            .flatten()
            .map_or_else(|| parity(i), by_position)
    };
    let mut m: Vec<[f32; 2]> = (0..n).map(by_index).collect();
    if m.iter().all(|c| *c == [0.0, 0.0]) {
        m = (0..n).map(parity).collect();
    }
    let sums = m
        .iter()
        .fold([0.0f32; 2], |s, c| [s[0] + c[0], s[1] + c[1]]);
    let peak = sums[0].max(sums[1]);
    if peak > 1.0 {
        m.iter_mut().for_each(|c| *c = [c[0] / peak, c[1] / peak]);
    }
    m
}

/// Collects tags, the best cover and any MP4 `iTunSMPB` gapless info (delay, frames to keep).
fn read_metadata(
    reader: &mut dyn FormatReader,
    track: u32,
) -> (Tags, Option<CoverArt>, Option<(u64, u64)>) {
    let mut revisions: Vec<MetadataRevision> = Vec::new();
    let mut log = reader.metadata();
    while let Some(older) = log.pop() {
        revisions.push(older);
    }
    revisions.extend(log.current().cloned());
    let (mut tags, mut itunes_gapless, mut cover) =
        (Tags::default(), None, None::<(bool, &Visual)>);
    // Oldest first: a later revision overrides the fields it has.
    for rev in &revisions {
        let per_track = rev
            .per_track
            .iter()
            .filter(|t| t.track_id == u64::from(track));
        let mut newer = Tags::default();
        for container in std::iter::once(&rev.media).chain(per_track.map(|t| &t.metadata)) {
            container
                .tags
                .iter()
                .for_each(|t| apply_tag(&mut newer, &mut itunes_gapless, t));
            for v in &container.visuals {
                let front = v.usage == Some(StandardVisualKey::FrontCover);
                if cover.is_none_or(|(f, c)| (front, v.data.len()) > (f, c.data.len())) {
                    cover = Some((front, v));
                }
            }
        }
        tags.title = newer.title.or(tags.title);
        tags.artist = newer.artist.or(tags.artist);
        tags.album = newer.album.or(tags.album);
        tags.track_number = newer.track_number.or(tags.track_number);
        tags.year = newer.year.or(tags.year);
    }
    let cover = cover.map(|(_, v)| {
        let sniffed = match &v.data[..] {
            [0x89, b'P', b'N', b'G', ..] => "image/png",
            [0xFF, 0xD8, ..] => "image/jpeg",
            _ => "application/octet-stream",
        };
        let media_type = v.media_type.clone().unwrap_or_else(|| sniffed.into());
        CoverArt {
            media_type,
            data: v.data.to_vec(),
        }
    });
    (tags, cover, itunes_gapless)
}

/// Maps one tag onto `tags` (symphonia parses "3/12" and dates into standard tags).
fn apply_tag(tags: &mut Tags, itunes_gapless: &mut Option<(u64, u64)>, tag: &Tag) {
    let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let year = |s: &str| {
        s.trim()
            .get(..4)
            .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))?
            .parse()
            .ok()
    };
    match &tag.std {
        Some(StandardTag::TrackTitle(s)) => tags.title = text(s).or(tags.title.take()),
        Some(StandardTag::Artist(s)) => tags.artist = text(s).or(tags.artist.take()),
        Some(StandardTag::Album(s)) => tags.album = text(s).or(tags.album.take()),
        Some(StandardTag::TrackNumber(n)) => {
            tags.track_number = u32::try_from(*n).ok().filter(|&n| n > 0)
        }
        Some(StandardTag::RecordingDate(s) | StandardTag::ReleaseDate(s)) => {
            tags.year = year(s).or(tags.year)
        }
        Some(StandardTag::RecordingYear(y) | StandardTag::ReleaseYear(y)) => {
            tags.year = Some(i32::from(*y))
        }
        _ => {}
    }
    // iTunes gapless info: " 00000000 <delay> <padding> <frames> ...", hexadecimal.
    let RawValue::String(value) = &tag.raw.value else {
        return;
    };
    if tag.raw.key.to_ascii_lowercase().ends_with("itunsmpb") {
        let hex = |x: &str| u64::from_str_radix(x, 16).ok();
        let fields: Vec<u64> = value.split_whitespace().filter_map(hex).collect();
        if let [_, delay, _, frames, ..] = fields[..] {
            *itunes_gapless = Some((delay, frames)).filter(|&(_, frames)| frames > 0);
        }
    }
}

/// Reads the MP4 edit list (ISO/IEC 14496-12 8.6.6) of `track`: (leading frames to skip, frames
/// to keep). symphonia parses `elst` but neither exposes nor applies it, so the few boxes needed
/// are walked here from one read of `moov`.
fn mp4_edit(path: &Path, track: &Track, rate: u32) -> Option<(u64, u64)> {
    let mut file = File::open(path).ok()?;
    let mut pos = 0u64;
    let moov = loop {
        let mut head = [0u8; 16];
        file.seek(SeekFrom::Start(pos)).ok()?;
        file.read_exact(&mut head[..8]).ok()?;
        let (mut size, mut header) = (be(&head, 0, 4)?, 8);
        if size == 1 {
            file.read_exact(&mut head[8..]).ok()?;
            (size, header) = (be(&head, 8, 8)?, 16);
        }
        if &head[4..8] == b"moov" {
            let len = usize::try_from(size.checked_sub(header)?)
                .ok()
                .filter(|&n| n < 64 << 20)?;
            let mut body = vec![0u8; len];
            file.read_exact(&mut body).ok()?;
            break body;
        }
        pos = pos.checked_add(size.max(header))?;
    };
    let movie_scale = find(&moov, b"mvhd")
        .and_then(|b| be(b, version_offset(b), 4))?
        .max(1);
    let trak = boxes(&moov)
        .filter(|(kind, _)| kind == b"trak")
        .map(|(_, body)| body)
        .find(|t| {
            find(t, b"tkhd").and_then(|b| be(b, version_offset(b), 4)) == Some(u64::from(track.id))
        })?;
    let mdhd = find(find(trak, b"mdia")?, b"mdhd")?;
    let media_scale = be(mdhd, version_offset(mdhd), 4)?.max(1);
    let elst = find(find(trak, b"edts")?, b"elst")?;
    let (v1, count) = (elst.first() == Some(&1), be(elst, 4, 4)?);
    let mut edits = (0..count.min(64) as usize).filter_map(|i| {
        let (at, width) = if v1 { (8 + i * 20, 8) } else { (8 + i * 12, 4) };
        let (duration, time) = (be(elst, at, width)?, be(elst, at + width, width)?);
        // media_time -1 (all ones) marks an empty edit.
        (time < (1 << (width * 8 - 1))).then_some((duration, time))
    });
    let (duration, time) = edits.next().filter(|_| edits.next().is_none())?;
    let to_frames =
        |x: u64, scale: u64| (u128::from(x) * u128::from(rate) / u128::from(scale)) as u64;
    let (skip, keep) = (
        to_frames(time, media_scale),
        to_frames(duration, movie_scale),
    );
    // A coarse movie timescale (ffmpeg writes 1000) rounds the edit; the sample table is exact.
    let tolerance = u64::from(rate) / movie_scale + 1;
    let exact = track
        .num_frames
        .and_then(|n| n.checked_sub(skip))
        .filter(|n| n.abs_diff(keep) <= tolerance);
    Some((skip, exact.unwrap_or(keep)))
}

/// Iterates the child boxes `(type, body)` of an MP4 box body.
fn boxes(mut data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let (size, header) = match be(data, 0, 4)? {
            1 => (be(data, 8, 8)?, 16),
            0 => (data.len() as u64, 8),
            size => (size, 8),
        };
        let size = usize::try_from(size).ok()?;
        let item = (data.get(4..8)?, data.get(header..size)?);
        data = &data[size..];
        Some(item)
    })
}

fn find<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, body)| body)
}

/// Offset of the timescale (mvhd, mdhd) or track id (tkhd) in a version 0 or 1 full box.
fn version_offset(body: &[u8]) -> usize {
    if body.first() == Some(&1) { 20 } else { 12 }
}

/// Reads a big-endian unsigned integer of `n` bytes at `at`.
fn be(data: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(n)?)?;
    Some(bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const SINE: &str = "-f lavfi -i sine=frequency=440:sample_rate=44100:duration=1";
    /// Unlike a sine, a chirp cannot hide a wrong delay behind its period.
    const CHIRP: &str = "-f lavfi -i aevalsrc=0.5*sin(2*PI*(200*t+900*t*t)):s=44100:d=1.3";
    const TAGS: &str = "-metadata title=Song -metadata artist=Someone -metadata album=Record \
                        -metadata track=3/12 -metadata date=2024";

    /// Runs ffmpeg with `args` (split on whitespace) then `extra`, writing `dir/name`.
    fn ffmpeg(dir: &Path, name: &str, args: &str, extra: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let mut cmd = std::process::Command::new("ffmpeg");
        cmd.args(["-v", "error", "-y"])
            .args(args.split_whitespace())
            .args(extra)
            .arg(&path);
        assert!(cmd.status().unwrap().success(), "ffmpeg failed for {name}");
        path
    }

    fn decode_with(
        path: &Path,
        opts: &DecodeOptions,
    ) -> Result<(SourceInfo, Vec<f32>), DecodeError> {
        let mut decoder = SourceDecoder::open(path, opts)?;
        let mut pcm = Vec::new();
        while let Some(chunk) = decoder.next_chunk()? {
            pcm.extend_from_slice(chunk);
        }
        assert_eq!(decoder.frames_decoded(), pcm.len() as u64 / 2);
        Ok((decoder.info().clone(), pcm))
    }

    fn decode(path: &Path) -> (SourceInfo, Vec<f32>) {
        decode_with(path, &DecodeOptions::default()).unwrap()
    }

    /// The offset in -1200..1200 frames at which `got` best matches `want` (left channel).
    fn best_lag(want: &[f32], got: &[f32]) -> i64 {
        let at = |pcm: &[f32], i: i64| f64::from(pcm.get(i as usize * 2).copied().unwrap_or(0.0));
        let err = |lag| {
            (10_000..14_000)
                .map(|i| (at(want, i) - at(got, i + lag)).powi(2))
                .sum::<f64>()
        };
        (-1200..1200)
            .min_by(|&a, &b| err(a).total_cmp(&err(b)))
            .unwrap()
    }

    #[test]
    fn lossless_sources_decode_sample_exact() {
        let dir = tempfile::tempdir().unwrap();
        let wav = ffmpeg(dir.path(), "a.wav", &format!("{SINE} -ac 2"), &[]);
        let (info, reference) = decode(&wav);
        assert_eq!(
            (info.codec.as_str(), info.bits_per_sample),
            ("pcm_s16le", Some(16))
        );
        let input = format!("-i {}", wav.display());
        for (name, args, container, codec, bits) in [
            (
                "a.flac",
                "-c:a flac -sample_fmt s32",
                "flac",
                "flac",
                Some(24),
            ),
            ("a.aiff", "", "aiff", "pcm_s16be", Some(16)),
            ("a.m4a", "-c:a alac", "mp4", "alac", None),
        ] {
            let (info, pcm) = decode(&ffmpeg(dir.path(), name, &format!("{input} {args}"), &[]));
            assert_eq!(
                (info.container.as_str(), info.codec.as_str()),
                (container, codec)
            );
            assert_eq!(
                (info.sample_rate, info.channels, info.bits_per_sample),
                (44100, 2, bits)
            );
            assert_eq!(
                (info.total_frames, pcm.len()),
                (Some(44100), 2 * 44100),
                "{name}"
            );
            assert!(pcm == reference, "{name} differs from the source");
        }
    }

    #[test]
    fn lossy_sources_are_trimmed_to_the_exact_source_samples() {
        let dir = tempfile::tempdir().unwrap();
        let (_, reference) = decode(&ffmpeg(dir.path(), "a.wav", CHIRP, &[]));
        assert_eq!(reference.len(), 2 * 57330);
        // MP3 (LAME header), AAC in MP4 (edit list), Vorbis (granules): exact length, no offset.
        for (name, codec) in [
            ("a.mp3", "libmp3lame"),
            ("a.m4a", "aac"),
            ("a.ogg", "libvorbis"),
        ] {
            let (info, pcm) = decode(&ffmpeg(dir.path(), name, CHIRP, &["-c:a", codec]));
            assert_eq!(
                (info.total_frames, pcm.len()),
                (Some(57330), reference.len()),
                "{name}"
            );
            assert_eq!(best_lag(&reference, &pcm), 0, "{name}");
        }
        // ADTS carries no delay: the encoder's 1024 priming frames and the padding remain.
        let (info, pcm) = decode(&ffmpeg(dir.path(), "a.aac", CHIRP, &["-c:a", "aac"]));
        assert_eq!((info.container.as_str(), pcm.len() / 2), ("adts", 58368));
        assert_eq!(best_lag(&reference, &pcm), 1024);
    }

    #[test]
    fn aac_above_65535_hz_in_mp4_takes_its_rate_from_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let tone = "-f lavfi -i sine=sample_rate=96000:duration=0.5 -c:a aac";
        let (info, pcm) = decode(&ffmpeg(dir.path(), "hi.m4a", tone, &[]));
        assert_eq!((info.sample_rate, pcm.len()), (96000, 2 * 48000));
    }

    #[test]
    fn tags_are_read_from_every_container() {
        let dir = tempfile::tempdir().unwrap();
        let want = Tags {
            title: Some("Song".into()),
            artist: Some("Someone".into()),
            album: Some("Record".into()),
            track_number: Some(3),
            year: Some(2024),
        };
        for (name, codec) in [
            ("t.flac", "flac"),
            ("t.mp3", "libmp3lame"),
            ("t.m4a", "aac"),
            ("t.ogg", "libvorbis"),
        ] {
            let path = ffmpeg(
                dir.path(),
                name,
                &format!("{SINE} {TAGS} -c:a {codec}"),
                &[],
            );
            let decoder = SourceDecoder::open(&path, &DecodeOptions::default()).unwrap();
            assert_eq!(decoder.tags(), &want, "{name}");
        }
        let (mut tags, mut itunes_gapless) = (Tags::default(), None);
        let smpb = " 00000000 00000840 000001CA 0000000000046E00 00000000";
        let tag = Tag::new_from_parts("com.apple.iTunes:iTunSMPB", smpb, None);
        apply_tag(&mut tags, &mut itunes_gapless, &tag);
        assert_eq!(itunes_gapless, Some((0x840, 0x46E00)));
    }

    #[test]
    fn front_cover_is_extracted_from_mp3() {
        let dir = tempfile::tempdir().unwrap();
        let png = ffmpeg(
            dir.path(),
            "cover.png",
            "-f lavfi -i color=red:s=16x16 -frames:v 1",
            &[],
        );
        let wav = ffmpeg(dir.path(), "in.wav", SINE, &[]);
        let args = format!(
            "-i {} -i {} -map 0 -map 1 -c:a libmp3lame -id3v2_version 3",
            wav.display(),
            png.display()
        );
        let mp3 = ffmpeg(
            dir.path(),
            "c.mp3",
            &args,
            &["-metadata:s:v", "comment=Cover (front)"],
        );
        let decoder = SourceDecoder::open(&mp3, &DecodeOptions::default()).unwrap();
        let cover = decoder.cover().expect("cover art");
        assert_eq!(cover.media_type, "image/png");
        assert_eq!(cover.data, std::fs::read(&png).unwrap());
    }

    #[test]
    fn channels_are_mixed_to_stereo_without_clipping() {
        let dir = tempfile::tempdir().unwrap();
        // Six near-full-scale channels: a plain sum would reach 3.4.
        let tone = "-f lavfi -i aevalsrc=0.99*sin(2*PI*440*t):s=44100:d=0.5:c=5.1 -c:a flac";
        let (info, pcm) = decode(&ffmpeg(dir.path(), "six.flac", tone, &[]));
        assert_eq!((info.channels, pcm.len()), (6, 2 * 22050));
        let peak = pcm.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.98 && peak <= 0.99 + 1e-4, "peak {peak}");
        assert!(pcm.chunks_exact(2).all(|f| (f[0] - f[1]).abs() < 1e-6));

        let m = mix_matrix(&symphonia::core::audio::layouts::CHANNEL_LAYOUT_5P1, 6);
        assert_eq!(m[3], [0.0, 0.0], "LFE is dropped");
        assert!((m.iter().map(|c| c[0]).sum::<f32>() - 1.0).abs() < 1e-6);
        let quad = mix_matrix(&Channels::Discrete(4), 4);
        assert_eq!(quad, [[0.5, 0.0], [0.0, 0.5], [0.5, 0.0], [0.0, 0.5]]);

        // Mono is duplicated at full level (the sine source has amplitude 1/8).
        let (info, pcm) = decode(&ffmpeg(dir.path(), "m.wav", &format!("{SINE} -ac 1"), &[]));
        assert_eq!((info.channels, pcm.len()), (1, 2 * 44100));
        assert!(pcm.chunks_exact(2).all(|f| f[0] == f[1]));
        assert!((pcm.iter().fold(0f32, |m, s| m.max(s.abs())) - 0.125).abs() < 1e-3);
    }

    /// A 44-byte PCM WAV header (plus 400 bytes of data) claiming `channels` and `rate`.
    fn wav_header(channels: u16, rate: u32) -> Vec<u8> {
        let mut h = [
            &b"RIFF"[..],
            &436u32.to_le_bytes(),
            b"WAVEfmt ",
            &16u32.to_le_bytes(),
        ]
        .concat();
        h.extend([1, channels].iter().flat_map(|v: &u16| v.to_le_bytes()));
        h.extend(
            [rate, rate.wrapping_mul(u32::from(channels) * 2)]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        );
        h.extend(
            [channels.wrapping_mul(2), 16]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        );
        h.extend([&b"data"[..], &400u32.to_le_bytes(), &[0; 400]].concat());
        h
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let flac = std::fs::read(ffmpeg(dir.path(), "full.flac", SINE, &[])).unwrap();
        let mut seed = 0x1234_5678u32;
        let noise = (0..100_000).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        });
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty.mp3", vec![]),
            ("text.mp3", b"this is not audio\n".repeat(50)),
            ("noise.mp3", noise.collect()),
            ("half.flac", flac[..flac.len() / 2].to_vec()),
            ("tenth.flac", flac[..flac.len() / 10].to_vec()),
            ("cut.wav", wav_header(2, 44100)[..60].to_vec()),
            ("rate.wav", wav_header(2, 4_000_000_000)),
            ("channels.wav", wav_header(65535, 44100)),
            ("channels1000.wav", wav_header(1000, 44100)),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = decode_with(&path, &DecodeOptions::default()).expect_err(name);
            let expected = match name {
                "empty.mp3" => matches!(err, DecodeError::Empty),
                "text.mp3" | "noise.mp3" => matches!(err, DecodeError::UnrecognizedFormat),
                "half.flac" | "tenth.flac" | "cut.wav" => matches!(err, DecodeError::Malformed(_)),
                "rate.wav" => err.to_string().contains("4000000000 Hz is outside"),
                // symphonia rejects these itself (in debug builds its u16 math overflows: caught).
                _ => matches!(err, DecodeError::Malformed(_) | DecodeError::Panicked(_)),
            };
            assert!(expected, "{name}: {err:?}");
        }
        let missing = SourceDecoder::open(&dir.path().join("missing.flac"), &Default::default());
        assert!(matches!(missing, Err(DecodeError::Io(_))));
    }

    #[test]
    fn limits_from_options_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let wav = ffmpeg(dir.path(), "a.wav", &format!("{SINE} -ac 2"), &[]);
        let defaults = DecodeOptions::default();
        for (options, needle) in [
            (
                DecodeOptions {
                    max_channels: 1,
                    ..defaults
                },
                "channel count 2",
            ),
            (
                DecodeOptions {
                    min_sample_rate: 48_000,
                    ..defaults
                },
                "44100 Hz",
            ),
            (
                DecodeOptions {
                    max_duration_seconds: 0,
                    ..defaults
                },
                "limit of 0 s",
            ),
        ] {
            match SourceDecoder::open(&wav, &options) {
                Err(DecodeError::Limit(msg)) => assert!(msg.contains(needle), "{msg}"),
                other => panic!("expected a limit error, got {:?}", other.err()),
            }
        }
    }

    #[test]
    fn a_corrupt_packet_mid_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = ffmpeg(dir.path(), "a.mp3", SINE, &["-c:a", "libmp3lame"]);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid..mid + 300].fill(0x55);
        std::fs::write(&path, bytes).unwrap();
        let (_, pcm) = decode(&path);
        assert!(
            (pcm.len() / 2).abs_diff(44100) <= 3 * 1152,
            "{} frames",
            pcm.len() / 2
        );
    }
}
