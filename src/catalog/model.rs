//! The track record: what the ingest wrote for one track, stored as `track.json` in the track's
//! directory (the truth) and indexed in SQLite (a rebuildable view of it).

use serde::{Deserialize, Serialize};

use crate::store::layout::{TRACK_RECORD_FILE, segment_name};
use crate::units::{Ticks, Timescale};

/// Version of the `track.json` schema; bumped on incompatible changes.
pub const TRACK_RECORD_VERSION: u32 = 1;

/// One ingested track: metadata, timing, loudness and every rendition's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackRecord {
    /// Schema version ([`TRACK_RECORD_VERSION`]).
    pub version: u32,
    /// Stable id: a hash of the source file's bytes, lowercase hex.
    pub id: String,
    /// Title from the tags, or the file name without extension.
    pub title: String,
    /// Artist from the tags.
    pub artist: Option<String>,
    /// Album from the tags.
    pub album: Option<String>,
    /// Track number within the album.
    pub track_number: Option<u32>,
    /// Release year.
    pub year: Option<i32>,
    /// What the source file was.
    pub source: SourceRecord,
    /// Output sample rate in Hz; also the timescale of every media timeline of the track.
    pub sample_rate: u32,
    /// Output channel count (2: sources are downmixed or upmixed to stereo).
    pub channels: u16,
    /// Encoder priming and padding, in samples at `sample_rate`.
    pub gapless: Gapless,
    /// EBU R128 measurements of the (resampled, downmixed) source.
    pub loudness: Loudness,
    /// File name of the cover art inside the track directory, if the source had one.
    pub cover: Option<String>,
    /// File name of the waveform peaks JSON inside the track directory.
    pub waveform: String,
    /// File name of the HLS master playlist inside the track directory.
    pub hls_master: String,
    /// File name of the DASH MPD inside the track directory.
    pub dash_mpd: String,
    /// Duration of each segment in samples, identical in every rendition (decode time,
    /// priming included in the first and padding in the last).
    pub segment_durations: Vec<u64>,
    /// The renditions of the ladder, lowest bitrate first.
    pub renditions: Vec<RenditionRecord>,
    /// The settings the track was packaged with.
    pub packaging: PackagingRecord,
}

/// Describes the source file a track was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// File name (no directory) of the source at ingest time.
    pub file_name: String,
    /// Container format, e.g. `flac`, `wav`, `mp4`.
    pub container: String,
    /// Codec, e.g. `flac`, `mp3`, `aac`, `pcm_s16le`.
    pub codec: String,
    /// Source sample rate in Hz.
    pub sample_rate: u32,
    /// Source channel count.
    pub channels: u32,
    /// Bits per sample for PCM-like sources.
    pub bits_per_sample: Option<u32>,
    /// Number of decoded samples (per channel) at the source rate.
    pub samples: u64,
    /// Size of the source file in bytes.
    pub bytes: u64,
}

/// Gapless playback information (ISO/IEC 14496-12 8.6.6 edit list, mirrored for players).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gapless {
    /// Samples of encoder priming at the start of every rendition's timeline.
    pub priming_samples: u64,
    /// Samples of real audio after the priming; equal to the source's length at `sample_rate`.
    pub valid_samples: u64,
    /// Samples of padding after the valid samples, up to the end of the last segment.
    pub padding_samples: u64,
}

impl Gapless {
    /// Total samples on the media timeline (priming + valid + padding).
    pub fn total_samples(&self) -> u64 {
        self.priming_samples + self.valid_samples + self.padding_samples
    }
}

/// Loudness figures (EBU R128 / ITU-R BS.1770).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Integrated loudness in LUFS (`-70.0` or lower for silence).
    pub integrated_lufs: f64,
    /// Maximum true peak in dBTP.
    pub true_peak_dbtp: f64,
    /// Loudness range in LU.
    pub loudness_range_lu: f64,
}

