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
use super::encode::{AacEncoder, EncodeError, EncoderConfig, f32_to_i16};
use super::fmp4::Fmp4Error;
use super::panic_message;
use super::rendition::{Message, encode_rendition, finish_rendition};
use super::resample::{self, ResampleError, Resampler};
use super::segment::{ALIGNMENT_UNIT, SegmentPlan};
use crate::catalog::{
    Gapless, Loudness, PackagingRecord, SourceRecord, TRACK_RECORD_VERSION, TrackRecord,
};
use crate::config::IngestConfig;
use crate::manifest;
use crate::store::layout::{DASH_MPD_FILE, HLS_MASTER_FILE, WAVEFORM_FILE, cover_file, track_id};
use crate::store::{LibraryLayout, StoreError, TRACK_RECORD_FILE};

/// Pairs of waveform peaks the player gets (between this and twice this).
const WAVEFORM_TARGET: usize = 2000;
/// Chunks in flight per consumer thread (bounds memory).
const CHANNEL_DEPTH: usize = 8;

/// Why one file could not be ingested. The file is left out of the library (but for
/// [`IngestError::Index`]); other files go on.
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
    /// The worker process that ingested the file failed or died; the message says how.
    #[error("{0}")]
    Worker(String),
    /// A stage stopped because another stage of the same file failed first (its input or its
    /// consumer went away); that other failure is the one reported, never this.
    #[error("internal error: {0} stopped early")]
    Stopped(&'static str),
    /// The track was written into the library but the catalog could not index it (a full
    /// disk, say); the files are complete and the next ingest or `segue reindex` indexes them.
    #[error(
        "track {id} was written but not indexed: {source}; the next ingest or `segue reindex` indexes it"
    )]
    Index {
        /// The track id.
        id: String,
        /// Why the catalog refused it.
        #[source]
        source: crate::catalog::CatalogError,
    },
    /// An internal invariant broke (a bug): reported for this file instead of aborting.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What happened to a file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    Ok(track_id(&hasher.finalize()))
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

        let feed_started = thread_cpu_seconds();
        let fed = feed(
            &mut decoder,
            info.sample_rate,
            out_rate,
            &senders,
            &analysis_tx,
            progress,
        );
        let feed_cpu = thread_cpu_seconds() - feed_started;
        let _ = analysis_tx.send(None);
        drop(analysis_tx);
        if let Ok(valid) = &fed {
            for tx in &senders {
                let _ = tx.send(Message::End { valid: *valid });
            }
        }
        drop(senders);
        let renditions: Vec<_> = handles.into_iter().map(join).collect();
        let mut errors = Vec::new();
        let valid = fed.map_err(|e| errors.push(e)).ok();
        let analysis = join(analysis).map_err(|e| errors.push(e)).ok();
        let renditions: Vec<_> = renditions
            .into_iter()
            .filter_map(|r| r.map_err(|e| errors.push(e)).ok())
            .collect();
        let (Some(valid), Some((loudness, waveform, analyze_cpu)), true) =
            (valid, analysis, errors.is_empty())
        else {
            return Err(root_cause(errors));
        };
        tracing::debug!(
            file = %path.display(),
            decode_resample_cpu_s = feed_cpu,
            analyze_cpu_s = analyze_cpu,
            encode_cpu_s = ?renditions.iter().map(|r| (r.rung.id(), r.cpu_seconds)).collect::<Vec<_>>(),
            "stage CPU time"
        );
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
            let name = cover_file(&art.media_type);
            staged.write(&name, &art.data)?;
            Some(name)
        }
        None => None,
    };
    staged.write(
        WAVEFORM_FILE,
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
        waveform: WAVEFORM_FILE.into(),
        hls_master: HLS_MASTER_FILE.into(),
        dash_mpd: DASH_MPD_FILE.into(),
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

/// The error to report when stages of one file failed: the first that is a cause, not a stage
/// that stopped because another failed ([`IngestError::Stopped`]); in stage order (decode,
/// analysis, renditions) for a stable message.
fn root_cause(mut errors: Vec<IngestError>) -> IngestError {
    if errors.is_empty() {
        // Unreachable by construction (a stage without a result always leaves its error).
        return IngestError::Internal("a pipeline stage failed without an error".into());
    }
    let cause = errors
        .iter()
        .position(|e| !matches!(e, IngestError::Stopped(_)))
        .unwrap_or(0);
    errors.swap_remove(cause)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn join<T>(
    handle: std::thread::ScopedJoinHandle<'_, Result<T, IngestError>>,
) -> Result<T, IngestError> {
    handle.join().unwrap_or_else(|panic| {
        Err(IngestError::Internal(format!(
            "a pipeline thread panicked: {}",
            panic_message(panic.as_ref())
        )))
    })
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
                .map_err(|_| IngestError::Stopped("an encoder thread"))?;
        }
        analysis
            .send(Some(Arc::new(pcm)))
            .map_err(|_| IngestError::Stopped("the analysis thread"))
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

/// Loudness and waveform of the output-rate PCM; also returns this thread's CPU seconds.
fn analyze(
    rate: u32,
    rx: Receiver<Option<Arc<Vec<f32>>>>,
) -> Result<(LoudnessFigures, Waveform, f64), IngestError> {
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
    Ok((loudness, waveform.finish(), thread_cpu_seconds()))
}

/// CPU time used by the calling thread so far, in seconds (for the per-stage report; 0 if the
/// clock is unavailable).
pub(crate) fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    } else {
        0.0
    }
}
