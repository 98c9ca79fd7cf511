//! One file through every stage: decode once, resample once, then analyze and encode every
//! rendition in parallel threads, streaming (memory does not grow with track length).
//!
//! Priming alignment: each encoder has its own delay `d_r` (AAC-LC and HE-AAC differ). Every
//! rendition gets `P - d_r` samples of silence ahead of the source, where `P` is the largest
//! delay, so the first source sample lands at decode time `P` in every rendition. All
//! renditions then share one timeline, one segment plan and one edit list (`media_time = P`),
//! and each is padded to the same total length `T` (a multiple of the alignment unit).

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::analyze::{LoudnessFigures, LoudnessMeter, Waveform, WaveformBuilder};
use super::decode::{DecodeError, SourceDecoder};
use super::encode::{AacEncoder, EncodeError, EncoderConfig, EncoderInfo, f32_to_i16};
use super::fmp4::{self, Fmp4Error, InitConfig, LoudnessBox};
use super::resample::{self, ResampleError, Resampler};
use super::segment::{ALIGNMENT_UNIT, SegmentPlan, Segmenter};
use crate::catalog::{
    Gapless, Loudness, PackagingRecord, RenditionRecord, SourceRecord, TRACK_RECORD_VERSION,
    TrackRecord,
};
use crate::config::{IngestConfig, Rung};
use crate::manifest;
use crate::store::{LibraryLayout, StagedTrack, StoreError, TRACK_RECORD_FILE};

/// Pairs of waveform peaks the player gets (between this and twice this).
const WAVEFORM_TARGET: usize = 2000;
/// Chunks in flight per consumer thread (bounds memory).
const CHANNEL_DEPTH: usize = 8;

