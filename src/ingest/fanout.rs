//! The streaming stages of one file: decode once and resample once on the calling thread, then
//! fan the PCM out to one analysis thread and one encoder thread per rendition (each encodes,
//! segments and writes its fMP4 media segments as the PCM arrives). Bounded channels keep
//! memory flat whatever the track's length.
//!
//! Failure: a stage that fails drops its channel, so its peers stop with
//! [`IngestError::Stopped`]; [`root_cause`] then reports the failure that started it.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::analyze::{LoudnessFigures, LoudnessMeter, Waveform, WaveformBuilder};
use super::cpu_clock::thread_cpu_seconds;
use super::decode::SourceDecoder;
use super::encode::{AacEncoder, f32_to_i16};
use super::error::IngestError;
use super::panic_message;
use super::rendition::{EncodedRendition, Message, encode_rendition};
use super::resample::Resampler;
use super::segment::SegmentPlan;
use crate::config::Rung;
use crate::store::StagedTrack;

/// Pairs of waveform peaks the player gets (between this and twice this).
const WAVEFORM_TARGET: usize = 2000;
/// Chunks in flight per consumer thread (bounds memory).
const CHANNEL_DEPTH: usize = 8;

/// Receives progress of one file: samples decoded so far and the expected total, if known
/// (both per channel at the source rate).
pub trait Progress: Sync {
    /// Called after each decoded chunk.
    fn advance(&self, decoded: u64, total: Option<u64>);
}

impl Progress for () {
    fn advance(&self, _: u64, _: Option<u64>) {}
}

/// What the streaming stages produced.
pub(crate) struct Streamed {
    /// Source samples (per channel) at the output rate.
    pub(crate) valid: u64,
    /// Loudness of the output-rate PCM.
    pub(crate) loudness: LoudnessFigures,
    /// Waveform peaks for the player.
    pub(crate) waveform: Waveform,
    /// Each rendition's media segments (written), in ladder order.
    pub(crate) renditions: Vec<EncodedRendition>,
}

/// The settings the streaming stages share: the output rate (Hz), the common priming (samples
/// at that rate) and the segment plan.
#[derive(Clone, Copy)]
pub(crate) struct StreamPlan {
    /// Output sample rate, in Hz.
    pub(crate) out_rate: u32,
    /// Samples of priming ahead of the first source sample, in every rendition.
    pub(crate) priming: u64,
    /// Where segments are cut.
    pub(crate) segments: SegmentPlan,
    /// Hash of everything but the rung that decides a rendition's bytes (its directory name
    /// adds the rung: [`crate::store::layout::rendition_dir`]).
    pub(crate) inputs: blake3::Hash,
}

/// Runs decode -> resample -> (analyze | encode -> segment -> fmp4 per rendition) to the end of
/// the source `file`, writing the media segments into `staged`.
pub(crate) fn stream(
    file: &Path,
    decoder: &mut SourceDecoder,
    encoders: Vec<(Rung, AacEncoder)>,
    plan: StreamPlan,
    staged: &StagedTrack,
    progress: &dyn Progress,
) -> Result<Streamed, IngestError> {
    std::thread::scope(|scope| {
        let mut senders: Vec<SyncSender<Message>> = Vec::new();
        let mut handles = Vec::new();
        for (rung, encoder) in encoders {
            let (tx, rx) = sync_channel(CHANNEL_DEPTH);
            senders.push(tx);
            handles.push(scope.spawn(move || {
                encode_rendition(
                    rung,
                    encoder,
                    rx,
                    plan.priming,
                    plan.segments,
                    &plan.inputs,
                    staged,
                )
            }));
        }
        let (analysis_tx, analysis_rx) = sync_channel::<Option<Arc<Vec<f32>>>>(CHANNEL_DEPTH);
        let analysis = scope.spawn(move || analyze(plan.out_rate, analysis_rx));

        let feed_started = thread_cpu_seconds();
        let fed = feed(decoder, plan.out_rate, &senders, &analysis_tx, progress);
        let feed_cpu = thread_cpu_seconds() - feed_started;
        // A consumer that is gone has failed, and its own error says why.
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
            file = %file.display(),
            decode_resample_cpu_s = feed_cpu,
            analyze_cpu_s = analyze_cpu,
            encode_cpu_s = ?renditions.iter().map(|r| (r.rung.id(), r.cpu_seconds)).collect::<Vec<_>>(),
            "stage CPU time"
        );
        Ok(Streamed {
            valid,
            loudness,
            waveform,
            renditions,
        })
    })
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
    out_rate: u32,
    encoders: &[SyncSender<Message>],
    analysis: &SyncSender<Option<Arc<Vec<f32>>>>,
    progress: &dyn Progress,
) -> Result<u64, IngestError> {
    let in_rate = decoder.info().sample_rate;
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
    let mut meter = LoudnessMeter::new(rate)?;
    let mut waveform = WaveformBuilder::new(rate, WAVEFORM_TARGET);
    while let Ok(Some(pcm)) = rx.recv() {
        meter.push(&pcm)?;
        waveform.push(&pcm);
    }
    let loudness = meter.finish()?;
    Ok((loudness, waveform.finish(), thread_cpu_seconds()))
}
