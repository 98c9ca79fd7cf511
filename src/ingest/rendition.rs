//! One rendition of the ladder: its encoder thread turns the shared PCM stream into access
//! units, cuts them into the common segment plan and writes the media segments; once the
//! input is complete, the init segment is written. The directory is named from the start after
//! a hash of everything that decides its bytes (so segments go to their final keys as they are
//! encoded, and a change of inputs or software changes every URL under it).

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use super::analyze::LoudnessFigures;
use super::cpu_clock::thread_cpu_seconds;
use super::encode::{AacEncoder, EncoderInfo};
use super::error::IngestError;
use super::fmp4::{self, InitConfig, LoudnessBox};
use super::segment::{ALIGNMENT_UNIT, SegmentData, SegmentPlan, Segmenter};
use crate::catalog::{Gapless, RenditionRecord};
use crate::config::Rung;
use crate::store::layout::{INIT_SEGMENT_FILE, MEDIA_PLAYLIST_FILE};
use crate::store::{StagedRendition, StagedTrack};

/// What the decode thread sends each encoder.
pub(crate) enum Message {
    /// Interleaved stereo 16-bit PCM at the output rate.
    Pcm(Arc<Vec<i16>>),
    /// End of input: the number of valid samples (per channel) at the output rate.
    End { valid: u64 },
}

/// One rendition's encoded output, before its init segment and playlist are written.
pub(crate) struct EncodedRendition {
    pub(crate) rung: Rung,
    info: EncoderInfo,
    /// Size of each media segment file.
    segment_sizes: Vec<u64>,
    /// Largest access unit.
    max_access_unit: u32,
    /// Access unit payload bytes.
    payload_bytes: u64,
    /// The rendition's files in the staged track.
    files: StagedRendition,
    /// CPU seconds the encoder thread used.
    pub(crate) cpu_seconds: f64,
}

/// Collects one rendition's access units into segment files.
struct RenditionWriter<'a> {
    staged: &'a StagedTrack,
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
            && let Err(e) = write_segment(self.staged, &segment, &mut self.out)
        {
            self.failure = Some(e);
        }
    }

    fn check(&mut self) -> Result<(), IngestError> {
        self.failure.take().map_or(Ok(()), Err)
    }
}

pub(crate) fn encode_rendition(
    rung: Rung,
    mut encoder: AacEncoder,
    rx: Receiver<Message>,
    priming: u64,
    plan: SegmentPlan,
    packaging_inputs: &blake3::Hash,
    staged: &StagedTrack,
) -> Result<EncodedRendition, IngestError> {
    let info = encoder.info().clone();
    let rendition_inputs = blake3::Hasher::new()
        .update(packaging_inputs.as_bytes())
        .update(rung.id().as_bytes())
        .finalize();
    let files = staged.begin_rendition(&rung.id(), &rendition_inputs)?;
    let mut w = RenditionWriter {
        staged,
        segmenter: Segmenter::new(plan, info.frame_length, u64::MAX),
        out: EncodedRendition {
            rung,
            info: info.clone(),
            segment_sizes: Vec::new(),
            max_access_unit: 0,
            payload_bytes: 0,
            files,
            cpu_seconds: 0.0,
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
            Err(_) => return Err(IngestError::Stopped("the input of an encoder")),
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
        segmenter,
        mut out,
        ..
    } = w;
    if let Some(last) = segmenter.finish() {
        write_segment(staged, &last, &mut out)?;
    }
    out.cpu_seconds = thread_cpu_seconds();
    Ok(out)
}

fn write_segment(
    staged: &StagedTrack,
    segment: &SegmentData,
    out: &mut EncodedRendition,
) -> Result<(), IngestError> {
    let bytes = fmp4::write_media_segment(segment)?;
    out.segment_sizes.push(bytes.len() as u64);
    staged.put_segment(&out.files, segment.index, &bytes)?;
    Ok(())
}

/// Writes the init segment and returns the record.
pub(crate) fn finish_rendition(
    staged: &StagedTrack,
    r: EncodedRendition,
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
        avg_bitrate: u32::try_from(payload_rate)
            .map_err(|_| fmp4::Fmp4Error::Overflow("avgBitrate"))?,
        max_bitrate: u32::try_from(peak).map_err(|_| fmp4::Fmp4Error::Overflow("maxBitrate"))?,
        buffer_size: r.max_access_unit,
        priming: gapless.priming_samples,
        valid_samples: gapless.valid_samples,
        loudness: Some(LoudnessBox {
            integrated_lufs: loudness.integrated_lufs,
            true_peak_dbtp: loudness.true_peak_dbtp,
            sample_peak_dbfs: loudness.sample_peak_dbfs,
        }),
    })?;
    let init_len = init.len() as u64;
    let dir = staged.finish_rendition(r.files, &init)?;
    Ok(RenditionRecord {
        id: r.rung.id(),
        dir,
        codec: r.rung.profile.codec_string(),
        profile: r.rung.profile.name().into(),
        bitrate: r.rung.bitrate,
        average_bandwidth: average,
        peak_bandwidth: peak,
        init: INIT_SEGMENT_FILE.into(),
        init_bytes: init_len,
        playlist: MEDIA_PLAYLIST_FILE.into(),
        segment_sizes: r.segment_sizes,
    })
}