/// One rung of the ladder as written to disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionRecord {
    /// Rendition id, e.g. `aac-lc-128k`.
    pub id: String,
    /// Directory (relative to the track directory) holding this rendition's files; its name
    /// carries a hash of their bytes, so any change of bytes changes every URL below it.
    pub dir: String,
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub codec: String,
    /// Profile name as given in the ladder spec (`aac-lc`, `he-aac`).
    pub profile: String,
    /// Target bitrate in bit/s.
    pub bitrate: u32,
    /// Average bitrate over the whole track, in bit/s (HLS AVERAGE-BANDWIDTH).
    pub average_bandwidth: u64,
    /// Peak segment bitrate, in bit/s (HLS BANDWIDTH).
    pub peak_bandwidth: u64,
    /// Init segment file name within `dir`.
    pub init: String,
    /// Size of the init segment in bytes (0 in records written before it was kept).
    #[serde(default)]
    pub init_bytes: u64,
    /// Media playlist file name within `dir`.
    pub playlist: String,
    /// Size in bytes of each media segment, in order.
    pub segment_sizes: Vec<u64>,
}

/// The settings a track was packaged with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackagingRecord {
    /// The ladder spec, e.g. `he-aac:64k,aac-lc:128k,aac-lc:256k`.
    pub ladder: String,
    /// Nominal segment duration in seconds.
    pub segment_seconds: f64,
    /// segue version that wrote the track.
    pub segue_version: String,
}

impl TrackRecord {
    /// The media timescale of the track.
    pub fn timescale(&self) -> Timescale {
        Timescale(self.sample_rate)
    }

    /// Duration of the real audio (without priming and padding) in seconds.
    pub fn duration_seconds(&self) -> f64 {
        self.timescale().seconds(Ticks(self.gapless.valid_samples))
    }

    /// Every file of the committed track, relative to its directory (`/`-separated): the
    /// record itself, the track's manifests, waveform and cover, and per rendition its init
    /// segment, media playlist and media segments. What `segue gc` must never delete.
    pub fn files(&self) -> Vec<String> {
        let mut files = vec![
            TRACK_RECORD_FILE.to_string(),
            self.hls_master.clone(),
            self.dash_mpd.clone(),
            self.waveform.clone(),
        ];
        files.extend(self.cover.clone());
        for r in &self.renditions {
            files.push(format!("{}/{}", r.dir, r.init));
            files.push(format!("{}/{}", r.dir, r.playlist));
            files.extend(
                (0..r.segment_sizes.len()).map(|i| format!("{}/{}", r.dir, segment_name(i))),
            );
        }
        files
    }
}

/// The tests' one fixed track record (shared with the integration tests), for unit tests of
/// the layers above the catalog.
#[cfg(test)]
#[path = "../../tests/common/record.rs"]
mod record;
#[cfg(test)]
pub(crate) use record::test_record;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_name_every_file_the_record_links() {
        let record = test_record();
        let files = record.files();
        assert!(files.contains(&TRACK_RECORD_FILE.to_string()));
        assert!(files.contains(&record.hls_master));
        assert!(files.contains(&record.dash_mpd));
        assert!(files.contains(&record.waveform));
        for r in &record.renditions {
            assert!(files.contains(&format!("{}/{}", r.dir, r.init)));
            assert!(files.contains(&format!("{}/{}", r.dir, r.playlist)));
            let n = r.segment_sizes.len();
            assert!(
                files.contains(&format!("{}/{n}.m4s", r.dir)),
                "last segment"
            );
            assert!(!files.contains(&format!("{}/{}.m4s", r.dir, n + 1)));
        }
        let fixed = 4 + usize::from(record.cover.is_some());
        let per_rendition: usize = record
            .renditions
            .iter()
            .map(|r| 2 + r.segment_sizes.len())
            .sum();
        assert_eq!(files.len(), fixed + per_rendition);
    }
}