/// Why one file could not be ingested. The file is left out of the library; other files go on.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Reading the source failed.
    #[error("cannot read file: {0}")]
    Read(#[source] std::io::Error),
    /// The source could not be decoded.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// Resampling failed.
    #[error("resampling failed: {0}")]
    Resample(#[from] ResampleError),
    /// An encoder failed.
    #[error("{0}")]
    Encode(#[from] EncodeError),
    /// Loudness analysis failed.
    #[error("loudness analysis failed: {0}")]
    Analyze(String),
    /// Packaging failed.
    #[error("packaging failed: {0}")]
    Fmp4(#[from] Fmp4Error),
    /// Writing the library failed.
    #[error("library write failed: {0}")]
    Store(#[from] StoreError),
    /// The source holds no audio samples.
    #[error("no audio samples in the file")]
    NoSamples,
    /// An internal invariant broke (a bug): reported for this file instead of aborting.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What happened to a file.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    /// Newly packaged and added to the library.
    Ingested(Box<TrackRecord>),
    /// The same file was already in the library: nothing was written.
    AlreadyPresent(String),
}

impl IngestOutcome {
    /// The track id either way.
    pub fn id(&self) -> &str {
        match self {
            IngestOutcome::Ingested(r) => &r.id,
            IngestOutcome::AlreadyPresent(id) => id,
        }
    }
}

/// Receives progress of one file: samples decoded so far and the expected total, if known
/// (both per channel at the source rate).
pub trait Progress: Sync {
    /// Called after each decoded chunk.
    fn advance(&self, decoded: u64, total: Option<u64>);
}

impl Progress for () {
    fn advance(&self, _: u64, _: Option<u64>) {}
}

/// The track id of a source file: a hash of its bytes (so re-ingesting the same bytes is a
/// no-op, whatever the file is called).
pub fn track_id_of(path: &Path) -> Result<String, IngestError> {
    let file = std::fs::File::open(path).map_err(IngestError::Read)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(IngestError::Read)?;
    Ok(hasher.finalize().to_hex()[..24].to_string())
}

/// Ingests one file into the library at `layout` (the catalog is updated by the caller).
pub fn ingest_file(
    path: &Path,
    config: &IngestConfig,
    layout: &LibraryLayout,
    progress: &dyn Progress,
) -> Result<IngestOutcome, IngestError> {
    let bytes = std::fs::metadata(path).map_err(IngestError::Read)?.len();
    let id = track_id_of(path)?;
    if layout.has_track(&id) {
        return Ok(IngestOutcome::AlreadyPresent(id));
    }
    let mut decoder = SourceDecoder::open(path, &config.decode)?;
    let info = decoder.info().clone();
    let out_rate = resample::output_rate(info.sample_rate);

    let mut encoders = Vec::with_capacity(config.ladder.rungs.len());
    for rung in &config.ladder.rungs {
        let encoder = AacEncoder::new(EncoderConfig {
            profile: rung.profile,
            bitrate: rung.bitrate,
            sample_rate: out_rate,
            afterburner: config.afterburner,
        })?;
        if ALIGNMENT_UNIT % u64::from(encoder.info().frame_length) != 0 {
            return Err(IngestError::Internal(format!(
                "{} frame length {} does not divide the alignment unit",
                rung.id(),
                encoder.info().frame_length
            )));
        }
        encoders.push((*rung, encoder));
    }
    let priming = encoders
        .iter()
        .map(|(_, e)| u64::from(e.info().delay))
        .max()
        .unwrap_or(0);
    let plan = SegmentPlan::new(
        crate::units::Timescale(out_rate),
        config.first_segment_seconds,
        config.segment_seconds,
    );
    let staged = layout.stage_track(&id)?;

    let (valid, loudness, waveform, renditions) = std::thread::scope(|scope| {
        let mut senders: Vec<SyncSender<Message>> = Vec::new();
        let mut handles = Vec::new();
        for (rung, encoder) in encoders {
            let (tx, rx) = sync_channel(CHANNEL_DEPTH);
            senders.push(tx);
            let staged = &staged;
            handles.push(
                scope.spawn(move || encode_rendition(rung, encoder, rx, priming, plan, staged)),
            );
        }
        let (analysis_tx, analysis_rx) = sync_channel::<Option<Arc<Vec<f32>>>>(CHANNEL_DEPTH);
        let analysis = scope.spawn(move || analyze(out_rate, analysis_rx));

        let fed = feed(
            &mut decoder,
            info.sample_rate,
            out_rate,
            &senders,
            &analysis_tx,
            progress,
        );
        let _ = analysis_tx.send(None);
        drop(analysis_tx);
        if let Ok(valid) = &fed {
            for tx in &senders {
                let _ = tx.send(Message::End { valid: *valid });
            }
        }
        drop(senders);
        let renditions: Vec<_> = handles.into_iter().map(join).collect();
        let analysis = join(analysis);
        let valid = fed?;
        let (loudness, waveform) = analysis?;
        let renditions = renditions.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok::<_, IngestError>((valid, loudness, waveform, renditions))
    })?;
    if valid == 0 {
        return Err(IngestError::NoSamples);
    }

    let total = (priming + valid).div_ceil(ALIGNMENT_UNIT) * ALIGNMENT_UNIT;
    let segment_durations = plan.durations(total);
    let gapless = Gapless {
        priming_samples: priming,
        valid_samples: valid,
        padding_samples: total - priming - valid,
    };
    let tags = decoder.tags().clone();
    let title = tags
        .title
        .clone()
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| id.clone());
    let cover = match decoder.cover() {
        Some(art) => {
            let ext = match art.media_type.as_str() {
                "image/png" => "png",
                "image/gif" => "gif",
                "image/webp" => "webp",
                _ => "jpg",
            };
            let name = format!("cover.{ext}");
            staged.write(&name, &art.data)?;
            Some(name)
        }
        None => None,
    };
    staged.write(
        "waveform.json",
        &serde_json::to_vec(&waveform).map_err(|e| IngestError::Internal(e.to_string()))?,
    )?;

    let mut records = Vec::with_capacity(renditions.len());
    for rendition in renditions {
        records.push(finish_rendition(
            &staged,
            rendition,
            &segment_durations,
            gapless,
            out_rate,
            &loudness,
        )?);
    }
    let record = TrackRecord {
        version: TRACK_RECORD_VERSION,
        id: id.clone(),
        title,
        artist: tags.artist,
        album: tags.album,
        track_number: tags.track_number,
        year: tags.year,
        source: SourceRecord {
            file_name: path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            container: info.container.clone(),
            codec: info.codec.clone(),
            sample_rate: info.sample_rate,
            channels: info.channels,
            bits_per_sample: info.bits_per_sample,
            samples: decoder.frames_decoded(),
            bytes,
        },
        sample_rate: out_rate,
        channels: 2,
        gapless,
        loudness: Loudness {
            integrated_lufs: round2(loudness.integrated_lufs),
            true_peak_dbtp: round2(loudness.true_peak_dbtp),
            loudness_range_lu: round2(loudness.loudness_range_lu),
        },
        cover,
        waveform: "waveform.json".into(),
        hls_master: "master.m3u8".into(),
        dash_mpd: "manifest.mpd".into(),
        segment_durations,
        renditions: records,
        packaging: PackagingRecord {
            ladder: config.ladder.spec(),
            segment_seconds: config.segment_seconds,
            segue_version: env!("CARGO_PKG_VERSION").into(),
        },
    };
    for r in &record.renditions {
        staged.write(
            Path::new(&r.dir).join(&r.playlist),
            manifest::render_media_playlist(&record, r).as_bytes(),
        )?;
    }
    staged.write(
        &record.hls_master,
        manifest::render_master_playlist(&record).as_bytes(),
    )?;
    staged.write(&record.dash_mpd, manifest::render_mpd(&record).as_bytes())?;
    let json =
        serde_json::to_vec_pretty(&record).map_err(|e| IngestError::Internal(e.to_string()))?;
    staged.write(TRACK_RECORD_FILE, &json)?;
    match staged.commit() {
        Ok(_) => Ok(IngestOutcome::Ingested(Box::new(record))),
        // A concurrent ingest of the same bytes finished first: same content, same id.
        Err(StoreError::AlreadyExists(id)) => Ok(IngestOutcome::AlreadyPresent(id)),
        Err(e) => Err(e.into()),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn join<T>(
    handle: std::thread::ScopedJoinHandle<'_, Result<T, IngestError>>,
) -> Result<T, IngestError> {
    handle.join().unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(IngestError::Internal(format!(
            "a pipeline thread panicked: {what}"
        )))
    })
}

/// What the decode thread sends each encoder.
enum Message {
    /// Interleaved stereo 16-bit PCM at the output rate.
    Pcm(Arc<Vec<i16>>),
    /// End of input: the number of valid samples (per channel) at the output rate.
    End { valid: u64 },
}

/// Decodes, resamples and fans the PCM out; returns the valid sample count at the output rate.
fn feed(
    decoder: &mut SourceDecoder,
    in_rate: u32,
    out_rate: u32,
    encoders: &[SyncSender<Message>],
    analysis: &SyncSender<Option<Arc<Vec<f32>>>>,
    progress: &dyn Progress,
) -> Result<u64, IngestError> {
    let mut resampler = if in_rate == out_rate {
        None
    } else {
        Some(Resampler::new(in_rate, out_rate)?)
    };
    let total = decoder.info().total_frames;
    let mut valid = 0u64;
    let mut send = |pcm: Vec<f32>| -> Result<(), IngestError> {
        if pcm.is_empty() {
            return Ok(());
        }
        valid += (pcm.len() / 2) as u64;
        let mut ints = Vec::with_capacity(pcm.len());
        f32_to_i16(&pcm, &mut ints);
        let ints = Arc::new(ints);
        for tx in encoders {
            tx.send(Message::Pcm(ints.clone()))
                .map_err(|_| IngestError::Internal("an encoder thread stopped early".into()))?;
        }
        analysis
            .send(Some(Arc::new(pcm)))
            .map_err(|_| IngestError::Internal("the analysis thread stopped early".into()))
    };
    while let Some(chunk) = decoder.next_chunk()? {
        let out = match resampler.as_mut() {
            Some(r) => {
                let mut out =
                    Vec::with_capacity(chunk.len() * out_rate as usize / in_rate as usize + 64);
                r.process(chunk, &mut out)?;
                out
            }
            None => chunk.to_vec(),
        };
        send(out)?;
        progress.advance(decoder.frames_decoded(), total);
    }
    if let Some(r) = resampler.as_mut() {
        let mut out = Vec::new();
        r.finish(&mut out)?;
        send(out)?;
    }
    Ok(valid)
}

fn analyze(
    rate: u32,
    rx: Receiver<Option<Arc<Vec<f32>>>>,
) -> Result<(LoudnessFigures, Waveform), IngestError> {
    let mut meter = LoudnessMeter::new(rate).map_err(|e| IngestError::Analyze(e.to_string()))?;
    let mut waveform = WaveformBuilder::new(rate, WAVEFORM_TARGET);
    while let Ok(Some(pcm)) = rx.recv() {
        meter
            .push(&pcm)
            .map_err(|e| IngestError::Analyze(e.to_string()))?;
        waveform.push(&pcm);
    }
    let loudness = meter
        .finish()
        .map_err(|e| IngestError::Analyze(e.to_string()))?;
    Ok((loudness, waveform.finish()))
}

/// One rendition's encoded output, before its init segment and playlist are written.
struct EncodedRendition {
    rung: Rung,
    info: EncoderInfo,
    /// Size of each media segment file.
    segment_sizes: Vec<u64>,
    /// Largest access unit.
    max_access_unit: u32,
    /// Access unit payload bytes.
    payload_bytes: u64,
    /// Hash of every media segment's bytes, in order.
    hasher: blake3::Hasher,
}

fn staging_dir_of(rung: &Rung) -> String {
    format!("{}.partial", rung.id())
}

/// Collects one rendition's access units into segment files.
struct RenditionWriter<'a> {
    staged: &'a StagedTrack,
    dir: String,
    segmenter: Segmenter,
    out: EncodedRendition,
    /// The first write error; later access units are ignored once set.
    failure: Option<IngestError>,
}

impl RenditionWriter<'_> {
    fn accept(&mut self, access_unit: &[u8]) {
        if self.failure.is_some() || self.segmenter.is_full() {
            return;
        }
        self.out.max_access_unit = self.out.max_access_unit.max(access_unit.len() as u32);
        self.out.payload_bytes += access_unit.len() as u64;
        if let Some(segment) = self.segmenter.push(access_unit)
            && let Err(e) = write_segment(self.staged, &self.dir, &segment, &mut self.out)
        {
            self.failure = Some(e);
        }
    }

    fn check(&mut self) -> Result<(), IngestError> {
        self.failure.take().map_or(Ok(()), Err)
    }
}

fn encode_rendition(
    rung: Rung,
    mut encoder: AacEncoder,
    rx: Receiver<Message>,
    priming: u64,
    plan: SegmentPlan,
    staged: &StagedTrack,
) -> Result<EncodedRendition, IngestError> {
    let info = encoder.info().clone();
    let mut w = RenditionWriter {
        staged,
        dir: staging_dir_of(&rung),
        segmenter: Segmenter::new(plan, info.frame_length, u64::MAX),
        out: EncodedRendition {
            rung,
            info: info.clone(),
            segment_sizes: Vec::new(),
            max_access_unit: 0,
            payload_bytes: 0,
            hasher: blake3::Hasher::new(),
        },
        failure: None,
    };
    // Lead-in silence so this rendition's first source sample lands at decode time `priming`.
    let lead_in = vec![0i16; 2 * (priming - u64::from(info.delay)) as usize];
    encoder.encode(&lead_in, |au| w.accept(au))?;
    let valid = loop {
        match rx.recv() {
            Ok(Message::Pcm(pcm)) => encoder.encode(&pcm, |au| w.accept(au))?,
            Ok(Message::End { valid }) => break valid,
            // The feeder stopped without an end marker: the file failed and it reports why.
            Err(_) => return Err(IngestError::Internal("input ended early".into())),
        }
        w.check()?;
    };
    let total = (priming + valid).div_ceil(ALIGNMENT_UNIT) * ALIGNMENT_UNIT;
    w.segmenter.set_total(total);
    // Pad with silence up to the aligned end, then flush the encoder's look-ahead.
    let tail = vec![0i16; 2 * (total - priming - valid) as usize];
    encoder.encode(&tail, |au| w.accept(au))?;
    encoder.flush(|au| w.accept(au))?;
    w.check()?;
    if w.segmenter.decode_time() < total {
        return Err(IngestError::Internal(format!(
            "{} encoder produced {} of {} samples",
            rung.id(),
            w.segmenter.decode_time(),
            total
        )));
    }
    let RenditionWriter {
        staged,
        dir,
        segmenter,
        mut out,
        ..
    } = w;
    if let Some(last) = segmenter.finish() {
        write_segment(staged, &dir, &last, &mut out)?;
    }
    Ok(out)
}

fn write_segment(
    staged: &StagedTrack,
    dir: &str,
    segment: &super::segment::SegmentData,
    out: &mut EncodedRendition,
) -> Result<(), IngestError> {
    let bytes = fmp4::write_media_segment(segment)?;
    out.hasher.update(&bytes);
    out.segment_sizes.push(bytes.len() as u64);
    staged.write(
        Path::new(dir).join(RenditionRecord::segment_name(segment.index)),
        &bytes,
    )?;
    Ok(())
}

/// Writes the init segment, names the rendition directory after a hash of its bytes and
/// returns the record.
fn finish_rendition(
    staged: &StagedTrack,
    mut r: EncodedRendition,
    durations: &[u64],
    gapless: Gapless,
    rate: u32,
    loudness: &LoudnessFigures,
) -> Result<RenditionRecord, IngestError> {
    if r.segment_sizes.len() != durations.len() {
        return Err(IngestError::Internal(format!(
            "{} has {} segments, the plan {}",
            r.rung.id(),
            r.segment_sizes.len(),
            durations.len()
        )));
    }
    let total: u64 = durations.iter().sum();
    let bits_per_second = |bytes: u64, samples: u64| bytes * 8 * u64::from(rate) / samples.max(1);
    let peak = r
        .segment_sizes
        .iter()
        .zip(durations)
        .map(|(&b, &d)| bits_per_second(b, d))
        .max()
        .unwrap_or(0);
    let average = bits_per_second(r.segment_sizes.iter().sum(), total);
    let payload_rate = bits_per_second(r.payload_bytes, total);
    let init = fmp4::write_init_segment(&InitConfig {
        sample_rate: rate,
        channels: 2,
        object_type: r.rung.profile.object_type(),
        audio_specific_config: r.info.audio_specific_config.clone(),
        avg_bitrate: payload_rate as u32,
        max_bitrate: peak as u32,
        buffer_size: r.max_access_unit,
        priming: gapless.priming_samples,
        valid_samples: gapless.valid_samples,
        loudness: Some(LoudnessBox {
            integrated_lufs: loudness.integrated_lufs,
            true_peak_dbtp: loudness.true_peak_dbtp,
            sample_peak_dbfs: loudness.sample_peak_dbfs,
        }),
    })?;
    r.hasher.update(&init);
    let partial = staging_dir_of(&r.rung);
    staged.write(Path::new(&partial).join("init.mp4"), &init)?;
    let dir = format!("{}.{}", r.rung.id(), &r.hasher.finalize().to_hex()[..12]);
    let from = staged.dir().join(&partial);
    let to = staged.dir().join(&dir);
    std::fs::rename(&from, &to).map_err(|source| StoreError::Io {
        op: "rename rendition directory",
        path: to,
        source,
    })?;
    Ok(RenditionRecord {
        id: r.rung.id(),
        dir,
        codec: r.rung.profile.codec_string(),
        profile: r.rung.profile.name().into(),
        bitrate: r.rung.bitrate,
        average_bandwidth: average,
        peak_bandwidth: peak,
        init: "init.mp4".into(),
        playlist: "media.m3u8".into(),
        segment_sizes: r.segment_sizes,
    })
}
