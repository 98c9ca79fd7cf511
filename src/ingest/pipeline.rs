//! One file through every stage: decode once, resample once, then analyze and encode every
//! rendition in parallel threads, streaming (memory does not grow with track length; see
//! `fanout`); then the track's files are staged and committed at once.
//!
//! Priming alignment: each encoder has its own delay `d_r` (AAC-LC and HE-AAC differ). Every
//! rendition gets `P - d_r` samples of silence ahead of the source, where `P` is the largest
//! delay, so the first source sample lands at decode time `P` in every rendition. All
//! renditions then share one timeline, one segment plan and one edit list (`media_time = P`),
//! and each is padded to the same total length `T` (a multiple of the alignment unit).

use std::path::Path;

use super::analyze::{LoudnessFigures, Waveform};
use super::decode::SourceDecoder;
use super::encode::{AacEncoder, EncoderConfig};
use super::fanout::{self, StreamPlan};
use super::rendition::{EncodedRendition, finish_rendition};
use super::resample;
use super::segment::{ALIGNMENT_UNIT, SegmentPlan};
use crate::catalog::{
    Gapless, Loudness, PackagingRecord, RenditionRecord, SourceRecord, TRACK_RECORD_VERSION,
    TrackRecord,
};
use crate::config::{IngestConfig, Rung};
use crate::manifest;
use crate::store::layout::PACKAGING_GENERATION;
use crate::store::layout::{
    DASH_MPD_FILE, HLS_MASTER_FILE, TRACK_RECORD_FILE, WAVEFORM_FILE, cover_file, track_id,
};
use crate::store::{Library, StagedTrack, StoreError};

pub use super::error::IngestError;
pub use super::fanout::Progress;

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

/// The track id of a source file: a hash of its bytes (so re-ingesting the same bytes is a
/// no-op, whatever the file is called).
pub fn track_id_of(path: &Path) -> Result<String, IngestError> {
    let file = std::fs::File::open(path).map_err(IngestError::Read)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(IngestError::Read)?;
    Ok(track_id(&hasher.finalize()))
}

/// Ingests one file into `library` (the catalog is updated by the caller).
pub fn ingest_file(
    path: &Path,
    config: &IngestConfig,
    library: &Library,
    progress: &dyn Progress,
) -> Result<IngestOutcome, IngestError> {
    let bytes = std::fs::metadata(path).map_err(IngestError::Read)?.len();
    let id = track_id_of(path)?;
    if library.has_track(&id)? {
        return Ok(IngestOutcome::AlreadyPresent(id));
    }
    // decode
    let mut decoder = SourceDecoder::open(path, &config.decode)?;
    // resample (to the output rate), encode (one encoder per rung), segment (one plan)
    let out_rate = resample::output_rate(decoder.info().sample_rate);
    let encoders = open_encoders(config, out_rate)?;
    let priming = common_priming(&encoders)?;
    let plan = StreamPlan {
        out_rate,
        priming,
        segments: SegmentPlan::new(
            crate::units::Timescale(out_rate),
            config.first_segment_seconds,
            config.segment_seconds,
        ),
        inputs: packaging_inputs(&id, config, out_rate, priming),
    };
    // stage: decode -> resample -> (analyze | encode -> segment -> fmp4 media segments)
    let staged = library.stage_track(&id)?;
    let streamed = fanout::stream(path, &mut decoder, encoders, plan, &staged, progress)?;
    let gapless = gapless_of(plan.priming, streamed.valid)?;
    let segment_durations = plan.segments.durations(gapless.total_samples());
    // fmp4 init segments, then the track's other files
    let renditions = finish_renditions(
        &staged,
        streamed.renditions,
        &segment_durations,
        gapless,
        out_rate,
        &streamed.loudness,
    )?;
    let cover = stage_cover(&staged, &decoder)?;
    stage_waveform(&staged, &streamed.waveform)?;
    let packaged = Packaged {
        out_rate,
        gapless,
        segment_durations,
        loudness: streamed.loudness,
        renditions,
        cover,
    };
    let record = track_record(path, &id, bytes, &decoder, config, packaged);
    stage_manifests(&staged, &record)?;
    // commit
    commit(staged, record)
}

/// The hash of everything that decides the bytes of a track's renditions besides the rung:
/// the source (its id), the output rate and priming, the whole ladder (the priming is common to
/// it), the segment plan, the encoder settings, and the software (segue's version and
/// [`PACKAGING_GENERATION`], which moves whenever a change of code changes output bytes).
fn packaging_inputs(id: &str, config: &IngestConfig, out_rate: u32, priming: u64) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(&PACKAGING_GENERATION.to_le_bytes());
    hasher.update(id.as_bytes());
    hasher.update(&out_rate.to_le_bytes());
    hasher.update(&priming.to_le_bytes());
    hasher.update(config.ladder.spec().as_bytes());
    hasher.update(&config.segment_seconds.to_le_bytes());
    hasher.update(&config.first_segment_seconds.to_le_bytes());
    hasher.update(&[u8::from(config.afterburner)]);
    hasher.finalize()
}

/// One encoder per rung of the ladder, at the output rate.
fn open_encoders(
    config: &IngestConfig,
    out_rate: u32,
) -> Result<Vec<(Rung, AacEncoder)>, IngestError> {
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
    Ok(encoders)
}

/// The priming every rendition gets: the largest encoder delay, in samples.
fn common_priming(encoders: &[(Rung, AacEncoder)]) -> Result<u64, IngestError> {
    encoders
        .iter()
        .map(|(_, e)| u64::from(e.info().delay))
        .max()
        .ok_or_else(|| IngestError::Internal("the ladder has no rungs".into()))
}

/// The gapless figures of a track with `valid` source samples after `priming`, padded to a
/// whole alignment unit.
fn gapless_of(priming: u64, valid: u64) -> Result<Gapless, IngestError> {
    if valid == 0 {
        return Err(IngestError::NoSamples);
    }
    let total = (priming + valid).div_ceil(ALIGNMENT_UNIT) * ALIGNMENT_UNIT;
    Ok(Gapless {
        priming_samples: priming,
        valid_samples: valid,
        padding_samples: total - priming - valid,
    })
}

/// Writes every rendition's init segment and names its directory; returns the records.
fn finish_renditions(
    staged: &StagedTrack,
    renditions: Vec<EncodedRendition>,
    segment_durations: &[u64],
    gapless: Gapless,
    out_rate: u32,
    loudness: &LoudnessFigures,
) -> Result<Vec<RenditionRecord>, IngestError> {
    renditions
        .into_iter()
        .map(|r| finish_rendition(staged, r, segment_durations, gapless, out_rate, loudness))
        .collect()
}

/// Writes the source's cover art, if any; returns its file name.
fn stage_cover(
    staged: &StagedTrack,
    decoder: &SourceDecoder,
) -> Result<Option<String>, IngestError> {
    let Some(art) = decoder.cover() else {
        return Ok(None);
    };
    let name = cover_file(&art.media_type);
    staged.write(&name, &art.data)?;
    Ok(Some(name))
}

/// Writes the waveform peaks for the player.
fn stage_waveform(staged: &StagedTrack, waveform: &Waveform) -> Result<(), IngestError> {
    let json = serde_json::to_vec(waveform).map_err(|e| IngestError::Internal(e.to_string()))?;
    staged.write(WAVEFORM_FILE, &json)?;
    Ok(())
}

/// What packaging produced, for the track record.
struct Packaged {
    /// Output sample rate, in Hz.
    out_rate: u32,
    gapless: Gapless,
    /// Every segment's duration, in samples at `out_rate`.
    segment_durations: Vec<u64>,
    loudness: LoudnessFigures,
    renditions: Vec<RenditionRecord>,
    /// File name of the cover art.
    cover: Option<String>,
}

/// The record of the track packaged from `path`.
fn track_record(
    path: &Path,
    id: &str,
    bytes: u64,
    decoder: &SourceDecoder,
    config: &IngestConfig,
    packaged: Packaged,
) -> TrackRecord {
    let info = decoder.info();
    let tags = decoder.tags().clone();
    let title = tags
        .title
        .clone()
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| id.to_string());
    TrackRecord {
        version: TRACK_RECORD_VERSION,
        id: id.to_string(),
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
        sample_rate: packaged.out_rate,
        channels: 2,
        gapless: packaged.gapless,
        loudness: Loudness {
            integrated_lufs: round2(packaged.loudness.integrated_lufs),
            true_peak_dbtp: round2(packaged.loudness.true_peak_dbtp),
            loudness_range_lu: round2(packaged.loudness.loudness_range_lu),
        },
        cover: packaged.cover,
        waveform: WAVEFORM_FILE.into(),
        hls_master: HLS_MASTER_FILE.into(),
        dash_mpd: DASH_MPD_FILE.into(),
        segment_durations: packaged.segment_durations,
        renditions: packaged.renditions,
        packaging: PackagingRecord {
            ladder: config.ladder.spec(),
            segment_seconds: config.segment_seconds,
            segue_version: env!("CARGO_PKG_VERSION").into(),
        },
    }
}

/// Writes the HLS playlists, the DASH MPD and the track record (views of `record`).
fn stage_manifests(staged: &StagedTrack, record: &TrackRecord) -> Result<(), IngestError> {
    for r in &record.renditions {
        staged.write(
            &format!("{}/{}", r.dir, r.playlist),
            manifest::render_media_playlist(record, r).as_bytes(),
        )?;
    }
    staged.write(
        &record.hls_master,
        manifest::render_master_playlist(record).as_bytes(),
    )?;
    staged.write(&record.dash_mpd, manifest::render_mpd(record).as_bytes())?;
    let json =
        serde_json::to_vec_pretty(record).map_err(|e| IngestError::Internal(e.to_string()))?;
    staged.write(TRACK_RECORD_FILE, &json)?;
    Ok(())
}

/// Moves the staged track into the library, the track's commit point.
fn commit(staged: StagedTrack, record: TrackRecord) -> Result<IngestOutcome, IngestError> {
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
